//! logheal-models: what logheal learns from the stream.
//!
//! Owns template mining (`miner`: a Drain-style prefix tree over the typed tokens of the
//! `logos` message lexer in logheal-parsers), with stable template ids and bounded memory,
//! one miner per service (`services`), and TF-IDF template families (`families`).

pub mod families;
pub mod miner;
pub mod services;

pub use families::{Families, FamilyId, DEFAULT_FAMILY_SIMILARITY};
pub use miner::{Miner, MinerConfig, MinerStats, TemplateId};
pub use services::{ServiceTemplates, TemplateKey};
