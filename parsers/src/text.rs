//! Text lines, and the text payloads of shipper envelopes: a library of common line shapes
//! read by hand (no regex, no allocation), one pass each.
//!
//! - Envoy / Istio access lines: `[START_TIME] "METHOD PATH PROTO" CODE FLAGS … "XFF" "UA"
//!   "REQUEST-ID" "AUTHORITY" "UPSTREAM-HOST" …` (the time may be absent).
//! - nginx `combined` and ingress-nginx `upstreaminfo`: `ADDR - USER [dd/Mon/yyyy:HH:MM:SS
//!   +zzzz] "REQUEST" STATUS …` (ingress-nginx ends with the request id).
//! - klog: `E1015 11:01:46.499073  1 file.go:39] message` (the letter is the level).
//! - Application headers (Spring Boot 2/3, logback/log4j2, Python logging, Sleuth,
//!   Micrometer, SkyWalking, …): an optional ISO-8601 or `yyyy-mm-dd hh:mm:ss,mmm` time (or
//!   a time of day, which is not enough to place the line and is skipped), a level token,
//!   bracket groups (`[app,trace,span]`, `[trace-span]`, `--- [app] [thread]`,
//!   `[TID:…]`, `[SW_CTX:[svc,inst,trace,seg,span]]`), then the message after ` : ` or
//!   ` - `.
//!
//! Anywhere in a line: `key=value` pairs (`status=503`, `trace_id=…`, `[trace_id=…]`),
//! `TraceID: …` / `SpanID: …`, and W3C `traceparent` values (`00-<32 hex>-<16 hex>-<2 hex>`).
//!
//! Values found in a line's header are offered at [`HEADER_RANK`], below every structured
//! field, so the fields of a JSON record or envelope win over guesses from text.

use crate::fields::{Field, FieldIndex};
use crate::record::{Raw, RawRecord};
use crate::EventTime;
use memchr::memmem;
use std::borrow::Cow;

/// The rank of values read from a text header (structured fields rank below 200).
pub(crate) const HEADER_RANK: u8 = 200;

/// Which shape a text line was read as (`logheal inspect` shows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextShape {
    Envoy,
    Nginx,
    Klog,
    /// A time and/or level header (Spring, logback, log4j2, Python, Go, ...).
    AppHeader,
    /// Only `key=value` pairs.
    Logfmt,
    /// No header: the whole line is the message.
    Plain,
}

impl TextShape {
    pub fn name(self) -> &'static str {
        match self {
            TextShape::Envoy => "envoy",
            TextShape::Nginx => "nginx",
            TextShape::Klog => "klog",
            TextShape::AppHeader => "app-header",
            TextShape::Logfmt => "logfmt",
            TextShape::Plain => "plain",
        }
    }
}

/// Substring finders built once per parser.
#[derive(Debug, Clone)]
pub(crate) struct Finders {
    id_colon: memmem::Finder<'static>,
    status: memmem::Finder<'static>,
    dash_sep: memmem::Finder<'static>,
    colon_sep: memmem::Finder<'static>,
    http: memmem::Finder<'static>,
    unavailable: memmem::Finder<'static>,
}

impl Default for Finders {
    fn default() -> Self {
        Finders {
            id_colon: memmem::Finder::new("ID: "),
            status: memmem::Finder::new("tatus"),
            dash_sep: memmem::Finder::new(" - "),
            colon_sep: memmem::Finder::new(" : "),
            http: memmem::Finder::new("HTTP "),
            unavailable: memmem::Finder::new(" Service Unavailable"),
        }
    }
}

/// Reads a text line (or a text payload) into `record`; returns its shape and how many
/// fields it found. `assumed_year` completes klog's yearless dates.
pub(crate) fn read<'a>(
    line: &'a str,
    index: &FieldIndex,
    finders: &Finders,
    assumed_year: i32,
    record: &mut RawRecord<'a>,
) -> (TextShape, usize) {
    let b = line.as_bytes();
    let mut found = 0;
    let shape = if let Some(n) = envoy(line, record) {
        found += n;
        TextShape::Envoy
    } else if let Some(n) = nginx(line, finders, record) {
        found += n;
        TextShape::Nginx
    } else if let Some(n) = klog(line, assumed_year, record) {
        found += n;
        TextShape::Klog
    } else {
        let n = app_header(line, finders, record);
        found += n;
        if n > 0 {
            TextShape::AppHeader
        } else {
            TextShape::Plain
        }
    };
    // Where the message begins: after the header the shape found, if any.
    let content = match record.message_text() {
        Some(Cow::Borrowed(m)) => offset_in(line, m),
        _ => None,
    };
    let pairs = pairs(line, content.unwrap_or(0), index, record);
    found += pairs;
    found += markers(b, line, finders, record);
    if !matches!(shape, TextShape::Envoy | TextShape::Nginx) && !record.has(Field::Status) {
        found += status_phrase(line, finders, record);
    }
    let shape = if shape == TextShape::Plain && pairs > 0 {
        TextShape::Logfmt
    } else {
        shape
    };
    (shape, found)
}

fn offer_str<'a>(record: &mut RawRecord<'a>, field: Field, value: &'a str) {
    if !value.is_empty() {
        record.offer(field, HEADER_RANK, Raw::Str(Cow::Borrowed(value)));
    }
}

// ---------------------------------------------------------------- times

fn digits(b: &[u8], at: usize, n: usize) -> Option<i64> {
    let s = b.get(at..at + n)?;
    let mut v = 0i64;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(v)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn to_time(
    (y, mo, d): (i64, i64, i64),
    (h, mi, s): (i64, i64, i64),
    nanos: i64,
    offset_s: i64,
) -> Option<EventTime> {
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = match mo {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=12).contains(&mo) || !(1..=month_days).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset_s;
    secs.checked_mul(1_000_000_000)?
        .checked_add(nanos)
        .map(EventTime)
}

/// A fraction of a second after `.` or `,` at `at`: (nanoseconds, bytes used).
fn fraction(b: &[u8], at: usize) -> (i64, usize) {
    if !matches!(b.get(at), Some(b'.' | b',')) {
        return (0, 0);
    }
    let mut nanos = 0i64;
    let mut n = 0;
    while let Some(c) = b.get(at + 1 + n).filter(|c| c.is_ascii_digit()) {
        if n < 9 {
            nanos = nanos * 10 + i64::from(c - b'0');
        }
        n += 1;
    }
    if n == 0 {
        return (0, 0);
    }
    for _ in n..9 {
        nanos *= 10;
    }
    (nanos, n + 1)
}

/// `YYYY-MM-DD[T ]HH:MM:SS[.,frac][Z|±HH[:]MM]` at the start of `b`: the time (no zone
/// means UTC) and the bytes used.
pub(crate) fn iso_prefix(b: &[u8]) -> Option<(EventTime, usize)> {
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (digits(b, 0, 4)?, digits(b, 5, 2)?, digits(b, 8, 2)?);
    let (h, mi, s) = (digits(b, 11, 2)?, digits(b, 14, 2)?, digits(b, 17, 2)?);
    let (nanos, used) = fraction(b, 19);
    let mut at = 19 + used;
    let mut offset = 0;
    match b.get(at) {
        Some(b'Z' | b'z') => at += 1,
        Some(&sign @ (b'+' | b'-')) => {
            let oh = digits(b, at + 1, 2)?;
            let colon = usize::from(b.get(at + 3) == Some(&b':'));
            let om = digits(b, at + 3 + colon, 2)?;
            offset = (oh * 3600 + om * 60) * if sign == b'+' { 1 } else { -1 };
            at += 5 + colon;
        }
        _ => {}
    }
    Some((to_time((y, mo, d), (h, mi, s), nanos, offset)?, at))
}

/// `HH:MM:SS[.,frac]` at the start of `b`: a time of day, which cannot place a line; the
/// bytes it spans.
fn time_of_day(b: &[u8]) -> Option<usize> {
    if b.len() < 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    digits(b, 0, 2)?;
    digits(b, 3, 2)?;
    digits(b, 6, 2)?;
    Some(8 + fraction(b, 8).1)
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Common Log Format: `dd/Mon/yyyy:HH:MM:SS +zzzz`.
pub(crate) fn clf(b: &[u8]) -> Option<EventTime> {
    if b.len() < 26 || b[2] != b'/' || b[6] != b'/' || b[11] != b':' || b[20] != b' ' {
        return None;
    }
    let d = digits(b, 0, 2)?;
    let mo = MONTHS.iter().position(|m| m[..] == b[3..6])? as i64 + 1;
    let y = digits(b, 7, 4)?;
    let (h, mi, s) = (digits(b, 12, 2)?, digits(b, 15, 2)?, digits(b, 18, 2)?);
    let sign = match b[21] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let offset = (digits(b, 22, 2)? * 3600 + digits(b, 24, 2)? * 60) * sign;
    to_time((y, mo, d), (h, mi, s), 0, offset)
}

// ---------------------------------------------------------------- shapes

/// The quoted strings of `s` from `from` on: (start, end) of each inner text.
fn quoted(s: &[u8], from: usize, out: &mut [(usize, usize); 8]) -> usize {
    let mut n = 0;
    let mut i = from;
    while n < out.len() {
        let Some(open) = memchr::memchr(b'"', &s[i.min(s.len())..]) else {
            break;
        };
        let start = i + open + 1;
        let Some(close) = memchr::memchr(b'"', &s[start.min(s.len())..]) else {
            break;
        };
        out[n] = (start, start + close);
        n += 1;
        i = start + close + 1;
    }
    n
}

/// The whitespace-separated token of `s` starting at `at` (after blanks), and its end.
fn token(s: &str, at: usize) -> Option<(&str, usize)> {
    let b = s.as_bytes();
    let mut start = at;
    while b.get(start) == Some(&b' ') {
        start += 1;
    }
    if start >= b.len() {
        return None;
    }
    let end = memchr::memchr(b' ', &b[start..]).map_or(b.len(), |e| start + e);
    Some((&s[start..end], end))
}

fn status_of(tok: &str) -> Option<u16> {
    tok.parse::<u16>().ok().filter(|c| (100..=599).contains(c))
}

/// `METHOD ` at the start of a quoted request line.
fn is_request(b: &[u8]) -> bool {
    const METHODS: [&[u8]; 9] = [
        b"GET ",
        b"POST ",
        b"PUT ",
        b"DELETE ",
        b"PATCH ",
        b"HEAD ",
        b"OPTIONS ",
        b"CONNECT ",
        b"- ",
    ];
    METHODS.iter().any(|m| b.starts_with(m))
}

fn envoy<'a>(line: &'a str, record: &mut RawRecord<'a>) -> Option<usize> {
    let b = line.as_bytes();
    let mut found = 0;
    let request_at = if b.first() == Some(&b'[') {
        let (t, used) = iso_prefix(&b[1..])?;
        if b.get(1 + used) != Some(&b']') || b.get(2 + used..4 + used) != Some(b" \"") {
            return None;
        }
        record.offer(Field::Ts, HEADER_RANK, Raw::Time(t));
        found += 1;
        4 + used
    } else if b.first() == Some(&b'"') {
        1
    } else {
        return None;
    };
    if !is_request(&b[request_at..]) {
        return None;
    }
    let close = request_at + memchr::memchr(b'"', &b[request_at..])?;
    let (code, after_code) = token(line, close + 1)?;
    if let Some(status) = status_of(code) {
        record.offer(Field::Status, HEADER_RANK, Raw::U64(u64::from(status)));
        found += 1;
    }
    // The last three of the quoted strings after the request line are the request id,
    // the authority and the upstream host (Envoy's default and Istio's format alike).
    let mut q = [(0, 0); 8];
    let n = quoted(b, after_code, &mut q);
    if n >= 5 {
        let (s, e) = q[n - 3];
        offer_str(record, Field::RequestId, &line[s..e]);
        let (s, e) = q[n - 2];
        offer_str(record, Field::Callee, &line[s..e]);
        found += 1;
        // Istio: the upstream cluster follows the upstream host.
        let (_, last) = q[n - 1];
        if let Some((cluster, _)) = token(line, last + 1) {
            if cluster.starts_with("outbound|") {
                record.offer(
                    Field::Callee,
                    HEADER_RANK - 1,
                    Raw::Str(Cow::Borrowed(cluster)),
                );
            }
        }
    }
    let message = line[request_at - 1..].trim_end();
    record.offer(
        Field::Message,
        HEADER_RANK,
        Raw::Str(Cow::Borrowed(message)),
    );
    Some(found)
}

fn nginx<'a>(line: &'a str, f: &Finders, record: &mut RawRecord<'a>) -> Option<usize> {
    let b = line.as_bytes();
    // ADDR - USER [time] "request" status ...
    if !b.first()?.is_ascii_alphanumeric() {
        return None;
    }
    let dash = f.dash_sep.find(b.get(..64.min(b.len()))?)?;
    if dash == 0 || b[..dash].contains(&b'"') {
        return None;
    }
    let open = dash + 3 + memchr::memchr(b'[', &b[dash + 3..])?;
    let t = clf(&b[open + 1..])?;
    let close = open + 1 + memchr::memchr(b']', &b[open + 1..])?;
    if b.get(close + 1..close + 3) != Some(b" \"") {
        return None;
    }
    record.offer(Field::Ts, HEADER_RANK, Raw::Time(t));
    let mut found = 1;
    let request_at = close + 3;
    let end = request_at + memchr::memchr(b'"', &b[request_at..])?;
    let (code, _) = token(line, end + 1)?;
    if let Some(status) = status_of(code) {
        record.offer(Field::Status, HEADER_RANK, Raw::U64(u64::from(status)));
        found += 1;
    }
    // ingress-nginx's upstreaminfo ends with the request id (32 hex).
    let last = line.trim_end().rsplit(' ').next().unwrap_or("");
    if last.len() == 32 && last.bytes().all(|c| c.is_ascii_hexdigit()) {
        offer_str(record, Field::RequestId, last);
        found += 1;
    }
    record.offer(
        Field::Message,
        HEADER_RANK,
        Raw::Str(Cow::Borrowed(line[request_at..].trim_end())),
    );
    Some(found)
}

fn klog<'a>(line: &'a str, assumed_year: i32, record: &mut RawRecord<'a>) -> Option<usize> {
    let b = line.as_bytes();
    let level = match b.first()? {
        b'I' => "info",
        b'W' => "warn",
        b'E' => "error",
        b'F' => "fatal",
        _ => return None,
    };
    if b.len() < 22 || b[5] != b' ' || b[8] != b':' || b[11] != b':' || b[14] != b'.' {
        return None;
    }
    let (mo, d) = (digits(b, 1, 2)?, digits(b, 3, 2)?);
    let (h, mi, s) = (digits(b, 6, 2)?, digits(b, 9, 2)?, digits(b, 12, 2)?);
    let (nanos, _) = fraction(b, 14);
    let bracket = memchr::memmem::find(b, b"] ")?;
    if let Some(t) = to_time((i64::from(assumed_year), mo, d), (h, mi, s), nanos, 0) {
        record.offer(Field::Ts, HEADER_RANK, Raw::Time(t));
    }
    record.offer(Field::Level, HEADER_RANK, Raw::Str(Cow::Borrowed(level)));
    record.offer(
        Field::Message,
        HEADER_RANK,
        Raw::Str(Cow::Borrowed(line[bracket + 2..].trim())),
    );
    Some(3)
}

const LEVELS: [&str; 12] = [
    "INFO", "WARN", "WARNING", "ERROR", "DEBUG", "TRACE", "FATAL", "CRITICAL", "SEVERE", "NOTICE",
    "ERR", "PANIC",
];

fn is_level(tok: &str) -> bool {
    tok.len() <= 8 && LEVELS.iter().any(|l| l.eq_ignore_ascii_case(tok))
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_hexdigit())
}

/// A bracket group `[...]` of the header: what it says about the record.
fn bracket<'a>(inner: &'a str, after_dashes: bool, record: &mut RawRecord<'a>) -> usize {
    let b = inner.as_bytes();
    // Sleuth: [app,trace,span] or [app,trace,span,exportable].
    if let Some(comma) = memchr::memchr(b',', b) {
        let (app, rest) = (&inner[..comma], &inner[comma + 1..]);
        let mut parts = rest.split(',');
        let trace = parts.next().unwrap_or("").trim();
        let span = parts.next().unwrap_or("").trim();
        if is_hex(trace) {
            offer_str(record, Field::Service, app.trim());
            offer_str(record, Field::TraceId, trace);
            if is_hex(span) {
                offer_str(record, Field::SpanId, span);
            }
            return 2;
        }
        return 0;
    }
    // Micrometer: [trace-span].
    if let Some(dash) = memchr::memchr(b'-', b).filter(|d| *d >= 16) {
        let (trace, span) = (&inner[..dash], &inner[dash + 1..]);
        if is_hex(trace) && is_hex(span) {
            offer_str(record, Field::TraceId, trace);
            offer_str(record, Field::SpanId, span);
            return 2;
        }
    }
    // Spring Boot 3: --- [app] [thread]: the first group after the dashes is the app.
    if after_dashes {
        let name = inner.trim();
        if !name.is_empty() {
            offer_str(record, Field::Service, name);
            return 1;
        }
    }
    0
}

/// Spring Boot, logback, log4j2, Python logging, Go and similar headers.
fn app_header<'a>(line: &'a str, f: &Finders, record: &mut RawRecord<'a>) -> usize {
    let b = line.as_bytes();
    let mut found = 0;
    let mut at = 0;
    if let Some((t, used)) = iso_prefix(b) {
        record.offer(Field::Ts, HEADER_RANK, Raw::Time(t));
        found += 1;
        at = used;
    } else if let Some(used) = time_of_day(b) {
        at = used;
    }
    let header_start = at;
    // A time of day cannot place the line, but it marks a real header.
    let timed = at > 0;
    let mut level_seen = false;
    let mut dashes = false;
    let mut groups_after_dashes = 0;
    let mut message_from = None;
    // Up to a dozen header tokens: level, pid, `---`, bracket groups.
    for _ in 0..12 {
        while b.get(at) == Some(&b' ') {
            at += 1;
        }
        let Some(&c) = b.get(at) else { break };
        if c == b'[' {
            // A bracket group, possibly nested once ([SW_CTX:[...]]).
            let Some(close) = memchr::memchr(b']', &b[at..]) else {
                break;
            };
            let inner = &line[at + 1..at + close];
            let first_after_dashes = dashes && groups_after_dashes == 0 && {
                // Boot 3 has two groups after the dashes; the second is the thread.
                let next = b.get(at + close + 1..).unwrap_or(&[]);
                let next = next.iter().position(|c| *c != b' ').map(|p| next[p]);
                next == Some(b'[')
            };
            found += bracket(inner, first_after_dashes, record);
            if dashes {
                groups_after_dashes += 1;
            }
            at += close + 1;
            continue;
        }
        let Some((tok, end)) = token(line, at) else {
            break;
        };
        if !level_seen && is_level(tok) {
            offer_str(record, Field::Level, tok);
            level_seen = true;
            found += 1;
        } else if tok == "---" {
            dashes = true;
        } else if tok.bytes().all(|c| c.is_ascii_digit()) {
            // a pid
        } else if tok == ":" || tok == "-" {
            message_from = Some(end);
            break;
        } else if !level_seen && at > header_start + 40 {
            break;
        } else {
            // The logger (or a thread name): the message follows ` : ` or ` - `.
            let window = &b[end..(end + 163).min(b.len())];
            if let Some(sep) = [&f.colon_sep, &f.dash_sep]
                .iter()
                .filter_map(|s| s.find(window))
                .min()
            {
                message_from = Some(end + sep + 3);
            } else {
                message_from = Some(at);
            }
            break;
        }
        at = end;
    }
    if found == 0 && !level_seen {
        return 0;
    }
    let from = message_from.unwrap_or(at).min(line.len());
    let mut message = line[from..].trim();
    // `logger TraceID: … SpanID: … text` (TrainTicket's pattern): the logger and the ids
    // are header, not message (the ids are read as fields by `markers`).
    let mb = message.as_bytes();
    let mut trace_at = None;
    let mut span_end = None;
    for p in f.id_colon.find_iter(mb).take(4) {
        if p >= 6 && &mb[p - 6..p] == b" Trace" {
            trace_at = Some(p - 6);
        } else if p >= 4 && &mb[p - 4..p] == b"Span" && trace_at.is_some() {
            span_end = Some(p + 4);
            break;
        }
    }
    if let (Some(t), Some(e)) = (trace_at, span_end) {
        let after = &message[e..];
        let rest = memchr::memchr(b' ', after.as_bytes()).map_or("", |i| after[i..].trim_start());
        if !mb[..t].contains(&b' ') {
            message = rest;
        }
    }
    if !message.is_empty() {
        // Only a header that places the line in time makes its rest the message of an
        // envelope's payload (`RawRecord::absorb_payload`); a level word alone does not.
        let rank = if timed { HEADER_RANK } else { HEADER_RANK + 1 };
        record.offer(Field::Message, rank, Raw::Str(Cow::Borrowed(message)));
    }
    found
}

// ---------------------------------------------------------------- anywhere

/// An HTTP status in words, offered below every other source: a request summary
/// (`POST /api/checkout 503`), `HTTP 503`, `status: 503`, `503 Service Unavailable`.
fn status_phrase<'a>(line: &'a str, f: &Finders, record: &mut RawRecord<'a>) -> usize {
    let mut offer = |code: u16| {
        record.offer(Field::Status, HEADER_RANK + 1, Raw::U64(u64::from(code)));
        1
    };
    let b = line.as_bytes();
    let code_at = |from: usize| {
        line.get(from..)?
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(status_of)
    };
    // A request summary: METHOD /path CODE
    for at in memchr::memchr_iter(b'/', b).take(4) {
        let method = line[..at].trim_end().rsplit(' ').next().unwrap_or("");
        if !matches!(
            method,
            "GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "HEAD" | "OPTIONS" | "CONNECT"
        ) {
            continue;
        }
        let path_end = memchr::memchr(b' ', &b[at..]).map_or(b.len(), |e| at + e);
        let digits = path_end + b[path_end..].iter().take_while(|c| **c == b' ').count();
        if let Some(code) = code_at(digits) {
            return offer(code);
        }
    }
    // `status: 503`, `Status: 503`, `status code 503`
    for p in f.status.find_iter(b).take(4) {
        let rest = &b[p + 5..];
        let skip = if rest.starts_with(b": ") {
            2
        } else if rest.starts_with(b" code ") {
            6
        } else {
            continue;
        };
        if let Some(code) = code_at(p + 5 + skip) {
            return offer(code);
        }
    }
    // `HTTP 503`, `503 Service Unavailable`
    if let Some(p) = f.http.find(b) {
        if let Some(code) = code_at(p + 5) {
            return offer(code);
        }
    }
    if let Some(p) = f.unavailable.find(b) {
        if let Some(code) = line[..p].rsplit(' ').next().and_then(status_of) {
            return offer(code);
        }
    }
    0
}

/// Where `part`, a slice of `line`, starts in it.
fn offset_in(line: &str, part: &str) -> Option<usize> {
    let at = (part.as_ptr() as usize).checked_sub(line.as_ptr() as usize)?;
    (at + part.len() <= line.len()).then_some(at)
}

/// Whether `text` is only `key=value` tokens (values bare or quoted) apart by spaces.
fn only_pairs(text: &str) -> bool {
    let b = text.as_bytes();
    let mut at = 0;
    loop {
        while b.get(at).is_some_and(u8::is_ascii_whitespace) {
            at += 1;
        }
        if at == b.len() {
            return true;
        }
        let key = b[at..].iter().take_while(|c| is_key_byte(**c)).count();
        if key == 0 || b.get(at + key) != Some(&b'=') {
            return false;
        }
        at += key + 1;
        at += crate::logfmt::value_at(&text[at..]).1;
        if b.get(at).is_some_and(|c| !c.is_ascii_whitespace()) {
            return false;
        }
    }
}

/// `key=value` pairs anywhere in the line; keys the field index knows are offered at their
/// own rank (they are as good as structured fields). Brackets and separators around them
/// are not part of them. A message key counts only where the message (`content`: where
/// it starts, after any header) is pairs up to it, as in a logfmt line: in
/// `Response(status=0, msg=Seat is Null.)` the `msg=` is part of the message, not the
/// message.
fn pairs<'a>(
    line: &'a str,
    content: usize,
    index: &FieldIndex,
    record: &mut RawRecord<'a>,
) -> usize {
    let b = line.as_bytes();
    let mut found = 0;
    for eq in memchr::memchr_iter(b'=', b) {
        let mut start = eq;
        while start > 0 && is_key_byte(b[start - 1]) {
            start -= 1;
        }
        if start == eq {
            continue;
        }
        let key = &line[start..eq];
        if !index.may_be_key(key) {
            continue;
        }
        let Some((field, rank)) = index.lookup(key).and_then(|e| e.field) else {
            continue;
        };
        if field == Field::Message && !(content <= start && only_pairs(&line[content..start])) {
            continue;
        }
        let rest = &line[eq + 1..];
        let value = if rest.starts_with('"') {
            // Quoted, with backslash escapes (logfmt).
            crate::logfmt::value_at(rest).0
        } else {
            let end = rest
                .bytes()
                .position(|c| matches!(c, b' ' | b']' | b',' | b';' | b')' | b'"'))
                .unwrap_or(rest.len());
            Cow::Borrowed(&rest[..end])
        };
        // An empty value (`msg=""`) is there, and empty.
        record.offer(field, rank, Raw::Str(value));
        found += 1;
    }
    found
}

fn is_key_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-' | b'@')
}

/// `TraceID: …`, `SpanID: …`, `[TID:…]`, `[SW_CTX:[svc,inst,trace,seg,span]]` and W3C
/// trace parents anywhere in the line. One substring search and two byte scans: this runs
/// on every text line.
fn markers<'a>(b: &[u8], line: &'a str, f: &Finders, record: &mut RawRecord<'a>) -> usize {
    let mut found = 0;
    let word_at = |at: usize| {
        let at = at.min(b.len());
        let end = b[at..]
            .iter()
            .position(|c| !c.is_ascii_alphanumeric() && *c != b'-' && *c != b'.')
            .map_or(b.len(), |p| at + p);
        &line[at..end]
    };
    // `TraceID: x` and `SpanID: y`.
    for p in f.id_colon.find_iter(b).take(4) {
        if p >= 5 && &b[p - 5..p] == b"Trace" {
            offer_str(record, Field::TraceId, word_at(p + 4));
            found += 1;
        } else if p >= 4 && &b[p - 4..p] == b"Span" {
            offer_str(record, Field::SpanId, word_at(p + 4));
        }
    }
    // SkyWalking's `[TID:…]` and `[SW_CTX:[…]]`.
    for p in memchr::memchr_iter(b'[', b).take(16) {
        let rest = &line[p..];
        if rest.starts_with("[TID:") {
            let id = word_at(p + 5);
            if id != "N" && !id.is_empty() {
                offer_str(record, Field::TraceId, id);
                found += 1;
            }
        } else if let Some(inner) = rest.strip_prefix("[SW_CTX:[") {
            let inner = &inner[..inner.find(']').unwrap_or(inner.len())];
            let mut parts = inner.split(',');
            let (svc, _inst, trace) = (parts.next(), parts.next(), parts.next());
            if let (Some(svc), Some(trace)) = (svc, trace) {
                if trace != "N/A" && !trace.is_empty() {
                    offer_str(record, Field::Service, svc.trim());
                    offer_str(record, Field::TraceId, trace.trim());
                    found += 1;
                }
            }
        }
    }
    // traceparent: 00-<32 hex>-<16 hex>-<2 hex>; found by the dash after the version.
    if !record.has(Field::TraceId) {
        for p in memchr::memchr_iter(b'-', b) {
            if p < 2 || &b[p - 2..p] != b"00" || (p >= 3 && b[p - 3].is_ascii_hexdigit()) {
                continue;
            }
            let at = p - 2;
            let Some(tb) = b.get(at..at + 55) else {
                break;
            };
            let hex = |r: std::ops::Range<usize>| tb[r].iter().all(u8::is_ascii_hexdigit);
            // All-hex byte runs are ASCII: slicing the line there is on char boundaries.
            if tb[35] == b'-' && tb[52] == b'-' && hex(3..35) && hex(36..52) {
                offer_str(record, Field::TraceId, &line[at + 3..at + 35]);
                offer_str(record, Field::SpanId, &line[at + 36..at + 52]);
                found += 1;
                break;
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_times() {
        let t = |s: &str| iso_prefix(s.as_bytes()).map(|(t, n)| (t.to_rfc3339(), n));
        assert_eq!(
            t("2024-03-21T10:10:12.859Z  INFO"),
            Some(("2024-03-21T10:10:12.859Z".into(), 24))
        );
        assert_eq!(
            t("2024-01-01 12:00:00,123 ERROR"),
            Some(("2024-01-01T12:00:00.123Z".into(), 23))
        );
        assert_eq!(
            t("2024-01-01T12:00:00+02:00 x"),
            Some(("2024-01-01T10:00:00.000Z".into(), 25))
        );
        assert_eq!(
            t("2024-01-01T12:00:00.123456789-0130"),
            Some(("2024-01-01T13:30:00.123Z".into(), 34))
        );
        assert_eq!(t("2024-13-01T12:00:00Z"), None);
        assert_eq!(t("12:00:00.123 INFO"), None);
        assert_eq!(
            clf(b"14/Jul/2020:06:04:14 +0000]").map(|t| t.to_rfc3339()),
            Some("2020-07-14T06:04:14.000Z".into())
        );
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }
}
