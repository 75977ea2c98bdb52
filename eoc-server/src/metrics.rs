//! Process metrics, rendered as Prometheus text at `/metrics`.
//!
//! Hand-written on atomics rather than a metrics registry: the set is small
//! and fixed (edges and outcomes are closed enums), updating one is a single
//! relaxed atomic add on the writer's hot path, and it costs no dependency.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::bus::Edge;

/// Every edge, in label order.
const EDGES: [Edge; 6] =
    [Edge::Mqtt, Edge::Http, Edge::WebSocket, Edge::OwnTracks, Edge::OsmAnd, Edge::Internal];

/// What happened to a submitted message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Journalled and applied.
    Applied,
    /// A retry of an applied message: acknowledged, no effect.
    Duplicate,
    /// Refused by the engine (unknown id, illegal transition…).
    Rejected,
    /// Not processed: shutting down or the journal failed.
    Unavailable,
}

impl Outcome {
    const ALL: [Outcome; 4] = [Outcome::Applied, Outcome::Duplicate, Outcome::Rejected, Outcome::Unavailable];

    fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::Rejected => "rejected",
            Outcome::Unavailable => "unavailable",
        }
    }
}

fn edge_index(edge: Edge) -> usize {
    EDGES.iter().position(|&e| e == edge).unwrap_or(0)
}

/// Upper bounds of histogram buckets, seconds: 10 µs to 1 s, which spans an
/// in-memory apply and a slow fsync on a loaded disk.
const BUCKETS_S: [f64; 12] = [1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.25, 1.0];

/// A fixed-bucket latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS_S.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = BUCKETS_S.iter().position(|&b| s <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, n) in BUCKETS_S.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum_s = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum_s}\n{name}_count {count}");
    }
}

/// Every metric of the process. Shared as `Arc<Metrics>`.
#[derive(Debug, Default)]
pub struct Metrics {
    messages: [[AtomicU64; 4]; 6],
    /// Time to append and commit one batch to the journal (the fsync).
    pub journal_commit: Histogram,
    /// Time to apply one command to the engine (matching included).
    pub apply: Histogram,
    /// Submissions per writer batch.
    batch_entries: AtomicU64,
    batches: AtomicU64,
    ws_clients: AtomicU64,
    ws_resnapshots: AtomicU64,
    mqtt_events_skipped: AtomicU64,
}

impl Metrics {
    /// Counts one message of `edge` with `outcome`.
    pub fn message(&self, edge: Edge, outcome: Outcome) {
        let o = Outcome::ALL.iter().position(|&x| x == outcome).unwrap_or(0);
        self.messages[edge_index(edge)][o].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one writer batch of `entries` submissions.
    pub fn batch(&self, entries: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batch_entries.fetch_add(entries as u64, Ordering::Relaxed);
    }

    /// A WebSocket client connected (`+1`) or left (`-1`).
    pub fn ws_client(&self, connected: bool) {
        if connected {
            self.ws_clients.fetch_add(1, Ordering::Relaxed);
        } else {
            self.ws_clients.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// A lagging WebSocket client was sent a fresh snapshot.
    pub fn ws_resnapshot(&self) {
        self.ws_resnapshots.fetch_add(1, Ordering::Relaxed);
    }

    /// Frames the MQTT events feed skipped because it fell behind.
    pub fn mqtt_events_skipped(&self, frames: u64) {
        self.mqtt_events_skipped.fetch_add(frames, Ordering::Relaxed);
    }

    /// Prometheus text exposition; `queue_depth` is sampled by the caller.
    pub fn render(&self, queue_depth: usize) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP eoc_messages_total Inbound messages by edge and outcome.\n");
        out.push_str("# TYPE eoc_messages_total counter\n");
        for (e, row) in EDGES.iter().zip(&self.messages) {
            for (o, n) in Outcome::ALL.iter().zip(row) {
                let _ = writeln!(
                    out,
                    "eoc_messages_total{{edge=\"{}\",outcome=\"{}\"}} {}",
                    e.as_str(),
                    o.as_str(),
                    n.load(Ordering::Relaxed)
                );
            }
        }
        self.journal_commit.render(
            &mut out,
            "eoc_journal_commit_seconds",
            "Time to append and fsync one batch to the journal.",
        );
        self.apply.render(&mut out, "eoc_apply_seconds", "Time to apply one command, matching included.");
        let gauges = [
            ("eoc_writer_queue_depth", "gauge", "Submissions waiting for the writer.", queue_depth as u64),
            (
                "eoc_writer_batches_total",
                "counter",
                "Batches committed.",
                self.batches.load(Ordering::Relaxed),
            ),
            (
                "eoc_writer_batch_entries_total",
                "counter",
                "Submissions in committed batches.",
                self.batch_entries.load(Ordering::Relaxed),
            ),
            (
                "eoc_ws_clients",
                "gauge",
                "Connected WebSocket clients.",
                self.ws_clients.load(Ordering::Relaxed),
            ),
            (
                "eoc_ws_resnapshots_total",
                "counter",
                "Fresh snapshots sent to lagging WebSocket clients.",
                self.ws_resnapshots.load(Ordering::Relaxed),
            ),
            (
                "eoc_mqtt_events_skipped_total",
                "counter",
                "Delta frames the MQTT events feed (QoS 0) skipped because it fell behind.",
                self.mqtt_events_skipped.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
        out
    }
}
