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

/// `s`, a part of `text` (decoded from `raw` with `marks`), borrowed from `raw` where
/// it stands there unchanged; a copy when an escape was decoded inside it (or when it is
/// not a part of `text`).
fn borrow_back<'a>(s: &str, text: &str, raw: &'a str, marks: &[json::Mark]) -> Cow<'a, str> {
    let at = (s.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
    let inside = at.checked_add(s.len()).is_some_and(|end| end <= text.len());
    inside
        .then(|| json::written_at(marks, at, s.len()))
        .flatten()
        .and_then(|from| raw.get(from..from + s.len()))
        .filter(|&written| written == s)
        .map_or_else(|| Cow::Owned(s.to_owned()), Cow::Borrowed)
}

/// Whether a record's message is to be read again as a payload. A record that already
/// has a level and a trace or request id is an application's own record: its message is
/// a message, unless it holds a JSON object.
fn is_payload(record: &RawRecord<'_>, message: &str) -> bool {
    let text = message.trim();
    let complete =
        record.has(Field::Level) && (record.has(Field::TraceId) || record.has(Field::RequestId));
    !text.is_empty() && (!complete || text.starts_with('{'))
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

    /// The record's message read again as the payload of an envelope, if it is one
    /// (`is_payload`).
    fn read_payload<'a>(&mut self, record: &mut RawRecord<'a>) {
        if let Some(raw) = record.message_escaped() {
            return self.read_escaped_payload(record, raw);
        }
        // Borrowed from the line (the JSON reader keeps a string with escapes as written,
        // above): the payload borrows from it too, with no copy.
        let Some(&Cow::Borrowed(message)) = record.message_text() else {
            return;
        };
        if is_payload(record, message) {
            if let Some((payload, structured)) = self.payload_of(message.trim()) {
                record.absorb_payload(payload, structured, |s| s);
            }
        }
    }

    /// The same for a message with escapes (the app's JSON in a shipper's string, a line
    /// with its `\n`), read from its decoded text: the JSON reader decodes a message into
    /// a buffer kept from line to line as it reads it. What the payload holds is borrowed
    /// back from the line, where it stands unchanged unless it held an escape of its own,
    /// so such a line costs no allocation.
    fn read_escaped_payload<'a>(&mut self, record: &mut RawRecord<'a>, raw: &'a str) {
        // Taken out while the payload is read (the reader's own scratch is not used for
        // payloads, which have theirs), and put back with its buffers.
        let mut decoded = std::mem::take(&mut self.json.decoded);
        decoded.decode(raw);
        if is_payload(record, &decoded.text) {
            if let Some((payload, structured)) = self.payload_of(decoded.text.trim()) {
                let (text, marks) = (&decoded.text, &decoded.marks);
                record.absorb_payload(payload, structured, |s| borrow_back(&s, text, raw, marks));
            }
        }
        self.json.decoded = decoded;
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A string's contents as JSON writes them (escapes and all), decoded, with marks.
    fn written(s: &str) -> (String, String, Vec<json::Mark>) {
        let quoted = serde_json::to_string(s).expect("a string serialises");
        let raw = quoted[1..quoted.len() - 1].to_string();
        let (mut text, mut marks) = (String::new(), Vec::new());
        json::decode(&raw, &mut text, Some(&mut marks));
        (raw, text, marks)
    }

    #[test]
    fn parts_without_escapes_are_borrowed_from_the_written_string() {
        let (raw, text, marks) = written("say \"hi\" to é\tthere, then stop");
        assert_eq!(text, "say \"hi\" to é\tthere, then stop");
        let part = |from: usize, to: usize| borrow_back(&text[from..to], &text, &raw, &marks);
        assert!(matches!(part(0, 3), Cow::Borrowed("say")));
        assert!(matches!(part(5, 7), Cow::Borrowed("hi")));
        assert!(matches!(part(15, 20), Cow::Borrowed("there")));
        // Across an escape: a copy.
        assert!(matches!(part(4, 8), Cow::Owned(ref o) if o == "\"hi\""));
        // Not a part of the text: a copy.
        assert!(matches!(
            borrow_back("x", &text, &raw, &marks),
            Cow::Owned(_)
        ));
    }

    #[test]
    fn an_apps_json_in_a_shippers_string_is_read_without_copying() {
        let mut p = LineParser::new(&FieldNames::default(), None, 2026).unwrap();
        let line = r#"{"kubernetes":{"pod_labels":{"app":"payment"}},"message":"{\"time\":\"2026-03-14T10:00:02Z\",\"level\":\"error\",\"msg\":\"payment returned 503\",\"status\":503,\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\"}\n","stream":"stdout"}"#;
        let e = p.parse(line).unwrap();
        assert_eq!(e.service.as_deref(), Some("payment"));
        assert_eq!(e.level, crate::Level::Error);
        assert_eq!(e.status, Some(503));
        assert!(matches!(e.message, Cow::Borrowed("payment returned 503")));
        assert!(matches!(
            e.trace_id,
            Some(Cow::Borrowed("4bf92f3577b34da6a3ce929d0e0e4736"))
        ));
        // A value with escapes of its own is decoded twice, into a copy.
        let line = r#"{"message":"{\"level\":\"warn\",\"msg\":\"a \\\"quoted\\\" word\"}"}"#;
        let e = p.parse(line).unwrap();
        assert_eq!(e.message, r#"a "quoted" word"#);
        assert!(matches!(e.message, Cow::Owned(_)));
    }

    #[test]
    fn the_payload_is_the_best_ranked_messages_whatever_came_last() {
        let mut p = LineParser::new(&FieldNames::default(), None, 2026).unwrap();
        let message = r#""message":"{\"level\":\"error\",\"msg\":\"from \\\"message\\\"\"}""#;
        let log = r#""log":"{\"level\":\"warn\",\"msg\":\"from log\"}""#;
        // `message` ranks above `log`, and each line reads the one before it warm.
        for line in [
            format!("{{{message},{log}}}"),
            format!("{{{log},{message}}}"),
        ] {
            let e = p.parse(&line).unwrap();
            assert_eq!(e.message, r#"from "message""#, "{line}");
            assert_eq!(e.level, crate::Level::Error, "{line}");
        }
    }

    proptest! {
        /// Any part of a decoded string reads the same borrowed back, and is borrowed
        /// exactly when JSON writes it as it is.
        #[test]
        fn any_part_reads_the_same_borrowed_back(
            s in "\\PC{0,40}|[a-z\"\\\\\n\t\u{1}é😀 ]{0,40}",
            a in 0usize..64,
            b in 0usize..64,
        ) {
            let (raw, text, marks) = written(&s);
            prop_assert_eq!(&text, &s);
            let bounds: Vec<usize> = (0..=text.len()).filter(|&i| text.is_char_boundary(i)).collect();
            let (from, to) = (bounds[a % bounds.len()], bounds[b % bounds.len()]);
            let (from, to) = (from.min(to), from.max(to));
            let part = &text[from..to];
            let back = borrow_back(part, &text, &raw, &marks);
            prop_assert_eq!(back.as_ref(), part);
            let as_written = serde_json::to_string(part).expect("serialises");
            let unchanged = as_written[1..as_written.len() - 1] == *part;
            prop_assert_eq!(matches!(back, Cow::Borrowed(_)), unchanged, "{:?}", part);
        }
    }
}
