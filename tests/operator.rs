//! End-to-end: the operator's view of a live job — the JSON API and the `incidents`
//! command show the bundled example's incident with its actions and their attempts
//! (called at a real receiver on 127.0.0.1), silences made with the `silence` command
//! stop the calls and need the token, the recovery SLIs reach `/metrics`, and the
//! Grafana dashboard and alerting rules in `deploy/` name only metrics the job exports.

#[path = "support/job.rs"]
mod job;
#[path = "support/receiver.rs"]
mod receiver;

use job::{Job, TOKEN};
use receiver::{logheal, point_receivers, Server};
use serde_json::Value;
use std::collections::BTreeSet;

const EXAMPLE: &str = include_str!("../examples/checkout-outage.jsonl");
const PAYMENT: &str = "cross-service-503-payment-20260314T100302.003Z";

/// A live job calling the receivers at `server`.
fn job(server: &Server) -> Job {
    let mut cmd = logheal();
    point_receivers(&mut cmd, &server.base);
    cmd.arg("run");
    Job::start(cmd)
}

fn cli(job: &Job, args: &[&str]) -> (bool, String, String) {
    let out = logheal()
        .args(args)
        .args(["--url", &job.url("")])
        .env("LOGHEAL_API_TOKEN", TOKEN)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn incident<'a>(incidents: &'a [Value], id: &str) -> Option<&'a Value> {
    incidents.iter().find(|i| i["id"] == id)
}

fn action_outcome(incident: &Value, action: &str) -> Option<String> {
    incident["actions"]
        .as_array()?
        .iter()
        .find(|a| a["action"] == action)?["outcome"]
        .as_str()
        .map(str::to_string)
}

/// The value of one sample of `/metrics` (name with labels, as printed).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// `/metrics` once `series` reached `at_least` (counters are taken in every tick, the
/// incident book at once: wait for the tick).
fn metrics_once(job: &Job, series: &str, at_least: f64) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let metrics = job.http("GET", "/metrics", None, "").1;
        if sample(&metrics, series).is_some_and(|v| v >= at_least) {
            return metrics;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{series} below {at_least}: {metrics}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn the_api_and_the_cli_show_the_example_incident_with_its_actions() {
    let server = Server::start(&[]);
    let mut job = job(&server);
    // The payment outage begins at 10:03:02.
    job.write_until(
        EXAMPLE,
        "2026-03-14T10:03:10",
        "the payment incident's restart to succeed",
        |j| {
            incident(&j.incidents(), PAYMENT)
                .and_then(|i| action_outcome(i, "restart-downstream"))
                .as_deref()
                == Some("succeeded")
        },
    );
    let incidents = job.incidents();
    let payment = incident(&incidents, PAYMENT).unwrap();
    assert_eq!(payment["key"]["root_service"], "payment");
    assert_eq!(payment["root_candidates"][0]["service"], "payment");
    let steps: Vec<&str> = payment["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["to"].as_str().unwrap())
        .collect();
    assert_eq!(&steps[..3], ["SUSPECTED", "CONFIRMED", "RECOVERING"]);
    let restart = payment["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "restart-downstream")
        .unwrap();
    assert_eq!(restart["attempts"][0]["status"], 200);
    assert!(!payment["sample_trace_ids"].as_array().unwrap().is_empty());
    // The isolated 503s opened suspicions that closed: they are in the history.
    assert!(incidents
        .iter()
        .any(|i| i["open"] == false && i["state"] == "NORMAL"));
    assert_eq!(server.requests_to("/restart").len(), 1);

    // The CLI lists the running job's incidents, as text and as JSON, and shows one.
    let (ok, text, err) = cli(&job, &["incidents"]);
    assert!(ok, "{err}");
    assert!(
        text.contains(PAYMENT) && text.contains("payment(") && text.contains("closed"),
        "{text}"
    );
    let (ok, json, err) = cli(&job, &["incidents", "--output", "json"]);
    assert!(ok, "{err}");
    let listed: Value = serde_json::from_str(&json).unwrap();
    assert!(incident(listed["incidents"].as_array().unwrap(), PAYMENT).is_some());
    let (ok, shown, err) = cli(&job, &["incidents", "show", PAYMENT]);
    assert!(ok, "{err}");
    assert!(shown.contains("SUSPECTED → CONFIRMED"), "{shown}");
    assert!(
        shown.contains("restart-downstream → restart (CONFIRMED): succeeded"),
        "{shown}"
    );
    assert!(
        shown.contains("attempt 1 at ") && shown.contains(": 200 in "),
        "{shown}"
    );
    let (ok, _, err) = cli(&job, &["incidents", "show", "no-such-incident"]);
    assert!(!ok && err.contains("404"), "{err}");

    // The recovery SLIs, per rule.
    job.wait_until("the payment incident to be restored", |j| {
        incident(&j.incidents(), PAYMENT).is_some_and(|i| {
            i["timeline"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["to"] == "RESTORED")
        })
    });
    // Once the tick after the last line has taken the counters in (the book shows a
    // step as soon as it is printed, which may be before the end of the batch).
    let metrics = metrics_once(&job, "logheal_lines_total", EXAMPLE.lines().count() as f64);
    let rule = "{rule=\"cross-service-503\"}";
    assert_eq!(
        sample(
            &metrics,
            &format!("logheal_time_to_detect_seconds_count{rule}")
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            &format!("logheal_time_to_act_seconds_count{rule}")
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            &format!("logheal_time_to_restore_seconds_count{rule}")
        ),
        Some(1.0),
        "{metrics}"
    );
    // Event time from the first 503 (10:03:02.003) to the confirmation (.008): 5 ms.
    let detect = sample(
        &metrics,
        &format!("logheal_time_to_detect_seconds_sum{rule}"),
    )
    .unwrap();
    assert!((detect - 0.005).abs() < 1e-9, "{detect}");
    let succeeded = sample(
        &metrics,
        "logheal_rule_actions_total{rule=\"cross-service-503\",outcome=\"succeeded\"}",
    );
    assert!(succeeded.unwrap_or(0.0) >= 3.0, "{metrics}");
    assert!(sample(&metrics, "logheal_decision_seconds_count").unwrap_or(0.0) >= 1.0);
    assert!(
        sample(
            &metrics,
            "logheal_rule_selected_events_total{rule=\"cross-service-503\"}"
        )
        .unwrap_or(0.0)
            > 100.0,
        "{metrics}"
    );
    assert!(job.finish().success());
}

#[test]
fn a_silence_made_with_the_cli_stops_the_calls_and_writes_need_the_token() {
    let server = Server::start(&[]);
    let mut job = job(&server);
    let body = r#"{"matchers":["root_service=payment"],"duration":"1h"}"#;
    assert_eq!(job.http("POST", "/api/v1/silences", None, body).0, 401);
    assert_eq!(
        job.http("POST", "/api/v1/silences", Some("wrong"), body).0,
        401
    );
    let (status, answer) = job.http(
        "POST",
        "/api/v1/silences",
        Some(TOKEN),
        r#"{"matchers":[],"duration":"1h"}"#,
    );
    assert_eq!(status, 400, "{answer}");

    let (ok, id, err) = cli(
        &job,
        &[
            "silence",
            "add",
            "--match",
            "rule=cross-service-503",
            "--match",
            "root_service=payment",
            "--for",
            "2h",
            "--comment",
            "db migration",
        ],
    );
    assert!(ok, "{err}");
    let id = id.trim().to_string();
    assert_eq!(
        job.http("DELETE", &format!("/api/v1/silences/{id}"), None, "")
            .0,
        401
    );
    let (ok, list, _) = cli(&job, &["silence", "list"]);
    assert!(
        ok && list.contains(&id) && list.contains("active") && list.contains("db migration"),
        "{list}"
    );

    job.cascade("t-pay", "payment");
    job.wait_until("the silenced restart", |j| {
        j.records().iter().any(|r| {
            r["type"] == "action_result"
                && r["outcome"] == "silenced"
                && r["action"] == "restart-downstream"
        })
    });
    let incidents = job.incidents();
    let paid = incidents
        .iter()
        .find(|i| i["key"]["root_service"] == "payment")
        .unwrap();
    assert_eq!(paid["silenced_by"], id.as_str());
    assert_eq!(
        paid["state"], "RECOVERING",
        "a silenced incident still moves on"
    );
    assert_eq!(
        action_outcome(paid, "restart-downstream").as_deref(),
        Some("silenced")
    );

    // Another service is not covered: its restart is called.
    job.cascade("t-inv", "inventory");
    job.wait_until("inventory's restart", |_| {
        !server.requests_to("/restart").is_empty()
    });
    let restarts = server.requests_to("/restart");
    assert_eq!(restarts.len(), 1);
    assert!(
        restarts[0].body.contains("\"root_cause\":\"inventory\""),
        "{}",
        restarts[0].body
    );

    // Nothing was called for payment while the silence stood.
    assert!(server
        .requests()
        .iter()
        .all(|r| !r.body.contains("\"root_cause\":\"payment\"")));
    let (ok, expired, err) = cli(&job, &["silence", "expire", &id]);
    assert!(ok && expired.contains(&id), "{err}");
    let (ok, list, _) = cli(&job, &["silence", "list", "--output", "json"]);
    let listed: Value = serde_json::from_str(&list).unwrap();
    assert!(ok && listed["silences"][0]["status"] == "expired", "{list}");
    let (ok, _, err) = cli(&job, &["silence", "expire", "no-such-silence"]);
    assert!(!ok && err.contains("404"), "{err}");
    let (ok, _, err) = cli(
        &job,
        &["silence", "add", "--match", "root_service", "--for", "1h"],
    );
    assert!(!ok && err.contains("NAME=VALUE"), "{err}");
    metrics_once(&job, "logheal_actions_silenced_total", 1.0);
    assert!(job.finish().success());
}

/// Metric names in PromQL text: `logheal_...` identifiers.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("logheal_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        names.insert(expr[start..end].to_string());
        i = end;
    }
    names
}

/// The metric families `/metrics` declares, with the sample names each gives.
fn exported(metrics: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        names.insert(name.to_string());
        let suffixes: &[&str] = match kind {
            "counter" => &["_total", "_created"],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            _ => &[],
        };
        for s in suffixes {
            names.insert(format!("{name}{s}"));
        }
    }
    names
}

#[test]
fn the_dashboard_and_the_alerts_name_only_exported_metrics() {
    let mut cmd = logheal();
    cmd.args(["run", "--dry-run"]);
    let mut job = Job::start(cmd);
    job.write(EXAMPLE);
    job.wait_until("the example's incidents", |j| {
        incident(&j.incidents(), PAYMENT).is_some()
    });
    let exported = exported(&job.http("GET", "/metrics", None, "").1);
    assert!(
        exported.contains("logheal_time_to_detect_seconds_bucket"),
        "{exported:?}"
    );

    let root = env!("CARGO_MANIFEST_DIR");
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/deploy/grafana/logheal-dashboard.json")).unwrap(),
    )
    .unwrap();
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 36);
    assert!(dashboard["title"].is_string() && dashboard["uid"].is_string());
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 8);
    let mut queried = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap();
        assert!(panel["type"].is_string(), "{title}");
        for k in ["x", "y", "w", "h"] {
            assert!(panel["gridPos"][k].is_u64(), "{title}: gridPos.{k}");
        }
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("{title}: no targets"));
        assert!(!targets.is_empty(), "{title}");
        for t in targets {
            assert!(t["refId"].is_string(), "{title}");
            let expr = t["expr"].as_str().unwrap();
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{title}: {expr}");
            for name in names {
                assert!(exported.contains(&name), "{title}: {name} is not exported");
                queried.insert(name);
            }
        }
    }
    for sli in [
        "logheal_time_to_detect_seconds_bucket",
        "logheal_time_to_act_seconds_bucket",
        "logheal_time_to_restore_seconds_bucket",
        "logheal_escalations_total",
        "logheal_rule_actions_total",
        "logheal_incidents_closed_total",
        "logheal_decision_seconds_bucket",
    ] {
        assert!(queried.contains(sli), "the dashboard shows no {sli}");
    }

    let alerts =
        std::fs::read_to_string(format!("{root}/deploy/prometheus/logheal-alerts.yaml")).unwrap();
    let exprs: Vec<&str> = alerts
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .collect();
    let alert_names: Vec<&str> = alerts
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(str::trim)
        .collect();
    assert_eq!(exprs.len(), alert_names.len());
    for want in [
        "LoghealConsumerLagGrowing",
        "LoghealReceiverCircuitOpen",
        "LoghealRuleReloadFailing",
        "LoghealRuleSelectsNothing",
    ] {
        assert!(alert_names.contains(&want), "no alert {want}");
    }
    for expr in exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{expr}");
        for name in names {
            assert!(
                exported.contains(&name),
                "alert expr names {name}, which is not exported"
            );
        }
    }
    assert!(job.finish().success());
}
