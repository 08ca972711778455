//! logfmt values: after `key=`, a value runs to the next blank, or is a double-quoted
//! string with backslash escapes; `k=` with nothing after is empty. The pairs themselves
//! are found by the text reader (`text.rs`), which reads `key=value` anywhere in a line
//! (`ts=... level=error service=payment msg="upstream timeout"`, or inside a header).

use std::borrow::Cow;

/// The value at the start of `rest` and how many bytes it spans.
pub(crate) fn value_at(rest: &str) -> (Cow<'_, str>, usize) {
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
