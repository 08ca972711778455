//! Decision latency of the live job: the wall time from writing the line that completes
//! a failure chain to the restart webhook's request arriving at a local receiver, while
//! the job is fed 100,000 lines/s of traffic.
//!
//! `cargo bench --bench latency` measures `logheal run -` (stdin). With
//! `LOGHEAL_TEST_BROKERS` set (`scripts/kafka-bench.sh` starts a broker and sets it), it
//! also measures the Kafka path: a producer writes the same stream to a topic that a
//! live `logheal run --brokers …` consumes. `LOGHEAL_LATENCY_RATE` changes the rate;
//! `LOGHEAL_LATENCY_RECORDS` / `LOGHEAL_LATENCY_STDERR` keep the job's output.
//!
//! Each cascade has a root service of its own, so each confirms its own incident and
//! calls the restart receiver once: one sample per cascade. Percentiles are of all
//! samples of the run; the baseline in the same run is the receiver's own answer time
//! for a request sent straight from the bench (an HTTP round trip on loopback).

use axum::extract::State;
use axum::http::HeaderMap;
use std::collections::HashMap;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Lines per second: 100,000, or `LOGHEAL_LATENCY_RATE`.
fn rate() -> u64 {
    std::env::var("LOGHEAL_LATENCY_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(100_000)
}
const CASCADES: usize = 300;
/// A cascade every this many slots (ms).
const CASCADE_EVERY: u64 = 20;

type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

async fn record(State(arrivals): State<Arrivals>, headers: HeaderMap) -> &'static str {
    let at = Instant::now();
    if let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
        arrivals.lock().unwrap().insert(key.to_string(), at);
    }
    "ok"
}

/// A receiver on 127.0.0.1 that notes when each idempotency key arrives.
fn receiver(runtime: &tokio::runtime::Runtime) -> (String, Arrivals) {
    let arrivals = Arrivals::default();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .fallback(record)
        .with_state(arrivals.clone());
    runtime.spawn(async move { axum::serve(listener, app).await });
    (base, arrivals)
}

fn rules_file() -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("logheal-latency-{}.yaml", std::process::id()));
    std::fs::write(
        &path,
        "receivers:\n  restart: {type: webhook, url: \"${LOGHEAL_RESTART_URL}\", timeout: 5s}\nrules:\n  - name: latency\n    select: {status: [503]}\n    correlate: {window: 30s, min_events: 3, min_services: 2}\n    incident: {group_by: [root_service], quiet_period: 60s}\n    actions: {confirmed: [{name: restart, receiver: restart}]}\n",
    )
    .unwrap();
    path
}

/// The job's config: the brake off, so that every cascade's restart is called (with the
/// default brake, actions stop after 10 confirmations in 10 minutes).
fn job_config() -> std::path::PathBuf {
    let path =
        std::env::temp_dir().join(format!("logheal-latency-job-{}.yaml", std::process::id()));
    std::fs::write(&path, "limits:\n  brake:\n    max_confirmed: 0\n").unwrap();
    path
}

/// The stream: (slot, line, the cascade it completes). Timestamps are filled in when
/// written (`{TS}`), so the job sees a live stream.
fn stream() -> Vec<(u64, String, Option<usize>)> {
    let mut out = Vec::new();
    let slots = CASCADES as u64 * CASCADE_EVERY + 200;
    let per_slot = rate() / 1000;
    let mut trace = 0u64;
    for slot in 0..slots {
        for i in 0..per_slot {
            trace += 1;
            let svc = ["gateway", "catalog", "search", "auth"][(i % 4) as usize];
            out.push((
                slot,
                format!(
                    r#"{{"ts":"{{TS}}","level":"info","service":"{svc}","trace_id":"{trace:032x}","status":200,"msg":"GET /api/items 200: request completed"}}"#
                ),
                None,
            ));
        }
        if slot % CASCADE_EVERY == 0 && ((slot / CASCADE_EVERY) as usize) < CASCADES {
            let n = (slot / CASCADE_EVERY) as usize;
            for (hop, svc) in [format!("root-{n}"), "checkout".into(), "gateway".into()]
                .iter()
                .enumerate()
            {
                out.push((
                    slot,
                    format!(
                        r#"{{"ts":"{{TS}}","level":"error","service":"{svc}","trace_id":"c{n:031x}","status":503,"msg":"upstream failed"}}"#
                    ),
                    (hop == 2).then_some(n),
                ));
            }
        }
    }
    out
}

fn now_rfc3339() -> String {
    logheal_pipeline::wall_clock_now().to_rfc3339()
}

/// Writes the stream paced at `RATE` through `send`; returns when each cascade's last
/// line was handed over.
fn feed(mut send: impl FnMut(&[String]), stream: &[(u64, String, Option<usize>)]) -> Vec<Instant> {
    let mut completed = vec![Instant::now(); CASCADES];
    let start = Instant::now();
    let mut batch: Vec<String> = Vec::with_capacity(rate() as usize / 1000 + 3);
    let mut i = 0;
    while i < stream.len() {
        let slot = stream[i].0;
        let due = start + Duration::from_millis(slot);
        // Sleep, not spin: the job under test needs the cores.
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let ts = now_rfc3339();
        batch.clear();
        let mut ends = Vec::new();
        while i < stream.len() && stream[i].0 == slot {
            batch.push(stream[i].1.replace("{TS}", &ts));
            if let Some(n) = stream[i].2 {
                ends.push(n);
            }
            i += 1;
        }
        send(&batch);
        let sent = Instant::now();
        for n in ends {
            completed[n] = sent;
        }
    }
    completed
}

fn spawn_job(args: &[&str], base: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_logheal"))
        .args(args)
        .args(["--output", "json", "--listen", "127.0.0.1:0", "--rules"])
        .arg(rules_file())
        .arg("--config")
        .arg(job_config())
        .env("LOGHEAL_RESTART_URL", format!("{base}/restart"))
        .stdin(Stdio::piped())
        .stdout(match std::env::var_os("LOGHEAL_LATENCY_RECORDS") {
            Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            None => Stdio::null(),
        })
        .stderr(match std::env::var_os("LOGHEAL_LATENCY_STDERR") {
            Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            None => Stdio::null(),
        })
        .spawn()
        .expect("the logheal binary")
}

/// Latency per cascade, in µs, matched by the incident's root in the idempotency key.
fn latencies(completed: &[Instant], arrivals: &Arrivals, wait: Duration) -> Vec<u64> {
    let deadline = Instant::now() + wait;
    while arrivals.lock().unwrap().len() < CASCADES && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let arrivals = arrivals.lock().unwrap();
    let mut out = Vec::new();
    for (key, at) in arrivals.iter() {
        let Some(n) = key
            .split("-root-")
            .nth(1)
            .and_then(|rest| rest.split('-').next())
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        out.push(at.saturating_duration_since(completed[n]).as_micros() as u64);
    }
    out.sort_unstable();
    out
}

fn report(name: &str, samples: &[u64]) {
    let pct = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    if samples.is_empty() {
        println!("{name}: no samples");
        return;
    }
    println!(
        "{name}: {} samples of {CASCADES}; P50 {:.3} ms, P99 {:.3} ms, max {:.3} ms",
        samples.len(),
        pct(0.50) as f64 / 1e3,
        pct(0.99) as f64 / 1e3,
        *samples.last().unwrap() as f64 / 1e3
    );
}

/// The baseline: one request straight from here to the receiver, 300 times.
fn baseline(runtime: &tokio::runtime::Runtime, base: &str) -> Vec<u64> {
    let client = reqwest::Client::new();
    let mut out: Vec<u64> = (0..CASCADES)
        .map(|i| {
            let start = Instant::now();
            runtime
                .block_on(
                    client
                        .post(format!("{base}/baseline"))
                        .header("idempotency-key", format!("baseline-{i}"))
                        .body("{}")
                        .send(),
                )
                .unwrap();
            start.elapsed().as_micros() as u64
        })
        .collect();
    out.sort_unstable();
    out
}

fn stdin_path(runtime: &tokio::runtime::Runtime, stream: &[(u64, String, Option<usize>)]) {
    let (base, arrivals) = receiver(runtime);
    report(
        "baseline: one POST to the receiver",
        &baseline(runtime, &base),
    );
    arrivals.lock().unwrap().clear();
    let mut job = spawn_job(&["run", "-"], &base);
    let mut stdin = job.stdin.take().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let mut buf = Vec::with_capacity(1 << 16);
    let completed = feed(
        |batch| {
            buf.clear();
            for line in batch {
                buf.extend_from_slice(line.as_bytes());
                buf.push(b'\n');
            }
            stdin.write_all(&buf).unwrap();
            stdin.flush().unwrap();
        },
        stream,
    );
    let samples = latencies(&completed, &arrivals, Duration::from_secs(10));
    report("stdin: chain-completing line to webhook", &samples);
    assert_eq!(
        samples.len(),
        CASCADES,
        "every cascade's restart was called"
    );
    drop(stdin);
    let _ = job.wait();
}

fn kafka_path(
    runtime: &tokio::runtime::Runtime,
    stream: &[(u64, String, Option<usize>)],
    brokers: &str,
) {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let (base, arrivals) = receiver(runtime);
    let topic = format!("latency-{}", std::process::id());
    let tansu = std::env::var("LOGHEAL_TANSU").unwrap_or_else(|_| "tansu".into());
    let created = Command::new(&tansu)
        .args(["topic", "create", &topic, "--partitions", "1", "--broker"])
        .arg(format!("tcp://{brokers}"))
        .status()
        .expect("tansu");
    assert!(created.success());
    let created = Command::new(&tansu)
        .args([
            "topic",
            "create",
            &format!("{topic}-ledger"),
            "--partitions",
            "1",
            "--broker",
        ])
        .arg(format!("tcp://{brokers}"))
        .status()
        .expect("tansu");
    assert!(created.success());
    let mut job = spawn_job(
        &[
            "run",
            "--brokers",
            brokers,
            "--topic",
            &topic,
            "--group",
            &format!("{topic}-group"),
            "--ledger-topic",
            &format!("{topic}-ledger"),
            "-X",
            "fetch.wait.max.ms=5",
            "-X",
            "fetch.error.backoff.ms=5",
            "-X",
            "fetch.queue.backoff.ms=1",
        ],
        &base,
    );
    std::thread::sleep(Duration::from_secs(5));
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        // A real producer batches: a millisecond's records go in one request.
        .set("linger.ms", "1")
        .set("compression.type", "lz4")
        .create()
        .expect("producer");
    let completed = feed(
        |batch| {
            for line in batch {
                while let Err((e, _)) = producer.send(BaseRecord::<(), _>::to(&topic).payload(line))
                {
                    let _ = e;
                    producer.poll(Duration::from_millis(1));
                }
            }
            producer.poll(Duration::ZERO);
        },
        stream,
    );
    let _ = producer.flush(Duration::from_secs(10));
    let samples = latencies(&completed, &arrivals, Duration::from_secs(20));
    report("kafka: chain-completing record to webhook", &samples);
    assert_eq!(
        samples.len(),
        CASCADES,
        "every cascade's restart was called"
    );
    let _ = job.kill();
    let _ = job.wait();
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("latency: bench");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let stream = stream();
    println!(
        "{} lines at {} lines/s, {CASCADES} cascades",
        stream.len(),
        rate()
    );
    stdin_path(&runtime, &stream);
    if let Ok(brokers) = std::env::var("LOGHEAL_TEST_BROKERS") {
        kafka_path(&runtime, &stream, &brokers);
    }
}
