//! Timestamp reading: RFC 3339, epoch numbers in s/ms/µs/ns, and the header date formats
//! of common text logs (syslog, Apache, HDFS, log4j, ...).

use crate::EventTime;
use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

/// Reads an epoch number, choosing the unit by magnitude: below 10^11 seconds, below 10^14
/// milliseconds, below 10^17 microseconds, else nanoseconds. (10^11 s is the year 5138;
/// 10^11 ms is 1973, so real-world values are unambiguous.)
pub fn from_epoch_f64(n: f64) -> Option<EventTime> {
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let scale = unit_scale(n as u64) as f64;
    // An f64 holds ~16 digits: keep microseconds, which it represents exactly here.
    let micros = (n * scale / 1e3).round();
    // Out of range, `as` saturates, and the product overflows (a panic where overflow is
    // checked, as in tests).
    (micros as i64).checked_mul(1000).map(EventTime)
}

/// Nanoseconds per unit for an epoch number of this integer magnitude.
fn unit_scale(int_part: u64) -> u64 {
    match int_part {
        0..100_000_000_000 => 1_000_000_000,
        100_000_000_000..100_000_000_000_000 => 1_000_000,
        100_000_000_000_000..100_000_000_000_000_000 => 1_000,
        _ => 1,
    }
}

/// An epoch number written as decimal text (`1763720100.123`), read exactly.
fn from_epoch_decimal(s: &str) -> Option<EventTime> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let int: u64 = int.parse().ok()?;
    let scale = unit_scale(int);
    let digits = frac.len().min(9);
    let frac_value: u64 = if digits == 0 {
        0
    } else {
        frac[..digits].parse().ok()?
    };
    let frac_ns = frac_value * scale / 10u64.pow(digits as u32);
    int.checked_mul(scale)?
        .checked_add(frac_ns)
        .and_then(|ns| i64::try_from(ns).ok())
        .map(EventTime)
}

/// Like [`from_epoch_f64`] for integers, exact at nanosecond precision.
pub fn from_epoch_int(n: u64) -> Option<EventTime> {
    n.checked_mul(unit_scale(n))
        .and_then(|ns| i64::try_from(ns).ok())
        .map(EventTime)
}

/// Reads a timestamp string from a structured log: RFC 3339 (with `T` or a space, with or
/// without a zone; no zone means UTC), an epoch number written as a string, Python's
/// `2024-01-15 10:30:00,123` (a comma before the milliseconds) or the Common Log Format's
/// `10/Oct/2000:13:55:36 -0700` (nginx's `$time_local` in a JSON access log).
pub fn parse_timestamp(s: &str) -> Option<EventTime> {
    let s = s.trim();
    let first = *s.as_bytes().first()?;
    if first.is_ascii_digit() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return from_epoch_decimal(s);
    }
    // RFC 3339 and its relatives (a space for the `T`, a comma before the fraction, no
    // zone for UTC) by the text headers' own reader, which is several times cheaper than
    // chrono's; then what only chrono reads, and the CLF.
    let b = s.as_bytes();
    if let Some((t, used)) = crate::text::iso_prefix(b) {
        if used == b.len() {
            return Some(t);
        }
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return t.timestamp_nanos_opt().map(EventTime);
    }
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f"));
    if let Ok(t) = naive {
        return t.and_utc().timestamp_nanos_opt().map(EventTime);
    }
    if b.len() == 26 {
        return crate::text::clf(b);
    }
    None
}

/// The current UTC year, which completes header dates that carry none.
pub fn current_year() -> i32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    chrono::DateTime::from_timestamp(secs as i64, 0).map_or(1970, |t| chrono::Datelike::year(&t))
}

/// Header date formats tried, in order, for text logs. Formats without a year get the
/// reader's assumed year prepended as `%Y `.
const HEADER_FORMATS: &[(&str, bool)] = &[
    ("%Y-%m-%d %H:%M:%S%.f", false),
    ("%Y-%m-%dT%H:%M:%S%.f", false),
    ("%Y-%m-%d-%H.%M.%S%.f", false),
    ("%y%m%d %H%M%S", false),
    ("%y/%m/%d %H:%M:%S", false),
    ("%Y/%m/%d %H:%M:%S%.f", false),
    ("%a %b %d %H:%M:%S %Y", false),
    ("%d/%b/%Y:%H:%M:%S %z", false),
    ("%b %d %H:%M:%S%.f", true),
    ("%m.%d %H:%M:%S", true),
    ("%m-%d %H:%M:%S%.f", true),
];

/// Reads the date/time fields of a text log header (already joined by single spaces).
/// Remembers which format matched last so that a stream in one format costs one attempt.
#[derive(Debug, Clone)]
pub struct HeaderTimeReader {
    assumed_year: i32,
    last: usize,
}

impl HeaderTimeReader {
    /// `assumed_year` completes formats that carry no year (syslog's `Jun 14 15:16:01`).
    pub fn new(assumed_year: i32) -> Self {
        HeaderTimeReader {
            assumed_year,
            last: 0,
        }
    }

    /// Parses `s`, or `None` when no known format fits.
    pub fn read(&mut self, s: &str) -> Option<EventTime> {
        let s = s.trim().trim_end_matches(',');
        if let Some(t) = parse_timestamp(s) {
            return Some(t);
        }
        // log4j writes a comma before the milliseconds.
        let s = s.replacen(',', ".", 1);
        let n = HEADER_FORMATS.len();
        (0..n)
            .map(|i| (self.last + i) % n)
            .find_map(|i| self.try_format(&s, i).map(|t| (i, t)))
            .map(|(i, t)| {
                self.last = i;
                t
            })
    }

    fn try_format(&self, s: &str, i: usize) -> Option<EventTime> {
        let (fmt, needs_year) = HEADER_FORMATS[i];
        if fmt.ends_with("%z") {
            return chrono::DateTime::parse_from_str(s, fmt)
                .ok()
                .and_then(|t| t.timestamp_nanos_opt())
                .map(EventTime);
        }
        let naive = if needs_year {
            let with_year = format!("{} {}", self.assumed_year, s);
            NaiveDateTime::parse_from_str(&with_year, &format!("%Y {fmt}")).ok()?
        } else {
            NaiveDateTime::parse_from_str(s, fmt)
                .ok()
                .or_else(|| date_only(s, fmt))?
        };
        naive.and_utc().timestamp_nanos_opt().map(EventTime)
    }
}

/// A header that carries only a date (no time field in the format) still orders events.
fn date_only(s: &str, fmt: &str) -> Option<NaiveDateTime> {
    let date_fmt = fmt.split(' ').next()?;
    NaiveDate::parse_from_str(s, date_fmt)
        .ok()
        .map(|d| d.and_time(NaiveTime::MIN))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_763_720_100; // 2025-11-21T10:15:00Z

    #[test]
    fn rfc3339_times_read_as_chrono_reads_them() {
        for s in [
            "2026-03-14T10:00:00Z",
            "2026-03-14T10:00:00.003Z",
            "2026-03-14T10:00:00.123456789Z",
            "2026-03-14T23:59:59.5+05:30",
            "2026-03-14T00:00:00-08:00",
            "2024-02-29T12:00:00Z",
            "1999-12-31T23:59:59.999999Z",
            "2026-03-14 10:00:00Z",
            "2026-03-14t10:00:00z",
        ] {
            let chrono = chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_nanos_opt()
                .map(EventTime);
            assert_eq!(parse_timestamp(s), chrono, "{s}");
        }
        for s in [
            "2026-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-03-14T24:00:00Z",
            "2026-03-14T10:00:00+5",
        ] {
            assert_eq!(parse_timestamp(s), None, "{s}");
        }
    }

    #[test]
    fn epoch_units_by_magnitude() {
        let ns = T0 * 1_000_000_000;
        assert_eq!(from_epoch_int(T0 as u64), Some(EventTime(ns)));
        assert_eq!(from_epoch_int(T0 as u64 * 1000), Some(EventTime(ns)));
        assert_eq!(from_epoch_int(T0 as u64 * 1_000_000), Some(EventTime(ns)));
        assert_eq!(from_epoch_int(ns as u64), Some(EventTime(ns)));
        assert_eq!(
            from_epoch_f64(T0 as f64 + 0.5),
            Some(EventTime(ns + 500_000_000))
        );
        assert_eq!(from_epoch_f64(-1.0), None);
        assert_eq!(from_epoch_f64(f64::NAN), None);
        assert_eq!(from_epoch_int(u64::MAX), None);
        // Beyond what nanoseconds in an i64 hold: none, and no overflow on the way.
        assert_eq!(from_epoch_f64(2.791251941011779e299), None);
        assert_eq!(from_epoch_f64(f64::MAX), None);
        assert_eq!(from_epoch_f64(9.3e18), None);
    }

    #[test]
    fn rfc3339_variants() {
        let want = Some(EventTime(T0 * 1_000_000_000 + 123_000_000));
        assert_eq!(parse_timestamp("2025-11-21T10:15:00.123Z"), want);
        assert_eq!(parse_timestamp("2025-11-21T11:15:00.123+01:00"), want);
        assert_eq!(parse_timestamp("2025-11-21 10:15:00.123Z"), want);
        assert_eq!(parse_timestamp("2025-11-21T10:15:00.123"), want);
        assert_eq!(parse_timestamp("1763720100.123"), want);
        assert_eq!(parse_timestamp("1763720100123"), want);
        // Python's asctime, and the Common Log Format (nginx `$time_local`).
        assert_eq!(parse_timestamp("2025-11-21 10:15:00,123"), want);
        assert_eq!(
            parse_timestamp("21/Nov/2025:11:15:00 +0100"),
            Some(EventTime(T0 * 1_000_000_000))
        );
        assert_eq!(parse_timestamp("21/Nov/2025:11:15:00"), None, "no zone");
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(parse_timestamp("a,b"), None);
        assert_eq!(parse_timestamp(""), None);
    }

    #[test]
    fn header_formats() {
        let mut r = HeaderTimeReader::new(2025);
        let at = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_nanos_opt()
                .map(EventTime)
        };
        assert_eq!(r.read("081109 203615"), at("2008-11-09T20:36:15Z"));
        assert_eq!(
            r.read("2015-10-18 18:01:47,978"),
            at("2015-10-18T18:01:47.978Z")
        );
        assert_eq!(r.read("Jun 14 15:16:01"), at("2025-06-14T15:16:01Z"));
        assert_eq!(
            r.read("Sun Dec 04 04:47:44 2005"),
            at("2005-12-04T04:47:44Z")
        );
        assert_eq!(
            r.read("2005-06-03-15.42.50.363779"),
            at("2005-06-03T15:42:50.363779Z")
        );
        assert_eq!(r.read("17/06/09 20:10:40"), at("2017-06-09T20:10:40Z"));
        assert_eq!(r.read("2016-09-28 04:30:30,"), at("2016-09-28T04:30:30Z"));
        assert_eq!(r.read("not a date"), None);
    }
}
