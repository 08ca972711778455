//! The digit-blind form of a text: every ASCII digit made `1`, except a `0` before `x`
//! or `X`, which may start a hex number (the only pattern the lexer tells digits apart
//! by). Chunks that differ only in their digits lex alike, and lines that do encode
//! alike, so both are cached by this form.

/// The digit-blind form of `text` in `out`. Sixteen bytes at a time, read along with
/// the sixteen after each (the last block overlaps the one before), in array code the
/// compiler makes vector instructions.
pub fn digit_blind(text: &[u8], out: &mut Vec<u8>) {
    const BLOCK: usize = 16;
    out.clear();
    out.extend_from_slice(text);
    let n = text.len();
    if n <= BLOCK {
        for (k, o) in out.iter_mut().enumerate() {
            *o = blind_byte(text[k], text.get(k + 1).copied().unwrap_or(0));
        }
        return;
    }
    let block = |at: usize| -> [u8; BLOCK] { text[at..at + BLOCK].try_into().expect("block") };
    for start in (0..n - 1).step_by(BLOCK) {
        let at = start.min(n - 1 - BLOCK);
        let (bytes, next) = (block(at), block(at + 1));
        let form: [u8; BLOCK] = std::array::from_fn(|k| blind_byte(bytes[k], next[k]));
        out[at..at + BLOCK].copy_from_slice(&form);
    }
    out[n - 1] = blind_byte(text[n - 1], 0);
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

    fn form(text: &str) -> String {
        let mut out = Vec::new();
        digit_blind(text.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn digits_become_one_but_a_hex_prefix_stays() {
        assert_eq!(form(""), "");
        assert_eq!(form("7"), "1");
        assert_eq!(form("blk_-562 of 67108864"), "blk_-111 of 11111111");
        assert_eq!(form("0x1f3a 0X9 a0x 00xx 90"), "0x1f1a 0X1 a0x 10xx 11");
        assert_eq!(
            form("from /10.251.42.84:50010 took 0.5 ms"),
            "from /11.111.11.11:11111 took 1.1 ms"
        );
    }

    #[test]
    fn every_length_and_block_boundary_gives_the_same_form() {
        // `0x` pairs and digits at every offset, in texts of every length around the
        // block size: each byte follows the definition.
        let pattern = b"a0x90X0 7x0";
        for len in 0..70 {
            let text: Vec<u8> = pattern.iter().cycle().take(len).copied().collect();
            let mut out = Vec::new();
            digit_blind(&text, &mut out);
            for (k, (&b, &o)) in text.iter().zip(&out).enumerate() {
                let next = text.get(k + 1).map_or(0, |n| n | 0x20);
                let expected = if b.is_ascii_digit() && !(b == b'0' && next == b'x') {
                    b'1'
                } else {
                    b
                };
                assert_eq!(o, expected, "byte {k} of {len}");
            }
            assert_eq!(out.len(), len);
        }
    }
}
