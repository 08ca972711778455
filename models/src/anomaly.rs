//! Anomaly signals per template (and so per service): a template never seen before, once
//! the stream is past its warm-up, and a rate spike against the template's own event-time
//! baseline (an exponentially weighted mean of its per-bucket counts).

use crate::services::TemplateKey;
use rustc_hash::FxHashMap;
use std::time::Duration;

/// What is unusual about one event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    /// The first event of its template, after the warm-up.
    pub new_template: bool,
    /// Its template's count in the current bucket is far above its baseline.
    pub rate_spike: bool,
}

#[derive(Debug, Clone)]
pub struct AnomalyConfig {
    /// Templates first seen within this long of the stream's start are not "new".
    pub warmup: Duration,
    pub bucket: Duration,
    /// A bucket at this many times the baseline is a spike...
    pub spike_factor: f64,
    /// ...when it also holds at least this many events.
    pub spike_min: u32,
    /// Weight of the newest bucket in the baseline.
    pub alpha: f64,
    /// Buckets seen before a template has a baseline.
    pub min_history: u32,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        AnomalyConfig {
            warmup: Duration::from_secs(600),
            bucket: Duration::from_secs(60),
            spike_factor: 5.0,
            spike_min: 10,
            alpha: 0.3,
            min_history: 3,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Rate {
    bucket: i64,
    count: u32,
    baseline: f64,
    history: u32,
}

#[derive(Debug)]
pub struct Detector {
    config: AnomalyConfig,
    started: Option<i64>,
    rates: FxHashMap<TemplateKey, Rate>,
}

impl Detector {
    pub fn new(config: AnomalyConfig) -> Self {
        Detector {
            config,
            started: None,
            rates: FxHashMap::default(),
        }
    }

    /// Counts one event of `template` at `at_nanos`; `new` says it created the template.
    pub fn observe(&mut self, template: TemplateKey, at_nanos: i64, new: bool) -> Flags {
        let c = &self.config;
        let started = *self.started.get_or_insert(at_nanos);
        let warm = at_nanos.saturating_sub(started) >= c.warmup.as_nanos() as i64;
        let bucket = at_nanos.div_euclid(c.bucket.as_nanos().max(1) as i64);
        let rate = self.rates.entry(template).or_insert(Rate {
            bucket,
            count: 0,
            baseline: 0.0,
            history: 0,
        });
        if bucket > rate.bucket {
            let idle = (bucket - rate.bucket - 1).min(1_000) as i32;
            rate.baseline = if rate.history == 0 {
                f64::from(rate.count)
            } else {
                c.alpha * f64::from(rate.count) + (1.0 - c.alpha) * rate.baseline
            } * (1.0 - c.alpha).powi(idle);
            rate.history += 1 + idle as u32;
            rate.bucket = bucket;
            rate.count = 0;
        }
        rate.count += 1;
        Flags {
            new_template: new && warm,
            rate_spike: rate.history >= c.min_history
                && rate.count >= c.spike_min
                && f64::from(rate.count) >= c.spike_factor * rate.baseline.max(1.0),
        }
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
        assert!(!d.observe(key(1), 11 * MIN + 1, false).new_template);
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
}
