//! The OsmAnd protocol as Traccar Client speaks it (`/osmand`): query or form
//! fields, or the JSON body of Traccar Client 9 and later, read into eoc
//! units. Speed arrives in knots (query/form) or m/s (JSON) and leaves as
//! `speed_mps`; battery arrives in percent (query/form) or 0–1 (JSON) and
//! leaves as `battery_pct`.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value};

use crate::messages::{Envelope, TeamPositionMsg};
use crate::validate::{MAX_MESSAGE_BYTES, Problems, check_lat, check_lon, check_range};

/// Knots to m/s.
pub const KNOTS_TO_MPS: f64 = 0.514_444;
/// Most query or form fields read: Traccar Client sends about ten.
pub const MAX_PARAMS: usize = 64;
/// Most extra attributes kept per fix.
pub const MAX_ATTRIBUTES: usize = 32;
/// Most characters of a device id.
pub const MAX_DEVICE_ID_CHARS: usize = 64;
/// Most characters kept of an attribute's name or value.
pub const MAX_ATTRIBUTE_CHARS: usize = 256;
/// Largest JSON body: one fix is well under 2 KiB.
pub const MAX_JSON_BYTES: usize = 64 * 1024;
/// Numeric timestamps below this are seconds, above it milliseconds (as
/// Traccar's decoder does).
const SECONDS_LIMIT: i64 = (1 << 31) - 1;

/// The unit of the query/form `speed` field (Traccar's `osmand.speed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpeedUnit {
    /// Knots, what Traccar Client sends (the default).
    #[default]
    Knots,
    /// Kilometres per hour.
    Kmh,
    /// Metres per second.
    Mps,
    /// Miles per hour.
    Mph,
}

impl SpeedUnit {
    /// Metres per second in one of this unit.
    pub fn to_mps(self) -> f64 {
        match self {
            SpeedUnit::Knots => KNOTS_TO_MPS,
            SpeedUnit::Kmh => 1.0 / 3.6,
            SpeedUnit::Mps => 1.0,
            SpeedUnit::Mph => 0.447_04,
        }
    }
}

/// One fix from an OsmAnd client, in eoc units.
#[derive(Debug, Clone, PartialEq)]
pub struct OsmAndFix {
    /// The device's unique id (`id`, `deviceid` or `device_id`).
    pub device_id: String,
    /// When the fix was taken; the server's clock when not sent.
    pub at: DateTime<Utc>,
    /// Latitude, degrees; `None` (with `lon`) when the client sent no
    /// position: the server keeps the last known one.
    pub lat: Option<f64>,
    /// Longitude, degrees; `None` exactly when `lat` is.
    pub lon: Option<f64>,
    /// Ground speed, m/s.
    pub speed_mps: Option<f64>,
    /// Course, degrees.
    pub heading_deg: Option<f64>,
    /// Altitude, metres.
    pub altitude_m: Option<f64>,
    /// Horizontal accuracy, metres; `None` when 0 (Traccar Client sends 0
    /// for GPS fixes, whose accuracy it does not report).
    pub accuracy_m: Option<f64>,
    /// Battery, percent.
    pub battery_pct: Option<f64>,
    /// Whether the phone is charging.
    pub charging: Option<bool>,
    /// Every other field, verbatim (`alarm=sos`, `mock=true`, `hdop`…).
    pub attributes: Vec<(String, String)>,
}

impl OsmAndFix {
    fn new(device_id: String, at: DateTime<Utc>) -> Self {
        OsmAndFix {
            device_id,
            at,
            lat: None,
            lon: None,
            speed_mps: None,
            heading_deg: None,
            altitude_m: None,
            accuracy_m: None,
            battery_pct: None,
            charging: None,
            attributes: Vec::new(),
        }
    }

    /// The eoc position message for this fix, or `None` when it carries no
    /// position. `msg_id` must be stable for the same fix (for example
    /// [`crate::validate::message_id`]`(&["osmand", device_id, &at_ms])`). Validate the result before use.
    pub fn to_position(&self, msg_id: String, team_id: String) -> Option<TeamPositionMsg> {
        Some(TeamPositionMsg {
            envelope: Envelope { v: crate::PROTOCOL_VERSION, id: msg_id, ts: self.at },
            team_id: Some(team_id),
            lat: self.lat?,
            lon: self.lon?,
            accuracy_m: self.accuracy_m,
            at: Some(self.at),
            battery_pct: self.battery_pct,
            speed_mps: self.speed_mps,
            heading_deg: self.heading_deg,
            altitude_m: self.altitude_m,
        })
    }

    fn attribute(&mut self, key: &str, value: &str) {
        if self.attributes.len() < MAX_ATTRIBUTES {
            let cut = |s: &str| s.chars().take(MAX_ATTRIBUTE_CHARS).collect::<String>();
            self.attributes.push((cut(key), cut(value)));
        }
    }

    /// Checks the position; `present` says which of lat and lon were sent
    /// at all, so that an invalid value is not also reported as missing.
    fn check_position(
        &self,
        lat_field: &str,
        lon_field: &str,
        present: (bool, bool),
        problems: &mut Problems,
    ) {
        match (self.lat, self.lon) {
            (Some(lat), Some(lon)) => {
                check_lat(lat_field, lat, problems);
                check_lon(lon_field, lon, problems);
            }
            (Some(_), None) if !present.1 => {
                problems.push("required", lon_field, format!("{lon_field} is required with a latitude"))
            }
            (None, Some(_)) if !present.0 => {
                problems.push("required", lat_field, format!("{lat_field} is required with a longitude"))
            }
            _ => {}
        }
    }
}

/// A value that means "unknown" when negative (Traccar Client sends -1).
fn known(x: f64) -> Option<f64> {
    (x >= 0.0).then_some(x)
}

/// Parses the query or form variant; `speed` in knots.
pub fn parse_params(pairs: &[(String, String)], now: DateTime<Utc>) -> Result<OsmAndFix, Problems> {
    parse_params_with(pairs, now, SpeedUnit::Knots)
}

/// Parses the query or form variant with `speed` in `unit`. When a field is
/// repeated, the first value counts.
pub fn parse_params_with(
    pairs: &[(String, String)],
    now: DateTime<Utc>,
    unit: SpeedUnit,
) -> Result<OsmAndFix, Problems> {
    let mut p = Problems::default();
    if pairs.len() > MAX_PARAMS {
        p.push("too_many", "", format!("request has {} fields, at most {MAX_PARAMS} allowed", pairs.len()));
        return Err(p);
    }
    let get = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let device_id = match get("id").or_else(|| get("deviceid")) {
        Some(id) => check_device_id("id", id, &mut p),
        None => {
            p.push("required", "id", "id or deviceid is required");
            None
        }
    };
    let at = match get("timestamp") {
        Some(t) => parse_timestamp("timestamp", t, &mut p),
        None => Some(now),
    };
    let mut fix = OsmAndFix::new(device_id.clone().unwrap_or_default(), at.unwrap_or(now));
    let number = |key: &str, p: &mut Problems| -> Option<f64> {
        let raw = get(key)?;
        match raw.trim().parse::<f64>() {
            Ok(x) if x.is_finite() => Some(x),
            Ok(_) => {
                p.push("not_finite", key, format!("{key} {raw:?} is not a finite number"));
                None
            }
            Err(_) => {
                let shown: String = raw.chars().take(32).collect();
                p.push("invalid_format", key, format!("{key} {shown:?} is not a number"));
                None
            }
        }
    };
    fix.lat = number("lat", &mut p);
    fix.lon = number("lon", &mut p);
    if fix.lat.is_none()
        && fix.lon.is_none()
        && let Some(location) = get("location")
    {
        match location.split_once(',').map(|(a, b)| (a.trim().parse::<f64>(), b.trim().parse::<f64>())) {
            Some((Ok(lat), Ok(lon))) if lat.is_finite() && lon.is_finite() => {
                fix.lat = Some(lat);
                fix.lon = Some(lon);
            }
            _ => {
                let shown: String = location.chars().take(64).collect();
                p.push("invalid_format", "location", format!("location {shown:?} is not lat,lon"));
            }
        }
    }
    // Only `lat` and `lon` themselves count as sent: `location` is read
    // only when neither is, and then gives both or a problem, so a `lon`
    // next to a `location` still needs its `lat`.
    let present = (get("lat").is_some(), get("lon").is_some());
    fix.check_position("lat", "lon", present, &mut p);
    fix.speed_mps = number("speed", &mut p).and_then(known).map(|s| s * unit.to_mps());
    fix.heading_deg = number("bearing", &mut p).or_else(|| number("heading", &mut p)).and_then(known);
    fix.altitude_m = number("altitude", &mut p);
    fix.accuracy_m = number("accuracy", &mut p).filter(|a| *a > 0.0);
    fix.battery_pct = number("batt", &mut p).and_then(known);
    fix.charging = match get("charge") {
        Some("true" | "1") => Some(true),
        Some("false" | "0") => Some(false),
        Some(other) => {
            let shown: String = other.chars().take(32).collect();
            p.push("invalid_format", "charge", format!("charge {shown:?} is not true or false"));
            None
        }
        None => None,
    };
    const KNOWN: &[&str] = &[
        "id",
        "deviceid",
        "timestamp",
        "lat",
        "lon",
        "location",
        "speed",
        "bearing",
        "heading",
        "altitude",
        "accuracy",
        "batt",
        "charge",
    ];
    let mut seen: Vec<&str> = Vec::new();
    for (k, v) in pairs {
        if !KNOWN.contains(&k.as_str()) && !seen.contains(&k.as_str()) {
            seen.push(k);
            fix.attribute(k, v);
        }
    }
    match device_id {
        Some(_) if p.is_empty() => Ok(fix),
        _ => Err(p),
    }
}

fn check_device_id(field: &str, id: &str, p: &mut Problems) -> Option<String> {
    let chars = id.chars().count();
    if id.trim().is_empty() {
        p.push("required", field, format!("{field} must not be empty"));
        None
    } else if chars > MAX_DEVICE_ID_CHARS {
        p.push(
            "too_long",
            field,
            format!("{field} is {chars} characters, at most {MAX_DEVICE_ID_CHARS} allowed"),
        );
        None
    } else if id.chars().any(char::is_control) {
        p.push("invalid_format", field, format!("{field} {id:?} contains a control character"));
        None
    } else {
        Some(id.to_owned())
    }
}

/// Epoch s (`< 2^31 − 1`) or ms, ISO-8601 (contains `T`), or
/// `yyyy-MM-dd HH:mm:ss` in UTC.
fn parse_timestamp(field: &str, raw: &str, p: &mut Problems) -> Option<DateTime<Utc>> {
    let raw = raw.trim();
    let shown: String = raw.chars().take(40).collect();
    let parsed = if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        raw.parse::<i64>().ok().and_then(|n| {
            if n < SECONDS_LIMIT {
                DateTime::from_timestamp(n, 0)
            } else {
                DateTime::from_timestamp_millis(n)
            }
        })
    } else if raw.contains('T') {
        DateTime::parse_from_rfc3339(raw).map(|t| t.with_timezone(&Utc)).ok().or_else(|| {
            // Without an offset the time is taken as UTC.
            ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S"]
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(raw, f).ok())
                .map(|n| n.and_utc())
        })
    } else {
        NaiveDateTime::parse_from_str(raw, "%Y-%m-%d %H:%M:%S").ok().map(|n| n.and_utc())
    };
    if parsed.is_none() {
        p.push(
            "invalid_format",
            field,
            format!("{field} {shown:?} is not epoch s or ms, iso-8601, or yyyy-MM-dd HH:mm:ss"),
        );
    }
    parsed
}

/// Parses the JSON variant (Traccar Client 9 and later): `device_id`,
/// `location.timestamp`, `location.coords` (speed m/s, negative = unknown),
/// `location.battery` (level 0–1, negative = unknown).
pub fn parse_json(bytes: &[u8], now: DateTime<Utc>) -> Result<OsmAndFix, Problems> {
    let obj = crate::codec::object(bytes, MAX_JSON_BYTES.min(MAX_MESSAGE_BYTES))?;
    let mut p = Problems::default();
    let mut top = crate::codec::Fields { obj: &obj, prefix: "", problems: &mut p };
    let device_id = match top.get("device_id", true).cloned() {
        Some(Value::String(s)) => check_device_id("device_id", &s, top.problems),
        // Some clients send a numeric id.
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(other) => {
            let kind = crate::codec::kind(&other);
            top.problems.push("invalid_type", "device_id", format!("device_id must be a string, got {kind}"));
            None
        }
        None => None,
    };
    let location = sub(&mut top, "location");
    let mut fix = OsmAndFix::new(device_id.clone().unwrap_or_default(), now);
    if let Some(location) = &location {
        let mut loc = crate::codec::Fields { obj: location, prefix: "location.", problems: &mut p };
        if let Some(t) = loc.string("timestamp", false) {
            fix.at = parse_timestamp("location.timestamp", &t, loc.problems).unwrap_or(now);
        }
        let coords = sub(&mut loc, "coords");
        let battery = sub(&mut loc, "battery");
        for key in ["is_moving", "odometer", "event", "mock", "alarm"] {
            if let Some(v) = loc.get(key, false).and_then(scalar) {
                fix.attribute(key, &v);
            }
        }
        if let Some(Value::Object(activity)) = location.get("activity")
            && let Some(v) = activity.get("type").and_then(scalar)
        {
            fix.attribute("activity", &v);
        }
        if let Some(Value::Object(extras)) = location.get("extras") {
            for (k, v) in extras {
                if let Some(v) = scalar(v) {
                    fix.attribute(k, &v);
                }
            }
        }
        if let Some(coords) = &coords {
            let mut c = crate::codec::Fields { obj: coords, prefix: "location.coords.", problems: &mut p };
            fix.lat = c.number("latitude", false);
            fix.lon = c.number("longitude", false);
            fix.accuracy_m = c.number("accuracy", false).and_then(known);
            fix.speed_mps = c.number("speed", false).and_then(known);
            fix.heading_deg = c.number("heading", false).and_then(known);
            fix.altitude_m = c.number("altitude", false);
        }
        if let Some(battery) = &battery {
            let mut b = crate::codec::Fields { obj: battery, prefix: "location.battery.", problems: &mut p };
            // A level over 1 is not a fraction (1e308 would even become an
            // infinite percentage): refused, like any value out of range.
            let level = b.number("level", false).and_then(known);
            if let Some(level) = level {
                check_range("location.battery.level", "battery level", level, 0.0, 1.0, "", b.problems);
            }
            fix.battery_pct = level.filter(|l| *l <= 1.0).map(|l| l * 100.0);
            fix.charging = b.boolean("is_charging");
        }
        let has = |key: &str| coords.as_ref().is_some_and(|c| c.get(key).is_some_and(|v| !v.is_null()));
        let present = (has("latitude"), has("longitude"));
        fix.check_position("location.coords.latitude", "location.coords.longitude", present, &mut p);
    }
    match device_id {
        Some(_) if p.is_empty() => Ok(fix),
        _ => Err(p),
    }
}

/// The object at `key`, if it is one; a problem if it is something else.
fn sub(f: &mut crate::codec::Fields<'_>, key: &str) -> Option<Map<String, Value>> {
    match f.get(key, false)?.clone() {
        Value::Object(m) => Some(m),
        other => {
            let path = format!("{}{key}", f.prefix);
            let kind = crate::codec::kind(&other);
            f.problems.push("invalid_type", path.clone(), format!("{path} must be an object, got {kind}"));
            None
        }
    }
}

/// A number, boolean or string as text; other kinds are not attributes.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}
