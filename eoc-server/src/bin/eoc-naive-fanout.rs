//! `eoc-naive-fanout`: the naive fan-out peer that BENCHMARKS.md measures
//! eoc's WebSocket fan-out against.
//!
//! It is what a team would write in an afternoon with the usual crates: a
//! `tokio::sync::broadcast` channel of `String`s and one tokio-tungstenite
//! task per client that sends every message as it comes.
//!
//! - A WebSocket connection to `/publish` is the input: every text frame is
//!   a delta frame (eoc's `DeltaFrame` JSON); the peer stamps it with the
//!   next `seq` and its clock (`server_ts_ms`, as eoc does when it applies
//!   a change) and broadcasts it.
//! - Any other path is a client: it receives every frame broadcast after
//!   it connected. A client that falls more than `--buffer` frames behind
//!   skips what it missed (there is no state to resynchronise it with).
//!
//! `benches/load.sh fanout-peer` runs `eoc-load` against eoc and this peer
//! with the same clients and the same frames.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context as _;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

/// A naive WebSocket broadcaster (the fan-out peer of the load benchmark).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on, `HOST:PORT`.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: String,
    /// Frames a client may fall behind before it skips them (eoc's
    /// default frame buffer).
    #[arg(long, default_value_t = 16_384)]
    buffer: usize,
}

/// Frames skipped by lagging clients, reported on exit.
static SKIPPED: AtomicU64 = AtomicU64::new(0);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener =
        TcpListener::bind(&args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let (tx, _) = broadcast::channel::<String>(args.buffer.max(1));
    let seq = Arc::new(AtomicU64::new(0));
    eprintln!("eoc-naive-fanout: listening on {}", args.listen);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                let (tx, seq) = (tx.clone(), seq.clone());
                tokio::spawn(async move {
                    if let Err(err) = connection(stream, tx, seq).await {
                        eprintln!("connection: {err}");
                    }
                });
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    eprintln!(
        "eoc-naive-fanout: {} frames published, {} skipped by lagging clients",
        seq.load(Ordering::Relaxed),
        SKIPPED.load(Ordering::Relaxed)
    );
    Ok(())
}

// The handshake callback's error type is tungstenite's (`ErrorResponse`).
#[allow(clippy::result_large_err)]
async fn connection(
    stream: TcpStream,
    tx: broadcast::Sender<String>,
    seq: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let _ = stream.set_nodelay(true);
    let path = Arc::new(Mutex::new(String::new()));
    let seen = path.clone();
    let ws = tokio_tungstenite::accept_hdr_async(stream, move |req: &Request, resp: Response| {
        *seen.lock().unwrap_or_else(PoisonError::into_inner) = req.uri().path().to_owned();
        Ok(resp)
    })
    .await?;
    let path = path.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let (mut sink, mut stream) = ws.split();
    if path == "/publish" {
        // The input: stamp and broadcast every frame.
        while let Some(msg) = stream.next().await {
            let Message::Text(text) = msg? else { continue };
            let Ok(mut frame) = serde_json::from_str::<Value>(&text) else { continue };
            frame["seq"] = Value::from(seq.fetch_add(1, Ordering::Relaxed) + 1);
            frame["server_ts_ms"] = Value::from(chrono::Utc::now().timestamp_millis());
            // No client is not an error.
            let _ = tx.send(frame.to_string());
        }
        return Ok(());
    }
    // A client: every frame from now on, as it comes.
    let mut rx = tx.subscribe();
    loop {
        tokio::select! {
            frame = rx.recv() => match frame {
                Ok(text) => sink.send(Message::Text(text.into())).await?,
                Err(RecvError::Lagged(missed)) => {
                    SKIPPED.fetch_add(missed, Ordering::Relaxed);
                }
                Err(RecvError::Closed) => break,
            },
            msg = stream.next() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    Ok(())
}
