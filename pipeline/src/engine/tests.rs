use super::decide::{cut_middle, escape_label};
use super::*;

#[test]
fn long_texts_lose_their_middle() {
    assert_eq!(cut_middle("short", 10), "short");
    let long = format!("start {} the end", "x".repeat(100));
    let cut = cut_middle(&long, 20);
    assert!(
        cut.starts_with("start ") && cut.ends_with(" the end"),
        "{cut}"
    );
    assert_eq!(cut.chars().count(), 21);
}

#[test]
fn a_service_named_in_another_service_error_is_a_candidate() {
    let mut engine = builtin_engine();
    let line = |ms: u32, service: &str, msg: &str| {
        format!(
            r#"{{"ts":"2026-03-14T10:00:00.{ms:03}Z","service":"{service}","trace_id":"t1","status":503,"msg":"{msg}"}}"#
        )
    };
    for l in [
        line(1, "ledger-db", "slow query"),
        line(2, "checkout", "call to ledger-db failed: connection reset"),
        line(3, "gateway", "checkout returned 503"),
    ] {
        engine.push_line(l.as_bytes());
    }
    let confirmed = engine
        .take_records()
        .find_map(|r| match r {
            Record::Transition {
                to: IncidentState::Confirmed,
                candidates,
                ..
            } => Some(candidates),
            _ => None,
        })
        .expect("the cascade confirms");
    let names: Vec<&str> = confirmed.iter().map(|c| c.service.as_str()).collect();
    assert_eq!(names, ["ledger-db", "checkout", "gateway"]);
    // ledger-db: first to fail (2 + 1) and named by checkout (2); checkout: named by
    // gateway (2) and failed (1); gateway: failed (1).
    let scores: Vec<f64> = confirmed.iter().map(|c| c.score).collect();
    assert_eq!(scores, [5.0, 3.0, 1.0]);
}

#[test]
fn a_trace_logged_whole_by_one_tracer_and_by_its_lower_64_bits_by_another_is_one_chain() {
    // One trace: the OTel-instrumented gateway logs all 128 bits (as a traceparent),
    // checkout logs them as hex, and the Datadog-instrumented ledger-db logs the lower
    // 64 bits in decimal (`dd.trace_id`).
    let whole = "4bf92f3577b34da6a3ce929d0e0e4736";
    let lower = u64::from_str_radix(&whole[16..], 16).unwrap();
    let time = |ms: u32| format!("2026-03-14T10:00:00.{ms:03}Z");
    let lines = [
        format!(
            r#"{{"ts":"{}","service":"ledger-db","dd.trace_id":"{lower}","status":503,"msg":"slow query"}}"#,
            time(1)
        ),
        format!(
            r#"{{"ts":"{}","service":"checkout","trace_id":"{}","status":503,"msg":"upstream failed"}}"#,
            time(2),
            whole.to_uppercase()
        ),
        format!(
            r#"{{"ts":"{}","service":"gateway","traceparent":"00-{whole}-00f067aa0ba902b7-01","status":503,"msg":"upstream failed"}}"#,
            time(3)
        ),
    ];
    let mut engine = builtin_engine();
    for l in &lines {
        engine.push_line(l.as_bytes());
    }
    let changes = engine.take_changes();
    let incident = changes
        .live
        .iter()
        .find(|i| i.rule.as_ref() == "cross-service-503")
        .expect("the three hops make one chain");
    assert_eq!(incident.services, ["ledger-db", "checkout", "gateway"]);
    // The trace is shown as its first event wrote it: Datadog's 64 bits, in hex.
    assert_eq!(incident.sample_trace_ids, [format!("{lower:016x}")]);
    // A trace whose lower 64 bits differ is another trace.
    let mut engine = builtin_engine();
    for (i, l) in lines.iter().enumerate() {
        let other = if i == 0 {
            l.replace(&lower.to_string(), &(lower ^ 1).to_string())
        } else {
            l.clone()
        };
        engine.push_line(other.as_bytes());
    }
    let changes = engine.take_changes();
    let services: Vec<&Vec<String>> = changes.live.iter().map(|i| &i.services).collect();
    assert!(
        !services.iter().any(|s| s.len() == 3),
        "ledger-db's trace is not the others': {services:?}"
    );
}

#[test]
fn a_rule_keeps_its_slot_across_reloads_and_a_removed_one_is_retired() {
    let builtin = logheal_rules::builtin();
    let names: Vec<String> = builtin.rules.iter().map(|r| r.name.clone()).collect();
    let mut engine = Engine::new(builtin.clone(), &EngineConfig::default()).unwrap();
    cascade(&mut engine, "payment");
    let selected = |e: &Engine| -> Vec<(String, u64)> {
        e.selected_by_rule()
            .into_iter()
            .map(|(n, c)| (n.to_string(), c))
            .collect()
    };
    let before = selected(&engine);
    assert!(before.iter().any(|(_, n)| *n > 0), "{before:?}");
    // Without the first rule: it is retired in its slot, the others keep theirs.
    let mut without = builtin.clone();
    let first = without.rules.remove(0);
    let summary = engine.reload(without).unwrap();
    assert_eq!(
        (summary.kept, summary.removed, summary.added),
        (names.len() - 1, 1, 0)
    );
    assert_eq!(engine.slots.len(), names.len());
    assert!(engine.slots[0].retired && *engine.slots[0].name == *first.name);
    assert_eq!(selected(&engine), before[1..]);
    // Back again: the same slot, running, with its count.
    let summary = engine.reload(builtin).unwrap();
    assert_eq!((summary.kept, summary.added), (names.len() - 1, 1));
    assert_eq!(engine.slots.len(), names.len());
    assert!(!engine.slots[0].retired);
    assert_eq!(selected(&engine), before);
}

/// An engine of the built-in rules and the default settings.
fn builtin_engine() -> Engine {
    Engine::new(logheal_rules::builtin(), &EngineConfig::default()).unwrap()
}

fn cascade(engine: &mut Engine, root: &str) {
    let line = |ms: u32, service: &str| {
        format!(
            r#"{{"ts":"2026-03-14T10:00:00.{ms:03}Z","service":"{service}","trace_id":"t-{root}","status":503,"msg":"upstream failed"}}"#
        )
    };
    for l in [line(1, root), line(2, "checkout"), line(3, "gateway")] {
        engine.push_line(l.as_bytes());
    }
}

#[test]
fn a_record_without_a_time_takes_its_transport_stamp_and_one_with_a_time_keeps_it() {
    let mut engine = builtin_engine();
    // As Fluentd's Kafka output writes by default: no time key, the app's line inside.
    let untimed = |service: &str| {
        format!(
            r#"{{"log":"ERROR call failed trace_id=4bf92f3577b34da6a3ce929d0e0e4736 status=503","kubernetes":{{"labels":{{"app":"{service}"}}}}}}"#
        )
    };
    let stamp = EventTime::from_millis(1_773_482_400_000); // 2026-03-14T10:00:00Z
    engine.push_line(untimed("payment").as_bytes());
    assert_eq!(engine.stats().skipped(SkipReason::MissingTimestamp), 1);
    assert_eq!(engine.admitted(), None);
    engine.push_stamped(0, untimed("payment").as_bytes(), Some(stamp));
    assert_eq!(engine.admitted(), Some(stamp));
    assert_eq!(engine.stats().transport_timed, 1);
    let later = EventTime::from_millis(1_773_482_401_000);
    engine.push_stamped(0, untimed("checkout").as_bytes(), Some(later));
    assert_eq!(engine.admitted(), Some(later));
    // Its own time wins over the stamp.
    let own = r#"{"ts":"2026-03-14T10:00:01.500Z","service":"gateway","level":"error","msg":"x"}"#;
    engine.push_stamped(
        0,
        own.as_bytes(),
        Some(later.plus(Duration::from_secs(3600))),
    );
    assert_eq!(
        engine.admitted(),
        Some(EventTime(later.nanos() + 500_000_000))
    );
    assert_eq!(engine.stats().transport_timed, 2);
    assert_eq!(engine.stats().parsed, 4);
    // Every record of an OTLP batch that names no time takes the message's stamp.
    let batch = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"cart"}}]},"scopeLogs":[{"logRecords":[{"severityText":"ERROR","body":{"stringValue":"a"}},{"severityText":"ERROR","body":{"stringValue":"b"}},{"timeUnixNano":"1773482402500000000","body":{"stringValue":"c"}}]}]}]}"#;
    let third = later.plus(Duration::from_secs(1));
    engine.push_stamped(0, batch.as_bytes(), Some(third));
    assert_eq!(engine.stats().batched, 3);
    assert_eq!(engine.stats().parsed, 7);
    assert_eq!(engine.stats().transport_timed, 4);
    assert_eq!(
        engine.admitted(),
        Some(EventTime::from_millis(1_773_482_402_500))
    );
}

fn silence_of(matcher: &str) -> Silence {
    Silence {
        id: "s1".into(),
        matchers: vec![crate::silence::Matcher::parse(matcher).unwrap()],
        starts_at: 0,
        ends_at: 1,
        comment: "db migration".into(),
        created_by: String::new(),
    }
    .validated()
    .unwrap()
}

/// A cascade rooted at `ledger-db` run to its end under a silence of `matcher`.
fn silenced_cascade(matcher: &str) -> (Engine, Vec<Record>) {
    let mut engine = builtin_engine();
    engine.set_silences(vec![silence_of(matcher)]);
    cascade(&mut engine, "ledger-db");
    engine.finish();
    let records = engine.take_records().collect();
    (engine, records)
}

#[test]
fn a_silenced_incident_moves_on_and_calls_nothing() {
    let (engine, records) = silenced_cascade("root_service=ledger-db");
    let states: Vec<IncidentState> = records
        .iter()
        .filter_map(|r| match r {
            Record::Transition { to, .. } => Some(*to),
            _ => None,
        })
        .collect();
    assert!(states.contains(&IncidentState::Confirmed), "{states:?}");
    assert_eq!(states.last(), Some(&IncidentState::Restored), "{states:?}");
    assert!(!records.iter().any(|r| matches!(r, Record::Action(_))));
    let silenced = records
        .iter()
        .filter(|r| matches!(r, Record::ActionResult { outcome: "silenced", detail, .. } if detail.contains("db migration")))
        .count();
    assert!(silenced >= 1, "{records:?}");
    assert_eq!(engine.stats().actions_silenced, silenced as u64);
}

#[test]
fn a_silence_of_another_service_changes_nothing() {
    let (engine, records) = silenced_cascade("root_service=~pay.*");
    assert!(records.iter().any(|r| matches!(r, Record::Action(_))));
    assert_eq!(engine.stats().actions_silenced, 0);
}

#[test]
fn changes_give_touched_incidents_then_closed_ones() {
    let mut engine = builtin_engine();
    cascade(&mut engine, "ledger-db");
    let changes = engine.take_changes();
    assert_eq!(changes.live.len(), 1);
    let live = &changes.live[0];
    // Dry run: the confirmation's actions count as done at once.
    assert_eq!(live.state, IncidentState::Recovering);
    assert_eq!(live.sample_trace_ids, ["t-ledger-db"]);
    assert_eq!(live.root_candidates[0].service, "ledger-db");
    // Nothing happened since: nothing to refresh.
    let again = engine.take_changes();
    assert!(again.live.is_empty() && again.closed.is_empty());
    engine.finish();
    let changes = engine.take_changes();
    assert_eq!(changes.closed.len(), 1);
    assert_eq!(changes.closed[0].id, live.id);
    assert_eq!(changes.closed[0].state, IncidentState::Restored);
}

#[test]
fn label_escapes_are_distinct() {
    let esc = |v: &str| {
        let mut out = String::new();
        escape_label(v, &mut out);
        out
    };
    assert_eq!(esc("pay ment"), "pay%20ment");
    assert_eq!(esc("pay/ment"), "pay%2Fment");
    assert_eq!(esc("pay_ment"), "pay_ment");
    assert_eq!(esc("100%"), "100%25");
}
