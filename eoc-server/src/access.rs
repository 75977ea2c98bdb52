//! The gate every command passes on its way to the writer, on every edge:
//! rate limit per identity, the rule book ([`crate::auth::policy`]), then
//! [`Bus::submit`]; and the audit record of whatever happened.
//!
//! Edges authenticate first (bearer token, Basic, or the scope of an MQTT
//! topic) and call [`Access::submit`] with the identity; what they refuse
//! before a command exists (no credentials, malformed body) they report
//! with [`Access::refuse`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use eoc_protocol::types::MsgType;
use eoc_protocol::validate::Problems;

use crate::audit::{Audit, AuditOutcome, AuditRecord};
use crate::auth::verifier::Verifier;
use crate::auth::{Principal, Role, policy};
use crate::bus::{Accepted, Bus, Edge, Queued, Submission, SubmitError};
use crate::config::AccessConfig;
use crate::core::engine::Command;
use crate::metrics::Outcome;

/// Code of a refusal for sending too fast.
pub const RATE_LIMITED: &str = "rate_limited";

/// Code of a refusal for missing or bad credentials.
pub const UNAUTHENTICATED: &str = "unauthenticated";

/// Identities whose buckets are remembered, at most; beyond it the full
/// (idle) buckets are forgotten.
const MAX_BUCKETS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets per identity, with a rate by role.
#[derive(Debug)]
pub struct RateLimits {
    config: AccessConfig,
    /// Keyed by identity name, hashed with foldhash (every command looks
    /// its identity up).
    buckets: Mutex<HashMap<String, Bucket, foldhash::fast::RandomState>>,
}

impl RateLimits {
    /// Limits of `config`.
    pub fn new(config: &AccessConfig) -> RateLimits {
        RateLimits { config: config.clone(), buckets: Mutex::new(HashMap::default()) }
    }

    fn rate_per_s(&self, role: Role) -> f64 {
        match role {
            Role::Chair | Role::Operator => self.config.operator_per_s,
            Role::Responder => self.config.responder_per_s,
            Role::SiteManager => self.config.site_manager_per_s,
            // A viewer's commands are refused anyway; the limit keeps the
            // refusals cheap.
            Role::Viewer => self.config.responder_per_s,
        }
    }

    /// Takes one token of `who`'s bucket, or says how long to wait.
    pub fn check(&self, who: &Principal, now: Instant) -> Result<(), Problems> {
        let rate = self.rate_per_s(who.role).max(0.001);
        let capacity = (rate * self.config.burst_s).max(1.0);
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(&who.name) {
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < capacity);
        }
        if !buckets.contains_key(&who.name) {
            buckets.insert(who.name.clone(), Bucket { tokens: capacity, at: now });
        }
        let Some(b) = buckets.get_mut(&who.name) else {
            return Ok(());
        };
        b.tokens = (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate).min(capacity);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        let wait_ms = ((1.0 - b.tokens) / rate * 1000.0).ceil();
        let mut p = Problems::default();
        p.push(
            RATE_LIMITED,
            "",
            format!(
                "{} may send {rate} commands per second ({} at once); retry in {wait_ms} ms",
                who.name, capacity
            ),
        );
        Err(p)
    }
}

/// What a command is, for the audit trail: its kind and the object it acts on.
pub fn describe(cmd: &Command) -> (&'static str, Option<String>) {
    match cmd {
        Command::Alert(m) => {
            let kind = match m.msg_type {
                MsgType::Update => "alert_update",
                MsgType::Cancel => "alert_cancel",
                _ => "alert",
            };
            (kind, Some(m.alert_id.clone()))
        }
        Command::TeamPosition(m) => ("team_position", m.team_id.clone()),
        Command::TeamStatus(m) => ("team_status", m.team_id.clone()),
        Command::SiteCapacity(m) => ("site_capacity", m.site_id.clone()),
        Command::TaskUpdate(m) => ("task_update", m.task_id.clone()),
        Command::TaskAssign(m) => ("task_assign", Some(m.team_id.clone())),
        Command::Tick => ("tick", None),
    }
}

/// A command past the gate, in the writer's queue.
#[derive(Debug)]
pub struct Admitted {
    audit: Arc<Audit>,
    queued: Queued,
    record: AuditRecord,
}

impl Admitted {
    /// The writer's answer, audited.
    pub async fn answer(self) -> Result<Accepted, SubmitError> {
        let result = self.queued.answer().await;
        self.audit.record(outcome_record(self.record, &result));
        result
    }
}

/// `record` completed with what became of the command.
fn outcome_record(mut record: AuditRecord, result: &Result<Accepted, SubmitError>) -> AuditRecord {
    record.outcome = match result {
        Ok(Accepted::Applied { .. }) => AuditOutcome::Accepted,
        Ok(Accepted::Duplicate) => AuditOutcome::Duplicate,
        Err(SubmitError::Rejected(p)) => {
            record = with_problems(record, p);
            AuditOutcome::Rejected
        }
        Err(SubmitError::Unavailable(why)) => {
            record = record.why("unavailable", why);
            AuditOutcome::Refused
        }
    };
    record
}

/// Credentials, rules, limits and the audit trail, shared by the edges.
#[derive(Debug)]
pub struct Access {
    /// Checks credentials against the user store.
    pub verifier: Verifier,
    /// The audit trail.
    pub audit: Arc<Audit>,
    limits: RateLimits,
}

impl Access {
    /// Assembles the gate.
    pub fn new(verifier: Verifier, audit: Audit, config: &AccessConfig) -> Access {
        Access { verifier, audit: Arc::new(audit), limits: RateLimits::new(config) }
    }

    /// Submits `s` on behalf of `who` (whose name replaces `s.by`) after the
    /// rate limit and the rule book, and audits the outcome. A refusal is a
    /// `Rejected` error whose code is `rate_limited` or `forbidden`.
    pub async fn submit(&self, bus: &Bus, who: &Principal, s: Submission) -> Result<Accepted, SubmitError> {
        self.enqueue(bus, who, s).await?.answer().await
    }

    /// [`Access::submit`] in two steps: the limit, the rule book and the
    /// writer's queue now, in the caller's order; the answer (and its audit
    /// record) when the caller awaits [`Admitted::answer`]. A refusal by
    /// limit or rule book is audited here.
    pub async fn enqueue(
        &self,
        bus: &Bus,
        who: &Principal,
        mut s: Submission,
    ) -> Result<Admitted, SubmitError> {
        s.by.clone_from(&who.name);
        let (action, target) = describe(&s.command);
        let mut record =
            AuditRecord::new(&who.name, Some(who.role.as_str()), s.edge, action, AuditOutcome::Refused);
        record.target = target;
        record.msg_id.clone_from(&s.msg_id);
        let edge = s.edge;
        let gate = self
            .limits
            .check(who, Instant::now())
            .and_then(|()| bus.read(|engine| policy::authorize(who, &s.command, engine)));
        if let Err(problems) = gate {
            bus.metrics().message(edge, Outcome::Rejected);
            self.audit.record(with_problems(record, &problems));
            return Err(SubmitError::Rejected(problems));
        }
        match bus.enqueue(s).await {
            Ok(queued) => Ok(Admitted { audit: self.audit.clone(), queued, record }),
            Err(err) => {
                self.audit.record(outcome_record(record, &Err(err.clone())));
                Err(err)
            }
        }
    }

    /// Audits a request refused before it became a command: `by` is the
    /// identity if known (else `unauthenticated`), `action` what was asked.
    pub fn refuse(&self, who: Option<&Principal>, edge: Edge, action: &str, problems: &Problems) {
        let (by, role) = who.map_or(("unauthenticated", None), |w| (w.name.as_str(), Some(w.role.as_str())));
        let record = AuditRecord::new(by, role, edge, action, AuditOutcome::Refused);
        self.audit.record(with_problems(record, problems));
    }
}

fn with_problems(record: AuditRecord, problems: &Problems) -> AuditRecord {
    match problems.errors.first() {
        Some(first) => {
            let reason = if first.field.is_empty() {
                first.message.clone()
            } else {
                format!("{}: {}", first.field, first.message)
            };
            record.why(&first.code, &reason)
        }
        None => record,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn buckets_refill_at_the_role_rate() {
        let config = AccessConfig { responder_per_s: 2.0, burst_s: 1.5, ..AccessConfig::default() };
        let limits = RateLimits::new(&config);
        let r = Principal::responder("r1", "t-1");
        let t0 = Instant::now();
        // Capacity 3: three at once, the fourth refused with a wait.
        for _ in 0..3 {
            limits.check(&r, t0).unwrap();
        }
        let err = limits.check(&r, t0).unwrap_err();
        assert_eq!(err.errors[0].code, RATE_LIMITED);
        assert!(err.errors[0].message.contains("retry in 500 ms"), "{}", err.errors[0].message);
        // Another identity has its own bucket.
        limits.check(&Principal::responder("r2", "t-2"), t0).unwrap();
        // Half a second later one token is back.
        limits.check(&r, t0 + Duration::from_millis(500)).unwrap();
        assert!(limits.check(&r, t0 + Duration::from_millis(500)).is_err());
        // Operators have their own, larger rate.
        let op = Principal::new("o", Role::Operator);
        for _ in 0..100 {
            limits.check(&op, t0).unwrap();
        }
    }
}
