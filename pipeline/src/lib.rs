//! logheal-pipeline: from parsed events to incident decisions.
//!
//! Owns event time (`clock`), the per-trace correlator (`correlator`), the incident state
//! machines (`incident`) and their registry (`registry`), the engine that wires them for
//! one stream (`engine`), the records it emits (`record`), run statistics (`stats`), the
//! bounded line reader for files and stdin (`reader`), and the action executor: receiver
//! resolution (`receivers`), payloads (`payload`) and HTTP delivery (`executor`); and the
//! Kafka source, action ledger and re-keying stage (`kafka`).

pub mod agenda;
pub mod clock;
pub mod correlator;
pub mod engine;
pub mod executor;
pub mod incident;
pub mod interner;
pub mod kafka;
pub mod payload;
pub mod reader;
pub mod receivers;
pub mod record;
pub mod registry;
pub mod signal;
pub mod silence;
pub mod stats;

pub use engine::{wall_clock_now, Changes, Engine, EngineConfig, IncidentSnapshot, Reload};
pub use record::Record;
pub use stats::{SkipReason, Stats};
