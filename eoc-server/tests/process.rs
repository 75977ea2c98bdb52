//! The real binary as an operator runs it: SIGTERM drains and exits 0;
//! kill -9 loses no acknowledged message.

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
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = start(dir.path()).await;
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..400 {
        let acked_tx = acked_tx.clone();
        tokio::spawn(async move {
            let path = format!("/api/v1/teams/{TEAM}/position");
            if let Ok(mut stream) = TcpStream::connect(addr).await {
                let body = position(i).to_string();
                let head = format!(
                    "POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let mut out = Vec::new();
                if stream.write_all(head.as_bytes()).await.is_ok()
                    && stream.read_to_end(&mut out).await.is_ok()
                    && out.starts_with(b"HTTP/1.1 200")
                {
                    let _ = acked_tx.send(i);
                }
            }
        });
    }
    drop(acked_tx);
    // Kill right after the hundredth acknowledgement, mid-burst.
    let mut acked = Vec::new();
    while acked.len() < 100 {
        acked.push(tokio::time::timeout(WAIT, acked_rx.recv()).await.unwrap().unwrap());
    }
    child.kill().await.unwrap();
    while let Some(i) = acked_rx.recv().await {
        acked.push(i);
    }

    let (mut child, addr) = start(dir.path()).await;
    for i in acked {
        let (status, ack) =
            request(addr, "POST", &format!("/api/v1/teams/{TEAM}/position"), &position(i).to_string()).await;
        assert_eq!(status, 200);
        assert_eq!(ack["duplicate"], true, "acknowledged message burst-{i} was lost: {ack}");
    }
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = start(dir.path()).await;
    let msg = position(7);
    let path = format!("/api/v1/teams/{TEAM}/position");
    assert_eq!(request(addr, "POST", &path, &msg.to_string()).await.0, 200);
    let (_, team) = request(addr, "GET", &format!("/api/v1/teams/{TEAM}"), "").await;

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(WAIT, child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "exit status {status:?}");

    let (mut child, addr) = start(dir.path()).await;
    let (_, after) = request(addr, "GET", &format!("/api/v1/teams/{TEAM}"), "").await;
    assert_eq!(after, team);
    let (_, ack) = request(addr, "POST", &path, &msg.to_string()).await;
    assert_eq!(ack["duplicate"], true);
    child.kill().await.unwrap();
}
