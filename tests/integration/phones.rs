//! Phones, unchanged: OwnTracks over MQTT and HTTP, and OsmAnd (Traccar
//! Client) in query, form and JSON form, move the team the device is
//! mapped to, with units converted.

use std::net::SocketAddr;

use eoc_server::auth::Role;
use eoc_tests::mosquitto::{Client, Mosquitto, mqtt_config, phone_world, wait_mqtt_connected};
use eoc_tests::{Server, Ws, data_dir, test_config};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP/1.1 request with any content type; returns status and body.
async fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(eoc_tests::WAIT, stream.read_to_end(&mut out)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

async fn team_delta(ws: &mut Ws, team: &str) -> Value {
    ws.until(|f| f["type"] == "team" && f["team_id"] == team).await
}

fn close(a: &Value, b: f64) -> bool {
    a.as_f64().is_some_and(|a| (a - b).abs() < 1e-6)
}

/// OwnTracks over MQTT: the phone gets the open sites as waypoints when the
/// server connects and again when a site closes; a location moves its team
/// (tst → position time, batt, acc); a transition moves it too; the
/// broker's lwt marks it offline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owntracks_over_mqtt_moves_the_mapped_team_and_receives_waypoints() {
    let dir = data_dir();
    let broker = Mosquitto::start(dir.path(), &["jane@t-1"]).unwrap();
    let mut jane = Client::connect(&broker, "jane", "jane-phone", true).await;
    jane.subscribe("owntracks/jane/phone/cmd").await;
    let server = Server::start_with(mqtt_config(&broker, dir.path()), phone_world()).await;
    wait_mqtt_connected(&server).await;

    let cmd = jane.next_on("owntracks/jane/phone/cmd").await.json();
    assert_eq!((cmd["_type"].as_str(), cmd["action"].as_str()), (Some("cmd"), Some("setWaypoints")));
    let rids = |cmd: &Value| -> Vec<String> {
        cmd["waypoints"]["waypoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["rid"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut got = rids(&cmd);
    got.sort();
    assert_eq!(got, ["s-1", "s-2"]);
    let w = &cmd["waypoints"]["waypoints"][0];
    assert_eq!(w["rad"], 150);
    assert!(w["desc"].as_str().unwrap().starts_with("Site "));

    let mut ws = server.ws().await;
    ws.next().await;
    let tst = chrono::Utc::now().timestamp() - 30;
    let location = json!({"_type": "location", "lat": 38.611, "lon": 68.822, "tst": tst, "acc": 12, "batt": 64, "vel": 36, "tid": "jp"});
    jane.publish("owntracks/jane/phone", location.to_string()).await;
    let t = team_delta(&mut ws, "t-1").await;
    assert!(close(&t["lat"], 38.611) && close(&t["lon"], 68.822), "{t}");
    assert_eq!((t["battery_pct"].as_f64(), t["accuracy_m"].as_f64()), (Some(64.0), Some(12.0)));
    let at: chrono::DateTime<chrono::Utc> = t["position_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(at.timestamp(), tst, "tst is epoch seconds of the fix");

    let transition = json!({"_type": "transition", "event": "enter", "lat": 38.5701, "lon": 68.7901, "tst": tst + 5, "wtst": 1_100_000_000, "acc": 8, "rid": "s-1", "desc": "Site s-1", "t": "c"});
    jane.publish("owntracks/jane/phone/event", transition.to_string()).await;
    let t = team_delta(&mut ws, "t-1").await;
    assert!(close(&t["lat"], 38.5701), "{t}");

    // A site closes: the phone's geofences are replaced without it.
    let console = Client::connect(&broker, eoc_tests::mosquitto::CONSOLE_USER, "console", false).await;
    console
        .publish("eoc/v1/sites/s-2/capacity", eoc_tests::message(json!({"status": "closed"})).to_string())
        .await;
    let cmd = jane.next_on("owntracks/jane/phone/cmd").await.json();
    assert_eq!(rids(&cmd), ["s-1"]);

    jane.publish("owntracks/jane/phone", json!({"_type": "lwt", "tst": tst - 3600}).to_string()).await;
    let t = ws.until(|f| f["type"] == "team" && f["team_id"] == "t-1" && f["status"] == "offline").await;
    assert_eq!(t["status"], "offline");

    // Revoked: the server refuses the user's very next report, before any
    // broker reload, and says so on the errors topic and in the audit trail.
    let mut console = console;
    console.subscribe("eoc/v1/errors").await;
    eoc_server::auth::store::UserStore::open(dir.path()).unwrap().revoke("jane").unwrap();
    let late = json!({"_type": "location", "lat": 38.7, "lon": 68.9, "tst": tst + 60});
    jane.publish("owntracks/jane/phone", late.to_string()).await;
    let e = console.next_on("eoc/v1/errors").await.json();
    assert_eq!(
        (e["topic"].as_str(), e["errors"][0]["code"].as_str()),
        (Some("owntracks/jane/phone"), Some("unauthenticated")),
        "{e}"
    );
    let (_, audit) = server.get("/api/v1/audit?edge=owntracks&outcome=refused").await;
    assert_eq!(audit["entries"][0]["code"], "unauthenticated", "{audit}");
    server.stop().await;
}

/// An OwnTracks device that is not mapped to a team is reported on the
/// errors topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_owntracks_device_is_reported() {
    let dir = data_dir();
    let broker = Mosquitto::start(dir.path(), &["stranger"]).unwrap();
    let server = Server::start_with(mqtt_config(&broker, dir.path()), phone_world()).await;
    wait_mqtt_connected(&server).await;
    let mut console = Client::connect(&broker, eoc_tests::mosquitto::CONSOLE_USER, "console", false).await;
    console.subscribe("eoc/v1/errors").await;
    let stranger = Client::connect(&broker, "stranger", "stranger-phone", false).await;
    let tst = chrono::Utc::now().timestamp();
    stranger
        .publish(
            "owntracks/stranger/phone",
            json!({"_type": "location", "lat": 38.6, "lon": 68.8, "tst": tst}).to_string(),
        )
        .await;
    let e = console.next_on("eoc/v1/errors").await.json();
    assert_eq!(
        (e["topic"].as_str(), e["errors"][0]["code"].as_str()),
        (Some("owntracks/stranger/phone"), Some("unknown_device")),
        "{e}"
    );
    server.stop().await;
}

/// `Authorization: Basic` of `user` and `token`.
fn basic(user: &str, token: &str) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}")))
}

/// OwnTracks HTTP mode: the device from the Recorder headers or from Basic
/// auth plus `tid`; `[]` after the durable submit. Every post carries the
/// user's name and token; a phone reports only as its own user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owntracks_http_mode_moves_the_mapped_team() {
    let dir = data_dir();
    let server = Server::start_with(test_config(dir.path()), phone_world()).await;
    let jane = basic("jane", &server.user("jane", Role::Responder, Some("t-1"), &[]));
    let omar = basic("omar", &server.user("omar", Role::Responder, Some("t-2"), &[]));
    let ghost = basic("ghost", &server.user("ghost", Role::Responder, Some("t-9"), &[]));
    let mut ws = server.ws().await;
    ws.next().await;
    let tst = chrono::Utc::now().timestamp() - 60;
    let body =
        json!({"_type": "location", "lat": 38.601, "lon": 68.801, "tst": tst, "batt": 50, "tid": "jp"})
            .to_string();
    let (status, answer) = request(
        server.addr,
        "POST",
        "/owntracks",
        &[
            ("Content-Type", "application/json"),
            ("X-Limit-U", "jane"),
            ("X-Limit-D", "phone"),
            ("Authorization", &jane),
        ],
        body.as_bytes(),
    )
    .await;
    assert_eq!((status, answer.trim()), (200, "[]"));
    let t = team_delta(&mut ws, "t-1").await;
    assert!(close(&t["lat"], 38.601), "{t}");

    // Basic auth user `omar` + tid `tab` → device omar/tab → team t-2.
    let body =
        json!({"_type": "location", "lat": 38.602, "lon": 68.802, "tst": tst, "tid": "tab"}).to_string();
    let (status, _) = request(
        server.addr,
        "POST",
        "/owntracks",
        &[("Content-Type", "application/json"), ("Authorization", &omar)],
        body.as_bytes(),
    )
    .await;
    assert_eq!(status, 200);
    let t = team_delta(&mut ws, "t-2").await;
    assert!(close(&t["lat"], 38.602), "{t}");

    // A user whose device is not mapped and whose team does not exist.
    let (status, answer) = request(
        server.addr,
        "POST",
        "/owntracks",
        &[("X-Limit-U", "ghost"), ("X-Limit-D", "phone"), ("Authorization", &ghost)],
        body.as_bytes(),
    )
    .await;
    assert_eq!(status, 404, "{answer}");
    assert!(answer.contains("unknown_device"), "{answer}");

    // Jane cannot report as Omar, nobody reports without a token, and a
    // token belongs to its own user only.
    let as_omar = [("X-Limit-U", "omar"), ("X-Limit-D", "tab"), ("Authorization", jane.as_str())];
    let (status, answer) = request(server.addr, "POST", "/owntracks", &as_omar, body.as_bytes()).await;
    assert_eq!(status, 403, "{answer}");
    let (status, answer) = request(
        server.addr,
        "POST",
        "/owntracks",
        &[("X-Limit-U", "jane"), ("X-Limit-D", "phone")],
        body.as_bytes(),
    )
    .await;
    assert_eq!(status, 401, "{answer}");
    let borrowed = basic("omar", jane.trim_start_matches("Basic "));
    let (status, _) =
        request(server.addr, "POST", "/owntracks", &[("Authorization", &borrowed)], body.as_bytes()).await;
    assert_eq!(status, 401);
    server.stop().await;
}

/// OsmAnd in query, form and JSON form: units converted (knots, battery
/// 0–1), a report without coordinates keeps the position, and an unknown
/// device gets 400 (query) or 404 (JSON) as Traccar answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn osmand_query_form_and_json_move_the_mapped_team() {
    let dir = data_dir();
    let server = Server::start_with(test_config(dir.path()), phone_world()).await;
    let phone = basic("traccar-1", &server.user("traccar-1", Role::Responder, Some("t-1"), &[]));
    let auth = [("Authorization", phone.as_str())];
    let mut ws = server.ws().await;
    ws.next().await;
    let ts = chrono::Utc::now().timestamp() - 120;

    let target = format!(
        "/osmand?id=48241179&timestamp={ts}&lat=38.591&lon=68.791&speed=10&bearing=90&accuracy=7&batt=81"
    );
    let (status, _) = request(server.addr, "GET", &target, &[], b"").await;
    assert_eq!(status, 401, "a report without credentials is refused");
    let (status, _) = request(server.addr, "GET", &target, &auth, b"").await;
    assert_eq!(status, 200);
    let t = team_delta(&mut ws, "t-1").await;
    assert!(close(&t["lat"], 38.591), "{t}");
    assert_eq!((t["battery_pct"].as_f64(), t["accuracy_m"].as_f64()), (Some(81.0), Some(7.0)));
    let at: chrono::DateTime<chrono::Utc> = t["position_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(at.timestamp(), ts);

    let form = format!("deviceid=48241179&timestamp={}&lat=38.592&lon=68.792&batt=80", (ts + 1) * 1000);
    let (status, _) = request(
        server.addr,
        "POST",
        "/osmand",
        &[("Content-Type", "application/x-www-form-urlencoded"), auth[0]],
        form.as_bytes(),
    )
    .await;
    assert_eq!(status, 200);
    let t = team_delta(&mut ws, "t-1").await;
    assert!(close(&t["lat"], 38.592), "{t}");
    let at: chrono::DateTime<chrono::Utc> = t["position_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(at.timestamp(), ts + 1, "a millisecond timestamp is read as such");

    let stamp = chrono::DateTime::from_timestamp(ts + 2, 0).unwrap().to_rfc3339();
    let body = json!({"device_id": "48241179", "location": {"timestamp": stamp,
        "coords": {"latitude": 38.593, "longitude": 68.793, "accuracy": 5, "speed": 3.5, "heading": -1, "altitude": 820},
        "battery": {"level": 0.42, "is_charging": false}, "is_moving": true}});
    let (status, _) = request(
        server.addr,
        "POST",
        "/osmand",
        &[("Content-Type", "application/json"), auth[0]],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 200);
    let t = team_delta(&mut ws, "t-1").await;
    assert!(close(&t["lat"], 38.593), "{t}");
    assert!(close(&t["battery_pct"], 42.0), "battery level 0–1 becomes percent: {t}");

    // No coordinates: battery and last seen only; the team stays put.
    let (status, _) =
        request(server.addr, "GET", &format!("/osmand?id=48241179&timestamp={}&batt=40", ts + 3), &auth, b"")
            .await;
    assert_eq!(status, 200);
    let t = team_delta(&mut ws, "t-1").await;
    assert!(close(&t["lat"], 38.593) && close(&t["battery_pct"], 40.0), "{t}");

    // An unmapped device of a user with no team (an operator relaying).
    let relay = basic("relay", &server.user("relay", Role::Operator, None, &[]));
    let relay = [("Authorization", relay.as_str())];
    let (status, _) = request(server.addr, "GET", "/osmand?id=nope&lat=38.5&lon=68.7", &relay, b"").await;
    assert_eq!(status, 400, "unknown device over query");
    let body = json!({"device_id": "nope", "location": {"coords": {"latitude": 38.5, "longitude": 68.7}}});
    let (status, _) = request(
        server.addr,
        "POST",
        "/osmand",
        &[("Content-Type", "application/json"), relay[0]],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 404, "unknown device over json");

    // A responder's phone cannot move another team: device 55501 is t-2's.
    let (status, _) = request(
        server.addr,
        "GET",
        &format!("/osmand?id=55501&timestamp={}&lat=38.5&lon=68.7", ts + 4),
        &auth,
        b"",
    )
    .await;
    assert_eq!(status, 403, "t-1's phone reporting t-2's device");
    server.stop().await;
}
