//! Offsets that are safe to commit. A partition's committed offset is held back to the
//! first record a restarted consumer needs to rebuild the live state: checkpoints
//! remember, every so often, the greatest event time of all records before an offset,
//! and the commit position is the latest checkpoint before the engine's rewind point.

use logheal_parsers::EventTime;
use std::collections::VecDeque;

/// Records between two checkpoints of one partition, by default.
pub const CHECKPOINT_EVERY: u32 = 256;

pub struct Checkpoints {
    /// Records between two checkpoints.
    every: u32,
    /// (offset, greatest event time of the records before it), oldest first.
    marks: VecDeque<(i64, EventTime)>,
    newest: Option<EventTime>,
    since_mark: u32,
    next: Option<i64>,
}

impl Default for Checkpoints {
    fn default() -> Self {
        Checkpoints::every(CHECKPOINT_EVERY)
    }
}

impl Checkpoints {
    /// A checkpoint every `n` records (1: a restart re-reads exactly from the point,
    /// for sparse streams such as the signals topic, where 256 records span minutes).
    pub fn every(n: u32) -> Self {
        Checkpoints {
            every: n.max(1),
            marks: VecDeque::new(),
            newest: None,
            since_mark: 0,
            next: None,
        }
    }

    /// The record at `offset` was processed; the engine admitted it at `time`, if at all.
    pub fn processed(&mut self, offset: i64, time: Option<EventTime>) {
        if self.marks.is_empty() || self.since_mark >= self.every {
            self.marks
                .push_back((offset, self.newest.unwrap_or(EventTime::MIN)));
            self.since_mark = 0;
        }
        self.since_mark += 1;
        if let Some(t) = time {
            self.newest = Some(self.newest.map_or(t, |n| n.max(t)));
        }
        self.next = Some(offset + 1);
    }

    /// The offset after the last processed record.
    pub fn next(&self) -> Option<i64> {
        self.next
    }

    /// The offset to commit so that a restart re-reads every record at or after
    /// `point`; earlier checkpoints are forgotten. `None` before the first record.
    pub fn commit_position(&mut self, point: EventTime) -> Option<i64> {
        let next = self.next?;
        if self.newest.is_none_or(|n| n < point) {
            // Nothing processed here is needed again.
            self.marks.clear();
            self.since_mark = self.every;
            return Some(next);
        }
        while self.marks.len() > 1 && self.marks[1].1 < point {
            self.marks.pop_front();
        }
        self.marks.front().map(|m| m.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Option<EventTime> {
        Some(EventTime(s * 1_000_000_000))
    }

    #[test]
    fn commits_before_the_first_record_still_needed() {
        let mut c = Checkpoints::default();
        assert_eq!(c.commit_position(EventTime::MIN), None);
        for offset in 0..1000 {
            c.processed(offset, at(offset));
        }
        // Records from 600 s on are needed: the checkpoint at 512 is the last one whose
        // earlier records are all older than 600 s.
        assert_eq!(c.commit_position(at(600).unwrap()), Some(512));
        // The point never moves back, so the earlier checkpoint is gone for good.
        assert_eq!(c.commit_position(at(100).unwrap()), Some(512));
        // Everything older than the point: commit all.
        assert_eq!(c.commit_position(at(5000).unwrap()), Some(1000));
        // Records without an event time never hold the position back.
        c.processed(1000, None);
        assert_eq!(c.commit_position(at(5000).unwrap()), Some(1001));
        assert_eq!(c.next(), Some(1001));
    }
}
