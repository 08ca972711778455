//! Line reading with a length cap: a line longer than the cap is skipped (and reported
//! with its length) without ever being held in memory whole. A line that lies whole in
//! the reader's buffer is lent from it, not copied.

use std::io::{self, BufRead, BufReader, Read};

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
    /// A line gathered across buffer refills.
    buf: Vec<u8>,
    /// Bytes of `inner`'s buffer lent out as the last line, consumed at the next call.
    lent: usize,
}

impl<R: BufRead> LineReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner,
            max,
            buf: Vec::new(),
            lent: 0,
        }
    }

    /// The next line, `None` at the end of input.
    pub fn next_line(&mut self) -> Option<io::Result<Line<'_>>> {
        self.inner.consume(std::mem::take(&mut self.lent));
        // The common case: the line ends inside the buffer. Asking for the buffer again
        // reads nothing (it is not empty), and lends the line from it.
        let whole = match self.inner.fill_buf() {
            Ok(chunk) => memchr::memchr(b'\n', chunk).filter(|&i| i <= self.max + 1),
            Err(_) => None,
        };
        if let Some(end) = whole {
            self.lent = end + 1;
            return match self.inner.fill_buf() {
                Ok(chunk) => Some(Ok(capped(strip(&chunk[..=end]), self.max))),
                Err(e) => Some(Err(e)),
            };
        }
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
        Some(Ok(capped(strip(&self.buf), self.max)))
    }
}

impl<T: Read> LineReader<BufReader<T>> {
    /// Whether the buffer holds nothing past the last line (the next call would read).
    pub fn is_drained(&self) -> bool {
        self.inner.buffer().len() <= self.lent
    }
}

fn capped(line: &[u8], max: usize) -> Line<'_> {
    if line.len() > max {
        Line::TooLong(line.len())
    } else {
        Line::Full(line)
    }
}

/// `line` without its terminator (`\n` or `\r\n`).
fn strip(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
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

    #[test]
    fn lines_lent_from_the_buffer_and_gathered_across_refills_read_alike() {
        let input = b"one\r\ntwo\n\nthree is longer than the buffer\nfour";
        for capacity in [2, 5, 8, 64, 1 << 10] {
            let mut r = LineReader::new(io::BufReader::with_capacity(capacity, &input[..]), 20);
            let mut seen = Vec::new();
            while let Some(l) = r.next_line() {
                seen.push(match l.unwrap() {
                    Line::Full(b) => String::from_utf8_lossy(b).into_owned(),
                    Line::TooLong(n) => format!("<{n}>"),
                });
            }
            assert_eq!(seen, ["one", "two", "", "<31>", "four"], "{capacity}");
            assert!(r.is_drained());
        }
        let mut r = LineReader::new(io::BufReader::new(&b"a\nb\n"[..]), 20);
        r.next_line();
        assert!(!r.is_drained(), "the second line is buffered");
        r.next_line();
        assert!(r.is_drained());
    }
}
