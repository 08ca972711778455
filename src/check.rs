//! `logheal check`: validate rule files; errors fail, warnings inform.

use clap::ValueEnum;
use logheal_rules::{Diagnostic, Severity};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// `file:line:col: message` (warnings: `file:line:col: warning: message`).
    Text,
    /// One JSON object per diagnostic, for CI annotations.
    Json,
}

#[derive(clap::Args)]
pub struct Args {
    /// Rule files or directories of them.
    #[arg(required_unless_present = "config")]
    paths: Vec<PathBuf>,
    /// Also check a job configuration file (`logheal run --config`): its YAML, its
    /// `fields:` and its `patterns:`.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// The allowed lateness the rules will run with (windows shorter than it are flagged).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    lateness: Duration,
}

pub fn run(args: &Args) -> ExitCode {
    if let Some(path) = &args.config {
        match crate::config::FileConfig::check(path) {
            Ok(config) => {
                // Rule files are checked against the references this job allows.
                if let Err(e) = config.apply_secrets() {
                    println!("{}: secrets: {e}", path.display());
                    return ExitCode::FAILURE;
                }
                eprintln!(
                    "ok: {} ({} pattern(s))",
                    path.display(),
                    config.patterns.len()
                )
            }
            Err(errors) => {
                for e in &errors {
                    println!("{e}");
                }
                eprintln!("{} error(s)", errors.len());
                return ExitCode::FAILURE;
            }
        }
        if args.paths.is_empty() {
            return ExitCode::SUCCESS;
        }
    }
    let (diagnostics, summary) = match logheal_rules::load_paths(&args.paths) {
        Ok(set) => {
            let summary = format!(
                "ok: {} rule(s), {} receiver(s)",
                set.rules.len(),
                set.receivers.len()
            );
            (logheal_rules::lint(&set, args.lateness), Some(summary))
        }
        Err(errors) => (errors, None),
    };
    for d in &diagnostics {
        match args.format {
            Format::Text => println!("{d}"),
            Format::Json => println!("{}", json(d)),
        }
    }
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diagnostics.len() - errors;
    match summary {
        Some(summary) => {
            eprintln!("{summary}; {warnings} warning(s)");
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("{errors} error(s)");
            ExitCode::FAILURE
        }
    }
}

fn json(d: &Diagnostic) -> String {
    let severity = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    serde_json::json!({
        "file": d.location.file,
        "line": d.location.line,
        "col": d.location.col,
        "severity": severity,
        "message": d.message,
    })
    .to_string()
}
