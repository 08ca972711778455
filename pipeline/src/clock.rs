//! Event time: one clock for every input (stdin, files, Kafka), driven by the records.
//!
//! The model, as stream processors keep it:
//!
//! - A **source** is one producer of records: a partition, and within it a service (a
//!   pod's shipper, a host). Each source has its own newest event time.
//! - The **front** is the newest admitted event time. **Time** (`time()`), up to which
//!   timers and delayed actions fire, follows the front, except that a *lagging* source
//!   holds it back: one whose records arrive more than the lateness behind the front (a
//!   shipper flushing late, a consumer of a slower partition). Time is then the lagging
//!   source's own newest time, so its records still count and meet the windows of their
//!   traces. A lagging source stops holding time once it catches up, falls silent for
//!   `idle_timeout` of the stream's progress (which stands in for processing time, so a
//!   replay and a live run agree), or falls more than `max_lag` behind. Time never goes
//!   back.
//! - The **watermark** trails time by the lateness: a record older than it is `late`,
//!   unless it is in order for its own source and within `max_lag` of the front (a
//!   source that joins, or lags, behind the others). Trace windows are kept until the
//!   retention point (`max_lag` behind the front), so such a source still finds them.
//! - A record **far ahead** of the front (more than `max_ahead`) while other sources are
//!   active is *held*, not admitted: one bad clock never moves time for everyone. The
//!   records that follow decide. A record in time from another source *contradicts* the
//!   held ones (a bad clock: they are dropped, counted as `ahead`, once the stream
//!   reaches their time, or when the bounded hold is full). A run of held records that
//!   nothing contradicts means the whole stream jumped (a gap in a recording, a consumer
//!   back after an outage): they go through, in arrival order. At the end of input,
//!   uncontradicted records go through too (a sparse stream's last lines after a quiet
//!   spell), in order, so holding them changed nothing; contradicted ones are dropped.
//! - A record further ahead of the wall clock than the allowed skew is `future`.
//! - The wall clock moves time only through [`EventClock::advance_idle`], which a live
//!   job calls when its input is idle and caught up: time becomes the newest record's
//!   time plus the wall time since it arrived, minus the lateness. Never the absolute
//!   wall clock, so a backlog decides exactly what a replay decides.
//!
//! The clock does no I/O and reads no clock; the caller passes the wall clock in.

use logheal_parsers::EventTime;
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::time::Duration;

/// Identifies a source: a partition and a service within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceId {
    pub partition: u32,
    pub service: u32,
}

impl SourceId {
    fn packed(self) -> u64 {
        (u64::from(self.partition) << 32) | u64::from(self.service)
    }
}

/// The clock's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockConfig {
    /// How far behind time a record may be and still count.
    pub lateness: Duration,
    /// A lagging source that has not spoken while the stream moved on by this much no
    /// longer holds time back; nor does it count as another active source.
    pub idle_timeout: Duration,
    /// A source further behind the front than this no longer holds time back; a new
    /// source may join this far behind; trace windows are kept this long.
    pub max_lag: Duration,
    /// A record further ahead of the front than this is held (while other sources are
    /// active).
    pub max_ahead: Duration,
    /// Records held at most (the oldest is dropped past it).
    pub max_held: usize,
    /// Sources tracked at most; records of further sources count but never lag.
    pub max_sources: usize,
}

impl Default for ClockConfig {
    fn default() -> Self {
        ClockConfig {
            lateness: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(15),
            max_lag: Duration::from_secs(120),
            max_ahead: Duration::from_secs(30),
            max_held: 1024,
            max_sources: 16_384,
        }
    }
}

/// What became of a record's timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// Older than the watermark: its windows may already be closed.
    Late,
    /// Further ahead of the wall clock than the allowed skew: a broken clock or unit.
    Future,
    /// Far ahead of the stream: kept aside (see [`EventClock::take_released`]).
    Held,
}

/// A record kept aside because it was far ahead of the stream.
#[derive(Debug, Clone)]
pub struct Held {
    pub source: SourceId,
    pub at: EventTime,
    pub line: Box<[u8]>,
    /// A record in time from another source came after it: its clock is wrong.
    contradicted: bool,
}

#[derive(Debug, Clone, Copy)]
struct Source {
    newest: EventTime,
    /// The front when it last spoke.
    heard: EventTime,
}

/// Counters of the clock, for the summary and `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClockStats {
    /// Records held for being far ahead of the stream.
    pub held: u64,
    /// Held records dropped (contradicted and reached, the hold full, or input ended).
    pub dropped_ahead: u64,
    /// Records of sources past `max_sources` (admitted, never lagging).
    pub untracked: u64,
}

/// Uncontradicted held records that mean the whole stream jumped ahead.
const JUMP_RUN: usize = 32;

#[derive(Debug, Clone)]
pub struct EventClock {
    config: ClockConfig,
    /// Latest acceptable event time (wall clock + skew).
    horizon: EventTime,
    sources: FxHashMap<u64, Source>,
    /// Sources whose last record arrived lagging (few; usually none).
    lagging: Vec<u64>,
    /// The newest admitted event time, and the same moved on by `advance_idle`.
    front: EventTime,
    /// The newest admitted event time (records only).
    newest: EventTime,
    /// Time: the front, or the newest time of the most lagging source; never goes back.
    time: EventTime,
    /// The last two distinct sources that spoke, with the front then.
    speakers: [(u64, EventTime); 2],
    /// The front at the last pruning of silent sources.
    pruned_at: EventTime,
    held: VecDeque<Held>,
    /// Held records not contradicted (yet).
    fresh: usize,
    /// The oldest time held (`EventTime::MAX` when nothing is).
    held_min: EventTime,
    released: VecDeque<Held>,
    pub stats: ClockStats,
}

impl EventClock {
    /// `horizon`: records stamped after this are rejected as far-future.
    pub fn new(config: ClockConfig, horizon: EventTime) -> Self {
        EventClock {
            config,
            horizon,
            sources: FxHashMap::default(),
            lagging: Vec::new(),
            front: EventTime::MIN,
            newest: EventTime::MIN,
            time: EventTime::MIN,
            speakers: [(u64::MAX, EventTime::MIN); 2],
            pruned_at: EventTime::MIN,
            held: VecDeque::new(),
            fresh: 0,
            held_min: EventTime::MAX,
            released: VecDeque::new(),
            stats: ClockStats::default(),
        }
    }

    /// Moves the far-future limit (live mode follows the wall clock).
    pub fn set_horizon(&mut self, horizon: EventTime) {
        self.horizon = horizon;
    }

    /// The newest admitted event time (`EventTime::MIN` before any).
    pub fn newest(&self) -> EventTime {
        self.newest
    }

    /// Time: what timers may fire up to. `EventTime::MIN` before any record.
    pub fn time(&self) -> EventTime {
        self.time
    }

    /// Time minus the allowed lateness.
    pub fn watermark(&self) -> EventTime {
        if self.time == EventTime::MIN {
            return EventTime::MIN;
        }
        self.time.minus(self.config.lateness)
    }

    /// Trace windows that end before this point can be dropped: the watermark, or
    /// further back while a source may still join up to `max_lag` behind the front.
    pub fn retention_point(&self) -> EventTime {
        if self.front == EventTime::MIN {
            return EventTime::MIN;
        }
        self.watermark().min(self.front.minus(self.config.max_lag))
    }

    /// Sources currently tracked, and how many of them hold time back.
    pub fn sources(&self) -> (usize, usize) {
        (self.sources.len(), self.lagging.len())
    }

    /// Records held now.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Admits a record of `source` stamped `at`, or says why not. A held record keeps a
    /// copy of `line`, handed back by [`take_released`](Self::take_released) once admitted.
    pub fn admit(&mut self, source: SourceId, at: EventTime, line: &[u8]) -> Admission {
        if at > self.horizon {
            return Admission::Future;
        }
        let id = source.packed();
        if self.is_late(id, at) {
            return Admission::Late;
        }
        if self.front != EventTime::MIN
            && at > self.front.plus(self.config.max_ahead)
            && self.has_peers(id)
        {
            self.hold(source, at, line);
            return Admission::Held;
        }
        if self.fresh > 0 {
            self.contradict(id);
        }
        self.accept(id, at);
        Admission::Admitted
    }

    /// Admits a record released from the hold (no check against the front).
    pub fn admit_released(&mut self, source: SourceId, at: EventTime) -> Admission {
        let id = source.packed();
        if self.is_late(id, at) {
            return Admission::Late;
        }
        self.accept(id, at);
        Admission::Admitted
    }

    /// The next held record that may now be admitted, in arrival order.
    pub fn take_released(&mut self) -> Option<Held> {
        self.released.pop_front()
    }

    /// End of input: held records nothing contradicted go through (see
    /// [`take_released`](Self::take_released)); contradicted ones are dropped.
    pub fn end_of_input(&mut self) {
        for h in std::mem::take(&mut self.held) {
            if h.contradicted {
                self.stats.dropped_ahead += 1;
            } else {
                self.released.push_back(h);
            }
        }
        self.fresh = 0;
        self.held_min = EventTime::MAX;
    }

    /// The input is idle and caught up, and the newest record arrived `quiet` ago (wall
    /// time): time moves to that record's time plus `quiet`, minus the lateness.
    pub fn advance_idle(&mut self, quiet: Duration) {
        if self.newest == EventTime::MIN {
            return;
        }
        let virtual_front = self.newest.plus(quiet);
        if virtual_front > self.front {
            self.front = virtual_front;
        }
        let floor = virtual_front.minus(self.config.lateness);
        self.time = self.time.max(floor);
        self.update_time();
        self.drop_caught_up();
    }

    /// Behind the watermark, a record still counts when it is in order for its own
    /// source (a source that joins, or lags, behind the others) and within `max_lag`
    /// of the front.
    fn is_late(&self, id: u64, at: EventTime) -> bool {
        if at >= self.watermark() {
            return false;
        }
        let own = self.sources.get(&id).map_or(EventTime::MIN, |s| s.newest);
        let in_order = own == EventTime::MIN || at >= own.minus(self.config.lateness);
        !in_order || at < self.front.minus(self.config.max_lag)
    }

    /// Whether a source other than `id` spoke within `idle_timeout` of the stream's
    /// progress (a source on its own moves time as it likes: there is nobody to be
    /// ahead of).
    fn has_peers(&self, id: u64) -> bool {
        let recent = self.front.minus(self.config.idle_timeout);
        self.speakers
            .iter()
            .any(|&(other, heard)| other != id && other != u64::MAX && heard >= recent)
    }

    fn hold(&mut self, source: SourceId, at: EventTime, line: &[u8]) {
        self.stats.held += 1;
        self.held.push_back(Held {
            source,
            at,
            line: line.into(),
            contradicted: false,
        });
        self.fresh += 1;
        if self.fresh >= JUMP_RUN {
            // The stream itself moved on: what nothing contradicted goes through.
            let (go, stay): (VecDeque<Held>, VecDeque<Held>) = std::mem::take(&mut self.held)
                .into_iter()
                .partition(|h| !h.contradicted);
            self.held = stay;
            self.released.extend(go);
            self.fresh = 0;
        } else if self.held.len() > self.config.max_held {
            let dropped = self.held.pop_front().expect("over the cap");
            self.fresh -= usize::from(!dropped.contradicted);
            self.stats.dropped_ahead += 1;
        }
        self.held_min = self
            .held
            .iter()
            .map(|h| h.at)
            .min()
            .unwrap_or(EventTime::MAX);
    }

    /// A record of `id` came in time: held records of other sources were wrong.
    fn contradict(&mut self, id: u64) {
        for h in self.held.iter_mut() {
            if !h.contradicted && h.source.packed() != id {
                h.contradicted = true;
                self.fresh -= 1;
            }
        }
    }

    fn accept(&mut self, id: u64, at: EventTime) {
        // Lag is measured against the front before this record moves it.
        let lags = self.front != EventTime::MIN && at < self.front.minus(self.config.lateness);
        self.newest = self.newest.max(at);
        self.front = self.front.max(at);
        let front = self.front;
        if self.speakers[0].0 == id {
            self.speakers[0].1 = front;
        } else {
            self.speakers[1] = self.speakers[0];
            self.speakers[0] = (id, front);
        }
        let tracked = self.sources.len() < self.config.max_sources;
        match self.sources.get_mut(&id) {
            Some(s) => {
                s.newest = s.newest.max(at);
                s.heard = front;
            }
            None if tracked => {
                let s = Source {
                    newest: at,
                    heard: front,
                };
                self.sources.insert(id, s);
            }
            None => {
                self.stats.untracked += 1;
                return self.update_time();
            }
        }
        match (lags, self.lagging.iter().position(|l| *l == id)) {
            (true, None) => self.lagging.push(id),
            (false, Some(i)) => {
                self.lagging.swap_remove(i);
            }
            _ => {}
        }
        self.update_time();
        if front >= self.pruned_at.plus(self.config.idle_timeout) {
            self.prune();
        }
        if self.held_min <= front {
            self.drop_caught_up();
        }
    }

    /// Time: the newest record's, held back by the lagging sources still active.
    fn update_time(&mut self) {
        let front = self.front;
        let (idle, max_lag) = (self.config.idle_timeout, self.config.max_lag);
        let sources = &self.sources;
        let mut held_back = self.newest;
        self.lagging.retain(|id| {
            let Some(s) = sources.get(id) else {
                return false;
            };
            let active = s.heard.plus(idle) >= front && s.newest.plus(max_lag) >= front;
            if active {
                held_back = held_back.min(s.newest);
            }
            active
        });
        self.time = self.time.max(held_back);
    }

    /// Forgets sources silent for twenty idle timeouts (bounded memory under a flood
    /// of services).
    fn prune(&mut self) {
        let front = self.front;
        self.pruned_at = front;
        let keep = self.config.idle_timeout * 20;
        self.sources.retain(|_, s| s.heard.plus(keep) >= front);
    }

    /// Held records the stream has reached: contradicted ones are dropped (their clock
    /// was wrong: placing them now would be wrong too), the others go through.
    fn drop_caught_up(&mut self) {
        let front = self.front;
        if self.held_min > front {
            return;
        }
        for h in std::mem::take(&mut self.held) {
            if h.at > front {
                self.held.push_back(h);
            } else if h.contradicted {
                self.stats.dropped_ahead += 1;
            } else {
                self.fresh -= 1;
                self.released.push_back(h);
            }
        }
        self.held_min = self
            .held
            .iter()
            .map(|h| h.at)
            .min()
            .unwrap_or(EventTime::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: i64) -> EventTime {
        EventTime(n * 1_000_000_000)
    }
    fn src(service: u32) -> SourceId {
        SourceId {
            partition: 0,
            service,
        }
    }
    fn clock() -> EventClock {
        EventClock::new(ClockConfig::default(), s(1_000_000))
    }

    #[test]
    fn late_and_future_records_are_rejected() {
        let mut c = EventClock::new(ClockConfig::default(), s(1000));
        assert_eq!(c.watermark(), EventTime::MIN);
        assert_eq!(c.admit(src(1), s(100), b""), Admission::Admitted);
        assert_eq!(
            c.admit(src(1), s(95), b""),
            Admission::Admitted,
            "within lateness"
        );
        assert_eq!(c.time(), s(100));
        assert_eq!(c.admit(src(1), s(89), b""), Admission::Late);
        assert_eq!(c.admit(src(1), s(1001), b""), Admission::Future);
        assert_eq!(c.admit(src(1), s(200), b""), Admission::Admitted);
        assert_eq!(c.watermark(), s(190));
    }

    #[test]
    fn a_lagging_source_holds_time_back_and_keeps_its_records() {
        let mut c = clock();
        // Source 2's shipper delivers 60 s late, from its first record on.
        for t in 0..60 {
            assert_eq!(c.admit(src(1), s(1000 + t), b""), Admission::Admitted);
        }
        assert_eq!(c.time(), s(1059));
        for t in 60..200 {
            assert_eq!(c.admit(src(1), s(1000 + t), b""), Admission::Admitted);
            assert_eq!(c.admit(src(2), s(1000 + t - 60), b""), Admission::Admitted);
        }
        assert_eq!(c.time(), s(1139), "time is the lagging source's");
        assert_eq!(c.retention_point(), s(1199 - 120));
        // Out of order within its own source by more than the lateness: late.
        assert_eq!(c.admit(src(2), s(1100), b""), Admission::Late);
        // A new source more than max_lag behind the stream: late.
        assert_eq!(c.admit(src(3), s(1050), b""), Admission::Late);
    }

    #[test]
    fn a_quiet_source_stops_holding_time_back() {
        let mut c = clock();
        c.admit(src(1), s(1000), b"");
        c.admit(src(2), s(1000), b"");
        for t in 1..=30 {
            c.admit(src(1), s(1000 + t), b"");
        }
        assert_eq!(c.time(), s(1030), "source 2 went idle after 15 s");
        // It speaks again, in time: it counts again.
        assert_eq!(c.admit(src(2), s(1029), b""), Admission::Admitted);
    }

    #[test]
    fn a_stuck_clock_does_not_hold_time_forever() {
        let mut c = clock();
        for t in 0..300 {
            c.admit(src(1), s(1000 + t), b"");
            // Source 2 keeps speaking, always stamped 1000.
            c.admit(src(2), s(1000), b"");
        }
        assert!(c.time() >= s(1299 - 120), "time {:?}", c.time());
    }

    #[test]
    fn one_record_far_ahead_is_held_and_moves_nothing() {
        let mut c = clock();
        for t in 0..5 {
            c.admit(src(1), s(1000 + t), b"");
            c.admit(src(2), s(1000 + t), b"");
        }
        assert_eq!(c.admit(src(3), s(1004 + 290), b"x"), Admission::Held);
        assert_eq!(c.time(), s(1004));
        for t in 5..20 {
            assert_eq!(c.admit(src(1), s(1000 + t), b""), Admission::Admitted);
            assert_eq!(c.admit(src(2), s(1000 + t), b""), Admission::Admitted);
        }
        assert!(c.take_released().is_none());
        assert_eq!(c.held(), 1);
        // The others reach its time: its clock was wrong; it is dropped, counted.
        for t in 20..300 {
            c.admit(src(1), s(1000 + t), b"");
            c.admit(src(2), s(1000 + t), b"");
        }
        assert!(c.take_released().is_none());
        assert_eq!((c.held(), c.stats.dropped_ahead), (0, 1));
    }

    #[test]
    fn a_jump_of_the_whole_stream_is_followed() {
        let mut c = clock();
        for t in 0..5 {
            c.admit(src(1), s(1000 + t), b"");
            c.admit(src(2), s(1000 + t), b"");
        }
        // An hour's gap: the records after it are held until a run of them that nothing
        // in time contradicts shows that the stream moved; then they go through in
        // arrival order.
        for i in 0..JUMP_RUN as i64 - 1 {
            let source = src(1 + (i % 2) as u32);
            assert_eq!(c.admit(source, s(4600 + i), b"a"), Admission::Held);
        }
        assert!(c.take_released().is_none());
        assert_eq!(c.admit(src(1), s(4700), b"b"), Admission::Held);
        let mut released = Vec::new();
        while let Some(h) = c.take_released() {
            assert_eq!(c.admit_released(h.source, h.at), Admission::Admitted);
            released.push(h.at);
        }
        assert_eq!(released.len(), JUMP_RUN);
        assert_eq!(released[0], s(4600), "arrival order");
        assert_eq!(c.time(), s(4700));
        assert_eq!(c.admit(src(2), s(4701), b""), Admission::Admitted);
    }

    #[test]
    fn a_skewed_node_interleaved_with_the_stream_is_never_followed() {
        let mut c = clock();
        for t in 0..200 {
            c.admit(src(1), s(1000 + t), b"");
            // Two services of one node with a clock 100 s fast, each between lines
            // in time.
            assert_eq!(c.admit(src(7), s(1100 + t), b""), Admission::Held);
            c.admit(src(2), s(1000 + t), b"");
            assert_eq!(c.admit(src(8), s(1100 + t), b""), Admission::Held);
        }
        assert!(c.take_released().is_none());
        assert_eq!(c.time(), s(1199));
        assert_eq!(
            (c.stats.dropped_ahead, c.held()),
            (200, 200),
            "dropped once reached"
        );
        c.admit(src(1), s(1200), b"");
        c.end_of_input();
        assert!(
            c.take_released().is_none(),
            "contradicted: dropped at the end too"
        );
        assert_eq!(c.stats.dropped_ahead, 400);
    }

    #[test]
    fn the_last_records_after_a_gap_go_through_at_the_end() {
        let mut c = clock();
        c.admit(src(1), s(1000), b"");
        c.admit(src(2), s(1000), b"");
        assert_eq!(c.admit(src(2), s(1090), b"late heartbeat"), Admission::Held);
        c.end_of_input();
        assert_eq!(&*c.take_released().unwrap().line, b"late heartbeat");
    }

    #[test]
    fn a_single_source_moves_freely_and_the_hold_is_bounded() {
        let mut c = clock();
        c.admit(src(1), s(1000), b"");
        assert_eq!(c.admit(src(1), s(9000), b""), Admission::Admitted);
        assert_eq!(c.time(), s(9000));
        let mut c = EventClock::new(
            ClockConfig {
                max_held: 3,
                ..ClockConfig::default()
            },
            s(1_000_000),
        );
        c.admit(src(1), s(1000), b"");
        c.admit(src(2), s(1000), b"");
        for i in 0..5 {
            assert_eq!(c.admit(src(3), s(2000 + i), b""), Admission::Held);
        }
        assert_eq!((c.held(), c.stats.dropped_ahead), (3, 2));
    }

    #[test]
    fn idle_advance_is_relative_to_the_newest_record() {
        let mut c = clock();
        c.advance_idle(Duration::from_secs(100));
        assert_eq!(c.time(), EventTime::MIN, "nothing before the first record");
        c.admit(src(1), s(1000), b"");
        c.admit(src(2), s(990), b"");
        c.advance_idle(Duration::from_secs(30));
        assert_eq!(c.time(), s(1020), "newest + quiet - lateness");
        c.advance_idle(Duration::from_secs(5));
        assert_eq!(c.time(), s(1020), "time never goes back");
        assert_eq!(c.admit(src(1), s(985), b""), Admission::Late);
        assert_eq!(c.admit(src(1), s(1031), b""), Admission::Admitted);
    }

    #[test]
    fn sources_are_bounded() {
        let mut c = EventClock::new(
            ClockConfig {
                max_sources: 10,
                ..ClockConfig::default()
            },
            s(1_000_000),
        );
        for i in 0..100 {
            c.admit(src(i), s(1000), b"");
        }
        assert_eq!((c.sources().0, c.stats.untracked), (10, 90));
    }
}
