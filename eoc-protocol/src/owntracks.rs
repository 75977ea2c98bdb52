//! OwnTracks payloads (MQTT `owntracks/{user}/{device}` and HTTP mode), read
//! into eoc units, and the `setWaypoints` command that pushes sites to
//! phones as geofences.
//!
//! Units are normalised here, once: `vel` is km/h on the wire and becomes
//! `speed_mps`; `tst` is epoch seconds and becomes a `DateTime<Utc>`.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::messages::{Envelope, TeamPositionMsg};
use crate::validate::{MAX_MESSAGE_BYTES, Problems, check_lat, check_lon};

/// Km/h to m/s.
const KMH_TO_MPS: f64 = 1.0 / 3.6;
/// Most characters kept of a free string field (`desc`, `rid`, `tid`…):
/// OwnTracks names are short; anything longer is truncated, never stored whole.
pub const MAX_TEXT_CHARS: usize = 256;

/// One OwnTracks payload, by its `_type`.
#[derive(Debug, Clone, PartialEq)]
pub enum OwnTracks {
    /// `_type: location`: a position fix.
    Location(Location),
    /// `_type: transition`: the phone entered or left a waypoint's region.
    Transition(Transition),
    /// `_type: lwt`: published by the broker when the phone's connection
    /// died; the responder went dark.
    Lwt(Lwt),
    /// `_type: waypoint`: the phone created or changed a region.
    Waypoint(Waypoint),
    /// Any other `_type` (`card`, `cmd`, `status`, `steps`…), named.
    Other(String),
}

/// A position fix, in eoc units.
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    /// Latitude, degrees (`lat`).
    pub lat: f64,
    /// Longitude, degrees (`lon`).
    pub lon: f64,
    /// When the fix was taken (`tst`, epoch s).
    pub at: DateTime<Utc>,
    /// Horizontal accuracy, metres (`acc`).
    pub accuracy_m: Option<f64>,
    /// Altitude above sea level, metres (`alt`).
    pub altitude_m: Option<f64>,
    /// Ground speed, m/s (`vel`, sent in km/h).
    pub speed_mps: Option<f64>,
    /// Course over ground, degrees (`cog`).
    pub heading_deg: Option<f64>,
    /// Battery, percent (`batt`).
    pub battery_pct: Option<f64>,
    /// Tracker id, two characters (`tid`).
    pub tid: Option<String>,
    /// The original topic, in HTTP mode (`topic`).
    pub topic: Option<String>,
    /// What triggered the report (`t`: `p` ping, `u` manual, `r` reply…).
    pub trigger: Option<String>,
    /// When the message was made (`created_at`, epoch s), if sent.
    pub created_at: Option<DateTime<Utc>>,
    /// Regions the phone is inside (`inregions`).
    pub in_regions: Vec<String>,
}

/// Whether a transition entered or left its region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionEvent {
    /// `enter`.
    Enter,
    /// `leave`.
    Leave,
}

/// A region transition, in eoc units.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// Enter or leave (`event`).
    pub event: TransitionEvent,
    /// When it happened (`tst`, epoch s).
    pub at: DateTime<Utc>,
    /// When the waypoint was created (`wtst`), which identifies it on the phone.
    pub waypoint_at: Option<DateTime<Utc>>,
    /// Latitude of the fix, degrees.
    pub lat: Option<f64>,
    /// Longitude of the fix, degrees.
    pub lon: Option<f64>,
    /// Accuracy of the fix, metres (`acc`).
    pub accuracy_m: Option<f64>,
    /// The waypoint's name (`desc`); eoc sends site names.
    pub desc: Option<String>,
    /// The region id (`rid`); eoc sends site ids.
    pub rid: Option<String>,
    /// Tracker id (`tid`).
    pub tid: Option<String>,
    /// The original topic, in HTTP mode.
    pub topic: Option<String>,
}

/// The broker's last will for a phone.
#[derive(Debug, Clone, PartialEq)]
pub struct Lwt {
    /// When the phone first connected (`tst`), if sent.
    pub connected_at: Option<DateTime<Utc>>,
}

/// A circular region on the phone; also what [`set_waypoints_cmd`] sends.
#[derive(Debug, Clone, PartialEq)]
pub struct Waypoint {
    /// Name shown on the phone (`desc`).
    pub desc: String,
    /// Centre latitude, degrees.
    pub lat: f64,
    /// Centre longitude, degrees.
    pub lon: f64,
    /// Radius, metres (`rad`).
    pub radius_m: Option<f64>,
    /// Creation time (`tst`); the phone keys regions by it, so a site must
    /// keep the same value across pushes.
    pub at: DateTime<Utc>,
    /// Region id (`rid`); eoc uses the site id.
    pub rid: Option<String>,
}

/// Parses one OwnTracks JSON payload. Every problem is reported with the
/// OwnTracks field name.
pub fn parse(bytes: &[u8]) -> Result<OwnTracks, Problems> {
    let obj = crate::codec::object(bytes, MAX_MESSAGE_BYTES)?;
    let mut p = Problems::default();
    let mut f = crate::codec::Fields { obj: &obj, prefix: "", problems: &mut p };
    let Some(kind) = f.string("_type", true) else {
        return Err(p);
    };
    let parsed = match kind.as_str() {
        "location" => location(&mut f).map(OwnTracks::Location),
        "transition" => transition(&mut f).map(OwnTracks::Transition),
        "lwt" => Some(OwnTracks::Lwt(Lwt { connected_at: f.epoch_s("tst", false) })),
        "waypoint" => waypoint(&mut f).map(OwnTracks::Waypoint),
        other => Some(OwnTracks::Other(truncate(other))),
    };
    match parsed {
        Some(v) if p.is_empty() => Ok(v),
        _ => Err(p),
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(MAX_TEXT_CHARS).collect()
}

fn location(f: &mut crate::codec::Fields<'_>) -> Option<Location> {
    let lat = f.number("lat", true);
    let lon = f.number("lon", true);
    let at = f.epoch_s("tst", true);
    let loc = Location {
        lat: lat.unwrap_or_default(),
        lon: lon.unwrap_or_default(),
        at: at.unwrap_or_default(),
        accuracy_m: f.number("acc", false),
        altitude_m: f.number("alt", false),
        speed_mps: f.number("vel", false).map(|kmh| kmh * KMH_TO_MPS),
        heading_deg: f.number("cog", false),
        battery_pct: f.number("batt", false),
        tid: f.string("tid", false),
        topic: f.string("topic", false),
        trigger: f.string("t", false),
        created_at: f.epoch_s("created_at", false),
        in_regions: f.strings("inregions"),
    };
    if let (Some(lat), Some(lon)) = (lat, lon) {
        check_lat("lat", lat, f.problems);
        check_lon("lon", lon, f.problems);
    }
    (lat.is_some() && lon.is_some() && at.is_some()).then_some(loc)
}

fn transition(f: &mut crate::codec::Fields<'_>) -> Option<Transition> {
    let event = match f.string("event", true).as_deref() {
        Some("enter") => Some(TransitionEvent::Enter),
        Some("leave") => Some(TransitionEvent::Leave),
        Some(other) => {
            f.problems.push(
                "invalid_format",
                "event",
                format!("event {:?} is not enter or leave", truncate(other)),
            );
            None
        }
        None => None,
    };
    let at = f.epoch_s("tst", true);
    let t = Transition {
        event: event.unwrap_or(TransitionEvent::Enter),
        at: at.unwrap_or_default(),
        waypoint_at: f.epoch_s("wtst", false),
        lat: f.number("lat", false),
        lon: f.number("lon", false),
        accuracy_m: f.number("acc", false),
        desc: f.string("desc", false),
        rid: f.string("rid", false),
        tid: f.string("tid", false),
        topic: f.string("topic", false),
    };
    if t.lat.is_some() != t.lon.is_some() {
        f.problems.push("required", if t.lat.is_none() { "lat" } else { "lon" }, "lat and lon come together");
    }
    if let Some(lat) = t.lat {
        check_lat("lat", lat, f.problems);
    }
    if let Some(lon) = t.lon {
        check_lon("lon", lon, f.problems);
    }
    (event.is_some() && at.is_some()).then_some(t)
}

fn waypoint(f: &mut crate::codec::Fields<'_>) -> Option<Waypoint> {
    let desc = f.string("desc", true);
    let lat = f.number("lat", true);
    let lon = f.number("lon", true);
    let at = f.epoch_s("tst", true);
    let radius_m = f.number("rad", false);
    let rid = f.string("rid", false);
    if let (Some(lat), Some(lon)) = (lat, lon) {
        check_lat("lat", lat, f.problems);
        check_lon("lon", lon, f.problems);
    }
    Some(Waypoint { desc: desc?, lat: lat?, lon: lon?, radius_m, at: at?, rid })
}

impl Location {
    /// The eoc position message for this fix. `msg_id` must be stable for
    /// the same fix (for example
    /// [`crate::validate::message_id`]`(&["owntracks", user, device, &tst])`), so that
    /// a redelivery is deduplicated. The envelope's `ts` is `created_at`, or
    /// the fix time. Validate the result before use.
    pub fn to_position(&self, msg_id: String, team_id: String) -> TeamPositionMsg {
        TeamPositionMsg {
            envelope: Envelope {
                v: crate::PROTOCOL_VERSION,
                id: msg_id,
                ts: self.created_at.unwrap_or(self.at),
            },
            team_id: Some(team_id),
            lat: self.lat,
            lon: self.lon,
            accuracy_m: self.accuracy_m,
            at: Some(self.at),
            battery_pct: self.battery_pct,
            speed_mps: self.speed_mps,
            heading_deg: self.heading_deg,
            altitude_m: self.altitude_m,
        }
    }
}

/// The `cmd` payload that replaces the phone's regions with `waypoints`
/// (publish it to `owntracks/{user}/{device}/cmd`, or answer it to an HTTP
/// mode POST). Phones accept it only with remote commands enabled.
pub fn set_waypoints_cmd(waypoints: &[Waypoint]) -> Value {
    let list: Vec<Value> = waypoints
        .iter()
        .map(|w| {
            let mut m = Map::new();
            m.insert("_type".into(), json!("waypoint"));
            m.insert("desc".into(), json!(w.desc));
            m.insert("lat".into(), json!(w.lat));
            m.insert("lon".into(), json!(w.lon));
            if let Some(rad) = w.radius_m {
                // OwnTracks expects whole metres.
                m.insert("rad".into(), json!(rad.round() as i64));
            }
            m.insert("tst".into(), json!(w.at.timestamp()));
            if let Some(rid) = &w.rid {
                m.insert("rid".into(), json!(rid));
            }
            Value::Object(m)
        })
        .collect();
    json!({
        "_type": "cmd",
        "action": "setWaypoints",
        "waypoints": { "_type": "waypoints", "waypoints": list },
    })
}
