//! `logheal replay --threads N`: files as the partitions of one stream, correlated on N
//! threads, one decider, in one process.
//!
//! Each input file is a partition (each in time order, as a topic's partitions exported
//! one per file). Correlator `w` takes files `w, w + N, …`, reads them merged by event
//! time (always from the file whose last record is earliest), and sends its signals and
//! a watermark (its event time, for its files) to the decider every `BATCH` lines, over
//! a bounded channel. The decider is the decide stage of the live job with the stages
//! apart (`split.rs`), fed in memory instead of through a topic: its time is the least
//! watermark over every file, and a signal waits until that time has passed the time
//! it was raised at.

use crate::output::{load_rules, Output, Printer};
use anyhow::{anyhow, Context, Result};
use logheal_parsers::EventTime;
use logheal_pipeline::reader::{Line, LineReader};
use logheal_pipeline::signal::{Stage, Watermark, Wire};
use logheal_pipeline::{Engine, EngineConfig, Stats};
use std::io::{self, BufRead, BufReader, BufWriter};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

/// Lines a correlator reads between two sends to the decider.
const BATCH: usize = 16384;
/// Batches in flight per correlator before it waits for the decider.
const IN_FLIGHT: usize = 16;

/// The name the files go by as partitions (signals carry it in their origin).
const TOPIC: &str = "replay";

enum Message {
    Wires(Vec<Wire>),
    /// A correlator ended, with its statistics or its error.
    Ended(Result<Box<Stats>, String>),
}

pub fn replay(
    files: &[PathBuf],
    rules: &[PathBuf],
    config: &EngineConfig,
    threads: usize,
    output: Output,
) -> Result<ExitCode> {
    if files.is_empty() || files.iter().any(|f| f.as_os_str() == "-") {
        anyhow::bail!("--threads reads files (one per partition), not stdin");
    }
    let set = load_rules(rules)?;
    let workers = threads.min(files.len());
    let topic: Arc<str> = TOPIC.into();
    let (tx, rx) = sync_channel::<Message>(IN_FLIGHT * workers);
    let mut handles = Vec::new();
    for w in 0..workers {
        let mine: Vec<(i32, PathBuf)> = files
            .iter()
            .enumerate()
            .filter(|(i, _)| i % workers == w)
            .map(|(i, f)| (i as i32, f.clone()))
            .collect();
        let config = EngineConfig {
            stage: Stage::Correlate,
            execute: false,
            ..config.clone()
        };
        let engine = Engine::new(set.clone(), &config)?;
        let (tx, topic) = (tx.clone(), topic.clone());
        handles.push(
            std::thread::Builder::new()
                .name(format!("correlate-{w}"))
                .spawn(move || {
                    let result = correlate(engine, &topic, &mine, &tx).map(Box::new);
                    let _ = tx.send(Message::Ended(result));
                })
                .context("a correlator thread")?,
        );
    }
    drop(tx);
    let config = EngineConfig {
        stage: Stage::Decide,
        execute: false,
        ..config.clone()
    };
    let mut decider = Engine::new(set, &config)?;
    decider.set_inputs(
        (0..files.len() as i32)
            .map(|i| (topic.clone(), i))
            .collect(),
    );
    let stdout = io::stdout();
    let mut out = Printer::new(BufWriter::new(stdout.lock()), output);
    let stats = decide(&mut decider, &rx, &mut out)?;
    for handle in handles {
        let _ = handle.join();
    }
    crate::output::summary_of(&stats, &mut out.out, output)?;
    out.flush()?;
    eprintln!("{stats}");
    Ok(ExitCode::SUCCESS)
}

/// Takes the correlators' wires until all of them ended; their input counters with
/// the decider's decisions.
fn decide(
    decider: &mut Engine,
    rx: &Receiver<Message>,
    out: &mut Printer<BufWriter<io::StdoutLock<'_>>>,
) -> Result<Stats> {
    let mut stats = Stats::default();
    let mut failure = None;
    for message in rx {
        match message {
            Message::Wires(wires) => {
                for wire in wires {
                    decider.push_wire(0, wire);
                }
                out.emit(decider)?;
            }
            Message::Ended(Ok(s)) => stats.add_input(&s),
            Message::Ended(Err(e)) => failure = Some(e),
        }
    }
    if let Some(e) = failure {
        return Err(anyhow!(e));
    }
    decider.finish();
    out.emit(decider)?;
    stats.take_decisions(&decider.stats());
    Ok(stats)
}

/// One correlator over its files, merged by event time.
fn correlate(
    mut engine: Engine,
    topic: &Arc<str>,
    files: &[(i32, PathBuf)],
    tx: &SyncSender<Message>,
) -> Result<Stats, String> {
    let mut readers = Vec::new();
    for (_, path) in files {
        let file = std::fs::File::open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let input: Box<dyn BufRead + Send> = Box::new(BufReader::with_capacity(1 << 18, file));
        readers.push(Some(LineReader::new(input, engine.max_line_bytes())));
    }
    // The event time of each file's last admitted record: the next line comes from
    // the earliest (a file not yet read from first).
    let mut last = vec![EventTime::MIN; files.len()];
    let mut offsets = vec![0i64; files.len()];
    let partitions: Vec<(String, i32)> = files.iter().map(|(p, _)| (TOPIC.into(), *p)).collect();
    let mut since_send = 0;
    while let Some(i) = (0..files.len())
        .filter(|i| readers[*i].is_some())
        .min_by_key(|i| (last[*i], *i))
    {
        let (partition, path) = &files[i];
        let reader = readers[i].as_mut().expect("open");
        match reader.next_line() {
            None => readers[i] = None,
            Some(line) => {
                engine.set_position(topic, *partition, offsets[i]);
                offsets[i] += 1;
                match line.map_err(|e| format!("reading {}: {e}", path.display()))? {
                    Line::Full(bytes) => engine.push_record(*partition as u32, bytes),
                    Line::TooLong(len) => engine.skip_too_long(len),
                }
                if let Some(t) = engine.admitted() {
                    last[i] = last[i].max(t);
                }
                since_send += 1;
                if since_send >= BATCH {
                    since_send = 0;
                    let now = engine.time();
                    send(&mut engine, &partitions, now, tx)?;
                }
            }
        }
    }
    engine.finish();
    send(&mut engine, &partitions, EventTime(i64::MAX), tx)?;
    Ok(engine.stats())
}

/// Sends the signals raised since the last send, then a watermark at `at`.
fn send(
    engine: &mut Engine,
    partitions: &[(String, i32)],
    at: EventTime,
    tx: &SyncSender<Message>,
) -> Result<(), String> {
    let mut wires: Vec<Wire> = engine
        .take_signals()
        .into_iter()
        .map(Wire::Signal)
        .collect();
    if at != EventTime::MIN {
        wires.push(Wire::Watermark(Watermark {
            at: at.nanos(),
            partitions: partitions.to_vec(),
            idle: Vec::new(),
        }));
    }
    tx.send(Message::Wires(wires))
        .map_err(|_| "the decider stopped".to_string())
}
