//! WebSocket `/ws`: a snapshot, then every published frame in order; inbound
//! messages answered one by one.
//!
//! One task per connection: a `select!` loop over the broadcast receiver
//! (outgoing frames), the socket (inbound messages), a keep-alive timer and
//! shutdown. A client that falls behind the broadcast buffer is sent a
//! fresh snapshot and continues from it; the writer never waits for it.
//!
//! Fan-out cost is per wake-up and per write, not per byte: each delta is
//! serialised once by the writer and shared (reference-counted) by every
//! connection, and a connection woken by one frame takes every frame
//! already waiting (up to [`SEND_BATCH`]) and writes them with one flush,
//! so a burst of deltas costs one system call per client, not one per
//! delta. A connection also writes at most once per `http.fanout_coalesce_ms`
//! (default [`COALESCE_MS`]): a frame that comes sooner after the last
//! write waits for the rest of that window and goes out with whatever
//! else arrived, which bounds the wake-ups and writes per client to 100 a
//! second at the cost of at most that much latency. A write that stops at
//! [`SEND_BATCH`] frames with more waiting is followed at once by the next,
//! so the window limits how often a connection writes, not its throughput.
//!
//! A connection flushes and yields before a large frame when smaller ones
//! are queued ahead of it, so that a burst such as an alert followed by
//! its impact puts the alert on every dashboard before the impact is
//! written to any.
//!
//! Large frames (a snapshot, an alert's impact) go out as fragments of
//! [`FRAGMENT_BYTES`]: the WebSocket library copies each outgoing frame into
//! a per-connection buffer and keeps that buffer's capacity for the life of
//! the connection, so one whole 500 KB snapshot would stay allocated in
//! every connection. The handshake is done here rather than by axum's
//! extractor because axum's messages cannot carry fragments.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Extension;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use eoc_protocol::messages::Inbound;
use eoc_protocol::validate::{MAX_MESSAGE_BYTES, Problems};
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, Utf8Bytes};
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tracing::{debug, warn};

use crate::access::{Access, Admitted};
use crate::api::{AppState, BearerToken, parse_valid};
use crate::auth::Principal;
use crate::auth::verifier::AuthError;
use crate::bus::{Accepted, Bus, Edge, Published, Submission, SubmitError};
use crate::core::engine::Command;
use futures_util::stream::FuturesOrdered;

/// Inbound frames of one connection awaiting the writer's answer, at most;
/// beyond it the connection reads no further until answers go out. The
/// answers go out in the order the frames came.
pub const WS_INFLIGHT: usize = 256;

/// Default of `http.fanout_coalesce_ms`: least time between two writes of
/// one connection, milliseconds.
pub const COALESCE_MS: u64 = 10;

/// Frames a connection writes with one flush at most, when it finds several
/// waiting; then it looks at its socket and timers again.
pub const SEND_BATCH: usize = 256;

/// Read buffer of a connection, bytes; longer messages (up to
/// `MAX_MESSAGE_BYTES`) are read in several reads. The WebSocket library
/// zeroes this much before every read attempt, and a connection tries to
/// read each time it wakes to write frames (up to 100 times a second), so
/// it is kept small: inbound messages are mostly a few hundred bytes.
pub const WS_READ_BUFFER: usize = 2 * 1024;

/// Largest frame written whole, bytes; a longer text message goes out as
/// fragments of this size. It is also the write buffer's flush threshold, so
/// a connection's write buffer stays near twice this size whatever it sends.
pub const FRAGMENT_BYTES: usize = 16 * 1024;

/// The server pings a quiet connection this often, so proxies keep it open
/// and dead peers are noticed.
pub const PING_EVERY: Duration = Duration::from_secs(20);

/// A connection silent (not even a pong) for this long is closed: three
/// missed pings.
pub const IDLE_LIMIT: Duration = Duration::from_secs(60);

/// Upgrades `GET /ws` (the identity was checked by the API's
/// authentication layer). Beyond `access.max_ws_connections` open
/// connections a new one is refused with 503.
pub async fn upgrade(
    State(state): State<AppState>,
    Extension(who): Extension<Arc<Principal>>,
    Extension(BearerToken(token)): Extension<BearerToken>,
    mut request: Request,
) -> Response {
    let accept = match handshake(request.headers()) {
        Ok(accept) => accept,
        Err(refusal) => return refusal_response(refusal),
    };
    let Some(on_upgrade) = request.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        let mut p = Problems::default();
        p.push(
            "upgrade_required",
            "",
            "this connection cannot be upgraded to a WebSocket (HTTP/1.1 is needed)",
        );
        return crate::api::Error::problems(StatusCode::UPGRADE_REQUIRED, p).into_response();
    };
    let open = state.ws_open.fetch_add(1, Ordering::AcqRel);
    let slot = Slot(state.ws_open.clone());
    if open >= state.max_ws {
        drop(slot);
        let mut p = Problems::default();
        p.push(
            "too_many_connections",
            "",
            format!("the server holds {} WebSocket connections, its limit", state.max_ws),
        );
        state.access.refuse(Some(&who), Edge::WebSocket, "connect", &p);
        return crate::api::Error::problems(StatusCode::SERVICE_UNAVAILABLE, p).into_response();
    }
    // The token is checked again on every inbound message and every ping,
    // so a revoked token ends the connection within one ping interval and
    // can send nothing at once.
    tokio::spawn(async move {
        let _slot = slot;
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(err) => {
                debug!(error = %err, "websocket upgrade failed");
                return;
            }
        };
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config())).await;
        let bus = state.bus.clone();
        bus.metrics().ws_client(true);
        let conn = Conn { bus: &bus, access: &state.access, who, token, coalesce: state.ws_coalesce };
        if let Err(err) = serve(socket, &conn, &state.shutdown).await {
            debug!(error = %err, "websocket connection ended");
        }
        bus.metrics().ws_client(false);
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    response
}

/// The limits of one connection.
fn config() -> WebSocketConfig {
    // Inbound messages are small: a 128 KiB read buffer per connection (the
    // library's default, zeroed before every read) would cost 128 MB of
    // memory for a thousand dashboards.
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(FRAGMENT_BYTES)
}

/// Why an upgrade request is refused: status, the header at fault, why.
type Refusal = (StatusCode, &'static str, &'static str);

/// The error response of a refused handshake.
fn refusal_response((status, field, why): Refusal) -> Response {
    let code = if status == StatusCode::UPGRADE_REQUIRED { "upgrade_required" } else { "invalid_handshake" };
    let mut p = Problems::default();
    p.push(code, field, why);
    let mut response = crate::api::Error::problems(status, p).into_response();
    if status == StatusCode::UPGRADE_REQUIRED {
        response.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
    }
    response
}

/// Checks an upgrade request (RFC 6455 §4.2.1) and returns the
/// `Sec-WebSocket-Accept` value, or why it is refused.
fn handshake(headers: &HeaderMap) -> Result<HeaderValue, Refusal> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str().is_ok_and(|v| v.split(',').any(|part| part.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token(header::UPGRADE, "websocket") {
        return Err((
            StatusCode::UPGRADE_REQUIRED,
            "upgrade",
            "/ws is a WebSocket: send `Upgrade: websocket`",
        ));
    }
    if !has_token(header::CONNECTION, "upgrade") {
        return Err((
            StatusCode::BAD_REQUEST,
            "connection",
            "a WebSocket handshake needs `Connection: upgrade`",
        ));
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).is_none_or(|v| v.as_bytes() != b"13") {
        return Err((
            StatusCode::UPGRADE_REQUIRED,
            "sec-websocket-version",
            "only WebSocket version 13 is spoken",
        ));
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Err((StatusCode::BAD_REQUEST, "sec-websocket-key", "missing"));
    };
    HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
        .map_err(|_| (StatusCode::BAD_REQUEST, "sec-websocket-key", "not a valid key"))
}

/// One open connection's count in `ws_open`, given back when dropped.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What one connection acts with.
struct Conn<'a> {
    bus: &'a Bus,
    access: &'a Access,
    who: Arc<Principal>,
    token: String,
    /// Least time between two writes of frames.
    coalesce: Duration,
}

impl Conn<'_> {
    /// Whether the token still stands (not revoked or rotated).
    async fn still_valid(&self) -> Result<(), AuthError> {
        self.access.verifier.bearer(&self.token).await.map(|_| ())
    }
}

fn error_text(id: Option<&str>, problems: &Problems) -> Utf8Bytes {
    json!({"type": "error", "id": id, "errors": problems.errors}).to_string().into()
}

/// A connection's socket, as the WebSocket library drives it.
type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Queues one text message, in fragments of at most [`FRAGMENT_BYTES`]
/// when it is longer (no copy: each fragment is a slice of the shared
/// bytes). Nothing is flushed.
async fn feed_text<S>(sink: &mut S, text: Utf8Bytes) -> Result<(), tokio_tungstenite::tungstenite::Error>
where
    S: futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    if text.len() <= FRAGMENT_BYTES {
        return sink.feed(Message::Text(text)).await;
    }
    let bytes = Bytes::from(text);
    let mut start = 0;
    while start < bytes.len() {
        let end = (start + FRAGMENT_BYTES).min(bytes.len());
        let opcode = if start == 0 { OpCode::Data(Data::Text) } else { OpCode::Data(Data::Continue) };
        sink.feed(Message::Frame(Frame::message(bytes.slice(start..end), opcode, end == bytes.len())))
            .await?;
        start = end;
    }
    Ok(())
}

async fn serve(
    socket: Socket,
    conn: &Conn<'_>,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let bus = conn.bus;
    let (mut sink, mut stream) = socket.split();
    let (mut last_seq, snapshot, mut frames_rx) = bus.snapshot_frame_and_subscribe();
    feed_text(&mut sink, snapshot).await?;
    sink.flush().await?;
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut heard = Instant::now();
    // Answers of inbound frames still with the writer, in arrival order.
    let mut answers = FuturesOrdered::new();
    // Registered once: a fresh `cancelled()` future per loop turn would
    // lock the token's waiter list twice per frame in every connection.
    let stopping = shutdown.cancelled();
    tokio::pin!(stopping);
    // When the next write may start: the snapshot's write opens the first window.
    let mut due = Instant::now() + conn.coalesce;
    loop {
        tokio::select! {
            Some(reply) = answers.next(), if !answers.is_empty() => {
                feed_text(&mut sink, reply).await?;
                sink.flush().await?;
            }
            frame = frames_rx.recv() => {
                // Within the window of the last write, wait for its end so
                // frames published meanwhile share the next write.
                if due > Instant::now() {
                    tokio::select! {
                        () = tokio::time::sleep_until(due) => {}
                        () = &mut stopping => {
                            let _ = sink.send(Message::Close(None)).await;
                            break;
                        }
                    }
                }
                // This frame and every one already waiting, one flush.
                let mut next = Some(frame);
                let mut fed = 0;
                let mut closed = false;
                while let Some(frame) = next.take() {
                    match frame {
                        Ok(p) if p.frame.seq <= last_seq => {}
                        Ok(p) => {
                            last_seq = p.frame.seq;
                            if p.json.len() > FRAGMENT_BYTES && fed > 0 {
                                // Small frames before a large one (an alert
                                // before its impact) go out now, and every
                                // other connection gets its turn before this
                                // one writes the large frame: a new alert
                                // reaches all dashboards before any of them
                                // receives its 100+ KB impact.
                                sink.flush().await?;
                                tokio::task::yield_now().await;
                            }
                            feed_text(&mut sink, p.json.clone()).await?;
                        }
                        Err(RecvError::Lagged(missed)) => {
                            // Resubscribe first, so nothing after the snapshot is lost.
                            let (seq, snapshot, rx) = bus.snapshot_frame_and_subscribe();
                            frames_rx = rx;
                            last_seq = seq;
                            bus.metrics().ws_resnapshot();
                            debug!(missed, seq, "websocket client lagged; sending a fresh snapshot");
                            feed_text(&mut sink, snapshot).await?;
                        }
                        Err(RecvError::Closed) => {
                            closed = true;
                            break;
                        }
                    }
                    fed += 1;
                    if fed < SEND_BATCH {
                        next = waiting(&mut frames_rx);
                    }
                }
                sink.flush().await?;
                // A write cut short by SEND_BATCH leaves frames waiting: the
                // next turn writes them at once, so the window bounds how
                // often a connection writes, never how many frames it takes.
                due = if fed < SEND_BATCH { Instant::now() + conn.coalesce } else { Instant::now() };
                if closed {
                    break;
                }
            }
            msg = stream.next(), if answers.len() < WS_INFLIGHT => {
                let Some(msg) = msg else { break };
                heard = Instant::now();
                match msg? {
                    Message::Text(text) => {
                        answers.push_back(answer(handle_inbound(conn, text.as_bytes()).await));
                    }
                    Message::Binary(_) => {
                        let mut p = Problems::default();
                        p.push("invalid_type", "", "binary frames are not accepted; send JSON text");
                        answers.push_back(answer(Reply::Now(error_text(None, &p))));
                    }
                    Message::Close(_) => break,
                    // Pongs to our pings are automatic; pings from the
                    // client are answered by the library; reads never
                    // yield raw frames.
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                }
            }
            _ = ping.tick() => {
                if let Err(err) = conn.still_valid().await {
                    let reason = err.to_string();
                    let _ = sink.send(Message::Close(Some(CloseFrame { code: CloseCode::Policy, reason: reason.into() }))).await;
                    break;
                }
                if heard.elapsed() > IDLE_LIMIT {
                    warn!("websocket client silent too long; closing");
                    break;
                }
                sink.send(Message::Ping(Default::default())).await?;
            }
            () = &mut stopping => {
                let _ = sink.send(Message::Close(None)).await;
                break;
            }
        }
    }
    Ok(())
}

/// The next frame already in the receiver, if any, without waiting.
fn waiting(rx: &mut broadcast::Receiver<Arc<Published>>) -> Option<Result<Arc<Published>, RecvError>> {
    match rx.try_recv() {
        Ok(p) => Some(Ok(p)),
        Err(TryRecvError::Empty) => None,
        Err(TryRecvError::Lagged(missed)) => Some(Err(RecvError::Lagged(missed))),
        Err(TryRecvError::Closed) => Some(Err(RecvError::Closed)),
    }
}

/// An inbound frame's answer: ready now (refused before the writer), or
/// once the writer answers its command.
enum Reply {
    Now(Utf8Bytes),
    Later(String, Box<Admitted>),
}

/// The answer frame of `reply`, waiting for the writer if need be.
async fn answer(reply: Reply) -> Utf8Bytes {
    let (msg_id, admitted) = match reply {
        Reply::Now(text) => return text,
        Reply::Later(id, admitted) => (id, admitted),
    };
    match admitted.answer().await {
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

/// Parses, checks and queues one inbound text frame.
async fn handle_inbound(conn: &Conn<'_>, bytes: &[u8]) -> Reply {
    // Best effort: name the message in an error if its id is readable.
    let id_of = || {
        serde_json::from_slice::<Value>(bytes)
            .ok()
            .and_then(|v| v.get("id").and_then(Value::as_str).map(|s| s.chars().take(64).collect::<String>()))
    };
    if let Err(err) = conn.still_valid().await {
        let error = crate::api::unauthenticated(&err);
        conn.access.refuse(Some(&conn.who), Edge::WebSocket, "message", error.problem_list());
        return Reply::Now(error_text(id_of().as_deref(), error.problem_list()));
    }
    let inbound: Inbound = match parse_valid(bytes) {
        Ok(m) => m,
        Err(problems) => {
            conn.access.refuse(Some(&conn.who), Edge::WebSocket, "message", &problems);
            return Reply::Now(error_text(id_of().as_deref(), &problems));
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
        Submission { command, msg_id: Some(msg_id.clone()), by: String::new(), edge: Edge::WebSocket };
    match conn.access.enqueue(conn.bus, &conn.who, submission).await {
        Ok(admitted) => Reply::Later(msg_id, Box::new(admitted)),
        Err(SubmitError::Rejected(problems)) => Reply::Now(error_text(Some(&msg_id), &problems)),
        Err(SubmitError::Unavailable(why)) => {
            let mut p = Problems::default();
            p.push("unavailable", "", why);
            Reply::Now(error_text(Some(&msg_id), &p))
        }
    }
}
