//! CAP at the edges: a CAP earthquake posted over HTTP is shown with its
//! impact, exported as CAP valid against the OASIS XSD, listed in the Atom
//! feed and cancelled by a CAP Cancel; a thunderstorm is kept without
//! impact; an exercise dispatches nobody; broken and oversize documents are
//! refused; the MQTT topic takes the same documents.

use std::path::PathBuf;

use chrono::{Duration, Utc};
use eoc_tests::mosquitto::{CONSOLE_USER, Client, Mosquitto, SERVER_USER, mqtt_config, wait_mqtt_connected};
use eoc_tests::{Server, WAIT, data_dir, http, test_config};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A CAP time `minutes` from now, in Dushanbe's offset.
fn cap_time(minutes: i64) -> String {
    let dushanbe = chrono::FixedOffset::east_opt(5 * 3600).unwrap();
    (Utc::now() + Duration::minutes(minutes))
        .with_timezone(&dushanbe)
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// An M6.5 earthquake under Dushanbe (the test world's villages) as CAP.
fn quake(identifier: &str, status: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier>
  <sender>seismo.tj</sender>
  <sent>{sent}</sent>
  <status>{status}</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <category>Geo</category>
    <event>Землетрясение</event>
    <urgency>Immediate</urgency>
    <severity>Severe</severity>
    <certainty>Observed</certainty>
    <headline>M6.5 earthquake under Dushanbe</headline>
    <parameter><valueName>EarthquakeMagnitude</valueName><value>6.5</value></parameter>
    <parameter><valueName>EarthquakeDepth</valueName><value>10</value></parameter>
    <parameter><valueName>EarthquakeLocation</valueName><value>38.56,68.78</value></parameter>
  </info>
</alert>
"#,
        sent = cap_time(-1)
    )
}

fn cancel(identifier: &str, of: &str) -> String {
    format!(
        r#"<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier>
  <sender>seismo.tj</sender>
  <sent>{sent}</sent>
  <status>Actual</status>
  <msgType>Cancel</msgType>
  <scope>Public</scope>
  <references>seismo.tj,{of},{of_sent}</references>
</alert>"#,
        sent = cap_time(0),
        of_sent = cap_time(-1)
    )
}

fn thunderstorm(identifier: &str) -> String {
    format!(
        r#"<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier>
  <sender>meteo.tj</sender>
  <sent>{sent}</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <category>Met</category>
    <event>Thunderstorm</event>
    <urgency>Expected</urgency>
    <severity>Moderate</severity>
    <certainty>Likely</certainty>
    <area>
      <areaDesc>Dushanbe</areaDesc>
      <polygon>38.50,68.70 38.50,68.90 38.65,68.90 38.65,68.70 38.50,68.70</polygon>
    </area>
  </info>
</alert>"#,
        sent = cap_time(0)
    )
}

async fn post_cap(server: &Server, xml: &str) -> (u16, Value) {
    let auth = server.bearer();
    http(server.addr, "POST", "/api/v1/alerts/cap", Some(xml.as_bytes()), &[("Authorization", &auth)]).await
}

/// `GET path` as the test chair → status, content type and body text.
async fn get_text(server: &Server, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nAuthorization: {}\r\n\r\n",
        server.bearer()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut out)).await.unwrap().unwrap();
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type: ").map(str::to_owned))
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

/// Validates a document against the OASIS CAP 1.2 XSD with xmllint.
fn xmllint(name: &str, xml: &str) {
    let xsd = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../eoc-protocol/tests/cap/CAP-v1.2.xsd");
    let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.xml"));
    std::fs::write(&file, xml).unwrap();
    let out = std::process::Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(&xsd)
        .arg(&file)
        .output()
        .expect("xmllint is needed (apt-get install libxml2-utils, see .ci/install-deps)");
    assert!(out.status.success(), "{}\n{xml}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn a_cap_earthquake_is_shown_with_impact_exported_listed_and_cancelled() {
    let dir = data_dir();
    let server = Server::start(test_config(dir.path())).await;
    let mut ws = server.ws().await;
    let xml = quake("SEISMO-2026-7", "Actual");

    let (status, ack) = post_cap(&server, &xml).await;
    assert_eq!(status, 201, "{ack}");
    assert_eq!(
        (ack["alert_id"].as_str(), ack["hazard"].as_str()),
        (Some("SEISMO-2026-7"), Some("earthquake"))
    );
    let impact = ws.until(|f| f["type"] == "impact" && f["alert_id"] == "SEISMO-2026-7").await;
    assert!(
        !impact["villages"].as_array().unwrap().is_empty(),
        "an M6.5 under Dushanbe affects villages: {impact}"
    );

    // A real alert dispatches teams.
    let (_, tasks) = server.get("/api/v1/tasks").await;
    assert!(tasks["tasks"].as_array().unwrap().iter().any(|t| t["alert_id"] == "SEISMO-2026-7"), "{tasks}");

    // The same document again is a duplicate, not a second alert.
    let (status, again) = post_cap(&server, &xml).await;
    assert_eq!((status, again["duplicate"].as_bool()), (200, Some(true)), "{again}");

    // Its CAP export is valid against the OASIS schema.
    let (status, content_type, cap) = get_text(&server, "/api/v1/alerts/SEISMO-2026-7.cap").await;
    assert_eq!((status, content_type.as_str()), (200, "application/cap+xml"), "{cap}");
    assert!(
        cap.contains("<identifier>SEISMO-2026-7</identifier>") && cap.contains("<sender>coes.tj</sender>")
    );
    assert!(cap.contains("<valueName>EarthquakeMagnitude</valueName><value>6.5</value>"), "{cap}");
    xmllint("served-quake", &cap);
    // The original is kept verbatim.
    let (status, _, source) = get_text(&server, "/api/v1/alerts/SEISMO-2026-7/source.cap").await;
    assert_eq!((status, source.as_str()), (200, xml.as_str()));

    // The Atom feed lists it, linking to its CAP document.
    let (status, content_type, feed) = get_text(&server, "/api/v1/cap/feed.atom").await;
    assert_eq!((status, content_type.as_str()), (200, "application/atom+xml"));
    assert!(feed.contains("href=\"/api/v1/alerts/SEISMO-2026-7.cap\""), "{feed}");

    // A CAP Cancel referencing it cancels it, and the feed drops it.
    let (status, ack) = post_cap(&server, &cancel("SEISMO-2026-7-C", "SEISMO-2026-7")).await;
    assert_eq!((status, ack["msg_type"].as_str()), (200, Some("cancel")), "{ack}");
    let frame =
        ws.until(|f| f["type"] == "alert" && f["alert_id"] == "SEISMO-2026-7" && f["active"] == false).await;
    assert_eq!(frame["msg_type"], "cancel");
    let (_, _, feed) = get_text(&server, "/api/v1/cap/feed.atom").await;
    assert!(!feed.contains("SEISMO-2026-7"), "{feed}");
    let (_, _, cap) = get_text(&server, "/api/v1/alerts/SEISMO-2026-7.cap").await;
    assert!(cap.contains("<msgType>Cancel</msgType>") && cap.contains("<references>coes.tj,SEISMO-2026-7,"));
    xmllint("served-cancel", &cap);
    server.stop().await;
}

#[tokio::test]
async fn a_cap_thunderstorm_is_kept_and_shown_without_impact() {
    let dir = data_dir();
    let server = Server::start(test_config(dir.path())).await;
    let (status, ack) = post_cap(&server, &thunderstorm("storm-1")).await;
    assert_eq!((status, ack["hazard"].as_str()), (201, Some("other")), "{ack}");
    let (status, alert) = server.get("/api/v1/alerts/storm-1").await;
    assert_eq!(status, 200);
    assert_eq!((alert["hazard"].as_str(), alert["headline"].as_str()), (Some("other"), Some("Thunderstorm")));
    assert_eq!(alert["area"]["type"], "Polygon");
    let (_, impact) = server.get("/api/v1/alerts/storm-1/impact").await;
    assert_eq!(impact["villages"].as_array().map(Vec::len), Some(0), "{impact}");
    let (_, tasks) = server.get("/api/v1/tasks").await;
    assert!(tasks["tasks"].as_array().unwrap().is_empty(), "{tasks}");
    let (_, _, cap) = get_text(&server, "/api/v1/alerts/storm-1.cap").await;
    xmllint("served-storm", &cap);
    server.stop().await;
}

#[tokio::test]
async fn a_cap_exercise_computes_impact_and_dispatches_nobody() {
    let dir = data_dir();
    let server = Server::start(test_config(dir.path())).await;
    let (status, ack) = post_cap(&server, &quake("DRILL-1", "Exercise")).await;
    assert_eq!(status, 201, "{ack}");
    let (_, alert) = server.get("/api/v1/alerts/DRILL-1").await;
    assert_eq!(alert["status"], "exercise");
    let (_, impact) = server.get("/api/v1/alerts/DRILL-1/impact").await;
    assert!(!impact["villages"].as_array().unwrap().is_empty(), "the exercise is computed: {impact}");
    let (_, tasks) = server.get("/api/v1/tasks").await;
    assert!(
        tasks["tasks"].as_array().unwrap().iter().all(|t| t["state"] == "proposed"),
        "an exercise sends no team: {tasks}"
    );
    server.stop().await;
}

#[tokio::test]
async fn broken_and_hostile_cap_is_refused_with_the_element_path() {
    let dir = data_dir();
    let server = Server::start(test_config(dir.path())).await;
    let before = server.state().await;

    let z =
        quake("Z-1", "Actual").replace(&cap_time(-1), &(Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()));
    let (status, err) = post_cap(&server, &z).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(
        (err["errors"][0]["code"].as_str(), err["errors"][0]["field"].as_str()),
        (Some("invalid_datetime"), Some("alert/sent"))
    );

    let open = thunderstorm("storm-2")
        .replace("38.65,68.70 38.50,68.70</polygon>", "38.65,68.70 38.55,68.70</polygon>");
    let (status, err) = post_cap(&server, &open).await;
    assert_eq!((status, err["field"].as_str()), (400, Some("alert/info[0]/area[0]/polygon[0]")), "{err}");

    let xxe = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../eoc-protocol/tests/cap/hostile/xxe.xml"),
    )
    .unwrap();
    let (status, err) = post_cap(&server, &xxe).await;
    assert_eq!((status, err["code"].as_str()), (400, Some("doctype_not_allowed")), "{err}");

    // A cancel of an alert eoc does not hold.
    let (status, err) = post_cap(&server, &cancel("C-9", "never-issued")).await;
    assert_eq!((status, err["code"].as_str()), (404, Some("unknown")), "{err}");

    // Ack messages are logged, no alert.
    let ack = cancel("ACK-1", "x").replace("<msgType>Cancel</msgType>", "<msgType>Ack</msgType>");
    let (status, body) = post_cap(&server, &ack).await;
    assert_eq!((status, body["alert_id"].clone()), (200, Value::Null), "{body}");

    assert_eq!(server.state().await, before, "nothing changed");
    server.stop().await;
}

/// A 100 MB body is answered 413 after at most the bound (and the socket
/// buffers) was read: the client's writes fail long before 100 MB.
#[tokio::test]
async fn a_100_mb_cap_body_is_refused_before_it_is_read() {
    let dir = data_dir();
    let server = Server::start(test_config(dir.path())).await;
    let total: usize = 100 * 1024 * 1024;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/alerts/cap HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/cap+xml\r\nContent-Length: {total}\r\nAuthorization: {}\r\n\r\n",
        server.bearer()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'a'; 64 * 1024];
    let mut sent = 0usize;
    let write = async {
        while sent < total {
            if stream.write_all(&chunk).await.is_err() {
                break;
            }
            sent += chunk.len();
        }
    };
    tokio::time::timeout(WAIT, write).await.unwrap();
    assert!(sent < total / 4, "the server read {sent} bytes of a 100 MB body");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut out)).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("too_large"), "{text}");
    server.stop().await;
}

/// The MQTT topic `eoc/v1/alerts/cap` takes the same documents; a broken
/// one is reported on `eoc/v1/errors` with the element path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_over_mqtt_makes_alerts_and_reports_errors() {
    let dir = data_dir();
    let broker = Mosquitto::start(dir.path(), &[]).unwrap();
    let server = Server::start(mqtt_config(&broker, dir.path())).await;
    wait_mqtt_connected(&server).await;
    let mut ws = server.ws().await;
    let mut watcher = Client::connect(&broker, SERVER_USER, "watcher", false).await;
    watcher.subscribe("eoc/v1/errors").await;
    let console = Client::connect(&broker, CONSOLE_USER, "console", false).await;

    console.publish("eoc/v1/alerts/cap", thunderstorm("mqtt-storm")).await;
    let frame = ws.until(|f| f["type"] == "alert" && f["alert_id"] == "mqtt-storm").await;
    assert_eq!(frame["hazard"], "other");

    let bad = thunderstorm("mqtt-bad").replace("<urgency>Expected</urgency>", "<urgency>Soon</urgency>");
    console.publish("eoc/v1/alerts/cap", bad).await;
    let err = watcher.next_on("eoc/v1/errors").await.json();
    assert_eq!(err["topic"], "eoc/v1/alerts/cap");
    assert_eq!(err["errors"][0]["field"], "alert/info[0]/urgency", "{err}");
    server.stop().await;
}
