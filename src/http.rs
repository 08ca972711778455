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
pub struct BoundLabel {
    pub bound: &'static str,
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
    bound_used: Family<BoundLabel, Gauge>,
    bound_limit: Family<BoundLabel, Gauge>,
    bound_overflow: Family<BoundLabel, Counter>,
    withheld: Counter,
    brake: Gauge,
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
            bound_used: Family::default(),
            bound_limit: Family::default(),
            bound_overflow: Family::default(),
            withheld: Counter::default(),
            brake: Gauge::default(),
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
            "What happened past a cap: records of services over the cap, traces evicted (storm: of a storming service), templates evicted, records of untracked time sources",
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
        Metrics {
            registry: Arc::new(registry),
            ..m
        }
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
        self.withheld
            .inc_by(delta(now.actions_withheld, seen.actions_withheld));
        self.brake.set(i64::from(now.brake_on));
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
