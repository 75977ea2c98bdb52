//! In-process benchmarks of the core: k-nearest against a brute-force
//! haversine scan, and the full result (impact + allocation + dispatch) of
//! an M7.2 earthquake on synthetic worlds and on the Tajikistan scenario.
//!
//! `cargo bench -p eoc-server --bench core`

#![allow(missing_docs)]

mod common;

/// The server's allocator (`eoc-server/src/main.rs`), so that the full
/// result is measured as the server computes it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use eoc_server::core::engine::{Engine, EngineConfig};
use eoc_server::core::index::PointIndex;
use eoc_server::core::synthetic::{self, Shape};

fn knn(c: &mut Criterion) {
    for (name, points) in
        [("uniform", common::uniform(100_000, 1)), ("clustered", common::clustered(100_000, 2))]
    {
        let index = PointIndex::bulk_load(points.iter().copied().enumerate());
        let queries = common::uniform(4096, 3);
        let mut g = c.benchmark_group(format!("knn/1e5/{name}"));
        g.throughput(Throughput::Elements(1));
        for k in [1usize, 10] {
            let mut i = 0;
            g.bench_function(format!("eoc/k={k}"), |b| {
                b.iter(|| {
                    i = (i + 1) % queries.len();
                    black_box(index.nearest(queries[i], k))
                })
            });
        }
        let mut i = 0;
        g.sample_size(10);
        g.bench_function("brute_force/k=1", |b| {
            b.iter(|| {
                i = (i + 1) % queries.len();
                let q = queries[i];
                black_box(
                    points
                        .iter()
                        .enumerate()
                        .map(|(j, p)| (j, p.distance_m(q)))
                        .min_by(|a, b| a.1.total_cmp(&b.1)),
                )
            })
        });
        g.finish();
    }
}

fn full_result(c: &mut Criterion) {
    let mut g = c.benchmark_group("full_result");
    g.sample_size(20);
    // The Tajikistan scenario: M7.2 near Rasht (the 1949 Khait earthquake's area).
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/scenarios/tajikistan"));
    if let Ok((world, _)) = eoc_server::scenario::load(dir) {
        let engine = Engine::new(world, EngineConfig::default());
        let cmd = common::quake(39.2, 70.6, 7.2);
        g.bench_function("tajikistan/M7.2", |b| {
            b.iter_batched(
                || engine.clone(),
                |mut e| black_box(e.apply(&cmd, "bench", 0)),
                BatchSize::LargeInput,
            )
        });
    }
    for villages in [10_000usize, 100_000] {
        let world =
            synthetic::world(Shape { villages, sites: 1000, teams: 1000, clusters: 60, spread_km: 15.0 }, 7);
        let engine = Engine::new(world, EngineConfig::default());
        let cmd = common::quake(38.5, 70.0, 7.2);
        g.bench_function(format!("synthetic/{villages}v-1000s-1000t/M7.2"), |b| {
            b.iter_batched(
                || engine.clone(),
                |mut e| black_box(e.apply(&cmd, "bench", 0)),
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, knn, full_result);
criterion_main!(benches);
