//! Alert geometry: an earthquake source, or an area (GeoJSON Polygon or
//! MultiPolygon, or a circle). GeoJSON positions are `[lon, lat]`; everything
//! else names its axes (`lat`, `lon`) and units (`depth_km`, `radius_m`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A GeoJSON position: `[lon, lat]` in decimal degrees (WGS84).
pub type Position = [f64; 2];

/// An earthquake source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EarthquakeSource {
    /// Epicentre latitude, degrees north, −90..90.
    #[schemars(range(min = -90.0, max = 90.0))]
    pub lat: f64,
    /// Epicentre longitude, degrees east, −180..180.
    #[schemars(range(min = -180.0, max = 180.0))]
    pub lon: f64,
    /// Hypocentre depth in km, 0..700. Absent: the fixed-depth form of the
    /// intensity equation (h = 15 km) is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 700.0))]
    pub depth_km: Option<f64>,
    /// Moment magnitude, 0..10 (the intensity equation is calibrated for 4.6–8.3).
    #[schemars(range(min = 0.0, max = 10.0))]
    pub magnitude: f64,
}

/// The area of an area hazard (mudslide, flood, avalanche).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type")]
pub enum AreaGeometry {
    /// GeoJSON Polygon: an outer ring and optional holes, each closed
    /// (first position equals last), at least four positions.
    Polygon {
        /// Rings of `[lon, lat]` positions.
        coordinates: Vec<Vec<Position>>,
    },
    /// GeoJSON MultiPolygon.
    MultiPolygon {
        /// Polygons, each a list of rings of `[lon, lat]` positions.
        coordinates: Vec<Vec<Vec<Position>>>,
    },
    /// A circle on the ground (not GeoJSON): centre and great-circle radius.
    Circle {
        /// Centre latitude, degrees.
        #[schemars(range(min = -90.0, max = 90.0))]
        lat: f64,
        /// Centre longitude, degrees.
        #[schemars(range(min = -180.0, max = 180.0))]
        lon: f64,
        /// Radius in metres, > 0 and at most 1,000 km.
        #[schemars(range(max = 1_000_000.0), extend("exclusiveMinimum" = 0.0))]
        radius_m: f64,
    },
}

/// Most polygons an area may have.
pub const MAX_POLYGONS: usize = 100;
/// Most rings (outer rings and holes together) an area may have.
pub const MAX_RINGS: usize = 1_000;
/// Most positions an area may have; with [`crate::validate::MAX_MESSAGE_BYTES`]
/// this bounds the work of checking it.
pub const MAX_POSITIONS: usize = 10_000;
/// Largest circle radius, metres: larger than any hazard eoc models.
pub const MAX_RADIUS_M: f64 = 1_000_000.0;
/// Most pairs of rings or polygons with overlapping bounds whose relation is
/// computed exactly. Valid areas need a handful; the bound stops a crafted
/// area of a thousand overlapping holes from costing seconds.
pub const MAX_RING_PAIRS: usize = 5_000;
/// Most position problems reported one by one; the rest are summarised so
/// that a bad 10,000-position polygon yields a readable, bounded answer.
const MAX_POSITION_PROBLEMS: usize = 20;

impl AreaGeometry {
    /// Records every problem of this area, with paths under `path`
    /// (e.g. `area`): counts, ring structure, coordinate ranges, then
    /// topology (simple rings, holes inside their shell, polygons that do not
    /// overlap).
    pub fn validate_into(&self, path: &str, problems: &mut crate::validate::Problems) {
        match self {
            AreaGeometry::Polygon { coordinates } => {
                let polygons = [coordinates.as_slice()];
                let base = format!("{path}.coordinates");
                check_polygons(&polygons, &base, false, problems);
            }
            AreaGeometry::MultiPolygon { coordinates } => {
                let polygons: Vec<&[Vec<Position>]> = coordinates.iter().map(Vec::as_slice).collect();
                let base = format!("{path}.coordinates");
                check_polygons(&polygons, &base, true, problems);
            }
            AreaGeometry::Circle { lat, lon, radius_m } => {
                crate::validate::check_lat(&format!("{path}.lat"), *lat, problems);
                crate::validate::check_lon(&format!("{path}.lon"), *lon, problems);
                let field = format!("{path}.radius_m");
                if !radius_m.is_finite() {
                    problems.push("not_finite", field, "radius_m is not a finite number");
                } else if *radius_m <= 0.0 || *radius_m > MAX_RADIUS_M {
                    problems.push(
                        "out_of_range",
                        field,
                        format!("radius_m {radius_m} is not within 0 (exclusive)..{MAX_RADIUS_M} m"),
                    );
                }
            }
        }
    }
}

/// Checks a Polygon (`multi == false`, one entry) or MultiPolygon.
fn check_polygons(
    polygons: &[&[Vec<Position>]],
    base: &str,
    multi: bool,
    problems: &mut crate::validate::Problems,
) {
    let poly_path = |p: usize| if multi { format!("{base}[{p}]") } else { base.to_owned() };
    let ring_path =
        |p: usize, r: usize| if multi { format!("{base}[{p}][{r}]") } else { format!("{base}[{r}]") };

    // Counts first: past these limits nothing else is looked at, so the work
    // stays bounded whatever was sent.
    let rings: usize = polygons.iter().map(|p| p.len()).sum();
    let positions: usize = polygons.iter().flat_map(|p| p.iter()).map(Vec::len).sum();
    let before = problems.errors.len();
    if polygons.len() > MAX_POLYGONS {
        problems.push(
            "too_many",
            base,
            format!("area has {} polygons, at most {MAX_POLYGONS} allowed", polygons.len()),
        );
    }
    if rings > MAX_RINGS {
        problems.push("too_many", base, format!("area has {rings} rings, at most {MAX_RINGS} allowed"));
    }
    if positions > MAX_POSITIONS {
        problems.push(
            "too_many",
            base,
            format!("area has {positions} positions, at most {MAX_POSITIONS} allowed"),
        );
    }
    if problems.errors.len() > before {
        return;
    }
    if multi && polygons.is_empty() {
        problems.push("invalid_geometry", base, "multipolygon has no polygons");
        return;
    }

    // Structure and coordinate ranges of every ring.
    let mut position_problems = 0usize;
    for (p, rings) in polygons.iter().enumerate() {
        if rings.is_empty() {
            problems.push("invalid_geometry", poly_path(p), "polygon has no rings, expected an outer ring");
            continue;
        }
        for (r, ring) in rings.iter().enumerate() {
            let rp = ring_path(p, r);
            for (i, pos) in ring.iter().enumerate() {
                let mut scratch = crate::validate::Problems::default();
                crate::validate::check_lon(&format!("{rp}[{i}]"), pos[0], &mut scratch);
                crate::validate::check_lat(&format!("{rp}[{i}]"), pos[1], &mut scratch);
                for e in scratch.errors {
                    position_problems += 1;
                    if position_problems <= MAX_POSITION_PROBLEMS {
                        problems.errors.push(e);
                    }
                }
            }
            if ring.len() < 4 {
                problems.push(
                    "invalid_geometry",
                    rp,
                    format!(
                        "ring has {} positions, at least 4 required (first repeated as last)",
                        ring.len()
                    ),
                );
            } else if ring.first() != ring.last() {
                let (first, last) = (ring[0], ring[ring.len() - 1]);
                problems.push(
                    "invalid_geometry",
                    rp,
                    format!(
                        "ring is not closed: first position [{}, {}] differs from last [{}, {}]",
                        first[0], first[1], last[0], last[1]
                    ),
                );
            }
        }
    }
    if position_problems > MAX_POSITION_PROBLEMS {
        problems.push(
            "out_of_range",
            base,
            format!(
                "{} more positions are out of range (only the first {MAX_POSITION_PROBLEMS} are listed)",
                position_problems - MAX_POSITION_PROBLEMS
            ),
        );
    }
    if problems.errors.len() > before {
        // Topology of malformed rings would only repeat the same problems.
        return;
    }
    topology::check(polygons, &poly_path, &ring_path, problems);
}

/// Topology: rings are simple, holes lie inside their shell and do not
/// overlap, polygons of a MultiPolygon do not overlap. These are the OGC
/// Simple Features rules that `geo::algorithm::Validation` checks; they are
/// computed here with geo's sweep-line segment intersection and `Relate`
/// because geo's `Validation` tests every pair of segments of a ring, which
/// takes seconds for a legitimate 10,000-position polygon. A test compares
/// both on random polygons.
mod topology {
    use geo::algorithm::sweep::Cross;
    use geo::coordinate_position::CoordPos;
    use geo::dimensions::Dimensions;
    use geo::line_intersection::LineIntersection;
    use geo::{BoundingRect, Coord, Intersections, Line, LineString, Polygon, Rect, Relate};

    use super::{MAX_RING_PAIRS, Position};
    use crate::validate::Problems;

    /// One segment of a ring, tagged with where it came from.
    #[derive(Clone, Copy)]
    struct Segment {
        line: Line<f64>,
        ring: usize,
        index: usize,
        ring_segments: usize,
    }

    impl Cross for Segment {
        type Scalar = f64;
        fn line(&self) -> Line<f64> {
            self.line
        }
    }

    /// The ring's positions with consecutive repeats dropped (a repeated
    /// position is harmless but would make a zero-length segment).
    fn dedup(ring: &[Position]) -> Vec<Coord<f64>> {
        let mut out: Vec<Coord<f64>> = Vec::with_capacity(ring.len());
        for p in ring {
            let c = Coord { x: p[0], y: p[1] };
            if out.last() != Some(&c) {
                out.push(c);
            }
        }
        out
    }

    fn fmt(c: Coord<f64>) -> String {
        format!("[{}, {}]", c.x, c.y)
    }

    pub(super) fn check(
        polygons: &[&[Vec<Position>]],
        poly_path: &dyn Fn(usize) -> String,
        ring_path: &dyn Fn(usize, usize) -> String,
        problems: &mut Problems,
    ) {
        let mut pairs_left = MAX_RING_PAIRS;
        let mut built: Vec<Option<Polygon<f64>>> = Vec::with_capacity(polygons.len());
        for (p, rings) in polygons.iter().enumerate() {
            built.push(check_polygon(p, rings, ring_path, &mut pairs_left, problems));
        }
        // Polygons of a MultiPolygon may touch at points only.
        let boxes: Vec<Option<Rect<f64>>> =
            built.iter().map(|p| p.as_ref().and_then(BoundingRect::bounding_rect)).collect();
        for i in 0..built.len() {
            for j in i + 1..built.len() {
                let (Some(a), Some(b)) = (&built[i], &built[j]) else { continue };
                let (Some(ba), Some(bb)) = (boxes[i], boxes[j]) else { continue };
                if !rects_intersect(ba, bb) {
                    continue;
                }
                if pairs_left == 0 {
                    problems.push(
                        "too_many",
                        poly_path(j),
                        format!("more than {MAX_RING_PAIRS} polygon or ring pairs with overlapping bounds to check"),
                    );
                    return;
                }
                pairs_left -= 1;
                let im = a.relate(b);
                if im.get(CoordPos::Inside, CoordPos::Inside) == Dimensions::TwoDimensional {
                    problems.push(
                        "invalid_geometry",
                        poly_path(j),
                        format!("polygon {j} overlaps polygon {i}"),
                    );
                } else if im.get(CoordPos::OnBoundary, CoordPos::OnBoundary) == Dimensions::OneDimensional {
                    problems.push(
                        "invalid_geometry",
                        poly_path(j),
                        format!("polygon {j} touches polygon {i} along a line, only points are allowed"),
                    );
                }
            }
        }
    }

    fn rects_intersect(a: Rect<f64>, b: Rect<f64>) -> bool {
        a.min().x <= b.max().x && b.min().x <= a.max().x && a.min().y <= b.max().y && b.min().y <= a.max().y
    }

    /// Checks one polygon; returns it when it is valid, for the
    /// MultiPolygon checks.
    fn check_polygon(
        p: usize,
        rings: &[Vec<Position>],
        ring_path: &dyn Fn(usize, usize) -> String,
        pairs_left: &mut usize,
        problems: &mut Problems,
    ) -> Option<Polygon<f64>> {
        let before = problems.errors.len();
        let rings: Vec<Vec<Coord<f64>>> = rings.iter().map(|r| dedup(r)).collect();
        let mut segments = Vec::new();
        for (r, ring) in rings.iter().enumerate() {
            if ring.len() < 4 {
                problems.push(
                    "invalid_geometry",
                    ring_path(p, r),
                    "ring has fewer than 3 distinct positions".to_owned(),
                );
                continue;
            }
            let n = ring.len() - 1;
            segments.extend(ring.windows(2).enumerate().map(|(index, w)| Segment {
                line: Line::new(w[0], w[1]),
                ring: r,
                index,
                ring_segments: n,
            }));
        }
        if problems.errors.len() > before {
            return None;
        }

        // Each ring crossed or touched by another part of the polygon is
        // reported once.
        let mut reported = vec![false; rings.len()];
        for (a, b, hit) in Intersections::from_iter(segments) {
            let (first, second) = if a.ring <= b.ring { (a, b) } else { (b, a) };
            if first.ring == second.ring {
                let (i, j) = (first.index.min(second.index), first.index.max(second.index));
                let adjacent = j == i + 1 || (i == 0 && j == first.ring_segments - 1);
                let ok = adjacent && matches!(hit, LineIntersection::SinglePoint { is_proper: false, .. });
                if !ok && !reported[first.ring] {
                    reported[first.ring] = true;
                    let at = match hit {
                        LineIntersection::SinglePoint { intersection, .. } => intersection,
                        LineIntersection::Collinear { intersection } => intersection.start,
                    };
                    problems.push(
                        "invalid_geometry",
                        ring_path(p, first.ring),
                        format!("ring intersects itself at {}", fmt(at)),
                    );
                }
            } else {
                let why = match hit {
                    LineIntersection::SinglePoint { is_proper: false, .. } => continue,
                    LineIntersection::SinglePoint { intersection, .. } => {
                        format!("crosses ring {} at {}", first.ring, fmt(intersection))
                    }
                    LineIntersection::Collinear { intersection } => format!(
                        "touches ring {} along a line from {} to {}, only points are allowed",
                        first.ring,
                        fmt(intersection.start),
                        fmt(intersection.end)
                    ),
                };
                if !reported[second.ring] {
                    reported[second.ring] = true;
                    problems.push("invalid_geometry", ring_path(p, second.ring), format!("ring {why}"));
                }
            }
        }
        if problems.errors.len() > before {
            return None;
        }

        // Simple rings that do not cross: each hole must lie inside the
        // shell, and no hole inside another.
        let mut rings = rings.into_iter().map(LineString::from);
        let exterior = Polygon::new(rings.next()?, vec![]);
        let holes: Vec<Polygon<f64>> = rings.map(|r| Polygon::new(r, vec![])).collect();
        if !holes.is_empty() {
            let prepared = geo::PreparedGeometry::from(&exterior);
            for (h, hole) in holes.iter().enumerate() {
                if !prepared.relate(hole).is_contains() {
                    problems.push(
                        "invalid_geometry",
                        ring_path(p, h + 1),
                        "hole is not inside the polygon's outer ring",
                    );
                }
            }
            let boxes: Vec<Option<Rect<f64>>> = holes.iter().map(BoundingRect::bounding_rect).collect();
            for i in 0..holes.len() {
                for j in i + 1..holes.len() {
                    let (Some(ba), Some(bb)) = (boxes[i], boxes[j]) else { continue };
                    if !rects_intersect(ba, bb) {
                        continue;
                    }
                    if *pairs_left == 0 {
                        problems.push(
                            "too_many",
                            ring_path(p, j + 1),
                            format!("more than {MAX_RING_PAIRS} ring pairs with overlapping bounds to check"),
                        );
                        return None;
                    }
                    *pairs_left -= 1;
                    if holes[i].relate(&holes[j]).get(CoordPos::Inside, CoordPos::Inside)
                        == Dimensions::TwoDimensional
                    {
                        problems.push(
                            "invalid_geometry",
                            ring_path(p, j + 1),
                            format!("hole overlaps hole {}", i + 1),
                        );
                    }
                }
            }
        }
        if problems.errors.len() > before {
            return None;
        }
        let interiors = holes.into_iter().map(|h| h.into_inner().0).collect();
        Some(Polygon::new(exterior.into_inner().0, interiors))
    }
}
