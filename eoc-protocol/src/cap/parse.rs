//! The element tree → a validated [`CapAlert`]: every rule of the CAP 1.2
//! specification and its XSD, each problem with its element path.
//!
//! Paths name repeatable elements with their index among siblings of the
//! same name (`alert/info[0]/area[1]/polygon[0]`) and singletons without
//! (`alert/sent`, `alert/info[0]/urgency`).

use chrono::{DateTime, FixedOffset};

use super::xml::{Document, Element, NS_CAP_1_1, Ns};
use super::{
    Area, CapAlert, CapCircle, CapMsgType, CapPoint, CapVersion, Category, Info, MAX_AREAS, MAX_INFOS,
    MAX_POINTS, MAX_REFERENCES, MAX_SHAPES, NamedValue, Reference, Resource, ResponseType, Scope, Status,
};
use crate::types::{Certainty, Severity, Urgency};
use crate::validate::Problems;

/// One child element of a sequence: name and how often it may appear.
struct Slot {
    name: &'static str,
    min: usize,
    max: usize,
}

const fn one(name: &'static str) -> Slot {
    Slot { name, min: 1, max: 1 }
}
const fn opt(name: &'static str) -> Slot {
    Slot { name, min: 0, max: 1 }
}
const fn many(name: &'static str, min: usize) -> Slot {
    Slot { name, min, max: usize::MAX }
}

/// `alert`'s sequence, in the XSD's order.
const ALERT: &[Slot] = &[
    one("identifier"),
    one("sender"),
    one("sent"),
    one("status"),
    one("msgType"),
    opt("source"),
    one("scope"),
    opt("restriction"),
    opt("addresses"),
    many("code", 0),
    opt("note"),
    opt("references"),
    opt("incidents"),
    many("info", 0),
];

/// `info`'s sequence.
const INFO: &[Slot] = &[
    opt("language"),
    many("category", 1),
    one("event"),
    many("responseType", 0),
    one("urgency"),
    one("severity"),
    one("certainty"),
    opt("audience"),
    many("eventCode", 0),
    opt("effective"),
    opt("onset"),
    opt("expires"),
    opt("senderName"),
    opt("headline"),
    opt("description"),
    opt("instruction"),
    opt("web"),
    opt("contact"),
    many("parameter", 0),
    many("resource", 0),
    many("area", 0),
];

const RESOURCE: &[Slot] =
    &[one("resourceDesc"), one("mimeType"), opt("size"), opt("uri"), opt("derefUri"), opt("digest")];

const AREA: &[Slot] = &[
    one("areaDesc"),
    many("polygon", 0),
    many("circle", 0),
    many("geocode", 0),
    opt("altitude"),
    opt("ceiling"),
];

const NAMED_VALUE: &[Slot] = &[one("valueName"), one("value")];

/// The children of one element, sorted into the slots of its sequence,
/// each with its path.
struct Kids<'a> {
    slots: Vec<Vec<(&'a Element, String)>>,
}

impl<'a> Kids<'a> {
    fn all(&self, i: usize) -> &[(&'a Element, String)] {
        &self.slots[i]
    }
    fn first(&self, i: usize) -> Option<&(&'a Element, String)> {
        self.slots[i].first()
    }
}

/// Sorts `el`'s children into `schema`'s slots, reporting unknown
/// elements, elements out of the XSD's order, too many and missing ones.
/// `foreign_ok`: elements of other namespaces are skipped (the XSD's
/// `<any namespace="…xmldsig#">` at the end of `alert`).
fn sequence<'a>(
    el: &'a Element,
    path: &str,
    schema: &[Slot],
    foreign_ok: bool,
    p: &mut Problems,
) -> Kids<'a> {
    let mut slots: Vec<Vec<(&Element, String)>> = schema.iter().map(|_| Vec::new()).collect();
    let mut furthest: Option<usize> = None;
    for child in &el.children {
        match &child.ns {
            Ns::Cap => {}
            Ns::Other(_) if foreign_ok => continue,
            Ns::Other(uri) => {
                p.push(
                    "unknown_element",
                    format!("{path}/{}", child.name),
                    format!(
                        "element {} of namespace {} is not allowed in {}",
                        quote(&child.name),
                        quote(uri),
                        el.name
                    ),
                );
                continue;
            }
            Ns::None => {
                p.push(
                    "invalid_namespace",
                    format!("{path}/{}", child.name),
                    format!(
                        "element {} has no namespace, expected the cap namespace of its alert",
                        quote(&child.name)
                    ),
                );
                continue;
            }
        }
        let Some(pos) = schema.iter().position(|s| s.name == child.name) else {
            p.push(
                "unknown_element",
                format!("{path}/{}", child.name),
                format!("{} is not a cap element of {}", quote(&child.name), el.name),
            );
            continue;
        };
        let slot = &schema[pos];
        let k = slots[pos].len();
        let child_path =
            if slot.max > 1 { format!("{path}/{}[{k}]", slot.name) } else { format!("{path}/{}", slot.name) };
        if let Some(f) = furthest
            && pos < f
        {
            p.push(
                "out_of_order",
                child_path.clone(),
                format!("{} must come before {} in {}", slot.name, schema[f].name, el.name),
            );
        }
        furthest = Some(furthest.map_or(pos, |f| f.max(pos)));
        if k >= slot.max {
            p.push(
                "too_many",
                child_path,
                format!("{} appears more than once in {}, at most one is allowed", slot.name, el.name),
            );
            continue;
        }
        slots[pos].push((child, child_path));
    }
    for (slot, found) in schema.iter().zip(&slots) {
        if found.len() < slot.min {
            p.push(
                "required",
                format!("{path}/{}", slot.name),
                format!("{} is required in {}", slot.name, el.name),
            );
        }
    }
    Kids { slots }
}

/// At most this many characters of an offending value are quoted.
const QUOTE_CHARS: usize = 64;

fn quote(s: &str) -> String {
    let mut q: String = s.chars().take(QUOTE_CHARS).collect();
    if s.chars().nth(QUOTE_CHARS).is_some() {
        q.push('…');
    }
    format!("{q:?}")
}

/// The text of a simple element, trimmed; a simple element holding
/// elements is a problem.
fn text(el: &Element, path: &str, p: &mut Problems) -> String {
    if let Some(child) = el.children.first() {
        p.push(
            "invalid_content",
            path,
            format!("{} must hold text, found element {}", el.name, quote(&child.name)),
        );
    }
    el.text.trim().to_owned()
}

fn opt_text(kid: Option<&(&Element, String)>, p: &mut Problems) -> Option<String> {
    kid.map(|(el, path)| text(el, path, p))
}

fn vocabulary<T>(
    kid: &(&Element, String),
    from: fn(&str) -> Option<T>,
    names: &[&str],
    p: &mut Problems,
) -> Option<T> {
    let (el, path) = kid;
    let value = text(el, path, p);
    let found = from(&value);
    if found.is_none() {
        p.push(
            "invalid_value",
            path.as_str(),
            format!("{} {} is not one of {}", el.name, quote(&value), names.join(", ")),
        );
    }
    found
}

/// A CAP datetime: `YYYY-MM-DDThh:mm:ss±hh:mm`, a numeric offset, no "Z"
/// and no fractional seconds (the XSD's pattern).
pub(super) fn datetime(
    name: &str,
    value: &str,
    path: &str,
    p: &mut Problems,
) -> Option<DateTime<FixedOffset>> {
    let b = value.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.into_iter().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    let shaped = b.len() == 25
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && (b[19] == b'+' || b[19] == b'-')
        && digits(20..22)
        && b[22] == b':'
        && digits(23..25);
    if !shaped {
        let why = if value.ends_with('Z') || value.ends_with('z') {
            "uses \"Z\": cap requires a numeric offset, write utc as -00:00"
        } else {
            "is not YYYY-MM-DDThh:mm:ss±hh:mm"
        };
        p.push("invalid_datetime", path, format!("{name} {} {why}", quote(value)));
        return None;
    }
    match DateTime::parse_from_rfc3339(value) {
        Ok(t) => Some(t),
        Err(err) => {
            p.push(
                "invalid_datetime",
                path,
                format!("{name} {} is not a real date and time: {err}", quote(value)),
            );
            None
        }
    }
}

fn opt_datetime(kid: Option<&(&Element, String)>, p: &mut Problems) -> Option<DateTime<FixedOffset>> {
    let (el, path) = kid?;
    let value = text(el, path, p);
    datetime(&el.name, &value, path, p)
}

/// `<identifier>` and `<sender>`: no whitespace, commas, `<` or `&`.
fn cap_id(name: &str, value: &str, path: &str, p: &mut Problems) {
    if value.is_empty() {
        p.push("required", path, format!("{name} must not be empty"));
    } else if let Some(bad) = value.chars().find(|c| c.is_whitespace() || matches!(c, ',' | '<' | '&')) {
        p.push(
            "invalid_format",
            path,
            format!("{name} {} contains {bad:?}: cap forbids spaces, commas, < and &", quote(value)),
        );
    }
}

fn number(s: &str) -> Option<f64> {
    // Rust also reads "inf" and "NaN", which no coordinate is.
    s.parse::<f64>().ok().filter(|x| x.is_finite())
}

/// `lat,lon`.
fn point(token: &str) -> Option<CapPoint> {
    let (lat, lon) = token.split_once(',')?;
    let (lat, lon) = (number(lat)?, number(lon)?);
    ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)).then_some(CapPoint { lat, lon })
}

/// What an alert may still hold: the counts bound the work and memory of
/// mapping whatever was sent.
struct Budget {
    areas: usize,
    shapes: usize,
    points: usize,
}

fn polygon(value: &str, path: &str, budget: &mut Budget, p: &mut Problems) -> Option<Vec<CapPoint>> {
    let tokens: Vec<&str> = value.split_whitespace().collect();
    if tokens.len() > budget.points {
        p.push(
            "too_many",
            path,
            format!("polygons of this alert have more than {MAX_POINTS} points in all, the limit"),
        );
        budget.points = 0;
        return None;
    }
    budget.points -= tokens.len();
    let mut points = Vec::with_capacity(tokens.len());
    for (i, token) in tokens.iter().enumerate() {
        match point(token) {
            Some(pt) => points.push(pt),
            None => {
                p.push(
                    "invalid_polygon",
                    path,
                    format!(
                        "point {i} {} is not lat,lon with latitude -90..90 and longitude -180..180",
                        quote(token)
                    ),
                );
                return None;
            }
        }
    }
    if points.len() < 4 {
        p.push(
            "invalid_polygon",
            path,
            format!(
                "polygon has {} points, at least 4 are required (the first repeated as the last)",
                points.len()
            ),
        );
        return None;
    }
    let (first, last) = (points[0], points[points.len() - 1]);
    if first != last {
        p.push(
            "invalid_polygon",
            path,
            format!(
                "polygon is not closed: the first point {},{} differs from the last {},{}",
                first.lat, first.lon, last.lat, last.lon
            ),
        );
        return None;
    }
    Some(points)
}

fn circle(value: &str, path: &str, p: &mut Problems) -> Option<CapCircle> {
    let parts: Vec<&str> = value.split_whitespace().collect();
    let parsed = match parts.as_slice() {
        [centre, radius] => point(centre).zip(number(radius).filter(|r| *r >= 0.0)),
        _ => None,
    };
    match parsed {
        Some((center, radius_km)) => Some(CapCircle { center, radius_km }),
        None => {
            p.push(
                "invalid_circle",
                path,
                format!(
                    "circle {} is not \"lat,lon radius\" with latitude -90..90, longitude -180..180 and a radius of 0 km or more",
                    quote(value)
                ),
            );
            None
        }
    }
}

fn references(value: &str, path: &str, p: &mut Problems) -> Vec<Reference> {
    let mut out = Vec::new();
    let tokens: Vec<&str> = value.split_whitespace().collect();
    if tokens.len() > MAX_REFERENCES {
        p.push(
            "too_many",
            path,
            format!("references names {} messages, at most {MAX_REFERENCES} allowed", tokens.len()),
        );
        return out;
    }
    if tokens.is_empty() {
        p.push("invalid_references", path, "references is empty, expected sender,identifier,sent triples");
    }
    for (i, token) in tokens.iter().enumerate() {
        let parts: Vec<&str> = token.split(',').collect();
        let [sender, identifier, sent] = parts.as_slice() else {
            p.push(
                "invalid_references",
                path,
                format!("reference {i} {} is not sender,identifier,sent", quote(token)),
            );
            continue;
        };
        if sender.is_empty() || identifier.is_empty() {
            p.push(
                "invalid_references",
                path,
                format!("reference {i} {} has an empty sender or identifier", quote(token)),
            );
            continue;
        }
        let mut scratch = Problems::default();
        match datetime("sent", sent, path, &mut scratch) {
            Some(sent) => out.push(Reference {
                sender: (*sender).to_owned(),
                identifier: (*identifier).to_owned(),
                sent,
            }),
            None => {
                for e in scratch.errors {
                    p.push("invalid_references", path, format!("reference {i}: {}", e.message));
                }
            }
        }
    }
    out
}

fn named_values(kids: &[(&Element, String)], p: &mut Problems) -> Vec<NamedValue> {
    kids.iter()
        .filter_map(|(el, path)| {
            let k = sequence(el, path, NAMED_VALUE, false, p);
            let value_name = opt_text(k.first(0), p)?;
            let value = opt_text(k.first(1), p)?;
            Some(NamedValue { value_name, value })
        })
        .collect()
}

fn decimal(kid: Option<&(&Element, String)>, p: &mut Problems) -> Option<f64> {
    let (el, path) = kid?;
    let value = text(el, path, p);
    let x = number(&value);
    if x.is_none() {
        p.push(
            "invalid_value",
            path.as_str(),
            format!("{} {} is not a decimal number", el.name, quote(&value)),
        );
    }
    x
}

/// The alert, or every problem found in it.
pub(super) fn alert(doc: &Document) -> Result<CapAlert, Problems> {
    let mut p = Problems::default();
    let root = &doc.root;
    if root.name != "alert" || root.ns != Ns::Cap {
        p.push(
            "not_cap",
            root.name.as_str(),
            format!("the root element is {}, expected alert in {}", quote(&root.name), doc.namespace),
        );
        return Err(p);
    }
    let version = if doc.namespace == NS_CAP_1_1 { CapVersion::V1_1 } else { CapVersion::V1_2 };
    let path = "alert";
    let k = sequence(root, path, ALERT, true, &mut p);

    let identifier = opt_text(k.first(0), &mut p).unwrap_or_default();
    if let Some((_, path)) = k.first(0) {
        cap_id("identifier", &identifier, path, &mut p);
    }
    let sender = opt_text(k.first(1), &mut p).unwrap_or_default();
    if let Some((_, path)) = k.first(1) {
        cap_id("sender", &sender, path, &mut p);
    }
    let sent = opt_datetime(k.first(2), &mut p);
    let status = k.first(3).and_then(|kid| vocabulary(kid, Status::from_cap, Status::NAMES, &mut p));
    let msg_type =
        k.first(4).and_then(|kid| vocabulary(kid, CapMsgType::from_cap, CapMsgType::NAMES, &mut p));
    let source = opt_text(k.first(5), &mut p);
    let scope = k.first(6).and_then(|kid| vocabulary(kid, Scope::from_cap, Scope::NAMES, &mut p));
    let restriction = opt_text(k.first(7), &mut p);
    let addresses = opt_text(k.first(8), &mut p);
    let codes = k.all(9).iter().map(|(el, path)| text(el, path, &mut p)).collect();
    let note = opt_text(k.first(10), &mut p);
    let references = match k.first(11) {
        Some((el, path)) => {
            let value = text(el, path, &mut p);
            references(&value, path, &mut p)
        }
        None => Vec::new(),
    };
    let incidents = opt_text(k.first(12), &mut p);

    if scope == Some(Scope::Restricted) && restriction.is_none() {
        p.push("required", "alert/restriction", "restriction is required when scope is Restricted");
    }
    if scope == Some(Scope::Private) && addresses.is_none() {
        p.push("required", "alert/addresses", "addresses is required when scope is Private");
    }
    if matches!(msg_type, Some(CapMsgType::Update | CapMsgType::Cancel)) && k.first(11).is_none() {
        p.push(
            "required",
            "alert/references",
            "references is required for msgType Update and Cancel: it names the messages replaced",
        );
    }

    let infos_found = k.all(13);
    if infos_found.len() > MAX_INFOS {
        p.push(
            "too_many",
            "alert/info",
            format!("alert has {} info blocks, at most {MAX_INFOS} allowed", infos_found.len()),
        );
    }
    let mut budget = Budget { areas: MAX_AREAS, shapes: MAX_SHAPES, points: MAX_POINTS };
    let infos: Vec<Info> = infos_found
        .iter()
        .take(MAX_INFOS)
        .filter_map(|(el, path)| info(el, path, &mut budget, &mut p))
        .collect();

    if !p.is_empty() {
        return Err(p);
    }
    let (Some(sent), Some(status), Some(msg_type), Some(scope)) = (sent, status, msg_type, scope) else {
        // Each missing value was reported above; this is unreachable with
        // an empty problem list, but an answer beats a panic.
        p.push("required", "alert", "alert lacks a required element");
        return Err(p);
    };
    Ok(CapAlert {
        version,
        identifier,
        sender,
        sent,
        status,
        msg_type,
        source,
        scope,
        restriction,
        addresses,
        codes,
        note,
        references,
        incidents,
        infos,
    })
}

fn info(el: &Element, path: &str, budget: &mut Budget, p: &mut Problems) -> Option<Info> {
    let before = p.errors.len();
    let k = sequence(el, path, INFO, false, p);
    let language = opt_text(k.first(0), p);
    if let Some(lang) = &language
        && (lang.is_empty() || !lang.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        p.push(
            "invalid_value",
            format!("{path}/language"),
            format!("language {} is not a language tag", quote(lang)),
        );
    }
    let categories: Vec<Category> =
        k.all(1).iter().filter_map(|kid| vocabulary(kid, Category::from_cap, Category::NAMES, p)).collect();
    let event = opt_text(k.first(2), p).unwrap_or_default();
    let response_types: Vec<ResponseType> = k
        .all(3)
        .iter()
        .filter_map(|kid| vocabulary(kid, ResponseType::from_cap, ResponseType::NAMES, p))
        .collect();
    let urgency = k.first(4).and_then(|kid| vocabulary(kid, urgency_from, URGENCY, p));
    let severity = k.first(5).and_then(|kid| vocabulary(kid, severity_from, SEVERITY, p));
    let certainty = k.first(6).and_then(|kid| vocabulary(kid, certainty_from, CERTAINTY, p));
    let audience = opt_text(k.first(7), p);
    let event_codes = named_values(k.all(8), p);
    let effective = opt_datetime(k.first(9), p);
    let onset = opt_datetime(k.first(10), p);
    let expires = opt_datetime(k.first(11), p);
    let sender_name = opt_text(k.first(12), p);
    let headline = opt_text(k.first(13), p);
    let description = opt_text(k.first(14), p);
    let instruction = opt_text(k.first(15), p);
    let web = opt_text(k.first(16), p);
    let contact = opt_text(k.first(17), p);
    let parameters = named_values(k.all(18), p);
    let resources = k.all(19).iter().filter_map(|(el, path)| resource(el, path, p)).collect();
    let mut areas = Vec::new();
    for (el, path) in k.all(20) {
        if budget.areas == 0 {
            p.push("too_many", path.as_str(), format!("alert has more than {MAX_AREAS} areas, the limit"));
            break;
        }
        budget.areas -= 1;
        if let Some(a) = area(el, path, budget, p) {
            areas.push(a);
        }
    }
    if p.errors.len() > before {
        return None;
    }
    Some(Info {
        language,
        categories,
        event,
        response_types,
        urgency: urgency?,
        severity: severity?,
        certainty: certainty?,
        audience,
        event_codes,
        effective,
        onset,
        expires,
        sender_name,
        headline,
        description,
        instruction,
        web,
        contact,
        parameters,
        resources,
        areas,
    })
}

const URGENCY: &[&str] = &["Immediate", "Expected", "Future", "Past", "Unknown"];
const SEVERITY: &[&str] = &["Extreme", "Severe", "Moderate", "Minor", "Unknown"];
const CERTAINTY: &[&str] = &["Observed", "Likely", "Possible", "Unlikely", "Unknown"];

fn urgency_from(s: &str) -> Option<Urgency> {
    Urgency::ALL.iter().copied().find(|u| super::urgency_name(*u) == s)
}
fn severity_from(s: &str) -> Option<Severity> {
    Severity::ALL.iter().copied().find(|v| super::severity_name(*v) == s)
}
fn certainty_from(s: &str) -> Option<Certainty> {
    // CAP 1.0's "Very Likely" is not accepted: 1.1 and 1.2 dropped it.
    Certainty::ALL.iter().copied().find(|c| super::certainty_name(*c) == s)
}

fn resource(el: &Element, path: &str, p: &mut Problems) -> Option<Resource> {
    let k = sequence(el, path, RESOURCE, false, p);
    let resource_desc = opt_text(k.first(0), p)?;
    let mime_type = opt_text(k.first(1), p)?;
    let size_bytes = match k.first(2) {
        Some((el, path)) => {
            let value = text(el, path, p);
            let size = value.parse::<u64>().ok();
            if size.is_none() {
                p.push(
                    "invalid_value",
                    path.as_str(),
                    format!("size {} is not a whole number of bytes", quote(&value)),
                );
            }
            size
        }
        None => None,
    };
    Some(Resource {
        resource_desc,
        mime_type,
        size_bytes,
        uri: opt_text(k.first(3), p),
        has_deref_uri: k.first(4).is_some(),
        digest: opt_text(k.first(5), p),
    })
}

fn area(el: &Element, path: &str, budget: &mut Budget, p: &mut Problems) -> Option<Area> {
    let k = sequence(el, path, AREA, false, p);
    let area_desc = opt_text(k.first(0), p).unwrap_or_default();
    let mut polygons = Vec::new();
    let mut circles = Vec::new();
    for (slot, is_polygon) in [(1, true), (2, false)] {
        for (el, path) in k.all(slot) {
            if budget.shapes == 0 {
                p.push(
                    "too_many",
                    path.as_str(),
                    format!("alert has more than {MAX_SHAPES} polygons and circles, the limit"),
                );
                break;
            }
            budget.shapes -= 1;
            let value = text(el, path, p);
            if is_polygon {
                if let Some(poly) = polygon(&value, path, budget, p) {
                    polygons.push(poly);
                }
            } else if let Some(c) = circle(&value, path, p) {
                circles.push(c);
            }
        }
    }
    let geocodes = named_values(k.all(3), p);
    let altitude_ft = decimal(k.first(4), p);
    let ceiling_ft = decimal(k.first(5), p);
    if ceiling_ft.is_some() && k.first(4).is_none() {
        p.push("required", format!("{path}/altitude"), "altitude is required when ceiling is given");
    }
    Some(Area { area_desc, polygons, circles, geocodes, altitude_ft, ceiling_ft })
}
