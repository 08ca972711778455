//! Line reading with a length cap: a line longer than the cap is skipped (and reported
//! with its length) without ever being held in memory whole.

use std::io::{self, BufRead};

/// One line from [`LineReader::next_line`].
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// The line without its terminator (`\n` or `\r\n`).
    Full(&'a [u8]),
    /// A line over the cap; its length in bytes.
    TooLong(usize),
}

pub struct LineReader<R> {
    inner: R,
    max: usize,
    buf: Vec<u8>,
}

impl<R: BufRead> LineReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner,
            max,
            buf: Vec::new(),
        }
    }

    /// The underlying reader (to ask a `BufReader` whether more is buffered).
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The next line, `None` at the end of input.
    pub fn next_line(&mut self) -> Option<io::Result<Line<'_>>> {
        self.buf.clear();
        let mut total = 0usize;
        let mut any = false;
        let mut terminated = false;
        loop {
            let chunk = match self.inner.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Some(Err(e)),
            };
            if chunk.is_empty() {
                break;
            }
            any = true;
            let (take, done) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            if total + take <= self.max + 2 {
                self.buf.extend_from_slice(&chunk[..take]);
            }
            total += take;
            self.inner.consume(take);
            if done {
                terminated = true;
                break;
            }
        }
        if !any {
            return None;
        }
        if total > self.max + 2 {
            return Some(Ok(Line::TooLong(total - usize::from(terminated))));
        }
        let mut line = &self.buf[..];
        if let Some(rest) = line.strip_suffix(b"\n") {
            line = rest;
        }
        if let Some(rest) = line.strip_suffix(b"\r") {
            line = rest;
        }
        if line.len() > self.max {
            return Some(Ok(Line::TooLong(line.len())));
        }
        Some(Ok(Line::Full(line)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<String> {
        let mut r = LineReader::new(io::BufReader::with_capacity(8, input), max);
        let mut out = Vec::new();
        while let Some(l) = r.next_line() {
            out.push(match l.unwrap() {
                Line::Full(b) => String::from_utf8_lossy(b).into_owned(),
                Line::TooLong(_) => "<too long>".to_string(),
            });
        }
        out
    }

    #[test]
    fn splits_strips_and_caps() {
        assert_eq!(lines(b"a\nbb\r\n\nccc", 10), ["a", "bb", "", "ccc"]);
        assert_eq!(
            lines(b"short\nthis line is far too long\nok\n", 10),
            ["short", "<too long>", "ok"]
        );
        assert_eq!(lines(b"exactly10!\n", 10), ["exactly10!"]);
        assert!(lines(b"", 10).is_empty());
    }

    #[test]
    fn a_huge_line_is_not_buffered() {
        let mut input = vec![b'x'; 10 << 20];
        input.extend_from_slice(b"\nnext\n");
        let mut r = LineReader::new(io::BufReader::new(&input[..]), 1 << 20);
        assert_eq!(r.next_line().unwrap().unwrap(), Line::TooLong(10 << 20));
        assert!(r.buf.capacity() <= (1 << 20) + 64 * 1024);
        assert_eq!(r.next_line().unwrap().unwrap(), Line::Full(b"next"));
    }
}
