//! Property: rule edits reloaded at random points of a stream never panic the engine and
//! never send an action to a receiver other than the one its rule names at the time.
//! The engine executes (requests go to the outbox); some calls stay in flight across
//! reloads and are answered later, as a slow receiver would.

use logheal_pipeline::action::{ActionRequest, Outcome};
use logheal_pipeline::{Engine, EngineConfig, Record};
use logheal_rules::{ReceiverKind, RuleSet};
use proptest::prelude::*;

const ACTIONS: [(&str, &str, &str, &str); 6] = [
    ("confirmed", "restart-downstream", "restart", "0s"),
    ("recovering", "failover", "failover", "5s"),
    ("recovering", "notify-recovering", "slack", "5s"),
    ("restored", "failback", "failback", "20s"),
    ("restored", "notify-restored", "slack", "20s"),
    ("escalated", "notify-escalated", "slack", "0s"),
];

/// One edit of the reference rule.
#[derive(Debug, Clone)]
struct Variant {
    dropped: [bool; 6],
    reverse_receivers: bool,
    probe: bool,
    /// Failover calls the failback receiver instead.
    swap_failover: bool,
    /// The rule is renamed (its incidents close, a new rule starts).
    renamed: bool,
}

impl Variant {
    fn yaml(&self) -> String {
        let mut receivers = vec![
            "  restart: {type: webhook, url: \"http://127.0.0.1:9/restart\"}\n",
            "  failover: {type: webhook, url: \"http://127.0.0.1:9/failover\"}\n",
            "  failback: {type: webhook, url: \"http://127.0.0.1:9/failback\"}\n",
            "  slack: {type: slack, url: \"http://127.0.0.1:9/slack\"}\n",
        ];
        if self.reverse_receivers {
            receivers.reverse();
        }
        let mut y = String::from("receivers:\n");
        y.extend(receivers);
        y.push_str(&format!(
            "rules:\n  - name: {}\n    select: {{status: [503]}}\n    correlate: {{window: 30s, min_events: 3, min_services: 2}}\n    incident:\n      group_by: [root_service]\n      quiet_period: 5s\n      escalate_after: 30s\n",
            if self.renamed { "cascade-b" } else { "cascade" }
        ));
        if self.probe {
            y.push_str("      health_probe: {url: \"http://127.0.0.1:9/health\", interval: 2s, passes: 2}\n");
        }
        y.push_str("    actions:\n");
        let mut state = "";
        for (i, (s, name, receiver, after)) in ACTIONS.iter().enumerate() {
            if self.dropped[i] {
                continue;
            }
            if *s != state {
                y.push_str(&format!("      {s}:\n"));
                state = s;
            }
            let receiver = if self.swap_failover && *name == "failover" {
                "failback"
            } else {
                receiver
            };
            y.push_str(&format!(
                "        - {{name: {name}, receiver: {receiver}, after: {after}}}\n"
            ));
        }
        y
    }

    fn rules(&self) -> RuleSet {
        logheal_rules::load_sources(&[("rules.yaml".into(), self.yaml())])
            .unwrap_or_else(|e| panic!("{e:?}\n{}", self.yaml()))
    }
}

fn variant() -> impl Strategy<Value = Variant> {
    (
        proptest::array::uniform6(any::<bool>()),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        proptest::bool::weighted(0.1),
    )
        .prop_map(
            |(dropped, reverse_receivers, probe, swap_failover, renamed)| Variant {
                dropped,
                reverse_receivers,
                probe,
                swap_failover,
                renamed,
            },
        )
}

/// Two outages of `payment`, heartbeats between: 400 lines over 200 s.
fn stream() -> Vec<String> {
    let mut lines = Vec::new();
    for s in 0..200u32 {
        let ts = format!("2026-03-14T10:{:02}:{:02}.000Z", s / 60, s % 60);
        let failing = (20..50).contains(&s) || (120..140).contains(&s);
        if failing {
            for (i, svc) in ["payment", "checkout", "gateway"].iter().enumerate() {
                lines.push(format!(
                    r#"{{"ts":"{}","service":"{svc}","trace_id":"t{s}","status":503}}"#,
                    ts.replace(".000Z", &format!(".00{i}Z"))
                ));
            }
        } else {
            lines.push(format!(
                r#"{{"ts":"{ts}","service":"gateway","trace_id":"h{s}","status":200}}"#
            ));
        }
    }
    lines
}

/// Every request must name the receiver its action has in the rules now loaded, and
/// carry the body of that receiver's kind.
fn check_route(rules: &RuleSet, request: &ActionRequest) {
    if request.expect_status.is_some() {
        assert!(
            request.receiver.ends_with("/health"),
            "a probe goes to a probe receiver: {}",
            request.receiver
        );
        return;
    }
    let declared = rules.rules.iter().flat_map(|r| {
        let a = &r.actions;
        [
            &a.suspected,
            &a.confirmed,
            &a.recovering,
            &a.restored,
            &a.escalated,
        ]
        .into_iter()
        .flatten()
    });
    let receivers: Vec<&str> = declared
        .filter(|a| a.name == request.action)
        .map(|a| rules.receivers[a.receiver].name.as_str())
        .collect();
    assert!(
        receivers.contains(&&*request.receiver),
        "{} sent to {} but its rule names {receivers:?}",
        request.action,
        request.receiver
    );
    let kind = rules
        .receivers
        .iter()
        .find(|r| *r.name == *request.receiver)
        .map(|r| r.kind)
        .expect("the receiver is declared");
    let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
    assert_eq!(
        body.get("blocks").is_some(),
        kind == ReceiverKind::Slack,
        "{} body for {}",
        request.action,
        request.receiver
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn reloads_at_random_points_never_panic_or_misroute(
        first in variant(),
        edits in proptest::collection::vec((0usize..400, variant()), 1..6),
        slow in proptest::collection::vec(any::<bool>(), 64),
    ) {
        let config = EngineConfig { execute: true, ..EngineConfig::default() };
        let mut rules = first.rules();
        let mut engine = Engine::new(rules.clone(), &config).unwrap();
        let mut edits = edits;
        edits.sort_by_key(|(at, _)| *at);
        let mut edits = edits.into_iter().peekable();
        // Calls left in flight, answered at the next line.
        let mut pending: Vec<u64> = Vec::new();
        let mut n = 0usize;
        let mut answer = |engine: &mut Engine, rules: &RuleSet, pending: &mut Vec<u64>| {
            for id in std::mem::take(pending) {
                engine.action_outcome(id, &Outcome::Succeeded { status: 200, attempts: 1 });
            }
            loop {
                let out = engine.take_outbox();
                if out.is_empty() {
                    break;
                }
                for request in out {
                    check_route(rules, &request);
                    n += 1;
                    if slow[n % slow.len()] {
                        pending.push(request.id);
                    } else {
                        engine.action_outcome(request.id, &Outcome::Succeeded { status: 200, attempts: 1 });
                    }
                }
            }
        };
        for (i, line) in stream().iter().enumerate() {
            while let Some((_, v)) = edits.next_if(|(at, _)| *at == i) {
                rules = v.rules();
                engine.reload(rules.clone()).unwrap();
            }
            engine.push_line(line.as_bytes());
            answer(&mut engine, &rules, &mut pending);
            engine.take_records().for_each(drop);
        }
        answer(&mut engine, &rules, &mut pending);
        while engine.step() {
            answer(&mut engine, &rules, &mut pending);
        }
        engine.finish();
        let records: Vec<Record> = engine.take_records().collect();
        drop(records);
    }
}
