//! [`LineParser`]: detects the format of each line (JSON object, header pattern if one is
//! configured, else logfmt) and reads it into a [`LogEvent`].

use crate::fields::{Field, FieldIndex, FieldNames};
use crate::pattern::{FormatError, HeaderPattern};
use crate::record::{Raw, RawRecord};
use crate::text::{self, Finders};
use crate::time::HeaderTimeReader;
use crate::{json, LogEvent};
use std::borrow::Cow;
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
}

impl ParseError {
    /// Every error, in the order summaries list them.
    pub const ALL: [ParseError; 5] = [
        ParseError::Empty,
        ParseError::MalformedJson,
        ParseError::Unrecognised,
        ParseError::HeaderMismatch,
        ParseError::InvalidTimestamp,
    ];

    /// A short snake_case name for counters and summaries.
    pub fn reason(self) -> &'static str {
        match self {
            ParseError::Empty => "empty_line",
            ParseError::MalformedJson => "malformed_json",
            ParseError::Unrecognised => "unrecognised_format",
            ParseError::HeaderMismatch => "header_mismatch",
            ParseError::InvalidTimestamp => "invalid_timestamp",
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for ParseError {}

/// What a line was read as (`logheal inspect` reports it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recognised {
    /// `json` (an object: flat, ECS, or a shipper's envelope), `text`, or `header` (the
    /// configured `--format`).
    pub record: &'static str,
    /// What the record's message held, read again: `json`, a text shape
    /// (`envoy`, `nginx`, `klog`, `app-header`, `logfmt`) or `plain`.
    pub payload: &'static str,
}

/// Reads lines into events. Holds scratch buffers, so one parser serves one thread.
#[derive(Debug, Clone)]
pub struct LineParser {
    index: FieldIndex,
    names: FieldNames,
    pattern: Option<HeaderPattern>,
    /// Text line shapes of the job's configuration, tried before the built-in ones.
    patterns: Vec<HeaderPattern>,
    times: HeaderTimeReader,
    finders: Finders,
    assumed_year: i32,
    /// The JSON reader's path buffer and the keys of recent records.
    json: json::Scratch,
    /// The same for payloads (an app's JSON inside a shipper's record): their keys are
    /// the app's, not the shipper's.
    payload_json: json::Scratch,
    time_buf: String,
    /// What the last line was read as, and which candidate supplied each field.
    last: Recognised,
    last_ranks: [Option<u8>; 13],
}

impl LineParser {
    /// A parser for the given field names and, for text logs, a Loghub-style header format.
    /// `assumed_year` completes header dates that carry no year.
    pub fn new(
        names: &FieldNames,
        header_format: Option<&str>,
        assumed_year: i32,
    ) -> Result<Self, FormatError> {
        let index = FieldIndex::new(names);
        let pattern = header_format
            .map(|f| HeaderPattern::new(f, &index))
            .transpose()?;
        Ok(LineParser {
            index,
            names: names.clone(),
            pattern,
            patterns: Vec::new(),
            times: HeaderTimeReader::new(assumed_year),
            finders: Finders::default(),
            assumed_year,
            json: json::Scratch::default(),
            payload_json: json::Scratch::default(),
            time_buf: String::new(),
            last: Recognised::default(),
            last_ranks: [None; 13],
        })
    }

    /// Adds text line shapes (Loghub-style header formats, as `--format` takes), tried in
    /// order before the built-in shapes, for text lines and for envelopes' text payloads.
    /// An error names the pattern (by position in `patterns`) and what is wrong with it.
    pub fn with_patterns(mut self, patterns: &[String]) -> Result<Self, (usize, FormatError)> {
        for (i, p) in patterns.iter().enumerate() {
            self.patterns
                .push(HeaderPattern::new(p, &self.index).map_err(|e| (i, e))?);
        }
        Ok(self)
    }

    /// The first configured pattern that reads `text` into `record` (a pattern with a
    /// date or time fits only when they read as a time).
    fn configured<'b>(&mut self, text: &'b str, record: &mut RawRecord<'b>) -> bool {
        for pattern in &self.patterns {
            let mut attempt = RawRecord::default();
            if pattern.read(text, &mut attempt, &mut self.times, &mut self.time_buf)
                && (!pattern.has_time() || attempt.has(Field::Ts))
            {
                *record = attempt;
                return true;
            }
        }
        false
    }

    /// Reads one line (without or with its line terminator).
    ///
    /// A JSON object is read with the field candidates; its message, when it is a string,
    /// is the payload of a shipper's envelope and is read again: as JSON (the app's own
    /// record, whose values win), or as text (a line shape's header and `key=value`
    /// pairs, which fill in what the envelope lacks). Any other line is read with the
    /// configured header format, or as text.
    pub fn parse<'a>(&mut self, line: &'a str) -> Result<LogEvent<'a>, ParseError> {
        let line = line.trim();
        if line.is_empty() {
            return Err(ParseError::Empty);
        }
        let mut record = RawRecord::default();
        if line.starts_with('{') {
            json::read(line, &self.index, &mut self.json, &mut record)?;
            self.last = Recognised {
                record: "json",
                payload: "none",
            };
            self.read_payload(&mut record);
        } else if let Some(pattern) = &self.pattern {
            if !pattern.read(line, &mut record, &mut self.times, &mut self.time_buf) {
                return Err(ParseError::HeaderMismatch);
            }
            self.last = Recognised {
                record: "header",
                payload: "none",
            };
        } else if self.configured(line, &mut record) {
            self.last = Recognised {
                record: "pattern",
                payload: "none",
            };
        } else {
            let (shape, found) = text::read(
                line,
                &self.index,
                &self.finders,
                self.assumed_year,
                &mut record,
            );
            if found == 0 {
                return Err(ParseError::Unrecognised);
            }
            if record.message_text().is_none() {
                record.offer(
                    Field::Message,
                    text::HEADER_RANK,
                    Raw::Str(Cow::Borrowed(line)),
                );
            }
            self.last = Recognised {
                record: "text",
                payload: shape.name(),
            };
        }
        for (rank, field) in self.last_ranks.iter_mut().zip(Field::LISTED) {
            *rank = record.rank(field);
        }
        record.into_event()
    }

    /// The record's message read again as the payload of an envelope. A record that
    /// already has a level and a trace or request id is an application's own record:
    /// its message is a message (unless it holds a JSON object), and is left as it is.
    fn read_payload<'a>(&mut self, record: &mut RawRecord<'a>) {
        let Some(message) = record.message_text().cloned() else {
            return;
        };
        let text = message.trim();
        if text.is_empty() {
            return;
        }
        let complete = record.has(Field::Level)
            && (record.has(Field::TraceId) || record.has(Field::RequestId));
        if complete && !text.starts_with('{') {
            return;
        }
        match message {
            Cow::Borrowed(line) => {
                // Borrowed from the line: the payload borrows from it too (no copy).
                if let Some((payload, structured)) = self.payload_of(line.trim()) {
                    record.absorb_payload(payload, structured);
                }
            }
            Cow::Owned(owned) => {
                if let Some((payload, structured)) = self.payload_of(owned.trim()) {
                    record.absorb_payload(payload.into_owned(), structured);
                }
            }
        }
    }

    /// A payload read as JSON (`true`: the app's own record) or as text; `None` when
    /// nothing in it is recognised.
    fn payload_of<'b>(&mut self, text: &'b str) -> Option<(RawRecord<'b>, bool)> {
        let mut payload = RawRecord::default();
        if text.starts_with('{') && text.ends_with('}') {
            json::read(text, &self.index, &mut self.payload_json, &mut payload).ok()?;
            self.last.payload = "json";
            return Some((payload, true));
        }
        if self.configured(text, &mut payload) {
            self.last.payload = "pattern";
            // A configured shape is as good as structured fields.
            return Some((payload, true));
        }
        let (shape, found) = text::read(
            text,
            &self.index,
            &self.finders,
            self.assumed_year,
            &mut payload,
        );
        self.last.payload = shape.name();
        (found > 0).then_some((payload, false))
    }

    /// What the last line given to [`parse`](Self::parse) was read as.
    pub fn recognised(&self) -> Recognised {
        self.last
    }

    /// The key (candidate path) that supplied `field` for the last line, or `header` when
    /// a text header did.
    pub fn source_of(&self, field: Field) -> Option<&str> {
        let i = Field::LISTED.iter().position(|f| *f == field)?;
        let rank = self.last_ranks[i]?;
        if rank >= text::HEADER_RANK {
            return Some("text header");
        }
        self.names.lists()[i]
            .get(usize::from(rank))
            .map(String::as_str)
    }
}
