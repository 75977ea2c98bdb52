//! Nearest sites with room and nearest teams with a skill, exactly.
//!
//! Both walk the spatial index nearest-first ([`PointIndex::nearest_iter`])
//! and skip what does not match until `k` are found or the radius is
//! passed: taking the `k` nearest and filtering afterwards would return
//! fewer than `k` (or none) when the nearest few are full or busy.
//!
//! [`PointIndex::nearest_iter`]: super::index::PointIndex::nearest_iter

use eoc_protocol::types::{SiteStatus, Skill, TeamStatus};

use super::engine::Engine;
use super::geo::LatLon;
use super::world::{SiteIdx, TeamIdx};

/// Which sites a nearest-sites query wants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SiteQuery {
    /// The query point.
    pub at: LatLon,
    /// How many sites at most.
    pub k: usize,
    /// Only sites with at least this many free places ([`Engine::site_free`]).
    pub room: u32,
    /// Also closed and full sites (their free places are 0, so only with
    /// `room` 0).
    pub include_closed: bool,
    /// Only sites within this many great-circle metres.
    pub radius_m: Option<f64>,
}

/// Which teams a nearest-teams query wants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TeamQuery {
    /// The query point.
    pub at: LatLon,
    /// How many teams at most.
    pub k: usize,
    /// Only teams with this skill.
    pub skill: Option<Skill>,
    /// Only available teams.
    pub available_only: bool,
    /// Only teams within this many great-circle metres.
    pub radius_m: Option<f64>,
}

/// Whether site `s` fits `q` (everything but the distance).
pub fn site_matches(engine: &Engine, s: SiteIdx, q: &SiteQuery) -> bool {
    (q.include_closed || engine.world().site(s).status == SiteStatus::Open) && engine.site_free(s) >= q.room
}

/// Whether team `t` fits `q` (everything but the distance).
pub fn team_matches(engine: &Engine, t: TeamIdx, q: &TeamQuery) -> bool {
    let team = engine.world().team(t);
    (!q.available_only || team.status == TeamStatus::Available) && q.skill.is_none_or(|s| team.has(s))
}

/// The sites matching `q` with their great-circle metres from `q.at`,
/// nearest first, at most `q.k`.
pub fn nearest_sites<'e>(engine: &'e Engine, q: &SiteQuery) -> impl Iterator<Item = (SiteIdx, f64)> + 'e {
    let q = *q;
    engine
        .world()
        .site_index()
        .nearest_iter(q.at)
        .take_while(move |&(_, d)| q.radius_m.is_none_or(|r| d <= r))
        .filter(move |&(s, _)| site_matches(engine, s, &q))
        .take(q.k)
}

/// The teams matching `q` with their great-circle metres from `q.at`,
/// nearest first, at most `q.k`.
pub fn nearest_teams<'e>(engine: &'e Engine, q: &TeamQuery) -> impl Iterator<Item = (TeamIdx, f64)> + 'e {
    let q = *q;
    engine
        .world()
        .team_index()
        .nearest_iter(q.at)
        .take_while(move |&(_, d)| q.radius_m.is_none_or(|r| d <= r))
        .filter(move |&(t, _)| team_matches(engine, t, &q))
        .take(q.k)
}

#[cfg(test)]
mod tests {
    use eoc_protocol::types::{SiteKind, TeamStatus};
    use proptest::prelude::*;

    use super::*;
    use crate::core::engine::EngineConfig;
    use crate::core::world::{Places, Site, Team, World};

    fn p(lat: f64, lon: f64) -> LatLon {
        LatLon::new(lat, lon).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A site: where, capacity, occupancy, status (0 open, 1 closed, 2 full).
    type SiteSpec = ((f64, f64), u32, u32, u8);
    /// A team: where, skill bits, status (index into `TeamStatus::ALL`).
    type TeamSpec = ((f64, f64), u8, usize);

    fn engine(sites: &[SiteSpec], teams: &[TeamSpec]) -> Engine {
        let mut places = Places::default();
        let d = places.intern("R", "D");
        let sites = sites
            .iter()
            .enumerate()
            .map(|(i, &((lat, lon), capacity, occupancy, status))| Site {
                id: format!("s{i}"),
                name: format!("Site {i}"),
                kind: SiteKind::School,
                district: d,
                at: p(lat, lon),
                capacity,
                occupancy,
                status: [SiteStatus::Open, SiteStatus::Closed, SiteStatus::Full][usize::from(status % 3)],
                services: Vec::new(),
                updated_at_ms: None,
            })
            .collect();
        let teams = teams
            .iter()
            .enumerate()
            .map(|(i, &((lat, lon), bits, status))| Team {
                id: format!("t{i}"),
                name: format!("Team {i}"),
                skills: Skill::ALL
                    .iter()
                    .enumerate()
                    .filter(|(b, _)| bits & (1 << b) != 0)
                    .map(|(_, s)| *s)
                    .collect(),
                status: TeamStatus::ALL[status % TeamStatus::ALL.len()],
                at: p(lat, lon),
                accuracy_m: None,
                position_at_ms: None,
                battery_pct: None,
                last_seen_ms: None,
                devices: Vec::new(),
            })
            .collect();
        let world = World::new(places, Vec::new(), sites, teams).unwrap_or_else(|e| panic!("{e}"));
        Engine::new(world, EngineConfig::default())
    }

    /// Brute force: every matching point's haversine distance, sorted,
    /// cut at the radius and at `k`.
    fn brute(mut all: Vec<f64>, k: usize, radius_m: Option<f64>) -> Vec<f64> {
        all.sort_by(f64::total_cmp);
        all.retain(|&d| radius_m.is_none_or(|r| d <= r));
        all.truncate(k);
        all
    }

    fn assert_close(got: &[f64], want: &[f64]) -> Result<(), TestCaseError> {
        prop_assert_eq!(got.len(), want.len(), "got {:?} want {:?}", got, want);
        for (g, w) in got.iter().zip(want) {
            prop_assert!((g - w).abs() < 1e-6, "got {:?} want {:?}", got, want);
        }
        Ok(())
    }

    /// Points around Tajikistan, some stacked on one spot, and a few near
    /// the antimeridian and the pole.
    fn coord() -> impl Strategy<Value = (f64, f64)> {
        prop_oneof![
            6 => (36.5f64..41.0, 67.0f64..75.0),
            1 => Just((38.56, 68.78)),
            1 => (85.0f64..=90.0, -180.0f64..=180.0),
            1 => (-10.0f64..10.0, prop_oneof![175.0f64..=180.0, -180.0f64..=-175.0]),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn nearest_sites_equal_a_brute_force_scan_of_the_matching_sites(
            sites in prop::collection::vec((coord(), 0u32..50, 0u32..50, 0u8..3), 0..120),
            at in coord(),
            k in 1usize..12,
            room in 0u32..30,
            include_closed in any::<bool>(),
            radius_m in prop::option::of(1_000.0f64..2_000_000.0),
        ) {
            let e = engine(&sites, &[]);
            let q = SiteQuery { at: p(at.0, at.1), k, room, include_closed, radius_m };
            let got: Vec<(SiteIdx, f64)> = nearest_sites(&e, &q).collect();
            let want = brute(
                (0..sites.len())
                    .filter(|&i| {
                        let (_, capacity, occupancy, status) = sites[i];
                        let free = if status == 0 { capacity.saturating_sub(occupancy) } else { 0 };
                        (include_closed || status == 0) && free >= room
                    })
                    .map(|i| p(sites[i].0.0, sites[i].0.1).distance_m(q.at))
                    .collect(),
                k,
                radius_m,
            );
            assert_close(&got.iter().map(|g| g.1).collect::<Vec<_>>(), &want)?;
            for (s, d) in got {
                prop_assert!(site_matches(&e, s, &q));
                prop_assert!((e.world().site(s).at.distance_m(q.at) - d).abs() < 1e-6);
            }
        }

        #[test]
        fn nearest_teams_equal_a_brute_force_scan_of_the_matching_teams(
            teams in prop::collection::vec((coord(), 0u8..64, 0usize..5), 0..120),
            at in coord(),
            k in 1usize..12,
            skill in prop::option::of(0usize..6),
            available_only in any::<bool>(),
            radius_m in prop::option::of(1_000.0f64..2_000_000.0),
        ) {
            let e = engine(&[], &teams);
            let skill = skill.map(|i| Skill::ALL[i % Skill::ALL.len()]);
            let q = TeamQuery { at: p(at.0, at.1), k, skill, available_only, radius_m };
            let got: Vec<(TeamIdx, f64)> = nearest_teams(&e, &q).collect();
            let want = brute(
                (0..teams.len())
                    .filter(|&i| {
                        let (_, bits, status) = teams[i];
                        let has = skill.is_none_or(|s| {
                            Skill::ALL.iter().position(|x| *x == s).is_some_and(|b| bits & (1 << b) != 0)
                        });
                        has && (!available_only || TeamStatus::ALL[status % TeamStatus::ALL.len()] == TeamStatus::Available)
                    })
                    .map(|i| p(teams[i].0.0, teams[i].0.1).distance_m(q.at))
                    .collect(),
                k,
                radius_m,
            );
            assert_close(&got.iter().map(|g| g.1).collect::<Vec<_>>(), &want)?;
            for (t, _) in got {
                prop_assert!(team_matches(&e, t, &q));
            }
        }
    }
}
