//! Sustained ingest of team positions through the writer and the journal,
//! fsync on (WAL, `synchronous=FULL`), from many concurrent submitters.
//!
//! Criterion measures throughput (elements = messages); a second pass
//! prints the submit-to-acknowledgement latency p50/p99 at that load.
//!
//! A third, paced pass is the performance target's own measure: MQTT
//! position payloads (JSON bytes and topic, as a phone sends them) arrive
//! open-loop at a set rate, each is routed, parsed and validated by the
//! MQTT edge's own function and queued for the writer, and an acker awaits
//! the answers in order, as the MQTT connection does. Its latency is from
//! the moment a payload was due to arrive (so a stall delays every payload
//! behind it, not only the one in hand) to its answer: journalled with
//! fsync, applied to the index and its delta queued for fan-out. Rates are
//! `EOC_BENCH_INGEST_RATES` (default "50000 100000" per second), each for
//! `EOC_BENCH_INGEST_SECONDS` (default 5), after a warm-up of
//! `EOC_BENCH_INGEST_WARMUP` positions as fast as they are taken (default
//! 1.1 × `DEDUP_MAX`, so the deduplication set is at its full size). `EOC_BENCH_SNAPSHOT_EVERY` and
//! `EOC_BENCH_COMMIT_INTERVAL_MS` replace the shipped journal settings, and
//! `EOC_BENCH_INGEST_METRICS` prints the server's metrics after the paced
//! runs (the journal's commit times among them).
//!
//! `cargo bench -p eoc-server --bench ingest`

// Benchmark code: a panic is a failed run.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eoc_protocol::messages::{Envelope, TeamPositionMsg};
use eoc_server::bus::Readiness;
use eoc_server::bus::{Bus, Edge, Submission};
use eoc_server::config::JournalConfig;
use eoc_server::core::engine::{Command, Engine, EngineConfig};
use eoc_server::metrics::Metrics;
use eoc_server::mqtt::inbound;
use eoc_server::writer::{self, WriterMsg};

// The server's allocator, so the writer and journal run as they do there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Concurrent submitters (edge connections); each has one message in
/// flight, so this bounds the writer's batch size.
const SUBMITTERS: usize = 2048;
/// Messages per measured burst.
const BURST: usize = 20_000;

static NEXT: AtomicU64 = AtomicU64::new(0);

fn position(team_id: &str) -> Submission {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let ts = chrono::Utc::now();
    Submission {
        command: Command::TeamPosition(TeamPositionMsg {
            envelope: Envelope { v: 1, id: format!("b-{n}"), ts },
            team_id: Some(team_id.to_owned()),
            lat: 38.5 + (n % 1000) as f64 * 1e-4,
            lon: 68.7 + (n % 777) as f64 * 1e-4,
            accuracy_m: Some(5.0),
            at: Some(ts),
            battery_pct: Some(80.0),
            speed_mps: None,
            heading_deg: None,
            altitude_m: None,
        }),
        msg_id: Some(format!("b-{n}")),
        by: "bench".to_owned(),
        edge: Edge::Mqtt,
    }
}

/// The shipped journal settings, or `EOC_BENCH_SNAPSHOT_EVERY` and
/// `EOC_BENCH_COMMIT_INTERVAL_MS` in their place.
fn journal_config() -> JournalConfig {
    let mut c = JournalConfig::default();
    if let Ok(v) = std::env::var("EOC_BENCH_SNAPSHOT_EVERY") {
        c.snapshot_every = v.parse().unwrap();
    }
    if let Ok(v) = std::env::var("EOC_BENCH_COMMIT_INTERVAL_MS") {
        c.commit_interval_ms = v.parse().unwrap();
    }
    c
}

struct Running {
    bus: Bus,
    stop_tx: tokio::sync::mpsc::Sender<WriterMsg>,
    writer: std::thread::JoinHandle<()>,
    teams: Arc<Vec<String>>,
}

fn start(data: &Path) -> Running {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/scenarios/tajikistan");
    let (world, _) = eoc_server::scenario::load(&scenario).unwrap();
    let teams: Vec<String> = world.teams().iter().map(|t| t.id.clone()).collect();
    let engine = Engine::new(world, EngineConfig::default());
    let (bus, mut w) = writer::start(
        engine,
        data,
        &journal_config(),
        writer::FRAME_BUFFER,
        Arc::new(Metrics::default()),
        Arc::new(Readiness::default()),
    )
    .unwrap();
    let stop_tx = w.stopper().unwrap();
    let writer = std::thread::spawn(move || w.run().unwrap());
    Running { bus, stop_tx, writer, teams: Arc::new(teams) }
}

/// Sends `total` positions from [`SUBMITTERS`] tasks; returns the elapsed
/// time and every submit-to-ack latency.
async fn burst(r: &Running, total: usize) -> (Duration, Vec<Duration>) {
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(SUBMITTERS);
    for s in 0..SUBMITTERS {
        let bus = r.bus.clone();
        let teams = r.teams.clone();
        let n = total / SUBMITTERS + usize::from(s < total % SUBMITTERS);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(n);
            for k in 0..n {
                let team = &teams[(s * 31 + k) % teams.len()];
                let t = Instant::now();
                bus.submit(position(team)).await.unwrap();
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::with_capacity(total);
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    (started.elapsed(), all)
}

fn ingest(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let r = start(dir.path());
    // Frames go nowhere unless someone listens; a subscriber that drains
    // them keeps the fan-out cost in the measurement.
    let mut frames_rx = r.bus.subscribe();
    rt.spawn(async move { while frames_rx.recv().await.is_ok() || !frames_rx.is_empty() {} });

    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(BURST as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("durable_positions_2048_submitters", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += rt.block_on(burst(&r, BURST)).0;
            }
            total
        });
    });
    group.finish();

    let (elapsed, mut lat) = rt.block_on(burst(&r, 100_000));
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    let m = r.bus.metrics().render(0);
    let batches =
        m.lines().find(|l| l.starts_with("eoc_writer_batches_total ")).unwrap_or_default().to_owned();
    eprintln!(
        "ingest: {} durable positions in {:.2?} = {:.0} msg/s; submit-to-ack p50 {:.2?}, p99 {:.2?}; {batches}",
        lat.len(),
        elapsed,
        lat.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
    );
    rt.block_on(async { r.stop_tx.send(WriterMsg::Stop).await.unwrap() });
    r.writer.join().unwrap();
}

/// One paced run: `rate` payloads a second for `seconds`; prints what the
/// writer sustained and the due-to-answer latencies.
async fn paced(r: &Running, rate: u64, seconds: u64) {
    let total = (rate * seconds) as usize;
    let run = NEXT.fetch_add(1, Ordering::Relaxed);
    // The payloads, made before the clock starts: what a phone publishes.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let payloads: Vec<(String, String)> = (0..total)
        .map(|n| {
            let team = &r.teams[n % r.teams.len()];
            let (lat, lon) = (38.5 + (n % 1000) as f64 * 1e-4, 68.7 + (n % 777) as f64 * 1e-4);
            (
                format!("eoc/v1/teams/{team}/position"),
                format!(
                    r#"{{"v":1,"id":"p-{run}-{n}","ts":"{now}","lat":{lat:.6},"lon":{lon:.6},"accuracy_m":5,"at":"{now}","battery_pct":80}}"#
                ),
            )
        })
        .collect();
    let (ack_tx, mut ack_rx) = tokio::sync::mpsc::channel::<(Instant, eoc_server::bus::Queued)>(65_536);
    let acker = tokio::spawn(async move {
        let mut lat = Vec::with_capacity(total);
        while let Some((due, queued)) = ack_rx.recv().await {
            queued.answer().await.unwrap();
            lat.push(due.elapsed());
        }
        lat
    });
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = 0usize;
    while sent < total {
        tick.tick().await;
        // Everything due by now, each stamped with when it was due.
        let due_by = ((started.elapsed().as_secs_f64() * rate as f64) as usize + 1).min(total);
        while sent < due_by {
            let due = started + Duration::from_secs_f64(sent as f64 / rate as f64);
            let (topic, payload) = &payloads[sent];
            let route = inbound::route("eoc/v1", topic).unwrap();
            let submission = inbound::eoc_submission(route, payload.as_bytes(), chrono::Utc::now()).unwrap();
            ack_tx.send((due, r.bus.enqueue(submission).await.unwrap())).await.unwrap();
            sent += 1;
        }
    }
    drop(ack_tx);
    let mut lat = acker.await.unwrap();
    let elapsed = started.elapsed();
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    eprintln!(
        "ingest paced: offered {rate} msg/s for {seconds} s; {} durable in {:.2?} = {:.0} msg/s; \
         due-to-answer p50 {:.2?}, p99 {:.2?}, p99.9 {:.2?}, max {:.2?}",
        lat.len(),
        elapsed,
        lat.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        pct(0.999),
        pct(1.0),
    );
}

fn ingest_paced(_c: &mut Criterion) {
    let rates: Vec<u64> = std::env::var("EOC_BENCH_INGEST_RATES")
        .unwrap_or_else(|_| "50000 100000".to_owned())
        .split_whitespace()
        .map(|r| r.parse().unwrap())
        .collect();
    let seconds: u64 = std::env::var("EOC_BENCH_INGEST_SECONDS").map_or(5, |s| s.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let r = start(dir.path());
    let mut frames_rx = r.bus.subscribe();
    rt.spawn(async move { while frames_rx.recv().await.is_ok() || !frames_rx.is_empty() {} });
    // Sustained means past the warm-up: until the writer remembers
    // DEDUP_MAX message ids, its deduplication set grows by doubling, and
    // each doubling (tens of MB copied and rehashed at the end) stalls it.
    let warmup: usize = std::env::var("EOC_BENCH_INGEST_WARMUP")
        .map_or(writer::DEDUP_MAX + writer::DEDUP_MAX / 10, |s| s.parse().unwrap());
    if warmup > 0 {
        let (elapsed, _) = rt.block_on(burst(&r, warmup));
        eprintln!("ingest paced: warm-up of {warmup} positions in {elapsed:.2?}");
    }
    for rate in rates {
        rt.block_on(paced(&r, rate, seconds));
    }
    if std::env::var_os("EOC_BENCH_INGEST_METRICS").is_some() {
        eprintln!("{}", r.bus.metrics().render(0));
    }
    rt.block_on(async { r.stop_tx.send(WriterMsg::Stop).await.unwrap() });
    r.writer.join().unwrap();
}

criterion_group!(benches, ingest, ingest_paced);
criterion_main!(benches);
