//! The action executor: calls webhooks and Slack on a tokio runtime, off the consumer's
//! path. Each receiver has its own concurrency limit and circuit breaker, so a failing or
//! hanging receiver never holds up another or the log stream.
//!
//! Every request carries `Idempotency-Key` (the same on every retry) and, with a secret,
//! `X-Logheal-Signature: sha256=<hex HMAC-SHA256 of the body>`. Retries use exponential
//! backoff with full jitter, capped; `Retry-After` is honoured on 429 and 503; a 4xx other
//! than 408 and 429 is final. Each attempt and each final outcome is reported on
//! [`Executor::events`].

use crate::receivers::{Endpoint, Resolved};
use hmac::{Hmac, Mac};
pub use logheal_pipeline::action::{ActionRequest, Attempt, Outcome};
use logheal_rules::ReceiverKind;
use rustc_hash::FxHashMap;
use sha2::Sha256;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Semaphore;

/// Calls in flight per receiver.
pub const CONCURRENCY_PER_RECEIVER: usize = 4;
/// First backoff ceiling; doubles per attempt up to [`BACKOFF_CAP`].
pub const BACKOFF_BASE: Duration = Duration::from_millis(250);
pub const BACKOFF_CAP: Duration = Duration::from_secs(10);
/// The longest `Retry-After` honoured.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(60);
/// Consecutive failed actions that open a receiver's circuit, and for how long.
pub const BREAKER_FAILURES: u32 = 5;
pub const BREAKER_OPEN_FOR: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub enum Event {
    Attempt(Attempt),
    Done { request: u64, outcome: Outcome },
}

#[derive(Debug, Default, Clone)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
}

struct ReceiverState {
    resolved: Resolved,
    limit: Semaphore,
    breaker: Mutex<Breaker>,
}

pub struct Executor {
    runtime: tokio::runtime::Handle,
    client: reqwest::Client,
    receivers: FxHashMap<Arc<str>, Arc<ReceiverState>>,
    tx: mpsc::Sender<Event>,
    /// Attempts and outcomes, in the order they happen.
    pub events: mpsc::Receiver<Event>,
    in_flight: Arc<AtomicUsize>,
}

impl Executor {
    pub fn new(runtime: tokio::runtime::Handle, receivers: Vec<(Arc<str>, Resolved)>) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // A redirect is an answer, not an instruction: following it would send the
            // body, the signature and the receiver's headers to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("logheal/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("an HTTP client with default TLS builds");
        let (tx, events) = mpsc::channel();
        Executor {
            runtime,
            client,
            receivers: receivers
                .into_iter()
                .map(|(name, r)| (name, receiver_state(r, Breaker::default())))
                .collect(),
            tx,
            events,
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Replaces the receivers after a rule reload; calls in flight finish with the
    /// receiver they started with. A receiver that keeps its name keeps its circuit
    /// breaker's state: a reload is no way around an open circuit.
    pub fn set_receivers(&mut self, receivers: Vec<(Arc<str>, Resolved)>) {
        let old = std::mem::take(&mut self.receivers);
        self.receivers = receivers
            .into_iter()
            .map(|(name, r)| {
                let breaker = old
                    .get(&name)
                    .map(|s| s.breaker.lock().expect("breaker").clone())
                    .unwrap_or_default();
                (name, receiver_state(r, breaker))
            })
            .collect();
    }

    /// Requests submitted and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Starts a request; returns at once.
    pub fn submit(&self, request: ActionRequest) {
        let Some(state) = self.receivers.get(&request.receiver).cloned() else {
            // Removed by a reload between the request and now: answered at once.
            let reason = format!("receiver {} is no longer configured", request.receiver);
            let outcome = Outcome::NotConfigured { reason };
            let _ = self.tx.send(Event::Done {
                request: request.id,
                outcome,
            });
            return;
        };
        let client = self.client.clone();
        let tx = self.tx.clone();
        let in_flight = self.in_flight.clone();
        in_flight.fetch_add(1, Ordering::SeqCst);
        self.runtime.spawn(async move {
            let id = request.id;
            let outcome = deliver(&client, &state, &request, &tx).await;
            let _ = tx.send(Event::Done {
                request: id,
                outcome,
            });
            in_flight.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

fn receiver_state(resolved: Resolved, breaker: Breaker) -> Arc<ReceiverState> {
    Arc::new(ReceiverState {
        resolved,
        limit: Semaphore::new(CONCURRENCY_PER_RECEIVER),
        breaker: Mutex::new(breaker),
    })
}

async fn deliver(
    client: &reqwest::Client,
    state: &ReceiverState,
    request: &ActionRequest,
    tx: &mpsc::Sender<Event>,
) -> Outcome {
    let endpoint = match &state.resolved {
        Resolved::Ready(e) => e,
        Resolved::NotConfigured(why) => {
            return Outcome::NotConfigured {
                reason: why.clone(),
            }
        }
    };
    if state.breaker.lock().expect("breaker").is_open() {
        return Outcome::CircuitOpen;
    }
    let _permit = state.limit.acquire().await.expect("semaphore never closes");
    let signature = endpoint
        .secret
        .as_deref()
        .map(|key| sign(key, request.body.as_bytes()));
    let attempts = endpoint.retries + 1;
    let mut last = String::new();
    let mut made = 0;
    for attempt in 1..=attempts {
        made = attempt;
        let started = Instant::now();
        let result = send(client, endpoint, request, signature.as_deref()).await;
        let latency = started.elapsed();
        let (status, error) = match &result {
            Ok(r) => (Some(r.status().as_u16()), None),
            Err(e) => (None, Some(describe(e))),
        };
        let _ = tx.send(Event::Attempt(Attempt {
            request: request.id,
            receiver: endpoint.name.clone(),
            attempt,
            status,
            latency,
            error: error.clone(),
            at: SystemTime::now(),
        }));
        if let (Some(expected), Ok(r)) = (request.expect_status, &result) {
            let code = r.status().as_u16();
            return if code == expected {
                Outcome::Succeeded {
                    status: code,
                    attempts: attempt,
                }
            } else {
                Outcome::Rejected {
                    status: code,
                    attempts: attempt,
                }
            };
        }
        let wait = match result {
            Ok(r) if r.status().is_success() => {
                state.breaker.lock().expect("breaker").success();
                return Outcome::Succeeded {
                    status: r.status().as_u16(),
                    attempts: attempt,
                };
            }
            Ok(r) => {
                let code = r.status().as_u16();
                last = format!("HTTP {code}");
                // 3xx (redirects are not followed) and 4xx other than 408/429 are final.
                if (300..500).contains(&code) && code != 408 && code != 429 {
                    state.breaker.lock().expect("breaker").failure();
                    return Outcome::Rejected {
                        status: code,
                        attempts: attempt,
                    };
                }
                let hinted = (code == 429 || code == 503)
                    .then(|| retry_after(r.headers()))
                    .flatten();
                hinted.unwrap_or_else(|| backoff(attempt))
            }
            Err(e) => {
                last = error.unwrap_or_default();
                // A message that timed out may well have been posted: sending it again
                // would post it twice. Notifications retry only on 429 and 5xx.
                if endpoint.kind == ReceiverKind::Slack && e.is_timeout() {
                    break;
                }
                backoff(attempt)
            }
        };
        if attempt < attempts {
            tokio::time::sleep(wait).await;
        }
    }
    state.breaker.lock().expect("breaker").failure();
    Outcome::GaveUp {
        last,
        attempts: made,
    }
}

async fn send(
    client: &reqwest::Client,
    endpoint: &Endpoint,
    request: &ActionRequest,
    signature: Option<&str>,
) -> reqwest::Result<reqwest::Response> {
    let mut builder = client
        .request(endpoint.method.clone(), &endpoint.url)
        .timeout(endpoint.timeout)
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", &request.idempotency_key)
        .body(request.body.clone());
    for (name, value) in &endpoint.headers {
        builder = builder.header(name, value);
    }
    if let Some(signature) = signature {
        builder = builder.header("X-Logheal-Signature", signature);
    }
    builder.send().await
}

/// `sha256=<hex>` of the HMAC-SHA256 of `body` under `key`.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A failure without the URL (which may carry a token).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        "request failed".into()
    }
}

/// Full jitter: a random wait up to `min(cap, base * 2^(attempt-1))`.
fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1 << (attempt - 1).min(16))
        .min(BACKOFF_CAP);
    ceiling.mul_f64(fastrand::f64())
}

/// `Retry-After` in seconds or as an HTTP date, capped.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(SystemTime::now())
            .unwrap_or_default(),
    };
    Some(wait.min(RETRY_AFTER_CAP))
}

impl Breaker {
    fn is_open(&mut self) -> bool {
        match self.open_until {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                // Half-open: let the next call through; one more failure reopens.
                self.open_until = None;
                self.failures = BREAKER_FAILURES - 1;
                false
            }
            None => false,
        }
    }

    fn success(&mut self) {
        self.failures = 0;
    }

    fn failure(&mut self) {
        self.failures += 1;
        if self.failures >= BREAKER_FAILURES {
            self.open_until = Some(Instant::now() + BREAKER_OPEN_FOR);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn outcomes_read_the_same_everywhere() {
        let gave_up = Outcome::GaveUp {
            last: "timed out".into(),
            attempts: 4,
        };
        assert_eq!(
            (gave_up.name(), gave_up.attempts(), gave_up.detail()),
            ("gave_up", 4, "(timed out)".into())
        );
        let missing = Outcome::NotConfigured {
            reason: "LOGHEAL_HEALTH_URL is not set".into(),
        };
        assert_eq!(missing.name(), "not_configured");
        assert_eq!(missing.attempts(), 0);
        assert_eq!(missing.detail(), "(LOGHEAL_HEALTH_URL is not set)");
        assert!(missing.is_done() && !gave_up.is_done());
        assert_eq!(
            Outcome::Rejected {
                status: 503,
                attempts: 1
            }
            .detail(),
            "(HTTP 503)"
        );
    }

    #[test]
    fn backoff_is_jittered_and_capped() {
        for attempt in 1..20 {
            let ceiling = BACKOFF_BASE
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(BACKOFF_CAP);
            assert!(backoff(attempt) <= ceiling);
        }
        let waits: std::collections::HashSet<_> = (0..20).map(|_| backoff(3)).collect();
        assert!(waits.len() > 1, "jitter varies the wait");
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert("retry-after", "100000".parse().unwrap());
        assert_eq!(retry_after(&h), Some(RETRY_AFTER_CAP));
        let soon = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        h.insert("retry-after", soon.parse().unwrap());
        let wait = retry_after(&h).unwrap();
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30));
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn breaker_opens_after_repeated_failures_and_half_opens() {
        let mut b = Breaker::default();
        for _ in 0..BREAKER_FAILURES - 1 {
            b.failure();
        }
        assert!(!b.is_open());
        b.failure();
        assert!(b.is_open());
        b.open_until = Some(Instant::now() - Duration::from_millis(1));
        assert!(!b.is_open(), "half-open after the cool-down");
        b.failure();
        assert!(b.is_open(), "one more failure reopens it");
    }
}
