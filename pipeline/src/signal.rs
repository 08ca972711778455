//! The stream between the two stages of the engine. *Correlate* (parse, mine, select,
//! per-trace windows) turns records into signals; *decide* (registry, incident machines,
//! agenda, actions) owns incidents by key. In one process (`replay`, or `run` without a
//! signals topic) the engine does both and nothing here is used. Split across a Kafka
//! consumer group, correlate publishes these messages to the signals topic, keyed by
//! incident key, so that each incident key is owned by exactly one decider at a time.
//!
//! Everything a decider needs travels by name and text (services, templates, their
//! anomaly verdicts), never by a number that only means something inside the process
//! that made it. Each signal carries its origin (input topic, partition, offset, and its
//! index among the signals of that record), so a decider drops the repeats of a
//! correlator that re-read its input after a restart. Watermarks carry each correlator's
//! event time for the input partitions it owns; a decider's time is the minimum over
//! every input partition, so an idle partition does not stall time (its correlator still
//! sends watermarks) and a slow one holds it back.

use serde::{Deserialize, Serialize};

/// Which part of the engine a process runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Both, in one engine (no signals topic), or both through the signals topic.
    #[default]
    All,
    /// Records in, signals out.
    Correlate,
    /// Signals in, incidents and actions out.
    Decide,
}

impl std::str::FromStr for Stage {
    type Err = String;
    fn from_str(s: &str) -> Result<Stage, String> {
        match s {
            "all" => Ok(Stage::All),
            "correlate" => Ok(Stage::Correlate),
            "decide" => Ok(Stage::Decide),
            other => Err(format!("{other}: the stage is all, correlate or decide")),
        }
    }
}

/// Where a signal came from: the input record that raised it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Its index among the signals raised by that record.
    pub index: u32,
}

/// One message of the signals topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Wire {
    Signal(WireSignal),
    /// A correlator's event time for the input partitions it owns.
    Watermark(Watermark),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Watermark {
    /// Event time, nanoseconds since the epoch; `i64::MAX` once the input has ended
    /// (`--until-end`).
    pub at: i64,
    pub partitions: Vec<(String, i32)>,
    /// Partitions that never had a record: they hold no time back until one comes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub idle: Vec<(String, i32)>,
}

/// A suspicion or a chain, as the correlator raised it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireSignal {
    /// The rule's name (rules are matched by name, so both stages must run one set).
    pub rule: String,
    /// Event time, nanoseconds since the epoch.
    pub at: i64,
    /// The correlator's event time when it raised the signal: a watermark for the
    /// origin's partition, taken before the signal (as one engine would run its timers
    /// up to that time before delivering it).
    pub time: i64,
    pub origin: Origin,
    /// The service that failed first: the suspect, or the chain's root.
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<WireChain>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireChain {
    pub trace: String,
    /// Distinct services in the order they first failed.
    pub services: Vec<String>,
    pub events: u32,
    pub first: i64,
    pub last: i64,
    /// Templates of the chain's events, most frequent first.
    pub templates: Vec<WireTemplate>,
    /// Services named in another service's error text (root-cause evidence).
    #[serde(default)]
    pub named: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireTemplate {
    pub service: String,
    pub text: String,
    pub count: u32,
    /// New for its service (anomaly verdict of the correlator).
    pub novel: bool,
    /// Why it is anomalous, if it is (`new, first seen 8s before`, or
    /// `12 in 60s, 12× its median of 0/60s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

impl WireSignal {
    /// The message key on the signals topic: the rule and, when the rule groups by
    /// root service, that service: one incident key, one partition, one decider.
    pub fn key(&self, groups_by_root: bool) -> String {
        if groups_by_root {
            format!("{}/{}", self.rule, self.service)
        } else {
            self.rule.clone()
        }
    }
}

impl Wire {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("signals serialise")
    }

    /// One message, read. What `to_json` wrote starts with its tag, so the message is
    /// read once as the variant it names (the fields ignore the tag); anything else
    /// goes through serde's tagged form, which buffers the whole message first (twice
    /// the work, on every signal a decider reads).
    pub fn from_json(line: &[u8]) -> Result<Wire, serde_json::Error> {
        if line.starts_with(br#"{"kind":"signal","#) {
            serde_json::from_slice(line).map(Wire::Signal)
        } else if line.starts_with(br#"{"kind":"watermark","#) {
            serde_json::from_slice(line).map(Wire::Watermark)
        } else {
            serde_json::from_slice(line)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_first_fast_path_reads_what_the_tagged_form_reads() {
        let signal = Wire::Signal(WireSignal {
            rule: "r".into(),
            at: 5,
            time: 4,
            origin: Origin {
                topic: "logs".into(),
                partition: 2,
                offset: 9,
                index: 1,
            },
            service: "a".into(),
            chain: None,
        });
        let mark = Wire::Watermark(Watermark {
            at: 7,
            partitions: vec![("logs".into(), 0)],
            idle: vec![("logs".into(), 1)],
        });
        for wire in [signal, mark] {
            let json = wire.to_json();
            assert_eq!(Wire::from_json(&json).unwrap(), wire);
            // The tag elsewhere (another writer): the tagged form still reads it.
            let mut value: serde_json::Value = serde_json::from_slice(&json).unwrap();
            let kind = value.as_object_mut().unwrap().remove("kind").unwrap();
            value.as_object_mut().unwrap().insert("kind".into(), kind);
            let moved = serde_json::to_vec(&value).unwrap();
            assert!(!moved.starts_with(br#"{"kind""#));
            assert_eq!(Wire::from_json(&moved).unwrap(), wire);
        }
        assert!(Wire::from_json(br#"{"kind":"signal","rule":1}"#).is_err());
    }

    #[test]
    fn messages_round_trip() {
        let signal = Wire::Signal(WireSignal {
            rule: "cross-service-503".into(),
            at: 5,
            time: 5,
            origin: Origin {
                topic: "logs".into(),
                partition: 2,
                offset: 41,
                index: 0,
            },
            service: "payment".into(),
            chain: Some(WireChain {
                trace: "t1".into(),
                services: vec!["payment".into(), "checkout".into()],
                events: 2,
                first: 1,
                last: 5,
                templates: vec![WireTemplate {
                    service: "payment".into(),
                    text: "connect <*> refused".into(),
                    count: 1,
                    novel: true,
                    why: Some("new".into()),
                }],
                named: vec![],
            }),
        });
        let back: Wire = serde_json::from_slice(&signal.to_json()).unwrap();
        assert_eq!(back, signal);
        let Wire::Signal(s) = &back else { panic!() };
        assert_eq!(s.key(true), "cross-service-503/payment");
        assert_eq!(s.key(false), "cross-service-503");
        let mark = Wire::Watermark(Watermark {
            at: 9,
            partitions: vec![("logs".into(), 0)],
            idle: vec![("logs".into(), 1)],
        });
        assert_eq!(
            serde_json::from_slice::<Wire>(&mark.to_json()).unwrap(),
            mark
        );
        assert_eq!("decide".parse::<Stage>(), Ok(Stage::Decide));
        assert!("both".parse::<Stage>().is_err());
    }
}
