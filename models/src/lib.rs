//! logheal-models: what logheal learns from the stream.
//!
//! Owns template mining (`miner`: a Drain-style prefix tree over the typed tokens of the
//! `logos` message lexer in logheal-parsers), with stable template ids and bounded memory,
//! one miner per service (`services`), TF-IDF template families (`families`), and
//! per-template rate baselines with new-template and rate-spike signals (`anomaly`).

#![forbid(unsafe_code)]

pub mod anomaly;
mod blind;
pub mod families;
mod memo;
pub mod miner;
mod seen;
pub mod services;

pub use anomaly::{AnomalyConfig, Detector, Flags};
pub use families::{Families, FamilyId, DEFAULT_FAMILY_SIMILARITY};
pub use miner::{Miner, MinerConfig, MinerStats, TemplateId};
pub use services::{ServiceTemplates, TemplateKey};
