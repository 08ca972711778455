//! A direct-mapped cache of the shape ids of short chunks, in front of the shape table.
//!
//! A chunk of up to sixteen bytes is read as two little-endian words (zero past its end);
//! with its length they are its exact key, so a hit is one multiply, one load and a few
//! compares, with no string hashing and no `memcmp`. A slot holds the last chunk
//! that mapped to it; a collision only sends the chunk to the shape table.

/// Slots (a power of two): 4096 × 24 bytes stays in the L2 cache.
const SLOTS: usize = 4096;
/// The longest chunk with a key: most are shorter, the rest go to the shape table.
const MAX_LEN: usize = 16;
const MUL: u64 = 0x9e37_79b9_7f4a_7c15;

/// The exact key of a chunk of at most `MAX_LEN` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Short {
    words: [u64; 2],
    len: u32,
}

impl Short {
    /// The key of `message[start..start + len]`, if `len` is at most `MAX_LEN`.
    #[inline]
    pub fn of(message: &[u8], start: usize, len: usize) -> Option<Short> {
        if len > MAX_LEN {
            return None;
        }
        let mut words = [0u64; 2];
        if start + MAX_LEN <= message.len() {
            // Read whole words past the chunk's end and drop the bytes that are not in it.
            let word = |at: usize| {
                u64::from_le_bytes(message[at..at + 8].try_into().expect("eight bytes"))
            };
            let keep = |n: usize| {
                if n >= 8 {
                    u64::MAX
                } else {
                    (1u64 << (8 * n)) - 1
                }
            };
            words[0] = word(start) & keep(len);
            words[1] = word(start + 8) & keep(len.saturating_sub(8));
        } else {
            let mut bytes = [0u8; MAX_LEN];
            bytes[..len].copy_from_slice(&message[start..start + len]);
            words[0] = u64::from_le_bytes(bytes[..8].try_into().expect("eight bytes"));
            words[1] = u64::from_le_bytes(bytes[8..].try_into().expect("eight bytes"));
        }
        Some(Short {
            words,
            len: len as u32,
        })
    }

    /// The key of the chunk's digit-blind form (see `miner::digit_blind`): every digit
    /// made `1` but a `0` before `x` or `X`, computed on both words at once.
    #[inline]
    pub fn digit_blind(self) -> Short {
        // High bit of each byte equal to `b` / in `lo..=hi`; exact, as no carry crosses
        // a byte when only the low seven bits are added to.
        const LOW: u128 = u128::MAX / 255;
        const LOW7: u128 = LOW * 0x7f;
        const HIGH: u128 = LOW * 0x80;
        let equal = |x: u128, b: u8| {
            let v = x ^ (LOW * u128::from(b));
            !(((v & LOW7) + LOW7) | v) & HIGH
        };
        let x = u128::from(self.words[0]) | (u128::from(self.words[1]) << 64);
        let low7 = x & LOW7;
        let at_least_0 = (low7 + LOW * (0x80 - 0x30)) & HIGH;
        let above_9 = (low7 + LOW * (0x80 - 0x3a)) & HIGH;
        let digits = at_least_0 & !above_9 & !x & HIGH;
        let hex_start = equal(x, b'0') & (equal(x | (LOW * 0x20), b'x') >> 8);
        let flagged = digits & !hex_start;
        // 0x80 in a flagged byte becomes 0xff (modulo 2^128 for the top byte).
        let mask = (flagged << 1).wrapping_sub(flagged >> 7);
        let blind = (x & !mask) | ((LOW * u128::from(b'1')) & mask);
        Short {
            words: [blind as u64, (blind >> 64) as u64],
            len: self.len,
        }
    }

    #[inline]
    fn slot(&self) -> usize {
        let [a, b] = self.words;
        let h = (a ^ b.rotate_left(29) ^ u64::from(self.len)).wrapping_mul(MUL);
        (h >> (64 - SLOTS.trailing_zeros())) as usize
    }
}

#[derive(Debug)]
pub struct Memo {
    slots: Vec<(Short, u32)>,
}

impl Default for Memo {
    fn default() -> Self {
        // An empty key of length zero never matches: chunks are never empty.
        Memo {
            slots: vec![(Short::default(), 0); SLOTS],
        }
    }
}

impl Memo {
    #[inline]
    pub fn get(&self, key: &Short) -> Option<u32> {
        let (held, id) = &self.slots[key.slot()];
        (held == key).then_some(*id)
    }

    #[inline]
    pub fn put(&mut self, key: Short, id: u32) {
        let slot = key.slot();
        self.slots[slot] = (key, id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_exact_wherever_the_chunk_sits() {
        let message = b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
        for start in 0..message.len() {
            for len in 1..=MAX_LEN.min(message.len() - start) {
                let key = Short::of(message, start, len).expect("short");
                // The same text elsewhere (at the end of a buffer) has the same key.
                let alone = &message[start..start + len];
                assert_eq!(Short::of(alone, 0, len), Some(key));
                let shorter = Short::of(alone, 0, len - 1).expect("short");
                assert_ne!(shorter, key);
            }
        }
        assert_eq!(Short::of(&[b'a'; 40], 0, MAX_LEN + 1), None);
    }

    #[test]
    fn digit_blind_matches_the_byte_by_byte_form() {
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
            "x",
            "abc",
            "attempt_1_0x0",
            "1234567890",
            "0123456x",
            "abcdefg0xyz",
            "blk_-16089996879",
            "attempt_14451_0x",
        ];
        for chunk in chunks {
            let key = Short::of(chunk.as_bytes(), 0, chunk.len()).expect("short");
            let mut blind = Vec::new();
            crate::miner::digit_blind(chunk, &mut blind);
            assert_eq!(
                key.digit_blind(),
                Short::of(&blind, 0, blind.len()).expect("short"),
                "{chunk}"
            );
        }
    }

    #[test]
    fn remembers_the_last_chunk_per_slot() {
        let mut memo = Memo::default();
        let a = Short::of(b"alpha", 0, 5).unwrap();
        let b = Short::of(b"bravo", 0, 5).unwrap();
        assert_eq!(memo.get(&a), None);
        memo.put(a, 7);
        assert_eq!(memo.get(&a), Some(7));
        assert_eq!(memo.get(&b), None);
    }
}
