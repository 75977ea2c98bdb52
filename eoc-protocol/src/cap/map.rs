//! CAP → eoc: what a [`CapAlert`] means as an [`AlertMsg`].
//!
//! # The rules
//! - **Which info.** An alert may carry several `<info>` blocks (one per
//!   language). The first whose hazard eoc models is used; otherwise the
//!   first. Text, urgency, severity, certainty, expiry, parameters and
//!   areas come from that block only.
//! - **Hazard**, first match wins:
//!   1. `<eventCode>`: `valueName` `eoc:hazard` with an eoc hazard name (what
//!      eoc's own export writes), or an OASIS Event Terms List code
//!      (`valueName` starting with `OET`): only `OET-081` (flood) is used,
//!      the one code verified against the list; others fall through.
//!   2. `<event>` words, English and Russian: earthquake, quake, seismic,
//!      землетрясение → earthquake; avalanche, лавина → avalanche;
//!      mudslide, landslide, mudflow, mud flow, debris flow, sel, сель,
//!      селевой, оползень → mudslide; flood, flash flood, наводнение,
//!      паводок, половодье → flood.
//!   3. `<category>` as fallback: `Geo` with an earthquake magnitude
//!      parameter → earthquake.
//!   4. Anything else (a thunderstorm, a heat wave) → `other`: kept and
//!      shown, never matched or dispatched.
//! - **Earthquake** parameters (`valueName`, case-insensitive):
//!   magnitude from `EarthquakeMagnitude`, `magnitude` or `mag`; depth in
//!   km from `EarthquakeDepth`, `depth_km` or `depth` (a trailing `km` is
//!   allowed); epicentre `lat,lon` from `EarthquakeLocation`, `epicentre`
//!   or `epicenter`, else the centre of the first `<circle>`. An
//!   earthquake without magnitude or epicentre is kept as `other`, with a
//!   note saying why.
//! - **Geometry** (area hazards and `other`): one `<circle>` → a circle
//!   (`radius_m` = km × 1000); one `<polygon>` → a Polygon; several
//!   polygons (in one or several areas) → a MultiPolygon; several circles,
//!   or circles with polygons → every circle becomes a 64-sided polygon
//!   drawn around it (so it covers the circle) and the shapes a
//!   MultiPolygon. Shapes that overlap are merged (union), as eoc areas
//!   may not overlap themselves. CAP `lat,lon` becomes GeoJSON `[lon, lat]`.
//!   An area hazard without a polygon or circle (geocodes only) is kept as
//!   `other`, with a note. Parameter `eoc:buffer_m` gives `buffer_m`.
//! - **Status**: Actual, Exercise, Test, Draft map to themselves. `System`
//!   messages (heartbeats, network functions) make no alert: they are
//!   accepted and logged.
//! - **msgType**: Alert makes an alert whose id is the CAP `identifier`
//!   (characters outside the id alphabet become `_`, long ones are
//!   shortened with a hash: [`alert_id_of`]). Update and Cancel name the
//!   eoc alert through `<references>`: the newest reference that the
//!   `resolve` callback knows (the server knows every alert's CAP
//!   identifiers), else the identifier of the first reference. Ack and
//!   Error make no alert: accepted and logged.
//! - The message id (for deduplication of retries) is
//!   `cap:{sender}:{identifier}` ([`message_id_of`]); `ts` is `<sent>`.
//! - Headlines over 256 characters and descriptions over 4,096 are cut,
//!   with a note; an `other` alert without a headline shows its `<event>`.

use chrono::{DateTime, Utc};
use geo::{BooleanOps, Coord, LineString, MultiPolygon, Polygon};

use super::{
    CapAlert, CapCircle, CapMsgType, CapPoint, Category, Info, MAX_CAP_BYTES, NamedValue, Reference, Status,
};
use crate::PROTOCOL_VERSION;
use crate::geometry::{AreaGeometry, EarthquakeSource, Position};
use crate::messages::{AlertMsg, Envelope};
use crate::types::{AlertStatus, Hazard, MsgType};
use crate::validate::{MAX_DESCRIPTION_CHARS, MAX_HEADLINE_CHARS, Problems, Validate, message_id};

/// What a CAP message means to eoc.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// An alert message for the writer, with notes on what was changed or
    /// dropped on the way.
    Alert {
        /// The message.
        msg: Box<AlertMsg>,
        /// Lowercase remarks for the sender (a downgraded hazard, cut text).
        notes: Vec<String>,
    },
    /// Accepted and logged, no alert: Ack, Error, System.
    NoAlert {
        /// Why, lowercase.
        reason: String,
    },
}

/// The `valueName` of the eventCode and the parameter prefix eoc writes.
pub const EOC_HAZARD_CODE: &str = "eoc:hazard";
/// The parameter carrying `buffer_m`.
pub const EOC_BUFFER_PARAM: &str = "eoc:buffer_m";
/// The parameter names read as an earthquake's magnitude.
pub const MAGNITUDE_NAMES: &[&str] = &["EarthquakeMagnitude", "magnitude", "mag"];
/// The parameter names read as an earthquake's depth, km.
pub const DEPTH_NAMES: &[&str] = &["EarthquakeDepth", "depth_km", "depth"];
/// The parameter names read as an earthquake's epicentre, `lat,lon`.
pub const EPICENTRE_NAMES: &[&str] = &["EarthquakeLocation", "epicentre", "epicenter"];
/// Sides of the polygon that stands for a circle among other shapes.
pub const CIRCLE_SIDES: usize = 64;
/// Mean Earth radius, metres (IUGG), for drawing circles as polygons.
const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// The eoc alert id for a CAP identifier: the same identifier always gives
/// the same id.
pub fn alert_id_of(identifier: &str) -> String {
    message_id(&[identifier])
}

/// The eoc message id of a CAP message: `cap:{sender}:{identifier}`,
/// sanitised, so that a resent message is a duplicate.
pub fn message_id_of(sender: &str, identifier: &str) -> String {
    message_id(&["cap", sender, identifier])
}

/// Maps a validated CAP alert to an eoc alert message.
///
/// `xml` is the original document, kept in `cap_xml`; `now` is the
/// server's clock (for the envelope's rules); `resolve` names the eoc alert
/// a CAP reference stands for, if the caller knows it.
pub fn to_alert_msg(
    cap: &CapAlert,
    xml: Option<&str>,
    now: DateTime<Utc>,
    resolve: &dyn Fn(&Reference) -> Option<String>,
) -> Result<Mapped, Problems> {
    match cap.msg_type {
        CapMsgType::Ack | CapMsgType::Error => {
            return Ok(Mapped::NoAlert {
                reason: format!("cap {} messages are logged, they make no alert", cap.msg_type.as_str()),
            });
        }
        _ => {}
    }
    let status = match cap.status {
        Status::Actual => AlertStatus::Actual,
        Status::Exercise => AlertStatus::Exercise,
        Status::Test => AlertStatus::Test,
        Status::Draft => AlertStatus::Draft,
        Status::System => {
            return Ok(Mapped::NoAlert {
                reason: "cap System messages serve the alerting network, they are logged and make no alert"
                    .to_owned(),
            });
        }
    };
    let msg_type = match cap.msg_type {
        CapMsgType::Update => MsgType::Update,
        CapMsgType::Cancel => MsgType::Cancel,
        _ => MsgType::Alert,
    };
    let alert_id = match msg_type {
        MsgType::Alert => alert_id_of(&cap.identifier),
        _ => cap
            .references
            .iter()
            .rev()
            .find_map(resolve)
            .or_else(|| cap.references.first().map(|r| alert_id_of(&r.identifier)))
            .unwrap_or_else(|| alert_id_of(&cap.identifier)),
    };

    let mut p = Problems::default();
    let mut notes = Vec::new();
    let chosen = primary_info(&cap.infos);
    let mut msg = AlertMsg {
        envelope: Envelope {
            v: PROTOCOL_VERSION,
            id: message_id_of(&cap.sender, &cap.identifier),
            ts: cap.sent.with_timezone(&Utc),
        },
        alert_id,
        msg_type,
        status,
        hazard: None,
        urgency: crate::types::Urgency::Unknown,
        severity: crate::types::Severity::Unknown,
        certainty: crate::types::Certainty::Unknown,
        headline: None,
        description: None,
        expires_at: None,
        earthquake: None,
        area: None,
        buffer_m: None,
        cap_xml: xml.filter(|x| x.len() <= MAX_CAP_BYTES).map(str::to_owned),
    };
    let mut geometry_path = String::from("alert");
    let info_path = chosen.map_or_else(|| "alert/info".to_owned(), |(i, _)| format!("alert/info[{i}]"));
    match (chosen, msg_type) {
        (None, MsgType::Cancel) => {}
        (None, _) => {
            p.push(
                "required",
                "alert/info",
                format!("an {} needs an info block naming the hazard", cap.msg_type.as_str()),
            );
        }
        (Some((_, info)), _) => {
            msg.urgency = info.urgency;
            msg.severity = info.severity;
            msg.certainty = info.certainty;
            msg.expires_at = info.expires.map(|t| t.with_timezone(&Utc));
            msg.headline = info.headline.clone().map(|h| cut(h, MAX_HEADLINE_CHARS, "headline", &mut notes));
            msg.description =
                info.description.clone().map(|d| cut(d, MAX_DESCRIPTION_CHARS, "description", &mut notes));
            if msg_type != MsgType::Cancel {
                let hazard = hazard_of(info);
                geometry_path = fill_hazard(&mut msg, hazard, info, &info_path, &mut notes, &mut p);
                if msg.hazard == Some(Hazard::Other) && msg.headline.is_none() {
                    msg.headline = Some(cut(info.event.clone(), MAX_HEADLINE_CHARS, "event", &mut notes));
                }
            }
        }
    }
    if !p.is_empty() {
        return Err(p);
    }
    let mut checked = Problems::default();
    msg.validate(now, &mut checked);
    for e in checked.errors {
        let field = cap_path(&e.field, &info_path, &geometry_path);
        p.push(&e.code, field, e.message);
    }
    p.into_result().map(|()| Mapped::Alert { msg: Box::new(msg), notes })
}

/// The alert's element path for a field of the [`AlertMsg`] it became.
fn cap_path(field: &str, info: &str, geometry: &str) -> String {
    let head = field.split(['.', '[']).next().unwrap_or_default();
    match head {
        "ts" => "alert/sent".to_owned(),
        "id" | "alert_id" => "alert/identifier".to_owned(),
        "expires_at" => format!("{info}/expires"),
        "headline" => format!("{info}/headline"),
        "description" => format!("{info}/description"),
        "earthquake" | "buffer_m" => format!("{info}/parameter"),
        "area" => geometry.to_owned(),
        _ => "alert".to_owned(),
    }
}

fn cut(text: String, max_chars: usize, what: &str, notes: &mut Vec<String>) -> String {
    if text.chars().nth(max_chars).is_none() {
        return text;
    }
    notes.push(format!("{what} cut to {max_chars} characters"));
    let mut out: String = text.chars().take(max_chars - 1).collect();
    out.push('…');
    out
}

/// The info block that shapes the alert, with its index.
fn primary_info(infos: &[Info]) -> Option<(usize, &Info)> {
    infos
        .iter()
        .enumerate()
        .find(|(_, i)| hazard_of(i) != Hazard::Other)
        .or_else(|| infos.iter().enumerate().next())
}

/// Sets hazard, earthquake, area and buffer; returns the element path that
/// geometry problems are reported under.
fn fill_hazard(
    msg: &mut AlertMsg,
    hazard: Hazard,
    info: &Info,
    info_path: &str,
    notes: &mut Vec<String>,
    p: &mut Problems,
) -> String {
    msg.hazard = Some(hazard);
    msg.buffer_m =
        parameter(&info.parameters, &[EOC_BUFFER_PARAM]).and_then(|v| number(v, p, info_path, "buffer"));
    if hazard == Hazard::Earthquake {
        match earthquake(info, info_path, p) {
            Some(source) => {
                msg.earthquake = Some(source);
                return format!("{info_path}/parameter");
            }
            None if p.is_empty() => {
                notes.push(
                    "an earthquake needs a magnitude parameter (EarthquakeMagnitude) and an epicentre (EarthquakeLocation or a circle): kept as other, without impact"
                        .to_owned(),
                );
                msg.hazard = Some(Hazard::Other);
            }
            None => return format!("{info_path}/parameter"),
        }
    }
    let (area, path) = geometry(info, info_path);
    msg.area = area;
    if msg.area.is_none() && msg.hazard != Some(Hazard::Other) {
        notes.push(format!("a {hazard} alert needs a polygon or circle: kept as other, without impact"));
        msg.hazard = Some(Hazard::Other);
    }
    path
}

fn parameter<'a>(params: &'a [NamedValue], names: &[&str]) -> Option<&'a str> {
    params
        .iter()
        .find(|nv| names.iter().any(|n| nv.value_name.eq_ignore_ascii_case(n)))
        .map(|nv| nv.value.as_str())
}

fn number(value: &str, p: &mut Problems, info_path: &str, what: &str) -> Option<f64> {
    let trimmed = value.trim();
    let trimmed = trimmed.strip_suffix("km").unwrap_or(trimmed).trim_end();
    match trimmed.parse::<f64>().ok().filter(|x| x.is_finite()) {
        Some(x) => Some(x),
        None => {
            p.push(
                "invalid_value",
                format!("{info_path}/parameter"),
                format!("{what} {value:?} is not a number"),
            );
            None
        }
    }
}

/// The earthquake source, or `None` when magnitude or epicentre is missing
/// (a problem is recorded only when one is present but malformed).
fn earthquake(info: &Info, info_path: &str, p: &mut Problems) -> Option<EarthquakeSource> {
    let magnitude =
        parameter(&info.parameters, MAGNITUDE_NAMES).and_then(|v| number(v, p, info_path, "magnitude"));
    let depth_km = parameter(&info.parameters, DEPTH_NAMES).and_then(|v| number(v, p, info_path, "depth"));
    let epicentre = match parameter(&info.parameters, EPICENTRE_NAMES) {
        Some(v) => {
            let pt = v.trim().split_once(',').and_then(|(lat, lon)| {
                let lat = lat.trim().parse::<f64>().ok().filter(|x| x.is_finite())?;
                let lon = lon.trim().parse::<f64>().ok().filter(|x| x.is_finite())?;
                Some(CapPoint { lat, lon })
            });
            if pt.is_none() {
                p.push(
                    "invalid_value",
                    format!("{info_path}/parameter"),
                    format!("epicentre {v:?} is not lat,lon"),
                );
            }
            pt
        }
        None => info.areas.iter().flat_map(|a| a.circles.first()).next().map(|c| c.center),
    };
    let (magnitude, at) = (magnitude?, epicentre?);
    Some(EarthquakeSource { lat: at.lat, lon: at.lon, depth_km, magnitude })
}

/// The hazard an info block describes.
pub fn hazard_of(info: &Info) -> Hazard {
    for code in &info.event_codes {
        if code.value_name.eq_ignore_ascii_case(EOC_HAZARD_CODE)
            && let Ok(h) = code.value.trim().parse::<Hazard>()
        {
            return h;
        }
        if code.value_name.trim().to_ascii_uppercase().starts_with("OET") && code.value.trim() == "OET-081" {
            return Hazard::Flood;
        }
    }
    if let Some(h) = hazard_of_words(&info.event) {
        return h;
    }
    if info.categories.contains(&Category::Geo) && parameter(&info.parameters, MAGNITUDE_NAMES).is_some() {
        return Hazard::Earthquake;
    }
    Hazard::Other
}

/// The hazard named by an `<event>` text, English or Russian.
pub fn hazard_of_words(event: &str) -> Option<Hazard> {
    let text = event.to_lowercase();
    let words: Vec<&str> = text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
    let has = |stems: &[&str]| words.iter().any(|w| stems.iter().any(|s| w.starts_with(s)));
    let is = |exact: &[&str]| words.iter().any(|w| exact.contains(w));
    if has(&["earthquake", "quake", "seismic", "землетрясен", "сейсм"]) {
        return Some(Hazard::Earthquake);
    }
    if has(&["avalanche", "лавин"]) {
        return Some(Hazard::Avalanche);
    }
    if has(&["mudslide", "landslide", "mudflow", "debrisflow", "селев", "оползн", "оползен"])
        || is(&["sel", "сель", "сели", "селя", "селей"])
        || text.contains("mud flow")
        || text.contains("debris flow")
    {
        return Some(Hazard::Mudslide);
    }
    if has(&["flood", "наводнен", "паводк", "паводок", "половод"]) {
        return Some(Hazard::Flood);
    }
    None
}

/// The area of an info block and the element path its problems are
/// reported under.
fn geometry(info: &Info, info_path: &str) -> (Option<AreaGeometry>, String) {
    let mut polygons: Vec<(Vec<CapPoint>, String)> = Vec::new();
    let mut circles: Vec<(CapCircle, String)> = Vec::new();
    for (a, area) in info.areas.iter().enumerate() {
        for (k, poly) in area.polygons.iter().enumerate() {
            polygons.push((poly.clone(), format!("{info_path}/area[{a}]/polygon[{k}]")));
        }
        for (k, c) in area.circles.iter().enumerate() {
            circles.push((*c, format!("{info_path}/area[{a}]/circle[{k}]")));
        }
    }
    let all_path =
        if info.areas.len() == 1 { format!("{info_path}/area[0]") } else { format!("{info_path}/area") };
    match (polygons.as_slice(), circles.as_slice()) {
        ([], []) => (None, all_path),
        ([], [(c, path)]) => (
            Some(AreaGeometry::Circle {
                lat: c.center.lat,
                lon: c.center.lon,
                radius_m: c.radius_km * 1000.0,
            }),
            path.clone(),
        ),
        ([(poly, path)], []) => (Some(AreaGeometry::Polygon { coordinates: vec![ring(poly)] }), path.clone()),
        _ => {
            let mut shapes: Vec<Vec<Vec<Position>>> =
                polygons.iter().map(|(poly, _)| vec![ring(poly)]).collect();
            shapes.extend(circles.iter().map(|(c, _)| vec![circle_ring(c)]));
            let multi = AreaGeometry::MultiPolygon { coordinates: shapes };
            let mut problems = Problems::default();
            multi.validate_into("area", &mut problems);
            if problems.is_empty() {
                return (Some(multi), all_path);
            }
            (Some(union(&multi)), all_path)
        }
    }
}

/// CAP points as a GeoJSON ring: `[lon, lat]`.
fn ring(points: &[CapPoint]) -> Vec<Position> {
    points.iter().map(|pt| [pt.lon, pt.lat]).collect()
}

/// A closed ring of [`CIRCLE_SIDES`] sides around a circle: its vertices lie
/// at radius / cos(π/n), so the polygon covers the circle.
fn circle_ring(c: &CapCircle) -> Vec<Position> {
    let n = CIRCLE_SIDES;
    let radius_m = c.radius_km * 1000.0 / (std::f64::consts::PI / n as f64).cos();
    let delta = radius_m / EARTH_RADIUS_M;
    let (lat1, lon1) = (c.center.lat.to_radians(), c.center.lon.to_radians());
    let mut out: Vec<Position> = (0..n)
        .map(|k| {
            let bearing = 2.0 * std::f64::consts::PI * k as f64 / n as f64;
            let lat2 = (lat1.sin() * delta.cos() + lat1.cos() * delta.sin() * bearing.cos()).asin();
            let lon2 = lon1
                + (bearing.sin() * delta.sin() * lat1.cos()).atan2(delta.cos() - lat1.sin() * lat2.sin());
            let lon2 = (lon2.to_degrees() + 540.0).rem_euclid(360.0) - 180.0;
            [lon2, lat2.to_degrees().clamp(-90.0, 90.0)]
        })
        .collect();
    if let Some(first) = out.first().copied() {
        out.push(first);
    }
    out
}

/// The union of a MultiPolygon's polygons, as a Polygon when one remains.
fn union(area: &AreaGeometry) -> AreaGeometry {
    let AreaGeometry::MultiPolygon { coordinates } = area else { return area.clone() };
    let polygons: Vec<Polygon<f64>> = coordinates
        .iter()
        .map(|rings| {
            let mut rings = rings
                .iter()
                .map(|r| LineString::from(r.iter().map(|p| Coord { x: p[0], y: p[1] }).collect::<Vec<_>>()));
            let exterior = rings.next().unwrap_or_else(|| LineString::new(vec![]));
            Polygon::new(exterior, rings.collect())
        })
        .collect();
    let mut merged = MultiPolygon::new(vec![]);
    for poly in polygons {
        merged = merged.union(&MultiPolygon::new(vec![poly]));
    }
    let mut out: Vec<Vec<Vec<Position>>> = merged
        .0
        .iter()
        .map(|poly| {
            std::iter::once(poly.exterior())
                .chain(poly.interiors())
                .map(|r| r.0.iter().map(|c| [c.x, c.y]).collect())
                .collect()
        })
        .collect();
    if out.len() == 1 {
        AreaGeometry::Polygon { coordinates: out.remove(0) }
    } else {
        AreaGeometry::MultiPolygon { coordinates: out }
    }
}
