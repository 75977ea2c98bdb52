//! CAP input: messages written from the OASIS CAP 1.2 specification
//! (`tests/cap/valid`, `tests/cap/broken`) are read, validated and mapped
//! to eoc alerts; broken ones are refused with the element path.

// Helpers of this test binary may unwrap too: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use eoc_protocol::cap::map::{Mapped, alert_id_of, hazard_of_words, to_alert_msg};
use eoc_protocol::cap::{
    CapAlert, CapMsgType, CapVersion, Category, ResponseType, Scope, Status, certainty_name, parse_cap,
    severity_name, urgency_name,
};
use eoc_protocol::geometry::AreaGeometry;
use eoc_protocol::messages::AlertMsg;
use eoc_protocol::types::{AlertStatus, Certainty, Hazard, MsgType, Severity, Urgency};
use eoc_protocol::validate::Problems;

fn fixture(path: &str) -> String {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cap").join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

fn now() -> DateTime<Utc> {
    "2026-07-01T00:00:00Z".parse().unwrap()
}

fn read(path: &str) -> CapAlert {
    parse_cap(fixture(path).as_bytes()).unwrap_or_else(|p| panic!("{path}: {p}"))
}

/// The eoc alert of a fixture, resolving references to their identifiers.
fn alert(path: &str) -> (AlertMsg, Vec<String>) {
    let xml = fixture(path);
    let cap = parse_cap(xml.as_bytes()).unwrap_or_else(|p| panic!("{path}: {p}"));
    match to_alert_msg(&cap, Some(&xml), now(), &|_| None).unwrap_or_else(|p| panic!("{path}: {p}")) {
        Mapped::Alert { msg, notes } => (*msg, notes),
        other => panic!("{path}: {other:?}"),
    }
}

fn refused(path: &str) -> Problems {
    let xml = fixture(path);
    match parse_cap(xml.as_bytes()) {
        Ok(cap) => match to_alert_msg(&cap, Some(&xml), now(), &|_| None) {
            Err(p) => p,
            Ok(m) => panic!("{path} was accepted: {m:?}"),
        },
        Err(p) => p,
    }
}

#[test]
fn an_earthquake_maps_magnitude_depth_and_epicentre_from_its_parameters() {
    let cap = read("valid/earthquake.xml");
    assert_eq!(
        (cap.version, cap.status, cap.msg_type, cap.scope),
        (CapVersion::V1_2, Status::Actual, CapMsgType::Alert, Scope::Public)
    );
    assert_eq!(cap.sent.to_rfc3339(), "2026-03-01T14:55:00+05:00");
    assert_eq!(cap.infos[0].response_types, vec![ResponseType::Assess]);

    let (msg, notes) = alert("valid/earthquake.xml");
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(msg.alert_id, "TJ-SEISMO-2026-0042");
    assert_eq!(msg.envelope.id, "cap:seismo.tj:TJ-SEISMO-2026-0042");
    assert_eq!(msg.envelope.ts.to_rfc3339(), "2026-03-01T09:55:00+00:00");
    assert_eq!(
        (msg.msg_type, msg.status, msg.hazard),
        (MsgType::Alert, AlertStatus::Actual, Some(Hazard::Earthquake))
    );
    assert_eq!(
        (msg.urgency, msg.severity, msg.certainty),
        (Urgency::Immediate, Severity::Severe, Certainty::Observed)
    );
    let eq = msg.earthquake.as_ref().unwrap();
    assert_eq!((eq.lat, eq.lon, eq.depth_km, eq.magnitude), (39.02, 70.38, Some(12.0), 6.4));
    assert_eq!(msg.area, None, "an earthquake carries its source, not an area");
    assert_eq!(msg.headline.as_deref(), Some("M6.4 earthquake in the Rasht valley"));
    assert!(msg.cap_xml.as_deref().unwrap().contains("TJ-SEISMO-2026-0042"), "the original xml is kept");
}

#[test]
fn a_prefixed_earthquake_takes_its_epicentre_from_the_circle_and_depth_in_km() {
    let (msg, _) = alert("valid/earthquake-circle-centre.xml");
    assert_eq!(msg.hazard, Some(Hazard::Earthquake));
    let eq = msg.earthquake.unwrap();
    assert_eq!((eq.lat, eq.lon, eq.depth_km, eq.magnitude), (37.9, 69.1, Some(35.0), 5.1));
    assert_eq!(msg.urgency, Urgency::Past);
}

#[test]
fn a_russian_sel_is_a_mudslide_with_its_polygon_as_geojson() {
    let (msg, _) = alert("valid/mudslide-polygon-ru.xml");
    assert_eq!(msg.hazard, Some(Hazard::Mudslide));
    assert_eq!(
        msg.area,
        Some(AreaGeometry::Polygon {
            coordinates: vec![vec![
                [68.80, 38.70],
                [68.90, 38.70],
                [68.90, 38.85],
                [68.80, 38.85],
                [68.80, 38.70]
            ]]
        }),
        "lat,lon becomes [lon, lat]"
    );
    assert_eq!(msg.expires_at.unwrap().to_rfc3339(), "2026-05-18T01:30:00+00:00");
    assert_eq!(msg.alert_id, "hydromet.tj-2026-05-17-sel-3");
}

#[test]
fn the_oet_flood_code_wins_over_the_event_words_and_two_polygons_make_a_multipolygon() {
    let (msg, _) = alert("valid/flood-oet-two-polygons.xml");
    assert_eq!(msg.hazard, Some(Hazard::Flood), "event \"High water\" alone names no hazard");
    let Some(AreaGeometry::MultiPolygon { coordinates }) = &msg.area else { panic!("{:?}", msg.area) };
    assert_eq!(coordinates.len(), 2);
    assert_eq!(coordinates[1][0][0], [69.00, 38.00]);
}

#[test]
fn several_areas_with_overlapping_polygons_and_a_circle_merge_into_one_valid_area() {
    let (msg, _) = alert("valid/flood-several-areas.xml");
    assert_eq!(msg.hazard, Some(Hazard::Flood));
    let Some(AreaGeometry::MultiPolygon { coordinates }) = &msg.area else { panic!("{:?}", msg.area) };
    // The two overlapping reaches merge; the circle is a separate polygon.
    assert_eq!(coordinates.len(), 2, "{coordinates:?}");
    let mut problems = Problems::default();
    msg.area.as_ref().unwrap().validate_into("area", &mut problems);
    assert!(problems.is_empty(), "{problems}");
    // The circle's polygon covers the circle: its vertices lie at least 5 km
    // from the centre (38.57, 68.33).
    let circle = coordinates.iter().find(|p| p[0].iter().all(|c| c[1] > 38.4)).unwrap();
    assert_eq!(circle[0].len(), 65);
    for c in &circle[0] {
        let dlat_km = (c[1] - 38.57) * 111.2;
        let dlon_km = (c[0] - 68.33) * 111.2 * 38.57f64.to_radians().cos();
        assert!((dlat_km.hypot(dlon_km) - 5.0).abs() < 0.1, "{c:?}");
    }
}

#[test]
fn one_circle_stays_a_circle_with_its_radius_in_metres() {
    let (msg, _) = alert("valid/avalanche-circle.xml");
    assert_eq!(msg.hazard, Some(Hazard::Avalanche));
    assert_eq!(msg.area, Some(AreaGeometry::Circle { lat: 39.08, lon: 68.87, radius_m: 8_500.0 }));
}

#[test]
fn a_thunderstorm_is_kept_as_other_with_its_area_and_event_as_headline() {
    let (msg, notes) = alert("valid/thunderstorm.xml");
    assert_eq!(msg.hazard, Some(Hazard::Other));
    assert!(matches!(msg.area, Some(AreaGeometry::Polygon { .. })));
    assert_eq!(msg.headline.as_deref(), Some("Thunderstorm"));
    assert!(notes.is_empty(), "{notes:?}");
}

#[test]
fn an_exercise_stays_an_exercise() {
    let (msg, _) = alert("valid/exercise-earthquake.xml");
    assert_eq!((msg.status, msg.hazard), (AlertStatus::Exercise, Some(Hazard::Earthquake)));
    assert_eq!(msg.earthquake.unwrap().magnitude, 7.0);
}

#[test]
fn update_and_cancel_find_their_alert_through_references() {
    let (update, _) = alert("valid/update.xml");
    assert_eq!((update.msg_type, update.alert_id.as_str()), (MsgType::Update, "TJ-SEISMO-2026-0042"));
    assert_eq!(update.earthquake.unwrap().magnitude, 6.7);

    // The cancel references only the update: without the server's mapping
    // the first reference's identifier is taken…
    let (cancel, _) = alert("valid/cancel.xml");
    assert_eq!((cancel.msg_type, cancel.hazard), (MsgType::Cancel, None));
    assert_eq!(cancel.alert_id, "TJ-SEISMO-2026-0042-U1");
    // …and with it (the server knows the update belongs to the first
    // alert) the cancellation reaches the alert.
    let xml = fixture("valid/cancel.xml");
    let cap = parse_cap(xml.as_bytes()).unwrap();
    let resolve = |r: &eoc_protocol::cap::Reference| {
        (r.identifier == "TJ-SEISMO-2026-0042-U1").then(|| "TJ-SEISMO-2026-0042".to_owned())
    };
    let Mapped::Alert { msg, .. } = to_alert_msg(&cap, Some(&xml), now(), &resolve).unwrap() else {
        panic!()
    };
    assert_eq!(msg.alert_id, "TJ-SEISMO-2026-0042");
}

#[test]
fn cap_1_1_is_read_and_russian_pavodok_is_a_flood() {
    let cap = read("valid/cap11-flood.xml");
    assert_eq!(cap.version, CapVersion::V1_1);
    let (msg, _) = alert("valid/cap11-flood.xml");
    assert_eq!(msg.hazard, Some(Hazard::Flood));
}

#[test]
fn ack_and_system_messages_make_no_alert() {
    for path in ["valid/ack.xml", "valid/system-heartbeat.xml"] {
        let cap = read(path);
        let mapped = to_alert_msg(&cap, None, now(), &|_| None).unwrap();
        assert!(matches!(mapped, Mapped::NoAlert { .. }), "{path}: {mapped:?}");
    }
}

#[test]
fn an_earthquake_without_magnitude_is_kept_as_other_with_a_note() {
    let xml = fixture("valid/earthquake.xml")
        .replace("<parameter><valueName>EarthquakeMagnitude</valueName><value>6.4</value></parameter>", "");
    let cap = parse_cap(xml.as_bytes()).unwrap();
    let Mapped::Alert { msg, notes } = to_alert_msg(&cap, None, now(), &|_| None).unwrap() else { panic!() };
    assert_eq!(msg.hazard, Some(Hazard::Other));
    assert!(notes[0].contains("magnitude"), "{notes:?}");
    assert!(matches!(msg.area, Some(AreaGeometry::Circle { .. })), "the circle is still shown");
}

#[test]
fn event_words_name_hazards_in_english_and_russian() {
    let check = |event: &str, expect: Option<Hazard>| assert_eq!(hazard_of_words(event), expect, "{event}");
    check("Earthquake", Some(Hazard::Earthquake));
    check("Strong quake felt", Some(Hazard::Earthquake));
    check("Землетрясение", Some(Hazard::Earthquake));
    check("Landslide warning", Some(Hazard::Mudslide));
    check("Debris flow", Some(Hazard::Mudslide));
    check("Mud flow", Some(Hazard::Mudslide));
    check("Sel", Some(Hazard::Mudslide));
    check("Селевой поток", Some(Hazard::Mudslide));
    check("Оползень", Some(Hazard::Mudslide));
    check("Лавинная опасность", Some(Hazard::Avalanche));
    check("Snow avalanche", Some(Hazard::Avalanche));
    check("Flash Flood Warning", Some(Hazard::Flood));
    check("Наводнение", Some(Hazard::Flood));
    check("Thunderstorm", None);
    check("Heat wave", None);
    check("Vessel adrift", None);
    check("Село", None);
}

/// One template, each enumeration value substituted in turn: every value
/// the specification lists is read, and maps where eoc has a counterpart.
#[test]
fn every_enumeration_value_is_read() {
    let base = fixture("valid/thunderstorm.xml");
    let sub = |from: &str, to: &str| {
        let xml = base.replace(from, to);
        assert!(base.contains(from), "{from}");
        parse_cap(xml.as_bytes()).unwrap_or_else(|p| panic!("{to}: {p}"))
    };
    for s in Status::ALL {
        let cap = sub("<status>Actual</status>", &format!("<status>{}</status>", s.as_str()));
        assert_eq!(cap.status, *s);
    }
    for t in CapMsgType::ALL {
        // Update, Cancel, Ack and Error reference the message they follow.
        let xml =
            base.replace("<msgType>Alert</msgType>", &format!("<msgType>{}</msgType>", t.as_str())).replace(
                "<scope>Public</scope>",
                "<scope>Public</scope>\n  <references>meteo.tj,x-1,2026-06-02T12:00:00+05:00</references>",
            );
        assert_eq!(parse_cap(xml.as_bytes()).unwrap().msg_type, *t);
    }
    for (s, extra) in [
        (Scope::Public, ""),
        (Scope::Restricted, "<restriction>eoc staff</restriction>"),
        (Scope::Private, "<addresses>coes.tj</addresses>"),
    ] {
        let cap = sub("<scope>Public</scope>", &format!("<scope>{}</scope>{extra}", s.as_str()));
        assert_eq!(cap.scope, s);
    }
    for c in Category::ALL {
        let cap = sub("<category>Met</category>", &format!("<category>{}</category>", c.as_str()));
        assert_eq!(cap.infos[0].categories, vec![*c]);
    }
    for r in ResponseType::ALL {
        let cap = sub(
            "<event>Thunderstorm</event>",
            &format!("<event>Thunderstorm</event><responseType>{}</responseType>", r.as_str()),
        );
        assert_eq!(cap.infos[0].response_types, vec![*r]);
    }
    for u in Urgency::ALL {
        let cap = sub("<urgency>Expected</urgency>", &format!("<urgency>{}</urgency>", urgency_name(*u)));
        assert_eq!(cap.infos[0].urgency, *u);
    }
    for s in Severity::ALL {
        let cap =
            sub("<severity>Moderate</severity>", &format!("<severity>{}</severity>", severity_name(*s)));
        assert_eq!(cap.infos[0].severity, *s);
    }
    for c in Certainty::ALL {
        let cap =
            sub("<certainty>Likely</certainty>", &format!("<certainty>{}</certainty>", certainty_name(*c)));
        assert_eq!(cap.infos[0].certainty, *c);
    }
    // Each status maps to eoc's, System makes no alert.
    for (s, expect) in [
        (Status::Actual, Some(AlertStatus::Actual)),
        (Status::Exercise, Some(AlertStatus::Exercise)),
        (Status::Test, Some(AlertStatus::Test)),
        (Status::Draft, Some(AlertStatus::Draft)),
        (Status::System, None),
    ] {
        let cap = sub("<status>Actual</status>", &format!("<status>{}</status>", s.as_str()));
        let got = match to_alert_msg(&cap, None, now(), &|_| None).unwrap() {
            Mapped::Alert { msg, .. } => Some(msg.status),
            Mapped::NoAlert { .. } => None,
        };
        assert_eq!(got, expect, "{s:?}");
    }
}

/// `(fixture, code, element path)`: each broken message is refused, naming
/// the element.
#[test]
fn broken_messages_are_refused_with_the_element_path() {
    let cases = [
        ("broken/missing-sender.xml", "required", "alert/sender"),
        ("broken/bad-status.xml", "invalid_value", "alert/status"),
        ("broken/bad-urgency.xml", "invalid_value", "alert/info[0]/urgency"),
        ("broken/bad-category.xml", "invalid_value", "alert/info[0]/category[0]"),
        ("broken/z-datetime.xml", "invalid_datetime", "alert/sent"),
        ("broken/open-polygon.xml", "invalid_polygon", "alert/info[0]/area[0]/polygon[0]"),
        ("broken/three-point-polygon.xml", "invalid_polygon", "alert/info[0]/area[0]/polygon[0]"),
        ("broken/bad-circle.xml", "invalid_circle", "alert/info[0]/area[0]/circle[0]"),
        ("broken/identifier-with-space.xml", "invalid_format", "alert/identifier"),
        ("broken/out-of-order.xml", "out_of_order", "alert/info[0]/urgency"),
        ("broken/missing-area-desc.xml", "required", "alert/info[0]/area[0]/areaDesc"),
        ("broken/bad-references.xml", "invalid_references", "alert/references"),
        ("broken/update-without-references.xml", "required", "alert/references"),
        ("broken/not-cap.xml", "not_cap", ""),
    ];
    for (path, code, field) in cases {
        let p = refused(path);
        assert!(
            p.errors.iter().any(|e| e.code == code && e.field == field),
            "{path}: expected {code} at {field:?}, got {p:?}"
        );
        for e in &p.errors {
            assert!(!e.message.ends_with('.'), "{path}: {}", e.message);
        }
    }
    let z = refused("broken/z-datetime.xml");
    assert!(z.errors[0].message.contains("-00:00"), "the message says how to write utc: {z}");
    let three = refused("broken/three-point-polygon.xml");
    assert!(three.errors[0].message.contains("3 points"), "{three}");
}

#[test]
fn every_problem_of_a_message_is_reported_at_once() {
    let p = refused("broken/several-problems.xml");
    let fields: Vec<&str> = p.errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["alert/status", "alert/info[0]/certainty", "alert/info[0]/area[0]/polygon[0]"],
        "{p}"
    );
}

#[test]
fn an_update_of_an_alert_whose_expiry_precedes_its_sending_names_the_expires_element() {
    let xml = fixture("valid/mudslide-polygon-ru.xml").replace(
        "<expires>2026-05-18T06:30:00+05:00</expires>",
        "<expires>2026-05-17T05:30:00+05:00</expires>",
    );
    let cap = parse_cap(xml.as_bytes()).unwrap();
    let p = to_alert_msg(&cap, None, now(), &|_| None).unwrap_err();
    assert_eq!(
        (p.errors[0].code.as_str(), p.errors[0].field.as_str()),
        ("conflict", "alert/info[0]/expires")
    );
}

#[test]
fn identifiers_outside_the_id_alphabet_give_stable_alert_ids() {
    assert_eq!(alert_id_of("urn:oid:2.49.0.1.860.0.2026"), "urn:oid:2.49.0.1.860.0.2026");
    assert_eq!(alert_id_of("NWS/KTOP#1"), "NWS_KTOP_1");
    let long = "x".repeat(200);
    assert_eq!(alert_id_of(&long).len(), 64);
    assert_eq!(alert_id_of(&long), alert_id_of(&long));
}
