//! `eoc-load`: a load generator for a running eoc server.
//!
//! It plays phones (team positions over MQTT through the broker, or over
//! WebSocket), dashboards (N WebSocket clients that time every team delta)
//! and a chair (alerts, timed to the first frame each dashboard sees), for
//! a set time at a set rate, seeded so two runs send the same tracks. Every
//! second it prints a progress line; at the end it reports throughput,
//! latency percentiles and the server's CPU time and RSS (`--server-pid`).
//!
//! Latencies, all on this machine's clock (the server runs beside it):
//! - **ingest**: from the phone's send (the position's `at`) to a dashboard
//!   receiving the team delta: MQTT or WebSocket in, journal with fsync,
//!   apply, fan-out;
//! - **delivery**: from the server applying the change (`server_ts_ms`) to
//!   a dashboard receiving it: the fan-out alone;
//! - **alert**: from the chair's `POST /api/v1/alerts` to each dashboard's
//!   first frame of that alert.
//!
//! With `--peer HOST:PORT` the same dashboards connect to the naive
//! fan-out peer (`eoc-naive-fanout`) instead, and one phone sends it, at
//! the same rate, the team-delta frames eoc would publish (eoc's own team
//! views, read from `--http`, with the new position); the peer stamps each
//! with its clock, so *delivery* is again the fan-out alone.
//!
//! `eoc-load nearest` instead measures nearest-site queries over HTTP
//! against Redis `GEOSEARCH` on the same points (see `nearest.rs`).
//!
//! `benches/load.sh` starts mosquitto and the server and runs the
//! scenarios recorded in BENCHMARKS.md.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

mod nearest;

/// The same allocator as the server, so the generator takes as little of
/// the shared cores as it can.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How phones send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Via {
    /// MQTT QoS 1 through the broker (`eoc/v1/teams/{id}/position`).
    Mqtt,
    /// WebSocket `team_position` frames, each answered with an ack.
    Ws,
}

/// Load generator for eoc.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The server's HTTP address, `HOST:PORT`.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: String,
    /// Bearer token of a chair (reads, alerts, dashboards).
    #[arg(long)]
    token: String,
    /// How phones send.
    #[arg(long, value_enum, default_value = "mqtt")]
    via: Via,
    /// The broker, `HOST:PORT`.
    #[arg(long, default_value = "127.0.0.1:1883")]
    mqtt: String,
    /// Broker user allowed to publish every team's position (an operator).
    #[arg(long, default_value = "load-op")]
    mqtt_user: String,
    /// Its token.
    #[arg(long, default_value = "")]
    mqtt_password: String,
    /// Positions per second in all; 0 sends as fast as acknowledgements allow.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Phone connections (MQTT clients or WebSockets) sharing the rate.
    #[arg(long, default_value_t = 4)]
    phones: usize,
    /// Dashboards: WebSocket clients timing every delta.
    #[arg(long, default_value_t = 1)]
    dashboards: usize,
    /// Seconds to send for.
    #[arg(long, default_value_t = 10)]
    duration_s: u64,
    /// Alerts the chair issues during the run (evenly spaced), each timed
    /// to every dashboard's first frame of it.
    #[arg(long, default_value_t = 0)]
    alerts: u32,
    /// Magnitude of the chair's earthquakes (all under Dushanbe, 10 km
    /// deep): 6.0 affects 359 villages (an impact frame of ~200 KB), 4.5
    /// a handful.
    #[arg(long, default_value_t = 6.0)]
    alert_magnitude: f64,
    /// The server's process id, for its CPU time and RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Seed of the phones' tracks.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Measure the naive fan-out peer at `HOST:PORT` instead of eoc: the
    /// dashboards connect to it and one phone publishes team deltas to it
    /// (`--http` still gives the teams; `--server-pid` should be the
    /// peer's).
    #[arg(long)]
    peer: Option<String>,
    /// Another measurement instead of phones and dashboards.
    #[command(subcommand)]
    command: Option<Command>,
}

/// Measurements other than the default phones-and-dashboards run.
#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Nearest-site queries over HTTP against eoc and `GEOSEARCH` against
    /// Redis, on the same points, in one run.
    Nearest(nearest::NearestArgs),
}

/// Latencies in microseconds, up to a minute.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    acked: AtomicU64,
    deltas: AtomicU64,
    /// Every text frame the dashboards received.
    frames: AtomicU64,
}

struct Shared {
    args: Args,
    teams: Vec<(String, f64, f64)>,
    /// Each team's view as eoc serves it (the peer's frames are built on it).
    views: Vec<Value>,
    counters: Counters,
    ingest: Mutex<Histogram<u64>>,
    delivery: Mutex<Histogram<u64>>,
    alert: Mutex<Histogram<u64>>,
    /// Alert id → when it was posted (µs since the epoch).
    alerts_sent: std::sync::Mutex<Vec<(String, i64)>>,
    stop: AtomicBool,
    /// Cancelled a second after `stop`, when the last deltas have arrived.
    drained: CancellationToken,
    /// Makes this run's message ids unique (ms since the epoch at start): a
    /// server measured twice would drop a repeated id as a duplicate.
    run_id: i64,
    /// The largest frame any dashboard received, bytes.
    largest_frame: AtomicU64,
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// One HTTP/1.1 request; status and JSON body.
async fn http(addr: &str, token: &str, method: &str, path: &str, body: &str) -> anyhow::Result<(u16, Value)> {
    let mut stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: load\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await?;
    let text = String::from_utf8_lossy(&out);
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

/// A small deterministic generator (SplitMix64), so runs are repeatable.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The n-th position of a phone: a walk of a few metres per fix around its
/// team's base, at the current time.
fn position(team: &(String, f64, f64), run: i64, n: u64, rng: &mut Rng) -> Value {
    let (dlat, dlon) = ((rng.next_f64() - 0.5) * 0.002, (rng.next_f64() - 0.5) * 0.002);
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    json!({"v": 1, "id": format!("load-{run}-{}-{n}", team.0), "ts": at, "at": at,
        "lat": team.1 + dlat, "lon": team.2 + dlon, "accuracy_m": 8.0, "battery_pct": 80.0})
}

/// Sends this phone's share of the rate until stopped.
async fn phone(shared: Arc<Shared>, k: usize) -> anyhow::Result<()> {
    let args = &shared.args;
    let per_phone = args.rate as f64 / args.phones as f64;
    let mut rng = Rng(args.seed ^ (k as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mine: Vec<&(String, f64, f64)> =
        shared.teams.iter().enumerate().filter(|(i, _)| i % args.phones == k).map(|(_, t)| t).collect();
    if mine.is_empty() {
        return Ok(());
    }
    let start = Instant::now();
    let mut n = 0u64;
    if let Some(peer) = &args.peer {
        // The team deltas eoc would publish for these positions.
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{peer}/publish"))
            .await
            .context("peer's publish websocket")?;
        let (mut sink, _stream) = ws.split();
        let views: Vec<&Value> =
            shared.views.iter().enumerate().filter(|(i, _)| i % args.phones == k).map(|(_, v)| v).collect();
        while !shared.stop.load(Ordering::Relaxed) {
            let i = (n % mine.len() as u64) as usize;
            let p = position(mine[i], shared.run_id, n, &mut rng);
            let mut frame = views[i].clone();
            for field in ["lat", "lon", "accuracy_m", "battery_pct"] {
                frame[field] = p[field].clone();
            }
            frame["position_at"] = p["at"].clone();
            frame["last_seen"] = p["at"].clone();
            frame["v"] = json!(1);
            frame["seq"] = json!(0);
            frame["server_ts_ms"] = json!(0);
            frame["type"] = json!("team");
            sink.send(Message::Text(frame.to_string().into())).await?;
            n += 1;
            shared.counters.sent.fetch_add(1, Ordering::Relaxed);
            shared.counters.acked.fetch_add(1, Ordering::Relaxed);
            pace(start, n, per_phone).await;
        }
        return Ok(());
    }
    match args.via {
        Via::Mqtt => {
            let (host, port) = args.mqtt.rsplit_once(':').context("--mqtt is HOST:PORT")?;
            let mut options = MqttOptions::new(format!("eoc-load-{k}"), host, port.parse()?);
            options.set_credentials(args.mqtt_user.clone(), args.mqtt_password.clone());
            options.set_keep_alive(Duration::from_secs(30));
            options.set_inflight(1000);
            let (client, mut events) = AsyncClient::new(options, 10_000);
            let s = shared.clone();
            tokio::spawn(async move {
                loop {
                    match events.poll().await {
                        Ok(Event::Incoming(Packet::PubAck(_))) => {
                            s.counters.acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {}
                        Err(err) => {
                            if s.stop.load(Ordering::Relaxed) {
                                return;
                            }
                            eprintln!("phone {k}: mqtt: {err}");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            });
            while !shared.stop.load(Ordering::Relaxed) {
                let team = mine[(n % mine.len() as u64) as usize];
                let body = position(team, shared.run_id, n, &mut rng).to_string();
                client
                    .publish(format!("eoc/v1/teams/{}/position", team.0), QoS::AtLeastOnce, false, body)
                    .await?;
                n += 1;
                shared.counters.sent.fetch_add(1, Ordering::Relaxed);
                pace(start, n, per_phone).await;
            }
        }
        Via::Ws => {
            let url = format!("ws://{}/ws?token={}", args.http, args.token);
            let (ws, _) = tokio_tungstenite::connect_async(url).await.context("phone websocket")?;
            let (mut sink, mut stream) = ws.split();
            let s = shared.clone();
            tokio::spawn(async move {
                while let Some(Ok(msg)) = stream.next().await {
                    if let Message::Text(t) = msg
                        && string_field(t.as_str(), "type") == Some("ack")
                    {
                        s.counters.acked.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
            while !shared.stop.load(Ordering::Relaxed) {
                let team = mine[(n % mine.len() as u64) as usize];
                let mut body = position(team, shared.run_id, n, &mut rng);
                body["type"] = json!("team_position");
                body["team_id"] = json!(team.0);
                sink.send(Message::Text(body.to_string().into())).await?;
                n += 1;
                shared.counters.sent.fetch_add(1, Ordering::Relaxed);
                pace(start, n, per_phone).await;
            }
        }
    }
    Ok(())
}

/// Waits until `n` messages are due at `rate` per second (no wait at 0).
async fn pace(start: Instant, n: u64, rate: f64) {
    if rate <= 0.0 {
        tokio::task::yield_now().await;
        return;
    }
    let due = start + Duration::from_secs_f64(n as f64 / rate);
    if due > Instant::now() {
        tokio::time::sleep_until(due.into()).await;
    }
}

/// One dashboard: times every team delta and every alert's first frame.
///
/// A thousand of these share the machine with the server they measure, so
/// each is kept cheap: no timer per frame (one cancellation future for the
/// whole run), no parse of the frame beyond the few fields timed, counters
/// added to the shared totals in batches.
async fn dashboard(shared: Arc<Shared>, ready: Arc<AtomicU64>) -> anyhow::Result<()> {
    let args = &shared.args;
    let url = match &args.peer {
        Some(peer) => format!("ws://{peer}/ws"),
        None => format!("ws://{}/ws?token={}", args.http, args.token),
    };
    // The library zeroes its read buffer (128 KiB by default) before every
    // read, ready or not. A dashboard's reads are mostly one write of the
    // server, a few deltas (about a kilobyte); with 16 KiB, memset was 5 %
    // of the machine's CPU in this process with 1,000 dashboards.
    let config = WebSocketConfig::default().read_buffer_size(4 * 1024);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
        .await
        .context("dashboard websocket")?;
    let (_sink, mut stream) = ws.split();
    // Raw samples, put into the shared histograms once at the end: with a
    // histogram per dashboard (two thousand of ~140 KB) recording took 6 %
    // of the machine's CPU in this process.
    let (mut ingest, mut delivery): (Vec<u32>, Vec<u32>) = (Vec::new(), Vec::new());
    let mut seen_alerts: Vec<String> = Vec::new();
    // eoc's dashboards are ready past their snapshot; the peer sends none.
    let mut counted = args.peer.is_some();
    if counted {
        ready.fetch_add(1, Ordering::Relaxed);
    }
    let drained = shared.drained.cancelled();
    tokio::pin!(drained);
    let (mut deltas, mut frames, mut largest) = (0u64, 0u64, 0usize);
    loop {
        let msg = tokio::select! {
            biased;
            () = &mut drained => break,
            msg = stream.next() => match msg {
                None => break,
                Some(msg) => msg?,
            },
        };
        let Message::Text(text) = msg else { continue };
        let received = now_us();
        if !counted {
            counted = true;
            ready.fetch_add(1, Ordering::Relaxed);
        }
        frames += 1;
        if frames % 64 == 0 {
            shared.counters.frames.fetch_add(64, Ordering::Relaxed);
            shared.counters.deltas.fetch_add(deltas, Ordering::Relaxed);
            deltas = 0;
        }
        // Read only the fields timed, without parsing the whole frame: a
        // thousand dashboards in one process must keep up with the server.
        let text = text.as_str();
        let kind = string_field(text, "type");
        if kind != Some("snapshot") {
            largest = largest.max(text.len());
        }
        match kind {
            Some("team") => {
                deltas += 1;
                if let Some(at) = string_field(text, "position_at")
                    .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok())
                {
                    ingest.push(micros(received - at.timestamp_micros()));
                }
                if let Some(server_ms) = number_field(text, "server_ts_ms") {
                    delivery.push(micros(received - server_ms * 1000));
                }
            }
            Some("alert") => {
                let id = string_field(text, "alert_id").unwrap_or_default().to_owned();
                if !seen_alerts.contains(&id) {
                    let posted = shared
                        .alerts_sent
                        .lock()
                        .ok()
                        .and_then(|a| a.iter().find(|(a, _)| *a == id).map(|p| p.1));
                    if let Some(posted) = posted {
                        let _ = shared.alert.lock().await.record((received - posted).max(1) as u64);
                    }
                    seen_alerts.push(id);
                }
            }
            _ => {}
        }
    }
    shared.counters.frames.fetch_add(frames % 64, Ordering::Relaxed);
    shared.largest_frame.fetch_max(largest as u64, Ordering::Relaxed);
    shared.counters.deltas.fetch_add(deltas, Ordering::Relaxed);
    for (samples, into) in [(&ingest, &shared.ingest), (&delivery, &shared.delivery)] {
        let mut h = into.lock().await;
        for &us in samples {
            let _ = h.record(u64::from(us));
        }
    }
    Ok(())
}

/// A latency sample, microseconds, at least 1.
fn micros(us: i64) -> u32 {
    u32::try_from(us.max(1)).unwrap_or(u32::MAX)
}

/// The text of `"name":"…"` in a JSON object written without spaces (as the
/// server writes), if present and without escapes.
fn string_field<'t>(json: &'t str, name: &str) -> Option<&'t str> {
    let rest = after_key(json, name)?.strip_prefix('"')?;
    Some(&rest[..rest.find('"')?])
}

/// The integer of `"name":N`.
fn number_field(json: &str, name: &str) -> Option<i64> {
    let rest = after_key(json, name)?;
    let digits = rest.bytes().take_while(|b| b.is_ascii_digit() || *b == b'-').count();
    rest[..digits].parse().ok()
}

/// What follows `"name":` in `json` (without building the key).
fn after_key<'t>(json: &'t str, name: &str) -> Option<&'t str> {
    let mut from = 0;
    while let Some(at) = json[from..].find(name) {
        let start = from + at;
        let end = start + name.len();
        if json[..start].ends_with('"') && json[end..].starts_with("\":") {
            return Some(&json[end + 2..]);
        }
        from = end;
    }
    None
}

/// Commands the server applied so far, from its `/metrics`.
async fn applied(args: &Args) -> Option<u64> {
    let mut stream = TcpStream::connect(&args.http).await.ok()?;
    let req = "GET /metrics HTTP/1.1\r\nHost: load\r\nConnection: close\r\n\r\n";
    stream.write_all(req.as_bytes()).await.ok()?;
    let mut out = String::new();
    stream.read_to_string(&mut out).await.ok()?;
    Some(
        out.lines()
            .filter(|l| l.starts_with("eoc_messages_total{") && l.contains("outcome=\"applied\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum(),
    )
}

/// The server's CPU seconds (user + system) and RSS in MB.
fn proc_usage(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: f64 =
        status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some((ticks / 100.0, rss_kb / 1024.0))
}

fn line(name: &str, h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return format!("{name:<9} no samples");
    }
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    format!(
        "{name:<9} n={:<9} p50 {:>8.2} ms  p99 {:>8.2} ms  p99.9 {:>8.2} ms  max {:>8.2} ms",
        h.len(),
        ms(0.5),
        ms(0.99),
        ms(0.999),
        h.max() as f64 / 1000.0
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Command::Nearest(nearest)) = &args.command {
        let setup = nearest::Setup {
            http: &args.http,
            token: &args.token,
            duration_s: args.duration_s,
            seed: args.seed,
            server_pid: args.server_pid,
        };
        return nearest::run(setup, nearest).await;
    }
    if args.phones == 0 {
        bail!("--phones must be at least 1");
    }
    let (status, body) = http(&args.http, &args.token, "GET", "/api/v1/teams", "").await?;
    if status != 200 {
        bail!("GET /api/v1/teams answered {status}: {body}");
    }
    let (teams, views): (Vec<(String, f64, f64)>, Vec<Value>) = body["teams"]
        .as_array()
        .context("no teams")?
        .iter()
        .filter_map(|t| {
            Some(((t["team_id"].as_str()?.to_owned(), t["lat"].as_f64()?, t["lon"].as_f64()?), t.clone()))
        })
        .unzip();
    if args.peer.is_some() && args.alerts > 0 {
        bail!("--alerts needs eoc: the peer has no alerts");
    }
    let shared = Arc::new(Shared {
        args,
        teams,
        views,
        counters: Counters::default(),
        ingest: Mutex::new(histogram()),
        delivery: Mutex::new(histogram()),
        alert: Mutex::new(histogram()),
        alerts_sent: std::sync::Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
        drained: CancellationToken::new(),
        run_id: chrono::Utc::now().timestamp_millis(),
        largest_frame: AtomicU64::new(0),
    });
    let args = &shared.args;

    // Dashboards first, each past its snapshot before any load starts.
    let ready = Arc::new(AtomicU64::new(0));
    let mut boards = Vec::new();
    for _ in 0..args.dashboards {
        boards.push(tokio::spawn(dashboard(shared.clone(), ready.clone())));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while ready.load(Ordering::Relaxed) < args.dashboards as u64 {
        if Instant::now() > deadline {
            bail!("only {} of {} dashboards connected", ready.load(Ordering::Relaxed), args.dashboards);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let usage_before = args.server_pid.and_then(proc_usage);
    let applied_before = if args.peer.is_none() { applied(args).await } else { None };
    eprintln!(
        "eoc-load: {} teams, {} phones via {} at {} msg/s, {} dashboards, {} s",
        shared.teams.len(),
        args.phones,
        args.peer
            .as_ref()
            .map_or_else(|| format!("{:?}", args.via), |p| format!("WebSocket to the peer at {p}")),
        if args.rate == 0 { "max".to_owned() } else { args.rate.to_string() },
        args.dashboards,
        args.duration_s
    );
    let started = Instant::now();
    let run_id = shared.run_id;
    let mut phones = Vec::new();
    for k in 0..args.phones {
        phones.push(tokio::spawn(phone(shared.clone(), k)));
    }
    let alert_every = (args.alerts > 0)
        .then(|| Duration::from_secs_f64(args.duration_s as f64 / f64::from(args.alerts + 1)));
    let mut next_alert = alert_every.map(|e| started + e);
    let mut alerts_posted = 0u32;
    let mut last = (0u64, 0u64, 0u64);
    while started.elapsed() < Duration::from_secs(args.duration_s) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let (Some(at), Some(every)) = (next_alert, alert_every)
            && Instant::now() >= at
            && alerts_posted < args.alerts
        {
            alerts_posted += 1;
            next_alert = Some(at + every);
            // Unique per run: a server measured twice would take the same id
            // as a duplicate and publish nothing.
            let id = format!("load-eq-{}-{}-{alerts_posted}", args.seed, run_id);
            let body = json!({"v": 1, "id": id, "ts": chrono::Utc::now(), "alert_id": id, "hazard": "earthquake",
                "urgency": "immediate", "severity": "severe", "certainty": "observed", "status": "exercise",
                "earthquake": {"lat": 38.56, "lon": 68.78, "depth_km": 10.0, "magnitude": args.alert_magnitude}});
            if let Ok(mut a) = shared.alerts_sent.lock() {
                a.push((id.clone(), now_us()));
            }
            let (status, answer) =
                http(&args.http, &args.token, "POST", "/api/v1/alerts", &body.to_string()).await?;
            if status != 200 {
                eprintln!("alert {id}: {status} {answer}");
            }
        }
        let c = &shared.counters;
        let now = (
            c.sent.load(Ordering::Relaxed),
            c.acked.load(Ordering::Relaxed),
            c.deltas.load(Ordering::Relaxed),
        );
        eprintln!(
            "[{:>3} s] sent {:>8}/s  acked {:>8}/s  deltas delivered {:>9}/s",
            started.elapsed().as_secs(),
            now.0 - last.0,
            now.1 - last.1,
            now.2 - last.2
        );
        last = now;
    }
    shared.stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    for p in phones {
        if let Ok(Err(err)) = p.await {
            eprintln!("phone: {err:#}");
        }
    }
    let usage_after = args.server_pid.and_then(proc_usage);
    let applied_after = if args.peer.is_none() { applied(args).await } else { None };
    tokio::time::sleep(Duration::from_secs(1)).await;
    shared.drained.cancel();
    for b in boards {
        if let Ok(Err(err)) = b.await {
            eprintln!("dashboard: {err:#}");
        }
    }
    let c = &shared.counters;
    let (sent, acked, deltas) =
        (c.sent.load(Ordering::Relaxed), c.acked.load(Ordering::Relaxed), c.deltas.load(Ordering::Relaxed));
    println!(
        "sent      {sent} positions in {elapsed:.1} s = {:.0} msg/s; acknowledged {acked}",
        sent as f64 / elapsed
    );
    println!(
        "delivered {deltas} team deltas to {} dashboards = {:.0} deliveries/s",
        args.dashboards,
        deltas as f64 / elapsed
    );
    let frames = c.frames.load(Ordering::Relaxed);
    println!(
        "received  {frames} frames of every kind = {:.0} frames/s; the largest delta {} bytes",
        frames as f64 / elapsed,
        shared.largest_frame.load(Ordering::Relaxed)
    );
    if let (Some(before), Some(after)) = (applied_before, applied_after) {
        let n = after.saturating_sub(before);
        println!("applied   {n} commands durably in the server = {:.0} msg/s", n as f64 / elapsed);
    }
    println!("{}", line("ingest", &*shared.ingest.lock().await));
    println!("{}", line("delivery", &*shared.delivery.lock().await));
    if args.alerts > 0 {
        println!("{}", line("alert", &*shared.alert.lock().await));
    }
    if let (Some(before), Some(after)) = (usage_before, usage_after) {
        println!(
            "server    cpu {:.0} % of one core, rss {:.0} MB",
            (after.0 - before.0) / elapsed * 100.0,
            after.1
        );
    }
    Ok(())
}
