//! Lines seen before, by their digit-blind form (every digit made `1`, as in `memo`).
//!
//! Most lines of a log repeat an earlier line but for their numbers: in the Loghub
//! samples, read once in order, 70 to 99 % of lines join this way. A line's chunks take
//! their shapes from their digit-blind forms, except constants with digits of their own
//! (`jk2_init()`, `hadoop2`), which take it from their text. So a line of the same form
//! whose own-digit chunks are the same text as the earlier line's encodes exactly alike,
//! and can join the template the first one joined without being split, looked up or
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

/// A remembered form: where its line went, and the text of its chunks with digits of
/// their own (start and length in the line; their bytes back to back).
#[derive(Debug)]
struct Entry {
    placed: Placed,
    own: Box<[(u32, u32)]>,
    own_text: Box<[u8]>,
}

impl Entry {
    /// Whether `message`, of this entry's form, has the same own-digit chunks.
    fn same_own_text(&self, message: &[u8]) -> bool {
        let mut at = 0;
        self.own.iter().all(|&(start, len)| {
            let (start, len) = (start as usize, len as usize);
            let same = message[start..start + len] == self.own_text[at..at + len];
            at += len;
            same
        })
    }
}

#[derive(Debug, Default)]
pub struct Seen {
    lines: FxHashMap<Box<[u8]>, Entry>,
    bytes: usize,
    /// The form of the line last looked up, if it may be remembered.
    form: Vec<u8>,
    ready: bool,
}

impl Seen {
    /// Where the last line of `message`'s form went, if its own-digit chunks are the
    /// same; the form is kept for `remember`.
    #[inline]
    pub fn get(&mut self, message: &[u8]) -> Option<Placed> {
        self.ready = message.len() <= MAX_LINE;
        if !self.ready {
            return None;
        }
        digit_blind(message, &mut self.form);
        let entry = self.lines.get(self.form.as_slice())?;
        entry.same_own_text(message).then_some(entry.placed)
    }

    /// Remembers where the line last looked up (`message`) went, with its chunks that
    /// have digits of their own (`own`: start and length).
    pub fn remember(&mut self, message: &[u8], placed: Placed, own: &[(u32, u32)]) {
        if !std::mem::take(&mut self.ready) {
            return;
        }
        let own_text: Box<[u8]> = own
            .iter()
            .flat_map(|&(start, len)| &message[start as usize..(start + len) as usize])
            .copied()
            .collect();
        let size = self.form.len() + own_text.len();
        if self.lines.len() >= CAP || self.bytes + size > BYTES_CAP {
            self.lines.clear();
            self.bytes = 0;
        }
        self.bytes += size;
        let entry = Entry {
            placed,
            own: own.into(),
            own_text,
        };
        self.lines.insert(self.form.as_slice().into(), entry);
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
        seen.remember(b"took 15 ms", placed, &[]);
        assert_eq!(seen.get(b"took 42 ms"), Some(placed));
        assert_eq!(
            seen.get(b"took 420 ms"),
            None,
            "another length is another form"
        );
        assert_eq!(seen.get(b"took 0x ms"), None, "a hex prefix is kept");
        // Chunks with digits of their own must be the same text.
        assert_eq!(seen.get(b"ext3 mounted on sda1"), None);
        seen.remember(b"ext3 mounted on sda1", placed, &[(0, 4)]);
        assert_eq!(seen.get(b"ext3 mounted on sda2"), Some(placed));
        assert_eq!(seen.get(b"ext4 mounted on sda1"), None);
        let long = "x".repeat(MAX_LINE + 1);
        assert_eq!(seen.get(long.as_bytes()), None);
        seen.remember(long.as_bytes(), placed, &[]);
        assert_eq!(seen.get(long.as_bytes()), None, "long lines are not kept");
        for i in 0..CAP {
            let word: String = (0..4)
                .map(|k| char::from(b'a' + (i / 26usize.pow(k) % 26) as u8))
                .collect();
            let line = format!("line {word}");
            seen.get(line.as_bytes());
            seen.remember(line.as_bytes(), placed, &[]);
        }
        assert!(seen.lines.len() <= CAP);
        assert_eq!(seen.get(b"took 42 ms"), None, "started over when full");
    }
}
