//! JSON lines: one pass over the object's bytes that descends only into objects leading to
//! a mapped field, skips every other value without building it, and borrows strings that
//! need no unescaping. A string with escapes is kept as written and decoded only when
//! used, but for the message, which is decoded into a buffer as it is read: an
//! envelope's payload (an app's JSON inside a shipper's string) is read again from
//! there, and what it holds borrowed back from the line (`written_at`).
//!
//! A scanner of our own rather than a serde visitor over `serde_json`: on the replay
//! bench, the visitor's per-key dispatch and string reads were a third of the time of a
//! flat-JSON replay (`perf`), most of it for keys and values logheal never looks at. The
//! grammar is JSON's (RFC 8259), with three leniencies that keep log records instead of
//! skipping them: raw control characters inside strings are taken as they are, an
//! escaped lone surrogate (`"\ud800"`) reads as U+FFFD, and a number beyond `f64`'s
//! range (`1e999`) as infinite. Nesting is unbounded and costs no stack: skipped
//! containers are walked with an explicit one.

use crate::fields::{same, Field, FieldIndex, PathEntry};
use crate::record::{Raw, RawRecord};
use crate::ParseError;
use std::borrow::Cow;

/// What the JSON reader keeps from one line to the next: the dotted path of the object
/// being read (a buffer), and the keys of recent lines.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scratch {
    path: String,
    keys: KeyCache,
    /// The line's message, when it is a string with escapes, decoded in the pass that
    /// found its end.
    pub(crate) decoded: Decoded,
}

/// The decoded text of a message string with escapes, and where its escapes were: an
/// envelope's payload, to be read again (`LineParser::read_escaped_payload`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Decoded {
    pub(crate) text: String,
    pub(crate) marks: Vec<Mark>,
    /// The written string it decodes (its address and length), of the current line.
    of: (usize, usize),
}

impl Decoded {
    /// Forgets the last line's decoding (what another line's bytes decoded to is never
    /// taken for this one's), and the room a long one left: what a line's escapes cost is
    /// bounded by the line's length, but a record that once had a megabyte of them does
    /// not keep that for the records after it.
    fn forget(&mut self) {
        const KEEP: usize = 64 << 10;
        self.of = (0, 0);
        if self.text.capacity() > KEEP {
            self.text = String::new();
        }
        if self.marks.capacity() > KEEP / 16 {
            self.marks = Vec::new();
        }
    }

    /// Makes this the decoding of `raw` (a [`Raw::Escaped`]'s text), unless it is already:
    /// the reader decodes each message string with escapes as it reads it.
    pub(crate) fn decode(&mut self, raw: &str) {
        let of = (raw.as_ptr() as usize, raw.len());
        if self.of != of {
            self.text.clear();
            self.marks.clear();
            decode(raw, &mut self.text, Some(&mut self.marks));
            self.of = of;
        }
    }
}

/// Reads one JSON object into `record`.
pub(crate) fn read<'a>(
    line: &'a str,
    index: &FieldIndex,
    scratch: &mut Scratch,
    record: &mut RawRecord<'a>,
) -> Result<()> {
    scratch.path.clear();
    scratch.decoded.forget();
    let mut scan = Scan { text: line, at: 0 };
    scan.space();
    scan.object(index, scratch, record)?;
    scan.space();
    if scan.at != line.len() {
        return Err(ParseError::MalformedJson);
    }
    Ok(())
}

/// Where [`decode`] decoded an escape: its start and length as written and as decoded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    raw: u32,
    raw_len: u32,
    out: u32,
    out_len: u32,
}

impl Mark {
    fn new(raw: usize, raw_len: usize, out: usize, out_len: usize) -> Mark {
        // Lines are far shorter than 4 GiB (the engine caps them at `max_line_bytes`);
        // past that a mark is wrong, and what is borrowed back by it is compared byte for
        // byte before it is used (`LineParser::read_escaped_payload`).
        let n = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Mark {
            raw: n(raw),
            raw_len: n(raw_len),
            out: n(out),
            out_len: n(out_len),
        }
    }
}

/// Appends the decoded text of `raw` (a string's contents as written, whose escapes the
/// scanner checked: a [`Raw::Escaped`]) to `out`, and with `marks` notes where each
/// escape was (see [`written_at`]).
pub(crate) fn decode(raw: &str, out: &mut String, marks: Option<&mut Vec<Mark>>) {
    let backslash = |bytes: &[u8], at: usize| {
        let stop = memchr::memchr(b'\\', &bytes[at..]).map_or(bytes.len(), |i| at + i);
        Ok((stop, stop == bytes.len()))
    };
    let Ok((first, false)) = backslash(raw.as_bytes(), 0) else {
        return out.push_str(raw);
    };
    // Its escapes were checked when it was read: this does not fail.
    let _ = Scan { text: raw, at: 0 }.decode_from(0, first, Some(out), marks, backslash);
}

/// For [`Scan::decode_from`] in a line: the next closing quote or backslash from `at`,
/// and whether it is the quote.
fn to_quote(bytes: &[u8], at: usize) -> Result<(usize, bool)> {
    let stop = quote_or_escape(bytes, at)?;
    Ok((stop, bytes[stop] == b'"'))
}

/// The decoded text of `raw` (see [`decode`]).
pub(crate) fn decoded(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    decode(raw, &mut out, None);
    out
}

/// Where the bytes `out[at..at + len]` of a decoded string stand, unchanged, in the
/// string as written: `None` when an escape was decoded inside them. `marks` are the
/// decoding's, in order.
pub(crate) fn written_at(marks: &[Mark], at: usize, len: usize) -> Option<usize> {
    let end = |n: u32, l: u32| n as usize + l as usize;
    let before = marks.partition_point(|m| end(m.out, m.out_len) <= at);
    if marks
        .get(before)
        .is_some_and(|m| (m.out as usize) < at + len)
    {
        return None;
    }
    match before.checked_sub(1).map(|i| marks[i]) {
        Some(m) => (at + end(m.raw, m.raw_len)).checked_sub(end(m.out, m.out_len)),
        None => Some(at),
    }
}

/// The keys recent lines had, per object read (the record, and each object a prefix key
/// leads into), in their order, with what each means. The records of one stream share
/// their layouts, so the next key is most often the one after the last key matched
/// (or the one after that: a key some records leave out). Such a key is compared with
/// those bytes, and is neither searched for its closing quote nor looked up: that search
/// and lookup were a third of a flat-JSON replay (`perf`).
///
/// What a key means depends only on the key and the path of its object, so a layout is
/// kept per path, and a key found in it means what it meant when it was kept. Keys with
/// escapes, and keys longer than [`CachedKey::MAX_LEN`], are not kept. Bounded: only
/// objects a prefix key leads into are read (their paths come from the configuration),
/// and at most [`KeyCache::MAX_OBJECTS`] layouts of [`KeyCache::MAX_KEYS`] keys are kept.
///
/// A layout that misses more than it hits (records of many layouts on one stream, keys
/// that never repeat) rests for a while: its keys are read and looked up as without it,
/// so a stream it does not fit pays little for it (a flood of unique keys cost 30 % more
/// without the rest, `logheal replay` A/B).
#[derive(Debug, Clone, Default)]
struct KeyCache {
    layouts: Vec<Layout>,
}

/// The keys of one object (known by its path), in the order recent records had them.
#[derive(Debug, Clone)]
struct Layout {
    path: Box<str>,
    keys: Vec<CachedKey>,
    /// Hits less misses, within `-KeyCache::MISSES_TO_REST..=KeyCache::MAX_SCORE`.
    score: i32,
    /// How many more keys are read without the layout.
    resting: u32,
}

#[derive(Debug, Clone, Copy)]
struct CachedKey {
    bytes: [u8; CachedKey::MAX_LEN],
    len: u8,
    entry: Option<PathEntry>,
}

impl CachedKey {
    const MAX_LEN: usize = 32;

    #[inline]
    fn bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl KeyCache {
    const MAX_OBJECTS: usize = 32;
    const MAX_KEYS: usize = 64;
    /// A layout rests once its misses outnumber its hits by this many...
    const MISSES_TO_REST: i32 = 256;
    /// ...for this many keys, then is tried again.
    const REST: u32 = 16 * 1024;
    /// Hits beyond misses that count: a layout that stops fitting rests within
    /// `MAX_SCORE + MISSES_TO_REST` keys.
    const MAX_SCORE: i32 = 256;

    /// The layout of the object at `path`, made on its first use; `None` when the cache
    /// is full.
    #[inline]
    fn layout(&mut self, path: &str) -> Option<usize> {
        if let Some(i) = self
            .layouts
            .iter()
            .position(|l| same(l.path.as_bytes(), path.as_bytes()))
        {
            return Some(i);
        }
        (self.layouts.len() < Self::MAX_OBJECTS).then(|| {
            self.layouts.push(Layout {
                path: path.into(),
                keys: Vec::new(),
                score: 0,
                resting: 0,
            });
            self.layouts.len() - 1
        })
    }

    /// Counts a hit or a miss of `layout`, which rests once its misses outnumber its
    /// hits by `MISSES_TO_REST`.
    #[inline]
    fn count(&mut self, layout: usize, hit: bool) {
        let l = &mut self.layouts[layout];
        if hit {
            l.score = (l.score + 1).min(Self::MAX_SCORE);
        } else {
            l.score -= 1;
            if l.score <= -Self::MISSES_TO_REST {
                l.score = 0;
                l.resting = Self::REST;
            }
        }
    }

    /// Whether `layout` rests for the key being read (which it counts).
    #[inline]
    fn rests(&mut self, layout: usize) -> bool {
        let l = &mut self.layouts[layout];
        if l.resting == 0 {
            return false;
        }
        l.resting -= 1;
        true
    }

    /// Keeps `key` at place `at` of `layout`, before the key that was there (which
    /// this line left out or has later); in a full layout, in its place. Whether it was
    /// kept.
    fn keep(&mut self, layout: usize, at: usize, key: &str, entry: Option<PathEntry>) -> bool {
        let keys = &mut self.layouts[layout].keys;
        if key.len() > CachedKey::MAX_LEN || at > keys.len() {
            return false;
        }
        let mut cached = CachedKey {
            bytes: [0; CachedKey::MAX_LEN],
            len: key.len() as u8,
            entry,
        };
        cached.bytes[..key.len()].copy_from_slice(key.as_bytes());
        if keys.len() < Self::MAX_KEYS {
            keys.insert(at, cached);
        } else if let Some(slot) = keys.get_mut(at) {
            *slot = cached;
        } else {
            return false;
        }
        true
    }
}

type Result<T> = std::result::Result<T, ParseError>;

const MALFORMED: ParseError = ParseError::MalformedJson;

/// A cursor over one line. Invariant: every slice taken of `text` starts and ends next to
/// an ASCII byte (a quote, an escape, a digit), so it falls on char boundaries.
struct Scan<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Scan<'a> {
    #[inline]
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.at).copied()
    }

    #[inline]
    fn space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    #[inline]
    fn eat(&mut self, byte: u8) -> Result<()> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(MALFORMED)
        }
    }

    /// An object whose keys extend the path: each key that maps to a field or leads to
    /// one is read, every other value skipped.
    fn object(
        &mut self,
        index: &FieldIndex,
        scratch: &mut Scratch,
        record: &mut RawRecord<'a>,
    ) -> Result<()> {
        self.eat(b'{')?;
        self.space();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(());
        }
        let prefix_len = scratch.path.len();
        let layout = scratch.keys.layout(&scratch.path);
        // The place in the layout where the next key is expected.
        let mut next = 0;
        loop {
            self.space();
            let entry = self.key(index, scratch, layout, &mut next)?;
            self.space();
            self.eat(b':')?;
            self.space();
            match entry {
                Some(entry) => self.value(entry, index, scratch, record)?,
                None => self.skip_value()?,
            }
            scratch.path.truncate(prefix_len);
            self.space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(MALFORMED),
            }
        }
    }

    /// A member's key, and what it means: a key of the object's layout at or just after
    /// `next` when the bytes are the same, else read and looked up (a top-level key as it
    /// is, a nested one by its dotted path) and kept in the layout. The path is extended
    /// by the key when the key leads to fields (its value's keys are looked up under it).
    #[inline]
    fn key(
        &mut self,
        index: &FieldIndex,
        scratch: &mut Scratch,
        layout: Option<usize>,
        next: &mut usize,
    ) -> Result<Option<PathEntry>> {
        let nested = !scratch.path.is_empty();
        let layout = layout.filter(|&l| !scratch.keys.rests(l));
        if let Some(layout) = layout {
            let keys = &scratch.keys.layouts[layout].keys;
            let bytes = self.bytes();
            let open = self.at;
            for at in [*next, *next + 1] {
                let Some(known) = keys.get(at) else {
                    break;
                };
                let close = open + 1 + usize::from(known.len);
                if bytes.get(open) == Some(&b'"')
                    && bytes.get(close) == Some(&b'"')
                    && same(&bytes[open + 1..close], known.bytes())
                {
                    let entry = known.entry;
                    if entry.is_some_and(|e| e.is_prefix) {
                        if nested {
                            scratch.path.push('.');
                        }
                        scratch.path.push_str(&self.text[open + 1..close]);
                    }
                    self.at = close + 1;
                    *next = at + 1;
                    scratch.keys.count(layout, true);
                    return Ok(entry);
                }
            }
            scratch.keys.count(layout, false);
        }
        let key = self.string()?;
        let entry = if nested {
            scratch.path.push('.');
            scratch.path.push_str(&key);
            index.lookup(&scratch.path)
        } else {
            let entry = index.lookup(&key);
            if entry.is_some_and(|e| e.is_prefix) {
                scratch.path.push_str(&key);
            }
            entry
        };
        // A key the layout does not hold leaves the expected place where it was.
        if let (Some(layout), Cow::Borrowed(key)) = (layout, &key) {
            if scratch.keys.keep(layout, *next, key, entry) {
                *next += 1;
            }
        }
        Ok(entry)
    }

    /// The value of a key that maps to a field or leads to one.
    fn value(
        &mut self,
        entry: PathEntry,
        index: &FieldIndex,
        scratch: &mut Scratch,
        record: &mut RawRecord<'a>,
    ) -> Result<()> {
        let raw = match self.peek().ok_or(MALFORMED)? {
            b'{' if entry.is_prefix => return self.object(index, scratch, record),
            b'{' | b'[' => {
                self.skip_value()?;
                Raw::Compound
            }
            b'"' => {
                let message = matches!(entry.field, Some((Field::Message, _)));
                self.string_value(message.then_some(&mut scratch.decoded))?
            }
            b't' => {
                self.literal(b"true")?;
                Raw::Bool(true)
            }
            b'f' => {
                self.literal(b"false")?;
                Raw::Bool(false)
            }
            b'n' => {
                self.literal(b"null")?;
                Raw::Null
            }
            _ => self.number()?,
        };
        if let Some((field, rank)) = entry.field {
            record.offer(field, rank, raw);
        }
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Result<()> {
        if self.bytes()[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(())
        } else {
            Err(MALFORMED)
        }
    }

    /// A number, as `serde_json` gives it: an integer as `U64` (or `I64` when negative)
    /// while it fits, anything else as `F64` (out of its range: infinite).
    fn number(&mut self) -> Result<Raw<'a>> {
        let start = self.at;
        let integer = self.skip_number()?;
        let text = &self.text[start..self.at];
        if integer {
            let (negative, digits) = match text.strip_prefix('-') {
                Some(digits) => (true, digits),
                None => (false, text),
            };
            if let Ok(value) = digits.parse::<u64>() {
                if !negative {
                    return Ok(Raw::U64(value));
                }
                if value <= i64::MAX as u64 + 1 {
                    return Ok(Raw::I64((value as i64).wrapping_neg()));
                }
            }
        }
        text.parse::<f64>().map(Raw::F64).map_err(|_| MALFORMED)
    }

    /// Skips a number, checking its grammar: whether it is an integer (no fraction, no
    /// exponent).
    fn skip_number(&mut self) -> Result<bool> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => self.digits()?,
            _ => return Err(MALFORMED),
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.digits()?;
            integer = false;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.digits()?;
            integer = false;
        }
        Ok(integer)
    }

    /// One or more decimal digits.
    fn digits(&mut self) -> Result<()> {
        let start = self.at;
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        if self.at == start {
            Err(MALFORMED)
        } else {
            Ok(())
        }
    }

    /// A string at `at` (its opening quote), borrowed from the line unless it has escapes.
    fn string(&mut self) -> Result<Cow<'a, str>> {
        self.eat(b'"')?;
        let start = self.at;
        let stop = quote_or_escape(self.bytes(), start)?;
        if self.bytes()[stop] == b'"' {
            self.at = stop + 1;
            return Ok(Cow::Borrowed(&self.text[start..stop]));
        }
        let mut owned = String::with_capacity(stop - start + 16);
        let end = self.decode_from(start, stop, Some(&mut owned), None, to_quote)?;
        self.at = end + 1;
        Ok(Cow::Owned(owned))
    }

    /// A string value at `at` (its opening quote): borrowed from the line; one with
    /// escapes is checked and kept as written ([`Raw::Escaped`]), decoded only if used,
    /// or into `into` as it is read (a message, which is read again).
    fn string_value(&mut self, mut into: Option<&mut Decoded>) -> Result<Raw<'a>> {
        self.eat(b'"')?;
        let start = self.at;
        let stop = quote_or_escape(self.bytes(), start)?;
        if self.bytes()[stop] == b'"' {
            self.at = stop + 1;
            return Ok(Raw::Str(Cow::Borrowed(&self.text[start..stop])));
        }
        let (out, marks) = match into.as_deref_mut() {
            Some(d) => {
                d.text.clear();
                d.marks.clear();
                (Some(&mut d.text), Some(&mut d.marks))
            }
            None => (None, None),
        };
        let end = self.decode_from(start, stop, out, marks, to_quote)?;
        self.at = end + 1;
        let raw = &self.text[start..end];
        if let Some(d) = into {
            d.of = (raw.as_ptr() as usize, raw.len());
        }
        Ok(Raw::Escaped(raw))
    }

    /// Reads a string's contents from `start`, whose first escape is at `stop`, checking
    /// each escape, to where `next` says they end (`next` gives, from a position, the
    /// next backslash or the end, and whether it is the end: the closing quote in a
    /// line, the end of a string's text as kept). With `out`, appends the decoded text
    /// there, and with `marks` notes where each escape was (offsets from `start`).
    /// Returns where the contents end.
    fn decode_from(
        &mut self,
        start: usize,
        mut stop: usize,
        mut out: Option<&mut String>,
        mut marks: Option<&mut Vec<Mark>>,
        next: impl Fn(&[u8], usize) -> Result<(usize, bool)>,
    ) -> Result<usize> {
        if let Some(out) = out.as_deref_mut() {
            out.push_str(&self.text[start..stop]);
        }
        loop {
            self.at = stop;
            let c = self.escape()?;
            if let Some(out) = out.as_deref_mut() {
                let at = out.len();
                out.push(c);
                if let Some(marks) = marks.as_deref_mut() {
                    marks.push(Mark::new(stop - start, self.at - stop, at, out.len() - at));
                }
            }
            let from = self.at;
            let end;
            (stop, end) = next(self.bytes(), from)?;
            if let Some(out) = out.as_deref_mut() {
                out.push_str(&self.text[from..stop]);
            }
            if end {
                return Ok(stop);
            }
        }
    }

    /// The character of the escape at `at` (its backslash), which it moves past.
    fn escape(&mut self) -> Result<char> {
        let escaped = self.bytes().get(self.at + 1).copied().ok_or(MALFORMED)?;
        self.at += 2;
        Ok(match escaped {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => self.unicode_escape()?,
            _ => return Err(MALFORMED),
        })
    }

    /// The character of a `\uXXXX` escape whose `\u` was just read, with the low half of
    /// a surrogate pair when one follows; a lone surrogate is U+FFFD.
    fn unicode_escape(&mut self) -> Result<char> {
        let high = self.hex4()?;
        if !(0xD800..0xDC00).contains(&high) {
            return Ok(char::from_u32(u32::from(high)).unwrap_or('\u{FFFD}'));
        }
        if self.bytes()[self.at..].starts_with(b"\\u") {
            let back = self.at;
            self.at += 2;
            let low = self.hex4()?;
            if (0xDC00..0xE000).contains(&low) {
                let c = 0x10000 + ((u32::from(high) - 0xD800) << 10) + (u32::from(low) - 0xDC00);
                return Ok(char::from_u32(c).unwrap_or('\u{FFFD}'));
            }
            // Not a low half: it is read as an escape of its own.
            self.at = back;
        }
        Ok('\u{FFFD}')
    }

    fn hex4(&mut self) -> Result<u16> {
        let digits = self.bytes().get(self.at..self.at + 4).ok_or(MALFORMED)?;
        let mut value = 0u16;
        for &d in digits {
            let v = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return Err(MALFORMED),
            };
            value = value << 4 | u16::from(v);
        }
        self.at += 4;
        Ok(value)
    }

    /// Skips a string at `at` (its opening quote), checking its escapes.
    fn skip_string(&mut self) -> Result<()> {
        self.eat(b'"')?;
        loop {
            let from = self.at;
            let stop = quote_or_escape(self.bytes(), from)?;
            if self.bytes()[stop] == b'"' {
                self.at = stop + 1;
                return Ok(());
            }
            self.at = stop;
            self.escape()?;
        }
    }

    /// Skips one value of any kind and depth, checking its grammar, without recursion.
    fn skip_value(&mut self) -> Result<()> {
        let mut open = Nesting::default();
        loop {
            // A value starts here.
            self.space();
            match self.peek().ok_or(MALFORMED)? {
                opening @ (b'{' | b'[') => {
                    let object = opening == b'{';
                    self.at += 1;
                    self.space();
                    if self.peek() == Some(if object { b'}' } else { b']' }) {
                        self.at += 1;
                    } else {
                        open.push(object);
                        if object {
                            self.member_key()?;
                        }
                        continue;
                    }
                }
                b'"' => self.skip_string()?,
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                _ => {
                    self.skip_number()?;
                }
            }
            // A value ended: close what it ends, up to the next value or the end.
            loop {
                let Some(in_object) = open.top() else {
                    return Ok(());
                };
                self.space();
                match self.peek() {
                    Some(b',') => {
                        self.at += 1;
                        if in_object {
                            self.space();
                            self.member_key()?;
                        }
                        break;
                    }
                    Some(b'}') if in_object => {
                        self.at += 1;
                        open.pop();
                    }
                    Some(b']') if !in_object => {
                        self.at += 1;
                        open.pop();
                    }
                    _ => return Err(MALFORMED),
                }
            }
        }
    }

    /// A member's key and colon, inside a skipped object.
    fn member_key(&mut self) -> Result<()> {
        self.skip_string()?;
        self.space();
        self.eat(b':')
    }
}

/// The position of the first `"` or `\\` at or after `from`. Most keys and values are
/// short: the first 40 bytes (a 32-digit trace id and its quote) are searched a word at
/// a time, inline (a call to `memchr` per string was 8 % of a flat-JSON replay), and the
/// rest with `memchr`.
#[inline]
fn quote_or_escape(bytes: &[u8], from: usize) -> Result<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // Bytes of `w` equal to `b` get their high bit set (the first such byte exactly;
    // bits above it may be false positives, which `trailing_zeros` never reaches).
    let equal = |w: u64, b: u8| {
        let x = w ^ (ONES * u64::from(b));
        x.wrapping_sub(ONES) & !x & HIGHS
    };
    let mut at = from;
    let swar_end = bytes.len().min(from + 40);
    while at + 8 <= swar_end {
        let word = u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let found = equal(word, b'"') | equal(word, b'\\');
        if found != 0 {
            return Ok(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    memchr::memchr2(b'"', b'\\', &bytes[at..])
        .map(|i| at + i)
        .ok_or(MALFORMED)
}

/// The containers a skipped value is inside: `true` for an object, `false` for an array.
/// The first 64 levels are bits of a word; deeper ones spill into a vector.
#[derive(Default)]
struct Nesting {
    depth: usize,
    low: u64,
    deep: Vec<bool>,
}

impl Nesting {
    #[inline]
    fn push(&mut self, object: bool) {
        if self.depth < 64 {
            self.low = self.low & !(1 << self.depth) | (u64::from(object) << self.depth);
        } else {
            self.deep.push(object);
        }
        self.depth += 1;
    }

    #[inline]
    fn pop(&mut self) {
        self.depth -= 1;
        if self.depth >= 64 {
            self.deep.pop();
        }
    }

    #[inline]
    fn top(&self) -> Option<bool> {
        match self.depth {
            0 => None,
            d if d <= 64 => Some(self.low >> (d - 1) & 1 == 1),
            _ => self.deep.last().copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::FieldNames;

    /// Reads `line` with `scratch`; the record's debug form (its fields and ranks).
    fn read_with(line: &str, index: &FieldIndex, scratch: &mut Scratch) -> String {
        let mut record = RawRecord::default();
        read(line, index, scratch, &mut record).expect("well-formed");
        format!("{record:?}")
    }

    /// How many more keys the record's layout rests for.
    fn resting(scratch: &Scratch) -> u32 {
        scratch.keys.layouts.first().map_or(0, |l| l.resting)
    }

    #[test]
    fn a_message_is_decoded_as_read_and_a_long_ones_room_is_not_kept() {
        let index = FieldIndex::new(&FieldNames::default());
        let mut scratch = Scratch::default();
        let long = format!(r#"{{"msg":"{}"}}"#, "\\\"".repeat(100_000));
        read_with(&long, &index, &mut scratch);
        assert_eq!(scratch.decoded.text, "\"".repeat(100_000));
        assert_eq!(scratch.decoded.marks.len(), 100_000);
        read_with(r#"{"msg":"a\tb","level":"x"}"#, &index, &mut scratch);
        assert_eq!(scratch.decoded.text, "a\tb");
        assert!(scratch.decoded.text.capacity() <= 64 << 10);
        assert!(scratch.decoded.marks.capacity() <= 4 << 10);
        // Strings with escapes at other keys are not decoded as they are read.
        read_with(r#"{"level":"w\"x","msg":"plain"}"#, &index, &mut scratch);
        assert_eq!(scratch.decoded.text, "a\tb");
    }

    #[test]
    fn a_layout_that_keeps_missing_rests_and_reads_as_without_it() {
        let index = FieldIndex::new(&FieldNames::default());
        let mut scratch = Scratch::default();
        // Keys that never repeat: every one misses.
        let mut lines = 0;
        while resting(&scratch) == 0 {
            let line = format!(r#"{{"k{lines}a":1,"k{lines}b":2,"k{lines}c":"m"}}"#);
            read_with(&line, &index, &mut scratch);
            lines += 1;
            assert!(lines < 1000, "the layout never rested");
        }
        assert!(lines > 32, "rested after {lines} lines");
        // Resting, records read as they do first.
        let line = r#"{"ts":"2026-03-14T10:00:00Z","service":"checkout","msg":"x"}"#;
        let fresh = read_with(line, &index, &mut Scratch::default());
        assert_eq!(read_with(line, &index, &mut scratch), fresh);
        assert_eq!(read_with(line, &index, &mut scratch), fresh);
    }

    #[test]
    fn a_layout_that_fits_never_rests() {
        let index = FieldIndex::new(&FieldNames::default());
        let mut scratch = Scratch::default();
        for i in 0..5_000 {
            // A key some records leave out, as root spans leave out a parent span id.
            let parent = if i % 3 == 0 {
                ""
            } else {
                r#""parent_span_id":"ab","#
            };
            let line = format!(r#"{{"ts":{i},"span_id":"cd",{parent}"method":"GET","msg":"m"}}"#);
            read_with(&line, &index, &mut scratch);
        }
        assert_eq!(resting(&scratch), 0);
        assert!(scratch.keys.layouts[0].score > 0);
    }
}
