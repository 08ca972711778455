//! Event time: the newest timestamp seen, the watermark that trails it by the allowed
//! lateness, and the checks that keep late and far-future records out.

use logheal_parsers::EventTime;
use std::time::Duration;

/// Why a record's timestamp is not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeRejection {
    /// Older than the watermark: its windows may already be closed.
    Late,
    /// Further ahead of the wall clock than the allowed skew: a broken clock or unit.
    Future,
}

/// Tracks event time for one stream.
#[derive(Debug, Clone)]
pub struct EventClock {
    newest: EventTime,
    lateness: Duration,
    /// Latest acceptable event time (wall clock + skew), fixed when the clock is made.
    horizon: EventTime,
}

impl EventClock {
    /// `lateness`: how far behind the newest record a record may be and still count.
    /// `horizon`: records stamped after this are rejected as far-future.
    pub fn new(lateness: Duration, horizon: EventTime) -> Self {
        EventClock {
            newest: EventTime::MIN,
            lateness,
            horizon,
        }
    }

    /// Moves the far-future limit (live mode follows the wall clock).
    pub fn set_horizon(&mut self, horizon: EventTime) {
        self.horizon = horizon;
    }

    /// The newest event time seen (`EventTime::MIN` before any).
    pub fn newest(&self) -> EventTime {
        self.newest
    }

    /// Event time minus the allowed lateness: windows ending before it are final.
    pub fn watermark(&self) -> EventTime {
        if self.newest == EventTime::MIN {
            return EventTime::MIN;
        }
        self.newest.minus(self.lateness)
    }

    /// Admits `t` (advancing the clock) or says why not.
    pub fn admit(&mut self, t: EventTime) -> Result<(), TimeRejection> {
        if t > self.horizon {
            return Err(TimeRejection::Future);
        }
        if t < self.watermark() {
            return Err(TimeRejection::Late);
        }
        self.newest = self.newest.max(t);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_and_future_records_are_rejected() {
        let s = |n: i64| EventTime(n * 1_000_000_000);
        let mut c = EventClock::new(Duration::from_secs(10), s(1000));
        assert_eq!(c.watermark(), EventTime::MIN);
        assert_eq!(c.admit(s(100)), Ok(()));
        assert_eq!(c.admit(s(95)), Ok(()), "within lateness");
        assert_eq!(c.newest(), s(100));
        assert_eq!(c.admit(s(89)), Err(TimeRejection::Late));
        assert_eq!(c.admit(s(1001)), Err(TimeRejection::Future));
        assert_eq!(c.admit(s(200)), Ok(()));
        assert_eq!(c.watermark(), s(190));
    }
}
