//! The HTTP edge: inbound twins, errors, deduplication, reads.

use eoc_tests::{Server, data_dir, earthquake, http, message, test_config};
use serde_json::{Value, json};

fn seq_of(frame: &Value) -> u64 {
    frame["seq"].as_u64().unwrap()
}

#[tokio::test]
async fn writes_reach_websocket_clients_in_order_with_consecutive_seq() {
    let dir = data_dir();
    let server = Server::start(test_config(dir.path())).await;
    let mut ws = server.ws().await;
    let snapshot = ws.next().await;
    assert_eq!(snapshot["type"], "snapshot");
    let mut expected = seq_of(&snapshot) + 1;

    let (status, ack) =
        server.post("/api/v1/teams/t-1/position", &message(json!({"lat": 38.50, "lon": 68.70}))).await;
    assert_eq!(status, 200, "{ack}");
    let (status, _) =
        server.post("/api/v1/teams/t-3/status", &message(json!({"status": "unavailable"}))).await;
    assert_eq!(status, 200);
    let (status, _) =
        server.post("/api/v1/sites/s-1/capacity", &message(json!({"capacity": 800, "occupancy": 10}))).await;
    assert_eq!(status, 200);
    let (status, ack) = server.post("/api/v1/alerts", &earthquake("eq-1")).await;
    assert_eq!(status, 200, "{ack}");
    let last = ack["seq"].as_u64().unwrap();

    let mut seen = Vec::new();
    while expected <= last {
        let frame = ws.next().await;
        assert_eq!(seq_of(&frame), expected, "frames arrive in order without gaps: {frame}");
        expected += 1;
        seen.push(frame);
    }
    let team = seen.iter().find(|f| f["type"] == "team" && f["team_id"] == "t-1").unwrap();
    assert_eq!(team["lat"], 38.50);
    assert!(
        seen.iter().any(|f| f["type"] == "team" && f["team_id"] == "t-3" && f["status"] == "unavailable")
    );
    assert!(seen.iter().any(|f| f["type"] == "site" && f["site_id"] == "s-1" && f["capacity"] == 800));
    assert!(seen.iter().any(|f| f["type"] == "alert" && f["alert_id"] == "eq-1"));
    let impact = seen.iter().find(|f| f["type"] == "impact" && f["alert_id"] == "eq-1").unwrap();
    assert!(!impact["villages"].as_array().unwrap().is_empty(), "an M6.5 under Dushanbe affects villages");
    server.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_specific_error_and_changes_nothing() {
    let dir = data_dir();
    let server = Server::start(test_config(dir.path())).await;
    let before = server.state().await;
    let addr = server.addr;
    let auth = server.bearer();
    let auth = [("Authorization", auth.as_str())];

    let (status, err) = http(addr, "POST", "/api/v1/teams/t-1/position", Some(b"{\"v\":1,"), &auth).await;
    assert_eq!((status, err["code"].as_str()), (400, Some("invalid_json")), "{err}");

    let (status, err) =
        server.post("/api/v1/teams/t-1/position", &message(json!({"lat": "north", "lon": 68.7}))).await;
    assert_eq!(
        (status, err["code"].as_str(), err["field"].as_str()),
        (400, Some("invalid_type"), Some("lat"))
    );

    let (status, err) =
        server.post("/api/v1/teams/t-1/position", &message(json!({"lat": 95.0, "lon": 68.7}))).await;
    // The protocol's rules refuse it at the edge, before the writer.
    assert_eq!(
        (status, err["code"].as_str(), err["field"].as_str()),
        (400, Some("out_of_range"), Some("lat"))
    );

    let (status, err) =
        server.post("/api/v1/teams/t-9/position", &message(json!({"lat": 38.5, "lon": 68.7}))).await;
    assert_eq!(
        (status, err["code"].as_str(), err["field"].as_str()),
        (404, Some("unknown"), Some("team_id"))
    );

    let (status, err) = server.post("/api/v1/sites/s-9/capacity", &message(json!({"capacity": 10}))).await;
    assert_eq!(
        (status, err["code"].as_str(), err["field"].as_str()),
        (404, Some("unknown"), Some("site_id"))
    );

    let (status, err) = server
        .post("/api/v1/teams/t-1/position", &message(json!({"team_id": "t-2", "lat": 38.5, "lon": 68.7})))
        .await;
    assert_eq!(
        (status, err["code"].as_str(), err["field"].as_str()),
        (400, Some("conflict"), Some("team_id"))
    );

    let huge = vec![b' '; eoc_protocol::validate::MAX_MESSAGE_BYTES + 1];
    let (status, err) = http(addr, "POST", "/api/v1/alerts", Some(&huge), &auth).await;
    assert_eq!((status, err["code"].as_str()), (413, Some("too_large")), "{err}");

    let (status, err) = server.post("/api/v1/tasks/task-404/ack", &message(json!({}))).await;
    assert_eq!((status, err["field"].as_str()), (404, Some("task_id")));

    assert_eq!(server.state().await, before, "rejected messages leave the state unchanged");
    let (status, teams) = server.get("/api/v1/teams").await;
    assert_eq!(status, 200, "the server keeps serving");
    assert_eq!(teams["teams"].as_array().unwrap().len(), 3);
    server.stop().await;
}

#[tokio::test]
async fn a_retried_message_is_acknowledged_again_and_applied_once() {
    let dir = data_dir();
    let server = Server::start(test_config(dir.path())).await;
    let first = message(json!({"lat": 38.51, "lon": 68.71}));
    let (status, ack) = server.post("/api/v1/teams/t-1/position", &first).await;
    assert_eq!(status, 200);
    let seq = ack["seq"].as_u64().unwrap();

    // Same id, different content: a retry, so the content is not applied.
    let mut retry = first.clone();
    retry["lat"] = json!(38.99);
    let (status, again) = server.post("/api/v1/teams/t-1/position", &retry).await;
    assert_eq!(status, 200);
    assert_eq!(again, json!({"id": first["id"], "duplicate": true}));

    let (_, team) = server.get("/api/v1/teams/t-1").await;
    assert_eq!(team["lat"], 38.51);
    let (_, ready) = server.get("/readyz").await;
    assert_eq!(ready["journal"]["seq"].as_u64(), Some(seq), "the retry published nothing");
    server.stop().await;
}

#[tokio::test]
async fn an_older_fix_does_not_move_the_team_back() {
    let dir = data_dir();
    let server = Server::start(test_config(dir.path())).await;
    let now = chrono::Utc::now();
    let newer = message(json!({"lat": 38.52, "lon": 68.72, "at": now.to_rfc3339()}));
    let older =
        message(json!({"lat": 38.10, "lon": 68.10, "at": (now - chrono::Duration::hours(1)).to_rfc3339()}));
    assert_eq!(server.post("/api/v1/teams/t-2/position", &newer).await.0, 200);
    assert_eq!(server.post("/api/v1/teams/t-2/position", &older).await.0, 200);
    let (_, team) = server.get("/api/v1/teams/t-2").await;
    assert_eq!((team["lat"].as_f64(), team["lon"].as_f64()), (Some(38.52), Some(68.72)));
    server.stop().await;
}

#[tokio::test]
async fn reads_preview_and_situation_report() {
    let dir = data_dir();
    let server = Server::start(test_config(dir.path())).await;

    // A preview computes the impact and changes nothing.
    let before = server.state().await;
    let (status, preview) = server.post("/api/v1/alerts/preview", &earthquake("draft-1")).await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["alert_id"], "draft-1");
    assert!(!preview["villages"].as_array().unwrap().is_empty());
    assert_eq!(server.state().await, before);
    assert_eq!(server.get("/api/v1/alerts/draft-1").await.0, 404);

    assert_eq!(server.post("/api/v1/alerts", &earthquake("eq-2")).await.0, 200);
    let (status, alert) = server.get("/api/v1/alerts/eq-2").await;
    assert_eq!((status, alert["active"].as_bool()), (200, Some(true)));
    let (status, impact) = server.get("/api/v1/alerts/eq-2/impact").await;
    assert_eq!(status, 200);
    assert_eq!(impact["villages"], preview["villages"], "the preview matched the real impact");
    let (_, list) = server.get("/api/v1/alerts").await;
    assert_eq!(list["alerts"].as_array().unwrap().len(), 1);

    let (status, villages) = server.get("/api/v1/villages?bbox=68.7,38.5,68.9,38.6").await;
    assert_eq!(status, 200);
    let mut ids: Vec<&str> =
        villages["villages"].as_array().unwrap().iter().map(|v| v["village_id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["v-1", "v-2"]);
    let (status, err) = server.get("/api/v1/villages?bbox=68.7,38.5,north").await;
    assert_eq!((status, err["field"].as_str()), (400, Some("bbox")));
    let (status, v) = server.get("/api/v1/villages/v-3").await;
    assert_eq!((status, v["district"].as_str()), (200, Some("Vahdat")));

    let (status, tasks) = server.get("/api/v1/tasks").await;
    assert_eq!(status, 200);
    assert!(!tasks["tasks"].as_array().unwrap().is_empty(), "the alert dispatched teams");

    let (status, sitrep) = server.get("/api/v1/sitrep").await;
    assert_eq!(status, 200);
    assert_eq!(sitrep["active_alerts"].as_array().unwrap().len(), 1);
    assert!(sitrep["totals"]["displaced"].as_u64().unwrap() > 0);
    assert!(sitrep["tasks_by_state"]["assigned"].as_u64().unwrap() > 0);

    // Cancel through the path endpoint: the alert stops being active.
    let (status, ack) = server.post("/api/v1/alerts/eq-2/cancel", &message(json!({}))).await;
    assert_eq!(status, 200, "{ack}");
    let (_, alert) = server.get("/api/v1/alerts/eq-2").await;
    assert_eq!(alert["active"], false);
    let (status, err) = server.post("/api/v1/alerts/eq-2/cancel", &message(json!({}))).await;
    assert_eq!((status, err["code"].as_str()), (409, Some("conflict")));
    server.stop().await;
}
