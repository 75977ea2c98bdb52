//! Seeded synthetic worlds for tests and benchmarks: clustered villages
//! (real settlement patterns cluster in valleys), sites among them, teams at
//! cluster centres. Deterministic for a given seed.

use eoc_protocol::types::{Service, SiteKind, SiteStatus, Skill, TeamStatus};

use super::geo::LatLon;
use super::world::{Places, Site, Team, Village, World};

/// A small deterministic PRNG (xorshift64*), so worlds are reproducible
/// without a dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value, zero included).
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15 | 1)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.unit().max(1e-12);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// Shape of a synthetic world.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    /// Villages.
    pub villages: usize,
    /// Sites.
    pub sites: usize,
    /// Teams.
    pub teams: usize,
    /// Settlement clusters.
    pub clusters: usize,
    /// Spread of a cluster, km (one standard deviation).
    pub spread_km: f64,
}

/// A world in a 600 × 400 km box around 38.5°N 70°E (Tajikistan's size).
pub fn world(shape: Shape, seed: u64) -> World {
    let mut rng = Rng::new(seed);
    let centres: Vec<(f64, f64)> =
        (0..shape.clusters.max(1)).map(|_| (rng.range(36.7, 40.3), rng.range(66.6, 73.4))).collect();
    let mut places = Places::default();
    let districts: Vec<_> = (0..centres.len())
        .map(|c| places.intern(&format!("Region {}", c % 5 + 1), &format!("District {}", c + 1)))
        .collect();
    let point = |rng: &mut Rng| -> (usize, LatLon) {
        let c = (rng.next_u64() % centres.len() as u64) as usize;
        let (lat0, lon0) = centres[c];
        let dlat = rng.normal() * shape.spread_km / 111.2;
        let dlon = rng.normal() * shape.spread_km / (111.2 * lat0.to_radians().cos());
        let at =
            LatLon::new((lat0 + dlat).clamp(-90.0, 90.0), ((lon0 + dlon + 180.0).rem_euclid(360.0)) - 180.0)
                .unwrap_or_else(|_| LatLon::new(lat0, lon0).unwrap_or(LatLon::from_unit([1.0, 0.0, 0.0])));
        (c, at)
    };
    let villages = (0..shape.villages)
        .map(|i| {
            let (c, at) = point(&mut rng);
            // Heavy-tailed: most villages are small, a few are towns.
            let population = (200.0 * (1.0 / rng.unit().max(1e-3)).powf(0.9)).min(200_000.0) as u32;
            Village {
                id: format!("v{i}"),
                name: format!("Village {i}"),
                district: districts[c],
                at,
                population,
                population_estimated: true,
                elevation_m: None,
            }
        })
        .collect();
    let sites = (0..shape.sites)
        .map(|i| {
            let (c, at) = point(&mut rng);
            Site {
                id: format!("s{i}"),
                name: format!("School {i}"),
                kind: SiteKind::School,
                district: districts[c],
                at,
                capacity: 100 + (rng.next_u64() % 900) as u32,
                occupancy: 0,
                status: SiteStatus::Open,
                services: vec![Service::Water],
                updated_at_ms: None,
            }
        })
        .collect();
    let teams = (0..shape.teams)
        .map(|i| {
            let (lat, lon) = centres[i % centres.len()];
            Team {
                id: format!("t{i}"),
                name: format!("Team {i}"),
                skills: vec![Skill::ALL[i % Skill::ALL.len()], Skill::ALL[(i + 2) % Skill::ALL.len()]],
                status: TeamStatus::Available,
                at: LatLon::new(lat, lon).unwrap_or(LatLon::from_unit([1.0, 0.0, 0.0])),
                accuracy_m: None,
                position_at_ms: None,
                battery_pct: None,
                last_seen_ms: None,
                devices: vec![format!("osmand:{}", 100_000 + i)],
            }
        })
        .collect();
    // Ids are unique by construction, so assembly cannot fail.
    World::new(places, villages, sites, teams).unwrap_or_default()
}
