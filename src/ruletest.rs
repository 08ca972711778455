//! `logheal test`: runs rule test files against the real pipeline in event time
//! (deterministic, no sleeping) and reports like a test runner.

use anyhow::{Context, Result};
use logheal_parsers::time::parse_timestamp;
use logheal_parsers::EventTime;
use logheal_pipeline::record::{ActionRecord, Labels};
use logheal_pipeline::{Engine, EngineConfig, Record};
use logheal_rules::{
    load_test_file, ActionExpectation, IncidentExpectation, Input, RuleSet, TestCase,
};
use std::borrow::Cow;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

pub fn run(paths: &[PathBuf]) -> Result<ExitCode> {
    let (mut passed, mut failed) = (0u32, 0u32);
    for path in test_files(paths)? {
        let file = match load_test_file(&path) {
            Ok(f) => f,
            Err(diagnostics) => {
                for d in diagnostics {
                    println!("ERROR {d}");
                }
                failed += 1;
                continue;
            }
        };
        let rules = match logheal_rules::load_or_builtin(&file.rule_files) {
            Ok(set) => set,
            Err(diagnostics) => {
                for d in diagnostics {
                    println!("ERROR {d}");
                }
                failed += file.cases.len() as u32;
                continue;
            }
        };
        for case in &file.cases {
            let records = replay(&rules, case)?;
            let problems = check(case, &records);
            if problems.is_empty() {
                passed += 1;
                println!("PASS  {}  {}", case.location, case.name);
            } else {
                failed += 1;
                println!("FAIL  {}  {}", case.location, case.name);
                for p in problems {
                    println!("        {}", p.replace('\n', "\n        "));
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Files given, and `*.test.yaml` / `*.test.yml` inside directories given.
fn test_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        if !path.is_dir() {
            out.push(path.clone());
            continue;
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                name.ends_with(".test.yaml") || name.ends_with(".test.yml")
            })
            .collect();
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

fn replay(rules: &RuleSet, case: &TestCase) -> Result<Vec<Record>> {
    let config = EngineConfig {
        // Test data may be dated anywhere; only order and spacing matter.
        future_skew: Duration::from_secs(100 * 365 * 24 * 3600),
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(rules.clone(), &config)?;
    let text =
        match &case.input {
            Input::Inline(text) => Cow::Borrowed(text.as_str()),
            Input::File(path) => Cow::Owned(std::fs::read_to_string(path).with_context(|| {
                format!("{}: cannot read input {}", case.location, path.display())
            })?),
        };
    let mut records = Vec::new();
    for line in text.lines() {
        engine.push_line(line.as_bytes());
        records.extend(engine.take_records());
    }
    engine.finish();
    records.extend(engine.take_records());
    Ok(records)
}

fn time(s: &str) -> EventTime {
    parse_timestamp(s).expect("records carry RFC 3339 times")
}

fn labels(key: &[(String, String)]) -> String {
    let parts: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", parts.join(", "))
}

/// Every expectation the records do not meet, as a readable line.
fn check(case: &TestCase, records: &[Record]) -> Vec<String> {
    let transitions: Vec<(&str, &Labels, EventTime, &str)> = records
        .iter()
        .filter_map(|r| match r {
            Record::Transition {
                at,
                incident,
                key,
                to,
                ..
            } => Some((incident.as_ref(), key, time(at), to.as_str())),
            _ => None,
        })
        .collect();
    let actions: Vec<&ActionRecord> = records
        .iter()
        .filter_map(|r| match r {
            Record::Action(a) => Some(a),
            _ => None,
        })
        .collect();
    let key_matches = |want: &[(String, String)], got: &Labels| {
        want.len() == got.len()
            && want
                .iter()
                .all(|(k, v)| got.get(k).and_then(|g| g.as_str()) == Some(v.as_str()))
    };
    let state_at = |want: &IncidentExpectation| -> &str {
        let until = want.at.unwrap_or(EventTime::MAX);
        transitions
            .iter()
            .filter(|(_, key, at, _)| key_matches(&want.key, key) && *at <= until)
            .max_by_key(|(_, _, at, _)| *at)
            .map_or("NORMAL", |(.., to)| *to)
    };
    let delay = |a: &ActionRecord| -> Option<Duration> {
        let at = time(&a.at);
        let entered = transitions
            .iter()
            .filter(|(id, _, t, to)| {
                *id == a.incident.as_ref() && *to == a.state.as_str() && *t <= at
            })
            .map(|(_, _, t, _)| *t)
            .max()?;
        Some(Duration::from_nanos((at.nanos() - entered.nanos()) as u64))
    };
    let matches = |want: &ActionExpectation, a: &ActionRecord| {
        want.action.as_deref().is_none_or(|x| x == a.action)
            && want.receiver.as_deref().is_none_or(|x| x == a.receiver)
            && want.state.as_deref().is_none_or(|x| x == a.state.as_str())
            && want.at.is_none_or(|x| x == time(&a.at))
            && want.after.is_none_or(|x| delay(a) == Some(x))
    };
    let describe = |a: &ActionRecord| {
        let after = delay(a).map_or(String::new(), |d| {
            format!(" after {}", humantime::format_duration(d))
        });
        format!(
            "{} ({}, {}{after}) at {}",
            a.action,
            a.receiver,
            a.state.as_str(),
            a.at
        )
    };
    let mut problems = Vec::new();
    for want in &case.incidents {
        let got = state_at(want);
        if got != want.state {
            let when = want
                .at
                .map_or("at the end".to_string(), |t| format!("at {t}"));
            problems.push(format!(
                "incident {} {when}: expected {}, got {got}",
                labels(&want.key),
                want.state
            ));
        }
    }
    let mut next = 0;
    for a in &actions {
        if next < case.actions.len() && matches(&case.actions[next], a) {
            next += 1;
        }
    }
    if next < case.actions.len() {
        let actual: Vec<String> = actions.iter().map(|a| describe(a)).collect();
        problems.push(format!(
            "expected action #{} {} in order; actions called:\n  {}",
            next + 1,
            expectation(&case.actions[next]),
            if actual.is_empty() {
                "(none)".to_string()
            } else {
                actual.join("\n  ")
            }
        ));
    }
    for want in &case.absent_actions {
        for a in actions.iter().filter(|a| matches(want, a)) {
            problems.push(format!("unexpected action {}", describe(a)));
        }
    }
    for want in &case.absent_incidents {
        let hit = transitions.iter().find(|(_, key, _, to)| {
            *to == want.state && (want.key.is_empty() || key_matches(&want.key, key))
        });
        if let Some((id, _, at, to)) = hit {
            problems.push(format!("unexpected incident {id} entered {to} at {at}"));
        }
    }
    problems
}

fn expectation(want: &ActionExpectation) -> String {
    let mut parts = Vec::new();
    let fields = [
        ("action", &want.action),
        ("receiver", &want.receiver),
        ("state", &want.state),
    ];
    for (name, value) in fields {
        if let Some(v) = value {
            parts.push(format!("{name}={v}"));
        }
    }
    if let Some(d) = want.after {
        parts.push(format!("after={}", humantime::format_duration(d)));
    }
    if let Some(t) = want.at {
        parts.push(format!("at={t}"));
    }
    format!("[{}]", parts.join(" "))
}
