//! `logheal check`: validate rule files.

use std::path::PathBuf;
use std::process::ExitCode;

pub fn run(paths: &[PathBuf]) -> ExitCode {
    match logheal_rules::load_paths(paths) {
        Ok(set) => {
            println!(
                "ok: {} rule(s), {} receiver(s)",
                set.rules.len(),
                set.receivers.len()
            );
            ExitCode::SUCCESS
        }
        Err(diagnostics) => {
            for d in &diagnostics {
                println!("{d}");
            }
            eprintln!("{} error(s)", diagnostics.len());
            ExitCode::FAILURE
        }
    }
}
