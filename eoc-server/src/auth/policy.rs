//! The rule book (PRODUCT.md §5), one function for every edge.
//!
//! - chair: everything, and the only role that issues, updates or cancels
//!   alerts;
//! - operator: every team, site and task (assign, override), no alerts;
//! - responder: its own team's position and status, and its own team's
//!   tasks;
//! - site_manager: its own sites' capacity, occupancy and status;
//! - viewer: nothing that writes.
//!
//! Every role reads. A task's team never changes once the task exists, so a
//! check against the state at the edge holds when the writer applies it.

use eoc_protocol::validate::Problems;

use super::{Principal, Role};
use crate::core::engine::{Command, Engine};

/// Code of a refusal by this rule book.
pub const FORBIDDEN: &str = "forbidden";

fn forbidden(field: &str, message: String) -> Problems {
    let mut p = Problems::default();
    p.push(FORBIDDEN, field, message);
    p
}

/// Whether `who` may send `cmd` given the current state; the refusal names
/// the field that decided it and why.
pub fn authorize(who: &Principal, cmd: &Command, engine: &Engine) -> Result<(), Problems> {
    let role = who.role;
    match cmd {
        Command::Alert(_) if role == Role::Chair => Ok(()),
        Command::Alert(m) => Err(forbidden(
            "alert_id",
            format!(
                "only a chair may issue, update or cancel alert {}; {} is a {role}",
                m.alert_id, who.name
            ),
        )),
        Command::Tick => Err(forbidden("type", "only the server itself advances time".to_owned())),
        _ if role.operates() => Ok(()),
        Command::TeamPosition(m) => own_team(who, m.team_id.as_deref()),
        Command::TeamStatus(m) => own_team(who, m.team_id.as_deref()),
        Command::SiteCapacity(m) => own_site(who, m.site_id.as_deref()),
        Command::TaskAssign(m) => Err(forbidden(
            "team_id",
            format!("only an operator or chair may assign team {}; {} is a {role}", m.team_id, who.name),
        )),
        Command::TaskUpdate(m) => {
            let task_id = m.task_id.as_deref().unwrap_or("");
            if role != Role::Responder {
                return Err(forbidden(
                    "task_id",
                    format!("a {role} cannot move task {task_id} on; its team or an operator can"),
                ));
            }
            let team = engine
                .task_idx(task_id)
                .map(|k| engine.world().team(engine.tasks()[k.0 as usize].team).id.as_str());
            match team {
                // An unknown task is the engine's to report (404).
                None => Ok(()),
                Some(team) if who.team.as_deref() == Some(team) => Ok(()),
                Some(team) => Err(forbidden(
                    "task_id",
                    format!(
                        "task {task_id} belongs to team {team}; {} speaks for team {}",
                        who.name,
                        who.team.as_deref().unwrap_or("none")
                    ),
                )),
            }
        }
    }
}

fn own_team(who: &Principal, team_id: Option<&str>) -> Result<(), Problems> {
    let team_id = team_id.unwrap_or("");
    match (who.role, who.team.as_deref()) {
        (Role::Responder, Some(own)) if own == team_id => Ok(()),
        (Role::Responder, own) => Err(forbidden(
            "team_id",
            format!(
                "{} speaks for team {} and cannot report for team {team_id}",
                who.name,
                own.unwrap_or("none")
            ),
        )),
        (role, _) => Err(forbidden("team_id", format!("a {role} cannot report for team {team_id}"))),
    }
}

fn own_site(who: &Principal, site_id: Option<&str>) -> Result<(), Problems> {
    let site_id = site_id.unwrap_or("");
    match who.role {
        Role::SiteManager if who.sites.iter().any(|s| s == site_id) => Ok(()),
        Role::SiteManager => Err(forbidden(
            "site_id",
            format!("{} manages {} and cannot report for site {site_id}", who.name, who.sites.join(", ")),
        )),
        role => Err(forbidden("site_id", format!("a {role} cannot report for site {site_id}"))),
    }
}

/// Whether `who` may read the audit trail.
pub fn may_read_audit(who: &Principal) -> Result<(), Problems> {
    if who.role.operates() {
        Ok(())
    } else {
        Err(forbidden(
            "",
            format!("only operators and chairs read the audit trail; {} is a {}", who.name, who.role),
        ))
    }
}

/// Whether `who` may preview an alert's impact (a planning read).
pub fn may_preview(who: &Principal) -> Result<(), Problems> {
    if who.role.operates() {
        Ok(())
    } else {
        Err(forbidden(
            "",
            format!("only operators and chairs preview alerts; {} is a {}", who.name, who.role),
        ))
    }
}

#[cfg(test)]
mod tests {
    use eoc_protocol::messages::{Envelope, SiteCapacityMsg, TaskUpdateMsg, TeamPositionMsg};
    use eoc_protocol::types::TaskState;

    use super::*;

    fn env() -> Envelope {
        Envelope { v: 1, id: "m-1".to_owned(), ts: chrono::Utc::now() }
    }

    fn position(team: &str) -> Command {
        let json = serde_json::json!({"v": 1, "id": "m-1", "ts": chrono::Utc::now(), "team_id": team,
            "lat": 38.5, "lon": 68.7});
        Command::TeamPosition(serde_json::from_value::<TeamPositionMsg>(json).unwrap())
    }

    fn capacity(site: &str) -> Command {
        let json = serde_json::json!({"v": 1, "id": "m-1", "ts": chrono::Utc::now(), "site_id": site,
            "occupancy": 10});
        Command::SiteCapacity(serde_json::from_value::<SiteCapacityMsg>(json).unwrap())
    }

    fn engine() -> Engine {
        crate::core::engine_tests::small_engine()
    }

    // The test world's teams are t-sr1, t-sr2 and t-med; its sites s-hit,
    // s-a and s-b.

    #[test]
    fn responders_speak_only_for_their_team() {
        let e = engine();
        let r = Principal::responder("r1", "t-sr1");
        assert!(authorize(&r, &position("t-sr1"), &e).is_ok());
        let err = authorize(&r, &position("t-sr2"), &e).unwrap_err();
        assert_eq!(err.errors[0].code, FORBIDDEN);
        assert_eq!(err.errors[0].field, "team_id");
        assert!(err.errors[0].message.contains("t-sr2"), "{}", err.errors[0].message);
        assert!(authorize(&r, &capacity("s-a"), &e).is_err());
    }

    #[test]
    fn site_managers_speak_only_for_their_sites() {
        let e = engine();
        let m = Principal::site_manager("m1", vec!["s-a".to_owned()]);
        assert!(authorize(&m, &capacity("s-a"), &e).is_ok());
        assert_eq!(authorize(&m, &capacity("s-b"), &e).unwrap_err().errors[0].field, "site_id");
        assert!(authorize(&m, &position("t-sr1"), &e).is_err());
    }

    #[test]
    fn only_chairs_alert_and_viewers_write_nothing() {
        let e = engine();
        let alert = crate::core::engine_tests::quake_cmd("a-1", 6.0);
        assert!(authorize(&Principal::new("c", Role::Chair), &alert, &e).is_ok());
        for role in [Role::Operator, Role::Responder, Role::SiteManager, Role::Viewer] {
            let who = Principal {
                team: Some("t-sr1".to_owned()),
                sites: vec!["s-a".to_owned()],
                ..Principal::new("x", role)
            };
            assert!(authorize(&who, &alert, &e).is_err(), "{role} must not alert");
        }
        let viewer = Principal::new("v", Role::Viewer);
        assert!(authorize(&viewer, &position("t-sr1"), &e).is_err());
        assert!(authorize(&viewer, &capacity("s-a"), &e).is_err());
        let op = Principal::new("o", Role::Operator);
        assert!(
            authorize(&op, &position("t-sr2"), &e).is_ok() && authorize(&op, &capacity("s-b"), &e).is_ok()
        );
        assert!(authorize(&op, &Command::Tick, &e).is_err());
    }

    #[test]
    fn responders_move_only_their_own_tasks() {
        let mut e = engine();
        let alert = crate::core::engine_tests::quake_cmd("a-1", 6.5);
        e.apply(&alert, "c", crate::core::engine_tests::NOW_MS).unwrap();
        let task = e.tasks().first().expect("the quake dispatches a team").clone();
        let team = e.world().team(task.team).id.clone();
        let update = Command::TaskUpdate(TaskUpdateMsg {
            envelope: env(),
            task_id: Some(task.id.clone()),
            state: TaskState::Acknowledged,
            note: None,
        });
        assert!(authorize(&Principal::responder("mine", team.as_str()), &update, &e).is_ok());
        let err = authorize(&Principal::responder("other", "t-none"), &update, &e).unwrap_err();
        assert!(err.errors[0].message.contains(&team), "{}", err.errors[0].message);
        assert!(authorize(&Principal::site_manager("m", vec!["s-a".to_owned()]), &update, &e).is_err());
    }
}
