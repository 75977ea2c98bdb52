//! Closed vocabularies of the protocol. Serialised in `snake_case`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

macro_rules! vocabulary {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire spelling of this value.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownValue {
                        kind: stringify!($name),
                        value: s.chars().take(64).collect(),
                        expected: &[$($text),+],
                    }),
                }
            }
        }
    };
}

/// A string that is not one of a vocabulary's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}, expected one of {expected:?}")]
pub struct UnknownValue {
    /// The vocabulary's name.
    pub kind: &'static str,
    /// The offending value (truncated to 64 characters).
    pub value: String,
    /// The accepted values.
    pub expected: &'static [&'static str],
}

vocabulary! {
    /// The hazards eoc models.
    Hazard {
        /// Ground shaking from an earthquake source; impact by intensity.
        Earthquake => "earthquake",
        /// Mudslide (sel) or landslide; impact by area.
        Mudslide => "mudslide",
        /// Riverine or flash flood; impact by area.
        Flood => "flood",
        /// Snow avalanche; impact by area.
        Avalanche => "avalanche",
        /// Any other hazard (for example from CAP): shown, never matched.
        Other => "other",
    }
}

vocabulary! {
    /// Whether an alert is real (CAP `status`).
    AlertStatus {
        /// Composed, not yet approved; never triggers dispatch.
        Draft => "draft",
        /// A real alert.
        Actual => "actual",
        /// An exercise: computed and shown, never dispatches real teams.
        Exercise => "exercise",
        /// A technical test: computed and shown, never dispatches.
        Test => "test",
    }
}

vocabulary! {
    /// The kind of alert message (CAP `msgType`).
    MsgType {
        /// A new alert.
        Alert => "alert",
        /// Replaces an earlier alert with the same `alert_id`.
        Update => "update",
        /// Cancels an earlier alert with the same `alert_id`.
        Cancel => "cancel",
    }
}

vocabulary! {
    /// CAP urgency.
    Urgency {
        /// CAP `immediate`.
        Immediate => "immediate",
        /// CAP `expected`.
        Expected => "expected",
        /// CAP `future`.
        Future => "future",
        /// CAP `past`.
        Past => "past",
        /// CAP `unknown`.
        Unknown => "unknown",
    }
}

vocabulary! {
    /// CAP severity.
    Severity {
        /// CAP `extreme`.
        Extreme => "extreme",
        /// CAP `severe`.
        Severe => "severe",
        /// CAP `moderate`.
        Moderate => "moderate",
        /// CAP `minor`.
        Minor => "minor",
        /// CAP `unknown`.
        Unknown => "unknown",
    }
}

vocabulary! {
    /// CAP certainty.
    Certainty {
        /// CAP `observed`.
        Observed => "observed",
        /// CAP `likely`.
        Likely => "likely",
        /// CAP `possible`.
        Possible => "possible",
        /// CAP `unlikely`.
        Unlikely => "unlikely",
        /// CAP `unknown`.
        Unknown => "unknown",
    }
}

vocabulary! {
    /// What a responder team can do.
    Skill {
        /// Urban or mountain search and rescue.
        SearchRescue => "search_rescue",
        /// First aid, triage, medical evacuation.
        Medical => "medical",
        /// Water, sanitation and hygiene.
        Wash => "wash",
        /// Emergency shelter, tents, site set-up.
        Shelter => "shelter",
        /// Rapid needs and damage assessment.
        Assessment => "assessment",
        /// Transport and supplies.
        Logistics => "logistics",
    }
}

vocabulary! {
    /// A team's availability.
    TeamStatus {
        /// Free to take a task.
        Available => "available",
        /// Travelling to a task.
        EnRoute => "en_route",
        /// Working at a task's place.
        OnSite => "on_site",
        /// Not taking tasks (rest, repair, other duty).
        Unavailable => "unavailable",
        /// Not heard from: the phone went dark (OwnTracks lwt, or silence).
        Offline => "offline",
    }
}

vocabulary! {
    /// Whether a displacement site takes people.
    SiteStatus {
        /// Taking people while it has room.
        Open => "open",
        /// Not taking people.
        Closed => "closed",
        /// Declared full by its manager, whatever the numbers say.
        Full => "full",
    }
}

vocabulary! {
    /// What a displacement site is.
    SiteKind {
        /// A school used as a collective centre.
        School => "school",
        /// A kindergarten used as a collective centre.
        Kindergarten => "kindergarten",
        /// A college or university building.
        College => "college",
        /// A hospital or clinic (sheltering and care).
        Health => "health",
        /// A planned camp or tent site.
        Camp => "camp",
        /// A border entry-point accommodation.
        BorderPoint => "border_point",
        /// Any other collective centre.
        Other => "other",
    }
}

vocabulary! {
    /// Services a site offers.
    Service {
        /// Drinking water.
        Water => "water",
        /// Latrines and washing.
        Sanitation => "sanitation",
        /// Health post or first aid.
        Health => "health",
        /// Heated rooms (winter).
        Heating => "heating",
    }
}

vocabulary! {
    /// The life of a task. Terminal states: completed, declined, timed_out, cancelled.
    TaskState {
        /// Suggested by matching; not yet sent to the team.
        Proposed => "proposed",
        /// Sent to the team; waiting for its acknowledgement.
        Assigned => "assigned",
        /// The team accepted; never silently moved to another team.
        Acknowledged => "acknowledged",
        /// The team is travelling.
        EnRoute => "en_route",
        /// The team reached the place.
        OnSite => "on_site",
        /// Done.
        Completed => "completed",
        /// The team refused; the place is dispatched again.
        Declined => "declined",
        /// Not acknowledged in time; the place is dispatched again.
        TimedOut => "timed_out",
        /// Withdrawn by an operator or by the alert's cancellation.
        Cancelled => "cancelled",
    }
}

impl TaskState {
    /// Whether no further transition is possible.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Completed | TaskState::Declined | TaskState::TimedOut | TaskState::Cancelled
        )
    }

    /// Whether the task occupies its team (a team holds one active task).
    pub fn is_active(self) -> bool {
        !self.is_terminal() && self != TaskState::Proposed
    }

    /// Whether `self → next` is a legal transition.
    pub fn can_become(self, next: TaskState) -> bool {
        use TaskState::*;
        matches!(
            (self, next),
            (Proposed, Assigned | Cancelled)
                | (Assigned, Acknowledged | EnRoute | OnSite | Declined | TimedOut | Cancelled)
                | (Acknowledged, EnRoute | OnSite | Completed | Cancelled)
                | (EnRoute, OnSite | Completed | Cancelled)
                | (OnSite, Completed | Cancelled)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_round_trips_and_names_the_choices() {
        for h in Hazard::ALL {
            assert_eq!(h.as_str().parse::<Hazard>(), Ok(*h));
        }
        let err = "tsunami".parse::<Hazard>().unwrap_err();
        assert!(err.to_string().contains("earthquake"), "{err}");
    }

    #[test]
    fn acknowledged_tasks_cannot_go_back_to_proposed_or_time_out() {
        assert!(!TaskState::Acknowledged.can_become(TaskState::Proposed));
        assert!(!TaskState::Acknowledged.can_become(TaskState::TimedOut));
        assert!(TaskState::Assigned.can_become(TaskState::TimedOut));
        assert!(TaskState::Completed.is_terminal());
    }
}
