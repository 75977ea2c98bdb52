//! eoc → CAP: an alert as a CAP 1.2 document valid against the OASIS XSD,
//! and an Atom feed of alerts.
//!
//! # The document
//! One `<info>` (none for a bare cancellation): category `Geo`
//! (earthquake, mudslide), `Met` (flood, avalanche) or `Other`; event in
//! words; urgency, severity, certainty; an eventCode `eoc:hazard` with the
//! eoc hazard (and `OET:v1.2`/`OET-081` for floods); expires, headline,
//! description; `<parameter>`s `EarthquakeMagnitude`, `EarthquakeDepth`
//! (km), `EarthquakeLocation` (`lat,lon`) for earthquakes and
//! `eoc:buffer_m`; one `<area>` whose shapes are the alert's polygons
//! (outer rings only: CAP polygons have no holes, so a hole's ground is
//! included, which errs on the side of warning), its circle, or for an
//! earthquake a circle of the affected radius around the epicentre.
//!
//! `identifier` is the alert id for the first revision and
//! `{alert_id}.r{revision}` after, so that every message of an alert has its
//! own identifier; updates and cancellations reference the first
//! (`sender,alert_id,first_sent`). Times are UTC written `-00:00`, as CAP
//! requires.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::map::{EOC_BUFFER_PARAM, EOC_HAZARD_CODE};
use super::{NS_CAP_1_2, certainty_name, severity_name, urgency_name};
use crate::geometry::AreaGeometry;
use crate::messages::AlertMsg;
use crate::types::{AlertStatus, Hazard, MsgType};

/// The media type of a CAP document.
pub const CAP_MEDIA_TYPE: &str = "application/cap+xml";
/// The media type of an Atom feed.
pub const ATOM_MEDIA_TYPE: &str = "application/atom+xml";

/// What an export needs besides the alert message.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportOptions<'a> {
    /// CAP `<sender>`: this EOC (e.g. `coes.tj`).
    pub sender: &'a str,
    /// When this revision was made: `<sent>`.
    pub sent: DateTime<Utc>,
    /// When the alert was first issued: the time in `<references>`.
    pub first_sent: DateTime<Utc>,
    /// How many messages shaped the alert (1 for a new alert).
    pub revision: u32,
    /// For earthquakes, the radius of the affected area, km; `None` uses
    /// [`felt_radius_km`].
    pub affected_radius_km: Option<f64>,
    /// `<areaDesc>`; `None` describes the area from the hazard.
    pub area_desc: Option<&'a str>,
}

/// A rough radius within which an earthquake of magnitude `m` is felt
/// strongly, km: 10^(0.5·m − 1), about 30 km at M5, 100 km at M6, 300 km
/// at M7. Used only when the caller has no impact computed.
pub fn felt_radius_km(magnitude: f64) -> f64 {
    10f64.powf(0.5 * magnitude - 1.0).clamp(1.0, 1_000.0)
}

/// The CAP identifier of an alert's revision.
pub fn identifier_of(alert_id: &str, revision: u32) -> String {
    let clean = cap_safe(alert_id);
    if revision <= 1 { clean } else { format!("{clean}.r{revision}") }
}

/// An id with every character CAP forbids in identifiers (whitespace,
/// comma, `<`, `&`) replaced by `_`. eoc ids never hold them; this keeps an
/// export valid whatever the id.
fn cap_safe(id: &str) -> String {
    let out: String =
        id.chars().map(|c| if c.is_whitespace() || matches!(c, ',' | '<' | '&') { '_' } else { c }).collect();
    if out.is_empty() { "_".to_owned() } else { out }
}

/// A CAP datetime: UTC, written with the `-00:00` offset CAP requires.
pub fn cap_datetime(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S-00:00").to_string()
}

/// Escapes text for element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry at all are dropped.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

fn element(out: &mut String, indent: &str, name: &str, text: &str) {
    let _ = writeln!(out, "{indent}<{name}>{}</{name}>", escape(text));
}

fn named(out: &mut String, indent: &str, name: &str, value_name: &str, value: &str) {
    let _ = writeln!(
        out,
        "{indent}<{name}><valueName>{}</valueName><value>{}</value></{name}>",
        escape(value_name),
        escape(value)
    );
}

/// The CAP `<category>` of a hazard.
pub fn category_of(hazard: Hazard) -> &'static str {
    match hazard {
        Hazard::Earthquake | Hazard::Mudslide => "Geo",
        Hazard::Flood | Hazard::Avalanche => "Met",
        Hazard::Other => "Other",
    }
}

/// The CAP `<event>` of a hazard.
fn event_of(hazard: Hazard, msg: &AlertMsg) -> String {
    match hazard {
        Hazard::Earthquake => "Earthquake".to_owned(),
        Hazard::Mudslide => "Mudslide".to_owned(),
        Hazard::Flood => "Flood".to_owned(),
        Hazard::Avalanche => "Avalanche".to_owned(),
        Hazard::Other => msg.headline.clone().unwrap_or_else(|| "Other hazard".to_owned()),
    }
}

fn status_of(status: AlertStatus) -> &'static str {
    match status {
        AlertStatus::Actual => "Actual",
        AlertStatus::Exercise => "Exercise",
        AlertStatus::Test => "Test",
        AlertStatus::Draft => "Draft",
    }
}

fn msg_type_of(msg_type: MsgType) -> &'static str {
    match msg_type {
        MsgType::Alert => "Alert",
        MsgType::Update => "Update",
        MsgType::Cancel => "Cancel",
    }
}

/// `lat,lon` pairs of a GeoJSON ring (`[lon, lat]`).
fn cap_ring(ring: &[[f64; 2]]) -> String {
    ring.iter().map(|p| format!("{},{}", p[1], p[0])).collect::<Vec<_>>().join(" ")
}

/// The alert as a CAP 1.2 document.
///
/// `msg.msg_type` decides `msgType`; a revision above 1 with `msg_type`
/// `alert` is written as an Update (the engine keeps the last message, and
/// a later revision replaces the first).
pub fn to_cap_xml(msg: &AlertMsg, opts: &ExportOptions<'_>) -> String {
    let mut out = String::with_capacity(2048);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(out, "<alert xmlns=\"{NS_CAP_1_2}\">");
    let msg_type = match msg.msg_type {
        MsgType::Alert if opts.revision > 1 => MsgType::Update,
        t => t,
    };
    element(&mut out, "  ", "identifier", &identifier_of(&msg.alert_id, opts.revision));
    element(&mut out, "  ", "sender", &cap_safe(opts.sender));
    element(&mut out, "  ", "sent", &cap_datetime(opts.sent));
    element(&mut out, "  ", "status", status_of(msg.status));
    element(&mut out, "  ", "msgType", msg_type_of(msg_type));
    element(&mut out, "  ", "scope", "Public");
    if msg_type != MsgType::Alert {
        let reference = format!(
            "{},{},{}",
            cap_safe(opts.sender),
            identifier_of(&msg.alert_id, 1),
            cap_datetime(opts.first_sent)
        );
        element(&mut out, "  ", "references", &reference);
    }
    if let Some(hazard) = msg.hazard {
        info(&mut out, msg, hazard, opts);
    }
    out.push_str("</alert>\n");
    out
}

fn info(out: &mut String, msg: &AlertMsg, hazard: Hazard, opts: &ExportOptions<'_>) {
    let i = "    ";
    out.push_str("  <info>\n");
    element(out, i, "category", category_of(hazard));
    element(out, i, "event", &event_of(hazard, msg));
    element(out, i, "urgency", urgency_name(msg.urgency));
    element(out, i, "severity", severity_name(msg.severity));
    element(out, i, "certainty", certainty_name(msg.certainty));
    named(out, i, "eventCode", EOC_HAZARD_CODE, hazard.as_str());
    if hazard == Hazard::Flood {
        named(out, i, "eventCode", "OET:v1.2", "OET-081");
    }
    if let Some(expires) = msg.expires_at {
        element(out, i, "expires", &cap_datetime(expires));
    }
    if let Some(h) = &msg.headline {
        element(out, i, "headline", h);
    }
    if let Some(d) = &msg.description {
        element(out, i, "description", d);
    }
    if let Some(eq) = &msg.earthquake {
        named(out, i, "parameter", "EarthquakeMagnitude", &eq.magnitude.to_string());
        if let Some(depth) = eq.depth_km {
            named(out, i, "parameter", "EarthquakeDepth", &depth.to_string());
        }
        named(out, i, "parameter", "EarthquakeLocation", &format!("{},{}", eq.lat, eq.lon));
    }
    if let Some(buffer_m) = msg.buffer_m {
        named(out, i, "parameter", EOC_BUFFER_PARAM, &buffer_m.to_string());
    }
    let mut shapes = String::new();
    let j = "      ";
    let default_desc = match (&msg.earthquake, &msg.area) {
        (Some(eq), _) => {
            let radius_km = opts.affected_radius_km.unwrap_or_else(|| felt_radius_km(eq.magnitude));
            element(&mut shapes, j, "circle", &format!("{},{} {}", eq.lat, eq.lon, radius_km));
            format!("within {radius_km} km of the epicentre {},{}", eq.lat, eq.lon)
        }
        (None, Some(AreaGeometry::Polygon { coordinates })) => {
            if let Some(outer) = coordinates.first() {
                element(&mut shapes, j, "polygon", &cap_ring(outer));
            }
            format!("area of {} alert {}", hazard, msg.alert_id)
        }
        (None, Some(AreaGeometry::MultiPolygon { coordinates })) => {
            for outer in coordinates.iter().filter_map(|rings| rings.first()) {
                element(&mut shapes, j, "polygon", &cap_ring(outer));
            }
            format!("area of {} alert {}", hazard, msg.alert_id)
        }
        (None, Some(AreaGeometry::Circle { lat, lon, radius_m })) => {
            element(&mut shapes, j, "circle", &format!("{lat},{lon} {}", radius_m / 1000.0));
            format!("area of {} alert {}", hazard, msg.alert_id)
        }
        (None, None) => String::new(),
    };
    if !shapes.is_empty() {
        out.push_str("    <area>\n");
        element(out, j, "areaDesc", opts.area_desc.unwrap_or(&default_desc));
        out.push_str(&shapes);
        out.push_str("    </area>\n");
    }
    out.push_str("  </info>\n");
}

/// One alert in the Atom feed.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEntry<'a> {
    /// The alert's current message.
    pub msg: &'a AlertMsg,
    /// Its revision (for the CAP identifier).
    pub revision: u32,
    /// When it was first issued.
    pub published: DateTime<Utc>,
    /// When it last changed.
    pub updated: DateTime<Utc>,
}

/// An Atom feed (RFC 4287) of alerts, one entry per alert linking to its
/// CAP document (`{base_url}/api/v1/alerts/{id}.cap`), as CAP feeds do.
/// `base_url` may be empty: links are then relative to the feed.
pub fn atom_feed(sender: &str, base_url: &str, updated: DateTime<Utc>, entries: &[FeedEntry<'_>]) -> String {
    let base = base_url.trim_end_matches('/');
    let mut out = String::with_capacity(512 + 512 * entries.len());
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str("<feed xmlns=\"http://www.w3.org/2005/Atom\">\n");
    element(&mut out, "  ", "id", &format!("urn:eoc:{}:cap-feed", cap_safe(sender)));
    element(&mut out, "  ", "title", &format!("Active alerts from {sender}"));
    element(&mut out, "  ", "updated", &updated.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let _ = writeln!(out, "  <author><name>{}</name></author>", escape(sender));
    let _ = writeln!(
        out,
        "  <link rel=\"self\" type=\"{ATOM_MEDIA_TYPE}\" href=\"{}\"/>",
        escape(&format!("{base}/api/v1/cap/feed.atom"))
    );
    for e in entries {
        let msg = e.msg;
        let hazard = msg.hazard.unwrap_or(Hazard::Other);
        let identifier = identifier_of(&msg.alert_id, e.revision);
        out.push_str("  <entry>\n");
        element(&mut out, "    ", "id", &format!("urn:eoc:{}:{identifier}", cap_safe(sender)));
        let title = msg
            .headline
            .clone()
            .unwrap_or_else(|| format!("{} alert {}", event_of(hazard, msg), msg.alert_id));
        element(&mut out, "    ", "title", &title);
        element(
            &mut out,
            "    ",
            "published",
            &e.published.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
        element(&mut out, "    ", "updated", &e.updated.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        let _ = writeln!(
            out,
            "    <link rel=\"alternate\" type=\"{CAP_MEDIA_TYPE}\" href=\"{}\"/>",
            escape(&format!("{base}/api/v1/alerts/{}.cap", msg.alert_id))
        );
        let _ = writeln!(out, "    <category term=\"{}\"/>", category_of(hazard));
        let summary = format!(
            "{} {}: urgency {}, severity {}, certainty {}{}",
            status_of(msg.status),
            event_of(hazard, msg),
            urgency_name(msg.urgency),
            severity_name(msg.severity),
            certainty_name(msg.certainty),
            msg.description.as_deref().map(|d| format!(". {d}")).unwrap_or_default()
        );
        element(&mut out, "    ", "summary", &summary);
        out.push_str("  </entry>\n");
    }
    out.push_str("</feed>\n");
    out
}
