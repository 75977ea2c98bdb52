//! Randomly generated valid messages serialise, parse and validate, and come
//! back equal (also wrapped in `Inbound`, as WebSocket clients send them).

// Helpers of this test binary may unwrap too: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Utc};
use eoc_protocol::geometry::{AreaGeometry, EarthquakeSource};
use eoc_protocol::messages::{
    AlertMsg, Envelope, Inbound, SiteCapacityMsg, TaskAssignMsg, TaskUpdateMsg, TeamPositionMsg,
    TeamStatusMsg,
};
use eoc_protocol::types::{
    AlertStatus, Certainty, Hazard, MsgType, Service, Severity, SiteStatus, Skill, TeamStatus, Urgency,
};
use eoc_protocol::validate::{Validate, parse};
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

fn now() -> DateTime<Utc> {
    "2025-05-14T18:05:00Z".parse().unwrap()
}

/// A decimal with at most four places in `lo..=hi` (exact through JSON).
fn dec(lo: f64, hi: f64) -> impl Strategy<Value = f64> {
    ((lo * 1e4) as i64..=(hi * 1e4) as i64).prop_map(|k| k as f64 / 1e4)
}

fn id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._:-]{1,64}"
}

fn time() -> impl Strategy<Value = DateTime<Utc>> {
    // 2000-01-01 up to five minutes past `now`.
    (946_684_800i64..=now().timestamp() + 300).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap())
}

fn envelope() -> impl Strategy<Value = Envelope> {
    (id(), time()).prop_map(|(id, ts)| Envelope { v: 1, id, ts })
}

fn text(max: usize) -> impl Strategy<Value = Option<String>> {
    prop::option::of(
        prop::collection::vec(any::<char>(), 0..max.min(40)).prop_map(|c| c.into_iter().collect()),
    )
}

fn pick<T: Copy + std::fmt::Debug + 'static>(all: &'static [T]) -> impl Strategy<Value = T> {
    prop::sample::select(all)
}

fn position() -> impl Strategy<Value = TeamPositionMsg> {
    (
        envelope(),
        prop::option::of(id()),
        dec(-90.0, 90.0),
        dec(-180.0, 180.0),
        prop::option::of(dec(0.0, 100_000.0)),
        prop::option::of(time()),
        prop::option::of(dec(0.0, 100.0)),
        prop::option::of(dec(0.0, 1_000.0)),
        prop::option::of(dec(0.0, 360.0)),
        prop::option::of(dec(-500.0, 9_000.0)),
    )
        .prop_map(
            |(
                envelope,
                team_id,
                lat,
                lon,
                accuracy_m,
                at,
                battery_pct,
                speed_mps,
                heading_deg,
                altitude_m,
            )| {
                TeamPositionMsg {
                    envelope,
                    team_id,
                    lat,
                    lon,
                    accuracy_m,
                    at,
                    battery_pct,
                    speed_mps,
                    heading_deg,
                    altitude_m,
                }
            },
        )
}

fn status() -> impl Strategy<Value = TeamStatusMsg> {
    (envelope(), prop::option::of(id()), pick(TeamStatus::ALL), prop::option::of(dec(0.0, 100.0)), text(1024))
        .prop_map(|(envelope, team_id, status, battery_pct, note)| TeamStatusMsg {
            envelope,
            team_id,
            status,
            battery_pct,
            note,
        })
}

fn site() -> impl Strategy<Value = SiteCapacityMsg> {
    (
        envelope(),
        prop::option::of(id()),
        0..=1_000_000i64,
        prop::option::of(0..=1_000_000i64),
        prop::option::of(pick(SiteStatus::ALL)),
        prop::option::of(prop::sample::subsequence(Service::ALL.to_vec(), 0..=4)),
        text(1024),
    )
        .prop_map(|(envelope, site_id, capacity, occupancy, status, services, note)| SiteCapacityMsg {
            envelope,
            site_id,
            capacity: Some(capacity),
            occupancy,
            status,
            services,
            note,
        })
}

fn task_update() -> impl Strategy<Value = TaskUpdateMsg> {
    (envelope(), prop::option::of(id()), pick(eoc_protocol::validate::TEAM_TASK_STATES), text(1024))
        .prop_map(|(envelope, task_id, state, note)| TaskUpdateMsg { envelope, task_id, state, note })
}

fn task_assign() -> impl Strategy<Value = TaskAssignMsg> {
    (
        envelope(),
        id(),
        id(),
        any::<bool>(),
        prop::option::of(id()),
        prop::option::of(pick(Skill::ALL)),
        text(1024),
    )
        .prop_map(|(envelope, team_id, place, village, alert_id, skill, note)| TaskAssignMsg {
            envelope,
            team_id,
            village_id: village.then(|| place.clone()),
            site_id: (!village).then_some(place),
            alert_id,
            skill,
            note,
        })
}

fn alert() -> impl Strategy<Value = AlertMsg> {
    let earthquake =
        (dec(-90.0, 90.0), dec(-180.0, 180.0), prop::option::of(dec(0.0, 700.0)), dec(0.0, 10.0))
            .prop_map(|(lat, lon, depth_km, magnitude)| EarthquakeSource { lat, lon, depth_km, magnitude });
    // A rectangle, possibly with a smaller rectangle as a hole, or a circle.
    let area = prop_oneof![
        (dec(-80.0, 80.0), dec(-170.0, 170.0), dec(0.01, 5.0), any::<bool>()).prop_map(
            |(lat, lon, d, hole)| {
                // Corners rounded like the inputs, so that they survive JSON exactly.
                let r4 = |x: f64| (x * 1e4).round() / 1e4;
                let rect = |d: f64| {
                    let (w, e, s, n) = (r4(lon - d), r4(lon + d), r4(lat - d), r4(lat + d));
                    vec![[w, s], [e, s], [e, n], [w, n], [w, s]]
                };
                let mut coordinates = vec![rect(d)];
                if hole {
                    coordinates.push(rect(d / 2.0));
                }
                AreaGeometry::Polygon { coordinates }
            }
        ),
        (dec(-90.0, 90.0), dec(-180.0, 180.0), dec(0.0001, 1_000_000.0))
            .prop_map(|(lat, lon, radius_m)| AreaGeometry::Circle { lat, lon, radius_m }),
    ];
    let hazard_geometry =
        prop_oneof![
            earthquake.prop_map(|e| (Some(Hazard::Earthquake), Some(e), None)),
            (pick(&[Hazard::Mudslide, Hazard::Flood, Hazard::Avalanche][..]), area.clone())
                .prop_map(|(h, a)| (Some(h), None, Some(a))),
            Just((None, None, None)),
        ];
    (
        envelope(),
        id(),
        hazard_geometry,
        pick(AlertStatus::ALL),
        (pick(Urgency::ALL), pick(Severity::ALL), pick(Certainty::ALL)),
        text(256),
        text(4096),
        prop::option::of(1i64..10_000_000),
        prop::option::of(dec(0.0, 50_000.0)),
    )
        .prop_map(
            |(
                envelope,
                alert_id,
                (hazard, earthquake, area),
                status,
                (urgency, severity, certainty),
                headline,
                description,
                expires,
                buffer_m,
            )| {
                let msg_type = if hazard.is_none() { MsgType::Cancel } else { MsgType::Alert };
                let expires_at = expires.map(|s| envelope.ts + chrono::Duration::seconds(s));
                AlertMsg {
                    envelope,
                    alert_id,
                    msg_type,
                    status,
                    hazard,
                    urgency,
                    severity,
                    certainty,
                    headline,
                    description,
                    expires_at,
                    earthquake,
                    area,
                    buffer_m,
                    cap_xml: None,
                }
            },
        )
}

fn round_trip<T>(msg: &T, wrap: fn(T) -> Inbound) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + Validate + PartialEq + Clone + std::fmt::Debug,
{
    let bytes = serde_json::to_vec(msg).unwrap();
    let back = parse::<T>(&bytes, now());
    prop_assert_eq!(back.as_ref(), Ok(msg), "{}", String::from_utf8_lossy(&bytes));
    let inbound = wrap(msg.clone());
    let bytes = serde_json::to_vec(&inbound).unwrap();
    prop_assert_eq!(parse::<Inbound>(&bytes, now()), Ok(inbound));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn positions_round_trip(m in position()) { round_trip(&m, Inbound::TeamPosition)?; }

    #[test]
    fn statuses_round_trip(m in status()) { round_trip(&m, Inbound::TeamStatus)?; }

    #[test]
    fn site_updates_round_trip(m in site()) { round_trip(&m, Inbound::SiteCapacity)?; }

    #[test]
    fn task_updates_round_trip(m in task_update()) { round_trip(&m, Inbound::TaskUpdate)?; }

    #[test]
    fn task_assignments_round_trip(m in task_assign()) { round_trip(&m, Inbound::TaskAssign)?; }

    #[test]
    fn alerts_round_trip(m in alert()) { round_trip(&m, Inbound::Alert)?; }
}
