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

fn one_engine() -> Vec<Record> {
    let mut e = engine(Stage::All);
    for line in EXAMPLE.lines() {
        e.push_line(line.as_bytes());
    }
    e.finish();
    e.take_records().collect()
}

/// Replays through the two stages; with `repeat`, the correlator re-reads the lines
/// from `repeat` on after reaching the end (as after a restart), publishing again.
fn two_stages(repeat: Option<usize>) -> (Vec<Record>, u64) {
    let topic: Arc<str> = "logs".into();
    let mut correlate = engine(Stage::Correlate);
    let mut decide = engine(Stage::Decide);
    decide.set_inputs(vec![(topic.clone(), 0)]);
    let wire = |correlate: &mut Engine, decide: &mut Engine| {
        for signal in correlate.take_signals() {
            let json = Wire::Signal(signal).to_json();
            decide.push_wire(3, &serde_json::from_slice(&json).unwrap());
        }
        let mark = Wire::Watermark(Watermark {
            at: correlate.time().nanos(),
            partitions: vec![("logs".into(), 0)],
            idle: vec![],
        });
        decide.push_wire(3, &serde_json::from_slice(&mark.to_json()).unwrap());
    };
    let lines: Vec<&str> = EXAMPLE.lines().collect();
    for (offset, line) in lines.iter().enumerate() {
        correlate.set_position(&topic, 0, offset as i64);
        correlate.push_record(0, line.as_bytes());
        wire(&mut correlate, &mut decide);
    }
    if let Some(from) = repeat {
        let mut again = engine(Stage::Correlate);
        for (offset, line) in lines.iter().enumerate().skip(from) {
            again.set_position(&topic, 0, offset as i64);
            again.push_record(0, line.as_bytes());
            for signal in again.take_signals() {
                let json = Wire::Signal(signal).to_json();
                decide.push_wire(3, &serde_json::from_slice(&json).unwrap());
            }
        }
    }
    correlate.finish();
    wire(&mut correlate, &mut decide);
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
