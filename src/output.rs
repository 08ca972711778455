//! What the commands print, and the pipeline a command runs.

use crate::book::Book;
use crate::metrics::Metrics;
use anyhow::{bail, Result};
use clap::ValueEnum;
use logheal_actions::executor::Executor;
use logheal_actions::receivers::resolve_all;
use logheal_pipeline::{Engine, EngineConfig, Record};
use logheal_rules::{Diagnostic, RuleSet};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Clone, Copy, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// The pipeline of a command: the engine, the runtime its calls run on, and, when it
/// executes actions, the executor with receivers resolved from the environment.
pub struct Job {
    pub engine: Engine,
    pub executor: Option<Executor>,
    pub runtime: tokio::runtime::Runtime,
}

impl Job {
    pub fn start(rules: &[PathBuf], config: &EngineConfig) -> Result<Job> {
        let engine = Engine::new(load_rules(rules)?, config)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let env = |name: &str| std::env::var(name).ok();
        let executor = config.execute.then(|| {
            Executor::new(
                runtime.handle().clone(),
                resolve_all(engine.receivers(), &env),
            )
        });
        Ok(Job {
            engine,
            executor,
            runtime,
        })
    }
}

/// The rule files given, or the built-in rules; errors are printed with positions.
pub fn load_rules(paths: &[PathBuf]) -> Result<RuleSet> {
    logheal_rules::load_or_builtin(paths).or_else(|diagnostics| {
        report(&diagnostics);
        bail!("the rule files have {} error(s)", diagnostics.len())
    })
}

/// Prints rule-file errors, one `file:line:col: message` per line, on stderr.
pub fn report(diagnostics: &[Diagnostic]) {
    for d in diagnostics {
        eprintln!("{d}");
    }
}

/// Where a command's records go: printed in its format, and (live jobs) into the
/// incident book, with the decision latency measured.
pub struct Printer<W: Write> {
    pub out: W,
    pub format: Output,
    book: Option<Book>,
    metrics: Option<Metrics>,
    /// When the input being decided on arrived (live jobs), while it is being decided
    /// on; decisions made later (timers on a quiet stream) are not input latency.
    pub input_at: Option<Instant>,
}

impl<W: Write> Printer<W> {
    pub fn new(out: W, format: Output) -> Self {
        Printer {
            out,
            format,
            book: None,
            metrics: None,
            input_at: None,
        }
    }

    /// A live job's printer: records also go into `book`, and decisions are timed.
    pub fn live(out: W, format: Output, book: Book, metrics: Metrics) -> Self {
        Printer {
            book: Some(book),
            metrics: Some(metrics),
            ..Printer::new(out, format)
        }
    }

    pub fn record(&mut self, record: &Record) -> Result<()> {
        write_record(&mut self.out, self.format, record)?;
        if let Some(book) = &self.book {
            book.note(record);
        }
        Ok(())
    }

    /// Prints the engine's records; a decision among them is timed from its input.
    pub fn emit(&mut self, engine: &mut Engine) -> Result<()> {
        let (mut decided, mut any) = (false, false);
        for record in engine.take_records() {
            any = true;
            decided |= matches!(record, Record::Transition { .. } | Record::Action(_));
            self.record(&record)?;
        }
        if let (true, Some(m), Some(at)) = (decided, &self.metrics, self.input_at) {
            m.decided(at.elapsed().as_secs_f64());
        }
        if any {
            self.refresh(engine);
        }
        Ok(())
    }

    /// Brings the book up to date with the engine's incidents (after records, and once
    /// per tick for the counts that change without a record).
    pub fn refresh(&mut self, engine: &mut Engine) {
        if let Some(book) = &self.book {
            book.refresh(engine.take_changes());
        }
    }

    pub fn flush(&mut self) -> Result<()> {
        self.out.flush()?;
        Ok(())
    }
}

/// Closes `--output json` with the run's `{"type":"summary",...}` record (text output
/// has the human summary on stderr instead).
/// The summary also gives the process's peak resident memory (`peak_rss_bytes`, from
/// `/proc/self/status`; absent where there is none), so a flood's cost is visible.
pub fn summary(engine: &Engine, out: &mut impl Write, format: Output) -> Result<()> {
    summary_of(&engine.stats(), out, format)
}

/// The summary record of these statistics (JSON output only).
pub fn summary_of(
    stats: &logheal_pipeline::Stats,
    out: &mut impl Write,
    format: Output,
) -> Result<()> {
    if let Output::Json = format {
        let mut summary: serde_json::Value =
            serde_json::from_str(&stats.to_json()).expect("the summary is JSON");
        if let Some(peak) = peak_rss_bytes() {
            summary["peak_rss_bytes"] = peak.into();
        }
        writeln!(out, "{summary}")?;
    }
    Ok(())
}

/// The process's peak resident set size (`VmHWM`), on Linux.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub fn write_record(out: &mut impl Write, format: Output, record: &Record) -> Result<()> {
    let line = match format {
        Output::Text => record.to_text(),
        Output::Json => record.to_json(),
    };
    writeln!(out, "{line}")?;
    Ok(())
}
