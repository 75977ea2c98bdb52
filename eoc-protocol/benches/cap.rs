//! Cost of reading CAP at the edge: a real-sized earthquake alert, an
//! alert with the largest polygon allowed, export, and how quickly hostile
//! documents are refused (XXE, billion laughs, 100 MB, 10,000-deep
//! nesting).

// A bench is a test harness: a panic here is a failed run.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use eoc_protocol::cap::export::{ExportOptions, to_cap_xml};
use eoc_protocol::cap::map::{Mapped, to_alert_msg};
use eoc_protocol::cap::parse_cap;

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cap").join(path)).unwrap()
}

fn now() -> DateTime<Utc> {
    "2026-07-01T00:00:00Z".parse().unwrap()
}

/// The thunderstorm fixture with one polygon of `n` points on a circle.
fn big_polygon(n: usize) -> Vec<u8> {
    let mut points: Vec<String> = (0..n)
        .map(|i| {
            let a = i as f64 / n as f64 * std::f64::consts::TAU;
            format!("{:.6},{:.6}", 38.55 + 0.1 * a.sin(), 68.8 + 0.1 * a.cos())
        })
        .collect();
    points.push(points[0].clone());
    String::from_utf8(fixture("valid/thunderstorm.xml"))
        .unwrap()
        .replace("38.50,68.70 38.50,68.90 38.65,68.90 38.65,68.70 38.50,68.70", &points.join(" "))
        .into_bytes()
}

fn cap(c: &mut Criterion) {
    let quake = fixture("valid/earthquake.xml");
    c.bench_function("cap/parse_and_map_earthquake", |b| {
        b.iter(|| {
            let cap = parse_cap(&quake).unwrap();
            to_alert_msg(&cap, None, now(), &|_| None).unwrap()
        });
    });
    let big = big_polygon(9_999);
    c.bench_function("cap/parse_and_map_polygon_10000_points", |b| {
        b.iter(|| {
            let cap = parse_cap(&big).unwrap();
            to_alert_msg(&cap, None, now(), &|_| None).unwrap()
        });
    });
    let cap = parse_cap(&quake).unwrap();
    let Mapped::Alert { msg, .. } = to_alert_msg(&cap, None, now(), &|_| None).unwrap() else { panic!() };
    let opts = ExportOptions {
        sender: "coes.tj",
        sent: now(),
        first_sent: now(),
        revision: 1,
        affected_radius_km: Some(120.0),
        area_desc: None,
    };
    c.bench_function("cap/export_earthquake", |b| b.iter(|| to_cap_xml(&msg, &opts)));

    let xxe = fixture("hostile/xxe.xml");
    c.bench_function("cap/refuse_xxe", |b| b.iter(|| parse_cap(&xxe).unwrap_err()));
    let laughs = fixture("hostile/billion-laughs.xml");
    c.bench_function("cap/refuse_billion_laughs", |b| b.iter(|| parse_cap(&laughs).unwrap_err()));
    let huge = vec![b'a'; 100 * 1024 * 1024];
    c.bench_function("cap/refuse_100_mb", |b| b.iter(|| parse_cap(&huge).unwrap_err()));
    let mut deep = String::from("<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">");
    deep.push_str(&"<note>".repeat(10_000));
    deep.push_str(&"</note>".repeat(10_000));
    deep.push_str("</alert>");
    c.bench_function("cap/refuse_10000_deep", |b| b.iter(|| parse_cap(deep.as_bytes()).unwrap_err()));
}

criterion_group!(benches, cap);
criterion_main!(benches);
