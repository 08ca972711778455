//! End-to-end: `logheal replay --execute` calls real HTTP receivers on 127.0.0.1 (an
//! axum server in the test that records requests and answers as each test scripts it).

#[path = "support/receiver.rs"]
mod receiver;

use hmac::{Hmac, Mac};
use receiver::{Received, Reply, Server, SECRET};
use serde_json::Value;
use sha2::Sha256;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/checkout-outage.jsonl")
}

/// `logheal replay --execute --output json` with the built-in receivers pointed at `server`.
fn replay(server: &Server, extra: &[&str]) -> (Vec<Value>, Output) {
    let mut cmd = receiver::logheal();
    receiver::point_receivers(&mut cmd, &server.base);
    cmd.env("LOGHEAL_HEALTH_URL", format!("{}/health", server.base));
    let out = cmd
        .args(["replay", "--execute", "--output", "json"])
        .args(extra)
        .arg(example())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (json_lines(&out.stdout), out)
}

/// The reference rule's story on the bundled example when every call succeeds.
const REFERENCE_STORY: [&str; 4] = [
    "NORMAL->SUSPECTED",
    "SUSPECTED->CONFIRMED",
    "CONFIRMED->RECOVERING",
    "RECOVERING->RESTORED",
];

/// One JSON record per line of `stdout`.
fn json_lines(stdout: &[u8]) -> Vec<Value> {
    std::str::from_utf8(stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The built-in rule with `from` replaced by `to`, in a temporary file named for `name`.
fn builtin_rule_with(name: &str, from: &str, to: &str) -> tempfile::TempPath {
    let builtin = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/examples/cross-service-503.yaml"),
    )
    .unwrap();
    let edited = builtin.replacen(from, to, 1);
    assert_ne!(edited, builtin, "{from:?} is in the built-in rule");
    let file = tempfile::Builder::new()
        .prefix(&format!("logheal-{name}-"))
        .suffix(".yaml")
        .tempfile()
        .unwrap();
    std::fs::write(file.path(), edited).unwrap();
    file.into_temp_path()
}

/// The confirmed incident escalated, and Slack was told.
fn assert_escalated_and_told(records: &[Value], server: &Server) {
    let story = transitions(records);
    assert!(
        story.contains(&"CONFIRMED->ESCALATED".to_string()),
        "{story:?}"
    );
    let slack = server.requests_to("/slack");
    assert!(!slack.is_empty(), "humans are told");
    assert!(slack[0].body.contains("ESCALATED"));
}

fn of_type<'a>(records: &'a [Value], kind: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["type"] == kind).collect()
}

/// The transitions of the incident that was confirmed.
fn transitions(records: &[Value]) -> Vec<String> {
    let all = of_type(records, "transition");
    let confirmed = all
        .iter()
        .find(|r| r["to"] == "CONFIRMED")
        .expect("an incident was confirmed");
    all.iter()
        .filter(|r| r["incident"] == confirmed["incident"])
        .map(|r| {
            format!(
                "{}->{}",
                r["from"].as_str().unwrap(),
                r["to"].as_str().unwrap()
            )
        })
        .collect()
}

fn signature_ok(r: &Received) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(r.body.as_bytes());
    let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    r.headers
        .get("x-logheal-signature")
        .and_then(|v| v.to_str().ok())
        == Some(want.as_str())
}

#[test]
fn the_reference_story_against_real_receivers() {
    let server = Server::start(&[]);
    let (records, _) = replay(&server, &[]);
    let got: Vec<Received> = server
        .requests()
        .into_iter()
        .filter(|r| r.path != "/health")
        .collect();
    let paths: Vec<&str> = got.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths[0], "/restart", "{paths:?}");
    let mut recovering = paths[1..3].to_vec();
    recovering.sort();
    assert_eq!(recovering, ["/failover", "/slack"]);
    let mut restored = paths[3..5].to_vec();
    restored.sort();
    assert_eq!(restored, ["/failback", "/slack"]);
    assert_eq!(
        paths.len(),
        5,
        "exactly the reference rule's calls: {paths:?}"
    );
    assert_eq!(transitions(&records), REFERENCE_STORY);
    for r in &got {
        let signed = r.path != "/slack";
        assert_eq!(
            signature_ok(r),
            signed,
            "webhooks are signed, Slack is not: {}",
            r.path
        );
        let key = r.headers.get("idempotency-key").unwrap().to_str().unwrap();
        assert!(
            of_type(&records, "action")
                .iter()
                .any(|a| a["idempotency_key"] == key),
            "the idempotency key {key} is the one reported"
        );
    }
    let restart: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(restart["state"], "CONFIRMED");
    assert_eq!(restart["previous_state"], "SUSPECTED");
    assert_eq!(restart["root_cause"], "payment");
    assert_eq!(restart["services"][0], "payment");
    assert_eq!(restart["dry_run"], false);
    assert!(restart["top_templates"][0].as_str().is_some());
    let slack: Vec<Value> = got
        .iter()
        .filter(|r| r.path == "/slack")
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    assert!(slack[0]["text"].as_str().unwrap().contains("RECOVERING"));
    assert!(slack[1]["text"].as_str().unwrap().contains("RESOLVED"));
    assert_eq!(slack[0]["blocks"][0]["type"], "header");
    // Event time stands still while a call is in flight: the story keeps its shape.
    let at = |r: &Value| chrono::DateTime::parse_from_rfc3339(r["at"].as_str().unwrap()).unwrap();
    let actions = of_type(&records, "action");
    let recovering = of_type(&records, "transition")
        .into_iter()
        .find(|r| r["to"] == "RECOVERING")
        .unwrap();
    assert_eq!(
        at(recovering),
        at(actions[0]),
        "RECOVERING as soon as the restart succeeded"
    );
    assert_eq!(
        (at(actions[1]) - at(recovering)).num_seconds(),
        5,
        "fail-over 5 s later"
    );
    let results = of_type(&records, "action_result");
    assert_eq!(results.len(), 5);
    assert!(results.iter().all(|r| r["outcome"] == "succeeded"));
    assert_eq!(
        of_type(&records, "attempt").len(),
        5,
        "an audit line per attempt"
    );
}

#[test]
fn retries_keep_the_idempotency_key_and_recover() {
    let server = Server::start(&[("/restart", vec![Reply::Status(500), Reply::Status(502)])]);
    let (records, _) = replay(&server, &[]);
    let restarts: Vec<Received> = server.requests_to("/restart");
    assert_eq!(restarts.len(), 3, "two failures, then success");
    let keys: Vec<_> = restarts
        .iter()
        .map(|r| r.headers["idempotency-key"].clone())
        .collect();
    assert!(
        keys.iter().all(|k| *k == keys[0]),
        "the same key on every retry"
    );
    let result = of_type(&records, "action_result")[0];
    assert_eq!(result["outcome"], "succeeded");
    assert_eq!(result["attempts"], 3);
    assert!(transitions(&records).contains(&"CONFIRMED->RECOVERING".to_string()));
}

#[test]
fn a_rejected_call_is_final_and_escalates() {
    let server = Server::start(&[("/restart", vec![Reply::Status(403)])]);
    let (records, _) = replay(&server, &[]);
    let restarts = server.requests_to("/restart").len();
    assert_eq!(restarts, 1, "a 403 is not retried");
    assert_eq!(of_type(&records, "action_result")[0]["outcome"], "rejected");
    assert_escalated_and_told(&records, &server);
}

#[test]
fn a_redirect_is_not_followed_and_is_final() {
    let server = Server::start(&[("/restart", vec![Reply::RedirectTo("/elsewhere")])]);
    let (records, _) = replay(&server, &[]);
    assert_eq!(server.requests_to("/restart").len(), 1, "not retried");
    assert!(
        server.requests_to("/elsewhere").is_empty(),
        "the body and the signature go nowhere else"
    );
    let result = &of_type(&records, "action_result")[0];
    assert_eq!(result["outcome"], "rejected");
    assert_eq!(result["detail"], "(HTTP 307)");
    assert_escalated_and_told(&records, &server);
}

#[test]
fn a_failed_notification_is_reported_and_changes_no_incident() {
    // Slack answers 400 to every message: the failover still counts, the incident
    // restores, and nothing escalates.
    let server = Server::start(&[("/slack", vec![Reply::Status(400); 10])]);
    let (records, out) = replay(&server, &[]);
    let results = of_type(&records, "action_result");
    assert!(results
        .iter()
        .any(|r| r["action"] == "notify-recovering" && r["outcome"] == "rejected"));
    assert_eq!(transitions(&records), REFERENCE_STORY);
    let summary = records.last().unwrap();
    assert_eq!(
        summary["notifications_failed"],
        2,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_slow_slack_gets_each_message_once() {
    // Slack takes 1 s, the receiver waits 300 ms: a message that timed out may have been
    // posted, so it is not sent again.
    let rules = builtin_rule_with(
        "slow-slack",
        "url: ${LOGHEAL_SLACK_WEBHOOK_URL}",
        "url: ${LOGHEAL_SLACK_WEBHOOK_URL}\n    timeout: 300ms\n    retries: 3",
    );
    let server = Server::start(&[("/slack", vec![Reply::Hang(Duration::from_secs(1)); 10])]);
    let (records, _) = replay(&server, &["--rules", rules.to_str().unwrap()]);
    let slack = server.requests_to("/slack");
    let mut keys: Vec<String> = slack
        .iter()
        .map(|r| r.headers["idempotency-key"].to_str().unwrap().to_string())
        .collect();
    let sent = keys.len();
    keys.dedup();
    assert_eq!((sent, keys.len()), (2, 2), "each message once: {keys:?}");
    assert!(transitions(&records).contains(&"RECOVERING->RESTORED".to_string()));
}

#[test]
fn retry_after_is_honoured() {
    let server = Server::start(&[("/slack", vec![Reply::RetryAfter(1)])]);
    let (records, _) = replay(&server, &[]);
    let slack: Vec<Received> = server.requests_to("/slack");
    let first = &slack[0];
    let retry = slack[1..]
        .iter()
        .find(|r| r.headers["idempotency-key"] == first.headers["idempotency-key"])
        .expect("the throttled call is retried with its key");
    let waited = retry.at - first.at;
    assert!(
        waited >= Duration::from_millis(950),
        "waited {waited:?} after Retry-After: 1"
    );
    let results = of_type(&records, "action_result");
    assert!(results.iter().all(|r| r["outcome"] == "succeeded"));
}

#[test]
fn a_hanging_receiver_gives_up_escalates_and_blocks_no_one() {
    // Restart never answers within the timeout; the rule gives it 300 ms and one retry.
    let rules = builtin_rule_with(
        "hang",
        "url: ${LOGHEAL_RESTART_URL}\n    timeout: 5s\n    retries: 3",
        "url: ${LOGHEAL_RESTART_URL}\n    timeout: 300ms\n    retries: 1",
    );
    let hang = Reply::Hang(Duration::from_secs(5));
    let server = Server::start(&[("/restart", vec![hang.clone(), hang])]);
    let started = Instant::now();
    let (records, _) = replay(&server, &["--rules", rules.to_str().unwrap()]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "timeouts bound the wait"
    );
    let result = of_type(&records, "action_result")
        .into_iter()
        .find(|r| r["action"] == "restart-downstream")
        .unwrap();
    assert_eq!(result["outcome"], "gave_up");
    assert_eq!(result["attempts"], 2);
    assert_escalated_and_told(&records, &server);
}

#[test]
fn unset_variables_report_not_configured() {
    let out = receiver::logheal()
        .args(["replay", "--execute", "--output", "json"])
        .arg(example())
        .output()
        .unwrap();
    assert!(out.status.success());
    let records = json_lines(&out.stdout);
    let results = of_type(&records, "action_result");
    assert!(!results.is_empty());
    assert!(results.iter().all(|r| r["outcome"] == "not_configured"));
    assert!(results[0]["detail"]
        .as_str()
        .unwrap()
        .contains("LOGHEAL_RESTART_URL is not set"));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("http://"),
        "no URL leaks"
    );
}

#[test]
fn a_slow_receiver_does_not_hold_up_another() {
    // Fail-over and the Slack notice fall due together; fail-over takes 2 s to answer.
    let server = Server::start(&[("/failover", vec![Reply::Hang(Duration::from_secs(2))])]);
    let (records, _) = replay(&server, &[]);
    let got = server.requests();
    let failover = got.iter().find(|r| r.path == "/failover").unwrap();
    let slack = got.iter().find(|r| r.path == "/slack").unwrap();
    let gap = slack.at.max(failover.at) - slack.at.min(failover.at);
    assert!(
        gap < Duration::from_millis(500),
        "both called together, {gap:?} apart"
    );
    let results = of_type(&records, "action_result");
    assert!(
        results.iter().all(|r| r["outcome"] == "succeeded"),
        "a slow answer within the timeout is fine"
    );
}

#[test]
fn the_health_probe_gates_restoring() {
    // The rule asks for both a quiet minute and the probe; the service's health check
    // fails for its first 40 probes (200 s of event time), well past the quiet minute.
    let rules = builtin_rule_with(
        "probe",
        "        passes: 3",
        "        passes: 3\n      restore_when: quiet_and_probe",
    );
    let server = Server::start(&[("/health", vec![Reply::Status(503); 40])]);
    let (records, _) = replay(&server, &["--rules", rules.to_str().unwrap()]);
    let probes = server.requests_to("/health").len();
    assert_eq!(probes, 43, "40 failures, then three passes in a row");
    let restored = of_type(&records, "transition")
        .into_iter()
        .find(|r| r["to"] == "RESTORED" && r["from"] == "RECOVERING")
        .expect("restored once the probe passed");
    assert!(
        restored["reason"]
            .as_str()
            .unwrap()
            .contains("health probe passed"),
        "{restored}"
    );
    assert!(
        restored["at"].as_str().unwrap() > "2026-03-14T10:06:00",
        "after the quiet minute: {restored}"
    );
    let results = of_type(&records, "probe");
    assert_eq!(results.len(), 43);
    assert_eq!(results.last().unwrap()["consecutive"], 3);
}
