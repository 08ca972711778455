//! The agenda: what is due at which event time — incident deadlines and delayed
//! actions — in a deterministic order (time, then actions before timers, then the order
//! they were scheduled).

use crate::incident::IncidentState;
use crate::registry::IncidentKey;
use logheal_parsers::EventTime;
use rustc_hash::FxHashMap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

/// An action waiting for its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingAction {
    pub due: EventTime,
    pub key: IncidentKey,
    pub incident: Arc<str>,
    /// The transition that scheduled it; leaving that state cancels it.
    pub seq: u32,
    pub state: IncidentState,
    /// The state left by that transition, and why it happened.
    pub from: IncidentState,
    pub reason: Arc<str>,
    /// The action's name in the rule's actions for `state`, and its receiver's name:
    /// names, not indices, so that a reload can never make it point elsewhere.
    pub action: Arc<str>,
    pub receiver: Arc<str>,
    /// Set by the agenda: ties at one time keep scheduling order.
    pub order: u64,
}

/// Something that has come due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    Action(PendingAction),
    Timeout {
        at: EventTime,
        key: IncidentKey,
        generation: u64,
    },
    /// A health probe of the incident's transition `seq` is due.
    Probe {
        at: EventTime,
        key: IncidentKey,
        seq: u32,
    },
}

/// An incident's latest deadline, and the time its heap entry is queued at.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: EventTime,
    generation: u64,
    queued: EventTime,
}

/// Invariant: an incident has at most one deadline, the latest its machine asked for
/// (a machine ignores every older generation, so only the latest can fire), and one heap
/// entry at `queued` ≤ `at` stands for it. A deadline moved later costs no heap entry:
/// the entry, when it comes up, is queued again at the deadline. So a storm of
/// suspicions, each pushing an incident's deadline on, keeps one entry, not one each.
#[derive(Debug)]
pub struct Agenda {
    timers: BinaryHeap<Reverse<(EventTime, u64, IncidentKey)>>,
    deadlines: FxHashMap<IncidentKey, Deadline>,
    probes: BinaryHeap<Reverse<(EventTime, u64, IncidentKey, u32)>>,
    /// Sorted by (due, order); few at a time, so a vector.
    actions: Vec<PendingAction>,
    order: u64,
    /// Nothing is due before this: lowered by every entry queued, raised to the next
    /// entry's time when a `pop_due` finds nothing due. Removals leave it a lower bound.
    /// The engine asks after every record; most of the time the answer is here, without
    /// a look at the queues (which was 3.5 % of a replay's time, `perf` put most of it
    /// on loading the queues' heads).
    floor: EventTime,
}

impl Default for Agenda {
    fn default() -> Self {
        Agenda {
            timers: BinaryHeap::new(),
            deadlines: FxHashMap::default(),
            probes: BinaryHeap::new(),
            actions: Vec::new(),
            order: 0,
            floor: EventTime::MIN,
        }
    }
}

impl Agenda {
    fn next_order(&mut self) -> u64 {
        self.order += 1;
        self.order
    }

    pub fn probe(&mut self, at: EventTime, key: IncidentKey, seq: u32) {
        let order = self.next_order();
        self.floor = self.floor.min(at);
        self.probes.push(Reverse((at, order, key, seq)));
    }

    /// Sets the deadline of `key`'s incident (replacing the one before).
    pub fn timer(&mut self, at: EventTime, key: IncidentKey, generation: u64) {
        let queue = match self.deadlines.get_mut(&key) {
            Some(d) => {
                d.at = at;
                d.generation = generation;
                let earlier = at < d.queued;
                if earlier {
                    d.queued = at;
                }
                earlier
            }
            None => {
                let queued = at;
                self.deadlines.insert(
                    key,
                    Deadline {
                        at,
                        generation,
                        queued,
                    },
                );
                true
            }
        };
        if queue {
            let order = self.next_order();
            self.floor = self.floor.min(at);
            self.timers.push(Reverse((at, order, key)));
        }
    }

    /// Deadlines held, and heap entries standing for them (for tests and metrics).
    pub fn timers(&self) -> (usize, usize) {
        (self.deadlines.len(), self.timers.len())
    }

    /// Queues an action (its `order` is assigned here).
    pub fn action(&mut self, mut pending: PendingAction) {
        pending.order = self.next_order();
        self.floor = self.floor.min(pending.due);
        let key = (pending.due, pending.order);
        let pos = self.actions.partition_point(|a| (a.due, a.order) <= key);
        self.actions.insert(pos, pending);
    }

    /// Removes and returns the actions of `key` scheduled by a transition other than `seq`.
    pub fn cancel_stale(&mut self, key: IncidentKey, seq: u32) -> Vec<PendingAction> {
        let (gone, kept) = std::mem::take(&mut self.actions)
            .into_iter()
            .partition(|a| a.key == key && a.seq != seq);
        self.actions = kept;
        gone
    }

    /// Removes and returns every action of `key` (its incident is gone).
    pub fn cancel_all(&mut self, key: IncidentKey) -> Vec<PendingAction> {
        let (gone, kept) = std::mem::take(&mut self.actions)
            .into_iter()
            .partition(|a| a.key == key);
        self.actions = kept;
        gone
    }

    /// Removes and returns every action `cancel` says no longer stands (a reload), and
    /// lets it update the rest.
    pub fn cancel_where(
        &mut self,
        mut cancel: impl FnMut(&mut PendingAction) -> bool,
    ) -> Vec<PendingAction> {
        let (gone, kept) = std::mem::take(&mut self.actions)
            .into_iter()
            .map(|mut a| (cancel(&mut a), a))
            .partition::<Vec<_>, _>(|(gone, _)| *gone);
        self.actions = kept.into_iter().map(|(_, a)| a).collect();
        gone.into_iter().map(|(_, a)| a).collect()
    }

    /// Removes and returns every pending action (shutdown).
    pub fn cancel_everything(&mut self) -> Vec<PendingAction> {
        std::mem::take(&mut self.actions)
    }

    /// Whether any action of `key` from transition `seq` is still waiting.
    pub fn has_pending(&self, key: IncidentKey, seq: u32) -> bool {
        self.actions.iter().any(|a| a.key == key && a.seq == seq)
    }

    /// The time of the next thing due, if any (for a deadline that moved on, the time
    /// its entry comes up to be queued again: nothing fires then).
    pub fn next_due(&self) -> Option<EventTime> {
        let a = self.actions.first().map(|a| a.due);
        let t = self.timers.peek().map(|Reverse((at, ..))| *at);
        let p = self.probes.peek().map(|Reverse((at, ..))| *at);
        [a, t, p].into_iter().flatten().min()
    }

    /// The earliest thing due at or before `until`, removed from the agenda: actions,
    /// then probes, then timers at equal times.
    pub fn pop_due(&mut self, until: EventTime) -> Option<Due> {
        if until < self.floor {
            return None;
        }
        loop {
            let Some(next) = self.next_due().filter(|t| *t <= until) else {
                self.floor = self.next_due().unwrap_or(EventTime::MAX);
                return None;
            };
            if self.actions.first().is_some_and(|a| a.due == next) {
                return Some(Due::Action(self.actions.remove(0)));
            }
            if self
                .probes
                .peek()
                .is_some_and(|Reverse((at, ..))| *at == next)
            {
                let Reverse((at, _, key, seq)) = self.probes.pop().expect("peeked");
                return Some(Due::Probe { at, key, seq });
            }
            let Reverse((at, _, key)) = self.timers.pop().expect("something is due");
            // Not standing for a deadline: left behind by a move to an earlier time.
            let Some(deadline) = self.deadlines.get_mut(&key).filter(|d| d.queued == at) else {
                continue;
            };
            if deadline.at > at {
                // The deadline moved on since this entry was queued.
                deadline.queued = deadline.at;
                let later = deadline.at;
                let order = self.next_order();
                self.timers.push(Reverse((later, order, key)));
                continue;
            }
            let generation = deadline.generation;
            self.deadlines.remove(&key);
            return Some(Due::Timeout {
                at,
                key,
                generation,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(
        due: i64,
        key: IncidentKey,
        seq: u32,
        state: IncidentState,
        action: usize,
    ) -> PendingAction {
        PendingAction {
            due: EventTime(due),
            key,
            incident: "i".into(),
            seq,
            state,
            from: IncidentState::Normal,
            reason: "r".into(),
            action: format!("a{action}").into(),
            receiver: "hook".into(),
            order: 0,
        }
    }

    #[test]
    fn order_is_time_then_actions_then_schedule_order() {
        let k = IncidentKey {
            rule: 0,
            root: None,
        };
        let mut a = Agenda::default();
        a.timer(EventTime(5), k, 1);
        a.probe(EventTime(5), k, 1);
        a.action(pending(5, k, 1, IncidentState::Confirmed, 0));
        a.action(pending(3, k, 1, IncidentState::Confirmed, 1));
        a.action(pending(5, k, 2, IncidentState::Recovering, 2));
        assert_eq!(a.next_due(), Some(EventTime(3)));
        assert_eq!(a.pop_due(EventTime(2)), None);
        let order: Vec<_> = std::iter::from_fn(|| a.pop_due(EventTime(9)))
            .map(|d| match d {
                Due::Action(p) => p.action.to_string(),
                Due::Timeout { .. } => "t".to_string(),
                Due::Probe { .. } => "p".to_string(),
            })
            .collect();
        assert_eq!(order, ["a1", "a0", "a2", "p", "t"]);
    }

    #[test]
    fn what_is_queued_after_a_look_that_found_nothing_is_found_whatever_its_time() {
        let k = |root| IncidentKey {
            rule: 0,
            root: Some(crate::interner::ServiceId(root)),
        };
        let mut a = Agenda::default();
        a.timer(EventTime(100), k(1), 1);
        // Nothing due yet: the look raises the floor to 100.
        assert_eq!(a.pop_due(EventTime(50)), None);
        // Each kind of entry, queued below that floor, still comes up in time.
        a.timer(EventTime(60), k(2), 1);
        a.probe(EventTime(70), k(3), 1);
        a.action(pending(80, k(4), 1, IncidentState::Confirmed, 0));
        let due: Vec<_> = std::iter::from_fn(|| a.pop_due(EventTime(90)))
            .map(|d| match d {
                Due::Action(p) => p.due,
                Due::Timeout { at, .. } | Due::Probe { at, .. } => at,
            })
            .collect();
        assert_eq!(due, [EventTime(60), EventTime(70), EventTime(80)]);
        // A deadline moved later stays found: its entry comes up and is queued again.
        a.timer(EventTime(150), k(1), 2);
        assert_eq!(a.pop_due(EventTime(120)), None);
        assert!(matches!(
            a.pop_due(EventTime(150)),
            Some(Due::Timeout {
                at: EventTime(150),
                generation: 2,
                ..
            })
        ));
        assert_eq!(a.pop_due(EventTime::MAX), None);
    }

    #[test]
    fn cancel_stale_keeps_the_current_transition() {
        let k = IncidentKey {
            rule: 0,
            root: None,
        };
        let other = IncidentKey {
            rule: 1,
            root: None,
        };
        let mut a = Agenda::default();
        a.action(pending(5, k, 1, IncidentState::Recovering, 0));
        a.action(pending(5, other, 1, IncidentState::Recovering, 0));
        a.action(pending(6, k, 2, IncidentState::Restored, 0));
        let gone = a.cancel_stale(k, 2);
        assert_eq!(gone.len(), 1);
        assert!(a.has_pending(k, 2) && a.has_pending(other, 1) && !a.has_pending(k, 1));
    }

    #[test]
    fn a_deadline_pushed_on_keeps_one_entry_and_fires_once() {
        let k = IncidentKey {
            rule: 0,
            root: None,
        };
        let mut a = Agenda::default();
        for g in 1..=1000u64 {
            a.timer(EventTime(g as i64 * 10), k, g);
        }
        assert_eq!(a.timers(), (1, 1), "one deadline, one heap entry");
        assert_eq!(a.pop_due(EventTime(9_999)), None);
        assert_eq!(
            a.pop_due(EventTime(10_000)),
            Some(Due::Timeout {
                at: EventTime(10_000),
                key: k,
                generation: 1000
            })
        );
        assert_eq!(a.timers(), (0, 0));
        // Moved earlier: the earlier time fires, with the latest generation, once.
        a.timer(EventTime(50), k, 1);
        a.timer(EventTime(20), k, 2);
        let fired: Vec<_> = std::iter::from_fn(|| a.pop_due(EventTime(100))).collect();
        assert_eq!(
            fired,
            [Due::Timeout {
                at: EventTime(20),
                key: k,
                generation: 2
            }]
        );
        assert_eq!(a.timers(), (0, 0));
    }
}
