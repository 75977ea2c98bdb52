//! The engine: applies commands to the world and returns what changed.
//!
//! Every command is a pure function of the current state, the command and
//! the time passed in, so replaying the journal rebuilds exactly the same
//! state. Work is proportional to what a command touches:
//! - a team position moves one point in the team index and, only if the
//!   team is free and a village waits for a team, runs dispatch;
//! - a site update re-allocates only the alerts that can use that site, each
//!   warm-started from its previous allocation;
//! - an alert (new, update, cancel) recomputes that alert's impact, and the
//!   allocation of later alerts that share its sites.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use eoc_protocol::PROTOCOL_VERSION;
use eoc_protocol::delta::{
    AlertView, AllocationUpdate, AllocationView, Delta, EventView, ExposureRow, ExposureSummary, ImpactView,
    ShortfallView, SiteView, Snapshot, TaskTransition, TaskView, TeamView, VillageExposure,
};
use eoc_protocol::geometry::{AreaGeometry, EarthquakeSource};
use eoc_protocol::messages::{
    AlertMsg, SiteCapacityMsg, TaskAssignMsg, TaskUpdateMsg, TeamPositionMsg, TeamStatusMsg,
};
use eoc_protocol::types::{
    AlertStatus, Certainty, Hazard as HazardKind, MsgType, Severity, SiteStatus, Skill, TaskState,
    TeamStatus, Urgency,
};
use eoc_protocol::validate::Problems;

use super::allocation::{self, AllocParams, Allocation, Demand, Supply};
use super::geo::LatLon;
use super::impact::{Area, Exposure, Hazard, ImpactParams, band_label};
use super::world::{SiteIdx, TeamIdx, VillageIdx, World};

/// Settings of dispatch.
#[derive(Debug, Clone, PartialEq)]
pub struct DispatchParams {
    /// A task assigned but not acknowledged within this time becomes
    /// `timed_out` and its village is dispatched again, ms.
    pub ack_timeout_ms: i64,
    /// Whether proposed tasks of actual alerts are assigned (sent to the
    /// team) at once. When false an operator assigns each proposal.
    pub auto_assign: bool,
    /// At most this many villages of one alert get a task (the most urgent).
    pub max_tasks_per_alert: usize,
    /// Teams further than this from a village are not sent there, metres.
    pub max_distance_m: f64,
}

impl Default for DispatchParams {
    fn default() -> Self {
        DispatchParams {
            ack_timeout_ms: 10 * 60 * 1000,
            auto_assign: true,
            max_tasks_per_alert: 50,
            max_distance_m: 500_000.0,
        }
    }
}

/// Settings of the engine.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EngineConfig {
    /// Impact computation.
    pub impact: ImpactParams,
    /// Allocation.
    pub allocation: AllocParams,
    /// Dispatch.
    pub dispatch: DispatchParams,
}

/// What the engine is asked to do. Messages are validated wire messages
/// whose topic- or URL-implied ids (`team_id`, `site_id`, `task_id`) have
/// been filled in by the edge.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Issue, update or cancel an alert.
    Alert(AlertMsg),
    /// A team's position.
    TeamPosition(TeamPositionMsg),
    /// A team's status.
    TeamStatus(TeamStatusMsg),
    /// A site's capacity, occupancy, status or services.
    SiteCapacity(SiteCapacityMsg),
    /// A team moves its task on.
    TaskUpdate(TaskUpdateMsg),
    /// An operator assigns a team.
    TaskAssign(TaskAssignMsg),
    /// Time passes: tasks time out, alerts expire.
    Tick,
}

/// Index of a task in the engine's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct TaskIdx(pub u32);

/// Where a task sends a team.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Target {
    /// A village.
    Village(VillageIdx),
    /// A site.
    Site(SiteIdx),
}

/// A team sent somewhere.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Task {
    /// Stable id (`task-N`, N counting from 1 in creation order).
    pub id: String,
    /// The team.
    pub team: TeamIdx,
    /// The alert served, by position in the engine's alert table.
    pub alert: Option<usize>,
    /// Destination.
    pub target: Target,
    /// Skill needed.
    pub skill: Option<Skill>,
    /// Current state.
    pub state: TaskState,
    /// Team-to-destination distance when the task was made, metres.
    pub distance_m: f64,
    /// Every transition: state, when (ms), by whom.
    pub history: Vec<(TaskState, i64, String)>,
    /// Free text.
    pub note: Option<String>,
}

impl Task {
    /// When the task entered its current state, ms.
    fn since_ms(&self) -> i64 {
        self.history.last().map_or(0, |h| h.1)
    }
}

/// An alert as held by the engine.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Alert {
    /// The last message that shaped it (a cancel keeps the message before it).
    pub msg: AlertMsg,
    /// Messages applied.
    pub revision: u32,
    /// Who issued it first.
    pub issued_by: String,
    /// First issue, ms.
    pub issued_at_ms: i64,
    /// Last change, ms.
    pub updated_at_ms: i64,
    /// Whether it is cancelled.
    pub cancelled: bool,
    /// Whether it has expired.
    pub expired: bool,
    /// The hazard, if eoc models it. Not in state snapshots: it is a
    /// function of `msg` ([`hazard_of`]), recomputed when one is restored.
    #[serde(skip)]
    pub hazard: Option<Hazard>,
    /// Affected villages, most exposed first.
    pub exposures: Vec<Exposure>,
    /// The allocation of its displaced people.
    pub allocation: Allocation,
    /// Sites that were candidates in the last allocation.
    pub candidates: HashSet<SiteIdx>,
    /// Villages (and teams that failed them) that must not be offered the
    /// same team again.
    pub refused: HashSet<(VillageIdx, TeamIdx)>,
}

impl Alert {
    /// Whether the alert is in force.
    pub fn active(&self) -> bool {
        !self.cancelled && !self.expired
    }

    /// Whether it consumes site capacity and sends real teams.
    pub fn is_real(&self) -> bool {
        self.active() && self.msg.status == AlertStatus::Actual
    }
}

/// The engine: world, alerts, tasks.
#[derive(Debug, Clone)]
pub struct Engine {
    config: EngineConfig,
    world: World,
    alerts: Vec<Alert>,
    alert_ids: HashMap<String, usize>,
    tasks: Vec<Task>,
    task_ids: HashMap<String, TaskIdx>,
    /// The live (proposed or active) task of each team.
    team_task: Vec<Option<TaskIdx>>,
    /// The live task of each (alert, village).
    village_task: HashMap<(usize, VillageIdx), TaskIdx>,
    /// Persons allocated to each site by real alerts.
    site_allocated: Vec<u32>,
}

/// Deltas collected while applying one command; objects are sent once, in
/// their final state.
#[derive(Default)]
struct Changes {
    alerts: Vec<usize>,
    impacts: Vec<usize>,
    allocations: Vec<usize>,
    sites: Vec<SiteIdx>,
    teams: Vec<TeamIdx>,
    tasks: Vec<TaskIdx>,
    events: Vec<EventView>,
}

impl Changes {
    fn push<T: PartialEq>(v: &mut Vec<T>, x: T) {
        if !v.contains(&x) {
            v.push(x);
        }
    }
}

fn problem(code: &str, field: &str, message: impl Into<String>) -> Problems {
    let mut p = Problems::default();
    p.push(code, field, message);
    p
}

/// ms since the Unix epoch of a timestamp.
pub fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// Timestamp of ms since the Unix epoch (clamped to the representable range).
pub fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// The skill a hazard's villages need first.
pub fn needed_skill(hazard: HazardKind) -> Option<Skill> {
    match hazard {
        HazardKind::Earthquake | HazardKind::Mudslide | HazardKind::Avalanche => Some(Skill::SearchRescue),
        HazardKind::Flood => Some(Skill::Wash),
        HazardKind::Other => None,
    }
}

/// Converts a validated alert message into a hazard eoc can evaluate.
pub fn hazard_of(msg: &AlertMsg) -> Result<Option<Hazard>, Problems> {
    let kind = match msg.hazard {
        Some(HazardKind::Other) | None => return Ok(None),
        Some(k) => k,
    };
    if kind == HazardKind::Earthquake {
        let Some(EarthquakeSource { lat, lon, depth_km, magnitude }) = msg.earthquake.clone() else {
            return Err(problem("required", "earthquake", "an earthquake alert needs its source"));
        };
        let at = LatLon::new(lat, lon).map_err(|e| problem("out_of_range", "earthquake", e.to_string()))?;
        return Ok(Some(Hazard::Earthquake { at, depth_km, magnitude }));
    }
    let Some(geometry) = &msg.area else {
        return Err(problem("required", "area", format!("a {kind} alert needs an area")));
    };
    let area = match geometry {
        AreaGeometry::Polygon { coordinates } => Area::from_rings(std::slice::from_ref(coordinates)),
        AreaGeometry::MultiPolygon { coordinates } => Area::from_rings(coordinates),
        AreaGeometry::Circle { lat, lon, radius_m } => Area::Circle {
            center: LatLon::new(*lat, *lon).map_err(|e| problem("out_of_range", "area", e.to_string()))?,
            radius_m: *radius_m,
        },
    };
    Ok(Some(Hazard::Area { area, buffer_m: msg.buffer_m.unwrap_or(0.0), severity: msg.severity }))
}

impl Engine {
    /// An engine over `world` with no alert and no task.
    pub fn new(world: World, config: EngineConfig) -> Engine {
        let teams = world.teams().len();
        let sites = world.sites().len();
        Engine {
            config,
            world,
            alerts: Vec::new(),
            alert_ids: HashMap::new(),
            tasks: Vec::new(),
            task_ids: HashMap::new(),
            team_task: vec![None; teams],
            village_task: HashMap::new(),
            site_allocated: vec![0; sites],
        }
    }

    /// The world.
    pub fn world(&self) -> &World {
        &self.world
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// All alerts, in issue order.
    pub fn alerts(&self) -> &[Alert] {
        &self.alerts
    }

    /// An alert by id.
    pub fn alert(&self, alert_id: &str) -> Option<&Alert> {
        self.alert_ids.get(alert_id).map(|&i| &self.alerts[i])
    }

    /// All tasks, in creation order.
    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }

    /// A task by id.
    pub fn task(&self, task_id: &str) -> Option<&Task> {
        self.task_ids.get(task_id).map(|&i| &self.tasks[i.0 as usize])
    }

    /// A task's index by id.
    pub fn task_idx(&self, task_id: &str) -> Option<TaskIdx> {
        self.task_ids.get(task_id).copied()
    }

    /// Persons allocated to a site by real alerts.
    pub fn site_allocated(&self, s: SiteIdx) -> u32 {
        self.site_allocated[s.get()]
    }

    /// Places left at a site for new arrivals: capacity − occupancy −
    /// allocated for an open site, 0 for a closed or full one (the room
    /// allocation itself works with).
    pub fn site_free(&self, s: SiteIdx) -> u32 {
        self.world.site(s).free().saturating_sub(self.site_allocated[s.get()])
    }

    /// Applies one command at time `now_ms` on behalf of `by` (an identity,
    /// recorded in the state). On error nothing has changed.
    pub fn apply(&mut self, cmd: &Command, by: &str, now_ms: i64) -> Result<Vec<Delta>, Problems> {
        let mut first = None;
        let mut rest = self.apply_alert_first(cmd, by, now_ms, &mut |d| first = Some(d))?;
        if let Some(d) = first {
            rest.insert(0, d);
        }
        Ok(rest)
    }

    /// [`Engine::apply`], handing an alert's own delta (issued, updated or
    /// cancelled) to `alert` as soon as the alert is recorded, before its
    /// impact and the allocation around it are worked out, so that it can
    /// be published while they are; the deltas returned are the rest, in
    /// the order [`Engine::apply`] gives them. On error nothing has changed
    /// and `alert` was not called.
    pub fn apply_alert_first(
        &mut self,
        cmd: &Command,
        by: &str,
        now_ms: i64,
        alert: &mut dyn FnMut(Delta),
    ) -> Result<Vec<Delta>, Problems> {
        let mut ch = Changes::default();
        match cmd {
            Command::Alert(m) => self.on_alert(m, by, now_ms, &mut ch, alert)?,
            Command::TeamPosition(m) => self.on_position(m, now_ms, &mut ch)?,
            Command::TeamStatus(m) => self.on_team_status(m, by, now_ms, &mut ch)?,
            Command::SiteCapacity(m) => self.on_site(m, now_ms, &mut ch)?,
            Command::TaskUpdate(m) => self.on_task_update(m, by, now_ms, &mut ch)?,
            Command::TaskAssign(m) => self.on_task_assign(m, by, now_ms, &mut ch)?,
            Command::Tick => self.on_tick(now_ms, &mut ch),
        }
        Ok(self.deltas(ch))
    }

    /// Whether a [`Command::Tick`] at `now_ms` would change anything (so the
    /// caller journals ticks only when they matter).
    pub fn tick_due(&self, now_ms: i64) -> bool {
        let timeout = self.config.dispatch.ack_timeout_ms;
        self.tasks.iter().any(|t| t.state == TaskState::Assigned && t.since_ms() + timeout <= now_ms)
            || self.alerts.iter().any(|a| a.active() && a.msg.expires_at.is_some_and(|e| to_ms(e) <= now_ms))
    }

    // ---- commands -------------------------------------------------------

    fn on_alert(
        &mut self,
        m: &AlertMsg,
        by: &str,
        now_ms: i64,
        ch: &mut Changes,
        alert: &mut dyn FnMut(Delta),
    ) -> Result<(), Problems> {
        let existing = self.alert_ids.get(&m.alert_id).copied();
        match (m.msg_type, existing) {
            (MsgType::Alert, Some(_)) => {
                return Err(problem(
                    "conflict",
                    "alert_id",
                    format!("alert {} already exists; send msg_type update or cancel", m.alert_id),
                ));
            }
            (MsgType::Update | MsgType::Cancel, None) => {
                return Err(problem("unknown", "alert_id", format!("no alert {}", m.alert_id)));
            }
            (MsgType::Update | MsgType::Cancel, Some(i)) if self.alerts[i].cancelled => {
                return Err(problem("conflict", "alert_id", format!("alert {} is cancelled", m.alert_id)));
            }
            _ => {}
        }
        if m.msg_type == MsgType::Cancel {
            let i = existing.unwrap_or_default();
            let a = &mut self.alerts[i];
            a.cancelled = true;
            a.revision += 1;
            a.updated_at_ms = now_ms;
            a.msg.msg_type = MsgType::Cancel;
            self.event(ch, now_ms, "alert_cancelled", format!("alert {} cancelled by {by}", m.alert_id));
            alert(Delta::Alert(self.alert_view(i)));
            let hit = self.sites_hit_by(i);
            self.release_alert(i, now_ms, "alert cancelled", ch);
            Changes::push(&mut ch.impacts, i);
            self.reallocate_around(i, &hit, ch);
            self.dispatch_all(now_ms, ch);
            return Ok(());
        }
        let hazard = hazard_of(m)?;
        // Sites the alert hit before an update may be usable again.
        let hit_before = existing.map(|i| self.sites_hit_by(i)).unwrap_or_default();
        let i = match existing {
            Some(i) => {
                let a = &mut self.alerts[i];
                a.msg = m.clone();
                a.revision += 1;
                a.updated_at_ms = now_ms;
                a.hazard = hazard;
                self.event(ch, now_ms, "alert_updated", format!("alert {} updated by {by}", m.alert_id));
                i
            }
            None => {
                let i = self.alerts.len();
                self.alerts.push(Alert {
                    msg: m.clone(),
                    revision: 1,
                    issued_by: by.to_owned(),
                    issued_at_ms: now_ms,
                    updated_at_ms: now_ms,
                    cancelled: false,
                    expired: m.expires_at.is_some_and(|e| to_ms(e) <= now_ms),
                    hazard,
                    exposures: Vec::new(),
                    allocation: Allocation::default(),
                    candidates: HashSet::new(),
                    refused: HashSet::new(),
                });
                self.alert_ids.insert(m.alert_id.clone(), i);
                let what = m.hazard.map_or("hazard", |h| h.as_str());
                self.event(
                    ch,
                    now_ms,
                    "alert_issued",
                    format!("{} {what} alert {} issued by {by}", m.status, m.alert_id),
                );
                i
            }
        };
        alert(Delta::Alert(self.alert_view(i)));
        let mut hit = hit_before;
        self.recompute_impact(i, now_ms, ch);
        hit.extend(self.sites_hit_by(i));
        self.reallocate_around(i, &hit, ch);
        self.dispatch_all(now_ms, ch);
        Ok(())
    }

    fn team_of(&self, team_id: Option<&String>) -> Result<TeamIdx, Problems> {
        let Some(id) = team_id else {
            return Err(problem("required", "team_id", "team_id is required"));
        };
        self.world.team_idx(id).ok_or_else(|| problem("unknown", "team_id", format!("no team {id}")))
    }

    fn on_position(&mut self, m: &TeamPositionMsg, now_ms: i64, ch: &mut Changes) -> Result<(), Problems> {
        let t = self.team_of(m.team_id.as_ref())?;
        let to = LatLon::new(m.lat, m.lon).map_err(|e| problem("out_of_range", "lat", e.to_string()))?;
        let fix_ms = to_ms(m.at.unwrap_or(m.envelope.ts));
        let team = self.world.team_mut(t);
        team.last_seen_ms = Some(team.last_seen_ms.map_or(now_ms, |s| s.max(now_ms)));
        if let Some(b) = m.battery_pct {
            team.battery_pct = Some(b);
        }
        // A fix older than the one held never moves the team back.
        let newer = team.position_at_ms.is_none_or(|held| fix_ms > held);
        if newer {
            team.position_at_ms = Some(fix_ms);
            team.accuracy_m = m.accuracy_m;
            self.world.move_team(t, to);
        }
        // A phone that reports is online again.
        let team = self.world.team_mut(t);
        let was_offline = team.status == TeamStatus::Offline;
        if was_offline {
            team.status =
                if self.team_task[t.get()].is_some() { TeamStatus::EnRoute } else { TeamStatus::Available };
        }
        Changes::push(&mut ch.teams, t);
        if newer || was_offline {
            self.dispatch_if_waiting(t, now_ms, ch);
        }
        Ok(())
    }

    fn on_team_status(
        &mut self,
        m: &TeamStatusMsg,
        by: &str,
        now_ms: i64,
        ch: &mut Changes,
    ) -> Result<(), Problems> {
        let t = self.team_of(m.team_id.as_ref())?;
        let team = self.world.team_mut(t);
        let before = team.status;
        team.status = m.status;
        team.last_seen_ms = Some(team.last_seen_ms.map_or(now_ms, |s| s.max(now_ms)));
        if let Some(b) = m.battery_pct {
            team.battery_pct = Some(b);
        }
        Changes::push(&mut ch.teams, t);
        if before != m.status {
            let name = self.world.team(t).id.clone();
            if matches!(m.status, TeamStatus::Offline | TeamStatus::Unavailable) {
                self.event(ch, now_ms, "team_status", format!("team {name} is {}", m.status));
                if let Some(k) = self.team_task[t.get()] {
                    let task = &self.tasks[k.0 as usize];
                    if matches!(task.state, TaskState::Proposed | TaskState::Assigned) {
                        // Not yet accepted: another team can take it.
                        let why = format!("team {} is {}", name, m.status);
                        self.end_task(k, TaskState::Cancelled, by, now_ms, Some(why), ch);
                    } else {
                        // Accepted work is never silently moved; the
                        // operator sees it and decides.
                        let task_id = task.id.clone();
                        self.event(
                            ch,
                            now_ms,
                            "task_at_risk",
                            format!("team {name} is {} while holding acknowledged task {task_id}", m.status),
                        );
                    }
                }
            }
        }
        self.dispatch_if_waiting(t, now_ms, ch);
        Ok(())
    }

    fn on_site(&mut self, m: &SiteCapacityMsg, now_ms: i64, ch: &mut Changes) -> Result<(), Problems> {
        let Some(id) = &m.site_id else {
            return Err(problem("required", "site_id", "site_id is required"));
        };
        let s =
            self.world.site_idx(id).ok_or_else(|| problem("unknown", "site_id", format!("no site {id}")))?;
        let site = self.world.site_mut(s);
        let free_before = site.free();
        let status_before = site.status;
        if let Some(c) = m.capacity {
            site.capacity = u32::try_from(c.max(0)).unwrap_or(u32::MAX);
        }
        if let Some(o) = m.occupancy {
            site.occupancy = u32::try_from(o.max(0)).unwrap_or(u32::MAX);
        }
        if let Some(st) = m.status {
            site.status = st;
        }
        if let Some(sv) = &m.services {
            site.services = sv.clone();
        }
        site.updated_at_ms = Some(now_ms);
        let (name, capacity, occupancy, status, free_after) =
            (site.id.clone(), site.capacity, site.occupancy, site.status, site.free());
        Changes::push(&mut ch.sites, s);
        if occupancy > capacity {
            self.event(
                ch,
                now_ms,
                "site_overcrowded",
                format!("site {name} holds {occupancy} for {capacity} places"),
            );
        } else if status == SiteStatus::Full && status_before != SiteStatus::Full {
            self.event(ch, now_ms, "site_full", format!("site {name} reports full"));
        } else if status == SiteStatus::Closed && status_before != SiteStatus::Closed {
            self.event(ch, now_ms, "site_closed", format!("site {name} closed"));
        }
        if free_after != free_before {
            self.reallocate_for_site(s, ch);
        }
        Ok(())
    }

    fn on_task_update(
        &mut self,
        m: &TaskUpdateMsg,
        by: &str,
        now_ms: i64,
        ch: &mut Changes,
    ) -> Result<(), Problems> {
        let Some(id) = &m.task_id else {
            return Err(problem("required", "task_id", "task_id is required"));
        };
        let k =
            *self.task_ids.get(id).ok_or_else(|| problem("unknown", "task_id", format!("no task {id}")))?;
        let task = &self.tasks[k.0 as usize];
        let from = task.state;
        let to = m.state;
        if !matches!(
            to,
            TaskState::Acknowledged
                | TaskState::EnRoute
                | TaskState::OnSite
                | TaskState::Completed
                | TaskState::Declined
        ) {
            return Err(problem("not_allowed", "state", format!("a team cannot move a task to {to}")));
        }
        if from == to {
            // A repeated report (a retry with a new id) changes nothing.
            return Ok(());
        }
        if !from.can_become(to) {
            return Err(problem(
                "not_allowed",
                "state",
                format!("task {id} is {from} and cannot become {to}"),
            ));
        }
        let team = task.team;
        if to.is_terminal() {
            if to == TaskState::Declined
                && let (Some(a), Target::Village(v)) = (task.alert, task.target)
            {
                self.alerts[a].refused.insert((v, team));
            }
            self.end_task(k, to, by, now_ms, m.note.clone(), ch);
            self.dispatch_all(now_ms, ch);
        } else {
            let task = &mut self.tasks[k.0 as usize];
            task.state = to;
            task.history.push((to, now_ms, by.to_owned()));
            if m.note.is_some() {
                task.note = m.note.clone();
            }
            Changes::push(&mut ch.tasks, k);
            match to {
                TaskState::EnRoute => self.world.team_mut(team).status = TeamStatus::EnRoute,
                TaskState::OnSite => self.world.team_mut(team).status = TeamStatus::OnSite,
                _ => {}
            }
            Changes::push(&mut ch.teams, team);
        }
        Ok(())
    }

    fn on_task_assign(
        &mut self,
        m: &TaskAssignMsg,
        by: &str,
        now_ms: i64,
        ch: &mut Changes,
    ) -> Result<(), Problems> {
        let t = self
            .world
            .team_idx(&m.team_id)
            .ok_or_else(|| problem("unknown", "team_id", format!("no team {}", m.team_id)))?;
        let target = match (&m.village_id, &m.site_id) {
            (Some(v), None) => Target::Village(
                self.world
                    .village_idx(v)
                    .ok_or_else(|| problem("unknown", "village_id", format!("no village {v}")))?,
            ),
            (None, Some(s)) => Target::Site(
                self.world
                    .site_idx(s)
                    .ok_or_else(|| problem("unknown", "site_id", format!("no site {s}")))?,
            ),
            _ => return Err(problem("conflict", "village_id", "give exactly one of village_id and site_id")),
        };
        let alert = match &m.alert_id {
            Some(a) => Some(
                *self
                    .alert_ids
                    .get(a)
                    .ok_or_else(|| problem("unknown", "alert_id", format!("no alert {a}")))?,
            ),
            None => None,
        };
        if let Some(a) = alert
            && !self.alerts[a].active()
        {
            let id = &self.alerts[a].msg.alert_id;
            return Err(problem("not_allowed", "alert_id", format!("alert {id} is not active")));
        }
        // The operator's choice overrides: the team's current task and any
        // other team's task for the same village and alert end, visibly.
        if let Some(old) = self.team_task[t.get()] {
            let why = Some(format!("team reassigned by {by}"));
            self.end_task(old, TaskState::Cancelled, by, now_ms, why, ch);
        }
        if let (Some(a), Target::Village(v)) = (alert, target)
            && let Some(&other) = self.village_task.get(&(a, v))
        {
            let why = Some(format!("village reassigned to team {} by {by}", m.team_id));
            self.end_task(other, TaskState::Cancelled, by, now_ms, why, ch);
        }
        let k = self.create_task(t, alert, target, m.skill, now_ms, by, ch);
        self.tasks[k.0 as usize].note = m.note.clone();
        self.assign(k, by, now_ms, ch);
        self.dispatch_all(now_ms, ch);
        Ok(())
    }

    fn on_tick(&mut self, now_ms: i64, ch: &mut Changes) {
        let timeout = self.config.dispatch.ack_timeout_ms;
        let late: Vec<TaskIdx> = self
            .tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.state == TaskState::Assigned && t.since_ms() + timeout <= now_ms)
            .map(|(i, _)| TaskIdx(i as u32))
            .collect();
        for k in late {
            let task = &self.tasks[k.0 as usize];
            if let (Some(a), Target::Village(v)) = (task.alert, task.target) {
                self.alerts[a].refused.insert((v, task.team));
            }
            let why = Some(format!("not acknowledged within {} s", timeout / 1000));
            self.end_task(k, TaskState::TimedOut, "eoc", now_ms, why, ch);
        }
        let expired: Vec<usize> = (0..self.alerts.len())
            .filter(|&i| {
                let a = &self.alerts[i];
                a.active() && a.msg.expires_at.is_some_and(|e| to_ms(e) <= now_ms)
            })
            .collect();
        for i in expired {
            self.alerts[i].expired = true;
            self.alerts[i].updated_at_ms = now_ms;
            let id = self.alerts[i].msg.alert_id.clone();
            self.event(ch, now_ms, "alert_expired", format!("alert {id} expired"));
            self.release_alert(i, now_ms, "alert expired", ch);
            Changes::push(&mut ch.alerts, i);
            Changes::push(&mut ch.impacts, i);
            self.reallocate_after(i, ch);
        }
        self.dispatch_all(now_ms, ch);
    }

    // ---- impact and allocation -----------------------------------------

    fn recompute_impact(&mut self, i: usize, now_ms: i64, ch: &mut Changes) {
        let a = &self.alerts[i];
        let exposures = match (&a.hazard, a.active()) {
            (Some(h), true) => h.exposures(&self.world, &self.config.impact),
            _ => Vec::new(),
        };
        let affected: HashSet<VillageIdx> = exposures.iter().map(|e| e.village).collect();
        self.alerts[i].exposures = exposures;
        Changes::push(&mut ch.impacts, i);
        // Tasks for villages no longer affected end unless accepted.
        let mut stale: Vec<TaskIdx> = self
            .village_task
            .iter()
            .filter(|((a, v), _)| *a == i && !affected.contains(v))
            .map(|(_, &k)| k)
            .collect();
        // In the order the tasks were made, not the map's: the same command
        // gives the same deltas and events on every engine (a replay too).
        stale.sort_unstable();
        for k in stale {
            let state = self.tasks[k.0 as usize].state;
            if matches!(state, TaskState::Proposed | TaskState::Assigned) {
                let why = Some("village no longer affected by the updated alert".to_owned());
                self.end_task(k, TaskState::Cancelled, "eoc", now_ms, why, ch);
            }
        }
    }

    /// Releases everything an alert holds: allocation, unaccepted and
    /// accepted tasks alike (the alert is over, teams are told).
    fn release_alert(&mut self, i: usize, now_ms: i64, why: &str, ch: &mut Changes) {
        self.alerts[i].exposures.clear();
        let mut live: Vec<TaskIdx> =
            self.village_task.iter().filter(|((a, _), _)| *a == i).map(|(_, &k)| k).collect();
        live.sort_unstable();
        for k in live {
            self.end_task(k, TaskState::Cancelled, "eoc", now_ms, Some(why.to_owned()), ch);
        }
        self.set_allocation(i, Allocation::default(), HashSet::new(), ch);
    }

    /// Sites that alert `i`'s hazard makes unusable (if it is real).
    fn sites_hit_by(&self, i: usize) -> HashSet<SiteIdx> {
        let a = &self.alerts[i];
        let Some(h) = a.hazard.as_ref().filter(|_| a.is_real()) else { return HashSet::new() };
        let Some((center, reach)) = h.reach(&self.config.impact) else { return HashSet::new() };
        self.world
            .site_index()
            .within(center, reach)
            .map(|(s, _)| s)
            .filter(|&s| h.hits(self.world.site(s).at, &self.config.impact))
            .collect()
    }

    /// After alert `i` changed: re-allocates it, every earlier alert that
    /// used a site it now hits or that is short of room (a released site may
    /// serve it), and the later alerts that share their sites.
    fn reallocate_around(&mut self, i: usize, hit: &HashSet<SiteIdx>, ch: &mut Changes) {
        let first = (0..i)
            .find(|&j| {
                let a = &self.alerts[j];
                a.active()
                    && !a.exposures.is_empty()
                    && (!a.allocation.shortfall.is_empty() || a.candidates.iter().any(|s| hit.contains(s)))
            })
            .unwrap_or(i);
        if first < i {
            // Earlier alerts are re-allocated in order; `i` and the later ones follow.
            for j in first..i {
                self.reallocate_alert(j, ch);
            }
        }
        self.reallocate_after(i, ch);
    }

    /// Re-allocates alert `from` and every later alert whose sites it may
    /// share (real alerts consume capacity in issue order).
    fn reallocate_after(&mut self, from: usize, ch: &mut Changes) {
        let mut touched: HashSet<SiteIdx> = self.alerts[from].candidates.clone();
        self.reallocate_alert(from, ch);
        touched.extend(self.alerts[from].candidates.iter().copied());
        for j in from + 1..self.alerts.len() {
            if self.alerts[j].active() && self.alerts[j].candidates.iter().any(|s| touched.contains(s)) {
                self.reallocate_alert(j, ch);
                touched.extend(self.alerts[j].candidates.iter().copied());
            }
        }
    }

    /// Re-allocates the alerts that can use site `s`, in issue order.
    fn reallocate_for_site(&mut self, s: SiteIdx, ch: &mut Changes) {
        let at = self.world.site(s).at;
        let reach_m = self.config.allocation.max_distance_m;
        let first = (0..self.alerts.len()).find(|&i| {
            let a = &self.alerts[i];
            a.active()
                && !a.exposures.is_empty()
                && (a.candidates.contains(&s)
                    || a.hazard
                        .as_ref()
                        .and_then(|h| h.reach(&self.config.impact))
                        .is_some_and(|(c, r)| c.distance_m(at) <= r + reach_m))
        });
        if let Some(i) = first {
            self.reallocate_after(i, ch);
        }
    }

    /// Room at each site for alert `i`: free capacity less what earlier real
    /// alerts took; no room at sites hit by any active real alert.
    fn supplies_for(&self, i: usize) -> Vec<Supply> {
        let a = &self.alerts[i];
        let Some(h) = &a.hazard else { return Vec::new() };
        let Some((center, reach)) = h.reach(&self.config.impact) else { return Vec::new() };
        let radius = reach + self.config.allocation.max_distance_m;
        let mut taken: HashMap<SiteIdx, u32> = HashMap::new();
        for earlier in self.alerts[..i].iter().filter(|e| e.is_real()) {
            for f in &earlier.allocation.flows {
                *taken.entry(f.site).or_default() += f.persons;
            }
        }
        let hitters: Vec<&Hazard> = self
            .alerts
            .iter()
            .enumerate()
            .filter(|(j, o)| *j == i || o.is_real())
            .filter_map(|(_, o)| o.hazard.as_ref())
            .collect();
        let mut out: Vec<Supply> = self
            .world
            .site_index()
            .within(center, radius)
            .filter_map(|(s, _)| {
                let site = self.world.site(s);
                let free = site.free().saturating_sub(taken.get(&s).copied().unwrap_or(0));
                (free > 0 && !hitters.iter().any(|hz| hz.hits(site.at, &self.config.impact)))
                    .then_some(Supply { site: s, at: site.at, free })
            })
            .collect();
        out.sort_by_key(|s| s.site);
        out
    }

    fn reallocate_alert(&mut self, i: usize, ch: &mut Changes) {
        let a = &self.alerts[i];
        if !a.active() || a.exposures.is_empty() {
            if !a.allocation.flows.is_empty() || !a.allocation.shortfall.is_empty() {
                self.set_allocation(i, Allocation::default(), HashSet::new(), ch);
            }
            return;
        }
        let demands: Vec<Demand> = a
            .exposures
            .iter()
            .filter(|e| e.displaced > 0)
            .map(|e| Demand {
                village: e.village,
                at: self.world.village(e.village).at,
                persons: e.displaced,
            })
            .collect();
        let supplies = self.supplies_for(i);
        let params = self.config.allocation;
        let next = if a.allocation.flows.is_empty() && a.allocation.shortfall.is_empty() {
            allocation::allocate(&demands, &supplies, &params)
        } else {
            allocation::reallocate(&a.allocation, &demands, &supplies, &params)
        };
        let candidates = supplies.iter().map(|s| s.site).collect();
        if next != self.alerts[i].allocation {
            self.set_allocation(i, next, candidates, ch);
        } else {
            self.alerts[i].candidates = candidates;
        }
    }

    fn set_allocation(&mut self, i: usize, next: Allocation, candidates: HashSet<SiteIdx>, ch: &mut Changes) {
        let real = self.alerts[i].is_real() || self.alerts[i].msg.status == AlertStatus::Actual;
        let prev = std::mem::replace(&mut self.alerts[i].allocation, next);
        self.alerts[i].candidates = candidates;
        if real {
            for f in &prev.flows {
                let slot = &mut self.site_allocated[f.site.get()];
                *slot = slot.saturating_sub(f.persons);
                Changes::push(&mut ch.sites, f.site);
            }
            if self.alerts[i].is_real() {
                for f in &self.alerts[i].allocation.flows {
                    self.site_allocated[f.site.get()] += f.persons;
                    Changes::push(&mut ch.sites, f.site);
                }
            }
        }
        Changes::push(&mut ch.allocations, i);
    }

    // ---- dispatch --------------------------------------------------------

    /// Villages of real alerts still waiting for a team, most urgent first.
    fn waiting(&self) -> Vec<(usize, VillageIdx)> {
        let mut out = Vec::new();
        for (i, a) in self.alerts.iter().enumerate() {
            if !a.is_real() || needed_skill(a.msg.hazard.unwrap_or(HazardKind::Other)).is_none() {
                continue;
            }
            for e in a.exposures.iter().take(self.config.dispatch.max_tasks_per_alert) {
                if !self.village_task.contains_key(&(i, e.village)) {
                    out.push((i, e.village));
                }
            }
        }
        out
    }

    fn team_free(&self, t: TeamIdx) -> bool {
        self.world.team(t).status == TeamStatus::Available && self.team_task[t.get()].is_none()
    }

    /// Runs dispatch only if team `t` is free and some village waits.
    fn dispatch_if_waiting(&mut self, t: TeamIdx, now_ms: i64, ch: &mut Changes) {
        if self.team_free(t) {
            self.dispatch_all(now_ms, ch);
        }
    }

    /// Gives each waiting village, most urgent first, the nearest free team
    /// with the needed skill.
    fn dispatch_all(&mut self, now_ms: i64, ch: &mut Changes) {
        let waiting = self.waiting();
        if waiting.is_empty() {
            return;
        }
        let max_m = self.config.dispatch.max_distance_m;
        // Free teams per skill asked for: once none is left, the remaining
        // villages wait without a search through every team in range.
        let mut free_with: Vec<(Skill, usize)> = Vec::new();
        for (i, v) in waiting {
            let Some(skill) = needed_skill(self.alerts[i].msg.hazard.unwrap_or(HazardKind::Other)) else {
                continue;
            };
            let n = match free_with.iter().position(|&(s, _)| s == skill) {
                Some(n) => n,
                None => {
                    let count = (0..self.world.teams().len())
                        .map(|t| TeamIdx(t as u32))
                        .filter(|&t| self.team_free(t) && self.world.team(t).has(skill))
                        .count();
                    free_with.push((skill, count));
                    free_with.len() - 1
                }
            };
            if free_with[n].1 == 0 {
                continue;
            }
            let at = self.world.village(v).at;
            let refused = &self.alerts[i].refused;
            let pick =
                self.world.team_index().nearest_iter(at).take_while(|&(_, d)| d <= max_m).find(|&(t, _)| {
                    self.team_free(t) && self.world.team(t).has(skill) && !refused.contains(&(v, t))
                });
            let Some((t, _)) = pick else { continue };
            // The team is busy from here on, for every skill it has.
            for (s, count) in &mut free_with {
                if self.world.team(t).has(*s) {
                    *count -= 1;
                }
            }
            let k = self.create_task(t, Some(i), Target::Village(v), Some(skill), now_ms, "eoc", ch);
            if self.config.dispatch.auto_assign {
                self.assign(k, "eoc", now_ms, ch);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn create_task(
        &mut self,
        t: TeamIdx,
        alert: Option<usize>,
        target: Target,
        skill: Option<Skill>,
        now_ms: i64,
        by: &str,
        ch: &mut Changes,
    ) -> TaskIdx {
        let k = TaskIdx(self.tasks.len() as u32);
        let id = format!("task-{}", self.tasks.len() + 1);
        let dest = match target {
            Target::Village(v) => self.world.village(v).at,
            Target::Site(s) => self.world.site(s).at,
        };
        let distance_m = self.world.team(t).at.distance_m(dest);
        self.tasks.push(Task {
            id: id.clone(),
            team: t,
            alert,
            target,
            skill,
            state: TaskState::Proposed,
            distance_m,
            history: vec![(TaskState::Proposed, now_ms, by.to_owned())],
            note: None,
        });
        self.task_ids.insert(id, k);
        self.team_task[t.get()] = Some(k);
        if let (Some(a), Target::Village(v)) = (alert, target) {
            self.village_task.insert((a, v), k);
        }
        Changes::push(&mut ch.tasks, k);
        Changes::push(&mut ch.teams, t);
        k
    }

    fn assign(&mut self, k: TaskIdx, by: &str, now_ms: i64, ch: &mut Changes) {
        let task = &mut self.tasks[k.0 as usize];
        task.state = TaskState::Assigned;
        task.history.push((TaskState::Assigned, now_ms, by.to_owned()));
        let (team, id) = (task.team, task.id.clone());
        let name = self.world.team(team).id.clone();
        self.event(ch, now_ms, "task_assigned", format!("task {id} assigned to team {name}"));
        Changes::push(&mut ch.tasks, k);
    }

    /// Ends a task and frees its team and village. Whether the village
    /// waits for another team follows from the state: dispatch runs after
    /// every command that can free a team.
    fn end_task(
        &mut self,
        k: TaskIdx,
        to: TaskState,
        by: &str,
        now_ms: i64,
        why: Option<String>,
        ch: &mut Changes,
    ) {
        let task = &mut self.tasks[k.0 as usize];
        if task.state.is_terminal() {
            return;
        }
        task.state = to;
        task.history.push((to, now_ms, by.to_owned()));
        if why.is_some() {
            task.note = why.clone();
        }
        let (team, alert, target, id) = (task.team, task.alert, task.target, task.id.clone());
        if self.team_task[team.get()] == Some(k) {
            self.team_task[team.get()] = None;
        }
        if let (Some(a), Target::Village(v)) = (alert, target)
            && self.village_task.get(&(a, v)) == Some(&k)
        {
            self.village_task.remove(&(a, v));
        }
        let team_status = self.world.team(team).status;
        if matches!(team_status, TeamStatus::EnRoute | TeamStatus::OnSite) {
            self.world.team_mut(team).status = TeamStatus::Available;
        }
        if to != TaskState::Completed {
            let name = self.world.team(team).id.clone();
            let why = why.unwrap_or_default();
            self.event(ch, now_ms, &format!("task_{to}"), format!("task {id} of team {name} {to}: {why}"));
        }
        Changes::push(&mut ch.tasks, k);
        Changes::push(&mut ch.teams, team);
    }

    fn event(&self, ch: &mut Changes, now_ms: i64, kind: &str, text: String) {
        ch.events.push(EventView { at: from_ms(now_ms), kind: kind.to_owned(), text });
    }

    // ---- views -----------------------------------------------------------

    fn deltas(&self, ch: Changes) -> Vec<Delta> {
        let mut out = Vec::new();
        for &i in &ch.alerts {
            out.push(Delta::Alert(self.alert_view(i)));
        }
        for &i in &ch.impacts {
            out.push(Delta::Impact(self.impact_view(i)));
        }
        for &i in ch.allocations.iter().filter(|i| !ch.impacts.contains(i)) {
            out.push(Delta::Allocation(self.allocation_update(i)));
        }
        for &s in &ch.sites {
            out.push(Delta::Site(self.site_view(s)));
        }
        for &t in &ch.teams {
            out.push(Delta::Team(self.team_view(t)));
        }
        for &k in &ch.tasks {
            out.push(Delta::Task(self.task_view(k)));
        }
        out.extend(ch.events.into_iter().map(Delta::Event));
        out
    }

    /// The whole state, numbered `seq`, at `now_ms`.
    pub fn snapshot(&self, seq: u64, now_ms: i64) -> Snapshot {
        Snapshot {
            v: PROTOCOL_VERSION,
            seq,
            server_ts_ms: now_ms,
            alerts: (0..self.alerts.len()).map(|i| self.alert_view(i)).collect(),
            impacts: (0..self.alerts.len())
                .filter(|&i| self.alerts[i].hazard.is_some())
                .map(|i| self.impact_view(i))
                .collect(),
            sites: (0..self.world.sites().len()).map(|s| self.site_view(SiteIdx(s as u32))).collect(),
            teams: (0..self.world.teams().len()).map(|t| self.team_view(TeamIdx(t as u32))).collect(),
            tasks: (0..self.tasks.len()).map(|k| self.task_view(TaskIdx(k as u32))).collect(),
        }
    }

    /// An alert's view by position.
    pub fn alert_view(&self, i: usize) -> AlertView {
        let a = &self.alerts[i];
        let m = &a.msg;
        AlertView {
            alert_id: m.alert_id.clone(),
            revision: a.revision,
            msg_type: m.msg_type,
            status: m.status,
            hazard: m.hazard.unwrap_or(HazardKind::Other),
            urgency: m.urgency,
            severity: m.severity,
            certainty: m.certainty,
            headline: m.headline.clone(),
            description: m.description.clone(),
            issued_by: a.issued_by.clone(),
            issued_at: from_ms(a.issued_at_ms),
            updated_at: from_ms(a.updated_at_ms),
            expires_at: m.expires_at,
            earthquake: m.earthquake.clone(),
            area: m.area.clone(),
            buffer_m: m.buffer_m,
            active: a.active(),
        }
    }

    /// An alert's impact view by position.
    pub fn impact_view(&self, i: usize) -> ImpactView {
        let a = &self.alerts[i];
        let sigma = super::impact::INTENSITY_SIGMA;
        let villages = a
            .exposures
            .iter()
            .enumerate()
            .map(|(rank, e)| {
                let v = self.world.village(e.village);
                VillageExposure {
                    village_id: v.id.clone(),
                    name: v.name.clone(),
                    district: self.world.places.district(v.district).to_owned(),
                    location: v.at.lon_lat(),
                    population: v.population,
                    population_estimated: v.population_estimated,
                    distance_m: e.distance_m.map(round_m),
                    intensity: e.intensity.map(round2),
                    intensity_low: e.intensity.map(|i| round2(i - sigma)),
                    intensity_high: e.intensity.map(|i| round2(i + sigma)),
                    displaced: e.displaced,
                    priority: rank as u32 + 1,
                }
            })
            .collect();
        let up = self.allocation_update(i);
        ImpactView {
            alert_id: a.msg.alert_id.clone(),
            threshold_intensity: self.config.impact.threshold_intensity,
            villages,
            summary: up.summary,
            allocations: up.allocations,
            shortfall: up.shortfall,
        }
    }

    /// An alert's allocation with its exposure table.
    pub fn allocation_update(&self, i: usize) -> AllocationUpdate {
        let a = &self.alerts[i];
        AllocationUpdate {
            alert_id: a.msg.alert_id.clone(),
            summary: self.exposure_summary(a),
            allocations: a
                .allocation
                .flows
                .iter()
                .map(|f| AllocationView {
                    village_id: self.world.village(f.village).id.clone(),
                    site_id: self.world.site(f.site).id.clone(),
                    persons: f.persons,
                    distance_m: round_m(f.distance_m),
                })
                .collect(),
            shortfall: a
                .allocation
                .shortfall
                .iter()
                .map(|&(v, persons)| ShortfallView { village_id: self.world.village(v).id.clone(), persons })
                .collect(),
        }
    }

    /// PAGER-style exposure table: people per intensity band by district.
    pub fn exposure_summary(&self, a: &Alert) -> ExposureSummary {
        let threshold = self.config.impact.threshold_intensity;
        let earthquake = matches!(a.hazard, Some(Hazard::Earthquake { .. }));
        let bands: Vec<String> = if earthquake {
            let first = threshold.floor().clamp(1.0, 10.0) as i64;
            (first..=10).map(|b| band_label(b as f64)).collect()
        } else {
            vec!["in area".to_owned()]
        };
        let band_of = |e: &Exposure| -> usize {
            match e.intensity {
                Some(i) => {
                    let first = threshold.floor().clamp(1.0, 10.0);
                    ((i.floor().clamp(first, 10.0) - first) as usize).min(bands.len() - 1)
                }
                None => 0,
            }
        };
        let mut placed: HashMap<VillageIdx, u64> = HashMap::new();
        for f in &a.allocation.flows {
            *placed.entry(f.village).or_default() += u64::from(f.persons);
        }
        let short: HashMap<VillageIdx, u64> =
            a.allocation.shortfall.iter().map(|&(v, p)| (v, u64::from(p))).collect();
        let mut rows: HashMap<super::world::DistrictIdx, ExposureRow> = HashMap::new();
        let mut total = ExposureRow { people_by_band: vec![0; bands.len()], ..ExposureRow::default() };
        for e in &a.exposures {
            let v = self.world.village(e.village);
            let row = rows.entry(v.district).or_insert_with(|| ExposureRow {
                region: self.world.places.region(v.district).to_owned(),
                district: self.world.places.district(v.district).to_owned(),
                people_by_band: vec![0; bands.len()],
                ..ExposureRow::default()
            });
            let b = band_of(e);
            let pop = u64::from(v.population);
            let p = placed.get(&e.village).copied().unwrap_or(0);
            let s = short.get(&e.village).copied().unwrap_or(0);
            for r in [&mut *row, &mut total] {
                r.villages += 1;
                r.people_by_band[b] += pop;
                r.people += pop;
                r.displaced += u64::from(e.displaced);
                r.placed += p;
                r.shortfall += s;
            }
        }
        let mut districts: Vec<ExposureRow> = rows.into_values().collect();
        // Most exposed first: people in the highest band, then all people.
        districts.sort_by(|x, y| {
            x.people_by_band
                .iter()
                .rev()
                .cmp(y.people_by_band.iter().rev())
                .reverse()
                .then(y.people.cmp(&x.people))
                .then(x.region.cmp(&y.region))
                .then(x.district.cmp(&y.district))
        });
        ExposureSummary { bands, districts, total }
    }

    /// A site's view.
    pub fn site_view(&self, s: SiteIdx) -> SiteView {
        let site = self.world.site(s);
        SiteView {
            site_id: site.id.clone(),
            name: site.name.clone(),
            kind: site.kind,
            region: self.world.places.region(site.district).to_owned(),
            district: self.world.places.district(site.district).to_owned(),
            lat: site.at.lat(),
            lon: site.at.lon(),
            capacity: site.capacity,
            occupancy: site.occupancy,
            allocated: self.site_allocated[s.get()],
            status: site.status,
            services: site.services.clone(),
            updated_at: site.updated_at_ms.map(from_ms),
        }
    }

    /// A team's view.
    pub fn team_view(&self, t: TeamIdx) -> TeamView {
        let team = self.world.team(t);
        TeamView {
            team_id: team.id.clone(),
            name: team.name.clone(),
            skills: team.skills.clone(),
            status: team.status,
            lat: team.at.lat(),
            lon: team.at.lon(),
            accuracy_m: team.accuracy_m,
            position_at: team.position_at_ms.map(from_ms),
            battery_pct: team.battery_pct,
            last_seen: team.last_seen_ms.map(from_ms),
            task_id: self.team_task[t.get()].map(|k| self.tasks[k.0 as usize].id.clone()),
        }
    }

    /// A task's view.
    pub fn task_view(&self, k: TaskIdx) -> TaskView {
        let task = &self.tasks[k.0 as usize];
        let (village_id, site_id, dest) = match task.target {
            Target::Village(v) => {
                let v = self.world.village(v);
                (Some(v.id.clone()), None, v.at)
            }
            Target::Site(s) => {
                let s = self.world.site(s);
                (None, Some(s.id.clone()), s.at)
            }
        };
        TaskView {
            task_id: task.id.clone(),
            team_id: self.world.team(task.team).id.clone(),
            alert_id: task.alert.map(|a| self.alerts[a].msg.alert_id.clone()),
            village_id,
            site_id,
            destination: dest.lon_lat(),
            skill: task.skill,
            state: task.state,
            distance_m: round_m(task.distance_m),
            history: task
                .history
                .iter()
                .map(|(state, at, by)| TaskTransition { state: *state, at: from_ms(*at), by: by.clone() })
                .collect(),
            note: task.note.clone(),
        }
    }
}

fn round_m(m: f64) -> f64 {
    m.round()
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Default values for the CAP fields of alerts made by tools (what-if).
pub fn default_cap() -> (Urgency, Severity, Certainty) {
    (Urgency::Immediate, Severity::Severe, Certainty::Observed)
}

// ---- state snapshots ------------------------------------------------------

/// A team's state beyond the scenario.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct TeamState {
    status: TeamStatus,
    at: LatLon,
    accuracy_m: Option<f64>,
    position_at_ms: Option<i64>,
    battery_pct: Option<f64>,
    last_seen_ms: Option<i64>,
}

/// A site's state beyond the scenario.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct SiteState {
    capacity: u32,
    occupancy: u32,
    status: SiteStatus,
    services: Vec<eoc_protocol::types::Service>,
    updated_at_ms: Option<i64>,
}

/// Everything the engine holds beyond its scenario and configuration:
/// [`Engine::restore`] on an engine fresh from the same scenario and
/// configuration gives back an engine that answers and changes exactly as
/// this one would. The journal stores one with each checkpoint, so a
/// restart applies only the entries after it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EngineState {
    /// [`Engine::fingerprint`] of the engine it was taken from.
    fingerprint: u64,
    teams: Vec<TeamState>,
    sites: Vec<SiteState>,
    alerts: Vec<Alert>,
    tasks: Vec<Task>,
    team_task: Vec<Option<TaskIdx>>,
    village_task: Vec<((usize, VillageIdx), TaskIdx)>,
    site_allocated: Vec<u32>,
}

/// FNV-1a over `bytes`, continuing from `h`.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Engine {
    /// Identifies the scenario (every id, position and capacity as loaded)
    /// and the configuration: a state from another is refused.
    pub fn fingerprint(&self) -> u64 {
        let mut h = fnv(0xcbf2_9ce4_8422_2325, format!("{:?}", self.config).as_bytes());
        for v in self.world.villages() {
            h = fnv(h, format!("{}|{:?}|{}|{:?}", v.id, v.at, v.population, v.district).as_bytes());
        }
        for s in self.world.sites() {
            h = fnv(h, format!("{}|{:?}|{:?}", s.id, s.at, s.kind).as_bytes());
        }
        for t in self.world.teams() {
            h = fnv(h, format!("{}|{:?}|{:?}", t.id, t.skills, t.devices).as_bytes());
        }
        h
    }

    /// The state to snapshot.
    pub fn export_state(&self) -> EngineState {
        let mut village_task: Vec<_> = self.village_task.iter().map(|(&k, &v)| (k, v)).collect();
        village_task.sort_unstable();
        EngineState {
            fingerprint: self.fingerprint(),
            teams: self
                .world
                .teams()
                .iter()
                .map(|t| TeamState {
                    status: t.status,
                    at: t.at,
                    accuracy_m: t.accuracy_m,
                    position_at_ms: t.position_at_ms,
                    battery_pct: t.battery_pct,
                    last_seen_ms: t.last_seen_ms,
                })
                .collect(),
            sites: self
                .world
                .sites()
                .iter()
                .map(|s| SiteState {
                    capacity: s.capacity,
                    occupancy: s.occupancy,
                    status: s.status,
                    services: s.services.clone(),
                    updated_at_ms: s.updated_at_ms,
                })
                .collect(),
            alerts: self.alerts.clone(),
            tasks: self.tasks.clone(),
            team_task: self.team_task.clone(),
            village_task,
            site_allocated: self.site_allocated.clone(),
        }
    }

    /// Restores `state` into this engine, which must be fresh (no alert,
    /// no task) and built from the same scenario and configuration. On an
    /// error nothing has changed.
    pub fn restore(&mut self, state: EngineState) -> Result<(), String> {
        if !self.alerts.is_empty() || !self.tasks.is_empty() {
            return Err("the engine is not fresh".to_owned());
        }
        if state.fingerprint != self.fingerprint() {
            return Err("the state was taken from another scenario or configuration".to_owned());
        }
        let (teams, sites, villages) =
            (self.world.teams().len(), self.world.sites().len(), self.world.villages().len());
        let tasks = state.tasks.len();
        let bad = |what: &str| Err(format!("the state is inconsistent: {what}"));
        if state.teams.len() != teams || state.team_task.len() != teams {
            return bad("team count");
        }
        if state.sites.len() != sites || state.site_allocated.len() != sites {
            return bad("site count");
        }
        let team_ok = |t: TeamIdx| t.get() < teams;
        let village_ok = |v: VillageIdx| v.get() < villages;
        let task_ok = |k: TaskIdx| (k.0 as usize) < tasks;
        for task in &state.tasks {
            let target_ok = match task.target {
                Target::Village(v) => village_ok(v),
                Target::Site(s) => s.get() < sites,
            };
            if !team_ok(task.team) || !target_ok || task.alert.is_some_and(|a| a >= state.alerts.len()) {
                return bad("a task names an unknown object");
            }
        }
        if state.team_task.iter().flatten().any(|&k| !task_ok(k))
            || state
                .village_task
                .iter()
                .any(|&((a, v), k)| a >= state.alerts.len() || !village_ok(v) || !task_ok(k))
        {
            return bad("a live task is unknown");
        }
        for a in &state.alerts {
            let flows_ok = a.allocation.flows.iter().all(|f| village_ok(f.village) && f.site.get() < sites);
            let exposures_ok = a.exposures.iter().all(|e| village_ok(e.village));
            let refused_ok = a.refused.iter().all(|&(v, t)| village_ok(v) && team_ok(t));
            if !flows_ok || !exposures_ok || !refused_ok || a.candidates.iter().any(|s| s.get() >= sites) {
                return bad("an alert names an unknown object");
            }
        }
        let mut alerts = state.alerts;
        for a in &mut alerts {
            a.hazard = hazard_of(&a.msg).map_err(|p| format!("alert {}: {p}", a.msg.alert_id))?;
        }
        for (i, t) in state.teams.into_iter().enumerate() {
            let idx = TeamIdx(i as u32);
            let team = self.world.team_mut(idx);
            team.status = t.status;
            team.accuracy_m = t.accuracy_m;
            team.position_at_ms = t.position_at_ms;
            team.battery_pct = t.battery_pct;
            team.last_seen_ms = t.last_seen_ms;
            if team.at != t.at {
                self.world.move_team(idx, t.at);
            }
        }
        for (i, s) in state.sites.into_iter().enumerate() {
            let site = self.world.site_mut(SiteIdx(i as u32));
            site.capacity = s.capacity;
            site.occupancy = s.occupancy;
            site.status = s.status;
            site.services = s.services;
            site.updated_at_ms = s.updated_at_ms;
        }
        self.alert_ids = alerts.iter().enumerate().map(|(i, a)| (a.msg.alert_id.clone(), i)).collect();
        self.alerts = alerts;
        self.task_ids =
            state.tasks.iter().enumerate().map(|(k, t)| (t.id.clone(), TaskIdx(k as u32))).collect();
        self.tasks = state.tasks;
        self.team_task = state.team_task;
        self.village_task = state.village_task.into_iter().collect();
        self.site_allocated = state.site_allocated;
        Ok(())
    }
}
