//! End-to-end on a real Kafka-protocol broker (tansu, started by `scripts/test.sh`;
//! `LOGHEAL_TEST_BROKERS` says where) and real HTTP receivers on 127.0.0.1: consuming a
//! keyed multi-partition topic, a `kill -9` mid-stream, two consumers in one group,
//! malformed records, re-keying, and a broker restart. Built with the `kafka-tests`
//! feature, as `scripts/test.sh` does.
#![cfg(feature = "kafka-tests")]

#[path = "support/broker.rs"]
mod broker;
#[path = "support/consumer.rs"]
mod consumer;
#[path = "support/receiver.rs"]
mod receiver;
mod support;

use broker::Broker;
use consumer::{Consumer, Running};
use receiver::Server;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use support::loggen;

/// The log of `loggen::two_cascades` (two cascading outages, a storm, isolated 503s).
fn scenario() -> Vec<String> {
    loggen::two_cascades()
        .render()
        .lines()
        .map(String::from)
        .collect()
}

/// The scenario produced without keys to a new 3-partition topic, and a new 4-partition
/// topic to re-key it into: (broker, lines, raw topic, keyed topic). The failing roots
/// (payment, inventory) log their traces as a Datadog tracer does, the lower 64 bits in
/// decimal, and the other services all 128 bits: re-keyed, each trace still meets.
fn unkeyed_scenario() -> (Broker, Vec<String>, String, String) {
    let broker = Broker::from_env();
    let lines: Vec<String> = scenario().iter().map(|l| datadog_form(l)).collect();
    let raw = broker.topic("raw", 3);
    let keyed = broker.topic("keyed", 4);
    broker.produce_unkeyed(&raw, &lines);
    (broker, lines, raw, keyed)
}

/// `line` with its trace id as `dd.trace_id` in decimal if its service is a root.
fn datadog_form(line: &str) -> String {
    let mut v: Value = serde_json::from_str(line).unwrap();
    let root = matches!(v["service"].as_str(), Some("payment" | "inventory"));
    let Some(trace) = v["trace_id"].as_str().filter(|_| root).map(str::to_string) else {
        return line.to_string();
    };
    let lower = u64::from_str_radix(&trace[16..], 16).unwrap();
    let record = v.as_object_mut().unwrap();
    record.remove("trace_id");
    record.insert("dd.trace_id".into(), Value::String(lower.to_string()));
    v.to_string()
}

fn seconds_in(line: &str) -> i64 {
    let v: Value = serde_json::from_str(line).unwrap();
    let ts = chrono::DateTime::parse_from_rfc3339(v["ts"].as_str().unwrap()).unwrap();
    (ts.timestamp_millis() - loggen::EXAMPLE_START_MS) / 1000
}

fn of_type<'a>(records: &'a [Value], kind: &str) -> impl Iterator<Item = &'a Value> {
    let kind = kind.to_string();
    records.iter().filter(move |r| r["type"] == kind.as_str())
}

/// Root services of the incidents that were confirmed.
fn confirmed(records: &[Value]) -> BTreeSet<String> {
    of_type(records, "transition")
        .filter(|t| t["to"] == "CONFIRMED")
        .map(|t| t["key"]["root_service"].as_str().unwrap().to_string())
        .collect()
}

/// The idempotency keys of the actions that came due, by action name.
fn action_keys(records: &[Value]) -> BTreeSet<String> {
    of_type(records, "action")
        .map(|a| a["idempotency_key"].as_str().unwrap().to_string())
        .collect()
}

/// How often each idempotency key reached the receivers.
fn calls_by_key(server: &Server) -> BTreeMap<String, usize> {
    let mut calls = BTreeMap::new();
    for r in server.requests() {
        let key = r.headers["idempotency-key"].to_str().unwrap().to_string();
        *calls.entry(key).or_insert(0) += 1;
    }
    calls
}

#[test]
fn a_keyed_topic_gives_the_incidents_and_calls_of_a_replay() {
    let broker = Broker::from_env();
    let lines = scenario();
    let topic = broker.topic("logs", 4);
    broker.produce_keyed(&topic, &lines);
    let server = Server::start(&[]);
    let run = Consumer::new(&broker, &topic, &server).until_end().run();
    assert_eq!(run.lines_read(), lines.len() as u64, "{}", run.stderr);

    let replay = consumer::replay(&lines, &server);
    assert_eq!(
        confirmed(&run.records),
        ["inventory", "payment"].map(String::from).into()
    );
    assert_eq!(confirmed(&run.records), confirmed(&replay));
    assert_eq!(action_keys(&run.records), action_keys(&replay));
    // Replay and consumer each called every action once (same keys: same incidents).
    let calls = calls_by_key(&server);
    assert_eq!(
        calls.keys().cloned().collect::<BTreeSet<_>>(),
        action_keys(&replay)
    );
    assert!(calls.values().all(|n| *n == 2), "{calls:?}");
}

#[test]
fn a_backlog_consumed_live_decides_what_replay_decides() {
    // Records produced before the consumer starts, as after an hour away: the live job
    // (not --until-end) must confirm what replay confirms, call what replay calls on
    // confirmation, and let the wall clock move time only from the newest record once
    // caught up (no instant RESTORED because the data is months old).
    let broker = Broker::from_env();
    // The data ends 30 s after the inventory outage, before its quiet minute passed.
    let lines: Vec<String> = scenario()
        .into_iter()
        .filter(|l| seconds_in(l) < 750)
        .collect();
    let topic = broker.topic("backlog", 4);
    broker.produce_keyed(&topic, &lines);
    let server = Server::start(&[]);
    let running = Consumer::new(&broker, &topic, &server).dry_run().spawn();
    running.wait_for_output(Duration::from_secs(90), |r| {
        of_type(r, "transition")
            .filter(|t| t["to"] == "CONFIRMED")
            .count()
            >= 2
    });
    // Caught up and idle for a few seconds: still just what the backlog decided.
    std::thread::sleep(Duration::from_secs(4));
    let live = running.stop().records;
    let replay = consumer::replay_dry(&lines);
    assert_eq!(confirmed(&live), confirmed(&replay));
    let confirmations = |records: &[Value]| {
        of_type(records, "transition")
            .filter(|t| t["to"] == "CONFIRMED")
            .count()
    };
    assert_eq!(confirmations(&live), 2);
    let restarts = |records: &[Value]| -> BTreeSet<String> {
        of_type(records, "action")
            .filter(|a| a["action"] == "restart-downstream")
            .map(|a| a["idempotency_key"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(restarts(&live), restarts(&replay));
    // The inventory outage ended at minute 12, 30 s before the data does: its quiet
    // minute has not passed on the wall clock since the consumer caught up (replay,
    // at the end of its input, lets it pass).
    let restored: Vec<&str> = of_type(&live, "transition")
        .filter(|t| t["to"] == "RESTORED")
        .map(|t| t["key"]["root_service"].as_str().unwrap())
        .collect();
    assert_eq!(
        restored,
        ["payment"],
        "only the outage whose quiet minute is in the data"
    );
}

#[test]
fn kill_9_mid_stream_loses_no_incident_skips_no_offset_and_calls_nothing_twice() {
    kill_9_mid_stream(1);
}

/// As above, the consumers with two correlate threads each: every thread commits its
/// own partitions, and the successor's threads start from those commits.
#[test]
fn kill_9_of_a_consumer_with_two_correlate_threads_loses_and_repeats_nothing() {
    kill_9_mid_stream(2);
}

fn kill_9_mid_stream(threads: usize) {
    let broker = Broker::from_env();
    let lines = scenario();
    // The first consumer sees the payment outage and its recovery, then dies.
    let (first, second): (Vec<String>, Vec<String>) =
        lines.iter().cloned().partition(|l| seconds_in(l) < 400);
    let topic = broker.topic("logs", 4);
    let server = Server::start(&[]);
    broker.produce_keyed(&topic, &first);
    let consumer = Consumer::new(&broker, &topic, &server).correlate_threads(threads);
    let running = consumer.spawn();
    running.wait_for_output(Duration::from_secs(60), |records| {
        of_type(records, "action_result").any(|r| {
            r["action"] == "failback"
                && r["key"].is_null()
                && r["incident"].as_str().unwrap().contains("-payment-")
                && r["outcome"] == "succeeded"
        })
    });
    // Let a commit happen after the last call, then kill without a chance to clean up.
    std::thread::sleep(Duration::from_secs(3));
    let before = running.kill9();
    let committed = broker.committed(&consumer.group, &topic, 4);
    let committed_total: i64 = committed.iter().sum();
    assert!(committed_total > 0, "the first consumer committed nothing");
    // Each partition's reader (with two threads, each thread) committed its own.
    assert!(
        committed.iter().all(|c| *c > 0),
        "a partition was never committed: {committed:?}"
    );
    assert!(
        committed_total < first.len() as i64,
        "offsets were committed past the open state: {committed:?} of {}",
        first.len()
    );

    broker.produce_keyed(&topic, &second);
    // Let the dead consumer's session (6 s) expire first: tansu 0.6 may otherwise hand
    // every partition to the dead member and not rebalance when its session ends.
    std::thread::sleep(Duration::from_secs(7));
    let after = consumer.until_end().run();
    // No offset skipped: the successor read exactly from the committed offsets on.
    assert_eq!(
        after.lines_read() as i64,
        lines.len() as i64 - committed_total,
        "committed {committed:?}: {}",
        after.stderr
    );
    // No incident lost.
    let mut all = before.clone();
    all.extend(after.records.iter().cloned());
    assert_eq!(
        confirmed(&all),
        ["inventory", "payment"].map(String::from).into()
    );
    // Every action called exactly once, under the key a replay of the whole log uses.
    let calls = calls_by_key(&server);
    assert!(calls.values().all(|n| *n == 1), "called twice: {calls:?}");
    let replay = consumer::replay_dry(&lines);
    assert_eq!(
        calls.keys().cloned().collect::<BTreeSet<_>>(),
        action_keys(&replay)
    );
    assert!(
        after.stderr.contains("actions answered from the ledger")
            && !after.stderr.contains(" 0 actions answered from the ledger"),
        "the replayed payment actions were not answered from the ledger: {}",
        after.stderr
    );
}

#[test]
fn a_silence_is_kept_in_the_ledger_through_a_kill_9_and_the_successor_honours_it() {
    let broker = Broker::from_env();
    let lines = scenario();
    let topic = broker.topic("silenced", 2);
    let server = Server::start(&[]);
    let consumer = Consumer::new(&broker, &topic, &server);
    let first = consumer.spawn();
    first.wait_for_log(Duration::from_secs(60), "listening on");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !first.http_get("/readyz").0.contains("200") {
        assert!(std::time::Instant::now() < deadline, "{}", first.stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, body) = first.http(
        "POST",
        "/api/v1/silences",
        r#"{"matchers":["root_service=payment"],"duration":"1h","comment":"db migration"}"#,
    );
    assert!(status.contains("201"), "{status}: {body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    first.kill9();

    // The successor reads the silence from the ledger before the first record.
    broker.produce_keyed(&topic, &lines);
    std::thread::sleep(Duration::from_secs(7));
    let second = consumer.spawn();
    second.wait_for_output(Duration::from_secs(90), |records| {
        let silenced = of_type(records, "action_result").any(|r| {
            r["outcome"] == "silenced" && r["incident"].as_str().unwrap().contains("-payment-")
        });
        let inventory_restarted = of_type(records, "action_result").any(|r| {
            r["outcome"] == "succeeded"
                && r["action"] == "restart-downstream"
                && r["incident"].as_str().unwrap().contains("-inventory-")
        });
        silenced && inventory_restarted
    });
    let (_, listed) = second.http_get("/api/v1/silences");
    assert!(
        listed.contains(&id) && listed.contains("\"active\""),
        "{listed}"
    );
    let (_, page) = second.http_get("/incidents");
    assert!(page.contains(&format!("silenced by {id}")), "{page}");
    let finished = second.stop();
    assert!(finished.status.success());
    // Payment's outage called nothing; inventory's was handled as usual.
    let requests = server.requests();
    assert!(requests
        .iter()
        .all(|r| !r.body.contains("\"root_cause\":\"payment\"")));
    assert!(requests
        .iter()
        .any(|r| r.path == "/restart" && r.body.contains("\"root_cause\":\"inventory\"")));
}

#[test]
fn an_open_incident_is_on_the_successors_incident_page_after_a_kill_9() {
    let broker = Broker::from_env();
    // Up to the middle of the payment outage (2–4 min): its incident is open.
    let lines: Vec<String> = scenario()
        .into_iter()
        .filter(|l| seconds_in(l) < 180)
        .collect();
    let topic = broker.topic("paged", 2);
    let server = Server::start(&[]);
    broker.produce_keyed(&topic, &lines);
    let consumer = Consumer::new(&broker, &topic, &server);
    let first = consumer.spawn();
    first.wait_for_output(Duration::from_secs(60), |records| {
        of_type(records, "action_result").any(|r| {
            r["action"] == "restart-downstream"
                && r["outcome"] == "succeeded"
                && r["incident"].as_str().unwrap().contains("-payment-")
        })
    });
    let listed: Value = serde_json::from_str(&first.http_get("/api/v1/incidents").1).unwrap();
    let open = |listed: &Value| -> Option<Value> {
        listed["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["open"] == true && i["key"]["root_service"] == "payment")
            .cloned()
    };
    let before = open(&listed).expect("the payment incident is open");
    std::thread::sleep(Duration::from_secs(3));
    first.kill9();

    std::thread::sleep(Duration::from_secs(7));
    let second = consumer.spawn();
    second.wait_for_log(Duration::from_secs(60), "listening on");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let after = loop {
        let (_, body) = second.http_get("/api/v1/incidents");
        if let Some(i) = serde_json::from_str::<Value>(&body)
            .ok()
            .as_ref()
            .and_then(open)
        {
            if i["actions"].as_array().is_some_and(|a| !a.is_empty()) {
                break i;
            }
        }
        assert!(std::time::Instant::now() < deadline, "{}", second.stderr());
        std::thread::sleep(Duration::from_millis(200));
    };
    // The same incident, rebuilt from the re-read records: same id, same first steps.
    assert_eq!(after["id"], before["id"]);
    assert_eq!(after["timeline"][0], before["timeline"][0]);
    assert_eq!(after["timeline"][1]["to"], "CONFIRMED");
    let (status, page) = second.http_get(&format!("/incidents/{}", before["id"].as_str().unwrap()));
    assert!(
        status.contains("200") && page.contains("data-outcome="),
        "{status}"
    );
    assert!(second.stop().status.success());
    // Rebuilding called nothing twice.
    assert_eq!(server.requests_to("/restart").len(), 1);
}

/// An idempotency key without the incident's opening time: rule, root, step, action.
fn without_id(key: &str) -> String {
    let (incident, rest) = key.split_once('/').unwrap();
    let root = incident.rsplit_once('-').unwrap().0;
    format!("{root}/{rest}")
}

/// Waits until `running` answers 200 on `/readyz` (it joined its group).
fn wait_ready(running: &Running) {
    running.wait_for_log(Duration::from_secs(60), "listening on");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !running.http_get("/readyz").0.contains("200") {
        assert!(std::time::Instant::now() < deadline, "{}", running.stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Incident ids confirmed, per root service, over the records of several consumers.
fn confirmed_ids(records: &[Value]) -> BTreeMap<String, BTreeSet<String>> {
    let mut by_root: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in of_type(records, "transition").filter(|r| r["to"] == "CONFIRMED") {
        by_root
            .entry(r["key"]["root_service"].as_str().unwrap().to_string())
            .or_default()
            .insert(r["incident"].as_str().unwrap().to_string());
    }
    by_root
}

#[test]
fn three_consumers_of_one_group_confirm_each_cascade_once_and_call_once() {
    three_consumers(Start::BeforeTheLog, 1);
}

/// The log is on the topic before the consumers start, one a second: the first reads
/// the backlog alone until the others join and the group rebalances twice, and each
/// correlator re-reads from the rewind points committed so far.
#[test]
fn three_consumers_started_one_by_one_on_a_backlog_confirm_each_cascade_once() {
    three_consumers(Start::OneBySecondOnABacklog, 1);
}

/// As above, each consumer with two correlate threads sharing its partitions: every
/// join takes the partitions from under busy threads, which must start over from the
/// committed offsets without committing what is no longer theirs.
#[test]
fn three_consumers_of_two_threads_each_started_one_by_one_confirm_each_cascade_once() {
    three_consumers(Start::OneBySecondOnABacklog, 2);
}

/// The log is on the topic and the three start at the same moment, as a deployment of
/// three replicas does: they join the group together, each may read before the group
/// has settled, and still each cascade is confirmed once and called once.
#[test]
fn three_consumers_started_together_on_a_backlog_confirm_each_cascade_once() {
    three_consumers(Start::TogetherOnABacklog, 1);
}

#[derive(Clone, Copy, PartialEq)]
enum Start {
    BeforeTheLog,
    OneBySecondOnABacklog,
    TogetherOnABacklog,
}

/// Three consumers of one group on six partitions, started before the log is produced
/// or after (`Start`), each with `threads` correlate threads.
fn three_consumers(start: Start, threads: usize) {
    let backlog = start != Start::BeforeTheLog;
    let broker = Broker::from_env();
    let lines = scenario();
    let topic = broker.topic("grouped", 6);
    let server = Server::start(&[]);
    // As a user starts them, with nothing said about stages: the job creates its
    // signals topic (`<group>-signals`, as many partitions as the input) and decides
    // each incident key in one consumer.
    let consumer = Consumer::new(&broker, &topic, &server).correlate_threads(threads);
    if backlog {
        broker.produce_keyed(&topic, &lines);
    }
    let running: Vec<Running> = (0..3)
        .map(|i| {
            if start == Start::OneBySecondOnABacklog && i > 0 {
                std::thread::sleep(Duration::from_secs(1));
            }
            consumer.spawn()
        })
        .collect();
    for r in &running {
        wait_ready(r);
    }
    if !backlog {
        broker.produce_keyed(&topic, &lines);
    }
    let union =
        |running: &[Running]| -> Vec<Value> { running.iter().flat_map(|r| r.records()).collect() };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let failbacks: BTreeSet<String> = of_type(&union(&running), "action_result")
            .filter(|r| r["action"] == "failback" && r["outcome"] == "succeeded")
            .map(|r| r["incident"].as_str().unwrap().to_string())
            .collect();
        if failbacks.iter().any(|i| i.contains("-payment-"))
            && failbacks.iter().any(|i| i.contains("-inventory-"))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "both outages not recovered; transitions and stderr: {}",
            running
                .iter()
                .map(|r| {
                    let transitions = of_type(&r.records(), "transition")
                        .map(Value::to_string)
                        .collect::<Vec<_>>()
                        .join("\n");
                    format!("{transitions}\n{}", r.stderr())
                })
                .collect::<Vec<_>>()
                .join("\n----\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    let finished: Vec<_> = running.into_iter().map(Running::stop).collect();
    let all: Vec<Value> = finished.iter().flat_map(|f| f.records.clone()).collect();
    // One incident per cascade (the search storm and isolated 503s confirm nothing).
    let ids = confirmed_ids(&all);
    if ids.values().any(|set| set.len() != 1) || server.requests_to("/restart").len() != 2 {
        for (i, f) in finished.iter().enumerate() {
            for r in f.records.iter().filter(|r| r["type"] == "transition") {
                eprintln!("consumer {i}: {r}");
            }
            eprintln!("consumer {i} stderr: {}", f.stderr);
        }
    }
    assert_eq!(
        ids.keys().cloned().collect::<Vec<_>>(),
        ["inventory", "payment"]
    );
    assert!(ids.values().all(|set| set.len() == 1), "{ids:?}");
    // One restart call per cascade, and every action called once.
    let restarts = server.requests_to("/restart");
    assert_eq!(
        restarts.len(),
        2,
        "{:?}",
        restarts.iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    for root in ["payment", "inventory"] {
        assert!(restarts
            .iter()
            .any(|r| r.body.contains(&format!("\"root_cause\":\"{root}\""))));
    }
    let calls = calls_by_key(&server);
    assert!(calls.values().all(|n| *n == 1), "called twice: {calls:?}");
    // The same actions as a replay of the whole log, for the same outages (incident ids
    // can differ: which suspicion opens an incident depends on how the correlators'
    // watermarks interleave).
    assert_eq!(
        calls.keys().map(|k| without_id(k)).collect::<BTreeSet<_>>(),
        action_keys(&consumer::replay_dry(&lines))
            .iter()
            .map(|k| without_id(k))
            .collect::<BTreeSet<_>>()
    );
    for f in &finished {
        assert!(f.status.success(), "{}", f.stderr);
    }
}

#[test]
fn the_owner_of_an_open_incident_is_killed_and_its_successor_finishes_it_without_a_second_call() {
    let broker = Broker::from_env();
    let lines = scenario();
    // The first part ends in the middle of the payment outage (2–4 min).
    let (first, rest): (Vec<String>, Vec<String>) =
        lines.iter().cloned().partition(|l| seconds_in(l) < 180);
    let topic = broker.topic("handover", 4);
    let signals = broker.topic("handover-signals", 4);
    let server = Server::start(&[]);
    let consumer = Consumer::new(&broker, &topic, &server).signals(&signals);
    let owner = consumer.spawn();
    wait_ready(&owner);
    broker.produce_keyed(&topic, &first);
    owner.wait_for_output(Duration::from_secs(90), |records| {
        of_type(records, "action_result").any(|r| {
            r["action"] == "restart-downstream"
                && r["outcome"] == "succeeded"
                && r["incident"].as_str().unwrap().contains("-payment-")
        })
    });
    let incident = of_type(&owner.records(), "transition")
        .find(|r| r["to"] == "CONFIRMED" && r["key"]["root_service"] == "payment")
        .unwrap()["incident"]
        .clone();
    // Let a commit happen, then kill the owner without a chance to clean up.
    std::thread::sleep(Duration::from_secs(3));
    owner.kill9();
    broker.produce_keyed(&topic, &rest);
    // Let the dead member's session (6 s) expire first (tansu 0.6 may otherwise keep its
    // partitions assigned to it).
    std::thread::sleep(Duration::from_secs(7));
    let survivor = consumer.spawn();
    survivor.wait_for_output(Duration::from_secs(120), |records| {
        of_type(records, "action_result").any(|r| {
            r["action"] == "failback" && r["outcome"] == "succeeded" && r["incident"] == incident
        })
    });
    let finished = survivor.stop();
    assert!(finished.status.success(), "{}", finished.stderr);
    // The same incident went on (same id, same keys) and nothing was called twice.
    let restarts = server.requests_to("/restart");
    let payment_restarts: Vec<_> = restarts
        .iter()
        .filter(|r| r.body.contains("\"root_cause\":\"payment\""))
        .collect();
    assert_eq!(payment_restarts.len(), 1);
    let calls = calls_by_key(&server);
    assert!(calls.values().all(|n| *n == 1), "called twice: {calls:?}");
    let id = incident.as_str().unwrap();
    for step in [
        "2-confirmed/restart-downstream",
        "3-recovering/failover",
        "4-restored/failback",
    ] {
        assert_eq!(calls.get(&format!("{id}/{step}")), Some(&1), "{calls:?}");
    }
    assert!(
        finished.stderr.contains("actions answered from the ledger")
            && !finished
                .stderr
                .contains("; 0 actions answered from the ledger"),
        "the rebuilt incident's actions were not answered from the ledger: {}",
        finished.stderr
    );
}

#[test]
fn two_correlators_and_one_decider_decide_what_replay_decides() {
    let broker = Broker::from_env();
    let lines = scenario();
    let topic = broker.topic("staged", 4);
    let signals = broker.topic("staged-signals", 2);
    let server = Server::start(&[]);
    broker.produce_keyed(&topic, &lines);
    let consumer = Consumer::new(&broker, &topic, &server)
        .signals(&signals)
        .until_end();
    let correlators: Vec<Running> = (0..2)
        .map(|_| consumer.clone().stage("correlate").spawn())
        .collect();
    let decider = consumer.clone().stage("decide").spawn();
    for c in correlators {
        c.wait_for_log(Duration::from_secs(120), "correlation stopped");
        let f = c.wait();
        assert!(f.status.success(), "{}", f.stderr);
        // A correlator decides nothing.
        assert!(
            f.records.iter().all(|r| r["type"] == "summary"),
            "{:?}",
            f.records
        );
    }
    decider.wait_for_log(Duration::from_secs(120), "summary:");
    let decider = decider.wait();
    assert!(decider.status.success(), "{}", decider.stderr);
    let replay = consumer::replay_dry(&lines);
    assert_eq!(confirmed(&decider.records), confirmed(&replay));
    let keys = |records: &[Value]| -> BTreeSet<String> {
        action_keys(records).iter().map(|k| without_id(k)).collect()
    };
    let (got, want) = (keys(&decider.records), keys(&replay));
    assert_eq!(
        got.symmetric_difference(&want).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "decider vs replay"
    );
    // Every action was called once, as a replay would call them.
    let calls = calls_by_key(&server);
    assert!(calls.values().all(|n| *n == 1), "called twice: {calls:?}");
    assert_eq!(
        calls.keys().map(|k| without_id(k)).collect::<BTreeSet<_>>(),
        keys(&replay)
    );
}

#[test]
fn two_correlate_threads_in_one_process_share_the_partitions_and_decide_what_replay_decides() {
    let broker = Broker::from_env();
    let lines = scenario();
    let topic = broker.topic("threaded", 4);
    let server = Server::start(&[]);
    broker.produce_keyed(&topic, &lines);
    let run = Consumer::new(&broker, &topic, &server)
        .correlate_threads(2)
        .until_end()
        .run();
    assert!(run.status.success(), "{}", run.stderr);
    // One member of the group, whose four partitions the threads share (two members
    // would have been given two each, after a rebalance).
    assert!(
        run.stderr.contains("partitions assigned partitions=4"),
        "{}",
        run.stderr
    );
    // Both correlators had partitions of their own, and together they read everything.
    let per_worker: Vec<u64> = run
        .stderr
        .lines()
        .filter(|l| l.contains("correlation stopped"))
        .map(|l| {
            let at = l.find("records=").expect("records counted") + "records=".len();
            l[at..].split_whitespace().next().unwrap().parse().unwrap()
        })
        .collect();
    assert_eq!(per_worker.len(), 2, "{}", run.stderr);
    assert!(per_worker.iter().all(|n| *n > 0), "{per_worker:?}");
    assert!(per_worker.iter().sum::<u64>() >= lines.len() as u64);
    let replay = consumer::replay_dry(&lines);
    assert_eq!(confirmed(&run.records), confirmed(&replay));
    let keys = |records: &[Value]| -> BTreeSet<String> {
        action_keys(records).iter().map(|k| without_id(k)).collect()
    };
    assert_eq!(keys(&run.records), keys(&replay));
    let calls = calls_by_key(&server);
    assert!(calls.values().all(|n| *n == 1), "called twice: {calls:?}");
}

#[test]
fn a_reload_reaches_the_correlator_with_the_stages_apart() {
    let broker = Broker::from_env();
    let lines = scenario();
    let topic = broker.topic("reloaded", 2);
    let signals = broker.topic("reloaded-signals", 2);
    let server = Server::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let reference = include_str!("../rules/examples/cross-service-503.yaml");
    let named = |name: &str| reference.replace("name: cross-service-503", &format!("name: {name}"));
    std::fs::write(dir.join("rules.yaml"), named("before-reload")).unwrap();
    let consumer = Consumer::new(&broker, &topic, &server)
        .signals(&signals)
        .rules(dir);
    let running = consumer.spawn();
    wait_ready(&running);
    // The rule is renamed: signals the correlator raises must carry the new name, or
    // the decider (which runs the new set) would not know their rule.
    std::fs::write(dir.join("rules.yaml"), named("after-reload")).unwrap();
    running.wait_for_log(Duration::from_secs(30), "rules reloaded");
    broker.produce_keyed(&topic, &lines);
    running.wait_for_output(Duration::from_secs(90), |records| {
        let roots: BTreeSet<_> = of_type(records, "transition")
            .filter(|r| r["to"] == "CONFIRMED" && r["rule"] == "after-reload")
            .map(|r| r["key"]["root_service"].as_str().unwrap().to_string())
            .collect();
        roots.contains("payment") && roots.contains("inventory")
    });
    let finished = running.stop();
    assert!(finished.status.success(), "{}", finished.stderr);
    assert!(of_type(&finished.records, "transition").all(|r| r["rule"] == "after-reload"));
    assert!(
        finished.stderr.contains("0 of rules not run here"),
        "{}",
        finished.stderr
    );
}

#[test]
fn two_consumers_in_one_group_split_the_partitions_and_find_every_incident() {
    let broker = Broker::from_env();
    let lines = scenario();
    let topic = broker.topic("logs", 4);
    let server = Server::start(&[]);
    let consumer = Consumer::new(&broker, &topic, &server).dry_run();
    let a = consumer.spawn();
    a.wait_for_log(Duration::from_secs(30), "partitions assigned");
    let b = consumer.spawn();
    for c in [&a, &b] {
        c.wait_for_log(Duration::from_secs(60), "partitions=2");
    }
    // Ready once the deciders' group has assigned its partitions too.
    for c in [&a, &b] {
        c.wait_until_ready(Duration::from_secs(30));
    }
    broker.produce_keyed(&topic, &lines);
    // Until both together have consumed everything (their /metrics say).
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while a.metric("logheal_lines_total") + b.metric("logheal_lines_total") < lines.len() as f64 {
        assert!(
            std::time::Instant::now() < deadline,
            "not consumed within 90 s"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    a.terminate();
    b.terminate();
    let (a, b) = (a.wait(), b.wait());
    assert!(a.status.success() && b.status.success());
    let mut all = a.records.clone();
    all.extend(b.records.iter().cloned());
    assert_eq!(
        confirmed(&all),
        ["inventory", "payment"].map(String::from).into()
    );
    // Each took its share; together they read everything (a consumer that outlives
    // the other re-reads from the committed offsets, hence at least).
    let (ra, rb) = (a.records_consumed(), b.records_consumed());
    assert!(ra > 0 && rb > 0, "{}\n{}", a.stderr, b.stderr);
    assert!(
        ra + rb >= lines.len() as u64,
        "{ra} + {rb} of {}",
        lines.len()
    );
}

#[test]
fn malformed_records_are_counted_and_the_partition_goes_on() {
    let broker = Broker::from_env();
    let lines = scenario();
    let topic = broker.topic("logs", 1);
    let mut records: Vec<Vec<u8>> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if i % 500 == 0 {
            records.push(b"{\"ts\": \"2026-03-14T10:00:00Z\", \"status\": 5".to_vec());
            records.push(vec![0xff, 0xfe, b'{', 0x80]);
            records.push(Vec::new());
        }
        records.push(line.as_bytes().to_vec());
    }
    records.push(vec![b'x'; 2 << 20]);
    broker.produce_raw(&topic, &records);
    let server = Server::start(&[]);
    let run = Consumer::new(&broker, &topic, &server)
        .dry_run()
        .until_end()
        .run();
    assert_eq!(run.lines_read(), records.len() as u64, "{}", run.stderr);
    assert_eq!(
        confirmed(&run.records),
        ["inventory", "payment"].map(String::from).into()
    );
    let bad = lines.len().div_ceil(500);
    for reason in [
        format!("malformed_json {bad}"),
        format!("empty_line {bad}"),
        // Invalid UTF-8 is repaired, then this one is no format logheal knows.
        format!("unrecognised_format {bad}"),
        format!("repaired        {bad} lines"),
        "line_too_long 1".to_string(),
    ] {
        assert!(
            run.stderr.contains(&reason),
            "no `{reason}` in {}",
            run.stderr
        );
    }
}

#[test]
fn a_job_that_cannot_listen_leaves_the_group_with_the_error_and_commits_nothing() {
    // The group is joined before the endpoints start (so that the first fetches are
    // under way); a job that then fails to start must stop its correlators, leave, and
    // publish and commit nothing.
    let broker = Broker::from_env();
    let lines = scenario();
    let topic = broker.topic("nolisten", 4);
    broker.produce_keyed(&topic, &lines);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let server = Server::start(&[]);
    let consumer = Consumer::new(&broker, &topic, &server)
        .dry_run()
        .until_end()
        .listen(&address);
    let run = consumer.run();
    assert!(!run.status.success(), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("cannot listen on {address}")),
        "{}",
        run.stderr
    );
    assert_eq!(broker.committed(&consumer.group, &topic, 4), [0, 0, 0, 0]);
    assert!(
        broker
            .read_all(&format!("{}-signals", consumer.group), 4)
            .is_empty(),
        "signals were published"
    );
    drop(taken);
    // The next job of the group reads everything.
    let again = consumer.listen("127.0.0.1:0").run();
    assert!(again.status.success(), "{}", again.stderr);
    assert_eq!(again.lines_read(), lines.len() as u64);
}

#[test]
fn records_that_name_no_time_are_timed_by_their_kafka_timestamp() {
    // As Fluentd's Kafka output writes by default (no time key): the scenario's records
    // without their `ts`, stamped with it as the producer's timestamp. The job decides
    // what a replay of the timed records decides, at the same event times, with the
    // stages apart (the default) and in one engine (`--signals-topic off`).
    let broker = Broker::from_env();
    let lines = scenario();
    let records: Vec<(Option<String>, Vec<u8>, Option<i64>)> = lines
        .iter()
        .map(|line| {
            let mut v: Value = serde_json::from_str(line).unwrap();
            let ts = chrono::DateTime::parse_from_rfc3339(v["ts"].as_str().unwrap())
                .unwrap()
                .timestamp_millis();
            v.as_object_mut().unwrap().remove("ts");
            let key = v["trace_id"].as_str().map(String::from);
            (key, v.to_string().into_bytes(), Some(ts))
        })
        .collect();
    let replay = consumer::replay_dry(&lines);
    let transitions = |records: &[Value]| -> BTreeSet<(String, String, String)> {
        of_type(records, "transition")
            .map(|t| {
                let s = |k: &str| t[k].as_str().unwrap_or_default().to_string();
                (s("incident"), s("to"), s("at"))
            })
            .collect()
    };
    for signals in [None, Some("off")] {
        let topic = broker.topic("untimed", 4);
        broker.produce_with(&topic, &records);
        let server = Server::start(&[]);
        let mut consumer = Consumer::new(&broker, &topic, &server)
            .dry_run()
            .until_end();
        if let Some(signals) = signals {
            consumer = consumer.signals(signals);
        }
        let run = consumer.run();
        assert_eq!(run.lines_read(), lines.len() as u64, "{}", run.stderr);
        let timed = format!("timed           {} records", lines.len());
        assert!(
            run.stderr.contains(&timed),
            "no `{timed}` in {}",
            run.stderr
        );
        assert!(!run.stderr.contains("missing_timestamp"), "{}", run.stderr);
        assert_eq!(
            confirmed(&run.records),
            ["inventory", "payment"].map(String::from).into()
        );
        assert_eq!(transitions(&run.records), transitions(&replay));
        assert_eq!(action_keys(&run.records), action_keys(&replay));
    }
}

#[test]
fn rekey_routes_every_event_of_a_trace_to_one_partition() {
    let (broker, lines, raw, keyed) = unkeyed_scenario();
    let out = consumer::logheal()
        .args([
            "rekey",
            "--brokers",
            &broker.address,
            "--topic",
            &raw,
            "--to",
            &keyed,
        ])
        .args(["--group", &format!("{keyed}-rekey"), "--until-end"])
        // See `Broker::produce`: tansu needs one record per batch.
        .args(["-X", "batch.num.messages=1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("rekey: {} records", lines.len())),
        "{stderr}"
    );
    let copied = broker.read_all(&keyed, 4);
    assert_eq!(copied.len(), lines.len());
    let mut partition_of: BTreeMap<String, i32> = BTreeMap::new();
    for (partition, key, _) in &copied {
        let key = key.clone().expect("every record is keyed");
        // Whichever form a trace had, its records are keyed by its lower 64 bits
        // (records without a trace by their service).
        assert_ne!(key.len(), 32, "{key}");
        let first = *partition_of.entry(key.clone()).or_insert(*partition);
        assert_eq!(first, *partition, "trace {key} is split across partitions");
    }
    assert!(partition_of.len() > 1000, "{} traces", partition_of.len());
}

#[test]
fn a_config_file_runs_the_job_with_its_rekeying_stage() {
    let (broker, _, raw, keyed) = unkeyed_scenario();
    let ledger = broker.topic("actions", 1);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = dir.join("logheal.yaml");
    std::fs::write(
        &config,
        format!(
            "kafka:\n  brokers: {}\n  topics: [{raw}]\n  group: {keyed}-group\n  \
             ledger_topic: {ledger}\n  rekey:\n    to: {keyed}\n  properties:\n    \
             session.timeout.ms: \"6000\"\n    batch.num.messages: \"1\"\n\
             output: json\nlisten: 127.0.0.1:0\ndry_run: true\n",
            broker.address
        ),
    )
    .unwrap();
    let mut cmd = consumer::logheal();
    cmd.args(["run", "--config"]).arg(&config);
    let running = Running::spawn(cmd);
    running.wait_for_output(Duration::from_secs(90), |r| confirmed(r).len() == 2);
    let run = running.stop();
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(
        confirmed(&run.records),
        ["inventory", "payment"].map(String::from).into()
    );
    assert!(run.stderr.contains("re-keying stopped"), "{}", run.stderr);
}

#[test]
fn a_broker_restart_is_survived() {
    let mut own = Broker::start_own();
    let lines = scenario();
    let first: Vec<String> = lines
        .iter()
        .filter(|l| seconds_in(l) < 400)
        .cloned()
        .collect();
    let topic = own.topic("logs", 2);
    own.produce_keyed(&topic, &first);
    let server = Server::start(&[]);
    let running = Consumer::new(&own, &topic, &server)
        .dry_run()
        .property("topic.metadata.refresh.interval.ms", "1000")
        .spawn();
    running.wait_for_output(Duration::from_secs(60), |r| {
        confirmed(r).contains("payment")
    });
    // The broker goes away, and the consumer lives through it.
    own.stop_own();
    std::thread::sleep(Duration::from_secs(3));
    // It comes back. Memory storage kept nothing, so the test gives it back the same
    // log at the same offsets (as a broker with disks would have it) while the consumer
    // is frozen, then what followed.
    running.pause();
    let own = own.start_again();
    own.recreate_topic(&topic, 2);
    // The signals topic (its default name) was on the broker too.
    own.recreate_topic(&format!("{topic}-group-signals"), 2);
    own.produce_keyed(&topic, &lines);
    running.resume();
    running.wait_for_output(Duration::from_secs(120), |r| {
        confirmed(r).contains("inventory")
    });
    let run = running.stop();
    assert!(run.status.success(), "{}", run.stderr);
    assert!(
        run.stderr.contains("All broker connections are down"),
        "the consumer never saw the broker go: {}",
        run.stderr
    );
}
