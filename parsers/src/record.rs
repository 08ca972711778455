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
    /// A JSON string with escapes, as written between its quotes (checked, not decoded:
    /// most are never used, and a payload is decoded where it is read again).
    Escaped(&'a str),
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
            Raw::Escaped(raw) => Some(Cow::Owned(crate::json::decoded(raw))),
            Raw::U64(n) => Some(Cow::Owned(n.to_string())),
            Raw::I64(n) => Some(Cow::Owned(n.to_string())),
            Raw::F64(n) => Some(Cow::Owned(n.to_string())),
            Raw::Bool(b) => Some(Cow::Borrowed(if b { "true" } else { "false" })),
            Raw::Time(t) => Some(Cow::Owned(t.to_rfc3339())),
            Raw::Null | Raw::Compound => None,
        }
    }
}

/// The rank of a field no key supplied.
const EMPTY: u8 = u8::MAX;

/// The best-ranked value seen so far for each field of one record, at the field's
/// position in [`Field::LISTED`]: its rank (the candidate's position in its list, or a
/// text reader's rank; [`EMPTY`] when no key supplied it) and its value. Ranks and values
/// are kept apart: as `Option<(u8, Raw)>` slots, the compiler copied each value into its
/// slot one byte off through the stack, a stalled store that cost 10 % of a flat-JSON
/// replay (`perf`).
#[derive(Debug)]
pub(crate) struct RawRecord<'a> {
    ranks: [u8; Field::LISTED.len()],
    values: [Raw<'a>; Field::LISTED.len()],
    extra: Vec<(u16, Cow<'a, str>)>,
}

impl Default for RawRecord<'_> {
    fn default() -> Self {
        RawRecord {
            ranks: [EMPTY; Field::LISTED.len()],
            values: [const { Raw::Null }; Field::LISTED.len()],
            extra: Vec::new(),
        }
    }
}

impl<'a> RawRecord<'a> {
    /// Keeps `value` for `field` unless a better-ranked key already supplied it.
    #[inline]
    pub(crate) fn offer(&mut self, field: Field, rank: u8, value: Raw<'a>) {
        let Some(i) = field.slot() else {
            return self.offer_extra(field, value);
        };
        if rank < self.ranks[i] {
            self.ranks[i] = rank;
            self.values[i] = value;
        }
    }

    #[inline(never)]
    fn offer_extra(&mut self, field: Field, value: Raw<'a>) {
        if let (Field::Extra(i), Some(text)) = (field, value.into_text()) {
            self.extra.retain(|(j, _)| *j != i);
            self.extra.push((i, text));
        }
    }

    /// Whether some key supplied `field`.
    pub(crate) fn has(&self, field: Field) -> bool {
        self.rank(field).is_some()
    }

    /// The message as found, if it is a string (a payload to read again).
    pub(crate) fn message_text(&self) -> Option<&Cow<'a, str>> {
        let i = Field::Message.slot()?;
        match &self.values[i] {
            Raw::Str(s) if self.ranks[i] != EMPTY => Some(s),
            _ => None,
        }
    }

    /// The message as written, if it is a JSON string with escapes (a payload to decode
    /// and read again).
    pub(crate) fn message_escaped(&self) -> Option<&'a str> {
        let i = Field::Message.slot()?;
        match self.values[i] {
            Raw::Escaped(raw) if self.ranks[i] != EMPTY => Some(raw),
            _ => None,
        }
    }

    /// The rank of the value `field` holds (for `logheal inspect`: which key supplied it).
    pub(crate) fn rank(&self, field: Field) -> Option<u8> {
        let rank = self.ranks[field.slot()?];
        (rank != EMPTY).then_some(rank)
    }

    fn take(&mut self, field: Field) -> Option<Raw<'a>> {
        self.take_slot(field.slot()?).map(|(_, value)| value)
    }

    /// The rank and value at slot `i`, leaving it empty.
    fn take_slot(&mut self, i: usize) -> Option<(u8, Raw<'a>)> {
        let rank = self.ranks[i];
        if rank == EMPTY {
            return None;
        }
        self.ranks[i] = EMPTY;
        let value = match std::mem::replace(&mut self.values[i], Raw::Null) {
            Raw::Escaped(raw) => Raw::Str(Cow::Owned(crate::json::decoded(raw))),
            value => value,
        };
        Some((rank, value))
    }

    /// Takes in the record read from this record's message (the payload of an envelope),
    /// each string it keeps passed through `to` (the identity for a payload borrowed from
    /// the line; for one read from a decoded copy, borrowed back from the line or copied).
    /// A JSON payload is the app's own record: its values win. A text payload only fills
    /// in what the record lacks (a flat JSON record's own fields are facts; a guess from
    /// its message text is not), except that the message becomes the payload's own (a
    /// `msg=` pair, or the text after a line header that places the line in time; a
    /// level word alone ranks below `HEADER_RANK`: see `text::read`).
    pub(crate) fn absorb_payload<'b>(
        &mut self,
        mut payload: RawRecord<'b>,
        structured: bool,
        to: impl Fn(Cow<'b, str>) -> Cow<'a, str>,
    ) {
        for (i, v) in std::mem::take(&mut payload.extra) {
            if structured || !self.extra.iter().any(|(j, _)| *j == i) {
                self.extra.retain(|(j, _)| *j != i);
                self.extra.push((i, to(v)));
            }
        }
        let message = Field::Message.slot();
        for i in 0..Field::LISTED.len() {
            let Some((rank, value)) = payload.take_slot(i) else {
                continue;
            };
            // The message after a timed header, or a `msg=` pair of a logfmt payload; an
            // empty one (`msg=` with nothing after it) says nothing and keeps the text.
            let header_message = Some(i) == message
                && rank <= crate::text::HEADER_RANK
                && !matches!(&value, Raw::Str(s) if s.trim().is_empty());
            if structured || header_message || self.ranks[i] == EMPTY {
                self.ranks[i] = rank;
                self.values[i] = match value {
                    Raw::Str(s) => Raw::Str(to(s)),
                    // A payload string with escapes of its own (`\"` in the app's JSON):
                    // `to` maps text, so it is decoded here, not later in `take_slot`.
                    Raw::Escaped(raw) => Raw::Str(to(Cow::Owned(crate::json::decoded(raw)))),
                    Raw::U64(n) => Raw::U64(n),
                    Raw::I64(n) => Raw::I64(n),
                    Raw::F64(n) => Raw::F64(n),
                    Raw::Bool(b) => Raw::Bool(b),
                    Raw::Null => Raw::Null,
                    Raw::Time(t) => Raw::Time(t),
                    Raw::Compound => Raw::Compound,
                };
            }
        }
    }

    /// Interprets the collected values. A timestamp that is present but unreadable is an
    /// error (guessing would risk a wrong incident); a status that is not an HTTP code
    /// (`"error"`, `"-"`, `0`) is read as none, and a list of them (`"503, 503"`) by its
    /// last element.
    pub(crate) fn into_event(mut self) -> Result<LogEvent<'a>, ParseError> {
        let ts = self.take(Field::Ts).map(read_time).transpose()?.flatten();
        let status = self
            .take(Field::Status)
            .and_then(read_status)
            .or_else(|| self.take(Field::Grpc).and_then(grpc_as_http));
        let level = self.take(Field::Level).map_or(Level::Unknown, read_level);
        let mut text = |field: Field| self.take(field).and_then(Raw::into_text);
        let service = text(Field::Service)
            .or_else(|| {
                text(Field::Container)
                    .filter(|c| !matches!(c.as_ref(), "istio-proxy" | "envoy" | "linkerd-proxy"))
            })
            .or_else(|| text(Field::Pod).map(workload_of));
        Ok(LogEvent {
            ts,
            service,
            level,
            status,
            trace_id: text(Field::TraceId).and_then(normalise_trace),
            span_id: text(Field::SpanId).and_then(normalise_id),
            parent_span_id: text(Field::ParentSpanId).and_then(normalise_id),
            request_id: text(Field::RequestId).filter(|r| r != "-"),
            callee: text(Field::Callee).and_then(service_of_upstream),
            message: text(Field::Message).unwrap_or_default(),
            extra: self.extra,
        })
    }
}

/// A level from a name, or a number on the scale it must be on: OTel severity numbers
/// (1–24), pino/bunyan (10–60) or syslog/GELF (0–7).
fn read_level(raw: Raw<'_>) -> Level {
    let n = match raw {
        Raw::Str(s) => {
            let level = Level::parse(&s);
            if level != Level::Unknown {
                return level;
            }
            match s.trim().parse::<u64>() {
                Ok(n) => n,
                Err(_) => return Level::Unknown,
            }
        }
        Raw::U64(n) => n,
        Raw::F64(f) if f.fract() == 0.0 && f >= 0.0 => f as u64,
        _ => return Level::Unknown,
    };
    match n {
        // syslog / GELF
        0..=2 => Level::Fatal,
        3 => Level::Error,
        4 => Level::Warn,
        5..=6 => Level::Info,
        7 => Level::Debug,
        // OTel severityNumber
        8 => Level::Debug,
        9..=12 => Level::Info,
        13..=16 => Level::Warn,
        17..=20 => Level::Error,
        21..=24 => Level::Fatal,
        // pino / bunyan
        25..=35 => Level::Info,
        36..=45 => Level::Warn,
        46..=55 => Level::Error,
        56..=69 => Level::Fatal,
        _ => Level::Unknown,
    }
}

/// gRPC UNAVAILABLE is the 503 of gRPC, DEADLINE_EXCEEDED its 504.
fn grpc_as_http(raw: Raw<'_>) -> Option<u16> {
    let code = match raw {
        Raw::U64(n) => n,
        Raw::Str(s) => {
            let s = s.trim();
            if let Ok(n) = s.parse::<u64>() {
                n
            } else {
                let name: String = s.chars().filter(|c| *c != '_').collect();
                match name.to_ascii_lowercase().as_str() {
                    "unavailable" => 14,
                    "deadlineexceeded" => 4,
                    _ => return None,
                }
            }
        }
        _ => return None,
    };
    match code {
        14 => Some(503),
        4 => Some(504),
        _ => None,
    }
}

/// `checkout-7d9f8b6c5d-x2x7q` → `checkout` (a Deployment's pod); `db-0` stays.
fn workload_of(pod: Cow<'_, str>) -> Cow<'_, str> {
    let looks_hash = |s: &str, lens: &[usize]| {
        lens.contains(&s.len())
            && s.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    };
    let mut parts: Vec<&str> = pod.rsplitn(3, '-').collect();
    parts.reverse();
    match parts.as_slice() {
        [name, rs, id] if looks_hash(rs, &[5, 6, 7, 8, 9, 10]) && looks_hash(id, &[5]) => {
            Cow::Owned(name.to_string())
        }
        _ => match pod.rsplit_once('-') {
            // A DaemonSet's pod: name-xxxxx.
            Some((name, id)) if looks_hash(id, &[5]) && id.bytes().any(|c| c.is_ascii_digit()) => {
                Cow::Owned(name.to_string())
            }
            _ => pod,
        },
    }
}

/// The service a proxy called: `outbound|8080||payment.shop.svc.cluster.local` and
/// `payment:8080` are both `payment` (`inbound|…||` and `-` are none).
fn service_of_upstream(upstream: Cow<'_, str>) -> Option<Cow<'_, str>> {
    let u = upstream.trim();
    let host = match u.rsplit_once('|') {
        Some((_, host)) => host,
        None => u,
    };
    let host = host.split(':').next().unwrap_or("");
    let name = host.split('.').next().unwrap_or("");
    if name.is_empty() || name == "-" || name.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(Cow::Owned(name.to_string()))
}

/// Ids compare as lowercase hex; `""`, `"0"` and all-zero ids mean none.
/// Whether every byte is a lower-case hex digit: checked without a branch per byte, so
/// that the check of a 32-byte id compiles to a few vector instructions.
#[inline]
fn lower_hex(b: &[u8]) -> bool {
    b.iter().fold(true, |ok, &c| {
        ok & (c.is_ascii_digit() | (c.wrapping_sub(b'a') < 6))
    })
}

fn normalise_id(id: Cow<'_, str>) -> Option<Cow<'_, str>> {
    let b = id.as_bytes();
    if !b.is_empty() && lower_hex(b) && b.iter().any(|c| *c != b'0') {
        return Some(id);
    }
    let t = id.trim();
    if t.is_empty() || t.bytes().all(|c| c == b'0') || t == "-" {
        return None;
    }
    if t.len() != id.len() || t.bytes().any(|c| c.is_ascii_uppercase()) {
        return Some(Cow::Owned(t.to_ascii_lowercase()));
    }
    Some(id)
}

/// A trace id in its comparable form: a `traceparent` or `b3` value gives its trace
/// part, a 64-bit id zero-padded to 128 bits matches its short form, a decimal Datadog
/// id becomes its 16 hex digits, case is folded.
fn normalise_trace(id: Cow<'_, str>) -> Option<Cow<'_, str>> {
    // The common case, checked in one pass: lowercase hex, not zero-padded.
    let b = id.as_bytes();
    if (b.len() == 32 || b.len() == 16) && lower_hex(b) && !b.starts_with(b"0000000000000000") {
        return Some(id);
    }
    let t = id.trim();
    let b = t.as_bytes();
    // traceparent: 00-<32>-<16>-<2>
    if b.len() == 55 && b[2] == b'-' && b[35] == b'-' {
        if let Some(trace) = t.get(3..35) {
            return normalise_trace(Cow::Owned(trace.to_string()));
        }
    }
    // b3: trace-span[-sampled[-parent]]
    if let Some((trace, _)) = t.split_once('-') {
        if (trace.len() == 16 || trace.len() == 32) && trace.bytes().all(|c| c.is_ascii_hexdigit())
        {
            return normalise_trace(Cow::Owned(trace.to_string()));
        }
    }
    // projects/<p>/traces/<id> (Google Cloud)
    if b.contains(&b'/') {
        if let Some((_, trace)) = t.rsplit_once("/traces/") {
            return normalise_trace(Cow::Owned(trace.to_string()));
        }
    }
    if b.len() == 32 && t.starts_with("0000000000000000") {
        return normalise_id(Cow::Owned(t[16..].to_string()));
    }
    // Datadog's `dd.trace_id`: a trace id's lower 64 bits in decimal. Only 17 to 20
    // digits are read so: a 16-character id of digits is hex as often as not, and
    // Datadog's random ids have fewer than 17 digits once in a thousand.
    if (17..=20).contains(&b.len()) && b.iter().all(u8::is_ascii_digit) {
        if let Ok(n) = t.parse::<u64>() {
            return (n != 0).then(|| Cow::Owned(format!("{n:016x}")));
        }
    }
    normalise_id(id)
}

/// The part of a normalised trace id that traces are matched by: its lower 64 bits
/// (the last 16 hex digits of a 128-bit id). A tracer that logs only those (Datadog's
/// `dd.trace_id`, B3's 64-bit ids) and one that logs all 128 bits of the same trace then
/// meet, as Datadog treats them; two traces of random 128-bit ids share their lower 64
/// bits with odds of one in 2^64. An id of another form (an application's own, of any
/// length) is matched whole: its last 16 characters need not be random.
pub fn trace_match_part(id: &str) -> &str {
    if id.len() == 32 && lower_hex(id.as_bytes()) {
        &id[16..]
    } else {
        id
    }
}

fn read_time(raw: Raw<'_>) -> Result<Option<EventTime>, ParseError> {
    let t = match raw {
        Raw::Null => return Ok(None),
        Raw::Str(s) => parse_timestamp(&s),
        Raw::Escaped(raw) => parse_timestamp(&crate::json::decoded(raw)),
        Raw::U64(n) => from_epoch_int(n),
        Raw::F64(n) => from_epoch_f64(n),
        Raw::Time(t) => Some(t),
        Raw::I64(_) | Raw::Bool(_) | Raw::Compound => None,
    };
    t.map(Some).ok_or(ParseError::InvalidTimestamp)
}

fn read_status(raw: Raw<'_>) -> Option<u16> {
    let n = match raw {
        Raw::U64(n) => Some(n),
        Raw::F64(f) if f.fract() == 0.0 && f >= 0.0 => Some(f as u64),
        // "503", or a list of upstream attempts ("502, 503"): the last one.
        Raw::Str(s) => s
            .rsplit([',', ':', ' '])
            .find(|p| !p.trim().is_empty())
            .and_then(|p| p.trim().parse::<u64>().ok()),
        _ => None,
    };
    n.filter(|c| (100..=599).contains(c)).map(|c| c as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_is_matched_by_the_lower_64_bits_of_a_128_bit_hex_id_only() {
        assert_eq!(
            trace_match_part("4bf92f3577b34da6a3ce929d0e0e4736"),
            "a3ce929d0e0e4736"
        );
        assert_eq!(trace_match_part("a3ce929d0e0e4736"), "a3ce929d0e0e4736");
        // An application's own 32-character id is matched whole.
        let own = "checkout-2026-03-14-000000000001";
        assert_eq!(own.len(), 32);
        assert_eq!(trace_match_part(own), own);
        assert_eq!(trace_match_part("t1"), "t1");
    }

    #[test]
    fn lower_hex_is_exactly_digits_and_a_to_f() {
        for c in 0..=u8::MAX {
            let want = c.is_ascii_digit() || (b'a'..=b'f').contains(&c);
            assert_eq!(lower_hex(&[c]), want, "byte {c}");
            assert_eq!(lower_hex(&[b'0', c, b'f']), want, "byte {c} inside");
        }
        assert!(lower_hex(b""));
        assert!(lower_hex(b"4bf92f3577b34da6a3ce929d0e0e4736"));
        assert!(!lower_hex(b"4BF92F3577B34DA6A3CE929D0E0E4736"));
    }
}
