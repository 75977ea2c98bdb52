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
//! keeps them off the async workers that serve sockets. The journal's
//! appends and commits run on a second thread, one batch ahead: while batch
//! N is committed, batch N-1 (already durable) is applied and answered
//! ([`Writer::run`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

use eoc_protocol::PROTOCOL_VERSION;
use eoc_protocol::delta::DeltaFrame;
use tokio::sync::{broadcast, mpsc, oneshot};
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

/// Most submissions in one batch (one transaction, one fsync). A batch is
/// whatever queued while the one before was being committed, so batches
/// grow only when the disk is slow or the load high; the cap bounds the
/// delay of a batch's first answer (4,096 positions apply in a few ms).
pub const MAX_BATCH: usize = 4096;

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

/// What a checkpoint stores to restore from: the engine's state, and where
/// in the journal the message ids still remembered for deduplication
/// begin. The ids themselves are read back from the journal's entries at
/// start (a million of them would make every checkpoint tens of MB).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct StoredState {
    engine: EngineState,
    /// The row of the oldest id remembered (the last row + 1 when none is).
    #[serde(default)]
    seen_from_row: Option<i64>,
    /// Rows from `seen_from_row` on whose message the engine refused: their
    /// ids are not remembered (a retry is judged again).
    #[serde(default)]
    refused_rows: Vec<i64>,
    /// The ids themselves, as checkpoints before `seen_from_row` stored
    /// them; such a checkpoint is not restored from (a full replay
    /// rebuilds the ids with their rows).
    #[serde(default, skip_serializing)]
    seen: Option<serde::de::IgnoredAny>,
}

/// The checkpoint thread's queue, and whether it is still rendering.
struct Renderer<'a> {
    tx: std::sync::mpsc::SyncSender<Box<PendingCheckpoint>>,
    busy: &'a std::sync::atomic::AtomicBool,
}

/// A checkpoint copied from the writer's state, to be rendered and stored
/// by the checkpoint or the journal thread.
#[derive(Debug)]
struct PendingCheckpoint {
    row: i64,
    seq: u64,
    now_ms: i64,
    snapshot: eoc_protocol::delta::Snapshot,
    state: StoredState,
}

impl PendingCheckpoint {
    fn render(self) -> Result<Checkpoint, JournalError> {
        Ok(Checkpoint {
            row: self.row,
            seq: self.seq,
            now_ms: self.now_ms,
            snapshot_json: serde_json::to_string(&self.snapshot)?,
            state_json: Some(serde_json::to_string(&self.state)?),
        })
    }
}

/// Message ids applied recently, bounded by [`DEDUP_WINDOW_MS`] and
/// [`DEDUP_MAX`]: those of the journal's entries the engine applied, in
/// row order, each inserted with its batch time. So the set is a function
/// of the journal: at start it is rebuilt by inserting the applied entries
/// from the oldest row still remembered at the checkpoint
/// ([`StoredState::seen_from_row`]) on, which evicts exactly what the
/// running writer evicted.
///
/// An id is remembered by its keyed 128-bit digest (SipHash-1-3, the key
/// drawn once per process): no allocation per message, 48 bytes per id
/// remembered. Two of a million ids share a digest with a chance below
/// 10⁻²⁶, and without the key no sender can aim for one; a restart draws a
/// new key and digests the ids again from the journal.
#[derive(Debug, Default)]
struct Seen {
    ids: HashSet<u128, std::hash::BuildHasherDefault<DigestHasher>>,
    /// (row, batch time, digest), oldest first.
    order: VecDeque<(i64, i64, u128)>,
}

/// The key of this process's digests of message ids.
fn digest_key() -> (u64, u64) {
    static KEY: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();
    *KEY.get_or_init(|| {
        use std::hash::BuildHasher as _;
        // std's RandomState is seeded from the operating system's randomness.
        let random = std::collections::hash_map::RandomState::new();
        (random.hash_one(0u8), random.hash_one(1u8))
    })
}

/// The keyed digest of a message id.
fn digest(id: &str) -> u128 {
    use siphasher::sip128::Hasher128 as _;
    use std::hash::Hasher as _;
    let (k0, k1) = digest_key();
    let mut h = siphasher::sip128::SipHasher13::new_with_keys(k0, k1);
    h.write(id.as_bytes());
    h.finish128().into()
}

/// Hashes a digest (already uniform) by taking its low bits.
#[derive(Debug, Default)]
struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only digests are hashed here; any other input still hashes.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

impl Seen {
    fn contains(&self, id: &str) -> bool {
        self.ids.contains(&digest(id))
    }

    fn insert(&mut self, id: &str, row: i64, now_ms: i64) {
        let d = digest(id);
        if self.ids.insert(d) {
            self.order.push_back((row, now_ms, d));
        }
        while let Some((_, at, _)) = self.order.front() {
            if self.order.len() <= DEDUP_MAX && *at > now_ms - DEDUP_WINDOW_MS {
                break;
            }
            if let Some((_, _, old)) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
    }

    /// The row of the oldest id remembered.
    fn first_row(&self) -> Option<i64> {
        self.order.front().map(|(row, _, _)| *row)
    }
}

/// Buffers of a batch, kept for the next one.
#[derive(Debug, Default)]
struct Spare {
    batch: Vec<Request>,
    subs: Vec<Submission>,
    replies: Vec<oneshot::Sender<Result<Accepted, SubmitError>>>,
    slots: Vec<Slot>,
    fresh: Vec<usize>,
    results: Vec<Result<Accepted, SubmitError>>,
    outcomes: Vec<Result<u64, SubmitError>>,
    deltas: Vec<DeltaFrame>,
    json: Vec<u8>,
}

impl Spare {
    /// Keeps the (emptied) buffers of a finished batch.
    fn give_back(
        &mut self,
        subs: Vec<Submission>,
        replies: Vec<oneshot::Sender<Result<Accepted, SubmitError>>>,
        slots: Vec<Slot>,
        fresh: Vec<usize>,
        results: Vec<Result<Accepted, SubmitError>>,
    ) {
        (self.subs, self.replies, self.slots, self.fresh, self.results) =
            (subs, replies, slots, fresh, results);
    }
}

/// The writer, ready to run.
#[derive(Debug)]
pub struct Writer {
    engine: Arc<RwLock<Engine>>,
    seq: Arc<AtomicU64>,
    /// `None` while the journal thread holds it ([`Writer::run`]).
    journal: Option<Journal>,
    seen: Seen,
    /// Rows of journalled messages (with an id) the engine refused, from
    /// the oldest id in `seen` on, oldest first, at most [`DEDUP_MAX`].
    refused: VecDeque<i64>,
    frames_tx: broadcast::Sender<Arc<Published>>,
    rx: mpsc::Receiver<WriterMsg>,
    stop_tx: Option<mpsc::Sender<WriterMsg>>,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    snapshot_every: u64,
    /// Least time between the starts of two commits.
    commit_interval: std::time::Duration,
    since_checkpoint: u64,
    last_row: i64,
    last_now_ms: i64,
    /// The time of the last batch handed to the journal: the next one
    /// never goes back before it.
    next_now_ms: i64,
    /// The outcomes of the last batch applied, by position among its
    /// journalled submissions, for retries of it in the batch after.
    prior: Vec<Result<u64, SubmitError>>,
    spare: Spare,
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
        journal: Some(journal),
        seen: Seen::default(),
        refused: VecDeque::new(),
        frames_tx,
        rx,
        stop_tx: Some(writer_tx),
        metrics,
        readiness,
        snapshot_every: journal_cfg.snapshot_every.max(1),
        commit_interval: std::time::Duration::from_millis(journal_cfg.commit_interval_ms),
        since_checkpoint: 0,
        last_row: 0,
        last_now_ms: 0,
        next_now_ms: 0,
        prior: Vec::new(),
        spare: Spare::default(),
    };
    Ok((bus, writer))
}

/// How one submission of a batch is answered.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// Journalled at this position of the batch's journalled list (in the
    /// deduplication map while preparing: the first occurrence, at this
    /// batch index).
    Fresh(usize),
    /// A retry of a message applied in an earlier batch.
    Seen,
    /// A retry of the submission at this batch index.
    Repeat(usize),
    /// A retry of the submission journalled at this position of the batch
    /// committed just before (not yet applied when this one was prepared).
    Prior(usize),
}

/// Maps keyed by message id, with a fast non-cryptographic hash: the keys
/// are ids of messages already admitted, and the writer hashes each
/// message's id a few times.
type IdMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A batch ready for the journal: its time, its submissions, where each
/// answer goes and how it will be answered.
#[derive(Debug)]
struct Prepared {
    now_ms: i64,
    /// The whole batch, shared with the journal thread while it commits.
    subs: Arc<Vec<Submission>>,
    replies: Vec<oneshot::Sender<Result<Accepted, SubmitError>>>,
    slots: Vec<Slot>,
    /// Batch indices of the submissions to journal and apply, in order.
    fresh: Arc<Vec<usize>>,
}

/// What the journal thread is asked to do, in order.
#[derive(Debug)]
enum JournalJob {
    /// Append `subs[fresh]` in one transaction and answer on the commit
    /// channel.
    Append { now_ms: i64, subs: Arc<Vec<Submission>>, fresh: Arc<Vec<usize>> },
    /// Render and store a checkpoint (errors are logged).
    Checkpoint(Box<PendingCheckpoint>),
    /// Store a checkpoint rendered by the checkpoint thread, in the next
    /// batch's transaction (or on its own after a quiet second).
    Store(Box<Checkpoint>),
    /// Copy the WAL into the database (at shutdown).
    Flush,
}

/// The row ids of an appended batch, or why it was not committed.
type Committed = Result<Vec<i64>, JournalError>;

/// Batches of at least this many entries are committed at once, without
/// waiting out the commit interval: the interval is there so that one
/// fsync is shared by many entries, and such a batch already shares it.
/// In the ingest bench's paced pass this took the median wait for an
/// answer from 4.1 to 2.9 ms at 40,000 positions a second and from 5.4 to
/// 2.9–3.4 ms at 100,000, for 6–15 % more CPU at 40,000.
pub const SPACED_BELOW: usize = 64;

/// The journal thread: runs jobs in order until the writer lets go.
///
/// A commit of fewer than [`SPACED_BELOW`] entries starts at least
/// `interval` after the one before started: it waits out the rest, and
/// meanwhile what arrives queues for the writer's next batch. Under a
/// moderate load that makes commits fewer and batches larger (the fsync,
/// not the entries, is most of a commit's cost); a commit after a quiet
/// spell, or of a batch already large, does not wait.
fn commit_loop(
    journal: &mut Journal,
    jobs_rx: std::sync::mpsc::Receiver<JournalJob>,
    done_tx: std::sync::mpsc::SyncSender<Committed>,
    metrics: &Metrics,
    interval: std::time::Duration,
) {
    let mut last_start: Option<Instant> = None;
    // A rendered checkpoint waiting to share the next batch's fsync.
    let mut to_store: Option<Box<Checkpoint>> = None;
    loop {
        let job = match jobs_rx.recv_timeout(STORE_ALONE_AFTER) {
            Ok(job) => job,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                store_alone(journal, to_store.take());
                continue;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        match job {
            JournalJob::Append { now_ms, subs, fresh } => {
                if fresh.len() < SPACED_BELOW
                    && let Some(wait) = last_start.and_then(|at| interval.checked_sub(at.elapsed()))
                    && !wait.is_zero()
                {
                    std::thread::sleep(wait);
                }
                let t0 = Instant::now();
                last_start = Some(t0);
                let checkpoint = to_store.take();
                let appended = journal.append_with_checkpoint(
                    now_ms,
                    fresh.iter().map(|&i| &subs[i]),
                    checkpoint.as_deref(),
                );
                metrics.journal_commit.observe(t0.elapsed());
                // Let go of the batch before answering, so the writer gets
                // it back without a copy.
                drop((subs, fresh));
                if done_tx.send(appended).is_err() {
                    return;
                }
            }
            JournalJob::Checkpoint(pending) => {
                let row = pending.row;
                if let Err(err) = pending.render().and_then(|c| journal.store_checkpoint(&c)) {
                    error!(error = %err, row, "could not store a checkpoint");
                }
            }
            JournalJob::Store(rendered) => {
                // A newer one replaces one still waiting (both are states
                // at committed rows; the later row is the one restored).
                to_store = Some(rendered);
            }
            JournalJob::Flush => {
                store_alone(journal, to_store.take());
                if let Err(err) = journal.flush() {
                    error!(error = %err, "could not flush the journal");
                }
            }
        }
    }
    store_alone(journal, to_store.take());
}

/// A checkpoint waiting for a batch stops waiting after this long without
/// one, and is stored on its own.
const STORE_ALONE_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Stores a rendered checkpoint in a transaction of its own, if there is one.
fn store_alone(journal: &mut Journal, checkpoint: Option<Box<Checkpoint>>) {
    if let Some(c) = checkpoint
        && let Err(err) = journal.store_checkpoint(&c)
    {
        error!(error = %err, row = c.row, "could not store a checkpoint");
    }
}

/// The checkpoint thread: renders the state copies the writer hands it to
/// JSON and passes them to the journal thread, which stores each with the
/// next batch. Rendering (about a millisecond for the Tajikistan state)
/// and a checkpoint's own fsync used to hold up the next commit.
fn render_loop(
    pending_rx: std::sync::mpsc::Receiver<Box<PendingCheckpoint>>,
    jobs_tx: std::sync::mpsc::SyncSender<JournalJob>,
    busy: &std::sync::atomic::AtomicBool,
) {
    for pending in pending_rx {
        let row = pending.row;
        let rendered = pending.render();
        busy.store(false, Ordering::Release);
        match rendered {
            Ok(c) => {
                if jobs_tx.send(JournalJob::Store(Box::new(c))).is_err() {
                    return;
                }
            }
            Err(err) => error!(error = %err, row, "could not render a checkpoint"),
        }
    }
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
    ///
    /// Two threads share the work: this one takes batches off the queue,
    /// deduplicates them, applies them and answers; a journal thread
    /// appends and commits them (the fsync). While batch N is being
    /// committed, batch N+1 is gathered and batch N-1 applied and
    /// answered, so the writer's throughput is no longer one batch per
    /// fsync plus the batch's processing, and a slow disk grows the batches
    /// (up to [`MAX_BATCH`]) instead of the backlog. A batch is applied,
    /// published and answered only after its commit returned.
    pub fn run(mut self) -> Result<(), JournalError> {
        self.stop_tx = None;
        self.replay()?;
        let Some(mut journal) = self.journal.take() else {
            return Err(JournalError::Stopped("the writer ran twice".to_owned()));
        };
        let (jobs_tx, jobs_rx) = std::sync::mpsc::sync_channel::<JournalJob>(2);
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<Committed>(2);
        let metrics = self.metrics.clone();
        let interval = self.commit_interval;
        let (pending_tx, pending_rx) = std::sync::mpsc::sync_channel::<Box<PendingCheckpoint>>(1);
        let busy = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let journal = &mut journal;
            let committer = std::thread::Builder::new()
                .name("eoc-journal".to_owned())
                .spawn_scoped(scope, move || commit_loop(journal, jobs_rx, done_tx, &metrics, interval));
            if let Err(err) = committer {
                error!(error = %err, "could not start the journal thread; every submission is refused");
            }
            let store_tx = jobs_tx.clone();
            let busy = &busy;
            let renderer = std::thread::Builder::new()
                .name("eoc-checkpoint".to_owned())
                .spawn_scoped(scope, move || render_loop(pending_rx, store_tx, busy));
            if let Err(err) = renderer {
                // Checkpoints are then rendered on the journal thread.
                warn!(error = %err, "could not start the checkpoint thread");
            }
            self.pipeline(&jobs_tx, &done_rx, &Renderer { tx: pending_tx, busy });
            if let Err(err) = self.checkpoint(&jobs_tx) {
                error!(error = %err, "could not checkpoint the journal at shutdown");
            }
            let _ = jobs_tx.send(JournalJob::Flush);
            drop(jobs_tx);
        });
        self.journal = Some(journal);
        info!(row = self.last_row, seq = self.seq.load(Ordering::Acquire), "writer stopped");
        Ok(())
    }

    /// The writer's loop: gather a batch, hand it to the journal thread,
    /// then apply and answer the batch committed before it.
    fn pipeline(
        &mut self,
        jobs_tx: &std::sync::mpsc::SyncSender<JournalJob>,
        done_rx: &std::sync::mpsc::Receiver<Committed>,
        renderer: &Renderer<'_>,
    ) {
        let mut stopping = false;
        let mut inflight: Option<Prepared> = None;
        loop {
            let mut batch = std::mem::take(&mut self.spare.batch);
            // Idle: wait for work. Busy: wait for the batch being committed,
            // then take everything that queued meanwhile.
            let committed =
                match inflight {
                    None => match self.rx.blocking_recv() {
                        Some(first) => {
                            self.take(first, &mut batch, &mut stopping);
                            None
                        }
                        None => break,
                    },
                    Some(_) => Some(done_rx.recv().unwrap_or_else(|_| {
                        Err(JournalError::Stopped("the journal thread stopped".to_owned()))
                    })),
                };
            while batch.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(msg) => self.take(msg, &mut batch, &mut stopping),
                    Err(_) => break,
                }
            }
            let previous = inflight.take();
            match (!batch.is_empty()).then(|| self.prepare(batch, previous.as_ref())) {
                Some(p) if !p.fresh.is_empty() => {
                    let job =
                        JournalJob::Append { now_ms: p.now_ms, subs: p.subs.clone(), fresh: p.fresh.clone() };
                    let sent = jobs_tx.send(job).is_ok();
                    // The batch before is applied and answered while this
                    // one is committed.
                    self.settle_previous(previous, committed);
                    if sent {
                        inflight = Some(p);
                    } else {
                        // Nothing will commit it: refuse it as a failed append.
                        self.finish(p, Err(JournalError::Stopped("the journal thread stopped".to_owned())));
                    }
                }
                Some(p) => {
                    // Only retries of applied messages: nothing to journal,
                    // answered after the batch before it.
                    self.settle_previous(previous, committed);
                    self.finish(p, Ok(Vec::new()));
                }
                None => self.settle_previous(previous, committed),
            }
            if self.since_checkpoint >= self.snapshot_every
                && let Err(err) = self.checkpoint_aside(jobs_tx, renderer)
            {
                error!(error = %err, "could not store a checkpoint");
            }
        }
        if let Some(p) = inflight {
            let committed = done_rx
                .recv()
                .unwrap_or_else(|_| Err(JournalError::Stopped("the journal thread stopped".to_owned())));
            self.finish(p, committed);
        }
    }

    /// Adds one queued message to `batch`.
    fn take(&mut self, msg: WriterMsg, batch: &mut Vec<Request>, stopping: &mut bool) {
        match msg {
            WriterMsg::Submit(r) => batch.push(r),
            WriterMsg::Stop if !*stopping => {
                // Refuse new submissions; those already queued are still
                // received and applied.
                *stopping = true;
                self.rx.close();
            }
            WriterMsg::Stop => {}
        }
    }

    /// Applies and answers the batch whose commit was awaited, if any.
    fn settle_previous(&mut self, previous: Option<Prepared>, committed: Option<Committed>) {
        if let Some(p) = previous {
            let committed =
                committed.unwrap_or_else(|| Err(JournalError::Stopped("no commit was awaited".to_owned())));
            self.finish(p, committed);
        }
    }

    /// Restores the last checkpoint's state into `engine` (fresh), checking
    /// it against the view stored with it. `Some((row, seq))` to replay
    /// after; `None` (engine untouched or put back) for a full replay.
    fn restore(
        &mut self,
        journal: &Journal,
        engine: &mut Engine,
        checkpoint: Option<&Checkpoint>,
    ) -> Option<(i64, u64)> {
        let c = checkpoint?;
        let json = c.state_json.as_deref()?;
        let stored: StoredState = match serde_json::from_str(json) {
            Ok(s) => s,
            Err(err) => {
                warn!(row = c.row, error = %err, "the stored state cannot be read; replaying the whole journal");
                return None;
            }
        };
        let Some(seen_from_row) = stored.seen_from_row.filter(|_| stored.seen.is_none()) else {
            info!(
                row = c.row,
                "the stored state lists its message ids the old way; replaying the whole journal"
            );
            return None;
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
        // The remembered ids: the applied entries from the oldest one on.
        let mut refused = stored.refused_rows.iter().copied().peekable();
        let (seen, kept) = (&mut self.seen, &mut self.refused);
        let rebuilt = journal.for_each_msg_id(seen_from_row, c.row, |row, now_ms, id| {
            while refused.next_if(|&r| r < row).is_some() {}
            if refused.next_if_eq(&row).is_some() {
                kept.push_back(row);
            } else {
                seen.insert(id, row, now_ms);
            }
        });
        if let Err(err) = rebuilt {
            warn!(row = c.row, error = %err, "the remembered message ids cannot be read; replaying the whole journal");
            *engine = pristine;
            (self.seen, self.refused) = (Seen::default(), VecDeque::new());
            return None;
        }
        Some((c.row, c.seq))
    }

    /// Rebuilds the state, `seq` and the deduplication set: the last
    /// checkpoint's state, then the journal entries after it (all of them
    /// if there is no usable state), holding the engine's write lock
    /// throughout.
    fn replay(&mut self) -> Result<(), JournalError> {
        let journal =
            self.journal.take().ok_or_else(|| JournalError::Stopped("the journal is in use".to_owned()))?;
        let replayed = self.replay_from(&journal);
        self.journal = Some(journal);
        replayed
    }

    fn replay_from(&mut self, journal: &Journal) -> Result<(), JournalError> {
        let started = Instant::now();
        let checkpoint = journal.last_checkpoint()?;
        let engine_lock = self.engine.clone();
        let mut engine = engine_lock.write().unwrap_or_else(PoisonError::into_inner);
        let restored = self.restore(journal, &mut engine, checkpoint.as_ref());
        let (after, mut seq) = restored.unwrap_or((0, 0));
        let (seen, refused) = (&mut self.seen, &mut self.refused);
        let (mut last_row, mut last_now_ms) = match (&restored, &checkpoint) {
            (Some(_), Some(c)) => (c.row, c.now_ms),
            _ => (0, 0),
        };
        let mut verified = None;
        if let (Some(_), Some(c)) = (&restored, &checkpoint) {
            info!(row = c.row, seq, "restored the state stored at this row");
            verified = Some(true);
        }
        let entries = journal.replay_after(after, |entry| {
            let s = &entry.submission;
            match (engine.apply(&s.command, &s.by, entry.now_ms), &s.msg_id) {
                (Ok(deltas), id) => {
                    seq += deltas.len() as u64;
                    if let Some(id) = id {
                        seen.insert(id, entry.row, entry.now_ms);
                    }
                }
                (Err(_), Some(_)) => remember_refused(refused, entry.row),
                (Err(_), None) => {}
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
        (self.last_row, self.last_now_ms, self.next_now_ms) = (last_row, last_now_ms, last_now_ms);
        self.readiness.set_journal_ready(u64::try_from(after).unwrap_or(0), entries);
        Ok(())
    }

    /// Deduplicates a batch and takes its time: what the journal thread
    /// needs to commit it. `inflight` is the batch being committed now,
    /// whose message ids are not yet in [`Seen`].
    fn prepare(&mut self, mut batch: Vec<Request>, inflight: Option<&Prepared>) -> Prepared {
        let now_ms = now_ms().max(self.next_now_ms);
        self.next_now_ms = now_ms;
        self.metrics.batch(batch.len());
        // Buffers of the batch before last, reused: a batch of thousands
        // of submissions is a few MB, and fresh memory costs page faults.
        let mut slots = std::mem::take(&mut self.spare.slots);
        let mut fresh = std::mem::take(&mut self.spare.fresh);
        let mut subs = std::mem::take(&mut self.spare.subs);
        let mut replies = std::mem::take(&mut self.spare.replies);
        {
            // Ids of this batch's first occurrences and of the batch in
            // flight, borrowed from the requests.
            let mut earlier: IdMap<&str, Slot> = IdMap::default();
            if let Some(prev) = inflight {
                for (k, &i) in prev.fresh.iter().enumerate() {
                    if let Some(id) = prev.subs[i].msg_id.as_deref() {
                        earlier.insert(id, Slot::Prior(k));
                    }
                }
            }
            for (i, r) in batch.iter().enumerate() {
                let slot = match r.submission.msg_id.as_deref() {
                    Some(id) if self.seen.contains(id) => Slot::Seen,
                    Some(id) => match earlier.get(id) {
                        Some(&Slot::Fresh(first)) => Slot::Repeat(first),
                        Some(&slot) => slot,
                        None => {
                            earlier.insert(id, Slot::Fresh(i));
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
        }
        for r in batch.drain(..) {
            subs.push(r.submission);
            replies.push(r.reply_tx);
        }
        self.spare.batch = batch;
        Prepared { now_ms, subs: Arc::new(subs), replies, slots, fresh: Arc::new(fresh) }
    }

    /// Applies a committed batch, publishes its deltas and answers it; a
    /// batch whose commit failed is refused (retries of applied messages
    /// are still acknowledged as duplicates).
    fn finish(&mut self, p: Prepared, committed: Committed) {
        let Prepared { now_ms, subs, replies, slots, fresh } = p;
        // The journal thread has let go of the batch by now; if not, read
        // it through the Arc.
        let mut subs = Arc::try_unwrap(subs).unwrap_or_else(|shared| (*shared).clone());
        let mut fresh = Arc::try_unwrap(fresh).unwrap_or_else(|shared| (*shared).clone());
        let (mut replies, mut slots) = (replies, slots);
        let mut results = std::mem::take(&mut self.spare.results);
        let rows = match committed {
            Ok(rows) => rows,
            Err(err) => {
                error!(error = %err, "journal append failed; the batch is refused");
                let refused = || SubmitError::Unavailable("the journal could not be written".to_owned());
                for ((s, reply), slot) in subs.drain(..).zip(replies.drain(..)).zip(slots.drain(..)) {
                    let result = match slot {
                        Slot::Seen => Ok(Accepted::Duplicate),
                        Slot::Prior(k) => self.prior_answer(k),
                        Slot::Fresh(_) | Slot::Repeat(_) => Err(refused()),
                    };
                    self.answer(s.edge, reply, result);
                }
                self.prior.clear();
                self.prior.resize(fresh.len(), Err(refused()));
                fresh.clear();
                self.spare.give_back(subs, replies, slots, fresh, results);
                return;
            }
        };
        if let Some(&row) = rows.last() {
            self.last_row = row;
        }
        self.last_now_ms = now_ms;
        self.since_checkpoint += rows.len() as u64;

        // Apply under the write lock; render frames after releasing it.
        let mut outcomes = std::mem::take(&mut self.spare.outcomes);
        let mut deltas_out = std::mem::take(&mut self.spare.deltas);
        {
            let mut engine = self.engine.write().unwrap_or_else(PoisonError::into_inner);
            let mut seq = self.seq.load(Ordering::Acquire);
            for (k, &i) in fresh.iter().enumerate() {
                let s = &subs[i];
                let t = Instant::now();
                // An alert's own frame goes out at once, after the frames of
                // the batch so far, while its impact and allocation are
                // worked out: dashboards show it without waiting for them.
                let (frames_tx, json) = (&self.frames_tx, &mut self.spare.json);
                let result = engine.apply_alert_first(&s.command, &s.by, now_ms, &mut |delta| {
                    for frame in deltas_out.drain(..) {
                        publish(frames_tx, json, frame);
                    }
                    seq += 1;
                    publish(
                        frames_tx,
                        json,
                        DeltaFrame { v: PROTOCOL_VERSION, seq, server_ts_ms: now_ms, delta },
                    );
                });
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
                        if let (Some(id), Some(&row)) = (&s.msg_id, rows.get(k)) {
                            self.seen.insert(id, row, now_ms);
                        }
                        outcomes.push(Ok(seq));
                    }
                    Err(problems) => {
                        if let (Some(_), Some(&row)) = (&s.msg_id, rows.get(k)) {
                            remember_refused(&mut self.refused, row);
                        }
                        outcomes.push(Err(SubmitError::Rejected(problems)));
                    }
                }
            }
            self.seq.store(seq, Ordering::Release);
        }
        for frame in deltas_out.drain(..) {
            publish(&self.frames_tx, &mut self.spare.json, frame);
        }
        self.spare.deltas = deltas_out;

        let current = self.seq.load(Ordering::Acquire);
        for slot in &slots {
            let result = match *slot {
                Slot::Fresh(k) => match &outcomes[k] {
                    Ok(seq) => Ok(Accepted::Applied { seq: *seq }),
                    Err(e) => Err(e.clone()),
                },
                Slot::Seen => Ok(Accepted::Duplicate),
                Slot::Prior(k) => self.prior_answer(k),
                Slot::Repeat(first) => match results.get(first) {
                    Some(Ok(_)) => Ok(Accepted::Duplicate),
                    Some(Err(e)) => Err(e.clone()),
                    None => Ok(Accepted::Applied { seq: current }),
                },
            };
            results.push(result);
        }
        for ((s, reply), result) in subs.drain(..).zip(replies.drain(..)).zip(results.drain(..)) {
            self.answer(s.edge, reply, result);
        }
        // This batch's outcomes answer retries of it in the next one.
        std::mem::swap(&mut self.prior, &mut outcomes);
        outcomes.clear();
        self.spare.outcomes = outcomes;
        slots.clear();
        fresh.clear();
        self.spare.give_back(subs, replies, slots, fresh, results);
    }

    /// The answer to a retry of the batch committed just before: a
    /// duplicate if that one was applied, else the same refusal.
    fn prior_answer(&self, k: usize) -> Result<Accepted, SubmitError> {
        match self.prior.get(k) {
            Some(Ok(_)) => Ok(Accepted::Duplicate),
            Some(Err(e)) => Err(e.clone()),
            None => Err(SubmitError::Unavailable("the earlier copy was not answered".to_owned())),
        }
    }

    fn answer(
        &self,
        edge: crate::bus::Edge,
        reply: oneshot::Sender<Result<Accepted, SubmitError>>,
        result: Result<Accepted, SubmitError>,
    ) {
        let outcome = match &result {
            Ok(Accepted::Applied { .. }) => Outcome::Applied,
            Ok(Accepted::Duplicate) => Outcome::Duplicate,
            Err(SubmitError::Rejected(_)) => Outcome::Rejected,
            Err(SubmitError::Unavailable(_)) => Outcome::Unavailable,
        };
        self.metrics.message(edge, outcome);
        // The edge may have given up waiting (client gone); the command
        // stands either way.
        let _ = reply.send(result);
    }

    /// Copies the state applied so far and queues it for the journal
    /// thread, which renders and stores it after the batches handed to it
    /// before (at shutdown: the last state, stored before the journal is
    /// flushed).
    fn checkpoint(&mut self, jobs_tx: &std::sync::mpsc::SyncSender<JournalJob>) -> Result<(), JournalError> {
        let Some(pending) = self.pending_checkpoint() else {
            return Ok(());
        };
        jobs_tx
            .send(JournalJob::Checkpoint(Box::new(pending)))
            .map_err(|_| JournalError::Stopped("the journal thread stopped".to_owned()))?;
        self.since_checkpoint = 0;
        Ok(())
    }

    /// A periodic checkpoint: the state copied here, rendered on the
    /// checkpoint thread and stored with a later batch, so the journal
    /// thread's commits do not wait for it. While the checkpoint thread is
    /// still busy with the one before, this waits for a later batch.
    fn checkpoint_aside(
        &mut self,
        jobs_tx: &std::sync::mpsc::SyncSender<JournalJob>,
        renderer: &Renderer<'_>,
    ) -> Result<(), JournalError> {
        if renderer.busy.load(Ordering::Acquire) {
            return Ok(());
        }
        let Some(pending) = self.pending_checkpoint() else {
            return Ok(());
        };
        renderer.busy.store(true, Ordering::Release);
        match renderer.tx.try_send(Box::new(pending)) {
            Ok(()) => {}
            Err(std::sync::mpsc::TrySendError::Full(_)) => {
                renderer.busy.store(false, Ordering::Release);
                return Ok(());
            }
            // No checkpoint thread: the journal thread renders it.
            Err(std::sync::mpsc::TrySendError::Disconnected(pending)) => {
                renderer.busy.store(false, Ordering::Release);
                jobs_tx
                    .send(JournalJob::Checkpoint(pending))
                    .map_err(|_| JournalError::Stopped("the journal thread stopped".to_owned()))?;
            }
        }
        self.since_checkpoint = 0;
        Ok(())
    }

    /// A copy of the state applied so far, to render and store; `None`
    /// before anything was journalled.
    fn pending_checkpoint(&mut self) -> Option<PendingCheckpoint> {
        if self.last_row == 0 {
            return None;
        }
        let seq = self.seq.load(Ordering::Acquire);
        // Copied under the read lock here; rendered to JSON and stored by
        // the journal thread, so the writer goes back to its batches.
        let (snapshot, engine) = {
            let engine = self.engine.read().unwrap_or_else(PoisonError::into_inner);
            (engine.snapshot(seq, self.last_now_ms), engine.export_state())
        };
        let seen_from_row = self.seen.first_row().unwrap_or(self.last_row + 1);
        while self.refused.front().is_some_and(|&r| r < seen_from_row) {
            self.refused.pop_front();
        }
        Some(PendingCheckpoint {
            row: self.last_row,
            seq,
            now_ms: self.last_now_ms,
            snapshot,
            state: StoredState {
                engine,
                seen_from_row: Some(seen_from_row),
                refused_rows: self.refused.iter().copied().collect(),
                seen: None,
            },
        })
    }
}

/// Notes that the engine refused the journalled message at `row`, keeping
/// at most [`DEDUP_MAX`] such rows (beyond it the oldest would be taken for
/// applied by a restart: a retry of it, a day old, would be answered as a
/// duplicate rather than judged again).
/// Serialises `frame` (in `json`, a buffer kept between frames) and sends
/// it to every connection.
fn publish(frames_tx: &broadcast::Sender<Arc<Published>>, json: &mut Vec<u8>, frame: DeltaFrame) {
    json.clear();
    let written = serde_json::to_writer(&mut *json, &frame).map_err(|e| e.to_string());
    let text: tokio_tungstenite::tungstenite::Utf8Bytes =
        match written.and_then(|()| std::str::from_utf8(json).map_err(|e| e.to_string())) {
            Ok(text) => text.to_owned().into(),
            Err(err) => {
                error!(seq = frame.seq, error = %err, "could not serialise a delta");
                format!(r#"{{"v":1,"seq":{},"type":"unserialisable"}}"#, frame.seq).into()
            }
        };
    // No receiver is not an error: nobody is watching.
    let _ = frames_tx.send(Arc::new(Published { frame, json: text }));
}

fn remember_refused(refused: &mut VecDeque<i64>, row: i64) {
    if refused.len() >= DEDUP_MAX {
        refused.pop_front();
    }
    refused.push_back(row);
}

/// A submission the writer made up itself (ticks).
pub fn internal(command: crate::core::engine::Command) -> Submission {
    Submission { command, msg_id: None, by: "eoc".to_owned(), edge: crate::bus::Edge::Internal }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positions(prefix: &str, n: usize) -> Vec<Submission> {
        (0..n).map(|k| Submission::test_position(&format!("{prefix}-{k}"))).collect()
    }

    /// A small batch waits out the commit interval since the commit before
    /// it started; a batch of [`SPACED_BELOW`] entries or more is committed
    /// at once. Three batches queued together, with a 400 ms interval: one
    /// entry (committed at once, nothing before it), one entry (waits about
    /// 400 ms), then a large batch (must not wait another 400 ms).
    #[test]
    fn only_small_batches_wait_out_the_commit_interval() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path()).unwrap();
        let (jobs_tx, jobs_rx) = std::sync::mpsc::sync_channel::<JournalJob>(4);
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<Committed>(4);
        let interval = std::time::Duration::from_millis(400);
        for (prefix, n) in [("a", 1), ("b", 1), ("c", SPACED_BELOW)] {
            let subs = positions(prefix, n);
            let fresh = Arc::new((0..n).collect());
            jobs_tx.send(JournalJob::Append { now_ms: 0, subs: Arc::new(subs), fresh }).unwrap();
        }
        drop(jobs_tx);
        let metrics = Metrics::default();
        let started = Instant::now();
        let mut done_at = Vec::new();
        std::thread::scope(|scope| {
            scope.spawn(|| commit_loop(&mut journal, jobs_rx, done_tx, &metrics, interval));
            for committed in done_rx.iter() {
                assert!(committed.is_ok_and(|rows| !rows.is_empty()));
                done_at.push(started.elapsed());
            }
        });
        assert_eq!(done_at.len(), 3);
        assert!(done_at[1] >= interval, "the second lone entry waited only {:?}", done_at[1]);
        let large_waited = done_at[2] - done_at[1];
        assert!(
            large_waited < interval / 2,
            "the batch of {SPACED_BELOW} waited {large_waited:?} after the one before, as if spaced"
        );
    }

    fn ids(seen: &Seen) -> Vec<(i64, i64, u128)> {
        seen.order.iter().copied().collect()
    }

    /// What a restart rebuilds: the applied entries inserted again from the
    /// oldest row still remembered.
    fn rebuilt(entries: &[(i64, i64, String)], from_row: i64) -> Seen {
        let mut seen = Seen::default();
        for (row, at, id) in entries.iter().filter(|(row, _, _)| *row >= from_row) {
            seen.insert(id, *row, *at);
        }
        seen
    }

    #[test]
    fn ids_rebuilt_from_the_oldest_remembered_row_are_the_ids_remembered() {
        let day = DEDUP_WINDOW_MS;
        // Rows with gaps (refused or id-less entries), a retry of an id
        // forgotten a day earlier, and quiet spells that expire ids.
        let mut entries = Vec::new();
        let mut row = 0;
        for (i, at) in
            [0, 10, 20, day / 2, day - 1, day + 15, day + 16, 3 * day, 3 * day + 1].into_iter().enumerate()
        {
            row += 1 + (i as i64 % 3);
            entries.push((row, at, format!("m-{}", i % 7)));
        }
        entries.push((row + 1, 3 * day + 2, "m-0".to_owned()));
        let mut live = Seen::default();
        for (k, (row, at, id)) in entries.iter().enumerate() {
            live.insert(id, *row, *at);
            let from = live.first_row().unwrap_or(row + 1);
            let again = rebuilt(&entries[..=k], from);
            assert_eq!(ids(&again), ids(&live), "after row {row}");
            assert_eq!(again.ids.len(), live.ids.len());
        }
        // The last quiet spell expired all but the two newest ids (the
        // last entry repeats one of them).
        assert_eq!(
            ids(&live).into_iter().map(|(_, _, id)| id).collect::<Vec<_>>(),
            [digest("m-0"), digest("m-1")]
        );
        assert!(live.contains("m-0") && live.contains("m-1") && !live.contains("m-2"));
    }

    #[test]
    fn ids_beyond_the_cap_are_forgotten_oldest_first_and_stay_forgotten_after_a_rebuild() {
        let entries: Vec<(i64, i64, String)> =
            (0..DEDUP_MAX as i64 + 1_000).map(|i| (i + 1, i / 100, format!("m-{i}"))).collect();
        let mut live = Seen::default();
        for (row, at, id) in &entries {
            live.insert(id, *row, *at);
        }
        assert_eq!((live.order.len(), live.first_row()), (DEDUP_MAX, Some(1_001)));
        assert!(!live.contains("m-999") && live.contains("m-1000"));
        let again = rebuilt(&entries, 1_001);
        assert_eq!(again.order.len(), DEDUP_MAX);
        assert!(again.order.iter().zip(&live.order).all(|(a, b)| a == b));
    }

    #[test]
    fn refused_rows_are_kept_up_to_the_cap_oldest_dropped_first() {
        let mut refused = VecDeque::new();
        for row in 0..DEDUP_MAX as i64 + 3 {
            remember_refused(&mut refused, row);
        }
        assert_eq!(
            (refused.len(), refused.front(), refused.back()),
            (DEDUP_MAX, Some(&3), Some(&(DEDUP_MAX as i64 + 2)))
        );
    }

    #[test]
    fn a_stored_state_round_trips_and_one_of_the_old_kind_is_told_apart() {
        use crate::core::synthetic::{Shape, world};
        let shape = Shape { villages: 20, sites: 5, teams: 3, clusters: 1, spread_km: 10.0 };
        let engine = Engine::new(world(shape, 1), crate::core::engine::EngineConfig::default());
        let state = StoredState {
            engine: engine.export_state(),
            seen_from_row: Some(7),
            refused_rows: vec![9, 12],
            seen: None,
        };
        let json = serde_json::to_string(&state).unwrap();
        let read: StoredState = serde_json::from_str(&json).unwrap();
        assert_eq!(
            (read.seen_from_row, read.refused_rows, read.seen.is_none()),
            (Some(7), vec![9, 12], true)
        );

        let mut old: serde_json::Value = serde_json::from_str(&json).unwrap();
        let fields = old.as_object_mut().unwrap();
        fields.remove("seen_from_row");
        fields.remove("refused_rows");
        fields.insert("seen".to_owned(), serde_json::json!([["a-1", 10], ["b", 20]]));
        let read: StoredState = serde_json::from_value(old).unwrap();
        assert!(read.seen.is_some() && read.seen_from_row.is_none());
    }
}
