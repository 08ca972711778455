//! logheal-pipeline: from parsed events to incident decisions.
//!
//! Owns event time (`clock`), the per-trace correlator (`correlator`), the incident state
//! machines (`incident`) and their registry (`registry`), the engine that wires them for
//! one stream (`engine`), the records it emits (`record`), run statistics (`stats`), the
//! bounded line reader for files and stdin (`reader`), what receivers are sent
//! (`payload`), the values exchanged with the action executor (`action`), silences
//! (`silence`), the wire between the two stages (`signal`) and how a decider tells
//! a correlator's repeats (`repeats`).
//!
//! This crate is pure: no I/O but the line reader, no clock (live jobs pass the wall
//! clock in), no tokio, rdkafka or reqwest. The HTTP side is `logheal-actions`, Kafka
//! is `logheal-kafka`.

#![forbid(unsafe_code)]

pub mod action;
pub mod agenda;
pub mod clock;
pub mod correlator;
pub mod engine;
pub mod incident;
pub mod interner;
pub mod payload;
pub mod reader;
pub mod record;
pub mod registry;
pub mod repeats;
pub mod signal;
pub mod silence;
pub mod stats;

pub use engine::{
    wall_clock_now, Changes, ConfigError, Engine, EngineConfig, IncidentSnapshot, Reload,
};
pub use record::Record;
pub use stats::{SkipReason, Stats};
