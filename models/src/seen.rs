//! Lines seen before, by their digit-blind form (every digit made `1`, as in `memo`).
//!
//! Most lines of a log repeat an earlier line but for their numbers: in the Loghub
//! samples, read once in order, 57 to 96 % of lines join this way. When every chunk of
//! a line took its shape from its digit-blind form (no constant with digits of its own,
//! no chunk past the shape cap), a line of the same form encodes exactly alike, so it
//! can join the template the first one joined without being split, looked up or
//! matched. Keys are whole forms, compared exactly; the table starts over when full.

use crate::blind::digit_blind;
use crate::miner::TemplateId;
use rustc_hash::FxHashMap;

/// Forms remembered, and their bytes in all, before the table starts over.
const CAP: usize = 16_384;
const BYTES_CAP: usize = 2 << 20;
/// Longer lines are not remembered.
const MAX_LINE: usize = 1024;

/// Where a line went: the template's slot and id.
pub type Placed = (u32, TemplateId);

#[derive(Debug, Default)]
pub struct Seen {
    lines: FxHashMap<Box<[u8]>, Placed>,
    bytes: usize,
    /// The form of the line last looked up, if it may be remembered.
    form: Vec<u8>,
    ready: bool,
}

impl Seen {
    /// Where the last line of `message`'s form went; the form is kept for `remember`.
    #[inline]
    pub fn get(&mut self, message: &[u8]) -> Option<Placed> {
        self.ready = message.len() <= MAX_LINE;
        if !self.ready {
            return None;
        }
        digit_blind(message, &mut self.form);
        self.lines.get(self.form.as_slice()).copied()
    }

    /// Remembers where the line last looked up went.
    pub fn remember(&mut self, placed: Placed) {
        if !std::mem::take(&mut self.ready) {
            return;
        }
        if self.lines.len() >= CAP || self.bytes + self.form.len() > BYTES_CAP {
            self.lines.clear();
            self.bytes = 0;
        }
        self.bytes += self.form.len();
        self.lines.insert(self.form.as_slice().into(), placed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_lines_by_form_until_full() {
        let mut seen = Seen::default();
        let placed = (3, TemplateId(7));
        assert_eq!(seen.get(b"took 15 ms"), None);
        seen.remember(placed);
        assert_eq!(seen.get(b"took 42 ms"), Some(placed));
        assert_eq!(
            seen.get(b"took 420 ms"),
            None,
            "another length is another form"
        );
        assert_eq!(seen.get(b"took 0x ms"), None, "a hex prefix is kept");
        let long = "x".repeat(MAX_LINE + 1);
        assert_eq!(seen.get(long.as_bytes()), None);
        seen.remember(placed);
        assert_eq!(seen.get(long.as_bytes()), None, "long lines are not kept");
        for i in 0..CAP {
            let word: String = (0..4)
                .map(|k| char::from(b'a' + (i / 26usize.pow(k) % 26) as u8))
                .collect();
            seen.get(format!("line {word}").as_bytes());
            seen.remember(placed);
        }
        assert!(seen.lines.len() <= CAP);
        assert_eq!(seen.get(b"took 42 ms"), None, "started over when full");
    }
}
