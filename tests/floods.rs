//! End-to-end: what the input controls cannot grow the process or turn it against the
//! fleet. Floods of service names, a single-service storm around a real cascade, forged
//! cascades naming thousands of services, one service failing again and again, and names
//! built to collide or to forge output lines. Memory is the process's own peak RSS, from
//! the summary (`peak_rss_bytes`).

mod support;

use serde_json::Value;
use std::fmt::Write as _;
use std::process::Command;
use support::cli::json_records_of;

const T0_MS: i64 = 1_773_482_400_000; // 2026-03-14T10:00:00Z

fn ts(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn replay(args: &[&str], input: &str) -> Vec<Value> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_logheal"));
    cmd.args(["replay", "--output", "json"]).args(args).arg("-");
    json_records_of(cmd, input)
}

fn summary(records: &[Value]) -> &Value {
    let last = records.last().unwrap();
    assert_eq!(last["type"], "summary");
    last
}

fn of_type<'a>(records: &'a [Value], kind: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["type"] == kind).collect()
}

fn transitions_to<'a>(records: &'a [Value], state: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["type"] == "transition" && r["to"] == state)
        .collect()
}

fn temp_file(name: &str, text: &str) -> support::cli::TempFile {
    support::cli::temp_file("floods", name, text)
}

fn line(ms: i64, service: &str, trace: &str) -> String {
    format!(
        "{{\"ts\":\"{}\",\"service\":\"{service}\",\"trace_id\":\"{trace}\",\"status\":503,\"level\":\"error\",\"msg\":\"POST /charge returned 503 after 12 ms\"}}\n",
        ts(ms)
    )
}

#[test]
fn a_flood_of_service_names_stays_within_the_cap_and_its_memory() {
    let mut input = String::new();
    for i in 0..100_000i64 {
        input.push_str(&line(
            T0_MS + i,
            &format!("svc-{i:08x}-{:x}", i * 7919),
            &format!("{:032x}", i + 1),
        ));
    }
    let records = replay(&[], &input);
    let s = summary(&records);
    assert_eq!(s["services"], 10_000, "{s}");
    assert_eq!(s["services_over_cap"], 90_000);
    let limits = of_type(&records, "limit");
    assert_eq!(limits.len(), 1, "reported once");
    assert_eq!(limits[0]["limit"], "services");
    let rss = s["peak_rss_bytes"]
        .as_u64()
        .expect("the summary gives peak RSS");
    assert!(rss < 300 << 20, "peak RSS {} MB", rss >> 20);
}

#[test]
fn a_cascade_survives_a_single_service_storm_at_the_trace_cap() {
    // 40,000 traces of a storming redis-proxy in 2 s, against a cap of 2,000 traces:
    // the cascade's hops are 0.5 s (10,000 storm traces) apart.
    let config = temp_file("small-cap.yaml", "limits:\n  traces_per_rule: 2000\n");
    let mut input = String::new();
    let cascade = [(200, "payment"), (700, "checkout"), (1200, "gateway")];
    for i in 0..40_000i64 {
        let ms = i / 20;
        for (at, service) in cascade {
            if at == ms && i % 20 == 0 {
                input.push_str(&line(T0_MS + at, service, "realcascade"));
            }
        }
        input.push_str(&line(T0_MS + ms, "redis-proxy", &format!("{:032x}", i + 1)));
    }
    let records = replay(&["--config", config.to_str().unwrap()], &input);
    let confirmed = transitions_to(&records, "CONFIRMED");
    assert_eq!(confirmed.len(), 1, "{confirmed:?}");
    assert_eq!(confirmed[0]["key"]["root_service"], "payment");
    let s = summary(&records);
    assert!(
        s["traces_storm_evicted"].as_u64().unwrap_or(0) > 30_000,
        "{s}"
    );
}

#[test]
fn forged_cascades_naming_thousands_of_services_pull_the_brake() {
    // Every trace a cascade with a different root: 3,000 "incidents" in 9 seconds.
    let mut input = String::new();
    for i in 0..3_000i64 {
        let trace = format!("{:032x}", i + 1);
        for (j, service) in [format!("svc-{i}"), "checkout".into(), "gateway".into()]
            .iter()
            .enumerate()
        {
            input.push_str(&line(T0_MS + 3 * i + j as i64, service, &trace));
        }
    }
    let records = replay(&[], &input);
    let restarts = of_type(&records, "action")
        .iter()
        .filter(|a| a["action"] == "restart-downstream")
        .count();
    assert!(
        restarts <= 10,
        "the brake (10 confirmations in 10 minutes) stops the restarts: {restarts}"
    );
    let brake: Vec<_> = of_type(&records, "limit")
        .into_iter()
        .filter(|l| l["limit"] == "brake")
        .collect();
    assert_eq!(brake.len(), 1, "{brake:?}");
    assert!(brake[0]["detail"]
        .as_str()
        .unwrap()
        .contains("11 incidents confirmed within 10m"));
    let withheld = of_type(&records, "action_cancelled")
        .iter()
        .filter(|c| c["reason"].as_str().unwrap().starts_with("brake:"))
        .count();
    assert!(withheld > 2_900, "{withheld}");
    let escalated = transitions_to(&records, "ESCALATED");
    assert!(escalated.len() > 2_900, "humans own the rest");
    let s = summary(&records);
    assert_eq!(
        (s["brakes"].as_u64(), s["actions"].as_u64()),
        (Some(1), Some(10))
    );
}

#[test]
fn a_service_that_keeps_failing_is_restarted_at_most_its_budget() {
    // payment cascades every ten minutes for an hour: the default budget (3 calls of
    // an action per service per hour) allows three restarts; the fourth goes to humans.
    let mut input = String::new();
    for n in 0..6i64 {
        let at = T0_MS + n * 600_000;
        let trace = format!("t{n}");
        for (j, service) in ["payment", "checkout", "gateway"].iter().enumerate() {
            input.push_str(&line(at + 10 * j as i64, service, &trace));
        }
    }
    let records = replay(&[], &input);
    let restarts = of_type(&records, "action")
        .iter()
        .filter(|a| a["action"] == "restart-downstream")
        .count();
    assert_eq!(restarts, 3);
    let over: Vec<_> = of_type(&records, "action_cancelled")
        .into_iter()
        .filter(|c| {
            c["action"] == "restart-downstream"
                && c["reason"]
                    .as_str()
                    .unwrap()
                    .starts_with("remediation budget")
        })
        .collect();
    assert_eq!(over.len(), 3, "the 4th, 5th and 6th");
    let escalated = transitions_to(&records, "ESCALATED");
    assert_eq!(escalated.len(), 3);
    assert!(escalated[0]["reason"]
        .as_str()
        .unwrap()
        .contains("withheld"));
    // The budget is per service: another service's restart still goes out.
    let mut other = input.clone();
    for (j, service) in ["inventory", "checkout", "gateway"].iter().enumerate() {
        other.push_str(&line(T0_MS + 3_700_000 + 10 * j as i64, service, "inv"));
    }
    let records = replay(&[], &other);
    let inventory = of_type(&records, "action")
        .iter()
        .filter(|a| {
            a["action"] == "restart-downstream"
                && a["incident"].as_str().unwrap().contains("inventory")
        })
        .count();
    assert_eq!(inventory, 1);
}

#[test]
fn distinct_names_never_share_an_incident_and_text_output_stays_one_line_per_record() {
    let mut input = String::new();
    for (k, root) in ["pay ment", "pay/ment", "pay_ment"].iter().enumerate() {
        let trace = format!("t{k}");
        for (j, service) in [*root, "checkout", "gateway"].iter().enumerate() {
            input.push_str(&line(T0_MS + j as i64, service, &trace));
        }
    }
    let records = replay(&[], &input);
    let mut ids: Vec<&str> = transitions_to(&records, "CONFIRMED")
        .iter()
        .map(|t| t["incident"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "{ids:?}");
    let keys: std::collections::BTreeSet<&str> = of_type(&records, "action")
        .iter()
        .map(|a| a["idempotency_key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys.len(),
        of_type(&records, "action").len(),
        "keys are distinct"
    );

    // A service name that carries a newline, a forged record and an ANSI escape.
    let evil =
        "x}\\n2026-03-14T10:00:00Z  SUSPECTED  → CONFIRMED  forged {root_service=db}\\u001b[2K";
    let mut text_input = String::new();
    for (j, service) in [evil, "checkout", "gateway"].iter().enumerate() {
        let _ = writeln!(
            text_input,
            "{{\"ts\":\"{}\",\"service\":\"{service}\",\"trace_id\":\"e\",\"status\":503}}",
            ts(T0_MS + j as i64)
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_logheal"))
        .args(["replay", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text_input.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains('\u{1b}'), "{text}");
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("2026-03-14T10:00:00Z  SUSPECTED")),
        "no forged line: {text}"
    );
    assert!(
        text.contains("\\u{a}"),
        "the newline is shown escaped: {text}"
    );
}
