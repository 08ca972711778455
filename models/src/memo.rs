//! A direct-mapped cache of the shape ids of chunks up to 32 bytes, in front of the
//! shape table.
//!
//! A chunk is read as little-endian words at fixed offsets from its start and its end
//! (two for up to sixteen bytes, zero past its end; four overlapping ones for up to 32,
//! never past the chunk); with its length they are its exact key. A hit is one
//! multiply, one load and a few compares, with no string hashing and no `memcmp`.
//! Digit-blind keys are made on the words themselves. A slot holds the last chunk that
//! mapped to it; a collision only sends the chunk to the shape table.

const MUL: u64 = 0x9e37_79b9_7f4a_7c15;
const LOW: u64 = u64::MAX / 255;
const LOW7: u64 = LOW * 0x7f;
const HIGH: u64 = LOW * 0x80;

/// High bit of each byte of `x` equal to `b`; exact, as no carry crosses a byte when
/// only the low seven bits are added to.
#[inline]
fn equal(x: u64, b: u8) -> u64 {
    let v = x ^ (LOW * u64::from(b));
    !(((v & LOW7) + LOW7) | v) & HIGH
}

/// `word` with each digit made `1`, but a `0` before `x` or `X` (see
/// `blind::digit_blind`); `next_x` tells whether the byte after the word is one.
#[inline]
fn digit_blind(word: u64, next_x: bool) -> u64 {
    let low7 = word & LOW7;
    let at_least_0 = (low7 + LOW * (0x80 - 0x30)) & HIGH;
    let above_9 = (low7 + LOW * (0x80 - 0x3a)) & HIGH;
    let digits = at_least_0 & !above_9 & !word & HIGH;
    let x_after = (equal(word | (LOW * 0x20), b'x') >> 8) | (u64::from(next_x) << 63);
    let flagged = digits & !(equal(word, b'0') & x_after);
    // 0x80 in a flagged byte becomes 0xff (modulo 2^64 for the top byte).
    let mask = (flagged << 1).wrapping_sub(flagged >> 7);
    (word & !mask) | ((LOW * u64::from(b'1')) & mask)
}

fn is_x(byte: u8) -> bool {
    byte | 0x20 == b'x'
}

/// The exact key of a chunk of up to `W * 8` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Words<const W: usize> {
    words: [u64; W],
    len: u32,
}

impl<const W: usize> Default for Words<W> {
    fn default() -> Self {
        // Length zero never matches: chunks are never empty.
        Words {
            words: [0; W],
            len: 0,
        }
    }
}

impl<const W: usize> Words<W> {
    #[inline]
    fn slot(&self, bits: u32) -> usize {
        let mixed = self
            .words
            .iter()
            .enumerate()
            .fold(u64::from(self.len), |h, (i, w)| {
                h ^ w.rotate_left(29 * i as u32)
            });
        (mixed.wrapping_mul(MUL) >> (64 - bits)) as usize
    }

    /// One test of the XORed words (a derived `==` may load a key back from memory as
    /// one vector right after it was stored as words, and stall).
    #[inline]
    fn same(&self, other: &Self) -> bool {
        let differ = self
            .words
            .iter()
            .zip(&other.words)
            .fold(u64::from(self.len ^ other.len), |d, (a, b)| d | (a ^ b));
        differ == 0
    }
}

/// A chunk's key: short (up to sixteen bytes) or long (up to 32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Short(Words<2>),
    Long(Words<4>),
}

impl Key {
    /// The key of `message[start..start + len]`, or with `blind` of its digit-blind
    /// form, if `len` is 1 to 32.
    #[inline(always)]
    pub fn of(message: &[u8], start: usize, len: usize, blind: bool) -> Option<Key> {
        let end = start + len;
        let load = |at: usize| u64::from_le_bytes(message[at..at + 8].try_into().expect("8"));
        match len {
            1..=16 => {
                let mut words = [0u64; 2];
                if start + 16 <= message.len() {
                    // Whole words past the chunk's end, minus the bytes not in it.
                    let keep = |n: usize| match n {
                        0 => 0,
                        1..=7 => u64::MAX >> (64 - 8 * n),
                        _ => u64::MAX,
                    };
                    words = [
                        load(start) & keep(len),
                        load(start + 8) & keep(len.saturating_sub(8)),
                    ];
                } else {
                    let mut bytes = [0u8; 16];
                    bytes[..len].copy_from_slice(&message[start..end]);
                    for (word, part) in words.iter_mut().zip(bytes.chunks_exact(8)) {
                        *word = u64::from_le_bytes(part.try_into().expect("8"));
                    }
                }
                if blind {
                    let next_x = is_x(words[1] as u8);
                    words = [digit_blind(words[0], next_x), digit_blind(words[1], false)];
                }
                Some(Key::Short(Words {
                    words,
                    len: len as u32,
                }))
            }
            17..=32 => {
                let word = |at: usize| {
                    let w = load(at);
                    if blind {
                        digit_blind(w, at + 8 < end && is_x(message[at + 8]))
                    } else {
                        w
                    }
                };
                let words = [word(start), word(start + 8), word(end - 16), word(end - 8)];
                Some(Key::Long(Words {
                    words,
                    len: len as u32,
                }))
            }
            _ => None,
        }
    }
}

/// Slots (powers of two): 4096 × 24 and 1024 × 40 bytes stay in the L2 cache.
const SHORT_BITS: u32 = 12;
const LONG_BITS: u32 = 10;

#[derive(Debug)]
pub struct Memo {
    short: Vec<(Words<2>, u32)>,
    long: Vec<(Words<4>, u32)>,
}

impl Default for Memo {
    /// Empty: the tables (about 176 KB) are allocated by the first `put`, so a service
    /// that logs a line or two costs next to nothing (a flood of service names, or a new
    /// service in the middle of an outage, pays no allocation up front).
    fn default() -> Self {
        Memo {
            short: Vec::new(),
            long: Vec::new(),
        }
    }
}

impl Memo {
    #[inline]
    pub fn get(&self, key: &Key) -> Option<u32> {
        let (same, id) = match key {
            Key::Short(k) => {
                let (held, id) = self.short.get(k.slot(SHORT_BITS))?;
                (held.same(k), id)
            }
            Key::Long(k) => {
                let (held, id) = self.long.get(k.slot(LONG_BITS))?;
                (held.same(k), id)
            }
        };
        same.then_some(*id)
    }

    #[inline]
    pub fn put(&mut self, key: Key, id: u32) {
        match key {
            Key::Short(k) => {
                if self.short.is_empty() {
                    self.short = vec![(Words::default(), 0); 1 << SHORT_BITS];
                }
                self.short[k.slot(SHORT_BITS)] = (k, id);
            }
            Key::Long(k) => {
                if self.long.is_empty() {
                    self.long = vec![(Words::default(), 0); 1 << LONG_BITS];
                }
                self.long[k.slot(LONG_BITS)] = (k, id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_exact_wherever_the_chunk_sits() {
        let message = b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
        for start in 0..message.len() {
            for len in 1..=32.min(message.len() - start) {
                let key = Key::of(message, start, len, false).expect("short");
                // The same text alone (no bytes around it to read) has the same key.
                let alone = &message[start..start + len];
                assert_eq!(Key::of(alone, 0, len, false), Some(key));
                let other = Key::of(message, (start + 1) % (message.len() - len), len, false);
                assert_ne!(other, Some(key), "{start} {len}");
                if len > 1 {
                    assert_ne!(Key::of(alone, 0, len - 1, false), Some(key));
                }
            }
        }
        assert_eq!(Key::of(&[b'a'; 40], 0, 33, false), None);
    }

    #[test]
    fn digit_blind_keys_match_the_byte_by_byte_form() {
        let chunks = [
            "blk_-562",
            "0x1f3a",
            "0X9",
            "5x1f(",
            "a0x",
            "x0",
            "00xx",
            "1234567890abcdef",
            "uid=0",
            "ÿ9é0x",
            "0",
            "9",
            "abc",
            "attempt_1_0x0",
            "1234567890",
            "0123456x",
            "abcdefg0xyz",
            "blk_-16089996879",
            "blk_-1608999687919862906",
            "attempt_1445144423722_0020_m_00",
            "abcdefghijklmno0x",
            "abcdefg0x",
            "abcdefghijklmnopqrstuvwxyz01234",
        ];
        for chunk in chunks {
            let mut blind = Vec::new();
            crate::blind::digit_blind(chunk.as_bytes(), &mut blind);
            // Alone and inside a longer message (whole words read past both ends).
            let inside = format!("{chunk} {chunk} and some more text after it");
            for (message, start) in [(chunk.to_string(), 0), (inside, chunk.len() + 1)] {
                let key = Key::of(message.as_bytes(), start, chunk.len(), true);
                assert_eq!(key, Key::of(&blind, 0, blind.len(), false), "{chunk}");
            }
        }
    }

    #[test]
    fn remembers_the_last_chunk_per_slot() {
        let mut memo = Memo::default();
        let a = Key::of(b"alpha", 0, 5, false).unwrap();
        let b = Key::of(b"bravo", 0, 5, false).unwrap();
        let long = Key::of(b"a-chunk-longer-than-sixteen", 0, 27, false).unwrap();
        assert_eq!(memo.get(&a), None);
        memo.put(a, 7);
        memo.put(long, 8);
        assert_eq!(memo.get(&a), Some(7));
        assert_eq!(memo.get(&b), None);
        assert_eq!(memo.get(&long), Some(8));
    }
}
