//! Access control on every transport: who may do what (PRODUCT.md §5), a
//! revoked token stops at once, and every refusal is in the audit trail
//! with its reason.

use eoc_server::auth::Role;
use eoc_tests::mosquitto::{CONSOLE_USER, Client, Mosquitto, mqtt_config, wait_mqtt_connected};
use eoc_tests::{Server, Ws, data_dir, earthquake, message, test_config};
use serde_json::{Value, json};

/// The audit entries of `by`, newest first.
async fn audit_of(server: &Server, by: &str) -> Vec<Value> {
    let (status, body) = server.get(&format!("/api/v1/audit?by={by}&limit=100")).await;
    assert_eq!(status, 200, "{body}");
    body["entries"].as_array().unwrap().clone()
}

/// The first task of an alert and its team.
async fn a_task(server: &Server) -> (String, String) {
    let (status, tasks) = server.get("/api/v1/tasks").await;
    assert_eq!(status, 200);
    let task = &tasks["tasks"][0];
    (task["task_id"].as_str().unwrap().to_owned(), task["team_id"].as_str().unwrap().to_owned())
}

fn other_team(team: &str) -> &'static str {
    if team == "t-1" { "t-2" } else { "t-1" }
}

/// Over HTTP: a responder cannot move another team, acknowledge another
/// team's task or issue an alert; a site manager cannot change another
/// site; a viewer cannot write; each refusal is audited with its reason;
/// what they may do, they do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_enforces_every_role() {
    let dir = data_dir();
    let server = Server::start(test_config(dir.path())).await;
    assert_eq!(server.post("/api/v1/alerts", &earthquake("eq-1")).await.0, 200);
    let (task, team) = a_task(&server).await;
    let other = other_team(&team);
    let mine = server.user("r-mine", Role::Responder, Some(&team), &[]);
    let theirs = server.user("r-other", Role::Responder, Some(other), &[]);
    let manager = server.user("m-1", Role::SiteManager, None, &["s-1"]);
    let viewer = server.user("v-1", Role::Viewer, None, &[]);
    let operator = server.user("o-1", Role::Operator, None, &[]);
    let before = server.state().await;

    let position = |lat: f64| message(json!({"lat": lat, "lon": 68.7}));
    let cases: Vec<(&str, &str, String, Value, &str)> = vec![
        ("r-other", &theirs, format!("/api/v1/teams/{team}/position"), position(38.5), "team_id"),
        ("r-other", &theirs, format!("/api/v1/tasks/{task}/ack"), message(json!({})), "task_id"),
        ("r-other", &theirs, "/api/v1/alerts".to_owned(), earthquake("eq-forged"), "alert_id"),
        (
            "m-1",
            &manager,
            "/api/v1/sites/s-2/capacity".to_owned(),
            message(json!({"occupancy": 5})),
            "site_id",
        ),
        (
            "v-1",
            &viewer,
            format!("/api/v1/teams/{team}/status"),
            message(json!({"status": "unavailable"})),
            "team_id",
        ),
        ("o-1", &operator, "/api/v1/alerts".to_owned(), earthquake("eq-op"), "alert_id"),
    ];
    for (who, token, path, body, field) in &cases {
        let (status, err) = server.post_as(token, path, body).await;
        assert_eq!(
            (status, err["code"].as_str(), err["field"].as_str()),
            (403, Some("forbidden"), Some(*field)),
            "{who} on {path}: {err}"
        );
    }
    assert_eq!(server.state().await, before, "no refused write changed anything");

    for (who, _, _, _, _) in &cases {
        let entries = audit_of(&server, who).await;
        assert!(!entries.is_empty(), "{who}'s refusal is audited");
        for e in &entries {
            assert_eq!(
                (e["outcome"].as_str(), e["code"].as_str()),
                (Some("refused"), Some("forbidden")),
                "{e}"
            );
            assert!(e["reason"].as_str().is_some_and(|r| !r.is_empty()), "{e}");
        }
    }
    // A CAP document is an alert: chairs only, refused before it is read.
    let auth = format!("Bearer {operator}");
    let (status, err) = eoc_tests::http(
        server.addr,
        "POST",
        "/api/v1/alerts/cap",
        Some(b"<alert/>"),
        &[("Authorization", &auth), ("Content-Type", "application/cap+xml")],
    )
    .await;
    assert_eq!((status, err["code"].as_str()), (403, Some("forbidden")), "{err}");
    let forged = audit_of(&server, "r-other").await;
    assert!(forged.iter().any(|e| e["action"] == "alert" && e["target"] == "eq-forged"), "{forged:?}");

    // What each may do.
    let (status, ack) =
        server.post_as(&mine, &format!("/api/v1/tasks/{task}/ack"), &message(json!({}))).await;
    assert_eq!(status, 200, "{ack}");
    assert_eq!(
        server.post_as(&mine, &format!("/api/v1/teams/{team}/position"), &position(38.51)).await.0,
        200
    );
    let capacity = message(json!({"occupancy": 5}));
    assert_eq!(server.post_as(&manager, "/api/v1/sites/s-1/capacity", &capacity).await.0, 200);
    assert_eq!(server.post_as(&operator, "/api/v1/sites/s-2/capacity", &capacity).await.0, 200);
    assert_eq!(server.get_as(&viewer, "/api/v1/sitrep").await.0, 200);
    let accepted = audit_of(&server, "r-mine").await;
    assert_eq!(accepted[0]["outcome"], "accepted");
    assert_eq!(accepted[0]["action"], "team_position");
    assert_eq!(accepted[1]["action"], "task_update");

    // The audit trail is for operators and chairs, and holds no secret.
    let (status, err) = server.get_as(&viewer, "/api/v1/audit").await;
    assert_eq!((status, err["code"].as_str()), (403, Some("forbidden")));
    let (_, all) = server.get("/api/v1/audit?limit=5000").await;
    let text = all.to_string();
    for token in [&mine, &theirs, &manager, &viewer, &operator, &server.token] {
        assert!(!text.contains(token.as_str()), "a token leaked into the audit trail");
    }
    server.stop().await;
}

/// No token, a malformed one, a wrong one: 401, audited as unauthenticated;
/// a revoked token fails on its very next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_and_revoked_tokens_are_refused_at_once() {
    let dir = data_dir();
    let server = Server::start(test_config(dir.path())).await;
    let token = server.user("o-2", Role::Operator, None, &[]);
    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('x') { 'y' } else { 'x' });
    for bad in ["", "hunter2", forged.as_str()] {
        let (status, err) = server.get_as(bad, "/api/v1/teams").await;
        assert_eq!((status, err["code"].as_str()), (401, Some("unauthenticated")), "{bad:?}: {err}");
    }
    assert_eq!(server.get_as(&token, "/api/v1/teams").await.0, 200);
    eoc_server::auth::store::UserStore::open(dir.path()).unwrap().revoke("o-2").unwrap();
    let (status, err) = server.get_as(&token, "/api/v1/teams").await;
    assert_eq!((status, err["message"].as_str()), (401, Some("the token was revoked or rotated")));
    let (_, audit) = server.get("/api/v1/audit?by=unauthenticated&limit=10").await;
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 4, "{audit}");
    assert!(entries.iter().all(|e| e["code"] == "unauthenticated" && e["action"] == "GET /api/v1/teams"));
    server.stop().await;
}

/// Over the WebSocket: a responder's forged position is refused with the
/// reason, its own is acknowledged; after revocation its next message is
/// refused and the connection is closed with a policy code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_enforces_roles_and_revocation() {
    let dir = data_dir();
    let server = Server::start(test_config(dir.path())).await;
    let token = server.user("r-1", Role::Responder, Some("t-1"), &[]);
    let mut ws = Ws::connect(server.addr, &token).await;
    assert_eq!(ws.next().await["type"], "snapshot");

    let forged = message(json!({"type": "team_position", "team_id": "t-2", "lat": 38.5, "lon": 68.7}));
    ws.send(&forged).await;
    let err = ws.until(|f| f["type"] == "error").await;
    assert_eq!(
        (err["id"].as_str(), err["errors"][0]["code"].as_str()),
        (forged["id"].as_str(), Some("forbidden")),
        "{err}"
    );
    let own = message(json!({"type": "team_position", "team_id": "t-1", "lat": 38.5, "lon": 68.7}));
    ws.send(&own).await;
    let ack = ws.until(|f| f["type"] == "ack").await;
    assert_eq!(ack["id"], own["id"]);

    // The other refusals of the rule book, over the WebSocket too: an
    // alert and another team's task from the responder, another site from
    // a site manager, anything from a viewer.
    assert_eq!(server.post("/api/v1/alerts", &earthquake("eq-w")).await.0, 200);
    // The quake sends both rescue teams: take the task that is not t-1's.
    let (_, tasks) = server.get("/api/v1/tasks").await;
    let task = tasks["tasks"].as_array().unwrap().iter().find(|t| t["team_id"] != "t-1").cloned();
    let task = task.expect("a task of another team").clone();
    let task = task["task_id"].as_str().unwrap().to_owned();
    let mut alert = earthquake("eq-forged");
    alert["type"] = json!("alert");
    let mut cases: Vec<(Ws, Value, &str)> = Vec::new();
    cases.push((Ws::connect(server.addr, &token).await, alert, "alert_id"));
    let ack_other = message(json!({"type": "task_update", "task_id": task, "state": "acknowledged"}));
    cases.push((Ws::connect(server.addr, &token).await, ack_other, "task_id"));
    let manager = server.user("m-w", Role::SiteManager, None, &["s-1"]);
    let other_site = message(json!({"type": "site_capacity", "site_id": "s-2", "occupancy": 3}));
    cases.push((Ws::connect(server.addr, &manager).await, other_site, "site_id"));
    let viewer = server.user("v-w", Role::Viewer, None, &[]);
    let status = message(json!({"type": "team_status", "team_id": "t-1", "status": "unavailable"}));
    cases.push((Ws::connect(server.addr, &viewer).await, status, "team_id"));
    for (mut client, frame, field) in cases {
        assert_eq!(client.next().await["type"], "snapshot");
        client.send(&frame).await;
        let err = client.until(|f| f["type"] == "error").await;
        assert_eq!(
            (err["id"].as_str(), err["errors"][0]["code"].as_str(), err["errors"][0]["field"].as_str()),
            (frame["id"].as_str(), Some("forbidden"), Some(field)),
            "{err}"
        );
        client.close().await;
    }
    let refused: Vec<Value> = [audit_of(&server, "m-w").await, audit_of(&server, "v-w").await].concat();
    assert!(refused.iter().all(|e| e["edge"] == "websocket" && e["code"] == "forbidden"), "{refused:?}");
    assert_eq!(refused.len(), 2);

    eoc_server::auth::store::UserStore::open(dir.path()).unwrap().revoke("r-1").unwrap();
    let again = message(json!({"type": "team_position", "team_id": "t-1", "lat": 38.6, "lon": 68.7}));
    ws.send(&again).await;
    let err = ws.until(|f| f["type"] == "error").await;
    assert_eq!(err["errors"][0]["code"], "unauthenticated", "{err}");
    let (status, _) = server.get("/api/v1/teams/t-1").await;
    assert_eq!(status, 200);
    let refused = audit_of(&server, "r-1").await;
    assert_eq!(refused[0]["code"], "unauthenticated");
    assert_eq!(refused[2]["code"], "forbidden");

    // A new connection with the revoked token is refused outright.
    let url = format!("ws://{}/ws?token={token}", server.addr);
    let refused = tokio_tungstenite::connect_async(url).await;
    assert!(refused.is_err(), "a revoked token opened a websocket");
    server.stop().await;
}

/// Through mosquitto with the ACL the user store generates: the broker
/// drops a responder's publish on another team's topic; on its own team's
/// topic the server refuses acknowledging another team's task (reported on
/// the errors topic, audited); a site manager's topic cannot carry another
/// site; after revocation and a broker reload the responder cannot connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_enforces_roles_through_the_broker_acl() {
    let dir = data_dir();
    let broker = Mosquitto::start(dir.path(), &["r-1@t-1", "r-2@t-2", "m-1#s-1", "v-1!viewer"]).unwrap();
    let server = Server::start(mqtt_config(&broker, dir.path())).await;
    wait_mqtt_connected(&server).await;
    let mut console = Client::connect(&broker, CONSOLE_USER, "console", false).await;
    console.subscribe("eoc/v1/errors").await;
    console.subscribe("eoc/v1/teams/+/position").await;
    console.publish("eoc/v1/alerts", earthquake("eq-m").to_string()).await;
    let task = loop {
        let (_, tasks) = server.get("/api/v1/tasks").await;
        if let Some(t) = tasks["tasks"].as_array().and_then(|a| a.first()) {
            break t.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let (task_id, team) = (task["task_id"].as_str().unwrap(), task["team_id"].as_str().unwrap());
    let (mine, theirs) = if team == "t-1" { ("r-1", "r-2") } else { ("r-2", "r-1") };
    let other = other_team(team);

    // The broker drops a publish outside the responder's topics: the
    // console sees only the responder's own position.
    let intruder = Client::connect(&broker, theirs, "intruder", false).await;
    intruder.publish(&format!("eoc/v1/teams/{team}/position"), "forged").await;
    intruder
        .publish(
            &format!("eoc/v1/teams/{other}/position"),
            message(json!({"lat": 38.52, "lon": 68.75})).to_string(),
        )
        .await;
    let seen = console.next_where("a position", |m| m.topic.ends_with("/position")).await;
    assert_eq!(seen.topic, format!("eoc/v1/teams/{other}/position"), "{}", seen.payload);

    // An alert from a responder, or any publish from a viewer, never
    // reaches the server: the broker drops it (the console, subscribed to
    // alerts, sees only its own).
    console.subscribe("eoc/v1/alerts").await;
    intruder.publish("eoc/v1/alerts", earthquake("eq-forged").to_string()).await;
    let viewer = Client::connect(&broker, "v-1", "viewer", false).await;
    viewer.publish("eoc/v1/alerts", earthquake("eq-viewer").to_string()).await;
    viewer
        .publish(
            &format!("eoc/v1/teams/{team}/position"),
            message(json!({"lat": 38.5, "lon": 68.7})).to_string(),
        )
        .await;
    console.publish("eoc/v1/alerts", earthquake("eq-console").to_string()).await;
    let seen = console.next_where("an alert", |m| m.topic == "eoc/v1/alerts").await;
    assert_eq!(seen.json()["alert_id"], "eq-console", "{}", seen.payload);
    // By the time the console's alert is applied, the server holds no other.
    let alerts = loop {
        let (_, body) = server.get("/api/v1/alerts").await;
        let ids: Vec<String> = body["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["alert_id"].as_str().unwrap().to_owned())
            .collect();
        if ids.contains(&"eq-console".to_owned()) {
            break ids;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(alerts, ["eq-m", "eq-console"]);

    // Its own team's ack topic carrying another team's task: refused by
    // the server, reported and audited.
    intruder
        .publish(&format!("eoc/v1/teams/{other}/tasks/{task_id}/ack"), message(json!({})).to_string())
        .await;
    let e = console.next_where("the refusal", |m| m.topic == "eoc/v1/errors").await.json();
    assert_eq!(e["errors"][0]["code"], "forbidden", "{e}");
    assert!(e["errors"][0]["message"].as_str().unwrap().contains(team), "{e}");
    let audit = audit_of(&server, &format!("mqtt:team:{other}")).await;
    assert!(audit.iter().any(|a| a["code"] == "forbidden" && a["target"] == task_id), "{audit:?}");

    // A site topic carrying another site in its body.
    let manager = Client::connect(&broker, "m-1", "manager", false).await;
    manager
        .publish("eoc/v1/sites/s-1/capacity", message(json!({"site_id": "s-2", "occupancy": 9})).to_string())
        .await;
    let e = console.next_where("the site refusal", |m| m.topic == "eoc/v1/errors").await.json();
    assert_eq!(
        (e["errors"][0]["code"].as_str(), e["errors"][0]["field"].as_str()),
        (Some("conflict"), Some("site_id"))
    );

    // The task's own team acknowledges it on its topic.
    let mut ws = server.ws().await;
    let owner = Client::connect(&broker, mine, "owner", false).await;
    owner.publish(&format!("eoc/v1/teams/{team}/tasks/{task_id}/ack"), message(json!({})).to_string()).await;
    ws.until(|f| f["type"] == "task" && f["task_id"] == task_id && f["state"] == "acknowledged").await;

    // Revoked, and the broker reloaded: the responder cannot sign in.
    eoc_server::auth::store::UserStore::open(dir.path()).unwrap().revoke(theirs).unwrap();
    broker.reload().unwrap();
    let mut options = rumqttc::MqttOptions::new("revoked", "127.0.0.1", broker.port());
    options.set_credentials(theirs, broker.password(theirs));
    let (_client, mut events) = rumqttc::AsyncClient::new(options, 10);
    let refused = tokio::time::timeout(eoc_tests::WAIT, events.poll()).await.unwrap();
    assert!(refused.is_err(), "a revoked user connected: {refused:?}");
    server.stop().await;
}

/// Limits: a responder sending faster than its rate is refused with 429
/// and told when to retry (audited), while another identity is unaffected;
/// WebSocket connections beyond the cap are refused with 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rates_and_connections_are_capped_per_identity() {
    let dir = data_dir();
    let mut config = test_config(dir.path());
    // Three at once, then one every ten seconds: no refill during the test.
    config.access.responder_per_s = 0.1;
    config.access.burst_s = 30.0;
    config.access.max_ws_connections = 2;
    let server = Server::start(config).await;
    let fast = server.user("r-fast", Role::Responder, Some("t-1"), &[]);
    let calm = server.user("r-calm", Role::Responder, Some("t-2"), &[]);
    let position = || message(json!({"lat": 38.5, "lon": 68.7}));
    for _ in 0..3 {
        assert_eq!(server.post_as(&fast, "/api/v1/teams/t-1/position", &position()).await.0, 200);
    }
    let (status, err) = server.post_as(&fast, "/api/v1/teams/t-1/position", &position()).await;
    assert_eq!((status, err["code"].as_str()), (429, Some("rate_limited")), "{err}");
    assert!(err["message"].as_str().unwrap().contains("retry in"), "{err}");
    assert_eq!(server.post_as(&calm, "/api/v1/teams/t-2/position", &position()).await.0, 200);
    assert_eq!(audit_of(&server, "r-fast").await[0]["code"], "rate_limited");

    let _a = server.ws().await;
    let _b = server.ws().await;
    let url = format!("ws://{}/ws?token={}", server.addr, server.token);
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("a third websocket was not refused: {other:?}"),
    }
    server.stop().await;
}
