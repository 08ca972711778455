//! The parsed form of one log record: [`LogEvent`] borrows from the raw line.

use std::borrow::Cow;
use std::fmt;

/// Event time: nanoseconds since the Unix epoch (UTC), taken from the log's own timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventTime(pub i64);

impl EventTime {
    /// The earliest representable time, used as "nothing seen yet".
    pub const MIN: EventTime = EventTime(i64::MIN);
    /// The latest representable time.
    pub const MAX: EventTime = EventTime(i64::MAX);

    /// Milliseconds since the epoch (a Kafka timestamp), saturating.
    pub fn from_millis(millis: i64) -> Self {
        EventTime(millis.saturating_mul(1_000_000))
    }

    /// Nanoseconds since the epoch.
    pub fn nanos(self) -> i64 {
        self.0
    }

    /// This time moved forward by `d` (saturating).
    pub fn plus(self, d: std::time::Duration) -> Self {
        EventTime(
            self.0
                .saturating_add(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
        )
    }

    /// This time moved back by `d` (saturating).
    pub fn minus(self, d: std::time::Duration) -> Self {
        EventTime(
            self.0
                .saturating_sub(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
        )
    }

    /// RFC 3339 in UTC with millisecond precision, e.g. `2026-11-21T10:15:00.123Z`.
    pub fn to_rfc3339(self) -> String {
        chrono::DateTime::from_timestamp_nanos(self.0)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }
}

impl fmt::Display for EventTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// Severity, normalised from the many spellings logs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Level {
    /// No level field, or one we could not read.
    #[default]
    Unknown,
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl Level {
    /// Reads a level name case-insensitively (`WARN`, `warning`, `Err`, `CRITICAL`, ...).
    pub fn parse(s: &str) -> Level {
        const NAMES: &[(&str, Level)] = &[
            ("info", Level::Info),
            ("information", Level::Info),
            ("informational", Level::Info),
            ("notice", Level::Info),
            ("error", Level::Error),
            ("err", Level::Error),
            ("warn", Level::Warn),
            ("warning", Level::Warn),
            ("debug", Level::Debug),
            ("dbg", Level::Debug),
            ("trace", Level::Trace),
            ("verbose", Level::Trace),
            ("fatal", Level::Fatal),
            ("critical", Level::Fatal),
            ("crit", Level::Fatal),
            ("severe", Level::Fatal),
            ("emerg", Level::Fatal),
            ("emergency", Level::Fatal),
            ("alert", Level::Fatal),
            ("panic", Level::Fatal),
            ("dpanic", Level::Error),
            ("fine", Level::Debug),
            ("finer", Level::Trace),
            ("finest", Level::Trace),
            ("config", Level::Info),
            ("informational", Level::Info),
            ("i", Level::Info),
            ("w", Level::Warn),
            ("e", Level::Error),
            ("f", Level::Fatal),
        ];
        // OTel severity texts may carry a number: ERROR2, FATAL4.
        let s = s.trim().trim_end_matches(|c: char| c.is_ascii_digit());
        NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map_or(Level::Unknown, |(_, l)| *l)
    }

    /// Lower-case name as used in rule files.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Unknown => "unknown",
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Fatal => "fatal",
        }
    }
}

/// One log record. Strings borrow from the raw line unless unescaping forced a copy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogEvent<'a> {
    /// Event time, if the record carried a readable one.
    pub ts: Option<EventTime>,
    pub service: Option<Cow<'a, str>>,
    pub level: Level,
    /// HTTP status code, if any.
    pub status: Option<u16>,
    pub trace_id: Option<Cow<'a, str>>,
    pub span_id: Option<Cow<'a, str>>,
    pub parent_span_id: Option<Cow<'a, str>>,
    /// A request id (`x-request-id`): stands in for the trace id where a record has none.
    pub request_id: Option<Cow<'a, str>>,
    /// The service this record's request called (a proxy's upstream), if it says.
    pub callee: Option<Cow<'a, str>>,
    pub message: Cow<'a, str>,
    /// Values of the extra fields the parser was asked to capture, by their index in
    /// [`crate::FieldNames::extra`]. Empty (and unallocated) unless rules match on fields.
    pub extra: Vec<(u16, Cow<'a, str>)>,
}

impl<'a> LogEvent<'a> {
    /// The value of captured extra field number `idx`.
    pub fn extra(&self, idx: u16) -> Option<&str> {
        self.extra
            .iter()
            .find(|(i, _)| *i == idx)
            .map(|(_, v)| v.as_ref())
    }
}
