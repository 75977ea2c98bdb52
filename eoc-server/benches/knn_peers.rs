//! eoc's spatial index against its peers on the same seeded points, in the
//! same run: k-nearest (k = 1 and 10), every point within 10 km, and moving
//! a point. The peers are Redis (`GEOSEARCH`, `GEOADD`), PostGIS (`<->`,
//! `ST_DWithin` and `UPDATE` on `geography` with a GiST index) and, for
//! k-nearest, a brute-force haversine scan.
//!
//! Redis: the benchmark starts its own `redis-server` on a free loopback
//! port (the machine's own Redis is left alone) and loads the points with
//! pipelined `GEOADD`. PostGIS: it connects to the PostgreSQL server named
//! by `KNN_PG` (default `host=127.0.0.1 port=5432 user=postgres dbname=test`),
//! creates the database `eoc_knn_bench` with the `postgis` extension, and
//! drops it at the end. A peer whose service is absent is skipped, with the
//! reason on stderr, and its columns are left empty.
//!
//! Both peers are driven from 50 concurrent connections, as BENCH-PEERS.md
//! describes, each sending one request at a time (position updates to Redis
//! are pipelined, `REDIS_PIPELINE` per round trip). A peer measurement is the
//! median of 3 runs of `KNN_PEER_SECS` seconds (default 5) each, so slow
//! peers at 10⁶ points do not stretch the run. eoc is measured in process on
//! one thread (operations per second per core).
//!
//! Distances: eoc measures great-circle metres on a sphere of radius
//! 6,371,008.8 m; PostGIS's `geography` `<->` and `ST_DWithin(…, false)` use
//! a sphere of the WGS84 mean radius (the same to a few centimetres), so
//! their answers are eoc's. Redis measures on a sphere of 6,372,797.6 m, so
//! its radius argument is scaled to cover the same circle. Each peer's
//! answers are checked against eoc's on a sample of queries.
//!
//! `cargo bench -p eoc-server --bench knn_peers`
//!
//! `KNN_ROWS=1e6 cargo bench -p eoc-server --bench knn_peers` runs only the
//! 10⁶ rows (`KNN_ROWS=1e5,1e6` is the default).

#![allow(missing_docs)]

mod common;

use std::collections::HashSet;
use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eoc_server::core::geo::{EARTH_RADIUS_M, LatLon};
use eoc_server::core::index::PointIndex;
use tokio_postgres::{Client, NoTls, Statement};

const CLIENTS: usize = 50;
const RUNS: usize = 3;
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(120);
const EOC_QUERIES: usize = 400_000;
const EOC_MOVES: usize = 400_000;
const RADIUS_M: f64 = 10_000.0;
/// Radius of the k-nearest agreement check's fallback, for a query with no
/// point within `RADIUS_M`.
const AGREEMENT_FALLBACK_M: f64 = 200_000.0;
/// Queries in each agreement check.
const AGREEMENT_QUERIES: usize = 500;
const RADIUS_AGREEMENT_QUERIES: usize = 200;
/// Points closer than this to the circle's edge may fall either way (Redis
/// stores 52-bit geohashes, about 0.6 m) and are left out of the radius
/// agreement check.
const EDGE_BAND_M: f64 = 1.0;
/// `GEOADD` commands per pipelined round trip, per Redis connection.
const REDIS_PIPELINE: usize = 16;
/// Radius of Redis's sphere (`geohash_helper.c`).
const REDIS_EARTH_RADIUS_M: f64 = 6_372_797.560_856;
/// How far a moved point lands from its original place, at most, metres.
const MOVE_JITTER_M: f64 = 500.0;
const PG_DATABASE: &str = "eoc_knn_bench";

/// Redis's radius argument for a circle of `radius_m` great-circle metres
/// on eoc's sphere.
fn redis_radius_m(radius_m: f64) -> f64 {
    radius_m * REDIS_EARTH_RADIUS_M / EARTH_RADIUS_M
}

/// eoc's in-process query count per run for within-radius queries: a 10 km
/// circle holds about ten times as many points at 10⁶.
fn eoc_radius_queries(points: usize) -> usize {
    if points <= 100_000 { 100_000 } else { 20_000 }
}

/// Length of one peer run (`KNN_PEER_SECS`, default 5 s).
fn peer_run() -> Duration {
    let secs = std::env::var("KNN_PEER_SECS").ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(5.0);
    Duration::from_secs_f64(secs.clamp(0.5, 600.0))
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

/// A hash of two numbers (splitmix64), for moves that every system sees
/// in the same order.
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_add(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `seq`-th move of client `client`: which point, and where to. Each
/// client moves only its own points (`id % CLIENTS == client`), so PostGIS
/// rows are not contended; a point lands within `MOVE_JITTER_M` of its
/// original place.
fn movement(points: &[LatLon], client: usize, seq: u64) -> (usize, LatLon) {
    let h = mix(client as u64, seq);
    let per = (points.len() / CLIENTS).max(1);
    let id = ((h % per as u64) as usize * CLIENTS + client).min(points.len() - 1);
    let p = points[id];
    let unit = |bits: u64| (bits & 0xFFFF) as f64 / 65_535.0 * 2.0 - 1.0;
    let dlat = unit(h >> 16) * MOVE_JITTER_M / 111_195.0;
    let dlon = unit(h >> 32) * MOVE_JITTER_M / (111_195.0 * p.lat().to_radians().cos().max(0.01));
    (id, common::ll(p.lat() + dlat, p.lon() + dlon))
}

/// The median of `RUNS` runs of `run`, each reporting operations per
/// second; failed runs are reported on stderr and left out.
fn median_of_runs(
    rt: &tokio::runtime::Runtime,
    what: &str,
    mut run: impl AsyncFnMut() -> Result<f64, String>,
) -> Option<f64> {
    let mut ok: Vec<f64> = (0..RUNS)
        .filter_map(|_| rt.block_on(run()).inspect_err(|e| eprintln!("{what}: run failed: {e}")).ok())
        .collect();
    ok.sort_by(f64::total_cmp);
    ok.get(ok.len() / 2).copied()
}

/// Runs `op` from every connection until `peer_run()` has passed, each
/// connection one request at a time; returns operations per second. `op`
/// gets the connection, the client's number and its request sequence, and
/// returns how many operations the request carried.
async fn drive<C, F, Fut>(cons: &[C], op: F) -> Result<f64, String>
where
    C: Clone + Send + 'static,
    F: Fn(C, usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<u64, String>> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let deadline = start + peer_run();
    let mut tasks = Vec::new();
    for (c, con) in cons.iter().cloned().enumerate() {
        let op = Arc::clone(&op);
        tasks.push(tokio::spawn(async move {
            let (mut done, mut seq) = (0u64, 0u64);
            while Instant::now() < deadline {
                done += op(con.clone(), c, seq).await?;
                seq += 1;
            }
            Ok::<u64, String>(done)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.map_err(|e| e.to_string())??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// The query point for request `seq` of client `client`.
fn query_for(queries: &[LatLon], client: usize, seq: u64) -> LatLon {
    queries[(seq as usize * CLIENTS + client) % queries.len()]
}

// ---------------------------------------------------------------- Redis

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

fn start_redis() -> Result<Redis, String> {
    let port = free_port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start redis-server: {e}"))?;
    let redis = Redis(child, port);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(redis);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("redis-server did not listen on port {port} within 10 s"))
}

type RedisCon = redis::aio::MultiplexedConnection;

/// A connection whose replies may take up to `RESPONSE_TIMEOUT`. The
/// client's default of 500 ms is too short at 10⁶ clustered points: each of
/// the 50 clients' queries waits behind the others', which are slow to sort.
async fn redis_connect(url: &str) -> Result<RedisCon, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(RESPONSE_TIMEOUT));
    client.get_multiplexed_async_connection_with_config(&config).await.map_err(|e| e.to_string())
}

async fn redis_connections(url: &str) -> Result<Vec<RedisCon>, String> {
    let mut cons = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        cons.push(redis_connect(url).await?);
    }
    Ok(cons)
}

async fn redis_load(url: &str, points: &[LatLon]) -> Result<(), String> {
    let mut con = redis_connect(url).await?;
    let _: () = redis::cmd("DEL").arg("pts").query_async(&mut con).await.map_err(|e| e.to_string())?;
    for (c, chunk) in points.chunks(10_000).enumerate() {
        let mut cmd = redis::cmd("GEOADD");
        cmd.arg("pts");
        for (i, p) in chunk.iter().enumerate() {
            cmd.arg(p.lon()).arg(p.lat()).arg(c * 10_000 + i);
        }
        let _: i64 = cmd.query_async(&mut con).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// `GEOSEARCH pts FROMLONLAT … BYRADIUS r m`, nearest first and at most `k`
/// when `k` is given.
async fn redis_search(
    con: &mut RedisCon,
    q: LatLon,
    radius_m: f64,
    k: Option<usize>,
) -> Result<Vec<usize>, String> {
    let mut cmd = redis::cmd("GEOSEARCH");
    cmd.arg("pts")
        .arg("FROMLONLAT")
        .arg(q.lon())
        .arg(q.lat())
        .arg("BYRADIUS")
        .arg(redis_radius_m(radius_m))
        .arg("m");
    if let Some(k) = k {
        cmd.arg("ASC").arg("COUNT").arg(k);
    }
    cmd.query_async(con).await.map_err(|e| e.to_string())
}

/// k-nearest queries per second: `GEOSEARCH … BYRADIUS 10 km ASC COUNT k`.
async fn redis_knn_qps(url: &str, queries: Arc<Vec<LatLon>>, k: usize) -> Result<f64, String> {
    let cons = redis_connections(url).await?;
    drive(&cons, move |mut con, c, seq| {
        let q = query_for(&queries, c, seq);
        async move { redis_search(&mut con, q, RADIUS_M, Some(k)).await.map(|_| 1) }
    })
    .await
}

/// Within-radius queries per second: `GEOSEARCH … BYRADIUS 10 km`, unsorted.
async fn redis_radius_qps(url: &str, queries: Arc<Vec<LatLon>>) -> Result<f64, String> {
    let cons = redis_connections(url).await?;
    drive(&cons, move |mut con, c, seq| {
        let q = query_for(&queries, c, seq);
        async move { redis_search(&mut con, q, RADIUS_M, None).await.map(|_| 1) }
    })
    .await
}

/// Position updates per second: `GEOADD pts lon lat id` of an existing
/// member, `REDIS_PIPELINE` per round trip.
async fn redis_move_ops(url: &str, points: Arc<Vec<LatLon>>) -> Result<f64, String> {
    let cons = redis_connections(url).await?;
    drive(&cons, move |mut con, c, seq| {
        let mut pipe = redis::pipe();
        for j in 0..REDIS_PIPELINE as u64 {
            let (id, to) = movement(&points, c, seq * REDIS_PIPELINE as u64 + j);
            pipe.cmd("GEOADD").arg("pts").arg(to.lon()).arg(to.lat()).arg(id).ignore();
        }
        async move {
            let () = pipe.query_async(&mut con).await.map_err(|e| e.to_string())?;
            Ok(REDIS_PIPELINE as u64)
        }
    })
    .await
}

/// Checks that Redis and eoc agree on the nearest point's distance. Redis
/// is asked within `RADIUS_M` first (the nearest point, when there is one
/// that close), then within `AGREEMENT_FALLBACK_M`: a 200 km circle holds
/// a large share of 10⁶ points, which Redis sorts on every query.
async fn redis_knn_agreement(
    url: &str,
    index: &PointIndex<usize>,
    points: &[LatLon],
    queries: &[LatLon],
) -> Result<(usize, usize), String> {
    let mut con = redis_connect(url).await?;
    let (mut same, mut checked) = (0, 0);
    for q in queries.iter().take(AGREEMENT_QUERIES) {
        let mut found = redis_search(&mut con, *q, RADIUS_M, Some(1)).await?;
        if found.is_empty() {
            found = redis_search(&mut con, *q, AGREEMENT_FALLBACK_M, Some(1)).await?;
        }
        let Some(p) = found.first().and_then(|&id| points.get(id)) else { continue };
        checked += 1;
        let ours = index.nearest(*q, 1)[0].1;
        // Redis stores 52-bit geohashes (about 0.6 m); same answer within 1 m.
        if (p.distance_m(*q) - ours).abs() < 1.0 {
            same += 1;
        }
    }
    Ok((same, checked))
}

/// Whether a peer's set of points within `RADIUS_M` of `q` is eoc's, apart
/// from points within `EDGE_BAND_M` of the edge.
fn same_circle(index: &PointIndex<usize>, points: &[LatLon], q: LatLon, theirs: &[usize]) -> bool {
    let clear =
        |id: &usize| points.get(*id).is_some_and(|p| (p.distance_m(q) - RADIUS_M).abs() >= EDGE_BAND_M);
    let ours: HashSet<usize> = index.within(q, RADIUS_M).map(|(id, _)| id).filter(clear).collect();
    let theirs: HashSet<usize> = theirs.iter().copied().filter(clear).collect();
    ours == theirs
}

async fn redis_radius_agreement(
    url: &str,
    index: &PointIndex<usize>,
    points: &[LatLon],
    queries: &[LatLon],
) -> Result<(usize, usize), String> {
    let mut con = redis_connect(url).await?;
    let mut same = 0;
    for q in queries.iter().take(RADIUS_AGREEMENT_QUERIES) {
        let theirs = redis_search(&mut con, *q, RADIUS_M, None).await?;
        same += usize::from(same_circle(index, points, *q, &theirs));
    }
    Ok((same, RADIUS_AGREEMENT_QUERIES.min(queries.len())))
}

// ---------------------------------------------------------------- PostGIS

/// The PostgreSQL server and the benchmark's own database on it.
struct Pg {
    admin: Client,
    bench: tokio_postgres::Config,
}

/// One connection with its prepared statements.
struct PgCon {
    client: Client,
    knn: Statement,
    within: Statement,
    update: Statement,
}

const PG_POINT: &str = "ST_SetSRID(ST_MakePoint($1, $2), 4326)::geography";

/// A PostgreSQL error with the server's message, when it sent one.
fn pg_err(e: tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

async fn pg_connect(config: &tokio_postgres::Config) -> Result<Client, String> {
    let (client, connection) = config.connect(NoTls).await.map_err(pg_err)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("PostgreSQL connection: {e}");
        }
    });
    Ok(client)
}

/// Connects, creates `PG_DATABASE` afresh and the `postgis` extension in it.
async fn pg_start() -> Result<Pg, String> {
    let spec = std::env::var("KNN_PG")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_owned());
    let admin_config: tokio_postgres::Config = spec.parse().map_err(|e| format!("KNN_PG {spec:?}: {e}"))?;
    let admin =
        pg_connect(&admin_config).await.map_err(|e| format!("cannot connect to PostgreSQL ({spec}): {e}"))?;
    // One statement per call: neither may run inside a transaction block.
    for sql in [
        format!("DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)"),
        format!("CREATE DATABASE {PG_DATABASE}"),
    ] {
        admin.batch_execute(&sql).await.map_err(|e| format!("{sql}: {}", pg_err(e)))?;
    }
    let mut bench = admin_config.clone();
    bench.dbname(PG_DATABASE);
    let pg = Pg { admin, bench };
    let setup = async {
        let c = pg_connect(&pg.bench).await?;
        c.batch_execute("CREATE EXTENSION IF NOT EXISTS postgis")
            .await
            .map_err(|e| format!("no PostGIS: {}", pg_err(e)))?;
        let v: String = c.query_one("SELECT postgis_lib_version()", &[]).await.map_err(pg_err)?.get(0);
        eprintln!("PostGIS {v}");
        Ok::<(), String>(())
    };
    match setup.await {
        Ok(()) => Ok(pg),
        Err(e) => {
            pg_stop(pg).await;
            Err(e)
        }
    }
}

async fn pg_stop(pg: Pg) {
    if let Err(e) =
        pg.admin.batch_execute(&format!("DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")).await
    {
        eprintln!("could not drop database {PG_DATABASE}: {}", pg_err(e));
    }
}

/// Loads `points` as `pts (id, geog)` with a GiST index on `geog`.
async fn pg_load(pg: &Pg, points: &[LatLon]) -> Result<(), String> {
    let c = pg_connect(&pg.bench).await?;
    let e = pg_err;
    c.batch_execute(
        "DROP TABLE IF EXISTS pts; \
         CREATE TABLE pts (id int PRIMARY KEY, geog geography(Point, 4326) NOT NULL); \
         SET maintenance_work_mem = '512MB'",
    )
    .await
    .map_err(e)?;
    let insert = c
        .prepare(
            "INSERT INTO pts (id, geog) \
             SELECT $3::int + t.i::int - 1, ST_SetSRID(ST_MakePoint(t.lon, t.lat), 4326)::geography \
             FROM unnest($1::float8[], $2::float8[]) WITH ORDINALITY AS t(lon, lat, i)",
        )
        .await
        .map_err(e)?;
    for (c_i, chunk) in points.chunks(100_000).enumerate() {
        let lons: Vec<f64> = chunk.iter().map(|p| p.lon()).collect();
        let lats: Vec<f64> = chunk.iter().map(|p| p.lat()).collect();
        let first = i32::try_from(c_i * 100_000).map_err(|e| e.to_string())?;
        c.execute(&insert, &[&lons, &lats, &first]).await.map_err(e)?;
    }
    c.batch_execute("CREATE INDEX pts_geog ON pts USING gist (geog)").await.map_err(e)?;
    c.batch_execute("VACUUM ANALYZE pts").await.map_err(e)?;
    Ok(())
}

async fn pg_connections(pg: &Pg) -> Result<Vec<Arc<PgCon>>, String> {
    let e = pg_err;
    let mut cons = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let client = pg_connect(&pg.bench).await?;
        let knn = client
            .prepare(&format!("SELECT id FROM pts ORDER BY geog <-> {PG_POINT} LIMIT $3"))
            .await
            .map_err(e)?;
        let within = client
            .prepare(&format!("SELECT id FROM pts WHERE ST_DWithin(geog, {PG_POINT}, $3, false)"))
            .await
            .map_err(e)?;
        let update = client
            .prepare("UPDATE pts SET geog = ST_SetSRID(ST_MakePoint($1, $2), 4326)::geography WHERE id = $3")
            .await
            .map_err(e)?;
        cons.push(Arc::new(PgCon { client, knn, within, update }));
    }
    Ok(cons)
}

async fn pg_knn(con: &PgCon, q: LatLon, k: usize) -> Result<Vec<usize>, String> {
    let rows = con.client.query(&con.knn, &[&q.lon(), &q.lat(), &(k as i64)]).await.map_err(pg_err)?;
    Ok(rows.iter().map(|r| r.get::<_, i32>(0) as usize).collect())
}

async fn pg_within(con: &PgCon, q: LatLon, radius_m: f64) -> Result<Vec<usize>, String> {
    let rows = con.client.query(&con.within, &[&q.lon(), &q.lat(), &radius_m]).await.map_err(pg_err)?;
    Ok(rows.iter().map(|r| r.get::<_, i32>(0) as usize).collect())
}

async fn pg_knn_qps(cons: &[Arc<PgCon>], queries: Arc<Vec<LatLon>>, k: usize) -> Result<f64, String> {
    drive(cons, move |con, c, seq| {
        let q = query_for(&queries, c, seq);
        async move { pg_knn(&con, q, k).await.map(|_| 1) }
    })
    .await
}

async fn pg_radius_qps(cons: &[Arc<PgCon>], queries: Arc<Vec<LatLon>>) -> Result<f64, String> {
    drive(cons, move |con, c, seq| {
        let q = query_for(&queries, c, seq);
        async move { pg_within(&con, q, RADIUS_M).await.map(|_| 1) }
    })
    .await
}

/// Position updates per second: one `UPDATE` (its own transaction) per
/// request, with `synchronous_commit` set as given on every connection.
async fn pg_move_ops(
    cons: &[Arc<PgCon>],
    points: Arc<Vec<LatLon>>,
    synchronous_commit: bool,
) -> Result<f64, String> {
    let set = format!("SET synchronous_commit = {}", if synchronous_commit { "on" } else { "off" });
    for con in cons {
        con.client.batch_execute(&set).await.map_err(pg_err)?;
    }
    drive(cons, move |con, c, seq| {
        let (id, to) = movement(&points, c, seq);
        async move {
            let id = i32::try_from(id).map_err(|e| e.to_string())?;
            let n = con.client.execute(&con.update, &[&to.lon(), &to.lat(), &id]).await.map_err(pg_err)?;
            if n == 1 { Ok(1) } else { Err(format!("UPDATE of point {id} changed {n} rows")) }
        }
    })
    .await
}

/// How many sample queries PostGIS answers with eoc's k nearest distances
/// (within a millimetre), for k = 1 and k = 10.
async fn pg_knn_agreement(
    con: &PgCon,
    index: &PointIndex<usize>,
    points: &[LatLon],
    queries: &[LatLon],
) -> Result<[(usize, usize); 2], String> {
    let mut out = [(0, 0); 2];
    for (slot, k) in [1usize, 10].into_iter().enumerate() {
        for q in queries.iter().take(AGREEMENT_QUERIES) {
            let theirs: Vec<f64> = pg_knn(con, *q, k)
                .await?
                .iter()
                .filter_map(|&id| points.get(id))
                .map(|p| p.distance_m(*q))
                .collect();
            let ours: Vec<f64> = index.nearest(*q, k).iter().map(|&(_, d)| d).collect();
            let same =
                theirs.len() == ours.len() && theirs.iter().zip(&ours).all(|(a, b)| (a - b).abs() < 1e-3);
            out[slot].0 += usize::from(same);
            out[slot].1 += 1;
        }
    }
    Ok(out)
}

async fn pg_radius_agreement(
    con: &PgCon,
    index: &PointIndex<usize>,
    points: &[LatLon],
    queries: &[LatLon],
) -> Result<(usize, usize), String> {
    let mut same = 0;
    for q in queries.iter().take(RADIUS_AGREEMENT_QUERIES) {
        let theirs = pg_within(con, *q, RADIUS_M).await?;
        same += usize::from(same_circle(index, points, *q, &theirs));
    }
    Ok((same, RADIUS_AGREEMENT_QUERIES.min(queries.len())))
}

// ---------------------------------------------------------------- eoc

fn eoc_qps(index: &PointIndex<usize>, queries: &[LatLon], k: usize) -> f64 {
    let secs = common::median_secs(RUNS, || {
        for i in 0..EOC_QUERIES {
            std::hint::black_box(index.nearest(queries[i % queries.len()], k));
        }
    });
    EOC_QUERIES as f64 / secs
}

/// Within-radius queries per second, each collecting its points into a
/// reused vector, and the mean number of points found.
fn eoc_radius_qps(index: &PointIndex<usize>, queries: &[LatLon], n: usize) -> (f64, f64) {
    let mut found = Vec::new();
    let mut hits = 0usize;
    let secs = common::median_secs(RUNS, || {
        hits = 0;
        for i in 0..n {
            found.clear();
            found.extend(index.within(queries[i % queries.len()], RADIUS_M));
            hits += found.len();
            std::hint::black_box(&found);
        }
    });
    (n as f64 / secs, hits as f64 / n as f64)
}

/// Moves per second in eoc's index, as the world moves a team: remove at
/// the old place and re-insert at the new ([`PointIndex::relocate`]). The
/// moves are the peers', in the same order of clients.
fn eoc_move_ops(index: &mut PointIndex<usize>, points: &[LatLon]) -> f64 {
    let mut at = points.to_vec();
    let mut seq = 0u64;
    let secs = common::median_secs(RUNS, || {
        for i in 0..EOC_MOVES {
            let (id, to) = movement(points, i % CLIENTS, seq + (i / CLIENTS) as u64);
            index.relocate(id, at[id], to);
            at[id] = to;
        }
        seq += (EOC_MOVES / CLIENTS) as u64;
    });
    EOC_MOVES as f64 / secs
}

fn brute_qps(points: &[LatLon], queries: &[LatLon]) -> f64 {
    let n = 200;
    let secs = common::median_secs(RUNS, || {
        for q in queries.iter().take(n) {
            std::hint::black_box(points.iter().map(|p| p.distance_m(*q)).fold(f64::INFINITY, f64::min));
        }
    });
    n as f64 / secs
}

// ---------------------------------------------------------------- report

fn rate(x: Option<f64>) -> String {
    x.map_or("-".to_owned(), |x| format!("{x:.0}"))
}

fn ratio(ours: f64, theirs: Option<f64>) -> String {
    match theirs {
        Some(t) if t > 0.0 => format!("{:.1}×", ours / t),
        _ => "-".to_owned(),
    }
}

fn agrees(a: Option<(usize, usize)>) -> String {
    a.map_or("-".to_owned(), |(s, c)| format!("{s}/{c}"))
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
    let redis = start_redis().inspect_err(|e| eprintln!("Redis skipped: {e}")).ok();
    let url = redis.as_ref().map(|r| format!("redis://127.0.0.1:{}/", r.1));
    let pg = rt.block_on(pg_start()).inspect_err(|e| eprintln!("PostGIS skipped: {e}")).ok();
    let secs = peer_run().as_secs_f64();

    let mut knn_rows = Vec::new();
    let mut radius_rows = Vec::new();
    let mut move_rows = Vec::new();
    let sets = sizes.iter().flat_map(|&n| [("uniform", n), ("clustered", n)]);
    for (name, n) in sets {
        let label = format!("{n} {name}");
        eprintln!("{label}: loading");
        let points =
            Arc::new(if name == "uniform" { common::uniform(n, 1) } else { common::clustered(n, 2) });
        let queries = Arc::new(common::clustered(8192, 3));
        let mut index = PointIndex::bulk_load(points.iter().copied().enumerate());

        let redis_url = url.as_deref().filter(|u| {
            rt.block_on(redis_load(u, &points))
                .inspect_err(|e| eprintln!("{label}: loading Redis failed: {e}"))
                .is_ok()
        });
        let pg_cons = pg.as_ref().and_then(|pg| {
            let started = Instant::now();
            let cons = rt
                .block_on(async { pg_load(pg, &points).await.and(pg_connections(pg).await) })
                .inspect_err(|e| eprintln!("{label}: loading PostGIS failed: {e}"))
                .ok()?;
            eprintln!("{label}: PostGIS loaded and indexed in {:.0} s", started.elapsed().as_secs_f64());
            Some(cons)
        });

        // k-nearest
        eprintln!("{label}: k-nearest");
        let redis_agree = redis_url.and_then(|u| {
            rt.block_on(redis_knn_agreement(u, &index, &points, &queries))
                .inspect_err(|e| eprintln!("{label}: Redis agreement check failed: {e}"))
                .ok()
        });
        let pg_agree = pg_cons.as_ref().and_then(|cons| {
            rt.block_on(pg_knn_agreement(&cons[0], &index, &points, &queries))
                .inspect_err(|e| eprintln!("{label}: PostGIS agreement check failed: {e}"))
                .ok()
        });
        let brute = brute_qps(&points, &queries);
        for (slot, k) in [1usize, 10].into_iter().enumerate() {
            let ours = eoc_qps(&index, &queries, k);
            let redis_q = redis_url.and_then(|u| {
                median_of_runs(&rt, &format!("{label} Redis k={k}"), async || {
                    redis_knn_qps(u, Arc::clone(&queries), k).await
                })
            });
            let pg_q = pg_cons.as_ref().and_then(|cons| {
                median_of_runs(&rt, &format!("{label} PostGIS k={k}"), async || {
                    pg_knn_qps(cons, Arc::clone(&queries), k).await
                })
            });
            let first = slot == 0;
            knn_rows.push(format!(
                "| {label} | {k} | {ours:.0} | {} | {} | {} | {} | {} | {} | {} | {} |",
                rate(redis_q),
                ratio(ours, redis_q),
                if first { agrees(redis_agree) } else { "-".to_owned() },
                rate(pg_q),
                ratio(ours, pg_q),
                agrees(pg_agree.map(|a| a[slot])),
                if first { format!("{brute:.0}") } else { "-".to_owned() },
                if first { format!("{:.0}×", ours / brute) } else { "-".to_owned() },
            ));
            eprintln!("{}", knn_rows.last().map_or("", String::as_str));
        }

        // Every point within RADIUS_M.
        eprintln!("{label}: within {RADIUS_M} m");
        let (ours, hits) = eoc_radius_qps(&index, &queries, eoc_radius_queries(n));
        let redis_q = redis_url.and_then(|u| {
            median_of_runs(&rt, &format!("{label} Redis radius"), async || {
                redis_radius_qps(u, Arc::clone(&queries)).await
            })
        });
        let redis_agree = redis_url.and_then(|u| {
            rt.block_on(redis_radius_agreement(u, &index, &points, &queries))
                .inspect_err(|e| eprintln!("{label}: Redis radius check failed: {e}"))
                .ok()
        });
        let pg_q = pg_cons.as_ref().and_then(|cons| {
            median_of_runs(&rt, &format!("{label} PostGIS radius"), async || {
                pg_radius_qps(cons, Arc::clone(&queries)).await
            })
        });
        let pg_agree = pg_cons.as_ref().and_then(|cons| {
            rt.block_on(pg_radius_agreement(&cons[0], &index, &points, &queries))
                .inspect_err(|e| eprintln!("{label}: PostGIS radius check failed: {e}"))
                .ok()
        });
        radius_rows.push(format!(
            "| {label} | {hits:.0} | {ours:.0} | {} | {} | {} | {} | {} | {} |",
            rate(redis_q),
            ratio(ours, redis_q),
            agrees(redis_agree),
            rate(pg_q),
            ratio(ours, pg_q),
            agrees(pg_agree),
        ));
        eprintln!("{}", radius_rows.last().map_or("", String::as_str));

        // Position updates (last: they change every system's points).
        eprintln!("{label}: moves");
        let ours = eoc_move_ops(&mut index, &points);
        let redis_q = redis_url.and_then(|u| {
            median_of_runs(&rt, &format!("{label} Redis GEOADD"), async || {
                redis_move_ops(u, Arc::clone(&points)).await
            })
        });
        let pg_off = pg_cons.as_ref().and_then(|cons| {
            median_of_runs(&rt, &format!("{label} PostGIS UPDATE"), async || {
                pg_move_ops(cons, Arc::clone(&points), false).await
            })
        });
        let pg_on = pg_cons.as_ref().and_then(|cons| {
            median_of_runs(&rt, &format!("{label} PostGIS UPDATE"), async || {
                pg_move_ops(cons, Arc::clone(&points), true).await
            })
        });
        move_rows.push(format!(
            "| {label} | {ours:.0} | {} | {} | {} | {} | {} | {} |",
            rate(redis_q),
            ratio(ours, redis_q),
            rate(pg_off),
            ratio(ours, pg_off),
            rate(pg_on),
            ratio(ours, pg_on),
        ));
        eprintln!("{}", move_rows.last().map_or("", String::as_str));
    }
    if let Some(pg) = pg {
        rt.block_on(pg_stop(pg));
    }

    println!(
        "Peers: median of {RUNS} runs of {secs} s from {CLIENTS} connections; eoc: one thread, median of {RUNS} runs."
    );
    println!();
    println!(
        "| points | k | eoc q/s (1 core) | Redis GEOSEARCH 10 km q/s | eoc / Redis | Redis agrees | PostGIS <-> q/s | eoc / PostGIS | PostGIS agrees | brute force q/s | eoc / brute |"
    );
    println!("|---|---:|---:|---:|---:|---|---:|---:|---|---:|---:|");
    knn_rows.iter().for_each(|r| println!("{r}"));
    println!();
    println!(
        "| points | mean points within 10 km | eoc q/s (1 core) | Redis GEOSEARCH BYRADIUS q/s | eoc / Redis | Redis agrees | PostGIS ST_DWithin q/s | eoc / PostGIS | PostGIS agrees |"
    );
    println!("|---|---:|---:|---:|---:|---|---:|---:|---|");
    radius_rows.iter().for_each(|r| println!("{r}"));
    println!();
    println!(
        "| points | eoc moves/s (1 core) | Redis GEOADD/s (pipelined {REDIS_PIPELINE}) | eoc / Redis | PostGIS UPDATE/s, synchronous_commit off | eoc / PostGIS | PostGIS UPDATE/s, synchronous_commit on | eoc / PostGIS |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    move_rows.iter().for_each(|r| println!("{r}"));
}
