//! Decide stage: telling the signals a correlator raised again from the ones it raised
//! first.
//!
//! A correlator that loses its partitions (a rebalance, a crash) leaves them to one
//! that re-reads them from the last committed rewind point and publishes what it
//! raises again. Delivered twice, a chain would count twice towards `min_chains` and
//! reopen an incident that its first delivery helped restore. Three filters, each for
//! a way a repeat can look:
//!
//! - **Origin**: a signal raised from the same input record as one taken (or from an
//!   earlier one of the same input partition). Per (signals partition, input
//!   partition): each is in order, so the latest origin taken is enough.
//! - **Floor**: a signal that stands for a time before the rewind point at which the
//!   decider before this one committed the signals partition (`set_floor`): that
//!   decider had taken it, and its repeat filters are gone.
//! - **Trace**: a chain of a trace, for a rule, whose first event is not after the
//!   newest event of the chain last taken for them. A correlator raises the next chain
//!   of a trace only from events after the last one's (see `correlator.rs`), so an
//!   overlap means the chain was raised again. It is what the origin filter misses: a
//!   correlator that re-reads from inside a trace sees fewer of its early events, and
//!   raises its chain from a later record than the first time, possibly with another
//!   root. Only a repeat that reaches this decider is recognised: one whose other root
//!   keys it to another decider is not.

use crate::signal::WireSignal;
use logheal_parsers::EventTime;
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// Traces whose latest chain is kept; past this, the oldest half is forgotten (counted
/// in `Repeats::forgotten`), so a flood of trace ids cannot grow a decider's memory.
pub const MAX_TRACES_KEPT: usize = 100_000;

/// Why a signal was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    Origin,
    Floor,
    Trace,
}

#[derive(Debug, Default)]
pub struct Repeats {
    /// Per (signals partition, input topic, input partition): the origin (offset,
    /// index) of the latest signal taken.
    seen: FxHashMap<(i32, Arc<str>, i32), (i64, u32)>,
    /// Per signals partition: the rewind point its previous decider committed.
    floors: FxHashMap<i32, EventTime>,
    /// Per rule, per trace: the newest event of the latest chain taken. Nested so that
    /// a lookup borrows the names and only a new trace allocates.
    chains: FxHashMap<Box<str>, FxHashMap<Box<str>, i64>>,
    /// Chains forgotten before their time because more traces than the bound came.
    pub forgotten: u64,
}

impl Repeats {
    /// Signals of `partition` standing for a time before `at` are repeats.
    pub fn set_floor(&mut self, partition: i32, at: EventTime) {
        self.floors.insert(partition, at);
    }

    /// Whether `signal`, read from signals `partition` and standing for `stands`, is a
    /// repeat; if it is not, it is taken (remembered). `topic` is its origin's topic.
    pub fn check(
        &mut self,
        partition: i32,
        topic: Arc<str>,
        signal: &WireSignal,
        stands: EventTime,
    ) -> Result<(), Repeat> {
        let o = &signal.origin;
        let seen = (partition, topic, o.partition);
        if self
            .seen
            .get(&seen)
            .is_some_and(|last| (o.offset, o.index) <= *last)
        {
            return Err(Repeat::Origin);
        }
        if self.floors.get(&partition).is_some_and(|f| stands < *f) {
            return Err(Repeat::Floor);
        }
        if let Some(chain) = &signal.chain {
            let trace = chain.trace.as_str();
            let last = self
                .chains
                .get_mut(signal.rule.as_str())
                .and_then(|traces| traces.get_mut(trace));
            match last {
                Some(last) if chain.first <= *last => {
                    // What the re-reading correlator raises next comes after this.
                    *last = (*last).max(chain.last);
                    return Err(Repeat::Trace);
                }
                Some(last) => *last = chain.last,
                None => {
                    if self.traces_kept() >= MAX_TRACES_KEPT {
                        self.forget_oldest_half();
                    }
                    let traces = match self.chains.get_mut(signal.rule.as_str()) {
                        Some(traces) => traces,
                        None => self.chains.entry(signal.rule.as_str().into()).or_default(),
                    };
                    traces.insert(trace.into(), chain.last);
                }
            }
        }
        self.seen.insert(seen, (o.offset, o.index));
        Ok(())
    }

    /// Forgets the chains whose newest event is before `before`: no correlator re-reads
    /// that far back (its rewind point is bounded, see `Engine::rewind_point`).
    pub fn forget_before(&mut self, before: EventTime) {
        self.retain(|last| last >= before.nanos());
    }

    fn forget_oldest_half(&mut self) {
        let mut lasts: Vec<i64> = self
            .chains
            .values()
            .flat_map(|t| t.values())
            .copied()
            .collect();
        let middle = lasts.len() / 2;
        let (_, median, _) = lasts.select_nth_unstable(middle);
        let median = *median;
        let before = self.traces_kept();
        self.retain(|last| last > median);
        self.forgotten += (before - self.traces_kept()) as u64;
    }

    /// Keeps the chains whose newest event passes `keep`, and the rules that still have one.
    fn retain(&mut self, keep: impl Fn(i64) -> bool) {
        for traces in self.chains.values_mut() {
            traces.retain(|_, last| keep(*last));
        }
        self.chains.retain(|_, traces| !traces.is_empty());
    }

    /// Chains remembered now (a sum over the rules, which are few).
    pub fn traces_kept(&self) -> usize {
        self.chains.values().map(FxHashMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::{Origin, WireChain};

    fn chain(offset: i64, trace: &str, first: i64, last: i64) -> WireSignal {
        WireSignal {
            rule: "r".into(),
            at: last,
            time: last,
            origin: Origin {
                topic: "logs".into(),
                partition: 0,
                offset,
                index: 0,
            },
            service: "a".into(),
            chain: Some(WireChain {
                trace: trace.into(),
                services: vec!["a".into(), "b".into()],
                events: 3,
                first,
                last,
                templates: vec![],
                named: vec![],
            }),
        }
    }

    fn check(r: &mut Repeats, s: &WireSignal) -> Result<(), Repeat> {
        r.check(0, "logs".into(), s, EventTime(s.at))
    }

    #[test]
    fn a_chain_that_overlaps_the_last_one_of_its_trace_is_a_repeat() {
        let mut r = Repeats::default();
        assert_eq!(check(&mut r, &chain(10, "t", 100, 300)), Ok(()));
        // The same record again, and an earlier one: the origin filter.
        assert_eq!(
            check(&mut r, &chain(10, "t", 100, 300)),
            Err(Repeat::Origin)
        );
        assert_eq!(check(&mut r, &chain(9, "u", 50, 60)), Err(Repeat::Origin));
        // Raised again from a later record, from inside the trace.
        assert_eq!(check(&mut r, &chain(14, "t", 200, 400)), Err(Repeat::Trace));
        // The next chain of the re-reading correlator starts after 400.
        assert_eq!(check(&mut r, &chain(15, "t", 350, 500)), Err(Repeat::Trace));
        assert_eq!(check(&mut r, &chain(20, "t", 501, 700)), Ok(()));
        // Another trace, or another rule, is not a repeat.
        assert_eq!(check(&mut r, &chain(21, "u", 200, 400)), Ok(()));
        let mut other = chain(22, "t", 600, 700);
        other.rule = "s".into();
        assert_eq!(check(&mut r, &other), Ok(()));
    }

    #[test]
    fn below_the_floor_is_a_repeat() {
        let mut r = Repeats::default();
        r.set_floor(0, EventTime(1000));
        assert_eq!(check(&mut r, &chain(1, "t", 100, 300)), Err(Repeat::Floor));
        assert_eq!(check(&mut r, &chain(2, "t", 900, 1000)), Ok(()));
        // Another signals partition has no floor.
        let other = chain(1, "u", 100, 300);
        assert_eq!(r.check(1, "logs".into(), &other, EventTime(300)), Ok(()));
    }

    #[test]
    fn a_flood_of_traces_stays_within_the_bound() {
        let mut r = Repeats::default();
        let n = MAX_TRACES_KEPT as i64 + 10;
        for i in 0..n {
            let trace = format!("t{i}");
            assert_eq!(check(&mut r, &chain(i, &trace, i, i)), Ok(()));
        }
        assert!(r.traces_kept() <= MAX_TRACES_KEPT);
        assert!(r.forgotten >= MAX_TRACES_KEPT as u64 / 2);
        // The newest are still known.
        let last = format!("t{}", n - 1);
        assert_eq!(
            check(&mut r, &chain(n, &last, n - 1, n)),
            Err(Repeat::Trace)
        );
        r.forget_before(EventTime(n));
        assert_eq!(r.traces_kept(), 1);
    }
}
