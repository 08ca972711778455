//! The live job's HTTP endpoints (127.0.0.1 unless configured): `POST /-/reload`,
//! `GET /healthz` (alive), `GET /readyz` (consuming, state restored), and `GET /metrics`
//! in Prometheus text format.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use logheal_pipeline::executor::{Attempt, Outcome};
use logheal_pipeline::kafka::source::Source;
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
pub struct StateLabel {
    pub state: &'static str,
}

/// What the endpoints expose. Counters that mirror the engine's statistics are brought
/// up to date once a second (`observe`), never per line.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    ready: Arc<AtomicBool>,
    reloads: Family<ResultLabel, Counter>,
    lines: Counter,
    parsed: Counter,
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
    seen: Arc<Mutex<Stats>>,
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
            seen: Arc::default(),
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
        Metrics {
            registry: Arc::new(registry),
            ..m
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
        let now = engine.stats();
        let mut seen = self.seen.lock().expect("not poisoned");
        // A rebuilt engine starts again from zero: count from there.
        let delta = |new: u64, old: u64| if new >= old { new - old } else { new };
        self.lines.inc_by(delta(now.lines, seen.lines));
        self.parsed.inc_by(delta(now.parsed, seen.parsed));
        self.transitions
            .inc_by(delta(now.transitions, seen.transitions));
        self.actions.inc_by(delta(now.actions, seen.actions));
        self.held.inc_by(delta(now.held, seen.held));
        self.untracked
            .inc_by(delta(now.untracked_records, seen.untracked_records));
        self.continuations
            .inc_by(delta(now.continuations, seen.continuations));
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
        self.incidents.clear();
        for (state, n) in engine.live_incidents() {
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

#[derive(Clone)]
struct Shared {
    metrics: Metrics,
    reload: mpsc::SyncSender<()>,
    /// The bearer token writing endpoints need (`LOGHEAL_API_TOKEN`); none: they are off.
    token: Option<Arc<str>>,
}

/// Serves on `listen`; returns the bound address. `reload` receives a unit per
/// `POST /-/reload`.
pub fn serve(
    runtime: &tokio::runtime::Runtime,
    listen: SocketAddr,
    metrics: Metrics,
    reload: mpsc::SyncSender<()>,
) -> std::io::Result<SocketAddr> {
    let listener = runtime.block_on(tokio::net::TcpListener::bind(listen))?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new()
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
        });
    runtime.spawn(async move { axum::serve(listener, app).await });
    Ok(bound)
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
