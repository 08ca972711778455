//! Compiled, validated rules: what the pipeline runs.

use globset::GlobMatcher;
use logheal_parsers::{FieldNames, Level, LogEvent};
use regex::Regex;
use std::fmt;
use std::time::Duration;

/// Where something was written: `file:line:col`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// A loaded, valid set of rules and the receivers they call.
#[derive(Debug, Clone)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    pub receivers: Vec<Receiver>,
    /// Field names the parser must read, including the extra fields rules match on.
    pub field_names: FieldNames,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiverKind {
    Webhook,
    Slack,
    /// A rule's health probe: a GET that passes on the expected status.
    Probe,
}

/// Somewhere actions are sent. URLs and secrets are references (`${ENV}` or `file:PATH`),
/// resolved only when an action runs.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub name: String,
    pub kind: ReceiverKind,
    pub url: String,
    pub method: String,
    pub timeout: Duration,
    pub retries: u32,
    pub secret: Option<String>,
    pub headers: Vec<(String, String)>,
    /// Where it was declared (for a probe: its rule).
    pub location: Location,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub description: String,
    pub select: Selector,
    pub correlate: Correlation,
    pub incident: IncidentPolicy,
    pub actions: StateActions,
    pub location: Location,
}

/// Which events a rule looks at. Every given condition must hold.
/// The status "range" of `status: [none]`: events that carry no HTTP status.
pub const NO_STATUS: (u16, u16) = (0, 0);

#[derive(Debug, Clone)]
pub struct Selector {
    /// Inclusive status ranges (`503` is 503..=503, `5xx` is 500..=599). Empty: any.
    pub status: Vec<(u16, u16)>,
    /// Empty: any level.
    pub levels: Vec<Level>,
    /// Empty: any service.
    pub services: Vec<GlobMatcher>,
    pub message: Option<Regex>,
    /// (extra field index, required value).
    pub fields: Vec<(u16, String)>,
    /// Conditions on the mined template, checked by the pipeline (see [`ModelConditions`]).
    pub models: ModelConditions,
}

/// Conditions on what the models learned about an event: its template, the template's
/// family, and anomaly signals. Empty: no condition.
#[derive(Debug, Clone, Default)]
pub struct ModelConditions {
    /// Glob over the template text, e.g. `*connection refused*`.
    pub template: Option<GlobMatcher>,
    /// Glob that some template of the family must match.
    pub family: Option<GlobMatcher>,
    /// Any of these signals (empty: no condition).
    pub anomaly: Vec<AnomalyKind>,
}

impl ModelConditions {
    pub fn is_empty(&self) -> bool {
        self.template.is_none() && self.family.is_none() && self.anomaly.is_empty()
    }
}

/// Anomaly signals a rule can select on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnomalyKind {
    /// The first event of a template never seen before (after the warm-up).
    NewTemplate,
    /// A template's rate far above its own baseline.
    RateSpike,
}

/// The first condition of a [`Selector`] that an event does not meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmet {
    /// No status, or one outside the rule's codes.
    Status,
    Level,
    /// No service, or one the rule's globs do not match.
    Service,
    Message,
    /// The extra field (by index into `field_names.extra`) has not the value wanted.
    Field(u16),
}

impl Selector {
    /// Whether `e` is one of this rule's events.
    #[inline]
    pub fn matches(&self, e: &LogEvent<'_>) -> bool {
        self.unmet(e).is_none()
    }

    /// The first condition `e` does not meet, cheapest checks first; `None` when it is
    /// one of this rule's events (model conditions are the pipeline's to check).
    #[inline]
    pub fn unmet(&self, e: &LogEvent<'_>) -> Option<Unmet> {
        if !self.status.is_empty() {
            let met = match e.status {
                Some(code) => self
                    .status
                    .iter()
                    .any(|&(lo, hi)| (lo..=hi).contains(&code)),
                None => self.status.contains(&NO_STATUS),
            };
            if !met {
                return Some(Unmet::Status);
            }
        }
        if !self.levels.is_empty() && !self.levels.contains(&e.level) {
            return Some(Unmet::Level);
        }
        if !self.services.is_empty()
            && !e
                .service
                .as_deref()
                .is_some_and(|service| self.services.iter().any(|g| g.is_match(service)))
        {
            return Some(Unmet::Service);
        }
        if self
            .message
            .as_ref()
            .is_some_and(|re| !re.is_match(&e.message))
        {
            return Some(Unmet::Message);
        }
        self.fields
            .iter()
            .find(|(idx, want)| e.extra(*idx) != Some(want.as_str()))
            .map(|(idx, _)| Unmet::Field(*idx))
    }
}

/// What ties a rule's events together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorrelationKey {
    /// The trace id, or where a record has none, its request id (`x-request-id`: the
    /// only id of default mesh and ingress access logs).
    TraceId,
    /// The request id only.
    RequestId,
    Service,
    /// An extra field, by index.
    Field(u16),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Correlation {
    pub key: CorrelationKey,
    pub window: Duration,
    pub min_events: u32,
    pub min_services: u32,
    /// Chains of one incident key needed within `chains_within` to confirm (1: the
    /// first chain confirms). Fewer keep the incident SUSPECTED.
    pub min_chains: u32,
    pub chains_within: Duration,
    /// Events of a chain whose template is anomalous for its service (new, or spiking),
    /// needed for the chain to count (0: none needed).
    pub min_anomalous: u32,
}

/// Labels an incident can be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupLabel {
    /// The service whose failure came first in the chain.
    RootService,
}

impl GroupLabel {
    pub fn name(self) -> &'static str {
        match self {
            GroupLabel::RootService => "root_service",
        }
    }
}

/// How incidents of a rule open, resolve and escalate.
#[derive(Debug, Clone)]
pub struct IncidentPolicy {
    pub group_by: Vec<GroupLabel>,
    /// SUSPECTED with no confirming chain for this long goes back to NORMAL.
    pub suspect_timeout: Duration,
    /// RECOVERING or ESCALATED with no chain for this long becomes RESTORED.
    pub quiet_period: Duration,
    /// A chain this soon after RESTORED reopens the incident instead of a new one.
    pub reopen_within: Duration,
    /// Chains still arriving this long after recovery began: ESCALATED.
    pub escalate_after: Duration,
    pub probe: Option<HealthProbe>,
    pub restore_when: RestoreWhen,
    pub budget: Budget,
    /// Rules this one gives way to: its signals about a service that a live incident of
    /// one of them already covers are dropped (one failure, one incident).
    pub yield_to: Vec<String>,
}

/// The remediation budget of a rule: each webhook action is called at most `actions`
/// times per root service (per incident key) within any `period` of event time; a call
/// past it is not made, and the incident goes to humans (ESCALATED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub actions: u32,
    pub period: Duration,
}

impl Default for Budget {
    /// Three calls of an action per service per hour: a restart that needs a fourth
    /// within the hour is not fixing it.
    fn default() -> Self {
        Budget {
            actions: 3,
            period: Duration::from_secs(3600),
        }
    }
}

/// An HTTP check of the failing service, run while the incident is recovering.
#[derive(Debug, Clone, Copy)]
pub struct HealthProbe {
    /// Index into [`RuleSet::receivers`] (a [`ReceiverKind::Probe`]).
    pub receiver: usize,
    pub expect_status: u16,
    pub interval: Duration,
    /// Consecutive passes needed.
    pub passes: u32,
}

/// What restores a recovering (or escalated) incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreWhen {
    /// No chain for the quiet period.
    Quiet,
    /// The health probe passed.
    Probe,
    QuietAndProbe,
    QuietOrProbe,
}

/// The incident states that actions can be attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActionState {
    Suspected,
    Confirmed,
    Recovering,
    Restored,
    Escalated,
}

impl ActionState {
    pub const ALL: [ActionState; 5] = [
        ActionState::Suspected,
        ActionState::Confirmed,
        ActionState::Recovering,
        ActionState::Restored,
        ActionState::Escalated,
    ];
}

/// One call made when an incident enters a state.
#[derive(Debug, Clone)]
pub struct Action {
    pub name: String,
    /// Index into [`RuleSet::receivers`].
    pub receiver: usize,
    pub after: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct StateActions {
    pub suspected: Vec<Action>,
    pub confirmed: Vec<Action>,
    pub recovering: Vec<Action>,
    pub restored: Vec<Action>,
    pub escalated: Vec<Action>,
}

impl StateActions {
    pub fn for_state(&self, state: ActionState) -> &[Action] {
        match state {
            ActionState::Suspected => &self.suspected,
            ActionState::Confirmed => &self.confirmed,
            ActionState::Recovering => &self.recovering,
            ActionState::Restored => &self.restored,
            ActionState::Escalated => &self.escalated,
        }
    }

    /// Every action, of every state.
    pub fn all(&self) -> impl Iterator<Item = &Action> {
        ActionState::ALL.into_iter().flat_map(|s| self.for_state(s))
    }
}
