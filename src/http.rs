//! The live job's HTTP endpoints (127.0.0.1 unless configured): `POST /-/reload`,
//! `GET /healthz`, and `GET /metrics` in Prometheus text format.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::{mpsc, Arc};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `success` or `failure`.
    pub result: &'static str,
}

/// What the endpoints expose.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub reloads: Family<ReloadLabels, Counter>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "logheal_rule_reloads",
            "Rule reloads by result",
            reloads.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            reloads,
        }
    }

    pub fn reloaded(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.reloads.get_or_create(&ReloadLabels { result }).inc();
    }
}

#[derive(Clone)]
struct Shared {
    metrics: Metrics,
    reload: mpsc::SyncSender<()>,
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
        .route("/metrics", get(render))
        .with_state(Shared { metrics, reload });
    runtime.spawn(async move { axum::serve(listener, app).await });
    Ok(bound)
}

async fn ask_reload(State(s): State<Shared>) -> (StatusCode, &'static str) {
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
