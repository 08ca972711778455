//! What the end-to-end benches share: the generated corpus and the median.

#[path = "../../tests/support/loggen.rs"]
#[allow(dead_code)] // the tests use more of the generator than the benches do
mod loggen;

/// The replay bench's multi-service log with one payment outage: 1,080,378 lines
/// (307 MB) of JSON, 500 requests a second for 800 s.
pub fn corpus() -> Vec<u8> {
    let scenario = loggen::Scenario {
        seconds: 800,
        requests_per_sec: 500,
        outages: vec![loggen::Outage {
            root: "payment",
            from_s: 100,
            to_s: 220,
        }],
        isolated_503s: 500,
        seed: 1,
        ..loggen::example()
    };
    let mut buf = Vec::with_capacity(300 << 20);
    scenario.write(&mut buf).expect("in memory");
    buf
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A `logheal` command run to its end.
pub struct Run {
    /// Wall time from spawning it to its exit.
    pub took: std::time::Duration,
    pub stdout: String,
    pub stderr: String,
    /// When it was spawned (to place its log lines' timestamps).
    pub started: std::time::SystemTime,
}

impl Run {
    /// Time from the spawn to the first log line (on stderr) that contains `needle`,
    /// read from the line's RFC 3339 timestamp.
    pub fn until_log(&self, needle: &str) -> Option<std::time::Duration> {
        let line = self.stderr.lines().find(|l| l.contains(needle))?;
        let at = humantime::parse_rfc3339_weak(line.split_whitespace().next()?).ok()?;
        at.duration_since(self.started).ok()
    }
}

/// Runs `cmd` (a `logheal` command) to its end.
pub fn timed(mut cmd: std::process::Command) -> Run {
    let started = std::time::SystemTime::now();
    let start = std::time::Instant::now();
    let out = cmd.output().expect("logheal runs");
    let took = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    Run {
        took,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
        started,
    }
}
