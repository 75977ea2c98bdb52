//! Outbound MQTT: which publications a published delta frame makes.
//!
//! | topic | QoS | retained | payload |
//! | --- | --- | --- | --- |
//! | `{prefix}/teams/{team_id}/tasks` | 1 | no | the `TaskView`, once assigned and on every later transition (cancelled included) |
//! | `{prefix}/alerts/{alert_id}/impact` | 1 | yes | an [`impact_summary`]: totals and per-district rows, not every village |
//! | `{prefix}/events` | 0 | no | every delta frame, as sent over WebSocket |
//!
//! `events` is QoS 0: it carries every frame (the highest-volume topic) for
//! other systems; frames are numbered by `seq`, so a consumer that sees a
//! gap re-reads the state over HTTP, and the broker never queues the stream
//! for an absent consumer (`queue_qos0_messages false`). It is published by
//! a task of its own, which skips what it falls behind on (counted in
//! `eoc_mqtt_events_skipped_total`), so a burst of positions never delays a
//! task. Tasks are QoS 1 so a phone's persistent session receives its task
//! after being out of coverage; impacts are retained so a late subscriber
//! sees the latest.

use eoc_protocol::PROTOCOL_VERSION;
use eoc_protocol::delta::{Delta, ExposureSummary, TaskView};
use eoc_protocol::types::TaskState;
use rumqttc::QoS;

use crate::bus::Published;

/// One publication to make.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// Topic.
    pub topic: String,
    /// QoS.
    pub qos: QoS,
    /// Whether the broker keeps it for late subscribers.
    pub retain: bool,
    /// JSON text.
    pub payload: String,
}

/// The retained summary of an alert's impact: alert id, totals and
/// per-district rows (bounded by the number of districts, unlike the
/// village list).
pub fn impact_summary(alert_id: &str, seq: u64, server_ts_ms: i64, summary: &ExposureSummary) -> String {
    serde_json::json!({
        "v": PROTOCOL_VERSION,
        "alert_id": alert_id,
        "seq": seq,
        "server_ts_ms": server_ts_ms,
        "bands": summary.bands,
        "total": summary.total,
        "districts": summary.districts,
    })
    .to_string()
}

/// The publication that tells a team about its task, or `None` while the
/// task is only proposed (not yet sent to the team).
pub fn task_publication(prefix: &str, task: &TaskView) -> Option<Outgoing> {
    if task.state == TaskState::Proposed {
        return None;
    }
    Some(Outgoing {
        topic: format!("{prefix}/teams/{}/tasks", task.team_id),
        qos: QoS::AtLeastOnce,
        retain: false,
        payload: serde_json::to_string(task).ok()?,
    })
}

/// The publications one frame makes on the task and impact topics (none
/// for most frames).
pub fn publications(prefix: &str, published: &Published) -> Vec<Outgoing> {
    let frame = &published.frame;
    match &frame.delta {
        Delta::Task(task) => task_publication(prefix, task).into_iter().collect(),
        Delta::Impact(impact) => vec![Outgoing {
            topic: format!("{prefix}/alerts/{}/impact", impact.alert_id),
            qos: QoS::AtLeastOnce,
            retain: true,
            payload: impact_summary(&impact.alert_id, frame.seq, frame.server_ts_ms, &impact.summary),
        }],
        Delta::Allocation(update) => vec![Outgoing {
            topic: format!("{prefix}/alerts/{}/impact", update.alert_id),
            qos: QoS::AtLeastOnce,
            retain: true,
            payload: impact_summary(&update.alert_id, frame.seq, frame.server_ts_ms, &update.summary),
        }],
        Delta::Alert(_) | Delta::Site(_) | Delta::Team(_) | Delta::Event(_) => Vec::new(),
    }
}

/// The frame on `{prefix}/events`, as sent over WebSocket.
pub fn event(events_topic: &str, published: &Published) -> Outgoing {
    Outgoing {
        topic: events_topic.to_owned(),
        qos: QoS::AtMostOnce,
        retain: false,
        payload: published.json.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use eoc_protocol::delta::{DeltaFrame, EventView, ExposureRow, ImpactView, TaskTransition};

    use super::*;

    fn frame(seq: u64, delta: Delta) -> Published {
        let frame = DeltaFrame { v: 1, seq, server_ts_ms: 1_000, delta };
        let json = serde_json::to_string(&frame).unwrap().into();
        Published { frame, json }
    }

    fn task(state: TaskState) -> TaskView {
        TaskView {
            task_id: "task-1".into(),
            team_id: "react-1".into(),
            alert_id: Some("eq-1".into()),
            village_id: Some("v-1".into()),
            site_id: None,
            destination: [68.7, 38.5],
            skill: None,
            state,
            distance_m: 1200.0,
            history: vec![TaskTransition {
                state,
                at: "2026-03-01T10:00:00Z".parse().unwrap(),
                by: "eoc".into(),
            }],
            note: None,
        }
    }

    #[test]
    fn assigned_and_later_tasks_go_to_their_team_but_proposals_do_not() {
        let out = publications("eoc/v1", &frame(5, Delta::Task(task(TaskState::Proposed))));
        assert!(out.is_empty(), "{out:?}");
        for state in [TaskState::Assigned, TaskState::Acknowledged, TaskState::Cancelled] {
            let out = publications("eoc/v1", &frame(6, Delta::Task(task(state))));
            assert_eq!(out.len(), 1);
            assert_eq!(
                (out[0].topic.as_str(), out[0].qos, out[0].retain),
                ("eoc/v1/teams/react-1/tasks", QoS::AtLeastOnce, false)
            );
            let v: serde_json::Value = serde_json::from_str(&out[0].payload).unwrap();
            assert_eq!((v["task_id"].as_str(), v["state"].as_str()), (Some("task-1"), Some(state.as_str())));
        }
    }

    #[test]
    fn impact_is_a_retained_summary_without_villages() {
        let row = |d: &str, people: u64| ExposureRow {
            region: "R".into(),
            district: d.into(),
            villages: 2,
            people,
            displaced: people / 10,
            ..ExposureRow::default()
        };
        let impact = ImpactView {
            alert_id: "eq-1".into(),
            threshold_intensity: 6.0,
            villages: Vec::new(),
            summary: ExposureSummary {
                bands: vec!["VI".into()],
                districts: vec![row("A", 900), row("B", 100)],
                total: row("", 1000),
            },
            allocations: Vec::new(),
            shortfall: Vec::new(),
        };
        let out = publications("eoc/v1", &frame(9, Delta::Impact(impact)));
        assert_eq!(
            (out[0].topic.as_str(), out[0].qos, out[0].retain),
            ("eoc/v1/alerts/eq-1/impact", QoS::AtLeastOnce, true)
        );
        let v: serde_json::Value = serde_json::from_str(&out[0].payload).unwrap();
        assert_eq!((v["alert_id"].as_str(), v["seq"].as_u64()), (Some("eq-1"), Some(9)));
        assert_eq!(v["total"]["people"], 1000);
        assert_eq!(v["districts"].as_array().unwrap().len(), 2);
        assert!(v.get("villages").is_none());
    }

    #[test]
    fn every_frame_goes_to_events_at_qos_0_as_sent() {
        let f = frame(
            3,
            Delta::Event(EventView {
                at: "2026-03-01T10:00:00Z".parse().unwrap(),
                kind: "k".into(),
                text: "t".into(),
            }),
        );
        assert!(publications("p", &f).is_empty());
        let out = event("p/events", &f);
        assert_eq!((out.topic.as_str(), out.qos, out.retain), ("p/events", QoS::AtMostOnce, false));
        assert_eq!(out.payload, &*f.json);
    }
}
