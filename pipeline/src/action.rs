//! What the engine asks of the outside world and what it is told back: a call to make
//! (`ActionRequest`), each HTTP attempt (`Attempt`) and how the call ended (`Outcome`).
//! The HTTP side that makes the calls is the `logheal-actions` crate; the engine only
//! deals in these values.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// One call to make.
#[derive(Debug, Clone)]
pub struct ActionRequest {
    /// Chosen by the caller to match outcomes to requests.
    pub id: u64,
    /// The receiver's name (names survive reloads; indices would not).
    pub receiver: Arc<str>,
    pub action: String,
    pub idempotency_key: String,
    /// The JSON body.
    pub body: String,
    /// For health probes: the status that counts as success (anything else fails, and
    /// is not retried); `None`: any 2xx.
    pub expect_status: Option<u16>,
}

/// One HTTP attempt, for the audit trail.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub request: u64,
    pub receiver: String,
    pub attempt: u32,
    pub status: Option<u16>,
    pub latency: Duration,
    pub error: Option<String>,
    pub at: SystemTime,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    Succeeded {
        status: u16,
        attempts: u32,
    },
    /// The receiver's references could not be resolved; nothing was sent.
    NotConfigured {
        reason: String,
    },
    /// A final answer (4xx other than 408/429).
    Rejected {
        status: u16,
        attempts: u32,
    },
    /// Retries exhausted; the last error or status.
    GaveUp {
        last: String,
        attempts: u32,
    },
    /// The receiver's circuit is open after repeated failures; nothing was sent.
    CircuitOpen,
}

impl Outcome {
    /// Whether the action's work is done (sent and accepted, or skipped as not configured).
    pub fn is_done(&self) -> bool {
        matches!(
            self,
            Outcome::Succeeded { .. } | Outcome::NotConfigured { .. }
        )
    }

    /// A snake_case name for records: `succeeded`, `not_configured`, `rejected`,
    /// `gave_up` or `circuit_open`.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Succeeded { .. } => "succeeded",
            Outcome::NotConfigured { .. } => "not_configured",
            Outcome::Rejected { .. } => "rejected",
            Outcome::GaveUp { .. } => "gave_up",
            Outcome::CircuitOpen => "circuit_open",
        }
    }

    /// HTTP attempts made (none when nothing was sent).
    pub fn attempts(&self) -> u32 {
        match self {
            Outcome::Succeeded { attempts, .. }
            | Outcome::Rejected { attempts, .. }
            | Outcome::GaveUp { attempts, .. } => *attempts,
            Outcome::NotConfigured { .. } | Outcome::CircuitOpen => 0,
        }
    }

    /// What happened, for people: `(HTTP 503)`, `(LOGHEAL_RESTART_URL is not set)`.
    pub fn detail(&self) -> String {
        match self {
            Outcome::Succeeded { status, .. } | Outcome::Rejected { status, .. } => {
                format!("(HTTP {status})")
            }
            Outcome::NotConfigured { reason: why } => format!("({why})"),
            Outcome::GaveUp { last, .. } => format!("({last})"),
            Outcome::CircuitOpen => "(receiver failing; not called)".to_string(),
        }
    }
}
