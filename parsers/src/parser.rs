//! [`LineParser`]: detects the format of each line (JSON object, header pattern if one is
//! configured, else logfmt) and reads it into a [`LogEvent`].

use crate::fields::{FieldIndex, FieldNames};
use crate::pattern::HeaderPattern;
use crate::record::RawRecord;
use crate::time::HeaderTimeReader;
use crate::{json, logfmt, LogEvent};
use std::fmt;

/// Why a line could not be read. Each is counted under [`ParseError::reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParseError {
    Empty,
    MalformedJson,
    /// Neither JSON nor any `key=value` pair.
    Unrecognised,
    /// A header format is configured and the line does not fit it.
    HeaderMismatch,
    /// A timestamp field is present but is not a time.
    InvalidTimestamp,
    /// A status field is present but is not an HTTP status code (100–599).
    InvalidStatus,
}

impl ParseError {
    /// Every error, in the order summaries list them.
    pub const ALL: [ParseError; 6] = [
        ParseError::Empty,
        ParseError::MalformedJson,
        ParseError::Unrecognised,
        ParseError::HeaderMismatch,
        ParseError::InvalidTimestamp,
        ParseError::InvalidStatus,
    ];

    /// A short snake_case name for counters and summaries.
    pub fn reason(self) -> &'static str {
        match self {
            ParseError::Empty => "empty_line",
            ParseError::MalformedJson => "malformed_json",
            ParseError::Unrecognised => "unrecognised_format",
            ParseError::HeaderMismatch => "header_mismatch",
            ParseError::InvalidTimestamp => "invalid_timestamp",
            ParseError::InvalidStatus => "invalid_status",
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for ParseError {}

/// Reads lines into events. Holds scratch buffers, so one parser serves one thread.
#[derive(Debug, Clone)]
pub struct LineParser {
    index: FieldIndex,
    pattern: Option<HeaderPattern>,
    times: HeaderTimeReader,
    path_buf: String,
    time_buf: String,
}

impl LineParser {
    /// A parser for the given field names and, for text logs, a Loghub-style header format.
    /// `assumed_year` completes header dates that carry no year.
    pub fn new(
        names: &FieldNames,
        header_format: Option<&str>,
        assumed_year: i32,
    ) -> Result<Self, String> {
        let index = FieldIndex::new(names);
        let pattern = header_format
            .map(|f| HeaderPattern::new(f, &index))
            .transpose()?;
        Ok(LineParser {
            index,
            pattern,
            times: HeaderTimeReader::new(assumed_year),
            path_buf: String::new(),
            time_buf: String::new(),
        })
    }

    /// Reads one line (without or with its line terminator).
    pub fn parse<'a>(&mut self, line: &'a str) -> Result<LogEvent<'a>, ParseError> {
        let line = line.trim();
        if line.is_empty() {
            return Err(ParseError::Empty);
        }
        let mut record = RawRecord::default();
        if line.starts_with('{') {
            json::read(line, &self.index, &mut self.path_buf, &mut record)?;
        } else if let Some(pattern) = &self.pattern {
            if !pattern.read(line, &mut record, &mut self.times, &mut self.time_buf) {
                return Err(ParseError::HeaderMismatch);
            }
        } else if logfmt::read(line, &self.index, &mut record) == 0 {
            return Err(ParseError::Unrecognised);
        }
        record.into_event()
    }
}
