//! What the engine reports: transitions, actions it calls (or would call), and actions
//! cancelled because the incident moved on. One JSON object per line, or text for people.

use crate::incident::IncidentState;
use serde::Serialize;
use std::sync::Arc;

/// An incident's group-by labels, e.g. `{"root_service": "payment"}`.
pub type Labels = serde_json::Map<String, serde_json::Value>;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    Transition {
        /// Event time, RFC 3339.
        at: String,
        incident: Arc<str>,
        rule: Arc<str>,
        key: Labels,
        from: IncidentState,
        to: IncidentState,
        reason: String,
        /// The most frequent templates of the incident's chains (none before a chain).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        templates: Vec<String>,
    },
    Action(ActionRecord),
    ActionCancelled {
        #[serde(flatten)]
        action: ActionRecord,
        reason: String,
    },
    /// How an executed action ended: `succeeded`, `not_configured`, `rejected`,
    /// `gave_up` or `circuit_open`.
    ActionResult {
        #[serde(flatten)]
        action: ActionRecord,
        outcome: &'static str,
        attempts: u32,
        detail: String,
    },
    /// An incident closed from outside its machine (its rule was removed by a reload).
    IncidentClosed {
        at: String,
        incident: Arc<str>,
        rule: Arc<str>,
        key: Labels,
        state: IncidentState,
        reason: String,
    },
    /// A health probe's result while the incident recovers.
    Probe {
        at: String,
        incident: Arc<str>,
        rule: Arc<str>,
        passed: bool,
        /// Passes in a row so far.
        consecutive: u32,
        detail: String,
    },
    /// One HTTP attempt of an executed action (wall-clock time).
    Attempt {
        #[serde(flatten)]
        action: ActionRecord,
        attempt: u32,
        status: Option<u16>,
        latency_ms: u64,
        error: Option<String>,
    },
}

/// One action call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionRecord {
    pub at: String,
    pub incident: Arc<str>,
    pub rule: Arc<str>,
    pub state: IncidentState,
    pub action: String,
    pub receiver: String,
    /// `<incident>/<transition seq>-<state>/<action>`: the same on every retry.
    pub idempotency_key: String,
    /// True when nothing was sent (replay without execution).
    pub dry_run: bool,
}

impl Record {
    /// One JSON object, no trailing newline.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("records serialise")
    }

    /// One line for people.
    pub fn to_text(&self) -> String {
        match self {
            Record::Transition {
                at,
                incident,
                key,
                from,
                to,
                reason,
                templates,
                ..
            } => {
                let labels: Vec<String> = key
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect();
                let mut line = format!(
                    "{at}  {:<10} → {:<10}  {incident} {{{}}}  {reason}",
                    from.as_str(),
                    to.as_str(),
                    labels.join(", ")
                );
                for t in templates {
                    line.push_str(&format!("\n      template: {t}"));
                }
                line
            }
            Record::Action(a) => {
                let verb = if a.dry_run { "would call" } else { "called" };
                format!(
                    "{}    {verb} {} (receiver {}) for {} [{}]",
                    a.at,
                    a.action,
                    a.receiver,
                    a.state.as_str(),
                    a.idempotency_key
                )
            }
            Record::ActionCancelled { action: a, reason } => format!(
                "{}    cancelled {} (receiver {}): {reason} [{}]",
                a.at, a.action, a.receiver, a.idempotency_key
            ),
            Record::ActionResult {
                action: a,
                outcome,
                attempts,
                detail,
            } => format!(
                "{}    {} {}: {outcome} after {attempts} attempt(s) {detail} [{}]",
                a.at, a.receiver, a.action, a.idempotency_key
            ),
            Record::IncidentClosed {
                at,
                incident,
                state,
                reason,
                ..
            } => format!(
                "{at}  {:<10} → closed      {incident}  {reason}",
                state.as_str()
            ),
            Record::Probe {
                at,
                incident,
                passed,
                consecutive,
                detail,
                ..
            } => format!(
                "{at}    health probe for {incident}: {} ({consecutive} in a row) {detail}",
                if *passed { "passed" } else { "failed" }
            ),
            Record::Attempt {
                action: a,
                attempt,
                status,
                latency_ms,
                error,
            } => format!(
                "{}      attempt {attempt} to {} for {}: {} in {latency_ms} ms",
                a.at,
                a.receiver,
                a.action,
                status.map_or_else(
                    || error.clone().unwrap_or_default(),
                    |s| format!("HTTP {s}")
                )
            ),
        }
    }
}
