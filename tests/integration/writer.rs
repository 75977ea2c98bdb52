//! The writer's pipeline (a batch committed while the one before it is
//! applied), driven through the bus directly.

use std::sync::Arc;

use eoc_protocol::messages::{Envelope, TeamPositionMsg};
use eoc_server::bus::{Accepted, Bus, Edge, Readiness, Submission, SubmitError};
use eoc_server::config::JournalConfig;
use eoc_server::core::engine::{Command, Engine, EngineConfig};
use eoc_server::metrics::Metrics;
use eoc_server::writer::{self, WriterMsg};
use eoc_tests::{data_dir, small_world};

fn position(id: &str, team: &str, lat: f64) -> Submission {
    let ts = chrono::Utc::now();
    Submission {
        command: Command::TeamPosition(TeamPositionMsg {
            envelope: Envelope { v: 1, id: id.to_owned(), ts },
            team_id: Some(team.to_owned()),
            lat,
            lon: 68.7,
            accuracy_m: Some(5.0),
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

/// A writer on the small world, journalling into `dir` on a thread of its
/// own, as `run` starts it.
struct Running {
    bus: Bus,
    stop_tx: tokio::sync::mpsc::Sender<WriterMsg>,
    thread: std::thread::JoinHandle<()>,
}

impl Running {
    fn start(dir: &std::path::Path, config: &JournalConfig, metrics: Arc<Metrics>) -> Running {
        let engine = Engine::new(small_world(), EngineConfig::default());
        let (bus, mut w) =
            writer::start(engine, dir, config, writer::FRAME_BUFFER, metrics, Arc::new(Readiness::default()))
                .unwrap();
        let stop_tx = w.stopper().unwrap();
        let thread = std::thread::spawn(move || w.run().unwrap());
        Running { bus, stop_tx, thread }
    }

    /// Stops the writer and waits for it to have checkpointed.
    async fn stop(self) {
        self.stop_tx.send(WriterMsg::Stop).await.unwrap();
        tokio::task::spawn_blocking(move || self.thread.join().unwrap()).await.unwrap();
    }
}

/// Queues three copies of a message with a short pause between them, so
/// that over many rounds copies land in the same batch, in the batch after
/// the first one's (while it is being committed), and after it was applied.
async fn copies(bus: &Bus, s: &Submission) -> Vec<Result<Accepted, SubmitError>> {
    let mut queued = Vec::new();
    for k in 0..3 {
        queued.push(bus.enqueue(s.clone()).await.unwrap());
        for _ in 0..k * 50 {
            tokio::task::yield_now().await;
        }
    }
    let mut answers = Vec::new();
    for q in queued {
        answers.push(q.answer().await);
    }
    answers
}

/// Whatever batch a retry lands in, a message is applied and journalled
/// once and every other copy is a duplicate; a refused message's copies
/// are all refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_in_any_batch_are_applied_once_and_answered_alike() {
    let dir = data_dir();
    let writer = Running::start(dir.path(), &JournalConfig::default(), Arc::new(Metrics::default()));
    let bus = writer.bus.clone();

    const ROUNDS: usize = 200;
    let mut rounds = Vec::new();
    for r in 0..ROUNDS {
        let bus = bus.clone();
        rounds.push(tokio::spawn(async move {
            // Other traffic keeps batches coming while the copies arrive.
            let other = bus.enqueue(position(&format!("other-{r}"), "t-2", 38.0)).await.unwrap();
            let good = copies(&bus, &position(&format!("good-{r}"), "t-1", 38.0 + r as f64 * 1e-4)).await;
            let bad = copies(&bus, &position(&format!("bad-{r}"), "no-such-team", 38.0)).await;
            assert!(matches!(other.answer().await, Ok(Accepted::Applied { .. })));
            (good, bad)
        }));
        if r % 4 == 3 {
            tokio::task::yield_now().await;
        }
    }
    for (r, round) in rounds.into_iter().enumerate() {
        let (good, bad) = round.await.unwrap();
        let applied = good.iter().filter(|a| matches!(a, Ok(Accepted::Applied { .. }))).count();
        let duplicates = good.iter().filter(|a| matches!(a, Ok(Accepted::Duplicate))).count();
        assert_eq!((applied, duplicates), (1, 2), "round {r}: {good:?}");
        assert!(bad.iter().all(|a| matches!(a, Err(SubmitError::Rejected(_)))), "round {r}: {bad:?}");
    }
    writer.stop().await;

    let journal = rusqlite::Connection::open(dir.path().join("journal.sqlite")).unwrap();
    let good_rows: i64 = journal
        .query_row("SELECT count(*) FROM entries WHERE msg_id LIKE 'good-%'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(good_rows, ROUNDS as i64, "each message journalled once");
    let distinct: i64 = journal
        .query_row("SELECT count(DISTINCT msg_id) FROM entries WHERE msg_id LIKE 'good-%'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(distinct, ROUNDS as i64);
}

/// Commits (each one fsync) start at least `commit_interval_ms` apart: a
/// steady stream of messages, one every millisecond, is journalled in a few
/// large batches instead of one commit per message, and every message is
/// still applied and answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_start_at_least_the_interval_apart_and_take_what_queued() {
    let dir = data_dir();
    let metrics = Arc::new(Metrics::default());
    let config = JournalConfig { commit_interval_ms: 50, ..JournalConfig::default() };
    let writer = Running::start(dir.path(), &config, metrics.clone());
    let bus = writer.bus.clone();

    const MESSAGES: usize = 200;
    let started = std::time::Instant::now();
    let mut queued = Vec::new();
    for k in 0..MESSAGES {
        queued.push(bus.enqueue(position(&format!("p-{k}"), "t-1", 38.0 + k as f64 * 1e-4)).await.unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    for q in queued {
        assert!(matches!(q.answer().await, Ok(Accepted::Applied { .. })));
    }
    let elapsed = started.elapsed();
    writer.stop().await;

    let text = metrics.render(0);
    let commits: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("eoc_journal_commit_seconds_count "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap();
    // The stream's commits, plus the checkpoint's at shutdown at most.
    let most = elapsed.as_millis() as u64 / 50 + 2;
    assert!(commits <= most, "{commits} commits in {elapsed:?}, at most {most} expected");
    assert!(commits >= 2, "{commits} commits");
    let journal = rusqlite::Connection::open(dir.path().join("journal.sqlite")).unwrap();
    let rows: i64 = journal.query_row("SELECT count(*) FROM entries", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, MESSAGES as i64);
}

/// An alert's frame is published before its impact and allocation are
/// worked out, yet every dashboard still sees one gapless run of `seq`:
/// the frames of positions applied earlier in the same batch go out before
/// it, and the alert's impact right after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_goes_out_first_within_one_gapless_run_of_frames() {
    let dir = data_dir();
    let writer = Running::start(dir.path(), &JournalConfig::default(), Arc::new(Metrics::default()));
    let bus = writer.bus.clone();
    let mut frames = bus.subscribe();

    // Positions queued around each alert land in the alert's batch, before
    // and after it.
    let mut queued = Vec::new();
    for k in 0..5 {
        for p in 0..20 {
            let lat = 38.5 + f64::from(k * 20 + p) * 1e-4;
            queued.push(bus.enqueue(position(&format!("pos-{k}-{p}"), "t-1", lat)).await.unwrap());
        }
        let alert = serde_json::json!({
            "v": 1, "id": format!("quake-{k}"), "ts": chrono::Utc::now(), "alert_id": format!("quake-{k}"),
            "hazard": "earthquake", "urgency": "immediate", "severity": "severe", "certainty": "observed",
            "status": "exercise", "earthquake": {"lat": 38.56, "lon": 68.78, "depth_km": 10.0, "magnitude": 6.5}
        });
        let msg = eoc_protocol::validate::parse_json(alert.to_string().as_bytes()).unwrap();
        queued.push(
            bus.enqueue(Submission {
                command: Command::Alert(msg),
                msg_id: Some(format!("quake-{k}")),
                by: "chair".to_owned(),
                edge: Edge::Http,
            })
            .await
            .unwrap(),
        );
    }
    for q in queued {
        assert!(matches!(q.answer().await, Ok(Accepted::Applied { .. })));
    }
    let last = bus.seq();
    let mut seen = Vec::new();
    while seen.last().is_none_or(|&(seq, _)| seq < last) {
        let published = frames.recv().await.unwrap();
        let kind = serde_json::to_value(&published.frame.delta).unwrap()["type"].as_str().unwrap().to_owned();
        seen.push((published.frame.seq, kind));
    }
    let seqs: Vec<u64> = seen.iter().map(|&(seq, _)| seq).collect();
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>(), "one gapless run of seq in order");
    let kinds: Vec<&str> = seen.iter().map(|(_, kind)| kind.as_str()).collect();
    let alerts: Vec<usize> = (0..kinds.len()).filter(|&i| kinds[i] == "alert").collect();
    assert_eq!(alerts.len(), 5, "{kinds:?}");
    for &i in &alerts {
        assert_eq!(kinds.get(i + 1), Some(&"impact"), "the impact follows its alert: {kinds:?}");
    }
    writer.stop().await;
}
