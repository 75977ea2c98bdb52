//! CAP at the edge: alerts in over HTTP (`POST /api/v1/alerts/cap`) and
//! MQTT (`{prefix}/alerts/cap`), out as CAP 1.2 documents
//! (`GET /api/v1/alerts/{id}.cap`, the original at
//! `GET /api/v1/alerts/{id}/source.cap`) and an Atom feed of active alerts
//! (`GET /api/v1/cap/feed.atom`).
//!
//! Reading, validation and mapping live in `eoc_protocol::cap`; this edge
//! only resolves `<references>` against the alerts the engine holds and
//! submits the resulting alert message like any other (a 2xx means it is
//! journalled, with the original XML). Ack, Error and System messages make
//! no alert: they are logged and answered 200.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use chrono::{DateTime, Utc};
use eoc_protocol::cap::export::{
    ATOM_MEDIA_TYPE, CAP_MEDIA_TYPE, ExportOptions, FeedEntry, atom_feed, to_cap_xml,
};
use eoc_protocol::cap::map::{Mapped, alert_id_of, message_id_of, to_alert_msg};
use eoc_protocol::cap::{CapAlert, MAX_CAP_BYTES, parse_cap};
use eoc_protocol::messages::AlertMsg;
use eoc_protocol::types::{Hazard, MsgType};
use eoc_protocol::validate::Problems;
use serde_json::json;
use tracing::info;

use crate::api::{AppState, Error};
use crate::auth::{Principal, Role};
use crate::bus::{Accepted, Bus, Edge, Submission};
use crate::core::engine::{Command, Engine, from_ms};
use crate::mqtt::inbound::{MQTT_IDENTITY, Rejection};

/// The CAP routes, nested under `/api/v1` by [`crate::api::router`].
pub fn routes() -> Router<AppState> {
    Router::new()
        // A CAP document may be larger than a JSON message (detailed
        // polygons); its own bound applies here.
        .route("/alerts/cap", post(receive).layer(DefaultBodyLimit::max(MAX_CAP_BYTES)))
        .route("/alerts/{id}/source.cap", get(source))
        .route("/cap/feed.atom", get(feed))
}

/// What one CAP message becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    /// An alert message to submit.
    Alert {
        /// The submission (command, message id, identity, edge).
        submission: Box<Submission>,
        /// Remarks on what was changed or dropped.
        notes: Vec<String>,
    },
    /// Accepted and logged, no alert (Ack, Error, System).
    NoAlert {
        /// The message's CAP identifier.
        identifier: String,
        /// Why no alert.
        reason: String,
    },
}

/// Reads, validates and maps one CAP document, resolving its references
/// against the alerts the engine holds.
pub fn receive_bytes(
    bus: &Bus,
    bytes: &[u8],
    now: DateTime<Utc>,
    by: &str,
    edge: Edge,
) -> Result<Received, (Option<String>, Problems)> {
    let cap = parse_cap(bytes).map_err(|p| (None, p))?;
    let msg_id = message_id_of(&cap.sender, &cap.identifier);
    // The XML is valid UTF-8: the parser refuses anything else.
    let xml = std::str::from_utf8(bytes).ok();
    let resolved = bus.read(|e| resolve_references(e, &cap));
    let resolve = |r: &eoc_protocol::cap::Reference| {
        cap.references.iter().position(|x| x == r).and_then(|i| resolved.get(i).cloned().flatten())
    };
    match to_alert_msg(&cap, xml, now, &resolve).map_err(|p| (Some(msg_id.clone()), p))? {
        Mapped::Alert { msg, notes } => {
            let id = msg.envelope.id.clone();
            let submission =
                Submission { command: Command::Alert(*msg), msg_id: Some(id), by: by.to_owned(), edge };
            Ok(Received::Alert { submission: Box::new(submission), notes })
        }
        Mapped::NoAlert { reason } => {
            info!(sender = %cap.sender, identifier = %cap.identifier, msg_type = cap.msg_type.as_str(), status = cap.status.as_str(), %reason, "cap message logged");
            Ok(Received::NoAlert { identifier: cap.identifier, reason })
        }
    }
}

/// The eoc alert each reference of `cap` stands for, if the engine holds
/// it: an alert whose id is the referenced identifier, an alert whose
/// current message is the referenced CAP message, or (for eoc's own
/// exports, `{alert_id}.r{n}`) the alert before the revision suffix.
fn resolve_references(engine: &Engine, cap: &CapAlert) -> Vec<Option<String>> {
    let alerts = engine.alerts();
    cap.references
        .iter()
        .map(|r| {
            let by_id = alert_id_of(&r.identifier);
            if alerts.iter().any(|a| a.msg.alert_id == by_id) {
                return Some(by_id);
            }
            let msg_id = message_id_of(&r.sender, &r.identifier);
            if let Some(a) = alerts.iter().find(|a| a.msg.envelope.id == msg_id) {
                return Some(a.msg.alert_id.clone());
            }
            let (base, rev) = r.identifier.rsplit_once(".r")?;
            if rev.is_empty() || !rev.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let base = alert_id_of(base);
            alerts.iter().any(|a| a.msg.alert_id == base).then_some(base)
        })
        .collect()
}

/// The JSON error answer: `{code, field, message, errors: [...]}`, every
/// problem listed.
fn problems_response(status: StatusCode, problems: &Problems) -> Response {
    let first = problems.errors.first();
    let body = json!({
        "code": first.map_or("invalid", |e| e.code.as_str()),
        "field": first.map_or("", |e| e.field.as_str()),
        "message": first.map_or("", |e| e.message.as_str()),
        "errors": problems.errors,
    });
    (status, axum::Json(body)).into_response()
}

async fn receive(
    State(state): State<AppState>,
    Extension(who): Extension<Arc<Principal>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // Only a chair issues alerts: refuse before reading the document.
    if who.role != Role::Chair {
        let mut p = Problems::default();
        p.push(
            crate::auth::policy::FORBIDDEN,
            "",
            format!("only a chair may issue cap alerts; {} is a {}", who.name, who.role),
        );
        return Error::problems(StatusCode::FORBIDDEN, p).into_response();
    }
    let by = who.name.clone();
    let body = match body {
        Ok(b) => b,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let mut p = Problems::default();
            p.push("too_large", "", format!("the cap document exceeds the limit of {MAX_CAP_BYTES} bytes"));
            return problems_response(StatusCode::PAYLOAD_TOO_LARGE, &p);
        }
        Err(rejection) => return Error::from(rejection).into_response(),
    };
    let received = match receive_bytes(&state.bus, &body, Utc::now(), &by, Edge::Http) {
        Ok(r) => r,
        Err((_, problems)) => {
            state.access.refuse(Some(&who), Edge::Http, "POST /api/v1/alerts/cap", &problems);
            return problems_response(StatusCode::BAD_REQUEST, &problems);
        }
    };
    let (submission, notes) = match received {
        Received::Alert { submission, notes } => (*submission, notes),
        Received::NoAlert { identifier, reason } => {
            let body = json!({"identifier": identifier, "alert_id": null, "note": reason});
            return (StatusCode::OK, axum::Json(body)).into_response();
        }
    };
    let Command::Alert(msg) = &submission.command else {
        return Error::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "", "cap made no alert")
            .into_response();
    };
    let (msg_id, alert_id, msg_type, hazard) =
        (submission.msg_id.clone(), msg.alert_id.clone(), msg.msg_type, msg.hazard);
    match state.access.submit(&state.bus, &who, submission).await {
        Ok(accepted) => {
            let (status, seq, duplicate) = match accepted {
                Accepted::Applied { seq } if msg_type == MsgType::Alert => {
                    (StatusCode::CREATED, Some(seq), false)
                }
                Accepted::Applied { seq } => (StatusCode::OK, Some(seq), false),
                Accepted::Duplicate => (StatusCode::OK, None, true),
            };
            let body = json!({
                "id": msg_id, "alert_id": alert_id, "msg_type": msg_type, "hazard": hazard,
                "seq": seq, "duplicate": duplicate, "notes": notes,
            });
            let location = format!("/api/v1/alerts/{alert_id}");
            (status, [(header::LOCATION, location)], axum::Json(body)).into_response()
        }
        Err(err) => Error::from(err).into_response(),
    }
}

/// The submissions of a CAP document on `{prefix}/alerts/cap`: one alert
/// message, or none for Ack, Error and System messages (logged).
pub fn mqtt_submissions(bus: &Bus, payload: &[u8], now: DateTime<Utc>) -> Result<Vec<Submission>, Rejection> {
    match receive_bytes(bus, payload, now, MQTT_IDENTITY, Edge::Mqtt) {
        Ok(Received::Alert { submission, notes }) => {
            if !notes.is_empty() {
                info!(id = ?submission.msg_id, ?notes, "cap alert mapped with notes");
            }
            Ok(vec![*submission])
        }
        Ok(Received::NoAlert { .. }) => Ok(Vec::new()),
        Err((id, problems)) => Err(Rejection { id, problems }),
    }
}

/// What an export needs from the engine, copied out under the read lock.
struct Snapshot {
    msg: AlertMsg,
    revision: u32,
    issued_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    affected_radius_km: Option<f64>,
}

fn snapshot(engine: &Engine, alert_id: &str) -> Option<Snapshot> {
    let a = engine.alerts().iter().find(|a| a.msg.alert_id == alert_id)?;
    // An earthquake's CAP area is a circle through its farthest affected
    // village (rounded up to 0.1 km); without one, the export's rough felt
    // radius.
    let farthest_m = a
        .exposures
        .iter()
        .filter_map(|x| x.distance_m)
        .fold(None, |m: Option<f64>, d| Some(m.map_or(d, |m| m.max(d))));
    let mut msg = a.msg.clone();
    // The export shows the alert, not the document it came in.
    msg.cap_xml = None;
    Some(Snapshot {
        msg,
        revision: a.revision,
        issued_at: from_ms(a.issued_at_ms),
        updated_at: from_ms(a.updated_at_ms),
        affected_radius_km: farthest_m.filter(|m| *m > 0.0).map(|m| (m / 100.0).ceil() / 10.0),
    })
}

/// `GET /api/v1/alerts/{id}.cap`: the alert as CAP 1.2.
pub fn export(state: &AppState, alert_id: &str) -> Result<Response, Error> {
    let snap = state
        .bus
        .read(|e| snapshot(e, alert_id))
        .ok_or_else(|| Error::not_found("alert_id", format!("no alert {alert_id}")))?;
    let opts = ExportOptions {
        sender: &state.cap.sender,
        sent: snap.updated_at,
        first_sent: snap.issued_at,
        revision: snap.revision,
        affected_radius_km: if snap.msg.hazard == Some(Hazard::Earthquake) {
            snap.affected_radius_km
        } else {
            None
        },
        area_desc: None,
    };
    let xml = to_cap_xml(&snap.msg, &opts);
    Ok(([(header::CONTENT_TYPE, CAP_MEDIA_TYPE)], xml).into_response())
}

/// `GET /api/v1/alerts/{id}/source.cap`: the CAP document the alert came
/// in, verbatim.
async fn source(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, Error> {
    let found =
        state.bus.read(|e| e.alerts().iter().find(|a| a.msg.alert_id == id).map(|a| a.msg.cap_xml.clone()));
    match found {
        None => Err(Error::not_found("alert_id", format!("no alert {id}"))),
        Some(None) => Err(Error::not_found("alert_id", format!("alert {id} did not come as cap"))),
        Some(Some(xml)) => Ok(([(header::CONTENT_TYPE, CAP_MEDIA_TYPE)], xml).into_response()),
    }
}

/// `GET /api/v1/cap/feed.atom`: active alerts, newest change first.
async fn feed(State(state): State<AppState>) -> Response {
    let mut snaps = state.bus.read(|e| {
        e.alerts()
            .iter()
            .filter(|a| a.active())
            .filter_map(|a| snapshot(e, &a.msg.alert_id))
            .collect::<Vec<_>>()
    });
    snaps.sort_by_key(|s| std::cmp::Reverse(s.updated_at));
    let entries: Vec<FeedEntry<'_>> = snaps
        .iter()
        .map(|s| FeedEntry {
            msg: &s.msg,
            revision: s.revision,
            published: s.issued_at,
            updated: s.updated_at,
        })
        .collect();
    let updated = snaps.first().map_or_else(Utc::now, |s| s.updated_at);
    let xml = atom_feed(&state.cap.sender, &state.cap.public_url, updated, &entries);
    ([(header::CONTENT_TYPE, ATOM_MEDIA_TYPE)], xml).into_response()
}
