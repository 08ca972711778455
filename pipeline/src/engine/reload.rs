//! Rule reloads (`reload`: slots kept by rule name, pending actions reconciled with the
//! new rules, the live incidents of removed rules closed) and giving up pending actions
//! at shutdown.

use super::{link_yields, parser_for, ConfigError, Engine, Reload, Slot};
use crate::agenda::PendingAction;
use crate::correlator::Correlator;
use crate::incident::Input;
use crate::record::Record;
use crate::registry::IncidentKey;
use logheal_parsers::EventTime;
use logheal_rules::RuleSet;

impl Engine {
    /// Swaps in a new, already validated rule set. A rule that still exists keeps its
    /// live incidents (and its open trace windows when its correlation is unchanged);
    /// incidents of a removed rule are closed with the reason stated; new rules start
    /// empty. Existing incidents keep the timing they opened with.
    pub fn reload(&mut self, new: RuleSet) -> Result<Reload, ConfigError> {
        let parser = parser_for(&new, &self.config)?;
        let mut incoming: Vec<Option<logheal_rules::Rule>> =
            new.rules.into_iter().map(Some).collect();
        let mut summary = Reload::default();
        let mut removed = Vec::new();
        let max_traces = self.config.max_traces_per_rule;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let found = incoming
                .iter_mut()
                .find(|r| r.as_ref().is_some_and(|r| r.name == slot.rule.name))
                .and_then(Option::take);
            match found {
                Some(rule) => {
                    // Open trace windows survive only an unchanged correlation.
                    let keep = !slot.retired && rule.correlate == slot.rule.correlate;
                    let correlator = if keep {
                        std::mem::replace(
                            &mut slot.correlator,
                            Correlator::new(&rule.correlate, max_traces),
                        )
                    } else {
                        Correlator::new(&rule.correlate, max_traces)
                    };
                    if slot.retired {
                        summary.added += 1
                    } else {
                        summary.kept += 1
                    }
                    let selected = slot.selected;
                    *slot = Slot::new(rule, correlator);
                    slot.selected = selected;
                }
                None => {
                    if !slot.retired {
                        summary.removed += 1;
                        removed.push(i as u32);
                    }
                    slot.retired = true;
                    slot.model_matches.clear();
                }
            }
        }
        for rule in incoming.into_iter().flatten() {
            let correlator = Correlator::new(&rule.correlate, max_traces);
            self.slots.push(Slot::new(rule, correlator));
            summary.added += 1;
        }
        link_yields(&mut self.slots);
        self.parser = parser;
        self.receivers = new.receivers;
        self.field_names = new.field_names;
        let at = self.current_time();
        for rule in removed {
            for key in self.registry.keys_of_rule(rule) {
                summary.closed += self.close_removed(key, at) as usize;
            }
        }
        self.reconcile_pending(at);
        Ok(summary)
    }

    /// After a reload: a pending action still stands if its rule still has an action
    /// of that name for that state, and then calls that action's receiver as now
    /// declared; any other is cancelled, with the reason in its record.
    fn reconcile_pending(&mut self, at: EventTime) {
        let (slots, receivers) = (&self.slots, &self.receivers);
        let cancelled = self.agenda.cancel_where(|p| {
            let rule = &slots[p.key.rule as usize].rule;
            let now = p.state.action_state().and_then(|s| {
                rule.actions
                    .for_state(s)
                    .iter()
                    .find(|a| *a.name == *p.action)
            });
            match now {
                Some(action) => {
                    let receiver = receivers[action.receiver].name.as_str();
                    if *p.receiver != *receiver {
                        p.receiver = receiver.into();
                    }
                    false
                }
                None => true,
            }
        });
        for p in cancelled {
            let reason = format!(
                "action {:?} of state {} was removed from rule {:?} by a reload",
                p.action,
                p.state.as_str(),
                self.slots[p.key.rule as usize].name
            );
            self.cancelled(&p, at, reason);
            // Its state's work is done if nothing else of it is pending or in flight.
            self.check_state_done(p.key, p.seq, at);
        }
        self.settle();
    }

    /// Whether the actions of transition `seq` of `key` are all done: if so (and the
    /// incident is still there), the incident is told.
    pub(super) fn check_state_done(&mut self, key: IncidentKey, seq: u32, at: EventTime) {
        let current = self.registry.with(key, || None, |i| i.seq) == Some(seq);
        if current
            && !self.agenda.has_pending(key, seq)
            && !self
                .in_flight
                .values()
                .any(|q| q.key == key && q.seq == seq)
        {
            self.inbox.push_back((key, at, Input::ActionsDone));
        }
    }

    /// Counts an action that will not be called, with its record saying why.
    pub(super) fn cancelled(&mut self, p: &PendingAction, at: EventTime, reason: String) {
        self.stats.actions_cancelled += 1;
        let action = self.action_record(p, at);
        self.records
            .push(Record::ActionCancelled { action, reason });
    }

    /// Shutdown: every pending action is cancelled, with `why` in its record.
    pub fn cancel_pending(&mut self, why: &str) {
        let at = self.current_time();
        for p in self.agenda.cancel_everything() {
            self.cancelled(&p, at, why.to_string());
        }
    }

    /// Shutdown past its deadline: calls still in flight are recorded as abandoned
    /// (`why`); their outcomes, if any come, are ignored.
    pub fn abandon_in_flight(&mut self, why: &str) {
        let at = self.current_time();
        let mut abandoned: Vec<(u64, PendingAction)> = self.in_flight.drain().collect();
        abandoned.sort_by_key(|(id, _)| *id);
        for (_, p) in abandoned {
            self.cancelled(&p, at, why.to_string());
        }
        self.probes_in_flight.clear();
    }

    /// Closes an incident whose rule was removed, cancelling what it had scheduled.
    fn close_removed(&mut self, key: IncidentKey, at: EventTime) -> bool {
        let Some(incident) = self.registry.remove(&key) else {
            return false;
        };
        let state = crate::incident::state_of(&incident.machine);
        self.stats.count_incident(state);
        self.note_closed(key, &incident);
        let reason = format!(
            "rule {:?} was removed by a reload",
            self.slots[key.rule as usize].name
        );
        for p in self.agenda.cancel_all(key) {
            self.cancelled(&p, at, reason.clone());
        }
        self.records.push(Record::IncidentClosed {
            at: at.to_rfc3339(),
            incident: incident.id.clone(),
            rule: self.slots[key.rule as usize].name.clone(),
            key: self.labels(key),
            state,
            reason,
        });
        true
    }
}
