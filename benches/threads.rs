//! Correlation on two threads against one, end to end: the replay bench's 1,000,000+
//! line multi-service log split by trace id into 4 partition files, replayed by the
//! binary with `--threads 1` and `--threads 2`, alternating, 5 rounds each; one engine
//! over the whole log (`logheal replay FILE`) is timed in the same rounds for reference.
//! Medians and their ratios are printed. Run with `cargo bench --bench threads`.
//!
//! The machine's own ceiling is measured in the same rounds: two `--threads 1` processes
//! over two halves of the partitions, one after the other and then at the same time (two
//! vCPUs that share a physical core give far less than 2x).

#[allow(dead_code)] // the kafka bench uses all of it, this one part
mod common;
use common::{corpus, median};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PARTITIONS: usize = 4;
const ROUNDS: usize = 5;

/// The trace id of a generated line (its services' lines when it has none).
fn key(line: &[u8]) -> &[u8] {
    let needle = b"\"trace_id\":\"";
    line.windows(needle.len())
        .position(|w| w == needle)
        .map(|at| {
            let rest = &line[at + needle.len()..];
            &rest[..rest.iter().position(|&b| b == b'"').unwrap_or(0)]
        })
        .unwrap_or(b"")
}

fn write_parts(dir: &Path, buf: &[u8]) -> (PathBuf, Vec<PathBuf>, usize) {
    std::fs::create_dir_all(dir).expect("a temporary directory");
    let mut parts: Vec<Vec<u8>> = (0..PARTITIONS)
        .map(|_| Vec::with_capacity(buf.len() / PARTITIONS + 1))
        .collect();
    let mut n = 0;
    for line in buf.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let h = key(line).iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        let part = &mut parts[(h % PARTITIONS as u64) as usize];
        part.extend_from_slice(line);
        part.push(b'\n');
        n += 1;
    }
    let whole = dir.join("whole.jsonl");
    std::fs::write(&whole, buf).expect("written");
    let files = parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let path = dir.join(format!("part-{i}.jsonl"));
            std::fs::write(&path, p).expect("written");
            path
        })
        .collect();
    (whole, files, n)
}

fn time(args: &[&str], files: &[PathBuf]) -> Duration {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_logheal"));
    cmd.args(args).args(files);
    common::timed(cmd).took
}

/// Two processes over two halves of the files: one after the other, then together.
fn halves(files: &[PathBuf]) -> (Duration, Duration) {
    let (a, b) = files.split_at(files.len() / 2);
    let spawn = |files: &[PathBuf]| {
        Command::new(env!("CARGO_BIN_EXE_logheal"))
            .args(["replay", "--threads", "1"])
            .args(files)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("logheal runs")
    };
    let start = Instant::now();
    for half in [a, b] {
        assert!(spawn(half).wait().expect("ends").success());
    }
    let sequential = start.elapsed();
    let start = Instant::now();
    let (mut x, mut y) = (spawn(a), spawn(b));
    assert!(x.wait().expect("ends").success() && y.wait().expect("ends").success());
    (sequential, start.elapsed())
}

fn main() {
    let dir = std::env::temp_dir().join(format!("logheal-bench-threads-{}", std::process::id()));
    let (whole, files, n) = write_parts(&dir, &corpus());
    assert!(n >= 1_000_000, "{n} lines");
    let (mut one, mut two, mut engine) = (Vec::new(), Vec::new(), Vec::new());
    let mut ceiling = Vec::new();
    for round in 0..ROUNDS {
        for (label, args, rates, inputs) in [
            (
                "--threads 1",
                &["replay", "--threads", "1"][..],
                &mut one,
                &files[..],
            ),
            (
                "--threads 2",
                &["replay", "--threads", "2"][..],
                &mut two,
                &files[..],
            ),
            (
                "one engine ",
                &["replay"][..],
                &mut engine,
                std::slice::from_ref(&whole),
            ),
        ] {
            let t = time(args, inputs);
            let rate = n as f64 / t.as_secs_f64();
            eprintln!("round {round}: replay {label} {rate:>10.0} lines/s ({t:.2?})");
            rates.push(rate);
        }
        let (sequential, together) = halves(&files);
        let speedup = sequential.as_secs_f64() / together.as_secs_f64();
        eprintln!("round {round}: two processes, halves: {sequential:.2?} one after the other, {together:.2?} together = {speedup:.2}x");
        ceiling.push(speedup);
    }
    let (r1, r2, e) = (median(one), median(two), median(engine));
    println!("replay of {n} lines in {PARTITIONS} partition files, median of {ROUNDS}:");
    println!("  one engine, whole log (reference)   {e:>10.0} lines/s");
    println!("  --threads 1                          {r1:>10.0} lines/s");
    println!(
        "  --threads 2                          {r2:>10.0} lines/s  = {:.2}x --threads 1",
        r2 / r1
    );
    println!(
        "  machine ceiling: two processes at once {:.2}x one after the other",
        median(ceiling)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
