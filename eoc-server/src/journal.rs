//! The journal: every accepted command, in order, in SQLite.
//!
//! One row per command with the batch's `now_ms`, so replaying the rows
//! through a fresh engine rebuilds exactly the same state (the engine is a
//! pure function of state, command and time). Commands the engine refuses
//! are journalled too (the writer cannot know before applying, and it
//! journals first so an acknowledgement means durable); replay refuses them
//! again in the same way.
//!
//! Durability: WAL mode with `synchronous=FULL`. Each batch is one
//! transaction, and in WAL mode a commit with `synchronous=FULL` syncs the
//! WAL file once, so a batch costs one fsync however many commands it holds.
//! Checkpoints copy the WAL into the database at SQLite's automatic
//! threshold and at shutdown.
//!
//! Checkpoints of state: every `snapshot_every` entries (and at shutdown)
//! the writer stores, with the row it was reached at, the engine's whole
//! state ([`crate::core::engine::EngineState`], with the row from which the
//! message ids still deduplicated are read back out of the entries) and the
//! snapshot view clients get. A periodic one is copied by the writer,
//! rendered to JSON on a thread of its own and stored in the transaction of
//! the next batch, so it shares that batch's fsync and holds up no commit.
//! A start restores the
//! last state and applies only the entries after it, so restart time is
//! bounded by `snapshot_every`, not by the journal's length; the view
//! proves the restore exact (or the writer falls back to a full replay).
//! The entries themselves are all kept: they are the record of what was
//! done, by whom and when.

use std::path::Path;

use eoc_protocol::messages::{
    AlertMsg, SiteCapacityMsg, TaskAssignMsg, TaskUpdateMsg, TeamPositionMsg, TeamStatusMsg,
};
use rusqlite::{Connection, OptionalExtension, params};
use tracing::error;

use crate::bus::{Edge, Submission};
use crate::core::engine::Command;

/// File name of the journal inside the data directory.
pub const JOURNAL_FILE: &str = "journal.sqlite";

/// Why the journal could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// SQLite failed (disk full, permissions, corruption).
    #[error("journal database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A row could not be decoded back into a command.
    #[error("journal row {row}: {reason}")]
    Corrupt {
        /// The row id.
        row: i64,
        /// What is wrong with it.
        reason: String,
    },
    /// A command could not be encoded.
    #[error("encoding a command: {0}")]
    Encode(#[from] serde_json::Error),
    /// The thread that writes the journal is gone (shutdown or a crash).
    #[error("journal unavailable: {0}")]
    Stopped(String),
}

/// One journalled command.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Row id, increasing.
    pub row: i64,
    /// The time the writer applied it with, ms since the Unix epoch.
    pub now_ms: i64,
    /// The command and its provenance.
    pub submission: Submission,
}

/// A stored snapshot of the state reached after a row.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The last row included.
    pub row: i64,
    /// The `seq` reached.
    pub seq: u64,
    /// The `now_ms` the snapshot was rendered with.
    pub now_ms: i64,
    /// `Engine::snapshot(seq, now_ms)` as JSON.
    pub snapshot_json: String,
    /// The writer's whole state at `row` as JSON, to restore from; `None` in
    /// checkpoints written before states were stored.
    pub state_json: Option<String>,
}

/// The open journal.
#[derive(Debug)]
pub struct Journal {
    conn: Connection,
}

/// The kind tag and protocol-message JSON of a command.
pub fn encode(cmd: &Command) -> Result<(&'static str, Option<String>), serde_json::Error> {
    Ok(match cmd {
        Command::Alert(m) => ("alert", Some(serde_json::to_string(m)?)),
        Command::TeamPosition(m) => ("team_position", Some(serde_json::to_string(m)?)),
        Command::TeamStatus(m) => ("team_status", Some(serde_json::to_string(m)?)),
        Command::SiteCapacity(m) => ("site_capacity", Some(serde_json::to_string(m)?)),
        Command::TaskUpdate(m) => ("task_update", Some(serde_json::to_string(m)?)),
        Command::TaskAssign(m) => ("task_assign", Some(serde_json::to_string(m)?)),
        Command::Tick => ("tick", None),
    })
}

/// The command of a kind tag and its JSON.
pub fn decode(kind: &str, body: Option<&str>) -> Result<Command, String> {
    fn msg<T: serde::de::DeserializeOwned>(body: Option<&str>) -> Result<T, String> {
        let body = body.ok_or("the command has no body")?;
        serde_json::from_str(body).map_err(|e| e.to_string())
    }
    Ok(match kind {
        "alert" => Command::Alert(msg::<AlertMsg>(body)?),
        "team_position" => Command::TeamPosition(msg::<TeamPositionMsg>(body)?),
        "team_status" => Command::TeamStatus(msg::<TeamStatusMsg>(body)?),
        "site_capacity" => Command::SiteCapacity(msg::<SiteCapacityMsg>(body)?),
        "task_update" => Command::TaskUpdate(msg::<TaskUpdateMsg>(body)?),
        "task_assign" => Command::TaskAssign(msg::<TaskAssignMsg>(body)?),
        "tick" => Command::Tick,
        other => return Err(format!("unknown command kind {other:?}")),
    })
}

/// Inserts a checkpoint and drops all but the two latest.
fn put_checkpoint(conn: &Connection, c: &Checkpoint) -> Result<(), JournalError> {
    conn.execute(
        "INSERT OR REPLACE INTO checkpoints (row, seq, now_ms, snapshot, state) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![c.row, i64::try_from(c.seq).unwrap_or(i64::MAX), c.now_ms, c.snapshot_json, c.state_json],
    )?;
    // The one before is kept too, in case the last cannot be used.
    conn.execute(
        "DELETE FROM checkpoints WHERE row NOT IN (SELECT row FROM checkpoints ORDER BY row DESC LIMIT 2)",
        [],
    )?;
    Ok(())
}

fn edge_of(label: &str) -> Option<Edge> {
    [Edge::Mqtt, Edge::Http, Edge::WebSocket, Edge::OwnTracks, Edge::OsmAnd, Edge::Internal]
        .into_iter()
        .find(|e| e.as_str() == label)
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir`.
    pub fn open(dir: &Path) -> Result<Journal, JournalError> {
        let conn = Connection::open(dir.join(JOURNAL_FILE))?;
        // WAL + FULL: one fsync of the WAL per committed batch (see the
        // module documentation).
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS entries (
                row     INTEGER PRIMARY KEY,
                now_ms  INTEGER NOT NULL,
                edge    TEXT NOT NULL,
                by      TEXT NOT NULL,
                msg_id  TEXT,
                kind    TEXT NOT NULL,
                body    TEXT
            );
            CREATE TABLE IF NOT EXISTS checkpoints (
                row       INTEGER PRIMARY KEY,
                seq       INTEGER NOT NULL,
                now_ms    INTEGER NOT NULL,
                snapshot  TEXT NOT NULL,
                state     TEXT
            );",
        )?;
        // Journals made before states were stored lack the column.
        let has_state: bool =
            conn.prepare("SELECT 1 FROM pragma_table_info('checkpoints') WHERE name = 'state'")?.exists([])?;
        if !has_state {
            conn.execute_batch("ALTER TABLE checkpoints ADD COLUMN state TEXT;")?;
        }
        Ok(Journal { conn })
    }

    /// Appends a batch in one transaction (one fsync) and returns the row id
    /// of each entry, in order.
    pub fn append<'a>(
        &mut self,
        now_ms: i64,
        batch: impl IntoIterator<Item = &'a Submission>,
    ) -> Result<Vec<i64>, JournalError> {
        self.append_with_checkpoint(now_ms, batch, None)
    }

    /// [`Journal::append`], storing `checkpoint` (a state reached at an
    /// earlier, committed row) in the same transaction, so the two share
    /// one fsync.
    pub fn append_with_checkpoint<'a>(
        &mut self,
        now_ms: i64,
        batch: impl IntoIterator<Item = &'a Submission>,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<Vec<i64>, JournalError> {
        let mut tx = self.conn.transaction()?;
        if let Some(c) = checkpoint {
            // A checkpoint that cannot be stored must not cost the batch its
            // commit: it is rolled back alone (a later one will come).
            let point = tx.savepoint()?;
            match put_checkpoint(&point, c) {
                Ok(()) => point.commit()?,
                Err(err) => error!(error = %err, row = c.row, "could not store a checkpoint"),
            }
        }
        let mut rows = Vec::new();
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO entries (now_ms, edge, by, msg_id, kind, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for s in batch {
                let (kind, body) = encode(&s.command)?;
                insert.execute(params![now_ms, s.edge.as_str(), s.by, s.msg_id, kind, body])?;
                rows.push(tx.last_insert_rowid());
            }
        }
        tx.commit()?;
        Ok(rows)
    }

    /// Calls `f` on every entry in order. Stops at the first error.
    pub fn replay(&self, f: impl FnMut(Entry) -> Result<(), JournalError>) -> Result<u64, JournalError> {
        self.replay_after(0, f)
    }

    /// Calls `f` on every entry after row `after`, in order. Stops at the
    /// first error.
    pub fn replay_after(
        &self,
        after: i64,
        mut f: impl FnMut(Entry) -> Result<(), JournalError>,
    ) -> Result<u64, JournalError> {
        let mut stmt = self.conn.prepare(
            "SELECT row, now_ms, edge, by, msg_id, kind, body FROM entries WHERE row > ?1 ORDER BY row",
        )?;
        let mut rows = stmt.query([after])?;
        let mut n = 0;
        while let Some(r) = rows.next()? {
            let row: i64 = r.get(0)?;
            let edge_label: String = r.get(2)?;
            let kind: String = r.get(5)?;
            let body: Option<String> = r.get(6)?;
            let edge = edge_of(&edge_label).ok_or_else(|| JournalError::Corrupt {
                row,
                reason: format!("unknown edge {edge_label:?}"),
            })?;
            let command =
                decode(&kind, body.as_deref()).map_err(|reason| JournalError::Corrupt { row, reason })?;
            f(Entry {
                row,
                now_ms: r.get(1)?,
                submission: Submission { command, msg_id: r.get(4)?, by: r.get(3)?, edge },
            })?;
            n += 1;
        }
        Ok(n)
    }

    /// Calls `f(row, now_ms, msg_id)` on every entry from row `from` to row
    /// `to` (both included) that has a message id, in order: the ids a
    /// restart remembers for deduplication.
    pub fn for_each_msg_id(
        &self,
        from: i64,
        to: i64,
        mut f: impl FnMut(i64, i64, &str),
    ) -> Result<(), JournalError> {
        let mut stmt = self.conn.prepare(
            "SELECT row, now_ms, msg_id FROM entries
             WHERE row >= ?1 AND row <= ?2 AND msg_id IS NOT NULL ORDER BY row",
        )?;
        let mut rows = stmt.query([from, to])?;
        while let Some(r) = rows.next()? {
            let row: i64 = r.get(0)?;
            let id =
                r.get_ref(2)?.as_str().map_err(|e| JournalError::Corrupt { row, reason: e.to_string() })?;
            f(row, r.get(1)?, id);
        }
        Ok(())
    }

    /// Stores the snapshot reached after `row`.
    pub fn store_checkpoint(&mut self, c: &Checkpoint) -> Result<(), JournalError> {
        let tx = self.conn.transaction()?;
        put_checkpoint(&tx, c)?;
        tx.commit()?;
        Ok(())
    }

    /// The most recent checkpoint.
    pub fn last_checkpoint(&self) -> Result<Option<Checkpoint>, JournalError> {
        Ok(self
            .conn
            .query_row(
                "SELECT row, seq, now_ms, snapshot, state FROM checkpoints ORDER BY row DESC LIMIT 1",
                [],
                |r| {
                    Ok(Checkpoint {
                        row: r.get(0)?,
                        seq: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                        now_ms: r.get(2)?,
                        snapshot_json: r.get(3)?,
                        state_json: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }

    /// Copies the WAL into the database and truncates it (at shutdown, so
    /// the next start opens a compact file).
    pub fn flush(&mut self) -> Result<(), JournalError> {
        self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(row: i64) -> Checkpoint {
        Checkpoint {
            row,
            seq: 7,
            now_ms: 1,
            snapshot_json: "{}".to_owned(),
            state_json: Some("{}".to_owned()),
        }
    }

    /// A checkpoint stored with a batch is there with the batch's entries
    /// after a reopen, and only the two latest checkpoints are kept.
    #[test]
    fn a_checkpoint_stored_with_a_batch_is_kept_with_its_entries() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path()).unwrap();
        let rows =
            journal.append(1, &[Submission::test_position("a"), Submission::test_position("b")]).unwrap();
        journal.store_checkpoint(&checkpoint(rows[0])).unwrap();
        let later = journal
            .append_with_checkpoint(2, &[Submission::test_position("c")], Some(&checkpoint(rows[1])))
            .unwrap();
        journal
            .append_with_checkpoint(3, &[Submission::test_position("d")], Some(&checkpoint(later[0])))
            .unwrap();
        drop(journal);

        let journal = Journal::open(dir.path()).unwrap();
        assert_eq!(journal.last_checkpoint().unwrap().map(|c| c.row), Some(later[0]));
        let mut ids = Vec::new();
        journal
            .replay(|e| {
                ids.push(e.submission.msg_id.unwrap_or_default());
                Ok(())
            })
            .unwrap();
        assert_eq!(ids, ["a", "b", "c", "d"]);
        let kept: i64 = journal.conn.query_row("SELECT count(*) FROM checkpoints", [], |r| r.get(0)).unwrap();
        assert_eq!(kept, 2);
    }

    /// A checkpoint that cannot be stored is dropped alone: the batch it
    /// came with is still committed.
    #[test]
    fn a_checkpoint_that_cannot_be_stored_does_not_cost_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path()).unwrap();
        journal
            .conn
            .execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON checkpoints BEGIN SELECT RAISE(ABORT, 'refused'); END;",
            )
            .unwrap();
        let rows = journal
            .append_with_checkpoint(1, &[Submission::test_position("a")], Some(&checkpoint(1)))
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert!(journal.last_checkpoint().unwrap().is_none());
        let mut n = 0;
        journal
            .replay(|_| {
                n += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(n, 1);
    }
}
