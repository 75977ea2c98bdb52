//! The world model: villages, sites and teams with their spatial indexes.
//!
//! Objects live in plain vectors and are referred to by dense indexes
//! ([`VillageIdx`], [`SiteIdx`], [`TeamIdx`]); string ids map to indexes
//! once, at the edge. Region and district names are interned in
//! [`Places`] so a million villages do not carry a million copies of
//! "Khatlon".

use std::collections::HashMap;

use eoc_protocol::types::{Service, SiteKind, SiteStatus, Skill, TeamStatus};

use super::geo::LatLon;
use super::index::PointIndex;

macro_rules! idx {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub u32);

        impl $name {
            /// The position in the world's table.
            pub fn get(self) -> usize {
                self.0 as usize
            }
        }
    };
}

idx!(
    /// Index of a village in [`World::villages`].
    VillageIdx
);
idx!(
    /// Index of a site in [`World::sites`].
    SiteIdx
);
idx!(
    /// Index of a team in [`World::teams`].
    TeamIdx
);
idx!(
    /// Index of an interned district in [`Places`].
    DistrictIdx
);

/// Interned region and district names.
#[derive(Debug, Clone, Default)]
pub struct Places {
    districts: Vec<(String, String)>,
    lookup: HashMap<(String, String), DistrictIdx>,
}

impl Places {
    /// The index of `(region, district)`, interning it if new.
    pub fn intern(&mut self, region: &str, district: &str) -> DistrictIdx {
        let key = (region.to_owned(), district.to_owned());
        if let Some(&i) = self.lookup.get(&key) {
            return i;
        }
        let i = DistrictIdx(self.districts.len() as u32);
        self.districts.push(key.clone());
        self.lookup.insert(key, i);
        i
    }

    /// Region name of a district.
    pub fn region(&self, d: DistrictIdx) -> &str {
        self.districts.get(d.get()).map_or("", |(r, _)| r.as_str())
    }

    /// District name.
    pub fn district(&self, d: DistrictIdx) -> &str {
        self.districts.get(d.get()).map_or("", |(_, n)| n.as_str())
    }

    /// Number of districts.
    pub fn len(&self) -> usize {
        self.districts.len()
    }

    /// Whether there is no district.
    pub fn is_empty(&self) -> bool {
        self.districts.is_empty()
    }
}

/// A settlement.
#[derive(Debug, Clone, PartialEq)]
pub struct Village {
    /// Stable id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Region and district.
    pub district: DistrictIdx,
    /// Location.
    pub at: LatLon,
    /// Residents.
    pub population: u32,
    /// Whether `population` is an estimate.
    pub population_estimated: bool,
    /// Elevation, metres.
    pub elevation_m: Option<i32>,
}

/// A displacement site.
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    /// Stable id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: SiteKind,
    /// Region and district.
    pub district: DistrictIdx,
    /// Location.
    pub at: LatLon,
    /// Persons it can hold.
    pub capacity: u32,
    /// Persons there now (reported by its manager).
    pub occupancy: u32,
    /// Open, closed or full.
    pub status: SiteStatus,
    /// Services.
    pub services: Vec<Service>,
    /// Last report from the site, ms since the Unix epoch.
    pub updated_at_ms: Option<i64>,
}

impl Site {
    /// Room left before allocations: capacity − occupancy, 0 if closed or full.
    pub fn free(&self) -> u32 {
        if self.status == SiteStatus::Open { self.capacity.saturating_sub(self.occupancy) } else { 0 }
    }
}

/// A responder team.
#[derive(Debug, Clone, PartialEq)]
pub struct Team {
    /// Stable id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Skills.
    pub skills: Vec<Skill>,
    /// Status.
    pub status: TeamStatus,
    /// Last known position.
    pub at: LatLon,
    /// Accuracy of the last position, metres.
    pub accuracy_m: Option<f64>,
    /// When the last position was taken, ms since the Unix epoch.
    pub position_at_ms: Option<i64>,
    /// Phone battery, percent.
    pub battery_pct: Option<f64>,
    /// When the team was last heard from, ms since the Unix epoch.
    pub last_seen_ms: Option<i64>,
    /// Device ids mapped to this team (OwnTracks `user/device`, OsmAnd ids).
    pub devices: Vec<String>,
}

impl Team {
    /// Whether the team has `skill`.
    pub fn has(&self, skill: Skill) -> bool {
        self.skills.contains(&skill)
    }
}

/// Why a world could not be assembled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorldError {
    /// Two objects of one kind share an id.
    #[error("duplicate {kind} id {id:?}")]
    DuplicateId {
        /// `village`, `site` or `team`.
        kind: &'static str,
        /// The id.
        id: String,
    },
    /// A device id is mapped to two teams.
    #[error("device {device:?} is mapped to both team {first:?} and team {second:?}")]
    DuplicateDevice {
        /// The device.
        device: String,
        /// One team.
        first: String,
        /// The other team.
        second: String,
    },
}

/// Villages, sites and teams, with id maps and spatial indexes.
#[derive(Debug, Clone, Default)]
pub struct World {
    /// Interned regions and districts.
    pub places: Places,
    villages: Vec<Village>,
    sites: Vec<Site>,
    teams: Vec<Team>,
    village_ids: HashMap<String, VillageIdx>,
    site_ids: HashMap<String, SiteIdx>,
    team_ids: HashMap<String, TeamIdx>,
    device_teams: HashMap<String, TeamIdx>,
    village_index: PointIndex<VillageIdx>,
    site_index: PointIndex<SiteIdx>,
    team_index: PointIndex<TeamIdx>,
}

impl World {
    /// Assembles a world and bulk-loads its indexes.
    pub fn new(
        places: Places,
        villages: Vec<Village>,
        sites: Vec<Site>,
        teams: Vec<Team>,
    ) -> Result<World, WorldError> {
        fn ids<I: Copy>(
            kind: &'static str,
            names: impl Iterator<Item = String>,
            mk: impl Fn(u32) -> I,
        ) -> Result<HashMap<String, I>, WorldError> {
            let mut map = HashMap::new();
            for (i, id) in names.enumerate() {
                if map.insert(id.clone(), mk(i as u32)).is_some() {
                    return Err(WorldError::DuplicateId { kind, id });
                }
            }
            Ok(map)
        }
        let village_ids = ids("village", villages.iter().map(|v| v.id.clone()), VillageIdx)?;
        let site_ids = ids("site", sites.iter().map(|s| s.id.clone()), SiteIdx)?;
        let team_ids = ids("team", teams.iter().map(|t| t.id.clone()), TeamIdx)?;
        let mut device_teams: HashMap<String, TeamIdx> = HashMap::new();
        for (i, t) in teams.iter().enumerate() {
            for d in &t.devices {
                if let Some(prev) = device_teams.insert(d.clone(), TeamIdx(i as u32)) {
                    return Err(WorldError::DuplicateDevice {
                        device: d.clone(),
                        first: teams[prev.get()].id.clone(),
                        second: t.id.clone(),
                    });
                }
            }
        }
        let village_index =
            PointIndex::bulk_load(villages.iter().enumerate().map(|(i, v)| (VillageIdx(i as u32), v.at)));
        let site_index =
            PointIndex::bulk_load(sites.iter().enumerate().map(|(i, s)| (SiteIdx(i as u32), s.at)));
        let team_index =
            PointIndex::bulk_load(teams.iter().enumerate().map(|(i, t)| (TeamIdx(i as u32), t.at)));
        Ok(World {
            places,
            villages,
            sites,
            teams,
            village_ids,
            site_ids,
            team_ids,
            device_teams,
            village_index,
            site_index,
            team_index,
        })
    }

    /// All villages.
    pub fn villages(&self) -> &[Village] {
        &self.villages
    }

    /// All sites.
    pub fn sites(&self) -> &[Site] {
        &self.sites
    }

    /// All teams.
    pub fn teams(&self) -> &[Team] {
        &self.teams
    }

    /// One village.
    pub fn village(&self, i: VillageIdx) -> &Village {
        &self.villages[i.get()]
    }

    /// One site.
    pub fn site(&self, i: SiteIdx) -> &Site {
        &self.sites[i.get()]
    }

    /// One team.
    pub fn team(&self, i: TeamIdx) -> &Team {
        &self.teams[i.get()]
    }

    /// A village by id.
    pub fn village_idx(&self, id: &str) -> Option<VillageIdx> {
        self.village_ids.get(id).copied()
    }

    /// A site by id.
    pub fn site_idx(&self, id: &str) -> Option<SiteIdx> {
        self.site_ids.get(id).copied()
    }

    /// A team by id.
    pub fn team_idx(&self, id: &str) -> Option<TeamIdx> {
        self.team_ids.get(id).copied()
    }

    /// The team a device is mapped to.
    pub fn team_of_device(&self, device: &str) -> Option<TeamIdx> {
        self.device_teams.get(device).copied()
    }

    /// Spatial index of villages.
    pub fn village_index(&self) -> &PointIndex<VillageIdx> {
        &self.village_index
    }

    /// Spatial index of sites.
    pub fn site_index(&self) -> &PointIndex<SiteIdx> {
        &self.site_index
    }

    /// Spatial index of teams (kept current as teams move).
    pub fn team_index(&self) -> &PointIndex<TeamIdx> {
        &self.team_index
    }

    /// Mutable access to a site (location is fixed; sites do not move).
    pub fn site_mut(&mut self, i: SiteIdx) -> &mut Site {
        &mut self.sites[i.get()]
    }

    /// Mutable access to a team's attributes other than its position; use
    /// [`World::move_team`] to move it.
    pub fn team_mut(&mut self, i: TeamIdx) -> &mut Team {
        &mut self.teams[i.get()]
    }

    /// Moves a team, keeping the index current (remove and re-insert).
    pub fn move_team(&mut self, i: TeamIdx, to: LatLon) {
        let team = &mut self.teams[i.get()];
        if team.at != to {
            self.team_index.relocate(i, team.at, to);
            team.at = to;
        }
    }
}
