//! End-to-end: `logheal replay` and `logheal check` through the built binary.

mod support;

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use support::loggen::{self, Outage, Scenario};

fn logheal() -> Command {
    Command::new(env!("CARGO_BIN_EXE_logheal"))
}

fn run_with_stdin(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = logheal()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("logheal runs");
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || pipe.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    out
}

fn json_lines(out: &Output) -> Vec<Value> {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn transitions_to<'a>(records: &'a [Value], state: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["type"] == "transition" && r["to"] == state)
        .collect()
}

/// A record in short: `FROM->TO`, `call ACTION` or `cancel ACTION`.
fn step(r: &Value) -> String {
    let field = |k: &str| r[k].as_str().unwrap().to_string();
    match r["type"].as_str().unwrap() {
        "transition" => format!("{}->{}", field("from"), field("to")),
        "action" => format!("call {}", field("action")),
        "action_cancelled" => format!("cancel {}", field("action")),
        "summary" => "summary".to_string(),
        other => panic!("unexpected record type {other}"),
    }
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn two_cascades_a_storm_and_isolated_503s_give_exactly_two_confirmed_incidents() {
    let scenario = loggen::two_cascades();
    let out = run_with_stdin(
        &["replay", "--output", "json", "-"],
        scenario.render().as_bytes(),
    );
    let records = json_lines(&out);
    let confirmed = transitions_to(&records, "CONFIRMED");
    let roots: Vec<&str> = confirmed
        .iter()
        .map(|r| r["key"]["root_service"].as_str().unwrap())
        .collect();
    assert_eq!(roots, ["payment", "inventory"], "{confirmed:#?}");
    // Each outage is one incident from start to end, not one per chain.
    let incidents: std::collections::BTreeSet<&str> = confirmed
        .iter()
        .map(|r| r["incident"].as_str().unwrap())
        .collect();
    assert_eq!(incidents.len(), 2);
    let restored = transitions_to(&records, "RESTORED");
    assert_eq!(restored.len(), 2);
    assert!(transitions_to(&records, "ESCALATED").is_empty());
    // The storm and the isolated 503s raised suspicions that cleared on their own.
    let cleared: Vec<&str> = transitions_to(&records, "NORMAL")
        .iter()
        .map(|r| r["key"]["root_service"].as_str().unwrap())
        .collect();
    assert!(cleared.contains(&"search"), "{cleared:?}");
    for id in &incidents {
        let ended: Vec<&Value> = records
            .iter()
            .filter(|r| r["incident"] == *id && r["to"] == "NORMAL")
            .collect();
        assert!(
            ended.is_empty(),
            "a confirmed incident is never silently dropped: {ended:?}"
        );
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("skipped         0"), "{stderr}");
}

#[test]
fn the_reference_story_and_its_actions() {
    let out = logheal()
        .args(["replay", "--output", "json"])
        .arg(repo("examples/checkout-outage.jsonl"))
        .output()
        .unwrap();
    let records = json_lines(&out);
    let confirmed = transitions_to(&records, "CONFIRMED");
    assert_eq!(confirmed.len(), 1, "one cascading outage, one incident");
    let id = confirmed[0]["incident"].as_str().unwrap();
    assert!(id.starts_with("cross-service-503-payment-2026"), "{id}");
    let payment: Vec<&Value> = records.iter().filter(|r| r["incident"] == id).collect();
    let kinds: Vec<String> = payment.iter().map(|r| step(r)).collect();
    assert_eq!(
        kinds,
        [
            "NORMAL->SUSPECTED",
            "SUSPECTED->CONFIRMED",
            "call restart-downstream",
            "CONFIRMED->RECOVERING",
            "call failover",
            "call notify-recovering",
            "RECOVERING->RESTORED",
            "call failback",
            "call notify-restored",
        ],
    );
    let at = |i: usize| {
        chrono::DateTime::parse_from_rfc3339(payment[i]["at"].as_str().unwrap()).unwrap()
    };
    assert_eq!(
        (at(4) - at(3)).num_seconds(),
        5,
        "fail-over 5 s after RECOVERING"
    );
    assert_eq!(
        (at(7) - at(6)).num_seconds(),
        60,
        "fail-back 60 s after RESTORED"
    );
    assert_eq!(at(2), at(1), "restart called on CONFIRMED with no delay");
    // The outage runs 10:03:00–10:05:00; RESTORED one quiet minute after the last chain.
    assert!(payment[1]["at"]
        .as_str()
        .unwrap()
        .starts_with("2026-03-14T10:03:0"));
    assert!(payment[6]["at"]
        .as_str()
        .unwrap()
        .starts_with("2026-03-14T10:05:5"));
    assert_eq!(
        payment[2]["idempotency_key"],
        format!("{id}/2-confirmed/restart-downstream")
    );
    assert_eq!(
        payment[1]["key"],
        serde_json::json!({"root_service": "payment"})
    );
    assert_eq!(payment[1]["rule"], "cross-service-503");
}

#[test]
fn bundled_example_matches_its_generator() {
    let path = repo("examples/checkout-outage.jsonl");
    let generated = loggen::example().render();
    if std::env::var_os("LOGHEAL_REGENERATE").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).expect("examples/checkout-outage.jsonl exists");
    assert!(
        committed == generated,
        "regenerate with LOGHEAL_REGENERATE=1 cargo test --test replay"
    );
}

#[test]
fn text_output_tells_the_story_for_people() {
    let out = logheal()
        .arg("replay")
        .arg(repo("examples/checkout-outage.jsonl"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("SUSPECTED  → CONFIRMED"), "{text}");
    assert!(
        text.contains("would call restart-downstream (receiver restart) for CONFIRMED"),
        "{text}"
    );
    assert!(text.contains("{root_service=payment}"), "{text}");
    let summary = String::from_utf8(out.stderr).unwrap();
    assert!(summary.contains("incidents"), "{summary}");
    assert!(summary.contains("1 confirmed"), "{summary}");
}

#[test]
fn bad_input_is_counted_and_skipped_never_fatal() {
    let good = loggen::example().render();
    let mut input = Vec::new();
    let lines: Vec<&str> = good.lines().collect();
    input.extend_from_slice(lines[..100].join("\n").as_bytes());
    // The bad lines carry the time of the good line before them, so none is late but one.
    let now: Value = serde_json::from_str(lines[99]).unwrap();
    let now = now["ts"].as_str().unwrap();
    input.extend_from_slice(format!("\n{{\"ts\":\"{now}\",\"msg\":\"unterminated\n").as_bytes());
    input.extend_from_slice(
        format!("{{\"ts\":\"{now}\",\"service\":\"a\",\"msg\":\"bad ").as_bytes(),
    );
    input.extend_from_slice(b"\xff\xfe bytes\"}\n");
    input.extend_from_slice(
        format!(
            "{{\"ts\":\"{now}\",\"msg\":\"{}\"}}\n",
            "x".repeat(10 << 20)
        )
        .as_bytes(),
    );
    input.extend_from_slice(
        b"{\"ts\":\"2099-01-01T00:00:00Z\",\"service\":\"a\",\"status\":503,\"trace_id\":\"t\"}\n",
    );
    input.extend_from_slice(
        b"{\"ts\":\"2026-03-14T09:00:00Z\",\"service\":\"a\",\"status\":503,\"trace_id\":\"t\"}\n",
    );
    input.extend_from_slice(b"{\"service\":\"a\",\"status\":503}\n");
    input.extend_from_slice(format!("{{\"ts\":\"{now}\",\"status\":\"teapot\"}}\n").as_bytes());
    input.extend_from_slice(b"just words\n\n");
    input.extend_from_slice(lines[100..].join("\n").as_bytes());
    let out = run_with_stdin(&["replay", "--output", "json"], &input);
    let records = json_lines(&out);
    assert_eq!(
        transitions_to(&records, "CONFIRMED").len(),
        1,
        "the outage is still found"
    );
    let summary = String::from_utf8(out.stderr).unwrap();
    for reason in [
        "malformed_json 1",
        "line_too_long 1",
        "future_timestamp 1",
        "late 1",
        "missing_timestamp 1",
        "unrecognised_format 1",
        "empty_line 1",
    ] {
        assert!(summary.contains(reason), "{reason} missing in {summary}");
    }
    assert!(
        summary.contains("repaired        1 lines with invalid UTF-8"),
        "{summary}"
    );
    // A status that is not an HTTP code ("teapot") is no status, not a lost line.
    assert!(!summary.contains("invalid_status"), "{summary}");
    assert!(summary.contains("skipped         7 "), "{summary}");
}

#[test]
fn check_accepts_the_shipped_rules_and_reports_errors_with_positions() {
    let ok = logheal()
        .arg("check")
        .arg(repo("rules/examples"))
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "receivers:\n  hook: {type: webhook, url: \"${LOGHEAL_HOOK}\"}\nrules:\n  - name: r\n    select: {status: [503]}\n    correlate: {window: soon, min_events: 3, min_services: 4}\n    actions:\n      confirmed: [{name: a, receiver: nobody}]\n",
    )
    .unwrap();
    let out = logheal().arg("check").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    let file = bad.display().to_string();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with(&format!("{file}:6:25: bad duration \"soon\"")),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with(&format!("{file}:6:60: impossible threshold")),
        "{stdout}"
    );
    assert_eq!(
        lines[2],
        format!("{file}:8:39: undeclared receiver \"nobody\"")
    );
    // A broken rule file stops replay before any line is read.
    let replay = logheal()
        .args(["replay", "--rules"])
        .arg(&bad)
        .arg("/dev/null")
        .output()
        .unwrap();
    assert!(!replay.status.success());
    assert!(String::from_utf8_lossy(&replay.stderr).contains("undeclared receiver"));
}

#[test]
fn a_relapse_after_restore_reopens_the_incident_and_cancels_the_failback() {
    // Restored one quiet minute after the outage (~180 s); fail-back due 60 s later; the
    // relapse at 200 s comes first.
    let scenario = Scenario {
        start_ms: loggen::EXAMPLE_START_MS,
        seconds: 400,
        requests_per_sec: 5,
        outages: vec![
            Outage {
                root: "payment",
                from_s: 60,
                to_s: 120,
            },
            Outage {
                root: "payment",
                from_s: 200,
                to_s: 230,
            },
        ],
        storms: vec![],
        isolated_503s: 0,
        seed: 3,
    };
    let out = run_with_stdin(
        &["replay", "--output", "json"],
        scenario.render().as_bytes(),
    );
    let records = json_lines(&out);
    let steps: Vec<String> = records.iter().map(step).collect();
    let relapse = steps
        .iter()
        .position(|s| s == "RESTORED->CONFIRMED")
        .expect("reopened");
    assert_eq!(
        &steps[relapse..relapse + 4],
        [
            "RESTORED->CONFIRMED",
            "cancel failback",
            "cancel notify-restored",
            "call restart-downstream"
        ],
        "{steps:#?}"
    );
    let incidents: std::collections::BTreeSet<&str> = records
        .iter()
        .filter(|r| r["type"] != "summary")
        .map(|r| r["incident"].as_str().unwrap())
        .collect();
    assert_eq!(incidents.len(), 1, "one incident across the relapse");
    let cancelled = records
        .iter()
        .find(|r| r["type"] == "action_cancelled")
        .unwrap();
    assert_eq!(cancelled["state"], "RESTORED");
    assert!(cancelled["reason"]
        .as_str()
        .unwrap()
        .contains("left RESTORED"));
    assert_eq!(
        steps.iter().filter(|s| *s == "call failback").count(),
        1,
        "only the final fail-back runs"
    );
}

/// `text` in `rules.yaml` of a fresh directory (`name` in the directory's name).
fn write_rules(name: &str, text: &str) -> support::cli::TempFile {
    support::cli::temp_file(&format!("rules-{name}"), "rules.yaml", text)
}

const SLACK_ONLY: &str =
    "receivers:\n  slack: {type: slack, url: \"${LOGHEAL_SLACK_WEBHOOK_URL}\"}\n";

#[test]
fn rules_select_by_mined_template() {
    // Only the failing hop's own message ("connection refused"), not the callers' 503s.
    let rules = write_rules(
        "template",
        &format!(
            "{SLACK_ONLY}rules:\n  - name: refused\n    select: {{template: \"*connection refused*\"}}\n    correlate: {{by: service, window: 30s, min_events: 5}}\n    incident: {{group_by: [root_service]}}\n    actions: {{confirmed: [{{name: page, receiver: slack}}]}}\n"
        ),
    );
    let out = logheal()
        .args(["replay", "--output", "json", "--rules"])
        .arg(&rules)
        .arg(repo("examples/checkout-outage.jsonl"))
        .output()
        .unwrap();
    let records = json_lines(&out);
    let confirmed = transitions_to(&records, "CONFIRMED");
    assert_eq!(confirmed.len(), 1, "{records:#?}");
    assert_eq!(confirmed[0]["key"]["root_service"], "payment");
    let templates = confirmed[0]["templates"].as_array().unwrap();
    assert!(
        templates[0]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{templates:?}"
    );
}

#[test]
fn rules_select_new_templates_after_the_warmup() {
    // Twenty minutes of traffic; the inventory outage at 12 min brings error messages
    // never seen before; the 10-minute warm-up hides the templates learned at the start.
    let scenario = Scenario {
        start_ms: loggen::EXAMPLE_START_MS,
        seconds: 1200,
        requests_per_sec: 3,
        outages: vec![Outage {
            root: "inventory",
            from_s: 720,
            to_s: 780,
        }],
        storms: vec![],
        isolated_503s: 0,
        seed: 9,
    };
    let rules = write_rules(
        "anomaly",
        &format!(
            "{SLACK_ONLY}rules:\n  - name: new-errors\n    select: {{anomaly: [new_template], level: [error]}}\n    correlate: {{by: service, window: 1m, min_events: 1}}\n    incident: {{group_by: [root_service]}}\n    actions: {{confirmed: [{{name: tell, receiver: slack}}]}}\n"
        ),
    );
    let out = run_with_stdin(
        &[
            "replay",
            "--output",
            "json",
            "--rules",
            rules.to_str().unwrap(),
        ],
        scenario.render().as_bytes(),
    );
    let records = json_lines(&out);
    let confirmed = transitions_to(&records, "CONFIRMED");
    let roots: std::collections::BTreeSet<&str> = confirmed
        .iter()
        .map(|r| r["key"]["root_service"].as_str().unwrap())
        .collect();
    assert_eq!(
        roots,
        ["catalog", "gateway", "inventory"].into_iter().collect(),
        "each service on the failing path logged a new error template: {confirmed:#?}"
    );
    for r in &confirmed {
        assert!(r["at"].as_str().unwrap() >= "2026-03-14T10:12:00", "{r}");
    }
}

#[test]
fn check_warns_and_speaks_json_for_ci() {
    let rules = write_rules(
        "lint",
        "receivers:\n  hook: {type: webhook, url: \"${LOGHEAL_HOOK}\"}\n  spare: {type: slack, url: \"${LOGHEAL_SLACK}\"}\nrules:\n  - name: r\n    select: {status: [503]}\n    correlate: {window: 5s, min_events: 3, min_services: 2}\n    actions: {confirmed: [{name: a, receiver: hook}]}\n",
    );
    let text = logheal().arg("check").arg(&rules).output().unwrap();
    assert!(text.status.success(), "warnings do not fail the check");
    let stdout = String::from_utf8(text.stdout).unwrap();
    let file = rules.display().to_string();
    assert!(
        stdout.contains(&format!(
            "{file}:3:3: warning: receiver \"spare\" is never used"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "{file}:5:11: warning: window 5s is shorter than the allowed lateness 10s"
        )),
        "{stdout}"
    );
    let json = logheal()
        .args(["check", "--format", "json"])
        .arg(&rules)
        .output()
        .unwrap();
    let lines: Vec<Value> = String::from_utf8(json.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["severity"], "warning");
    assert_eq!(lines[0]["line"], 3);
    assert_eq!(lines[0]["file"], file);
    let relaxed = logheal()
        .args(["check", "--lateness", "1s", "--format", "json"])
        .arg(&rules)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(relaxed.stdout).unwrap().lines().count(),
        1,
        "the window warning follows --lateness"
    );
}

#[test]
fn check_allows_the_references_the_job_config_allows_and_nothing_else() {
    let rules = write_rules(
        "secrets",
        "receivers:\n  hook: {type: webhook, url: \"${ACME_HOOK_URL}\", headers: {X-Key: \"file:/etc/acme/secrets/key\"}}\nrules:\n  - name: r\n    select: {status: [503]}\n    correlate: {window: 30s, min_events: 3, min_services: 2}\n    actions:\n      confirmed: [{name: a, receiver: hook}]\n",
    );
    let dir = rules.parent().unwrap().to_path_buf();
    // By default rule files may read LOGHEAL_* and /run/secrets/logheal/ only.
    let out = logheal().arg("check").arg(&rules).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("${ACME_HOOK_URL}: rule files may read LOGHEAL_* variables only"),
        "{stdout}"
    );
    assert!(
        stdout.contains("may read files under /run/secrets/logheal/ only"),
        "{stdout}"
    );
    // The job config widens it to what it names...
    let config = dir.join("job.yaml");
    let check_with = |job: &str| {
        std::fs::write(&config, job).unwrap();
        let out = logheal()
            .args(["check", "--config"])
            .arg(&config)
            .arg(&rules)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, stdout) =
        check_with("secrets:\n  env_prefixes: [ACME_]\n  dir: /etc/acme/secrets\n");
    assert_eq!(code, Some(0), "{stdout}");
    // ...and never to everything.
    let (code, stdout) = check_with("secrets:\n  env_prefixes: [\"\"]\n");
    assert_eq!(code, Some(1), "{stdout}");
}

/// The two-cascade scenario split by trace id into four files (a topic's partitions).
fn partitioned(dir: &Path, parts: usize) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let text = loggen::two_cascades().render();
    let mut files: Vec<String> = vec![String::new(); parts];
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let key = v["trace_id"].as_str().unwrap_or_default();
        let part = key
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31) + b as usize)
            % parts;
        files[part].push_str(line);
        files[part].push('\n');
    }
    files
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let path = dir.join(format!("part-{i}.jsonl"));
            std::fs::write(&path, body).unwrap();
            path
        })
        .collect()
}

/// What an incident did, without its id (which suspicion opens an incident depends on
/// how the correlators' times interleave).
fn steps_without_ids(records: &[Value]) -> Vec<String> {
    let mut steps: Vec<String> = records
        .iter()
        .filter(|r| {
            r["type"] == "action"
                || r["type"] == "transition" && r["to"] != "SUSPECTED" && r["to"] != "NORMAL"
        })
        .map(|r| {
            format!(
                "{} {} {} {}",
                r["key"]["root_service"]
                    .as_str()
                    .or(r["incident"]
                        .as_str()
                        .map(|i| i.split('-').nth(3).unwrap_or("")))
                    .unwrap_or(""),
                r["type"],
                r["to"].as_str().or(r["action"].as_str()).unwrap_or(""),
                r["rule"]
            )
        })
        .collect();
    steps.sort();
    steps
}

#[test]
fn correlation_on_two_threads_decides_what_one_engine_decides() {
    let tmp = tempfile::tempdir().unwrap();
    let files = partitioned(tmp.path(), 4);
    let run = |threads: &str| {
        let mut cmd = logheal();
        cmd.args(["replay", "--output", "json", "--threads", threads]);
        cmd.args(&files);
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        json_lines(&out)
    };
    let one = run("1");
    let two = run("2");
    let roots = |records: &[Value]| -> Vec<String> {
        transitions_to(records, "CONFIRMED")
            .iter()
            .map(|r| r["key"]["root_service"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(roots(&one), ["payment", "inventory"]);
    assert_eq!(roots(&two), roots(&one));
    assert_eq!(steps_without_ids(&two), steps_without_ids(&one));
    // As one engine reading the whole stream in time order.
    let whole = run_with_stdin(
        &["replay", "--output", "json", "-"],
        loggen::two_cascades().render().as_bytes(),
    );
    assert_eq!(roots(&json_lines(&whole)), roots(&one));
    // Both correlators read: every line is counted once.
    let summary = |records: &[Value]| {
        records
            .iter()
            .find(|r| r["type"] == "summary")
            .unwrap()
            .clone()
    };
    assert_eq!(summary(&two)["lines"], summary(&one)["lines"]);
    assert_eq!(summary(&two)["chains"], summary(&one)["chains"]);
    // And the same records on every run.
    let again = run("2");
    let without_summary = |r: &[Value]| -> Vec<Value> {
        r.iter()
            .filter(|r| r["type"] != "summary")
            .cloned()
            .collect()
    };
    assert_eq!(without_summary(&again), without_summary(&two));
    // Stdin is one stream: it has no partitions to share.
    let out = logheal()
        .args(["replay", "--threads", "2", "-"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
