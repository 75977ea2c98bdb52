//! The quick parse of the messages sent at rate (positions, statuses,
//! capacities) answers exactly what serde's parse of the message itself
//! answers, on objects built from the messages' own field names, unknown
//! ones, repeated keys and values of every JSON type; and it does answer for
//! every object that parse takes with neither a repeated nor an unknown key,
//! so well-formed messages never pay for the careful parse.

// Helpers of this test binary may unwrap too: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use eoc_protocol::messages::{SiteCapacityMsg, TeamPositionMsg, TeamStatusMsg};
use eoc_protocol::validate::Validate;
use proptest::prelude::*;
use serde::de::DeserializeOwned;

const POSITION: &[&str] = &[
    "v",
    "id",
    "ts",
    "team_id",
    "lat",
    "lon",
    "accuracy_m",
    "at",
    "battery_pct",
    "speed_mps",
    "heading_deg",
    "altitude_m",
];
const STATUS: &[&str] = &["v", "id", "ts", "team_id", "status", "battery_pct", "note"];
const CAPACITY: &[&str] =
    &["v", "id", "ts", "site_id", "capacity", "occupancy", "status", "services", "note"];

/// A JSON value of any type, leaning to the ones the fields take.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("1".to_owned()),
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("\"2025-05-14T18:04:00Z\"".to_owned()),
        Just("\"2025-05-14T23:04:00+05:00\"".to_owned()),
        Just("\"available\"".to_owned()),
        Just("\"closed\"".to_owned()),
        Just("\"open\"".to_owned()),
        Just("[\"water\",\"food\"]".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        Just("{\"lat\":1}".to_owned()),
        Just("\"react-rasht-01\"".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u32>().prop_map(|n| n.to_string()),
        (-200.0f64..200.0).prop_map(|x| x.to_string()),
        Just("1e400".to_owned()),
        Just("-0".to_owned()),
        "\"[a-z0-9:._ -]{0,12}\"",
    ]
}

/// An object of `names` (some of them, in any order, maybe repeated) and
/// unknown keys; whether a key repeats or is unknown (then the quick parse
/// may leave the object to the careful one).
fn object(names: &'static [&'static str]) -> impl Strategy<Value = (String, bool)> {
    let key = prop_oneof![
        8 => prop::sample::select(names).prop_map(str::to_owned),
        1 => "[a-z_]{1,8}",
    ];
    prop::collection::vec((key, value()), 0..14).prop_map(|fields| {
        let mut seen = std::collections::HashSet::new();
        let repeated = !fields.iter().all(|(k, _)| seen.insert(k.clone()) && names.contains(&k.as_str()));
        let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        (format!("{{{}}}", body.join(",")), repeated)
    })
}

/// Fills the required fields a generated object may lack, most of the
/// time, so that many objects parse.
fn completed(names: &'static [&'static str]) -> impl Strategy<Value = (String, bool)> {
    (object(names), any::<bool>()).prop_map(move |((json, repeated), complete)| {
        if !complete || repeated {
            return (json, repeated);
        }
        // Numbers beyond f64 (1e400) make no map: such an object stays as it is.
        let Ok(mut map) = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&json) else {
            return (json, repeated);
        };
        for (k, v) in [
            ("v", serde_json::json!(1)),
            ("id", serde_json::json!("m1")),
            ("ts", serde_json::json!("2025-05-14T18:04:00Z")),
            ("lat", serde_json::json!(38.5)),
            ("lon", serde_json::json!(68.7)),
            ("status", serde_json::json!(if names == STATUS { "available" } else { "open" })),
        ] {
            if names.contains(&k) {
                map.entry(k).or_insert(v);
            }
        }
        (serde_json::Value::Object(map).to_string(), false)
    })
}

fn same<T>(json: &str, repeated: bool) -> Result<(), TestCaseError>
where
    T: DeserializeOwned + Validate + PartialEq + std::fmt::Debug,
{
    let careful = serde_json::from_str::<T>(json);
    match T::parse_quick(json.as_bytes()) {
        Some(quick) => {
            let careful =
                careful.map_err(|e| TestCaseError::fail(format!("quick took {json}, serde: {e}")))?;
            prop_assert_eq!(quick, careful, "{}", json);
        }
        None => prop_assert!(
            careful.is_err() || repeated,
            "quick refused what serde takes with no repeated or unknown key: {}",
            json
        ),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3_000))]

    #[test]
    fn a_position_parses_quickly_to_what_serde_parses((json, repeated) in completed(POSITION)) {
        same::<TeamPositionMsg>(&json, repeated)?;
    }

    #[test]
    fn a_status_parses_quickly_to_what_serde_parses((json, repeated) in completed(STATUS)) {
        same::<TeamStatusMsg>(&json, repeated)?;
    }

    #[test]
    fn a_capacity_parses_quickly_to_what_serde_parses((json, repeated) in completed(CAPACITY)) {
        same::<SiteCapacityMsg>(&json, repeated)?;
    }
}

/// Objects that the three messages take do get through: the proptests
/// above would pass with a quick parse that never answers.
#[test]
fn well_formed_messages_take_the_quick_parse() {
    let position = br#"{"v":1,"id":"p1","ts":"2025-05-14T18:04:00Z","lat":38.5,"lon":68.7,"speed_mps":3}"#;
    let status =
        br#"{"v":1,"id":"s1","ts":"2025-05-14T18:04:00Z","status":"on_site","note":"at the bridge"}"#;
    let capacity = br#"{"v":1,"id":"c1","ts":"2025-05-14T18:04:00Z","capacity":300,"services":["water"]}"#;
    assert_eq!(TeamPositionMsg::parse_quick(position).unwrap().lat, 38.5);
    assert_eq!(TeamStatusMsg::parse_quick(status).unwrap().note.as_deref(), Some("at the bridge"));
    assert_eq!(SiteCapacityMsg::parse_quick(capacity).unwrap().capacity, Some(300));
}

/// A value under a key no message has is still checked as the careful
/// parse checks it (found by the protocol fuzz target: the quick parse
/// skipped a string of invalid UTF-8 that serde's parse of the message
/// refuses), so such a message is refused, whichever parse reads it.
#[test]
fn a_value_under_an_unknown_key_is_checked_as_serde_checks_it() {
    let now = chrono::Utc::now();
    for body in [
        &b"{\"v\":1,\"id\":\"c1\",\"ts\":\"2025-05-14T18:04:00Z\",\"occupancy\":10,\"sta&tus\":\"caf\xe9\"}"
            [..],
        &b"{\"v\":1,\"id\":\"c1\",\"ts\":\"2025-05-14T18:04:00Z\",\"occupancy\":10,\"extra\":1e400}"[..],
    ] {
        assert!(SiteCapacityMsg::parse_quick(body).is_none());
        assert!(serde_json::from_slice::<SiteCapacityMsg>(body).is_err());
        assert!(eoc_protocol::validate::parse::<SiteCapacityMsg>(body, now).is_err());
    }
}
