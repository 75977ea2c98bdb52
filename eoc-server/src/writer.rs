//! The writer: the one task that changes state.
//!
//! It owns the [`Journal`] and is the only writer of the [`Engine`]. It
//! takes submissions off a bounded queue in batches; for each batch it
//! takes the time once, drops retries of messages already applied, appends
//! the rest to the journal in one transaction (one fsync), applies them to
//! the engine with that time, publishes the deltas in order, and only then
//! answers each edge. An answer therefore means durable.
//!
//! It runs on a blocking thread: SQLite calls block, and a dedicated thread
//! keeps them off the async workers that serve sockets.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

use eoc_protocol::PROTOCOL_VERSION;
use eoc_protocol::delta::DeltaFrame;
use eoc_protocol::validate::Problems;
use tokio::sync::{broadcast, mpsc};
use tracing::{error, info, warn};

use crate::bus::{Accepted, Bus, Published, Readiness, Request, Submission, SubmitError};
use crate::config::JournalConfig;
use crate::core::engine::{Engine, EngineState};
use crate::journal::{Checkpoint, Journal, JournalError};
use crate::metrics::{Metrics, Outcome};

/// Capacity of the writer's queue. Deep enough to absorb a burst from every
/// edge while one batch is being fsynced (a few ms at 100,000 msg/s is a few
/// hundred messages), small enough that a stalled disk pushes back on the
/// edges within a second instead of growing memory without bound.
pub const WRITER_QUEUE: usize = 8192;

/// Most submissions in one batch (one transaction, one fsync). Larger
/// batches amortise the fsync further but delay the first answer of the
/// batch; 1,024 positions apply in well under a millisecond.
pub const MAX_BATCH: usize = 1024;

/// Frames a subscriber may fall behind before it is told it lagged (and
/// resynchronises with a snapshot). About a second of peak ingest.
pub const FRAME_BUFFER: usize = 16_384;

/// Message ids are remembered for deduplication this long (by the batch
/// time they were applied at). Retries come from phones and brokers that
/// were offline; a day covers a lost night of connectivity.
pub const DEDUP_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

/// At most this many message ids are remembered (about 100 MB at worst);
/// beyond it the oldest are forgotten first.
pub const DEDUP_MAX: usize = 1_000_000;

/// The server's clock, ms since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// What the writer's queue carries.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "Stop is sent once; boxing Submit would cost an allocation per message"
)]
pub enum WriterMsg {
    /// A command to apply.
    Submit(Request),
    /// Stop accepting, apply what is queued, checkpoint, flush and exit.
    Stop,
}

/// What a checkpoint stores to restore from: the engine's state and the
/// message ids still remembered for deduplication, oldest first.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct StoredState {
    engine: EngineState,
    seen: Vec<(String, i64)>,
}

/// Message ids applied recently, bounded by [`DEDUP_WINDOW_MS`] and
/// [`DEDUP_MAX`]. Restored with the state at start, then rebuilt from the
/// journal entries after it.
#[derive(Debug, Default)]
struct Seen {
    ids: HashMap<String, i64>,
    order: VecDeque<(i64, String)>,
}

impl Seen {
    fn contains(&self, id: &str) -> bool {
        self.ids.contains_key(id)
    }

    /// Every remembered id with when it was applied, oldest first.
    fn entries(&self) -> Vec<(String, i64)> {
        self.order.iter().map(|(at, id)| (id.clone(), *at)).collect()
    }

    fn insert(&mut self, id: &str, now_ms: i64) {
        if self.ids.insert(id.to_owned(), now_ms).is_none() {
            self.order.push_back((now_ms, id.to_owned()));
        }
        while let Some((at, _)) = self.order.front() {
            if self.order.len() <= DEDUP_MAX && *at > now_ms - DEDUP_WINDOW_MS {
                break;
            }
            if let Some((_, old)) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
    }
}

/// The writer, ready to run.
#[derive(Debug)]
pub struct Writer {
    engine: Arc<RwLock<Engine>>,
    seq: Arc<AtomicU64>,
    journal: Journal,
    seen: Seen,
    frames_tx: broadcast::Sender<Arc<Published>>,
    rx: mpsc::Receiver<WriterMsg>,
    stop_tx: Option<mpsc::Sender<WriterMsg>>,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    snapshot_every: u64,
    since_checkpoint: u64,
    last_row: i64,
    last_now_ms: i64,
}

/// Opens the journal in `data_dir` and returns the bus for edges and the
/// writer, which replays the journal into `engine` when it starts running
/// ([`Writer::run`]); until then readers wait and `/readyz` says 503.
pub fn start(
    engine: Engine,
    data_dir: &Path,
    journal_cfg: &JournalConfig,
    fanout_frames: usize,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
) -> Result<(Bus, Writer), JournalError> {
    let journal = Journal::open(data_dir)?;
    let engine = Arc::new(RwLock::new(engine));
    let seq = Arc::new(AtomicU64::new(0));
    let (writer_tx, rx) = mpsc::channel(WRITER_QUEUE);
    let (frames_tx, _) = broadcast::channel(fanout_frames.max(1));
    let bus = Bus::new(
        engine.clone(),
        seq.clone(),
        writer_tx.clone(),
        frames_tx.clone(),
        metrics.clone(),
        readiness.clone(),
    );
    let writer = Writer {
        engine,
        seq,
        journal,
        seen: Seen::default(),
        frames_tx,
        rx,
        stop_tx: Some(writer_tx),
        metrics,
        readiness,
        snapshot_every: journal_cfg.snapshot_every.max(1),
        since_checkpoint: 0,
        last_row: 0,
        last_now_ms: 0,
    };
    Ok((bus, writer))
}

/// How one submission of a batch is answered.
enum Slot {
    /// Journalled at this position of the batch's journalled list.
    Fresh(usize),
    /// A retry of a message applied in an earlier batch.
    Seen,
    /// A retry of the submission at this batch index.
    Repeat(usize),
}

impl Writer {
    /// The sender that stops the writer: send [`WriterMsg::Stop`] on it.
    /// Given out once (`None` after): the writer keeps no sender itself, so
    /// that when every sender is gone (the runtime dropped without a clean
    /// shutdown) its queue closes and it exits instead of waiting forever.
    pub fn stopper(&mut self) -> Option<mpsc::Sender<WriterMsg>> {
        self.stop_tx.take()
    }

    /// Runs until stopped; blocking, so call it on a blocking thread.
    /// On stop, applies every submission already queued, stores a
    /// checkpoint and flushes the journal.
    pub fn run(mut self) -> Result<(), JournalError> {
        self.stop_tx = None;
        self.replay()?;
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut stopping = false;
        while let Some(first) = self.rx.blocking_recv() {
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    WriterMsg::Submit(r) => batch.push(r),
                    WriterMsg::Stop if !stopping => {
                        // Refuse new submissions; those already queued are
                        // still received and applied.
                        stopping = true;
                        self.rx.close();
                    }
                    WriterMsg::Stop => {}
                }
                if batch.len() < MAX_BATCH {
                    next = self.rx.try_recv().ok();
                }
            }
            if !batch.is_empty() {
                self.process(std::mem::take(&mut batch));
            }
        }
        if let Err(err) = self.checkpoint().and_then(|()| self.journal.flush()) {
            error!(error = %err, "could not checkpoint the journal at shutdown");
        }
        info!(row = self.last_row, seq = self.seq.load(Ordering::Acquire), "writer stopped");
        Ok(())
    }

    /// Restores the last checkpoint's state into `engine` (fresh), checking
    /// it against the view stored with it. `Some((row, seq))` to replay
    /// after; `None` (engine untouched or put back) for a full replay.
    fn restore(&mut self, engine: &mut Engine, checkpoint: Option<&Checkpoint>) -> Option<(i64, u64)> {
        let c = checkpoint?;
        let json = c.state_json.as_deref()?;
        let stored: StoredState = match serde_json::from_str(json) {
            Ok(s) => s,
            Err(err) => {
                warn!(row = c.row, error = %err, "the stored state cannot be read; replaying the whole journal");
                return None;
            }
        };
        let pristine = engine.clone();
        if let Err(why) = engine.restore(stored.engine) {
            warn!(row = c.row, reason = %why, "the stored state does not fit; replaying the whole journal");
            return None;
        }
        let view = serde_json::to_string(&engine.snapshot(c.seq, c.now_ms)).unwrap_or_default();
        if view != c.snapshot_json {
            error!(
                row = c.row,
                "the restored state differs from the view stored with it; replaying the whole journal"
            );
            *engine = pristine;
            return None;
        }
        for (id, at_ms) in &stored.seen {
            self.seen.insert(id, *at_ms);
        }
        Some((c.row, c.seq))
    }

    /// Rebuilds the state, `seq` and the deduplication set: the last
    /// checkpoint's state, then the journal entries after it (all of them
    /// if there is no usable state), holding the engine's write lock
    /// throughout.
    fn replay(&mut self) -> Result<(), JournalError> {
        let started = Instant::now();
        let checkpoint = self.journal.last_checkpoint()?;
        let engine_lock = self.engine.clone();
        let mut engine = engine_lock.write().unwrap_or_else(PoisonError::into_inner);
        let restored = self.restore(&mut engine, checkpoint.as_ref());
        let (after, mut seq) = restored.unwrap_or((0, 0));
        let seen = &mut self.seen;
        let (mut last_row, mut last_now_ms) = match (&restored, &checkpoint) {
            (Some(_), Some(c)) => (c.row, c.now_ms),
            _ => (0, 0),
        };
        let mut verified = None;
        if let (Some(_), Some(c)) = (&restored, &checkpoint) {
            info!(row = c.row, seq, "restored the state stored at this row");
            verified = Some(true);
        }
        let entries = self.journal.replay_after(after, |entry| {
            let s = &entry.submission;
            if let Ok(deltas) = engine.apply(&s.command, &s.by, entry.now_ms) {
                seq += deltas.len() as u64;
                if let Some(id) = &s.msg_id {
                    seen.insert(id, entry.now_ms);
                }
            }
            (last_row, last_now_ms) = (entry.row, entry.now_ms);
            if let Some(c) = checkpoint.as_ref().filter(|c| c.row == entry.row) {
                let json = serde_json::to_string(&engine.snapshot(seq, c.now_ms))?;
                verified = Some(json == c.snapshot_json && seq == c.seq);
            }
            Ok(())
        })?;
        drop(engine);
        match (verified, &checkpoint) {
            (Some(true), Some(c)) => info!(row = c.row, seq, "replay matches the stored checkpoint"),
            (Some(false), Some(c)) => {
                error!(row = c.row, "replayed state differs from the checkpoint stored at that row")
            }
            (_, Some(c)) => warn!(row = c.row, last_row, "the stored checkpoint is beyond the journal's end"),
            _ => {}
        }
        info!(
            entries_applied = entries,
            from_row = after,
            seq,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "journal replayed"
        );
        self.seq.store(seq, Ordering::Release);
        (self.last_row, self.last_now_ms) = (last_row, last_now_ms);
        self.readiness.set_journal_ready(u64::try_from(after).unwrap_or(0), entries);
        Ok(())
    }

    fn process(&mut self, batch: Vec<Request>) {
        let now_ms = now_ms().max(self.last_now_ms);
        self.metrics.batch(batch.len());
        let mut slots = Vec::with_capacity(batch.len());
        let mut fresh: Vec<usize> = Vec::with_capacity(batch.len());
        let mut in_batch: HashMap<&str, usize> = HashMap::new();
        for (i, r) in batch.iter().enumerate() {
            let slot = match r.submission.msg_id.as_deref() {
                Some(id) if self.seen.contains(id) => Slot::Seen,
                Some(id) => match in_batch.get(id) {
                    Some(&first) => Slot::Repeat(first),
                    None => {
                        in_batch.insert(id, i);
                        fresh.push(i);
                        Slot::Fresh(fresh.len() - 1)
                    }
                },
                None => {
                    fresh.push(i);
                    Slot::Fresh(fresh.len() - 1)
                }
            };
            slots.push(slot);
        }

        let t0 = Instant::now();
        let appended = self.journal.append(now_ms, fresh.iter().map(|&i| &batch[i].submission));
        self.metrics.journal_commit.observe(t0.elapsed());
        let rows = match appended {
            Ok(rows) => rows,
            Err(err) => {
                error!(error = %err, "journal append failed; the batch is refused");
                for (r, slot) in batch.into_iter().zip(slots) {
                    let result = match slot {
                        Slot::Seen => Ok(Accepted::Duplicate),
                        _ => Err(SubmitError::Unavailable("the journal could not be written".to_owned())),
                    };
                    self.answer(r, result);
                }
                return;
            }
        };
        if let Some(&row) = rows.last() {
            self.last_row = row;
        }
        self.last_now_ms = now_ms;
        self.since_checkpoint += rows.len() as u64;

        // Apply under the write lock; render frames after releasing it.
        let mut outcomes: Vec<Result<u64, Problems>> = Vec::with_capacity(fresh.len());
        let mut deltas_out = Vec::new();
        {
            let mut engine = self.engine.write().unwrap_or_else(PoisonError::into_inner);
            let mut seq = self.seq.load(Ordering::Acquire);
            for &i in &fresh {
                let s = &batch[i].submission;
                let t = Instant::now();
                let result = engine.apply(&s.command, &s.by, now_ms);
                self.metrics.apply.observe(t.elapsed());
                match result {
                    Ok(deltas) => {
                        for delta in deltas {
                            seq += 1;
                            deltas_out.push(DeltaFrame {
                                v: PROTOCOL_VERSION,
                                seq,
                                server_ts_ms: now_ms,
                                delta,
                            });
                        }
                        if let Some(id) = &s.msg_id {
                            self.seen.insert(id, now_ms);
                        }
                        outcomes.push(Ok(seq));
                    }
                    Err(problems) => outcomes.push(Err(problems)),
                }
            }
            self.seq.store(seq, Ordering::Release);
        }
        for frame in deltas_out {
            let json: axum::extract::ws::Utf8Bytes = match serde_json::to_string(&frame) {
                Ok(text) => text.into(),
                Err(err) => {
                    error!(seq = frame.seq, error = %err, "could not serialise a delta");
                    format!(r#"{{"v":1,"seq":{},"type":"unserialisable"}}"#, frame.seq).into()
                }
            };
            // No receiver is not an error: nobody is watching.
            let _ = self.frames_tx.send(Arc::new(Published { frame, json }));
        }

        let current = self.seq.load(Ordering::Acquire);
        let mut results: Vec<Option<Result<Accepted, SubmitError>>> = vec![None; batch.len()];
        for (i, slot) in slots.iter().enumerate() {
            let result = match *slot {
                Slot::Fresh(k) => match &outcomes[k] {
                    Ok(seq) => Ok(Accepted::Applied { seq: *seq }),
                    Err(p) => Err(SubmitError::Rejected(p.clone())),
                },
                Slot::Seen => Ok(Accepted::Duplicate),
                Slot::Repeat(first) => match &results[first] {
                    Some(Ok(_)) => Ok(Accepted::Duplicate),
                    Some(Err(e)) => Err(e.clone()),
                    None => Ok(Accepted::Applied { seq: current }),
                },
            };
            results[i] = Some(result);
        }
        for (r, result) in batch.into_iter().zip(results) {
            let result = result.unwrap_or(Ok(Accepted::Applied { seq: current }));
            self.answer(r, result);
        }
        if self.since_checkpoint >= self.snapshot_every
            && let Err(err) = self.checkpoint()
        {
            error!(error = %err, "could not store a checkpoint");
        }
    }

    fn answer(&self, r: Request, result: Result<Accepted, SubmitError>) {
        let outcome = match &result {
            Ok(Accepted::Applied { .. }) => Outcome::Applied,
            Ok(Accepted::Duplicate) => Outcome::Duplicate,
            Err(SubmitError::Rejected(_)) => Outcome::Rejected,
            Err(SubmitError::Unavailable(_)) => Outcome::Unavailable,
        };
        self.metrics.message(r.submission.edge, outcome);
        // The edge may have given up waiting (client gone); the command
        // stands either way.
        let _ = r.reply_tx.send(result);
    }

    fn checkpoint(&mut self) -> Result<(), JournalError> {
        if self.last_row == 0 {
            return Ok(());
        }
        let seq = self.seq.load(Ordering::Acquire);
        let (snapshot_json, state_json) = {
            let engine = self.engine.read().unwrap_or_else(PoisonError::into_inner);
            let stored = StoredState { engine: engine.export_state(), seen: self.seen.entries() };
            (serde_json::to_string(&engine.snapshot(seq, self.last_now_ms))?, serde_json::to_string(&stored)?)
        };
        self.journal.store_checkpoint(&Checkpoint {
            row: self.last_row,
            seq,
            now_ms: self.last_now_ms,
            snapshot_json,
            state_json: Some(state_json),
        })?;
        self.since_checkpoint = 0;
        Ok(())
    }
}

/// A submission the writer made up itself (ticks).
pub fn internal(command: crate::core::engine::Command) -> Submission {
    Submission { command, msg_id: None, by: "eoc".to_owned(), edge: crate::bus::Edge::Internal }
}
