//! The message lexer (`logos`): splits a log message into typed tokens so that variables
//! (numbers, hex, IPs, UUIDs, URLs, paths, dates, times, sizes and durations, identifiers
//! containing digits) are recognised by their type instead of per-dataset regexes.

use logos::Logos;

/// What a token is. Everything but [`Kind::Word`], [`Kind::Punct`] and [`Kind::Space`] is
/// a variable.
#[derive(Logos, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Letters (and `_`), no digits.
    #[regex(r"[A-Za-z_]+")]
    Word,
    #[regex(r"[+-]?[0-9]+(\.[0-9]+)*", priority = 4)]
    Number,
    #[regex(r"0[xX][0-9a-fA-F]+", priority = 5)]
    Hex,
    /// An identifier with at least one digit: `blk_38`, `blk_-38`, `a1b2c3`, `worker7`.
    #[regex(r"[A-Za-z0-9_]*[0-9][A-Za-z0-9_]*", priority = 3)]
    #[regex(r"[A-Za-z0-9_]*[A-Za-z_]-[0-9][A-Za-z0-9_]*", priority = 3)]
    Mixed,
    #[regex(
        r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}(:[0-9]{1,5})?",
        priority = 6
    )]
    Ip,
    #[regex(
        r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
        priority = 6
    )]
    Uuid,
    #[regex(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s]*", priority = 6)]
    Url,
    /// Two or more path segments, with any query string: `/var/log/x.log`,
    /// `/v2/servers/detail?all_tenants=True`.
    #[regex(r#"(/[A-Za-z0-9._~%+@-]+){2,}/?(\?[^\s"']*)?"#, priority = 5)]
    Path,
    /// A host name: three or more labels ending in a short lower-case top-level label
    /// (`proxy.cse.cuhk.edu.hk`, `db-1.prod.example.com`); with a port it is an [`Kind::Endpoint`].
    Host,
    /// A name, a colon and more digits than a port has: a key and its value
    /// (`onExtend:1514038530000`). A variable, whose key [`key_of`] gives; the longest
    /// match would otherwise take the name with five digits as an [`Kind::Endpoint`],
    /// and a template would lose the key.
    #[regex(r"[A-Za-z][A-Za-z0-9_-]*:[0-9]{6,}", priority = 7)]
    KeyValue,
    /// A name with a port: `github.com:443`, `wpad:80`.
    #[regex(r"[A-Za-z][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*:[0-9]{1,5}", priority = 6)]
    Endpoint,
    /// Three or more dot-separated labels, before classification: [`tokens`] reports it
    /// as [`Kind::Host`] or, for names like `org.apache.hadoop.MRAppMaster`, [`Kind::Word`].
    #[regex(r"[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+){2,}(:[0-9]{1,5})?", priority = 5)]
    Dotted,
    #[regex(r"[0-9]{4}[-/][0-9]{1,2}[-/][0-9]{1,2}", priority = 6)]
    Date,
    /// A month or weekday name, as in `at Sun Jul 24 02:38:23 2005`.
    #[regex(
        r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec|Mon|Tue|Wed|Thu|Fri|Sat|Sun)",
        priority = 10
    )]
    DatePart,
    #[regex(r"[0-9]{1,2}:[0-9]{2}(:[0-9]{2}([.,][0-9]+)?)?", priority = 6)]
    Time,
    /// A product or protocol with its version: `HTTP/1.1`, `Mozilla/5.0`, `curl/7.68.0`.
    #[regex(r"[A-Za-z][A-Za-z0-9_.-]*/[0-9][0-9A-Za-z._-]*", priority = 7)]
    Version,
    /// A number with a unit: `12ms`, `3.5s`, `64KB`, `97%`.
    #[regex(
        r"[0-9]+(\.[0-9]+)?([kKmMgGtT]i?[bB]|[bB]|ms|us|µs|ns|s|m|h|%)",
        priority = 6
    )]
    Measure,
    #[regex(r"[ \t\r\n\f\v]+")]
    Space,
    /// Any other single character.
    #[regex(r"[^A-Za-z0-9_ \t\r\n\f\v]", priority = 0)]
    Punct,
}

impl Kind {
    /// Whether tokens of this kind are variables in a template.
    pub fn is_variable(self) -> bool {
        !matches!(self, Kind::Word | Kind::Punct | Kind::Space | Kind::Dotted)
    }
}

/// The constant part of a [`Kind::KeyValue`] token: its key with the colon.
pub fn key_of(token: &str) -> &str {
    token.rfind(':').map_or("", |colon| &token[..=colon])
}

/// Whether a dotted name is a host: its last label (before any port) is 2–6 lower-case
/// letters, like a top-level domain.
fn is_host(name: &str) -> bool {
    let name = name.rsplit_once(':').map_or(name, |(host, _)| host);
    let last = name.rsplit('.').next().unwrap_or_default();
    (2..=6).contains(&last.len()) && last.bytes().all(|b| b.is_ascii_lowercase())
}

/// Whether `word` is a unit of measure (`KB`, `bytes`, `ms`, `sec`, ...), which after a
/// number belongs to that number's value.
pub fn is_unit(word: &str) -> bool {
    const UNITS: &[&str] = &[
        "b", "kb", "mb", "gb", "tb", "kib", "mib", "gib", "byte", "bytes", "ms", "msec", "us",
        "ns", "s", "sec", "secs", "second", "seconds", "min", "mins", "minute", "minutes", "h",
        "hour", "hours", "%",
    ];
    UNITS.iter().any(|u| u.eq_ignore_ascii_case(word))
}

/// The tokens of `message` with their text, in order. Never fails: a byte no pattern
/// takes becomes a one-character [`Kind::Punct`].
pub fn tokens(message: &str) -> impl Iterator<Item = (Kind, &str)> {
    let mut lex = Kind::lexer(message);
    std::iter::from_fn(move || {
        let kind = match lex.next()?.unwrap_or(Kind::Punct) {
            Kind::Dotted if is_host(lex.slice()) => Kind::Host,
            Kind::Dotted => Kind::Word,
            kind => kind,
        };
        Some((kind, lex.slice()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &str) -> Vec<(Kind, &str)> {
        tokens(s).filter(|(k, _)| *k != Kind::Space).collect()
    }

    #[test]
    fn variables_by_type() {
        use Kind::*;
        assert_eq!(
            kinds("Received block blk_-562 of size 67108864 from /10.250.10.6:40524"),
            vec![
                (Word, "Received"),
                (Word, "block"),
                (Mixed, "blk_-562"),
                (Word, "of"),
                (Word, "size"),
                (Number, "67108864"),
                (Word, "from"),
                (Punct, "/"),
                (Ip, "10.250.10.6:40524"),
            ]
        );
        assert_eq!(kinds("took 12ms at 10:04:59.123")[1], (Measure, "12ms"));
        assert_eq!(
            kinds("took 12ms at 10:04:59.123")[3],
            (Time, "10:04:59.123")
        );
        assert_eq!(kinds("id 0x7fe3 ok")[1], (Hex, "0x7fe3"));
        assert_eq!(kinds("req 123e4567-e89b-12d3-a456-426614174000")[1].0, Uuid);
        assert_eq!(
            kinds("see https://x.io/a?b=1 now")[1],
            (Url, "https://x.io/a?b=1")
        );
        assert_eq!(
            kinds("open /etc/httpd/conf ok")[1],
            (Path, "/etc/httpd/conf")
        );
        assert_eq!(kinds("on 2017-05-16")[1], (Date, "2017-05-16"));
        assert_eq!(kinds("node worker7")[1], (Mixed, "worker7"));
        assert_eq!(kinds("GET /a/b HTTP/1.1")[2], (Version, "HTTP/1.1"));
        assert_eq!(
            kinds("via proxy.cse.cuhk.edu.hk now")[1],
            (Host, "proxy.cse.cuhk.edu.hk")
        );
        assert_eq!(kinds("via proxy.cse.cuhk.edu.hk:5070")[1].0, Endpoint);
        // More digits than a port: a key and its value.
        assert_eq!(
            kinds("onExtend:1514038530000 14"),
            vec![(KeyValue, "onExtend:1514038530000"), (Number, "14")]
        );
        assert_eq!(key_of("onExtend:1514038530000"), "onExtend:");
        assert_eq!(kinds("wpad:80")[0].0, Endpoint);
        assert_eq!(
            kinds("org.apache.hadoop.MRAppMaster")[0],
            (Word, "org.apache.hadoop.MRAppMaster")
        );
        assert_eq!(kinds("at Sun Jul 24")[1], (DatePart, "Sun"));
        assert_eq!(kinds("Sunday July")[0], (Word, "Sunday"));
        assert_eq!(kinds("uid=0")[2], (Number, "0"));
    }

    #[test]
    fn anything_lexes() {
        for s in ["", "   ", "é€🙂", "\u{0}\u{1}", "==>", "a\"b'c"] {
            let joined: String = tokens(s).map(|(_, t)| t).collect();
            assert_eq!(joined, s, "tokens cover the input");
        }
    }
}
