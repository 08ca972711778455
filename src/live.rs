//! What every live job has besides its input (`Live`): the pipeline and the executor,
//! the control channel (`Message`: lines, reloads, shutdown, silences), the HTTP
//! endpoints, the incident book and the output. Also the rule watcher and reloads (the
//! whole new set validated first; a broken one keeps the running rules) and the signal
//! handler. `run.rs` (stdin and files), `consume.rs` and `split.rs` (Kafka) drive it.

use crate::book::Book;
use crate::handoff::Handoff;
use crate::http;
use crate::metrics::Metrics;
use crate::output::{Job, Printer};
use crate::run::Settings;
use anyhow::{Context, Result};
use logheal_actions::executor::Executor;
use logheal_actions::receivers::resolve_all;
use logheal_pipeline::silence::{Silence, Silences};
use logheal_pipeline::{wall_clock_now, Engine};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Changes to rule files within this long of each other are one reload (an editor's
/// save, a ConfigMap's symlink swap).
const RELOAD_SETTLE: Duration = Duration::from_millis(300);

/// What reaches the job's loop besides Kafka records: input lines (stdin and files),
/// signals, reloads and the API's silence changes.
pub enum Message {
    /// Lines, each ended by `\n` (a batch of what one read delivered: no allocation
    /// and no channel hand-off per line).
    Lines(Vec<u8>),
    TooLong(usize),
    /// The input ended.
    End,
    /// The input could not be read: the job fails with this error.
    Failed(String),
    /// SIGTERM or SIGINT: stop (a second one: stop now).
    Shutdown,
    Reload(&'static str),
    /// An operator adds or ends a silence (API); the answer goes back on the channel.
    Silence(
        SilenceCommand,
        tokio::sync::oneshot::Sender<Result<Silence, String>>,
    ),
}

/// What the API asks of the job's silences.
pub enum SilenceCommand {
    Add(Silence),
    Expire(String),
}

/// What every live job has besides its input: the pipeline, the control channel
/// (reloads, shutdown, silences), the HTTP endpoints, the incident book and the output.
pub struct Live {
    pub job: Job,
    pub handoff: Handoff,
    pub metrics: Metrics,
    pub rx: mpsc::Receiver<Message>,
    pub out: Printer<BufWriter<io::Stdout>>,
    /// When the input's newest admitted record arrived (for `Engine::advance_idle`).
    pub last_admitted: Instant,
    /// The job's silences (the HTTP endpoints read them; only this loop writes), and
    /// the ids of those the engine was last given.
    silences: Arc<Mutex<Silences>>,
    silences_in_force: Vec<String>,
    /// Where a reloaded rule set also goes (the correlator, with the stages apart).
    pub reload_taps: Vec<mpsc::Sender<logheal_rules::RuleSet>>,
    rules: Vec<PathBuf>,
    /// The rule files' texts as last loaded: a change in their directories that leaves
    /// them as they were reloads nothing.
    rule_texts: Option<Vec<(String, String)>>,
    reload_at: Option<(Instant, &'static str)>,
    // Keeps the watcher alive for the life of the job.
    _watcher: Option<notify::RecommendedWatcher>,
}

impl Live {
    /// Starts the pipeline, the endpoints, the rule watcher and the signal handler;
    /// returns the sender for input messages.
    pub fn start(settings: &Settings) -> Result<(Live, mpsc::SyncSender<Message>)> {
        let job = Job::start(&settings.rules, &settings.engine)?;
        // Bounded: at most 64 batches of 64 KiB wait for the engine (back-pressure on the input).
        let (tx, rx) = mpsc::sync_channel::<Message>(64);
        let metrics = Metrics::new();
        let engine = &settings.engine;
        metrics.set_limits(&[
            ("services", engine.max_services as u64),
            ("traces", engine.max_traces_per_rule as u64),
            ("time_sources", engine.time.max_sources as u64),
            (
                "chain_traces",
                logheal_pipeline::repeats::MAX_TRACES_KEPT as u64,
            ),
        ]);
        metrics.declare_rules(&job.engine);
        let book = Book::new(settings.history, Some(metrics.clone()));
        let silences: Arc<Mutex<Silences>> = Arc::default();
        let (reload_tx, reload_rx) = mpsc::sync_channel::<()>(1);
        let operator = http::Operator {
            book: book.clone(),
            silences: silences.clone(),
            commands: tx.clone(),
        };
        let bound = http::serve(
            &job.runtime,
            settings.listen,
            metrics.clone(),
            reload_tx,
            operator,
        )
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
        tracing::info!(address = %bound, "listening (/incidents, /api/v1, POST /-/reload, /healthz, /readyz, /metrics)");
        eprintln!("logheal: listening on http://{bound}");
        eprintln!("logheal: incidents at http://{bound}/incidents");
        let forward = tx.clone();
        std::thread::spawn(move || {
            while reload_rx.recv().is_ok() {
                if forward.send(Message::Reload("POST /-/reload")).is_err() {
                    return;
                }
            }
        });
        let watcher = watch_rules(&settings.rules, tx.clone())?;
        spawn_signals(tx.clone())?;
        let live = Live {
            job,
            handoff: Handoff::with_metrics(metrics.clone()),
            out: Printer::live(
                BufWriter::new(io::stdout()),
                settings.output,
                book,
                metrics.clone(),
            ),
            metrics,
            rx,
            last_admitted: Instant::now(),
            silences,
            silences_in_force: Vec::new(),
            reload_taps: Vec::new(),
            rules: settings.rules.clone(),
            rule_texts: logheal_rules::read_paths(&settings.rules).ok(),
            reload_at: None,
            _watcher: watcher,
        };
        Ok((live, tx))
    }

    /// Asks for a reload once the rule files have settled: each change starts the
    /// wait again, so a slow, non-atomic write is not loaded half-written.
    pub fn request_reload(&mut self, why: &'static str) {
        self.reload_at = Some((Instant::now() + RELOAD_SETTLE, why));
    }

    /// After input: reloads when due, exchanges with the executor, prints the records.
    pub fn after_input(&mut self) -> Result<()> {
        if let Some((at, why)) = self.reload_at {
            if Instant::now() >= at {
                self.reload_at = None;
                let env = |name: &str| std::env::var(name).ok();
                let Job {
                    engine, executor, ..
                } = &mut self.job;
                let taps = &self.reload_taps;
                // The watcher also fires for other files in the rules' directories:
                // files that read as they were last loaded are not loaded again.
                let texts = logheal_rules::read_paths(&self.rules).ok();
                let unchanged = why == FILES_CHANGED && texts.is_some() && texts == self.rule_texts;
                self.rule_texts = texts;
                if !unchanged {
                    let ok = reload(engine, executor.as_mut(), &self.rules, why, &env, taps);
                    self.metrics.reloaded(ok);
                    if ok {
                        self.metrics.declare_rules(engine);
                    }
                }
            }
        }
        self.exchange(false)
    }

    /// Exchanges with the executor (with `wait`: until no call is outstanding) and
    /// prints the records.
    pub fn exchange(&mut self, wait: bool) -> Result<()> {
        let Job {
            engine, executor, ..
        } = &mut self.job;
        if let Some(executor) = executor {
            self.handoff
                .exchange(engine, executor, &mut self.out, wait)?;
        }
        self.out.emit(engine)?;
        self.out.flush()?;
        Ok(())
    }

    /// Takes one waiting control message (a reload or a silence) without blocking;
    /// `true` when the job must stop (a signal, or the control channel gone).
    pub fn take_control(&mut self) -> bool {
        match self.rx.try_recv() {
            Ok(Message::Reload(why)) => self.request_reload(why),
            Ok(Message::Silence(command, reply)) => {
                let _ = reply.send(self.silence(command));
            }
            Ok(Message::Shutdown | Message::End) | Err(mpsc::TryRecvError::Disconnected) => {
                return true
            }
            Ok(_) | Err(mpsc::TryRecvError::Empty) => {}
        }
        false
    }

    /// Once per tick: the incident book and the silences in force. The counters are
    /// the caller's to take in: this engine's (`Metrics::observe`), or with the stages
    /// apart the correlators' input with this decider's decisions (`split::observe`).
    pub fn tick(&mut self) {
        self.job.engine.set_wall_clock(wall_clock_now());
        self.out.refresh(&mut self.job.engine);
        self.sync_silences(false);
    }

    /// Takes in silences other consumers wrote to the ledger, and gives the engine the
    /// set in force now when it changed (`force`: whatever it was, e.g. for an engine
    /// just rebuilt).
    pub fn sync_silences(&mut self, force: bool) {
        let now = now_ms();
        let mut store = self.silences.lock().expect("not poisoned");
        if let Some(ledger) = self.handoff.ledger() {
            for silence in ledger.take_silences() {
                if let Err(e) = store.put(silence, now) {
                    tracing::warn!(error = %e, "silence from the ledger not kept");
                }
            }
        }
        let active = store.active(now);
        let ids: Vec<String> = active.iter().map(|s| s.id.clone()).collect();
        if force || ids != self.silences_in_force {
            self.silences_in_force = ids;
            self.job.engine.set_silences(active);
        }
    }

    /// Adds or ends a silence: written to the ledger first (Kafka, when actions are
    /// called), so an accepted silence survives a restart and reaches every consumer.
    pub fn silence(&mut self, command: SilenceCommand) -> Result<Silence, String> {
        let now = now_ms();
        let silence = match command {
            SilenceCommand::Add(silence) => silence.validated().map_err(|e| e.to_string())?,
            SilenceCommand::Expire(id) => {
                let store = self.silences.lock().expect("not poisoned");
                let current = store.get(&id).ok_or_else(|| format!("no silence {id}"))?;
                current.ended(now)
            }
        };
        if let Some(ledger) = self.handoff.ledger() {
            ledger
                .write_silence(&silence)
                .map_err(|e| format!("the silence could not be written to the ledger: {e}"))?;
        }
        self.silences
            .lock()
            .expect("not poisoned")
            .put(silence.clone(), now)
            .map_err(|e| e.to_string())?;
        tracing::info!(
            id = silence.id,
            matchers = silence.describe(),
            ends_at = silence.ends_at,
            "silence set"
        );
        self.sync_silences(true);
        Ok(silence)
    }
}

/// Milliseconds since the epoch, wall time.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Live {
    /// End of input: time runs out as in a replay, with each call's outcome fed back
    /// before the next thing falls due.
    pub fn run_out(&mut self) -> Result<()> {
        let Live {
            job, handoff, out, ..
        } = self;
        handoff.run_out(&mut job.engine, job.executor.as_ref(), out)
    }

    /// SIGTERM, SIGINT or a failed input: pending actions are cancelled (`why`), calls
    /// in flight may finish until `timeout`, or until a second signal; whatever is
    /// left then is recorded as abandoned.
    pub fn shut_down(&mut self, timeout: Duration, why: &str) -> Result<()> {
        self.job.engine.cancel_pending(why);
        let deadline = Instant::now() + timeout;
        loop {
            self.exchange(false)?;
            if !self.job.engine.awaiting_outcomes() {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                eprintln!(
                    "logheal: shutdown timeout ({}) reached with calls in flight",
                    humantime::format_duration(timeout)
                );
                break;
            }
            let slice = (deadline - now).min(Duration::from_millis(50));
            if let Ok(Message::Shutdown) = self.rx.recv_timeout(slice) {
                eprintln!("logheal: second signal: exiting now");
                break;
            }
        }
        self.job
            .engine
            .abandon_in_flight(&format!("{why}: the call was still in flight"));
        self.job.engine.cancel_pending(why);
        self.out.emit(&mut self.job.engine)?;
        Ok(())
    }

    /// The closing records (`--output json`: the summary) and a flush.
    pub fn finish_output(&mut self) -> Result<()> {
        let format = self.out.format;
        crate::output::summary(&self.job.engine, &mut self.out.out, format)?;
        self.out.flush()?;
        Ok(())
    }
}

/// Why a reload the rule watcher asked for happens.
const FILES_CHANGED: &str = "rule files changed";

/// Reloads the rule files; `false` (and the previous rules kept) on any error.
fn reload(
    engine: &mut Engine,
    executor: Option<&mut Executor>,
    paths: &[PathBuf],
    why: &str,
    env: &dyn Fn(&str) -> Option<String>,
    taps: &[mpsc::Sender<logheal_rules::RuleSet>],
) -> bool {
    if paths.is_empty() {
        eprintln!("logheal: nothing to reload ({why}): running the built-in rules");
        return false;
    }
    match logheal_rules::load_paths(paths) {
        Ok(set) => {
            let receivers = resolve_all(&set.receivers, env);
            let copies: Vec<_> = taps.iter().map(|_| set.clone()).collect();
            match engine.reload(set) {
                Ok(r) => {
                    if let Some(executor) = executor {
                        executor.set_receivers(receivers);
                    }
                    // The correlators of a job with the stages apart run the same set.
                    for (tap, copy) in taps.iter().zip(copies) {
                        let _ = tap.send(copy);
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
            crate::output::report(&diagnostics);
            eprintln!(
                "logheal: reload failed ({why}): {} error(s); the previous rules keep running",
                diagnostics.len()
            );
            false
        }
    }
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
    let names: Vec<std::ffi::OsString> = paths
        .iter()
        .filter(|p| !p.is_dir())
        .filter_map(|p| p.file_name().map(Into::into))
        .collect();
    let watches_dir = paths.iter().any(|p| p.is_dir());
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if !event.kind.is_access()
            && event
                .paths
                .iter()
                .any(|p| names_rules(p, &names, watches_dir))
        {
            let _ = tx.try_send(Message::Reload(FILES_CHANGED));
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

/// Whether a change at `path`, in a watched directory, may change the rules: a rule
/// file by name, a YAML file in a watched rules directory, or a ConfigMap's swap
/// (`..data`, `..2026_…`: Kubernetes replaces the files behind their symlinks).
fn names_rules(path: &Path, names: &[std::ffi::OsString], watches_dir: bool) -> bool {
    let Some(name) = path.file_name() else {
        return true;
    };
    names.iter().any(|n| n == name)
        || name.as_encoded_bytes().starts_with(b"..")
        || (watches_dir && path.extension().is_some_and(|e| e == "yaml" || e == "yml"))
}

/// SIGHUP reloads the rules; SIGTERM and SIGINT end the run gracefully (stop reading,
/// let calls in flight finish within the shutdown timeout, print the summary); a second
/// one ends it at once.
pub fn spawn_signals(tx: mpsc::SyncSender<Message>) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGTERM, SIGINT])?;
    std::thread::spawn(move || {
        for signal in signals.forever() {
            let message = if signal == SIGHUP {
                Message::Reload("SIGHUP")
            } else {
                Message::Shutdown
            };
            if tx.send(message).is_err() {
                return;
            }
        }
    });
    Ok(())
}
