//! Lines seen before, by their digit-blind form (every digit made `1`, as in `memo`).
//!
//! Most lines of a log repeat an earlier line but for their numbers: in the Loghub
//! samples, read once in order, 57 to 96 % of lines join this way. When every chunk of
//! a line took its shape from its digit-blind form (no constant with digits of its own,
//! no chunk past the shape cap), a line of the same form encodes exactly alike, so it
//! can join the template the first one joined without being split, looked up or
//! matched. Keys are whole forms, compared exactly; the table starts over when full.

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
        blind(message, &mut self.form);
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

/// The digit-blind form of `message` in `out`: each digit made `1`, but a `0` before
/// `x` or `X`. Sixteen bytes at a time, read along with the sixteen after each (the last
/// block overlaps the one before), in array code the compiler makes vector instructions.
fn blind(message: &[u8], out: &mut Vec<u8>) {
    const BLOCK: usize = 16;
    out.clear();
    out.extend_from_slice(message);
    let n = message.len();
    if n <= BLOCK {
        for (k, o) in out.iter_mut().enumerate() {
            *o = blind_byte(message[k], message.get(k + 1).copied().unwrap_or(0));
        }
        return;
    }
    let block = |at: usize| -> [u8; BLOCK] { message[at..at + BLOCK].try_into().expect("block") };
    for start in (0..n - 1).step_by(BLOCK) {
        let at = start.min(n - 1 - BLOCK);
        let (bytes, next) = (block(at), block(at + 1));
        let form: [u8; BLOCK] = std::array::from_fn(|k| blind_byte(bytes[k], next[k]));
        out[at..at + BLOCK].copy_from_slice(&form);
    }
    out[n - 1] = blind_byte(message[n - 1], 0);
}

/// A byte of the digit-blind form, given the byte after it; without branches.
#[inline(always)]
fn blind_byte(b: u8, next: u8) -> u8 {
    let digit = b.wrapping_sub(b'0') < 10;
    let hex = (b == b'0') & (next | 0x20 == b'x');
    let blinded = u8::from(digit & !hex).wrapping_neg();
    b ^ ((b ^ b'1') & blinded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_the_bytewise_digit_blind_text() {
        let lines = [
            "",
            "a",
            "blk_-562 of size 67108864 from /10.251.42.84",
            "0x1f3a 0X9 a0x 00xx 1234567x 0",
            "exactly8",
            "seven0x",
            "eight0x1 and 9",
        ];
        for line in lines {
            let mut form = Vec::new();
            blind(line.as_bytes(), &mut form);
            let mut bytewise = Vec::new();
            crate::miner::digit_blind(line, &mut bytewise);
            assert_eq!(form, bytewise, "{line}");
        }
    }

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
