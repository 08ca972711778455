//! Raw field values as a format reader finds them, and their conversion into a [`LogEvent`]
//! (shared by the JSON, logfmt and header-pattern readers).

use crate::fields::Field;
use crate::time::{from_epoch_f64, from_epoch_int, parse_timestamp};
use crate::{EventTime, Level, LogEvent, ParseError};
use std::borrow::Cow;

/// A scalar as found in the record, before interpretation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Raw<'a> {
    Str(Cow<'a, str>),
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
    Null,
    /// A time a format reader already parsed (header patterns).
    Time(EventTime),
    /// An object or array where a scalar was expected.
    Compound,
}

impl<'a> Raw<'a> {
    /// The value as text, for fields that are names or ids. Numbers are written out;
    /// null and empty strings count as absent.
    fn into_text(self) -> Option<Cow<'a, str>> {
        match self {
            Raw::Str(s) if s.is_empty() => None,
            Raw::Str(s) => Some(s),
            Raw::U64(n) => Some(Cow::Owned(n.to_string())),
            Raw::I64(n) => Some(Cow::Owned(n.to_string())),
            Raw::F64(n) => Some(Cow::Owned(n.to_string())),
            Raw::Bool(b) => Some(Cow::Borrowed(if b { "true" } else { "false" })),
            Raw::Time(t) => Some(Cow::Owned(t.to_rfc3339())),
            Raw::Null | Raw::Compound => None,
        }
    }
}

type Slot<'a> = Option<(u8, Raw<'a>)>;

/// The best-ranked value seen so far for each field of one record.
#[derive(Debug, Default)]
pub(crate) struct RawRecord<'a> {
    ts: Slot<'a>,
    level: Slot<'a>,
    service: Slot<'a>,
    status: Slot<'a>,
    trace_id: Slot<'a>,
    span_id: Slot<'a>,
    parent_span_id: Slot<'a>,
    message: Slot<'a>,
    extra: Vec<(u16, Cow<'a, str>)>,
}

impl<'a> RawRecord<'a> {
    /// Keeps `value` for `field` unless a better-ranked key already supplied it.
    pub(crate) fn offer(&mut self, field: Field, rank: u8, value: Raw<'a>) {
        let slot = match field {
            Field::Ts => &mut self.ts,
            Field::Level => &mut self.level,
            Field::Service => &mut self.service,
            Field::Status => &mut self.status,
            Field::TraceId => &mut self.trace_id,
            Field::SpanId => &mut self.span_id,
            Field::ParentSpanId => &mut self.parent_span_id,
            Field::Message => &mut self.message,
            Field::Extra(i) => {
                if let Some(text) = value.into_text() {
                    self.extra.retain(|(j, _)| *j != i);
                    self.extra.push((i, text));
                }
                return;
            }
        };
        if slot.as_ref().is_none_or(|(r, _)| rank < *r) {
            *slot = Some((rank, value));
        }
    }

    /// Interprets the collected values. A timestamp or status that is present but
    /// unreadable is an error: guessing would risk a wrong incident.
    pub(crate) fn into_event(self) -> Result<LogEvent<'a>, ParseError> {
        let value = |slot: Slot<'a>| slot.map(|(_, v)| v);
        let ts = value(self.ts).map(read_time).transpose()?.flatten();
        let status = value(self.status).map(read_status).transpose()?.flatten();
        let level = match value(self.level) {
            Some(Raw::Str(s)) => Level::parse(&s),
            _ => Level::Unknown,
        };
        Ok(LogEvent {
            ts,
            service: value(self.service).and_then(Raw::into_text),
            level,
            status,
            trace_id: value(self.trace_id).and_then(Raw::into_text),
            span_id: value(self.span_id).and_then(Raw::into_text),
            parent_span_id: value(self.parent_span_id).and_then(Raw::into_text),
            message: value(self.message)
                .and_then(Raw::into_text)
                .unwrap_or_default(),
            extra: self.extra,
        })
    }
}

fn read_time(raw: Raw<'_>) -> Result<Option<EventTime>, ParseError> {
    let t = match raw {
        Raw::Null => return Ok(None),
        Raw::Str(s) => parse_timestamp(&s),
        Raw::U64(n) => from_epoch_int(n),
        Raw::F64(n) => from_epoch_f64(n),
        Raw::Time(t) => Some(t),
        Raw::I64(_) | Raw::Bool(_) | Raw::Compound => None,
    };
    t.map(Some).ok_or(ParseError::InvalidTimestamp)
}

fn read_status(raw: Raw<'_>) -> Result<Option<u16>, ParseError> {
    let n = match raw {
        Raw::Null => return Ok(None),
        Raw::U64(n) => Some(n),
        Raw::F64(f) if f.fract() == 0.0 && f >= 0.0 => Some(f as u64),
        Raw::Str(s) => s.trim().parse::<u64>().ok(),
        Raw::I64(_) | Raw::F64(_) | Raw::Bool(_) | Raw::Time(_) | Raw::Compound => None,
    };
    match n {
        Some(code @ 100..=599) => Ok(Some(code as u16)),
        _ => Err(ParseError::InvalidStatus),
    }
}
