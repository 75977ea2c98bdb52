//! Allocation benchmarks: the successive-shortest-path allocator, its warm
//! start after a one-site change, and the exact reference solver on the same
//! seeded instances.
//!
//! Instances look like a large earthquake in Tajikistan: villages clustered
//! around 30 centres (Gaussian spread of 30 km) in a 600 × 400 km box around
//! 38.5°N 70°E, 10 to 2,000 displaced people each (heavy-tailed), sites at
//! villages, and either tight room (80% of the demand, so there is contention
//! and a shortfall) or loose room (200%). Demands come in a random priority
//! order. The quality gap (eoc cost / exact cost − 1), whether the served
//! vectors agree, and one-shot wall-clock times are printed once per
//! instance; a small 1,000 × 60 instance is included so the tight case has
//! criterion figures too.
//!
//! Run with `cargo bench -p eoc-server --bench allocation`.

// `criterion_group!` defines a public function without a doc comment.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use eoc_server::core::allocation::{AllocParams, Allocation, Demand, Supply, allocate, exact, reallocate};
use eoc_server::core::geo::LatLon;
use eoc_server::core::world::{SiteIdx, VillageIdx};

/// SplitMix64: tiny, seedable and good enough for test data.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let u = self.unit().max(1e-300);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

struct Instance {
    demands: Vec<Demand>,
    supplies: Vec<Supply>,
}

const KM_PER_DEG_LAT: f64 = 111.2;

fn instance(villages: usize, sites: usize, room_ratio: f64, seed: u64) -> Instance {
    let mut rng = Rng(seed);
    let (lat0, lon0) = (38.5f64, 70.0f64);
    let km_per_deg_lon = KM_PER_DEG_LAT * lat0.to_radians().cos();
    let (half_lat, half_lon) = (200.0 / KM_PER_DEG_LAT, 300.0 / km_per_deg_lon);
    let centres: Vec<(f64, f64)> = (0..30)
        .map(|_| (lat0 + (2.0 * rng.unit() - 1.0) * half_lat, lon0 + (2.0 * rng.unit() - 1.0) * half_lon))
        .collect();
    let mut at = Vec::with_capacity(villages);
    let mut demands = Vec::with_capacity(villages);
    for i in 0..villages {
        let (clat, clon) = centres[(rng.next_u64() % 30) as usize];
        let lat = (clat + rng.normal() * 30.0 / KM_PER_DEG_LAT).clamp(lat0 - half_lat, lat0 + half_lat);
        let lon = (clon + rng.normal() * 30.0 / km_per_deg_lon).clamp(lon0 - half_lon, lon0 + half_lon);
        // Clamped into the box above, so always a valid coordinate.
        let Ok(p) = LatLon::new(lat, lon) else { continue };
        at.push(p);
        // Pareto with shape 1.1 from 10, capped at 2,000.
        let persons = (10.0 / (1.0 - rng.unit()).powf(1.0 / 1.1)).min(2_000.0) as u32;
        demands.push(Demand { village: VillageIdx(i as u32), at: p, persons });
    }
    // Random priority order (exposure does not follow the index).
    for i in (1..demands.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        demands.swap(i, j);
    }
    let total: f64 = demands.iter().map(|d| f64::from(d.persons)).sum();
    let weights: Vec<f64> = (0..sites).map(|_| 0.5 + rng.unit()).collect();
    let weight_sum: f64 = weights.iter().sum();
    let supplies = weights
        .iter()
        .enumerate()
        .map(|(j, w)| Supply {
            site: SiteIdx(j as u32),
            at: at[(rng.next_u64() % at.len() as u64) as usize],
            free: (room_ratio * total * w / weight_sum).round() as u32,
        })
        .collect();
    Instance { demands, supplies }
}

fn served(a: &Allocation, demands: &[Demand]) -> Vec<u64> {
    let mut by_village = std::collections::HashMap::new();
    for f in &a.flows {
        *by_village.entry(f.village).or_insert(0u64) += u64::from(f.persons);
    }
    demands.iter().map(|d| by_village.get(&d.village).copied().unwrap_or(0)).collect()
}

/// A copy of the sites with the busiest one's room scaled by `factor`: the
/// one-site change a capacity report makes.
fn one_site_change(inst: &Instance, base: &Allocation, factor: f64) -> Vec<Supply> {
    let mut load = vec![0u64; inst.supplies.len()];
    for f in &base.flows {
        load[f.site.get()] += u64::from(f.persons);
    }
    let busiest = (0..load.len()).max_by_key(|&j| load[j]).unwrap_or(0);
    let mut changed = inst.supplies.clone();
    changed[busiest].free = (f64::from(changed[busiest].free) * factor).round() as u32;
    changed
}

/// Wall-clock time of one call, for solves too slow for criterion's samples.
fn once<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

fn bench_instance(c: &mut Criterion, villages: usize, sites: usize, tight: bool) {
    let (label, ratio) = if tight { ("tight", 0.8) } else { ("loose", 2.0) };
    let name = format!("allocation/{villages}x{sites}/{label}");
    let inst = instance(villages, sites, ratio, 0x5EED ^ (villages as u64) ^ ((sites as u64) << 20));
    let params = AllocParams::default();
    let (cold, t_cold) = once(|| allocate(&inst.demands, &inst.supplies, &params));
    let (reference, t_exact) = once(|| exact::solve(&inst.demands, &inst.supplies, &params));
    let shrunk = one_site_change(&inst, &cold, 0.5);
    let grown = one_site_change(&inst, &cold, 1.5);
    let (warm_shrunk, t_warm_shrunk) = once(|| reallocate(&cold, &inst.demands, &shrunk, &params));
    let (cold_shrunk, t_cold_shrunk) = once(|| allocate(&inst.demands, &shrunk, &params));
    let (warm_grown, t_warm_grown) = once(|| reallocate(&cold, &inst.demands, &grown, &params));
    let (cold_grown, t_cold_grown) = once(|| allocate(&inst.demands, &grown, &params));
    let gap = |a: &Allocation, b: &Allocation| a.person_m() / b.person_m() - 1.0;
    let same = |a: &Allocation, b: &Allocation| {
        if served(a, &inst.demands) == served(b, &inst.demands) { "served equal" } else { "served DIFFERS" }
    };
    // Against the lexicographic optimum: demands served fewer persons than
    // there, those persons, and the rank of the first such demand.
    let behind = |a: &Allocation, best: &Allocation| {
        let (got, want) = (served(a, &inst.demands), served(best, &inst.demands));
        let short: Vec<usize> = (0..got.len()).filter(|&i| got[i] < want[i]).collect();
        let persons: u64 = short.iter().map(|&i| want[i] - got[i]).sum();
        match short.first() {
            Some(first) => format!(
                "{} demands served {persons} fewer than at the optimum, first at rank {first}",
                short.len()
            ),
            None => "no demand served fewer than at the optimum".to_string(),
        }
    };
    println!(
        "{name}: demand {} placed {} shortfall {}\n  \
         gap to exact {:+.2e} ({}; {}); warm vs cold after shrink {:+.2e} ({}), after growth {:+.2e} ({})\n  \
         one-shot: allocate {t_cold:?}, exact {t_exact:?}; shrink: reallocate {t_warm_shrunk:?} vs allocate \
         {t_cold_shrunk:?}; growth: reallocate {t_warm_grown:?} vs allocate {t_cold_grown:?}",
        inst.demands.iter().map(|d| u64::from(d.persons)).sum::<u64>(),
        cold.placed(),
        cold.shortfall_total(),
        gap(&cold, &reference),
        same(&cold, &reference),
        behind(&cold, &reference),
        gap(&warm_shrunk, &cold_shrunk),
        same(&warm_shrunk, &cold_shrunk),
        gap(&warm_grown, &cold_grown),
        same(&warm_grown, &cold_grown),
    );
    // Criterion needs at least ten samples; solves that take seconds are
    // reported by the one-shot line above only.
    if t_cold > Duration::from_secs(1) {
        println!("  (allocate takes over a second here: criterion samples skipped)");
        return;
    }
    let mut g = c.benchmark_group(name);
    g.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    g.bench_function("allocate", |b| {
        b.iter(|| allocate(black_box(&inst.demands), black_box(&inst.supplies), &params))
    });
    g.bench_function("reallocate/shrink_busiest_site", |b| {
        b.iter(|| reallocate(black_box(&cold), black_box(&inst.demands), black_box(&shrunk), &params))
    });
    g.bench_function("allocate/shrink_busiest_site", |b| {
        b.iter(|| allocate(black_box(&inst.demands), black_box(&shrunk), &params))
    });
    g.bench_function("reallocate/grow_busiest_site", |b| {
        b.iter(|| reallocate(black_box(&cold), black_box(&inst.demands), black_box(&grown), &params))
    });
    // A site reporting the room it had: nothing to change.
    g.bench_function("reallocate/unchanged", |b| {
        b.iter(|| reallocate(black_box(&cold), black_box(&inst.demands), black_box(&inst.supplies), &params))
    });
    if t_exact < Duration::from_secs(2) {
        g.sample_size(10).warm_up_time(Duration::from_millis(1)).measurement_time(Duration::from_secs(1));
        g.bench_function("exact", |b| {
            b.iter(|| exact::solve(black_box(&inst.demands), black_box(&inst.supplies), &params))
        });
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    // The tight 20,000 × 1,000 instance takes far longer than the rest
    // (tens of minutes with both solvers); it runs only on request.
    let huge_tight = std::env::var_os("EOC_BENCH_HUGE_TIGHT").is_some();
    for (villages, sites) in [(1_000, 60), (2_000, 120), (5_000, 300), (20_000, 1_000)] {
        for tight in [true, false] {
            if tight && villages == 20_000 && !huge_tight {
                println!("allocation/{villages}x{sites}/tight: skipped (set EOC_BENCH_HUGE_TIGHT=1)");
                continue;
            }
            bench_instance(c, villages, sites, tight);
        }
    }
}

criterion_group!(allocation, benches);
criterion_main!(allocation);
