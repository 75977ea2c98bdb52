//! Shared helpers for the black-box tests: a small world, a server started
//! by `run` on `127.0.0.1:0` with a temporary data directory, a minimal HTTP
//! client and a WebSocket client. Every wait has a timeout; nothing sleeps.

// Only tests use this crate: a panic here is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use eoc_protocol::types::{SiteKind, SiteStatus, Skill, TeamStatus};
use eoc_server::auth::Role;
use eoc_server::auth::store::{NewUser, UserStore};
use eoc_server::config::Config;
use eoc_server::core::geo::LatLon;
use eoc_server::core::world::{Places, Site, Team, Village, World};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// A small world around Dushanbe: four villages, two sites, three teams.
pub fn small_world() -> World {
    let mut places = Places::default();
    let d = places.intern("Dushanbe", "Dushanbe");
    let r = places.intern("RRS", "Vahdat");
    let at = |lat, lon| LatLon::new(lat, lon).unwrap();
    let village = |id: &str, lat, lon, population, district| Village {
        id: id.to_owned(),
        name: format!("Village {id}"),
        district,
        at: at(lat, lon),
        population,
        population_estimated: false,
        elevation_m: Some(800),
    };
    let villages = vec![
        village("v-1", 38.56, 68.78, 5_000, d),
        village("v-2", 38.58, 68.80, 3_000, d),
        village("v-3", 38.55, 69.02, 2_000, r),
        village("v-4", 39.50, 70.50, 1_000, r),
    ];
    let site = |id: &str, lat, lon, capacity| Site {
        id: id.to_owned(),
        name: format!("Site {id}"),
        kind: SiteKind::School,
        district: d,
        at: at(lat, lon),
        capacity,
        occupancy: 0,
        status: SiteStatus::Open,
        services: Vec::new(),
        updated_at_ms: None,
    };
    let sites = vec![site("s-1", 38.57, 68.79, 500), site("s-2", 38.60, 68.90, 300)];
    let team = |id: &str, lat, lon, skills: Vec<Skill>| Team {
        id: id.to_owned(),
        name: format!("Team {id}"),
        skills,
        status: TeamStatus::Available,
        at: at(lat, lon),
        accuracy_m: None,
        position_at_ms: None,
        battery_pct: None,
        last_seen_ms: None,
        devices: vec![format!("phone-{id}")],
    };
    let teams = vec![
        team("t-1", 38.57, 68.77, vec![Skill::SearchRescue, Skill::Medical]),
        team("t-2", 38.60, 68.85, vec![Skill::SearchRescue]),
        team("t-3", 38.40, 68.60, vec![Skill::Wash]),
    ];
    World::new(places, villages, sites, teams).unwrap()
}

/// A configuration for tests: MQTT off, HTTP on a free port, journal in `data_dir`.
pub fn test_config(data_dir: &Path) -> Config {
    let mut config = Config { data_dir: data_dir.to_path_buf(), ..Config::default() };
    config.mqtt.enabled = false;
    config.http.listen = "127.0.0.1:0".to_owned();
    config
}

/// The chair every test server has (its token is [`Server::token`]).
pub const TEST_CHAIR: &str = "test-chair";

/// Adds user `name` to the store in `data_dir` (or gives it a new token if
/// it exists) and returns its token, as `eoc-server user add` does.
pub fn user_token(data_dir: &Path, name: &str, role: Role, team: Option<&str>, sites: &[&str]) -> String {
    let mut store = UserStore::open(data_dir).unwrap();
    if store.get(name).unwrap().is_some() {
        return store.rotate(name).unwrap();
    }
    store
        .add(&NewUser {
            name: name.to_owned(),
            role,
            team: team.map(str::to_owned),
            sites: sites.iter().map(|s| (*s).to_owned()).collect(),
        })
        .unwrap()
}

/// A server started in-process by `run_with_world`.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The token of [`TEST_CHAIR`], which [`Server::get`], [`Server::post`]
    /// and [`Server::ws`] use.
    pub token: String,
    /// Cancel to shut it down.
    pub shutdown: CancellationToken,
    /// The server's result.
    pub handle: JoinHandle<anyhow::Result<()>>,
}

impl Server {
    /// Starts a server on the small world with `config`, and waits until
    /// `/readyz` says ready.
    pub async fn start(config: Config) -> Server {
        Server::start_with(config, small_world()).await
    }

    /// Starts a server on `world`.
    pub async fn start_with(config: Config, world: World) -> Server {
        let data_dir = config.data_dir.clone();
        let token = user_token(&data_dir, TEST_CHAIR, Role::Chair, None, &[]);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(eoc_server::run_with_world(
            config,
            world,
            ("test".to_owned(), 0),
            eoc_server::Listeners { http: listener },
            shutdown.clone(),
        ));
        let server = Server { addr, data_dir, token, shutdown, handle };
        server.wait_ready().await;
        server
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        wait_ready(self.addr).await;
    }

    /// Cancels and waits for a clean exit.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, &mut self.handle).await.unwrap().unwrap().unwrap();
    }

    /// `GET path` as the test chair → status and JSON.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.get_as(&self.token, path).await
    }

    /// `POST path` with a JSON body as the test chair → status and JSON.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_as(&self.token, path, body).await
    }

    /// `GET path` with `token`.
    pub async fn get_as(&self, token: &str, path: &str) -> (u16, Value) {
        let auth = format!("Bearer {token}");
        http(self.addr, "GET", path, None, &[("Authorization", &auth)]).await
    }

    /// `POST path` with a JSON body and `token`.
    pub async fn post_as(&self, token: &str, path: &str, body: &Value) -> (u16, Value) {
        let auth = format!("Bearer {token}");
        http(self.addr, "POST", path, Some(body.to_string().as_bytes()), &[("Authorization", &auth)]).await
    }

    /// A user of this server's store with a fresh token.
    pub fn user(&self, name: &str, role: Role, team: Option<&str>, sites: &[&str]) -> String {
        user_token(&self.data_dir, name, role, team, sites)
    }

    /// The `Authorization` header value of the test chair.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// A WebSocket client signed in as the test chair.
    pub async fn ws(&self) -> Ws {
        Ws::connect(self.addr, &self.token).await
    }

    /// The snapshot a new WebSocket client receives, without `server_ts_ms`.
    pub async fn state(&self) -> Value {
        let mut ws = self.ws().await;
        let snap = ws.next().await;
        ws.close().await;
        strip_time(snap)
    }
}

impl Drop for Server {
    /// A test that fails before `stop` still shuts its server down.
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Polls `/readyz` until 200; the server signals nothing else when ready.
pub async fn wait_ready(addr: SocketAddr) {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(mut stream) = TcpStream::connect(addr).await {
                let req = "GET /readyz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
                if stream.write_all(req.as_bytes()).await.is_ok() {
                    let mut out = Vec::new();
                    let _ = stream.read_to_end(&mut out).await;
                    if out.starts_with(b"HTTP/1.1 200") {
                        return;
                    }
                }
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("server did not become ready");
}

/// The snapshot without the clock field, for comparing states.
pub fn strip_time(mut snapshot: Value) -> Value {
    if let Some(obj) = snapshot.as_object_mut() {
        obj.remove("server_ts_ms");
    }
    snapshot
}

/// One HTTP/1.1 request with `Connection: close`; returns the status and
/// the body parsed as JSON (`Value::String` when it is not JSON).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let body = body.unwrap_or_default();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (413) before reading an oversize body.
    let _ = stream.write_all(body).await;
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut out)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&out);
    let status: u16 = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (_, raw_body) = text.split_once("\r\n\r\n").unwrap_or(("", ""));
    let chunked = text.to_ascii_lowercase().contains("transfer-encoding: chunked");
    let raw = if chunked { dechunk(raw_body) } else { raw_body.to_owned() };
    let value = serde_json::from_str(&raw).unwrap_or(Value::String(raw));
    (status, value)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A unique message id.
pub fn msg_id() -> String {
    format!("m-{}-{}", std::process::id(), NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

/// The envelope fields of a new message (`v`, a fresh `id`, `ts` now).
pub fn envelope() -> Value {
    json!({"v": 1, "id": msg_id(), "ts": chrono::Utc::now().to_rfc3339()})
}

/// `base` with a fresh envelope merged in.
pub fn message(base: Value) -> Value {
    let mut m = envelope();
    if let (Some(obj), Value::Object(extra)) = (m.as_object_mut(), base) {
        obj.extend(extra);
    }
    m
}

/// An M6.5 earthquake under Dushanbe, with id `alert_id`.
pub fn earthquake(alert_id: &str) -> Value {
    message(json!({
        "alert_id": alert_id,
        "hazard": "earthquake",
        "urgency": "immediate",
        "severity": "severe",
        "certainty": "observed",
        "earthquake": {"lat": 38.56, "lon": 68.78, "depth_km": 10.0, "magnitude": 6.5},
    }))
}

/// A WebSocket client.
pub struct Ws {
    stream: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
}

impl Ws {
    /// Connects to `/ws` with `token` (as a browser does, in the query).
    pub async fn connect(addr: SocketAddr, token: &str) -> Ws {
        let (stream, _) =
            tokio_tungstenite::connect_async(format!("ws://{addr}/ws?token={token}")).await.unwrap();
        Ws { stream }
    }

    /// The next frame of any kind, or `None` once the connection ended;
    /// fails after [`WAIT`].
    pub async fn next_raw(&mut self) -> Option<Message> {
        tokio::time::timeout(WAIT, async {
            loop {
                match self.stream.next().await {
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(m)) => return Some(m),
                    _ => return None,
                }
            }
        })
        .await
        .expect("no websocket frame in time")
    }

    /// The next text frame as JSON (pings skipped); fails after [`WAIT`].
    pub async fn next(&mut self) -> Value {
        tokio::time::timeout(WAIT, async {
            loop {
                match self.stream.next().await {
                    Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    other => panic!("websocket ended: {other:?}"),
                }
            }
        })
        .await
        .expect("no websocket frame in time")
    }

    /// Frames until one satisfies `f` (returned), failing after [`WAIT`].
    pub async fn until(&mut self, mut f: impl FnMut(&Value) -> bool) -> Value {
        tokio::time::timeout(WAIT, async {
            loop {
                let v = self.next().await;
                if f(&v) {
                    return v;
                }
            }
        })
        .await
        .expect("the expected websocket frame did not arrive")
    }

    /// Sends a JSON text frame.
    pub async fn send(&mut self, v: &Value) {
        self.stream.send(Message::Text(v.to_string().into())).await.unwrap();
    }

    /// Sends a binary frame.
    pub async fn send_binary(&mut self, bytes: &[u8]) {
        self.stream.send(Message::Binary(bytes.to_vec().into())).await.unwrap();
    }

    /// Sends raw text.
    pub async fn send_text(&mut self, t: &str) {
        self.stream.send(Message::Text(t.to_owned().into())).await.unwrap();
    }

    /// Closes the connection.
    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}

/// A temporary data directory that outlives one server (for restarts).
pub fn data_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// The path of a file in the workspace (tests run in `tests/`).
pub fn workspace_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

pub mod mosquitto;
