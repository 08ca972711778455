//! A live `logheal run` for end-to-end tests of the operator's view: stdin kept open,
//! its JSON records collected, its listen address known, and plain HTTP requests to it.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The token the jobs of these tests accept on writing endpoints.
pub const TOKEN: &str = "operator-t0ken";

pub struct Job {
    child: Child,
    stdin: Option<ChildStdin>,
    records: Arc<Mutex<Vec<Value>>>,
    log: Arc<Mutex<Vec<String>>>,
    pub addr: String,
}

impl Job {
    /// Starts `cmd` (a `logheal run ... -`) with JSON output on a free port.
    pub fn start(mut cmd: Command) -> Job {
        cmd.env("LOGHEAL_API_TOKEN", TOKEN)
            .args([
                "--output",
                "json",
                "--tick",
                "100ms",
                "--listen",
                "127.0.0.1:0",
                "-",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("logheal runs");
        let records = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (r, stdout) = (records.clone(), child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                r.lock().unwrap().push(serde_json::from_str(&line).unwrap());
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let (l, stderr) = (log.clone(), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("logheal: listening on http://") {
                    let _ = tx.send(addr.to_string());
                }
                l.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(15))
            .expect("the listening address");
        let stdin = child.stdin.take();
        Job {
            child,
            stdin,
            records,
            log,
            addr,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn write(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(text.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// Writes `log` as a live source would deliver it around one moment: the lines up
    /// to the first stamped `from` or later, then, once `done` holds (an action's outcome
    /// came back), the rest. Written at once, minutes of log reach the job in a
    /// millisecond, so an outcome comes back after the last line and the incident is
    /// RECOVERING from there: its quiet period then passes only in wall time (idle
    /// advance, a minute), past the tests' patience.
    pub fn write_until(&mut self, log: &str, from: &str, what: &str, done: impl Fn(&Job) -> bool) {
        let split = log
            .lines()
            .scan(0, |at, line| {
                let start = *at;
                *at += line.len() + 1;
                Some((start, line))
            })
            .find(|(_, line)| {
                serde_json::from_str::<Value>(line)
                    .ok()
                    .and_then(|v| v["ts"].as_str().map(|ts| ts >= from))
                    .unwrap_or(false)
            })
            .map_or(log.len(), |(start, _)| start);
        self.write(&log[..split]);
        self.wait_until(what, done);
        self.write(&log[split..]);
    }

    /// A 503 cascade rooted at `root`, stamped now.
    pub fn cascade(&mut self, trace: &str, root: &str) {
        let mut text = String::new();
        for (i, svc) in [root, "checkout", "gateway"].iter().enumerate() {
            let ts = logheal_pipeline::wall_clock_now()
                .plus(Duration::from_millis(i as u64 * 5))
                .to_rfc3339();
            text.push_str(&format!(
                "{{\"ts\":\"{ts}\",\"service\":\"{svc}\",\"trace_id\":\"{trace}\",\"status\":503,\"msg\":\"down\"}}\n"
            ));
        }
        self.write(&text);
    }

    pub fn records(&self) -> Vec<Value> {
        self.records.lock().unwrap().clone()
    }

    /// Waits (up to 30 s) for `done` to hold, polling every 50 ms.
    pub fn wait_until(&self, what: &str, done: impl Fn(&Job) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; log: {:?}",
                self.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A plain HTTP/1.1 request; (status, body).
    pub fn http(&self, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
        let mut stream = std::net::TcpStream::connect(&self.addr).unwrap();
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response[9..12].parse().unwrap();
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    pub fn get_json(&self, path: &str) -> Value {
        let (status, body) = self.http("GET", path, None, "");
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// The incidents the API lists.
    pub fn incidents(&self) -> Vec<Value> {
        self.get_json("/api/v1/incidents")["incidents"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Ends the input and waits for the job to exit.
    pub fn finish(mut self) -> std::process::ExitStatus {
        drop(self.stdin.take());
        self.child.wait().unwrap()
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
