//! `logheal templates`: mine a log file's messages into templates.

use anyhow::{Context, Result};
use logheal_models::{Families, Miner, MinerConfig, TemplateKey, DEFAULT_FAMILY_SIMILARITY};
use logheal_parsers::{FieldNames, LineParser};
use logheal_pipeline::reader::{Line, LineReader};
use std::io::{self, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// The log file.
    file: PathBuf,
    /// Loghub-style header format, e.g. '<Date> <Time> <Level> <Component>: <Content>';
    /// without it lines are read as JSON / logfmt and their message field is mined.
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,
    /// Also write `line,template_id,template` for every input line to this CSV file.
    #[arg(long, value_name = "OUT")]
    csv: Option<PathBuf>,
    /// Changes a setting of the miner, for experiments (the live job always runs the
    /// defaults): `similarity` (0.5), `prefix_depth` (2; at most 2 count),
    /// `settle_after` (1), `siblings_to_merge` (4). Repeatable.
    #[arg(long = "miner", value_name = "KEY=VALUE")]
    miner: Vec<String>,
}

/// The default miner settings with the `--miner` changes.
fn miner_config(changes: &[String]) -> Result<MinerConfig> {
    let mut config = MinerConfig::default();
    for change in changes {
        let (key, value) = change
            .split_once('=')
            .with_context(|| format!("--miner {change}: expected KEY=VALUE"))?;
        let bad = || format!("--miner {change}: bad value for {key}");
        match key {
            "similarity" => config.similarity = value.parse().with_context(bad)?,
            "prefix_depth" => config.prefix_depth = value.parse().with_context(bad)?,
            "settle_after" => config.settle_after = value.parse().with_context(bad)?,
            "siblings_to_merge" => config.siblings_to_merge = value.parse().with_context(bad)?,
            _ => anyhow::bail!(
                "--miner {change}: unknown setting {key} (similarity, prefix_depth, settle_after, siblings_to_merge)"
            ),
        }
    }
    Ok(config)
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let config = miner_config(&args.miner)?;
    let messages = read_messages(args)?;
    let mut miner = Miner::new(config);
    let started = Instant::now();
    let ids: Vec<_> = messages.iter().map(|m| miner.add(m)).collect();
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "mined {} lines in {:.3} s ({:.0} lines/s): {} templates; {} repeated an earlier line's digit-blind form",
        ids.len(),
        elapsed,
        ids.len() as f64 / elapsed.max(1e-9),
        miner.len(),
        miner.stats.repeated
    );
    if let Some(path) = &args.csv {
        let mut out = csv::Writer::from_path(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        out.write_record(["line", "template_id", "template"])?;
        for (i, id) in ids.iter().enumerate() {
            let id = miner.resolve(*id);
            let template = miner.template(id).unwrap_or_default();
            out.write_record([(i + 1).to_string(), id.0.to_string(), template])?;
        }
        out.flush()?;
    }
    let key = |id| TemplateKey { service: 0, id };
    let texts: Vec<_> = miner
        .texts()
        .into_iter()
        .map(|(id, t)| (key(id), t))
        .collect();
    let mut families = Families::new(DEFAULT_FAMILY_SIMILARITY);
    families.refresh(&texts);
    eprintln!("{} families", families.len());
    let mut counts: Vec<_> = miner.templates().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut stdout = BufWriter::new(io::stdout().lock());
    for (id, count) in counts {
        let template = miner.template(id).unwrap_or_default();
        let family = families.family(key(id)).map_or(0, |f| f.0);
        writeln!(stdout, "{count:>8}  T{:<6} F{family:<5} {template}", id.0)?;
    }
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Every line's message, back to back in one buffer (a million lines are not a million
/// allocations).
#[derive(Default)]
struct Messages {
    text: String,
    ends: Vec<usize>,
}

impl Messages {
    fn push(&mut self, message: &str) {
        self.text.push_str(message);
        self.ends.push(self.text.len());
    }

    fn iter(&self) -> impl Iterator<Item = &str> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(&self.ends)
            .map(|(start, &end)| &self.text[start..end])
    }
}

/// The message of every line: the parsed message field, or the whole line when it does
/// not parse (as the Loghub reference tooling does), so the output has one row per line.
fn read_messages(args: &Args) -> Result<Messages> {
    let year = logheal_parsers::time::current_year();
    let mut parser = LineParser::new(&FieldNames::default(), args.format.as_deref(), year)?;
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("cannot open {}", args.file.display()))?;
    let mut reader = LineReader::new(BufReader::with_capacity(1 << 18, file), 1 << 20);
    let mut messages = Messages::default();
    while let Some(line) = reader.next_line() {
        match line.with_context(|| format!("reading {}", args.file.display()))? {
            Line::Full(bytes) => {
                let text = String::from_utf8_lossy(bytes);
                match parser.parse(&text) {
                    Ok(event) => messages.push(&event.message),
                    Err(_) => messages.push(text.trim()),
                }
            }
            Line::TooLong(_) => messages.push(""),
        }
    }
    Ok(messages)
}
