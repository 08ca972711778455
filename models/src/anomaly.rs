//! Anomaly signals per template (and so per service): a template never seen before, once
//! the stream is past its warm-up, and a rate spike against the template's own event-time
//! baseline: the median of its counts in the stream's last [`BASELINE_BUCKETS`] buckets.
//! A median learns what a template usually does and ignores what it did in a few bursts:
//! an error seen only while something fails has a baseline of 0, so each return of that
//! failure is a spike, however often it happened before; a lasting change becomes the
//! baseline once it fills half the buckets. The count a spike is measured by slides: the
//! current bucket plus the prorated part of the previous one still within one bucket's
//! length, so a burst that straddles a boundary counts whole.
//!
//! Only buckets in which the stream had events count: a gap in the input (a job that was
//! down, a shipper that stalled) is not a quiet period, so it does not decay baselines
//! and make every template's return look like a spike.

use crate::services::TemplateKey;
use rustc_hash::FxHashMap;
use std::time::Duration;

/// What is unusual about one event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    /// Its template is new: first seen after the warm-up, less than `new_for` ago (every
    /// event of a new template, not only its first, so a burst of it is new).
    pub new_template: bool,
    /// Its template's count in the current bucket is far above its baseline.
    pub rate_spike: bool,
}

#[derive(Debug, Clone)]
pub struct AnomalyConfig {
    /// Templates first seen within this long of the stream's start are not "new".
    pub warmup: Duration,
    /// How long a template first seen after the warm-up stays new.
    pub new_for: Duration,
    pub bucket: Duration,
    /// A bucket at this many times the baseline is a spike...
    pub spike_factor: f64,
    /// ...when it also holds at least this many events.
    pub spike_min: u32,
    /// Buckets seen before a template has a baseline.
    pub min_history: u32,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        AnomalyConfig {
            warmup: Duration::from_secs(600),
            new_for: Duration::from_secs(600),
            bucket: Duration::from_secs(60),
            spike_factor: 5.0,
            spike_min: 5,
            min_history: 3,
        }
    }
}

/// How many of the stream's last buckets a template's baseline is the median of.
pub const BASELINE_BUCKETS: usize = 15;

/// A template's counts in the stream's last buckets, oldest overwritten first.
#[derive(Debug, Clone, Copy)]
struct Counts {
    ring: [u16; BASELINE_BUCKETS],
    len: u8,
    next: u8,
}

impl Counts {
    const EMPTY: Counts = Counts {
        ring: [0; BASELINE_BUCKETS],
        len: 0,
        next: 0,
    };

    fn push(&mut self, count: u32) {
        self.ring[usize::from(self.next)] = count.min(u32::from(u16::MAX)) as u16;
        self.next = ((usize::from(self.next) + 1) % BASELINE_BUCKETS) as u8;
        self.len = (usize::from(self.len) + 1).min(BASELINE_BUCKETS) as u8;
    }

    /// The median (the lower one of an even number of counts); 0 with none.
    fn median(&self) -> u16 {
        let mut sorted = self.ring;
        let held = &mut sorted[..usize::from(self.len)];
        held.sort_unstable();
        held.get(held.len().saturating_sub(1) / 2)
            .copied()
            .unwrap_or(0)
    }
}

#[derive(Debug, Clone, Copy)]
struct Rate {
    /// When the template was first seen, if that was after the warm-up.
    born_new: Option<i64>,
    bucket: i64,
    /// The stream's active-bucket number at `bucket`.
    active: u64,
    count: u32,
    /// The count of the bucket before `bucket`, when the template had events in it (a
    /// burst that straddles a bucket boundary is measured over the last bucket's length).
    previous: u32,
    /// Its counts in the stream's last buckets before `bucket`.
    counts: Counts,
    /// The median of `counts`.
    baseline: f64,
    history: u32,
}

impl Rate {
    /// Events in the last bucket's length up to `at_nanos` (the current bucket, plus
    /// the part of the previous one still inside that length, prorated).
    fn recent(&self, at_nanos: i64, bucket_nanos: i64) -> f64 {
        let into = at_nanos.rem_euclid(bucket_nanos) as f64 / bucket_nanos as f64;
        f64::from(self.count) + f64::from(self.previous) * (1.0 - into)
    }
}

impl Rate {
    /// Whether the template is new at `at_nanos`: first seen after the warm-up, less
    /// than `new_for` before.
    fn new_at(&self, new_for: Duration, at_nanos: i64) -> bool {
        self.born_new
            .is_some_and(|born| at_nanos.saturating_sub(born) < new_for.as_nanos() as i64)
    }
}

#[derive(Debug)]
pub struct Detector {
    config: AnomalyConfig,
    started: Option<i64>,
    /// The stream's newest bucket, and how many buckets had events so far.
    stream_bucket: i64,
    active: u64,
    rates: FxHashMap<TemplateKey, Rate>,
}

impl Detector {
    pub fn new(config: AnomalyConfig) -> Self {
        Detector {
            config,
            started: None,
            stream_bucket: i64::MIN,
            active: 0,
            rates: FxHashMap::default(),
        }
    }

    /// Counts one event of `template` at `at_nanos`; `new` says it created the template.
    pub fn observe(&mut self, template: TemplateKey, at_nanos: i64, new: bool) -> Flags {
        let c = &self.config;
        let started = *self.started.get_or_insert(at_nanos);
        let warm = at_nanos.saturating_sub(started) >= c.warmup.as_nanos() as i64;
        let bucket_nanos = c.bucket.as_nanos().max(1) as i64;
        let bucket = at_nanos.div_euclid(bucket_nanos);
        if bucket > self.stream_bucket {
            self.stream_bucket = bucket;
            self.active += 1;
        }
        let active = self.active;
        let rate = self.rates.entry(template).or_insert(Rate {
            born_new: (new && warm).then_some(at_nanos),
            bucket,
            active,
            count: 0,
            previous: 0,
            counts: Counts::EMPTY,
            baseline: 0.0,
            history: 0,
        });
        if bucket > rate.bucket {
            // Buckets the stream had events in and this template had none count as 0.
            // A template's counts start with its first bucket: one of the warm-up is
            // measured from what it did then, one first seen later from what it has
            // done since (it is new meanwhile).
            let idle = active.saturating_sub(rate.active + 1);
            rate.counts.push(rate.count);
            for _ in 0..idle.min(BASELINE_BUCKETS as u64) {
                rate.counts.push(0);
            }
            rate.baseline = f64::from(rate.counts.median());
            rate.history = rate.history.saturating_add(1 + idle.min(1_000) as u32);
            rate.previous = if bucket == rate.bucket + 1 {
                rate.count
            } else {
                0
            };
            rate.bucket = bucket;
            rate.active = active;
            rate.count = 0;
        }
        rate.count += 1;
        let recent = rate.recent(at_nanos, bucket_nanos);
        Flags {
            new_template: rate.new_at(c.new_for, at_nanos),
            rate_spike: rate.history >= c.min_history
                && recent >= f64::from(c.spike_min)
                && recent >= c.spike_factor * rate.baseline.max(1.0),
        }
    }

    /// Whether `template` is new at `at_nanos`: first seen after the warm-up, less than
    /// `new_for` before.
    pub fn is_new(&self, template: TemplateKey, at_nanos: i64) -> bool {
        self.rates
            .get(&template)
            .is_some_and(|rate| rate.new_at(self.config.new_for, at_nanos))
    }

    /// Why `template` is anomalous now, for a person: `new, first seen 120s before`, or
    /// `12 in 60s, 12× its median of 0/60s`; `None` if it is not.
    pub fn explain(&self, template: TemplateKey, at_nanos: i64) -> Option<String> {
        let rate = self.rates.get(&template)?;
        let c = &self.config;
        if let (Some(born), true) = (rate.born_new, rate.new_at(c.new_for, at_nanos)) {
            let age = at_nanos.saturating_sub(born);
            return Some(format!("new, first seen {}s before", age / 1_000_000_000));
        }
        let recent = rate.recent(at_nanos, c.bucket.as_nanos().max(1) as i64);
        (rate.history >= c.min_history && recent >= f64::from(c.spike_min)).then(|| {
            let per = c.bucket.as_secs();
            format!(
                "{recent:.0} in {per}s, {:.0}× its median of {}/{per}s",
                recent / rate.baseline.max(1.0),
                rate.baseline,
            )
        })
    }

    /// Forgets templates for which `live` is false (evicted by the miner).
    pub fn retain(&mut self, live: impl Fn(&TemplateKey) -> bool) {
        self.rates.retain(|k, _| live(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::miner::TemplateId;

    const MIN: i64 = 60_000_000_000;

    fn key(id: u32) -> TemplateKey {
        TemplateKey {
            service: 0,
            id: TemplateId(id),
        }
    }

    #[test]
    fn new_templates_count_only_after_the_warmup() {
        let mut d = Detector::new(AnomalyConfig::default());
        assert!(!d.observe(key(0), 0, true).new_template, "still warming up");
        assert!(d.observe(key(1), 11 * MIN, true).new_template);
        assert!(
            d.observe(key(1), 11 * MIN + 1, false).new_template,
            "a new template's burst is new"
        );
        assert!(
            !d.observe(key(1), 22 * MIN, false).new_template,
            "ten minutes later it is not new any more"
        );
        assert!(!d.observe(key(0), 11 * MIN, false).new_template);
    }

    #[test]
    fn a_burst_far_above_the_baseline_is_a_spike() {
        let mut d = Detector::new(AnomalyConfig::default());
        let mut spiked = false;
        for minute in 0..10 {
            for i in 0..4 {
                spiked |= d.observe(key(0), minute * MIN + i, false).rate_spike;
            }
        }
        assert!(!spiked, "a steady 4 per minute is normal");
        let burst: Vec<bool> = (0..30)
            .map(|i| d.observe(key(0), 10 * MIN + i, false).rate_spike)
            .collect();
        assert!(!burst[10], "11 events is below 5x the baseline of 4");
        assert!(burst[25], "26 events in a minute is a spike");
        // A quiet template's baseline decays, and a few events are never a spike.
        assert!(!d.observe(key(0), 100 * MIN, false).rate_spike);
    }

    #[test]
    fn an_error_seen_only_in_bursts_spikes_each_time_it_returns() {
        let mut d = Detector::new(AnomalyConfig::default());
        let other = key(9);
        let mut spikes = Vec::new();
        // Another template keeps the stream busy; key(0) bursts 8 times a minute for two
        // minutes every five minutes, four times over (a failure that keeps coming back).
        for minute in 0..40 {
            d.observe(other, minute * MIN, false);
            if minute >= 12 && minute % 5 < 2 {
                let spiked = (0..8)
                    .map(|i| d.observe(key(0), minute * MIN + 1 + i, false).rate_spike)
                    .fold(false, |a, b| a | b);
                spikes.push((minute, spiked));
            }
        }
        // Its first minute of each return is a spike: its usual count is 0.
        for (minute, spiked) in &spikes {
            if minute % 5 == 0 && *minute > 15 {
                assert!(spiked, "return at minute {minute}: {spikes:?}");
            }
        }
        // A lasting change is learned: once it fills half the buckets it is the baseline.
        let mut late = Vec::new();
        for minute in 40..60 {
            d.observe(other, minute * MIN, false);
            let spiked = (0..8)
                .map(|i| d.observe(key(0), minute * MIN + 1 + i, false).rate_spike)
                .fold(false, |a, b| a | b);
            late.push(spiked);
        }
        assert!(!late[12..].iter().any(|s| *s), "{late:?}");
    }

    #[test]
    fn a_burst_across_a_bucket_boundary_is_a_spike() {
        let mut d = Detector::new(AnomalyConfig::default());
        // A template seen once a minute, and another template keeping the stream busy.
        for minute in 0..10 {
            d.observe(key(0), minute * MIN, false);
            d.observe(key(1), minute * MIN + 1, false);
        }
        // Six in twelve seconds, three each side of 10:00: no bucket holds five.
        let second = MIN / 60;
        let burst: Vec<bool> = (0..6)
            .map(|i| {
                d.observe(key(0), 10 * MIN - 6 * second + i * 2 * second, false)
                    .rate_spike
            })
            .collect();
        assert!(burst[5], "{burst:?}");
        assert!(!burst[2], "three events are no spike");
        // A minute later the burst has slid out of the window.
        d.observe(key(1), 11 * MIN + 30 * second, false);
        assert!(!d.observe(key(0), 11 * MIN + 30 * second, false).rate_spike);
    }

    #[test]
    fn a_gap_in_the_input_does_not_decay_baselines() {
        let mut d = Detector::new(AnomalyConfig::default());
        let other = key(9);
        for minute in 0..10 {
            for i in 0..6 {
                d.observe(key(0), minute * MIN + i, false);
                d.observe(other, minute * MIN + 100 + i, false);
            }
        }
        // Twenty minutes of no input at all, then the usual rate again: no spike.
        let back: Vec<bool> = (0..12)
            .map(|i| d.observe(key(0), 30 * MIN + i, false).rate_spike)
            .collect();
        assert!(!back.iter().any(|s| *s), "{back:?}");
        // The stream went on without the template for twenty minutes: then it is a spike.
        let mut d2 = Detector::new(AnomalyConfig::default());
        for minute in 0..10 {
            for i in 0..6 {
                d2.observe(key(0), minute * MIN + i, false);
            }
        }
        for minute in 10..30 {
            d2.observe(other, minute * MIN, false);
        }
        let back: Vec<bool> = (0..12)
            .map(|i| d2.observe(key(0), 30 * MIN + i, false).rate_spike)
            .collect();
        assert!(back[11], "{back:?}");
    }
}
