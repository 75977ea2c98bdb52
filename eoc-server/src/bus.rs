//! The bus: how edges reach the one writer, and how changes reach clients.
//!
//! Every edge (MQTT, WebSocket, HTTP, OwnTracks, OsmAnd) turns bytes into a
//! [`Submission`] and awaits [`Bus::submit`]: the writer journals the
//! command durably, applies it, publishes the deltas, and only then
//! answers. An `Ok` therefore means durable: the edge may acknowledge
//! (HTTP 2xx, WebSocket ack, MQTT PUBACK).
//!
//! Readers never queue behind the writer's journal: [`Bus::read`] takes a
//! shared lock on the engine, which the writer holds exclusively only while
//! applying a batch that is already durable.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use eoc_protocol::delta::{DeltaFrame, Snapshot};
use eoc_protocol::validate::Problems;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::core::engine::{Command, Engine};
use crate::metrics::{Metrics, Outcome};
use crate::writer::WriterMsg;

/// Which edge a command came in on (for metrics, audit and errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Edge {
    /// `eoc/v1/…` MQTT topics.
    Mqtt,
    /// `/api/v1/…`.
    Http,
    /// `/ws`.
    WebSocket,
    /// OwnTracks over MQTT or HTTP.
    OwnTracks,
    /// OsmAnd / Traccar Client over HTTP.
    OsmAnd,
    /// The server itself (ticks).
    Internal,
}

impl Edge {
    /// Label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Edge::Mqtt => "mqtt",
            Edge::Http => "http",
            Edge::WebSocket => "websocket",
            Edge::OwnTracks => "owntracks",
            Edge::OsmAnd => "osmand",
            Edge::Internal => "internal",
        }
    }
}

/// A command on its way to the writer.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    /// What to do.
    pub command: Command,
    /// The message's unique id (its envelope `id`), for deduplication;
    /// `None` for commands without one (ticks).
    pub msg_id: Option<String>,
    /// The identity that sent it.
    pub by: String,
    /// Where it came from.
    pub edge: Edge,
}

#[cfg(test)]
impl Submission {
    /// A position of team `t-1` with message id `id`, as the writer's and
    /// the journal's tests send it.
    pub(crate) fn test_position(id: &str) -> Submission {
        use eoc_protocol::messages::{Envelope, TeamPositionMsg};
        let ts = chrono::Utc::now();
        Submission {
            command: Command::TeamPosition(TeamPositionMsg {
                envelope: Envelope { v: 1, id: id.to_owned(), ts },
                team_id: Some("t-1".to_owned()),
                lat: 38.5,
                lon: 68.7,
                accuracy_m: None,
                at: Some(ts),
                battery_pct: None,
                speed_mps: None,
                heading_deg: None,
                altitude_m: None,
            }),
            msg_id: Some(id.to_owned()),
            by: "test".to_owned(),
            edge: Edge::Http,
        }
    }
}

/// What the writer did with a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Journalled and applied; its deltas end at `seq`.
    Applied {
        /// The sequence number of the last delta it produced (or the current
        /// one if it produced none).
        seq: u64,
    },
    /// The same `msg_id` was applied before: acknowledged again, no effect.
    Duplicate,
}

/// Why a submission was not accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SubmitError {
    /// The command is invalid for the current state (unknown team, illegal
    /// transition…); nothing changed.
    #[error("rejected: {0}")]
    Rejected(Problems),
    /// The writer is shutting down or its journal failed; retry later.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// One published change, serialised once and shared by every subscriber.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// The frame.
    pub frame: DeltaFrame,
    /// Its JSON text, reference-counted: every WebSocket connection sends
    /// these same bytes (a clone is a counter increment, not a copy).
    pub json: Utf8Bytes,
}

/// A command in the writer's queue: await [`Queued::answer`] for the
/// outcome (durable and applied, a duplicate, or refused).
#[derive(Debug)]
pub struct Queued {
    reply_rx: oneshot::Receiver<Result<Accepted, SubmitError>>,
    edge: Edge,
    metrics: Arc<Metrics>,
}

impl Queued {
    /// The writer's answer.
    pub async fn answer(self) -> Result<Accepted, SubmitError> {
        match self.reply_rx.await {
            Ok(result) => result,
            Err(_) => {
                self.metrics.message(self.edge, Outcome::Unavailable);
                Err(SubmitError::Unavailable("the writer stopped before answering".to_owned()))
            }
        }
    }
}

/// A submission with the handle its answer goes back on.
#[derive(Debug)]
pub struct Request {
    /// The command and its provenance.
    pub submission: Submission,
    /// Where the writer sends the outcome.
    pub reply_tx: oneshot::Sender<Result<Accepted, SubmitError>>,
}

/// State shared by every clone of a [`Bus`].
#[derive(Debug)]
struct Shared {
    /// The engine; write-locked by the writer only while applying a batch.
    engine: Arc<RwLock<Engine>>,
    /// Sequence number of the last published frame; updated while the
    /// engine is write-locked, so a reader holding the read lock sees the
    /// `seq` that matches the state it reads.
    seq: Arc<AtomicU64>,
    /// The writer's queue.
    writer_tx: mpsc::Sender<WriterMsg>,
    /// Fan-out of published frames, fed by the writer in state order.
    frames_tx: broadcast::Sender<Arc<Published>>,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    /// The last snapshot frame served, reused by clients that join or
    /// resynchronise while `seq` has not moved.
    snapshot: Mutex<Option<CachedSnapshot>>,
}

/// A snapshot frame already written, with the `seq` it includes.
#[derive(Debug)]
struct CachedSnapshot {
    seq: u64,
    taken: Instant,
    text: Utf8Bytes,
}

/// How long a snapshot frame is reused for new clients at the same `seq`
/// (it carries the server's clock of when it was taken).
pub const SNAPSHOT_REUSE: Duration = Duration::from_secs(1);

/// The snapshot frame of the WebSocket protocol: `"type":"snapshot"`, then
/// the snapshot's fields, written straight to text.
pub fn snapshot_frame(snapshot: &Snapshot) -> Utf8Bytes {
    let body = serde_json::to_string(snapshot).unwrap_or_else(|_| "{}".to_owned());
    let fields = body.strip_prefix('{').unwrap_or("}");
    let mut text = String::with_capacity(body.len() + 20);
    text.push_str(r#"{"type":"snapshot""#);
    if !fields.starts_with('}') {
        text.push(',');
    }
    text.push_str(fields);
    text.into()
}

/// The handle edges use: submit commands, read state, follow changes.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Bus {
    shared: Arc<Shared>,
}

impl Bus {
    /// Assembles a bus around a running writer's queue and shared state.
    pub(crate) fn new(
        engine: Arc<RwLock<Engine>>,
        seq: Arc<AtomicU64>,
        writer_tx: mpsc::Sender<WriterMsg>,
        frames_tx: broadcast::Sender<Arc<Published>>,
        metrics: Arc<Metrics>,
        readiness: Arc<Readiness>,
    ) -> Bus {
        let snapshot = Mutex::new(None);
        Bus { shared: Arc::new(Shared { engine, seq, writer_tx, frames_tx, metrics, readiness, snapshot }) }
    }

    /// Sends a command to the writer and waits until it is durable and
    /// applied (`Ok`), a duplicate, or refused. Cancel-safe in the sense
    /// that dropping the future never undoes a command already queued.
    pub async fn submit(&self, s: Submission) -> Result<Accepted, SubmitError> {
        self.enqueue(s).await?.answer().await
    }

    /// Queues a command for the writer and returns at once with the handle
    /// its answer comes on. Commands queued one after another by one task
    /// are applied in that order, so an edge can keep many in flight and
    /// still answer them in order ([`Queued::answer`]).
    pub async fn enqueue(&self, s: Submission) -> Result<Queued, SubmitError> {
        let edge = s.edge;
        let (reply_tx, reply_rx) = oneshot::channel();
        if self.shared.writer_tx.send(WriterMsg::Submit(Request { submission: s, reply_tx })).await.is_err() {
            self.shared.metrics.message(edge, Outcome::Unavailable);
            return Err(SubmitError::Unavailable("the server is shutting down".to_owned()));
        }
        Ok(Queued { reply_rx, edge, metrics: self.shared.metrics.clone() })
    }

    /// Follows every frame published from now on, in state order (`seq`
    /// increasing by one). A receiver that falls more than
    /// `http.fanout_frames` (default [`crate::writer::FRAME_BUFFER`]) frames behind gets
    /// `RecvError::Lagged` and must take a fresh snapshot.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        self.shared.frames_tx.subscribe()
    }

    /// Runs `f` on the current state under a shared lock. Keep `f` short:
    /// the writer waits for it before applying the next batch.
    pub fn read<R>(&self, f: impl FnOnce(&Engine) -> R) -> R {
        let engine = self.shared.engine.read().unwrap_or_else(PoisonError::into_inner);
        f(&engine)
    }

    /// Runs `f` on the current state and its sequence number, consistently.
    pub fn read_with_seq<R>(&self, f: impl FnOnce(&Engine, u64) -> R) -> R {
        let engine = self.shared.engine.read().unwrap_or_else(PoisonError::into_inner);
        let seq = self.shared.seq.load(Ordering::Acquire);
        f(&engine, seq)
    }

    /// Sequence number of the last published frame.
    pub fn seq(&self) -> u64 {
        self.shared.seq.load(Ordering::Acquire)
    }

    /// The whole state, numbered with the `seq` it includes.
    pub fn snapshot(&self) -> Snapshot {
        self.read_with_seq(|engine, seq| engine.snapshot(seq, crate::writer::now_ms()))
    }

    /// A snapshot and a receiver of every frame after it, for a new client.
    /// The receiver subscribes before the snapshot is taken, so nothing is
    /// missed; it may also yield frames already in the snapshot, which the
    /// client skips: every frame with `seq <= snapshot.seq`.
    pub fn snapshot_and_subscribe(&self) -> (Snapshot, broadcast::Receiver<Arc<Published>>) {
        let rx = self.subscribe();
        (self.snapshot(), rx)
    }

    /// The snapshot frame ([`snapshot_frame`]) with its `seq`, and a
    /// receiver of every frame after it, as [`Bus::snapshot_and_subscribe`].
    ///
    /// Clients that connect (or fall behind) together, at the same `seq`,
    /// share one snapshot written once, for up to [`SNAPSHOT_REUSE`]. That
    /// is safe: the receiver subscribes before `seq` is read, so every
    /// frame after that `seq` reaches it.
    pub fn snapshot_frame_and_subscribe(&self) -> (u64, Utf8Bytes, broadcast::Receiver<Arc<Published>>) {
        let rx = self.subscribe();
        let seq_now = self.seq();
        let cached = |c: &CachedSnapshot| c.seq == seq_now && c.taken.elapsed() < SNAPSHOT_REUSE;
        if let Some(c) = self.shared.snapshot.lock().unwrap_or_else(PoisonError::into_inner).as_ref()
            && cached(c)
        {
            return (c.seq, c.text.clone(), rx);
        }
        let snapshot = self.snapshot();
        let text = snapshot_frame(&snapshot);
        let mut slot = self.shared.snapshot.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.as_ref().is_none_or(|c| c.seq <= snapshot.seq) {
            *slot = Some(CachedSnapshot { seq: snapshot.seq, taken: Instant::now(), text: text.clone() });
        }
        (snapshot.seq, text, rx)
    }

    /// Submissions waiting for the writer now.
    pub fn queue_depth(&self) -> usize {
        self.shared.writer_tx.max_capacity() - self.shared.writer_tx.capacity()
    }

    /// The process metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// What `/readyz` reports; edges set their part (MQTT connection).
    pub fn readiness(&self) -> &Arc<Readiness> {
        &self.shared.readiness
    }
}

/// Connection state of the MQTT edge, as `/readyz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttState {
    /// MQTT is turned off in the configuration.
    Disabled,
    /// Configured, not (yet or any more) connected to the broker.
    Disconnected,
    /// Connected and subscribed.
    Connected,
}

impl MqttState {
    /// Label for `/readyz`.
    pub fn as_str(self) -> &'static str {
        match self {
            MqttState::Disabled => "disabled",
            MqttState::Disconnected => "disconnected",
            MqttState::Connected => "connected",
        }
    }
}

/// What the server is ready for; shared by the writer (journal replayed)
/// and the MQTT edge (broker connection).
#[derive(Debug)]
pub struct Readiness {
    journal_ready: AtomicBool,
    journal_entries: AtomicU64,
    restored_row: AtomicU64,
    mqtt: Mutex<MqttState>,
    mqtt_detail: Mutex<Option<String>>,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness {
            journal_ready: AtomicBool::new(false),
            journal_entries: AtomicU64::new(0),
            restored_row: AtomicU64::new(0),
            mqtt: Mutex::new(MqttState::Disabled),
            mqtt_detail: Mutex::new(None),
        }
    }
}

impl Readiness {
    /// Marks the journal replayed (`entries` rows) and the writer running.
    pub fn set_journal_ready(&self, restored_row: u64, entries: u64) {
        self.restored_row.store(restored_row, Ordering::Release);
        self.journal_entries.store(entries, Ordering::Release);
        self.journal_ready.store(true, Ordering::Release);
    }

    /// Whether the journal has been replayed and the writer accepts work.
    pub fn journal_ready(&self) -> bool {
        self.journal_ready.load(Ordering::Acquire)
    }

    /// Journal entries applied at start (those after the restored state).
    pub fn journal_entries(&self) -> u64 {
        self.journal_entries.load(Ordering::Acquire)
    }

    /// The journal row whose stored state the start restored (0: none, a
    /// full replay).
    pub fn restored_row(&self) -> u64 {
        self.restored_row.load(Ordering::Acquire)
    }

    /// Records the MQTT edge's state, with an optional reason (the last
    /// connection error; never credentials).
    pub fn set_mqtt(&self, state: MqttState, detail: Option<String>) {
        *self.mqtt.lock().unwrap_or_else(PoisonError::into_inner) = state;
        *self.mqtt_detail.lock().unwrap_or_else(PoisonError::into_inner) = detail;
    }

    /// The MQTT edge's state and the reason recorded with it.
    pub fn mqtt(&self) -> (MqttState, Option<String>) {
        let state = *self.mqtt.lock().unwrap_or_else(PoisonError::into_inner);
        let detail = self.mqtt_detail.lock().unwrap_or_else(PoisonError::into_inner).clone();
        (state, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_frame_is_the_snapshot_with_its_type() {
        let snapshot = Snapshot {
            v: 1,
            seq: 42,
            server_ts_ms: 1_000,
            alerts: Vec::new(),
            impacts: Vec::new(),
            sites: Vec::new(),
            teams: Vec::new(),
            tasks: Vec::new(),
        };
        let frame: serde_json::Value = serde_json::from_str(&snapshot_frame(&snapshot)).unwrap();
        let mut expected = serde_json::to_value(&snapshot).unwrap();
        expected["type"] = "snapshot".into();
        assert_eq!(frame, expected);
    }
}
