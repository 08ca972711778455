//! Helpers shared by the end-to-end tests.
#[allow(dead_code)] // each test crate uses part of the generator
pub mod loggen;
