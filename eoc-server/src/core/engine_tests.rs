//! Behaviour of the engine on a small hand-made world.

use chrono::{DateTime, Utc};
use eoc_protocol::delta::Delta;
use eoc_protocol::geometry::{AreaGeometry, EarthquakeSource};
use eoc_protocol::messages::{
    AlertMsg, Envelope, SiteCapacityMsg, TaskAssignMsg, TaskUpdateMsg, TeamPositionMsg, TeamStatusMsg,
};
use eoc_protocol::types::{
    AlertStatus, Certainty, Hazard, MsgType, Service, Severity, SiteKind, SiteStatus, Skill, TaskState,
    TeamStatus, Urgency,
};

use super::engine::{Command, Engine, EngineConfig, from_ms};
use super::geo::LatLon;
use super::world::{Places, Site, Team, Village, World};

const T0: i64 = 1_780_000_000_000;

fn p(lat: f64, lon: f64) -> LatLon {
    LatLon::new(lat, lon).unwrap()
}

fn env(id: &str, ms: i64) -> Envelope {
    Envelope { v: 1, id: id.to_owned(), ts: from_ms(ms) }
}

/// Epicentre at 38.9°N 70.0°E. Villages at 0, 20 and 150 km east; a site
/// beside the epicentre (shaken, so unusable), two sites 80 and 120 km
/// away; search-and-rescue teams 60 and 100 km away and a medical team
/// 10 km away.
fn world() -> World {
    let mut places = Places::default();
    let d = places.intern("Districts of Republican Subordination", "Rasht");
    let village = |id: &str, lon: f64, population: u32| Village {
        id: id.to_owned(),
        name: id.to_owned(),
        district: d,
        at: p(38.9, lon),
        population,
        population_estimated: false,
        elevation_m: Some(1200),
    };
    let site = |id: &str, lon: f64, capacity: u32| Site {
        id: id.to_owned(),
        name: id.to_owned(),
        kind: SiteKind::School,
        district: d,
        at: p(38.9, lon),
        capacity,
        occupancy: 0,
        status: SiteStatus::Open,
        services: vec![Service::Water],
        updated_at_ms: None,
    };
    let team = |id: &str, lon: f64, skills: Vec<Skill>| Team {
        id: id.to_owned(),
        name: id.to_owned(),
        skills,
        status: TeamStatus::Available,
        at: p(38.9, lon),
        accuracy_m: None,
        position_at_ms: None,
        battery_pct: None,
        last_seen_ms: None,
        devices: vec![format!("osmand:{id}")],
    };
    World::new(
        places,
        vec![village("v-near", 70.0, 1000), village("v-mid", 70.23, 2000), village("v-far", 71.75, 5000)],
        vec![site("s-hit", 70.01, 5000), site("s-a", 70.92, 60), site("s-b", 71.38, 1000)],
        vec![
            team("t-sr1", 70.69, vec![Skill::SearchRescue, Skill::Shelter]),
            team("t-sr2", 71.15, vec![Skill::SearchRescue]),
            team("t-med", 70.115, vec![Skill::Medical]),
        ],
    )
    .unwrap()
}

fn quake(id: &str, alert_id: &str, status: AlertStatus, magnitude: f64) -> Command {
    Command::Alert(AlertMsg {
        envelope: env(id, T0),
        alert_id: alert_id.to_owned(),
        msg_type: MsgType::Alert,
        status,
        hazard: Some(Hazard::Earthquake),
        urgency: Urgency::Immediate,
        severity: Severity::Severe,
        certainty: Certainty::Observed,
        headline: Some("M6.5 Rasht".to_owned()),
        description: None,
        expires_at: None,
        earthquake: Some(EarthquakeSource { lat: 38.9, lon: 70.0, depth_km: None, magnitude }),
        area: None,
        buffer_m: None,
        cap_xml: None,
    })
}

fn engine() -> Engine {
    Engine::new(world(), EngineConfig::default())
}

/// The engine on this module's world, for other modules' tests.
pub(crate) fn small_engine() -> Engine {
    engine()
}

/// An observed earthquake alert at the epicentre, applied at [`T0`].
pub(crate) fn quake_cmd(alert_id: &str, magnitude: f64) -> Command {
    quake(&format!("m-{alert_id}"), alert_id, AlertStatus::Actual, magnitude)
}

/// The time every command of these tests is applied at.
pub(crate) const NOW_MS: i64 = T0;

fn snapshot_json(e: &Engine) -> String {
    serde_json::to_string(&e.snapshot(0, T0)).unwrap()
}

fn tasks_of(deltas: &[Delta]) -> Vec<(String, String, TaskState)> {
    deltas
        .iter()
        .filter_map(|d| match d {
            Delta::Task(t) => Some((t.task_id.clone(), t.team_id.clone(), t.state)),
            _ => None,
        })
        .collect()
}

fn task_update(id: &str, task_id: &str, state: TaskState) -> Command {
    Command::TaskUpdate(TaskUpdateMsg {
        envelope: env(id, T0),
        task_id: Some(task_id.to_owned()),
        state,
        note: None,
    })
}

trait TaskIdxUnwrap {
    fn task_idx_unwrap(&self, id: &str) -> super::engine::TaskIdx;
}

impl TaskIdxUnwrap for Engine {
    fn task_idx_unwrap(&self, id: &str) -> super::engine::TaskIdx {
        self.task_idx(id).unwrap()
    }
}

fn team_task(e: &Engine, team: &str) -> Option<String> {
    let t = e.world().team_idx(team).unwrap();
    e.team_view(t).task_id
}

#[test]
fn earthquake_affects_shaken_villages_places_people_and_sends_the_nearest_rescue_team() {
    let mut e = engine();
    let deltas = e.apply(&quake("m1", "A1", AlertStatus::Actual, 6.5), "chair", T0).unwrap();

    let impact = e.impact_view(0);
    let ids: Vec<&str> = impact.villages.iter().map(|v| v.village_id.as_str()).collect();
    assert_eq!(ids, ["v-near", "v-mid"], "the far village is below intensity 6");
    let near = &impact.villages[0];
    assert!((near.intensity.unwrap() - 7.50).abs() < 0.01);
    assert!(
        (near.intensity_low.unwrap() - 6.82).abs() < 0.01
            && (near.intensity_high.unwrap() - 8.19).abs() < 0.01
    );
    // VII → 10 % of 1,000; VI → 2 % of 2,000.
    assert_eq!((near.displaced, impact.villages[1].displaced), (100, 40));

    // The shaken site is not used; the nearer free site fills first.
    assert!(impact.allocations.iter().all(|a| a.site_id != "s-hit"));
    let placed: u32 = impact.allocations.iter().map(|a| a.persons).sum();
    assert_eq!(placed, 140);
    assert!(impact.shortfall.is_empty());
    let at_a: u32 = impact.allocations.iter().filter(|a| a.site_id == "s-a").map(|a| a.persons).sum();
    assert_eq!(at_a, 60, "s-a is nearest and full to its capacity");
    assert_eq!(e.site_view(e.world().site_idx("s-a").unwrap()).allocated, 60);

    // Exposure table: one district, people per band VI.., displaced, placed.
    let total = &impact.summary.total;
    assert_eq!(impact.summary.bands[0], "VI");
    assert_eq!((total.people_by_band[0], total.people_by_band[1]), (2000, 1000));
    assert_eq!((total.displaced, total.placed, total.shortfall), (140, 140, 0));

    // The most exposed village gets the nearest search-and-rescue team (not
    // the closer medical team), the next village the next one.
    let tasks = tasks_of(&deltas);
    assert_eq!(tasks.len(), 2);
    assert_eq!(team_task(&e, "t-sr1").as_deref(), Some("task-1"));
    assert_eq!(e.task("task-1").unwrap().state, TaskState::Assigned);
    assert_eq!(e.task_view(e.task_idx_unwrap("task-1")).village_id.as_deref(), Some("v-near"));
    assert_eq!(team_task(&e, "t-sr2").as_deref(), Some("task-2"));
    assert_eq!(team_task(&e, "t-med"), None);
    assert!(deltas.iter().any(|d| matches!(d, Delta::Event(ev) if ev.kind == "alert_issued")));
}

#[test]
fn shrinking_a_site_reallocates_without_overfilling_and_pushes_only_the_allocation() {
    let mut e = engine();
    e.apply(&quake("m1", "A1", AlertStatus::Actual, 6.5), "chair", T0).unwrap();
    let cmd = Command::SiteCapacity(SiteCapacityMsg {
        envelope: env("c1", T0 + 1000),
        site_id: Some("s-b".to_owned()),
        capacity: Some(50),
        occupancy: Some(20),
        status: None,
        services: None,
        note: None,
    });
    let deltas = e.apply(&cmd, "manager", T0 + 1000).unwrap();
    assert!(deltas.iter().any(|d| matches!(d, Delta::Allocation(a) if a.alert_id == "A1")));
    assert!(!deltas.iter().any(|d| matches!(d, Delta::Impact(_))), "villages are not resent");
    let impact = e.impact_view(0);
    let at_b: u32 = impact.allocations.iter().filter(|a| a.site_id == "s-b").map(|a| a.persons).sum();
    assert_eq!(at_b, 30, "capacity 50 less occupancy 20");
    assert_eq!(impact.summary.total.placed, 90);
    assert_eq!(impact.summary.total.shortfall, 50);
    let short: u32 = impact.shortfall.iter().map(|s| s.persons).sum();
    assert_eq!(short, 50);
    // The most exposed village is served first: its 100 people are placed.
    let near_placed: u32 =
        impact.allocations.iter().filter(|a| a.village_id == "v-near").map(|a| a.persons).sum();
    assert_eq!(near_placed, 90, "all 90 places go to the most exposed village");
}

#[test]
fn a_closed_site_gives_its_people_back_to_the_others() {
    let mut e = engine();
    e.apply(&quake("m1", "A1", AlertStatus::Actual, 6.5), "chair", T0).unwrap();
    let close = Command::SiteCapacity(SiteCapacityMsg {
        envelope: env("c1", T0),
        site_id: Some("s-a".to_owned()),
        capacity: None,
        occupancy: None,
        status: Some(SiteStatus::Closed),
        services: None,
        note: None,
    });
    let deltas = e.apply(&close, "manager", T0).unwrap();
    assert_eq!(e.site_view(e.world().site_idx("s-a").unwrap()).allocated, 0);
    assert_eq!(e.site_view(e.world().site_idx("s-b").unwrap()).allocated, 140);
    assert!(deltas.iter().any(|d| matches!(d, Delta::Event(ev) if ev.kind == "site_closed")));
}

#[test]
fn an_older_position_never_moves_a_team_back() {
    let mut e = engine();
    let pos = |id: &str, lat: f64, at_ms: i64| {
        Command::TeamPosition(TeamPositionMsg {
            envelope: env(id, at_ms),
            team_id: Some("t-med".to_owned()),
            lat,
            lon: 70.1,
            accuracy_m: Some(5.0),
            at: Some(from_ms(at_ms)),
            battery_pct: Some(80.0),
            speed_mps: None,
            heading_deg: None,
            altitude_m: None,
        })
    };
    e.apply(&pos("p2", 38.95, T0 + 20_000), "t-med", T0 + 20_000).unwrap();
    e.apply(&pos("p1", 38.91, T0 + 10_000), "t-med", T0 + 21_000).unwrap();
    let t = e.team_view(e.world().team_idx("t-med").unwrap());
    assert_eq!(t.lat, 38.95);
    assert_eq!(t.last_seen, Some(from_ms(T0 + 21_000)), "the late message still shows the team alive");
    // And the spatial index agrees with the view.
    let nearest = e.world().team_index().nearest(p(38.95, 70.1), 1);
    assert_eq!(e.world().team(nearest[0].0).id, "t-med");
    assert!(nearest[0].1 < 1.0);
}

#[test]
fn a_task_runs_its_course_and_the_freed_team_takes_the_next_village() {
    let mut e = engine();
    // Only one rescue team is free: take t-sr2 off duty first.
    let off = Command::TeamStatus(TeamStatusMsg {
        envelope: env("s1", T0),
        team_id: Some("t-sr2".to_owned()),
        status: TeamStatus::Unavailable,
        battery_pct: None,
        note: None,
    });
    e.apply(&off, "t-sr2", T0).unwrap();
    e.apply(&quake("m1", "A1", AlertStatus::Actual, 6.5), "chair", T0).unwrap();
    assert_eq!(team_task(&e, "t-sr1").as_deref(), Some("task-1"));
    assert_eq!(e.tasks().len(), 1, "v-mid waits: no free rescue team");

    for (i, state) in [TaskState::Acknowledged, TaskState::EnRoute, TaskState::OnSite].into_iter().enumerate()
    {
        e.apply(&task_update(&format!("u{i}"), "task-1", state), "t-sr1", T0 + 1000).unwrap();
    }
    assert_eq!(e.team_view(e.world().team_idx("t-sr1").unwrap()).status, TeamStatus::OnSite);
    let deltas = e.apply(&task_update("u9", "task-1", TaskState::Completed), "t-sr1", T0 + 5000).unwrap();
    let task = e.task("task-1").unwrap();
    let states: Vec<TaskState> = task.history.iter().map(|h| h.0).collect();
    assert_eq!(
        states,
        [
            TaskState::Proposed,
            TaskState::Assigned,
            TaskState::Acknowledged,
            TaskState::EnRoute,
            TaskState::OnSite,
            TaskState::Completed
        ]
    );
    // The team is free again and goes on to the waiting village.
    assert_eq!(team_task(&e, "t-sr1").as_deref(), Some("task-2"));
    assert!(
        tasks_of(&deltas)
            .iter()
            .any(|(id, team, s)| id == "task-2" && team == "t-sr1" && *s == TaskState::Assigned)
    );
}

#[test]
fn illegal_transitions_are_refused_and_change_nothing() {
    let mut e = engine();
    e.apply(&quake("m1", "A1", AlertStatus::Actual, 6.5), "chair", T0).unwrap();
    let before = snapshot_json(&e);
    let err = e.apply(&task_update("x", "task-1", TaskState::Completed), "t-sr1", T0).unwrap_err();
    assert_eq!(err.errors[0].field, "state");
    assert!(err.errors[0].message.contains("assigned"), "{err}");
    let err = e.apply(&task_update("y", "task-99", TaskState::Acknowledged), "t-sr1", T0).unwrap_err();
    assert_eq!((err.errors[0].code.as_str(), err.errors[0].field.as_str()), ("unknown", "task_id"));
    let err = e.apply(&task_update("z", "task-1", TaskState::TimedOut), "t-sr1", T0).unwrap_err();
    assert_eq!(err.errors[0].code, "not_allowed");
    let unknown_team = Command::TeamStatus(TeamStatusMsg {
        envelope: env("s1", T0),
        team_id: Some("t-nobody".to_owned()),
        status: TeamStatus::Available,
        battery_pct: None,
        note: None,
    });
    let err = e.apply(&unknown_team, "x", T0).unwrap_err();
    assert_eq!(err.errors[0].field, "team_id");
    let again = e.apply(&quake("m2", "A1", AlertStatus::Actual, 6.5), "chair", T0).unwrap_err();
    assert_eq!(again.errors[0].code, "conflict");
    assert_eq!(snapshot_json(&e), before);
}

#[test]
fn a_declined_or_unacknowledged_task_goes_to_another_team() {
    let mut e = engine();
    e.apply(&quake("m1", "A1", AlertStatus::Actual, 6.5), "chair", T0).unwrap();
    // t-sr1 declines v-near: t-sr2 is busy with v-mid, so v-near waits …
    e.apply(&task_update("d1", "task-1", TaskState::Declined), "t-sr1", T0 + 1000).unwrap();
    // … and t-sr1, now free, is not offered v-near again.
    assert_eq!(team_task(&e, "t-sr1"), None);
    // task-2 (t-sr2, v-mid) is never acknowledged and times out.
    assert!(!e.tick_due(T0 + 9 * 60 * 1000));
    assert!(e.tick_due(T0 + 10 * 60 * 1000));
    let deltas = e.apply(&Command::Tick, "eoc", T0 + 10 * 60 * 1000).unwrap();
    assert_eq!(e.task("task-2").unwrap().state, TaskState::TimedOut);
    assert!(deltas.iter().any(|d| matches!(d, Delta::Event(ev) if ev.kind == "task_timed_out")));
    // v-near goes to t-sr2 (t-sr1 declined it); v-mid to t-sr1 (t-sr2 let it time out).
    let by_village = |v: &str| {
        e.tasks()
            .iter()
            .filter(|t| !t.state.is_terminal())
            .find(|t| e.task_view(e.task_idx_unwrap(&t.id)).village_id.as_deref() == Some(v))
            .map(|t| e.world().team(t.team).id.clone())
    };
    assert_eq!(by_village("v-near").as_deref(), Some("t-sr2"));
    assert_eq!(by_village("v-mid").as_deref(), Some("t-sr1"));
}

#[test]
fn acknowledged_work_is_never_silently_moved() {
    let mut e = engine();
    e.apply(&quake("m1", "A1", AlertStatus::Actual, 6.5), "chair", T0).unwrap();
    e.apply(&task_update("a1", "task-1", TaskState::Acknowledged), "t-sr1", T0).unwrap();
    let offline = Command::TeamStatus(TeamStatusMsg {
        envelope: env("lwt", T0),
        team_id: Some("t-sr1".to_owned()),
        status: TeamStatus::Offline,
        battery_pct: None,
        note: None,
    });
    let deltas = e.apply(&offline, "t-sr1", T0 + 1000).unwrap();
    assert_eq!(e.task("task-1").unwrap().state, TaskState::Acknowledged);
    assert_eq!(team_task(&e, "t-sr1").as_deref(), Some("task-1"));
    assert!(deltas.iter().any(|d| matches!(d, Delta::Event(ev) if ev.kind == "task_at_risk")));
    // An unacknowledged task of a team going offline is handed on.
    let offline2 = Command::TeamStatus(TeamStatusMsg {
        envelope: env("lwt2", T0),
        team_id: Some("t-sr2".to_owned()),
        status: TeamStatus::Offline,
        battery_pct: None,
        note: None,
    });
    e.apply(&offline2, "t-sr2", T0 + 1000).unwrap();
    assert_eq!(e.task("task-2").unwrap().state, TaskState::Cancelled);
}

#[test]
fn an_operator_can_reassign_in_one_step() {
    let mut e = engine();
    e.apply(&quake("m1", "A1", AlertStatus::Actual, 6.5), "chair", T0).unwrap();
    let assign = Command::TaskAssign(TaskAssignMsg {
        envelope: env("op1", T0),
        team_id: "t-med".to_owned(),
        village_id: Some("v-near".to_owned()),
        site_id: None,
        alert_id: Some("A1".to_owned()),
        skill: Some(Skill::Medical),
        note: Some("injured reported".to_owned()),
    });
    e.apply(&assign, "operator", T0 + 1000).unwrap();
    assert_eq!(e.task("task-1").unwrap().state, TaskState::Cancelled, "the earlier proposal for v-near ends");
    let new = e.task("task-3").unwrap();
    assert_eq!((new.state, e.world().team(new.team).id.as_str()), (TaskState::Assigned, "t-med"));
    // t-sr1 is free again; no other village waits, so it stays free.
    assert_eq!(team_task(&e, "t-sr1"), None);
}

#[test]
fn cancelling_an_alert_releases_sites_and_recalls_teams() {
    let mut e = engine();
    e.apply(&quake("m1", "A1", AlertStatus::Actual, 6.5), "chair", T0).unwrap();
    e.apply(&task_update("a1", "task-1", TaskState::Acknowledged), "t-sr1", T0).unwrap();
    let mut cancel = match quake("m2", "A1", AlertStatus::Actual, 6.5) {
        Command::Alert(m) => m,
        _ => unreachable!(),
    };
    cancel.msg_type = MsgType::Cancel;
    e.apply(&Command::Alert(cancel), "chair", T0 + 1000).unwrap();
    assert!(!e.alert_view(0).active);
    assert!(e.impact_view(0).villages.is_empty());
    assert!(
        e.world()
            .sites()
            .iter()
            .enumerate()
            .all(|(i, _)| e.site_allocated(super::world::SiteIdx(i as u32)) == 0)
    );
    assert!(e.tasks().iter().all(|t| t.state == TaskState::Cancelled));
    assert!(e.world().teams().iter().all(|t| t.status == TeamStatus::Available));
}

#[test]
fn exercises_and_drafts_show_impact_but_send_no_one_and_hold_no_place() {
    for status in [AlertStatus::Exercise, AlertStatus::Test, AlertStatus::Draft] {
        let mut e = engine();
        e.apply(&quake("m1", "X1", status, 6.5), "chair", T0).unwrap();
        assert_eq!(e.impact_view(0).villages.len(), 2, "{status}");
        assert_eq!(e.impact_view(0).summary.total.placed, 140, "{status} previews the allocation");
        assert!(e.tasks().is_empty(), "{status} sends no team");
        assert_eq!(e.site_view(e.world().site_idx("s-a").unwrap()).allocated, 0, "{status} holds no place");
        // A real alert afterwards still finds all the room.
        e.apply(&quake("m2", "A2", AlertStatus::Actual, 6.5), "chair", T0).unwrap();
        assert_eq!(e.impact_view(1).summary.total.placed, 140);
    }
}

#[test]
fn a_flood_area_with_buffer_affects_villages_inside_and_excludes_sites_inside() {
    let mut e = engine();
    // A box around v-mid only.
    let flood = Command::Alert(AlertMsg {
        envelope: env("f1", T0),
        alert_id: "F1".to_owned(),
        msg_type: MsgType::Alert,
        status: AlertStatus::Actual,
        hazard: Some(Hazard::Flood),
        urgency: Urgency::Immediate,
        severity: Severity::Severe,
        certainty: Certainty::Likely,
        headline: None,
        description: None,
        expires_at: None,
        earthquake: None,
        area: Some(AreaGeometry::Polygon {
            coordinates: vec![vec![
                [70.2, 38.88],
                [70.25, 38.88],
                [70.25, 38.92],
                [70.2, 38.92],
                [70.2, 38.88],
            ]],
        }),
        buffer_m: Some(0.0),
        cap_xml: None,
    });
    e.apply(&flood, "chair", T0).unwrap();
    let impact = e.impact_view(0);
    assert_eq!(impact.villages.iter().map(|v| v.village_id.as_str()).collect::<Vec<_>>(), ["v-mid"]);
    assert_eq!(impact.villages[0].displaced, 600, "severe: 30 % of 2,000");
    assert_eq!(impact.summary.bands, ["in area"]);
    // A flood needs WASH skills; no team has them, so nobody is sent.
    assert!(e.tasks().is_empty());

    // Its people go to the nearest site, s-hit (no earthquake here).
    let used: Vec<String> = e.impact_view(0).allocations.iter().map(|a| a.site_id.clone()).collect();
    assert_eq!(used, ["s-hit"]);

    // A second flood over s-hit (500 m circle, no village inside) takes it
    // out of use: the first flood's people are moved to s-a and s-b.
    let mut circle = match flood {
        Command::Alert(m) => m,
        _ => unreachable!(),
    };
    circle.envelope.id = "f2".to_owned();
    circle.alert_id = "F2".to_owned();
    circle.area = Some(AreaGeometry::Circle { lat: 38.9, lon: 70.01, radius_m: 500.0 });
    let deltas = e.apply(&Command::Alert(circle), "chair", T0).unwrap();
    assert!(e.impact_view(1).villages.is_empty());
    let by_site = |s: &str| -> u32 {
        e.impact_view(0).allocations.iter().filter(|a| a.site_id == s).map(|a| a.persons).sum()
    };
    assert_eq!((by_site("s-hit"), by_site("s-a"), by_site("s-b")), (0, 60, 540));
    assert!(deltas.iter().any(|d| matches!(d, Delta::Allocation(a) if a.alert_id == "F1")));
}

#[test]
fn replaying_the_same_commands_gives_the_same_state() {
    let cmds = [
        quake("m1", "A1", AlertStatus::Actual, 6.5),
        task_update("a1", "task-1", TaskState::Acknowledged),
        Command::Tick,
        task_update("a2", "task-1", TaskState::EnRoute),
    ];
    let run = || {
        let mut e = engine();
        for (i, c) in cmds.iter().enumerate() {
            let _ = e.apply(c, "someone", T0 + 11 * 60 * 1000 * i as i64);
        }
        snapshot_json(&e)
    };
    assert_eq!(run(), run());
}

/// A state snapshot taken at any point of a history and restored into a
/// fresh engine behaves exactly like the engine it was taken from: same
/// deltas for every later command, same final state.
#[test]
fn a_restored_state_continues_exactly_like_the_original() {
    let position = |id: &str, team: &str, lon: f64, ms: i64| {
        Command::TeamPosition(TeamPositionMsg {
            envelope: env(id, ms),
            team_id: Some(team.to_owned()),
            lat: 38.9,
            lon,
            accuracy_m: Some(9.0),
            at: Some(from_ms(ms)),
            battery_pct: Some(55.0),
            speed_mps: None,
            heading_deg: None,
            altitude_m: None,
        })
    };
    let capacity = |id: &str, site: &str, capacity: i64, ms: i64| {
        Command::SiteCapacity(SiteCapacityMsg {
            envelope: env(id, ms),
            site_id: Some(site.to_owned()),
            capacity: Some(capacity),
            occupancy: Some(5),
            status: None,
            services: Some(vec![Service::Water, Service::Health]),
            note: None,
        })
    };
    let minute = 60 * 1000;
    let cmds: Vec<(Command, i64)> = vec![
        (quake("m1", "A1", AlertStatus::Actual, 6.5), T0),
        (position("p1", "t-med", 70.2, T0 + minute), T0 + minute),
        (capacity("c1", "s-a", 40, T0 + 2 * minute), T0 + 2 * minute),
        (task_update("a1", "task-1", TaskState::Acknowledged), T0 + 3 * minute),
        (task_update("d2", "task-2", TaskState::Declined), T0 + 4 * minute),
        (quake("m2", "A2", AlertStatus::Exercise, 6.0), T0 + 5 * minute),
        (Command::Tick, T0 + 20 * minute),
        (task_update("a3", "task-1", TaskState::EnRoute), T0 + 21 * minute),
        (position("p2", "t-sr2", 71.0, T0 + 22 * minute), T0 + 22 * minute),
        (capacity("c2", "s-b", 2000, T0 + 23 * minute), T0 + 23 * minute),
        (task_update("a4", "task-1", TaskState::Completed), T0 + 24 * minute),
        (Command::Tick, T0 + 40 * minute),
    ];
    for cut in 0..=cmds.len() {
        let mut original = engine();
        for (c, ms) in &cmds[..cut] {
            let _ = original.apply(c, "someone", *ms);
        }
        let json = serde_json::to_string(&original.export_state()).unwrap();
        let mut restored = engine();
        restored.restore(serde_json::from_str(&json).unwrap()).unwrap();
        assert_eq!(snapshot_json(&restored), snapshot_json(&original), "right after restoring at {cut}");
        for (c, ms) in &cmds[cut..] {
            let a = original.apply(c, "someone", *ms).map_err(|p| p.to_string());
            let b = restored.apply(c, "someone", *ms).map_err(|p| p.to_string());
            assert_eq!(a, b, "cut at {cut}, command at {ms}");
        }
        assert_eq!(snapshot_json(&restored), snapshot_json(&original), "cut at {cut}");
    }
}

/// A state is refused by an engine of another scenario or configuration,
/// or one that already holds alerts, and refusing it changes nothing.
#[test]
fn a_state_from_elsewhere_is_refused() {
    let mut original = engine();
    original.apply(&quake("m1", "A1", AlertStatus::Actual, 6.5), "chair", T0).unwrap();
    let state = original.export_state();
    let mut config = EngineConfig::default();
    config.dispatch.ack_timeout_ms += 1;
    let mut other_config = Engine::new(world(), config);
    assert!(other_config.restore(state.clone()).unwrap_err().contains("another scenario"));
    let mut busy = engine();
    busy.apply(&quake("m9", "A9", AlertStatus::Actual, 6.0), "chair", T0).unwrap();
    let before = snapshot_json(&busy);
    assert!(busy.restore(state.clone()).unwrap_err().contains("not fresh"));
    assert_eq!(snapshot_json(&busy), before);
    let mut tampered = serde_json::to_value(&state).unwrap();
    tampered["tasks"][0]["team"] = serde_json::json!(99);
    let mut fresh = engine();
    let err = fresh.restore(serde_json::from_value(tampered).unwrap()).unwrap_err();
    assert!(err.contains("inconsistent"), "{err}");
    assert_eq!(snapshot_json(&fresh), snapshot_json(&engine()));
}

#[test]
fn timestamps_convert_both_ways() {
    let t: DateTime<Utc> = from_ms(T0);
    assert_eq!(super::engine::to_ms(t), T0);
}

/// `apply_alert_first` hands over an alert's own delta before the rest
/// (issue, update and cancel alike), and with it the rest are exactly what
/// `apply` gives on another engine; a refused alert hands over nothing and changes nothing.
#[test]
fn an_alert_is_handed_over_before_its_impact_and_allocation() {
    let (mut streamed, mut whole) = (engine(), engine());
    let mut update = match quake("m2", "A1", AlertStatus::Actual, 7.0) {
        Command::Alert(m) => m,
        _ => unreachable!(),
    };
    update.msg_type = MsgType::Update;
    let mut cancel = update.clone();
    cancel.envelope.id = "m3".to_owned();
    cancel.msg_type = MsgType::Cancel;
    let commands =
        [quake("m1", "A1", AlertStatus::Actual, 6.5), Command::Alert(update), Command::Alert(cancel)];
    for (k, cmd) in commands.iter().enumerate() {
        let now = T0 + 1000 * k as i64;
        let mut first = Vec::new();
        let rest = streamed.apply_alert_first(cmd, "chair", now, &mut |d| first.push(d)).unwrap();
        let all = whole.apply(cmd, "chair", now).unwrap();
        assert!(
            matches!(first.as_slice(), [Delta::Alert(a)] if a.alert_id == "A1"),
            "command {k}: {first:?}"
        );
        assert!(rest.iter().any(|d| matches!(d, Delta::Impact(_))), "command {k}: the impact comes after");
        // The same deltas in the same order on two engines.
        assert_eq!([first, rest].concat(), all, "command {k}");
    }
    let before = snapshot_json(&streamed);
    let mut called = false;
    let refused = streamed.apply_alert_first(&commands[1], "chair", T0 + 5000, &mut |_| called = true);
    assert!(refused.is_err(), "an update of a cancelled alert is refused");
    assert!(!called);
    assert_eq!(snapshot_json(&streamed), before);
}
