//! End-to-end: `logheal run` live — hot reload on file change and SIGHUP without losing
//! an open incident, a broken rule file keeps the running rules, a removed rule closes
//! its incidents with a reason.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Live {
    child: Child,
    stdin: Option<ChildStdin>,
    records: Arc<Mutex<Vec<Value>>>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Live {
    fn start(rules: &Path) -> Live {
        let mut child = Command::new(env!("CARGO_BIN_EXE_logheal"))
            .env("LOGHEAL_API_TOKEN", TOKEN)
            .args([
                "run",
                "--dry-run",
                "--output",
                "json",
                "--tick",
                "100ms",
                "--lateness",
                "1s",
                "--listen",
                "127.0.0.1:0",
                "--rules",
            ])
            .arg(rules)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let records = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (r, stdout) = (records.clone(), child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                r.lock().unwrap().push(serde_json::from_str(&line).unwrap());
            }
        });
        let (l, stderr) = (log.clone(), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                l.lock().unwrap().push(line);
            }
        });
        let stdin = child.stdin.take();
        Live {
            child,
            stdin,
            records,
            log,
        }
    }

    /// A 503 cascade rooted at `root`, stamped now.
    fn cascade(&mut self, trace: &str, root: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        for (i, svc) in [root, "checkout", "gateway"].iter().enumerate() {
            let ts = logheal_pipeline::wall_clock_now().plus(Duration::from_millis(i as u64 * 5));
            let ts = ts.to_rfc3339();
            writeln!(stdin, r#"{{"ts":"{ts}","service":"{svc}","trace_id":"{trace}","status":503,"msg":"down"}}"#).unwrap();
        }
        stdin.flush().unwrap();
    }

    fn wait_record(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(r) = self.records.lock().unwrap().iter().find(|r| pred(r)) {
                return r.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {what}; log: {:?}",
                self.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(l) = self.log.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in {:?}",
                self.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The token the live jobs of these tests accept on writing endpoints.
const TOKEN: &str = "t0ken-for-tests";

/// A plain HTTP/1.1 request to the running process; the response text.
fn http(addr: &str, method: &str, path: &str) -> String {
    http_with(
        addr,
        method,
        path,
        &format!("Authorization: Bearer {TOKEN}\r\n"),
    )
}

fn http_with(addr: &str, method: &str, path: &str, headers: &str) -> String {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn rule(name: &str) -> String {
    format!(
        "  - name: {name}\n    select: {{status: [503]}}\n    correlate: {{window: 30s, min_events: 3, min_services: 2}}\n    incident: {{group_by: [root_service], quiet_period: 3s}}\n    actions: {{confirmed: [{{name: page, receiver: slack}}]}}\n"
    )
}

const HEAD: &str =
    "receivers:\n  slack: {type: slack, url: \"${LOGHEAL_SLACK_WEBHOOK_URL}\"}\nrules:\n";

fn write(path: &PathBuf, text: &str) {
    // Like an editor: write aside, then rename over the file.
    let tmp = path.with_extension("swp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A run over stdin with one rule (`cascades`) in `rules.yaml` of a fresh directory.
fn start_with_one_rule() -> (tempfile::TempDir, PathBuf, Live) {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    write(&rules, &format!("{HEAD}{}", rule("cascades")));
    let live = Live::start(&rules);
    (dir, rules, live)
}

#[test]
fn hot_reload_keeps_incidents_and_survives_broken_files() {
    let (_dir, rules, mut live) = start_with_one_rule();

    live.cascade("t1", "payment");
    let confirmed = live.wait_record("confirmation", |r| r["to"] == "CONFIRMED");
    let incident = confirmed["incident"].as_str().unwrap().to_string();

    // 1. Add a rule while the incident is open: reloaded, the incident lives on.
    write(
        &rules,
        &format!("{HEAD}{}{}", rule("cascades"), rule("second")),
    );
    live.wait_log("rules reloaded (rule files changed): 1 kept, 1 added, 0 removed");
    let restored = live.wait_record("the open incident restored", |r| r["to"] == "RESTORED");
    assert_eq!(
        restored["incident"],
        incident.as_str(),
        "the same incident, not a new one"
    );

    // 2. A broken file: every error with its position, and the old rules keep running.
    write(
        &rules,
        &format!(
            "{HEAD}{}    correlate: {{window: soon}}\n",
            rule("cascades")
        ),
    );
    let error = live.wait_log("rules.yaml:");
    assert!(
        error.contains(":10:") || error.contains("duplicate key"),
        "{error}"
    );
    live.wait_log("reload failed (rule files changed)");
    live.cascade("t2", "inventory");
    live.wait_record("a confirmation by the running rules", |r| {
        r["to"] == "CONFIRMED" && r["key"]["root_service"] == "inventory" && r["rule"] == "second"
    });

    // 3. A set that drops a rule: its open incidents close with a reason.
    write(&rules, &format!("{HEAD}{}", rule("second")));
    live.wait_log("1 kept, 0 added, 1 removed, 2 incident(s) closed");
    let closed = live.wait_record("incidents of the removed rule closed", |r| {
        r["type"] == "incident_closed"
    });
    assert_eq!(closed["rule"], "cascades");
    assert!(closed["reason"]
        .as_str()
        .unwrap()
        .contains("removed by a reload"));

    // 4. SIGHUP reloads too, and so does POST /-/reload; /metrics counts them all.
    let pid = live.child.id().to_string();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    live.wait_log("rules reloaded (SIGHUP): 1 kept, 0 added, 0 removed");
    let listening = live.wait_log("listening on http://");
    let addr = listening
        .split("http://")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    assert!(addr.starts_with("127.0.0.1:"), "bound to loopback: {addr}");
    // Writing endpoints need the token.
    assert!(http_with(&addr, "POST", "/-/reload", "").starts_with("HTTP/1.1 401"));
    assert!(http_with(
        &addr,
        "POST",
        "/-/reload",
        "Authorization: Bearer wrong-token-xx\r\n"
    )
    .starts_with("HTTP/1.1 401"));
    assert!(http(&addr, "POST", "/-/reload").starts_with("HTTP/1.1 202"));
    live.wait_log("rules reloaded (POST /-/reload)");
    let metrics = http(&addr, "GET", "/metrics");
    assert!(
        metrics.contains("logheal_rule_reloads_total{result=\"success\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("logheal_rule_reloads_total{result=\"failure\"} 1"),
        "{metrics}"
    );
    // The decider's repeat filter is a bounded kind of state too.
    for series in [
        "logheal_bound_limit{bound=\"chain_traces\"} 100000",
        "logheal_bound_overflow_total{bound=\"chain_traces\"} 0",
    ] {
        assert!(metrics.contains(series), "{series}: {metrics}");
    }
    // The clock's sources: one per service the cascades came from (gauges update once
    // a tick).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = http(&addr, "GET", "/metrics");
        let sources = metrics
            .lines()
            .find_map(|l| l.strip_prefix("logheal_time_sources "))
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(0);
        if sources >= 3 {
            assert!(
                metrics.contains("logheal_time_lagging_sources 0"),
                "{metrics}"
            );
            assert!(
                metrics.contains("logheal_records_held_total 0"),
                "{metrics}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(http(&addr, "GET", "/healthz").ends_with("ok\n"));

    drop(live.stdin.take());
    let status = live.child.wait().unwrap();
    assert!(status.success());
}

#[test]
fn only_a_change_of_the_rules_reloads_them() {
    let (dir, rules, mut live) = start_with_one_rule();
    let reloads = |live: &Live| {
        (live.log.lock().unwrap().iter())
            .filter(|l| l.contains("rules reloaded"))
            .count()
    };
    // Other files in the directory change (a log written beside the rules, an editor's
    // backup), and the rule file is written again as it was: nothing to reload.
    for i in 0..5 {
        std::fs::write(dir.path().join("job.log"), format!("line {i}\n")).unwrap();
        std::fs::write(dir.path().join("rules.yaml~"), "backup").unwrap();
        write(&rules, &format!("{HEAD}{}", rule("cascades")));
        std::thread::sleep(Duration::from_millis(200));
    }
    // More than the watcher's settling time later, a real change reloads once.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(reloads(&live), 0, "{:?}", live.log.lock().unwrap());
    write(
        &rules,
        &format!("{HEAD}{}{}", rule("cascades"), rule("second")),
    );
    live.wait_log("rules reloaded (rule files changed): 1 kept, 1 added, 0 removed");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(reloads(&live), 1, "{:?}", live.log.lock().unwrap());
    drop(live.stdin.take());
    assert!(live.child.wait().unwrap().success());
}

#[test]
fn sigterm_ends_the_run_gracefully() {
    let (_dir, _, mut live) = start_with_one_rule();
    live.cascade("t1", "payment");
    live.wait_record("confirmation", |r| r["to"] == "CONFIRMED");
    // stdin stays open: only the signal can end the run.
    let pid = live.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = live.child.wait().unwrap();
    assert!(status.success(), "exit 0 after SIGTERM");
    live.wait_log("summary:");
}

/// Spawns a `logheal run` (stdin piped, stdout discarded) and waits for the address it
/// listens on; its stderr is read to the end (the job writes its summary there).
fn spawn_listening(mut cmd: Command) -> (Child, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("logheal: listening on http://") {
                let _ = tx.send(addr.to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(15))
        .expect("the listening address");
    (child, addr)
}

#[test]
fn writing_endpoints_are_off_without_a_token() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_logheal"));
    cmd.env_remove("LOGHEAL_API_TOKEN")
        .args(["run", "--dry-run", "--listen", "127.0.0.1:0", "-"]);
    let (mut child, addr) = spawn_listening(cmd);
    let answer = http_with(&addr, "POST", "/-/reload", "");
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("LOGHEAL_API_TOKEN"), "{answer}");
    assert!(
        http_with(&addr, "GET", "/healthz", "").ends_with("ok\n"),
        "reads stay open"
    );
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
}

#[test]
fn health_and_metrics_answer_under_a_thousand_idle_connections() {
    // Under the common default of 1,024 descriptors (systemd's soft limit): more idle
    // connections than that took every descriptor before connections were bounded.
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "ulimit -n 1024 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_logheal"))
        .args(["run", "--dry-run", "--listen", "127.0.0.1:0", "-"]);
    let (mut child, addr) = spawn_listening(cmd);
    // 1,100 connections that never finish a request (some send half of one).
    let mut idle = Vec::new();
    for i in 0..1_100 {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        if i % 100 == 0 {
            write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n").unwrap();
        }
        idle.push(s);
    }
    let started = Instant::now();
    let (ok_tx, ok_rx) = std::sync::mpsc::channel();
    let probe = addr.clone();
    std::thread::spawn(move || {
        let health = http_with(&probe, "GET", "/healthz", "");
        let metrics = http_with(&probe, "GET", "/metrics", "");
        let _ = ok_tx.send((health, metrics));
    });
    let (health, metrics) = ok_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("/healthz and /metrics answer while the idle connections stay open");
    assert!(health.ends_with("ok\n"), "{health}");
    assert!(metrics.contains("logheal_lines_total"), "{metrics}");
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(idle);
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
}
