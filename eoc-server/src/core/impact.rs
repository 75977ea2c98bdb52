//! Impact of a hazard on villages: who is affected, how strongly, and how
//! many people lose their homes.
//!
//! Earthquakes use the intensity prediction equations of Bindi et al. (2011),
//! "Intensity prediction equations for Central Asia", Geophys. J. Int. 187,
//! 327–337 (MSK-64, active shallow crust, M 4.6–8.3, 0–600 km). Area hazards
//! (mudslide, flood, avalanche) affect villages inside the area or within an
//! optional buffer of it.

use eoc_protocol::types::Severity;
use geo::{Contains, Coord, LineString, MultiPolygon, Point, Polygon};

use super::geo::{LatLon, distance_to_segment_m};
use super::world::{VillageIdx, World};

/// Standard deviation of the Bindi et al. (2011) equations, intensity units.
pub const INTENSITY_SIGMA: f64 = 0.689;

/// The fixed depth of the equation's first form, km.
pub const FIXED_DEPTH_KM: f64 = 15.0;

/// Distance beyond which the equations are not calibrated, km. Villages
/// further away are never counted as affected.
pub const MAX_CALIBRATED_DISTANCE_KM: f64 = 600.0;

/// MSK-64 intensity at epicentral distance `r_km` for magnitude `m`.
/// `depth_km = None` uses the fixed-depth form (h = 15 km); a known depth
/// uses the second form.
pub fn intensity(m: f64, depth_km: Option<f64>, r_km: f64) -> f64 {
    match depth_km {
        None => {
            let h = FIXED_DEPTH_KM;
            let rh = r_km.hypot(h);
            1.049 * m + 0.686 - 2.706 * (rh / h).log10() - 0.0001811 * (rh - h)
        }
        Some(depth) => {
            // A zero depth would make log10(h) infinite; 1 km is the
            // shallowest depth the equation is meaningful for.
            let h = depth.max(1.0);
            let rh = r_km.hypot(h);
            1.0074538 * m - 2.0045088 * h.log10() + 3.2980663
                - 2.6920855 * (rh / h).log10()
                - 4.2344195e-4 * (rh - h)
        }
    }
}

/// Largest epicentral distance (km) at which intensity is still at least
/// `threshold`, or `None` if not even the epicentre reaches it. Intensity
/// falls strictly with distance, so bisection is exact to 1 m.
pub fn radius_for_intensity_km(m: f64, depth_km: Option<f64>, threshold: f64) -> Option<f64> {
    if intensity(m, depth_km, 0.0) < threshold {
        return None;
    }
    let max = MAX_CALIBRATED_DISTANCE_KM;
    if intensity(m, depth_km, max) >= threshold {
        return Some(max);
    }
    let (mut lo, mut hi) = (0.0, max);
    while hi - lo > 1e-3 {
        let mid = (lo + hi) / 2.0;
        if intensity(m, depth_km, mid) >= threshold { lo = mid } else { hi = mid }
    }
    Some(lo)
}

/// Share of residents displaced, by intensity band or severity. Values are
/// fractions 0..1.
#[derive(Debug, Clone, PartialEq)]
pub struct DisplacementRates {
    /// `(minimum intensity, rate)`, ascending by intensity; a village takes
    /// the rate of the highest band its intensity reaches.
    pub by_intensity: Vec<(f64, f64)>,
    /// Rates for area hazards by CAP severity:
    /// extreme, severe, moderate, minor, unknown.
    pub by_severity: [f64; 5],
}

impl Default for DisplacementRates {
    /// Planning assumptions, not a calibrated model: most rural houses in
    /// Tajikistan are adobe or unreinforced masonry (EMS-98 vulnerability
    /// classes A–B), which start to be uninhabitable at VI–VII and are mostly
    /// destroyed at IX. CoES should replace these with its own figures in
    /// `config/eoc.toml`.
    fn default() -> Self {
        DisplacementRates {
            by_intensity: vec![(6.0, 0.02), (7.0, 0.10), (8.0, 0.30), (9.0, 0.60), (10.0, 0.85)],
            by_severity: [0.60, 0.30, 0.10, 0.02, 0.30],
        }
    }
}

impl DisplacementRates {
    /// Rate for an intensity.
    pub fn for_intensity(&self, i: f64) -> f64 {
        self.by_intensity.iter().rev().find(|(min, _)| i >= *min).map_or(0.0, |&(_, r)| r)
    }

    /// Rate for a severity.
    pub fn for_severity(&self, s: Severity) -> f64 {
        let k = match s {
            Severity::Extreme => 0,
            Severity::Severe => 1,
            Severity::Moderate => 2,
            Severity::Minor => 3,
            Severity::Unknown => 4,
        };
        self.by_severity[k]
    }
}

/// Settings of the impact computation.
#[derive(Debug, Clone, PartialEq)]
pub struct ImpactParams {
    /// A village is affected at or above this MSK intensity.
    pub threshold_intensity: f64,
    /// Displacement rates.
    pub rates: DisplacementRates,
}

impl Default for ImpactParams {
    fn default() -> Self {
        ImpactParams { threshold_intensity: 6.0, rates: DisplacementRates::default() }
    }
}

/// A hazard, validated and ready to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub enum Hazard {
    /// Ground shaking from an earthquake source.
    Earthquake {
        /// Epicentre.
        at: LatLon,
        /// Depth, km; `None` = fixed-depth form.
        depth_km: Option<f64>,
        /// Magnitude.
        magnitude: f64,
    },
    /// An area, with an optional buffer, and the severity used for rates.
    Area {
        /// The area.
        area: Area,
        /// Margin around it, metres.
        buffer_m: f64,
        /// CAP severity.
        severity: Severity,
    },
}

/// An affected area.
#[derive(Debug, Clone, PartialEq)]
pub enum Area {
    /// Polygons in `[lon, lat]` (GeoJSON semantics: edges straight in lon/lat).
    Polygons(MultiPolygon<f64>),
    /// A circle of great-circle radius.
    Circle {
        /// Centre.
        center: LatLon,
        /// Radius, metres.
        radius_m: f64,
    },
}

impl Area {
    /// Builds polygons from GeoJSON rings (`[lon, lat]` positions).
    pub fn from_rings(polygons: &[Vec<Vec<[f64; 2]>>]) -> Area {
        let polys = polygons
            .iter()
            .filter(|rings| !rings.is_empty())
            .map(|rings| {
                let ring = |r: &Vec<[f64; 2]>| {
                    LineString::from(r.iter().map(|&[x, y]| Coord { x, y }).collect::<Vec<_>>())
                };
                Polygon::new(ring(&rings[0]), rings[1..].iter().map(ring).collect())
            })
            .collect();
        Area::Polygons(MultiPolygon(polys))
    }

    /// A cap (centre, radius) that contains the area.
    pub fn bounding_cap(&self) -> Option<(LatLon, f64)> {
        match self {
            Area::Circle { center, radius_m } => Some((*center, *radius_m)),
            Area::Polygons(mp) => {
                let pts: Vec<LatLon> =
                    mp.0.iter()
                        .flat_map(|p| p.exterior().coords())
                        .filter_map(|c| LatLon::new(c.y, c.x).ok())
                        .collect();
                let sum = pts.iter().fold([0.0; 3], |acc, p| {
                    let u = p.to_unit();
                    [acc[0] + u[0], acc[1] + u[1], acc[2] + u[2]]
                });
                let center = LatLon::from_unit(sum);
                let r = pts.iter().map(|p| p.distance_m(center)).fold(0.0, f64::max);
                // Edges are straight in lon/lat, not great circles; a small
                // margin covers the bulge between vertices.
                (!pts.is_empty()).then_some((center, r * 1.05 + 1_000.0))
            }
        }
    }

    /// Great-circle metres from `p` to the area: 0 inside.
    pub fn distance_m(&self, p: LatLon) -> f64 {
        match self {
            Area::Circle { center, radius_m } => (p.distance_m(*center) - radius_m).max(0.0),
            Area::Polygons(mp) => {
                if mp.contains(&Point::new(p.lon(), p.lat())) {
                    return 0.0;
                }
                let mut best = f64::INFINITY;
                for poly in &mp.0 {
                    for ring in std::iter::once(poly.exterior()).chain(poly.interiors()) {
                        for seg in ring.lines() {
                            let (Ok(a), Ok(b)) =
                                (LatLon::new(seg.start.y, seg.start.x), LatLon::new(seg.end.y, seg.end.x))
                            else {
                                continue;
                            };
                            best = best.min(distance_to_segment_m(p, a, b));
                        }
                    }
                }
                best
            }
        }
    }

    /// Whether `p` is inside the area or within `buffer_m` of it.
    pub fn covers(&self, p: LatLon, buffer_m: f64) -> bool {
        match self {
            Area::Circle { center, radius_m } => p.distance_m(*center) <= radius_m + buffer_m,
            Area::Polygons(mp) => {
                mp.contains(&Point::new(p.lon(), p.lat()))
                    || (buffer_m > 0.0 && self.distance_m(p) <= buffer_m)
            }
        }
    }
}

/// How one village is hit.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Exposure {
    /// The village.
    pub village: VillageIdx,
    /// Epicentral great-circle distance, metres (earthquakes).
    pub distance_m: Option<f64>,
    /// MSK intensity (earthquakes).
    pub intensity: Option<f64>,
    /// People displaced.
    pub displaced: u32,
}

impl Hazard {
    /// Whether a point is hit hard enough that a site there cannot be used
    /// (inside the area, or shaken at or above the threshold).
    pub fn hits(&self, p: LatLon, params: &ImpactParams) -> bool {
        match self {
            Hazard::Earthquake { at, depth_km, magnitude } => {
                intensity(*magnitude, *depth_km, at.distance_m(p) / 1000.0) >= params.threshold_intensity
            }
            Hazard::Area { area, buffer_m, .. } => area.covers(p, *buffer_m),
        }
    }

    /// A cap (centre, radius) outside which nothing is hit.
    pub fn reach(&self, params: &ImpactParams) -> Option<(LatLon, f64)> {
        match self {
            Hazard::Earthquake { at, depth_km, magnitude } => {
                radius_for_intensity_km(*magnitude, *depth_km, params.threshold_intensity)
                    .map(|km| (*at, km * 1000.0))
            }
            Hazard::Area { area, buffer_m, .. } => area.bounding_cap().map(|(c, r)| (c, r + buffer_m)),
        }
    }

    /// Every affected village, most exposed first (highest intensity, then
    /// most displaced, then id order for determinism).
    pub fn exposures(&self, world: &World, params: &ImpactParams) -> Vec<Exposure> {
        let Some((center, radius_m)) = self.reach(params) else {
            return Vec::new();
        };
        let mut out: Vec<Exposure> = world
            .village_index()
            .within(center, radius_m)
            .filter_map(|(vi, d)| {
                let v = world.village(vi);
                match self {
                    Hazard::Earthquake { depth_km, magnitude, .. } => {
                        let i = intensity(*magnitude, *depth_km, d / 1000.0);
                        (i >= params.threshold_intensity).then(|| Exposure {
                            village: vi,
                            distance_m: Some(d),
                            intensity: Some(i),
                            displaced: displaced(v.population, params.rates.for_intensity(i)),
                        })
                    }
                    Hazard::Area { area, buffer_m, severity } => {
                        area.covers(v.at, *buffer_m).then(|| Exposure {
                            village: vi,
                            distance_m: None,
                            intensity: None,
                            displaced: displaced(v.population, params.rates.for_severity(*severity)),
                        })
                    }
                }
            })
            .collect();
        out.sort_by(|a, b| {
            b.intensity
                .unwrap_or(0.0)
                .total_cmp(&a.intensity.unwrap_or(0.0))
                .then(b.displaced.cmp(&a.displaced))
                .then(a.village.cmp(&b.village))
        });
        out
    }
}

fn displaced(population: u32, rate: f64) -> u32 {
    (f64::from(population) * rate.clamp(0.0, 1.0)).round() as u32
}

/// Roman numeral label of an intensity band (the integer part), "X+" from 10.
pub fn band_label(i: f64) -> String {
    const ROMAN: [&str; 10] = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X+"];
    let k = (i.floor() as i64).clamp(1, 10) as usize;
    ROMAN[k - 1].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The check values of the product brief (fixed-depth form), within 0.01.
    #[test]
    fn bindi_fixed_depth_check_values() {
        for (m, r, want) in
            [(6.5, 0.0, 7.50), (6.5, 50.0, 6.03), (6.5, 100.0, 5.25), (7.5, 0.0, 8.55), (7.5, 50.0, 7.08)]
        {
            let got = intensity(m, None, r);
            assert!((got - want).abs() < 0.01, "M{m} at {r} km: got {got:.3}, want {want}");
        }
    }

    #[test]
    fn known_depth_form_matches_the_published_equation() {
        // At the epicentre Rh = h, so only the magnitude and depth terms remain.
        let got = intensity(7.0, Some(10.0), 0.0);
        let want = 1.0074538 * 7.0 - 2.0045088 + 3.2980663;
        assert!((got - want).abs() < 1e-9);
        // Deeper sources shake the epicentre less.
        assert!(intensity(7.0, Some(30.0), 0.0) < got);
        // And intensity falls with distance.
        assert!(intensity(7.0, Some(10.0), 80.0) < intensity(7.0, Some(10.0), 40.0));
    }

    #[test]
    fn radius_for_threshold_inverts_the_equation() {
        let r = radius_for_intensity_km(6.5, None, 6.0).unwrap_or_default();
        assert!((intensity(6.5, None, r) - 6.0).abs() < 1e-3, "{r}");
        assert!(r > 40.0 && r < 60.0, "{r}");
        assert_eq!(radius_for_intensity_km(4.0, None, 8.0), None);
    }

    #[test]
    fn rates_pick_the_highest_band_reached() {
        let rates = DisplacementRates::default();
        assert_eq!(rates.for_intensity(5.9), 0.0);
        assert_eq!(rates.for_intensity(7.4), 0.10);
        assert_eq!(rates.for_intensity(11.0), 0.85);
        assert_eq!(band_label(7.9), "VII");
        assert_eq!(band_label(10.2), "X+");
    }

    #[test]
    fn polygon_cover_and_buffer() {
        let square = Area::from_rings(&[vec![vec![
            [69.0, 38.0],
            [69.1, 38.0],
            [69.1, 38.1],
            [69.0, 38.1],
            [69.0, 38.0],
        ]]]);
        let inside = LatLon::new(38.05, 69.05).unwrap_or_else(|e| panic!("{e}"));
        let outside = LatLon::new(38.05, 69.12).unwrap_or_else(|e| panic!("{e}"));
        assert!(square.covers(inside, 0.0));
        assert!(!square.covers(outside, 0.0));
        let gap = square.distance_m(outside);
        // 0.02° of longitude at 38.05°N is about 1,752 m.
        assert!((gap - 1_752.0).abs() < 10.0, "{gap}");
        assert!(square.covers(outside, 1_800.0));
        assert!(!square.covers(outside, 1_700.0));
    }
}
