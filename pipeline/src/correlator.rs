//! The correlator: per-key (trace id) sliding windows on event time. The first selected
//! event of a trace raises a suspicion; enough events from enough services inside one
//! window raise a chain, once per trace. Traces expire when the watermark passes their
//! window; a cap on live traces bounds memory under a flood of trace ids.
//!
//! Eviction at the cap protects evidence: while one service opens a large share of the
//! live traces (a storm: a service failing every request on its own), the oldest of
//! *its* traces that no other service has joined go first, so a cascade of other
//! services survives a storm of any rate. Otherwise the least recently active trace goes.
//! Both are counted (`evicted`, and `storm_evicted` for the first kind).

use crate::interner::ServiceId;
use logheal_models::TemplateKey;
use logheal_parsers::EventTime;
use logheal_rules::Correlation;
use rustc_hash::FxHashMap;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

/// Events kept per trace; older ones are dropped first (the chain has long fired by then).
const MAX_EVENTS_PER_TRACE: usize = 256;

/// A cross-service failure chain found in one trace.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainSignal {
    pub trace: Box<str>,
    /// Distinct services in the order they first failed.
    pub services: Vec<ServiceId>,
    /// Selected events in the window when the chain was recognised.
    pub events: u32,
    pub first: EventTime,
    pub last: EventTime,
    /// The root-cause candidate: the service whose failure came first.
    pub root: ServiceId,
    /// Templates of the chain's events, most frequent first.
    pub templates: Vec<(TemplateKey, u32)>,
}

/// What the correlator tells the incident layer.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// The first selected event of a trace: `service` failed at `at`.
    Suspect {
        service: ServiceId,
        at: EventTime,
    },
    Chain(ChainSignal),
}

/// Counters of the correlator's housekeeping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CorrelatorStats {
    /// Traces whose window closed.
    pub expired: u64,
    /// Traces dropped early because the cap was reached.
    pub evicted: u64,
    /// Of those, traces of a storming service that no other service had joined.
    pub storm_evicted: u64,
    pub chains: u64,
}

/// One selected event held in a trace window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TraceEvent {
    pub at: EventTime,
    pub service: ServiceId,
    pub template: TemplateKey,
    /// Its template is new or spiking for its service.
    pub anomalous: bool,
}

#[derive(Debug, Default)]
struct Trace {
    key: Box<str>,
    /// The key as its first event wrote it, where that differs from `key` (a trace id
    /// matched by its lower 64 bits is shown whole).
    shown: Option<Box<str>>,
    generation: u32,
    /// Sorted by time.
    events: Vec<TraceEvent>,
    newest: EventTime,
    /// The newest event of the last chain it raised: it raises another only from events
    /// all after that one (a key that never goes quiet, such as a service, raises one
    /// chain per full window of evidence, not one for life).
    fired: Option<EventTime>,
    /// The service of its first event, and whether another one joined since.
    opener: ServiceId,
    joined: bool,
}

/// Live traces a service opened, oldest first (entries of closed or joined traces are
/// dropped when met, and compacted when they are most of the queue).
#[derive(Debug, Default)]
struct Opened {
    live: usize,
    queue: VecDeque<(u32, u32)>,
}

/// A service that opened more than this share of the cap counts as storming.
const STORM_SHARE: usize = 4;
/// Evictions between two searches for the service with the most live traces.
const RESCAN_EVERY: u32 = 256;

/// Windows for one rule.
#[derive(Debug)]
pub struct Correlator {
    window: Duration,
    min_events: u32,
    min_services: u32,
    min_anomalous: u32,
    max_traces: usize,
    index: FxHashMap<Box<str>, u32>,
    slots: Vec<Trace>,
    free: Vec<u32>,
    /// (expiry time, slot, generation); entries for reused or extended slots are stale.
    expiry: BinaryHeap<Reverse<(EventTime, u32, u32)>>,
    opened: FxHashMap<ServiceId, Opened>,
    /// The service with the most live traces at the last search, and evictions since.
    heaviest: Option<ServiceId>,
    since_scan: u32,
    pub stats: CorrelatorStats,
}

impl Correlator {
    pub fn new(c: &Correlation, max_traces: usize) -> Self {
        Correlator {
            window: c.window,
            min_events: c.min_events,
            min_services: c.min_services,
            min_anomalous: c.min_anomalous,
            max_traces: max_traces.max(1),
            index: FxHashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            expiry: BinaryHeap::new(),
            opened: FxHashMap::default(),
            heaviest: None,
            since_scan: 0,
            stats: CorrelatorStats::default(),
        }
    }

    /// Traces currently held.
    pub fn live_traces(&self) -> usize {
        self.index.len()
    }

    /// Adds one selected event of trace `key`; signals go to `out`. A chain shows the
    /// trace as `shown` said it when its first event came (`key` is a trace id's match
    /// part, `shown` the whole id; other keys are both).
    pub fn observe(&mut self, key: &str, shown: &str, event: TraceEvent, out: &mut Vec<Signal>) {
        let TraceEvent { at, service, .. } = event;
        let slot = match self.index.get(key) {
            Some(&slot) => slot,
            None => {
                out.push(Signal::Suspect { service, at });
                self.open(key, shown, service)
            }
        };
        let window = self.window;
        let trace = &mut self.slots[slot as usize];
        trace.joined |= service != trace.opener;
        let pos = trace.events.partition_point(|e| e.at <= at);
        trace.events.insert(pos, event);
        trace.newest = trace.newest.max(at);
        let horizon = trace.newest.minus(window);
        let stale = trace.events.partition_point(|e| e.at < horizon);
        let over = trace.events.len().saturating_sub(MAX_EVENTS_PER_TRACE);
        trace.events.drain(..stale.max(over));
        self.expiry
            .push(Reverse((trace.newest.plus(window), slot, trace.generation)));
        if self.expiry.len() > 4 * self.max_traces.max(1024) {
            self.compact_expiry();
        }
        let trace = &mut self.slots[slot as usize];
        if let Some(last) = trace.fired {
            // Only events after the last chain count towards the next one.
            let fresh = trace.events.partition_point(|e| e.at <= last);
            if fresh > 0 {
                trace.events.drain(..fresh);
            }
        }
        if (trace.events.len() as u32) < self.min_events {
            return;
        }
        let services = distinct_in_order(&trace.events);
        if (services.len() as u32) < self.min_services {
            return;
        }
        let anomalous = trace.events.iter().filter(|e| e.anomalous).count();
        if (anomalous as u32) < self.min_anomalous {
            return;
        }
        trace.fired = Some(trace.newest);
        self.stats.chains += 1;
        let first = trace.events[0];
        out.push(Signal::Chain(ChainSignal {
            trace: trace.shown.as_ref().unwrap_or(&trace.key).clone(),
            root: first.service,
            services,
            events: trace.events.len() as u32,
            first: first.at,
            last: trace.newest,
            templates: template_counts(&trace.events),
        }));
    }

    /// Drops the expiry entries that no longer stand for a live trace's window end
    /// (extended, evicted or reused), so the heap stays within a few times the cap.
    fn compact_expiry(&mut self) {
        let slots = &self.slots;
        let window = self.window;
        let mut entries = std::mem::take(&mut self.expiry).into_vec();
        entries.retain(|Reverse((at, slot, generation))| {
            let t = &slots[*slot as usize];
            t.generation == *generation && t.newest.plus(window) == *at
        });
        self.expiry = BinaryHeap::from(entries);
    }

    /// Closes every trace whose window ended before `watermark`.
    pub fn expire(&mut self, watermark: EventTime) {
        while let Some(&Reverse((at, slot, generation))) = self.expiry.peek() {
            if at >= watermark {
                break;
            }
            self.expiry.pop();
            let trace = &self.slots[slot as usize];
            if trace.generation == generation && trace.newest.plus(self.window) == at {
                self.close(slot);
                self.stats.expired += 1;
            }
        }
    }

    fn open(&mut self, key: &str, shown: &str, service: ServiceId) -> u32 {
        if self.index.len() >= self.max_traces && !self.evict_from_storm() {
            self.evict_least_recent();
        }
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(Trace::default());
            (self.slots.len() - 1) as u32
        });
        let trace = &mut self.slots[slot as usize];
        trace.key = key.into();
        trace.shown = (shown != key).then(|| shown.into());
        trace.generation = trace.generation.wrapping_add(1);
        trace.events.clear();
        trace.newest = EventTime::MIN;
        trace.fired = None;
        trace.opener = service;
        trace.joined = false;
        let generation = trace.generation;
        self.index.insert(key.into(), slot);
        let opened = self.opened.entry(service).or_default();
        opened.live += 1;
        opened.queue.push_back((slot, generation));
        if opened.queue.len() > 2 * opened.live + 64 {
            let slots = &self.slots;
            opened.queue.retain(|&(slot, generation)| {
                let t = &slots[slot as usize];
                t.generation == generation && !t.joined
            });
        }
        slot
    }

    /// Evicts the oldest trace of the storming service that no other service joined, if
    /// a service opened more than a `STORM_SHARE`th of the cap; `false` if none did.
    fn evict_from_storm(&mut self) -> bool {
        if self.since_scan == 0 || self.heaviest.is_none() {
            self.heaviest = self
                .opened
                .iter()
                .max_by_key(|(s, o)| (o.live, Reverse(**s)))
                .map(|(s, _)| *s);
        }
        self.since_scan = (self.since_scan + 1) % RESCAN_EVERY;
        let Some(service) = self.heaviest else {
            return false;
        };
        let share = self.max_traces / STORM_SHARE;
        let Some(opened) = self.opened.get_mut(&service).filter(|o| o.live > share) else {
            self.since_scan = 0;
            return false;
        };
        while let Some((slot, generation)) = opened.queue.pop_front() {
            let t = &self.slots[slot as usize];
            if t.generation == generation && !t.joined {
                self.close(slot);
                self.stats.evicted += 1;
                self.stats.storm_evicted += 1;
                return true;
            }
        }
        self.since_scan = 0;
        false
    }

    fn evict_least_recent(&mut self) {
        while let Some(Reverse((_, slot, generation))) = self.expiry.pop() {
            let trace = &self.slots[slot as usize];
            if trace.generation == generation && self.index.contains_key(&trace.key) {
                self.close(slot);
                self.stats.evicted += 1;
                return;
            }
        }
    }

    fn close(&mut self, slot: u32) {
        let trace = &mut self.slots[slot as usize];
        self.index.remove(&trace.key);
        if let Some(opened) = self.opened.get_mut(&trace.opener) {
            opened.live -= 1;
            if opened.live == 0 {
                self.opened.remove(&trace.opener);
            }
        }
        trace.generation = trace.generation.wrapping_add(1);
        trace.events.clear();
        self.free.push(slot);
    }
}

fn distinct_in_order(events: &[TraceEvent]) -> Vec<ServiceId> {
    let mut out: Vec<ServiceId> = Vec::with_capacity(4);
    for e in events {
        if !out.contains(&e.service) {
            out.push(e.service);
        }
    }
    out
}

fn template_counts(events: &[TraceEvent]) -> Vec<(TemplateKey, u32)> {
    let mut out: Vec<(TemplateKey, u32)> = Vec::with_capacity(4);
    for e in events {
        match out.iter_mut().find(|(t, _)| *t == e.template) {
            Some((_, n)) => *n += 1,
            None => out.push((e.template, 1)),
        }
    }
    out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use logheal_rules::CorrelationKey;

    /// An event of a trace whose key is shown as it is.
    fn observe(c: &mut Correlator, key: &str, event: TraceEvent, out: &mut Vec<Signal>) {
        c.observe(key, key, event, out);
    }

    fn correlator(max_traces: usize) -> Correlator {
        let c = Correlation {
            key: CorrelationKey::TraceId,
            window: Duration::from_secs(30),
            min_events: 3,
            min_services: 2,
            min_chains: 1,
            chains_within: Duration::from_secs(60),
            min_anomalous: 0,
        };
        Correlator::new(&c, max_traces)
    }

    fn s(n: i64) -> EventTime {
        EventTime(n * 1_000_000_000)
    }

    fn ev(at: EventTime, service: ServiceId) -> TraceEvent {
        TraceEvent {
            at,
            service,
            template: TemplateKey {
                service: service.0,
                id: logheal_models::TemplateId(0),
            },
            anomalous: false,
        }
    }

    const A: ServiceId = ServiceId(0);
    const B: ServiceId = ServiceId(1);
    const C: ServiceId = ServiceId(2);

    fn chains(out: &[Signal]) -> Vec<&ChainSignal> {
        out.iter()
            .filter_map(|s| match s {
                Signal::Chain(c) => Some(c),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn three_events_two_services_make_one_chain_rooted_at_the_earliest() {
        let mut c = correlator(10);
        let mut out = Vec::new();
        observe(&mut c, "t1", ev(s(2), B), &mut out);
        observe(&mut c, "t1", ev(s(1), A), &mut out);
        observe(&mut c, "t1", ev(s(3), C), &mut out);
        observe(&mut c, "t1", ev(s(4), C), &mut out);
        let found = chains(&out);
        assert_eq!(found.len(), 1, "one chain per trace");
        assert_eq!(found[0].root, A);
        assert_eq!(found[0].services, vec![A, B, C]);
        assert_eq!(
            (found[0].first, found[0].last, found[0].events),
            (s(1), s(3), 3)
        );
        assert_eq!(
            out[0],
            Signal::Suspect {
                service: B,
                at: s(2)
            }
        );
    }

    #[test]
    fn one_service_or_too_few_or_too_spread_is_no_chain() {
        let mut c = correlator(10);
        let mut out = Vec::new();
        for i in 0..5 {
            observe(&mut c, "same-service", ev(s(i), A), &mut out);
        }
        observe(&mut c, "two", ev(s(0), A), &mut out);
        observe(&mut c, "two", ev(s(1), B), &mut out);
        observe(&mut c, "spread", ev(s(0), A), &mut out);
        observe(&mut c, "spread", ev(s(20), B), &mut out);
        observe(&mut c, "spread", ev(s(40), C), &mut out);
        assert!(chains(&out).is_empty());
    }

    #[test]
    fn traces_expire_after_the_window_and_the_cap_evicts() {
        let mut c = correlator(2);
        let mut out = Vec::new();
        observe(&mut c, "a", ev(s(0), A), &mut out);
        observe(&mut c, "b", ev(s(1), A), &mut out);
        observe(&mut c, "c", ev(s(2), A), &mut out);
        assert_eq!(c.live_traces(), 2);
        assert_eq!(c.stats.evicted, 1);
        c.expire(s(32));
        assert_eq!(
            c.live_traces(),
            1,
            "b closed when the watermark passed 31s; c is open until 32s is passed"
        );
        c.expire(s(100));
        assert_eq!((c.live_traces(), c.stats.expired), (0, 2));
        // A key that expired starts a fresh window (and a fresh suspicion).
        out.clear();
        observe(&mut c, "a", ev(s(101), A), &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn a_flood_of_trace_ids_stays_within_the_cap() {
        let mut c = correlator(1000);
        let mut out = Vec::new();
        for i in 0..100_000 {
            observe(&mut c, &format!("t{i}"), ev(s(i / 1000), A), &mut out);
            out.clear();
        }
        assert_eq!(c.live_traces(), 1000);
        assert_eq!(c.stats.evicted, 99_000);
        assert!(c.slots.len() <= 1000);
    }

    #[test]
    fn a_storm_of_one_service_does_not_evict_a_cascade() {
        let mut c = correlator(1000);
        let mut out = Vec::new();
        observe(&mut c, "cascade", ev(s(0), A), &mut out);
        for i in 0..50_000 {
            observe(&mut c, &format!("storm{i}"), ev(s(0), C), &mut out);
        }
        observe(&mut c, "cascade", ev(s(1), B), &mut out);
        for i in 50_000..100_000 {
            observe(&mut c, &format!("storm{i}"), ev(s(1), C), &mut out);
        }
        observe(&mut c, "cascade", ev(s(2), B), &mut out);
        assert_eq!(
            chains(&out).len(),
            1,
            "the cascade's trace survived the storm"
        );
        assert_eq!(chains(&out)[0].root, A);
        assert_eq!(c.live_traces(), 1000);
        assert!(c.stats.storm_evicted >= 99_000);
        let queued: usize = c.opened.values().map(|o| o.queue.len()).sum();
        assert!(
            queued <= 2 * 1000 + 64 * 2,
            "bookkeeping stays bounded: {queued}"
        );
    }
}
