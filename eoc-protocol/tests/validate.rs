//! Validation rules, table-driven: each case is a message (an example with a
//! few fields changed) and the exact problems it must yield.

// Helpers of this test binary may unwrap too: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Utc};
use eoc_protocol::messages::{
    AlertMsg, Inbound, SiteCapacityMsg, TaskAssignMsg, TaskUpdateMsg, TeamPositionMsg, TeamStatusMsg,
};
use eoc_protocol::validate::{MAX_JSON_DEPTH, Problems, Validate, check_json_depth, parse, parse_json};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Fields to change (`Value::Null` removes).
type Changes = Vec<(&'static str, Value)>;
/// Expected `(code, field)` problems.
type Expect = Vec<(&'static str, &'static str)>;
/// One case: changes to a base message and what they must yield.
type Case = (Changes, Expect);

/// The server clock of every case: a few minutes after the newest example.
fn now() -> DateTime<Utc> {
    "2025-05-14T18:05:00Z".parse().unwrap()
}

fn example(name: &str) -> Value {
    let path = format!("{}/examples/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `base` with each `(path, value)` applied; a dotted path walks objects,
/// `Value::Null` removes the field.
fn with(mut base: Value, changes: &[(&str, Value)]) -> Value {
    for (path, value) in changes {
        let mut parts: Vec<&str> = path.split('.').collect();
        let last = parts.pop().unwrap();
        let mut at = &mut base;
        for p in parts {
            at = &mut at[p];
        }
        let obj = at.as_object_mut().unwrap();
        if value.is_null() {
            obj.remove(last);
        } else {
            obj.insert(last.to_owned(), value.clone());
        }
    }
    base
}

fn problems<T: DeserializeOwned + Validate>(json: &Value) -> Result<T, Problems> {
    parse::<T>(json.to_string().as_bytes(), now())
}

/// Parses and validates `json` as `T` and asserts the exact set of
/// `(code, field)` problems (empty: the message is accepted).
fn check<T: DeserializeOwned + Validate>(json: Value, expect: &[(&str, &str)]) {
    let got = match problems::<T>(&json) {
        Ok(_) => Vec::new(),
        Err(p) => {
            assert!(!p.errors.is_empty(), "an error carries problems");
            for e in &p.errors {
                assert!(!e.message.is_empty() && !e.message.ends_with('.'), "{e:?}");
                assert!(!e.message.starts_with(char::is_uppercase), "{e:?}");
            }
            p.errors
        }
    };
    let mut got_pairs: Vec<(String, String)> =
        got.iter().map(|e| (e.code.clone(), e.field.clone())).collect();
    let mut want: Vec<(String, String)> =
        expect.iter().map(|(c, f)| ((*c).to_owned(), (*f).to_owned())).collect();
    got_pairs.sort();
    want.sort();
    assert_eq!(got_pairs, want, "json: {json}\nproblems: {got:#?}");
}

fn message_of<T: DeserializeOwned + Validate>(json: Value, field: &str) -> String {
    let p = problems::<T>(&json).err().unwrap();
    p.errors.iter().find(|e| e.field == field).unwrap_or_else(|| panic!("{p:?}")).message.clone()
}

#[test]
fn every_example_is_accepted() {
    check::<AlertMsg>(example("alert-earthquake"), &[]);
    check::<AlertMsg>(example("alert-flood-polygon"), &[]);
    check::<AlertMsg>(example("alert-mudslide-circle"), &[]);
    check::<AlertMsg>(example("alert-cancel"), &[]);
    check::<TeamPositionMsg>(example("team-position"), &[]);
    check::<TeamStatusMsg>(example("team-status"), &[]);
    check::<SiteCapacityMsg>(example("site-capacity"), &[]);
    check::<TaskUpdateMsg>(example("task-update"), &[]);
    check::<TaskAssignMsg>(example("task-assign"), &[]);
    check::<Inbound>(example("inbound-team-position"), &[]);
}

#[test]
fn envelope_rules() {
    let base = example("team-status");
    let cases: Vec<Case> = vec![
        (vec![("v", json!(2))], vec![("unsupported_version", "v")]),
        (vec![("v", json!(0))], vec![("unsupported_version", "v")]),
        (vec![("id", json!(""))], vec![("required", "id")]),
        (vec![("id", json!("a".repeat(64)))], vec![]),
        (vec![("id", json!("a".repeat(65)))], vec![("too_long", "id")]),
        (vec![("id", json!("team 1"))], vec![("invalid_format", "id")]),
        (vec![("id", json!("team/1"))], vec![("invalid_format", "id")]),
        (vec![("id", json!("Aa0.b_c:d-e"))], vec![]),
        (vec![("id", json!("тест"))], vec![("invalid_format", "id")]),
        (vec![("team_id", json!("react#1"))], vec![("invalid_format", "team_id")]),
        // Five minutes of clock skew are tolerated, a second more is not.
        (vec![("ts", json!("2025-05-14T18:10:00Z"))], vec![]),
        (vec![("ts", json!("2025-05-14T18:10:01Z"))], vec![("in_future", "ts")]),
        (vec![("ts", json!("2025-05-14T23:09:00+05:00"))], vec![]),
        (vec![("ts", json!("1999-12-31T23:59:59Z"))], vec![("out_of_range", "ts")]),
        (vec![("ts", json!("2000-01-01T00:00:00Z"))], vec![]),
        // Every problem at once.
        (
            vec![
                ("v", json!(3)),
                ("id", json!("x y")),
                ("ts", json!("2030-01-01T00:00:00Z")),
                ("battery_pct", json!(101)),
            ],
            vec![
                ("unsupported_version", "v"),
                ("invalid_format", "id"),
                ("in_future", "ts"),
                ("out_of_range", "battery_pct"),
            ],
        ),
    ];
    for (changes, expect) in cases {
        check::<TeamStatusMsg>(with(base.clone(), &changes), &expect);
    }
}

#[test]
fn envelope_messages_name_the_value_and_the_limit() {
    let base = example("team-status");
    let m = message_of::<TeamStatusMsg>(with(base.clone(), &[("v", json!(2))]), "v");
    assert_eq!(m, "version 2 is not supported, expected 1");
    let m = message_of::<TeamStatusMsg>(with(base.clone(), &[("id", json!("team 1"))]), "id");
    assert_eq!(m, "id \"team 1\" has ' ' at character 5, allowed are A-Z a-z 0-9 . _ : -");
    let m = message_of::<TeamStatusMsg>(with(base.clone(), &[("ts", json!("2025-05-14T18:15:00Z"))]), "ts");
    assert!(m.contains("600 s after the server clock") && m.contains("at most 300 s"), "{m}");
    let m = message_of::<TeamStatusMsg>(with(base, &[("note", json!("n".repeat(1025)))]), "note");
    assert_eq!(m, "note is 1025 characters, at most 1024 allowed");
}

#[test]
fn alert_rules() {
    let eq = example("alert-earthquake");
    let flood = example("alert-flood-polygon");
    let circle = example("alert-mudslide-circle");
    let cancel = example("alert-cancel");
    let area = flood["area"].clone();
    let source = eq["earthquake"].clone();
    let cases: Vec<(&Value, Changes, Expect)> = vec![
        (&eq, vec![("alert_id", json!("eq 2025"))], vec![("invalid_format", "alert_id")]),
        (&eq, vec![("hazard", Value::Null)], vec![("required", "hazard")]),
        (&cancel, vec![], vec![]),
        (&cancel, vec![("hazard", json!("flood"))], vec![("required", "area")]),
        (&eq, vec![("earthquake", Value::Null)], vec![("required", "earthquake")]),
        (&eq, vec![("area", area.clone())], vec![("not_allowed", "area")]),
        (&flood, vec![("area", Value::Null)], vec![("required", "area")]),
        (&flood, vec![("earthquake", source.clone())], vec![("not_allowed", "earthquake")]),
        (&flood, vec![("hazard", json!("avalanche"))], vec![]),
        (
            &circle,
            vec![("area", Value::Null), ("earthquake", source.clone())],
            vec![("required", "area"), ("not_allowed", "earthquake")],
        ),
        (&flood, vec![("hazard", json!("other")), ("area", Value::Null)], vec![]),
        (&flood, vec![("hazard", json!("other"))], vec![]),
        (&eq, vec![("hazard", json!("other"))], vec![]),
        (&eq, vec![("earthquake.magnitude", json!(10.5))], vec![("out_of_range", "earthquake.magnitude")]),
        (&eq, vec![("earthquake.magnitude", json!(-0.1))], vec![("out_of_range", "earthquake.magnitude")]),
        (&eq, vec![("earthquake.magnitude", json!(10))], vec![]),
        (&eq, vec![("earthquake.depth_km", json!(701))], vec![("out_of_range", "earthquake.depth_km")]),
        (&eq, vec![("earthquake.depth_km", json!(-1))], vec![("out_of_range", "earthquake.depth_km")]),
        (&eq, vec![("earthquake.depth_km", Value::Null)], vec![]),
        (
            &eq,
            vec![("earthquake.lat", json!(90.5)), ("earthquake.lon", json!(-181))],
            vec![("out_of_range", "earthquake.lat"), ("out_of_range", "earthquake.lon")],
        ),
        (&flood, vec![("buffer_m", json!(50_001))], vec![("out_of_range", "buffer_m")]),
        (&flood, vec![("buffer_m", json!(-5))], vec![("out_of_range", "buffer_m")]),
        (&flood, vec![("buffer_m", json!(50_000))], vec![]),
        (&eq, vec![("headline", json!("h".repeat(256)))], vec![]),
        (&eq, vec![("headline", json!("h".repeat(257)))], vec![("too_long", "headline")]),
        (&eq, vec![("description", json!("ж".repeat(4096)))], vec![]),
        (&eq, vec![("description", json!("ж".repeat(4097)))], vec![("too_long", "description")]),
        (&eq, vec![("expires_at", json!("2025-03-14T09:30:00+05:00"))], vec![("conflict", "expires_at")]),
        (&eq, vec![("expires_at", json!("2025-03-14T04:00:00Z"))], vec![("conflict", "expires_at")]),
        // An expiry far ahead is normal (only `ts` must not be in the future).
        (&eq, vec![("expires_at", json!("2026-01-01T00:00:00Z"))], vec![]),
        (
            &eq,
            vec![("ts", json!("2025-06-01T00:00:00Z"))],
            vec![("in_future", "ts"), ("conflict", "expires_at")],
        ),
        (&circle, vec![("area.radius_m", json!(0))], vec![("out_of_range", "area.radius_m")]),
        (&circle, vec![("area.radius_m", json!(1_000_001))], vec![("out_of_range", "area.radius_m")]),
        (&circle, vec![("area.radius_m", json!(1_000_000))], vec![]),
        (
            &circle,
            vec![("area.lat", json!(-91)), ("area.lon", json!(181))],
            vec![("out_of_range", "area.lat"), ("out_of_range", "area.lon")],
        ),
    ];
    for (base, changes, expect) in cases {
        check::<AlertMsg>(with(base.clone(), &changes), &expect);
    }
    let m = message_of::<AlertMsg>(
        with(eq.clone(), &[("earthquake.magnitude", json!(11))]),
        "earthquake.magnitude",
    );
    assert_eq!(m, "magnitude 11 is not within 0..10");
    let m = message_of::<AlertMsg>(with(eq, &[("earthquake.depth_km", json!(800))]), "earthquake.depth_km");
    assert_eq!(m, "earthquake.depth_km 800 is not within 0..700 km");
}

/// A square ring around (lon, lat) of half-size `d` degrees.
fn square(lon: f64, lat: f64, d: f64) -> Value {
    json!([
        [lon - d, lat - d],
        [lon + d, lat - d],
        [lon + d, lat + d],
        [lon - d, lat + d],
        [lon - d, lat - d]
    ])
}

fn polygon_alert(coordinates: Value) -> Value {
    with(example("alert-flood-polygon"), &[("area", json!({"type": "Polygon", "coordinates": coordinates}))])
}

fn multi_alert(coordinates: Value) -> Value {
    with(
        example("alert-flood-polygon"),
        &[("area", json!({"type": "MultiPolygon", "coordinates": coordinates}))],
    )
}

#[test]
fn polygon_rules() {
    let outer = square(68.8, 37.8, 0.1);
    let hole = square(68.8, 37.8, 0.02);
    let cases: Vec<(Value, Expect)> = vec![
        (json!([outer]), vec![]),
        (json!([outer, hole]), vec![]),
        (json!([]), vec![("invalid_geometry", "area.coordinates")]),
        // Too few positions, and an open ring.
        (
            json!([[[68.7, 37.7], [68.9, 37.7], [68.7, 37.7]]]),
            vec![("invalid_geometry", "area.coordinates[0]")],
        ),
        (
            json!([[[68.7, 37.7], [68.9, 37.7], [68.9, 37.9], [68.7, 37.9]]]),
            vec![("invalid_geometry", "area.coordinates[0]")],
        ),
        // Out-of-range positions are named one by one (with the ring still closed).
        (
            json!([[[68.7, 37.7], [181.0, 37.7], [68.9, 95.0], [68.7, 37.7]]]),
            vec![("out_of_range", "area.coordinates[0][1]"), ("out_of_range", "area.coordinates[0][2]")],
        ),
        // A bow tie crosses itself.
        (
            json!([[[68.7, 37.7], [68.9, 37.9], [68.9, 37.7], [68.7, 37.9], [68.7, 37.7]]]),
            vec![("invalid_geometry", "area.coordinates[0]")],
        ),
        // A ring touching itself at a vertex is not simple either.
        (
            json!([[[0.0, 0.0], [4.0, 0.0], [2.0, 2.0], [4.0, 4.0], [0.0, 4.0], [2.0, 2.0], [0.0, 0.0]]]),
            vec![("invalid_geometry", "area.coordinates[0]")],
        ),
        // Repeated positions are harmless.
        (json!([[[68.7, 37.7], [68.9, 37.7], [68.9, 37.7], [68.9, 37.9], [68.7, 37.7]]]), vec![]),
        // Holes: outside the shell, crossing it, overlapping each other.
        (json!([outer, square(70.0, 38.0, 0.01)]), vec![("invalid_geometry", "area.coordinates[1]")]),
        (json!([outer, square(68.9, 37.8, 0.05)]), vec![("invalid_geometry", "area.coordinates[1]")]),
        (json!([outer, hole, square(68.81, 37.8, 0.02)]), vec![("invalid_geometry", "area.coordinates[2]")]),
        (json!([outer, square(68.75, 37.8, 0.02), square(68.85, 37.8, 0.02)]), vec![]),
    ];
    for (coordinates, expect) in cases {
        check::<AlertMsg>(polygon_alert(coordinates), &expect);
    }
}

#[test]
fn multipolygon_rules() {
    let a = square(68.8, 37.8, 0.1);
    let b = square(69.5, 37.8, 0.1);
    let overlapping = square(68.85, 37.8, 0.1);
    let cases: Vec<(Value, Expect)> = vec![
        (json!([[a], [b]]), vec![]),
        (json!([]), vec![("invalid_geometry", "area.coordinates")]),
        (json!([[a], []]), vec![("invalid_geometry", "area.coordinates[1]")]),
        (json!([[a], [overlapping]]), vec![("invalid_geometry", "area.coordinates[1]")]),
        (
            json!([[a], [[[69.4, 37.7], [69.6, 37.7], [69.4, 37.7]]]]),
            vec![("invalid_geometry", "area.coordinates[1][0]")],
        ),
        (
            json!([[a], [[[69.4, 37.7], [69.6, -99.0], [69.6, 37.9], [69.4, 37.7]]]]),
            vec![("out_of_range", "area.coordinates[1][0][1]")],
        ),
    ];
    for (coordinates, expect) in cases {
        check::<AlertMsg>(multi_alert(coordinates), &expect);
    }
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// A closed ring of `n` distinct positions on a circle.
fn circle_ring(lon: f64, lat: f64, r: f64, n: usize) -> Vec<[f64; 2]> {
    let mut ring: Vec<[f64; 2]> = (0..n)
        .map(|i| {
            let a = i as f64 / n as f64 * std::f64::consts::TAU;
            // Six decimals (about 0.1 m), as GeoJSON writers round.
            [round6(lon + r * a.cos()), round6(lat + r * a.sin())]
        })
        .collect();
    ring.push(ring[0]);
    ring
}

#[test]
fn geometry_size_limits() {
    // 10,000 positions in total is the limit; one more is refused.
    check::<AlertMsg>(polygon_alert(json!([circle_ring(68.8, 37.8, 0.1, 9_999)])), &[]);
    check::<AlertMsg>(
        polygon_alert(json!([circle_ring(68.8, 37.8, 0.1, 10_000)])),
        &[("too_many", "area.coordinates")],
    );
    // 101 polygons.
    let many: Vec<Value> = (0..101).map(|i| json!([square(60.0 + i as f64 * 0.1, 37.0, 0.01)])).collect();
    check::<AlertMsg>(multi_alert(json!(many)), &[("too_many", "area.coordinates")]);
    let hundred: Vec<Value> = (0..100).map(|i| json!([square(60.0 + i as f64 * 0.1, 37.0, 0.01)])).collect();
    check::<AlertMsg>(multi_alert(json!(hundred)), &[]);
    // 1,001 rings (one shell, 1,000 tiny holes).
    let mut rings = vec![square(68.8, 37.8, 1.0)];
    rings.extend(
        (0..1000).map(|i| square(68.0 + (i % 40) as f64 * 0.04, 37.0 + (i / 40) as f64 * 0.04, 0.001)),
    );
    check::<AlertMsg>(polygon_alert(json!(rings)), &[("too_many", "area.coordinates")]);
}

#[test]
fn a_polygon_with_thousands_of_bad_positions_gives_a_bounded_answer() {
    let mut ring = circle_ring(68.8, 37.8, 0.1, 5_000);
    for p in ring.iter_mut() {
        p[1] += 100.0;
    }
    let err = problems::<AlertMsg>(&polygon_alert(json!([ring]))).unwrap_err();
    assert_eq!(err.errors.len(), 21, "20 positions and a summary");
    let last = err.errors.last().unwrap();
    assert_eq!((last.code.as_str(), last.field.as_str()), ("out_of_range", "area.coordinates"));
    assert!(last.message.starts_with("4981 more positions"), "{}", last.message);
}

#[test]
fn position_rules() {
    let base = example("team-position");
    let cases: Vec<Case> = vec![
        (vec![("lat", json!(90)), ("lon", json!(-180))], vec![]),
        (vec![("lat", json!(90.0001))], vec![("out_of_range", "lat")]),
        (vec![("lon", json!(180.0001))], vec![("out_of_range", "lon")]),
        (vec![("lat", Value::Null)], vec![("invalid_type", "")]),
        (vec![("accuracy_m", json!(100_001))], vec![("out_of_range", "accuracy_m")]),
        (vec![("accuracy_m", json!(-1))], vec![("out_of_range", "accuracy_m")]),
        (vec![("battery_pct", json!(100.5))], vec![("out_of_range", "battery_pct")]),
        (vec![("speed_mps", json!(1000.1))], vec![("out_of_range", "speed_mps")]),
        (vec![("heading_deg", json!(360))], vec![]),
        (vec![("heading_deg", json!(361))], vec![("out_of_range", "heading_deg")]),
        (vec![("altitude_m", json!(-501))], vec![("out_of_range", "altitude_m")]),
        (vec![("altitude_m", json!(9001))], vec![("out_of_range", "altitude_m")]),
        (vec![("at", json!("2025-05-14T18:20:00Z"))], vec![("in_future", "at")]),
        (vec![("at", json!("1970-01-01T00:00:00Z"))], vec![("out_of_range", "at")]),
        (
            vec![
                ("lat", json!(100)),
                ("lon", json!(200)),
                ("battery_pct", json!(-3)),
                ("heading_deg", json!(400)),
            ],
            vec![
                ("out_of_range", "lat"),
                ("out_of_range", "lon"),
                ("out_of_range", "battery_pct"),
                ("out_of_range", "heading_deg"),
            ],
        ),
    ];
    for (changes, expect) in cases {
        check::<TeamPositionMsg>(with(base.clone(), &changes), &expect);
    }
    let m = message_of::<TeamPositionMsg>(with(base, &[("lat", json!(95))]), "lat");
    assert_eq!(m, "latitude 95 is not within -90..90");
}

#[test]
fn site_capacity_rules() {
    let base = example("site-capacity");
    let cases: Vec<Case> = vec![
        (vec![("capacity", Value::Null), ("occupancy", Value::Null), ("services", Value::Null)], vec![]),
        (
            vec![
                ("capacity", Value::Null),
                ("occupancy", Value::Null),
                ("services", Value::Null),
                ("status", Value::Null),
            ],
            vec![("required", "")],
        ),
        (vec![("capacity", json!(1_000_000)), ("occupancy", json!(0))], vec![]),
        (
            vec![("capacity", json!(1_000_001)), ("occupancy", json!(-1))],
            vec![("out_of_range", "capacity"), ("out_of_range", "occupancy")],
        ),
        // Overcrowding is accepted (and flagged by the server).
        (vec![("occupancy", json!(900))], vec![]),
        (vec![("services", json!([]))], vec![]),
        (vec![("services", json!(["water", "health", "water"]))], vec![("conflict", "services[2]")]),
        (vec![("services", json!(vec!["water"; 9]))], vec![("too_many", "services")]),
        (vec![("services", json!(["water", "wifi"]))], vec![("invalid_type", "services[1]")]),
        (vec![("site_id", json!("osm:way:72 1"))], vec![("invalid_format", "site_id")]),
        (vec![("note", json!("n".repeat(1025)))], vec![("too_long", "note")]),
    ];
    for (changes, expect) in cases {
        check::<SiteCapacityMsg>(with(base.clone(), &changes), &expect);
    }
}

#[test]
fn task_rules() {
    let update = example("task-update");
    for state in ["acknowledged", "en_route", "on_site", "completed", "declined"] {
        check::<TaskUpdateMsg>(with(update.clone(), &[("state", json!(state))]), &[]);
    }
    for state in ["proposed", "assigned", "timed_out", "cancelled"] {
        check::<TaskUpdateMsg>(with(update.clone(), &[("state", json!(state))]), &[("not_allowed", "state")]);
    }
    check::<TaskUpdateMsg>(with(update.clone(), &[("state", Value::Null)]), &[]);
    check::<TaskUpdateMsg>(with(update.clone(), &[("task_id", json!(""))]), &[("required", "task_id")]);
    check::<TaskUpdateMsg>(with(update, &[("note", json!("n".repeat(1025)))]), &[("too_long", "note")]);

    let assign = example("task-assign");
    check::<TaskAssignMsg>(
        with(assign.clone(), &[("village_id", Value::Null), ("site_id", json!("osm:way:1"))]),
        &[],
    );
    check::<TaskAssignMsg>(
        with(assign.clone(), &[("site_id", json!("osm:way:1"))]),
        &[("conflict", "site_id")],
    );
    check::<TaskAssignMsg>(
        with(assign.clone(), &[("village_id", Value::Null)]),
        &[("required", "village_id")],
    );
    check::<TaskAssignMsg>(
        with(
            assign.clone(),
            &[("team_id", json!("")), ("alert_id", json!("eq/1")), ("village_id", json!("a b"))],
        ),
        &[("required", "team_id"), ("invalid_format", "alert_id"), ("invalid_format", "village_id")],
    );
    check::<TaskAssignMsg>(with(assign, &[("note", json!("n".repeat(1025)))]), &[("too_long", "note")]);
}

#[test]
fn inbound_dispatches_to_the_message_rules() {
    let position = example("inbound-team-position");
    check::<Inbound>(with(position.clone(), &[("lat", json!(91))]), &[("out_of_range", "lat")]);
    check::<Inbound>(
        with(position.clone(), &[("type", json!("team_teleport"))]),
        &[("invalid_type", "type")],
    );
    let alert = with(example("alert-flood-polygon"), &[("type", json!("alert")), ("buffer_m", json!(-1))]);
    check::<Inbound>(alert, &[("out_of_range", "buffer_m")]);
    let status = with(example("team-status"), &[("type", json!("team_status"))]);
    check::<Inbound>(status, &[]);
}

#[test]
fn type_errors_name_the_field() {
    let base = example("team-position");
    let err = problems::<TeamPositionMsg>(&with(base.clone(), &[("accuracy_m", json!("12"))])).unwrap_err();
    assert_eq!(err.errors[0].code, "invalid_type");
    let err =
        problems::<AlertMsg>(&with(example("alert-earthquake"), &[("earthquake.magnitude", json!("big"))]))
            .unwrap_err();
    assert_eq!(
        (err.errors[0].code.as_str(), err.errors[0].field.as_str()),
        ("invalid_type", "earthquake.magnitude")
    );
    let err = problems::<AlertMsg>(&with(example("alert-earthquake"), &[("hazard", json!("tsunami"))]))
        .unwrap_err();
    assert_eq!((err.errors[0].code.as_str(), err.errors[0].field.as_str()), ("invalid_type", "hazard"));
    assert!(err.errors[0].message.contains("earthquake"), "names the choices: {}", err.errors[0].message);
}

#[test]
fn hostile_input_gets_a_specific_error() {
    let now = now();
    // Deep nesting stops at the depth bound, before serde_json walks it.
    let deep = format!("{}1{}", r#"{"x":"#.repeat(20_000), "}".repeat(20_000));
    let err = parse::<AlertMsg>(deep.as_bytes(), now).unwrap_err();
    assert_eq!(fields(&err), vec![("too_deep", "")]);
    let deep_field = format!(
        r#"{{"v":1,"id":"a","ts":"2025-01-01T00:00:00Z","alert_id":"a","note":{}1{}}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let err = parse::<AlertMsg>(deep_field.as_bytes(), now).unwrap_err();
    assert_eq!(fields(&err), vec![("too_deep", "")]);
    // Unclosed brackets are refused at the bound too, whatever follows.
    let deep = "[".repeat(100_000);
    let err = parse::<AlertMsg>(deep.as_bytes(), now).unwrap_err();
    assert_eq!(fields(&err), vec![("too_deep", "")]);

    // 300 KiB is over the limit, whatever it holds.
    let mut big = example("team-status");
    big["note"] = json!("x".repeat(300 * 1024));
    let err = parse::<TeamStatusMsg>(big.to_string().as_bytes(), now).unwrap_err();
    assert_eq!(err.errors[0].code, "too_large");
    assert!(err.errors[0].message.contains("the limit is 262144"), "{}", err.errors[0].message);

    // Numbers too large for f64 are not turned into infinity.
    let body = r#"{"v":1,"id":"p1","ts":"2025-05-14T18:00:00Z","lat":1e999,"lon":70}"#;
    let err = parse::<TeamPositionMsg>(body.as_bytes(), now).unwrap_err();
    assert_eq!(err.errors[0].code, "invalid_json");
    assert!(err.errors[0].message.contains("number out of range"), "{}", err.errors[0].message);
    let body = r#"{"v":1,"id":"p1","ts":"2025-05-14T18:00:00Z","lat":NaN,"lon":70}"#;
    assert_eq!(parse::<TeamPositionMsg>(body.as_bytes(), now).unwrap_err().errors[0].code, "invalid_json");
    let body = r#"{"v":99999999999,"id":"p1","ts":"2025-05-14T18:00:00Z","lat":1,"lon":70}"#;
    assert_eq!(parse::<TeamPositionMsg>(body.as_bytes(), now).unwrap_err().errors[0].code, "invalid_type");

    // Trailing garbage, empty body, not UTF-8, a bare value.
    for body in [&b"{\"v\":1} x"[..], b"", b"\xff\xfe", b"42", b"null"] {
        let err = parse::<TeamStatusMsg>(body, now).unwrap_err();
        assert!(["invalid_json", "invalid_type"].contains(&err.errors[0].code.as_str()), "{err:?}");
    }

    // Huge year in a timestamp.
    let body = r#"{"v":1,"id":"p1","ts":"+262143-01-01T00:00:00Z","status":"available"}"#;
    assert!(parse::<TeamStatusMsg>(body.as_bytes(), now).is_err());
}

fn fields(p: &Problems) -> Vec<(&str, &str)> {
    p.errors.iter().map(|e| (e.code.as_str(), e.field.as_str())).collect()
}

/// `depth` nested arrays around a number, inside a one-field object: the
/// whole is `depth + 1` deep.
fn nested(depth: usize) -> String {
    format!(r#"{{"x":{}1{}}}"#, "[".repeat(depth), "]".repeat(depth))
}

#[test]
fn json_depth_is_bounded_just_past_the_limit() {
    // At the bound the JSON is parsed; one level more is refused, by a
    // problem that names the limit, before serde_json sees it.
    let at = nested(MAX_JSON_DEPTH - 1);
    assert!(parse_json::<Value>(at.as_bytes()).is_ok());
    assert!(check_json_depth(at.as_bytes()).is_ok());
    let over = nested(MAX_JSON_DEPTH);
    let err = parse_json::<Value>(over.as_bytes()).unwrap_err();
    assert_eq!(fields(&err), vec![("too_deep", "")]);
    let message = &err.errors[0].message;
    assert!(message.contains(&format!("the limit is {MAX_JSON_DEPTH}")), "{message}");
    assert!(!message.ends_with('.') && !message.starts_with(char::is_uppercase), "{message}");
    // Objects count as arrays do.
    let objects = |d: usize| format!("{}1{}", r#"{"a":"#.repeat(d), "}".repeat(d));
    assert!(parse_json::<Value>(objects(MAX_JSON_DEPTH).as_bytes()).is_ok());
    assert_eq!(
        fields(&parse_json::<Value>(objects(MAX_JSON_DEPTH + 1).as_bytes()).unwrap_err()),
        vec![("too_deep", "")]
    );
}

#[test]
fn json_depth_ignores_brackets_inside_strings() {
    let head = r#"{"v":1,"id":"s1","ts":"2025-05-14T18:00:00Z","status":"available","note":"#;
    // An escaped quote does not end the string: the brackets after it are
    // text, and the note is refused for its length, not its depth.
    let text = format!(r#"{head}"a \" b {}"}}"#, "[{".repeat(1000));
    let err = parse::<TeamStatusMsg>(text.as_bytes(), now()).unwrap_err();
    assert_eq!(fields(&err), vec![("too_long", "note")]);
    let text = format!(r#"{head}"a \" b [[[[ {{{{ ]]"}}"#);
    assert!(parse::<TeamStatusMsg>(text.as_bytes(), now()).is_ok());
    // An escaped backslash does not escape the quote after it: the string
    // ends there and the brackets after it count.
    let text = format!(r#"{head}"a \\","x":{}1{}}}"#, "[".repeat(MAX_JSON_DEPTH), "]".repeat(MAX_JSON_DEPTH));
    let err = parse::<TeamStatusMsg>(text.as_bytes(), now()).unwrap_err();
    assert_eq!(fields(&err), vec![("too_deep", "")]);
}

#[test]
fn the_deepest_legitimate_message_is_well_within_the_depth_bound() {
    // A MultiPolygon alert is 6 deep; the bound leaves room for wrappers.
    let body =
        std::fs::read(format!("{}/examples/alert-flood-polygon.json", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let mut multi: Value = serde_json::from_slice(&body).unwrap();
    let polygon = multi["area"]["coordinates"].take();
    multi["area"] = json!({"type": "MultiPolygon", "coordinates": [polygon]});
    assert!(parse::<AlertMsg>(multi.to_string().as_bytes(), now()).is_ok());
    fn depth(v: &Value) -> usize {
        match v {
            Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
            Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }
    assert_eq!(depth(&multi), 6);
    assert!(depth(&multi) * 4 <= MAX_JSON_DEPTH, "the bound leaves a wide margin");
}

#[test]
fn problems_quote_long_values_cut() {
    // Found by the protocol_json fuzz target: serde's messages quoted an
    // unknown variant or a mistyped string whole, so a 200 KiB value came
    // back in the problem. They are cut to 64 characters, and the message
    // still names the choices.
    let head = r#"{"v":1,"id":"s1","ts":"2025-05-14T18:00:00Z","status":"#;
    let long = "x".repeat(200 * 1024);
    let err = parse::<TeamStatusMsg>(format!(r#"{head}"{long}"}}"#).as_bytes(), now()).unwrap_err();
    assert_eq!(fields(&err), vec![("invalid_type", "status")]);
    let message = &err.errors[0].message;
    assert!(message.chars().count() < 300, "{message}");
    assert!(message.contains(&format!("`{}…`", "x".repeat(64))), "{message}");
    assert!(message.contains("expected one of") && message.contains("`available`"), "{message}");
    // A long string where a number belongs, with quotes and escapes in it.
    let body = format!(
        r#"{{"v":1,"id":"p1","ts":"2025-05-14T18:00:00Z","lat":"{}","lon":70}}"#,
        r#"a"b\"#.repeat(10_000)
    );
    let err = parse::<TeamPositionMsg>(body.as_bytes(), now()).unwrap_err();
    assert_eq!(fields(&err), vec![("invalid_type", "lat")]);
    let message = &err.errors[0].message;
    assert!(message.chars().count() < 300, "{message}");
    assert!(message.contains("expected f64"), "{message}");
    // Backticks in the value do not end it early (found by the fuzz target
    // after the first cut: every pair of backticks was kept).
    let ticks = format!("{}{}", "x".repeat(100), "`".repeat(1000));
    let err = parse::<TeamStatusMsg>(format!(r#"{head}"{ticks}"}}"#).as_bytes(), now()).unwrap_err();
    let message = &err.errors[0].message;
    assert!(message.chars().count() < 300, "{message}");
    assert!(message.contains("expected one of") && message.contains("`available`"), "{message}");
    // A short value is quoted whole.
    let err = parse::<TeamStatusMsg>(format!(r#"{head}"asleep"}}"#).as_bytes(), now()).unwrap_err();
    assert!(err.errors[0].message.starts_with("unknown variant `asleep`, expected one of"), "{err}");
    // A syntax error under a long key the sender chose: the path is cut.
    let key = "k".repeat(100_000);
    let body = format!(r#"{{"v":1,"id":"p1","ts":"2025-05-14T18:00:00Z","{key}":[1,}}"#);
    let err = parse::<TeamStatusMsg>(body.as_bytes(), now()).unwrap_err();
    assert_eq!(err.errors[0].code, "invalid_json");
    assert!(err.errors[0].field.chars().count() <= 256, "{}", err.errors[0].field.len());
}

#[test]
fn not_finite_values_built_in_code_are_refused() {
    // JSON cannot carry NaN, but edges build messages from other formats.
    let mut msg: TeamPositionMsg = serde_json::from_value(example("team-position")).unwrap();
    msg.lat = f64::NAN;
    msg.speed_mps = Some(f64::INFINITY);
    let mut p = Problems::default();
    msg.validate(now(), &mut p);
    let got: Vec<(&str, &str)> = p.errors.iter().map(|e| (e.code.as_str(), e.field.as_str())).collect();
    assert_eq!(got, vec![("not_finite", "lat"), ("not_finite", "speed_mps")]);
}
