//! The WebSocket edge: inbound messages, acks, errors, lagging clients.

use eoc_tests::{Server, data_dir, earthquake, message, test_config};
use futures_util::StreamExt;
use serde_json::json;

#[tokio::test]
async fn inbound_messages_get_an_ack_or_a_specific_error() {
    let dir = data_dir();
    let server = Server::start(test_config(dir.path())).await;
    let mut ws = server.ws().await;
    assert_eq!(ws.next().await["type"], "snapshot");

    let pos = message(json!({"type": "team_position", "team_id": "t-1", "lat": 38.53, "lon": 68.73}));
    ws.send(&pos).await;
    let ack = ws.until(|f| f["type"] == "ack").await;
    assert_eq!(ack["id"], pos["id"]);
    assert!(ack["seq"].as_u64().is_some());

    ws.send(&pos).await;
    let again = ws.until(|f| f["type"] == "ack").await;
    assert_eq!(again, json!({"type": "ack", "id": pos["id"], "duplicate": true}));

    let unknown = message(json!({"type": "team_status", "team_id": "t-77", "status": "available"}));
    ws.send(&unknown).await;
    let err = ws.until(|f| f["type"] == "error").await;
    assert_eq!(err["id"], unknown["id"]);
    assert_eq!(err["errors"][0]["field"], "team_id");
    assert_eq!(err["errors"][0]["code"], "unknown");

    ws.send_text("{not json").await;
    let err = ws.until(|f| f["type"] == "error").await;
    assert_eq!(err["id"], serde_json::Value::Null);
    assert_eq!(err["errors"][0]["code"], "invalid_json");

    let wrong = message(json!({"type": "team_position", "team_id": "t-1", "lat": 38.5}));
    ws.send(&wrong).await;
    let err = ws.until(|f| f["type"] == "error").await;
    assert_eq!(err["id"], wrong["id"], "the id is echoed even when the message is invalid");

    let (_, team) = server.get("/api/v1/teams/t-1").await;
    assert_eq!(team["lat"], 38.53);
    ws.close().await;
    server.stop().await;
}

#[tokio::test]
async fn a_lagging_client_gets_a_fresh_snapshot() {
    let dir = data_dir();
    let mut config = test_config(dir.path());
    // Two frames of buffer: an alert's burst of frames overflows it while
    // this client waits for its own acknowledgement.
    config.http.fanout_frames = 2;
    let server = Server::start(config).await;
    let mut ws = server.ws().await;
    let first = ws.next().await;
    assert_eq!(first["type"], "snapshot");

    let mut alert = earthquake("eq-lag");
    alert["type"] = json!("alert");
    ws.send(&alert).await;
    // A burst of positions while this client reads nothing: the writer
    // broadcasts their frames back to back, more than two of them before
    // the client's sender can take any (an alert alone may not be).
    let server_ref = &server;
    let burst = (0..30).map(|i| {
        let team = if i % 2 == 0 { "t-1" } else { "t-2" };
        let body = message(json!({"lat": 38.5 + f64::from(i) * 0.001, "lon": 68.7}));
        let path = format!("/api/v1/teams/{team}/position");
        async move { server_ref.post(&path, &body).await.0 }
    });
    for status in futures_util::future::join_all(burst).await {
        assert_eq!(status, 200);
    }
    let (mut snapshot, mut ack) = (None, None);
    while snapshot.is_none() || ack.is_none() {
        let frame = ws.next().await;
        match frame["type"].as_str() {
            Some("snapshot") => snapshot = Some(frame),
            Some("ack") => ack = Some(frame),
            // Frames before the lag was noticed are fine; none may be skipped
            // silently, which the seq check below shows.
            _ => {}
        }
    }
    let (snapshot, ack) = (snapshot.unwrap(), ack.unwrap());
    let alerts = snapshot["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "the fresh snapshot holds the alert: {snapshot}");
    assert!(snapshot["seq"].as_u64() >= ack["seq"].as_u64(), "the snapshot includes the acknowledged alert");

    // It continues with frames after the snapshot.
    let (status, _) =
        server.post("/api/v1/teams/t-3/position", &message(json!({"lat": 38.41, "lon": 68.61}))).await;
    assert_eq!(status, 200);
    // Every frame after the snapshot follows the one before it (the ticker
    // may publish one ahead of the position); on a loaded machine the
    // two-frame buffer may overflow again, and a newer snapshot then
    // carries the position.
    let mut last = snapshot["seq"].as_u64().unwrap();
    loop {
        let frame = ws.next().await;
        let Some(seq) = frame["seq"].as_u64() else { continue };
        if frame["type"] == "snapshot" {
            let moved =
                frame["teams"].as_array().unwrap().iter().any(|t| t["team_id"] == "t-3" && t["lat"] == 38.41);
            if moved {
                break;
            }
            last = seq;
            continue;
        }
        assert_eq!(seq, last + 1, "no frame is skipped after a snapshot: {frame}");
        last = seq;
        if frame["type"] == "team" && frame["team_id"] == "t-3" {
            assert_eq!(frame["lat"], 38.41);
            break;
        }
    }
    ws.close().await;
    server.stop().await;
}

/// Frames sent back to back are all in flight at once, and each gets its
/// one answer in the order sent: acks, a refusal in the middle, a binary
/// frame's error, more acks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_come_in_the_order_frames_were_sent() {
    let dir = data_dir();
    let server = Server::start(test_config(dir.path())).await;
    let mut ws = server.ws().await;
    ws.next().await;
    let mut expected = Vec::new();
    for i in 0..60 {
        let lat = 38.5 + f64::from(i) * 0.001;
        let team = if i == 30 { "t-404" } else { "t-1" };
        let m = message(json!({"type": "team_position", "team_id": team, "lat": lat, "lon": 68.7}));
        expected.push((m["id"].as_str().unwrap().to_owned(), if i == 30 { "error" } else { "ack" }));
        ws.send(&m).await;
        if i == 40 {
            ws.send_binary(b"\x00\x01").await;
            expected.push((String::new(), "error"));
        }
    }
    for (id, kind) in expected {
        let answer = ws.until(|f| f["type"] == "ack" || f["type"] == "error").await;
        assert_eq!(answer["type"], kind, "{answer}");
        if !id.is_empty() {
            assert_eq!(answer["id"], id.as_str(), "{answer}");
        }
    }
    server.stop().await;
}

/// The coalescing window limits how often a connection writes, not how much:
/// a burst of more frames than one write takes reaches a dashboard in one
/// window, not one window per [`eoc_server::ws::SEND_BATCH`] frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_larger_than_one_write_is_not_held_back_by_the_window() {
    const WINDOW_MS: u64 = 2_000;
    const BURST: usize = 4 * eoc_server::ws::SEND_BATCH + 100;
    let dir = data_dir();
    let mut config = test_config(dir.path());
    config.http.fanout_coalesce_ms = WINDOW_MS;
    let server = Server::start(config).await;
    let mut dashboard = server.ws().await;
    assert_eq!(dashboard.next().await["type"], "snapshot");
    // The burst comes over HTTP (a WebSocket sender's own connection would
    // be paced by the same window).
    let server_ref = &server;
    let statuses: Vec<u16> = futures_util::stream::iter(0..BURST)
        .map(|i| async move {
            let body = message(json!({"lat": 38.5 + (i as f64) * 1e-5, "lon": 68.7}));
            server_ref.post("/api/v1/teams/t-1/position", &body).await.0
        })
        .buffered(32)
        .collect()
        .await;
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    // Every frame is written within one window of the first (plus the time
    // the burst took to apply); one window per 256 frames would take at
    // least four windows.
    let mut first = None;
    for _ in 0..BURST {
        dashboard.until(|f| f["type"] == "team").await;
        first.get_or_insert_with(std::time::Instant::now);
    }
    let spread = first.map(|t| t.elapsed()).unwrap_or_default();
    assert!(
        spread < std::time::Duration::from_millis(3 * WINDOW_MS),
        "{BURST} deltas took {spread:?} after the first to reach the dashboard"
    );
    server.stop().await;
}

/// A snapshot far larger than one WebSocket frame of the server (it sends
/// long messages in fragments) reaches a standard client whole.
#[tokio::test]
async fn a_large_snapshot_arrives_whole() {
    use eoc_server::core::synthetic::{Shape, world};
    let dir = data_dir();
    let shape = Shape { villages: 200, sites: 2_000, teams: 300, clusters: 4, spread_km: 30.0 };
    let server = Server::start_with(test_config(dir.path()), world(shape, 7)).await;
    let mut ws = server.ws().await;
    let Some(tokio_tungstenite::tungstenite::Message::Text(text)) = ws.next_raw().await else {
        panic!("no snapshot");
    };
    assert!(
        text.len() > 20 * eoc_server::ws::FRAGMENT_BYTES,
        "the snapshot ({} bytes) should span many fragments",
        text.len()
    );
    let snapshot: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["sites"].as_array().map(Vec::len), Some(2_000));
    assert_eq!(snapshot["teams"].as_array().map(Vec::len), Some(300));
    let (_, sites) = server.get("/api/v1/sites").await;
    let mut from_api: Vec<_> =
        sites["sites"].as_array().unwrap().iter().map(|s| s["site_id"].clone()).collect();
    let mut from_ws: Vec<_> =
        snapshot["sites"].as_array().unwrap().iter().map(|s| s["site_id"].clone()).collect();
    from_api.sort_by_key(|v| v.to_string());
    from_ws.sort_by_key(|v| v.to_string());
    assert_eq!(from_ws, from_api);

    // Deltas after it still arrive, each whole.
    let pos = message(
        json!({"type": "team_position", "team_id": snapshot["teams"][0]["team_id"], "lat": 38.53, "lon": 68.73}),
    );
    ws.send(&pos).await;
    let team = ws.until(|f| f["type"] == "team").await;
    assert_eq!(team["lat"], 38.53);
    ws.close().await;
    server.stop().await;
}

/// `/ws` without a WebSocket handshake is refused with a JSON error naming
/// the header at fault.
#[tokio::test]
async fn a_plain_request_to_ws_is_told_what_is_missing() {
    let dir = data_dir();
    let server = Server::start(test_config(dir.path())).await;
    let auth = server.bearer();
    let upgrade = [("Upgrade", "websocket"), ("Connection", "Upgrade")];
    let key = ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
    // (request headers beyond Authorization, status, field named)
    type Case<'a> = (&'a [(&'a str, &'a str)], u16, &'a str);
    let cases: [Case; 3] = [
        (&[], 426, "upgrade"),
        (&[upgrade[0], upgrade[1], key, ("Sec-WebSocket-Version", "8")], 426, "sec-websocket-version"),
        (&[upgrade[0], upgrade[1], ("Sec-WebSocket-Version", "13")], 400, "sec-websocket-key"),
    ];
    for (headers, want_status, want_field) in cases {
        let mut all = vec![("Authorization", auth.as_str())];
        all.extend_from_slice(headers);
        let (status, body) = eoc_tests::http(server.addr, "GET", "/ws", None, &all).await;
        assert_eq!((status, body["field"].as_str()), (want_status, Some(want_field)), "headers {headers:?}");
    }
    server.stop().await;
}
