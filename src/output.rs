//! What the commands print, and the exchange between the engine and the executor.

use anyhow::{bail, Result};
use clap::ValueEnum;
use logheal_pipeline::executor::{Event, Executor};
use logheal_pipeline::receivers::resolve_all;
use logheal_pipeline::{Engine, EngineConfig, Record};
use logheal_rules::RuleSet;
use std::io::Write;
use std::path::PathBuf;

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
        let engine = Engine::new(load_rules(rules)?, config).map_err(anyhow::Error::msg)?;
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
    if paths.is_empty() {
        return Ok(logheal_rules::builtin());
    }
    match logheal_rules::load_paths(paths) {
        Ok(set) => Ok(set),
        Err(diagnostics) => {
            for d in &diagnostics {
                eprintln!("{d}");
            }
            bail!("the rule files have {} error(s)", diagnostics.len());
        }
    }
}

pub fn emit(engine: &mut Engine, out: &mut impl Write, format: Output) -> Result<()> {
    for record in engine.take_records() {
        write_record(out, format, &record)?;
    }
    Ok(())
}

fn write_record(out: &mut impl Write, format: Output, record: &Record) -> Result<()> {
    let line = match format {
        Output::Text => record.to_text(),
        Output::Json => record.to_json(),
    };
    writeln!(out, "{line}")?;
    Ok(())
}

/// Sends the engine's requests to the executor and feeds back what has happened; with
/// `wait`, until no request is outstanding (replay), else only what is ready (live).
pub fn exchange(
    engine: &mut Engine,
    executor: &Executor,
    out: &mut impl Write,
    format: Output,
    wait: bool,
) -> Result<()> {
    loop {
        for request in engine.take_outbox() {
            executor.submit(request);
        }
        let event = if wait && engine.awaiting_outcomes() {
            executor.events.recv().ok()
        } else {
            executor.events.try_recv().ok()
        };
        match event {
            Some(Event::Attempt(attempt)) => {
                if let Some(record) = engine.attempt_record(&attempt) {
                    write_record(out, format, &record)?;
                }
            }
            Some(Event::Done { request, outcome }) => engine.action_outcome(request, &outcome),
            None => return Ok(()),
        }
    }
}
