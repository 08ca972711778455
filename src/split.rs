//! The live job on Kafka with the stages apart (`kafka.signals_topic`): one outage is
//! one incident however many consumers the group has.
//!
//! - **Correlate** (a thread, or the whole process with `stage: correlate`) consumes the
//!   input topics in the job's group, runs parse, mine, select and the per-trace windows,
//!   and publishes each signal to the signals topic keyed by incident key (rule and root
//!   service), plus a watermark (its event time for the partitions it owns) to every
//!   partition several times a second. Its input offsets are committed at its own rewind
//!   point (the open trace windows) and only after the brokers confirmed every signal
//!   raised before.
//! - **Decide** (the main loop, or the whole process with `stage: decide`) consumes the
//!   signals topic in the group `<group>-decide`: each incident key lands in one partition,
//!   so one decider owns it. Its time is the least watermark over every input partition.
//!   It runs the incident machines, the agenda and the actions through the ledger, and
//!   commits the signals topic at its own rewind point (before the first signal of every
//!   open incident), so a successor after a `kill -9` rebuilds the same incidents, with
//!   the same ids, and the ledger answers the actions already called.

use crate::consume::Rekeying;
use crate::live::{Live, Message};
use crate::output::load_rules;
use crate::run::Settings;
use anyhow::{anyhow, Result};
use logheal_kafka::signals::{ensure_topic, input_partitions, wires, Publisher};
use logheal_kafka::source::{Polled, Source};
use logheal_kafka::KafkaConfig;
use logheal_parsers::EventTime;
use logheal_pipeline::signal::{Stage, Watermark, Wire};
use logheal_pipeline::{wall_clock_now, Engine, EngineConfig, Stats};
use rdkafka::consumer::CommitMode;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a correlator publishes its watermark.
const WATERMARK_EVERY: Duration = Duration::from_millis(200);
/// How often positions are committed (and the ledger followed).
const COMMIT_EVERY: Duration = Duration::from_secs(1);
/// The longest the decider waits in one poll of the signals topic.
const POLL: Duration = Duration::from_millis(100);
/// The longest a fetch of the signals topic waits at the broker (see `decide`).
const SIGNALS_FETCH_WAIT_MS: &str = "20";

/// What the correlators share with the job's loop: each one's statistics (for
/// `/metrics`), and how each ended.
struct Shared {
    workers: Vec<Mutex<Worker>>,
    /// Input records the correlators consumed, their rebalances and consumer errors.
    consumed: std::sync::atomic::AtomicU64,
    rebalances: std::sync::atomic::AtomicU64,
    errors: std::sync::atomic::AtomicU64,
    /// The signals topic exists and the job has started: correlators may open their
    /// publishers (until then they join the group and buffer what the first fetches
    /// bring).
    signals_ready: AtomicBool,
}

#[derive(Default)]
struct Worker {
    stats: Stats,
    selected: Vec<(Arc<str>, u64)>,
    /// Whether it holds partitions now, whether it has read them to their end
    /// (`--until-end`), and how it ended.
    assigned: bool,
    drained: bool,
    ended: Option<Result<(), String>>,
}

impl Shared {
    fn new(workers: usize) -> Shared {
        Shared {
            workers: (0..workers).map(|_| Mutex::default()).collect(),
            consumed: Default::default(),
            rebalances: Default::default(),
            errors: Default::default(),
            signals_ready: AtomicBool::new(false),
        }
    }

    fn worker(&self, i: usize) -> std::sync::MutexGuard<'_, Worker> {
        self.workers[i].lock().expect("not poisoned")
    }

    /// A correlator's counters as they are now.
    fn report(&self, i: usize, engine: &Engine) {
        let mut slot = self.worker(i);
        slot.stats = engine.stats();
        slot.selected = engine.selected_by_rule();
    }

    /// The input counters of every correlator together.
    fn stats(&self) -> Stats {
        let mut all = Stats::default();
        for w in &self.workers {
            all.add_input(&w.lock().expect("not poisoned").stats);
        }
        all
    }

    /// Events selected per rule, over every correlator.
    fn selected(&self) -> Vec<(Arc<str>, u64)> {
        let mut all: Vec<(Arc<str>, u64)> = Vec::new();
        for w in &self.workers {
            for (rule, n) in &w.lock().expect("not poisoned").selected {
                match all.iter_mut().find(|(r, _)| r == rule) {
                    Some((_, total)) => *total += n,
                    None => all.push((rule.clone(), *n)),
                }
            }
        }
        all
    }

    /// The first correlator's error, if one failed.
    fn failure(&self) -> Option<String> {
        self.workers
            .iter()
            .find_map(|w| match &w.lock().expect("not poisoned").ended {
                Some(Err(e)) => Some(e.clone()),
                _ => None,
            })
    }

    /// Whether every correlator holding partitions has read them to their end (and at
    /// least one has): with `--until-end` they stop together, since one that left the
    /// group early would hand its partitions to the others, and a rebalance makes them
    /// start over from their rewind points.
    fn all_drained(&self) -> bool {
        self.all_holding(|w| w.drained || w.ended.is_some(), |w| w.drained)
    }

    /// Whether correlation is over: every correlator holding partitions ended (one
    /// without any has nothing to finish), and at least one did.
    fn all_ended(&self) -> bool {
        self.all_holding(|w| w.ended.is_some(), |w| w.ended.is_some())
    }

    /// Whether `done` holds for every correlator that holds partitions, and `one` for
    /// at least one correlator.
    fn all_holding(&self, done: impl Fn(&Worker) -> bool, one: impl Fn(&Worker) -> bool) -> bool {
        let workers: Vec<_> = self
            .workers
            .iter()
            .map(|w| w.lock().expect("not poisoned"))
            .collect();
        workers.iter().any(|w| one(w)) && workers.iter().all(|w| done(w) || !w.assigned)
    }
}

pub fn run(
    settings: &Settings,
    (kafka, rekey_to): &(KafkaConfig, Option<String>),
    until_end: bool,
) -> Result<ExitCode> {
    let topic = kafka
        .signals_topic
        .clone()
        .ok_or_else(|| anyhow!("the stages apart need kafka.signals_topic"))?;
    let mut kafka = kafka.clone();
    // The correlators read the re-keyed topic when the job re-keys its input (and a
    // decider's time waits for its partitions).
    let rekeying = match (kafka.stage, rekey_to) {
        (Stage::Decide, Some(to)) => {
            kafka.topics = vec![to.clone()];
            None
        }
        _ => Some(Rekeying::start(&mut kafka, rekey_to.as_deref())),
    };
    let kafka = &kafka;
    let mut decide_settings = Settings {
        engine: EngineConfig {
            stage: Stage::Decide,
            ..settings.engine.clone()
        },
        ..settings.clone()
    };
    if kafka.stage == Stage::Correlate {
        // Nothing is decided here: no ledger and no receivers are needed.
        decide_settings.engine.execute = false;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let threads = if kafka.stage == Stage::Decide {
        0
    } else {
        kafka.correlate_threads.max(1)
    };
    let shared = Arc::new(Shared::new(threads));
    // One consumer of the group whose partitions are dealt out to the correlate threads
    // (its partition queues), each with its own miner and windows: the group sees one
    // member however many threads there are. It joins first, and the correlators poll
    // while the signals topic is made and the live job starts (a quarter of a second
    // on the Kafka bench), so their first fetches are under way by then.
    let sources = if threads == 0 {
        Vec::new()
    } else {
        Source::subscribe_workers(kafka, threads)
            .map_err(logheal_kafka::doing("cannot join the consumer group"))?
    };
    let mut taps = Vec::new();
    let correlators: Vec<_> = sources
        .into_iter()
        .map(|mut source| {
            let worker = source.worker();
            let config = EngineConfig {
                stage: Stage::Correlate,
                execute: false,
                ..settings.engine.clone()
            };
            let job = Correlation {
                rules: settings.rules.clone(),
                config,
                kafka: kafka.clone(),
                topic: topic.clone(),
                until_end,
                worker,
            };
            // Reloads of the rule files reach every correlator.
            let (tx, rx) = std::sync::mpsc::channel();
            taps.push(tx);
            let (stop, shared) = (stop.clone(), shared.clone());
            std::thread::Builder::new()
                .name(format!("correlate-{worker}"))
                .spawn(move || {
                    let result = correlate(&job, &mut source, &stop, &shared, &rx)
                        .map_err(|e| format!("{e:#}"));
                    if let Err(e) = &result {
                        tracing::error!(error = e, "correlation stopped");
                        // The others stop too (and leave the group together).
                        stop.store(true, Ordering::Relaxed);
                    }
                    shared.worker(worker).ended = Some(result);
                    source.close();
                })
                .expect("a thread")
        })
        .collect();
    // Nothing is published (so nothing committed) unless the whole job could start.
    let started = ensure_topic(kafka, &topic)
        .map_err(anyhow::Error::from)
        .and_then(|()| Live::start(&decide_settings));
    if started.is_ok() {
        shared.signals_ready.store(true, Ordering::Release);
    }
    let (mut live, _tx) = match started {
        Ok(started) => started,
        Err(e) => {
            stop.store(true, Ordering::Relaxed);
            for thread in correlators {
                let _ = thread.join();
            }
            if let Some(rekeying) = rekeying {
                rekeying.stop();
            }
            return Err(e);
        }
    };
    live.reload_taps.extend(taps);
    let outcome = if kafka.stage == Stage::Correlate {
        live.metrics.set_ready(true);
        wait_for_correlation(&mut live, &stop, &shared)
    } else {
        decide(
            &mut live, settings, kafka, &topic, until_end, &stop, &shared,
        )
    };
    stop.store(true, Ordering::Relaxed);
    for thread in correlators {
        let _ = thread.join();
    }
    if let Some(rekeying) = rekeying {
        rekeying.stop();
    }
    outcome?;
    if let Some(e) = shared.failure() {
        return Err(anyhow!("correlation failed: {e}"));
    }
    live.finish_output()?;
    let stats = merged_stats(&live.job.engine, &shared);
    eprintln!("{stats}");
    eprintln!(
        "  kafka           {} records consumed, {} rebalances, {} consumer errors; stages apart through {topic} ({}): {} chains taken, {} signals repeated (dropped), {} of rules not run here; {} actions answered from the ledger",
        shared.consumed.load(Ordering::Relaxed),
        shared.rebalances.load(Ordering::Relaxed),
        shared.errors.load(Ordering::Relaxed),
        match kafka.stage {
            Stage::All => "correlate and decide",
            Stage::Correlate => "correlate",
            Stage::Decide => "decide",
        },
        stats.chains_taken,
        stats.signals_repeated,
        stats.signals_unknown_rule,
        live.handoff.answered_from_ledger
    );
    Ok(ExitCode::SUCCESS)
}

/// The statistics of both stages: input from the correlator, decisions from here.
fn merged_stats(decider: &Engine, shared: &Shared) -> Stats {
    let mut s = shared.stats();
    s.take_decisions(&decider.stats());
    s
}

/// `stage: correlate`: serves the endpoints until a signal or the end of the input.
fn wait_for_correlation(live: &mut Live, stop: &AtomicBool, shared: &Shared) -> Result<()> {
    loop {
        match live.rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Message::Shutdown | Message::End) => return Ok(()),
            Ok(Message::Reload(why)) => live.request_reload(why),
            Ok(Message::Silence(_, reply)) => {
                let _ = reply.send(Err("silences are kept by the deciders".into()));
            }
            _ => {}
        }
        if stop.load(Ordering::Relaxed) || shared.all_ended() || shared.failure().is_some() {
            return Ok(());
        }
        // A reload is validated here and handed on to the correlators.
        live.after_input()?;
        live.metrics.observe_stats(&shared.stats());
    }
}

/// The decide loop: signals in, incidents and actions out.
fn decide(
    live: &mut Live,
    settings: &Settings,
    kafka: &KafkaConfig,
    topic: &str,
    until_end: bool,
    stop: &AtomicBool,
    shared: &Shared,
) -> Result<()> {
    let inputs = input_partitions(kafka)?;
    live.job.engine.set_inputs(inputs.clone());
    let mut signals = KafkaConfig {
        topics: vec![topic.to_string()],
        group: format!("{}-decide", kafka.group),
        ..kafka.clone()
    };
    // A signal should reach its decider at once. Brokers that answer a fetch only when
    // its wait runs out (tansu) would otherwise hold each one up to the default 500 ms
    // (and the last watermark of an --until-end run as long). A broker that answers
    // as soon as it has data is asked at most 50 times a second by an idle decider.
    if !signals
        .properties
        .iter()
        .any(|(k, _)| k == "fetch.wait.max.ms")
    {
        signals
            .properties
            .push(("fetch.wait.max.ms".into(), SIGNALS_FETCH_WAIT_MS.into()));
    }
    live.open_ledger(kafka)?;
    let mut source =
        Source::subscribe(&signals).map_err(|e| anyhow!("cannot join the deciders' group: {e}"))?;
    // Signals are sparse (a few watermarks a second may span minutes of a backlog): a
    // checkpoint per record, so a successor re-reads from the rewind point itself and not
    // from the middle of an incident that closed before it.
    source.merge.checkpoint_every = 1;
    tracing::info!(
        topic,
        group = signals.group,
        inputs = inputs.len(),
        "deciding"
    );
    let mut next_commit = Instant::now() + COMMIT_EVERY;
    let mut drained_check = Instant::now();
    let mut shutdown = false;
    loop {
        if live.take_control() {
            shutdown = true;
            break;
        }
        if let Some(e) = shared.failure() {
            return Err(anyhow!("correlation failed: {e}"));
        }
        // Short polls: signals are few, and the end of the input (the last watermark)
        // should be seen at once, not a tick later.
        let polled = source.poll(settings.tick.min(POLL));
        if polled == Polled::Rebalanced {
            live.job.engine = live.job.engine.fresh();
            live.job.engine.set_inputs(inputs.clone());
            let owned = source
                .merge
                .partitions
                .iter()
                .map(|p| p.partition)
                .collect();
            live.job.engine.set_owned(owned);
            take_floors(live, &source, topic);
            live.rebuilt();
        }
        let now = Instant::now();
        live.out.input_at = Some(now);
        feed(live, &mut source, false, settings.engine.time.lateness)?;
        live.after_input()?;
        live.out.input_at = None;
        if now >= next_commit {
            next_commit = now + COMMIT_EVERY;
            let point = live.commit(&mut source, kafka, CommitMode::Async);
            write_floors(live, &source, topic, point);
            live.tick();
            observe(live, shared);
            live.metrics
                .observe_kafka(&source, live.handoff.answered_from_ledger);
        }
        // Every correlator's last watermark was read on every signals partition: what
        // came before it is in. The brokers are asked once more all the same.
        let empty = source.merge.buffered_bytes() == 0;
        if until_end && empty && live.job.engine.input_ended() && now >= drained_check {
            drained_check = now + Duration::from_millis(500);
            if source.drained(Duration::from_secs(5)).unwrap_or(false) {
                break;
            }
        }
        if stop.load(Ordering::Relaxed) {
            shutdown = true;
            break;
        }
    }
    if shutdown {
        live.shut_down(
            settings.shutdown_timeout,
            "shutdown: the decider that takes the incident key over carries it on",
        )?;
        let point = live.commit(&mut source, kafka, CommitMode::Sync);
        write_floors(live, &source, topic, point);
    } else {
        feed(live, &mut source, true, settings.engine.time.lateness)?;
        live.run_out()?;
        if let Err(e) = source.commit(EventTime::MAX, CommitMode::Sync) {
            tracing::error!(error = %e, "final commit failed; the next decider re-reads from the last one");
        }
    }
    live.flush_ledger();
    observe(live, shared);
    source.close();
    Ok(())
}

/// A decider that took signals partitions over learns where their last decider
/// committed them (see `Ledger::write_floors`). Without a ledger (nothing is called),
/// nothing is known: a repeat published after that commit opens its incident again.
fn take_floors(live: &mut Live, source: &Source, topic: &str) {
    let Some(ledger) = live.handoff.ledger() else {
        return;
    };
    if let Err(e) = ledger.catch_up() {
        tracing::warn!(error = %e, "the ledger was not read to its end: repeats of closed incidents may open them again");
    }
    for p in &source.merge.partitions {
        if let Some(at) = ledger.floor(topic, p.partition) {
            live.job.engine.set_floor(p.partition, EventTime(at));
        }
    }
}

/// Writes the rewind point just committed as the floor of every signals partition
/// this decider reads (none before time started).
fn write_floors(live: &mut Live, source: &Source, topic: &str, point: EventTime) {
    if point == EventTime::MIN || point == EventTime::MAX {
        return;
    }
    if let Some(ledger) = live.handoff.ledger() {
        let partitions = source.merge.partitions.iter().map(|p| p.partition);
        ledger.write_floors(topic, partitions, point.nanos());
    }
}

/// `/metrics` for both stages: input counters from the correlator (when it runs here),
/// decisions from the decider.
fn observe(live: &Live, shared: &Shared) {
    let stats = merged_stats(&live.job.engine, shared);
    let selected = shared.selected();
    live.metrics
        .observe_split(&stats, &selected, &live.job.engine);
}

/// Hands the signals whose order is known (all with `flush`) to the decider. While
/// catching up on old signals, time stands still while a call is in flight, as in a
/// replay.
fn feed(live: &mut Live, source: &mut Source, flush: bool, lateness: Duration) -> Result<()> {
    let behind = wall_clock_now().minus(lateness);
    let execute = live.job.executor.is_some();
    live.job
        .engine
        .hold_for_calls_before(execute.then_some(behind));
    loop {
        let engine = &mut live.job.engine;
        let mut paused = false;
        source
            .merge
            .release(Instant::now(), flush, |payload, _, position| {
                let mut admitted = None;
                for wire in wires(payload) {
                    let Ok(wire) = wire else {
                        tracing::warn!(
                            partition = position.partition,
                            offset = position.offset,
                            "unreadable signal skipped"
                        );
                        continue;
                    };
                    admitted = admitted.max(engine.push_wire(position.partition, wire));
                }
                paused =
                    execute && admitted.is_some_and(|t| t < behind) && engine.awaiting_outcomes();
                (admitted, paused)
            });
        if !paused {
            return Ok(());
        }
        live.exchange(true)?;
        // The outcomes are in: time may move on to the watermark.
        live.job.engine.advance_decide();
    }
}

/// What the correlate stage runs.
struct Correlation {
    rules: Vec<PathBuf>,
    config: EngineConfig,
    kafka: KafkaConfig,
    topic: String,
    until_end: bool,
    /// Its slot in `Shared`.
    worker: usize,
}

/// The correlate stage: input records in, signals out; reloaded rule sets come on
/// `reloads` (validated by the job's loop first).
fn correlate(
    job: &Correlation,
    source: &mut Source,
    stop: &AtomicBool,
    shared: &Shared,
    reloads: &std::sync::mpsc::Receiver<logheal_rules::RuleSet>,
) -> Result<()> {
    let Correlation {
        rules,
        config,
        kafka,
        topic,
        until_end,
        worker,
    } = job;
    let (topic, until_end) = (topic.as_str(), *until_end);
    let rules = load_rules(rules)?;
    let mut engine = Engine::new(rules, config)?;
    // Opened once the signals topic exists (see `run`); records wait in the merge.
    let mut publisher: Option<Publisher> = None;
    tracing::info!(topics = ?kafka.topics, group = kafka.group, signals = topic, worker, "correlating");
    let mut last_admitted = Instant::now();
    let mut next_mark = Instant::now();
    let mut next_commit = Instant::now() + COMMIT_EVERY;
    let mut drained_check = Instant::now();
    let mut drained = false;
    // A commit point waiting for the signals sent before it: (point, records sent).
    let mut behind: Option<(EventTime, u64)> = None;
    let ended = loop {
        if stop.load(Ordering::Relaxed) {
            break false;
        }
        while let Ok(set) = reloads.try_recv() {
            if let Err(e) = engine.reload(set) {
                tracing::error!(
                    error = %e,
                    "the correlator could not take the reloaded rules"
                );
            }
        }
        let wait = if publisher.is_some() { 100 } else { 10 };
        let polled = source.poll(Duration::from_millis(wait));
        if polled == Polled::Rebalanced {
            // The assignment changed: start over from the committed offsets (the
            // deciders drop the signals published again).
            engine = engine.fresh();
            // A point of the state before the rebalance commits nothing of the new one.
            behind = None;
            let mut me = shared.worker(*worker);
            me.assigned = !source.merge.partitions.is_empty();
            me.drained = false;
        }
        if publisher.is_none() && shared.signals_ready.load(Ordering::Acquire) {
            publisher = Some(Publisher::open(kafka, topic)?);
        }
        let Some(publisher) = publisher.as_mut() else {
            continue;
        };
        let now = Instant::now();
        source
            .merge
            .release(now, false, |payload, stamp, position| {
                engine.set_position(position.topic, position.partition, position.offset);
                engine.push_stamped(position.index(), payload, stamp.map(EventTime::from_millis));
                let admitted = engine.admitted();
                if admitted.is_some() {
                    last_admitted = now;
                }
                (admitted, false)
            });
        let idle = polled == Polled::Idle && source.merge.buffered_bytes() == 0;
        engine.set_wall_clock(wall_clock_now());
        if idle {
            engine.advance_idle(last_admitted.elapsed());
        }
        let quiet = source.quiet(&polled);
        publish(&mut engine, publisher)?;
        if now >= next_mark {
            next_mark = now + WATERMARK_EVERY;
            watermark(&engine, source, publisher, engine.time())?;
        }
        if now >= next_commit {
            next_commit = now + COMMIT_EVERY;
            // Only behind signals the brokers have, without waiting for them (a wait
            // held up every record behind it): a rewind point taken at one tick is
            // committed at a later one, once every signal sent before it was taken.
            publisher.send()?;
            if let Some((point, sent)) = behind {
                if publisher.taken(sent)? {
                    if let Err(e) = source.commit(point, CommitMode::Async) {
                        tracing::warn!(error = %e, "commit failed; retried at the next one");
                    }
                    behind = None;
                }
            }
            if behind.is_none() {
                behind = Some((engine.rewind_point(kafka.max_rewind), publisher.sent()));
            }
            shared.report(*worker, &engine);
        }
        if until_end && !quiet && drained {
            drained = false;
            shared.worker(*worker).drained = false;
        }
        if until_end && quiet && now >= drained_check {
            drained_check = now + Duration::from_millis(500);
            drained = source.drained(Duration::from_secs(5)).unwrap_or(false);
            shared.worker(*worker).drained = drained;
            if drained && shared.all_drained() {
                break true;
            }
        }
    };
    if let (true, Some(publisher)) = (ended, publisher.as_mut()) {
        // The input is drained: windows run out, and the deciders learn that these
        // partitions are over.
        engine.finish();
        publish(&mut engine, publisher)?;
        watermark(&engine, source, publisher, EventTime(i64::MAX))?;
        publisher.confirm()?;
        source
            .commit(EventTime::MAX, CommitMode::Sync)
            .map_err(logheal_kafka::doing("final commit failed"))?;
    } else {
        if let Some(publisher) = publisher.as_mut() {
            publisher.confirm()?;
        }
        let point = engine.rewind_point(kafka.max_rewind);
        if let Err(e) = source.commit(point, CommitMode::Sync) {
            tracing::warn!(error = %e, "final commit failed; the next consumer re-reads more");
        }
    }
    shared.report(*worker, &engine);
    shared
        .consumed
        .fetch_add(source.merge.released_total, Ordering::Relaxed);
    if source.worker() == 0 {
        // The consumer's count, shared by its workers.
        shared.rebalances.fetch_add(
            source.shared.rebalances.load(Ordering::Relaxed).max(0) as u64,
            Ordering::Relaxed,
        );
    }
    shared.errors.fetch_add(source.errors, Ordering::Relaxed);
    tracing::info!(
        worker,
        records = source.merge.released_total,
        signals = publisher.as_ref().map_or(0, |p| p.published),
        signal_records = publisher.as_ref().map_or(0, |p| p.sent()),
        "correlation stopped"
    );
    Ok(())
}

/// Sends the signals raised since the last call, one record per signals partition.
fn publish(engine: &mut Engine, publisher: &mut Publisher) -> Result<(), logheal_kafka::Error> {
    for signal in engine.take_signals() {
        let key = signal.key(engine.groups_by_root(&signal.rule));
        publisher.signal(&key, signal)?;
    }
    publisher.send()
}

/// Publishes the correlator's event time for the partitions it owns (`at`), and which
/// of them never had a record (they hold no decider's time back).
fn watermark(
    engine: &Engine,
    source: &Source,
    publisher: &mut Publisher,
    at: EventTime,
) -> Result<(), logheal_kafka::Error> {
    let ended = at == EventTime(i64::MAX);
    let (mut partitions, mut idle) = (Vec::new(), Vec::new());
    for p in &source.merge.partitions {
        let key = (p.topic.to_string(), p.partition);
        if !ended && p.at_end() && p.checkpoints.next().is_none() {
            idle.push(key);
        } else {
            partitions.push(key);
        }
    }
    if engine.time() == EventTime::MIN && !ended {
        // No time yet: only the idle partitions can be told about.
        partitions.clear();
    }
    if partitions.is_empty() && idle.is_empty() {
        return Ok(());
    }
    let mark = Wire::Watermark(Watermark {
        at: at.nanos(),
        partitions,
        idle,
    });
    publisher.watermark(&mark, engine.time().nanos())
}
