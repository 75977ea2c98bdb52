//! The bus: how edges reach the one writer, and how changes reach clients.
//!
//! Every edge (MQTT, WebSocket, HTTP, OwnTracks, OsmAnd) turns bytes into a
//! [`Submission`] and awaits [`Bus::submit`]: the writer journals the
//! command durably, applies it, publishes the deltas, and only then
//! answers. An `Ok` therefore means durable: the edge may acknowledge
//! (HTTP 2xx, WebSocket ack, MQTT PUBACK).

use std::sync::Arc;

use eoc_protocol::delta::DeltaFrame;
use eoc_protocol::validate::Problems;

use crate::core::engine::Command;

/// Which edge a command came in on (for metrics, audit and errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Edge {
    /// `eoc/v1/…` MQTT topics.
    Mqtt,
    /// `/api/v1/…`.
    Http,
    /// `/ws`.
    WebSocket,
    /// OwnTracks over MQTT or HTTP.
    OwnTracks,
    /// OsmAnd / Traccar Client over HTTP.
    OsmAnd,
    /// The server itself (ticks).
    Internal,
}

impl Edge {
    /// Label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Edge::Mqtt => "mqtt",
            Edge::Http => "http",
            Edge::WebSocket => "websocket",
            Edge::OwnTracks => "owntracks",
            Edge::OsmAnd => "osmand",
            Edge::Internal => "internal",
        }
    }
}

/// A command on its way to the writer.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    /// What to do.
    pub command: Command,
    /// The message's unique id (its envelope `id`), for deduplication;
    /// `None` for commands without one (ticks).
    pub msg_id: Option<String>,
    /// The identity that sent it.
    pub by: String,
    /// Where it came from.
    pub edge: Edge,
}

/// What the writer did with a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Journalled and applied; its deltas end at `seq`.
    Applied {
        /// The sequence number of the last delta it produced (or the current
        /// one if it produced none).
        seq: u64,
    },
    /// The same `msg_id` was applied before: acknowledged again, no effect.
    Duplicate,
}

/// Why a submission was not accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SubmitError {
    /// The command is invalid for the current state (unknown team, illegal
    /// transition…); nothing changed.
    #[error("rejected: {0}")]
    Rejected(Problems),
    /// The writer is shutting down or its journal failed; retry later.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// One published change, serialised once and shared by every subscriber.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// The frame.
    pub frame: DeltaFrame,
    /// Its JSON text.
    pub json: Arc<str>,
}
