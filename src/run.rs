//! `logheal run`: the live job over stdin or files. Event time follows the logs and,
//! on a quiet stream, the wall clock; actions are executed (unless `--dry-run`) without
//! ever holding up the stream; the rule files are reloaded when they change or on SIGHUP:
//! the whole new set is validated first, and a broken one keeps the running rules.
//! SIGTERM or SIGINT ends it gracefully.

use crate::http::{self, Metrics};
use crate::output::{emit, exchange, Job, Output};
use anyhow::{Context, Result};
use logheal_pipeline::executor::Executor;
use logheal_pipeline::reader::{Line, LineReader};
use logheal_pipeline::receivers::resolve_all;
use logheal_pipeline::{wall_clock_now, Engine, EngineConfig};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Changes to rule files within this long of each other are one reload (an editor's
/// save, a ConfigMap's symlink swap).
const RELOAD_SETTLE: Duration = Duration::from_millis(300);

#[derive(clap::Args)]
pub struct Args {
    /// Log files to read, in order, then `-` for stdin (the default).
    inputs: Vec<PathBuf>,
    /// Rule files or directories; the built-in rule when none (and then no reloading).
    #[arg(long = "rules", value_name = "PATH")]
    rules: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
    /// Record what would be called instead of calling it.
    #[arg(long)]
    dry_run: bool,
    /// How late a record may arrive and still count; the wall clock minus this drives
    /// timers when the stream is quiet.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    lateness: Duration,
    /// How often the wall clock advances time when no line arrives.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    tick: Duration,
    /// Where to serve `POST /-/reload`, `/healthz` and `/metrics` (port 0: any free port,
    /// printed at start).
    #[arg(long, default_value = "127.0.0.1:9464")]
    listen: std::net::SocketAddr,
}

enum Message {
    Line(Vec<u8>),
    TooLong(usize),
    End,
    Reload(&'static str),
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let config = EngineConfig {
        lateness: args.lateness,
        execute: !args.dry_run,
        ..EngineConfig::default()
    };
    let Job {
        mut engine,
        mut executor,
        runtime,
    } = Job::start(&args.rules, &config)?;
    let env = |name: &str| std::env::var(name).ok();

    let (tx, rx) = mpsc::sync_channel::<Message>(8192);
    let metrics = Metrics::new();
    let (reload_tx, reload_rx) = mpsc::sync_channel::<()>(1);
    let bound = http::serve(&runtime, args.listen, metrics.clone(), reload_tx)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    eprintln!("logheal: listening on http://{bound} (POST /-/reload, /healthz, /metrics)");
    let forward = tx.clone();
    std::thread::spawn(move || {
        while reload_rx.recv().is_ok() {
            if forward.send(Message::Reload("POST /-/reload")).is_err() {
                return;
            }
        }
    });
    spawn_reader(args.inputs.clone(), tx.clone());
    // Keep the watcher alive for the life of the loop.
    let _watcher = watch_rules(&args.rules, tx.clone())?;
    spawn_signals(tx)?;

    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut reload_at: Option<(Instant, &'static str)> = None;
    loop {
        match rx.recv_timeout(args.tick) {
            Ok(Message::Line(bytes)) => engine.push_line(&bytes),
            Ok(Message::TooLong(len)) => engine.skip_too_long(len),
            Ok(Message::Reload(why)) => {
                reload_at.get_or_insert((Instant::now() + RELOAD_SETTLE, why));
            }
            Ok(Message::End) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
        if let Some((at, why)) = reload_at {
            if Instant::now() >= at {
                reload_at = None;
                let ok = reload(&mut engine, executor.as_mut(), &args.rules, why, &env);
                metrics.reloaded(ok);
            }
        }
        engine.advance_to(wall_clock_now());
        if let Some(executor) = &executor {
            exchange(&mut engine, executor, &mut out, args.output, false)?;
        }
        emit(&mut engine, &mut out, args.output)?;
        out.flush()?;
    }
    // End of input: let calls in flight finish (their timeouts and retries bound the wait).
    if let Some(executor) = &executor {
        exchange(&mut engine, executor, &mut out, args.output, true)?;
    }
    emit(&mut engine, &mut out, args.output)?;
    out.flush()?;
    eprintln!("{}", engine.stats());
    Ok(ExitCode::SUCCESS)
}

/// Reloads the rule files; `false` (and the previous rules kept) on any error.
fn reload(
    engine: &mut Engine,
    executor: Option<&mut Executor>,
    paths: &[PathBuf],
    why: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> bool {
    if paths.is_empty() {
        eprintln!("logheal: nothing to reload ({why}): running the built-in rules");
        return false;
    }
    match logheal_rules::load_paths(paths) {
        Ok(set) => {
            let receivers = resolve_all(&set.receivers, env);
            match engine.reload(set) {
                Ok(r) => {
                    if let Some(executor) = executor {
                        executor.set_receivers(receivers);
                    }
                    eprintln!(
                        "logheal: rules reloaded ({why}): {} kept, {} added, {} removed, {} incident(s) closed",
                        r.kept, r.added, r.removed, r.closed
                    );
                    true
                }
                Err(e) => {
                    eprintln!(
                        "logheal: reload failed ({why}): {e}; the previous rules keep running"
                    );
                    false
                }
            }
        }
        Err(diagnostics) => {
            for d in &diagnostics {
                eprintln!("{d}");
            }
            eprintln!(
                "logheal: reload failed ({why}): {} error(s); the previous rules keep running",
                diagnostics.len()
            );
            false
        }
    }
}

fn spawn_reader(inputs: Vec<PathBuf>, tx: mpsc::SyncSender<Message>) {
    std::thread::spawn(move || {
        let inputs = if inputs.is_empty() {
            vec![PathBuf::from("-")]
        } else {
            inputs
        };
        for path in inputs {
            let input: Box<dyn BufRead> = if path.as_os_str() == "-" {
                Box::new(BufReader::new(io::stdin()))
            } else {
                match std::fs::File::open(&path) {
                    Ok(f) => Box::new(BufReader::new(f)),
                    Err(e) => {
                        eprintln!("logheal: cannot open {}: {e}", path.display());
                        continue;
                    }
                }
            };
            let mut reader = LineReader::new(input, 1 << 20);
            while let Some(Ok(line)) = reader.next_line() {
                let message = match line {
                    Line::Full(bytes) => Message::Line(bytes.to_vec()),
                    Line::TooLong(len) => Message::TooLong(len),
                };
                if tx.send(message).is_err() {
                    return;
                }
            }
        }
        let _ = tx.send(Message::End);
    });
}

/// Watches the directories of the rule files (editors save by rename; Kubernetes swaps
/// ConfigMaps by symlink), so that any change there asks for a reload.
fn watch_rules(
    paths: &[PathBuf],
    tx: mpsc::SyncSender<Message>,
) -> Result<Option<notify::RecommendedWatcher>> {
    use notify::Watcher;
    if paths.is_empty() {
        return Ok(None);
    }
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = tx.try_send(Message::Reload("rule files changed"));
        }
    })?;
    for path in paths {
        let dir = if path.is_dir() {
            path.as_path()
        } else {
            path.parent().unwrap_or(Path::new("."))
        };
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        watcher
            .watch(dir, notify::RecursiveMode::NonRecursive)
            .with_context(|| format!("cannot watch {}", dir.display()))?;
    }
    Ok(Some(watcher))
}

/// SIGHUP reloads the rules; SIGTERM and SIGINT end the run gracefully (stop reading,
/// let calls in flight finish, print the summary).
fn spawn_signals(tx: mpsc::SyncSender<Message>) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGTERM, SIGINT])?;
    std::thread::spawn(move || {
        for signal in signals.forever() {
            let message = if signal == SIGHUP {
                Message::Reload("SIGHUP")
            } else {
                Message::End
            };
            if tx.send(message).is_err() {
                return;
            }
        }
    });
    Ok(())
}
