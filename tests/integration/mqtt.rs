//! The MQTT edge against a real mosquitto started from `config/mosquitto`:
//! inbound topics reach the state and WebSocket clients, tasks and impact
//! summaries go out, bad messages are reported, and a broker restart loses
//! no acknowledged message.

use eoc_tests::mosquitto::{
    CONSOLE_USER, Client, Mosquitto, SERVER_USER, mqtt_config, phone_world, wait_mqtt_connected,
};
use eoc_tests::{Server, Ws, data_dir, earthquake, message};
use futures_util::StreamExt;
use serde_json::{Value, json};

async fn start(broker: &Mosquitto, dir: &tempfile::TempDir) -> Server {
    let server = Server::start_with(mqtt_config(broker, dir.path()), phone_world()).await;
    wait_mqtt_connected(&server).await;
    server
}

/// Skips the snapshot and returns the next `n` delta frames.
async fn deltas(ws: &mut Ws, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < n {
        let f = ws.next().await;
        if f["type"] != "snapshot" {
            out.push(f);
        }
    }
    out
}

/// The deployed ACL pins a responder to its own team's topics: team-b's
/// position published by team-a's user never reaches a subscriber, while
/// team-a's own does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_pins_a_responder_to_its_own_topics() {
    let dir = data_dir();
    let broker = Mosquitto::start(dir.path(), &["team-a"]).unwrap();
    let mut watcher = Client::connect(&broker, SERVER_USER, "watcher", false).await;
    watcher.subscribe("eoc/v1/teams/+/position").await;
    let phone = Client::connect(&broker, "team-a", "phone-a", false).await;
    phone.publish("eoc/v1/teams/team-b/position", "forged").await;
    phone.publish("eoc/v1/teams/team-a/position", "own").await;
    let m = watcher.next_where("a position", |_| true).await;
    assert_eq!((m.topic.as_str(), m.payload.as_str()), ("eoc/v1/teams/team-a/position", "own"));
}

/// Position, status, capacity and an alert published over MQTT reach a
/// WebSocket client as deltas numbered without a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_topics_reach_websocket_clients_in_order() {
    let dir = data_dir();
    let broker = Mosquitto::start(dir.path(), &["t-1", "t-2"]).unwrap();
    let server = start(&broker, &dir).await;
    let mut ws = server.ws().await;
    let snapshot = ws.next().await;
    let mut seq = snapshot["seq"].as_u64().unwrap();

    let t1 = Client::connect(&broker, "t-1", "phone-t-1", false).await;
    let t2 = Client::connect(&broker, "t-2", "phone-t-2", false).await;
    let console = Client::connect(&broker, CONSOLE_USER, "console", false).await;
    t1.publish(
        "eoc/v1/teams/t-1/position",
        message(json!({"lat": 38.61, "lon": 68.81, "battery_pct": 77.0})).to_string(),
    )
    .await;
    let first = deltas(&mut ws, 1).await.remove(0);
    assert_eq!((first["type"].as_str(), first["team_id"].as_str()), (Some("team"), Some("t-1")));
    assert_eq!((first["lat"].as_f64(), first["battery_pct"].as_f64()), (Some(38.61), Some(77.0)));

    t2.publish("eoc/v1/teams/t-2/status", message(json!({"status": "unavailable"})).to_string()).await;
    console
        .publish("eoc/v1/sites/s-1/capacity", message(json!({"capacity": 650, "occupancy": 20})).to_string())
        .await;
    console.publish("eoc/v1/alerts", earthquake("eq-ws").to_string()).await;

    let mut frames = vec![first];
    let wanted = |frames: &[Value]| {
        frames.iter().any(|f| f["type"] == "team" && f["team_id"] == "t-2" && f["status"] == "unavailable")
            && frames.iter().any(|f| f["type"] == "site" && f["site_id"] == "s-1" && f["capacity"] == 650)
            && frames.iter().any(|f| f["type"] == "alert" && f["alert_id"] == "eq-ws")
    };
    while !wanted(&frames) {
        frames.extend(deltas(&mut ws, 1).await);
    }
    for f in &frames {
        let s = f["seq"].as_u64().unwrap();
        assert_eq!(s, seq + 1, "frames arrive in state order without a gap: {f}");
        seq = s;
    }
    server.stop().await;
}

/// The dispatched team's subscriber receives its task, acknowledges it over
/// MQTT, and sees it acknowledged; a late subscriber finds the retained
/// impact summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatched_team_gets_its_task_and_acknowledges_it_over_mqtt() {
    let dir = data_dir();
    let broker = Mosquitto::start(dir.path(), &["t-1", "t-2"]).unwrap();
    let server = start(&broker, &dir).await;
    let mut phones = Vec::new();
    for team in ["t-1", "t-2"] {
        let mut c = Client::connect(&broker, team, &format!("phone-{team}"), true).await;
        c.subscribe(&format!("eoc/v1/teams/{team}/tasks")).await;
        phones.push(c);
    }
    let console = Client::connect(&broker, CONSOLE_USER, "console", false).await;
    console.publish("eoc/v1/alerts", earthquake("eq-1").to_string()).await;

    // Whichever team was sent, its own topic carries the assigned task.
    let (phone, task) = {
        let (p0, p1) = phones.split_at_mut(1);
        tokio::select! {
            m = p0[0].next_where("a task for t-1", |_| true) => (0, m.json()),
            m = p1[0].next_where("a task for t-2", |_| true) => (1, m.json()),
        }
    };
    let team = ["t-1", "t-2"][phone];
    assert_eq!((task["team_id"].as_str(), task["state"].as_str()), (Some(team), Some("assigned")), "{task}");
    let task_id = task["task_id"].as_str().unwrap().to_owned();

    let mut ws = server.ws().await;
    ws.next().await;
    // A phone acknowledges on its own team's topic (the ACL lets a
    // responder publish nowhere else).
    phones[phone]
        .publish(&format!("eoc/v1/teams/{team}/tasks/{task_id}/ack"), message(json!({})).to_string())
        .await;
    let acked = phones[phone]
        .next_where("the acknowledged task", |m| {
            m.json()["task_id"] == task_id.as_str() && m.json()["state"] == "acknowledged"
        })
        .await;
    assert_eq!(acked.json()["history"].as_array().unwrap().last().unwrap()["state"], "acknowledged");
    let delta = ws.until(|f| f["type"] == "task" && f["task_id"] == task_id.as_str()).await;
    assert_eq!(delta["state"], "acknowledged");

    let mut late = Client::connect(&broker, "t-1", "late-t-1", false).await;
    late.subscribe("eoc/v1/alerts/+/impact").await;
    let impact = late.next_on("eoc/v1/alerts/eq-1/impact").await;
    assert!(impact.retain, "the impact summary is retained");
    let v = impact.json();
    assert_eq!(v["alert_id"], "eq-1");
    assert!(v["total"]["people"].as_u64().unwrap() > 0, "{v}");
    assert!(v["districts"].as_array().is_some_and(|d| !d.is_empty()), "{v}");
    assert!(v.get("villages").is_none(), "the summary leaves out villages");
    server.stop().await;
}

/// Other systems following `eoc/v1/events` get every frame, in `seq` order;
/// a burst larger than the frame buffer (four frames here) makes the feed
/// skip ahead, counting what it skipped, but never holds up a team's task,
/// and the feed goes on with the newest frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_feed_carries_every_frame_and_a_burst_never_holds_up_a_task() {
    let dir = data_dir();
    let broker = Mosquitto::start(dir.path(), &["t-1", "t-2", "gis!viewer"]).unwrap();
    let mut config = mqtt_config(&broker, dir.path());
    config.http.fanout_frames = 4;
    let server = Server::start_with(config, phone_world()).await;
    wait_mqtt_connected(&server).await;
    let mut gis = Client::connect(&broker, "gis", "gis", false).await;
    gis.subscribe("eoc/v1/events").await;
    let mut phones = Vec::new();
    for team in ["t-1", "t-2"] {
        let mut c = Client::connect(&broker, team, &format!("phone-{team}"), true).await;
        c.subscribe(&format!("eoc/v1/teams/{team}/tasks")).await;
        phones.push(c);
    }

    for i in 0..3 {
        let body = message(json!({"lat": 38.6 + f64::from(i) * 0.001, "lon": 68.8}));
        assert_eq!(server.post("/api/v1/teams/t-1/position", &body).await.0, 200);
    }
    let mut seqs = Vec::new();
    for _ in 0..3 {
        let f = gis.next_on("eoc/v1/events").await.json();
        assert_eq!((f["type"].as_str(), f["team_id"].as_str()), (Some("team"), Some("t-1")), "{f}");
        seqs.push(f["seq"].as_u64().unwrap());
    }
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "every frame, in order: {seqs:?}");

    // A burst of positions, then an alert: a team is sent its task.
    let server_ref = &server;
    let statuses: Vec<u16> = futures_util::stream::iter(0..3_000)
        .map(|i| async move {
            let body = message(json!({"lat": 38.3 + f64::from(i % 100) * 0.001, "lon": 68.9}));
            server_ref.post("/api/v1/teams/t-3/position", &body).await.0
        })
        .buffer_unordered(64)
        .collect()
        .await;
    assert!(statuses.iter().all(|&s| s == 200));
    let (status, ack) = server.post("/api/v1/alerts", &earthquake("eq-burst")).await;
    assert_eq!(status, 200, "{ack}");
    let alert_seq = ack["seq"].as_u64().unwrap();
    let (p0, p1) = phones.split_at_mut(1);
    let task = tokio::select! {
        m = p0[0].next_where("a task for t-1", |_| true) => m.json(),
        m = p1[0].next_where("a task for t-2", |_| true) => m.json(),
    };
    assert_eq!(task["state"], "assigned", "{task}");

    // The feed went on: frames in increasing order up to the alert's (or
    // past it, when the feed skipped the alert's own), and every frame it
    // skipped is counted.
    let (mut last, mut gaps) = (*seqs.last().unwrap(), 0);
    loop {
        let f = gis.next_on("eoc/v1/events").await.json();
        let seq = f["seq"].as_u64().unwrap();
        assert!(seq > last, "seq {seq} after {last}");
        gaps += seq - last - 1;
        last = seq;
        if seq >= alert_seq {
            break;
        }
    }
    let (_, text) = eoc_tests::http(server.addr, "GET", "/metrics", None, &[]).await;
    let skipped: u64 = text
        .as_str()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("eoc_mqtt_events_skipped_total ")))
        .and_then(|n| n.trim().parse().ok())
        .expect("the skip counter");
    assert!(skipped > 0, "a burst of 3,000 frames through a buffer of 4 skips some");
    assert!(gaps <= skipped, "{gaps} frames missing on the feed, {skipped} counted as skipped");
    server.stop().await;
}

/// Malformed, oversize and unknown-team messages each produce a specific
/// report on `eoc/v1/errors`, change nothing, and the edge keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_reported_on_the_errors_topic_and_change_nothing() {
    let dir = data_dir();
    let broker = Mosquitto::start(dir.path(), &[]).unwrap();
    let server = start(&broker, &dir).await;
    let before = server.state().await;
    let mut console = Client::connect(&broker, CONSOLE_USER, "console", false).await;
    console.subscribe("eoc/v1/errors").await;

    console.publish("eoc/v1/teams/t-1/position", "{\"v\":1,\"id\":\"bad-1\",").await;
    let e = console.next_on("eoc/v1/errors").await.json();
    assert_eq!(
        (e["topic"].as_str(), e["errors"][0]["code"].as_str()),
        (Some("eoc/v1/teams/t-1/position"), Some("invalid_json"))
    );

    let oversize = json!({"v": 1, "id": "big-1", "ts": chrono::Utc::now().to_rfc3339(), "lat": 38.5, "lon": 68.7, "pad": "x".repeat(300 * 1024)});
    console.publish("eoc/v1/teams/t-1/position", oversize.to_string()).await;
    let e = console.next_on("eoc/v1/errors").await.json();
    assert_eq!(e["errors"][0]["code"], "too_large", "{e}");

    let ghost = message(json!({"lat": 38.5, "lon": 68.7}));
    console.publish("eoc/v1/teams/ghost/position", ghost.to_string()).await;
    let e = console.next_on("eoc/v1/errors").await.json();
    assert_eq!(
        (e["id"].as_str(), e["errors"][0]["field"].as_str()),
        (ghost["id"].as_str(), Some("team_id")),
        "{e}"
    );

    let wrong = message(json!({"team_id": "t-2", "lat": 38.5, "lon": 68.7}));
    console.publish("eoc/v1/teams/t-1/position", wrong.to_string()).await;
    let e = console.next_on("eoc/v1/errors").await.json();
    assert_eq!(e["errors"][0]["code"], "conflict", "{e}");

    assert_eq!(server.state().await, before, "rejected messages change nothing");
    // Still serving.
    console
        .publish("eoc/v1/teams/t-1/position", message(json!({"lat": 38.62, "lon": 68.8})).to_string())
        .await;
    let mut ws = server.ws().await;
    ws.until(|f| f["type"] == "team" && f["lat"] == 38.62).await;
    server.stop().await;
}

/// A numbered stream of QoS 1 positions from a persistent-session phone,
/// with the broker stopped (SIGTERM) and restarted on the same port in the
/// middle: every message the broker acknowledged reaches the state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_stream_loses_no_acknowledged_message() {
    const N: usize = 150;
    let dir = data_dir();
    let mut broker = Mosquitto::start(dir.path(), &["t-1"]).unwrap();
    let server = start(&broker, &dir).await;
    let mut ws = server.ws().await;
    ws.next().await;
    let mut phone = Client::connect(&broker, "t-1", "phone-t-1", true).await;
    let t0 = chrono::Utc::now() - chrono::Duration::seconds(N as i64 + 10);
    let position = |i: usize| {
        json!({"v": 1, "id": format!("stream-{i}"), "ts": (t0 + chrono::Duration::seconds(i as i64)).to_rfc3339(),
               "lat": 38.0 + i as f64 / 1000.0, "lon": 68.7}).to_string()
    };
    let mut acked = 0;
    for i in 0..N {
        if i == N / 3 {
            // Let the first third be acknowledged, then stop the broker.
            while acked < i {
                phone.next_puback().await;
                acked += 1;
            }
            broker.stop().unwrap();
        }
        if i == 2 * N / 3 {
            broker.restart().unwrap();
        }
        phone.publish("eoc/v1/teams/t-1/position", position(i)).await;
    }
    // The phone retransmits what the broker had not acknowledged; wait
    // until the broker has acknowledged everything.
    while acked < N {
        phone.next_puback().await;
        acked += 1;
    }
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < N {
        let f = ws.until(|f| f["type"] == "team" && f["team_id"] == "t-1").await;
        let i = ((f["lat"].as_f64().unwrap() - 38.0) * 1000.0).round() as usize;
        seen.insert(i);
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), (0..N).collect::<Vec<_>>());
    let (_, team) = server.get("/api/v1/teams/t-1").await;
    assert_eq!(team["lat"].as_f64(), Some(38.0 + (N - 1) as f64 / 1000.0), "{team}");
    server.stop().await;
}

/// A QoS 1 message queued for an offline persistent session survives a
/// broker restart (SIGTERM saves the database, the restart loads it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_keeps_queued_messages_across_a_restart() {
    let dir = data_dir();
    let mut broker = Mosquitto::start(dir.path(), &[]).unwrap();
    {
        let mut server = Client::connect(&broker, SERVER_USER, "eoc-server-test", true).await;
        server.subscribe("eoc/v1/alerts").await;
    }
    let mut console = Client::connect(&broker, CONSOLE_USER, "console", false).await;
    console.publish("eoc/v1/alerts", "queued").await;
    console.next_puback().await;
    broker.restart().unwrap();
    let mut server = Client::connect(&broker, SERVER_USER, "eoc-server-test", true).await;
    let m = server.next_on("eoc/v1/alerts").await;
    assert_eq!(m.payload, "queued");
}
