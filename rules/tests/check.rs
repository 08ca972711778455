//! The rule checker: the built-in rule is valid, and each kind of mistake is reported at
//! its `file:line:col`.

use logheal_rules::{load_sources, ActionState, CorrelationKey, GroupLabel};
use std::time::Duration;

fn errors(text: &str) -> Vec<String> {
    match load_sources(&[("r.yaml".to_string(), text.to_string())]) {
        Ok(_) => vec![],
        Err(diags) => diags.iter().map(|d| d.to_string()).collect(),
    }
}

const RECEIVER: &str = "receivers:\n  hook:\n    type: webhook\n    url: ${LOGHEAL_HOOK_URL}\n";

fn rule(body: &str) -> String {
    format!("{RECEIVER}rules:\n  - name: r1\n{body}")
}

#[test]
fn builtin_rule_is_the_reference_rule() {
    let set = logheal_rules::builtin();
    let names: Vec<&str> = set.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["cross-service-503", "error-chain", "error-burst"]);
    let chain = &set.rules[1];
    assert_eq!(chain.select.status, vec![logheal_rules::NO_STATUS]);
    assert_eq!(
        (
            chain.correlate.min_services,
            chain.correlate.min_chains,
            chain.correlate.min_anomalous
        ),
        (2, 3, 1)
    );
    assert_eq!(chain.incident.yield_to, ["cross-service-503"]);
    let r = &set.rules[0];
    assert_eq!(r.name, "cross-service-503");
    assert_eq!(r.select.status, vec![(503, 503)]);
    assert_eq!(r.correlate.key, CorrelationKey::TraceId);
    assert_eq!(r.correlate.window, Duration::from_secs(30));
    assert_eq!((r.correlate.min_events, r.correlate.min_services), (3, 2));
    assert_eq!(r.incident.group_by, vec![GroupLabel::RootService]);
    let names = |s| {
        r.actions
            .for_state(s)
            .iter()
            .map(|a| {
                (
                    a.name.as_str(),
                    set.receivers[a.receiver].name.as_str(),
                    a.after.as_secs(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(ActionState::Confirmed),
        vec![("restart-downstream", "restart", 0)]
    );
    assert_eq!(
        names(ActionState::Recovering),
        vec![
            ("failover", "failover", 5),
            ("notify-recovering", "slack", 5)
        ]
    );
    assert_eq!(
        names(ActionState::Restored)[0],
        ("failback", "failback", 60)
    );
    assert!(set
        .receivers
        .iter()
        .all(|r| r.url.starts_with("${LOGHEAL_")));
}

#[test]
fn a_valid_minimal_rule_loads_with_defaults() {
    let text = rule("    select: {status: [5xx], level: [error]}\n    correlate: {window: 10s, min_events: 2}\n");
    let set = load_sources(&[("r.yaml".into(), text)]).unwrap();
    let r = &set.rules[0];
    assert_eq!(r.select.status, vec![(500, 599)]);
    assert_eq!(r.correlate.min_services, 1);
    assert_eq!(r.incident.suspect_timeout, Duration::from_secs(10));
    assert_eq!(r.location.to_string(), "r.yaml:6:11");
}

#[test]
fn unknown_key() {
    let text = rule("    select: {status: [503]}\n    correlate: {window: 30s, min_events: 3, min_service: 2}\n");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("r.yaml:8:"), "{errs:?}");
    assert!(errs[0].contains("unknown field `min_service`"), "{errs:?}");
    let block = rule("    select: {status: [503]}\n    correlate:\n      window: 30s\n      min_events: 3\n      min_service: 2\n");
    let errs = errors(&block);
    assert!(
        errs[0].starts_with("r.yaml:11:7: unknown field `min_service`"),
        "{errs:?}"
    );
}

#[test]
fn bad_duration() {
    let text = rule("    select: {status: [503]}\n    correlate:\n      window: 30 parsecs\n      min_events: 3\n");
    assert_eq!(errors(&text).len(), 1);
    assert!(
        errors(&text)[0].starts_with("r.yaml:9:15: bad duration \"30 parsecs\""),
        "{:?}",
        errors(&text)
    );
}

#[test]
fn undeclared_receiver() {
    let text = rule("    select: {status: [503]}\n    correlate: {window: 30s, min_events: 3}\n    actions:\n      confirmed:\n        - {name: restart, receiver: nope}\n");
    assert_eq!(
        errors(&text),
        vec!["r.yaml:11:37: undeclared receiver \"nope\""]
    );
}

#[test]
fn impossible_thresholds() {
    let text = rule("    select: {status: [503]}\n    correlate:\n      window: 0s\n      min_events: 2\n      min_services: 3\n");
    let errs = errors(&text);
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert_eq!(errs[0], "r.yaml:9:15: window must be above zero");
    assert!(errs[1].starts_with(
        "r.yaml:11:21: impossible threshold: min_services (3) exceeds min_events (2)"
    ));
    let zero = rule("    select: {status: [503]}\n    correlate: {window: 5s, min_events: 0}\n");
    assert_eq!(
        errors(&zero),
        vec!["r.yaml:8:41: min_events must be at least 1"]
    );
}

#[test]
fn bad_selections() {
    let text = rule("    select: {status: [600, abc], level: [loud], message: \"(\"}\n    correlate: {window: 5s, min_events: 1}\n");
    let errs = errors(&text);
    assert_eq!(errs.len(), 4, "{errs:?}");
    assert!(errs.iter().any(|e| e.contains("bad status \"600\"")));
    assert!(errs.iter().any(|e| e.contains("bad status \"abc\"")));
    assert!(errs.iter().any(|e| e.contains("unknown level \"loud\"")));
    assert!(errs.iter().any(|e| e.contains("bad message regex")));
    let empty = rule("    select: {}\n    correlate: {window: 5s, min_events: 1}\n");
    assert_eq!(
        errors(&empty),
        vec!["r.yaml:7:13: select has no condition, so it would match every line"]
    );
}

#[test]
fn secrets_may_not_be_literal() {
    let text = "receivers:\n  hook:\n    type: webhook\n    url: https://hooks.example/x\n    secret: hunter2\nrules:\n  - name: r\n    select: {status: [503]}\n    correlate: {window: 5s, min_events: 1}\n";
    let errs = errors(text);
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("r.yaml:5:13: secrets must come from the environment"),
        "{errs:?}"
    );
}

#[test]
fn yaml_syntax_error_has_a_position() {
    let errs = errors("rules:\n  - name: [unclosed\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("r.yaml:3:"), "{errs:?}");
    assert!(errs[0].contains("YAML syntax error"), "{errs:?}");
}

#[test]
fn wrong_types_and_duplicates() {
    let text =
        rule("    select: {status: [503]}\n    correlate: {window: 30s, min_events: three}\n");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("r.yaml:8:42:"), "{errs:?}");
    let twice = format!("{RECEIVER}rules:\n  - name: a\n    select: {{status: [503]}}\n    correlate: {{window: 5s, min_events: 1}}\n  - name: a\n    select: {{status: [503]}}\n    correlate: {{window: 5s, min_events: 1}}\n");
    assert_eq!(
        errors(&twice),
        vec!["r.yaml:9:11: rule \"a\" is defined twice"]
    );
    let dup_key = "rules:\n  - name: a\n    name: b\n";
    assert_eq!(errors(dup_key), vec!["r.yaml:3:5: duplicate key \"name\""]);
}

#[test]
fn receivers_are_shared_across_files() {
    let receivers = ("a.yaml".to_string(), RECEIVER.to_string());
    let rules = (
        "b.yaml".to_string(),
        "rules:\n  - name: r\n    select: {status: [503]}\n    correlate: {window: 5s, min_events: 1}\n    actions: {confirmed: [{name: x, receiver: hook}]}\n".to_string(),
    );
    let set = load_sources(&[receivers, rules]).unwrap();
    assert_eq!(
        set.receivers[set.rules[0].actions.confirmed[0].receiver].name,
        "hook"
    );
}

#[test]
fn an_empty_set_is_an_error() {
    assert_eq!(
        errors("# nothing yet\n"),
        vec!["r.yaml:1:1: no rules defined"]
    );
}

#[test]
fn model_selectors() {
    let ok = rule("    select: {template: \"*refused*\", family: \"*redis*\", anomaly: [new_template, rate_spike]}\n    correlate: {window: 1m, min_events: 1}\n");
    let set = load_sources(&[("r.yaml".into(), ok)]).unwrap();
    let m = &set.rules[0].select.models;
    assert!(m
        .template
        .as_ref()
        .unwrap()
        .is_match("connection refused <*>"));
    assert_eq!(m.anomaly.len(), 2);
    let bad = rule("    select: {template: \"[unclosed\", anomaly: [weird]}\n    correlate: {window: 1m, min_events: 1}\n");
    let errs = errors(&bad);
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].contains("bad template glob"), "{errs:?}");
    assert!(errs[1].contains("unknown anomaly \"weird\""), "{errs:?}");
}

#[test]
fn a_rule_file_cannot_reach_the_jobs_secrets() {
    let dir = std::env::temp_dir().join(format!("logheal-exfil-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("exfil.yaml");
    std::fs::write(
        &path,
        "receivers:\n  hook:\n    type: webhook\n    url: \"http://127.0.0.1:19610/ok?pw=${KAFKA_PASSWORD}\"\n    headers: {X-Sa-Token: \"file:/var/run/secrets/kubernetes.io/serviceaccount/token\", X-Host: \"file:/run/secrets/logheal/../../../etc/hostname\"}\n  other:\n    type: webhook\n    url: \"https://${LOGHEAL_TEAM}.example.com/hook\"\nrules:\n  - name: r\n    select: {status: [503]}\n    correlate: {window: 30s, min_events: 3, min_services: 2}\n    actions: {confirmed: [{name: a, receiver: hook}, {name: b, receiver: other}]}\n",
    )
    .unwrap();
    let errors = logheal_rules::load_paths(std::slice::from_ref(&path)).unwrap_err();
    let text: Vec<String> = errors.iter().map(|d| d.to_string()).collect();
    let all = text.join("\n");
    assert!(
        all.contains(
            "exfil.yaml:4:10: ${KAFKA_PASSWORD}: rule files may read LOGHEAL_* variables only"
        ),
        "{all}"
    );
    assert!(all.contains("/var/run/secrets/kubernetes.io/serviceaccount/token: rule files may read files under /run/secrets/logheal/ only"), "{all}");
    assert!(all.contains("../../../etc/hostname"), "{all}");
    assert!(all.contains("may not build the host"), "{all}");
    assert_eq!(errors.len(), 4, "{all}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn yield_to_names_another_rule_of_the_set() {
    let text = rule("    select: {status: [503]}\n    correlate: {window: 30s, min_events: 3}\n    incident: {yield_to: [cross-servce-503]}\n");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("r.yaml:9:")
            && errs[0].contains("yield_to: \"cross-servce-503\" is not another rule of this set"),
        "{errs:?}"
    );
    let own = rule("    select: {status: [503]}\n    correlate: {window: 30s, min_events: 3}\n    incident: {yield_to: [r1]}\n");
    assert_eq!(errors(&own).len(), 1, "a rule cannot yield to itself");
}
