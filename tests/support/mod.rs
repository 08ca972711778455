//! Helpers shared by the end-to-end tests.
#[allow(dead_code)] // not every test crate runs the binary this way
pub mod cli;
#[allow(dead_code)] // each test crate uses part of the generator
pub mod loggen;
