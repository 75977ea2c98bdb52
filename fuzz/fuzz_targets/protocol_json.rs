//! Fuzzes `validate::parse` for every inbound message type: the first byte
//! picks the type, the rest is the body. Any bytes give a message or
//! problems; an accepted message has every property its rules promise and
//! survives a round trip through its own JSON; and the quick parse, where
//! it answers, answers what serde's parse of the message answers.
#![no_main]

mod common;

use eoc_protocol::messages::{
    AlertMsg, Inbound, SiteCapacityMsg, TaskAssignMsg, TaskUpdateMsg, TeamPositionMsg, TeamStatusMsg,
};
use eoc_protocol::validate::{
    MAX_JSON_DEPTH, MAX_MESSAGE_BYTES, Problems, Validate, check_json_depth, parse,
};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else { return };
    match kind % 7 {
        0 => one::<AlertMsg>(body, check_alert),
        1 => one::<TeamPositionMsg>(body, check_position),
        2 => one::<TeamStatusMsg>(body, |m| {
            common::check_finite("battery_pct", m.battery_pct);
            common::check_time(m.envelope.ts);
        }),
        3 => one::<SiteCapacityMsg>(body, |m| {
            for n in [m.capacity, m.occupancy].into_iter().flatten() {
                assert!((0..=1_000_000).contains(&n), "{n}");
            }
            common::check_time(m.envelope.ts);
        }),
        4 => one::<TaskUpdateMsg>(body, |m| common::check_time(m.envelope.ts)),
        5 => one::<TaskAssignMsg>(body, |m| {
            common::check_id(&m.team_id);
            assert!(m.village_id.is_some() != m.site_id.is_some());
        }),
        _ => one::<Inbound>(body, |m| match m {
            Inbound::Alert(a) => check_alert(a),
            Inbound::TeamPosition(p) => check_position(p),
            other => common::check_time(other.envelope().ts),
        }),
    }
});

/// Parses `body` as `T` and checks the answer.
fn one<T>(body: &[u8], check: impl Fn(&T))
where
    T: DeserializeOwned + Serialize + Validate + PartialEq + std::fmt::Debug,
{
    if let Some(quick) = T::parse_quick(body) {
        match serde_json::from_slice::<T>(body) {
            Ok(careful) => assert_eq!(quick, careful),
            Err(e) => panic!("the quick parse took {quick:?}, serde refuses it: {e}"),
        }
    }
    match parse::<T>(body, common::now()) {
        Ok(msg) => {
            assert!(body.len() <= MAX_MESSAGE_BYTES);
            assert!(check_json_depth(body).is_ok(), "accepted past depth {MAX_JSON_DEPTH}");
            check(&msg);
            // What eoc accepted, written as JSON, is accepted again: no value
            // that the rules let in is lost or refused on the way back.
            let json = serde_json::to_vec(&msg).expect("an accepted message serialises");
            if let Err(p) = parse::<T>(&json, common::now()) {
                panic!("accepted {msg:?}, refused its own json {}: {p}", String::from_utf8_lossy(&json));
            }
        }
        Err(p) => {
            common::check_problems(&p);
            too_deep_iff_deep(body, &p);
        }
    }
}

/// `too_deep` is the answer exactly when the body is too deep (and not too large).
fn too_deep_iff_deep(body: &[u8], p: &Problems) {
    let deep = body.len() <= MAX_MESSAGE_BYTES && check_json_depth(body).is_err();
    assert_eq!(p.errors[0].code == "too_deep", deep, "{p}");
    if deep {
        assert_eq!(p.errors.len(), 1, "{p}");
    }
}

fn check_alert(m: &AlertMsg) {
    common::check_id(&m.envelope.id);
    common::check_id(&m.alert_id);
    common::check_time(m.envelope.ts);
    if let Some(eq) = &m.earthquake {
        common::check_lat_lon(eq.lat, eq.lon);
        assert!(eq.magnitude.is_finite() && (0.0..=10.0).contains(&eq.magnitude));
        common::check_finite("depth_km", eq.depth_km);
    }
    if let Some(area) = &m.area {
        common::check_area(area);
    }
    common::check_finite("buffer_m", m.buffer_m);
    if let Some(expires) = m.expires_at {
        assert!(expires > m.envelope.ts);
    }
}

fn check_position(m: &TeamPositionMsg) {
    common::check_id(&m.envelope.id);
    common::check_time(m.envelope.ts);
    common::check_lat_lon(m.lat, m.lon);
    for (what, x) in [
        ("accuracy_m", m.accuracy_m),
        ("battery_pct", m.battery_pct),
        ("speed_mps", m.speed_mps),
        ("heading_deg", m.heading_deg),
        ("altitude_m", m.altitude_m),
    ] {
        common::check_finite(what, x);
    }
}
