//! The rule file as written: serde types that mirror the YAML, with spans on every value
//! that later checks may need to point at. Unknown keys are errors.

use marked_yaml::Spanned;
use serde::Deserialize;
use std::collections::HashMap;

pub(crate) type S<T> = Spanned<T>;

/// The entries of a YAML mapping in the order they were written.
pub(crate) fn in_file_order<V>(map: &HashMap<S<String>, V>) -> Vec<(&S<String>, &V)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start().map(|m| (m.line(), m.column())));
    entries
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleFile {
    #[serde(default)]
    pub receivers: HashMap<S<String>, ReceiverSpec>,
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReceiverSpec {
    #[serde(rename = "type")]
    pub kind: S<String>,
    pub url: S<String>,
    pub method: Option<S<String>>,
    pub timeout: Option<S<String>>,
    pub retries: Option<S<u32>>,
    pub secret: Option<S<String>>,
    #[serde(default)]
    pub headers: HashMap<S<String>, S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleSpec {
    pub name: S<String>,
    pub description: Option<String>,
    pub select: S<SelectSpec>,
    pub correlate: S<CorrelateSpec>,
    #[serde(default)]
    pub incident: IncidentSpec,
    #[serde(default)]
    pub actions: ActionsSpec,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct SelectSpec {
    /// Codes (`503`) or classes (`5xx`).
    #[serde(default)]
    pub status: Vec<S<String>>,
    #[serde(default)]
    pub level: Vec<S<String>>,
    /// Service name globs.
    #[serde(default)]
    pub service: Vec<S<String>>,
    /// A regular expression the message must match.
    pub message: Option<S<String>>,
    /// Field path → required value.
    #[serde(default)]
    pub fields: HashMap<S<String>, S<String>>,
    /// A glob over the event's mined template text.
    pub template: Option<S<String>>,
    /// A glob that some template of the event's template family must match.
    pub family: Option<S<String>>,
    /// `new_template` and/or `rate_spike`.
    #[serde(default)]
    pub anomaly: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CorrelateSpec {
    pub by: Option<S<String>>,
    pub window: S<String>,
    pub min_events: S<u32>,
    pub min_services: Option<S<u32>>,
    pub min_chains: Option<S<u32>>,
    pub chains_within: Option<S<String>>,
    pub min_anomalous: Option<S<u32>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct IncidentSpec {
    #[serde(default)]
    pub group_by: Vec<S<String>>,
    pub suspect_timeout: Option<S<String>>,
    pub quiet_period: Option<S<String>>,
    pub reopen_within: Option<S<String>>,
    pub escalate_after: Option<S<String>>,
    pub health_probe: Option<S<ProbeSpec>>,
    /// `quiet`, `probe`, `quiet_and_probe` or `quiet_or_probe`.
    pub restore_when: Option<S<String>>,
    pub budget: Option<S<BudgetSpec>>,
    #[serde(default)]
    pub yield_to: Vec<S<String>>,
}

/// The remediation budget: at most `actions` calls of each webhook action per root
/// service within `period`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BudgetSpec {
    pub actions: S<u32>,
    pub period: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProbeSpec {
    pub url: S<String>,
    pub expect_status: Option<S<u16>>,
    pub interval: Option<S<String>>,
    pub passes: Option<S<u32>>,
    pub timeout: Option<S<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActionsSpec {
    #[serde(default)]
    pub suspected: Vec<ActionSpec>,
    #[serde(default)]
    pub confirmed: Vec<ActionSpec>,
    #[serde(default)]
    pub recovering: Vec<ActionSpec>,
    #[serde(default)]
    pub restored: Vec<ActionSpec>,
    #[serde(default)]
    pub escalated: Vec<ActionSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActionSpec {
    pub name: S<String>,
    pub receiver: S<String>,
    pub after: Option<S<String>>,
}
