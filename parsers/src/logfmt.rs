//! logfmt / key=value lines: `ts=... level=error service=payment msg="upstream timeout"`.
//! A `logos` lexer finds the `key=` tokens; the value after each runs to the next blank,
//! or is a double-quoted string with backslash escapes. `k=` with nothing after is empty.

use crate::fields::FieldIndex;
use crate::record::{Raw, RawRecord};
use logos::Logos;
use std::borrow::Cow;

#[derive(Logos, Debug, PartialEq, Clone, Copy)]
#[logos(skip r"[ \t\r\n]+")]
enum Token {
    /// `key=`; its value is read by hand from the remainder.
    #[regex(r#"[^\s="]+="#)]
    Key,
    /// A stray quoted string (not after a key): ignored.
    #[regex(r#""([^"\\]|\\.)*""#)]
    Quoted,
    /// A stray word (not after a key): ignored.
    #[regex(r#"[^\s="]+"#)]
    Word,
}

/// Reads the pairs of `line` into `record`; returns how many pairs it found.
pub(crate) fn read<'a>(line: &'a str, index: &FieldIndex, record: &mut RawRecord<'a>) -> usize {
    let mut lex = Token::lexer(line);
    let mut pairs = 0;
    while let Some(tok) = lex.next() {
        if tok != Ok(Token::Key) {
            continue;
        }
        let key = &lex.slice()[..lex.slice().len() - 1];
        let rest = lex.remainder();
        let (value, used) = value_at(rest);
        lex.bump(used);
        pairs += 1;
        if let Some((field, rank)) = index.lookup(key).and_then(|e| e.field) {
            record.offer(field, rank, Raw::Str(value));
        }
    }
    pairs
}

/// The value at the start of `rest` and how many bytes it spans.
fn value_at(rest: &str) -> (Cow<'_, str>, usize) {
    if !rest.starts_with('"') {
        let end = rest
            .find(|c: char| c.is_ascii_whitespace())
            .unwrap_or(rest.len());
        return (Cow::Borrowed(&rest[..end]), end);
    }
    let bytes = rest.as_bytes();
    let mut i = 1;
    let mut escaped = false;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                escaped = true;
                i += 2;
                continue;
            }
            b'"' => break,
            _ => i += 1,
        }
    }
    // An unterminated quote takes the rest of the line.
    let end = i.min(bytes.len());
    let inner = &rest[1..end.max(1)];
    let used = (end + 1).min(rest.len());
    let value = if escaped {
        Cow::Owned(unescape(inner))
    } else {
        Cow::Borrowed(inner)
    };
    (value, used)
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert_eq!(value_at("abc def"), (Cow::Borrowed("abc"), 3));
        assert_eq!(value_at(r#""a b" c"#), (Cow::Borrowed("a b"), 5));
        assert_eq!(
            value_at(r#""say \"hi\"" x"#),
            (Cow::Owned::<str>(r#"say "hi""#.into()), 12)
        );
        assert_eq!(value_at(r#""open"#), (Cow::Borrowed("open"), 5));
        assert_eq!(value_at(r#"""#), (Cow::Borrowed(""), 1));
        assert_eq!(value_at(""), (Cow::Borrowed(""), 0));
        assert_eq!(
            value_at(r#""trailing\"#),
            (Cow::Owned::<str>("trailing\\".into()), 10)
        );
    }
}
