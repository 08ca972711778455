//! A real HTTP receiver for end-to-end tests: an axum server on 127.0.0.1 that records
//! every request and answers as the test scripts it.
#![allow(dead_code)]

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::collections::{HashMap, VecDeque};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the receiver answers one request.
#[derive(Clone, Debug)]
pub enum Reply {
    Status(u16),
    RetryAfter(u64),
    Hang(Duration),
    /// 307 to this path on the same server.
    RedirectTo(&'static str),
}

#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: String,
    pub at: Instant,
}

#[derive(Clone, Default)]
struct Receiver {
    log: Arc<Mutex<Vec<Received>>>,
    /// Scripted replies per path, used in order; then 200.
    plan: Arc<Mutex<HashMap<String, VecDeque<Reply>>>>,
}

async fn answer(State(r): State<Receiver>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    r.log.lock().unwrap().push(Received {
        path: path.clone(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        at: Instant::now(),
    });
    let reply = r
        .plan
        .lock()
        .unwrap()
        .get_mut(&path)
        .and_then(VecDeque::pop_front);
    match reply {
        None => StatusCode::OK.into_response(),
        Some(Reply::Status(code)) => StatusCode::from_u16(code).unwrap().into_response(),
        Some(Reply::RetryAfter(secs)) => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", secs.to_string())],
        )
            .into_response(),
        Some(Reply::Hang(d)) => {
            tokio::time::sleep(d).await;
            StatusCode::OK.into_response()
        }
        Some(Reply::RedirectTo(path)) => {
            (StatusCode::TEMPORARY_REDIRECT, [("location", path)]).into_response()
        }
    }
}

/// A running receiver; stops with the runtime when dropped.
pub struct Server {
    pub base: String,
    receiver: Receiver,
    _runtime: tokio::runtime::Runtime,
}

impl Server {
    pub fn start(plan: &[(&str, Vec<Reply>)]) -> Server {
        let receiver = Receiver::default();
        for (path, replies) in plan {
            receiver
                .plan
                .lock()
                .unwrap()
                .insert(path.to_string(), replies.iter().cloned().collect());
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind 127.0.0.1");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(receiver.clone());
        runtime.spawn(async move { axum::serve(listener, app).await });
        Server {
            base,
            receiver,
            _runtime: runtime,
        }
    }

    pub fn requests(&self) -> Vec<Received> {
        self.receiver.log.lock().unwrap().clone()
    }

    /// The requests received on `path`, in order.
    pub fn requests_to(&self, path: &str) -> Vec<Received> {
        let mut all = self.requests();
        all.retain(|r| r.path == path);
        all
    }
}

/// The key the receivers' requests are signed with in the tests.
pub const SECRET: &str = "s3cret-signing-key";

/// The logheal binary, inheriting no `LOGHEAL_*` variable.
pub fn logheal() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_logheal"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("LOGHEAL_")) {
        cmd.env_remove(k);
    }
    cmd
}

/// Points the built-in rule's receivers, and its signing secret, at the server at `base`
/// (the health probe stays unset).
pub fn point_receivers(cmd: &mut Command, base: &str) {
    for (var, path) in [
        ("LOGHEAL_RESTART_URL", "/restart"),
        ("LOGHEAL_FAILOVER_URL", "/failover"),
        ("LOGHEAL_FAILBACK_URL", "/failback"),
        ("LOGHEAL_SLACK_WEBHOOK_URL", "/slack"),
    ] {
        cmd.env(var, format!("{base}{path}"));
    }
    cmd.env("LOGHEAL_WEBHOOK_SECRET", SECRET);
}
