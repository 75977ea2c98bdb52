//! `eoc-load nearest`: nearest-site queries over HTTP against eoc, and
//! `GEOSEARCH` against Redis, on the same site points and the same query
//! points, in one run.
//!
//! The sites are eoc's own (`GET /api/v1/sites`), loaded into Redis under
//! a key unique to the run (`GEOADD`), deleted at the end. The query points
//! are seeded and uniform over Tajikistan's bounding box. Each measurement
//! drives `--connections` keep-alive connections, each sending one request
//! at a time for `--duration-s` seconds after a warm-up; every answer is
//! checked (HTTP 200, a reply from Redis) and timed from the first byte
//! written to the last byte read.
//!
//! - eoc: `GET /api/v1/sites/nearest?lat=&lon=&k=`: the `k` nearest open
//!   sites with a free place, with their names, capacities and distances;
//! - Redis: `GEOSEARCH key FROMLONLAT lon lat BYRADIUS r m ASC COUNT k`:
//!   member names only, within `r` (Redis needs a radius), no filter.
//!
//! Redis measures distances on a sphere of 6,372,797.6 m and eoc on one of
//! 6,371,008.8 m, so the radius sent to Redis is scaled to cover the same
//! circle. Before timing, a sample of k = 1 answers of both is compared.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use eoc_server::core::geo::{EARTH_RADIUS_M, LatLon};
use hdrhistogram::Histogram;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Rng, histogram, http, proc_usage};

/// Tajikistan's bounding box (geoBoundaries ADM0, rounded outwards):
/// latitude 36.67–41.05° N, longitude 67.34–75.15° E.
const LAT_RANGE: (f64, f64) = (36.67, 41.05);
const LON_RANGE: (f64, f64) = (67.34, 75.15);

/// Radius of Redis's sphere (`geohash_helper.c`).
const REDIS_EARTH_RADIUS_M: f64 = 6_372_797.560_856;

/// Queries in the agreement check before the timed runs.
const AGREEMENT_QUERIES: usize = 200;

/// Answers further apart than this are a disagreement (Redis stores 52-bit
/// geohashes, about 0.6 m).
const AGREEMENT_TOLERANCE_M: f64 = 1.0;

/// `GEOADD` members per command while loading Redis.
const GEOADD_CHUNK: usize = 500;

/// Options of `eoc-load nearest`.
#[derive(Debug, Clone, clap::Args)]
pub struct NearestArgs {
    /// Redis, `HOST:PORT`.
    #[arg(long, default_value = "127.0.0.1:6379")]
    redis: String,
    /// Keep-alive connections to each server, each with one request in
    /// flight.
    #[arg(long, default_value_t = 50)]
    connections: usize,
    /// Values of k, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 10])]
    k: Vec<usize>,
    /// Radii of Redis's `GEOSEARCH … BYRADIUS`, metres, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [200_000.0f64, 50_000.0])]
    redis_radius_m: Vec<f64>,
    /// Seconds of warm-up before each timed run.
    #[arg(long, default_value_t = 1.0)]
    warmup_s: f64,
    /// Seeded query points, shared round-robin by the connections.
    #[arg(long, default_value_t = 100_000)]
    query_points: usize,
}

/// What the run needs besides the options.
pub struct Setup<'a> {
    /// eoc's HTTP address.
    pub http: &'a str,
    /// A bearer token.
    pub token: &'a str,
    /// Seconds per timed run.
    pub duration_s: u64,
    /// Seed of the query points.
    pub seed: u64,
    /// eoc's process id, for its CPU time.
    pub server_pid: Option<u32>,
}

/// One timed run's figures.
struct Measured {
    label: String,
    k: usize,
    answered: u64,
    /// Answers with fewer than `k` results.
    short: u64,
    elapsed_s: f64,
    latency: Histogram<u64>,
    /// CPU of the server measured (eoc or Redis) and of this generator, as
    /// a share of one core.
    server_cpu: Option<f64>,
    generator_cpu: Option<f64>,
}

/// A keep-alive HTTP/1.1 connection sending one GET at a time.
struct HttpConn {
    stream: TcpStream,
    buf: Vec<u8>,
    request: String,
}

impl HttpConn {
    async fn connect(addr: &str) -> anyhow::Result<HttpConn> {
        let stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(HttpConn { stream, buf: Vec::with_capacity(16 * 1024), request: String::with_capacity(256) })
    }

    /// `GET path`: the status and the body (valid until the next call).
    async fn get(&mut self, path: &str, token: &str) -> anyhow::Result<(u16, &[u8])> {
        self.request.clear();
        let _ = write!(
            self.request,
            "GET {path} HTTP/1.1\r\nHost: load\r\nAuthorization: Bearer {token}\r\n\r\n"
        );
        self.stream.write_all(self.request.as_bytes()).await?;
        self.buf.clear();
        let (status, head, length) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut response = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head) = response.parse(&self.buf)? {
                let length = response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse::<usize>().ok())
                    .context("an answer without Content-Length")?;
                break (response.code.unwrap_or(0), head, length);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                bail!("the server closed the connection");
            }
        };
        while self.buf.len() < head + length {
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                bail!("the server closed the connection mid-answer");
            }
        }
        Ok((status, &self.buf[head..head + length]))
    }
}

/// How many times `needle` occurs in `hay`.
fn occurrences(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

fn eoc_path(at: LatLon, k: usize) -> String {
    format!("/api/v1/sites/nearest?lat={:.6}&lon={:.6}&k={k}", at.lat(), at.lon())
}

fn geosearch(key: &str, at: LatLon, radius_m: f64, k: usize) -> redis::Cmd {
    let mut cmd = redis::cmd("GEOSEARCH");
    cmd.arg(key)
        .arg("FROMLONLAT")
        .arg(at.lon())
        .arg(at.lat())
        .arg("BYRADIUS")
        .arg(radius_m * REDIS_EARTH_RADIUS_M / EARTH_RADIUS_M)
        .arg("m")
        .arg("ASC")
        .arg("COUNT")
        .arg(k);
    cmd
}

/// The members of a `GEOSEARCH` reply.
fn members(reply: &redis::Value) -> Vec<String> {
    match reply {
        redis::Value::Array(items) => items
            .iter()
            .filter_map(|v| match v {
                redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Start and end of the timed part of a run.
#[derive(Clone, Copy)]
struct Window {
    from: Instant,
    until: Instant,
}

/// Per connection: answers in the window, short answers, latencies (µs).
type Tally = (u64, u64, Histogram<u64>);

/// Runs `connections` tasks of `one` (given the connection number and
/// request sequence; returns the answer's result count) through the
/// warm-up and the window, and gathers their tallies.
async fn drive<C, F, Fut>(cons: Vec<C>, k: usize, window: Window, one: F) -> anyhow::Result<Tally>
where
    C: Send + 'static,
    F: Fn(C, usize, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = anyhow::Result<(C, usize)>> + Send + 'static,
{
    let failed = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (c, con) in cons.into_iter().enumerate() {
        let one = one.clone();
        let failed = failed.clone();
        tasks.push(tokio::spawn(async move {
            let (mut answered, mut short, mut latency) = (0u64, 0u64, histogram());
            let mut con = Some(con);
            let mut seq = 0u64;
            loop {
                let t0 = Instant::now();
                if t0 >= window.until || failed.load(Ordering::Relaxed) {
                    break;
                }
                let Some(c_now) = con.take() else { break };
                let result = one(c_now, c, seq).await;
                let (back, found) = match result {
                    Ok(r) => r,
                    Err(err) => {
                        failed.store(true, Ordering::Relaxed);
                        return Err(err);
                    }
                };
                con = Some(back);
                seq += 1;
                if t0 >= window.from {
                    answered += 1;
                    short += u64::from(found < k);
                    let _ = latency.record((t0.elapsed().as_micros() as u64).max(1));
                }
            }
            Ok::<Tally, anyhow::Error>((answered, short, latency))
        }));
    }
    let mut total: Tally = (0, 0, histogram());
    for t in tasks {
        let (a, s, h) = t.await.context("a connection's task panicked")??;
        total.0 += a;
        total.1 += s;
        let _ = total.2.add(&h);
    }
    Ok(total)
}

/// CPU seconds of `pid` and of this process, now.
fn cpu_now(pid: Option<u32>) -> (Option<f64>, Option<f64>) {
    (pid.and_then(proc_usage).map(|u| u.0), proc_usage(std::process::id()).map(|u| u.0))
}

/// Runs one measurement: waits for the window, samples CPU at its edges.
async fn measure<C, F, Fut>(
    label: String,
    k: usize,
    cons: Vec<C>,
    pid: Option<u32>,
    timing: (Duration, Duration),
    one: F,
) -> anyhow::Result<Measured>
where
    C: Send + 'static,
    F: Fn(C, usize, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = anyhow::Result<(C, usize)>> + Send + 'static,
{
    let from = Instant::now() + timing.0;
    let window = Window { from, until: from + timing.1 };
    let run = tokio::spawn(drive(cons, k, window, one));
    tokio::time::sleep_until(window.from.into()).await;
    let before = cpu_now(pid);
    tokio::time::sleep_until(window.until.into()).await;
    let after = cpu_now(pid);
    let (answered, short, latency) = run.await.context("the run panicked")??;
    let elapsed_s = timing.1.as_secs_f64();
    let share = |a: Option<f64>, b: Option<f64>| Some((b? - a?) / elapsed_s);
    let m = Measured {
        label,
        k,
        answered,
        short,
        elapsed_s,
        latency,
        server_cpu: share(before.0, after.0),
        generator_cpu: share(before.1, after.1),
    };
    Ok(m)
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn row(m: &Measured) -> String {
    let pct = |x: Option<f64>| x.map_or("–".to_owned(), |x| format!("{:.0} %", x * 100.0));
    format!(
        "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
        m.k,
        m.label,
        m.answered as f64 / m.elapsed_s,
        ms(&m.latency, 0.5),
        ms(&m.latency, 0.99),
        ms(&m.latency, 0.999),
        m.latency.max() as f64 / 1000.0,
        pct(m.server_cpu),
        pct(m.generator_cpu),
        m.short,
    )
}

/// The Redis server's process id, from `INFO server`.
async fn redis_pid(con: &mut redis::aio::MultiplexedConnection) -> Option<u32> {
    let info: String = redis::cmd("INFO").arg("server").query_async(con).await.ok()?;
    info.lines().find_map(|l| l.strip_prefix("process_id:")).and_then(|p| p.trim().parse().ok())
}

async fn redis_connect(url: &str) -> anyhow::Result<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(url).context("the Redis address")?;
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
    client.get_multiplexed_async_connection_with_config(&config).await.context("connecting to Redis")
}

/// Runs every measurement and prints the table.
pub async fn run(setup: Setup<'_>, args: &NearestArgs) -> anyhow::Result<()> {
    if args.connections == 0 || args.k.iter().any(|&k| k == 0 || k > 100) {
        bail!("--connections must be at least 1 and every k within 1..100");
    }
    let (status, body) = http(setup.http, setup.token, "GET", "/api/v1/sites", "").await?;
    if status != 200 {
        bail!("GET /api/v1/sites answered {status}: {body}");
    }
    let sites: Vec<(String, LatLon)> = body["sites"]
        .as_array()
        .context("no sites")?
        .iter()
        .filter_map(|s| {
            Some((
                s["site_id"].as_str()?.to_owned(),
                LatLon::new(s["lat"].as_f64()?, s["lon"].as_f64()?).ok()?,
            ))
        })
        .collect();
    let mut rng = Rng(setup.seed);
    let queries: Arc<Vec<LatLon>> = Arc::new(
        (0..args.query_points.max(1))
            .filter_map(|_| {
                let lat = LAT_RANGE.0 + rng.next_f64() * (LAT_RANGE.1 - LAT_RANGE.0);
                let lon = LON_RANGE.0 + rng.next_f64() * (LON_RANGE.1 - LON_RANGE.0);
                LatLon::new(lat, lon).ok()
            })
            .collect(),
    );
    let url = format!("redis://{}/", args.redis);
    let mut admin = redis_connect(&url).await?;
    let key = format!("eoc-load:nearest:{}:{}", std::process::id(), chrono::Utc::now().timestamp_millis());
    for chunk in sites.chunks(GEOADD_CHUNK) {
        let mut cmd = redis::cmd("GEOADD");
        cmd.arg(&key);
        for (id, at) in chunk {
            cmd.arg(at.lon()).arg(at.lat()).arg(id);
        }
        let _: i64 = cmd.query_async(&mut admin).await.context("GEOADD")?;
    }
    let result = measure_all(&setup, args, &url, &key, &sites, queries, &mut admin).await;
    // The key goes whatever happened.
    let deleted: redis::RedisResult<i64> = redis::cmd("DEL").arg(&key).query_async(&mut admin).await;
    if let Err(err) = deleted {
        eprintln!("could not delete the Redis key {key}: {err}");
    }
    result
}

async fn measure_all(
    setup: &Setup<'_>,
    args: &NearestArgs,
    url: &str,
    key: &str,
    sites: &[(String, LatLon)],
    queries: Arc<Vec<LatLon>>,
    admin: &mut redis::aio::MultiplexedConnection,
) -> anyhow::Result<()> {
    let redis_pid = redis_pid(admin).await;
    let version: String = redis::cmd("INFO").arg("server").query_async(admin).await.unwrap_or_default();
    let version =
        version.lines().find_map(|l| l.strip_prefix("redis_version:")).unwrap_or("?").trim().to_owned();
    let max_radius = args.redis_radius_m.iter().copied().fold(0.0, f64::max);

    // The same answers: eoc's nearest site against Redis's, k = 1.
    let mut con = HttpConn::connect(setup.http).await?;
    let (mut agree, mut beyond) = (0, 0);
    let by_id: std::collections::HashMap<&str, LatLon> =
        sites.iter().map(|(id, at)| (id.as_str(), *at)).collect();
    for &at in queries.iter().take(AGREEMENT_QUERIES) {
        let (status, body) = con.get(&eoc_path(at, 1), setup.token).await?;
        if status != 200 {
            bail!("eoc answered {status}: {}", String::from_utf8_lossy(body));
        }
        let answer: Value = serde_json::from_slice(body)?;
        let eoc_m = answer["sites"][0]["distance_m"].as_f64();
        let reply: redis::Value = geosearch(key, at, max_radius, 1).query_async(admin).await?;
        let redis_m = members(&reply).first().and_then(|id| by_id.get(id.as_str())).map(|p| p.distance_m(at));
        match (eoc_m, redis_m) {
            (Some(a), Some(b)) if (a - b).abs() <= AGREEMENT_TOLERANCE_M => agree += 1,
            (Some(_), None) => beyond += 1,
            _ => {}
        }
    }
    drop(con);

    println!(
        "eoc-load nearest: {} sites, {} query points (seed {}) over Tajikistan's bounding box, {} connections each, \
         {} s per run after {} s of warm-up; Redis {version} key {key}",
        sites.len(),
        queries.len(),
        setup.seed,
        args.connections,
        setup.duration_s,
        args.warmup_s
    );
    println!(
        "agreement: eoc's nearest site equals Redis's ({:.0} km) in {agree} of {} queries with a site within \
         {:.0} km ({beyond} of {AGREEMENT_QUERIES} have none there)",
        max_radius / 1000.0,
        AGREEMENT_QUERIES - beyond,
        max_radius / 1000.0
    );
    println!();
    println!(
        "| k | server and query | q/s | p50 ms | p99 ms | p99.9 ms | max ms | server CPU (of a core) | generator CPU | answers with fewer than k |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let timing =
        (Duration::from_secs_f64(args.warmup_s.max(0.0)), Duration::from_secs(setup.duration_s.max(1)));
    let mut all = Vec::new();
    for &k in &args.k {
        let mut cons = Vec::with_capacity(args.connections);
        for _ in 0..args.connections {
            cons.push(HttpConn::connect(setup.http).await?);
        }
        let (q, token, n) = (queries.clone(), Arc::new(setup.token.to_owned()), args.connections);
        let eoc = measure(
            "eoc `GET /api/v1/sites/nearest` (open, with room)".to_owned(),
            k,
            cons,
            setup.server_pid,
            timing,
            move |mut con: HttpConn, c, seq| {
                let (q, token) = (q.clone(), token.clone());
                async move {
                    let at = q[(seq as usize * n + c) % q.len()];
                    let (status, body) = con.get(&eoc_path(at, k), &token).await?;
                    if status != 200 {
                        bail!("eoc answered {status}: {}", String::from_utf8_lossy(body));
                    }
                    let found = occurrences(body, b"\"site_id\"");
                    Ok((con, found))
                }
            },
        )
        .await?;
        println!("{}", row(&eoc));
        all.push(eoc);
        for &radius_m in &args.redis_radius_m {
            let mut cons = Vec::with_capacity(args.connections);
            for _ in 0..args.connections {
                cons.push(redis_connect(url).await?);
            }
            let (q, key) = (queries.clone(), Arc::new(key.to_owned()));
            let redis = measure(
                format!("Redis `GEOSEARCH … BYRADIUS {:.0} km ASC COUNT k`", radius_m / 1000.0),
                k,
                cons,
                redis_pid,
                timing,
                move |mut con: redis::aio::MultiplexedConnection, c, seq| {
                    let (q, key) = (q.clone(), key.clone());
                    async move {
                        let at = q[(seq as usize * n + c) % q.len()];
                        let reply: redis::Value =
                            geosearch(&key, at, radius_m, k).query_async(&mut con).await?;
                        let found = match &reply {
                            redis::Value::Array(items) => items.len(),
                            _ => 0,
                        };
                        Ok((con, found))
                    }
                },
            )
            .await?;
            println!("{}", row(&redis));
            all.push(redis);
        }
    }
    println!();
    for &k in &args.k {
        let of =
            |prefix: &str| all.iter().filter(|m| m.k == k && m.label.starts_with(prefix)).collect::<Vec<_>>();
        let (eoc, redis) = (of("eoc"), of("Redis"));
        let Some(eoc) = eoc.first() else { continue };
        for r in redis {
            let qps = |m: &Measured| m.answered as f64 / m.elapsed_s;
            println!(
                "k = {k}: eoc / {}: {:.2}× the queries per second, p99 {:.2} ms against {:.2} ms",
                r.label,
                qps(eoc) / qps(r).max(1e-9),
                ms(&eoc.latency, 0.99),
                ms(&r.latency, 0.99)
            );
        }
    }
    Ok(())
}
