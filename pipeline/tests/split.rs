//! The two stages apart decide what one engine decides: the bundled example replayed
//! through a correlate-only engine, its signals through JSON (as on the signals topic),
//! with repeats, into a decide-only engine, gives the same records as `replay`.

use logheal_pipeline::signal::{Stage, Watermark, Wire};
use logheal_pipeline::{Engine, EngineConfig, Record};
use std::sync::Arc;

const EXAMPLE: &str = include_str!("../../examples/checkout-outage.jsonl");

fn engine(stage: Stage) -> Engine {
    let config = EngineConfig {
        stage,
        ..EngineConfig::default()
    };
    Engine::new(logheal_rules::builtin(), &config).unwrap()
}

/// A correlator reads line `offset` of partition 0 of `logs`.
fn read(correlate: &mut Engine, offset: usize, line: &str) {
    correlate.set_position(&"logs".into(), 0, offset as i64);
    correlate.push_record(0, line.as_bytes());
}

fn one_engine() -> Vec<Record> {
    one_engine_over(EXAMPLE.lines())
}

fn one_engine_over<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<Record> {
    let mut e = engine(Stage::All);
    for line in lines {
        e.push_line(line.as_bytes());
    }
    e.finish();
    e.take_records().collect()
}

/// Hands what the correlator raised to the decider through JSON, as on the signals
/// topic, then the correlator's watermark.
fn forward(correlate: &mut Engine, decide: &mut Engine) {
    for signal in correlate.take_signals() {
        let json = Wire::Signal(signal).to_json();
        decide.push_wire(3, serde_json::from_slice(&json).unwrap());
    }
    let mark = Wire::Watermark(Watermark {
        at: correlate.time().nanos(),
        partitions: vec![("logs".into(), 0)],
        idle: vec![],
    });
    decide.push_wire(3, serde_json::from_slice(&mark.to_json()).unwrap());
}

/// Replays through the two stages; with `repeat`, the correlator re-reads the lines
/// from `repeat` on after reaching the end (as after a restart), publishing again.
fn two_stages(repeat: Option<usize>) -> (Vec<Record>, u64) {
    let topic: Arc<str> = "logs".into();
    let mut correlate = engine(Stage::Correlate);
    let mut decide = engine(Stage::Decide);
    decide.set_inputs(vec![(topic.clone(), 0)]);
    let lines: Vec<&str> = EXAMPLE.lines().collect();
    for (offset, line) in lines.iter().enumerate() {
        read(&mut correlate, offset, line);
        forward(&mut correlate, &mut decide);
    }
    if let Some(from) = repeat {
        let mut again = engine(Stage::Correlate);
        for (offset, line) in lines.iter().enumerate().skip(from) {
            read(&mut again, offset, line);
            for signal in again.take_signals() {
                let json = Wire::Signal(signal).to_json();
                decide.push_wire(3, serde_json::from_slice(&json).unwrap());
            }
        }
    }
    correlate.finish();
    forward(&mut correlate, &mut decide);
    decide.finish();
    let repeated = decide.stats().signals_repeated;
    (decide.take_records().collect(), repeated)
}

#[test]
fn the_stages_apart_decide_what_one_engine_decides() {
    let one = one_engine();
    let confirmed = one
        .iter()
        .filter(|r| matches!(r, Record::Transition { to, .. } if to.as_str() == "CONFIRMED"))
        .count();
    assert_eq!(confirmed, 1);
    let (two, repeated) = two_stages(None);
    assert_eq!(repeated, 0);
    assert_eq!(two.len(), one.len());
    for (a, b) in one.iter().zip(&two) {
        assert_eq!(a.to_json(), b.to_json());
    }
}

#[test]
fn a_correlator_that_reads_again_changes_nothing() {
    let one = one_engine();
    let (two, repeated) = two_stages(Some(1200));
    assert!(repeated > 10, "{repeated}");
    let json = |rs: &[Record]| rs.iter().map(Record::to_json).collect::<Vec<_>>();
    assert_eq!(json(&two), json(&one));
}

/// Transitions to CONFIRMED among `records`.
fn confirmations(records: &[Record]) -> usize {
    records
        .iter()
        .filter(|r| matches!(r, Record::Transition { to, .. } if to.as_str() == "CONFIRMED"))
        .count()
}

/// A decider that takes a signals partition over after its decider committed past a
/// closed incident, while a correlator re-reads its input and publishes that incident's
/// signals again: with the floor its predecessor left (the rewind point it committed
/// at), the repeats are dropped; without it, the closed incident is confirmed again.
#[test]
fn a_decider_that_takes_over_drops_repeats_below_the_floor() {
    let topic: Arc<str> = "logs".into();
    let lines: Vec<&str> = EXAMPLE.lines().collect();
    let mut correlate = engine(Stage::Correlate);
    let mut first = engine(Stage::Decide);
    first.set_inputs(vec![(topic.clone(), 0)]);
    for (offset, line) in lines.iter().enumerate() {
        read(&mut correlate, offset, line);
        forward(&mut correlate, &mut first);
    }
    // Half an hour later (the correlator's watermark), the restored incident is over.
    let later = Wire::Watermark(Watermark {
        at: correlate.time().nanos() + 1_800_000_000_000,
        partitions: vec![("logs".into(), 0)],
        idle: vec![],
    });
    first.push_wire(3, serde_json::from_slice(&later.to_json()).unwrap());
    let confirmed: Vec<Record> = first.take_records().collect();
    assert_eq!(confirmations(&confirmed), 1);
    // The incident closed, so the point is past it.
    let point = first.rewind_point(std::time::Duration::from_secs(3600));
    let restored = confirmed
        .iter()
        .filter_map(|r| match r {
            Record::Transition { to, at, .. } if to.as_str() == "RESTORED" => Some(at.clone()),
            _ => None,
        })
        .next()
        .expect("the outage is restored before the end");
    assert!(
        point.to_rfc3339() > restored,
        "{} {restored}",
        point.to_rfc3339()
    );
    let take_over = |floor: bool| {
        let mut again = engine(Stage::Correlate);
        let mut next = engine(Stage::Decide);
        next.set_inputs(vec![(topic.clone(), 0)]);
        if floor {
            next.set_floor(3, point);
        }
        for (offset, line) in lines.iter().enumerate() {
            read(&mut again, offset, line);
            forward(&mut again, &mut next);
        }
        let records: Vec<Record> = next.take_records().collect();
        (confirmations(&records), next.stats().signals_repeated)
    };
    let (confirmed, repeated) = take_over(true);
    assert_eq!(confirmed, 0);
    assert!(repeated > 10, "{repeated}");
    assert_eq!(take_over(false), (1, 0));
}

/// A record of the signals topic stands, for the decider's commit, for the latest of
/// its correlator's time and its event time: a lagging source holds the correlator's
/// time behind the event, and a commit at a rewind point between the two would skip
/// the first signal of an incident still open.
#[test]
fn a_signal_stands_for_its_event_time_when_its_correlator_lags() {
    let topic: Arc<str> = "logs".into();
    let mut correlate = engine(Stage::Correlate);
    let mut signals = Vec::new();
    for (offset, line) in EXAMPLE.lines().enumerate() {
        read(&mut correlate, offset, line);
        signals.extend(correlate.take_signals());
    }
    let mut signal = signals
        .into_iter()
        .next()
        .expect("the example raises signals");
    signal.time = signal.at - 5_000_000_000;
    let mut decide = engine(Stage::Decide);
    decide.set_inputs(vec![(topic, 0)]);
    let wire = serde_json::from_slice(&Wire::Signal(signal.clone()).to_json()).unwrap();
    assert_eq!(
        decide.push_wire(3, wire).map(|t| t.nanos()),
        Some(signal.at)
    );
}

/// A correlator that re-reads from inside a trace, after the chain that trace raised,
/// sees fewer of its early events and raises the chain again from a later record, one
/// its predecessor never published from: the origin filter lets it through, and the
/// decider drops it by its trace (its events are not after the chain it took). Without
/// that, the repeat is one more chain for its incident, and reopens a restored one.
#[test]
fn a_chain_raised_again_from_a_later_record_is_a_repeat() {
    let topic: Arc<str> = "logs".into();
    let mut lines: Vec<String> = EXAMPLE.lines().map(String::from).collect();
    // The first failing trace (payment, checkout, gateway) gets one more gateway line.
    let first = lines
        .iter()
        .position(|l| l.contains(r#""level":"error""#))
        .unwrap();
    let trace = lines[first].split(r#""trace_id":""#).nth(1).unwrap()[..32].to_string();
    let third = (first..lines.len())
        .filter(|&i| lines[i].contains(&trace))
        .nth(2)
        .unwrap();
    let extra = lines[third].replace(r#".008Z""#, r#".009Z""#);
    assert_ne!(extra, lines[third]);
    lines.insert(third + 1, extra);
    let one = one_engine_over(lines.iter().map(String::as_str));

    let mut decide = engine(Stage::Decide);
    decide.set_inputs(vec![(topic.clone(), 0)]);
    // The first correlator raises the chain at the trace's third line, and stops.
    let mut correlate = engine(Stage::Correlate);
    for (offset, line) in lines.iter().enumerate().take(third + 1) {
        read(&mut correlate, offset, line);
        forward(&mut correlate, &mut decide);
    }
    assert_eq!(decide.stats().chains_taken, 1);
    // Its successor re-reads from the trace's second line: its chain comes from the
    // added line, later than any origin the decider took.
    let mut again = engine(Stage::Correlate);
    for (offset, line) in lines.iter().enumerate().skip(first + 1) {
        read(&mut again, offset, line);
        forward(&mut again, &mut decide);
    }
    again.finish();
    forward(&mut again, &mut decide);
    decide.finish();
    assert!(decide.stats().signals_repeated >= 1);
    let two: Vec<Record> = decide.take_records().collect();
    let json = |rs: &[Record]| rs.iter().map(Record::to_json).collect::<Vec<_>>();
    assert_eq!(json(&two), json(&one));
}

/// A chain that ended before its incident was restored but arrives after the restore
/// (its input partition was read late) is evidence of the outage that was: it reopens
/// nothing. A chain that ended after the restore still reopens it.
#[test]
fn a_chain_from_before_the_restore_reopens_nothing() {
    let topic: Arc<str> = "logs".into();
    let run = |late_by: Option<i64>| {
        let mut correlate = engine(Stage::Correlate);
        let mut decide = engine(Stage::Decide);
        decide.set_inputs(vec![(topic.clone(), 0)]);
        let mut last_chain = None;
        let lines: Vec<&str> = EXAMPLE.lines().collect();
        for (offset, line) in lines.iter().enumerate() {
            read(&mut correlate, offset, line);
            for signal in correlate.take_signals() {
                if signal.chain.is_some() {
                    last_chain = Some(signal.clone());
                }
                decide.push_wire(3, Wire::Signal(signal));
            }
            forward(&mut correlate, &mut decide);
        }
        let before: Vec<Record> = decide.take_records().collect();
        let restored = before
            .iter()
            .rev()
            .find_map(|r| match r {
                Record::Transition { to, .. } if to.as_str() == "RESTORED" => Some(r.to_json()),
                _ => None,
            })
            .expect("the outage is restored by the end of the example");
        // The last chain again, as another trace from a later record, at the
        // correlator's time now; its events as they were, or `late_by` after the restore.
        let mut late = last_chain.expect("the example raises chains");
        late.origin.offset = lines.len() as i64;
        late.time = correlate.time().nanos();
        let chain = late.chain.as_mut().unwrap();
        chain.trace = "0123456789abcdef0123456789abcdef".into();
        if let Some(after) = late_by {
            let restored_at: serde_json::Value = serde_json::from_str(&restored).unwrap();
            let at = nanos_of(restored_at["at"].as_str().unwrap()) + after;
            (chain.first, chain.last, late.at) = (at, at, at);
        }
        decide.push_wire(3, Wire::Signal(late));
        forward(&mut correlate, &mut decide);
        let after: Vec<Record> = decide.take_records().collect();
        confirmations(&after)
    };
    assert_eq!(run(None), 0);
    assert_eq!(run(Some(1_000_000_000)), 1);
}

/// Nanoseconds since the epoch of an RFC 3339 time.
fn nanos_of(text: &str) -> i64 {
    logheal_parsers::time::parse_timestamp(text)
        .expect("an RFC 3339 time")
        .nanos()
}
