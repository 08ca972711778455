//! Stack traces a shipper delivered line by line: the continuation lines count with the
//! record before them, and are neither mined into templates nor correlated.

use logheal_pipeline::{Engine, EngineConfig};

#[test]
fn continuation_lines_join_the_record_before_them() {
    let mut engine = Engine::new(logheal_rules::builtin(), &EngineConfig::default()).unwrap();
    let envelope = |log: &str| {
        serde_json::json!({"time": "2026-03-14T10:00:02.000Z", "log": log,
                           "kubernetes": {"labels": {"app": "payment"}}})
        .to_string()
    };
    let lines = [
        envelope("2026-03-14T10:00:02.000Z ERROR 1 --- [payment] [main] c.e.Pay : charge failed"),
        envelope("java.lang.IllegalStateException: card processor unavailable"),
        envelope("\tat com.example.pay.Charger.charge(Charger.java:42) ~[app.jar:1.0]"),
        envelope("\tat com.example.pay.Api.post(Api.java:17)"),
        envelope("Caused by: java.net.ConnectException: Connection refused"),
        envelope("\t... 12 more"),
        r#"  File "/app/pay.py", line 3, in charge"#.to_string(),
    ];
    for line in &lines {
        engine.push_line(line.as_bytes());
    }
    let stats = engine.stats();
    assert_eq!(stats.continuations, 5, "{stats}");
    assert_eq!(
        stats.parsed, 6,
        "the bare Python frame is no record of its own"
    );
    assert_eq!(stats.skipped_total(), 0, "{stats}");
    // The header line and the exception line are mined; the frames are not.
    assert_eq!(stats.templates_live, 2, "{stats}");
}
