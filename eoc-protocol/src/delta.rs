//! What the server sends: a [`Snapshot`] when a client connects (or falls
//! behind), then [`DeltaFrame`]s in state order, numbered by `seq`.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::geometry::{AreaGeometry, EarthquakeSource};
use crate::types::{
    AlertStatus, Certainty, Hazard, MsgType, Service, Severity, SiteKind, SiteStatus, Skill, TaskState,
    TeamStatus, Urgency,
};

/// One change, numbered. `seq` increases by one per frame; a gap means the
/// client missed frames and must take a fresh snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeltaFrame {
    /// Protocol version (1).
    pub v: u32,
    /// Position in the server's state order.
    pub seq: u64,
    /// Server clock when the change was applied, ms since the Unix epoch
    /// (clients measure delivery latency from it).
    pub server_ts_ms: i64,
    /// The change.
    #[serde(flatten)]
    pub delta: Delta,
}

/// A change to one object. The object is sent whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Delta {
    /// An alert was issued, updated or cancelled.
    Alert(AlertView),
    /// An alert's impact changed (new alert, update, cancellation): the
    /// affected villages, and the allocation with them.
    Impact(ImpactView),
    /// Only an alert's allocation changed (a site's capacity, another
    /// alert's demand): the allocation, shortfall and summary, without
    /// resending every affected village.
    Allocation(AllocationUpdate),
    /// A site changed (capacity, occupancy, status, people allocated to it).
    Site(SiteView),
    /// A team moved or changed status.
    Team(TeamView),
    /// A task was proposed or changed state.
    Task(TaskView),
    /// A significant event for the log (human-readable).
    Event(EventView),
}

/// The whole live state (villages are static and fetched separately).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Snapshot {
    /// Protocol version (1).
    pub v: u32,
    /// The `seq` of the last delta included; the next delta is `seq + 1`.
    pub seq: u64,
    /// Server clock, ms since the Unix epoch.
    pub server_ts_ms: i64,
    /// All alerts, cancelled ones included.
    pub alerts: Vec<AlertView>,
    /// Impact of every alert that has one.
    pub impacts: Vec<ImpactView>,
    /// All sites.
    pub sites: Vec<SiteView>,
    /// All teams.
    pub teams: Vec<TeamView>,
    /// All tasks.
    pub tasks: Vec<TaskView>,
}

/// An alert as the server holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertView {
    /// The alert's id.
    pub alert_id: String,
    /// How many messages have shaped it (1 for a new alert).
    pub revision: u32,
    /// The last message type applied (`cancel` once cancelled).
    pub msg_type: MsgType,
    /// Draft, actual, exercise or test.
    pub status: AlertStatus,
    /// The hazard.
    pub hazard: Hazard,
    /// CAP urgency.
    pub urgency: Urgency,
    /// CAP severity.
    pub severity: Severity,
    /// CAP certainty.
    pub certainty: Certainty,
    /// One line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headline: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Who issued it (the identity that sent the message).
    pub issued_by: String,
    /// When it was first issued.
    pub issued_at: DateTime<Utc>,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
    /// When it stops being active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Earthquake source, for earthquakes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earthquake: Option<EarthquakeSource>,
    /// Area, for area hazards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<AreaGeometry>,
    /// Margin around the area, metres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer_m: Option<f64>,
    /// Whether the alert is in force (not cancelled, not expired).
    pub active: bool,
}

/// An alert's impact: affected villages, allocation, shortfall, dispatch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ImpactView {
    /// The alert.
    pub alert_id: String,
    /// Intensity at or above which a village counts as affected (earthquakes).
    pub threshold_intensity: f64,
    /// Affected villages, most exposed first.
    pub villages: Vec<VillageExposure>,
    /// Exposure by region and district (PAGER-style).
    pub summary: ExposureSummary,
    /// People sent to sites.
    pub allocations: Vec<AllocationView>,
    /// People with no place, per village.
    pub shortfall: Vec<ShortfallView>,
}

/// The allocation part of an [`ImpactView`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AllocationUpdate {
    /// The alert.
    pub alert_id: String,
    /// Exposure by region and district, with placed and shortfall.
    pub summary: ExposureSummary,
    /// People sent to sites.
    pub allocations: Vec<AllocationView>,
    /// People with no place, per village.
    pub shortfall: Vec<ShortfallView>,
}

/// One affected village.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VillageExposure {
    /// The village.
    pub village_id: String,
    /// Its name.
    pub name: String,
    /// Its district.
    pub district: String,
    /// `[lon, lat]`.
    pub location: [f64; 2],
    /// Population (maybe estimated).
    pub population: u32,
    /// Whether the population is an estimate.
    pub population_estimated: bool,
    /// Great-circle distance to the epicentre (earthquakes), metres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance_m: Option<f64>,
    /// MSK-64 intensity (earthquakes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intensity: Option<f64>,
    /// Intensity − 1σ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intensity_low: Option<f64>,
    /// Intensity + 1σ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intensity_high: Option<f64>,
    /// Estimated people displaced.
    pub displaced: u32,
    /// 1 = most urgent.
    pub priority: u32,
}

/// PAGER-style exposure table.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ExposureSummary {
    /// Intensity band labels, in column order (e.g. "VI", "VII", …).
    pub bands: Vec<String>,
    /// One row per district, regions and districts sorted by exposure.
    pub districts: Vec<ExposureRow>,
    /// Totals over all districts.
    pub total: ExposureRow,
}

/// One row of the exposure table.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ExposureRow {
    /// Region (empty for the total row).
    pub region: String,
    /// District (empty for the total row).
    pub district: String,
    /// Affected villages.
    pub villages: u32,
    /// People per band, in the order of [`ExposureSummary::bands`].
    pub people_by_band: Vec<u64>,
    /// People affected.
    pub people: u64,
    /// People displaced.
    pub displaced: u64,
    /// People placed at sites.
    pub placed: u64,
    /// People with no place.
    pub shortfall: u64,
}

/// People of a village sent to a site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AllocationView {
    /// From.
    pub village_id: String,
    /// To.
    pub site_id: String,
    /// How many.
    pub persons: u32,
    /// Great-circle distance, metres.
    pub distance_m: f64,
}

/// People of a village with no place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ShortfallView {
    /// The village.
    pub village_id: String,
    /// How many people have no place.
    pub persons: u32,
}

/// A displacement site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SiteView {
    /// The site's id.
    pub site_id: String,
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: SiteKind,
    /// Region.
    pub region: String,
    /// District.
    pub district: String,
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// Persons it can hold.
    pub capacity: u32,
    /// Persons there now.
    pub occupancy: u32,
    /// Persons that active allocations send there.
    pub allocated: u32,
    /// Open, closed or full.
    pub status: SiteStatus,
    /// Services.
    pub services: Vec<Service>,
    /// Last report from the site, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
}

/// A responder team.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TeamView {
    /// The team's id.
    pub team_id: String,
    /// Name.
    pub name: String,
    /// Skills.
    pub skills: Vec<Skill>,
    /// Status.
    pub status: TeamStatus,
    /// Latitude of the last position.
    pub lat: f64,
    /// Longitude of the last position.
    pub lon: f64,
    /// Accuracy of the last position, metres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_m: Option<f64>,
    /// When the last position was taken.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::rfc3339::serialize_option"
    )]
    pub position_at: Option<DateTime<Utc>>,
    /// Phone battery, percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub battery_pct: Option<f64>,
    /// When the team was last heard from.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::rfc3339::serialize_option"
    )]
    pub last_seen: Option<DateTime<Utc>>,
    /// The team's active task, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
}

/// A task: a team sent to a village or a site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskView {
    /// The task's id.
    pub task_id: String,
    /// The team.
    pub team_id: String,
    /// The alert it serves, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_id: Option<String>,
    /// Destination village.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub village_id: Option<String>,
    /// Destination site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_id: Option<String>,
    /// `[lon, lat]` of the destination.
    pub destination: [f64; 2],
    /// The skill needed, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skill: Option<Skill>,
    /// Current state.
    pub state: TaskState,
    /// Great-circle distance from the team when it was chosen, metres.
    pub distance_m: f64,
    /// Every transition, oldest first.
    pub history: Vec<TaskTransition>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One transition of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskTransition {
    /// The state entered.
    pub state: TaskState,
    /// When.
    pub at: DateTime<Utc>,
    /// Who (an identity, or `eoc` for the server itself).
    pub by: String,
}

/// A line of the event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventView {
    /// When.
    pub at: DateTime<Utc>,
    /// Machine-readable kind, e.g. `alert_issued`, `site_full`, `task_timed_out`.
    pub kind: String,
    /// Human-readable text.
    pub text: String,
}
