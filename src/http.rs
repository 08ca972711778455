//! The live job's HTTP endpoints (127.0.0.1 unless configured): the incident pages
//! (`/incidents`, `/incidents/{id}`), the JSON API (`/api/v1/incidents[/{id}]`,
//! `/api/v1/silences[/{id}]`), `POST /-/reload`, `GET /healthz` (alive), `GET /readyz`
//! (consuming, state restored), and `GET /metrics` in Prometheus text format. Reads are
//! open; what changes state (reload, silences) needs the bearer token.

use crate::book::Book;
use crate::page;
use crate::run::{now_ms, Message, SilenceCommand};
use axum::extract::Path;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use logheal_kafka::source::Source;
use logheal_pipeline::action::{Attempt, Outcome};
use logheal_pipeline::incident::IncidentState;
use logheal_pipeline::silence::{self, Matcher, Silence, Silences};
use logheal_pipeline::{Engine, SkipReason, Stats};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};

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

/// What the incident pages and the API read, and where silence changes go.
#[derive(Clone)]
pub struct Operator {
    pub book: Book,
    /// Written only by the job's loop (after the ledger has the change).
    pub silences: Arc<Mutex<Silences>>,
    pub commands: mpsc::SyncSender<Message>,
}

#[derive(Clone)]
struct Shared {
    metrics: Metrics,
    reload: mpsc::SyncSender<()>,
    /// The bearer token writing endpoints need (`LOGHEAL_API_TOKEN`); none: they are off.
    token: Option<Arc<str>>,
    operator: Operator,
}

/// Serves on `listen`; returns the bound address. `reload` receives a unit per
/// `POST /-/reload`.
pub fn serve(
    runtime: &tokio::runtime::Runtime,
    listen: SocketAddr,
    metrics: Metrics,
    reload: mpsc::SyncSender<()>,
    operator: Operator,
) -> std::io::Result<SocketAddr> {
    let listener = runtime.block_on(tokio::net::TcpListener::bind(listen))?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new()
        .route(
            "/",
            get(|| async { axum::response::Redirect::to("/incidents") }),
        )
        .route("/incidents", get(incidents_page))
        .route("/incidents/{*id}", get(incident_page))
        .route("/api/v1/incidents", get(incidents_json))
        .route("/api/v1/incidents/{*id}", get(incident_json))
        .route("/api/v1/silences", get(silences_json).post(add_silence))
        .route(
            "/api/v1/silences/{id}",
            get(silence_json).delete(expire_silence),
        )
        .route("/-/reload", post(ask_reload))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render))
        .with_state(Shared {
            metrics,
            reload,
            token: std::env::var("LOGHEAL_API_TOKEN")
                .ok()
                .filter(|t| !t.is_empty())
                .map(Into::into),
            operator,
        });
    let listener = Bounded {
        inner: listener,
        open: Arc::default(),
        next: 0,
    };
    runtime.spawn(async move { axum::serve(listener, app).await });
    Ok(bound)
}

/// Open connections, oldest first: an id and a handle on the socket to shut it.
type OpenConnections = Arc<Mutex<std::collections::VecDeque<(u64, std::net::TcpStream)>>>;

/// Connections served at once; a new one past this closes the oldest.
const MAX_CONNECTIONS: usize = 128;
/// A connection that sends nothing for this long is closed.
const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The listener with bounds: at most `MAX_CONNECTIONS` open (a new connection closes
/// the oldest, so a probe always gets in however many connections a client leaves
/// open), and each closed after `IDLE_TIMEOUT` without a byte from its client. Without
/// them, a thousand idle connections took every descriptor and `/healthz` timed out.
struct Bounded {
    inner: tokio::net::TcpListener,
    open: OpenConnections,
    next: u64,
}

impl axum::serve::Listener for Bounded {
    type Io = Connection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Connection, SocketAddr) {
        loop {
            let (stream, addr) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(_) => {
                    // Out of descriptors or similar: wait a moment instead of spinning.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(handle) = stream
                .into_std()
                .and_then(|s| s.try_clone().map(|c| (s, c)))
            else {
                continue;
            };
            let (std_stream, shutter) = handle;
            let Ok(stream) = tokio::net::TcpStream::from_std(std_stream) else {
                continue;
            };
            self.next += 1;
            let id = self.next;
            {
                let mut open = self.open.lock().expect("not poisoned");
                while open.len() >= MAX_CONNECTIONS {
                    if let Some((_, oldest)) = open.pop_front() {
                        let _ = oldest.shutdown(std::net::Shutdown::Both);
                    }
                }
                open.push_back((id, shutter));
            }
            let connection = Connection {
                stream,
                id,
                open: self.open.clone(),
                idle: Box::pin(tokio::time::sleep(IDLE_TIMEOUT)),
            };
            return (connection, addr);
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A served connection: reads end when its client has been idle too long; dropping it
/// takes it off the open list.
struct Connection {
    stream: tokio::net::TcpStream,
    id: u64,
    open: OpenConnections,
    idle: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Ok(mut open) = self.open.lock() {
            open.retain(|(id, _)| *id != self.id);
        }
    }
}

impl tokio::io::AsyncRead for Connection {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let before = buf.filled().len();
        match std::pin::Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    let deadline = tokio::time::Instant::now() + IDLE_TIMEOUT;
                    self.idle.as_mut().reset(deadline);
                }
                Poll::Ready(result)
            }
            Poll::Pending => match std::future::Future::poll(self.idle.as_mut(), cx) {
                Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "idle connection closed",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl tokio::io::AsyncWrite for Connection {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

async fn readyz(State(s): State<Shared>) -> (StatusCode, &'static str) {
    if s.metrics.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: restoring state\n",
        )
    }
}

/// Whether a writing request carries the token; `Err` is the answer when it does not.
fn authorised(
    s: &Shared,
    headers: &axum::http::HeaderMap,
) -> Result<(), (StatusCode, &'static str)> {
    let Some(token) = &s.token else {
        return Err((
            StatusCode::FORBIDDEN,
            "writing endpoints are off: set LOGHEAL_API_TOKEN to enable them\n",
        ));
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Compared in constant time: the token is a secret.
    let same = given.is_some_and(|g| {
        g.len() == token.len()
            && g.bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if same {
        Ok(())
    } else {
        Err((StatusCode::UNAUTHORIZED, "a bearer token is needed\n"))
    }
}

async fn ask_reload(
    State(s): State<Shared>,
    headers: axum::http::HeaderMap,
) -> (StatusCode, &'static str) {
    if let Err(refused) = authorised(&s, &headers) {
        return refused;
    }
    match s.reload.try_send(()) {
        Ok(()) => (StatusCode::ACCEPTED, "reload requested\n"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "busy, try again\n"),
    }
}

async fn render(
    State(s): State<Shared>,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let mut body = String::new();
    match encode(&mut body, &s.metrics.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                "content-type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "text/plain")],
            String::new(),
        ),
    }
}

impl Operator {
    fn silences_now(&self) -> (Vec<Silence>, Vec<Silence>, i64) {
        let now = now_ms();
        let store = self.silences.lock().expect("not poisoned");
        (store.active(now), store.list(now), now)
    }
}

async fn incidents_page(State(s): State<Shared>) -> Html<String> {
    let (active, all, now) = s.operator.silences_now();
    Html(page::list(&s.operator.book.list(&active), &all, now))
}

async fn incident_page(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    let (active, ..) = s.operator.silences_now();
    match s.operator.book.get(&id, &active) {
        Some(p) => Html(page::incident(&p)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Html(page::not_found(&format!("Incident {id}"))),
        )
            .into_response(),
    }
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    json(status, serde_json::json!({ "error": message.to_string() }))
}

async fn incidents_json(State(s): State<Shared>) -> Response {
    let (active, ..) = s.operator.silences_now();
    let pages = s.operator.book.list(&active);
    json(
        StatusCode::OK,
        serde_json::json!({
            "incidents": pages,
            "open": pages.iter().filter(|p| p.open).count(),
            "dropped": s.operator.book.dropped(),
        }),
    )
}

async fn incident_json(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    let (active, ..) = s.operator.silences_now();
    match s.operator.book.get(&id, &active) {
        Some(p) => json(
            StatusCode::OK,
            serde_json::to_value(p).expect("pages serialise"),
        ),
        None => error(StatusCode::NOT_FOUND, format!("no incident {id}")),
    }
}

/// A silence as the API shows it: the stored form plus readable times and status.
pub fn silence_view(s: &Silence, now: i64) -> serde_json::Value {
    serde_json::json!({
        "id": s.id,
        "matchers": s.matchers,
        "match": s.describe(),
        "starts_at": page::rfc3339_ms(s.starts_at),
        "ends_at": page::rfc3339_ms(s.ends_at),
        "status": silence::status(s, now),
        "comment": s.comment,
        "created_by": s.created_by,
    })
}

async fn silences_json(State(s): State<Shared>) -> Response {
    let (_, all, now) = s.operator.silences_now();
    let list: Vec<_> = all.iter().map(|x| silence_view(x, now)).collect();
    json(StatusCode::OK, serde_json::json!({ "silences": list }))
}

async fn silence_json(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    let now = now_ms();
    let store = s.operator.silences.lock().expect("not poisoned");
    match store.get(&id) {
        Some(x) => json(StatusCode::OK, silence_view(x, now)),
        None => error(StatusCode::NOT_FOUND, format!("no silence {id}")),
    }
}

/// `POST /api/v1/silences`: `{"matchers": ["rule=x", "root_service=~pay.*"],
/// "duration": "2h" | "ends_at": RFC 3339, "starts_at": RFC 3339 (default now),
/// "comment": "...", "created_by": "..."}`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSilence {
    matchers: Vec<String>,
    duration: Option<String>,
    starts_at: Option<String>,
    ends_at: Option<String>,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    created_by: String,
}

/// Bodies larger than this are refused before parsing.
const MAX_BODY: usize = 16 << 10;

fn parse_silence(body: &[u8], now: i64) -> Result<Silence, String> {
    if body.len() > MAX_BODY {
        return Err(format!("the body is larger than {MAX_BODY} bytes"));
    }
    let new: NewSilence = serde_json::from_slice(body).map_err(|e| format!("bad silence: {e}"))?;
    let time = |text: &str| {
        chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| t.timestamp_millis())
            .map_err(|e| format!("{text}: {e}"))
    };
    let starts_at = match &new.starts_at {
        Some(t) => time(t)?,
        None => now,
    };
    let ends_at = match (&new.duration, &new.ends_at) {
        (Some(d), None) => {
            let d = humantime::parse_duration(d).map_err(|e| format!("duration {d}: {e}"))?;
            starts_at.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        }
        (None, Some(t)) => time(t)?,
        _ => return Err("give either duration or ends_at".into()),
    };
    let matchers = new
        .matchers
        .iter()
        .map(|m| Matcher::parse(m))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    Silence {
        id: new_silence_id(now),
        matchers,
        starts_at,
        ends_at,
        comment: new.comment,
        created_by: new.created_by,
    }
    .validated()
    .map_err(|e| e.to_string())
}

/// A fresh silence id: the time and 48 random bits, in hex.
fn new_silence_id(now: i64) -> String {
    format!("{now:x}-{:012x}", fastrand::u64(..) >> 16)
}

/// Hands a silence change to the job's loop and waits for its answer (which comes
/// after the ledger has the change, in Kafka mode).
async fn command(s: &Shared, command: SilenceCommand) -> Result<Silence, Response> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let commands = s.operator.commands.clone();
    let sent = tokio::task::spawn_blocking(move || commands.send(Message::Silence(command, tx)))
        .await
        .map(|r| r.is_ok())
        .unwrap_or(false);
    if !sent {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the job is stopping",
        ));
    }
    match tokio::time::timeout(std::time::Duration::from_secs(30), rx).await {
        Ok(Ok(Ok(silence))) => Ok(silence),
        Ok(Ok(Err(e))) => Err(error(StatusCode::BAD_REQUEST, e)),
        _ => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the job did not answer in time",
        )),
    }
}

async fn add_silence(
    State(s): State<Shared>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err((status, text)) = authorised(&s, &headers) {
        return error(status, text.trim());
    }
    let now = now_ms();
    let silence = match parse_silence(&body, now) {
        Ok(silence) => silence,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match command(&s, SilenceCommand::Add(silence)).await {
        Ok(silence) => json(StatusCode::CREATED, silence_view(&silence, now_ms())),
        Err(response) => response,
    }
}

async fn expire_silence(
    State(s): State<Shared>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err((status, text)) = authorised(&s, &headers) {
        return error(status, text.trim());
    }
    if s.operator
        .silences
        .lock()
        .expect("not poisoned")
        .get(&id)
        .is_none()
    {
        return error(StatusCode::NOT_FOUND, format!("no silence {id}"));
    }
    match command(&s, SilenceCommand::Expire(id)).await {
        Ok(silence) => json(StatusCode::OK, silence_view(&silence, now_ms())),
        Err(response) => response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silences_parse_from_the_api() {
        let s = parse_silence(
            br#"{"matchers":["rule=cross-service-503","root_service=payment"],"duration":"2h","comment":"db migration"}"#,
            1_000,
        )
        .unwrap();
        assert_eq!(s.starts_at, 1_000);
        assert_eq!(s.ends_at, 1_000 + 2 * 3600 * 1000);
        assert_eq!(s.describe(), "rule=cross-service-503, root_service=payment");
        for bad in [
            &br#"{"matchers":[],"duration":"2h"}"#[..],
            br#"{"matchers":["rule=a"]}"#,
            br#"{"matchers":["rule=a"],"duration":"2h","ends_at":"2026-01-01T00:00:00Z"}"#,
            br#"{"matchers":["rule"],"duration":"2h"}"#,
            br#"{"matchers":["rule=a"],"duration":"soon"}"#,
            br#"{"matchers":["rule=a"],"duration":"2h","extra":1}"#,
        ] {
            assert!(
                parse_silence(bad, 0).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
