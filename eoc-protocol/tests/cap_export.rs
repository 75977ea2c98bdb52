//! CAP output: every export validates against the OASIS CAP 1.2 XSD (with
//! xmllint, which `.ci/install-deps` installs), and export → parse → map
//! gives back the alert.

// Helpers of this test binary may unwrap too: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, Duration, Utc};
use eoc_protocol::cap::export::{ExportOptions, FeedEntry, atom_feed, identifier_of, to_cap_xml};
use eoc_protocol::cap::map::{Mapped, message_id_of, to_alert_msg};
use eoc_protocol::cap::parse_cap;
use eoc_protocol::geometry::{AreaGeometry, EarthquakeSource, Position};
use eoc_protocol::messages::{AlertMsg, Envelope};
use eoc_protocol::types::{AlertStatus, Certainty, Hazard, MsgType, Severity, Urgency};
use proptest::prelude::*;
use proptest::strategy::ValueTree;

const SENDER: &str = "coes.tj";

fn xsd() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cap/CAP-v1.2.xsd")
}

/// Validates documents against the CAP 1.2 XSD with one xmllint run;
/// panics with xmllint's report when one is invalid.
fn xmllint(name: &str, docs: &[String]) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cap-export-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let files: Vec<PathBuf> = docs
        .iter()
        .enumerate()
        .map(|(i, doc)| {
            let f = dir.join(format!("{i}.xml"));
            std::fs::write(&f, doc).unwrap();
            f
        })
        .collect();
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(xsd())
        .args(&files)
        .output()
        .unwrap_or_else(|e| {
            panic!("xmllint is needed (apt-get install libxml2-utils, see .ci/install-deps): {e}")
        });
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "xmllint refused an export:\n{report}\n{}", docs.join("\n----\n"));
    assert_eq!(report.matches(" validates").count(), docs.len(), "{report}");
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn opts(msg: &AlertMsg, revision: u32) -> ExportOptions<'static> {
    ExportOptions {
        sender: SENDER,
        sent: msg.envelope.ts,
        first_sent: msg.envelope.ts - Duration::minutes(5),
        revision,
        affected_radius_km: None,
        area_desc: None,
    }
}

fn base(alert_id: &str, hazard: Hazard) -> AlertMsg {
    AlertMsg {
        envelope: Envelope { v: 1, id: format!("m-{alert_id}"), ts: t("2026-03-01T10:00:00Z") },
        alert_id: alert_id.to_owned(),
        msg_type: MsgType::Alert,
        status: AlertStatus::Actual,
        hazard: Some(hazard),
        urgency: Urgency::Immediate,
        severity: Severity::Severe,
        certainty: Certainty::Observed,
        headline: Some("Headline with <markup> & \"quotes\"".to_owned()),
        description: Some("Line one\nline two: Душанбе".to_owned()),
        expires_at: Some(t("2026-03-02T10:00:00Z")),
        earthquake: None,
        area: None,
        buffer_m: None,
        cap_xml: None,
    }
}

/// One alert of each hazard and geometry form, and an update and a cancel.
fn examples() -> Vec<(AlertMsg, u32)> {
    let mut quake = base("quake-1", Hazard::Earthquake);
    quake.earthquake =
        Some(EarthquakeSource { lat: 39.02, lon: 70.38, depth_km: Some(12.0), magnitude: 6.4 });
    let mut sel = base("sel-1", Hazard::Mudslide);
    sel.area = Some(AreaGeometry::Polygon {
        coordinates: vec![
            vec![[68.8, 38.7], [68.9, 38.7], [68.9, 38.85], [68.8, 38.85], [68.8, 38.7]],
            vec![[68.84, 38.75], [68.86, 38.75], [68.86, 38.77], [68.84, 38.75]],
        ],
    });
    sel.buffer_m = Some(250.0);
    let mut flood = base("flood-1", Hazard::Flood);
    flood.area = Some(AreaGeometry::MultiPolygon {
        coordinates: vec![
            vec![vec![[68.7, 37.8], [68.8, 37.8], [68.8, 37.9], [68.7, 37.8]]],
            vec![vec![[69.0, 38.0], [69.1, 38.0], [69.1, 38.1], [69.0, 38.0]]],
        ],
    });
    let mut avalanche = base("aval-1", Hazard::Avalanche);
    avalanche.area = Some(AreaGeometry::Circle { lat: 39.08, lon: 68.87, radius_m: 8_500.0 });
    let mut storm = base("storm-1", Hazard::Other);
    storm.headline = Some("Thunderstorm".to_owned());
    storm.description = None;
    storm.expires_at = None;
    let mut update = quake.clone();
    update.msg_type = MsgType::Update;
    let mut cancel = flood.clone();
    cancel.msg_type = MsgType::Cancel;
    let mut exercise = avalanche.clone();
    exercise.status = AlertStatus::Exercise;
    vec![
        (quake, 1),
        (sel, 1),
        (flood, 1),
        (avalanche, 1),
        (storm, 1),
        (update, 2),
        (cancel, 3),
        (exercise, 1),
    ]
}

#[test]
fn every_kind_of_export_validates_against_the_oasis_xsd() {
    let docs: Vec<String> = examples().iter().map(|(m, rev)| to_cap_xml(m, &opts(m, *rev))).collect();
    xmllint("examples", &docs);
    // And every CAP fixture eoc accepts, re-exported.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cap/valid");
    let mut again = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let xml = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let cap = parse_cap(xml.as_bytes()).unwrap();
        if let Mapped::Alert { msg, .. } =
            to_alert_msg(&cap, None, t("2026-07-01T00:00:00Z"), &|_| None).unwrap()
        {
            again.push(to_cap_xml(&msg, &opts(&msg, 1)));
        }
    }
    assert!(again.len() >= 10, "{}", again.len());
    xmllint("fixtures", &again);
}

#[test]
fn an_export_says_what_the_alert_says() {
    let all = examples();
    let (quake, _) = &all[0];
    let xml = to_cap_xml(quake, &opts(quake, 1));
    for part in [
        "<identifier>quake-1</identifier>",
        "<sender>coes.tj</sender>",
        "<sent>2026-03-01T10:00:00-00:00</sent>",
        "<msgType>Alert</msgType>",
        "<scope>Public</scope>",
        "<category>Geo</category>",
        "<valueName>EarthquakeMagnitude</valueName><value>6.4</value>",
        "<valueName>EarthquakeDepth</valueName><value>12</value>",
        "<valueName>EarthquakeLocation</valueName><value>39.02,70.38</value>",
        "<circle>39.02,70.38 ",
        "Headline with &lt;markup&gt; &amp; &quot;quotes&quot;",
    ] {
        assert!(xml.contains(part), "{part} missing from\n{xml}");
    }
    let (update, rev) = &all[5];
    let xml = to_cap_xml(update, &opts(update, *rev));
    assert!(xml.contains("<identifier>quake-1.r2</identifier>"), "{xml}");
    assert!(xml.contains("<references>coes.tj,quake-1,2026-03-01T09:55:00-00:00</references>"), "{xml}");
    let (flood, _) = &all[2];
    let xml = to_cap_xml(flood, &opts(flood, 1));
    assert_eq!(xml.matches("<polygon>").count(), 2);
    assert!(
        xml.contains("<polygon>37.8,68.7 37.8,68.8 37.9,68.8 37.8,68.7</polygon>"),
        "lat,lon order: {xml}"
    );
    assert!(xml.contains("<value>OET-081</value>"));
}

#[test]
fn the_atom_feed_links_every_alert_to_its_cap_document() {
    let all = examples();
    let entries: Vec<FeedEntry<'_>> = all
        .iter()
        .map(|(m, rev)| FeedEntry {
            msg: m,
            revision: *rev,
            published: m.envelope.ts,
            updated: m.envelope.ts,
        })
        .collect();
    let feed = atom_feed(SENDER, "https://eoc.example", t("2026-03-01T10:00:00Z"), &entries);
    assert_eq!(feed.matches("<entry>").count(), all.len());
    assert!(feed.contains(
        "<link rel=\"alternate\" type=\"application/cap+xml\" href=\"https://eoc.example/api/v1/alerts/quake-1.cap\"/>"
    ));
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let f = dir.join("feed.atom");
    std::fs::write(&f, &feed).unwrap();
    let out = Command::new("xmllint").arg("--noout").arg(&f).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

// ---- round trip -----------------------------------------------------------

fn text(max: usize) -> impl Strategy<Value = String> {
    // No leading or trailing whitespace: CAP values are read trimmed.
    proptest::string::string_regex(&format!("[!-~а-яА-Я]([ -~а-я\n]{{0,{max}}}[!-~а-я])?")).unwrap()
}

fn square(lon: f64, lat: f64, size: f64) -> Vec<Position> {
    vec![[lon, lat], [lon + size, lat], [lon + size, lat + size], [lon, lat + size], [lon, lat]]
}

fn area() -> impl Strategy<Value = AreaGeometry> {
    prop_oneof![
        (-80.0..80.0f64, -179.0..179.0f64, 1.0..1_000_000.0f64)
            .prop_map(|(lat, lon, radius_m)| AreaGeometry::Circle { lat, lon, radius_m }),
        (-80.0..79.0f64, -179.0..178.0f64, 0.0001..0.9f64)
            .prop_map(|(lat, lon, size)| AreaGeometry::Polygon { coordinates: vec![square(lon, lat, size)] }),
        (-80.0..79.0f64, -179.0..170.0f64, 0.0001..0.9f64, 2..5usize).prop_map(|(lat, lon, size, n)| {
            AreaGeometry::MultiPolygon {
                coordinates: (0..n).map(|k| vec![square(lon + 2.0 * k as f64, lat, size)]).collect(),
            }
        }),
    ]
}

fn hazard_parts() -> impl Strategy<Value = (Hazard, Option<EarthquakeSource>, Option<AreaGeometry>)> {
    prop_oneof![
        (-89.0..89.0f64, -179.9..179.9f64, proptest::option::of(0.0..700.0f64), 0.0..10.0f64).prop_map(
            |(lat, lon, depth_km, magnitude)| {
                (Hazard::Earthquake, Some(EarthquakeSource { lat, lon, depth_km, magnitude }), None)
            }
        ),
        (prop_oneof![Just(Hazard::Mudslide), Just(Hazard::Flood), Just(Hazard::Avalanche)], area())
            .prop_map(|(h, a)| (h, None, Some(a))),
        proptest::option::of(area()).prop_map(|a| (Hazard::Other, None, a)),
    ]
}

fn alert_msg() -> impl Strategy<Value = (AlertMsg, u32)> {
    (
        "[A-Za-z0-9][A-Za-z0-9._:-]{0,30}",
        1_600_000_000i64..1_780_000_000i64,
        hazard_parts(),
        (
            proptest::sample::select(AlertStatus::ALL),
            proptest::sample::select(Urgency::ALL),
            proptest::sample::select(Severity::ALL),
            proptest::sample::select(Certainty::ALL),
        ),
        (proptest::option::of(text(120)), proptest::option::of(text(400))),
        proptest::option::of(1..10_000_000i64),
        proptest::option::of(0.0..50_000.0f64),
        1..5u32,
    )
        .prop_map(
            |(
                alert_id,
                ts,
                (hazard, earthquake, area),
                (status, urgency, severity, certainty),
                (headline, description),
                expires,
                buffer_m,
                revision,
            )| {
                let ts = DateTime::<Utc>::from_timestamp(ts, 0).unwrap();
                // An alert eoc does not model shows its headline as the CAP event.
                let headline = if hazard == Hazard::Other {
                    headline.or(Some("Heat wave".to_owned()))
                } else {
                    headline
                };
                let msg = AlertMsg {
                    envelope: Envelope { v: 1, id: "x".to_owned(), ts },
                    alert_id,
                    msg_type: if revision > 1 { MsgType::Update } else { MsgType::Alert },
                    status,
                    hazard: Some(hazard),
                    urgency,
                    severity,
                    certainty,
                    headline,
                    description,
                    expires_at: expires.map(|s| ts + Duration::seconds(s)),
                    earthquake,
                    area,
                    buffer_m,
                    cap_xml: None,
                };
                (msg, revision)
            },
        )
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(1.0)
}

fn same_area(a: &AreaGeometry, b: &AreaGeometry) -> bool {
    let rings = |g: &AreaGeometry| -> Vec<Vec<Position>> {
        match g {
            AreaGeometry::Polygon { coordinates } => coordinates.clone(),
            AreaGeometry::MultiPolygon { coordinates } => coordinates.iter().flatten().cloned().collect(),
            AreaGeometry::Circle { lat, lon, radius_m } => vec![vec![[*lon, *lat], [*radius_m, 0.0]]],
        }
    };
    std::mem::discriminant(a) == std::mem::discriminant(b) && {
        let (ra, rb) = (rings(a), rings(b));
        ra.len() == rb.len()
            && ra.iter().zip(&rb).all(|(x, y)| {
                x.len() == y.len() && x.iter().zip(y).all(|(p, q)| close(p[0], q[0]) && close(p[1], q[1]))
            })
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// eoc alert → CAP export → parse → map gives the same alert (geometry
    /// within 1e-6°, the circle's radius within 1e-6 relative).
    #[test]
    fn export_then_parse_gives_the_same_alert((msg, revision) in alert_msg()) {
        let xml = to_cap_xml(&msg, &opts(&msg, revision));
        let cap = parse_cap(xml.as_bytes()).map_err(|p| TestCaseError::fail(format!("{p}\n{xml}")))?;
        let back = match to_alert_msg(&cap, Some(&xml), t("2030-01-01T00:00:00Z"), &|_| None) {
            Ok(Mapped::Alert { msg, notes }) => {
                prop_assert!(notes.is_empty(), "{:?}", notes);
                *msg
            }
            other => return Err(TestCaseError::fail(format!("{other:?}\n{xml}"))),
        };
        prop_assert_eq!(back.cap_xml.as_deref(), Some(xml.as_str()));
        prop_assert_eq!(&back.envelope.id, &message_id_of(SENDER, &identifier_of(&msg.alert_id, revision)));
        let (a, b) = (back.area.clone(), msg.area.clone());
        match (&a, &b) {
            (Some(x), Some(y)) => prop_assert!(same_area(x, y), "{:?} != {:?}", x, y),
            _ => prop_assert_eq!(&a, &b),
        }
        let mut expect = msg.clone();
        expect.envelope.id = back.envelope.id.clone();
        expect.area = back.area.clone();
        expect.cap_xml = back.cap_xml.clone();
        prop_assert_eq!(back, expect, "{}", xml);
    }
}

#[test]
fn a_round_trip_sample_validates_against_the_xsd() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let docs: Vec<String> = (0..48)
        .map(|_| {
            let (msg, rev) = alert_msg().new_tree(&mut runner).unwrap().current();
            to_cap_xml(&msg, &opts(&msg, rev))
        })
        .collect();
    xmllint("sample", &docs);
}

#[test]
fn a_cancel_round_trips_to_a_cancel_of_the_same_alert() {
    let (mut flood, _) = examples().remove(2);
    flood.msg_type = MsgType::Cancel;
    let xml = to_cap_xml(&flood, &opts(&flood, 2));
    let cap = parse_cap(xml.as_bytes()).unwrap();
    let Mapped::Alert { msg, .. } = to_alert_msg(&cap, None, t("2030-01-01T00:00:00Z"), &|_| None).unwrap()
    else {
        panic!()
    };
    assert_eq!((msg.msg_type, msg.alert_id.as_str()), (MsgType::Cancel, "flood-1"));
    assert!(Path::new(&xsd()).exists());
}
