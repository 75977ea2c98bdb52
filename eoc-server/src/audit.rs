//! The audit trail: every accepted or refused command, with who, when,
//! what and why, in `audit.sqlite` in the data directory.
//!
//! Edges hand records to [`Audit::record`], which never blocks: a bounded
//! queue feeds one thread that writes them in batches (one transaction per
//! batch). If the queue is full the record is counted in
//! `eoc_audit_dropped_total` and logged, and the command itself is not held
//! up: the journal, not the audit trail, is what makes commands durable.
//! Records hold names, ids, codes and reasons, never a token, password or
//! message body. Queries ([`Audit::query`]) first wait for every record
//! handed over before them to be written.
//!
//! Accepted position reports, which phones send many times a minute and
//! which a large earthquake brings in by the tens of thousands a second,
//! are summarised: while only such records arrive, the writing thread
//! gathers them for up to [`GATHER`], and the accepted `team_position`
//! records of one identity for one team among them become one entry with
//! their `count`, the time and message id of the last. Every other record
//! is an entry of its own and is written without waiting (a refusal is on
//! disk before a crash a moment later). Each position itself is in the
//! journal, with who sent it and when.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::{Connection, params};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, warn};

use crate::bus::Edge;

/// File name of the audit trail inside the data directory.
pub const AUDIT_FILE: &str = "audit.sqlite";

/// Records queued for the writing thread, at most.
pub const AUDIT_QUEUE: usize = 65_536;

/// Most records one query returns.
pub const MAX_QUERY: usize = 5_000;

/// How long the writing thread gathers accepted position reports before it
/// writes them (unless another record comes, a query is waiting or a batch
/// is full).
pub const GATHER: Duration = Duration::from_millis(100);

/// The action whose accepted records are summarised.
const SUMMARISED: &str = "team_position";

/// Longest reason kept, in characters.
const MAX_REASON: usize = 512;

/// What became of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// Journalled and applied.
    Accepted,
    /// A retry of a message already applied.
    Duplicate,
    /// Valid and permitted, but impossible in the current state (unknown
    /// team, illegal transition…).
    Rejected,
    /// Refused before reaching the state: credentials, permission, limits,
    /// malformed input.
    Refused,
}

impl AuditOutcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Accepted => "accepted",
            AuditOutcome::Duplicate => "duplicate",
            AuditOutcome::Rejected => "rejected",
            AuditOutcome::Refused => "refused",
        }
    }
}

/// One entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    /// When, ms since the Unix epoch.
    pub at_ms: i64,
    /// The identity (user name, MQTT scope, or `unauthenticated`).
    pub by: String,
    /// Its role, when known.
    pub role: Option<&'static str>,
    /// The edge it came in on.
    pub edge: &'static str,
    /// What was asked: a command kind (`team_position`, `alert`…) or, for a
    /// request refused before it was read, the method and path.
    pub action: String,
    /// The object acted on (team, site, task or alert id), when known.
    pub target: Option<String>,
    /// The message id, when known.
    pub msg_id: Option<String>,
    /// What became of it.
    pub outcome: AuditOutcome,
    /// The refusal's code (`forbidden`, `unauthenticated`, `rate_limited`…).
    pub code: Option<String>,
    /// Why, in words.
    pub reason: Option<String>,
}

impl AuditRecord {
    /// A record at the current time with no target, message id or reason.
    pub fn new(
        by: &str,
        role: Option<&'static str>,
        edge: Edge,
        action: &str,
        outcome: AuditOutcome,
    ) -> Self {
        AuditRecord {
            at_ms: chrono::Utc::now().timestamp_millis(),
            by: truncated(by, 64),
            role,
            edge: edge.as_str(),
            action: truncated(action, 128),
            target: None,
            msg_id: None,
            outcome,
            code: None,
            reason: None,
        }
    }

    /// Sets the refusal's code and reason.
    pub fn why(mut self, code: &str, reason: &str) -> Self {
        self.code = Some(code.chars().take(64).collect());
        self.reason = Some(reason.chars().take(MAX_REASON).collect());
        self
    }
}

/// The first `max` characters of `text` (one copy, no per-character work
/// when it is short enough, as names and actions nearly always are).
fn truncated(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    text.chars().take(max).collect()
}

/// Filters of [`Audit::query`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditQuery {
    /// Only records at or after this time.
    pub since_ms: Option<i64>,
    /// Only records before this time.
    pub until_ms: Option<i64>,
    /// Only this identity.
    pub by: Option<String>,
    /// Only this outcome.
    pub outcome: Option<AuditOutcome>,
    /// Only this edge.
    pub edge: Option<String>,
    /// At most this many, newest first.
    pub limit: usize,
}

enum Msg {
    Record(Box<AuditRecord>),
    Flush(oneshot::Sender<()>),
}

/// The audit trail's handle, shared by the edges.
#[derive(Debug)]
pub struct Audit {
    tx: mpsc::Sender<Msg>,
    dropped: AtomicU64,
    path: std::path::PathBuf,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Record(_) => "Record",
            Msg::Flush(_) => "Flush",
        })
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit (
    id      INTEGER PRIMARY KEY,
    at_ms   INTEGER NOT NULL,
    by      TEXT NOT NULL,
    role    TEXT,
    edge    TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT,
    msg_id  TEXT,
    outcome TEXT NOT NULL,
    code    TEXT,
    reason  TEXT,
    count   INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at_ms);
CREATE INDEX IF NOT EXISTS audit_by ON audit (by, at_ms);";

impl Audit {
    /// Opens (creating) `audit.sqlite` in `data_dir` and starts the thread
    /// that writes it; records older than `keep_days` are deleted as it goes.
    pub fn open(data_dir: &Path, keep_days: u32) -> Result<Audit, rusqlite::Error> {
        let path = data_dir.join(AUDIT_FILE);
        let conn = Connection::open(&path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        // Trails made before entries were summarised lack the column.
        let has_count: bool =
            conn.prepare("SELECT 1 FROM pragma_table_info('audit') WHERE name = 'count'")?.exists([])?;
        if !has_count {
            conn.execute_batch("ALTER TABLE audit ADD COLUMN count INTEGER NOT NULL DEFAULT 1;")?;
        }
        let (tx, rx) = mpsc::channel(AUDIT_QUEUE);
        let keep_ms = i64::from(keep_days) * 24 * 3600 * 1000;
        std::thread::Builder::new()
            .name("eoc-audit".to_owned())
            .spawn(move || write_loop(conn, rx, keep_ms))
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(Audit { tx, dropped: AtomicU64::new(0), path })
    }

    /// Hands a record to the writing thread without waiting.
    pub fn record(&self, record: AuditRecord) {
        if self.tx.try_send(Msg::Record(Box::new(record))).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                warn!(dropped = n, "the audit queue is full; records are being dropped");
            }
        }
    }

    /// Records dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every record handed over before this call is written.
    pub async fn flush(&self) {
        let (done_tx, done_rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(done_tx)).await.is_ok() {
            let _ = done_rx.await;
        }
    }

    /// Records matching `q`, newest first, after a [`Audit::flush`].
    pub async fn query(&self, q: &AuditQuery) -> Result<Vec<serde_json::Value>, rusqlite::Error> {
        self.flush().await;
        let (path, q) = (self.path.clone(), q.clone());
        tokio::task::spawn_blocking(move || read(&path, &q))
            .await
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?
    }
}

fn read(path: &Path, q: &AuditQuery) -> Result<Vec<serde_json::Value>, rusqlite::Error> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let mut stmt = conn.prepare(
        "SELECT at_ms, by, role, edge, action, target, msg_id, outcome, code, reason, count FROM audit
         WHERE at_ms >= ?1 AND at_ms < ?2 AND (?3 IS NULL OR by = ?3) AND (?4 IS NULL OR outcome = ?4)
           AND (?5 IS NULL OR edge = ?5)
         ORDER BY id DESC LIMIT ?6",
    )?;
    let limit = i64::try_from(q.limit.clamp(1, MAX_QUERY)).unwrap_or(1);
    let rows = stmt.query_map(
        params![
            q.since_ms.unwrap_or(i64::MIN),
            q.until_ms.unwrap_or(i64::MAX),
            q.by,
            q.outcome.map(AuditOutcome::as_str),
            q.edge,
            limit
        ],
        |r| {
            let at_ms: i64 = r.get(0)?;
            Ok(serde_json::json!({
                "at": chrono::DateTime::from_timestamp_millis(at_ms),
                "by": r.get::<_, String>(1)?,
                "role": r.get::<_, Option<String>>(2)?,
                "edge": r.get::<_, String>(3)?,
                "action": r.get::<_, String>(4)?,
                "target": r.get::<_, Option<String>>(5)?,
                "msg_id": r.get::<_, Option<String>>(6)?,
                "outcome": r.get::<_, String>(7)?,
                "code": r.get::<_, Option<String>>(8)?,
                "reason": r.get::<_, Option<String>>(9)?,
                "count": r.get::<_, i64>(10)?,
            }))
        },
    )?;
    rows.collect()
}

/// Most records written in one transaction.
const BATCH: usize = 4_096;

/// Delete expired records every this many batches.
const PRUNE_EVERY: u64 = 1_000;

fn write_loop(mut conn: Connection, mut rx: mpsc::Receiver<Msg>, keep_ms: i64) {
    let mut batches = 0u64;
    let mut records = Vec::with_capacity(BATCH);
    let mut flushes = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        let gathering = std::time::Instant::now();
        let mut next = Some(first);
        // Any record that is not summarised (a refusal above all) is
        // written at once, with whatever was gathered before it.
        let mut urgent = false;
        loop {
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Record(r) => {
                        urgent |= summary_key(&r).is_none();
                        records.push(r);
                    }
                    Msg::Flush(done) => flushes.push(done),
                }
                if records.len() < BATCH {
                    next = rx.try_recv().ok();
                }
            }
            // Gather accepted positions for a while, so a burst of them
            // becomes a few entries; anything else, a waiting query or a
            // full batch is written at once.
            if urgent || !flushes.is_empty() || records.len() >= BATCH || gathering.elapsed() >= GATHER {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
            next = rx.try_recv().ok();
        }
        if let Err(err) = write_batch(&mut conn, &records) {
            error!(error = %err, records = records.len(), "could not write audit records");
        }
        records.clear();
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
        batches += 1;
        if batches % PRUNE_EVERY == 1 {
            let cutoff = chrono::Utc::now().timestamp_millis() - keep_ms;
            if let Err(err) = conn.execute("DELETE FROM audit WHERE at_ms < ?1", [cutoff]) {
                warn!(error = %err, "could not delete expired audit records");
            }
        }
    }
}

/// Who, as what, over which edge, for which team.
type SummaryKey<'a> = (&'a str, Option<&'static str>, &'static str, Option<&'a str>);

/// The key of a record that is summarised with others like it.
fn summary_key(r: &AuditRecord) -> Option<SummaryKey<'_>> {
    (r.outcome == AuditOutcome::Accepted && r.action == SUMMARISED).then_some((
        r.by.as_str(),
        r.role,
        r.edge,
        r.target.as_deref(),
    ))
}

/// The entries of a batch, in order: each record, except that the accepted
/// position reports of one identity for one team become one entry (at the
/// last one's place) with their count.
fn summarise(records: &[Box<AuditRecord>]) -> Vec<(&AuditRecord, i64)> {
    // Per key: how many, and the index of the last.
    let mut groups: HashMap<SummaryKey<'_>, (i64, usize), foldhash::fast::RandomState> = HashMap::default();
    for (i, r) in records.iter().enumerate() {
        if let Some(k) = summary_key(r) {
            let g = groups.entry(k).or_insert((0, i));
            *g = (g.0 + 1, i);
        }
    }
    let mut entries = Vec::with_capacity(records.len().min(groups.len() + 64));
    for (i, r) in records.iter().enumerate() {
        match summary_key(r).and_then(|k| groups.get(&k)) {
            Some(&(count, last)) if last == i => entries.push((&**r, count)),
            Some(_) => {}
            None => entries.push((&**r, 1)),
        }
    }
    entries
}

fn write_batch(conn: &mut Connection, records: &[Box<AuditRecord>]) -> Result<(), rusqlite::Error> {
    if records.is_empty() {
        return Ok(());
    }
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO audit (at_ms, by, role, edge, action, target, msg_id, outcome, code, reason, count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        for (r, count) in summarise(records) {
            stmt.execute(params![
                r.at_ms,
                r.by,
                r.role,
                r.edge,
                r.action,
                r.target,
                r.msg_id,
                r.outcome.as_str(),
                r.code,
                r.reason,
                count
            ])?;
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(by: &str, team: &str, id: &str, outcome: AuditOutcome) -> Box<AuditRecord> {
        let mut r = AuditRecord::new(by, Some("responder"), Edge::Mqtt, "team_position", outcome);
        r.target = Some(team.to_owned());
        r.msg_id = Some(id.to_owned());
        Box::new(r)
    }

    #[test]
    fn accepted_positions_of_one_identity_and_team_become_one_entry_at_the_last_ones_place() {
        let records = vec![
            position("r1", "t-1", "p-1", AuditOutcome::Accepted),
            position("r1", "t-1", "p-2", AuditOutcome::Accepted),
            position("r1", "t-1", "p-x", AuditOutcome::Refused),
            position("r2", "t-2", "q-1", AuditOutcome::Accepted),
            position("r1", "t-9", "p-9", AuditOutcome::Accepted),
            position("r1", "t-1", "p-3", AuditOutcome::Accepted),
            position("r1", "t-1", "p-3", AuditOutcome::Duplicate),
            Box::new(AuditRecord::new(
                "r1",
                Some("responder"),
                Edge::Mqtt,
                "team_status",
                AuditOutcome::Accepted,
            )),
        ];
        let entries: Vec<(&str, &str, i64)> = summarise(&records)
            .into_iter()
            .map(|(r, n)| (r.msg_id.as_deref().unwrap_or("-"), r.outcome.as_str(), n))
            .collect();
        assert_eq!(
            entries,
            [
                ("p-x", "refused", 1),
                ("q-1", "accepted", 1),
                ("p-9", "accepted", 1),
                ("p-3", "accepted", 3),
                ("p-3", "duplicate", 1),
                ("-", "accepted", 1),
            ]
        );
    }

    #[tokio::test]
    async fn a_trail_from_before_counts_is_opened_and_its_entries_count_one() {
        let dir = tempfile::tempdir().unwrap();
        let old = Connection::open(dir.path().join(AUDIT_FILE)).unwrap();
        let before_counts = SCHEMA.replace(",\n    count   INTEGER NOT NULL DEFAULT 1", "");
        assert!(!before_counts.contains("count"));
        old.execute_batch(&before_counts).unwrap();
        old.execute(
            "INSERT INTO audit (at_ms, by, edge, action, outcome) VALUES (1, 'old', 'http', 'alert', 'accepted')",
            [],
        )
        .unwrap();
        drop(old);
        let audit = Audit::open(dir.path(), 100_000).unwrap();
        audit.record(*position("r1", "t-1", "p-1", AuditOutcome::Accepted));
        let all = audit.query(&AuditQuery { limit: 10, ..AuditQuery::default() }).await.unwrap();
        let seen: Vec<(&str, i64)> =
            all.iter().map(|e| (e["by"].as_str().unwrap(), e["count"].as_i64().unwrap())).collect();
        assert_eq!(seen, [("r1", 1), ("old", 1)]);
    }

    #[tokio::test]
    async fn summarised_entries_carry_their_count() {
        let dir = tempfile::tempdir().unwrap();
        let audit = Audit::open(dir.path(), 90).unwrap();
        for i in 0..5 {
            audit.record(*position("r1", "t-1", &format!("p-{i}"), AuditOutcome::Accepted));
        }
        let all = audit.query(&AuditQuery { limit: 10, ..AuditQuery::default() }).await.unwrap();
        // However the thread's batches fell, the counts add up, and the
        // newest entry names the last message.
        assert_eq!(all.iter().map(|e| e["count"].as_i64().unwrap()).sum::<i64>(), 5, "{all:?}");
        assert_eq!(all[0]["msg_id"], "p-4");
    }

    #[tokio::test]
    async fn records_are_queryable_after_a_flush_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let audit = Audit::open(dir.path(), 90).unwrap();
        audit.record(AuditRecord::new(
            "r1",
            Some("responder"),
            Edge::Http,
            "team_position",
            AuditOutcome::Accepted,
        ));
        audit.record(
            AuditRecord::new("r1", Some("responder"), Edge::Mqtt, "alert", AuditOutcome::Refused)
                .why("forbidden", "only a chair may issue alerts"),
        );
        audit.record(AuditRecord::new("c1", Some("chair"), Edge::Http, "alert", AuditOutcome::Accepted));
        let all = audit.query(&AuditQuery { limit: 10, ..AuditQuery::default() }).await.unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0]["by"], "c1");
        let refused = audit
            .query(&AuditQuery { outcome: Some(AuditOutcome::Refused), limit: 10, ..AuditQuery::default() })
            .await
            .unwrap();
        assert_eq!(refused.len(), 1);
        assert_eq!(
            (refused[0]["code"].as_str(), refused[0]["edge"].as_str()),
            (Some("forbidden"), Some("mqtt"))
        );
        let by = audit.query(&AuditQuery { by: Some("r1".into()), limit: 1, ..AuditQuery::default() }).await;
        assert_eq!(by.unwrap().len(), 1, "the limit holds");
    }
}
