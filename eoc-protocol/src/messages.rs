//! Inbound messages: one struct per MQTT topic / HTTP endpoint.
//!
//! Every message carries an [`Envelope`] (flattened into the top-level
//! object): `v` (protocol version), `id` (unique, used to deduplicate
//! retries) and `ts` (when the sender made the message). Fields whose value
//! is implied by the topic or URL (`team_id` on `eoc/v1/teams/{team_id}/…`)
//! may be omitted from the body; when present they must agree with it.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::geometry::{AreaGeometry, EarthquakeSource};
use crate::types::{
    AlertStatus, Certainty, Hazard, MsgType, Service, Severity, SiteStatus, Skill, TaskState, TeamStatus,
    Urgency,
};

/// Version, unique id and timestamp that every message carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Envelope {
    /// Protocol version; must be 1.
    #[schemars(range(min = 1, max = 1))]
    pub v: u32,
    /// Unique message id chosen by the sender (1–64 characters of
    /// `A-Z a-z 0-9 . _ : -`); a retry reuses it and is acknowledged again
    /// without a second effect.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9._:-]+$"))]
    pub id: String,
    /// When the sender made the message (RFC 3339 with offset). At most
    /// five minutes in the future of the server's clock.
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub ts: DateTime<Utc>,
}

/// A hazard alert from a CoES chair: topic `eoc/v1/alerts`, `POST /api/v1/alerts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertMsg {
    /// Version, id, timestamp.
    #[serde(flatten)]
    pub envelope: Envelope,
    /// The alert this message creates, updates or cancels.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9._:-]+$"))]
    pub alert_id: String,
    /// New alert, update or cancellation. Default `alert`.
    #[serde(default = "default_msg_type")]
    pub msg_type: MsgType,
    /// Real, exercise, test or draft. Default `actual`.
    #[serde(default = "default_alert_status")]
    pub status: AlertStatus,
    /// Required unless `msg_type` is `cancel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hazard: Option<Hazard>,
    /// CAP urgency; default `unknown`.
    #[serde(default = "default_urgency")]
    pub urgency: Urgency,
    /// CAP severity; default `unknown`.
    #[serde(default = "default_severity")]
    pub severity: Severity,
    /// CAP certainty; default `unknown`.
    #[serde(default = "default_certainty")]
    pub certainty: Certainty,
    /// One line for boards and phones (at most 256 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub headline: Option<String>,
    /// Free text (at most 4,096 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub description: Option<String>,
    /// When the alert stops being active; after `ts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// The earthquake source; required for `hazard: earthquake`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earthquake: Option<EarthquakeSource>,
    /// The affected area; required for mudslide, flood and avalanche.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<AreaGeometry>,
    /// Extra margin around `area`, metres (0..50,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 50_000.0))]
    pub buffer_m: Option<f64>,
    /// The CAP document this message was read from, verbatim (at most
    /// 1 MiB), kept so that the original is journalled with the alert and
    /// can be shown; absent for alerts that did not come as CAP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1_048_576))]
    pub cap_xml: Option<String>,
}

fn default_msg_type() -> MsgType {
    MsgType::Alert
}
fn default_alert_status() -> AlertStatus {
    AlertStatus::Actual
}
fn default_urgency() -> Urgency {
    Urgency::Unknown
}
fn default_severity() -> Severity {
    Severity::Unknown
}
fn default_certainty() -> Certainty {
    Certainty::Unknown
}

/// A team's position: topic `eoc/v1/teams/{team_id}/position`,
/// `POST /api/v1/teams/{team_id}/position`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TeamPositionMsg {
    /// Version, id, timestamp.
    #[serde(flatten)]
    pub envelope: Envelope,
    /// The team; implied by the topic or URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9._:-]+$"))]
    pub team_id: Option<String>,
    /// Latitude, degrees north, −90..90.
    #[schemars(range(min = -90.0, max = 90.0))]
    pub lat: f64,
    /// Longitude, degrees east, −180..180.
    #[schemars(range(min = -180.0, max = 180.0))]
    pub lon: f64,
    /// Horizontal accuracy, metres, 0..100,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 100_000.0))]
    pub accuracy_m: Option<f64>,
    /// When the fix was taken; default `ts`. Same rules as `ts`. A fix older than the one held
    /// does not move the team back.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::rfc3339::serialize_option"
    )]
    pub at: Option<DateTime<Utc>>,
    /// Phone battery, percent 0..100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub battery_pct: Option<f64>,
    /// Ground speed, metres per second, 0..1,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1_000.0))]
    pub speed_mps: Option<f64>,
    /// Course over ground, degrees 0..360.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 360.0))]
    pub heading_deg: Option<f64>,
    /// Altitude above sea level, metres, −500..9,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -500.0, max = 9_000.0))]
    pub altitude_m: Option<f64>,
}

/// The flat twins of the messages sent at rate, for
/// [`crate::validate::Validate::parse_quick`]: the same fields with the
/// envelope's written out, and the same rules of deserialisation (absent
/// options `None`); timestamps in the usual form are read without chrono's
/// general parser ([`crate::rfc3339`]). Serde reads a flattened struct
/// through a buffer of every field of the message. A field a twin does not
/// know makes it refuse, and the careful parse reads the message: that
/// buffer checks the values of unknown fields too (their UTF-8, their
/// numbers' range), which skipping them would not.
pub(crate) mod flat {
    use chrono::{DateTime, Utc};
    use serde::Deserialize;

    use super::{Envelope, SiteCapacityMsg, TeamPositionMsg, TeamStatusMsg};
    use crate::types::{Service, SiteStatus, TeamStatus};

    /// A flat twin `$twin` of `$msg`: the envelope's fields, then the
    /// message's own (each listed once, with its serde attributes), and the
    /// conversion back.
    macro_rules! twin {
        ($(#[$doc:meta])* $twin:ident => $msg:ident { $($(#[$attr:meta])* $field:ident: $ty:ty,)* }) => {
            $(#[$doc])*
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            pub(crate) struct $twin {
                v: u32,
                id: String,
                #[serde(deserialize_with = "crate::rfc3339::deserialize")]
                ts: DateTime<Utc>,
                $($(#[$attr])* $field: $ty,)*
            }

            impl From<$twin> for $msg {
                fn from(m: $twin) -> Self {
                    $msg { envelope: Envelope { v: m.v, id: m.id, ts: m.ts }, $($field: m.$field,)* }
                }
            }
        };
    }

    twin! {
        /// [`TeamPositionMsg`], flat.
        Position => TeamPositionMsg {
            #[serde(default)]
            team_id: Option<String>,
            lat: f64,
            lon: f64,
            #[serde(default)]
            accuracy_m: Option<f64>,
            #[serde(default, deserialize_with = "crate::rfc3339::deserialize_option")]
            at: Option<DateTime<Utc>>,
            #[serde(default)]
            battery_pct: Option<f64>,
            #[serde(default)]
            speed_mps: Option<f64>,
            #[serde(default)]
            heading_deg: Option<f64>,
            #[serde(default)]
            altitude_m: Option<f64>,
        }
    }

    twin! {
        /// [`TeamStatusMsg`], flat.
        Status => TeamStatusMsg {
            #[serde(default)]
            team_id: Option<String>,
            status: TeamStatus,
            #[serde(default)]
            battery_pct: Option<f64>,
            #[serde(default)]
            note: Option<String>,
        }
    }

    twin! {
        /// [`SiteCapacityMsg`], flat.
        Capacity => SiteCapacityMsg {
            #[serde(default)]
            site_id: Option<String>,
            #[serde(default)]
            capacity: Option<i64>,
            #[serde(default)]
            occupancy: Option<i64>,
            #[serde(default)]
            status: Option<SiteStatus>,
            #[serde(default)]
            services: Option<Vec<Service>>,
            #[serde(default)]
            note: Option<String>,
        }
    }
}

/// A team's status: topic `eoc/v1/teams/{team_id}/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TeamStatusMsg {
    /// Version, id, timestamp.
    #[serde(flatten)]
    pub envelope: Envelope,
    /// The team; implied by the topic or URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9._:-]+$"))]
    pub team_id: Option<String>,
    /// The new status.
    pub status: TeamStatus,
    /// Phone battery, percent 0..100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub battery_pct: Option<f64>,
    /// Free text (at most 1,024 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub note: Option<String>,
}

/// A site's capacity, occupancy, status or services, from its manager:
/// topic `eoc/v1/sites/{site_id}/capacity`. Absent fields keep their value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SiteCapacityMsg {
    /// Version, id, timestamp.
    #[serde(flatten)]
    pub envelope: Envelope,
    /// The site; implied by the topic or URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9._:-]+$"))]
    pub site_id: Option<String>,
    /// Persons the site can hold (0..1,000,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1_000_000))]
    pub capacity: Option<i64>,
    /// Persons there now (0..1,000,000); above capacity is accepted and
    /// flagged as overcrowding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1_000_000))]
    pub occupancy: Option<i64>,
    /// Open, closed or full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<SiteStatus>,
    /// Services offered now (replaces the list); at most 8, no repeats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8), extend("uniqueItems" = true))]
    pub services: Option<Vec<Service>>,
    /// Free text (at most 1,024 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub note: Option<String>,
}

/// A team moves its task on: topic `eoc/v1/tasks/{task_id}/ack`,
/// `POST /api/v1/tasks/{task_id}/ack`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskUpdateMsg {
    /// Version, id, timestamp.
    #[serde(flatten)]
    pub envelope: Envelope,
    /// The task; implied by the topic or URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9._:-]+$"))]
    pub task_id: Option<String>,
    /// The state the team moves the task to; default `acknowledged`.
    /// One of acknowledged, en_route, on_site, completed, declined.
    #[serde(default = "default_task_state")]
    pub state: TaskState,
    /// Free text (at most 1,024 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub note: Option<String>,
}

fn default_task_state() -> TaskState {
    TaskState::Acknowledged
}

/// An operator sends a team somewhere (`POST /api/v1/tasks`), or cancels a
/// task. Exactly one of `village_id` and `site_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskAssignMsg {
    /// Version, id, timestamp.
    #[serde(flatten)]
    pub envelope: Envelope,
    /// The team to send.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9._:-]+$"))]
    pub team_id: String,
    /// Where to: a village…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9._:-]+$"))]
    pub village_id: Option<String>,
    /// …or a site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9._:-]+$"))]
    pub site_id: Option<String>,
    /// The alert this task serves, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9._:-]+$"))]
    pub alert_id: Option<String>,
    /// The skill needed, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skill: Option<Skill>,
    /// Free text (at most 1,024 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub note: Option<String>,
}

/// Any inbound message, tagged by `type`; this is what WebSocket clients send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Inbound {
    /// A hazard alert.
    Alert(AlertMsg),
    /// A team position.
    TeamPosition(TeamPositionMsg),
    /// A team status.
    TeamStatus(TeamStatusMsg),
    /// A site capacity update.
    SiteCapacity(SiteCapacityMsg),
    /// A task transition by its team.
    TaskUpdate(TaskUpdateMsg),
    /// A task assignment by an operator.
    TaskAssign(TaskAssignMsg),
}

impl Inbound {
    /// The message's envelope.
    pub fn envelope(&self) -> &Envelope {
        match self {
            Inbound::Alert(m) => &m.envelope,
            Inbound::TeamPosition(m) => &m.envelope,
            Inbound::TeamStatus(m) => &m.envelope,
            Inbound::SiteCapacity(m) => &m.envelope,
            Inbound::TaskUpdate(m) => &m.envelope,
            Inbound::TaskAssign(m) => &m.envelope,
        }
    }
}
