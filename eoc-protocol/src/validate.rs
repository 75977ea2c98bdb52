//! Validation: every problem of a message, each with its field path and reason.
//!
//! [`parse`] is the one entry point the server's edges use: bounded size,
//! JSON syntax and types (with the path of the failing field), then the
//! semantic rules of [`Validate`].

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::messages::{
    AlertMsg, Envelope, Inbound, SiteCapacityMsg, TaskAssignMsg, TaskUpdateMsg, TeamPositionMsg,
    TeamStatusMsg,
};
use crate::types::{Hazard, MsgType, TaskState};

/// Largest accepted message body, in bytes. An alert with a detailed
/// polygon is the largest legitimate message; 256 KiB holds about 10,000
/// positions.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Deepest nesting of arrays and objects in a message, the top-level object
/// counting as 1. The deepest legitimate message is an alert with a
/// MultiPolygon area, 6 deep (message, `area`, `coordinates`, polygon,
/// ring, position); 32 leaves room for wrappers around a message and still
/// refuses, with a specific problem, long before serde_json's recursion
/// limit of 128 would.
pub const MAX_JSON_DEPTH: usize = 32;

/// One problem: which field, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FieldError {
    /// Machine-readable code, e.g. `out_of_range`, `required`, `invalid_json`.
    pub code: String,
    /// JSON path of the field, e.g. `area.coordinates[0][3]`; empty for the
    /// whole message.
    pub field: String,
    /// Human-readable reason, lowercase, without a trailing period.
    pub message: String,
}

/// All problems of one message. Never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Problems {
    /// The problems, in field order.
    pub errors: Vec<FieldError>,
}

impl Problems {
    /// Problems holding just this one.
    pub fn one(code: &str, field: impl Into<String>, message: impl Into<String>) -> Problems {
        let mut p = Problems::default();
        p.push(code, field, message);
        p
    }

    /// Records a problem.
    pub fn push(&mut self, code: &str, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError { code: code.to_owned(), field: field.into(), message: message.into() });
    }

    /// Whether no problem was recorded.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// `Ok(())` if empty, else `Err(self)`.
    pub fn into_result(self) -> Result<(), Problems> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl std::fmt::Display for Problems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            if e.field.is_empty() {
                write!(f, "{}", e.message)?;
            } else {
                write!(f, "{}: {}", e.field, e.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// Semantic rules of a message, checked after it parsed.
pub trait Validate {
    /// Records every problem of `self` into `problems`. `now` is the server's
    /// clock, used to refuse timestamps absurdly in the future.
    fn validate(&self, now: DateTime<Utc>, problems: &mut Problems);

    /// The message of well-formed JSON by the quickest route, or `None`,
    /// and then [`parse`] parses it again the careful way to name the field
    /// at fault. When it answers, it answers exactly what serde's parse of
    /// `Self` gives (the protocol fuzz target checks that). The default is
    /// that parse; the messages that phones and site managers send at rate
    /// read a flat twin instead, because serde reads a flattened envelope
    /// through a buffer of every field of the message.
    fn parse_quick(bytes: &[u8]) -> Option<Self>
    where
        Self: Sized + DeserializeOwned,
    {
        serde_json::from_slice(bytes).ok()
    }
}

/// Parses one message without its semantic rules: size and depth bounds
/// ([`MAX_MESSAGE_BYTES`], [`MAX_JSON_DEPTH`]), then JSON
/// with the path of the first type error. For bodies that are completed
/// (from a URL, a topic) before [`parse`]'s rules apply.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problems> {
    check_bounds(bytes)?;
    // Most messages are well formed: parse them straight, and only a
    // failure is parsed again to find the path of the field at fault.
    if let Ok(value) = serde_json::from_slice::<T>(bytes) {
        return Ok(value);
    }
    parse_careful(bytes)
}

/// Refuses a message over [`MAX_MESSAGE_BYTES`] or nested deeper than
/// [`MAX_JSON_DEPTH`].
fn check_bounds(bytes: &[u8]) -> Result<(), Problems> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(Problems::one(
            "too_large",
            "",
            format!("message is {} bytes, the limit is {MAX_MESSAGE_BYTES}", bytes.len()),
        ));
    }
    check_json_depth(bytes)
}

/// Parses `bytes` as `T`, naming the path of the first field at fault.
fn parse_careful<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problems> {
    let mut problems = Problems::default();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = match serde_path_to_error::deserialize(&mut de) {
        Ok(v) => v,
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            let code = if inner.is_syntax() || inner.is_eof() { "invalid_json" } else { "invalid_type" };
            let field = if path == "." { String::new() } else { cut(&path, MAX_FIELD_CHARS) };
            problems.push(code, field, shorten_quotes(&inner.to_string()));
            return Err(problems);
        }
    };
    if let Err(err) = de.end() {
        problems.push("invalid_json", "", err.to_string());
        return Err(problems);
    }
    Ok(value)
}

/// Refuses JSON nested deeper than [`MAX_JSON_DEPTH`] with one `too_deep`
/// problem, before any of it is parsed.
///
/// One pass over the bytes that counts brackets outside strings and stops
/// at the first one past the limit: it costs a few microseconds for the
/// largest message, allocates nothing, and needs no well-formed input
/// (whatever it lets through, serde_json still checks).
pub fn check_json_depth(bytes: &[u8]) -> Result<(), Problems> {
    // No more opening brackets than the limit, anywhere: nothing to look
    // at more closely (a count the compiler vectorises; true of almost
    // every message).
    if bytes.iter().filter(|&&b| b == b'[' || b == b'{').count() <= MAX_JSON_DEPTH {
        return Ok(());
    }
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (at, &b) in bytes.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    let mut problems = Problems::default();
                    problems.push(
                        "too_deep",
                        "",
                        format!(
                            "arrays and objects are nested more than {MAX_JSON_DEPTH} deep at byte {at}, the limit is {MAX_JSON_DEPTH}"
                        ),
                    );
                    return Err(problems);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Parses and validates one message: [`parse_json`], then every semantic
/// problem of [`Validate`].
pub fn parse<T: DeserializeOwned + Validate>(bytes: &[u8], now: DateTime<Utc>) -> Result<T, Problems> {
    check_bounds(bytes)?;
    let value: T = match T::parse_quick(bytes) {
        Some(value) => value,
        None => parse_careful(bytes)?,
    };
    let mut problems = Problems::default();
    value.validate(now, &mut problems);
    problems.into_result().map(|()| value)
}

/// How far ahead of the server's clock a timestamp may be: phones' clocks
/// drift, but a message from the future is a bug or an attack.
pub const MAX_CLOCK_SKEW_S: i64 = 5 * 60;
/// Most characters of an id (`id`, `alert_id`, `team_id`…).
pub const MAX_ID_CHARS: usize = 64;
/// Most characters of an alert headline.
pub const MAX_HEADLINE_CHARS: usize = 256;
/// Most characters of an alert description.
pub const MAX_DESCRIPTION_CHARS: usize = 4_096;
/// Most characters of a note.
pub const MAX_NOTE_CHARS: usize = 1_024;
/// Most entries of a site's `services`.
pub const MAX_SERVICES: usize = 8;
/// Task states a team may move its own task to.
pub const TEAM_TASK_STATES: &[TaskState] = &[
    TaskState::Acknowledged,
    TaskState::EnRoute,
    TaskState::OnSite,
    TaskState::Completed,
    TaskState::Declined,
];

/// The earliest accepted timestamp, 2000-01-01T00:00:00Z: anything older is
/// a phone with an unset clock.
pub fn earliest_timestamp() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(946_684_800, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// At most this many characters of an offending value are quoted in a message.
const QUOTE_CHARS: usize = 64;

fn quote(s: &str) -> String {
    format!("{:?}", clip(s))
}

/// Most characters of a field path in a problem: real paths are a few dozen
/// characters, but a path can hold a key the sender chose.
const MAX_FIELD_CHARS: usize = 256;

/// `s`, cut to `max` characters with an ellipsis.
fn cut(s: &str, max: usize) -> String {
    if s.chars().nth(max).is_none() {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// Most characters of a problem message made from a serde error: the
/// longest real one, an unknown variant with its choices, is about 200.
const MAX_SERDE_MESSAGE_CHARS: usize = 512;

/// `s`'s first [`QUOTE_CHARS`] characters, with an ellipsis if there were more.
fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(QUOTE_CHARS).collect();
    if s.chars().nth(QUOTE_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// A serde error message with the value it quotes cut to [`QUOTE_CHARS`]
/// characters, so that a problem never echoes a long value back (an
/// unknown variant of 200 KiB would otherwise come back whole), and the
/// whole cut to [`MAX_SERDE_MESSAGE_CHARS`].
///
/// An unknown variant or field is quoted raw, `` `…` ``, so its end is the
/// last `` `, expected ``; strings are quoted with Rust's debug escapes,
/// `"…"`, where a backslash escapes the next character.
fn shorten_quotes(message: &str) -> String {
    for prefix in ["unknown variant `", "unknown field `"] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some(end) = rest.rfind("`, expected")
        {
            let short = format!("{prefix}{}{}", clip(&rest[..end]), &rest[end..]);
            return cut(&short, MAX_SERDE_MESSAGE_CHARS);
        }
    }
    let mut out = String::with_capacity(message.len().min(MAX_SERDE_MESSAGE_CHARS));
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '"' {
            continue;
        }
        let mut quoted = String::new();
        let mut escaped = false;
        let mut closed = false;
        for q in chars.by_ref() {
            if !escaped && q == '"' {
                closed = true;
                break;
            }
            escaped = !escaped && q == '\\';
            quoted.push(q);
        }
        out.push_str(&clip(&quoted));
        if closed {
            out.push('"');
        }
    }
    cut(&out, MAX_SERDE_MESSAGE_CHARS)
}

/// Checks the protocol version.
pub fn check_version(field: &str, v: u32, problems: &mut Problems) {
    if v != crate::PROTOCOL_VERSION {
        problems.push(
            "unsupported_version",
            field,
            format!("version {v} is not supported, expected {}", crate::PROTOCOL_VERSION),
        );
    }
}

/// Checks an id: 1–64 characters of `A-Z a-z 0-9 . _ : -`.
pub fn check_id(field: &str, id: &str, problems: &mut Problems) {
    if id.is_empty() {
        problems.push("required", field, format!("{field} must not be empty"));
        return;
    }
    let chars = id.chars().count();
    if chars > MAX_ID_CHARS {
        problems.push(
            "too_long",
            field,
            format!("{field} {} is {chars} characters, at most {MAX_ID_CHARS} allowed", quote(id)),
        );
        return;
    }
    if let Some((at, bad)) = id
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        problems.push(
            "invalid_format",
            field,
            format!(
                "{field} {} has {bad:?} at character {}, allowed are A-Z a-z 0-9 . _ : -",
                quote(id),
                at + 1
            ),
        );
    }
}

/// Builds a valid message id from parts that may hold any characters (a
/// phone's user and device names, a fix time), for messages that edges make
/// from other formats: parts are joined with `:`, characters outside the id
/// alphabet become `_`, and an id longer than 64 characters keeps its first
/// 47 and a 16-digit hash of the whole, so that the same parts always give
/// the same id (which is what deduplication needs).
pub fn message_id(parts: &[&str]) -> String {
    let joined = parts.join(":");
    let clean: String = joined
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-') { c } else { '_' })
        .collect();
    if clean.is_empty() {
        return "_".to_owned();
    }
    if clean.len() <= MAX_ID_CHARS {
        return clean;
    }
    // FNV-1a: stable across Rust releases, unlike `DefaultHasher`.
    let hash = joined
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{}-{hash:016x}", &clean[..47])
}

/// Checks an optional id.
fn check_opt_id(field: &str, id: Option<&String>, problems: &mut Problems) {
    if let Some(id) = id {
        check_id(field, id, problems);
    }
}

/// Checks a timestamp: not more than [`MAX_CLOCK_SKEW_S`] after `now`, not
/// before 2000-01-01.
pub fn check_time(field: &str, t: DateTime<Utc>, now: DateTime<Utc>, problems: &mut Problems) {
    let ahead = t.signed_duration_since(now).num_seconds();
    if ahead > MAX_CLOCK_SKEW_S {
        problems.push(
            "in_future",
            field,
            format!(
                "{field} {} is {ahead} s after the server clock {}, at most {MAX_CLOCK_SKEW_S} s allowed",
                t.to_rfc3339(),
                now.to_rfc3339()
            ),
        );
    } else {
        check_not_ancient(field, t, problems);
    }
}

/// Checks that a timestamp is not before 2000-01-01 (a phone with an unset
/// clock).
pub fn check_not_ancient(field: &str, t: DateTime<Utc>, problems: &mut Problems) {
    if t < earliest_timestamp() {
        problems.push(
            "out_of_range",
            field,
            format!("{field} {} is before 2000-01-01T00:00:00Z", t.to_rfc3339()),
        );
    }
}

/// Checks that `x` is finite and within `lo..=hi`. `what` names the value in
/// the message and `unit` follows the range (may be empty).
pub fn check_range(field: &str, what: &str, x: f64, lo: f64, hi: f64, unit: &str, problems: &mut Problems) {
    if !x.is_finite() {
        problems.push("not_finite", field, format!("{what} is not a finite number"));
    } else if x < lo || x > hi {
        let unit = if unit.is_empty() { String::new() } else { format!(" {unit}") };
        problems.push("out_of_range", field, format!("{what} {x} is not within {lo}..{hi}{unit}"));
    }
}

fn check_opt_range(field: &str, x: Option<f64>, lo: f64, hi: f64, unit: &str, problems: &mut Problems) {
    if let Some(x) = x {
        check_range(field, field, x, lo, hi, unit, problems);
    }
}

/// Checks a latitude: finite, −90..90.
pub fn check_lat(field: &str, lat: f64, problems: &mut Problems) {
    check_range(field, "latitude", lat, -90.0, 90.0, "", problems);
}

/// Checks a longitude: finite, −180..180.
pub fn check_lon(field: &str, lon: f64, problems: &mut Problems) {
    check_range(field, "longitude", lon, -180.0, 180.0, "", problems);
}

/// Checks the length of a free text, in characters.
pub fn check_text(field: &str, text: Option<&String>, max_chars: usize, problems: &mut Problems) {
    if let Some(text) = text {
        // Counting stops just past the limit: the body is bounded anyway,
        // but there is no need to walk all of it.
        let chars = text.chars().take(max_chars + 1).count();
        if chars > max_chars {
            problems.push(
                "too_long",
                field,
                format!("{field} is {} characters, at most {max_chars} allowed", text.chars().count()),
            );
        }
    }
}

fn check_envelope(e: &Envelope, now: DateTime<Utc>, problems: &mut Problems) {
    check_version("v", e.v, problems);
    check_id("id", &e.id, problems);
    check_time("ts", e.ts, now, problems);
}

impl Validate for AlertMsg {
    fn validate(&self, now: DateTime<Utc>, problems: &mut Problems) {
        check_envelope(&self.envelope, now, problems);
        check_id("alert_id", &self.alert_id, problems);
        match self.hazard {
            None if self.msg_type != MsgType::Cancel => {
                problems.push("required", "hazard", "hazard is required unless msg_type is cancel");
            }
            Some(Hazard::Earthquake) => {
                if self.earthquake.is_none() {
                    problems.push(
                        "required",
                        "earthquake",
                        "earthquake source is required for hazard earthquake",
                    );
                }
                if self.area.is_some() {
                    problems.push(
                        "not_allowed",
                        "area",
                        "area is not allowed for hazard earthquake, give the earthquake source",
                    );
                }
            }
            Some(h @ (Hazard::Mudslide | Hazard::Flood | Hazard::Avalanche)) => {
                if self.area.is_none() {
                    problems.push("required", "area", format!("area is required for hazard {h}"));
                }
                if self.earthquake.is_some() {
                    problems.push(
                        "not_allowed",
                        "earthquake",
                        format!("earthquake is not allowed for hazard {h}"),
                    );
                }
            }
            _ => {}
        }
        check_text("headline", self.headline.as_ref(), MAX_HEADLINE_CHARS, problems);
        check_text("description", self.description.as_ref(), MAX_DESCRIPTION_CHARS, problems);
        if let Some(expires_at) = self.expires_at {
            // An expiry lies in the future by nature: only the floor and
            // its order against `ts` apply.
            check_not_ancient("expires_at", expires_at, problems);
            if expires_at <= self.envelope.ts {
                problems.push(
                    "conflict",
                    "expires_at",
                    format!(
                        "expires_at {} is not after ts {}",
                        expires_at.to_rfc3339(),
                        self.envelope.ts.to_rfc3339()
                    ),
                );
            }
        }
        if let Some(eq) = &self.earthquake {
            check_lat("earthquake.lat", eq.lat, problems);
            check_lon("earthquake.lon", eq.lon, problems);
            check_opt_range("earthquake.depth_km", eq.depth_km, 0.0, 700.0, "km", problems);
            check_range("earthquake.magnitude", "magnitude", eq.magnitude, 0.0, 10.0, "", problems);
        }
        if let Some(area) = &self.area {
            area.validate_into("area", problems);
        }
        check_opt_range("buffer_m", self.buffer_m, 0.0, 50_000.0, "m", problems);
        if let Some(xml) = &self.cap_xml
            && xml.len() > crate::cap::MAX_CAP_BYTES
        {
            problems.push(
                "too_long",
                "cap_xml",
                format!("cap_xml is {} bytes, at most {} allowed", xml.len(), crate::cap::MAX_CAP_BYTES),
            );
        }
    }
}

impl Validate for TeamPositionMsg {
    fn parse_quick(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice::<crate::messages::flat::Position>(bytes).ok().map(Self::from)
    }

    fn validate(&self, now: DateTime<Utc>, problems: &mut Problems) {
        check_envelope(&self.envelope, now, problems);
        check_opt_id("team_id", self.team_id.as_ref(), problems);
        check_lat("lat", self.lat, problems);
        check_lon("lon", self.lon, problems);
        check_opt_range("accuracy_m", self.accuracy_m, 0.0, 100_000.0, "m", problems);
        if let Some(at) = self.at {
            check_time("at", at, now, problems);
        }
        check_opt_range("battery_pct", self.battery_pct, 0.0, 100.0, "%", problems);
        check_opt_range("speed_mps", self.speed_mps, 0.0, 1_000.0, "m/s", problems);
        check_opt_range("heading_deg", self.heading_deg, 0.0, 360.0, "degrees", problems);
        check_opt_range("altitude_m", self.altitude_m, -500.0, 9_000.0, "m", problems);
    }
}

impl Validate for TeamStatusMsg {
    fn parse_quick(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice::<crate::messages::flat::Status>(bytes).ok().map(Self::from)
    }

    fn validate(&self, now: DateTime<Utc>, problems: &mut Problems) {
        check_envelope(&self.envelope, now, problems);
        check_opt_id("team_id", self.team_id.as_ref(), problems);
        check_opt_range("battery_pct", self.battery_pct, 0.0, 100.0, "%", problems);
        check_text("note", self.note.as_ref(), MAX_NOTE_CHARS, problems);
    }
}

impl Validate for SiteCapacityMsg {
    fn parse_quick(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice::<crate::messages::flat::Capacity>(bytes).ok().map(Self::from)
    }

    fn validate(&self, now: DateTime<Utc>, problems: &mut Problems) {
        check_envelope(&self.envelope, now, problems);
        check_opt_id("site_id", self.site_id.as_ref(), problems);
        if self.capacity.is_none()
            && self.occupancy.is_none()
            && self.status.is_none()
            && self.services.is_none()
        {
            problems.push(
                "required",
                "",
                "at least one of capacity, occupancy, status, services is required",
            );
        }
        for (field, value) in [("capacity", self.capacity), ("occupancy", self.occupancy)] {
            if let Some(n) = value
                && !(0..=1_000_000).contains(&n)
            {
                problems.push("out_of_range", field, format!("{field} {n} is not within 0..1000000 persons"));
            }
        }
        if let Some(services) = &self.services {
            if services.len() > MAX_SERVICES {
                problems.push(
                    "too_many",
                    "services",
                    format!("services has {} entries, at most {MAX_SERVICES} allowed", services.len()),
                );
            } else {
                for (i, s) in services.iter().enumerate() {
                    if let Some(first) = services[..i].iter().position(|t| t == s) {
                        problems.push(
                            "conflict",
                            format!("services[{i}]"),
                            format!("service {s} is listed twice, first at services[{first}]"),
                        );
                    }
                }
            }
        }
        check_text("note", self.note.as_ref(), MAX_NOTE_CHARS, problems);
    }
}

impl Validate for TaskUpdateMsg {
    fn validate(&self, now: DateTime<Utc>, problems: &mut Problems) {
        check_envelope(&self.envelope, now, problems);
        check_opt_id("task_id", self.task_id.as_ref(), problems);
        if !TEAM_TASK_STATES.contains(&self.state) {
            problems.push(
                "not_allowed",
                "state",
                format!(
                    "state {} cannot be set by a team, expected one of acknowledged, en_route, on_site, completed, declined",
                    self.state
                ),
            );
        }
        check_text("note", self.note.as_ref(), MAX_NOTE_CHARS, problems);
    }
}

impl Validate for TaskAssignMsg {
    fn validate(&self, now: DateTime<Utc>, problems: &mut Problems) {
        check_envelope(&self.envelope, now, problems);
        check_id("team_id", &self.team_id, problems);
        match (&self.village_id, &self.site_id) {
            (None, None) => {
                problems.push("required", "village_id", "one of village_id and site_id is required");
            }
            (Some(_), Some(_)) => {
                problems.push("conflict", "site_id", "give either village_id or site_id, not both");
            }
            _ => {}
        }
        check_opt_id("village_id", self.village_id.as_ref(), problems);
        check_opt_id("site_id", self.site_id.as_ref(), problems);
        check_opt_id("alert_id", self.alert_id.as_ref(), problems);
        check_text("note", self.note.as_ref(), MAX_NOTE_CHARS, problems);
    }
}

impl Validate for Inbound {
    fn validate(&self, now: DateTime<Utc>, problems: &mut Problems) {
        match self {
            Inbound::Alert(m) => m.validate(now, problems),
            Inbound::TeamPosition(m) => m.validate(now, problems),
            Inbound::TeamStatus(m) => m.validate(now, problems),
            Inbound::SiteCapacity(m) => m.validate(now, problems),
            Inbound::TaskUpdate(m) => m.validate(now, problems),
            Inbound::TaskAssign(m) => m.validate(now, problems),
        }
    }
}
