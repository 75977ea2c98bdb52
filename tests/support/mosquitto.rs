//! A real mosquitto broker for tests, started from the project's own
//! `config/mosquitto/eoc.conf` and the ACL eoc generates, and an MQTT
//! client to talk to it.
//!
//! [`Mosquitto::start`] copies `eoc.conf` into a temporary directory,
//! rewriting only what must differ in a test: the listener (a free port on
//! loopback), the password file and ACL paths (the files the user store of
//! the server's data directory generates, as in a deployment), the
//! persistence directory and the log destination. Everything else —
//! authentication, persistence, queue and packet limits — is what a
//! deployment runs. The broker is killed when the value is dropped.
//!
//! [`Client`] is a rumqttc client whose event loop runs in its own task and
//! forwards what the tests wait on (publishes, acknowledgements, connection
//! state) over channels, so tests wait on events rather than sleeping.

// Test support: a panic here is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use eoc_server::auth::Role;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::sync::{mpsc, watch};

/// The eoc server's own broker account (full access in the ACL).
pub const SERVER_USER: &str = eoc_server::auth::store::SERVER_ACCOUNT;
/// An EOC console: a chair (issues alerts, acts on every team and site).
pub const CONSOLE_USER: &str = "console";

/// How long the broker may take to open its port.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The project's broker configuration directory.
pub fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/mosquitto")
}

/// A mosquitto process on a free loopback port, killed at drop.
pub struct Mosquitto {
    child: Option<Child>,
    port: u16,
    conf: PathBuf,
    log: PathBuf,
    dir: tempfile::TempDir,
    passwords: HashMap<String, String>,
}

/// Adds a user described by `spec` to the store in `data_dir` and returns
/// its name and token: `t-1` is a responder of team `t-1`, `jane@t-2` a
/// responder `jane` of team `t-2`, `m#s-1` a site manager of site `s-1`,
/// `v!viewer` a user with that role and no binding.
pub fn add_user(data_dir: &Path, spec: &str) -> (String, String) {
    let (name, role, team, site) = if let Some((n, t)) = spec.split_once('@') {
        (n, Role::Responder, Some(t), None)
    } else if let Some((n, s)) = spec.split_once('#') {
        (n, Role::SiteManager, None, Some(s))
    } else if let Some((n, r)) = spec.split_once('!') {
        (n, Role::parse(r).expect("a role"), None, None)
    } else {
        (spec, Role::Responder, Some(spec), None)
    };
    let sites: Vec<&str> = site.into_iter().collect();
    (name.to_owned(), crate::user_token(data_dir, name, role, team, &sites))
}

impl Mosquitto {
    /// Starts a broker from the project's `eoc.conf` with the password
    /// file and ACL that the user store in `data_dir` generates (as a
    /// deployment does), after adding [`CONSOLE_USER`] and `users` (specs
    /// of [`add_user`]) to it. [`SERVER_USER`]'s password is the one the
    /// store made for the server.
    pub fn start(data_dir: &Path, users: &[&str]) -> anyhow::Result<Mosquitto> {
        let dir = tempfile::tempdir().context("creating the broker's directory")?;
        let port = free_port()?;
        let mut passwords = HashMap::new();
        for spec in std::iter::once(&"console!chair").chain(users) {
            let (name, token) = add_user(data_dir, spec);
            passwords.insert(name, token);
        }
        let broker_dir = data_dir.join(eoc_server::auth::store::BROKER_DIR);
        let secret = fs::read_to_string(broker_dir.join(eoc_server::auth::store::SERVER_SECRET_FILE))?;
        passwords.insert(SERVER_USER.to_owned(), secret.trim().to_owned());
        let data = dir.path().join("data");
        fs::create_dir_all(&data)?;
        let log = dir.path().join("mosquitto.log");
        let conf = dir.path().join("eoc.conf");
        let text = test_conf(port, &broker_dir.join("passwd"), &broker_dir.join("acl"), &data, &log)?;
        fs::write(&conf, text)?;
        let mut broker = Mosquitto { child: None, port, conf, log, dir, passwords };
        broker.spawn()?;
        Ok(broker)
    }

    /// The password (token) of `user`.
    pub fn password(&self, user: &str) -> String {
        self.passwords.get(user).cloned().unwrap_or_else(|| panic!("no broker user {user}"))
    }

    /// Makes the broker read its password file and ACL again (SIGHUP), as
    /// an administrator does after `eoc-server user …`, and waits until its
    /// log says so.
    pub fn reload(&self) -> anyhow::Result<()> {
        let child = self.child.as_ref().context("the broker is not running")?;
        let before = self.log_text().matches("Reloading config").count();
        let status = Command::new("kill").arg("-HUP").arg(child.id().to_string()).status()?;
        ensure!(status.success(), "kill -HUP failed");
        let deadline = Instant::now() + START_TIMEOUT;
        while self.log_text().matches("Reloading config").count() <= before {
            ensure!(Instant::now() < deadline, "mosquitto did not reload:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting mosquitto (install it: .ci/install-deps)")?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("mosquitto exited with {status} at start:\n{}", self.log_text());
            }
            if Instant::now() > deadline {
                bail!("mosquitto did not open port {} in {START_TIMEOUT:?}:\n{}", self.port, self.log_text());
            }
            // Polling the port is how a client learns that a server listens;
            // mosquitto has no readiness notification.
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The broker's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The broker's log so far (for failure messages).
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The temporary directory holding the generated configuration and the
    /// persistence database.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the broker with SIGTERM, as a service manager does, and waits
    /// for it to exit (it saves its persistence database on the way out).
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status()?;
        ensure!(status.success(), "kill -TERM {} failed", child.id());
        let exit = child.wait()?;
        ensure!(exit.success(), "mosquitto exited with {exit} on SIGTERM:\n{}", self.log_text());
        Ok(())
    }

    /// Starts the broker again on the same port with the same persistence
    /// directory, after [`Mosquitto::stop`].
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop()?;
        self.spawn()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A free TCP port on 127.0.0.1 (bound, read and released).
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The user the broker must run as: mosquitto started as root switches to
/// the `mosquitto` user, which cannot write the test's temporary directory.
fn current_user() -> anyhow::Result<String> {
    let out = Command::new("id").arg("-un").output().context("running id -un")?;
    ensure!(out.status.success(), "id -un failed");
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// The project's `eoc.conf` with the port, paths and log destination of a
/// test. Fails if a line it must rewrite is missing, so the harness and the
/// deployed file cannot drift apart silently.
fn test_conf(port: u16, passwd: &Path, acl: &Path, data: &Path, log: &Path) -> anyhow::Result<String> {
    let source = config_dir().join("eoc.conf");
    let text = fs::read_to_string(&source).with_context(|| format!("reading {}", source.display()))?;
    let mut out = String::new();
    let mut rewritten = HashSet::new();
    for line in text.lines() {
        let key = line.split_whitespace().next().unwrap_or("");
        let replacement = match key {
            "listener" => Some(format!("listener {port} 127.0.0.1")),
            "password_file" => Some(format!("password_file {}", passwd.display())),
            "acl_file" => Some(format!("acl_file {}", acl.display())),
            "persistence_location" => Some(format!("persistence_location {}/", data.display())),
            "log_dest" => Some(format!("log_dest file {}", log.display())),
            _ => None,
        };
        match replacement {
            Some(r) => {
                ensure!(rewritten.insert(key), "{} has more than one {key} line", source.display());
                out.push_str(&r);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    for key in ["listener", "password_file", "acl_file", "persistence_location", "log_dest"] {
        ensure!(rewritten.contains(key), "{} has no {key} line", source.display());
    }
    out.push_str(&format!("user {}\n", current_user()?));
    Ok(out)
}

/// A message a [`Client`] received.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// Topic.
    pub topic: String,
    /// Payload as text.
    pub payload: String,
    /// Whether the broker sent it as retained.
    pub retain: bool,
}

impl Received {
    /// The payload as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.payload)
            .unwrap_or_else(|e| panic!("payload on {} is not JSON ({e}): {}", self.topic, self.payload))
    }
}

/// A test MQTT client (a phone, a console, another system).
pub struct Client {
    /// The rumqttc handle.
    pub client: AsyncClient,
    messages_rx: mpsc::UnboundedReceiver<Received>,
    suback_rx: mpsc::UnboundedReceiver<()>,
    puback_rx: mpsc::UnboundedReceiver<u16>,
    connected_rx: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

/// How long a test waits for one expected event.
pub const WAIT: Duration = Duration::from_secs(10);

impl Client {
    /// Connects as `user` (with its token as password) with `client_id`;
    /// `persistent` asks for a persistent session (clean_session=false).
    /// Returns once the broker accepted the connection.
    pub async fn connect(broker: &Mosquitto, user: &str, client_id: &str, persistent: bool) -> Client {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", broker.port());
        options.set_credentials(user, broker.password(user));
        options.set_clean_session(!persistent);
        options.set_keep_alive(Duration::from_secs(5));
        options.set_max_packet_size(2 * 1024 * 1024, 2 * 1024 * 1024);
        let (client, eventloop) = AsyncClient::new(options, 1000);
        let (messages_tx, messages_rx) = mpsc::unbounded_channel();
        let (suback_tx, suback_rx) = mpsc::unbounded_channel();
        let (puback_tx, puback_rx) = mpsc::unbounded_channel();
        let (connected_tx, mut connected_rx) = watch::channel(0);
        let task = tokio::spawn(drive(eventloop, messages_tx, suback_tx, puback_tx, connected_tx));
        tokio::time::timeout(WAIT, connected_rx.wait_for(|n| *n > 0))
            .await
            .unwrap_or_else(|_| panic!("{client_id} did not connect as {user}:\n{}", broker.log_text()))
            .unwrap();
        Client { client, messages_rx, suback_rx, puback_rx, connected_rx, task }
    }

    /// Subscribes (QoS 1) and waits for the broker's SUBACK.
    pub async fn subscribe(&mut self, filter: &str) {
        self.client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        tokio::time::timeout(WAIT, self.suback_rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no SUBACK for {filter}"))
            .unwrap();
    }

    /// Publishes JSON text with QoS 1.
    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client.publish(topic, QoS::AtLeastOnce, false, payload.into()).await.unwrap();
    }

    /// The next message on a topic matching `pred`, skipping others; panics
    /// after [`WAIT`].
    pub async fn next_where(&mut self, what: &str, pred: impl Fn(&Received) -> bool) -> Received {
        let wait = async {
            loop {
                let m = self.messages_rx.recv().await.expect("client event loop ended");
                if pred(&m) {
                    return m;
                }
            }
        };
        tokio::time::timeout(WAIT, wait).await.unwrap_or_else(|_| panic!("no message: {what}"))
    }

    /// The next message on exactly `topic`.
    pub async fn next_on(&mut self, topic: &str) -> Received {
        self.next_where(&format!("on {topic}"), |m| m.topic == topic).await
    }

    /// Messages received and not yet taken, without waiting.
    pub fn drain(&mut self) -> Vec<Received> {
        let mut out = Vec::new();
        while let Ok(m) = self.messages_rx.try_recv() {
            out.push(m);
        }
        out
    }

    /// The next PUBACK's packet id, waiting at most [`WAIT`].
    pub async fn next_puback(&mut self) -> u16 {
        tokio::time::timeout(WAIT, self.puback_rx.recv()).await.expect("no PUBACK").unwrap()
    }

    /// PUBACK packet ids received and not yet taken, without waiting.
    pub fn drain_pubacks(&mut self) -> Vec<u16> {
        let mut out = Vec::new();
        while let Ok(p) = self.puback_rx.try_recv() {
            out.push(p);
        }
        out
    }

    /// How many times the client has connected (ConnAck) so far.
    pub fn connections(&self) -> u64 {
        *self.connected_rx.borrow()
    }

    /// Waits until the client has connected at least `n` times.
    pub async fn wait_connections(&mut self, n: u64) {
        tokio::time::timeout(WAIT * 3, self.connected_rx.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| panic!("client did not reconnect (connection {n})"))
            .unwrap();
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Polls the event loop forever; on an error (broker gone) waits a little
/// and polls again, which reconnects.
async fn drive(
    mut eventloop: EventLoop,
    messages_tx: mpsc::UnboundedSender<Received>,
    suback_tx: mpsc::UnboundedSender<()>,
    puback_tx: mpsc::UnboundedSender<u16>,
    connected_tx: watch::Sender<u64>,
) {
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let _ = messages_tx.send(Received {
                    topic: p.topic.clone(),
                    payload: String::from_utf8_lossy(&p.payload).into_owned(),
                    retain: p.retain,
                });
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                let _ = suback_tx.send(());
            }
            Ok(Event::Incoming(Packet::PubAck(a))) => {
                let _ = puback_tx.send(a.pkid);
            }
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                connected_tx.send_modify(|n| *n += 1);
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The small world with phones mapped to teams: `t-1` carries OwnTracks
/// `jane/phone` and OsmAnd `48241179`, `t-2` OwnTracks `omar/tab` and
/// OsmAnd `55501`.
pub fn phone_world() -> eoc_server::core::world::World {
    let w = crate::small_world();
    let mut teams = w.teams().to_vec();
    teams[0].devices.extend(["owntracks:jane/phone".to_owned(), "osmand:48241179".to_owned()]);
    teams[1].devices.extend(["owntracks:omar/tab".to_owned(), "osmand:55501".to_owned()]);
    eoc_server::core::world::World::new(w.places.clone(), w.villages().to_vec(), w.sites().to_vec(), teams)
        .expect("phone world")
}

/// A test configuration whose MQTT edge connects to `broker`; with no
/// credentials configured the server uses its own account from the user
/// store in `data_dir` ([`SERVER_USER`]), as a deployment does.
pub fn mqtt_config(broker: &Mosquitto, data_dir: &Path) -> eoc_server::config::Config {
    let mut config = crate::test_config(data_dir);
    config.mqtt.enabled = true;
    config.mqtt.url = broker.url();
    config.mqtt.keep_alive_s = 5;
    config
}

/// Waits until the server's `/readyz` reports its MQTT edge connected and
/// subscribed (the server exposes no other signal for it).
pub async fn wait_mqtt_connected(server: &crate::Server) {
    let polled = tokio::time::timeout(WAIT, async {
        loop {
            let (_, body) = server.get("/readyz").await;
            if body["mqtt"]["state"] == "connected" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(polled.is_ok(), "the server's mqtt edge did not connect");
}
