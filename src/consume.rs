//! The live job on Kafka: one consumer of a consumer group, feeding the engine in
//! record-time order across its partitions.
//!
//! Durability: offsets are committed at the engine's rewind point (before every open
//! incident and trace window), so whoever consumes a partition next, after a restart,
//! a `kill -9` or a rebalance, re-reads enough to rebuild the same incidents; the action
//! ledger answers the actions they ask for again. A rebalance (eager) rebuilds the
//! engine from the committed offsets of the new assignment.

use crate::config::KafkaSection;
use crate::live::Live;
use crate::run::Settings;
use anyhow::{anyhow, bail, Result};
use logheal_kafka::ledger::Ledger;
use logheal_kafka::source::{Polled, Source};
use logheal_kafka::{rekey, KafkaConfig};
use logheal_parsers::EventTime;
use logheal_pipeline::wall_clock_now;
use rdkafka::consumer::CommitMode;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often positions are committed and the ledger is followed.
const COMMIT_EVERY: Duration = Duration::from_secs(1);

#[derive(clap::Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers (HOST:PORT,...): consume instead of reading stdin.
    #[arg(long)]
    brokers: Option<String>,
    /// Topic to consume (repeatable).
    #[arg(long = "topic", value_name = "NAME")]
    topics: Vec<String>,
    /// Consumer group [default: logheal].
    #[arg(long)]
    group: Option<String>,
    /// A librdkafka property, KEY=VALUE (repeatable; overrides the config file).
    #[arg(short = 'X', long = "kafka-property", value_name = "KEY=VALUE", value_parser = parse_property)]
    properties: Vec<(String, String)>,
    /// The compacted topic of action hand-offs [default: logheal-actions].
    #[arg(long)]
    ledger_topic: Option<String>,
    /// The topic between the two stages: correlation publishes signals there keyed by
    /// incident key, and each key is decided by one consumer of the group (so one
    /// outage is one incident, however many consumers); created when missing. `off`:
    /// each consumer keeps its own incidents [default: <group>-signals].
    #[arg(long, value_name = "TOPIC|off")]
    signals_topic: Option<String>,
    /// Correlators in this process, each a consumer of the group on a thread of its own
    /// (use the cores a consumer has; more than its partitions leave some idle) [default: 1].
    #[arg(long, value_name = "N")]
    correlate_threads: Option<usize>,
    /// With a signals topic: run both stages (all), or only one of them.
    #[arg(long, value_name = "all|correlate|decide")]
    stage: Option<logheal_pipeline::signal::Stage>,
    /// Exit once every assigned partition is drained: let time run out as `replay` does,
    /// wait for the calls, commit everything, leave the group.
    #[arg(long)]
    pub until_end: bool,
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s}: expected KEY=VALUE"))?;
    Ok((k.trim().to_string(), v.to_string()))
}

impl KafkaArgs {
    /// Whether `--group` was left to its default.
    pub fn group_unset(&self) -> bool {
        self.group.is_none()
    }

    /// The Kafka settings from the flags over the file's `kafka` section; `None` when
    /// neither names brokers.
    pub fn resolve(
        &self,
        file: Option<&KafkaSection>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<(KafkaConfig, Option<String>)>> {
        let mut config = match (file, &self.brokers) {
            (Some(section), _) => section.resolve(env)?,
            (None, Some(brokers)) => KafkaConfig::new(brokers, Vec::new(), "logheal"),
            (None, None) if self.topics.is_empty() => return Ok(None),
            (None, None) => bail!("--topic needs --brokers (or a config file with kafka.brokers)"),
        };
        if let Some(brokers) = &self.brokers {
            config.brokers = brokers.clone();
        }
        if !self.topics.is_empty() {
            config.topics = self.topics.clone();
        }
        if let Some(group) = &self.group {
            config.group = group.clone();
        }
        if let Some(topic) = &self.ledger_topic {
            config.ledger_topic = topic.clone();
        }
        // The signals topic: named by the flag, else by the file, else after the group
        // (one per job: two jobs on one cluster must not read each other's signals).
        let signals = self
            .signals_topic
            .clone()
            .or_else(|| file.and_then(|f| f.signals_topic.clone()));
        config.signals_topic = match signals.as_deref() {
            Some("off") => None,
            Some(topic) => Some(topic.to_string()),
            None => Some(format!("{}-signals", config.group)),
        };
        if let Some(stage) = self.stage {
            config.stage = stage;
        }
        if let Some(n) = self.correlate_threads {
            config.correlate_threads = n;
        }
        for (k, v) in &self.properties {
            config.properties.retain(|(key, _)| key != k);
            config.properties.push((k.clone(), v.clone()));
        }
        config.check()?;
        let rekey_to = file.and_then(|f| f.rekey.as_ref()).map(|r| r.to.clone());
        Ok(Some((config, rekey_to)))
    }
}

pub fn run(
    settings: &Settings,
    (kafka, rekey_to): &(KafkaConfig, Option<String>),
    until_end: bool,
) -> Result<ExitCode> {
    let (mut live, _tx) = Live::start(settings)?;
    let mut kafka = kafka.clone();
    let rekeying = Rekeying::start(&mut kafka, rekey_to.as_deref());
    live.open_ledger(&kafka)?;
    let mut source =
        Source::subscribe(&kafka).map_err(|e| anyhow!("cannot join the consumer group: {e}"))?;
    tracing::info!(brokers = kafka.brokers, topics = ?kafka.topics, group = kafka.group, "consuming");
    let mut next_commit = Instant::now() + COMMIT_EVERY;
    let mut drained_check = Instant::now();
    let mut shutdown = false;
    loop {
        if live.take_control() {
            shutdown = true;
            break;
        }
        let polled = source.poll(settings.tick);
        if polled == Polled::Rebalanced {
            // The assignment changed: start over from the committed offsets.
            live.job.engine = live.job.engine.fresh();
            live.rebuilt();
        }
        let now = Instant::now();
        live.out.input_at = Some(now);
        feed(
            &mut live,
            &mut source,
            now,
            false,
            settings.engine.time.lateness,
        )?;
        let engine = &mut live.job.engine;
        let idle = polled == Polled::Idle && source.merge.buffered_bytes() == 0;
        engine.set_wall_clock(wall_clock_now());
        if idle {
            // Caught up: the wall clock moves time on, from the newest record.
            engine.advance_idle(live.last_admitted.elapsed());
        }
        live.after_input()?;
        live.out.input_at = None;
        if now >= next_commit {
            next_commit = now + COMMIT_EVERY;
            live.commit(&mut source, &kafka, CommitMode::Async);
            live.tick();
            live.metrics.observe(&live.job.engine);
            live.metrics
                .observe_kafka(&source, live.handoff.answered_from_ledger);
        }
        if until_end && source.quiet(&polled) && now >= drained_check {
            drained_check = now + Duration::from_millis(500);
            if source.drained(Duration::from_secs(5)).unwrap_or(false) {
                break;
            }
        }
    }
    if shutdown {
        // SIGTERM: let calls in flight finish (within the shutdown timeout), then
        // commit what a successor needs: it re-reads from before every open incident
        // and schedules the pending actions again; the ledger hands it the calls that
        // did not finish, under the same keys.
        live.shut_down(
            settings.shutdown_timeout,
            "shutdown: the consumer that takes the partition over carries it on",
        )?;
        live.commit(&mut source, &kafka, CommitMode::Sync);
    } else {
        // --until-end: the partitions are drained; end like a replay, commit everything.
        let lateness = settings.engine.time.lateness;
        feed(&mut live, &mut source, Instant::now(), true, lateness)?;
        let Live {
            job, handoff, out, ..
        } = &mut live;
        handoff.run_out(&mut job.engine, job.executor.as_ref(), out)?;
        if let Err(e) = source.commit(EventTime::MAX, CommitMode::Sync) {
            tracing::error!(error = %e, "final commit failed; the next consumer re-reads from the last one");
        }
    }
    live.flush_ledger();
    rekeying.stop();
    let positions: Vec<String> = source
        .positions()
        .iter()
        .map(|(t, p, o)| format!("{t}/{p}@{o}"))
        .collect();
    live.finish_output()?;
    eprintln!("{}", live.job.engine.stats());
    eprintln!(
        "  kafka           {} records consumed, {} rebalances, {} consumer errors; {} actions answered from the ledger; positions {}",
        source.merge.released_total,
        source.shared.rebalances.load(Ordering::Relaxed),
        source.errors,
        live.handoff.answered_from_ledger,
        if positions.is_empty() {
            "none".into()
        } else {
            positions.join(" ")
        }
    );
    source.close();
    Ok(ExitCode::SUCCESS)
}

/// The re-keying stage inside the job (`kafka.rekey.to`): a thread that reads the input
/// topics in `<group>-rekey` and writes them keyed by trace id to the re-keyed topic,
/// which the job then consumes instead.
pub struct Rekeying {
    thread: Option<std::thread::JoinHandle<Result<rekey::RekeyStats, logheal_kafka::Error>>>,
    stop: Arc<AtomicBool>,
}

impl Rekeying {
    /// Starts it when `to` is set, and points `kafka` at the re-keyed topic.
    pub fn start(kafka: &mut KafkaConfig, to: Option<&str>) -> Rekeying {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = to.map(|to| {
            let mut stage = kafka.clone();
            stage.group = format!("{}-rekey", kafka.group);
            kafka.topics = vec![to.to_string()];
            let (to, stop) = (to.to_string(), stop.clone());
            std::thread::spawn(move || rekey::run(&stage, &to, &stop, false))
        });
        Rekeying { thread, stop }
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread {
            match thread.join() {
                Ok(Err(e)) => tracing::error!(error = %e, "re-keying stopped"),
                Ok(Ok(stats)) => tracing::info!(records = stats.records, "re-keying stopped"),
                Err(_) => tracing::error!("re-keying panicked"),
            }
        }
    }
}

/// Hands the records whose order is known (all with `flush`) to the engine. While
/// catching up on records older than the wall clock, event time stands still while a
/// call is in flight, as in a replay: a backlog read in seconds must not time out
/// incidents whose calls take milliseconds. A live stream never waits.
fn feed(
    live: &mut Live,
    source: &mut Source,
    now: Instant,
    flush: bool,
    lateness: Duration,
) -> Result<()> {
    let behind = wall_clock_now().minus(lateness);
    let execute = live.job.executor.is_some();
    loop {
        let engine = &mut live.job.engine;
        let mut paused = false;
        let last_admitted = &mut live.last_admitted;
        source.merge.release(now, flush, |record, stamp, position| {
            engine.push_stamped(position.index(), record, stamp.map(EventTime::from_millis));
            let admitted = engine.admitted();
            if admitted.is_some() {
                *last_admitted = now;
            }
            paused = execute && admitted.is_some_and(|t| t < behind) && engine.awaiting_outcomes();
            (admitted, paused)
        });
        if !paused {
            return Ok(());
        }
        live.exchange(true)?;
    }
}

/// The Kafka side of a live job, the same with one engine and with the stages apart.
impl Live {
    /// With actions called: reads the ledger (their hand-offs and the silences), calls
    /// again what a dead predecessor left pending, and applies the silences.
    pub fn open_ledger(&mut self, kafka: &KafkaConfig) -> Result<()> {
        let Some(executor) = &self.job.executor else {
            return Ok(());
        };
        let ledger = Ledger::open(kafka, self.job.runtime.handle().clone())?;
        tracing::info!(
            topic = kafka.ledger_topic,
            entries = ledger.len(),
            "action ledger read"
        );
        self.handoff = std::mem::take(&mut self.handoff).with_ledger(ledger);
        self.handoff.resume_pending(&mut self.job.engine, executor);
        self.sync_silences(true);
        Ok(())
    }

    /// After a rebalance, with a fresh engine in place: it gets the silences, outcomes
    /// of calls made for the old one no longer steer it, and the job is ready.
    pub fn rebuilt(&mut self) {
        self.sync_silences(true);
        self.handoff.new_generation();
        self.metrics.set_ready(true);
    }

    /// Commits the positions a successor needs to rebuild the current state, and takes
    /// in what other consumers wrote to the ledger; the rewind point committed at.
    pub fn commit(
        &mut self,
        source: &mut Source,
        kafka: &KafkaConfig,
        mode: CommitMode,
    ) -> EventTime {
        let point = self.job.engine.rewind_point(kafka.max_rewind);
        if let Err(e) = source.commit(point, mode) {
            tracing::warn!(error = %e, "commit failed; retried at the next one");
        }
        if let Some(ledger) = self.handoff.ledger() {
            ledger.follow();
        }
        point
    }

    /// Waits for the outcomes still being written to the ledger.
    pub fn flush_ledger(&mut self) {
        if let Some(ledger) = self.handoff.ledger() {
            if let Err(e) = ledger.flush() {
                tracing::warn!(error = %e, "action outcomes not all written to the ledger");
            }
        }
    }
}
