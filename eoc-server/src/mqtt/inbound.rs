//! Inbound MQTT: which topic is which message, and the message as a
//! [`Submission`]. Pure functions of the topic, the payload and the clock,
//! so every rule is tested without a broker.

use chrono::{DateTime, Utc};
use eoc_protocol::messages::{AlertMsg, SiteCapacityMsg, TaskUpdateMsg, TeamPositionMsg, TeamStatusMsg};
use eoc_protocol::validate::{MAX_MESSAGE_BYTES, Problems, Validate, parse};
use serde::de::DeserializeOwned;

use crate::auth::{Principal, Role};
use crate::bus::{Edge, Submission};
use crate::core::engine::Command;

/// Placeholder `by` of submissions built here; [`crate::access::Access::submit`]
/// replaces it with the topic's identity ([`principal_of`]).
pub const MQTT_IDENTITY: &str = "mqtt";

/// The identity a topic proves. The broker authenticates every publisher
/// and its ACL (generated from the user store, `DATA/mosquitto/acl`) pins
/// each one to its topics, but MQTT does not tell a subscriber who
/// published. So the identity is the topic's scope, the least power that
/// may publish there: a team's topics speak for that team's responder, a
/// site's for its manager, `alerts` for a chair, `tasks/+/ack` for an
/// operator. The rule book then checks the message against it (a team
/// topic cannot move another team). OwnTracks topics name their user
/// (`owntracks/%u/…` in the ACL): that user's record is used instead.
pub fn principal_of(route: Route<'_>) -> Option<Principal> {
    Some(match route {
        Route::Alerts | Route::AlertsCap => Principal::new("mqtt:chair", Role::Chair),
        Route::TeamPosition(team) | Route::TeamStatus(team) | Route::TeamTaskAck { team, .. } => {
            Principal::responder(format!("mqtt:team:{team}"), team)
        }
        Route::SiteCapacity(site) => {
            Principal::site_manager(format!("mqtt:site:{site}"), vec![site.to_owned()])
        }
        Route::TaskAck(_) => Principal::new("mqtt:operator", Role::Operator),
        Route::OwnTracks { .. } | Route::OwnTracksEvent { .. } => return None,
    })
}

/// What an inbound topic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// `{prefix}/alerts`.
    Alerts,
    /// `{prefix}/alerts/cap`: a CAP 1.2 (or 1.1) XML document.
    AlertsCap,
    /// `{prefix}/teams/{team_id}/position`.
    TeamPosition(&'a str),
    /// `{prefix}/teams/{team_id}/status`.
    TeamStatus(&'a str),
    /// `{prefix}/sites/{site_id}/capacity`.
    SiteCapacity(&'a str),
    /// `{prefix}/tasks/{task_id}/ack` (operators).
    TaskAck(&'a str),
    /// `{prefix}/teams/{team_id}/tasks/{task_id}/ack` (the team's responders).
    TeamTaskAck {
        /// The team.
        team: &'a str,
        /// The task.
        task: &'a str,
    },
    /// `owntracks/{user}/{device}`: location, lwt (and other OwnTracks types).
    OwnTracks {
        /// OwnTracks user.
        user: &'a str,
        /// OwnTracks device.
        device: &'a str,
    },
    /// `owntracks/{user}/{device}/event`: transitions.
    OwnTracksEvent {
        /// OwnTracks user.
        user: &'a str,
        /// OwnTracks device.
        device: &'a str,
    },
}

/// The topic filters the edge subscribes to (QoS 1) on every ConnAck.
pub fn filters(prefix: &str, owntracks: bool) -> Vec<String> {
    let mut out = vec![
        format!("{prefix}/alerts"),
        format!("{prefix}/alerts/cap"),
        format!("{prefix}/teams/+/position"),
        format!("{prefix}/teams/+/status"),
        format!("{prefix}/sites/+/capacity"),
        format!("{prefix}/tasks/+/ack"),
        format!("{prefix}/teams/+/tasks/+/ack"),
    ];
    if owntracks {
        out.push("owntracks/+/+".to_owned());
        out.push("owntracks/+/+/event".to_owned());
    }
    out
}

/// Which message a topic carries; `None` for a topic eoc does not take
/// (including an empty id level, which a `+` filter matches).
pub fn route<'a>(prefix: &str, topic: &'a str) -> Option<Route<'a>> {
    if let Some(rest) = topic.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')) {
        let parts: Vec<&str> = rest.split('/').collect();
        return match parts.as_slice() {
            ["alerts"] => Some(Route::Alerts),
            ["alerts", "cap"] => Some(Route::AlertsCap),
            ["teams", id, "position"] if !id.is_empty() => Some(Route::TeamPosition(id)),
            ["teams", id, "status"] if !id.is_empty() => Some(Route::TeamStatus(id)),
            ["sites", id, "capacity"] if !id.is_empty() => Some(Route::SiteCapacity(id)),
            ["tasks", id, "ack"] if !id.is_empty() => Some(Route::TaskAck(id)),
            ["teams", team, "tasks", task, "ack"] if !team.is_empty() && !task.is_empty() => {
                Some(Route::TeamTaskAck { team, task })
            }
            _ => None,
        };
    }
    let parts: Vec<&str> = topic.strip_prefix("owntracks/")?.split('/').collect();
    match parts.as_slice() {
        [user, device] if !user.is_empty() && !device.is_empty() => Some(Route::OwnTracks { user, device }),
        [user, device, "event"] if !user.is_empty() && !device.is_empty() => {
            Some(Route::OwnTracksEvent { user, device })
        }
        _ => None,
    }
}

/// A message eoc refuses for good: acknowledged (a rejected message must
/// not be redelivered forever) and reported on `{prefix}/errors`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// The message's `id`, when it could be read.
    pub id: Option<String>,
    /// Every problem found.
    pub problems: Problems,
}

impl Rejection {
    /// A rejection with one problem.
    pub fn one(id: Option<String>, code: &str, field: &str, message: impl Into<String>) -> Rejection {
        let mut problems = Problems::default();
        problems.push(code, field, message);
        Rejection { id, problems }
    }

    /// The JSON published on `{prefix}/errors`: `{id, topic, errors}`.
    pub fn to_json(&self, topic: &str) -> String {
        serde_json::json!({ "id": self.id, "topic": topic, "errors": self.problems.errors }).to_string()
    }
}

/// The `id` of a payload that failed to parse, so the error can name it;
/// `None` when the payload is too large or not a JSON object with a string id.
pub fn id_of(payload: &[u8]) -> Option<String> {
    if payload.len() > MAX_MESSAGE_BYTES {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let id = value.get("id")?.as_str()?;
    // The id is echoed to other clients: bound it as the envelope does.
    Some(id.chars().take(64).collect())
}

/// Fills the id a topic implies into the message's optional field; a body
/// that names a different one is refused.
fn fill_id(slot: &mut Option<String>, field: &str, from_topic: &str) -> Result<(), Problems> {
    match slot {
        Some(body) if body != from_topic => {
            let mut p = Problems::default();
            p.push("conflict", field, format!("{field} {body:?} does not match the topic's {from_topic:?}"));
            Err(p)
        }
        _ => {
            *slot = Some(from_topic.to_owned());
            Ok(())
        }
    }
}

fn parse_msg<T: DeserializeOwned + Validate>(payload: &[u8], now: DateTime<Utc>) -> Result<T, Rejection> {
    parse::<T>(payload, now).map_err(|problems| Rejection { id: id_of(payload), problems })
}

/// The submission for a message on one of eoc's own topics (not OwnTracks,
/// which needs the device mapping): parsed, bounded, validated, with the
/// topic's id filled in.
pub fn eoc_submission(route: Route<'_>, payload: &[u8], now: DateTime<Utc>) -> Result<Submission, Rejection> {
    let (command, id) = match route {
        Route::Alerts => {
            let m: AlertMsg = parse_msg(payload, now)?;
            let id = m.envelope.id.clone();
            (Command::Alert(m), id)
        }
        Route::TeamPosition(team) => {
            let mut m: TeamPositionMsg = parse_msg(payload, now)?;
            let id = m.envelope.id.clone();
            fill_id(&mut m.team_id, "team_id", team)
                .map_err(|p| Rejection { id: Some(id.clone()), problems: p })?;
            (Command::TeamPosition(m), id)
        }
        Route::TeamStatus(team) => {
            let mut m: TeamStatusMsg = parse_msg(payload, now)?;
            let id = m.envelope.id.clone();
            fill_id(&mut m.team_id, "team_id", team)
                .map_err(|p| Rejection { id: Some(id.clone()), problems: p })?;
            (Command::TeamStatus(m), id)
        }
        Route::SiteCapacity(site) => {
            let mut m: SiteCapacityMsg = parse_msg(payload, now)?;
            let id = m.envelope.id.clone();
            fill_id(&mut m.site_id, "site_id", site)
                .map_err(|p| Rejection { id: Some(id.clone()), problems: p })?;
            (Command::SiteCapacity(m), id)
        }
        Route::TaskAck(task) | Route::TeamTaskAck { task, .. } => {
            let mut m: TaskUpdateMsg = parse_msg(payload, now)?;
            let id = m.envelope.id.clone();
            fill_id(&mut m.task_id, "task_id", task)
                .map_err(|p| Rejection { id: Some(id.clone()), problems: p })?;
            (Command::TaskUpdate(m), id)
        }
        Route::OwnTracks { .. } | Route::OwnTracksEvent { .. } | Route::AlertsCap => {
            return Err(Rejection::one(
                None,
                "internal",
                "",
                "owntracks and cap topics are mapped with the server's state",
            ));
        }
    };
    Ok(Submission { command, msg_id: Some(id), by: MQTT_IDENTITY.to_owned(), edge: Edge::Mqtt })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-03-01T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn topics_route_to_their_message_and_id() {
        let check =
            |topic: &str, expect: Option<Route<'_>>| assert_eq!(route("eoc/v1", topic), expect, "{topic}");
        check("eoc/v1/alerts", Some(Route::Alerts));
        check("eoc/v1/alerts/cap", Some(Route::AlertsCap));
        check("eoc/v1/teams/react-1/position", Some(Route::TeamPosition("react-1")));
        check("eoc/v1/teams/react-1/status", Some(Route::TeamStatus("react-1")));
        check("eoc/v1/sites/school-7/capacity", Some(Route::SiteCapacity("school-7")));
        check("eoc/v1/tasks/task-3/ack", Some(Route::TaskAck("task-3")));
        check("owntracks/jane/phone", Some(Route::OwnTracks { user: "jane", device: "phone" }));
        check("owntracks/jane/phone/event", Some(Route::OwnTracksEvent { user: "jane", device: "phone" }));
        // Outbound topics, other levels and empty ids are not inbound.
        check("eoc/v1/teams/react-1/tasks", None);
        check("eoc/v1/teams//position", None);
        check("eoc/v1/alerts/a-1/impact", None);
        check("eoc/v1/errors", None);
        check("eoc/v2/alerts", None);
        check("eoc/v1x/alerts", None);
        check("owntracks/jane/phone/cmd", None);
        check("owntracks/jane", None);
        check("owntracks//phone", None);
    }

    #[test]
    fn topics_prove_the_least_power_that_may_publish_there() {
        let who = |topic| principal_of(route("eoc/v1", topic).unwrap());
        let team = who("eoc/v1/teams/t-1/position").unwrap();
        assert_eq!(
            (team.role, team.team.as_deref(), team.name.as_str()),
            (Role::Responder, Some("t-1"), "mqtt:team:t-1")
        );
        let ack = who("eoc/v1/teams/t-1/tasks/task-1/ack").unwrap();
        assert_eq!(ack.team.as_deref(), Some("t-1"));
        let site = who("eoc/v1/sites/s-1/capacity").unwrap();
        assert_eq!((site.role, site.sites.clone()), (Role::SiteManager, vec!["s-1".to_owned()]));
        assert_eq!(who("eoc/v1/alerts").unwrap().role, Role::Chair);
        assert_eq!(who("eoc/v1/tasks/task-1/ack").unwrap().role, Role::Operator);
        assert_eq!(who("owntracks/u/d"), None);
    }

    #[test]
    fn a_custom_prefix_is_honoured_in_routes_and_filters() {
        assert_eq!(route("tj/eoc", "tj/eoc/teams/t/status"), Some(Route::TeamStatus("t")));
        assert_eq!(route("tj/eoc", "eoc/v1/teams/t/status"), None);
        let f = filters("tj/eoc", false);
        assert!(f.contains(&"tj/eoc/sites/+/capacity".to_owned()));
        assert!(!f.iter().any(|f| f.starts_with("owntracks")));
        assert_eq!(filters("eoc/v1", true).len(), 9);
        assert_eq!(
            route("eoc/v1", "eoc/v1/teams/t-1/tasks/task-3/ack"),
            Some(Route::TeamTaskAck { team: "t-1", task: "task-3" })
        );
        assert_eq!(route("eoc/v1", "eoc/v1/teams/t-1/tasks//ack"), None);
        assert!(filters("eoc/v1", false).contains(&"eoc/v1/alerts/cap".to_owned()));
    }

    #[test]
    fn the_topic_fills_the_team_and_a_different_body_team_is_refused() {
        let body = br#"{"v":1,"id":"p-1","ts":"2026-03-01T09:59:00Z","lat":38.5,"lon":68.7}"#;
        let s = eoc_submission(Route::TeamPosition("react-1"), body, now()).unwrap();
        let Command::TeamPosition(m) = &s.command else { panic!("{s:?}") };
        assert_eq!(m.team_id.as_deref(), Some("react-1"));
        assert_eq!((s.msg_id.as_deref(), s.edge, s.by.as_str()), (Some("p-1"), Edge::Mqtt, "mqtt"));

        let same =
            br#"{"v":1,"id":"p-2","ts":"2026-03-01T09:59:00Z","team_id":"react-1","lat":38.5,"lon":68.7}"#;
        assert!(eoc_submission(Route::TeamPosition("react-1"), same, now()).is_ok());

        let other =
            br#"{"v":1,"id":"p-3","ts":"2026-03-01T09:59:00Z","team_id":"react-2","lat":38.5,"lon":68.7}"#;
        let r = eoc_submission(Route::TeamPosition("react-1"), other, now()).unwrap_err();
        assert_eq!(r.id.as_deref(), Some("p-3"));
        assert_eq!(
            (r.problems.errors[0].code.as_str(), r.problems.errors[0].field.as_str()),
            ("conflict", "team_id")
        );
    }

    #[test]
    fn site_and_task_topics_fill_their_ids() {
        let cap = br#"{"v":1,"id":"c-1","ts":"2026-03-01T09:59:00Z","capacity":120}"#;
        let s = eoc_submission(Route::SiteCapacity("school-7"), cap, now()).unwrap();
        let Command::SiteCapacity(m) = &s.command else { panic!("{s:?}") };
        assert_eq!(m.site_id.as_deref(), Some("school-7"));

        let ack = br#"{"v":1,"id":"k-1","ts":"2026-03-01T09:59:00Z"}"#;
        let s = eoc_submission(Route::TaskAck("task-3"), ack, now()).unwrap();
        let Command::TaskUpdate(m) = &s.command else { panic!("{s:?}") };
        assert_eq!(m.task_id.as_deref(), Some("task-3"));
        assert_eq!(m.state, eoc_protocol::types::TaskState::Acknowledged);

        let status = br#"{"v":1,"id":"s-1","ts":"2026-03-01T09:59:00Z","status":"on_site"}"#;
        let s = eoc_submission(Route::TeamStatus("react-1"), status, now()).unwrap();
        let Command::TeamStatus(m) = &s.command else { panic!("{s:?}") };
        assert_eq!(m.team_id.as_deref(), Some("react-1"));
    }

    #[test]
    fn malformed_messages_are_rejected_with_the_field_and_their_id_when_readable() {
        let bad_lat = br#"{"v":1,"id":"p-9","ts":"2026-03-01T09:59:00Z","lat":91,"lon":68.7}"#;
        let r = eoc_submission(Route::TeamPosition("react-1"), bad_lat, now()).unwrap_err();
        assert_eq!(r.id.as_deref(), Some("p-9"));
        assert!(r.problems.errors.iter().any(|e| e.field == "lat"), "{:?}", r.problems);

        let r = eoc_submission(Route::TeamPosition("react-1"), b"{not json", now()).unwrap_err();
        assert_eq!((r.id, r.problems.errors[0].code.as_str()), (None, "invalid_json"));

        let big = vec![b' '; MAX_MESSAGE_BYTES + 1];
        let r = eoc_submission(Route::Alerts, &big, now()).unwrap_err();
        assert_eq!(r.problems.errors[0].code, "too_large");
    }

    #[test]
    fn the_error_report_names_id_topic_and_every_problem() {
        let r = Rejection::one(Some("p-1".into()), "unknown", "team_id", "no team ghost");
        let v: serde_json::Value = serde_json::from_str(&r.to_json("eoc/v1/teams/ghost/position")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id":"p-1","topic":"eoc/v1/teams/ghost/position",
                "errors":[{"code":"unknown","field":"team_id","message":"no team ghost"}]})
        );
        let v: serde_json::Value =
            serde_json::from_str(&Rejection::one(None, "x", "", "y").to_json("t")).unwrap();
        assert_eq!(v["id"], serde_json::Value::Null);
    }
}
