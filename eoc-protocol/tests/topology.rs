//! The area topology checks agree with `geo::algorithm::Validation` (the
//! OGC Simple Features rules) on random small polygons, including the
//! degenerate ones a coarse grid produces (touching vertices, collinear
//! edges, holes on the boundary).

// Helpers of this test binary may unwrap too: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use eoc_protocol::geometry::{AreaGeometry, Position};
use eoc_protocol::validate::Problems;
use geo::algorithm::Validation;
use proptest::prelude::*;

fn closed(mut ring: Vec<Position>) -> Vec<Position> {
    ring.push(ring[0]);
    ring
}

fn to_geo(rings: &[Vec<Position>]) -> geo::Polygon<f64> {
    let ls = |r: &Vec<Position>| geo::LineString::from(r.iter().map(|p| (p[0], p[1])).collect::<Vec<_>>());
    geo::Polygon::new(ls(&rings[0]), rings[1..].iter().map(ls).collect())
}

fn ours_valid(area: &AreaGeometry) -> bool {
    let mut p = Problems::default();
    area.validate_into("area", &mut p);
    p.is_empty()
}

fn ring(n: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Position>> {
    prop::collection::vec((0..6i32, 0..6i32).prop_map(|(x, y)| [f64::from(x), f64::from(y)]), n)
        .prop_map(closed)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, max_global_rejects: 100_000, ..ProptestConfig::default() })]

    #[test]
    fn polygon_validity_matches_geo(outer in ring(3..8), holes in prop::collection::vec(ring(3..5), 0..3)) {
        let mut rings = vec![outer];
        rings.extend(holes);
        let geo_poly = to_geo(&rings);
        let area = AreaGeometry::Polygon { coordinates: rings.clone() };
        // geo does not see spikes (an edge that doubles back on the one
        // before it) as self-intersections; OGC does, and so does eoc.
        prop_assume!(!has_spike(&rings));
        prop_assert_eq!(ours_valid(&area), geo_poly.is_valid(), "rings {:?}: geo says {:?}", rings, geo_poly.validation_errors());
    }

    #[test]
    fn holes_match_geo(w in 2..8i32, h in 2..8i32, holes in prop::collection::vec(triangle(), 1..4)) {
        let (w, h) = (f64::from(w), f64::from(h));
        let mut rings = vec![vec![[0.0, 0.0], [w, 0.0], [w, h], [0.0, h], [0.0, 0.0]]];
        rings.extend(holes);
        prop_assume!(!has_spike(&rings));
        let geo_poly = to_geo(&rings);
        let area = AreaGeometry::Polygon { coordinates: rings.clone() };
        prop_assert_eq!(ours_valid(&area), geo_poly.is_valid(), "rings {:?}: geo says {:?}", rings, geo_poly.validation_errors());
    }

    #[test]
    fn multipolygon_validity_matches_geo(a in ring(3..6), b in ring(3..6)) {
        let polys = vec![vec![a], vec![b]];
        prop_assume!(!polys.iter().any(|p| has_spike(p)));
        let geo_multi = geo::MultiPolygon(polys.iter().map(|p| to_geo(p)).collect());
        let area = AreaGeometry::MultiPolygon { coordinates: polys.clone() };
        prop_assert_eq!(ours_valid(&area), geo_multi.is_valid(), "{:?}: geo says {:?}", polys, geo_multi.validation_errors());
    }
}

/// A triangle on a grid of half units, often inside the outer rectangle,
/// sometimes touching or crossing it or another hole.
fn triangle() -> impl Strategy<Value = Vec<Position>> {
    prop::collection::vec((0..16i32, 0..16i32).prop_map(|(x, y)| [f64::from(x) / 2.0, f64::from(y) / 2.0]), 3)
        .prop_map(closed)
}

/// Whether some ring has three consecutive distinct positions a, b, c with c
/// on the segment a–b or a on b–c (the ring goes back along itself).
fn has_spike(rings: &[Vec<Position>]) -> bool {
    rings.iter().any(|r| {
        let mut v: Vec<Position> = Vec::new();
        for p in &r[..r.len() - 1] {
            if v.last() != Some(p) {
                v.push(*p);
            }
        }
        while v.len() > 1 && v.first() == v.last() {
            v.pop();
        }
        let n = v.len();
        n >= 3
            && (0..n).any(|i| {
                let (a, b, c) = (v[i], v[(i + 1) % n], v[(i + 2) % n]);
                let cross = (b[0] - a[0]) * (c[1] - b[1]) - (b[1] - a[1]) * (c[0] - b[0]);
                let dot = (b[0] - a[0]) * (c[0] - b[0]) + (b[1] - a[1]) * (c[1] - b[1]);
                cross == 0.0 && dot < 0.0
            })
    })
}

#[test]
fn a_spike_is_invalid() {
    let spike = AreaGeometry::Polygon {
        coordinates: vec![vec![
            [0.0, 0.0],
            [4.0, 0.0],
            [4.0, 4.0],
            [4.0, 6.0],
            [4.0, 4.0],
            [0.0, 4.0],
            [0.0, 0.0],
        ]],
    };
    assert!(!ours_valid(&spike));
}
