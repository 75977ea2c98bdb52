//! Invariants shared by the fuzz targets: what must hold of any answer a
//! parser gives, beyond "it did not panic".

// Each target uses the helpers it needs.
#![allow(dead_code)]

use chrono::{DateTime, Utc};
use eoc_protocol::geometry::AreaGeometry;
use eoc_protocol::validate::{MAX_CLOCK_SKEW_S, MAX_ID_CHARS, Problems, Validate};

/// The server clock of every run: fixed, so that a crash replays exactly.
/// A few minutes after the newest example and fixture.
pub fn now() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_747_245_900, 0).expect("a valid time") // 2025-05-14T18:05:00Z
}

/// Longest problem message or field path: messages quote at most a few
/// dozen characters of a value, so an answer never echoes a body back.
pub const MAX_PROBLEM_CHARS: usize = 1_024;

/// A refusal names at least one problem, each with a code, a field path and
/// a bounded message.
pub fn check_problems(p: &Problems) {
    assert!(!p.errors.is_empty(), "a refusal carries problems");
    for e in &p.errors {
        assert!(
            !e.code.is_empty()
                && e.code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit()),
            "code {:?}",
            e.code
        );
        assert!(!e.message.is_empty(), "{e:?}");
        assert!(!e.message.ends_with('.'), "no trailing period: {e:?}");
        let chars = e.message.chars().count();
        assert!(chars <= MAX_PROBLEM_CHARS, "message of {chars} characters: {:?}…", prefix(&e.message));
        let chars = e.field.chars().count();
        assert!(chars <= MAX_PROBLEM_CHARS, "field of {chars} characters: {:?}…", prefix(&e.field));
    }
}

fn prefix(s: &str) -> String {
    s.chars().take(200).collect()
}

/// A latitude and longitude that eoc keeps: finite and in range.
pub fn check_lat_lon(lat: f64, lon: f64) {
    assert!(lat.is_finite() && (-90.0..=90.0).contains(&lat), "lat {lat}");
    assert!(lon.is_finite() && (-180.0..=180.0).contains(&lon), "lon {lon}");
}

/// An optional number that eoc keeps: finite when present.
pub fn check_finite(what: &str, x: Option<f64>) {
    if let Some(x) = x {
        assert!(x.is_finite(), "{what} {x}");
    }
}

/// A valid id: 1–64 characters of the id alphabet.
pub fn check_id(id: &str) {
    assert!(!id.is_empty() && id.chars().count() <= MAX_ID_CHARS, "id {id:?}");
    assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')), "id {id:?}");
}

/// A timestamp accepted from a sender: from 2000 on, at most the clock skew
/// ahead of `now`.
pub fn check_time(t: DateTime<Utc>) {
    assert!(t >= eoc_protocol::validate::earliest_timestamp(), "{t}");
    assert!(t.signed_duration_since(now()).num_seconds() <= MAX_CLOCK_SKEW_S, "{t}");
}

/// Every position of an area finite and in range, a circle's radius too.
pub fn check_area(area: &AreaGeometry) {
    match area {
        AreaGeometry::Polygon { coordinates } => {
            assert!(!coordinates.is_empty());
            for ring in coordinates {
                check_ring(ring);
            }
        }
        AreaGeometry::MultiPolygon { coordinates } => {
            assert!(!coordinates.is_empty());
            for ring in coordinates.iter().flatten() {
                check_ring(ring);
            }
        }
        AreaGeometry::Circle { lat, lon, radius_m } => {
            check_lat_lon(*lat, *lon);
            assert!(radius_m.is_finite() && *radius_m > 0.0 && *radius_m <= 1_000_000.0, "radius {radius_m}");
        }
    }
}

fn check_ring(ring: &[[f64; 2]]) {
    assert!(ring.len() >= 4, "a ring of {} positions", ring.len());
    assert_eq!(ring.first(), ring.last(), "a closed ring");
    for [lon, lat] in ring {
        check_lat_lon(*lat, *lon);
    }
}

/// Validates `msg` again at [`now`]: a message a parser accepted, or built
/// from what it accepted, must have no problem in the listed fields.
pub fn problems_of<T: Validate>(msg: &T) -> Problems {
    let mut p = Problems::default();
    msg.validate(now(), &mut p);
    p
}

/// An accepted OsmAnd fix: a usable device id, a position that is whole and
/// in range or absent, known values only, bounded attributes, and a
/// position message whose ids and coordinates pass eoc's rules.
pub fn check_osmand_fix(fix: &eoc_protocol::osmand::OsmAndFix) {
    use eoc_protocol::osmand::{MAX_ATTRIBUTE_CHARS, MAX_ATTRIBUTES, MAX_DEVICE_ID_CHARS};
    let id = &fix.device_id;
    assert!(!id.trim().is_empty() && id.chars().count() <= MAX_DEVICE_ID_CHARS, "device id {id:?}");
    assert!(!id.chars().any(char::is_control), "device id {id:?}");
    assert_eq!(fix.lat.is_some(), fix.lon.is_some(), "{fix:?}");
    if let (Some(lat), Some(lon)) = (fix.lat, fix.lon) {
        check_lat_lon(lat, lon);
    }
    for (what, x) in [("speed", fix.speed_mps), ("heading", fix.heading_deg), ("battery", fix.battery_pct)] {
        check_finite(what, x);
        assert!(x.is_none_or(|x| x >= 0.0), "{what} {x:?}");
    }
    check_finite("altitude", fix.altitude_m);
    check_finite("accuracy", fix.accuracy_m);
    assert!(fix.accuracy_m.is_none_or(|a| a > 0.0));
    assert!(fix.attributes.len() <= MAX_ATTRIBUTES);
    for (k, v) in &fix.attributes {
        assert!(k.chars().count() <= MAX_ATTRIBUTE_CHARS && v.chars().count() <= MAX_ATTRIBUTE_CHARS);
    }
    let at_ms = fix.at.timestamp_millis().to_string();
    let msg_id = eoc_protocol::validate::message_id(&["osmand", id, &at_ms]);
    check_id(&msg_id);
    match fix.to_position(msg_id, "team-1".into()) {
        Some(msg) => {
            let p = problems_of(&msg);
            for e in &p.errors {
                assert!(
                    !matches!(e.field.as_str(), "v" | "id" | "team_id" | "lat" | "lon"),
                    "a fix accepted by the reader is refused as a position: {p}"
                );
            }
        }
        None => assert!(fix.lat.is_none()),
    }
}
