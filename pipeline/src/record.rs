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
        /// Root-cause candidates ranked by evidence, best first (none before a chain).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        candidates: Vec<crate::registry::Candidate>,
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
    /// A bound on the engine's state was reached (once per bound and run): what is
    /// done past it. `/metrics` counts what happens past it (`logheal_bound_overflow`).
    Limit {
        at: String,
        limit: &'static str,
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

    /// One line for people. Everything that came from the input (names, templates,
    /// reasons, details) has its control characters escaped, so a service name cannot
    /// forge a line or move the terminal's cursor.
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
                candidates,
                ..
            } => {
                let labels: Vec<String> = key
                    .iter()
                    .map(|(k, v)| {
                        format!(
                            "{}={}",
                            terminal_safe(k),
                            terminal_safe(v.as_str().unwrap_or_default())
                        )
                    })
                    .collect();
                let mut line = format!(
                    "{at}  {:<10} → {:<10}  {} {{{}}}  {}",
                    from.as_str(),
                    to.as_str(),
                    terminal_safe(incident),
                    labels.join(", "),
                    terminal_safe(reason)
                );
                for t in templates {
                    line.push_str(&format!("\n      template: {}", terminal_safe(t)));
                }
                if !candidates.is_empty() {
                    let ranked: Vec<String> = candidates
                        .iter()
                        .map(|k| format!("{} ({:.0})", terminal_safe(&k.service), k.score))
                        .collect();
                    line.push_str(&format!("\n      root candidates: {}", ranked.join(", ")));
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
                    terminal_safe(&a.idempotency_key)
                )
            }
            Record::ActionCancelled { action: a, reason } => format!(
                "{}    cancelled {} (receiver {}): {} [{}]",
                a.at,
                a.action,
                a.receiver,
                terminal_safe(reason),
                terminal_safe(&a.idempotency_key)
            ),
            Record::ActionResult {
                action: a,
                outcome,
                attempts,
                detail,
            } => format!(
                "{}    {} {}: {outcome} after {attempts} attempt(s) {} [{}]",
                a.at,
                a.receiver,
                a.action,
                terminal_safe(detail),
                terminal_safe(&a.idempotency_key)
            ),
            Record::IncidentClosed {
                at,
                incident,
                state,
                reason,
                ..
            } => format!(
                "{at}  {:<10} → closed      {}  {}",
                state.as_str(),
                terminal_safe(incident),
                terminal_safe(reason)
            ),
            Record::Probe {
                at,
                incident,
                passed,
                consecutive,
                detail,
                ..
            } => format!(
                "{at}    health probe for {}: {} ({consecutive} in a row) {}",
                terminal_safe(incident),
                if *passed { "passed" } else { "failed" },
                terminal_safe(detail)
            ),
            Record::Limit { at, limit, detail } => {
                format!("{at}  limit reached: {limit}: {}", terminal_safe(detail))
            }
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
                    || terminal_safe(error.as_deref().unwrap_or_default()).into_owned(),
                    |s| format!("HTTP {s}")
                )
            ),
        }
    }
}

/// `s` with control characters (C0, DEL, C1, and the bidirectional overrides that
/// reorder what a terminal shows) written as `\u{..}` escapes.
pub fn terminal_safe(s: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |ch: char| {
        ch.is_control() || matches!(ch, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !s.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for ch in s.chars() {
        if unsafe_char(ch) {
            out.push_str(&format!("\\u{{{:x}}}", ch as u32));
        } else {
            out.push(ch);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_output_escapes_control_characters_from_the_input() {
        let mut key = Labels::new();
        key.insert(
            "root_service".into(),
            "x}\n2026-01-01T00:00:00Z  SUSPECTED → CONFIRMED fake\u{1b}[2K\u{202e}".into(),
        );
        let record = Record::Transition {
            at: "2026-01-01T00:00:00Z".into(),
            incident: "r-x_-1".into(),
            rule: "r".into(),
            key,
            from: IncidentState::Normal,
            to: IncidentState::Suspected,
            reason: "first\rline".into(),
            templates: vec!["a\u{7}b".into()],
            candidates: Vec::new(),
        };
        let text = record.to_text();
        assert_eq!(
            text.lines().count(),
            2,
            "only the template line is added: {text}"
        );
        assert!(!text.chars().any(|ch| ch.is_control() && ch != '\n'));
        assert!(text.contains("\\u{1b}[2K") && text.contains("\\u{a}2026"));
        assert!(text.contains("\\u{202e}") && text.contains("first\\u{d}line"));
    }
}
