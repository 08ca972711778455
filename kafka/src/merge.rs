//! The partition merge: records of every assigned partition are buffered and handed to
//! the engine in record-time order, so that one engine clock serves many partitions
//! without dropping a slower partition's records as late. A partition that is empty is
//! waited for until it reports its end, stays idle for `idle`, or the buffers are full.

use crate::offsets::Checkpoints;
use logheal_parsers::EventTime;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One buffered record: where its bytes are in the partition's buffer.
struct Buffered {
    offset: i64,
    /// The record's Kafka timestamp (ms), or the previous one's when it has none.
    time: i64,
    /// Whether the record had a timestamp of its own.
    stamped: bool,
    start: usize,
    len: usize,
}

/// One assigned partition: its buffered records and what has been processed.
pub struct Partition {
    pub topic: Arc<str>,
    pub partition: i32,
    queue: VecDeque<Buffered>,
    bytes: Vec<u8>,
    /// Bytes of `bytes` already handed on.
    consumed: usize,
    last_time: i64,
    /// The client reported the end of the partition after the last record it delivered
    /// (and nothing arrived since); see `at_end`.
    end_reported: bool,
    last_arrival: Instant,
    pub checkpoints: Checkpoints,
}

impl Partition {
    fn new(topic: Arc<str>, partition: i32, now: Instant, checkpoint_every: u32) -> Self {
        Partition {
            topic,
            partition,
            queue: VecDeque::new(),
            bytes: Vec::new(),
            consumed: 0,
            last_time: i64::MIN,
            end_reported: false,
            last_arrival: now,
            checkpoints: Checkpoints::every(checkpoint_every),
        }
    }

    fn is(&self, topic: &str, partition: i32) -> bool {
        self.partition == partition && &*self.topic == topic
    }

    fn head_time(&self) -> Option<i64> {
        self.queue.front().map(|b| b.time)
    }

    /// Caught up with the broker: the end was reported and everything before it was
    /// handed on.
    pub fn at_end(&self) -> bool {
        self.end_reported && self.queue.is_empty()
    }

    /// Whether a record or the end ever came (until then the partition is waited for
    /// up to `Merge::start_wait`: its first fetch may queue behind the others').
    fn started(&self) -> bool {
        self.end_reported || !self.queue.is_empty() || self.checkpoints.next().is_some()
    }

    fn waits_for_data(&self, now: Instant, idle: Duration, start_wait: Duration) -> bool {
        let wait = if self.started() { idle } else { start_wait };
        self.queue.is_empty() && !self.end_reported && now.duration_since(self.last_arrival) < wait
    }
}

/// The buffers of all assigned partitions.
/// Where a released record was read.
#[derive(Debug, Clone, Copy)]
pub struct Position<'a> {
    pub topic: &'a Arc<str>,
    pub partition: i32,
    pub offset: i64,
}

impl Position<'_> {
    /// The partition as the engine numbers its sources.
    pub fn index(&self) -> u32 {
        u32::try_from(self.partition).unwrap_or_default()
    }
}

/// A partition's head record: its time, and the partition's slot.
type Head = (i64, usize);

/// How long a partition that never sent a record nor reached its end is waited for.
pub const START_WAIT: Duration = Duration::from_secs(10);

pub struct Merge {
    pub partitions: Vec<Partition>,
    buffered_bytes: usize,
    max_buffered_bytes: usize,
    idle: Duration,
    /// How long a partition that never sent anything is waited for.
    pub start_wait: Duration,
    /// The slot of the last record pushed (records of one partition come in runs).
    last_slot: usize,
    /// Records handed on since the start, across rebalances.
    pub released_total: u64,
    /// Records between two commit checkpoints of a partition.
    pub checkpoint_every: u32,
}

impl Merge {
    pub fn new(max_buffered_bytes: usize, idle: Duration) -> Self {
        Merge {
            partitions: Vec::new(),
            buffered_bytes: 0,
            max_buffered_bytes,
            idle,
            start_wait: START_WAIT,
            last_slot: 0,
            released_total: 0,
            checkpoint_every: crate::offsets::CHECKPOINT_EVERY,
        }
    }

    /// Forgets every partition and what was buffered (after a rebalance).
    pub fn clear(&mut self) {
        self.partitions.clear();
        self.buffered_bytes = 0;
        self.last_slot = 0;
    }

    pub fn buffered_bytes(&self) -> usize {
        self.buffered_bytes
    }

    /// Every assigned partition reported its end and handed on all it had (none
    /// assigned: not caught up, there is nothing to be caught up with yet).
    pub fn caught_up(&self) -> bool {
        !self.partitions.is_empty() && self.partitions.iter().all(Partition::at_end)
    }

    /// Where the partition is in `partitions`, if it is one of this merge's.
    fn find(&self, topic: &str, partition: i32) -> Option<usize> {
        self.partitions.iter().position(|p| p.is(topic, partition))
    }

    fn slot(&mut self, topic: &str, partition: i32, now: Instant) -> usize {
        let last = self.partitions.get(self.last_slot);
        if last.is_some_and(|p| p.is(topic, partition)) {
            return self.last_slot;
        }
        let slot = match self.find(topic, partition) {
            Some(slot) => slot,
            None => {
                let every = self.checkpoint_every;
                self.partitions
                    .push(Partition::new(topic.into(), partition, now, every));
                self.partitions.len() - 1
            }
        };
        self.last_slot = slot;
        slot
    }

    pub fn max_buffered_bytes(&self) -> usize {
        self.max_buffered_bytes
    }

    /// Bytes buffered for one partition and not yet handed on.
    pub fn buffered_of(&self, topic: &str, partition: i32) -> usize {
        self.find(topic, partition).map_or(0, |slot| {
            let p = &self.partitions[slot];
            p.bytes.len() - p.consumed
        })
    }

    /// The client reached the end of this partition (see `reached_end`).
    pub fn reached_end_of(&mut self, topic: &str, partition: i32) {
        if let Some(slot) = self.find(topic, partition) {
            self.partitions[slot].end_reported = true;
        }
    }

    /// Whether the partition is one of this merge's.
    pub fn knows(&self, topic: &str, partition: i32) -> bool {
        self.find(topic, partition).is_some()
    }

    /// Makes a partition known before its first record, so that it is waited for.
    pub fn assign(&mut self, topic: &str, partition: i32, now: Instant) {
        self.slot(topic, partition, now);
    }

    /// Buffers one record.
    pub fn push(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        time: Option<i64>,
        payload: &[u8],
        now: Instant,
    ) {
        let slot = self.slot(topic, partition, now);
        let p = &mut self.partitions[slot];
        if p.checkpoints.next().is_none() && p.queue.is_empty() {
            tracing::info!(topic, partition, offset, "reading from");
        }
        if p.queue.is_empty() {
            p.bytes.clear();
            p.consumed = 0;
        } else if p.consumed > (1 << 20) && p.consumed > p.bytes.len() / 2 {
            p.bytes.drain(..p.consumed);
            for b in &mut p.queue {
                b.start -= p.consumed;
            }
            p.consumed = 0;
        }
        let own = time.filter(|t| *t >= 0);
        let time = own.unwrap_or(p.last_time);
        p.last_time = time;
        p.queue.push_back(Buffered {
            offset,
            time,
            stamped: own.is_some(),
            start: p.bytes.len(),
            len: payload.len(),
        });
        p.bytes.extend_from_slice(payload);
        p.end_reported = false;
        p.last_arrival = now;
        self.buffered_bytes += payload.len();
    }

    /// The client reached the end of partition number `partition`: it has delivered
    /// everything before it, so once the buffered records are handed on, the merge
    /// need not wait for that partition. The client names the partition by number
    /// only: when several topics have one of that number, only those with nothing
    /// buffered are marked (a record still buffered may be another topic's end).
    pub fn reached_end(&mut self, partition: i32) {
        let named = self
            .partitions
            .iter()
            .filter(|p| p.partition == partition)
            .count();
        for p in &mut self.partitions {
            if p.partition == partition && (named == 1 || p.queue.is_empty()) {
                p.end_reported = true;
            }
        }
    }

    /// Hands records on in time order while that order is known (no partition is still
    /// expected to deliver an earlier one), or all of them with `flush`. `f` processes a
    /// record (its payload and own timestamp) and returns the event time the engine
    /// admitted it at, if it did, and whether to pause after it (the records left stay
    /// buffered).
    pub fn release(
        &mut self,
        now: Instant,
        flush: bool,
        mut f: impl FnMut(&[u8], Option<i64>, Position<'_>) -> (Option<EventTime>, bool),
    ) -> usize {
        let mut released = 0;
        loop {
            let full = self.buffered_bytes > self.max_buffered_bytes;
            // Released only to make room: a partition that waits may yet send earlier.
            let forced = !flush
                && self
                    .partitions
                    .iter()
                    .any(|p| p.waits_for_data(now, self.idle, self.start_wait));
            if forced && !full {
                return released;
            }
            let Some((slot, next)) = self.earliest() else {
                return released;
            };
            // A run: records of the earliest partition go on while they stay before the
            // next partition's head (with no partition waiting, nothing else can come
            // before them), without looking at every partition for each record.
            let max = self.max_buffered_bytes;
            let p = &mut self.partitions[slot];
            while let Some(b) = p.queue.front() {
                if next.is_some_and(|(t, other)| b.time > t || (b.time == t && other < slot)) {
                    break;
                }
                let b = p.queue.pop_front().expect("a head");
                let stamp = b.stamped.then_some(b.time);
                let position = Position {
                    topic: &p.topic,
                    partition: p.partition,
                    offset: b.offset,
                };
                let (admitted, pause) = f(&p.bytes[b.start..b.start + b.len], stamp, position);
                p.consumed = b.start + b.len;
                p.checkpoints.processed(b.offset, admitted);
                self.buffered_bytes -= b.len;
                released += 1;
                self.released_total += 1;
                if pause {
                    return released;
                }
                if forced && self.buffered_bytes <= max {
                    break;
                }
            }
        }
    }

    /// The partition whose head record is earliest (ties: the first assigned), and the
    /// time and slot of the earliest head among the others.
    fn earliest(&self) -> Option<(usize, Option<Head>)> {
        let (mut best, mut next): (Option<Head>, Option<Head>) = (None, None);
        for (slot, p) in self.partitions.iter().enumerate() {
            if let Some(t) = p.head_time() {
                if best.is_none_or(|(bt, _)| t < bt) {
                    next = best;
                    best = Some((t, slot));
                } else if next.is_none_or(|(nt, _)| t < nt) {
                    next = Some((t, slot));
                }
            }
        }
        best.map(|(_, slot)| (slot, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(m: &mut Merge, now: Instant, flush: bool) -> Vec<String> {
        let mut out = Vec::new();
        m.release(now, flush, |b, _, _| {
            out.push(String::from_utf8(b.to_vec()).unwrap());
            (None, false)
        });
        out
    }

    /// A merge of partitions 0 and 1 of `logs`, assigned `now`.
    fn two_partitions(buffer: usize, idle: Duration, now: Instant) -> Merge {
        let mut m = Merge::new(buffer, idle);
        m.assign("logs", 0, now);
        m.assign("logs", 1, now);
        m
    }

    #[test]
    fn interleaves_partitions_by_time_and_waits_for_an_empty_one() {
        let now = Instant::now();
        let mut m = two_partitions(1 << 20, Duration::from_secs(1), now);
        m.push("logs", 0, 0, Some(10), b"a10", now);
        m.push("logs", 0, 1, Some(30), b"a30", now);
        // Partition 1 has sent nothing yet: wait.
        assert!(drain(&mut m, now, false).is_empty());
        m.push("logs", 1, 0, Some(20), b"b20", now);
        // a10, b20 are safe; a30 must wait for partition 1's next record.
        assert_eq!(drain(&mut m, now, false), ["a10", "b20"]);
        m.reached_end(1);
        assert_eq!(drain(&mut m, now, false), ["a30"]);
        assert_eq!(m.buffered_bytes(), 0);
        let offsets: Vec<_> = m.partitions.iter().map(|p| p.checkpoints.next()).collect();
        assert_eq!(offsets, [Some(2), Some(1)]);
    }

    #[test]
    fn an_end_reported_behind_buffered_records_holds_once_they_are_handed_on() {
        let now = Instant::now();
        let mut m = two_partitions(1 << 20, Duration::from_secs(1), now);
        m.push("logs", 0, 0, Some(10), b"a10", now);
        // The client reports partition 0's end while a10 is still buffered here.
        m.reached_end(0);
        assert!(!m.partitions[0].at_end(), "a10 is not handed on yet");
        m.push("logs", 1, 0, Some(20), b"b20", now);
        // Partition 0 has nothing more to send: b20 need not wait the idle second.
        assert_eq!(drain(&mut m, now, false), ["a10", "b20"]);
        assert!(m.partitions[0].at_end());
        assert!(!m.caught_up(), "partition 1 has not reported its end");
        m.reached_end(1);
        assert!(m.caught_up());
        // A record after the end takes the mark back.
        m.push("logs", 0, 1, Some(30), b"a30", now);
        assert!(!m.partitions[0].at_end());
        assert!(!m.caught_up());
    }

    #[test]
    fn an_end_by_number_shared_by_two_topics_marks_only_the_empty_one() {
        let now = Instant::now();
        let mut m = Merge::new(1 << 20, Duration::from_secs(1));
        m.assign("a", 0, now);
        m.assign("b", 0, now);
        m.push("a", 0, 0, Some(10), b"a10", now);
        m.reached_end(0);
        // Which topic ended is unknown: a's buffered record may not be its last.
        assert_eq!(drain(&mut m, now, false), ["a10"]);
        assert!(!m.partitions[0].at_end());
        assert!(m.partitions[1].at_end());
    }

    #[test]
    fn a_partition_that_never_sent_anything_is_waited_for_longer_than_a_quiet_one() {
        let now = Instant::now();
        let mut m = two_partitions(1 << 20, Duration::from_millis(100), now);
        m.push("logs", 0, 0, Some(10), b"a10", now);
        // Partition 1 has not started (its first fetch may come seconds later).
        assert!(drain(&mut m, now + Duration::from_millis(150), false).is_empty());
        let later = now + m.start_wait;
        assert_eq!(drain(&mut m, later, false), ["a10"]);
        // Once it has sent a record, a quiet spell of `idle` is enough.
        m.push("logs", 1, 0, Some(20), b"b20", later);
        m.push("logs", 0, 1, Some(30), b"a30", later);
        assert_eq!(drain(&mut m, later, false), ["b20"]);
        assert_eq!(
            drain(&mut m, later + Duration::from_millis(150), false),
            ["a30"]
        );
    }

    #[test]
    fn an_idle_partition_or_full_buffers_stop_the_wait() {
        let now = Instant::now();
        let mut m = two_partitions(8, Duration::from_millis(100), now);
        // Partition 1 never sends anything: here it is waited for as long as a quiet one.
        m.start_wait = Duration::from_millis(100);
        m.push("logs", 0, 0, Some(10), b"a10", now);
        assert!(drain(&mut m, now, false).is_empty());
        assert_eq!(
            drain(&mut m, now + Duration::from_millis(150), false),
            ["a10"]
        );
        let later = now + Duration::from_millis(200);
        m.push("logs", 1, 0, Some(5), b"b5", later);
        m.push("logs", 1, 1, Some(6), b"b6....", later);
        // Over 8 bytes buffered: released although partition 0 just went quiet.
        m.push("logs", 0, 1, None, b"a-no-time", later);
        assert_eq!(drain(&mut m, later, false), ["b5", "b6....", "a-no-time"]);
    }

    /// With the job's default bound, a partition whose next fetch is seconds late holds
    /// the others back (a loaded broker, a backlog), and one that reported its end does
    /// not hold anything back.
    #[test]
    fn by_default_a_slow_fetch_is_waited_for_and_a_caught_up_partition_is_not() {
        let now = Instant::now();
        let idle = crate::KafkaConfig::new("-", vec![], "-").merge_idle;
        let mut m = two_partitions(1 << 20, idle, now);
        m.push("logs", 0, 0, Some(10), b"a10", now);
        m.push("logs", 1, 0, Some(20), b"b20", now);
        m.push("logs", 1, 1, Some(40), b"b40", now);
        assert_eq!(drain(&mut m, now, false), ["a10"]);
        // Partition 0's next records come 5 s later: nothing of partition 1 went ahead.
        let late = now + Duration::from_secs(5);
        assert!(drain(&mut m, late, false).is_empty());
        m.push("logs", 0, 1, Some(30), b"a30", late);
        assert_eq!(drain(&mut m, late, false), ["b20", "a30"]);
        // Caught up: partition 0 reports its end, and b40 goes on at once.
        m.reached_end(0);
        assert_eq!(drain(&mut m, late, false), ["b40"]);
    }

    proptest::proptest! {
        /// Partitions that all reported their end are released in time order, ties to
        /// the first assigned partition, each partition in offset order: what one record
        /// at a time from the earliest head gives, whatever runs the release takes.
        #[test]
        fn ended_partitions_come_out_in_time_order(
            steps in proptest::collection::vec(
                proptest::collection::vec(0i64..4, 0..30), 1..5),
            pause_every in 1usize..40,
        ) {
            let now = Instant::now();
            let mut m = Merge::new(1 << 20, Duration::from_secs(1));
            let mut expected = Vec::new();
            for (partition, deltas) in steps.iter().enumerate() {
                let partition = partition as i32;
                m.assign("logs", partition, now);
                let mut t = 0;
                for (offset, d) in deltas.iter().enumerate() {
                    t += d;
                    let name = format!("{partition}/{offset}");
                    m.push("logs", partition, offset as i64, Some(t), name.as_bytes(), now);
                    expected.push((t, partition, offset, name));
                }
                m.reached_end(partition);
            }
            expected.sort();
            let expected: Vec<String> = expected.into_iter().map(|e| e.3).collect();
            // Released in several calls, each paused after `pause_every` records.
            let mut out = Vec::new();
            loop {
                let mut n = 0;
                let released = m.release(now, false, |b, _, _| {
                    out.push(String::from_utf8(b.to_vec()).unwrap());
                    n += 1;
                    (None, n == pause_every)
                });
                if released == 0 {
                    break;
                }
            }
            proptest::prop_assert_eq!(out, expected);
            proptest::prop_assert_eq!(m.buffered_bytes(), 0);
        }

        /// With a partition still waiting, a full buffer releases only what brings it
        /// back under its size, earliest first.
        #[test]
        fn a_full_buffer_releases_just_enough(
            lens in proptest::collection::vec(1usize..20, 1..40),
            max in 0usize..200,
        ) {
            let now = Instant::now();
            let mut m = two_partitions(max, Duration::from_secs(1), now);
            for (offset, len) in lens.iter().enumerate() {
                m.push("logs", 0, offset as i64, Some(offset as i64), &vec![b'x'; *len], now);
            }
            // Partition 1 never sent anything: it is waited for.
            let total: usize = lens.iter().sum();
            let released = drain(&mut m, now, false).len();
            let left: usize = lens[released..].iter().sum();
            proptest::prop_assert!(left <= max || total <= max);
            if released > 0 {
                proptest::prop_assert!(left + lens[released - 1] > max, "released more than needed");
            } else {
                proptest::prop_assert!(total <= max);
            }
        }
    }
}
