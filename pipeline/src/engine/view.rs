//! What operators and receivers see of an incident: the snapshots the incident pages and
//! the API refresh from (`take_changes`), and the view a payload is built from.

use super::Engine;
use crate::agenda::PendingAction;
use crate::incident::IncidentState;
use crate::payload::{Counts, IncidentView};
use crate::record::Labels;
use crate::registry::{Incident, IncidentKey};
use std::sync::Arc;

/// Closed incidents kept for `take_changes` when nobody takes them (a replay).
pub(super) const MAX_CLOSED_KEPT: usize = 4096;

/// An incident as an operator's view shows it (see `Engine::take_changes`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct IncidentSnapshot {
    pub id: Arc<str>,
    pub rule: Arc<str>,
    pub key: Labels,
    /// Its state, or the state it closed in.
    pub state: IncidentState,
    pub first_seen: String,
    pub last_seen: String,
    pub counts: Counts,
    pub services: Vec<String>,
    pub root_candidates: Vec<crate::registry::Candidate>,
    pub sample_trace_ids: Vec<String>,
    pub top_templates: Vec<String>,
}

/// What changed since the last `take_changes`: incidents that took input (as they are
/// now) and incidents that closed (as they were).
#[derive(Debug, Default)]
pub struct Changes {
    pub live: Vec<IncidentSnapshot>,
    pub closed: Vec<IncidentSnapshot>,
}

impl Engine {
    /// The texts of templates, each text once (services can share one).
    pub(super) fn template_texts(
        &self,
        keys: impl Iterator<Item = logheal_models::TemplateKey>,
    ) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for text in keys.filter_map(|t| self.template_text(t)) {
            if !out.contains(&text) {
                out.push(text);
            }
        }
        out
    }

    /// The incident as the action's receiver sees it.
    pub(super) fn view(
        &self,
        p: &PendingAction,
        record: &crate::record::ActionRecord,
    ) -> IncidentView {
        let snapshot = self.registry.get(&p.key).map(|i| self.snapshot(p.key, i));
        let (services, candidates, traces, templates, counts, first, last) = match snapshot {
            Some(s) => (
                s.services,
                s.root_candidates,
                s.sample_trace_ids,
                s.top_templates,
                s.counts,
                s.first_seen,
                s.last_seen,
            ),
            None => (
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Counts::default(),
                p.due.to_rfc3339(),
                p.due.to_rfc3339(),
            ),
        };
        IncidentView {
            incident: p.incident.to_string(),
            rule: record.rule.to_string(),
            key: self.labels(p.key),
            state: p.state,
            previous_state: p.from,
            reason: p.reason.to_string(),
            action: record.action.clone(),
            idempotency_key: record.idempotency_key.clone(),
            root_cause: p
                .key
                .root
                .map(|s| self.interner.name(s).to_string())
                .or_else(|| services.first().cloned()),
            services,
            root_candidates: candidates,
            sample_trace_ids: traces,
            top_templates: templates,
            counts,
            first_seen: first,
            last_seen: last,
            dry_run: !self.config.execute,
        }
    }

    /// An incident as an operator's view (and a receiver's payload) shows it.
    fn snapshot(&self, key: IncidentKey, i: &Incident) -> IncidentSnapshot {
        let name = |s: crate::interner::ServiceId| self.interner.name(s).to_string();
        IncidentSnapshot {
            id: i.id.clone(),
            rule: self.slots[key.rule as usize].name.clone(),
            key: self.labels(key),
            state: crate::incident::state_of(&i.machine),
            first_seen: i.first_seen.to_rfc3339(),
            last_seen: i.last_seen.to_rfc3339(),
            counts: Counts {
                chains: i.chains,
                failed_events: i.chain_events,
                suspicions: i.suspicions,
            },
            services: i.services.iter().map(|s| name(*s)).collect(),
            root_candidates: self.candidate_names(&i.candidates(key.root)),
            sample_trace_ids: i.sample_traces.iter().map(|t| t.to_string()).collect(),
            top_templates: self.template_texts(i.top_templates(5).into_iter().map(|t| t.key)),
        }
    }

    /// Remembers a closed incident for `take_changes`.
    pub(super) fn note_closed(&mut self, key: IncidentKey, incident: &Incident) {
        self.touched.remove(&key);
        if self.closed.len() >= MAX_CLOSED_KEPT {
            self.closed.pop_front();
        }
        let snapshot = self.snapshot(key, incident);
        self.closed.push_back(snapshot);
    }

    /// What changed since the last call: the incidents that took input, as they are
    /// now, and those that closed, as they were when they closed. For an operator's
    /// view; costs nothing per line (an incident is marked when it takes input).
    pub fn take_changes(&mut self) -> Changes {
        let mut keys: Vec<IncidentKey> = self.touched.drain().collect();
        keys.sort();
        let live = keys
            .into_iter()
            .filter_map(|key| self.registry.get(&key).map(|i| self.snapshot(key, i)))
            .collect();
        Changes {
            live,
            closed: self.closed.drain(..).collect(),
        }
    }
}
