//! End-to-end consumer throughput against a real broker: ≥ 1,000,000 records (the
//! replay bench's multi-service log, keyed by trace id, on 4 partitions) consumed through
//! the whole pipeline (Kafka source, partition merge, parse, mining, correlation,
//! incidents, commits every second), next to a bare rdkafka consumer that only polls and
//! counts, with the same client settings, on the same topic, in the same run.
//!
//! `scripts/kafka-bench.sh` starts a broker and runs it; or set LOGHEAL_TEST_BROKERS and
//! run `cargo bench --bench kafka`. Each side runs ROUNDS times, alternating, with a
//! fresh consumer group; the medians and their ratio are printed. With
//! LOGHEAL_BENCH_PRODUCE_ONLY set it only writes the topic and prints its name, for
//! timing `logheal run` against it by hand.

mod common;
use common::{corpus, median};

use logheal_kafka::source::{Polled, Source};
use logheal_kafka::{send_waiting, KafkaConfig};
use logheal_pipeline::{Engine, EngineConfig};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 4;
const ROUNDS: usize = 3;

/// The JSON fields the producer keys and stamps records by.
fn key_and_time(line: &[u8]) -> (String, i64) {
    let v: serde_json::Value = serde_json::from_slice(line).expect("generated JSON");
    let ts = chrono::DateTime::parse_from_rfc3339(v["ts"].as_str().expect("ts"))
        .expect("RFC 3339")
        .timestamp_millis();
    (v["trace_id"].as_str().unwrap_or_default().to_string(), ts)
}

fn produce(brokers: &str, topic: &str, buf: &[u8]) -> u64 {
    let client = KafkaConfig::new(brokers, vec![], "bench").client();
    let admin: AdminClient<DefaultClientContext> = client.create().expect("admin client");
    let new = NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for r in runtime
        .block_on(admin.create_topics([&new], &AdminOptions::new()))
        .expect("create topic")
    {
        r.expect("topic created");
    }
    let producer: BaseProducer = KafkaConfig::new(brokers, vec![], "bench")
        .client()
        .set("linger.ms", "20")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let mut n = 0;
    for line in buf.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let (key, ts) = key_and_time(line);
        let record = BaseRecord::to(topic).key(&key).payload(line).timestamp(ts);
        send_waiting(&producer, record).expect("produced");
        n += 1;
    }
    producer.flush(Duration::from_secs(120)).expect("flushed");
    n
}

fn config(brokers: &str, topic: &str, group: &str) -> KafkaConfig {
    KafkaConfig::new(brokers, vec![topic.to_string()], group)
}

/// Polls and counts until `n` records arrived: the rate the broker and client allow.
/// How long it took, and how long until the first record (joining the group).
fn bare(brokers: &str, topic: &str, group: &str, n: u64) -> (Duration, Duration) {
    let consumer: BaseConsumer = config(brokers, topic, group)
        .client()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        // The source's fetch wait, so the baseline fetches as the pipeline does.
        .set("fetch.wait.max.ms", logheal_kafka::source::FETCH_WAIT_MS)
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribed");
    let start = Instant::now();
    let mut first = None;
    let mut seen = 0;
    while seen < n {
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
            first.get_or_insert_with(|| start.elapsed());
            seen += 1;
        }
    }
    (start.elapsed(), first.unwrap_or_default())
}

/// The whole pipeline until `n` records went through it.
fn logheal(brokers: &str, topic: &str, group: &str, n: u64) -> (Duration, u64) {
    let kafka = config(brokers, topic, group);
    let mut source = Source::subscribe(&kafka).expect("source");
    let mut engine = Engine::new(logheal_rules::builtin(), &EngineConfig::default())
        .expect("the built-in rules");
    let start = Instant::now();
    let mut next_commit = start + Duration::from_secs(1);
    while source.merge.released_total < n {
        if source.poll(Duration::from_millis(100)) == Polled::Rebalanced {
            engine = engine.fresh();
        }
        let now = Instant::now();
        source.merge.release(now, false, |record, _, position| {
            let partition = position.index();
            engine.push_record(partition, record);
            (engine.admitted(), false)
        });
        if now >= next_commit {
            next_commit = now + Duration::from_secs(1);
            let point = engine.rewind_point(kafka.max_rewind);
            source.commit(point, CommitMode::Async).expect("commit");
        }
        engine.take_records().for_each(drop);
    }
    let took = start.elapsed();
    // The windows still open at the end run out, as at the end of a replay.
    engine.finish();
    (took, engine.stats().chains)
}

/// What one engine finds in the log in time order (what `logheal replay` finds): the
/// chains every consumer of the topic must find too, whatever order the broker hands
/// the partitions' records out in.
fn replay_chains(buf: &[u8]) -> u64 {
    let mut engine = Engine::new(logheal_rules::builtin(), &EngineConfig::default())
        .expect("the built-in rules");
    for line in buf.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        engine.push_line(line);
    }
    engine.finish();
    engine.stats().chains
}

/// What one `logheal run` took: in all, until its first input record (process start,
/// signals topic, joining both groups), the chains its decider took (a correlator that
/// re-reads its input after a rebalance raises some again; the decider drops those) and
/// the records skipped, from its summary.
struct Ran {
    took: Duration,
    first: Duration,
    chains: u64,
    skipped: u64,
}

/// `logheal run --until-end --dry-run` (the binary, stages apart through a signals topic
/// of its own) with `threads` correlators, until it has drained the topic and ended.
fn logheal_run(brokers: &str, topic: &str, group: &str, threads: usize) -> Ran {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_logheal"));
    cmd.args([
        "run",
        "--brokers",
        brokers,
        "--topic",
        topic,
        "--group",
        group,
    ])
    .args(["--until-end", "--dry-run", "--output", "json"])
    .args(["--listen", "127.0.0.1:0"])
    .args(["--correlate-threads", &threads.to_string()]);
    let run = common::timed(cmd);
    let first = run
        .until_log(&format!("reading from topic=\"{topic}\""))
        .expect("the job logs the first record of each input partition");
    let summary: serde_json::Value = (run.stdout.lines())
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|r| r["type"] == "summary")
        .expect("a summary record");
    let skipped = summary["skipped"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum());
    Ran {
        took: run.took,
        first,
        chains: summary["chains_taken"].as_u64().unwrap_or(0),
        skipped,
    }
}

fn main() {
    let brokers = std::env::var("LOGHEAL_TEST_BROKERS")
        .expect("set LOGHEAL_TEST_BROKERS=HOST:PORT, or run scripts/kafka-bench.sh");
    let topic = format!("bench-{}", std::process::id());
    let buf = corpus();
    let started = Instant::now();
    let n = produce(&brokers, &topic, &buf);
    if std::env::var_os("LOGHEAL_BENCH_PRODUCE_ONLY").is_some() {
        // For A/B runs of the binary by hand against one topic (the broker stays up).
        println!("{topic}");
        return;
    }
    let expected = replay_chains(&buf);
    assert!(n >= 1_000_000, "{n} records");
    eprintln!(
        "produced {n} records ({:.1} MB) to {topic} ({PARTITIONS} partitions) in {:.1?}",
        buf.len() as f64 / 1e6,
        started.elapsed()
    );
    let (mut bare_rates, mut logheal_rates) = (Vec::new(), Vec::new());
    // From the first record on (after joining the group, and for the binary after
    // starting): the rates once records flow.
    let (mut bare_flowing, mut run_flowing) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (t, first) = bare(&brokers, &topic, &format!("{topic}-bare-{round}"), n);
        let rate = n as f64 / t.as_secs_f64();
        eprintln!(
            "round {round}: bare consumer  {rate:>10.0} records/s ({t:.2?}, first record after {first:.2?})"
        );
        bare_rates.push(rate);
        bare_flowing.push(n as f64 / (t - first).as_secs_f64());
        let (t, chains) = logheal(&brokers, &topic, &format!("{topic}-logheal-{round}"), n);
        assert_eq!(
            chains, expected,
            "the pipeline found other chains than a replay"
        );
        let rate = n as f64 / t.as_secs_f64();
        eprintln!(
            "round {round}: logheal        {rate:>10.0} records/s ({t:.2?}, {chains} chains)"
        );
        logheal_rates.push(rate);
    }
    // The binary with one and with two correlate threads, alternating (the broker runs
    // on the same machine and takes its share of the cores).
    let (mut one, mut two) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        for (threads, rates) in [(1, &mut one), (2, &mut two)] {
            let group = format!("{topic}-run{threads}-{round}");
            let ran = logheal_run(&brokers, &topic, &group, threads);
            assert_eq!(
                (ran.chains, ran.skipped),
                (expected, 0),
                "logheal run: chains and skipped records against a replay's"
            );
            let rate = n as f64 / ran.took.as_secs_f64();
            eprintln!(
                "round {round}: logheal run --correlate-threads {threads}  {rate:>10.0} records/s ({:.2?}, first record after {:.2?})",
                ran.took, ran.first
            );
            rates.push(rate);
            if threads == 1 {
                run_flowing.push(n as f64 / (ran.took - ran.first).as_secs_f64());
            }
        }
    }
    let (b, l) = (median(bare_rates), median(logheal_rates));
    let (r1, r2) = (median(one), median(two));
    let (bf, rf) = (median(bare_flowing), median(run_flowing));
    println!("kafka end-to-end, {n} records, median of {ROUNDS}:");
    println!("  bare rdkafka consumer (poll + count)  {b:>10.0} records/s");
    println!(
        "  logheal (source + whole pipeline)     {l:>10.0} records/s  = {:.0} % of bare",
        100.0 * l / b
    );
    println!(
        "  logheal run, 1 correlate thread      {r1:>10.0} records/s  = {:.0} % of bare",
        100.0 * r1 / b
    );
    println!(
        "  logheal run, 2 correlate threads     {r2:>10.0} records/s  = {:.2}x one thread",
        r2 / r1
    );
    println!(
        "  from the first record on: bare {bf:.0}, logheal run (1 thread) {rf:.0} records/s = {:.0} % of bare",
        100.0 * rf / bf
    );
}
