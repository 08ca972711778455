//! The two stages apart (`Stage`, see `signal.rs`). A correlator exports each signal with
//! its origin (input position) and the texts of its templates; a decider takes them
//! from the signals topic, holds each until every input partition's watermark has
//! passed the time it was raised, drops a correlator's repeats (`repeats.rs`), and
//! delivers it as one engine would have.

use super::Engine;
use crate::correlator::{ChainSignal, Signal};
use crate::signal::{Origin, Watermark, Wire, WireChain, WireSignal, WireTemplate};
use logheal_models::TemplateKey;
use logheal_parsers::EventTime;
use logheal_rules::GroupLabel;
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// The state of a stage that runs apart from the other.
#[derive(Default)]
pub(super) struct Split {
    /// Correlate: the input position of the record being processed, how many signals
    /// it raised so far, and the signals waiting to be published.
    position: Option<(Arc<str>, i32, i64)>,
    raised: u32,
    out: Vec<WireSignal>,
    /// Decide: every input partition, and each one's latest watermark.
    inputs: Vec<(Arc<str>, i32)>,
    /// Per input partition: its watermark, and whether it is idle (never had a record).
    /// Kept per signals partition: a watermark on one partition says nothing of the
    /// signals still on their way in another (each partition is in order, the
    /// partitions are not), so a decider's time is the least over its own partitions.
    marks: FxHashMap<(i32, Arc<str>, i32), (EventTime, bool)>,
    /// The keys of `marks` time waits for (see `refresh_mark_keys`).
    mark_keys: Vec<(i32, Arc<str>, i32)>,
    /// Decide: the signals partitions this decider owns (none known: those heard of).
    owned: Vec<i32>,
    /// Decide: what tells a correlator's repeats (see `repeats.rs`).
    pub(super) repeats: crate::repeats::Repeats,
    /// Decide: templates known by text (a decider mines nothing); the key's id indexes
    /// `texts`, with the correlator's anomaly verdict.
    /// (By owner, then text: a template is looked up by a borrowed text, not a new key.)
    template_ids: FxHashMap<u32, FxHashMap<Box<str>, u32>>,
    pub(super) texts: Vec<(Box<str>, bool, Option<String>)>,
    /// Decide: the services named in the chain being delivered.
    pub(super) named: Vec<crate::interner::ServiceId>,
    /// Decide, executing while catching up: while a call is in flight, time does not
    /// move on to a point before this (as one engine stands still, see `feed`).
    hold_before: Option<EventTime>,
    /// Decide: the time reached (the watermark time, unless held for a call).
    pub(super) time: EventTime,
    /// Decide: signals taken and not yet delivered, by the correlator's time when it
    /// raised them (then arrival): each is delivered once every input partition has
    /// passed that time, after what fell due before it, as one engine would.
    pub(super) pending: std::collections::BTreeMap<(EventTime, u64), WireSignal>,
    arrivals: u64,
}

/// Signals a decider holds back for a lagging partition; past this, the earliest is
/// delivered anyway (counted in `signals_early`), so a dead correlator cannot make a
/// decider's memory grow.
const MAX_PENDING_SIGNALS: usize = 100_000;

/// Templates a decider keeps by text; past this, new texts share one entry.
const MAX_WIRE_TEMPLATES: usize = 100_000;

impl Split {
    /// Before any watermark: time has not started.
    pub(super) fn new() -> Split {
        Split {
            time: EventTime::MIN,
            ..Split::default()
        }
    }
}

impl Engine {
    /// Correlate stage: the input position of the record about to be pushed (its
    /// signals carry it as their origin).
    pub fn set_position(&mut self, topic: &Arc<str>, partition: i32, offset: i64) {
        // Per record: the topic is cloned only when it changes (two atomic operations
        // saved on nearly every record).
        match &mut self.split.position {
            Some((t, p, o)) if Arc::ptr_eq(t, topic) => (*p, *o) = (partition, offset),
            position => *position = Some((topic.clone(), partition, offset)),
        }
        self.split.raised = 0;
    }

    /// Correlate stage: the signals raised since the last call, to publish.
    pub fn take_signals(&mut self) -> Vec<WireSignal> {
        std::mem::take(&mut self.split.out)
    }

    /// Whether `rule` keys its incidents by root service (its signals' message key).
    pub fn groups_by_root(&self, rule: &str) -> bool {
        self.slots
            .iter()
            .find(|s| *s.name == *rule)
            .is_some_and(|s| s.rule.incident.group_by.contains(&GroupLabel::RootService))
    }

    /// Correlate stage: a signal goes out by name and text instead of to an incident.
    pub(super) fn export(&mut self, rule: u32, signal: &Signal) {
        let (topic, partition, offset) = self
            .split
            .position
            .clone()
            .unwrap_or_else(|| ("-".into(), 0, self.stats.lines as i64));
        let origin = Origin {
            topic: topic.to_string(),
            partition,
            offset,
            index: self.split.raised,
        };
        self.split.raised += 1;
        let time = self.clock.time().nanos();
        let name = |s: crate::interner::ServiceId| self.interner.name(s).to_string();
        let rule_name = self.slots[rule as usize].name.to_string();
        let wire = match signal {
            Signal::Suspect { service, at } => {
                self.stats.suspicions += 1;
                WireSignal {
                    rule: rule_name,
                    at: at.nanos(),
                    time,
                    origin,
                    service: name(*service),
                    chain: None,
                }
            }
            Signal::Chain(c) => {
                self.stats.chains += 1;
                let at = c.last;
                // Each template's text is built once, for the wire and for the services
                // it names.
                let templates: Vec<(u32, WireTemplate)> = c
                    .templates
                    .iter()
                    .filter_map(|(t, count)| {
                        let template = WireTemplate {
                            service: name(crate::interner::ServiceId(t.service)),
                            text: self.templates.text(*t)?,
                            count: *count,
                            novel: self.anomalies.is_new(*t, at.nanos()),
                            why: self.anomalies.explain(*t, at.nanos()),
                        };
                        Some((t.service, template))
                    })
                    .collect();
                let named = self.named_in(templates.iter().map(|(s, w)| (*s, w.text.as_str())));
                WireSignal {
                    rule: rule_name,
                    at: at.nanos(),
                    time,
                    origin,
                    service: name(c.root),
                    chain: Some(WireChain {
                        trace: c.trace.to_string(),
                        services: c.services.iter().map(|s| name(*s)).collect(),
                        events: c.events,
                        first: c.first.nanos(),
                        last: c.last.nanos(),
                        templates: templates.into_iter().map(|(_, w)| w).collect(),
                        named: named.into_iter().map(name).collect(),
                    }),
                }
            }
        };
        self.split.out.push(wire);
    }

    /// Decide stage: every input partition whose watermark time waits for.
    pub fn set_inputs(&mut self, inputs: Vec<(Arc<str>, i32)>) {
        self.split.inputs = inputs;
        self.refresh_mark_keys();
    }

    /// Decide stage: the signals partitions this decider was assigned.
    pub fn set_owned(&mut self, partitions: Vec<i32>) {
        self.split.owned = partitions;
        self.refresh_mark_keys();
    }

    /// Decide stage: the rewind point at which a decider before this one committed a
    /// signals partition. A signal read from it that stands for an earlier time is a
    /// repeat, published again by a correlator that re-read its input after the
    /// original was taken, and is dropped: the repeat filter of that decider is gone,
    /// and a closed incident's signals would otherwise open it again.
    pub fn set_floor(&mut self, partition: i32, at: EventTime) {
        self.split.repeats.set_floor(partition, at);
    }

    /// Works out the (signals partition, input partition) pairs time waits for, when
    /// the partitions or the keys of `marks` change (not per signal: time is read at
    /// every one).
    fn refresh_mark_keys(&mut self) {
        let split = &self.split;
        let mut owned = split.owned.clone();
        if owned.is_empty() {
            owned = split.marks.keys().map(|k| k.0).collect();
            owned.sort_unstable();
            owned.dedup();
        }
        let mut inputs = split.inputs.clone();
        if inputs.is_empty() {
            inputs = split.marks.keys().map(|k| (k.1.clone(), k.2)).collect();
            inputs.sort();
            inputs.dedup();
        }
        self.split.mark_keys = owned
            .iter()
            .flat_map(|sp| inputs.iter().map(move |(t, p)| (*sp, t.clone(), *p)))
            .collect();
    }

    /// Decide stage: event time, the least watermark over the input partitions, as
    /// seen on each signals partition this decider owns (none yet from one of them:
    /// time has not started; idle ones hold nothing back).
    pub(super) fn decide_time(&self) -> EventTime {
        let marks = &self.split.marks;
        let mut least: Option<EventTime> = None;
        for key in &self.split.mark_keys {
            match marks.get(key) {
                None => return EventTime::MIN,
                Some((_, true)) => {}
                Some((at, false)) => least = Some(least.map_or(*at, |l| l.min(*at))),
            }
        }
        // Every partition idle: time stays where the latest watermark left it.
        least.unwrap_or_else(|| marks.values().map(|m| m.0).max().unwrap_or(EventTime::MIN))
    }

    /// Decide stage: every input partition has ended (`--until-end`).
    pub fn input_ended(&self) -> bool {
        let keys = &self.split.mark_keys;
        !self.split.inputs.is_empty()
            && !keys.is_empty()
            && keys.iter().all(|k| {
                self.split
                    .marks
                    .get(k)
                    .is_some_and(|m| m.0 == EventTime(i64::MAX))
            })
    }

    /// Decide stage: one message of the signals topic (read from its `partition`);
    /// the event time it stands for, or `None` for a repeat or a signal of a rule this
    /// decider does not run (counted).
    pub fn push_wire(&mut self, partition: i32, wire: Wire) -> Option<EventTime> {
        match wire {
            Wire::Watermark(Watermark {
                at,
                partitions,
                idle,
            }) => {
                for (topic, p) in &partitions {
                    self.mark(partition, topic, *p, EventTime(at));
                }
                for (topic, p) in &idle {
                    self.with_mark(partition, topic, *p, |m| m.1 = true);
                }
                self.advance_decide();
                Some(EventTime(at))
            }
            Wire::Signal(signal) => {
                let o = &signal.origin;
                let time = EventTime(signal.time);
                // What a restart must read again: the incident it joins starts no
                // later than its event time (`at`), and the rewind point is never past
                // the first signal of a live incident; while held back, it also stands
                // for its correlator's time, never before the rewind point. The
                // correlator's time alone is not enough: a lagging source holds it
                // behind the event (see `clock.rs`), and a restart would then skip the
                // first signal of an incident still open.
                let stands = time.max(EventTime(signal.at));
                let topic = self.shared_topic(&o.topic);
                if (self.split.repeats)
                    .check(partition, topic, &signal, stands)
                    .is_err()
                {
                    self.stats.signals_repeated += 1;
                    return None;
                }
                self.stats.chains_taken += u64::from(signal.chain.is_some());
                // The correlator's time when it raised the signal is a watermark of its
                // partition; the signal waits until every partition has passed it.
                self.mark(partition, &o.topic, o.partition, time);
                self.split.arrivals += 1;
                let order = (time, self.split.arrivals);
                self.split.pending.insert(order, signal);
                if self.split.pending.len() > MAX_PENDING_SIGNALS {
                    if let Some((_, early)) = self.split.pending.pop_first() {
                        self.stats.signals_early += 1;
                        self.deliver_wire(early);
                    }
                }
                self.advance_decide();
                Some(stands)
            }
        }
    }

    /// Decide stage, executing: while a call is in flight, time holds before `point`
    /// (the wall clock minus the lateness: a backlog), so a watermark that jumps minutes
    /// of a backlog at once does not time out a call that takes milliseconds. `None`:
    /// never hold.
    pub fn hold_for_calls_before(&mut self, point: Option<EventTime>) {
        self.split.hold_before = point;
    }

    /// Decide stage: runs what is due up to the watermark time, unless held (see
    /// `hold_for_calls_before`); call again once outcomes are in.
    pub fn advance_decide(&mut self) {
        let time = self.decide_time();
        // The end of the input (`--until-end`) is never run to at once: what is left
        // fires step by step at the end, each call's outcome first (`Engine::step`).
        let ended = time == EventTime(i64::MAX);
        let hold = ended || self.split.hold_before.is_some_and(|point| time < point);
        loop {
            let next = self
                .split
                .pending
                .first_key_value()
                .map(|(order, _)| order.0)
                .filter(|t| *t <= time);
            let until = next.unwrap_or(time);
            self.run_until_holding(until, hold);
            if hold && self.awaiting_outcomes() {
                return;
            }
            if until != EventTime(i64::MAX) {
                self.split.time = self.split.time.max(until);
            }
            if next.is_none() {
                return;
            }
            if let Some((_, signal)) = self.split.pending.pop_first() {
                self.deliver_wire(signal);
            }
        }
    }

    /// Decide stage: delivers one signal to its incident (taking its strings over).
    pub(super) fn deliver_wire(&mut self, signal: WireSignal) {
        let Some(rule) = (self.slots.iter()).position(|s| !s.retired && *s.name == *signal.rule)
        else {
            self.stats.signals_unknown_rule += 1;
            return;
        };
        let local = self.local_signal(signal);
        self.on_signal(rule as u32, &local);
        self.split.named.clear();
    }

    /// Decide stage: moves an input partition's watermark, as seen on signals
    /// partition `on`, on (never back).
    fn mark(&mut self, on: i32, topic: &str, partition: i32, at: EventTime) {
        self.with_mark(on, topic, partition, |m| *m = (m.0.max(at), false));
    }

    /// Applies `f` to an input partition's mark (its time, and whether it is idle) as
    /// seen on signals partition `on`; a new one starts at no time.
    fn with_mark(
        &mut self,
        on: i32,
        topic: &str,
        partition: i32,
        f: impl FnOnce(&mut (EventTime, bool)),
    ) {
        let known = self.split.marks.len();
        let topic = self.shared_topic(topic);
        f(self
            .split
            .marks
            .entry((on, topic, partition))
            .or_insert((EventTime::MIN, false)));
        if self.split.marks.len() != known {
            self.refresh_mark_keys();
        }
    }

    /// An input topic's name, shared with `set_inputs` rather than allocated per signal.
    fn shared_topic(&self, name: &str) -> Arc<str> {
        (self.split.inputs.iter())
            .find(|(t, _)| **t == *name)
            .map_or_else(|| Arc::from(name), |(t, _)| t.clone())
    }

    /// A signal from the wire with this decider's service and template numbers.
    fn local_signal(&mut self, signal: WireSignal) -> Signal {
        let service = self.interner.intern(&signal.service);
        let Some(chain) = signal.chain else {
            return Signal::Suspect {
                service,
                at: EventTime(signal.at),
            };
        };
        let services = chain
            .services
            .iter()
            .map(|s| self.interner.intern(s))
            .collect();
        let templates = chain
            .templates
            .into_iter()
            .map(|t| {
                let owner = self.interner.intern(&t.service);
                let count = t.count;
                (self.wire_template(owner, t), count)
            })
            .collect();
        self.split.named = chain
            .named
            .iter()
            .map(|s| self.interner.intern(s))
            .collect();
        Signal::Chain(ChainSignal {
            trace: chain.trace.into(),
            services,
            events: chain.events,
            first: EventTime(chain.first),
            last: EventTime(chain.last),
            root: service,
            templates,
        })
    }

    /// Decide stage: the key of a template known by its text, with the correlator's
    /// latest verdict on it.
    fn wire_template(&mut self, owner: crate::interner::ServiceId, t: WireTemplate) -> TemplateKey {
        let split = &mut self.split;
        let known = (split.template_ids.get(&owner.0)).and_then(|ids| ids.get(t.text.as_str()));
        let id = match known {
            Some(&id) => {
                let entry = &mut split.texts[id as usize];
                (entry.1, entry.2) = (t.novel, t.why);
                id
            }
            None if split.texts.len() < MAX_WIRE_TEMPLATES => {
                let id = split.texts.len() as u32;
                let text = Box::<str>::from(t.text);
                (split.template_ids.entry(owner.0).or_default()).insert(text.clone(), id);
                split.texts.push((text, t.novel, t.why));
                id
            }
            // Full: the oldest entry stands for every further text.
            None => 0,
        };
        TemplateKey {
            service: owner.0,
            id: logheal_models::TemplateId(id),
        }
    }
}
