//! The live job's HTTP endpoints (127.0.0.1 unless configured): the incident pages
//! (`/incidents`, `/incidents/{id}`), the JSON API (`/api/v1/incidents[/{id}]`,
//! `/api/v1/silences[/{id}]`), `POST /-/reload`, `GET /healthz` (alive), `GET /readyz`
//! (consuming, state restored), and `GET /metrics` in Prometheus text format. Reads are
//! open; what changes state (reload, silences) needs the bearer token.

use crate::book::Book;
use crate::live::{now_ms, Message, SilenceCommand};
use crate::metrics::Metrics;
use crate::page;
use axum::extract::Path;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use logheal_pipeline::silence::{self, Matcher, Silence, Silences};
use std::net::SocketAddr;
use std::sync::{mpsc, Arc, Mutex};

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
    if s.metrics.is_ready() {
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
    match s.metrics.encode(&mut body) {
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
