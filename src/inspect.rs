//! `logheal inspect`: what logheal reads in each record (envelope, payload, time, service,
//! level, status, trace id, message, template) and which rules select it or why not; at
//! the end, how often each field was recognised. The first tool to reach for when
//! "nothing fires".

use crate::output::load_rules;
use anyhow::{Context, Result};
use logheal_models::{MinerConfig, ServiceTemplates};
use logheal_parsers::fields::Field;
use logheal_parsers::{otlp, FieldNames, LineParser, LogEvent};
use logheal_pipeline::reader::{Line, LineReader};
use logheal_rules::{RuleSet, Selector, Unmet};
use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Log files to read in order; `-` (or nothing) reads stdin.
    files: Vec<PathBuf>,
    /// Rule files or directories; the built-in rules when none.
    #[arg(long = "rules", value_name = "PATH")]
    rules: Vec<PathBuf>,
    /// Loghub-style header format for text logs.
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,
    /// How many records to show one by one (the summary counts them all).
    #[arg(long, default_value_t = 20)]
    show: usize,
}

/// Recognition counts of one run.
#[derive(Default)]
struct Tally {
    records: u64,
    errors: BTreeMap<&'static str, u64>,
    fields: BTreeMap<&'static str, u64>,
    payloads: BTreeMap<String, u64>,
    selected: BTreeMap<String, u64>,
}

const FIELDS: [(&str, Field); 6] = [
    ("time", Field::Ts),
    ("service", Field::Service),
    ("level", Field::Level),
    ("status", Field::Status),
    ("trace_id", Field::TraceId),
    ("request_id", Field::RequestId),
];

pub fn run(args: &Args) -> Result<ExitCode> {
    let rules = load_rules(&args.rules)?;
    let names = FieldNames {
        extra: rules.field_names.extra.clone(),
        ..FieldNames::default()
    };
    let mut parser = LineParser::new(
        &names,
        args.format.as_deref(),
        logheal_parsers::time::current_year(),
    )?;
    let mut templates = ServiceTemplates::new(MinerConfig::default());
    let mut services: HashMap<String, u32> = HashMap::new();
    let mut tally = Tally::default();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let files = if args.files.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        args.files.clone()
    };
    let mut batch = Vec::new();
    for path in &files {
        let input: Box<dyn BufRead> = if path.as_os_str() == "-" {
            Box::new(BufReader::new(io::stdin().lock()))
        } else {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            Box::new(BufReader::new(file))
        };
        let mut reader = LineReader::new(input, 1 << 20);
        while let Some(line) = reader.next_line() {
            let bytes = match line.with_context(|| format!("reading {}", path.display()))? {
                Line::Full(bytes) => bytes,
                Line::TooLong(_) => {
                    *tally.errors.entry("line_too_long").or_default() += 1;
                    continue;
                }
            };
            batch.clear();
            let envelope = if otlp::is_otlp_json(bytes) {
                match std::str::from_utf8(bytes)
                    .map_err(|_| logheal_parsers::ParseError::MalformedJson)
                    .and_then(|s| otlp::split_json(s, &mut batch))
                {
                    Ok(()) => "otlp_json",
                    Err(e) => {
                        *tally.errors.entry(e.reason()).or_default() += 1;
                        continue;
                    }
                }
            } else if otlp::may_be_otlp_proto(bytes) && otlp::split_proto(bytes, &mut batch).is_ok()
            {
                "otlp_proto"
            } else {
                batch.push(String::from_utf8_lossy(bytes).into_owned());
                ""
            };
            for record in &batch {
                let event = match parser.parse(record) {
                    Ok(e) => e,
                    Err(e) => {
                        tally.records += 1;
                        *tally.errors.entry(e.reason()).or_default() += 1;
                        if tally.records as usize <= args.show {
                            writeln!(out, "#{} skipped: {e}", tally.records)?;
                        }
                        continue;
                    }
                };
                tally.records += 1;
                let seen = parser.recognised();
                let kind = if envelope.is_empty() {
                    seen.record
                } else {
                    envelope
                };
                *tally
                    .payloads
                    .entry(format!("{kind} / {}", seen.payload))
                    .or_default() += 1;
                for (name, field) in FIELDS {
                    if present(&event, field) {
                        *tally.fields.entry(name).or_default() += 1;
                    }
                }
                let service = event.service.as_deref().unwrap_or_default();
                let next = services.len() as u32;
                let id = *services.entry(service.to_string()).or_insert(next);
                let (template, _) = templates.add(id, &event.message);
                let mut verdicts = Vec::new();
                for rule in &rules.rules {
                    match why_not(&rule.select, &event, &rules) {
                        None => {
                            *tally.selected.entry(rule.name.clone()).or_default() += 1;
                            verdicts.push(format!("{}: selected", rule.name));
                        }
                        Some(why) => verdicts.push(format!("{}: not selected ({why})", rule.name)),
                    }
                }
                if tally.records as usize <= args.show {
                    show(
                        &mut out,
                        tally.records,
                        kind,
                        seen.payload,
                        &event,
                        &parser,
                        templates.text(template).unwrap_or_default(),
                        &verdicts,
                    )?;
                }
            }
        }
    }
    summary(&mut out, &tally)?;
    Ok(ExitCode::SUCCESS)
}

fn present(e: &LogEvent<'_>, field: Field) -> bool {
    match field {
        Field::Ts => e.ts.is_some(),
        Field::Service => e.service.is_some(),
        Field::Level => e.level != logheal_parsers::Level::Unknown,
        Field::Status => e.status.is_some(),
        Field::TraceId => e.trace_id.is_some(),
        Field::RequestId => e.request_id.is_some(),
        _ => false,
    }
}

/// Why a rule does not select an event, in words; `None` when it does (model
/// conditions on templates and anomalies are the pipeline's, not checked here).
fn why_not(s: &Selector, e: &LogEvent<'_>, rules: &RuleSet) -> Option<String> {
    Some(match s.unmet(e)? {
        Unmet::Status => {
            let ranges: Vec<String> = s
                .status
                .iter()
                .map(|(lo, hi)| {
                    if lo == hi {
                        lo.to_string()
                    } else {
                        format!("{lo}-{hi}")
                    }
                })
                .collect();
            match e.status {
                None => format!("no status; the rule wants {}", ranges.join(", ")),
                Some(code) => format!("status {code} not in {}", ranges.join(", ")),
            }
        }
        Unmet::Level => format!("level {}", e.level.as_str()),
        Unmet::Service => "service not in the rule's list".into(),
        Unmet::Message => "message does not match".into(),
        Unmet::Field(idx) => {
            let name = rules
                .field_names
                .extra
                .get(usize::from(idx))
                .map_or("?", String::as_str);
            let want = s
                .fields
                .iter()
                .find(|(i, _)| *i == idx)
                .map_or("", |(_, w)| w.as_str());
            format!("field {name} is not {want:?}")
        }
    })
}

#[allow(clippy::too_many_arguments)]
fn show(
    out: &mut impl Write,
    n: u64,
    kind: &str,
    payload: &str,
    e: &LogEvent<'_>,
    parser: &LineParser,
    template: String,
    verdicts: &[String],
) -> Result<()> {
    let from = |field: Field| {
        parser
            .source_of(field)
            .map_or(String::new(), |k| format!(" ({k})"))
    };
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    writeln!(out, "#{n} {kind} / payload {payload}")?;
    match e.ts {
        Some(t) => writeln!(out, "  time     {}{}", t.to_rfc3339(), from(Field::Ts))?,
        // Skipped by replay; the live job on Kafka times it by the record's timestamp.
        None => writeln!(
            out,
            "  time     - (none: skipped from files and stdin; on Kafka, the record's timestamp)"
        )?,
    }
    writeln!(
        out,
        "  service  {}{}",
        or_dash(e.service.as_deref().map(clean)),
        from(Field::Service)
    )?;
    writeln!(out, "  level    {}{}", e.level.as_str(), from(Field::Level))?;
    writeln!(
        out,
        "  status   {}{}",
        or_dash(e.status.map(|s| s.to_string())),
        from(Field::Status)
    )?;
    writeln!(
        out,
        "  trace    {}{}",
        or_dash(e.trace_id.as_deref().map(clean)),
        from(Field::TraceId)
    )?;
    if let Some(r) = e.request_id.as_deref() {
        writeln!(out, "  request  {}{}", clean(r), from(Field::RequestId))?;
    }
    if let Some(c) = e.callee.as_deref() {
        writeln!(out, "  callee   {}{}", clean(c), from(Field::Callee))?;
    }
    writeln!(out, "  message  {}", clean(&e.message))?;
    writeln!(out, "  template {}", clean(&template))?;
    for v in verdicts {
        writeln!(out, "  rule     {v}")?;
    }
    Ok(())
}

/// Text for a terminal: control characters escaped, long values cut.
fn clean(s: &str) -> String {
    let cut = match s.char_indices().nth(160) {
        Some((end, _)) => &s[..end],
        None => s,
    };
    let mut out = logheal_pipeline::record::terminal_safe(cut).into_owned();
    if cut.len() < s.len() {
        out.push('…');
    }
    out
}

fn summary(out: &mut impl Write, t: &Tally) -> Result<()> {
    let pct = |n: u64| {
        if t.records == 0 {
            0.0
        } else {
            100.0 * n as f64 / t.records as f64
        }
    };
    writeln!(out, "recognised in {} records:", t.records)?;
    for (name, _) in FIELDS {
        let n = t.fields.get(name).copied().unwrap_or(0);
        writeln!(out, "  {name:<10} {n:>9}  {:6.2} %", pct(n))?;
    }
    writeln!(out, "read as:")?;
    for (kind, n) in &t.payloads {
        writeln!(out, "  {kind:<28} {n:>9}  {:6.2} %", pct(*n))?;
    }
    if !t.errors.is_empty() {
        writeln!(out, "skipped:")?;
        for (why, n) in &t.errors {
            writeln!(out, "  {why:<28} {n:>9}  {:6.2} %", pct(*n))?;
        }
    }
    writeln!(out, "selected by rules:")?;
    if t.selected.is_empty() {
        writeln!(out, "  none")?;
    }
    for (rule, n) in &t.selected {
        writeln!(out, "  {rule:<28} {n:>9}  {:6.2} %", pct(*n))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn a_value_is_shown_as_written_but_for_control_characters_and_its_length() {
        assert_eq!(
            clean("can't reach \"payment\" — café"),
            "can't reach \"payment\" — café"
        );
        assert_eq!(
            clean("red\u{1b}[31m\nnext\u{202e}"),
            "red\\u{1b}[31m\\u{a}next\\u{202e}"
        );
        let long = "x".repeat(200);
        assert_eq!(clean(&long), format!("{}…", "x".repeat(160)));
    }
}
