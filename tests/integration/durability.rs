//! The journal: restarts, shutdown, time-driven changes.

use eoc_server::config::Config;
use eoc_tests::{Server, data_dir, earthquake, message, test_config};
use serde_json::json;

/// Stops `server`, takes its shutdown's checkpoint away from the journal in
/// `data_dir` (the journal as a crash leaves it, with the last stored state
/// some entries back), starts it again on `config`, checks that it reached
/// the same state, and returns it with its `/readyz` answer.
async fn restart_from_an_earlier_checkpoint(
    server: Server,
    config: Config,
    data_dir: &std::path::Path,
) -> (Server, serde_json::Value) {
    let before = server.state().await;
    server.stop().await;
    let journal = rusqlite::Connection::open(data_dir.join("journal.sqlite")).unwrap();
    let last: i64 = journal.query_row("SELECT max(row) FROM checkpoints", [], |r| r.get(0)).unwrap();
    journal.execute("DELETE FROM checkpoints WHERE row = ?1", [last]).unwrap();
    let server = Server::start(config).await;
    assert_eq!(server.state().await, before);
    let (_, ready) = server.get("/readyz").await;
    (server, ready)
}

#[tokio::test]
async fn a_restart_on_the_same_data_dir_gives_the_same_state() {
    let dir = data_dir();
    let server = Server::start(test_config(dir.path())).await;
    server.post("/api/v1/teams/t-1/position", &message(json!({"lat": 38.55, "lon": 68.75}))).await;
    server.post("/api/v1/sites/s-2/capacity", &message(json!({"capacity": 20, "status": "open"}))).await;
    assert_eq!(server.post("/api/v1/alerts", &earthquake("eq-r")).await.0, 200);
    let (_, tasks) = server.get("/api/v1/tasks").await;
    let task_id = tasks["tasks"][0]["task_id"].as_str().unwrap().to_owned();
    let (status, _) = server.post(&format!("/api/v1/tasks/{task_id}/ack"), &message(json!({}))).await;
    assert_eq!(status, 200);
    let retry = message(json!({"status": "available"}));
    server.post("/api/v1/teams/t-3/status", &retry).await;
    let before = server.state().await;
    server.stop().await;

    let server = Server::start(test_config(dir.path())).await;
    assert_eq!(server.state().await, before);
    // The shutdown stored the whole state: the start restored it and
    // applied no entry.
    let (_, ready) = server.get("/readyz").await;
    assert!(ready["journal"]["restored_from_row"].as_u64().unwrap() > 0, "{ready}");
    assert_eq!(ready["journal"]["entries_at_start"], 0, "{ready}");
    // The deduplication set survives the restart too.
    let (_, again) = server.post("/api/v1/teams/t-3/status", &retry).await;
    assert_eq!(again["duplicate"], true);
    // And a third start replays over the shutdown checkpoint.
    server.stop().await;
    let server = Server::start(test_config(dir.path())).await;
    assert_eq!(server.state().await, before);
    server.stop().await;
}

/// With a checkpoint every 10 entries, a start restores the last stored
/// state and applies only the entries after it; the state is the one a
/// full replay gives (checked against the stored view, and here against
/// what clients saw before), and work continues from it.
#[tokio::test]
async fn a_start_applies_only_the_entries_after_the_last_stored_state() {
    let dir = data_dir();
    let mut config = test_config(dir.path());
    config.journal.snapshot_every = 10;
    let server = Server::start(config.clone()).await;
    assert_eq!(server.post("/api/v1/alerts", &earthquake("eq-s")).await.0, 200);
    for i in 0..37 {
        let at = 38.55 + f64::from(i) * 0.001;
        let (status, _) =
            server.post("/api/v1/teams/t-3/position", &message(json!({"lat": at, "lon": 68.7}))).await;
        assert_eq!(status, 200);
    }
    let (_, tasks) = server.get("/api/v1/tasks").await;
    let task_id = tasks["tasks"][0]["task_id"].as_str().unwrap().to_owned();
    assert_eq!(server.post(&format!("/api/v1/tasks/{task_id}/ack"), &message(json!({}))).await.0, 200);
    let (server, ready) = restart_from_an_earlier_checkpoint(server, config, dir.path()).await;
    let (from, applied) = (
        ready["journal"]["restored_from_row"].as_u64().unwrap(),
        ready["journal"]["entries_at_start"].as_u64().unwrap(),
    );
    assert!(
        from >= 10 && applied > 0 && applied <= 20,
        "restored at row {from}, then applied {applied}: {ready}"
    );
    // Work goes on from the restored state.
    let (status, ack) = server
        .post(&format!("/api/v1/tasks/{task_id}/transition"), &message(json!({"state": "en_route"})))
        .await;
    assert_eq!(status, 200, "{ack}");
    server.stop().await;
}

/// Message ids are remembered across a restart from a stored state, whether
/// they were applied before it (read back from the journal) or after it
/// (replayed); a message the engine refused is judged again when retried.
#[tokio::test]
async fn retries_after_a_restart_are_duplicates_and_a_refused_message_is_judged_again() {
    let dir = data_dir();
    let mut config = test_config(dir.path());
    config.journal.snapshot_every = 4;
    let server = Server::start(config.clone()).await;
    let refused = message(json!({"capacity": 20}));
    let (status, err) = server.post("/api/v1/sites/s-404/capacity", &refused).await;
    assert_eq!((status, err["code"].as_str()), (404, Some("unknown")), "{err}");
    let positions: Vec<_> =
        (0..10).map(|i| message(json!({"lat": 38.55 + f64::from(i) * 0.001, "lon": 68.7}))).collect();
    for p in &positions {
        assert_eq!(server.post("/api/v1/teams/t-1/position", p).await.0, 200);
    }
    let (server, ready) = restart_from_an_earlier_checkpoint(server, config, dir.path()).await;
    assert!(ready["journal"]["restored_from_row"].as_u64().unwrap() >= 4, "{ready}");
    // The state the restart reached, which is the state before it.
    let before = server.state().await;
    for p in [&positions[0], &positions[5], &positions[9]] {
        let (status, again) = server.post("/api/v1/teams/t-1/position", p).await;
        assert_eq!((status, &again["duplicate"]), (200, &json!(true)), "{again}");
    }
    let (status, err) = server.post("/api/v1/sites/s-404/capacity", &refused).await;
    assert_eq!((status, err["code"].as_str()), (404, Some("unknown")), "{err}");
    assert_eq!(server.state().await, before, "retries changed nothing");
    server.stop().await;
    // The engine judged the refused message twice; each position was
    // journalled once.
    let journal = rusqlite::Connection::open(dir.path().join("journal.sqlite")).unwrap();
    let count = |id: &str| -> i64 {
        journal.query_row("SELECT count(*) FROM entries WHERE msg_id = ?1", [id], |r| r.get(0)).unwrap()
    };
    assert_eq!(count(refused["id"].as_str().unwrap()), 2);
    assert!(positions.iter().all(|p| count(p["id"].as_str().unwrap()) == 1));
}

#[tokio::test]
async fn an_unacknowledged_task_times_out_and_the_village_is_dispatched_again() {
    let dir = data_dir();
    let mut config = test_config(dir.path());
    config.engine.ack_timeout_s = 1;
    config.engine.max_tasks_per_alert = 1;
    let server = Server::start(config).await;
    let mut ws = server.ws().await;
    ws.next().await;
    assert_eq!(server.post("/api/v1/alerts", &earthquake("eq-t")).await.0, 200);
    let assigned = ws.until(|f| f["type"] == "task" && f["state"] == "assigned").await;
    let timed_out = ws
        .until(|f| f["type"] == "task" && f["task_id"] == assigned["task_id"] && f["state"] == "timed_out")
        .await;
    assert_eq!(timed_out["village_id"], assigned["village_id"]);
    let again = ws
        .until(|f| f["type"] == "task" && f["state"] == "assigned" && f["task_id"] != assigned["task_id"])
        .await;
    assert_eq!(again["village_id"], assigned["village_id"], "the same village gets another team");
    assert_ne!(again["team_id"], assigned["team_id"], "not the team that let it time out");
    ws.close().await;
    server.stop().await;
}
