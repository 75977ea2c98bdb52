//! The MQTT edge: eoc is a client of a real broker.
//!
//! # Layout
//! - [`inbound`]: topic routing and eoc's own messages → [`Submission`]s.
//! - [`outbound`]: delta frames → publications (tasks, retained impact
//!   summaries, the events stream).
//! - OwnTracks payloads are mapped by [`crate::phones::owntracks`], shared
//!   with the `/owntracks` HTTP mode.
//!
//! # Tasks
//! - The **connection** task owns the rumqttc [`EventLoop`] and loops on
//!   `poll()`: an error is logged, recorded in `/readyz`, and followed by a
//!   capped exponential back-off and another poll (that is the reconnect).
//!   The session is persistent (`clean_session=false`, fixed client id) and
//!   every subscription is QoS 1, so the broker queues what arrives while
//!   eoc is away; subscriptions are renewed on every ConnAck anyway, in case
//!   the broker lost the session.
//!   Each publish is parsed, checked and queued for the writer right there,
//!   in the order received (a few microseconds), and handed to the acker
//!   with its place in the writer's queue; the connection task goes on to
//!   the next publish without waiting for the writer's answer, so ingest
//!   does not wait on one journal round trip per message, and the writer
//!   batches what arrives meanwhile.
//! - The **acker** waits for the writer's answers in the order publishes
//!   were received and acknowledges (PUBACK) in that order — MQTT 3.1.1
//!   §4.6 asks a receiver to send PUBACKs in order — and only after the
//!   answer was `Ok`/`Duplicate` (durable) or a definitive rejection, which
//!   it first reports on `{prefix}/errors`. On `Unavailable` it does not
//!   acknowledge: the broker redelivers the message on the next connection,
//!   and deduplication by message id makes the redelivery harmless.
//! - The **outbound** task follows the bus and publishes tasks and impact
//!   summaries ([`outbound::publications`]), plus OwnTracks `setWaypoints`
//!   commands; if it falls behind it republishes them from the state.
//! - The **events** task follows the bus on its own and publishes every
//!   frame on `{prefix}/events` (QoS 0), skipping ahead when it falls
//!   behind, so the highest-volume topic never holds up a team's task.
//!
//! No task ever waits on the connection task while the connection task
//! waits on it: the connection task waits only for room in the writer's
//! queue, the writer waits on no MQTT task, and the acker's queue is
//! unbounded. What bounds that queue is the broker's in-flight window and
//! how fast acks leave: rumqttc's event loop writes one outgoing request
//! (an ack, an events-feed publish) per turn while a read takes up to ten
//! publishes, so under overload answered publishes wait there for their
//! PUBACK (BENCHMARKS.md, "Memory under overload").

pub mod inbound;
pub mod outbound;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use eoc_protocol::delta::Delta;
use eoc_protocol::types::SiteStatus;
use eoc_protocol::validate::Problems;
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Packet, Publish, QoS, SubscribeFilter,
    SubscribeReasonCode, TlsConfiguration, Transport,
};
use tokio::sync::{Notify, broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::access::{Access, Admitted};
use crate::bus::{Bus, Edge, MqttState, Published, Submission, SubmitError};
use crate::config::{MqttConfig, PhonesConfig};
use inbound::{Rejection, Route};
use outbound::Outgoing;

/// Requests (publishes, acks, subscriptions) queued for the event loop.
pub const CLIENT_QUEUE: usize = 4096;

/// Largest MQTT packet accepted or sent: the broker's `max_packet_size`.
/// Messages between [`eoc_protocol::validate::MAX_MESSAGE_BYTES`] and this
/// are received and refused with a specific error rather than dropping the
/// connection.
pub const MAX_PACKET_BYTES: usize = 1024 * 1024;

/// First wait after a failed connection; doubled per failure.
pub const BACKOFF_MIN: Duration = Duration::from_millis(250);

/// Longest wait between connection attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// How long shutdown waits for in-flight publishes to be submitted and
/// acknowledged before disconnecting (the rest are redelivered later).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the MQTT edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// The broker URL is not `mqtt://HOST[:PORT]` or `mqtts://HOST[:PORT]`.
    #[error("invalid mqtt url {url:?}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The CA file for TLS could not be read.
    #[error("reading mqtt ca file {path}: {source}")]
    CaFile {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Places a system keeps its CA bundle, tried in order for `mqtts://` when
/// no CA file is configured (Debian/Ubuntu, Fedora/RHEL, Alpine/macOS).
const SYSTEM_CA_BUNDLES: &[&str] =
    &["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"];

/// Host, port and whether TLS is used, from the configured URL.
pub fn parse_url(url: &str) -> Result<(String, u16, bool), MqttError> {
    let err = |reason: &str| MqttError::Url { url: url.to_owned(), reason: reason.to_owned() };
    let (tls, rest) = if let Some(r) = url.strip_prefix("mqtt://").or_else(|| url.strip_prefix("tcp://")) {
        (false, r)
    } else if let Some(r) = url.strip_prefix("mqtts://").or_else(|| url.strip_prefix("ssl://")) {
        (true, r)
    } else {
        return Err(err("the scheme must be mqtt:// or mqtts://"));
    };
    let rest = rest.trim_end_matches('/');
    let default_port = if tls { 8883 } else { 1883 };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| err("unclosed [ in the host"))?;
        match after.strip_prefix(':') {
            Some(p) => (host, p.parse().map_err(|_| err("the port is not a number 1-65535"))?),
            None if after.is_empty() => (host, default_port),
            None => return Err(err("unexpected text after the host")),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| err("the port is not a number 1-65535"))?),
            None => (rest, default_port),
        }
    };
    if host.is_empty() || host.contains('/') || host.contains('@') {
        return Err(err(
            "expected HOST[:PORT] after the scheme (credentials go in [mqtt] username/password)",
        ));
    }
    if port == 0 {
        return Err(err("the port is not a number 1-65535"));
    }
    Ok((host.to_owned(), port, tls))
}

/// The client options of the configuration: fixed client id, persistent
/// session, manual acknowledgements, credentials, TLS for `mqtts://`.
pub fn options(config: &MqttConfig, ca_file: Option<&Path>) -> Result<MqttOptions, MqttError> {
    let (host, port, tls) = parse_url(&config.url)?;
    let mut options = MqttOptions::new(config.client_id.clone(), host, port);
    options.set_clean_session(false);
    options.set_manual_acks(true);
    options.set_keep_alive(Duration::from_secs(config.keep_alive_s.max(5)));
    options.set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
    if let Some(user) = &config.username {
        options.set_credentials(user.clone(), config.password.clone().unwrap_or_default());
    }
    if tls {
        let path = match ca_file {
            Some(p) => Some(p.to_path_buf()),
            None => SYSTEM_CA_BUNDLES.iter().map(Path::new).find(|p| p.exists()).map(Path::to_path_buf),
        };
        let ca = match path {
            Some(p) => std::fs::read(&p)
                .map_err(|source| MqttError::CaFile { path: p.display().to_string(), source })?,
            None => Vec::new(),
        };
        options.set_transport(Transport::Tls(TlsConfiguration::Simple { ca, alpn: None, client_auth: None }));
    }
    Ok(options)
}

/// Whether the current connection is up and which one it is: an ack for a
/// publish received on an earlier connection is not sent (the broker
/// redelivers that publish on the new one).
#[derive(Debug, Default)]
struct Link {
    epoch: AtomicU64,
    connected: AtomicBool,
}

/// What became of one publish.
#[derive(Debug)]
enum Outcome {
    /// Durable (applied or duplicate): acknowledge.
    Done,
    /// Refused for good: report on the errors topic, then acknowledge.
    Rejected(Rejection),
    /// Not taken now (writer unavailable): do not acknowledge.
    Retry(String),
}

/// A publish in the acker's queue, with its commands in the writer's
/// queue, and the connection it came on.
struct Pending {
    epoch: u64,
    publish: Publish,
    admission: Admission,
}

/// What admitting a publish needs.
struct Ctx {
    bus: Bus,
    access: Arc<Access>,
    prefix: String,
}

/// Starts the MQTT edge (connection, acker, outbound, events) on `tracker`;
/// the tasks stop when `shutdown` is cancelled. Connection state goes to
/// `bus.readiness()` and the log; with no broker the edge keeps retrying
/// while the rest of the server serves.
pub fn spawn(
    config: &MqttConfig,
    phones: &PhonesConfig,
    bus: Bus,
    access: Arc<Access>,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> Result<(), MqttError> {
    if !config.enabled {
        bus.readiness().set_mqtt(MqttState::Disabled, None);
        return Ok(());
    }
    let options = options(config, config.ca_file.as_deref())?;
    let (client, eventloop) = AsyncClient::new(options, CLIENT_QUEUE);
    bus.readiness().set_mqtt(MqttState::Disconnected, Some("connecting".to_owned()));
    let link = Arc::new(Link::default());
    let waypoints_due = Arc::new(Notify::new());
    let ctx = Ctx { bus: bus.clone(), access, prefix: config.topic_prefix.clone() };

    let (acks_tx, acks_rx) = mpsc::unbounded_channel();
    let acker =
        tracker.spawn(ack_in_order(client.clone(), acks_rx, link.clone(), config.topic_prefix.clone()));
    let filters = inbound::filters(&config.topic_prefix, config.owntracks);
    let connection = Connection {
        client: client.clone(),
        link,
        filters,
        ctx,
        acks_tx,
        waypoints_due: waypoints_due.clone(),
        broker: config.url.clone(),
    };
    tracker.spawn(connection.run(eventloop, acker, shutdown.clone()));

    let out = Outbound {
        client,
        bus: bus.clone(),
        prefix: config.topic_prefix.clone(),
        owntracks: config.owntracks,
        waypoint_radius_m: phones.waypoint_radius_m,
        sites_open: HashMap::new(),
    };
    let frames_rx = bus.subscribe();
    let events_rx = bus.subscribe();
    let events_topic = format!("{}/events", config.topic_prefix);
    tracker.spawn(events_feed(out.client.clone(), bus.clone(), events_rx, events_topic, shutdown.clone()));
    tracker.spawn(out.run(frames_rx, waypoints_due, shutdown));
    Ok(())
}

/// How often at most the events feed logs that it fell behind.
const EVENTS_LAG_LOG_EVERY: Duration = Duration::from_secs(10);

/// Publishes every delta frame on `{prefix}/events` (QoS 0). When it falls
/// behind the frame buffer it skips ahead: consumers see the gap in `seq`
/// and re-read the state over HTTP, as for any QoS 0 loss. Skips are
/// counted in the metrics and logged at most every
/// [`EVENTS_LAG_LOG_EVERY`].
async fn events_feed(
    client: AsyncClient,
    bus: Bus,
    mut frames_rx: broadcast::Receiver<Arc<Published>>,
    topic: String,
    shutdown: CancellationToken,
) {
    let mut skipped_since_log = 0u64;
    let mut logged: Option<tokio::time::Instant> = None;
    loop {
        let frame = tokio::select! {
            _ = shutdown.cancelled() => return,
            frame = frames_rx.recv() => frame,
        };
        match frame {
            Ok(published) => {
                let o = outbound::event(&topic, &published);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = client.publish(o.topic, o.qos, o.retain, o.payload) => {
                        if let Err(e) = r {
                            debug!(error = %e, "mqtt event not queued");
                        }
                    }
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                bus.metrics().mqtt_events_skipped(missed);
                skipped_since_log += missed;
                if logged.is_none_or(|at| at.elapsed() >= EVENTS_LAG_LOG_EVERY) {
                    warn!(
                        skipped = skipped_since_log,
                        "mqtt events feed fell behind; frames skipped (consumers see the gap in seq)"
                    );
                    (skipped_since_log, logged) = (0, Some(tokio::time::Instant::now()));
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// The connection task's state.
struct Connection {
    client: AsyncClient,
    link: Arc<Link>,
    filters: Vec<String>,
    /// What admitting a publish needs, the bus among it.
    ctx: Ctx,
    acks_tx: mpsc::UnboundedSender<Pending>,
    waypoints_due: Arc<Notify>,
    broker: String,
}

impl Connection {
    async fn run(
        self,
        mut eventloop: EventLoop,
        acker: tokio::task::JoinHandle<()>,
        shutdown: CancellationToken,
    ) {
        let mut backoff = BACKOFF_MIN;
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => break,
                event = eventloop.poll() => event,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    backoff = BACKOFF_MIN;
                    self.link.epoch.fetch_add(1, Ordering::AcqRel);
                    self.link.connected.store(true, Ordering::Release);
                    // Ready once subscribed (SubAck), not merely connected.
                    self.ctx
                        .bus
                        .readiness()
                        .set_mqtt(MqttState::Disconnected, Some("subscribing".to_owned()));
                    info!(broker = %self.broker, session_present = ack.session_present, "mqtt connected");
                    let client = self.client.clone();
                    let filters: Vec<SubscribeFilter> = self
                        .filters
                        .iter()
                        .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce))
                        .collect();
                    // Not awaited here: the request queue is drained by this
                    // very loop.
                    tokio::spawn(async move {
                        if let Err(e) = client.subscribe_many(filters).await {
                            warn!(error = %e, "mqtt subscribe not sent");
                        }
                    });
                    self.waypoints_due.notify_one();
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    if ack.return_codes.iter().any(|c| matches!(c, SubscribeReasonCode::Failure)) {
                        error!(codes = ?ack.return_codes, "mqtt broker refused a subscription (check the acl)");
                        let detail = "the broker refused a subscription (check the acl)".to_owned();
                        self.ctx.bus.readiness().set_mqtt(MqttState::Disconnected, Some(detail));
                    } else {
                        self.ctx.bus.readiness().set_mqtt(MqttState::Connected, None);
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => self.dispatch(publish).await,
                Ok(_) => {}
                Err(e) => {
                    self.link.connected.store(false, Ordering::Release);
                    let detail = e.to_string();
                    if let rumqttc::ConnectionError::ConnectionRefused(code) = &e
                        && matches!(
                            code,
                            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized
                        )
                    {
                        error!(broker = %self.broker, error = %detail, "mqtt broker refused eoc's credentials");
                    } else {
                        warn!(broker = %self.broker, error = %detail, retry_in_ms = backoff.as_millis() as u64, "mqtt connection failed");
                    }
                    self.ctx.bus.readiness().set_mqtt(MqttState::Disconnected, Some(detail));
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        self.drain(eventloop, acker).await;
    }

    /// Parses, checks and queues a publish's commands for the writer
    /// (waiting only for room in its queue), and hands the publish to the
    /// acker, which acknowledges it once the writer has answered.
    async fn dispatch(&self, publish: Publish) {
        let epoch = self.link.epoch.load(Ordering::Acquire);
        let admission = admit(&self.ctx, &publish).await;
        if self.acks_tx.send(Pending { epoch, publish, admission }).is_err() {
            debug!("mqtt acker stopped");
        }
    }

    /// Stops taking publishes, lets the acker finish what it holds
    /// (polling so acks go out), then disconnects cleanly.
    async fn drain(self, mut eventloop: EventLoop, acker: tokio::task::JoinHandle<()>) {
        let Connection { client, ctx: Ctx { bus, .. }, acks_tx, .. } = self;
        drop(acks_tx);
        let deadline = tokio::time::sleep(DRAIN_TIMEOUT);
        tokio::pin!(deadline, acker);
        loop {
            tokio::select! {
                _ = &mut acker => break,
                _ = &mut deadline => { warn!("mqtt shutdown: in-flight messages left unacknowledged (redelivered later)"); break }
                event = eventloop.poll() => if event.is_err() { break },
            }
        }
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        bus.readiness().set_mqtt(MqttState::Disconnected, Some("shut down".to_owned()));
        info!("mqtt disconnected");
    }
}

/// A publish's commands in the writer's queue, and the refusal that
/// stopped the rest, if any.
struct Admission {
    queued: Vec<(Option<String>, Admitted)>,
    then: Option<Outcome>,
}

impl Admission {
    fn refused(outcome: Outcome) -> Self {
        Admission { queued: Vec::new(), then: Some(outcome) }
    }

    /// The publish's outcome: the first refusal, else done.
    async fn settle(self) -> Outcome {
        let mut first: Option<Outcome> = None;
        for (id, admitted) in self.queued {
            let outcome = match admitted.answer().await {
                Ok(_) => continue,
                Err(SubmitError::Rejected(problems)) => Outcome::Rejected(Rejection { id, problems }),
                Err(SubmitError::Unavailable(why)) => Outcome::Retry(why),
            };
            first.get_or_insert(outcome);
        }
        first.or(self.then).unwrap_or(Outcome::Done)
    }
}

/// Parses, maps, checks and queues one publish's commands.
async fn admit(ctx: &Ctx, publish: &Publish) -> Admission {
    let now = Utc::now();
    let topic = publish.topic.as_str();
    let route = inbound::route(&ctx.prefix, topic);
    // Who speaks: the topic's scope, or the OwnTracks user the topic names.
    let who = match route {
        None => None,
        Some(Route::OwnTracks { user, .. } | Route::OwnTracksEvent { user, .. }) => {
            match ctx.access.verifier.user(user) {
                Ok(who) => Some(who),
                Err(err) => {
                    let mut p = Problems::default();
                    p.push(crate::access::UNAUTHENTICATED, "topic", format!("owntracks user {user}: {err}"));
                    ctx.access.refuse(None, Edge::OwnTracks, topic, &p);
                    return Admission::refused(Outcome::Rejected(Rejection { id: None, problems: p }));
                }
            }
        }
        Some(r) => inbound::principal_of(r).map(Arc::new),
    };
    let submissions: Result<Vec<Submission>, Rejection> = match route {
        None => {
            Err(Rejection::one(None, "unknown_topic", "", format!("eoc does not take messages on {topic}")))
        }
        Some(Route::OwnTracks { user, device }) | Some(Route::OwnTracksEvent { user, device }) => {
            let team = who.as_ref().and_then(|w| w.team.as_deref());
            crate::phones::owntracks::submissions(&ctx.bus, user, device, team, &publish.payload, now)
        }
        Some(Route::AlertsCap) => crate::cap_api::mqtt_submissions(&ctx.bus, &publish.payload, now),
        Some(route) => inbound::eoc_submission(route, &publish.payload, now).map(|s| vec![s]),
    };
    let submissions = match submissions {
        Ok(s) => s,
        Err(r) => {
            let edge = if matches!(route, Some(Route::OwnTracks { .. } | Route::OwnTracksEvent { .. })) {
                Edge::OwnTracks
            } else {
                Edge::Mqtt
            };
            ctx.access.refuse(who.as_deref(), edge, topic, &r.problems);
            return Admission::refused(Outcome::Rejected(r));
        }
    };
    let Some(who) = who else {
        return Admission::refused(Outcome::Rejected(Rejection::one(
            None,
            "unknown_topic",
            "",
            format!("no identity for {topic}"),
        )));
    };
    let mut admission = Admission { queued: Vec::with_capacity(submissions.len()), then: None };
    for s in submissions {
        let id = s.msg_id.clone();
        match ctx.access.enqueue(&ctx.bus, &who, s).await {
            Ok(admitted) => admission.queued.push((id, admitted)),
            Err(SubmitError::Rejected(problems)) => {
                admission.then = Some(Outcome::Rejected(Rejection { id, problems }));
                break;
            }
            Err(SubmitError::Unavailable(why)) => {
                admission.then = Some(Outcome::Retry(why));
                break;
            }
        }
    }
    admission
}

/// Acknowledges publishes in the order received, once each is settled.
async fn ack_in_order(
    client: AsyncClient,
    mut pending_rx: mpsc::UnboundedReceiver<Pending>,
    link: Arc<Link>,
    prefix: String,
) {
    let errors_topic = format!("{prefix}/errors");
    // Acks that could not be handed to the event loop: it has stopped (the
    // server is shutting down), so every one after the first fails too. The
    // first is logged, the rest counted and logged once at the end.
    let mut unsent = 0u64;
    while let Some(Pending { epoch, publish, admission }) = pending_rx.recv().await {
        match admission.settle().await {
            Outcome::Done => {}
            Outcome::Rejected(rejection) => {
                warn!(topic = %publish.topic, id = ?rejection.id, problems = %rejection.problems, "mqtt message rejected");
                let payload = rejection.to_json(&publish.topic);
                if let Err(e) = client.publish(errors_topic.as_str(), QoS::AtLeastOnce, false, payload).await
                {
                    warn!(error = %e, "mqtt error report not sent");
                }
            }
            Outcome::Retry(why) => {
                warn!(topic = %publish.topic, reason = %why, "mqtt message not accepted now; left for redelivery");
                continue;
            }
        }
        if publish.qos == QoS::AtMostOnce {
            continue;
        }
        let current = link.connected.load(Ordering::Acquire) && link.epoch.load(Ordering::Acquire) == epoch;
        if current && let Err(e) = client.ack(&publish).await {
            if unsent == 0 {
                warn!(error = %e, "mqtt puback not sent; the broker redelivers the message");
            }
            unsent += 1;
        }
    }
    if unsent > 1 {
        warn!(
            unsent,
            "mqtt pubacks not sent at shutdown; the broker redelivers those messages (duplicates are answered, not applied again)"
        );
    }
}

/// The outbound task's state.
struct Outbound {
    client: AsyncClient,
    bus: Bus,
    prefix: String,
    owntracks: bool,
    waypoint_radius_m: f64,
    /// Whether each site is open, to push new waypoints when that changes.
    sites_open: HashMap<String, bool>,
}

impl Outbound {
    async fn run(
        mut self,
        mut frames_rx: broadcast::Receiver<Arc<Published>>,
        waypoints_due: Arc<Notify>,
        shutdown: CancellationToken,
    ) {
        self.sites_open = self.bus.read(|e| {
            e.world().sites().iter().map(|s| (s.id.clone(), s.status == SiteStatus::Open)).collect()
        });
        let mut waypoints_dirty = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = waypoints_due.notified() => waypoints_dirty = true,
                frame = frames_rx.recv() => match frame {
                    Ok(published) => {
                        for o in outbound::publications(&self.prefix, &published) {
                            if !self.publish(o, &shutdown).await {
                                return;
                            }
                        }
                        if let Delta::Site(site) = &published.frame.delta {
                            let open = site.status == SiteStatus::Open;
                            if self.sites_open.insert(site.site_id.clone(), open) != Some(open) {
                                waypoints_dirty = true;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        warn!(missed, "mqtt outbound fell behind; republishing impacts and active tasks from the state");
                        if !self.republish_state(&shutdown).await {
                            return;
                        }
                        waypoints_dirty = true;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
            // Coalesce: one round of waypoints after a burst of site changes.
            if waypoints_dirty && frames_rx.is_empty() {
                waypoints_dirty = false;
                if self.owntracks && !self.publish_waypoints(&shutdown).await {
                    return;
                }
            }
        }
    }

    /// Publishes one message; `false` when shutting down.
    async fn publish(&self, o: Outgoing, shutdown: &CancellationToken) -> bool {
        tokio::select! {
            _ = shutdown.cancelled() => false,
            r = self.client.publish(o.topic.as_str(), o.qos, o.retain, o.payload) => {
                if let Err(e) = r {
                    warn!(topic = %o.topic, error = %e, "mqtt publish not queued");
                }
                true
            }
        }
    }

    /// After missing frames: the retained impact of every alert and every
    /// active task again (a phone may see a task twice; it keys tasks by
    /// `task_id` and `state`).
    async fn republish_state(&mut self, shutdown: &CancellationToken) -> bool {
        let prefix = self.prefix.clone();
        let (outgoing, sites_open) = self.bus.read_with_seq(|e, seq| {
            let now_ms = crate::writer::now_ms();
            let mut out = Vec::new();
            for (i, a) in e.alerts().iter().enumerate() {
                let summary = e.exposure_summary(a);
                out.push(Outgoing {
                    topic: format!("{prefix}/alerts/{}/impact", a.msg.alert_id),
                    qos: QoS::AtLeastOnce,
                    retain: true,
                    payload: outbound::impact_summary(&a.msg.alert_id, seq, now_ms, &summary),
                });
                let _ = i;
            }
            for (k, t) in e.tasks().iter().enumerate() {
                if t.state.is_active() {
                    let view = e.task_view(crate::core::engine::TaskIdx(k as u32));
                    out.extend(outbound::task_publication(&prefix, &view));
                }
            }
            let sites: HashMap<String, bool> =
                e.world().sites().iter().map(|s| (s.id.clone(), s.status == SiteStatus::Open)).collect();
            (out, sites)
        });
        self.sites_open = sites_open;
        for o in outgoing {
            if !self.publish(o, shutdown).await {
                return false;
            }
        }
        true
    }

    /// Pushes the open sites nearest each OwnTracks device's team to the
    /// device as geofences.
    async fn publish_waypoints(&self, shutdown: &CancellationToken) -> bool {
        let radius_m = self.waypoint_radius_m;
        let commands = self.bus.read(|e| crate::phones::owntracks::waypoint_commands(e, radius_m));
        debug!(devices = commands.len(), "pushing waypoints to owntracks devices");
        for (topic, payload) in commands {
            let o = Outgoing { topic, qos: QoS::AtLeastOnce, retain: false, payload };
            if !self.publish(o, shutdown).await {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_port_and_tls() {
        assert_eq!(parse_url("mqtt://127.0.0.1:1883").unwrap(), ("127.0.0.1".into(), 1883, false));
        assert_eq!(parse_url("mqtt://broker.local").unwrap(), ("broker.local".into(), 1883, false));
        assert_eq!(parse_url("mqtts://broker.local").unwrap(), ("broker.local".into(), 8883, true));
        assert_eq!(parse_url("mqtts://broker.local:9000/").unwrap(), ("broker.local".into(), 9000, true));
        assert_eq!(parse_url("tcp://[::1]:1884").unwrap(), ("::1".into(), 1884, false));
        for bad in
            ["http://x", "mqtt://", "mqtt://x:port", "mqtt://x:0", "mqtt://u:p@x", "mqtt://[::1", "x:1883"]
        {
            let e = parse_url(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid mqtt url"), "{bad}: {e}");
        }
    }

    #[test]
    fn options_ask_for_a_persistent_session_with_manual_acks() {
        let config = MqttConfig {
            username: Some("eoc-server".into()),
            password: Some("s".into()),
            ..MqttConfig::default()
        };
        let o = options(&config, None).unwrap();
        assert!(!o.clean_session());
        assert!(o.manual_acks());
        assert_eq!(o.client_id(), "eoc-server");
        assert_eq!(o.credentials(), Some(("eoc-server".to_owned(), "s".to_owned())));
        assert_eq!(o.max_packet_size(), MAX_PACKET_BYTES);
    }
}
