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

/// Runs `cmd` (a `logheal` command) to its end: how long it took, and its stdout.
pub fn timed(mut cmd: std::process::Command) -> (std::time::Duration, String) {
    let start = std::time::Instant::now();
    let out = cmd.output().expect("logheal runs");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (took, String::from_utf8_lossy(&out.stdout).into_owned())
}
