//! `logheal run`: the live job over stdin, files or Kafka (`consume`). Event time follows
//! the logs and, on a quiet stream, the wall clock; actions are executed (unless
//! `--dry-run`) without ever holding up the stream; the rule files are reloaded when
//! they change or on SIGHUP: the whole new set is validated first, and a broken one keeps
//! the running rules. SIGTERM or SIGINT ends it gracefully.

use crate::config::FileConfig;
use crate::live::{Live, Message};
use crate::output::Output;
use anyhow::{Context, Result};
use clap::ValueEnum;
use logheal_pipeline::clock::ClockConfig;
use logheal_pipeline::reader::{Line, LineReader};
use logheal_pipeline::{wall_clock_now, EngineConfig};
use std::io::{self, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How far ahead of the wall clock a live record may be stamped.
const LIVE_FUTURE_SKEW: Duration = Duration::from_secs(60);

#[derive(clap::Args)]
pub struct Args {
    /// Log files to read, in order, then `-` for stdin (the default; not with Kafka).
    inputs: Vec<PathBuf>,
    /// A configuration file (Kafka, properties, rules, listen address); the flags below
    /// override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Rule files or directories; the built-in rule when none (and then no reloading).
    #[arg(long = "rules", value_name = "PATH")]
    rules: Vec<PathBuf>,
    /// Record format on stdout [default: text].
    #[arg(long, value_enum)]
    output: Option<Output>,
    /// Record what would be called instead of calling it.
    #[arg(long)]
    dry_run: bool,
    /// How late a record may arrive and still count; the wall clock minus this drives
    /// timers when the stream is quiet [default: 10s].
    #[arg(long, value_parser = humantime::parse_duration)]
    lateness: Option<Duration>,
    /// How long the input must be quiet before the wall clock moves time on (from the
    /// newest record, never to the wall clock itself); also how often gauges update.
    #[arg(long, default_value = "1s", value_parser = parse_tick)]
    tick: Duration,
    /// On SIGTERM or SIGINT: how long calls in flight may still finish before they are
    /// abandoned (each with an `action_cancelled` record); a second signal exits at
    /// once. Keep it below the orchestrator's grace period (the manifests give 60s).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    shutdown_timeout: Duration,
    /// Where to serve the incident pages (`/incidents`), the API (`/api/v1/...`),
    /// `POST /-/reload`, `/healthz`, `/readyz` and `/metrics` (port 0: any free port,
    /// printed at start) [default: 127.0.0.1:9464].
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Closed incidents kept for the incident pages and the API [default: 100].
    #[arg(long, value_name = "N")]
    history: Option<usize>,
    #[command(flatten)]
    kafka: crate::consume::KafkaArgs,
}

fn parse_tick(s: &str) -> Result<Duration, String> {
    let tick = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if tick < Duration::from_millis(10) {
        return Err("the tick must be at least 10ms (0 would busy-loop)".into());
    }
    Ok(tick)
}

/// A live job's settings: the flags over the configuration file over the defaults.
#[derive(Clone)]
pub struct Settings {
    pub rules: Vec<PathBuf>,
    pub output: Output,
    pub engine: EngineConfig,
    pub tick: Duration,
    pub shutdown_timeout: Duration,
    pub listen: std::net::SocketAddr,
    /// Closed incidents the operator's view keeps.
    pub history: usize,
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let file = match &args.config {
        Some(path) => FileConfig::check(path).map_err(|e| anyhow::anyhow!(e.join("\n")))?,
        None => FileConfig::default(),
    };
    let lateness = match (args.lateness, &file.lateness) {
        (Some(l), _) => l,
        (None, Some(text)) => {
            humantime::parse_duration(text).with_context(|| format!("lateness {text}"))?
        }
        (None, None) => Duration::from_secs(10),
    };
    let output = match (args.output, file.output.as_deref()) {
        (Some(o), _) => o,
        (None, Some(name)) => Output::from_str(name, true).map_err(anyhow::Error::msg)?,
        (None, None) => Output::Text,
    };
    let settings = Settings {
        rules: if args.rules.is_empty() {
            file.rules.clone()
        } else {
            args.rules.clone()
        },
        output,
        engine: EngineConfig {
            time: ClockConfig {
                lateness,
                ..ClockConfig::default()
            },
            execute: !(args.dry_run || file.dry_run == Some(true)),
            // Live records are stamped now: one far ahead of the wall clock has a
            // broken clock.
            future_skew: LIVE_FUTURE_SKEW,
            ..EngineConfig::default()
        },
        tick: args.tick,
        shutdown_timeout: args.shutdown_timeout,
        listen: args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:9464".parse().expect("a valid address")),
        history: args
            .history
            .or(file.history)
            .unwrap_or(crate::book::DEFAULT_HISTORY),
    };
    let mut settings = settings;
    file.apply(&mut settings.engine)?;
    let env = |name: &str| std::env::var(name).ok();
    match args.kafka.resolve(file.kafka.as_ref(), &env)? {
        Some(kafka) => {
            if !args.inputs.is_empty() {
                anyhow::bail!("input files and Kafka exclude each other");
            }
            if kafka.0.signals_topic.is_some() {
                crate::split::run(&settings, &kafka, args.kafka.until_end)
            } else {
                crate::consume::run(&settings, &kafka, args.kafka.until_end)
            }
        }
        None => run_lines(args, &settings),
    }
}

/// The live job over stdin or files.
fn run_lines(args: &Args, settings: &Settings) -> Result<ExitCode> {
    check_inputs(&args.inputs)?;
    let (mut live, tx) = Live::start(settings)?;
    spawn_reader(args.inputs.clone(), tx);
    live.metrics.set_ready(true);
    let mut next_observe = Instant::now();
    let ended = loop {
        let engine = &mut live.job.engine;
        match live.rx.recv_timeout(settings.tick) {
            Ok(Message::Lines(batch)) => {
                live.out.input_at = Some(Instant::now());
                let mut admitted = false;
                for line in batch.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    live.job.engine.push_line(line);
                    admitted |= live.job.engine.admitted().is_some();
                    // A decision goes out at once, not at the end of the batch.
                    if live.job.engine.has_output() {
                        live.after_input()?;
                    }
                }
                if admitted {
                    live.last_admitted = Instant::now();
                }
            }
            Ok(Message::TooLong(len)) => engine.skip_too_long(len),
            Ok(Message::Reload(why)) => live.request_reload(why),
            Ok(Message::Silence(command, reply)) => {
                let _ = reply.send(live.silence(command));
            }
            Ok(Message::End) | Err(RecvTimeoutError::Disconnected) => break Ended::Input,
            Ok(Message::Failed(error)) => break Ended::Failed(error),
            Ok(Message::Shutdown) => break Ended::Signal,
            Err(RecvTimeoutError::Timeout) => {
                // Idle and caught up: the wall clock moves time on from the newest record.
                engine.set_wall_clock(wall_clock_now());
                engine.advance_idle(live.last_admitted.elapsed());
            }
        }
        live.after_input()?;
        live.out.input_at = None;
        // The gauges need the live incidents listed: once per tick, not per line.
        let now = Instant::now();
        if now >= next_observe {
            next_observe = now + settings.tick;
            live.tick();
            live.metrics.observe(&live.job.engine);
        }
    };
    match &ended {
        // End of input: as in a replay, time runs out, each outcome fed back first.
        Ended::Input => live.run_out()?,
        Ended::Signal | Ended::Failed(_) => {
            live.shut_down(settings.shutdown_timeout, "shutdown")?
        }
    }
    live.metrics.observe(&live.job.engine);
    live.finish_output()?;
    eprintln!("{}", live.job.engine.stats());
    match ended {
        Ended::Failed(error) => Err(anyhow::anyhow!(error)),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// How a live job's input loop ended.
enum Ended {
    Input,
    Signal,
    Failed(String),
}

/// Every input must be a readable file (or `-`): a typo is an error before the job
/// starts, not an empty run.
fn check_inputs(inputs: &[PathBuf]) -> Result<()> {
    for path in inputs.iter().filter(|p| p.as_os_str() != "-") {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot read input {}", path.display()))?;
        if meta.is_dir() {
            anyhow::bail!("input {} is a directory, not a log file", path.display());
        }
    }
    Ok(())
}

fn spawn_reader(inputs: Vec<PathBuf>, tx: mpsc::SyncSender<Message>) {
    /// A batch is sent when it reaches this size, or when nothing more is buffered.
    const BATCH_BYTES: usize = 64 << 10;
    std::thread::spawn(move || {
        let inputs = if inputs.is_empty() {
            vec![PathBuf::from("-")]
        } else {
            inputs
        };
        let mut batch = Vec::with_capacity(BATCH_BYTES + 4096);
        for path in inputs {
            let input: Box<dyn io::Read + Send> = if path.as_os_str() == "-" {
                Box::new(io::stdin())
            } else {
                match std::fs::File::open(&path) {
                    Ok(f) => Box::new(f),
                    Err(e) => {
                        let _ = tx.send(Message::Failed(format!(
                            "cannot open {}: {e}",
                            path.display()
                        )));
                        return;
                    }
                }
            };
            let mut reader = LineReader::new(BufReader::with_capacity(1 << 16, input), 1 << 20);
            while let Some(line) = reader.next_line() {
                let message = match line {
                    Ok(Line::Full(bytes)) => {
                        batch.extend_from_slice(bytes);
                        batch.push(b'\n');
                        None
                    }
                    Ok(Line::TooLong(len)) => Some(Message::TooLong(len)),
                    Err(e) => Some(Message::Failed(format!(
                        "cannot read {}: {e}",
                        path.display()
                    ))),
                };
                let drained = reader.is_drained();
                if !batch.is_empty() && (message.is_some() || drained || batch.len() >= BATCH_BYTES)
                {
                    let full =
                        std::mem::replace(&mut batch, Vec::with_capacity(BATCH_BYTES + 4096));
                    if tx.send(Message::Lines(full)).is_err() {
                        return;
                    }
                }
                if let Some(message) = message {
                    let failed = matches!(message, Message::Failed(_));
                    if tx.send(message).is_err() || failed {
                        return;
                    }
                }
            }
        }
        if !batch.is_empty() && tx.send(Message::Lines(batch)).is_err() {
            return;
        }
        let _ = tx.send(Message::End);
    });
}
