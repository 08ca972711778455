//! End-to-end: the live job (`logheal run`) decides what `replay` decides — over a
//! recorded file, over stdin at full speed, with one source lagging, one bad clock, a
//! paced stream that lags the wall clock — and ends within its shutdown deadline with a
//! record for everything it leaves undone.

#[path = "support/receiver.rs"]
mod receiver;
mod support;

use receiver::{logheal, point_receivers, Reply, Server};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::loggen;

fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

use support::cli::json_records_of as records_of;

fn replay(input: &str) -> Vec<Value> {
    let mut cmd = logheal();
    cmd.args(["replay", "--output", "json", "-"]);
    records_of(cmd, input)
}

/// `logheal run` (dry run) of `inputs` (files, or `-` for `input` on stdin).
fn run(inputs: &[&str], input: &str) -> Vec<Value> {
    let mut cmd = logheal();
    cmd.args([
        "run",
        "--dry-run",
        "--output",
        "json",
        "--listen",
        "127.0.0.1:0",
    ])
    .args(inputs);
    records_of(cmd, input)
}

/// What a run decided: the incidents confirmed and every action's idempotency key.
fn decisions(records: &[Value]) -> (BTreeSet<String>, Vec<String>) {
    let confirmed = records
        .iter()
        .filter(|r| r["type"] == "transition" && r["to"] == "CONFIRMED")
        .map(|r| r["incident"].as_str().unwrap().to_string())
        .collect();
    let mut keys: Vec<String> = records
        .iter()
        .filter(|r| r["type"] == "action")
        .map(|r| r["idempotency_key"].as_str().unwrap().to_string())
        .collect();
    keys.sort();
    (confirmed, keys)
}

/// The root services of the confirmations, one entry per confirmation.
fn confirmed_roots(records: &[Value]) -> Vec<String> {
    let mut roots: Vec<String> = records
        .iter()
        .filter(|r| r["type"] == "transition" && r["to"] == "CONFIRMED")
        .map(|r| r["key"]["root_service"].as_str().unwrap().to_string())
        .collect();
    roots.sort();
    roots
}

fn summary(records: &[Value]) -> &Value {
    let last = records.last().expect("records");
    assert_eq!(last["type"], "summary", "the summary closes the output");
    last
}

fn temp_file(name: &str, text: &str) -> support::cli::TempFile {
    support::cli::temp_file("live", name, text)
}

/// The lines' time, in milliseconds.
fn ts_ms(line: &str) -> i64 {
    let v: Value = serde_json::from_str(line).unwrap();
    chrono::DateTime::parse_from_rfc3339(v["ts"].as_str().unwrap())
        .unwrap()
        .timestamp_millis()
}

#[test]
fn run_over_a_file_and_over_stdin_decides_what_replay_decides() {
    let text = loggen::two_cascades().render();
    let path = temp_file("two-cascades.jsonl", &text);
    let replayed = replay(&text);
    let (confirmed, keys) = decisions(&replayed);
    assert_eq!(confirmed.len(), 2, "{confirmed:?}");
    assert_eq!(
        confirmed_roots(&replayed),
        ["inventory", "payment"],
        "the two cascades"
    );
    let from_file = run(&[path.to_str().unwrap()], "");
    assert_eq!(decisions(&from_file), (confirmed.clone(), keys.clone()));
    let from_stdin = run(&["-"], &text);
    assert_eq!(decisions(&from_stdin), (confirmed, keys));
    assert_eq!(summary(&from_stdin)["confirmed"], 2);
    // Everything but the process's own memory.
    let counts = |records: &[Value]| {
        let mut s = summary(records).clone();
        s.as_object_mut().unwrap().remove("peak_rss_bytes");
        s
    };
    assert_eq!(counts(&from_file), counts(&replayed));
}

#[test]
fn a_source_sixty_seconds_behind_the_others_still_has_its_chains_found() {
    let text = loggen::two_cascades().render();
    let baseline = confirmed_roots(&replay(&text));
    // payment's shipper delivers a minute late: its lines arrive among those stamped
    // sixty seconds after them.
    let mut lines: Vec<(i64, &str)> = text
        .lines()
        .map(|l| {
            let delay = if l.contains(r#""service":"payment""#) {
                60_000
            } else {
                0
            };
            (ts_ms(l) + delay, l)
        })
        .collect();
    lines.sort_by_key(|(arrival, _)| *arrival);
    let lagged: String = lines.iter().map(|(_, l)| format!("{l}\n")).collect();
    let replayed = replay(&lagged);
    assert_eq!(
        confirmed_roots(&replayed),
        baseline,
        "both cascades, once each"
    );
    assert_eq!(
        summary(&replayed)["skipped"].get("late"),
        None,
        "no payment line is dropped as late"
    );
    let path = temp_file("lagged.jsonl", &lagged);
    assert_eq!(
        decisions(&run(&[path.to_str().unwrap()], "")),
        decisions(&replayed)
    );
}

#[test]
fn one_line_stamped_far_ahead_changes_no_incident() {
    let text = loggen::two_cascades().render();
    let baseline = decisions(&replay(&text));
    // In the middle of the payment outage, a node whose clock is 290 s fast logs two
    // lines in a row: an ordinary one, and a 503 of the failing service.
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let middle = lines
        .iter()
        .position(|l| ts_ms(l) >= loggen::EXAMPLE_START_MS + 180_000)
        .unwrap();
    let ahead = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let at = ahead(loggen::EXAMPLE_START_MS + 180_000 + 290_000);
    lines.insert(
        middle,
        format!(r#"{{"ts":"{at}","service":"batch-host","status":200,"msg":"nightly job"}}"#),
    );
    lines.insert(
        middle + 1,
        format!(
            r#"{{"ts":"{at}","service":"payment","trace_id":"f00d","status":503,"msg":"down"}}"#
        ),
    );
    let skewed = lines.join("\n");
    let replayed = replay(&skewed);
    assert_eq!(decisions(&replayed), baseline);
    assert_eq!(summary(&replayed)["held"], 2);
    assert_eq!(summary(&replayed)["skipped"]["ahead"], 2);
    assert_eq!(decisions(&run(&["-"], &skewed)), baseline);
}

/// A rule with a short quiet period, so that a paced test stays short.
fn quick_rule() -> support::cli::TempFile {
    temp_file(
        "quick.yaml",
        "receivers:\n  restart: {type: webhook, url: \"${LOGHEAL_RESTART_URL}\"}\nrules:\n  - name: quick\n    select: {status: [503]}\n    correlate: {window: 30s, min_events: 3, min_services: 2}\n    incident: {group_by: [root_service], quiet_period: 3s}\n    actions: {confirmed: [{name: restart, receiver: restart}]}\n",
    )
}

#[test]
fn a_stream_lagging_thirty_seconds_confirms_once_and_restores_once() {
    let rules = quick_rule();
    let mut child = logheal()
        .args(["run", "--dry-run", "--output", "json", "--tick", "100ms"])
        .args(["--lateness", "1s", "--listen", "127.0.0.1:0", "--rules"])
        .arg(&rules)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stamp = || {
        logheal_pipeline::wall_clock_now()
            .minus(Duration::from_secs(30))
            .to_rfc3339()
    };
    // Four seconds of cascades, paced, each line stamped thirty seconds ago...
    for i in 0..40 {
        for svc in ["payment", "checkout", "gateway"] {
            writeln!(
                stdin,
                r#"{{"ts":"{}","service":"{svc}","trace_id":"t{i}","status":503}}"#,
                stamp()
            )
            .unwrap();
        }
        stdin.flush().unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    // ...then four seconds of healthy traffic, then silence.
    for i in 0..40 {
        writeln!(
            stdin,
            r#"{{"ts":"{}","service":"gateway","trace_id":"ok{i}","status":200}}"#,
            stamp()
        )
        .unwrap();
        stdin.flush().unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let records = json_lines(&out.stdout);
    let to = |state: &str| {
        records
            .iter()
            .filter(|r| r["type"] == "transition" && r["to"] == state)
            .count()
    };
    assert_eq!(
        (to("CONFIRMED"), to("RESTORED")),
        (1, 1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let restarts = records.iter().filter(|r| r["type"] == "action").count();
    assert_eq!(restarts, 1);
}

#[test]
fn run_refuses_missing_inputs_directories_and_a_zero_tick() {
    let out = logheal()
        .args(["run", "--dry-run", "/nonexistent/app.log"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/app.log"));
    let dir = std::env::temp_dir();
    let out = logheal()
        .args(["run", "--dry-run"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a directory"));
    let out = logheal()
        .args(["run", "--dry-run", "--tick", "0s", "-"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("busy-loop"));
}

/// A live job executing against `server`, fed a cascade stamped now.
struct Executing {
    child: std::process::Child,
    records: Arc<Mutex<Vec<Value>>>,
    /// Reads stdout to its end.
    reader: std::thread::JoinHandle<()>,
    _stdin: std::process::ChildStdin,
}

impl Executing {
    fn start(server: &Server, shutdown_timeout: &str) -> Executing {
        let mut cmd = logheal();
        point_receivers(&mut cmd, &server.base);
        let mut child = cmd
            .args(["run", "--output", "json", "--listen", "127.0.0.1:0"])
            .args(["--shutdown-timeout", shutdown_timeout])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        for (i, svc) in ["payment", "checkout", "gateway"].iter().enumerate() {
            let ts = logheal_pipeline::wall_clock_now()
                .plus(Duration::from_millis(i as u64 * 5))
                .to_rfc3339();
            writeln!(
                stdin,
                r#"{{"ts":"{ts}","service":"{svc}","trace_id":"t1","status":503}}"#
            )
            .unwrap();
        }
        stdin.flush().unwrap();
        let records = Arc::new(Mutex::new(Vec::new()));
        let (r, stdout) = (records.clone(), child.stdout.take().unwrap());
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                r.lock().unwrap().push(serde_json::from_str(&line).unwrap());
            }
        });
        Executing {
            child,
            records,
            reader,
            _stdin: stdin,
        }
    }

    fn signal(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    /// Waits for the exit; how long it took and the records.
    fn wait(mut self, limit: Duration) -> (Duration, Vec<Value>) {
        let start = Instant::now();
        loop {
            if self.child.try_wait().unwrap().is_some() {
                break;
            }
            assert!(start.elapsed() < limit, "still running after {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        let took = start.elapsed();
        // Every line is in once the reader met the end of stdout.
        self.reader.join().unwrap();
        let records = self.records.lock().unwrap().clone();
        (took, records)
    }
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "no {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_abandons_a_hanging_call_at_the_deadline_with_a_record() {
    let server = Server::start(&[("/restart", vec![Reply::Hang(Duration::from_secs(60))])]);
    let job = Executing::start(&server, "2s");
    wait_until("restart call", || {
        !server.requests_to("/restart").is_empty()
    });
    job.signal();
    let (took, records) = job.wait(Duration::from_secs(10));
    assert!(took < Duration::from_secs(5), "drained for {took:?}");
    let cancelled: Vec<&Value> = records
        .iter()
        .filter(|r| r["type"] == "action_cancelled")
        .collect();
    assert_eq!(cancelled.len(), 1, "{records:?}");
    assert_eq!(cancelled[0]["action"], "restart-downstream");
    assert!(cancelled[0]["reason"]
        .as_str()
        .unwrap()
        .contains("shutdown"));
    assert_eq!(summary(&records)["type"], "summary");
}

#[test]
fn a_second_signal_exits_at_once() {
    let server = Server::start(&[("/restart", vec![Reply::Hang(Duration::from_secs(60))])]);
    let job = Executing::start(&server, "60s");
    wait_until("restart call", || {
        !server.requests_to("/restart").is_empty()
    });
    job.signal();
    std::thread::sleep(Duration::from_millis(300));
    job.signal();
    let (took, records) = job.wait(Duration::from_secs(10));
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(records.iter().any(|r| r["type"] == "action_cancelled"));
}
