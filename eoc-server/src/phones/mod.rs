//! Phones, unchanged: the apps responders already have.
//!
//! # Layout
//! - [`owntracks`]: OwnTracks payloads (MQTT `owntracks/{user}/{device}`
//!   and the HTTP mode at `POST /owntracks`) → team commands, and the
//!   `setWaypoints` commands that push open sites to the phones.
//! - [`osmand`]: the OsmAnd protocol of Traccar Client at `/osmand`.
//!
//! Both parse with `eoc_protocol::{owntracks, osmand}` (units normalised
//! there), map the device to a team through the scenario's device table,
//! and submit through the [`Bus`]; a 2xx answer means the command is
//! durable. [`routes`] is merged into the server's router.
//!
//! Device ids: a team's `devices` list names `owntracks:{user}/{device}`
//! and `osmand:{id}`. The bare forms `{user}/{device}` and `{id}` are
//! accepted too, as the scenario file format describes them.

pub mod osmand;
pub mod owntracks;

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use eoc_protocol::PROTOCOL_VERSION;
use eoc_protocol::messages::{Envelope, TeamPositionMsg, TeamStatusMsg};

use crate::access::Access;
use crate::auth::Principal;
use crate::auth::verifier::AuthError;
use crate::bus::{Bus, Edge};
use crate::config::PhonesConfig;
use crate::core::engine::{Command, Engine};
use crate::core::world::TeamIdx;

/// The phone routes: `POST /owntracks` and `/osmand` (any method).
pub fn routes(bus: Bus, access: Arc<Access>, config: &PhonesConfig) -> Router {
    let osmand_state = osmand::State::new(bus.clone(), access.clone(), config);
    Router::new()
        .route("/owntracks", post(owntracks::http).with_state((bus, access)))
        .route("/osmand", any(osmand::http).with_state(osmand_state))
}

/// `Basic` credentials of a request: user name and password.
pub fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine as _;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The identity of a phone's request: HTTP Basic with the user's name and
/// token as password (what OwnTracks and OsmAnd clients send), or a bearer
/// token. A refusal is audited and answered with 401 and a Basic challenge.
pub async fn authenticate(
    access: &Access,
    headers: &HeaderMap,
    edge: Edge,
    action: &str,
) -> Result<Arc<Principal>, Response> {
    let result = match basic_credentials(headers) {
        Some((user, password)) => access.verifier.basic(&user, &password).await,
        None => match crate::api::bearer_token(headers) {
            Ok(Some(token)) => access.verifier.bearer(&token).await,
            Ok(None) => Err(AuthError::Missing),
            Err(err) => Err(err),
        },
    };
    result.map_err(|err| {
        let error = crate::api::unauthenticated(&err);
        let p = error.problem_list();
        access.refuse(None, edge, action, p);
        let mut response = (error.status(), Json(serde_json::json!({ "errors": p.errors }))).into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"eoc\""));
        response
    })
}

/// FNV-1a, 64 bits: a stable hash (unlike std's, it never changes between
/// releases), used where a value derived from a device must be the same
/// after a restart (message ids for deduplication, waypoint ids).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The team a device is mapped to: `{scheme}:{id}` first, then the bare id.
pub fn team_of_device(engine: &Engine, scheme: &str, id: &str) -> Option<TeamIdx> {
    let world = engine.world();
    world.team_of_device(&format!("{scheme}:{id}")).or_else(|| world.team_of_device(id))
}

/// A position fix from a phone, in eoc's units.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fix {
    /// Latitude, degrees; `None` when the phone sent none.
    pub lat: Option<f64>,
    /// Longitude, degrees.
    pub lon: Option<f64>,
    /// When the fix was taken.
    pub at: Option<DateTime<Utc>>,
    /// Horizontal accuracy, metres.
    pub accuracy_m: Option<f64>,
    /// Altitude, metres.
    pub altitude_m: Option<f64>,
    /// Ground speed, metres per second.
    pub speed_mps: Option<f64>,
    /// Course, degrees.
    pub heading_deg: Option<f64>,
    /// Battery, percent.
    pub battery_pct: Option<f64>,
}

/// The command a fix makes for team `t`. A fix without coordinates
/// refreshes the team's battery and last-seen only: it becomes a status
/// message repeating the team's current status (the engine has no
/// "seen" command, and a position would claim a fix that was not taken).
pub fn fix_command(engine: &Engine, t: TeamIdx, fix: &Fix, msg_id: String, now: DateTime<Utc>) -> Command {
    let team = engine.world().team(t);
    let ts = fix.at.unwrap_or(now);
    let envelope = Envelope { v: PROTOCOL_VERSION, id: msg_id, ts };
    match (fix.lat, fix.lon) {
        (Some(lat), Some(lon)) => Command::TeamPosition(TeamPositionMsg {
            envelope,
            team_id: Some(team.id.clone()),
            lat,
            lon,
            accuracy_m: fix.accuracy_m,
            at: fix.at,
            battery_pct: fix.battery_pct,
            speed_mps: fix.speed_mps,
            heading_deg: fix.heading_deg,
            altitude_m: fix.altitude_m,
        }),
        _ => Command::TeamStatus(TeamStatusMsg {
            envelope,
            team_id: Some(team.id.clone()),
            status: team.status,
            battery_pct: fix.battery_pct,
            note: None,
        }),
    }
}

/// A message id from a device and what identifies one report of it (the
/// same for a retry, so the writer deduplicates retries), valid whatever
/// characters the device id holds.
pub fn msg_id(scheme: &str, device: &str, at: Option<DateTime<Utc>>, kind: &str) -> String {
    let at = at.map_or_else(|| "now".to_owned(), |t| t.timestamp_millis().to_string());
    eoc_protocol::validate::message_id(&[scheme, device, &at, kind])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn message_ids_are_stable_bounded_and_in_the_envelope_alphabet() {
        let at = Some("2026-03-01T10:00:00Z".parse().unwrap());
        let long_device = "ü/".repeat(200);
        let id = msg_id("owntracks", &long_device, at, "location");
        assert_eq!(id, msg_id("owntracks", &long_device, at, "location"));
        assert_ne!(id, msg_id("owntracks", &long_device, at, "transition"));
        assert!(id.len() <= 64, "{id}");
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c)), "{id}");
    }
}
