//! Actions: a due action becomes a request for the executor (or, in a dry run, a record
//! of what would be called), and its outcome steers the incident that asked for it.
//! Health probes of recovering incidents go the same way. Before a call: the brake, the
//! rule's budget per incident key and the silences in force may withhold it, each with a
//! record that says why.

use super::Engine;
use crate::action::{ActionRequest, Attempt, Outcome};
use crate::agenda::PendingAction;
use crate::incident::{IncidentState, Input};
use crate::payload::{self};
use crate::record::{ActionRecord, Record};
use crate::registry::IncidentKey;
use crate::silence::Silence;
use logheal_parsers::EventTime;
use logheal_rules::{Receiver, ReceiverKind};
use std::sync::Arc;

/// Budget entries (incident key and action) held before those past their period are
/// dropped.
const BUDGET_KEYS_PRUNE_AT: usize = 4096;

/// What a silenced action's record says of its silence.
pub(super) fn silence_detail(s: &Silence) -> String {
    if s.comment.is_empty() {
        s.describe()
    } else {
        format!("{} ({})", s.describe(), s.comment)
    }
}

impl Engine {
    /// The receivers of the loaded rules, by index (as in [`ActionRequest::receiver`]).
    pub fn receivers(&self) -> &[Receiver] {
        &self.receivers
    }

    /// Whether records or requests wait to be taken (`take_records`, `take_outbox`).
    pub fn has_output(&self) -> bool {
        !self.records.is_empty() || !self.outbox.is_empty()
    }

    /// Whether requests wait to be taken (`take_outbox`).
    pub fn has_requests(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// Requests made since the last call (execute mode).
    pub fn take_outbox(&mut self) -> Vec<ActionRequest> {
        std::mem::take(&mut self.outbox)
    }

    /// Whether executed actions are still waiting for their outcome.
    pub fn awaiting_outcomes(&self) -> bool {
        !self.in_flight.is_empty() || !self.probes_in_flight.is_empty()
    }

    /// Feeds an executed action's outcome back into its incident, at the current event
    /// time. Only an incident still in the state that asked for the action is steered:
    /// success of every action of that state moves it on, a failure escalates.
    pub fn action_outcome(&mut self, request: u64, outcome: &Outcome) {
        if let Some((key, seq, incident)) = self.probes_in_flight.remove(&request) {
            return self.probe_outcome(key, seq, incident, outcome);
        }
        let Some(p) = self.in_flight.remove(&request) else {
            return;
        };
        let at = self.current_time();
        let action = self.action_record(&p, at);
        self.records.push(Record::ActionResult {
            action,
            outcome: outcome.name(),
            attempts: outcome.attempts(),
            detail: outcome.detail(),
        });
        let current = self.registry.with(p.key, || None, |i| i.seq) == Some(p.seq);
        if !current {
            return;
        }
        // A notification that failed is reported (its record above, and the counters),
        // never a reason to change what the incident is: the recovery itself did not fail.
        let notification = self.receiver_kind(&p.receiver) == ReceiverKind::Slack;
        if !outcome.is_done() && notification {
            self.stats.notifications_failed += 1;
        }
        if !outcome.is_done() && !notification {
            self.inbox.push_back((p.key, at, Input::ActionFailed));
        } else {
            self.check_state_done(p.key, p.seq, at);
        }
        self.settle();
        // What the outcome made due now (an escalation's page) goes out now, not at
        // the next record: a quiet stream or a shutdown must not hold it back.
        self.run_until(at);
    }

    /// The audit record of one attempt of an executed action.
    pub fn attempt_record(&self, attempt: &Attempt) -> Option<Record> {
        let p = self.in_flight.get(&attempt.request)?;
        let wall = chrono::DateTime::<chrono::Utc>::from(attempt.at)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut action = self.action_record(p, p.due);
        action.at = wall;
        Some(Record::Attempt {
            action,
            attempt: attempt.attempt,
            status: attempt.status,
            latency_ms: attempt.latency.as_millis() as u64,
            error: attempt.error.clone(),
        })
    }

    /// Builds the request for a due action and remembers it until its outcome.
    pub(super) fn dispatch(&mut self, p: PendingAction, record: &crate::record::ActionRecord) {
        // Reloads cancel the actions whose receiver went away, so it is there.
        let kind = self.receiver_kind(&p.receiver);
        let view = self.view(&p, record);
        let body = match kind {
            ReceiverKind::Slack => payload::slack_body(&view),
            ReceiverKind::Webhook | ReceiverKind::Probe => payload::webhook_body(&view),
        };
        let id = self.request_id();
        self.outbox.push(ActionRequest {
            id,
            receiver: p.receiver.clone(),
            action: record.action.clone(),
            idempotency_key: record.idempotency_key.clone(),
            body,
            expect_status: None,
        });
        self.in_flight.insert(id, p);
    }

    pub(super) fn action_record(&self, p: &PendingAction, at: EventTime) -> ActionRecord {
        ActionRecord {
            at: at.to_rfc3339(),
            incident: p.incident.clone(),
            rule: self.slots[p.key.rule as usize].name.clone(),
            state: p.state,
            action: p.action.to_string(),
            receiver: p.receiver.to_string(),
            idempotency_key: format!(
                "{}/{}-{}/{}",
                p.incident,
                p.seq,
                p.state.as_str().to_ascii_lowercase(),
                p.action
            ),
            dry_run: !self.config.execute,
        }
    }

    /// A probe is due: ask the executor, if the incident is still recovering.
    pub(super) fn probe_due(&mut self, key: IncidentKey, seq: u32) {
        let Some(incident) = self
            .registry
            .with(key, || None, |i| (i.seq == seq).then(|| i.id.clone()))
            .flatten()
        else {
            return;
        };
        // A reload may have removed the probe: then it is simply not asked again.
        let Some(probe) = self.probe(key) else {
            return;
        };
        let id = self.request_id();
        self.outbox.push(ActionRequest {
            id,
            receiver: self.receivers[probe.receiver].name.as_str().into(),
            action: "health-probe".into(),
            idempotency_key: format!("{incident}/{seq}-probe/{id}"),
            body: String::new(),
            expect_status: Some(probe.expect_status),
        });
        self.probes_in_flight.insert(id, (key, seq, incident));
    }

    /// Counts a probe result; enough passes in a row restore (as the rule says), and
    /// the next probe is scheduled while the incident is still recovering.
    fn probe_outcome(&mut self, key: IncidentKey, seq: u32, incident: Arc<str>, outcome: &Outcome) {
        let at = self.current_time();
        let passed = matches!(outcome, Outcome::Succeeded { .. });
        // A probe sent in an earlier state does not count towards this one's passes.
        let passes = self.registry.with(
            key,
            || None,
            |i| {
                (i.seq == seq).then(|| {
                    i.probe_passes = if passed { i.probe_passes + 1 } else { 0 };
                    i.probe_passes
                })
            },
        );
        let Some(Some(passes)) = passes else {
            return;
        };
        self.records.push(Record::Probe {
            at: at.to_rfc3339(),
            incident,
            rule: self.slots[key.rule as usize].name.clone(),
            passed,
            consecutive: passes,
            detail: outcome.detail(),
        });
        let Some(probe) = self.probe(key) else {
            return;
        };
        if passes >= probe.passes {
            self.inbox.push_back((key, at, Input::ProbePassed));
            self.settle();
        }
        let still = self.registry.with(key, || None, |i| i.seq == seq) == Some(true);
        if still && !matches!(outcome, Outcome::NotConfigured { .. }) {
            self.agenda.probe(at.plus(probe.interval), key, seq);
        }
    }

    /// The health probe of an incident's rule, if it (still) has one.
    pub(super) fn probe(&self, key: IncidentKey) -> Option<logheal_rules::HealthProbe> {
        self.slots[key.rule as usize].rule.incident.probe
    }

    /// A fresh id for a request to the executor.
    pub(super) fn request_id(&mut self) -> u64 {
        self.next_request += 1;
        self.next_request
    }

    /// Why a due action must not be called, if it must not: the brake is on, or (for a
    /// webhook) its rule's budget for this incident key is spent. Otherwise the call
    /// is counted against the budget.
    pub(super) fn withheld(&mut self, p: &PendingAction) -> Option<String> {
        self.release_brake(p.due);
        if let Some(since) = self.braked_since {
            return Some(format!(
                "brake: more than {} incidents confirmed within {} (on since {}); every \
                 action waits for humans",
                self.config.brake.max_confirmed,
                crate::incident::humanize(self.config.brake.window),
                since.to_rfc3339()
            ));
        }
        if self.receiver_kind(&p.receiver) != ReceiverKind::Webhook {
            return None;
        }
        let budget = self.slots[p.key.rule as usize].rule.incident.budget;
        let calls = self
            .budget_used
            .entry((p.key, p.action.clone()))
            .or_default();
        while calls
            .front()
            .is_some_and(|t| *t <= p.due.minus(budget.period))
        {
            calls.pop_front();
        }
        if calls.len() >= budget.actions as usize {
            return Some(format!(
                "remediation budget: {:?} already called {} time(s) for this incident key \
                 within {} (the rule's budget); humans decide",
                p.action,
                calls.len(),
                crate::incident::humanize(budget.period)
            ));
        }
        calls.push_back(p.due);
        if self.budget_used.len() > BUDGET_KEYS_PRUNE_AT {
            let horizon = p.due;
            let slots = &self.slots;
            self.budget_used.retain(|(key, _), calls| {
                let period = slots[key.rule as usize].rule.incident.budget.period;
                calls.back().is_some_and(|t| *t > horizon.minus(period))
            });
        }
        None
    }

    /// Cancels a withheld action with its record; a withheld recovery step hands the
    /// incident to humans, a withheld notification just does not go out.
    pub(super) fn withhold(&mut self, p: PendingAction, why: String) {
        self.stats.actions_withheld += 1;
        let notification = self.receiver_kind(&p.receiver) == ReceiverKind::Slack;
        self.cancelled(&p, p.due, why);
        let current = self.registry.with(p.key, || None, |i| i.seq) == Some(p.seq);
        if !current {
            return;
        }
        if notification || p.state == IncidentState::Escalated {
            if !self.agenda.has_pending(p.key, p.seq) {
                self.check_state_done(p.key, p.seq, p.due);
            }
        } else {
            self.inbox.push_back((p.key, p.due, Input::ActionWithheld));
        }
    }

    fn receiver_kind(&self, name: &str) -> ReceiverKind {
        self.receivers
            .iter()
            .find(|r| *r.name == *name)
            .map_or(ReceiverKind::Webhook, |r| r.kind)
    }

    /// Live mode: the silences in force now (the live job keeps them in wall time and
    /// sets them again whenever the set changes). A due action of an incident that one
    /// of them matches is not called: an `action_result` record says `silenced`, and
    /// the incident moves on as if it had been done.
    pub fn set_silences(&mut self, active: Vec<Silence>) {
        self.silences = active;
    }

    /// The silence that covers an action's incident, if one does. Labels: `rule`,
    /// `incident` and the group-by labels.
    pub(super) fn silenced_by(&self, p: &PendingAction) -> Option<&Silence> {
        if self.silences.is_empty() {
            return None;
        }
        let rule = &*self.slots[p.key.rule as usize].name;
        let labels = self.labels(p.key);
        self.silences.iter().find(|s| {
            s.matches(|name| match name {
                "rule" => Some(rule),
                "incident" => Some(&*p.incident),
                other => labels.get(other).and_then(|v| v.as_str()),
            })
        })
    }

    /// Records a silenced action; the incident's state counts it as done.
    pub(super) fn silence(&mut self, p: PendingAction, silence_id: String, detail: String) {
        self.stats.actions_silenced += 1;
        let action = self.action_record(&p, p.due);
        self.records.push(Record::ActionResult {
            action,
            outcome: "silenced",
            attempts: 0,
            detail: format!("silence {silence_id}: {detail}"),
        });
        self.check_state_done(p.key, p.seq, p.due);
    }
}
