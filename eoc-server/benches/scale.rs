//! Scale: build a synthetic world of 10⁴, 10⁵ and 10⁶ villages with 10³
//! sites and 10³ teams (10⁴ teams for the memory figure), report the
//! resident memory it takes and the median time of the full result
//! (impact + allocation + dispatch) of an M7.2 earthquake in its middle.
//!
//! `cargo bench -p eoc-server --bench scale` (add `-- 1000000` for one size)

#![allow(missing_docs)]

mod common;

use std::time::Instant;

use eoc_protocol::delta::Delta;
use eoc_server::core::engine::{Engine, EngineConfig};
use eoc_server::core::synthetic::{self, Shape};

fn main() {
    let sizes: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![10_000, 100_000, 1_000_000] } else { sizes };
    println!(
        "| villages | sites | teams | build s | RSS of world MB | affected | displaced | placed | tasks | full result ms (median of 5) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for villages in sizes {
        let teams = if villages >= 1_000_000 { 10_000 } else { 1_000 };
        let rss0 = common::rss_bytes();
        let t = Instant::now();
        let world =
            synthetic::world(Shape { villages, sites: 1000, teams, clusters: 60, spread_km: 15.0 }, 7);
        let engine = Engine::new(world, EngineConfig::default());
        let build_s = t.elapsed().as_secs_f64();
        let rss_mb = common::rss_bytes().saturating_sub(rss0) as f64 / 1e6;
        let cmd = common::quake(38.5, 70.0, 7.2);
        let mut last = None;
        let secs = {
            let mut times = Vec::new();
            for _ in 0..5 {
                let mut e = engine.clone();
                let s = Instant::now();
                let deltas = e.apply(&cmd, "bench", 0);
                times.push(s.elapsed().as_secs_f64());
                last = Some((e, deltas));
            }
            times.sort_by(f64::total_cmp);
            times[2]
        };
        let (e, deltas) = last.unwrap_or_else(|| unreachable!());
        let tasks = deltas.map(|d| d.iter().filter(|x| matches!(x, Delta::Task(_))).count()).unwrap_or(0);
        let total = e.allocation_update(0).summary.total;
        println!(
            "| {villages} | 1000 | {teams} | {build_s:.2} | {rss_mb:.0} | {} | {} | {} | {tasks} | {:.1} |",
            total.villages,
            total.displaced,
            total.placed,
            secs * 1000.0
        );
        drop(e);
        drop(engine);
    }
}
