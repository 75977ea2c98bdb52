//! Shared by the benchmarks: seeded point sets and a median timer.

#![allow(dead_code, missing_docs)]

use std::time::Instant;

use chrono::Utc;
use eoc_protocol::geometry::EarthquakeSource;
use eoc_protocol::messages::{AlertMsg, Envelope};
use eoc_protocol::types::{AlertStatus, Certainty, Hazard, MsgType, Severity, Urgency};
use eoc_server::core::engine::Command;
use eoc_server::core::geo::LatLon;
use eoc_server::core::synthetic::Rng;

/// Uniform points in a 600 × 400 km box around 38.5°N 70°E.
pub fn uniform(n: usize, seed: u64) -> Vec<LatLon> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| ll(rng.range(36.7, 40.3), rng.range(66.6, 73.4))).collect()
}

/// Clustered points shaped like real settlements: the Tajikistan villages
/// of the scenario, replicated with a jitter of a few km, when the scenario
/// is present; otherwise 60 Gaussian clusters.
pub fn clustered(n: usize, seed: u64) -> Vec<LatLon> {
    let mut rng = Rng::new(seed);
    let base = scenario_villages();
    if !base.is_empty() {
        return (0..n)
            .map(|i| {
                let b = base[i % base.len()];
                let jitter_km = if i < base.len() { 0.0 } else { 3.0 };
                ll(b.lat() + rng.normal() * jitter_km / 111.2, b.lon() + rng.normal() * jitter_km / 87.0)
            })
            .collect();
    }
    let centres: Vec<(f64, f64)> = (0..60).map(|_| (rng.range(36.7, 40.3), rng.range(66.6, 73.4))).collect();
    (0..n)
        .map(|_| {
            let (la, lo) = centres[(rng.next_u64() % 60) as usize];
            ll(la + rng.normal() * 15.0 / 111.2, lo + rng.normal() * 15.0 / 87.0)
        })
        .collect()
}

/// The scenario's village locations, if the scenario has been built.
pub fn scenario_villages() -> Vec<LatLon> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/scenarios/tajikistan/villages.csv");
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    let mut lines = text.lines();
    let Some(header) = lines.next() else { return Vec::new() };
    let cols: Vec<&str> = header.split(',').collect();
    let (Some(lat_i), Some(lon_i)) =
        (cols.iter().position(|c| *c == "lat"), cols.iter().position(|c| *c == "lon"))
    else {
        return Vec::new();
    };
    let mut reader = csv_rows(&text);
    reader.remove(0);
    reader
        .into_iter()
        .filter_map(|r| Some(ll(r.get(lat_i)?.parse().ok()?, r.get(lon_i)?.parse().ok()?)))
        .collect()
}

fn csv_rows(text: &str) -> Vec<Vec<String>> {
    let mut rdr = csv::ReaderBuilder::new().has_headers(false).from_reader(text.as_bytes());
    rdr.records().filter_map(Result::ok).map(|r| r.iter().map(str::to_owned).collect()).collect()
}

pub fn ll(lat: f64, lon: f64) -> LatLon {
    LatLon::new(lat.clamp(-90.0, 90.0), lon.clamp(-180.0, 180.0))
        .unwrap_or(LatLon::from_unit([1.0, 0.0, 0.0]))
}

/// Median of `runs` timings of `f`, seconds.
pub fn median_secs(runs: usize, mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// Resident set size of this process, bytes (Linux).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// An actual earthquake alert (fixed-depth form) for the engine.
pub fn quake(lat: f64, lon: f64, magnitude: f64) -> Command {
    Command::Alert(AlertMsg {
        envelope: Envelope { v: 1, id: "bench".to_owned(), ts: Utc::now() },
        alert_id: "bench".to_owned(),
        msg_type: MsgType::Alert,
        status: AlertStatus::Actual,
        hazard: Some(Hazard::Earthquake),
        urgency: Urgency::Immediate,
        severity: Severity::Severe,
        certainty: Certainty::Observed,
        headline: None,
        description: None,
        expires_at: None,
        earthquake: Some(EarthquakeSource { lat, lon, depth_km: None, magnitude }),
        area: None,
        buffer_m: None,
        cap_xml: None,
    })
}
