//! The real binary as an operator runs it: SIGTERM drains and exits 0;
//! kill -9 loses no acknowledged message; `eoc-server user …` changes who
//! may do what on a running server at once.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const WAIT: Duration = Duration::from_secs(30);

/// Runs `eoc-server user ARGS --data DATA` and returns its standard output.
fn user_cli(data: &Path, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_eoc-server"))
        .arg("user")
        .args(args)
        .arg("--data")
        .arg(data)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The token of the chair the server made on its first start.
fn first_chair(data: &Path) -> String {
    std::fs::read_to_string(data.join("first-chair.token")).unwrap().trim().to_owned()
}

/// Starts `eoc-server` on the Tajikistan scenario with `data` as its data
/// directory, and returns it with the address it logged.
async fn start(data: &Path) -> (Child, SocketAddr) {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/scenarios/tajikistan");
    let mut child = Command::new(env!("CARGO_BIN_EXE_eoc-server"))
        .args(["run", "--no-mqtt", "--log-json", "--http", "127.0.0.1:0"])
        .arg("--scenario")
        .arg(&scenario)
        .arg("--data")
        .arg(data)
        .current_dir(data)
        .env("RUST_LOG", "info")
        // Store the state often, so restarts restore one and apply the rest.
        .env("EOC_JOURNAL__SNAPSHOT_EVERY", "10")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
            if let Some(addr) = v["fields"]["addr"].as_str() {
                return addr.parse::<SocketAddr>().unwrap();
            }
        }
        panic!("the server exited before listening");
    })
    .await
    .expect("the server did not log its address");
    // Keep draining the log so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    wait_ready(addr).await;
    (child, addr)
}

async fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    request_as(addr, "", method, path, body).await
}

async fn request_as(addr: SocketAddr, token: &str, method: &str, path: &str, body: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Polls `/readyz`: a separate process signals readiness no other way.
async fn wait_ready(addr: SocketAddr) {
    tokio::time::timeout(WAIT, async {
        let mut every = tokio::time::interval(Duration::from_millis(20));
        loop {
            every.tick().await;
            if TcpStream::connect(addr).await.is_ok() && request(addr, "GET", "/readyz", "").await.0 == 200 {
                return;
            }
        }
    })
    .await
    .expect("the server did not become ready");
}

fn position(i: usize) -> Value {
    json!({
        "v": 1,
        "id": format!("burst-{i}"),
        "ts": chrono::Utc::now().to_rfc3339(),
        "lat": 38.5 + (i % 100) as f64 * 0.001,
        "lon": 68.7,
    })
}

const TEAM: &str = "react-drs-01";

/// A burst in which every fourth message is a responder's forgery for
/// another team (refused, 403) and the rest the chair's (accepted), cut by
/// kill -9 after the hundredth acknowledgement: the journal replays
/// cleanly, every acknowledged message is there, no refused one is, and the
/// refusals are in the audit trail with their reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_burst_of_accepted_and_refused_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = start(dir.path()).await;
    let chair = first_chair(dir.path());
    let forger = user_cli(dir.path(), &["add", "forger", "--role", "responder", "--team", "react-drs-02"])
        .unwrap()
        .trim()
        .to_owned();
    // Twenty positions one at a time first: states are stored at rows 10
    // and 20 before the burst, whatever the burst's batches look like.
    for i in 1000..1020 {
        let path = format!("/api/v1/teams/{TEAM}/position");
        assert_eq!(request_as(addr, &chair, "POST", &path, &position(i).to_string()).await.0, 200);
    }
    assert_eq!(request_as(addr, &forger, "GET", "/api/v1/me", "").await.0, 200);
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel();
    let (refused_tx, mut refused_rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..400 {
        let (acked_tx, refused_tx) = (acked_tx.clone(), refused_tx.clone());
        let token = if i % 4 == 3 { forger.clone() } else { chair.clone() };
        tokio::spawn(async move {
            let path = format!("/api/v1/teams/{TEAM}/position");
            if let Ok(mut stream) = TcpStream::connect(addr).await {
                let body = position(i).to_string();
                let head = format!(
                    "POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let mut out = Vec::new();
                if stream.write_all(head.as_bytes()).await.is_ok()
                    && stream.read_to_end(&mut out).await.is_ok()
                {
                    if out.starts_with(b"HTTP/1.1 200") {
                        let _ = acked_tx.send(i);
                    } else if out.starts_with(b"HTTP/1.1 403") {
                        let _ = refused_tx.send(i);
                    }
                }
            }
        });
    }
    drop((acked_tx, refused_tx));
    // Kill right after the hundredth acknowledgement, mid-burst.
    let mut acked = Vec::new();
    while acked.len() < 100 {
        acked.push(tokio::time::timeout(WAIT, acked_rx.recv()).await.unwrap().unwrap());
    }
    child.kill().await.unwrap();
    while let Some(i) = acked_rx.recv().await {
        acked.push(i);
    }
    let mut refused = Vec::new();
    while let Some(i) = refused_rx.recv().await {
        refused.push(i);
    }
    assert!(acked.iter().all(|i| i % 4 != 3), "a forgery was accepted");
    assert!(!refused.is_empty() && refused.iter().all(|i| i % 4 == 3), "{refused:?}");

    let (mut child, addr) = start(dir.path()).await;
    let (_, ready) = request(addr, "GET", "/readyz", "").await;
    assert!(
        ready["journal"]["restored_from_row"].as_u64().unwrap() > 0,
        "a stored state was restored: {ready}"
    );
    let path = format!("/api/v1/teams/{TEAM}/position");
    for &i in &acked {
        let (status, ack) = request_as(addr, &chair, "POST", &path, &position(i).to_string()).await;
        assert_eq!(status, 200);
        assert_eq!(ack["duplicate"], true, "acknowledged message burst-{i} was lost: {ack}");
    }
    // A refused message was never journalled: its id is new to the server.
    let i = refused[0];
    let (status, ack) = request_as(addr, &chair, "POST", &path, &position(i).to_string()).await;
    assert_eq!((status, ack.get("duplicate")), (200, None), "refused burst-{i} was applied: {ack}");
    let (status, audit) =
        request_as(addr, &chair, "GET", "/api/v1/audit?by=forger&outcome=refused&limit=500", "").await;
    assert_eq!(status, 200, "{audit}");
    let entries = audit["entries"].as_array().unwrap();
    assert!(!entries.is_empty(), "{audit}");
    for e in entries {
        assert_eq!(
            (e["code"].as_str(), e["action"].as_str()),
            (Some("forbidden"), Some("team_position")),
            "{e}"
        );
        assert!(e["reason"].as_str().unwrap().contains("react-drs-02"), "{e}");
    }
    child.kill().await.unwrap();
}

/// The administrator's commands act on a running server at once: a new
/// user's token works, `list` shows it without secrets, `rotate` ends the
/// old token, `revoke` the new one; a viewer cannot write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_commands_take_effect_on_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = start(dir.path()).await;
    let op = user_cli(dir.path(), &["add", "op-1", "--role", "operator"]).unwrap().trim().to_owned();
    let (status, me) = request_as(addr, &op, "GET", "/api/v1/me", "").await;
    assert_eq!((status, me["name"].as_str(), me["role"].as_str()), (200, Some("op-1"), Some("operator")));

    let list = user_cli(dir.path(), &["list"]).unwrap();
    assert!(list.contains("op-1") && list.contains("operator") && list.contains("chair"), "{list}");
    assert!(!list.contains(&op) && !list.contains("argon2"), "list shows no secret:\n{list}");
    let err = user_cli(dir.path(), &["add", "op-1", "--role", "operator"]).unwrap_err();
    assert!(err.contains("exists"), "{err}");
    let err = user_cli(dir.path(), &["add", "r-9", "--role", "responder"]).unwrap_err();
    assert!(err.contains("--team"), "{err}");

    let rotated = user_cli(dir.path(), &["rotate", "op-1"]).unwrap().trim().to_owned();
    assert_eq!(request_as(addr, &op, "GET", "/api/v1/me", "").await.0, 401, "the old token ends at once");
    assert_eq!(request_as(addr, &rotated, "GET", "/api/v1/me", "").await.0, 200);
    user_cli(dir.path(), &["revoke", "op-1"]).unwrap();
    let (status, err) = request_as(addr, &rotated, "GET", "/api/v1/teams", "").await;
    assert_eq!((status, err["code"].as_str()), (401, Some("unauthenticated")), "{err}");

    let viewer = user_cli(dir.path(), &["add", "v-1", "--role", "viewer"]).unwrap().trim().to_owned();
    assert_eq!(request_as(addr, &viewer, "GET", "/api/v1/teams", "").await.0, 200);
    let (status, err) = request_as(
        addr,
        &viewer,
        "POST",
        &format!("/api/v1/teams/{TEAM}/position"),
        &position(1).to_string(),
    )
    .await;
    assert_eq!((status, err["code"].as_str()), (403, Some("forbidden")), "{err}");
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = start(dir.path()).await;
    let chair = first_chair(dir.path());
    let msg = position(7);
    let path = format!("/api/v1/teams/{TEAM}/position");
    assert_eq!(request_as(addr, &chair, "POST", &path, &msg.to_string()).await.0, 200);
    let (_, team) = request_as(addr, &chair, "GET", &format!("/api/v1/teams/{TEAM}"), "").await;

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(WAIT, child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "exit status {status:?}");

    let (mut child, addr) = start(dir.path()).await;
    let (_, after) = request_as(addr, &chair, "GET", &format!("/api/v1/teams/{TEAM}"), "").await;
    assert_eq!(after, team);
    let (_, ack) = request_as(addr, &chair, "POST", &path, &msg.to_string()).await;
    assert_eq!(ack["duplicate"], true);
    child.kill().await.unwrap();
}
