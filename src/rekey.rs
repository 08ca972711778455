//! `logheal rekey`: copies topics into one keyed by trace id, so that every event of a
//! trace meets in one consumer (run it beside the consumers, or set `kafka.rekey` in the
//! job's config file to run it inside the job). Ends on SIGTERM or SIGINT, or with
//! `--until-end` once the input is drained.

use crate::consume::KafkaArgs;
use anyhow::{anyhow, Result};
use logheal_kafka::rekey;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// The topic to write, keyed by trace id (it must exist).
    #[arg(long, value_name = "TOPIC")]
    to: String,
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let env = |name: &str| std::env::var(name).ok();
    let (mut config, _) = args
        .kafka
        .resolve(None, &env)?
        .ok_or_else(|| anyhow!("--brokers and --topic are required"))?;
    if args.kafka.group_unset() {
        config.group = "logheal-rekey".into();
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let stats = rekey::run(&config, &args.to, &stop, args.kafka.until_end)?;
    eprintln!(
        "rekey: {} records: {} by trace id, {} by service, {} with their own key",
        stats.records, stats.by_trace, stats.by_service, stats.unkeyed
    );
    Ok(ExitCode::SUCCESS)
}
