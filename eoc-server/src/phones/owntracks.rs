//! OwnTracks → eoc, over MQTT (`owntracks/{user}/{device}[/event]`) and
//! HTTP (`POST /owntracks`), and eoc → OwnTracks (`setWaypoints`).
//!
//! | OwnTracks | eoc |
//! | --- | --- |
//! | `_type: location` | `TeamPosition` of the team mapped to `owntracks:{user}/{device}` (units: `vel` km/h → `speed_mps`, `tst` epoch s → `at`, `acc` → `accuracy_m`, `batt` → `battery_pct`) |
//! | `_type: transition` | the fix as a `TeamPosition`; on `enter` of a waypoint whose `rid` (or `desc`) is a site that the team's active task targets, the task moves to `on_site` |
//! | `_type: lwt` (published by the broker when the phone went dark) | `TeamStatus` `offline` |
//! | other types (`waypoint`, `card`, `status`, …) | accepted and ignored |
//!
//! An unknown device is refused (over MQTT: a report on `{prefix}/errors`).
//!
//! **HTTP mode** identifies the device, in this order: the OwnTracks
//! Recorder headers `X-Limit-U` / `X-Limit-D`; the payload's `topic`
//! (`owntracks/{user}/{device}`); the Basic-auth user with the payload's
//! `tid` as device. Every post authenticates with Basic (the eoc user name
//! and its token as password): a responder reports only as its own
//! OwnTracks user and for its own team; a device missing from the
//! scenario's table is the responder's team's. The answer is `200 []` once
//! the command is durable. OwnTracks
//! counts any answer as delivered, so a refusal is answered with a 4xx
//! and a JSON error for the app's log, and logged here.
//!
//! **Waypoints**: each OwnTracks device mapped to a team receives on
//! `owntracks/{user}/{device}/cmd` a `setWaypoints` command with the
//! [`MAX_WAYPOINTS`] open sites nearest its team (name, position,
//! `phones.waypoint_radius_m`, `rid` = site id), on every connection of
//! eoc to the broker and whenever a site opens or closes. Phones accept
//! remote commands only when their `cmd` setting is on.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use eoc_protocol::PROTOCOL_VERSION;
use eoc_protocol::messages::{Envelope, TaskUpdateMsg, TeamStatusMsg};
use eoc_protocol::owntracks::{self as ot, OwnTracks};
use eoc_protocol::types::{SiteStatus, TaskState, TeamStatus};
use eoc_protocol::validate::Problems;
use tracing::{error, warn};

use super::{Fix, fix_command, msg_id, team_of_device};
use crate::access::Access;
use crate::bus::{Bus, Edge, Submission, SubmitError};
use crate::core::engine::{Command, Engine, Target};
use crate::core::world::TeamIdx;
use crate::mqtt::inbound::Rejection;

/// Sites pushed to one phone: iOS monitors at most 20 regions at once and
/// Android's geofencing 100 per app; 100 nearest keeps the payload near
/// 15 KB and covers a team's area of operations.
pub const MAX_WAYPOINTS: usize = 100;

/// One OwnTracks report, as eoc uses it.
#[derive(Debug, Clone, PartialEq)]
enum Report {
    /// A location fix.
    Location(Fix),
    /// A geofence transition, with its fix.
    Transition { fix: Fix, enter: bool, desc: Option<String>, rid: Option<String> },
    /// The broker's last will: the phone went dark.
    Lwt {
        /// When the phone connected (identifies this will).
        connected_at: Option<DateTime<Utc>>,
    },
    /// A type eoc does not use.
    Ignored,
}

fn fix_of(l: &ot::Location) -> Fix {
    Fix {
        lat: Some(l.lat),
        lon: Some(l.lon),
        at: Some(l.at),
        accuracy_m: l.accuracy_m,
        altitude_m: l.altitude_m,
        speed_mps: l.speed_mps,
        heading_deg: l.heading_deg,
        battery_pct: l.battery_pct,
    }
}

fn report_of(msg: &OwnTracks) -> Report {
    match msg {
        OwnTracks::Location(l) => Report::Location(fix_of(l)),
        OwnTracks::Transition(t) => Report::Transition {
            fix: Fix { lat: t.lat, lon: t.lon, at: Some(t.at), accuracy_m: t.accuracy_m, ..Fix::default() },
            enter: t.event == ot::TransitionEvent::Enter,
            desc: t.desc.clone(),
            rid: t.rid.clone(),
        },
        OwnTracks::Lwt(l) => Report::Lwt { connected_at: l.connected_at },
        _ => Report::Ignored,
    }
}

/// The commands of one OwnTracks payload from `user`/`device`, in order.
/// `team` is the team of the user's record: the device of a responder
/// need not be listed in the scenario's device table.
pub fn submissions(
    bus: &Bus,
    user: &str,
    device: &str,
    team: Option<&str>,
    payload: &[u8],
    now: DateTime<Utc>,
) -> Result<Vec<Submission>, Rejection> {
    let msg = ot::parse(payload).map_err(|problems| Rejection { id: None, problems })?;
    let report = report_of(&msg);
    bus.read(|engine| map(engine, user, device, team, &report, now))
}

/// Maps a report to commands against the current state.
fn map(
    engine: &Engine,
    user: &str,
    device: &str,
    team: Option<&str>,
    report: &Report,
    now: DateTime<Utc>,
) -> Result<Vec<Submission>, Rejection> {
    if *report == Report::Ignored {
        return Ok(Vec::new());
    }
    let key = format!("{user}/{device}");
    let mapped =
        team_of_device(engine, "owntracks", &key).or_else(|| team.and_then(|t| engine.world().team_idx(t)));
    let Some(t) = mapped else {
        return Err(Rejection::one(
            None,
            "unknown_device",
            "topic",
            format!(
                "owntracks device {key} is not mapped to a team (add owntracks:{key} to a team's devices)"
            ),
        ));
    };
    let by = format!("owntracks:{key}");
    let submission = |command: Command, id: String| Submission {
        command,
        msg_id: Some(id),
        by: by.clone(),
        edge: Edge::OwnTracks,
    };
    let mut out = Vec::new();
    match report {
        Report::Location(fix) => {
            let id = msg_id("ot", &key, fix.at, "loc");
            out.push(submission(fix_command(engine, t, fix, id.clone(), now), id));
        }
        Report::Transition { fix, enter, desc, rid } => {
            let kind = if *enter { "enter" } else { "leave" };
            let id = msg_id("ot", &key, fix.at, kind);
            out.push(submission(fix_command(engine, t, fix, id.clone(), now), id));
            if *enter && let Some(task_id) = task_at_site(engine, t, rid.as_deref(), desc.as_deref()) {
                let id = msg_id("ot", &key, fix.at, "onsite");
                let msg = TaskUpdateMsg {
                    envelope: Envelope { v: PROTOCOL_VERSION, id: id.clone(), ts: fix.at.unwrap_or(now) },
                    task_id: Some(task_id),
                    state: TaskState::OnSite,
                    note: Some(format!(
                        "entered {} (owntracks)",
                        rid.as_deref().or(desc.as_deref()).unwrap_or("site")
                    )),
                };
                out.push(submission(Command::TaskUpdate(msg), id));
            }
        }
        Report::Lwt { connected_at } => {
            let id = msg_id("ot", &key, Some(connected_at.unwrap_or(now)), "lwt");
            let msg = TeamStatusMsg {
                envelope: Envelope { v: PROTOCOL_VERSION, id: id.clone(), ts: now },
                team_id: Some(engine.world().team(t).id.clone()),
                status: TeamStatus::Offline,
                battery_pct: None,
                note: Some("phone went dark (owntracks lwt)".to_owned()),
            };
            out.push(submission(Command::TeamStatus(msg), id));
        }
        Report::Ignored => {}
    }
    Ok(out)
}

/// The team's active task if it targets the site a waypoint names (by `rid`
/// = site id, else by `desc` = site id or name) and can still become
/// `on_site`.
fn task_at_site(engine: &Engine, t: TeamIdx, rid: Option<&str>, desc: Option<&str>) -> Option<String> {
    let world = engine.world();
    let site = rid.and_then(|r| world.site_idx(r)).or_else(|| {
        desc.and_then(|d| {
            world.site_idx(d).or_else(|| {
                world.sites().iter().position(|s| s.name == d).map(|i| crate::core::world::SiteIdx(i as u32))
            })
        })
    })?;
    engine
        .tasks()
        .iter()
        .find(|task| {
            task.team == t
                && task.state.is_active()
                && task.target == Target::Site(site)
                && task.state.can_become(TaskState::OnSite)
        })
        .map(|task| task.id.clone())
}

/// `(topic, payload)` of the `setWaypoints` command for every OwnTracks
/// device mapped to a team: the [`MAX_WAYPOINTS`] open sites nearest the
/// team. A waypoint's `tst` identifies it on the phone (a later command
/// replaces a waypoint with the same `tst`), so it is derived from the site
/// id and stays the same across commands and restarts.
pub fn waypoint_commands(engine: &Engine, radius_m: f64) -> Vec<(String, String)> {
    let world = engine.world();
    let mut out = Vec::new();
    for team in world.teams() {
        let devices: Vec<&str> = team
            .devices
            .iter()
            .filter_map(|d| {
                d.strip_prefix("owntracks:").or(if d.contains('/') { Some(d.as_str()) } else { None })
            })
            .collect();
        if devices.is_empty() {
            continue;
        }
        let waypoints: Vec<ot::Waypoint> = world
            .site_index()
            .nearest_iter(team.at)
            .map(|(s, _)| world.site(s))
            .filter(|s| s.status == SiteStatus::Open)
            .take(MAX_WAYPOINTS)
            .map(|s| ot::Waypoint {
                desc: s.name.clone(),
                lat: s.at.lat(),
                lon: s.at.lon(),
                radius_m: Some(radius_m),
                at: waypoint_tst(&s.id),
                rid: Some(s.id.clone()),
            })
            .collect();
        let payload = ot::set_waypoints_cmd(&waypoints).to_string();
        for d in devices {
            out.push((format!("owntracks/{d}/cmd"), payload.clone()));
        }
    }
    out
}

/// A stable waypoint creation time for a site: a second in 2001–2017, far
/// from any waypoint a person creates on the phone now.
fn waypoint_tst(site_id: &str) -> DateTime<Utc> {
    let s = 1_000_000_000 + (super::fnv1a(site_id.as_bytes()) % 500_000_000) as i64;
    DateTime::from_timestamp(s, 0).unwrap_or_default()
}

/// The payload's `topic` (HTTP mode).
fn topic_of(msg: &OwnTracks) -> Option<&str> {
    match msg {
        OwnTracks::Location(l) => l.topic.as_deref(),
        OwnTracks::Transition(t) => t.topic.as_deref(),
        _ => None,
    }
}

/// The payload's tracker id `tid` (HTTP mode).
fn tid_of(msg: &OwnTracks) -> Option<&str> {
    match msg {
        OwnTracks::Location(l) => l.tid.as_deref(),
        OwnTracks::Transition(t) => t.tid.as_deref(),
        _ => None,
    }
}

/// The device of an HTTP-mode post: headers, then the payload's `topic`,
/// then the Basic-auth user with the payload's `tid`.
fn http_device(headers: &HeaderMap, msg: &OwnTracks) -> Option<(String, String)> {
    let header =
        |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    if let (Some(u), Some(d)) = (header("x-limit-u"), header("x-limit-d")) {
        return Some((u.to_owned(), d.to_owned()));
    }
    if let Some(topic) = topic_of(msg)
        && let Some(rest) = topic.strip_prefix("owntracks/")
        && let Some((u, d)) = rest.split_once('/')
    {
        let d = d.split('/').next().unwrap_or(d);
        if !u.is_empty() && !d.is_empty() {
            return Some((u.to_owned(), d.to_owned()));
        }
    }
    let (user, _) = super::basic_credentials(headers)?;
    let tid = tid_of(msg)?;
    Some((user, tid.to_owned()))
}

fn refuse(status: StatusCode, problems: &Problems) -> Response {
    (status, Json(serde_json::json!({ "errors": problems.errors }))).into_response()
}

/// `POST /owntracks`: OwnTracks HTTP mode, authenticated with Basic (user
/// name and token).
pub async fn http(
    State((bus, access)): State<(Bus, Arc<Access>)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let now = Utc::now();
    let who = match super::authenticate(&access, &headers, Edge::OwnTracks, "POST /owntracks").await {
        Ok(who) => who,
        Err(response) => return response,
    };
    let msg = match ot::parse(&body) {
        Ok(m) => m,
        Err(problems) => {
            warn!(problems = %problems, "owntracks http payload refused");
            access.refuse(Some(&who), Edge::OwnTracks, "POST /owntracks", &problems);
            return refuse(StatusCode::BAD_REQUEST, &problems);
        }
    };
    let report = report_of(&msg);
    if report == Report::Ignored {
        return Json(serde_json::json!([])).into_response();
    }
    let Some((user, device)) = http_device(&headers, &msg) else {
        let mut p = Problems::default();
        p.push(
            "required",
            "topic",
            "name the device: X-Limit-U/X-Limit-D headers, the payload's topic, or Basic auth and tid",
        );
        warn!("owntracks http post without a device");
        access.refuse(Some(&who), Edge::OwnTracks, "POST /owntracks", &p);
        return refuse(StatusCode::BAD_REQUEST, &p);
    };
    // A phone speaks as its own OwnTracks user; operators may relay any.
    if user != who.name && !who.role.operates() {
        let mut p = Problems::default();
        p.push(
            crate::auth::policy::FORBIDDEN,
            "topic",
            format!("{} cannot report as owntracks user {user}", who.name),
        );
        access.refuse(Some(&who), Edge::OwnTracks, "POST /owntracks", &p);
        return refuse(StatusCode::FORBIDDEN, &p);
    }
    let submissions = match bus.read(|e| map(e, &user, &device, who.team.as_deref(), &report, now)) {
        Ok(s) => s,
        Err(r) => {
            warn!(user = %user, device = %device, problems = %r.problems, "owntracks http post refused");
            access.refuse(Some(&who), Edge::OwnTracks, "POST /owntracks", &r.problems);
            return refuse(StatusCode::NOT_FOUND, &r.problems);
        }
    };
    for s in submissions {
        match access.submit(&bus, &who, s).await {
            Ok(_) => {}
            Err(SubmitError::Rejected(problems)) => {
                warn!(user = %user, device = %device, problems = %problems, "owntracks http report rejected");
                let status = crate::api::access_status(&problems).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
                return refuse(status, &problems);
            }
            Err(SubmitError::Unavailable(why)) => {
                // OwnTracks will not retry: this report is lost; say so loudly.
                error!(user = %user, device = %device, reason = %why, "owntracks http report not stored");
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
        }
    }
    Json(serde_json::json!([])).into_response()
}
