//! logheal-parsers: bytes of one log line → [`LogEvent`].
//!
//! Owns the line formats (JSON lines, logfmt / key=value, Loghub-style header patterns),
//! the field mapping that finds time, service, level, status, trace and span ids and the
//! message under the flat, Elastic Common Schema and OpenTelemetry conventions (or names
//! given in configuration), and timestamp reading. Events borrow from the input line.

#![forbid(unsafe_code)]

mod event;
pub mod fields;
mod json;
pub mod lexer;
mod logfmt;
pub mod otlp;
mod parser;
mod pattern;
mod record;
mod text;
pub mod time;

pub use event::{EventTime, Level, LogEvent};
pub use fields::FieldNames;
pub use parser::{LineParser, ParseError, Recognised};
pub use pattern::FormatError;
pub use record::trace_match_part;
pub use text::TextShape;
