//! `/osmand`: the OsmAnd protocol that Traccar Client speaks, as Traccar's
//! own server takes it.
//!
//! - Any HTTP method. Fields from the query string, or from an
//!   `application/x-www-form-urlencoded` body when the query is empty; the
//!   JSON form (Traccar Client 9 and later) when `Content-Type` starts with
//!   `application/json`. Parsed by `eoc_protocol::osmand`.
//! - The device `id`/`deviceid`/`device_id` is mapped to a team as
//!   `osmand:{id}`; an unknown device gets **400** (query/form) or **404**
//!   (JSON), as Traccar answers.
//! - `speed` of the query/form variant is in `phones.osmand_speed_unit`
//!   (`kn`, Traccar Client's, by default; `kmh`, `mps`, `mph`); the JSON
//!   form's is m/s.
//! - No `lat`/`lon`: the team keeps its last position; battery and last
//!   seen are updated.
//! - Authenticated with HTTP Basic (the eoc user name and its token as
//!   password) or a bearer token: a responder reports only for its own
//!   team; a device missing from the scenario's table is the responder's
//!   team's.
//! - **200** with an empty body once the command is durable; a refused
//!   report gets 400 with a JSON error, an unavailable writer 503 (Traccar
//!   Client retries any non-200).

use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use eoc_protocol::osmand::{self, OsmAndFix, SpeedUnit};
use eoc_protocol::validate::Problems;
use tracing::{error, warn};

use super::{Fix, fix_command, msg_id, team_of_device};
use crate::access::Access;
use crate::bus::{Bus, Edge, Submission, SubmitError};
use crate::config::PhonesConfig;

/// The unit of a `phones.osmand_speed_unit` value: `kn` (Traccar's
/// default), `kmh`, `mps` or `mph`; anything else falls back to knots with
/// a warning.
pub fn speed_unit(value: &str) -> SpeedUnit {
    match value {
        "kn" => SpeedUnit::Knots,
        "kmh" => SpeedUnit::Kmh,
        "mps" => SpeedUnit::Mps,
        "mph" => SpeedUnit::Mph,
        other => {
            warn!(value = %other, "unknown phones.osmand_speed_unit, using kn");
            SpeedUnit::Knots
        }
    }
}

/// What the `/osmand` handler needs.
#[derive(Debug, Clone)]
pub struct State {
    bus: Bus,
    access: Arc<Access>,
    speed_unit: SpeedUnit,
}

impl State {
    /// The handler's state for `config`.
    pub fn new(bus: Bus, access: Arc<Access>, config: &PhonesConfig) -> State {
        State { bus, access, speed_unit: speed_unit(&config.osmand_speed_unit) }
    }
}

/// A parsed fix (already in eoc's units).
fn fix_of(f: &OsmAndFix) -> Fix {
    Fix {
        lat: f.lat,
        lon: f.lon,
        at: Some(f.at),
        accuracy_m: f.accuracy_m,
        altitude_m: f.altitude_m,
        speed_mps: f.speed_mps,
        heading_deg: f.heading_deg,
        battery_pct: f.battery_pct,
    }
}

fn refuse(status: StatusCode, problems: &Problems) -> Response {
    (status, Json(serde_json::json!({ "errors": problems.errors }))).into_response()
}

/// `/osmand`, any method.
pub async fn http(
    AxumState(state): AxumState<State>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let now = Utc::now();
    let who = match super::authenticate(&state.access, &headers, Edge::OsmAnd, "osmand").await {
        Ok(who) => who,
        Err(response) => return response,
    };
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/json"));
    let parsed = if is_json {
        osmand::parse_json(&body, now)
    } else {
        let query = query.unwrap_or_default();
        let source: &[u8] = if query.is_empty() { &body } else { query.as_bytes() };
        let pairs: Vec<(String, String)> = form_urlencoded_pairs(source);
        osmand::parse_params_with(&pairs, now, state.speed_unit)
    };
    let fix = match parsed {
        Ok(f) => f,
        Err(problems) => {
            warn!(problems = %problems, "osmand report refused");
            state.access.refuse(Some(&who), Edge::OsmAnd, "osmand", &problems);
            return refuse(StatusCode::BAD_REQUEST, &problems);
        }
    };
    let unknown = if is_json { StatusCode::NOT_FOUND } else { StatusCode::BAD_REQUEST };
    let eoc_fix = fix_of(&fix);
    let submission = state.bus.read(|engine| {
        let t = team_of_device(engine, "osmand", &fix.device_id)
            .or_else(|| who.team.as_deref().and_then(|t| engine.world().team_idx(t)))?;
        let id = msg_id("osmand", &fix.device_id, eoc_fix.at, "fix");
        Some(Submission {
            command: fix_command(engine, t, &eoc_fix, id.clone(), now),
            msg_id: Some(id),
            by: format!("osmand:{}", fix.device_id),
            edge: Edge::OsmAnd,
        })
    });
    let Some(submission) = submission else {
        let mut p = Problems::default();
        p.push("unknown_device", "id", format!("osmand device {} is not mapped to a team", fix.device_id));
        warn!(device = %fix.device_id, "osmand report from an unknown device");
        state.access.refuse(Some(&who), Edge::OsmAnd, "osmand", &p);
        return refuse(unknown, &p);
    };
    match state.access.submit(&state.bus, &who, submission).await {
        Ok(_) => StatusCode::OK.into_response(),
        Err(SubmitError::Rejected(problems)) => {
            warn!(device = %fix.device_id, problems = %problems, "osmand report rejected");
            let status = crate::api::access_status(&problems).unwrap_or(StatusCode::BAD_REQUEST);
            refuse(status, &problems)
        }
        Err(SubmitError::Unavailable(why)) => {
            error!(device = %fix.device_id, reason = %why, "osmand report not stored; the phone will retry");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// `application/x-www-form-urlencoded` pairs (also the query string's
/// syntax), decoded; an undecodable body gives no pairs, and the parser
/// then reports the missing `id`.
fn form_urlencoded_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_speed_units_are_read() {
        assert_eq!(speed_unit("kn"), SpeedUnit::Knots);
        assert_eq!(speed_unit("kmh"), SpeedUnit::Kmh);
        assert_eq!(speed_unit("mps"), SpeedUnit::Mps);
        assert_eq!(speed_unit("mph"), SpeedUnit::Mph);
        assert_eq!(speed_unit("furlongs"), SpeedUnit::Knots);
    }

    #[test]
    fn query_pairs_are_decoded() {
        let pairs = form_urlencoded_pairs(b"id=abc&timestamp=2026-03-01%2010%3A00%3A00&lat=38.5");
        assert_eq!(pairs[1], ("timestamp".to_owned(), "2026-03-01 10:00:00".to_owned()));
        assert_eq!(pairs.len(), 3);
    }
}
