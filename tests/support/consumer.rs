//! The logheal processes a Kafka test runs: `logheal run` consumers (`Consumer` builds
//! the command, `Running` is the process with its output collected as it comes,
//! `Finished` what it left), and the replays of the same lines they are held to.
#![allow(dead_code)]

use super::broker::Broker;
use super::receiver::{self, point_receivers, Server};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The logheal binary (no `LOGHEAL_*` inherited), logging at info.
pub fn logheal() -> Command {
    let mut cmd = receiver::logheal();
    cmd.env("RUST_LOG", "info");
    cmd
}

fn json_records(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn replay_with(lines: &[String], args: &[&str], server: Option<&Server>) -> Vec<Value> {
    let mut cmd = logheal();
    if let Some(server) = server {
        point_receivers(&mut cmd, &server.base);
    }
    cmd.args(["replay", "--output", "json"]).args(args).arg("-");
    crate::support::cli::json_records_of(cmd, &lines.join("\n"))
}

/// `logheal replay --execute` of `lines` against `server`.
pub fn replay(lines: &[String], server: &Server) -> Vec<Value> {
    replay_with(lines, &["--execute"], Some(server))
}

/// `logheal replay` (dry run) of `lines`.
pub fn replay_dry(lines: &[String]) -> Vec<Value> {
    replay_with(lines, &[], None)
}

/// How to start `logheal run` on a topic: one group and ledger per test.
#[derive(Clone)]
pub struct Consumer {
    brokers: String,
    topic: String,
    pub group: String,
    ledger: String,
    server_base: String,
    dry_run: bool,
    until_end: bool,
    properties: Vec<String>,
    /// `--signals-topic` and `--stage`: the stages apart.
    signals: Option<String>,
    stage: Option<&'static str>,
    rules: Option<std::path::PathBuf>,
    /// More arguments for `logheal run`.
    extra: Vec<String>,
    /// `--listen`.
    listen: String,
}

impl Consumer {
    pub fn new(broker: &Broker, topic: &str, server: &Server) -> Consumer {
        let ledger = format!("{topic}-actions");
        broker.recreate_topic(&ledger, 1);
        Consumer {
            brokers: broker.address.clone(),
            topic: topic.to_string(),
            group: format!("{topic}-group"),
            ledger,
            server_base: server.base.clone(),
            dry_run: false,
            until_end: false,
            properties: Vec::new(),
            signals: None,
            stage: None,
            rules: None,
            extra: Vec::new(),
            listen: "127.0.0.1:0".into(),
        }
    }

    /// Runs these rule files (a directory or file) instead of the built-in rules.
    pub fn rules(mut self, path: &std::path::Path) -> Self {
        self.rules = Some(path.to_path_buf());
        self
    }

    /// Decides through the signals topic `topic` (one incident per key in the group).
    pub fn signals(mut self, topic: &str) -> Self {
        self.signals = Some(topic.to_string());
        self
    }

    /// Runs only one stage (`correlate` or `decide`).
    pub fn stage(mut self, stage: &'static str) -> Self {
        self.stage = Some(stage);
        self
    }

    pub fn dry_run(mut self) -> Self {
        self.dry_run = true;
        self
    }

    /// A librdkafka property for the consumer (`-X key=value`).
    pub fn property(mut self, key: &str, value: &str) -> Self {
        self.properties.push(format!("{key}={value}"));
        self
    }

    /// More arguments for `logheal run`.
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra.push(arg.to_string());
        self
    }

    /// `--correlate-threads N`.
    pub fn correlate_threads(self, n: usize) -> Self {
        self.arg("--correlate-threads").arg(&n.to_string())
    }

    /// Serves the endpoints on `address` (default: a free port).
    pub fn listen(mut self, address: &str) -> Self {
        self.listen = address.to_string();
        self
    }

    pub fn until_end(mut self) -> Self {
        self.until_end = true;
        self
    }

    fn command(&self) -> Command {
        let mut cmd = logheal();
        point_receivers(&mut cmd, &self.server_base);
        cmd.env("LOGHEAL_API_TOKEN", API_TOKEN);
        cmd.args(["run", "--brokers", &self.brokers, "--topic", &self.topic])
            .args(["--group", &self.group, "--ledger-topic", &self.ledger])
            .args(["--output", "json", "--listen", &self.listen])
            .args([
                "-X",
                "session.timeout.ms=6000",
                "-X",
                "heartbeat.interval.ms=500",
            ]);
        for p in &self.properties {
            cmd.args(["-X", p]);
        }
        if self.dry_run {
            cmd.arg("--dry-run");
        }
        if self.until_end {
            cmd.arg("--until-end");
        }
        if let Some(topic) = &self.signals {
            cmd.args(["--signals-topic", topic]);
        }
        if let Some(stage) = self.stage {
            cmd.args(["--stage", stage]);
        }
        if let Some(rules) = &self.rules {
            cmd.arg("--rules").arg(rules);
        }
        cmd.args(&self.extra);
        cmd
    }

    /// Runs to the end (`--until-end`).
    pub fn run(&self) -> Finished {
        assert!(self.until_end, "only --until-end runs end by themselves");
        let running = self.spawn();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = running.child.lock().unwrap().try_wait().unwrap() {
                return running.finished(status);
            }
            assert!(
                Instant::now() < deadline,
                "logheal run --until-end did not end: {}",
                running.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn spawn(&self) -> Running {
        Running::spawn(self.command())
    }
}

/// The lines of `stream` as they come, and the thread that reads them (it ends at the
/// stream's end: joined, every line is in).
fn collect(
    stream: impl std::io::Read + Send + 'static,
) -> (Arc<Mutex<Vec<String>>>, std::thread::JoinHandle<()>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            sink.lock().unwrap().push(line);
        }
    });
    (lines, reader)
}

/// A consumer process, its output collected as it comes.
pub struct Running {
    child: Mutex<Child>,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// The threads reading them.
    readers: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Running {
    /// Starts `cmd` (a `logheal run`) with its output collected.
    pub fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (stdout, out_reader) = collect(child.stdout.take().unwrap());
        let (stderr, err_reader) = collect(child.stderr.take().unwrap());
        Running {
            child: Mutex::new(child),
            stdout,
            stderr,
            readers: Mutex::new(vec![out_reader, err_reader]),
        }
    }

    pub fn records(&self) -> Vec<Value> {
        json_records(&self.stdout.lock().unwrap().join("\n"))
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Polls `/readyz` until it answers 200.
    pub fn wait_until_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.http_get("/readyz").0;
            if status == "HTTP/1.0 200 OK" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not ready within {timeout:?} ({status}); stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn wait_for_output(&self, timeout: Duration, done: impl Fn(&[Value]) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(&self.records()) {
            assert!(
                Instant::now() < deadline,
                "not seen within {timeout:?}; records:\n{}\nstderr:\n{}",
                self.records()
                    .iter()
                    .map(Value::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the log (stderr) contains `needle`; a line already there counts.
    pub fn wait_for_log(&self, timeout: Duration, needle: &str) {
        let deadline = Instant::now() + timeout;
        while !self.stderr().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no `{needle}` within {timeout:?}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL: no chance to commit or clean up. Returns the records printed before.
    pub fn kill9(self) -> Vec<Value> {
        let mut child = self.child.lock().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        drop(child);
        self.read_to_end();
        self.records()
    }

    /// `GET path` on the job's HTTP endpoint: (status line, body).
    pub fn http_get(&self, path: &str) -> (String, String) {
        self.http("GET", path, "")
    }

    /// A request to the job's HTTP endpoint with the tests' bearer token and a JSON
    /// body: (status line, body).
    pub fn http(&self, method: &str, path: &str, body: &str) -> (String, String) {
        let stderr = self.stderr();
        let address = stderr
            .lines()
            .find_map(|l| l.strip_prefix("logheal: listening on http://"))
            .unwrap_or_else(|| panic!("no listening address in:\n{stderr}"))
            .to_string();
        let mut stream = TcpStream::connect(&address).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.0\r\nHost: {address}\r\nAuthorization: Bearer {API_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        std::io::Read::read_to_string(&mut stream, &mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        (
            head.lines().next().unwrap_or_default().to_string(),
            body.to_string(),
        )
    }

    /// The value of a metric without labels (0 when not exported yet).
    pub fn metric(&self, name: &str) -> f64 {
        let (_, body) = self.http_get("/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    fn signal(&self, name: &str) {
        let pid = self.child.lock().unwrap().id();
        let sent = Command::new("kill")
            .args([name, &pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// SIGSTOP: the process is frozen (its connections stay open).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Sends SIGTERM (a graceful end: finish calls in flight, commit, leave the group).
    pub fn terminate(&self) {
        self.signal("-TERM");
    }

    /// Waits for the end.
    pub fn wait(self) -> Finished {
        let status = self.child.lock().unwrap().wait().unwrap();
        self.finished(status)
    }

    /// SIGTERM, then waits for the graceful end.
    pub fn stop(self) -> Finished {
        self.terminate();
        self.wait()
    }

    /// Waits (the process has ended) until its last lines are read.
    fn read_to_end(&self) {
        for reader in self.readers.lock().unwrap().drain(..) {
            reader.join().unwrap();
        }
    }

    fn finished(&self, status: ExitStatus) -> Finished {
        self.read_to_end();
        Finished {
            status,
            records: self.records(),
            stderr: self.stderr(),
        }
    }
}

pub struct Finished {
    pub status: ExitStatus,
    pub records: Vec<Value>,
    pub stderr: String,
}

impl Finished {
    /// The number at word `nth` of the summary line that starts with `label`.
    fn summary_number(&self, label: &str, nth: usize) -> u64 {
        let line = self
            .stderr
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no `{label}` in the summary:\n{}", self.stderr));
        line.split_whitespace().nth(nth).unwrap().parse().unwrap()
    }

    /// Lines read by the engine (since its last rebuild).
    pub fn lines_read(&self) -> u64 {
        self.summary_number("lines read", 2)
    }

    /// Records taken from Kafka over the whole run (across rebuilds after rebalances).
    pub fn records_consumed(&self) -> u64 {
        self.summary_number("kafka ", 1)
    }
}

/// The token the consumers of these tests accept on writing endpoints.
pub const API_TOKEN: &str = "kafka-t0ken";
