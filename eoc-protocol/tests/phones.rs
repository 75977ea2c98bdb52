//! OwnTracks and OsmAnd/Traccar payloads as the apps send them, read into
//! eoc units.

// Helpers of this test binary may unwrap too: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Utc};
use eoc_protocol::osmand::{self, SpeedUnit};
use eoc_protocol::owntracks::{self, OwnTracks, TransitionEvent, Waypoint};
use eoc_protocol::validate::{MAX_JSON_DEPTH, Problems, Validate, message_id};
use serde_json::json;

fn now() -> DateTime<Utc> {
    "2025-03-14T04:45:00Z".parse().unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

fn fields(p: &Problems) -> Vec<(&str, &str)> {
    p.errors.iter().map(|e| (e.code.as_str(), e.field.as_str())).collect()
}

#[test]
fn owntracks_android_location_in_eoc_units() {
    // MQTT payload from OwnTracks Android on owntracks/react-rasht-01/phone.
    let body = br#"{"_type":"location","acc":14,"alt":1312,"batt":64,"bs":1,"conn":"m",
        "created_at":1741927271,"lat":39.0412,"lon":70.3871,"t":"u","tid":"01",
        "tst":1741927265,"vac":6,"vel":40,"cog":78,"inregions":["osm:way:721093873"]}"#;
    let OwnTracks::Location(loc) = owntracks::parse(body).unwrap() else { panic!("a location") };
    assert_eq!((loc.lat, loc.lon), (39.0412, 70.3871));
    assert_eq!(loc.at, "2025-03-14T04:41:05Z".parse::<DateTime<Utc>>().unwrap());
    assert_eq!(loc.created_at, Some("2025-03-14T04:41:11Z".parse().unwrap()));
    // 40 km/h is 11.11 m/s.
    assert!(close(loc.speed_mps.unwrap(), 40.0 / 3.6), "{:?}", loc.speed_mps);
    assert_eq!(
        (loc.accuracy_m, loc.altitude_m, loc.heading_deg, loc.battery_pct),
        (Some(14.0), Some(1312.0), Some(78.0), Some(64.0))
    );
    assert_eq!(loc.tid.as_deref(), Some("01"));
    assert_eq!(loc.trigger.as_deref(), Some("u"));
    assert_eq!(loc.in_regions, vec!["osm:way:721093873".to_owned()]);

    let id = message_id(&["owntracks", "react-rasht-01", "phone", &loc.at.timestamp().to_string()]);
    assert_eq!(id, "owntracks:react-rasht-01:phone:1741927265");
    let msg = loc.to_position(id, "react-rasht-01".into());
    let mut p = Problems::default();
    msg.validate(now(), &mut p);
    assert!(p.is_empty(), "{p}");
    assert_eq!(msg.at, Some(loc.at));
    assert_eq!(msg.envelope.ts, loc.created_at.unwrap());
}

#[test]
fn owntracks_http_location_without_optional_fields() {
    // HTTP mode: `topic` names the device; zero-valued fields are omitted.
    let body = br#"{"_type":"location","lat":38.5598,"lon":68.787,"tst":1741927200,"tid":"ph",
        "topic":"owntracks/react-dushanbe-02/phone"}"#;
    let OwnTracks::Location(loc) = owntracks::parse(body).unwrap() else { panic!() };
    assert_eq!(loc.topic.as_deref(), Some("owntracks/react-dushanbe-02/phone"));
    assert_eq!((loc.speed_mps, loc.accuracy_m, loc.battery_pct), (None, None, None));
}

#[test]
fn owntracks_required_fields_and_types_are_named() {
    let err = owntracks::parse(br#"{"_type":"location","lon":70.1}"#).unwrap_err();
    assert_eq!(fields(&err), vec![("required", "lat"), ("required", "tst")]);
    let err =
        owntracks::parse(br#"{"_type":"location","lat":"39","lon":70.1,"tst":1741927200}"#).unwrap_err();
    assert_eq!(fields(&err), vec![("invalid_type", "lat")]);
    let err = owntracks::parse(br#"{"_type":"location","lat":95,"lon":70.1,"tst":1741927200}"#).unwrap_err();
    assert_eq!(fields(&err), vec![("out_of_range", "lat")]);
    assert_eq!(err.errors[0].message, "latitude 95 is not within -90..90");
    let err = owntracks::parse(br#"{"lat":39}"#).unwrap_err();
    assert_eq!(fields(&err), vec![("required", "_type")]);
    let err = owntracks::parse(br#"[1,2]"#).unwrap_err();
    assert_eq!(fields(&err), vec![("invalid_type", "")]);
    let err = owntracks::parse(br#"{"_type":"location","lat":39,"lon":70,"tst":1e999}"#).unwrap_err();
    assert_eq!(fields(&err), vec![("invalid_json", "")]);
    let err =
        owntracks::parse(br#"{"_type":"location","lat":39,"lon":70,"tst":99999999999999}"#).unwrap_err();
    assert_eq!(fields(&err), vec![("out_of_range", "tst")]);
}

#[test]
fn owntracks_transition_lwt_waypoint_and_others() {
    let body = br#"{"_type":"transition","wtst":1741900000,"lat":39.05,"lon":70.4,"tst":1741927300,
        "acc":10,"tid":"01","event":"enter","desc":"Garm school 3","t":"c","rid":"osm:way:721093873"}"#;
    let OwnTracks::Transition(t) = owntracks::parse(body).unwrap() else { panic!() };
    assert_eq!(t.event, TransitionEvent::Enter);
    assert_eq!(t.desc.as_deref(), Some("Garm school 3"));
    assert_eq!(t.rid.as_deref(), Some("osm:way:721093873"));
    assert_eq!(t.waypoint_at, Some(DateTime::from_timestamp(1741900000, 0).unwrap()));
    assert_eq!((t.lat, t.lon, t.accuracy_m), (Some(39.05), Some(70.4), Some(10.0)));

    let err = owntracks::parse(br#"{"_type":"transition","tst":1741927300,"event":"stay"}"#).unwrap_err();
    assert_eq!(fields(&err), vec![("invalid_format", "event")]);

    let OwnTracks::Lwt(lwt) = owntracks::parse(br#"{"_type":"lwt","tst":1741920000}"#).unwrap() else {
        panic!()
    };
    assert_eq!(lwt.connected_at, DateTime::from_timestamp(1741920000, 0));

    let body = br#"{"_type":"waypoint","desc":"Home","lat":38.56,"lon":68.78,"rad":150,"tst":1741800000}"#;
    let OwnTracks::Waypoint(w) = owntracks::parse(body).unwrap() else { panic!() };
    assert_eq!((w.desc.as_str(), w.radius_m), ("Home", Some(150.0)));

    assert_eq!(
        owntracks::parse(br#"{"_type":"card","name":"Jane"}"#).unwrap(),
        OwnTracks::Other("card".into())
    );
}

#[test]
fn set_waypoints_pushes_sites_as_regions() {
    let sites = [Waypoint {
        desc: "Garm school 3".into(),
        lat: 39.0061,
        lon: 70.3207,
        radius_m: Some(150.4),
        at: DateTime::from_timestamp(1741900000, 0).unwrap(),
        rid: Some("osm:way:721093873".into()),
    }];
    assert_eq!(
        owntracks::set_waypoints_cmd(&sites),
        json!({
            "_type": "cmd",
            "action": "setWaypoints",
            "waypoints": {"_type": "waypoints", "waypoints": [
                {"_type": "waypoint", "desc": "Garm school 3", "lat": 39.0061, "lon": 70.3207, "rad": 150,
                 "tst": 1741900000, "rid": "osm:way:721093873"}
            ]}
        })
    );
    // What eoc sends, a phone reads back as the same waypoint.
    let cmd = owntracks::set_waypoints_cmd(&sites);
    let back = owntracks::parse(cmd["waypoints"]["waypoints"][0].to_string().as_bytes()).unwrap();
    let OwnTracks::Waypoint(w) = back else { panic!() };
    assert_eq!((w.rid, w.radius_m), (sites[0].rid.clone(), Some(150.0)));
}

fn pairs(q: &str) -> Vec<(String, String)> {
    q.split('&').map(|kv| kv.split_once('=').unwrap()).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

#[test]
fn osmand_query_as_traccar_client_sends_it() {
    // Traccar Client for Android 8: speed in knots, accuracy 0 for GPS.
    let q = "id=100001&timestamp=1741927265&lat=39.0412&lon=70.3871&speed=21.6&bearing=78.5\
             &altitude=1312.0&accuracy=0.0&batt=64.0&charge=false&mock=true&alarm=sos";
    let fix = osmand::parse_params(&pairs(q), now()).unwrap();
    assert_eq!(fix.device_id, "100001");
    assert_eq!(fix.at, DateTime::from_timestamp(1741927265, 0).unwrap());
    assert_eq!((fix.lat, fix.lon), (Some(39.0412), Some(70.3871)));
    assert!(close(fix.speed_mps.unwrap(), 21.6 * 0.514444), "{:?}", fix.speed_mps);
    assert_eq!(fix.heading_deg, Some(78.5));
    assert_eq!(fix.altitude_m, Some(1312.0));
    assert_eq!(fix.accuracy_m, None, "0 means a GPS fix whose accuracy is not reported");
    assert_eq!((fix.battery_pct, fix.charging), (Some(64.0), Some(false)));
    assert_eq!(fix.attributes, vec![("mock".into(), "true".into()), ("alarm".into(), "sos".into())]);

    let msg = fix.to_position("osmand:100001:1741927265000".into(), "react-rasht-01".into()).unwrap();
    let mut p = Problems::default();
    msg.validate(now(), &mut p);
    assert!(p.is_empty(), "{p}");
}

#[test]
fn osmand_query_variants() {
    let fix = osmand::parse_params(&pairs("deviceid=abc&location=38.56,68.78&heading=10&accuracy=25"), now())
        .unwrap();
    assert_eq!((fix.device_id.as_str(), fix.lat, fix.lon), ("abc", Some(38.56), Some(68.78)));
    assert_eq!((fix.heading_deg, fix.accuracy_m), (Some(10.0), Some(25.0)));
    assert_eq!(fix.at, now(), "no timestamp: the server's clock");

    for (ts, want) in [
        ("1741927265", "2025-03-14T04:41:05Z"),
        ("1741927265123", "2025-03-14T04:41:05.123Z"),
        ("2025-03-14T09:41:05%2B05:00".replace("%2B", "+").as_str(), "2025-03-14T04:41:05Z"),
        ("2025-03-14T04:41:05Z", "2025-03-14T04:41:05Z"),
        ("2025-03-14T04:41:05.250", "2025-03-14T04:41:05.250Z"),
        ("2025-03-14 04:41:05", "2025-03-14T04:41:05Z"),
    ] {
        let fix = osmand::parse_params(&[("id".into(), "1".into()), ("timestamp".into(), ts.into())], now())
            .unwrap();
        assert_eq!(fix.at, want.parse::<DateTime<Utc>>().unwrap(), "{ts}");
    }

    // No position at all is allowed: the server keeps the last one.
    let fix = osmand::parse_params(&pairs("id=1&batt=12"), now()).unwrap();
    assert_eq!((fix.lat, fix.lon, fix.battery_pct), (None, None, Some(12.0)));
    assert!(fix.to_position("m".into(), "t".into()).is_none());

    let fix = osmand::parse_params_with(&pairs("id=1&speed=36"), now(), SpeedUnit::Kmh).unwrap();
    assert!(close(fix.speed_mps.unwrap(), 10.0));
}

#[test]
fn osmand_query_errors_name_the_field() {
    let err = osmand::parse_params(&pairs("lat=39&lon=70"), now()).unwrap_err();
    assert_eq!(fields(&err), vec![("required", "id")]);
    let err = osmand::parse_params(&pairs("id=1&lat=39"), now()).unwrap_err();
    assert_eq!(fields(&err), vec![("required", "lon")]);
    let err = osmand::parse_params(&pairs("id=1&lat=NaN&lon=inf"), now()).unwrap_err();
    assert_eq!(fields(&err), vec![("not_finite", "lat"), ("not_finite", "lon")]);
    let err = osmand::parse_params(&pairs("id=1&lat=1e999&lon=70"), now()).unwrap_err();
    assert_eq!(fields(&err), vec![("not_finite", "lat")]);
    let err = osmand::parse_params(&pairs("id=1&lat=91&lon=70&speed=fast"), now()).unwrap_err();
    assert_eq!(fields(&err), vec![("out_of_range", "lat"), ("invalid_format", "speed")]);
    let err = osmand::parse_params(&pairs("id=1&timestamp=yesterday"), now()).unwrap_err();
    assert_eq!(fields(&err), vec![("invalid_format", "timestamp")]);
    let err = osmand::parse_params(&pairs("id=1&location=39"), now()).unwrap_err();
    assert_eq!(fields(&err), vec![("invalid_format", "location")]);
    let err = osmand::parse_params(&pairs("id=1&timestamp=99999999999999999999"), now()).unwrap_err();
    assert_eq!(fields(&err), vec![("invalid_format", "timestamp")]);
    let long_id = format!("id={}", "x".repeat(65));
    assert_eq!(fields(&osmand::parse_params(&pairs(&long_id), now()).unwrap_err()), vec![("too_long", "id")]);
    let many: Vec<(String, String)> = (0..65).map(|i| (format!("k{i}"), "v".into())).collect();
    assert_eq!(fields(&osmand::parse_params(&many, now()).unwrap_err()), vec![("too_many", "")]);
}

#[test]
fn osmand_json_as_traccar_client_9_sends_it() {
    let body = br#"{ "location": {
        "timestamp": "2025-03-14T04:41:05.000Z",
        "coords": { "latitude": 39.0412, "longitude": 70.3871, "accuracy": 9.5, "speed": 11.2,
                    "heading": 78.5, "altitude": 1312 },
        "is_moving": true, "odometer": 1520.5, "event": "motionchange",
        "battery": { "level": 0.64, "is_charging": true },
        "activity": { "type": "in_vehicle" },
        "extras": { "alarm": "sos" } },
      "device_id": "48241179" }"#;
    let fix = osmand::parse_json(body, now()).unwrap();
    assert_eq!(fix.device_id, "48241179");
    assert_eq!(fix.at, "2025-03-14T04:41:05Z".parse::<DateTime<Utc>>().unwrap());
    assert_eq!((fix.lat, fix.lon, fix.accuracy_m), (Some(39.0412), Some(70.3871), Some(9.5)));
    assert_eq!((fix.speed_mps, fix.heading_deg, fix.altitude_m), (Some(11.2), Some(78.5), Some(1312.0)));
    assert!(close(fix.battery_pct.unwrap(), 64.0));
    assert_eq!(fix.charging, Some(true));
    assert!(fix.attributes.contains(&("event".into(), "motionchange".into())));
    assert!(fix.attributes.contains(&("activity".into(), "in_vehicle".into())));
    assert!(fix.attributes.contains(&("alarm".into(), "sos".into())));
}

#[test]
fn osmand_json_unknowns_and_errors() {
    // Negative speed, heading and battery level mean "unknown".
    let body =
        br#"{"device_id":"1","location":{"coords":{"latitude":1,"longitude":2,"speed":-1,"heading":-1},
        "battery":{"level":-1}}}"#;
    let fix = osmand::parse_json(body, now()).unwrap();
    assert_eq!((fix.speed_mps, fix.heading_deg, fix.battery_pct), (None, None, None));
    assert_eq!(fix.at, now());
    // No coords: no position.
    let fix =
        osmand::parse_json(br#"{"device_id":"1","location":{"battery":{"level":0.5}}}"#, now()).unwrap();
    assert_eq!((fix.lat, fix.lon, fix.battery_pct), (None, None, Some(50.0)));

    let err = osmand::parse_json(br#"{"location":{}}"#, now()).unwrap_err();
    assert_eq!(fields(&err), vec![("required", "device_id")]);
    let err = osmand::parse_json(
        br#"{"device_id":"1","location":{"coords":{"latitude":"x","longitude":2}}}"#,
        now(),
    )
    .unwrap_err();
    assert_eq!(fields(&err), vec![("invalid_type", "location.coords.latitude")]);
    let err = osmand::parse_json(br#"{"device_id":"1","location":{"timestamp":"soon"}}"#, now()).unwrap_err();
    assert_eq!(fields(&err), vec![("invalid_format", "location.timestamp")]);
    let err = osmand::parse_json(br#"{"device_id":"1","location":[]}"#, now()).unwrap_err();
    assert_eq!(fields(&err), vec![("invalid_type", "location")]);
    let big = format!(r#"{{"device_id":"1","pad":"{}"}}"#, "x".repeat(300 * 1024));
    assert_eq!(fields(&osmand::parse_json(big.as_bytes(), now()).unwrap_err()), vec![("too_large", "")]);
    let deep = format!("{}{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
    assert_eq!(fields(&osmand::parse_json(deep.as_bytes(), now()).unwrap_err()), vec![("too_deep", "")]);
}

#[test]
fn osmand_half_a_position_is_refused_even_next_to_a_location() {
    // Found by the osmand_params fuzz target: a `location` field made a
    // missing `lat` look sent, so a fix with a longitude only was accepted.
    let err = osmand::parse_params(&pairs("id=1&lon=70.3871&location=39.1x"), now()).unwrap_err();
    assert_eq!(fields(&err), vec![("required", "lat")]);
    let err = osmand::parse_params(&pairs("id=1&lat=39.1&location=39.1,70.2"), now()).unwrap_err();
    assert_eq!(fields(&err), vec![("required", "lon")]);
    // `location` alone still gives both.
    let fix = osmand::parse_params(&pairs("id=1&location=39.1,70.2"), now()).unwrap();
    assert_eq!((fix.lat, fix.lon), (Some(39.1), Some(70.2)));
}

#[test]
fn osmand_json_battery_level_is_a_fraction() {
    // Found by the osmand_json fuzz target: a level of 1e308 became an
    // infinite percentage.
    let body = |level: &str| format!(r#"{{"device_id":"1","location":{{"battery":{{"level":{level}}}}}}}"#);
    let err = osmand::parse_json(body("1e308").as_bytes(), now()).unwrap_err();
    assert_eq!(fields(&err), vec![("out_of_range", "location.battery.level")]);
    assert!(err.errors[0].message.contains("not within 0..1"), "{err}");
    let err = osmand::parse_json(body("1.5").as_bytes(), now()).unwrap_err();
    assert_eq!(fields(&err), vec![("out_of_range", "location.battery.level")]);
    let fix = osmand::parse_json(body("1").as_bytes(), now()).unwrap();
    assert_eq!(fix.battery_pct, Some(100.0));
    let fix = osmand::parse_json(body("-1").as_bytes(), now()).unwrap();
    assert_eq!(fix.battery_pct, None);
}

#[test]
fn phone_json_is_depth_bounded_like_every_message() {
    // One level past the bound is refused by both phone readers; at the
    // bound the extra field is read and ignored.
    let body =
        |d: usize| format!(r#"{{"_type":"lwt","device_id":"1","pad":{}1{}}}"#, "[".repeat(d), "]".repeat(d));
    let (at, over) = (body(MAX_JSON_DEPTH - 1), body(MAX_JSON_DEPTH));
    assert!(owntracks::parse(at.as_bytes()).is_ok());
    assert!(osmand::parse_json(at.as_bytes(), now()).is_ok());
    assert_eq!(fields(&owntracks::parse(over.as_bytes()).unwrap_err()), vec![("too_deep", "")]);
    assert_eq!(fields(&osmand::parse_json(over.as_bytes(), now()).unwrap_err()), vec![("too_deep", "")]);
}

#[test]
fn message_ids_made_from_phone_names_are_valid_and_stable() {
    let mut p = Problems::default();
    let odd = message_id(&["owntracks", "Jane Doe", "iPhone 15/Pro", "1741927265"]);
    assert_eq!(odd, "owntracks:Jane_Doe:iPhone_15_Pro:1741927265");
    let long_user = "u".repeat(100);
    let long = message_id(&["owntracks", &long_user, "phone", "1"]);
    let other = message_id(&["owntracks", &long_user, "phone", "2"]);
    assert_eq!(long.len(), 64);
    assert_ne!(long, other, "the hash keeps long ids apart");
    assert_eq!(long, message_id(&["owntracks", &long_user, "phone", "1"]));
    for id in [odd, long, other, message_id(&[]), message_id(&["é"])] {
        eoc_protocol::validate::check_id("id", &id, &mut p);
    }
    assert!(p.is_empty(), "{p}");
}
