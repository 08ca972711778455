//! A message to the array of shape ids the tree works on: the message split into chunks
//! (one pass over its bytes, by byte class), each chunk's shape found in the memos, in
//! the cache of digit-blind forms or by lexing it, and interned in the shape table.

use super::{Miner, CUT, LEXED_CAP, MEMO_AFTER_LINES, OWN_TEXT, VAR};
use crate::blind::digit_blind;
use crate::memo::Key;
use logheal_parsers::lexer::{is_unit, key_of, tokens, Kind};

/// Byte classes for splitting a message and telling numbers from words in one pass.
const SPACE: u8 = 1;

const DIGIT: u8 = 2;

const ALPHA: u8 = 4;

static CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = if c.is_ascii_whitespace() {
            SPACE
        } else if c.is_ascii_digit() {
            DIGIT
        } else if c.is_ascii_alphabetic() {
            ALPHA
        } else {
            0
        };
        b += 1;
    }
    table
};

/// The longest quoted value read as one chunk: a longer one is free text, split at its
/// spaces as any other.
pub(super) const QUOTED_MAX: usize = 256;

/// The whitespace-separated chunks of `message` (a `key="…"` value with spaces is one, and
/// so is a path with a space, see `path_goes_on`), each with its start and the classes of
/// its bytes (`DIGIT`, `ALPHA`) OR-ed together, in one pass over the bytes.
pub(super) fn chunks(message: &str) -> impl Iterator<Item = (usize, &str, u8)> {
    let bytes = message.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() && CLASS[bytes[i] as usize] == SPACE {
            i += 1;
        }
        if i == bytes.len() {
            return None;
        }
        let start = i;
        let mut class = 0;
        // Up to `close`, the closing quote of a `key="…"` value, which is one chunk,
        // spaces and all, when its quote closes within `QUOTED_MAX` bytes:
        // `tag="View Lock",` and `tag="*launch*",` are the same field. (Each quote is
        // looked for once, and not far, so a line costs linear time, quotes or not.)
        let mut close = 0;
        let mut slashes = 0;
        while i < bytes.len() {
            let b = bytes[i];
            let c = CLASS[b as usize];
            if c == SPACE {
                if i > close {
                    // A path goes on past one space when what follows goes on as a path
                    // would: `/rrds/D Nodes/dn731/pkts_out.rrd` is one path.
                    match path_goes_on(bytes, i, slashes) {
                        Some(end) => close = end,
                        None => break,
                    }
                }
            } else if b == b'/' {
                slashes += 1;
            } else if b == b'"' && i > close && i > start && bytes[i - 1] == b'=' {
                let rest = &bytes[i + 1..bytes.len().min(i + 1 + QUOTED_MAX)];
                if let Some(at) = rest.iter().position(|&b| b == b'"') {
                    close = i + 1 + at;
                }
            }
            class |= c & !SPACE;
            i += 1;
        }
        // Both ends are at ASCII whitespace or the ends of the message: char boundaries.
        Some((start, &message[start..i], class))
    })
}

/// Where a path that meets a space at `space` goes on to, if it does: the path so far
/// (the chunk, with `slashes` slashes) has at least two segments and the space is one
/// space before a segment of letters and a slash, which is not a version's (`HTTP/1.1`
/// after `GET /a/b` is a protocol): the index of that continuation's last byte.
fn path_goes_on(bytes: &[u8], space: usize, slashes: usize) -> Option<usize> {
    if slashes < 2 || bytes[space] != b' ' || bytes[space - 1] == b'/' {
        return None;
    }
    let rest = &bytes[space + 1..];
    let word = rest.iter().take_while(|b| b.is_ascii_alphabetic()).count();
    if word == 0 || rest.get(word) != Some(&b'/') {
        return None;
    }
    let after = rest.get(word + 1)?;
    if after.is_ascii_digit() || CLASS[*after as usize] == SPACE {
        return None;
    }
    let len = rest
        .iter()
        .position(|&b| CLASS[b as usize] == SPACE)
        .unwrap_or(rest.len());
    Some(space + len)
}

/// The opening brackets before and the closing brackets and punctuation after a chunk's
/// value: `(5)` → (`(`, `)`), `5,` → (``, `,`), `[x]:` → (`[`, `]:`).
pub(super) fn brackets(chunk: &str) -> (&str, &str) {
    let bytes = chunk.as_bytes();
    let lead = bytes
        .iter()
        .take_while(|b| matches!(b, b'(' | b'[' | b'{' | b'<' | b'"' | b'\''))
        .count();
    let trail = bytes[lead..]
        .iter()
        .rev()
        .take_while(|b| {
            matches!(
                b,
                b')' | b']' | b'}' | b'>' | b'"' | b'\'' | b',' | b'.' | b';' | b':'
            )
        })
        .count();
    (&chunk[..lead], &chunk[bytes.len() - trail..])
}

/// Letters (and `_`, `-`), maybe quoted or bracketed, with a little punctuation after:
/// `ARPT:`, `failed,`, `"GET`, `(spawning).`.
fn is_plain_word(chunk: &str) -> bool {
    let word = chunk
        .trim_start_matches(['"', '\'', '(', '[', '{'])
        .trim_end_matches([':', ',', ';', '.', '!', '?', '"', '\'', ')', ']', '}']);
    let letters = |w: &str| {
        !w.is_empty()
            && w.bytes()
                .all(|b| b.is_ascii_alphabetic() || b == b'_' || b == b'-')
    };
    // A dotted name whose last label is an upper-case constant names one thing, as a
    // word does: `android.intent.action.SCREEN_ON`; `com.apple.xpc.launchd` does not.
    let name = |w: &str| {
        letters(w)
            || w.rsplit_once('.').is_some_and(|(path, last)| {
                path.split('.').all(letters)
                    && last.len() > 1
                    && last.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
            })
    };
    // `key=word` and `key:word` are enumeration-like values too: `user=root`,
    // `state=RUNNING`, `action:android.intent.action.TIME_TICK`.
    match word.split_once(['=', ':']) {
        Some((key, value)) => letters(key) && name(value),
        None => name(word),
    }
}

impl Miner {
    /// Turns `message` into chunk ids in `self.line`.
    pub(super) fn encode(&mut self, message: &str) {
        self.line.clear();
        self.display.clear();
        let max = self.config.max_tokens;
        for (start, chunk, class) in chunks(message) {
            if self.line.len() == max {
                self.line.push(CUT);
                self.display.push(CUT);
                self.stats.truncated += 1;
                self.exact = false;
                break;
            }
            // A unit after a number is part of its value: `5 ms`, `1.2 KB)`, `<1 sec`.
            let id = self.chunk_id(message.as_bytes(), start, chunk, class);
            let id = if self.line.last() == Some(&VAR) && self.unit[id as usize] {
                VAR
            } else {
                id
            };
            if id != VAR {
                self.line.push(id);
                self.display.push(id);
                continue;
            }
            // A run of variables (a list of ids, a free-text tail) is one variable, so
            // lists of different lengths share a template.
            let (lead, trail) = brackets(chunk);
            let continues = self.line.last() == Some(&VAR);
            if continues {
                self.run_opened += lead.len() as u32;
            } else {
                self.run_opened = 0;
                self.run_lead.clear();
                self.run_lead.push_str(lead);
            }
            // Closing brackets opened inside the run belong to it: `1 bytes (2 KB) sent`.
            let closed = (self.run_opened as usize).min(trail.len());
            self.run_opened -= closed as u32;
            let trail = &trail[closed..];
            let run_lead = std::mem::take(&mut self.run_lead);
            let shown = self.display_id(&run_lead, trail);
            self.run_lead = run_lead;
            if continues {
                *self.display.last_mut().expect("run") = shown;
            } else {
                self.line.push(VAR);
                self.display.push(shown);
            }
        }
    }

    /// The shape id of `<lead><*><trail>`; plain `<*>` when both are empty.
    fn display_id(&mut self, lead: &str, trail: &str) -> u32 {
        if lead.is_empty() && trail.is_empty() {
            return VAR;
        }
        self.shape.clear();
        self.shape.push_str(lead);
        self.shape.push_str("<*>");
        self.shape.push_str(trail);
        let short = Key::of(self.shape.as_bytes(), 0, self.shape.len(), false);
        if let Some(id) = short.and_then(|key| self.shown.get(&key)) {
            return id;
        }
        let id = match self.shape_ids.get(self.shape.as_str()) {
            Some(&id) => id,
            None if self.shapes.len() >= self.config.max_chunks => return VAR,
            None => {
                let id = self.shapes.len() as u32;
                self.plain.push(false);
                self.unit.push(false);
                self.shapes.push(self.shape.as_str().into());
                self.shape_ids.insert(self.shape.as_str().into(), id);
                id
            }
        };
        if let (Some(key), true) = (short, self.memo_pays()) {
            self.shown.put(key, id);
        }
        id
    }

    #[inline]
    pub(super) fn chunk_id(&mut self, message: &[u8], start: usize, chunk: &str, class: u8) -> u32 {
        // Digits and no letters (`404`, `10.0.0.1:80`, `12:30:01,`): no constant word can
        // be in it, so it is a variable without lexing.
        if class & (DIGIT | ALPHA) == DIGIT {
            return VAR;
        }
        let digits = class & DIGIT != 0;
        // Most chunks are short and their digit-blind form was seen before: the memo
        // knows them.
        let short = Key::of(message, start, chunk.len(), digits);
        match short.and_then(|key| self.memo.get(&key)) {
            Some(id) if id != OWN_TEXT => id,
            _ => self.chunk_id_slow(start, chunk, digits, short),
        }
    }

    /// Whether the memos are worth their tables (about 176 KB each): only for a miner
    /// that has seen enough lines to repeat itself, so a service that logs a line or
    /// two (a flood of service names) costs a few hundred bytes.
    #[inline]
    fn memo_pays(&self) -> bool {
        self.stats.lines > MEMO_AFTER_LINES
    }

    /// `chunk_id` past the memo: the tables, then the lexer; the memo learns the answer.
    #[inline(never)]
    fn chunk_id_slow(
        &mut self,
        start: usize,
        chunk: &str,
        digits: bool,
        short: Option<Key>,
    ) -> u32 {
        let (id, form) = self.looked_up(chunk, digits);
        if form == Some(OWN_TEXT) {
            self.own_digits.push((start as u32, chunk.len() as u32));
        } else {
            self.exact &= form == Some(id);
        }
        if let (Some(key), Some(form), true) = (short, form, self.memo_pays()) {
            self.memo.put(key, form);
        }
        id
    }

    /// The shape id of a chunk from the tables, lexing it if they do not know it, and
    /// what its digit-blind form stands for (the id, or `OWN_TEXT`) if that may be
    /// remembered.
    fn looked_up(&mut self, chunk: &str, digits: bool) -> (u32, Option<u32>) {
        // Constant chunks are interned under their own text.
        if !digits {
            if let Some(&id) = self.shape_ids.get(chunk) {
                return (id, Some(id));
            }
        }
        // The digit-blind form finds the shape (`blk_-562`), or says the chunk is a
        // constant with digits of its own.
        digit_blind(chunk.as_bytes(), &mut self.lexed_key);
        match self.lexed.get(self.lexed_key.as_slice()) {
            Some(&OWN_TEXT) => {
                if let Some(&id) = self.shape_ids.get(chunk) {
                    return (id, Some(OWN_TEXT));
                }
            }
            Some(&id) => return (id, Some(id)),
            None => {}
        }
        let (id, form) = self.lex(chunk);
        if let Some(form) = form {
            if self.lexed.len() >= LEXED_CAP {
                self.lexed.clear();
            }
            self.lexed.insert(self.lexed_key.as_slice().into(), form);
        }
        (id, form)
    }

    /// The shape id of a chunk by lexing it, and what chunks of the same digit-blind
    /// form have: the same id, `OWN_TEXT` when a constant part has digits, or nothing
    /// to remember when the shape table is full.
    pub(super) fn lex(&mut self, chunk: &str) -> (u32, Option<u32>) {
        self.shape.clear();
        let mut variable = false;
        let mut last_var = false;
        let mut constant_chars = false;
        let mut constant_digits = false;
        let mut lexed = tokens(chunk).peekable();
        while let Some((kind, text)) = lexed.next() {
            // An identifier called like a function (`jk2_init()`) is code, not data.
            let called = kind == Kind::Mixed && lexed.peek().is_some_and(|(_, t)| *t == "(");
            if kind == Kind::KeyValue {
                // The key stays: `onExtend:<*>`.
                let key = key_of(text);
                constant_chars = true;
                constant_digits |= key.bytes().any(|b| b.is_ascii_digit());
                self.shape.push_str(key);
                self.shape.push_str("<*>");
                variable = true;
                last_var = true;
            } else if kind.is_variable() && !called {
                variable = true;
                if !last_var {
                    self.shape.push_str("<*>");
                }
                last_var = true;
            } else {
                constant_chars |= kind == Kind::Word || called;
                constant_digits |= text.bytes().any(|b| b.is_ascii_digit());
                last_var = false;
                self.shape.push_str(text);
            }
        }
        let form = |id| Some(if constant_digits { OWN_TEXT } else { id });
        // `10.0.0.1:80` or `(<*>)` is all variable; `()` or `""` is an empty value.
        const EMPTY: &[&str] = &["()", "[]", "{}", "<>", "\"\"", "''"];
        if (variable && !constant_chars) || EMPTY.contains(&chunk) {
            return (VAR, form(VAR));
        }
        let key: &str = if variable { &self.shape } else { chunk };
        if let Some(&id) = self.shape_ids.get(key) {
            return (id, form(id));
        }
        if self.shapes.len() >= self.config.max_chunks {
            self.stats.chunks_over_cap += 1;
            return (VAR, None);
        }
        let id = self.shapes.len() as u32;
        self.plain.push(!variable && is_plain_word(key));
        let bare = key.trim_matches(|c: char| c.is_ascii_punctuation() && c != '%');
        self.unit.push(!variable && is_unit(bare));
        self.shapes.push(key.into());
        self.shape_ids.insert(key.into(), id);
        (id, form(id))
    }
}
