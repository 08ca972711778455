//! Replay throughput on a generated 1,000,000+ line multi-service JSON log with the
//! built-in rules: parse + template mining + correlate + incidents, on one core.
//! Baselines measured in the same run: splitting lines only (the floor), and parsing each
//! line to a `serde_json::Value` (what a naive pipeline would do before any logic).
//!
//! `cargo bench --bench replay` prints criterion medians; the lines/s and MB/s of each
//! are printed alongside, computed from the median.

#[path = "../tests/support/loggen.rs"]
#[allow(dead_code)] // the tests use more of the generator than the bench does
mod loggen;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use logheal_pipeline::{Engine, EngineConfig};
use std::hint::black_box;
use std::time::Duration;

fn corpus() -> Vec<u8> {
    let scenario = loggen::Scenario {
        start_ms: loggen::EXAMPLE_START_MS,
        seconds: 800,
        requests_per_sec: 500,
        outages: vec![
            loggen::Outage {
                root: "payment",
                from_s: 100,
                to_s: 220,
            },
            loggen::Outage {
                root: "inventory",
                from_s: 500,
                to_s: 560,
            },
        ],
        storms: vec![loggen::Storm {
            service: "search",
            from_s: 300,
            to_s: 360,
        }],
        isolated_503s: 500,
        seed: 1,
    };
    let mut buf = Vec::with_capacity(300 << 20);
    scenario.write(&mut buf).expect("in memory");
    buf
}

fn lines(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    buf.split(|&b| b == b'\n').filter(|l| !l.is_empty())
}

fn replay(c: &mut Criterion) {
    let buf = corpus();
    // `LOGHEAL_CORPUS=FILE cargo bench --bench replay` also writes the corpus, to time
    // the command line (`logheal replay FILE`) on the same input.
    if let Some(path) = std::env::var_os("LOGHEAL_CORPUS") {
        std::fs::write(&path, &buf).expect("the corpus file is writable");
    }
    let n = lines(&buf).count() as u64;
    assert!(n >= 1_000_000, "corpus has {n} lines");
    eprintln!("corpus: {n} lines, {:.1} MB", buf.len() as f64 / 1e6);

    let mut group = c.benchmark_group("replay");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(n));

    group.bench_function(BenchmarkId::new("baseline", "split-lines"), |b| {
        b.iter(|| lines(black_box(&buf)).map(|l| l.len()).sum::<usize>())
    });
    group.bench_function(BenchmarkId::new("baseline", "serde_json-Value"), |b| {
        b.iter(|| {
            lines(&buf)
                .filter(|l| serde_json::from_slice::<serde_json::Value>(l).is_ok())
                .count()
        })
    });
    group.bench_function(
        BenchmarkId::new("logheal", "parse+mine+correlate+incidents"),
        |b| b.iter(|| run_pipeline(&buf, n)),
    );
    group.finish();

    let mut bytes = c.benchmark_group("replay-bytes");
    bytes.sample_size(10);
    bytes.measurement_time(Duration::from_secs(20));
    bytes.throughput(Throughput::Bytes(buf.len() as u64));
    bytes.bench_function(
        BenchmarkId::new("logheal", "parse+mine+correlate+incidents"),
        |b| b.iter(|| run_pipeline(&buf, n)),
    );
    bytes.finish();
}

fn run_pipeline(buf: &[u8], n: u64) -> u64 {
    let mut engine =
        Engine::new(logheal_rules::builtin(), &EngineConfig::default()).expect("built-in rules");
    for line in lines(buf) {
        engine.push_line(line);
        engine.take_records().for_each(drop);
    }
    engine.finish();
    let stats = engine.stats();
    assert_eq!(stats.parsed, n);
    assert_eq!(stats.confirmed_incidents, 2);
    stats.transitions
}

criterion_group!(benches, replay);
criterion_main!(benches);
