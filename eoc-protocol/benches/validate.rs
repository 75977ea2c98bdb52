//! Cost of parse + validate at the edge: a team position (the hot path of
//! ingest) and an alert with the largest area allowed, against geo's own
//! `Validation` of the same polygon.

// A bench is a test harness: a panic here is a failed run.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use chrono::{DateTime, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use eoc_protocol::messages::{AlertMsg, TeamPositionMsg};
use eoc_protocol::validate::parse;
use geo::algorithm::Validation;
use serde_json::json;

fn now() -> DateTime<Utc> {
    "2025-05-14T18:05:00Z".parse().unwrap()
}

/// A closed ring of `n` distinct positions on a circle, six decimals.
fn ring(n: usize) -> Vec<[f64; 2]> {
    let r6 = |x: f64| (x * 1e6).round() / 1e6;
    let mut ring: Vec<[f64; 2]> = (0..n)
        .map(|i| {
            let a = i as f64 / n as f64 * std::f64::consts::TAU;
            [r6(68.8 + 0.1 * a.cos()), r6(37.8 + 0.1 * a.sin())]
        })
        .collect();
    ring.push(ring[0]);
    ring
}

fn bench(c: &mut Criterion) {
    let position = json!({"v": 1, "id": "react-rasht-01:000417", "ts": "2025-05-14T18:04:00Z",
        "team_id": "react-rasht-01", "lat": 39.0412, "lon": 70.3871, "accuracy_m": 12,
        "battery_pct": 64, "speed_mps": 11.2, "heading_deg": 78})
    .to_string();
    c.bench_function("parse_validate/team_position", |b| {
        b.iter(|| parse::<TeamPositionMsg>(position.as_bytes(), now()).unwrap())
    });

    let big = ring(9_999);
    let alert = json!({"v": 1, "id": "a1", "ts": "2025-05-14T18:00:00Z", "alert_id": "flood-1",
        "hazard": "flood", "area": {"type": "Polygon", "coordinates": [big]}})
    .to_string();
    let mut group = c.benchmark_group("area_10000_positions");
    group.sample_size(10);
    group.bench_function("eoc_parse_validate", |b| {
        b.iter(|| parse::<AlertMsg>(alert.as_bytes(), now()).unwrap())
    });
    let polygon = geo::Polygon::new(
        geo::LineString::from(big.iter().map(|p| (p[0], p[1])).collect::<Vec<_>>()),
        vec![],
    );
    group.bench_function("geo_validation_is_valid", |b| b.iter(|| assert!(polygon.is_valid())));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
