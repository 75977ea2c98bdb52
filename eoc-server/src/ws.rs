//! WebSocket `/ws`: a snapshot, then every published frame in order; inbound
//! messages answered one by one.
//!
//! One task per connection: a `select!` loop over the broadcast receiver
//! (outgoing frames), the socket (inbound messages), a keep-alive timer and
//! shutdown. A client that falls behind the broadcast buffer is sent a
//! fresh snapshot and continues from it; the writer never waits for it.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use eoc_protocol::delta::Snapshot;
use eoc_protocol::messages::Inbound;
use eoc_protocol::validate::{MAX_MESSAGE_BYTES, Problems};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, warn};

use crate::api::{AppState, identity, parse_valid};
use crate::bus::{Accepted, Bus, Edge, Submission, SubmitError};
use crate::core::engine::Command;

/// The server pings a quiet connection this often, so proxies keep it open
/// and dead peers are noticed.
pub const PING_EVERY: Duration = Duration::from_secs(20);

/// A connection silent (not even a pong) for this long is closed: three
/// missed pings.
pub const IDLE_LIMIT: Duration = Duration::from_secs(60);

/// Upgrades `GET /ws`.
pub async fn upgrade(State(state): State<AppState>, headers: HeaderMap, ws: WebSocketUpgrade) -> Response {
    let by = match identity(&headers) {
        Ok(by) => by,
        Err(err) => return err.into_response(),
    };
    ws.max_message_size(MAX_MESSAGE_BYTES).max_frame_size(MAX_MESSAGE_BYTES).on_upgrade(
        move |socket| async move {
            let bus = state.bus.clone();
            bus.metrics().ws_client(true);
            if let Err(err) = serve(socket, &bus, &by, &state.shutdown).await {
                debug!(error = %err, "websocket connection ended");
            }
            bus.metrics().ws_client(false);
        },
    )
}

fn snapshot_text(snapshot: &Snapshot) -> Utf8Bytes {
    let mut value = serde_json::to_value(snapshot).unwrap_or_else(|_| json!({}));
    if let Some(obj) = value.as_object_mut() {
        obj.insert("type".to_owned(), Value::String("snapshot".to_owned()));
    }
    value.to_string().into()
}

fn error_text(id: Option<&str>, problems: &Problems) -> Utf8Bytes {
    json!({"type": "error", "id": id, "errors": problems.errors}).to_string().into()
}

async fn serve(
    socket: WebSocket,
    bus: &Bus,
    by: &str,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<(), axum::Error> {
    let (mut sink, mut stream) = socket.split();
    let (snapshot, mut frames_rx) = bus.snapshot_and_subscribe();
    let mut last_seq = snapshot.seq;
    sink.send(Message::Text(snapshot_text(&snapshot))).await?;
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut heard = Instant::now();
    loop {
        tokio::select! {
            frame = frames_rx.recv() => match frame {
                Ok(p) if p.frame.seq <= last_seq => {}
                Ok(p) => {
                    last_seq = p.frame.seq;
                    sink.send(Message::Text(Utf8Bytes::from(&*p.json))).await?;
                }
                Err(RecvError::Lagged(missed)) => {
                    // Resubscribe first, so nothing after the snapshot is lost.
                    let (snapshot, rx) = bus.snapshot_and_subscribe();
                    frames_rx = rx;
                    last_seq = snapshot.seq;
                    bus.metrics().ws_resnapshot();
                    debug!(missed, seq = last_seq, "websocket client lagged; sending a fresh snapshot");
                    sink.send(Message::Text(snapshot_text(&snapshot))).await?;
                }
                Err(RecvError::Closed) => break,
            },
            msg = stream.next() => {
                let Some(msg) = msg else { break };
                heard = Instant::now();
                match msg? {
                    Message::Text(text) => {
                        let reply = handle_inbound(bus, by, text.as_bytes()).await;
                        sink.send(Message::Text(reply)).await?;
                    }
                    Message::Binary(_) => {
                        let mut p = Problems::default();
                        p.push("invalid_type", "", "binary frames are not accepted; send JSON text");
                        sink.send(Message::Text(error_text(None, &p))).await?;
                    }
                    Message::Close(_) => break,
                    // Pongs to our pings are automatic; pings from the
                    // client are answered by the library.
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            }
            _ = ping.tick() => {
                if heard.elapsed() > IDLE_LIMIT {
                    warn!("websocket client silent too long; closing");
                    break;
                }
                sink.send(Message::Ping(Default::default())).await?;
            }
            () = shutdown.cancelled() => {
                let _ = sink.send(Message::Close(None)).await;
                break;
            }
        }
    }
    Ok(())
}

/// Parses, submits and answers one inbound text frame.
async fn handle_inbound(bus: &Bus, by: &str, bytes: &[u8]) -> Utf8Bytes {
    let inbound: Inbound = match parse_valid(bytes) {
        Ok(m) => m,
        Err(problems) => {
            // Best effort: name the message in the error if its id is readable.
            let id = serde_json::from_slice::<Value>(bytes)
                .ok()
                .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_owned));
            return error_text(id.as_deref(), &problems);
        }
    };
    let msg_id = inbound.envelope().id.clone();
    let command = match inbound {
        Inbound::Alert(m) => Command::Alert(m),
        Inbound::TeamPosition(m) => Command::TeamPosition(m),
        Inbound::TeamStatus(m) => Command::TeamStatus(m),
        Inbound::SiteCapacity(m) => Command::SiteCapacity(m),
        Inbound::TaskUpdate(m) => Command::TaskUpdate(m),
        Inbound::TaskAssign(m) => Command::TaskAssign(m),
    };
    let submission =
        Submission { command, msg_id: Some(msg_id.clone()), by: by.to_owned(), edge: Edge::WebSocket };
    match bus.submit(submission).await {
        Ok(Accepted::Applied { seq }) => json!({"type": "ack", "id": msg_id, "seq": seq}).to_string().into(),
        Ok(Accepted::Duplicate) => json!({"type": "ack", "id": msg_id, "duplicate": true}).to_string().into(),
        Err(SubmitError::Rejected(problems)) => error_text(Some(&msg_id), &problems),
        Err(SubmitError::Unavailable(why)) => {
            let mut p = Problems::default();
            p.push("unavailable", "", why);
            error_text(Some(&msg_id), &p)
        }
    }
}
