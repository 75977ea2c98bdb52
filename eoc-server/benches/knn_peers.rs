//! k-nearest queries: eoc's index against Redis `GEOSEARCH` and a
//! brute-force haversine scan, on the same seeded points, in the same run.
//!
//! Starts its own `redis-server` on a free loopback port (the machine's
//! own Redis is left alone), loads the points with pipelined `GEOADD`, and
//! queries it from 50 concurrent connections, as BENCH-PEERS.md describes.
//! eoc is measured single-threaded in process (queries per second per core).
//!
//! Redis is given fewer queries at 10⁶ points (see [`redis_queries`]): each
//! 10 km circle then holds over a thousand points that Redis sorts, and
//! 3 runs of 100,000 queries per k would take over an hour at 10⁶ clustered
//! points. The table prints the count.
//!
//! `cargo bench -p eoc-server --bench knn_peers`
//!
//! `KNN_ROWS=1e6 cargo bench -p eoc-server --bench knn_peers` runs only the
//! 10⁶ rows (`KNN_ROWS=1e5,1e6` is the default).

#![allow(missing_docs)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use eoc_server::core::geo::LatLon;
use eoc_server::core::index::PointIndex;

const CLIENTS: usize = 50;
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(120);
const EOC_QUERIES: usize = 400_000;
const RADIUS_KM: f64 = 10.0;
/// Radius of the agreement check's fallback, for a query with no point
/// within `RADIUS_KM`.
const AGREEMENT_FALLBACK_KM: f64 = 200.0;

/// Redis queries per run for a set of `points` points: 100,000 up to 10⁵
/// points, 5,000 above. A multiple of `CLIENTS`.
fn redis_queries(points: usize) -> usize {
    if points <= 100_000 { 100_000 } else { 5_000 }
}

/// The point counts named by `KNN_ROWS` (comma-separated, `1e5`, `1e6` or
/// plain integers); both 10⁵ and 10⁶ when unset.
fn rows_wanted() -> Result<Vec<usize>, String> {
    let Ok(spec) = std::env::var("KNN_ROWS") else { return Ok(vec![100_000, 1_000_000]) };
    spec.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| match t {
            "1e5" => Ok(100_000),
            "1e6" => Ok(1_000_000),
            _ => t.replace('_', "").parse::<usize>().map_err(|_| format!("KNN_ROWS: cannot read {t:?}")),
        })
        .collect()
}

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

/// A connection whose replies may take up to `RESPONSE_TIMEOUT`. The
/// client's default of 500 ms is too short at 10⁶ clustered points: each of
/// the 50 clients' queries waits behind the others', which are slow to sort.
async fn connect(client: &redis::Client) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(RESPONSE_TIMEOUT));
    client.get_multiplexed_async_connection_with_config(&config).await
}

async fn redis_load(url: &str, points: &[LatLon]) -> redis::RedisResult<()> {
    let client = redis::Client::open(url)?;
    let mut con = connect(&client).await?;
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
async fn redis_qps(url: &str, queries: &[LatLon], k: usize, total: usize) -> redis::RedisResult<f64> {
    let client = redis::Client::open(url)?;
    let per = total / CLIENTS;
    let mut cons = Vec::new();
    for _ in 0..CLIENTS {
        cons.push(connect(&client).await?);
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

/// Redis's nearest point to `q` within `radius_km`, if any.
async fn redis_nearest(
    con: &mut redis::aio::MultiplexedConnection,
    q: LatLon,
    radius_km: f64,
) -> redis::RedisResult<Option<usize>> {
    let ids: Vec<usize> = redis::cmd("GEOSEARCH")
        .arg("pts")
        .arg("FROMLONLAT")
        .arg(q.lon())
        .arg(q.lat())
        .arg("BYRADIUS")
        .arg(radius_km)
        .arg("km")
        .arg("ASC")
        .arg("COUNT")
        .arg(1)
        .query_async(con)
        .await?;
    Ok(ids.first().copied())
}

/// Checks that Redis and eoc agree on the nearest point's distance. Redis
/// is asked within `RADIUS_KM` first (the nearest point, when there is one
/// that close), then within `AGREEMENT_FALLBACK_KM`: a 200 km circle holds
/// a large share of 10⁶ points, which Redis sorts on every query.
async fn agreement(
    url: &str,
    index: &PointIndex<usize>,
    points: &[LatLon],
    queries: &[LatLon],
) -> (usize, usize) {
    let Ok(client) = redis::Client::open(url) else { return (0, 0) };
    let Ok(mut con) = connect(&client).await else { return (0, 0) };
    let (mut same, mut checked) = (0, 0);
    for q in queries.iter().take(500) {
        let found = match redis_nearest(&mut con, *q, RADIUS_KM).await {
            Ok(None) => redis_nearest(&mut con, *q, AGREEMENT_FALLBACK_KM).await,
            other => other,
        };
        let Ok(Some(rid)) = found else { continue };
        let Some(p) = points.get(rid) else { continue };
        checked += 1;
        let ours = index.nearest(*q, 1)[0].1;
        // Redis stores 52-bit geohashes (about 0.6 m); same answer within 1 m.
        if (p.distance_m(*q) - ours).abs() < 1.0 {
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
    let sizes = match rows_wanted() {
        Ok(s) => s,
        Err(e) => return eprintln!("{e}"),
    };
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
        "| points | k | eoc q/s (1 core) | Redis GEOSEARCH {RADIUS_KM} km q/s ({CLIENTS} clients) | Redis queries per run | eoc / Redis | brute force q/s | eoc / brute | Redis agrees |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---|");
    let rows = sizes.iter().flat_map(|&n| [("uniform", n), ("clustered", n)]);
    for (name, n) in rows {
        let total = redis_queries(n);
        let points = if name == "uniform" { common::uniform(n, 1) } else { common::clustered(n, 2) };
        let queries = common::clustered(8192, 3);
        let index = PointIndex::bulk_load(points.iter().copied().enumerate());
        let loaded = match &url {
            Some(u) => match rt.block_on(redis_load(u, &points)) {
                Ok(()) => true,
                Err(e) => {
                    eprintln!("{n} {name}: loading Redis failed: {e}");
                    false
                }
            },
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
                    let mut runs: Vec<f64> = (0..3)
                        .filter_map(|_| {
                            rt.block_on(redis_qps(u, &queries, k, total))
                                .inspect_err(|e| eprintln!("{n} {name} k={k}: Redis run failed: {e}"))
                                .ok()
                        })
                        .collect();
                    runs.sort_by(f64::total_cmp);
                    runs.get(runs.len() / 2).copied()
                }
                _ => None,
            };
            println!(
                "| {n} {name} | {k} | {ours:.0} | {} | {} | {} | {} | {} | {agree} |",
                theirs.map_or("-".to_owned(), |t| format!("{t:.0}")),
                if theirs.is_some() { format!("{total}") } else { "-".to_owned() },
                theirs.map_or("-".to_owned(), |t| format!("{:.1}×", ours / t)),
                if k == 1 { format!("{brute:.0}") } else { "-".to_owned() },
                if k == 1 { format!("{:.0}×", ours / brute) } else { "-".to_owned() },
            );
        }
    }
}
