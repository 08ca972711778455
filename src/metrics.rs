//! The live job's Prometheus metrics (`GET /metrics`): counters that mirror the engine's
//! statistics, brought up to date once a second (never per line), the consumer's
//! gauges, and the recovery SLIs (time to detect, act and restore) per rule.

use logheal_kafka::source::Source;
use logheal_pipeline::action::{Attempt, Outcome};
use logheal_pipeline::incident::IncidentState;
use logheal_pipeline::{Engine, SkipReason, Stats};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BoundLabel {
    pub bound: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabel {
    pub rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleOutcomeLabel {
    pub rule: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleStateLabel {
    pub rule: String,
    pub state: &'static str,
}

/// How an executed action can end (`Outcome::name`).
const OUTCOMES: [&str; 5] = [
    "succeeded",
    "not_configured",
    "rejected",
    "gave_up",
    "circuit_open",
];

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// What the endpoints expose. Counters that mirror the engine's statistics are brought
/// up to date once a second (`observe`), never per line.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    ready: Arc<AtomicBool>,
    reloads: Family<ResultLabel, Counter>,
    lines: Counter,
    parsed: Counter,
    transport_timed: Counter,
    skipped: Family<ReasonLabel, Counter>,
    transitions: Counter,
    actions: Counter,
    incidents: Family<StateLabel, Gauge>,
    attempts: Family<ResultLabel, Counter>,
    outcomes: Family<ResultLabel, Counter>,
    latency: Histogram,
    lag: Gauge,
    rebalances: Gauge,
    consumer_errors: Gauge,
    answered_from_ledger: Gauge,
    held: Counter,
    sources: Gauge,
    lagging_sources: Gauge,
    untracked: Counter,
    continuations: Counter,
    bound_used: Family<BoundLabel, Gauge>,
    bound_limit: Family<BoundLabel, Gauge>,
    bound_overflow: Family<BoundLabel, Counter>,
    withheld: Counter,
    brake: Gauge,
    silenced: Counter,
    time_to_detect: HistogramFamily<RuleLabel>,
    time_to_act: HistogramFamily<RuleLabel>,
    time_to_restore: HistogramFamily<RuleLabel>,
    escalations: Family<RuleLabel, Counter>,
    rule_actions: Family<RuleOutcomeLabel, Counter>,
    closed: Family<RuleStateLabel, Counter>,
    selected: Family<RuleLabel, Counter>,
    decision: Histogram,
    seen: Arc<Mutex<Stats>>,
    seen_selected: Arc<Mutex<std::collections::HashMap<Arc<str>, u64>>>,
}

/// Buckets: event time from the first selected event to CONFIRMED (1 s .. 68 min).
fn detect_buckets() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 13))
}

/// Buckets: wall time from CONFIRMED to a receiver's first 2xx (10 ms .. 82 s).
fn act_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 14))
}

/// Buckets: event time from CONFIRMED to RESTORED (10 s .. 11 h).
fn restore_buckets() -> Histogram {
    Histogram::new(exponential_buckets(10.0, 2.0, 13))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            registry: Arc::new(Registry::default()),
            ready: Arc::new(AtomicBool::new(false)),
            reloads: Family::default(),
            lines: Counter::default(),
            parsed: Counter::default(),
            transport_timed: Counter::default(),
            skipped: Family::default(),
            transitions: Counter::default(),
            actions: Counter::default(),
            incidents: Family::default(),
            attempts: Family::default(),
            outcomes: Family::default(),
            latency: Histogram::new(exponential_buckets(0.005, 2.0, 12)),
            lag: Gauge::default(),
            rebalances: Gauge::default(),
            consumer_errors: Gauge::default(),
            answered_from_ledger: Gauge::default(),
            held: Counter::default(),
            sources: Gauge::default(),
            lagging_sources: Gauge::default(),
            untracked: Counter::default(),
            continuations: Counter::default(),
            bound_used: Family::default(),
            bound_limit: Family::default(),
            bound_overflow: Family::default(),
            withheld: Counter::default(),
            brake: Gauge::default(),
            silenced: Counter::default(),
            time_to_detect: Family::new_with_constructor(detect_buckets),
            time_to_act: Family::new_with_constructor(act_buckets),
            time_to_restore: Family::new_with_constructor(restore_buckets),
            escalations: Family::default(),
            rule_actions: Family::default(),
            closed: Family::default(),
            selected: Family::default(),
            // Wall time from a record's arrival to its decision's record (1 ms .. 4 s).
            decision: Histogram::new(exponential_buckets(0.001, 2.0, 13)),
            seen: Arc::default(),
            seen_selected: Arc::default(),
        };
        let r = &mut registry;
        r.register(
            "logheal_rule_reloads",
            "Rule reloads by result",
            m.reloads.clone(),
        );
        r.register("logheal_lines", "Lines (records) consumed", m.lines.clone());
        r.register(
            "logheal_records_held",
            "Records held for being far ahead of the other sources (admitted later, or skipped as ahead)",
            m.held.clone(),
        );
        r.register(
            "logheal_time_sources",
            "Sources of event time tracked (a service within a partition; at most 16384)",
            m.sources.clone(),
        );
        r.register(
            "logheal_time_lagging_sources",
            "Sources whose records arrive later than the lateness, holding time back",
            m.lagging_sources.clone(),
        );
        r.register(
            "logheal_time_untracked_records",
            "Records of sources past the cap of 16384 (admitted, never holding time back)",
            m.untracked.clone(),
        );
        r.register(
            "logheal_stack_trace_lines",
            "Stack-trace lines counted with the record before them",
            m.continuations.clone(),
        );
        r.register(
            "logheal_lines_parsed",
            "Lines parsed into events",
            m.parsed.clone(),
        );
        r.register(
            "logheal_lines_timed_by_kafka",
            "Lines parsed into events that name no time, timed by their Kafka timestamp",
            m.transport_timed.clone(),
        );
        r.register(
            "logheal_lines_skipped",
            "Lines skipped, by reason",
            m.skipped.clone(),
        );
        r.register(
            "logheal_transitions",
            "Incident state transitions",
            m.transitions.clone(),
        );
        r.register(
            "logheal_actions",
            "Actions that came due",
            m.actions.clone(),
        );
        r.register(
            "logheal_incidents",
            "Live incidents by state",
            m.incidents.clone(),
        );
        r.register(
            "logheal_action_attempts",
            "HTTP attempts by result (2xx or the failure)",
            m.attempts.clone(),
        );
        r.register(
            "logheal_action_outcomes",
            "Final action outcomes",
            m.outcomes.clone(),
        );
        r.register(
            "logheal_action_attempt_seconds",
            "Latency of HTTP attempts",
            m.latency.clone(),
        );
        r.register(
            "logheal_consumer_lag",
            "Records behind the high watermarks of the assigned partitions",
            m.lag.clone(),
        );
        r.register(
            "logheal_consumer_rebalances",
            "Consumer group rebalances seen",
            m.rebalances.clone(),
        );
        r.register(
            "logheal_consumer_errors",
            "Errors reported by the Kafka client",
            m.consumer_errors.clone(),
        );
        r.register(
            "logheal_actions_answered_from_ledger",
            "Actions a replay asked for again, answered from the ledger",
            m.answered_from_ledger.clone(),
        );
        r.register(
            "logheal_bound_used",
            "What the job holds of each bounded kind of state: services, traces (in the rule holding most; the cap is per rule), time_sources",
            m.bound_used.clone(),
        );
        r.register(
            "logheal_bound_limit",
            "The cap of each bounded kind of state",
            m.bound_limit.clone(),
        );
        r.register(
            "logheal_bound_overflow",
            "What happened past a cap: records of services over the cap, traces evicted (storm: of a storming service), templates evicted, records of untracked time sources, chain traces a decider forgot early",
            m.bound_overflow.clone(),
        );
        r.register(
            "logheal_actions_withheld",
            "Actions not called: a rule's remediation budget was spent, or the brake was on",
            m.withheld.clone(),
        );
        r.register(
            "logheal_brake",
            "1 while the brake is on (too many incidents confirmed: every action waits for humans)",
            m.brake.clone(),
        );
        r.register(
            "logheal_actions_silenced",
            "Actions not called because a silence covered their incident",
            m.silenced.clone(),
        );
        r.register(
            "logheal_time_to_detect_seconds",
            "Recovery SLI, per rule: event time from an incident's first selected event to CONFIRMED",
            m.time_to_detect.clone(),
        );
        r.register(
            "logheal_time_to_act_seconds",
            "Recovery SLI, per rule: wall time from CONFIRMED to a receiver's first 2xx",
            m.time_to_act.clone(),
        );
        r.register(
            "logheal_time_to_restore_seconds",
            "Recovery SLI, per rule: event time from CONFIRMED to RESTORED",
            m.time_to_restore.clone(),
        );
        r.register(
            "logheal_escalations",
            "Incidents escalated to humans, per rule",
            m.escalations.clone(),
        );
        r.register(
            "logheal_rule_actions",
            "Actions per rule by how they ended (succeeded, rejected, gave_up, circuit_open, not_configured, silenced, cancelled)",
            m.rule_actions.clone(),
        );
        r.register(
            "logheal_incidents_closed",
            "Incidents closed, per rule and final state (RESTORED; NORMAL: never confirmed)",
            m.closed.clone(),
        );
        r.register(
            "logheal_rule_selected_events",
            "Events each rule selected",
            m.selected.clone(),
        );
        r.register(
            "logheal_decision_seconds",
            "Wall time from the arrival of the input that decided something to the decision's record",
            m.decision.clone(),
        );
        // Series that exist from the start at 0, so that dashboards and `increase()`
        // alerts see them before the first event.
        for result in ["success", "failure"] {
            let _ = m.reloads.get_or_create(&ResultLabel { result });
        }
        for result in ["2xx", "4xx", "5xx", "error"] {
            let _ = m.attempts.get_or_create(&ResultLabel { result });
        }
        for result in OUTCOMES {
            let _ = m.outcomes.get_or_create(&ResultLabel { result });
        }
        for reason in SkipReason::all() {
            let _ = m.skipped.get_or_create(&ReasonLabel {
                reason: reason.name(),
            });
        }
        for bound in [
            "services",
            "traces",
            "traces_storm",
            "templates",
            "time_sources",
            "chain_traces",
        ] {
            let _ = m.bound_overflow.get_or_create(&BoundLabel { bound });
        }
        Metrics {
            registry: Arc::new(registry),
            ..m
        }
    }

    /// Creates each rule's SLI series at 0 (at start and after a reload).
    pub fn declare_rules(&self, engine: &Engine) {
        for (rule, _) in engine.selected_by_rule() {
            let label = RuleLabel {
                rule: rule.to_string(),
            };
            let _ = self.time_to_detect.get_or_create(&label);
            let _ = self.time_to_act.get_or_create(&label);
            let _ = self.time_to_restore.get_or_create(&label);
            let _ = self.escalations.get_or_create(&label);
            let _ = self.selected.get_or_create(&label);
            for outcome in OUTCOMES.iter().chain(&["silenced", "cancelled"]) {
                let _ = self.rule_actions.get_or_create(&RuleOutcomeLabel {
                    rule: label.rule.clone(),
                    outcome: outcome.to_string(),
                });
            }
            for state in ["RESTORED", "NORMAL"] {
                let _ = self.closed.get_or_create(&RuleStateLabel {
                    rule: label.rule.clone(),
                    state,
                });
            }
        }
    }

    pub fn time_to_detect(&self, rule: &str, seconds: f64) {
        let label = RuleLabel { rule: rule.into() };
        self.time_to_detect.get_or_create(&label).observe(seconds);
    }

    pub fn time_to_act(&self, rule: &str, seconds: f64) {
        let label = RuleLabel { rule: rule.into() };
        self.time_to_act.get_or_create(&label).observe(seconds);
    }

    pub fn time_to_restore(&self, rule: &str, seconds: f64) {
        let label = RuleLabel { rule: rule.into() };
        self.time_to_restore.get_or_create(&label).observe(seconds);
    }

    pub fn escalated(&self, rule: &str) {
        let label = RuleLabel { rule: rule.into() };
        self.escalations.get_or_create(&label).inc();
    }

    pub fn action_ended(&self, rule: &str, outcome: &str) {
        let label = RuleOutcomeLabel {
            rule: rule.into(),
            outcome: outcome.into(),
        };
        self.rule_actions.get_or_create(&label).inc();
    }

    pub fn incident_closed(&self, rule: &str, state: &'static str) {
        let label = RuleStateLabel {
            rule: rule.into(),
            state,
        };
        self.closed.get_or_create(&label).inc();
    }

    /// A decision's record went out `seconds` after its input arrived.
    pub fn decided(&self, seconds: f64) {
        self.decision.observe(seconds);
    }

    /// Caps of the bounded state, as configured (`logheal_bound_limit`).
    pub fn set_limits(&self, limits: &[(&'static str, u64)]) {
        for (bound, cap) in limits {
            self.bound_limit
                .get_or_create(&BoundLabel { bound })
                .set(*cap as i64);
        }
    }

    pub fn reloaded(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.reloads.get_or_create(&ResultLabel { result }).inc();
    }

    /// `/readyz` answers 200 once the job consumes (after its state is restored).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether the job is consuming with its state restored (`/readyz`).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The metrics in the OpenMetrics text format (`/metrics`).
    pub fn encode(&self, out: &mut String) -> std::fmt::Result {
        prometheus_client::encoding::text::encode(out, &self.registry)
    }

    /// Brings the engine's counters and gauges up to date.
    pub fn observe(&self, engine: &Engine) {
        let live = engine.live_incidents();
        self.observe_parts(engine.stats(), &engine.selected_by_rule(), Some(&live));
    }

    /// The stages apart: input counters of the correlator (`stats`, `selected`), live
    /// incidents of the decider.
    pub fn observe_split(&self, stats: &Stats, selected: &[(Arc<str>, u64)], decider: &Engine) {
        let live = decider.live_incidents();
        self.observe_parts(stats.clone(), selected, Some(&live));
    }

    /// A correlator alone: its counters.
    pub fn observe_stats(&self, stats: &Stats) {
        self.observe_parts(stats.clone(), &[], None);
    }

    fn observe_parts(
        &self,
        now: Stats,
        selected: &[(Arc<str>, u64)],
        live: Option<&[(IncidentState, u64)]>,
    ) {
        let mut seen = self.seen.lock().expect("not poisoned");
        // A rebuilt engine starts again from zero: count from there.
        let delta = |new: u64, old: u64| if new >= old { new - old } else { new };
        self.lines.inc_by(delta(now.lines, seen.lines));
        self.parsed.inc_by(delta(now.parsed, seen.parsed));
        self.transport_timed
            .inc_by(delta(now.transport_timed, seen.transport_timed));
        self.transitions
            .inc_by(delta(now.transitions, seen.transitions));
        self.actions.inc_by(delta(now.actions, seen.actions));
        self.held.inc_by(delta(now.held, seen.held));
        self.untracked
            .inc_by(delta(now.untracked_records, seen.untracked_records));
        self.continuations
            .inc_by(delta(now.continuations, seen.continuations));
        self.withheld
            .inc_by(delta(now.actions_withheld, seen.actions_withheld));
        self.brake.set(i64::from(now.brake_on));
        self.silenced
            .inc_by(delta(now.actions_silenced, seen.actions_silenced));
        {
            let mut seen_selected = self.seen_selected.lock().expect("not poisoned");
            for (rule, n) in selected.iter().cloned() {
                let old = seen_selected.get(&rule).copied().unwrap_or(0);
                let label = RuleLabel {
                    rule: rule.to_string(),
                };
                // Created at 0 for a rule that never selects, so an alert can see it.
                self.selected.get_or_create(&label).inc_by(delta(n, old));
                seen_selected.insert(rule, n);
            }
        }
        let used = [
            ("services", now.services),
            ("traces", now.traces_live),
            ("time_sources", now.sources),
        ];
        for (bound, n) in used {
            self.bound_used
                .get_or_create(&BoundLabel { bound })
                .set(n as i64);
        }
        let overflow = [
            ("services", now.services_over_cap, seen.services_over_cap),
            ("traces", now.traces_evicted, seen.traces_evicted),
            (
                "traces_storm",
                now.traces_storm_evicted,
                seen.traces_storm_evicted,
            ),
            ("templates", now.templates_evicted, seen.templates_evicted),
            (
                "time_sources",
                now.untracked_records,
                seen.untracked_records,
            ),
            (
                "chain_traces",
                now.chain_traces_forgotten,
                seen.chain_traces_forgotten,
            ),
        ];
        for (bound, new, old) in overflow {
            let n = delta(new, old);
            if n > 0 {
                self.bound_overflow
                    .get_or_create(&BoundLabel { bound })
                    .inc_by(n);
            }
        }
        self.sources.set(now.sources as i64);
        self.lagging_sources.set(now.lagging_sources as i64);
        for reason in SkipReason::all() {
            let n = delta(now.skipped(reason), seen.skipped(reason));
            if n > 0 {
                self.skipped
                    .get_or_create(&ReasonLabel {
                        reason: reason.name(),
                    })
                    .inc_by(n);
            }
        }
        // Every state, at 0 when no incident is in it (a series that vanishes would
        // read as "no data" rather than as none).
        for state in IncidentState::ALL {
            let Some(live) = live else { break };
            let n = live
                .iter()
                .find(|(s, _)| *s == state)
                .map_or(0, |(_, n)| *n);
            self.incidents
                .get_or_create(&StateLabel {
                    state: state.as_str(),
                })
                .set(n as i64);
        }
        *seen = now;
    }

    /// One HTTP attempt of an action.
    pub fn attempted(&self, attempt: &Attempt) {
        let result = match attempt.status {
            Some(s) if (200..300).contains(&s) => "2xx",
            Some(s) if (400..500).contains(&s) => "4xx",
            Some(_) => "5xx",
            None => "error",
        };
        self.attempts.get_or_create(&ResultLabel { result }).inc();
        self.latency.observe(attempt.latency.as_secs_f64());
    }

    /// An action's final outcome.
    pub fn finished(&self, outcome: &Outcome) {
        self.outcomes
            .get_or_create(&ResultLabel {
                result: outcome.name(),
            })
            .inc();
    }

    /// The consumer's gauges.
    pub fn observe_kafka(&self, source: &Source, answered_from_ledger: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.lag.set(source.shared.lag.load(Relaxed));
        self.rebalances.set(source.shared.rebalances.load(Relaxed));
        self.consumer_errors.set(source.errors as i64);
        self.answered_from_ledger.set(answered_from_ledger as i64);
    }
}
