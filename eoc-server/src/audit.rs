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
    reason  TEXT
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
        "SELECT at_ms, by, role, edge, action, target, msg_id, outcome, code, reason FROM audit
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
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Record(r) => records.push(r),
                Msg::Flush(done) => flushes.push(done),
            }
            if records.len() < BATCH {
                next = rx.try_recv().ok();
            }
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

fn write_batch(conn: &mut Connection, records: &[Box<AuditRecord>]) -> Result<(), rusqlite::Error> {
    if records.is_empty() {
        return Ok(());
    }
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO audit (at_ms, by, role, edge, action, target, msg_id, outcome, code, reason)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        for r in records {
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
                r.reason
            ])?;
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

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
