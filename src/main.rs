//! logheal: watches service log streams, correlates cross-service failures by trace and
//! drives one state machine per incident. This crate is the command line only: argument
//! parsing and wiring; the work lives in the `logheal-*` crates.

#![forbid(unsafe_code)]

mod book;
mod check;
mod config;
mod consume;
mod handoff;
mod http;
mod incidents;
mod inspect;
mod live;
mod metrics;
mod output;
mod page;
mod rekey;
mod replay;
mod ruletest;
mod run;
mod split;
mod templates;
mod threads;

use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator (why, and why its v2 line: ARCHITECTURE.md,
/// the binary's entry in the code map).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "logheal", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How logheal's own log lines (stderr) are written; `RUST_LOG` filters them.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "LOGHEAL_LOG_FORMAT"
    )]
    log_format: LogFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Structured logs on stderr; stdout is reserved for records.
///
/// The Kafka client's own log (targets `librdkafka` and `rdkafka`) is off unless
/// `RUST_LOG` names it: the consumer already reports the errors that matter, once, and
/// the client would repeat each of them several times a second while a broker is down.
/// `RUST_LOG=info,librdkafka=debug` with `-X debug=cgrp` shows the group protocol.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::new(log_directives(
        std::env::var(tracing_subscriber::EnvFilter::DEFAULT_ENV)
            .ok()
            .as_deref(),
    ));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(false).init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The log filter: `RUST_LOG` (default `info`), with the Kafka client's targets turned
/// off unless it names one of them.
fn log_directives(rust_log: Option<&str>) -> String {
    let given = rust_log
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("info");
    if given.contains("rdkafka") {
        given.to_owned()
    } else {
        format!("{given},librdkafka=off,rdkafka=off")
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline over log files or stdin in event time; print incident transitions
    /// and the actions that would be called (nothing is called).
    Replay(replay::Args),
    /// The live job: read stdin (or files) as they come, let time follow the logs and the
    /// wall clock, call the receivers, and reload the rule files when they change or on
    /// SIGHUP.
    Run(run::Args),
    /// Copy topics into one keyed by trace id, so that each trace meets in one consumer.
    Rekey(rekey::Args),
    /// Mine a log file's messages into templates; print them with counts.
    Templates(templates::Args),
    /// Run rule test files (`*.test.yaml`): input lines and the incidents and actions
    /// that must and must not follow, in event time.
    Test {
        /// Test files, or directories of `*.test.yaml`.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Validate rule files; print `file:line:col: message` per error and warning.
    Check(check::Args),
    /// Show what is read in each record (envelope, payload, time, service, level, status,
    /// trace id, message, template) and which rules select it or why not; then how often
    /// each field was recognised.
    Inspect(inspect::Args),
    /// A running job's incidents (`incidents`), or one of them (`incidents show ID`),
    /// from its API.
    Incidents(incidents::IncidentsArgs),
    /// Add, list or expire a running job's silences: a silenced incident moves through
    /// its states but calls no receiver.
    Silence(incidents::SilenceArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Replay(args) => replay::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Rekey(args) => rekey::run(&args),
        Command::Templates(args) => templates::run(&args),
        Command::Check(args) => Ok(check::run(&args)),
        Command::Inspect(args) => inspect::run(&args),
        Command::Test { paths } => ruletest::run(&paths),
        Command::Incidents(args) => incidents::incidents(&args),
        Command::Silence(args) => incidents::silence(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("logheal: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::log_directives;

    #[test]
    fn the_kafka_clients_log_is_off_unless_rust_log_names_it() {
        assert_eq!(log_directives(None), "info,librdkafka=off,rdkafka=off");
        assert_eq!(
            log_directives(Some("  ")),
            "info,librdkafka=off,rdkafka=off"
        );
        assert_eq!(
            log_directives(Some("debug")),
            "debug,librdkafka=off,rdkafka=off"
        );
        assert_eq!(
            log_directives(Some("info,librdkafka=debug")),
            "info,librdkafka=debug"
        );
    }
}
