//! End-to-end: the two-cascade scenario that `replay` solves in flat JSON, re-rendered as
//! shippers put it on Kafka (our own renderings of the formats in `REAL-LOGS.md`), replayed
//! with the built-in rules and no configuration: every shape finds exactly the two
//! injected cascades.

#[path = "support/receiver.rs"]
mod receiver;
mod support;

use serde_json::{json, Value};
use support::loggen;

/// The scenario's records as values.
fn scenario() -> Vec<Value> {
    loggen::two_cascades()
        .render()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_default()
}

fn pod(service: &str) -> String {
    format!("{service}-6d8f9c7b5d-qx2lp")
}

/// `logheal replay` of `input` with the built-in rules: the root services confirmed, one
/// entry per confirmation.
fn confirmed(input: &str) -> Vec<String> {
    let mut cmd = receiver::logheal();
    cmd.args(["replay", "--output", "json", "-"]);
    let mut roots: Vec<String> = support::cli::json_records_of(cmd, input)
        .into_iter()
        .filter(|r| r["type"] == "transition" && r["to"] == "CONFIRMED")
        .map(|r| r["key"]["root_service"].as_str().unwrap().to_string())
        .collect();
    roots.sort();
    roots
}

fn lines(values: impl Iterator<Item = Value>) -> String {
    values.map(|v| v.to_string() + "\n").collect()
}

const EXPECTED: [&str; 2] = ["inventory", "payment"];

#[test]
fn flat_json_is_the_baseline() {
    assert_eq!(confirmed(&lines(scenario().into_iter())), EXPECTED);
}

#[test]
fn fluent_bit_with_logfmt_lines() {
    let input = lines(scenario().into_iter().map(|r| {
        let log = format!(
            "ts={} level={} msg=\"{}\" status={} trace_id={}",
            s(&r, "ts"),
            s(&r, "level"),
            s(&r, "msg"),
            r["status"],
            s(&r, "trace_id")
        );
        json!({"@timestamp": 0.0, "time": r["ts"], "stream": "stdout", "log": log,
               "kubernetes": {"pod_name": pod(s(&r, "service")), "namespace_name": "shop",
                              "labels": {"app.kubernetes.io/name": r["service"]},
                              "container_name": "app"}})
    }));
    assert_eq!(confirmed(&input), EXPECTED);
}

#[test]
fn vector_with_the_app_json_as_a_string() {
    let input = lines(scenario().into_iter().map(|mut r| {
        let service = r["service"].take();
        let app = r.as_object_mut().unwrap();
        app.remove("service");
        json!({"message": Value::Object(app.clone()).to_string(), "timestamp": r["ts"],
               "source_type": "kubernetes_logs", "stream": "stdout",
               "kubernetes": {"pod_labels": {"app": service}, "container_name": "app",
                              "pod_name": pod(service.as_str().unwrap())}})
    }));
    assert_eq!(confirmed(&input), EXPECTED);
}

#[test]
fn filebeat_with_an_ecs_payload() {
    let input = lines(scenario().into_iter().map(|r| {
        let ecs = json!({"@timestamp": r["ts"], "log.level": r["level"], "message": r["msg"],
                         "http.response.status_code": r["status"], "trace.id": r["trace_id"]});
        json!({"@timestamp": "2026-03-14T11:00:00.000Z", "@metadata": {"beat": "filebeat"},
               "message": ecs.to_string(), "input": {"type": "container"},
               "kubernetes": {"labels": {"app_kubernetes_io/name": r["service"]},
                              "container": {"name": "app"}}})
    }));
    assert_eq!(confirmed(&input), EXPECTED);
}

#[test]
fn spring_boot_3_lines_with_micrometer_ids() {
    let input = lines(scenario().into_iter().map(|r| {
        let trace = s(&r, "trace_id").to_uppercase();
        let line = format!(
            "{} {} 1 --- [{}] [nio-8080-exec-1] [{trace}-{}] c.e.shop.Handler : {}",
            s(&r, "ts"),
            s(&r, "level").to_uppercase(),
            s(&r, "service"),
            s(&r, "span_id"),
            s(&r, "msg")
        );
        json!({"time": r["ts"], "log": line, "stream": "stdout",
               "kubernetes": {"labels": {"app": r["service"]}, "container_name": "app"}})
    }));
    assert_eq!(confirmed(&input), EXPECTED);
}

#[test]
fn google_cloud_structured_logging() {
    // Cloud Logging's special JSON fields: the trace as a resource name, the service in
    // `serviceContext` (Error Reporting), the status in `httpRequest`.
    let input = lines(scenario().into_iter().map(|r| {
        json!({"timestamp": r["ts"], "severity": s(&r, "level").to_uppercase(),
               "message": r["msg"], "serviceContext": {"service": r["service"], "version": "1"},
               "httpRequest": {"requestMethod": r["method"], "status": r["status"]},
               "logging.googleapis.com/trace":
                   format!("projects/shop-prod/traces/{}", s(&r, "trace_id")),
               "logging.googleapis.com/spanId": r["span_id"]})
    }));
    assert_eq!(confirmed(&input), EXPECTED);
}

#[test]
fn journald_records_through_vector() {
    // Vector's journald source: the journal's fields as they are (time in microseconds,
    // the syslog priority as a string, the program as SYSLOG_IDENTIFIER), the app's text
    // line in `message`.
    let input = lines(scenario().into_iter().map(|r| {
        let micros = chrono::DateTime::parse_from_rfc3339(s(&r, "ts"))
            .unwrap()
            .timestamp_micros();
        let priority = if s(&r, "level") == "error" { "3" } else { "6" };
        let line = format!(
            "{} status: {} trace_id={}",
            s(&r, "msg"),
            r["status"],
            s(&r, "trace_id")
        );
        json!({"message": line, "source_type": "journald", "host": "node-1",
               "__REALTIME_TIMESTAMP": micros.to_string(), "PRIORITY": priority,
               "SYSLOG_IDENTIFIER": r["service"], "_SYSTEMD_UNIT": format!("{}.service", s(&r, "service"))})
    }));
    assert_eq!(confirmed(&input), EXPECTED);
}

#[test]
fn istio_sidecar_access_logs_correlate_by_request_id() {
    // The mesh's access lines only: the request id (propagated by the apps) ties the
    // hops together; there is no trace id.
    let input = lines(scenario().into_iter().filter(|r| r["method"].is_string()).map(|r| {
        let request_id = format!("{}-req", &s(&r, "trace_id")[..16]);
        let flags = if r["status"] == 503 { "UF" } else { "-" };
        let line = format!(
            "[{}] \"{} {} HTTP/1.1\" {} {flags} via_upstream - \"-\" 0 95 3 2 \"-\" \"okhttp/4.9\" \"{request_id}\" \"{}:8080\" \"10.0.0.7:8080\" inbound|8080|| 127.0.0.6:41854 10.0.0.7:8080 10.0.0.9:37652 outbound_.8080_._.{}.shop.svc.cluster.local default",
            s(&r, "ts"),
            s(&r, "method"),
            s(&r, "path"),
            r["status"],
            s(&r, "service"),
            s(&r, "service")
        );
        json!({"time": r["ts"], "log": line, "stream": "stdout",
               "kubernetes": {"container_name": "istio-proxy", "pod_name": pod(s(&r, "service")),
                              "labels": {"app": r["service"],
                                         "service.istio.io/canonical-name": r["service"]}}})
    }));
    assert_eq!(confirmed(&input), EXPECTED);
}

#[test]
fn otel_collector_otlp_json_batches() {
    // One Kafka message per batch of up to 50 records, several resources in each.
    let records = scenario();
    let mut out = String::new();
    for chunk in records.chunks(50) {
        let mut by_service: Vec<(String, Vec<Value>)> = Vec::new();
        for r in chunk {
            let ns = chrono::DateTime::parse_from_rfc3339(s(r, "ts"))
                .unwrap()
                .timestamp_nanos_opt()
                .unwrap();
            let record = json!({
                "timeUnixNano": ns.to_string(), "observedTimeUnixNano": ns.to_string(),
                "severityText": s(r, "level").to_uppercase(),
                "body": {"stringValue": s(r, "msg")},
                "traceId": s(r, "trace_id").to_uppercase(), "spanId": s(r, "span_id"),
                "attributes": [{"key": "http.response.status_code",
                                "value": {"intValue": r["status"].to_string()}}]});
            let svc = s(r, "service").to_string();
            match by_service.iter_mut().find(|(k, _)| *k == svc) {
                Some((_, v)) => v.push(record),
                None => by_service.push((svc, vec![record])),
            }
        }
        let resource_logs: Vec<Value> = by_service
            .into_iter()
            .map(|(svc, recs)| {
                json!({
                "resource": {"attributes": [
                    {"key": "service.name", "value": {"stringValue": svc}},
                    {"key": "k8s.namespace.name", "value": {"stringValue": "shop"}}]},
                "scopeLogs": [{"scope": {"name": "app"}, "logRecords": recs}]})
            })
            .collect();
        out.push_str(&json!({"resourceLogs": resource_logs}).to_string());
        out.push('\n');
    }
    assert_eq!(confirmed(&out), EXPECTED);
}

#[test]
fn inspect_says_what_was_read_from_which_key_and_why_a_rule_did_not_select() {
    let input = [
        json!({"time": "2026-03-14T10:00:02.000Z",
               "log": "2026-03-14T10:00:02.000Z ERROR 1 --- [pay] [main] [4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7] c.e.Pay : POST /api/pay 503: upstream connect error",
               "kubernetes": {"labels": {"app": "payment"}}}).to_string(),
        json!({"time": "2026-03-14T10:00:03.000Z", "log": "all good",
               "kubernetes": {"labels": {"app": "payment"}}}).to_string(),
        "just some words".to_string(),
        // Fluentd's default: no time key.
        json!({"log": "ERROR boom", "kubernetes": {"labels": {"app": "payment"}}}).to_string(),
    ]
    .join("\n");
    let mut child = receiver::logheal()
        .args(["inspect", "--show", "4", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for want in [
        "#1 json / payload app-header",
        "service  payment (kubernetes.labels.app)",
        "status   503 (text header)",
        "trace    4bf92f3577b34da6a3ce929d0e0e4736 (text header)",
        "rule     cross-service-503: selected",
        "rule     cross-service-503: not selected (no status; the rule wants 503)",
        "#3 skipped: unrecognised_format",
        "#4 json / payload app-header",
        "time     - (none: skipped from files and stdin; on Kafka, the record's timestamp)",
        "recognised in 4 records:",
        "cross-service-503                    1   25.00 %",
    ] {
        assert!(text.contains(want), "{want:?} missing in:\n{text}");
    }
}
