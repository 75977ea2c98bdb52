//! Fuzzes the OwnTracks reader: any bytes give a payload or problems; an
//! accepted payload has finite coordinates in range, bounded strings, and
//! a location becomes a position whose coordinates and ids pass eoc's rules.
#![no_main]

mod common;

use eoc_protocol::owntracks::{MAX_TEXT_CHARS, OwnTracks, parse};
use eoc_protocol::validate::{check_json_depth, message_id};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = match parse(data) {
        Ok(parsed) => parsed,
        Err(p) => {
            common::check_problems(&p);
            let deep =
                data.len() <= eoc_protocol::validate::MAX_MESSAGE_BYTES && check_json_depth(data).is_err();
            assert_eq!(p.errors[0].code == "too_deep", deep, "{p}");
            return;
        }
    };
    let short = |s: &Option<String>| {
        if let Some(s) = s {
            assert!(s.chars().count() <= MAX_TEXT_CHARS, "{} characters", s.chars().count());
        }
    };
    match parsed {
        OwnTracks::Location(loc) => {
            common::check_lat_lon(loc.lat, loc.lon);
            for x in [loc.accuracy_m, loc.altitude_m, loc.speed_mps, loc.heading_deg, loc.battery_pct] {
                common::check_finite("location number", x);
            }
            for s in [&loc.tid, &loc.topic, &loc.trigger] {
                short(s);
            }
            assert!(loc.in_regions.len() <= 64);
            for r in &loc.in_regions {
                short(&Some(r.clone()));
            }
            // The position built from it: ids, version and coordinates are
            // always valid; only times and optional ranges may be refused.
            let tst = loc.at.timestamp().to_string();
            let msg = loc.to_position(message_id(&["owntracks", "user", "device", &tst]), "team-1".into());
            let p = common::problems_of(&msg);
            for e in &p.errors {
                assert!(
                    !matches!(e.field.as_str(), "v" | "id" | "team_id" | "lat" | "lon"),
                    "a location accepted by the reader is refused as a position: {p}"
                );
            }
        }
        OwnTracks::Transition(t) => {
            assert_eq!(t.lat.is_some(), t.lon.is_some());
            if let (Some(lat), Some(lon)) = (t.lat, t.lon) {
                common::check_lat_lon(lat, lon);
            }
            common::check_finite("acc", t.accuracy_m);
            for s in [&t.desc, &t.rid, &t.tid, &t.topic] {
                short(s);
            }
        }
        OwnTracks::Waypoint(w) => {
            common::check_lat_lon(w.lat, w.lon);
            common::check_finite("rad", w.radius_m);
            short(&Some(w.desc.clone()));
            short(&w.rid);
            // What eoc would push back to the phone is JSON it reads again.
            let cmd = eoc_protocol::owntracks::set_waypoints_cmd(std::slice::from_ref(&w));
            assert!(serde_json::to_vec(&cmd).is_ok());
        }
        OwnTracks::Lwt(_) => {}
        OwnTracks::Other(name) => short(&Some(name)),
    }
});
