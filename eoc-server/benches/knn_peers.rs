//! k-nearest queries: eoc's index against Redis `GEOSEARCH` and a
//! brute-force haversine scan, on the same seeded points, in the same run.
//!
//! Starts its own `redis-server` on a free loopback port (the machine's
//! own Redis is left alone), loads the points with pipelined `GEOADD`, and
//! queries it from 50 concurrent connections, as BENCH-PEERS.md describes.
//! eoc is measured single-threaded in process (queries per second per core).
//!
//! `cargo bench -p eoc-server --bench knn_peers`

#![allow(missing_docs)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use eoc_server::core::geo::LatLon;
use eoc_server::core::index::PointIndex;

const CLIENTS: usize = 50;
const REDIS_QUERIES: usize = 100_000;
const EOC_QUERIES: usize = 400_000;
const RADIUS_KM: f64 = 10.0;

struct Redis(Child, u16);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(6390)
}

fn start_redis() -> Option<Redis> {
    let port = free_port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(Redis(child, port));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

async fn redis_load(url: &str, points: &[LatLon]) -> redis::RedisResult<()> {
    let client = redis::Client::open(url)?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let _: () = redis::cmd("DEL").arg("pts").query_async(&mut con).await?;
    for (c, chunk) in points.chunks(10_000).enumerate() {
        let mut cmd = redis::cmd("GEOADD");
        cmd.arg("pts");
        for (i, p) in chunk.iter().enumerate() {
            cmd.arg(p.lon()).arg(p.lat()).arg(c * 10_000 + i);
        }
        let _: i64 = cmd.query_async(&mut con).await?;
    }
    Ok(())
}

/// Queries per second of `GEOSEARCH … BYRADIUS r km ASC COUNT k` from
/// `CLIENTS` connections, each sending one query at a time.
async fn redis_qps(url: &str, queries: &[LatLon], k: usize) -> redis::RedisResult<f64> {
    let client = redis::Client::open(url)?;
    let per = REDIS_QUERIES / CLIENTS;
    let mut cons = Vec::new();
    for _ in 0..CLIENTS {
        cons.push(client.get_multiplexed_async_connection().await?);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (c, mut con) in cons.into_iter().enumerate() {
        let qs: Vec<LatLon> = (0..per).map(|i| queries[(c * per + i) % queries.len()]).collect();
        tasks.push(tokio::spawn(async move {
            for q in qs {
                let _: Vec<String> = redis::cmd("GEOSEARCH")
                    .arg("pts")
                    .arg("FROMLONLAT")
                    .arg(q.lon())
                    .arg(q.lat())
                    .arg("BYRADIUS")
                    .arg(RADIUS_KM)
                    .arg("km")
                    .arg("ASC")
                    .arg("COUNT")
                    .arg(k)
                    .query_async(&mut con)
                    .await?;
            }
            Ok::<(), redis::RedisError>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| redis::RedisError::from(std::io::Error::other(e.to_string())))??;
    }
    Ok((per * CLIENTS) as f64 / start.elapsed().as_secs_f64())
}

/// Checks that Redis and eoc agree on the nearest point's distance.
async fn agreement(
    url: &str,
    index: &PointIndex<usize>,
    points: &[LatLon],
    queries: &[LatLon],
) -> (usize, usize) {
    let Ok(client) = redis::Client::open(url) else { return (0, 0) };
    let Ok(mut con) = client.get_multiplexed_async_connection().await else { return (0, 0) };
    let (mut same, mut checked) = (0, 0);
    for q in queries.iter().take(500) {
        let Ok(ids) = redis::cmd("GEOSEARCH")
            .arg("pts")
            .arg("FROMLONLAT")
            .arg(q.lon())
            .arg(q.lat())
            .arg("BYRADIUS")
            .arg(200)
            .arg("km")
            .arg("ASC")
            .arg("COUNT")
            .arg(1)
            .query_async::<Vec<usize>>(&mut con)
            .await
        else {
            continue;
        };
        let Some(&rid) = ids.first() else { continue };
        checked += 1;
        let ours = index.nearest(*q, 1)[0].1;
        // Redis stores 52-bit geohashes (about 0.6 m); same answer within 1 m.
        if (points[rid].distance_m(*q) - ours).abs() < 1.0 {
            same += 1;
        }
    }
    (same, checked)
}

fn eoc_qps(index: &PointIndex<usize>, queries: &[LatLon], k: usize) -> f64 {
    let secs = common::median_secs(3, || {
        for i in 0..EOC_QUERIES {
            std::hint::black_box(index.nearest(queries[i % queries.len()], k));
        }
    });
    EOC_QUERIES as f64 / secs
}

fn brute_qps(points: &[LatLon], queries: &[LatLon]) -> f64 {
    let n = 200;
    let secs = common::median_secs(3, || {
        for q in queries.iter().take(n) {
            std::hint::black_box(points.iter().map(|p| p.distance_m(*q)).fold(f64::INFINITY, f64::min));
        }
    });
    n as f64 / secs
}

fn main() {
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return eprintln!("no runtime: {e}"),
    };
    let redis = start_redis();
    if redis.is_none() {
        eprintln!("redis-server could not be started: Redis columns are left empty");
    }
    let url = redis.as_ref().map(|r| format!("redis://127.0.0.1:{}/", r.1));
    println!(
        "| points | k | eoc q/s (1 core) | Redis GEOSEARCH {RADIUS_KM} km q/s ({CLIENTS} clients) | eoc / Redis | brute force q/s | eoc / brute | Redis agrees |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    for (name, n) in [("uniform", 100_000usize), ("clustered", 100_000), ("clustered", 1_000_000)] {
        let points = if name == "uniform" { common::uniform(n, 1) } else { common::clustered(n, 2) };
        let queries = common::clustered(8192, 3);
        let index = PointIndex::bulk_load(points.iter().copied().enumerate());
        let loaded = match &url {
            Some(u) => rt.block_on(redis_load(u, &points)).is_ok(),
            None => false,
        };
        let agree = match (&url, loaded) {
            (Some(u), true) => {
                let (s, c) = rt.block_on(agreement(u, &index, &points, &queries));
                format!("{s}/{c}")
            }
            _ => "-".to_owned(),
        };
        let brute = brute_qps(&points, &queries);
        for k in [1usize, 10] {
            let ours = eoc_qps(&index, &queries, k);
            let theirs = match (&url, loaded) {
                (Some(u), true) => {
                    let mut runs: Vec<f64> =
                        (0..3).filter_map(|_| rt.block_on(redis_qps(u, &queries, k)).ok()).collect();
                    runs.sort_by(f64::total_cmp);
                    runs.get(runs.len() / 2).copied()
                }
                _ => None,
            };
            println!(
                "| {n} {name} | {k} | {ours:.0} | {} | {} | {} | {} | {agree} |",
                theirs.map_or("-".to_owned(), |t| format!("{t:.0}")),
                theirs.map_or("-".to_owned(), |t| format!("{:.1}×", ours / t)),
                if k == 1 { format!("{brute:.0}") } else { "-".to_owned() },
                if k == 1 { format!("{:.0}×", ours / brute) } else { "-".to_owned() },
            );
        }
    }
}
