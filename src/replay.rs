//! `logheal replay`: the pipeline over files or stdin, in event time, as a dry run.

use crate::handoff::Handoff;
use crate::output::{Job, Output, Printer};
use anyhow::{Context, Result};
use logheal_pipeline::clock::ClockConfig;
use logheal_pipeline::reader::{Line, LineReader};
use logheal_pipeline::EngineConfig;
use std::io::{self, BufRead, BufReader, BufWriter};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// Log files to read in order; `-` (or nothing) reads stdin.
    files: Vec<PathBuf>,
    /// Rule files or directories; the built-in cross-service 503 rule when none.
    #[arg(long = "rules", value_name = "PATH")]
    rules: Vec<PathBuf>,
    /// A job configuration file: its field names, line shapes and limits apply (its
    /// Kafka section does not; `--rules` wins over its rule files).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
    /// Loghub-style header format for text logs, e.g. '<Date> <Time> <Level> <Component>: <Content>'.
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,
    /// How late (behind the newest record) a record may arrive and still count.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    lateness: Duration,
    /// Lines longer than this many bytes are skipped.
    #[arg(long, default_value_t = 1 << 20)]
    max_line_bytes: usize,
    /// Call the receivers for real (URLs and secrets from the environment), with an
    /// audit record per attempt; without it nothing is called.
    #[arg(long)]
    execute: bool,
    /// Read the files as the partitions of one stream (each in time order, as a
    /// topic's partitions exported one per file) and correlate them on this many
    /// threads: each thread takes its share of the files, merged by event time, and
    /// one decider takes their signals, as the live job does with the stages apart.
    /// Without it, files are read one after the other by one engine.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    threads: Option<u16>,
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let config = EngineConfig {
        time: ClockConfig {
            lateness: args.lateness,
            ..ClockConfig::default()
        },
        max_line_bytes: args.max_line_bytes,
        header_format: args.format.clone(),
        execute: args.execute,
        ..EngineConfig::default()
    };
    let mut config = config;
    let mut rules = args.rules.clone();
    if let Some(path) = &args.config {
        let file =
            crate::config::FileConfig::check(path).map_err(|e| anyhow::anyhow!(e.join("\n")))?;
        file.apply(&mut config)?;
        if rules.is_empty() {
            rules = file.rules.clone();
        }
    }
    if let Some(threads) = args.threads {
        if args.execute {
            anyhow::bail!("--threads replays dry: --execute needs one engine");
        }
        return crate::threads::replay(&args.files, &rules, &config, threads.into(), args.output);
    }
    let Job {
        mut engine,
        executor,
        runtime: _runtime,
    } = Job::start(&rules, &config)?;
    let mut handoff = Handoff::default();
    let stdout = io::stdout();
    let mut out = Printer::new(BufWriter::new(stdout.lock()), args.output);
    let stdin_only = [PathBuf::from("-")];
    let files = if args.files.is_empty() {
        &stdin_only[..]
    } else {
        &args.files[..]
    };
    for path in files {
        let input: Box<dyn BufRead> = if path.as_os_str() == "-" {
            Box::new(BufReader::with_capacity(1 << 18, io::stdin().lock()))
        } else {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            Box::new(BufReader::with_capacity(1 << 18, file))
        };
        let mut reader = LineReader::new(input, engine.max_line_bytes());
        while let Some(line) = reader.next_line() {
            match line.with_context(|| format!("reading {}", path.display()))? {
                Line::Full(bytes) => engine.push_line(bytes),
                Line::TooLong(len) => engine.skip_too_long(len),
            }
            // Replay stands event time still while a call is in flight, so outcomes land
            // when they would have in the log's own time (live mode never waits).
            if let Some(executor) = &executor {
                handoff.exchange(&mut engine, executor, &mut out, true)?;
            }
            out.emit(&mut engine)?;
        }
    }
    handoff.run_out(&mut engine, executor.as_ref(), &mut out)?;
    crate::output::summary(&engine, &mut out.out, args.output)?;
    out.flush()?;
    eprintln!("{}", engine.stats());
    Ok(ExitCode::SUCCESS)
}
