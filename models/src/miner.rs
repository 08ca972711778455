//! The template miner: online, streaming, in the Drain family.
//!
//! A message is split at whitespace into chunks (a `key="…"` value with spaces in its
//! quotes is one chunk). Each chunk is lexed (see
//! `logheal_parsers::lexer`); variable tokens become `<*>`, so `uid=0` has the shape
//! `uid=<*>`, and a chunk with no letters or digits left (`10.0.0.1:80`, `(<*>)` is kept
//! because of its brackets only if it has letters) is a wildcard. Shapes are interned to
//! `u32`s, so a line is a short array of integers and matching allocates nothing.
//!
//! Consecutive wildcard chunks collapse into one, so a list of values of any length is a
//! single variable, and a unit word after a variable (`5 ms`, `1.2 KB`) joins it.
//!
//! Clusters live in leaves keyed by the chunk count and the first two chunks (Drain's
//! fixed-depth prefix tree; a wildcard chunk routes to the wildcard branch, and a node with
//! too many children sends new ones there too). A line joins the most similar cluster of
//! its leaf when the share of equal positions (variables facing variables count) reaches
//! the similarity threshold and they share at least one constant; positions that differ
//! become wildcards. A refined template keeps its id.
//!
//! Plain words (letters, no variables; also `key=word`, `key:word` and dotted names that
//! end in an upper-case constant, `android.intent.action.SCREEN_ON`) are settled once a
//! template has seen them: a line with another word in that place does not generalise
//! the template. If that word is the only difference, the line starts a *sibling*
//! template; when enough siblings differ in the same place (`siblings_to_merge` distinct
//! words), the place is a variable after all and they merge into the oldest, which keeps
//! its id (the others become aliases). So
//! `VM Started` / `VM Paused` stay apart, while many user names become `user <*>`.
//! Routing through the tree uses plain words only; anything else takes the wildcard
//! branch, so a varying first word (`com.apple.<*>:`) does not scatter a template.
//!
//! A chunk that is not a known constant is lexed once per digit-blind form: `blk_-562`
//! and `blk_-7128` lex alike, so the second takes the first one's shape from a cache.
//! Chunks up to 32 bytes (most) are first looked up by that form in a direct-mapped
//! memo (`memo`), which costs no string hashing.
//!
//! A line whose masked shape was seen recently and still fits that template exactly
//! (every constant equal) joins it without a search; a search would change nothing.
//! Before all that, a line whose whole digit-blind form was seen (`seen`), with the same
//! constants with digits of their own, joins the template that form's line joined, if it
//! is still live: it would encode alike.
//!
//! Memory is bounded: at most `max_templates` clusters (the least recently used tenth is
//! evicted when full, counted, with the sibling groups and aliases only they had), at
//! most `max_chunks` distinct shapes (unknown shapes past the cap count as wildcards,
//! counted), and at most `max_tokens` chunks per message.

use crate::blind::digit_blind;
use crate::memo::{Key, Memo};
use crate::seen::Seen;
use logheal_parsers::lexer::{is_unit, key_of, tokens, Kind};
use rustc_hash::{FxHashMap, FxHashSet};

/// A mined template. Ids are never reused within a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TemplateId(pub u32);

/// Tuning. `Default` is the one configuration used for every dataset.
#[derive(Debug, Clone)]
pub struct MinerConfig {
    /// Share of constant positions that must agree for a line to join a cluster.
    pub similarity: f64,
    /// Leading chunks used to route a line to its leaf.
    pub prefix_depth: usize,
    /// Children per tree node before new ones go to the wildcard branch.
    pub max_children: usize,
    pub max_templates: usize,
    /// Templates per leaf: a search compares a line with every template of its leaf, so
    /// this bounds the cost of a line however many templates a flood of unique messages
    /// makes (the leaf's least recently used template makes room).
    pub max_leaf_templates: usize,
    pub max_chunks: usize,
    pub max_tokens: usize,
    /// After this many lines, a template's plain words are settled: a line with another
    /// word in their place starts a new template instead of generalising this one.
    pub settle_after: u64,
    /// Sibling templates (equal but for one settled word) that prove the word a variable:
    /// when this many exist, they merge into one template with `<*>` there.
    pub siblings_to_merge: usize,
}

impl Default for MinerConfig {
    fn default() -> Self {
        MinerConfig {
            similarity: 0.5,
            prefix_depth: 2,
            max_children: 100,
            max_templates: 50_000,
            max_leaf_templates: 1_024,
            max_chunks: 1_000_000,
            max_tokens: 256,
            settle_after: 1,
            siblings_to_merge: 4,
        }
    }
}

/// Counters of the miner's housekeeping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MinerStats {
    pub lines: u64,
    pub templates_created: u64,
    pub templates_evicted: u64,
    /// Chunks treated as wildcards because the shape table was full.
    pub chunks_over_cap: u64,
    /// Messages cut to `max_tokens` chunks.
    pub truncated: u64,
    /// Template creations, generalisations and evictions: any change of a template text.
    pub changes: u64,
    /// Lines that joined the template of an earlier line of the same digit-blind form
    /// (see `seen`), without being encoded or matched.
    pub repeated: u64,
}

/// The wildcard chunk id.
const VAR: u32 = 0;
/// The mark appended to a message cut at `max_tokens`.
const CUT: u32 = 1;

type LeafKey = (u32, [u32; 2]);

/// Lines a miner mines before its memos are filled (and their tables allocated).
const MEMO_AFTER_LINES: u64 = 256;

/// Masked shapes remembered before the cache starts over.
const RECENT_CAP: usize = 65_536;
/// Digit-blind chunk forms remembered before that cache starts over.
const LEXED_CAP: usize = 65_536;
/// In that cache: chunks of this form are constants with digits of their own
/// (`org.apache.hadoop2.Foo`), interned under their text.
const OWN_TEXT: u32 = u32::MAX;

fn line_hash(line: &[u32]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = rustc_hash::FxHasher::default();
    line.hash(&mut h);
    h.finish()
}

/// Where a line goes.
enum Match {
    Join(u32),
    /// A new template, sibling of `of`: equal but for a settled word at `position`.
    Sibling {
        of: u32,
        position: usize,
    },
    None,
}

/// The clusters of one leaf with their tokens side by side (a leaf's templates all have
/// its length), so a search reads one array instead of a template per cluster.
#[derive(Debug)]
struct Leaf {
    width: usize,
    slots: Vec<u32>,
    tokens: Vec<u32>,
}

impl Leaf {
    fn new(width: usize) -> Self {
        Leaf {
            width,
            slots: Vec::new(),
            tokens: Vec::new(),
        }
    }

    fn rows(&self) -> impl Iterator<Item = (u32, &[u32])> {
        let rows = (0..self.slots.len()).map(|i| &self.tokens[self.row(i)]);
        self.slots.iter().copied().zip(rows)
    }

    /// Where the tokens of the `i`th cluster are.
    fn row(&self, i: usize) -> std::ops::Range<usize> {
        i * self.width..(i + 1) * self.width
    }

    fn index(&self, slot: u32) -> Option<usize> {
        self.slots.iter().position(|&s| s == slot)
    }

    fn push(&mut self, slot: u32, tokens: &[u32]) {
        self.slots.push(slot);
        self.tokens.extend_from_slice(tokens);
    }

    /// Copies a cluster's changed tokens.
    fn update(&mut self, slot: u32, tokens: &[u32]) {
        if let Some(i) = self.index(slot) {
            let row = self.row(i);
            self.tokens[row].copy_from_slice(tokens);
        }
    }

    /// Drops a cluster, keeping the others in order (earlier ones win ties).
    fn remove(&mut self, slot: u32) {
        if let Some(i) = self.index(slot) {
            self.slots.remove(i);
            self.tokens.drain(self.row(i));
        }
    }
}

/// Whether `slot` still holds template `id` (not evicted, merged away or reused).
fn holds(clusters: &[Option<Cluster>], slot: u32, id: TemplateId) -> bool {
    clusters[slot as usize].as_ref().is_some_and(|c| c.id == id)
}

#[derive(Debug)]
struct Cluster {
    id: TemplateId,
    tokens: Vec<u32>,
    /// How each position is shown: its shape, or for a variable `<*>` with the brackets
    /// and punctuation around it (`(<*>)`, `<*>,`) while every line agreed on them.
    display: Vec<u32>,
    leaf: LeafKey,
    count: u64,
    last_used: u64,
}

pub struct Miner {
    config: MinerConfig,
    shape_ids: FxHashMap<Box<str>, u32>,
    shapes: Vec<Box<str>>,
    /// Per shape: a plain word (letters, maybe trailing punctuation), which may route a
    /// line through the tree.
    plain: Vec<bool>,
    /// Per shape: a unit of measure (`KB`, `sec,`), part of a number before it.
    unit: Vec<bool>,
    leaves: FxHashMap<LeafKey, Leaf>,
    /// Children seen per tree node: (length) and (length, first chunk).
    children: FxHashMap<(u32, u32, u32), FxHashSet<u32>>,
    clusters: Vec<Option<Cluster>>,
    free: Vec<u32>,
    slot_of: FxHashMap<TemplateId, u32>,
    /// Templates merged into another: old id → the id that absorbed it.
    aliases: FxHashMap<TemplateId, TemplateId>,
    /// Masked lines seen recently → the template slot they joined. Most lines repeat a
    /// masked shape; one that still fits its template exactly skips the search.
    recent: FxHashMap<u64, (u32, TemplateId)>,
    /// Sibling groups: a template with the settled position wildcarded → members.
    siblings: FxHashMap<Vec<u32>, Vec<(u32, TemplateId)>>,
    next_id: u32,
    live: usize,
    /// Templates evicted to make room in a full leaf.
    leaf_evictions: u64,
    tick: u64,
    line: Vec<u32>,
    display: Vec<u32>,
    /// The brackets before the current run of variables, and those opened inside it
    /// (whose closing ones are not shown).
    run_lead: String,
    run_opened: u32,
    shape: String,
    /// Shapes of lexed chunks by their digit-blind form (`lexed_key`), for chunks whose
    /// constant parts have no digits: `blk_-562` and `blk_-7128` lex alike.
    lexed: FxHashMap<Box<[u8]>, u32>,
    lexed_key: Vec<u8>,
    /// Shape ids of chunks up to 32 bytes by their digit-blind form (or `OWN_TEXT`).
    memo: Memo,
    /// The same for variables with their brackets shown (`(<*>)`).
    shown: Memo,
    /// Lines by digit-blind form → the template they joined (see `seen`).
    seen: Seen,
    /// Whether every chunk of the line being encoded took its shape from its digit-blind
    /// form or from its own text (`own_digits`), and the line was not cut: then its form
    /// may be remembered in `seen`.
    exact: bool,
    /// Where the line's constants with digits of their own are (start, length).
    own_digits: Vec<(u32, u32)>,
    pub stats: MinerStats,
}

impl Miner {
    pub fn new(config: MinerConfig) -> Self {
        Miner {
            config,
            shape_ids: FxHashMap::default(),
            shapes: vec!["<*>".into(), "<…>".into()],
            plain: vec![false, false],
            unit: vec![false, false],
            leaves: FxHashMap::default(),
            children: FxHashMap::default(),
            clusters: Vec::new(),
            free: Vec::new(),
            slot_of: FxHashMap::default(),
            aliases: FxHashMap::default(),
            recent: FxHashMap::default(),
            siblings: FxHashMap::default(),
            next_id: 0,
            live: 0,
            leaf_evictions: 0,
            tick: 0,
            line: Vec::new(),
            display: Vec::new(),
            run_lead: String::new(),
            run_opened: 0,
            shape: String::new(),
            lexed: FxHashMap::default(),
            lexed_key: Vec::new(),
            memo: Memo::default(),
            shown: Memo::default(),
            seen: Seen::default(),
            exact: false,
            own_digits: Vec::new(),
            stats: MinerStats::default(),
        }
    }

    /// Number of live templates.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Mines one message and returns its template.
    pub fn add(&mut self, message: &str) -> TemplateId {
        self.tick += 1;
        self.stats.lines += 1;
        let seen = self.seen.get(message.as_bytes());
        let slot = match seen.filter(|&(slot, id)| holds(&self.clusters, slot, id)) {
            Some((slot, _)) => {
                self.stats.repeated += 1;
                slot
            }
            None => {
                self.exact = true;
                self.own_digits.clear();
                let slot = self.mine(message);
                if self.exact {
                    let id = self.clusters[slot as usize].as_ref().expect("placed").id;
                    self.seen
                        .remember(message.as_bytes(), (slot, id), &self.own_digits);
                }
                slot
            }
        };
        let cluster = self.clusters[slot as usize].as_mut().expect("live slot");
        cluster.count += 1;
        cluster.last_used = self.tick;
        cluster.id
    }

    /// The slot of the template `message` joins: encoded, then the template its masked
    /// shape joined last if it still fits, or the full search.
    fn mine(&mut self, message: &str) -> u32 {
        self.encode(message);
        let shape = line_hash(&self.line);
        match self.recent.get(&shape).copied().filter(|&r| self.fits(r)) {
            Some((slot, _)) => slot,
            None => {
                let slot = self.place();
                if self.recent.len() >= RECENT_CAP {
                    self.recent.clear();
                }
                let id = self.clusters[slot as usize].as_ref().expect("placed").id;
                self.recent.insert(shape, (slot, id));
                slot
            }
        }
    }

    /// Whether the current line fits the remembered template exactly (still in its
    /// slot, every constant equal and every variable shown alike), so joining it would
    /// change nothing.
    fn fits(&self, (slot, id): (u32, TemplateId)) -> bool {
        let Some(c) = self.clusters[slot as usize].as_ref().filter(|c| c.id == id) else {
            return false;
        };
        c.tokens.len() == self.line.len()
            && c.tokens
                .iter()
                .zip(&self.line)
                .all(|(t, l)| *t == VAR || t == l)
            && c.display
                .iter()
                .zip(&self.display)
                .all(|(d, l)| *d == VAR || d == l)
    }

    /// The full search: route, match, and join, open a sibling or create.
    fn place(&mut self) -> u32 {
        let leaf = self.route();
        match self.best_match(leaf) {
            Match::Join(slot) => {
                self.merge(slot);
                slot
            }
            Match::Sibling { of, position } => {
                // Making room for the new template may evict the one it is a sibling of
                // (and hand its slot to the new one).
                let of_id = self.clusters[of as usize].as_ref().expect("matched").id;
                let slot = self.create(leaf);
                if holds(&self.clusters, of, of_id) {
                    self.sibling(of, slot, position)
                } else {
                    slot
                }
            }
            Match::None => self.create(leaf),
        }
    }

    /// Whether `id` is still live (not evicted).
    pub fn is_live(&self, id: TemplateId) -> bool {
        self.slot_of.contains_key(&self.resolve(id))
    }

    /// The live id a template id stands for: itself, or the template that absorbed it.
    pub fn resolve(&self, mut id: TemplateId) -> TemplateId {
        while let Some(&next) = self.aliases.get(&id) {
            id = next;
        }
        id
    }

    /// The template text of `id` (`<*>` for variables), if it is still live.
    pub fn template(&self, id: TemplateId) -> Option<String> {
        let slot = *self.slot_of.get(&self.resolve(id))?;
        let cluster = self.clusters[slot as usize].as_ref()?;
        let mut out = String::new();
        for (i, t) in cluster.display.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(&self.shapes[*t as usize]);
        }
        Some(out)
    }

    /// Live templates with their line counts.
    pub fn templates(&self) -> impl Iterator<Item = (TemplateId, u64)> + '_ {
        self.clusters.iter().flatten().map(|c| (c.id, c.count))
    }

    /// Live templates with their text.
    pub fn texts(&self) -> Vec<(TemplateId, String)> {
        self.templates()
            .filter_map(|(id, _)| Some((id, self.template(id)?)))
            .collect()
    }

    /// Turns `message` into chunk ids in `self.line`.
    fn encode(&mut self, message: &str) {
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
    fn chunk_id(&mut self, message: &[u8], start: usize, chunk: &str, class: u8) -> u32 {
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
    fn lex(&mut self, chunk: &str) -> (u32, Option<u32>) {
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

    /// The leaf for `self.line`: its length and first chunks, with wildcards and
    /// overflowing nodes sent to the wildcard branch.
    fn route(&mut self) -> LeafKey {
        let len = self.line.len() as u32;
        let mut prefix = [VAR; 2];
        let mut parent = 0u32;
        for (level, p) in prefix
            .iter_mut()
            .enumerate()
            .take(self.config.prefix_depth.min(2))
        {
            let Some(&token) = self.line.get(level) else {
                break;
            };
            let node = (len, level as u32, parent);
            let kids = self.children.entry(node).or_default();
            let chosen = if !self.plain[token as usize]
                || (!kids.contains(&token) && kids.len() >= self.config.max_children)
            {
                VAR
            } else {
                kids.insert(token);
                token
            };
            *p = chosen;
            parent = chosen;
        }
        (len, prefix)
    }

    /// The most similar cluster in `leaf` if similar enough (ties go to the more general
    /// template, as in Drain). A cluster whose settled words clash with the line is not
    /// joined; if the clash is at one position and all else agrees, the line is its sibling.
    fn best_match(&self, leaf: LeafKey) -> Match {
        let Some(members) = self.leaves.get(&leaf) else {
            return Match::None;
        };
        let line = &self.line;
        let mut best: Option<(f64, usize, u32)> = None;
        let mut sibling = None;
        for (slot, tokens) in members.rows() {
            // Equal constants, variables facing variables (the line is masked too),
            // template variables facing anything, and differing plain words.
            let (mut same, mut both_var, mut wild) = (0usize, 0usize, 0usize);
            let (mut words, mut word_at) = (0usize, 0usize);
            for (i, (t, l)) in tokens.iter().zip(line).enumerate() {
                if *t == VAR {
                    wild += 1;
                    both_var += usize::from(*l == VAR);
                } else if t == l {
                    same += 1;
                } else if self.plain[*t as usize] && self.plain[*l as usize] {
                    words += 1;
                    word_at = i;
                }
            }
            // Variables facing variables count as agreeing, but agreeing on variables
            // alone says nothing: a line with constants joins only a template it shares
            // one with (`onExtend:<*> <*>` and `getDiffTotalSteps= <*>` stay apart).
            if same == 0 && both_var < line.len() {
                continue;
            }
            let sim = if line.is_empty() {
                1.0
            } else {
                (same + both_var) as f64 / line.len() as f64
            };
            if words > 0 {
                // Differing words clash with a settled template: it is not joined, but
                // one clash with all else equal makes the line its sibling. Whether it
                // is settled is only looked up when the answer could matter.
                let could_join = sim >= self.config.similarity;
                let could_sibling =
                    words == 1 && same + wild + 1 == line.len() && sibling.is_none();
                if !could_join && !could_sibling {
                    continue;
                }
                let c = self.clusters[slot as usize]
                    .as_ref()
                    .expect("leaf slots are live");
                if c.count >= self.config.settle_after {
                    if could_sibling {
                        sibling = Some(Match::Sibling {
                            of: slot,
                            position: word_at,
                        });
                    }
                    continue;
                }
            }
            if best.is_none_or(|(s, w, _)| sim > s || (sim == s && wild > w)) {
                best = Some((sim, wild, slot));
            }
        }
        match best {
            Some((sim, _, slot)) if sim >= self.config.similarity => Match::Join(slot),
            _ => sibling.unwrap_or(Match::None),
        }
    }

    /// Records `new` as a sibling of `of` (equal but at `position`); when the group is
    /// large enough the word there is a variable: the siblings merge into the oldest,
    /// which keeps its id, and the others become its aliases. Returns the slot the
    /// current line belongs to.
    fn sibling(&mut self, of: u32, new: u32, position: usize) -> u32 {
        let c = |slot: u32| self.clusters[slot as usize].as_ref().expect("live");
        let mut key = c(of).tokens.clone();
        key[position] = VAR;
        let (of_id, new_id) = (c(of).id, c(new).id);
        let group = self.siblings.entry(key.clone()).or_default();
        for member in [(of, of_id), (new, new_id)] {
            if !group.contains(&member) {
                group.push(member);
            }
        }
        let clusters = &self.clusters;
        group.retain(|&(slot, id)| holds(clusters, slot, id));
        if group.len() < self.config.siblings_to_merge {
            return new;
        }
        let mut members = self.siblings.remove(&key).expect("just grown");
        members.sort_by_key(|&(_, id)| id);
        let (survivor, survivor_id) = members[0];
        for &(slot, id) in &members[1..] {
            let gone = self.clusters[slot as usize].take().expect("live member");
            self.leave(&gone, slot);
            self.slot_of.remove(&id);
            self.aliases.insert(id, survivor_id);
            self.free.push(slot);
            self.live -= 1;
            let s = self.clusters[survivor as usize].as_mut().expect("live");
            s.count += gone.count;
            s.last_used = s.last_used.max(gone.last_used);
        }
        self.clusters[survivor as usize]
            .as_mut()
            .expect("live")
            .tokens[position] = VAR;
        self.sync_leaf(survivor);
        self.stats.changes += 1;
        survivor
    }

    fn merge(&mut self, slot: u32) {
        let cluster = self.clusters[slot as usize].as_mut().expect("live slot");
        let positions = cluster.tokens.iter_mut().zip(cluster.display.iter_mut());
        let mut generalised = false;
        for ((t, d), (l, ld)) in positions.zip(self.line.iter().zip(&self.display)) {
            if t != l && *t != VAR {
                *t = VAR;
                generalised = true;
                self.stats.changes += 1;
            }
            if *t == VAR && d != ld && *d != VAR {
                *d = VAR;
                self.stats.changes += 1;
            }
        }
        if generalised {
            self.sync_leaf(slot);
        }
    }

    /// Copies a template's generalised tokens into its leaf.
    fn sync_leaf(&mut self, slot: u32) {
        let c = self.clusters[slot as usize].as_ref().expect("live");
        if let Some(leaf) = self.leaves.get_mut(&c.leaf) {
            leaf.update(slot, &c.tokens);
        }
    }

    /// Takes a removed cluster out of its leaf.
    fn leave(&mut self, cluster: &Cluster, slot: u32) {
        if let Some(leaf) = self.leaves.get_mut(&cluster.leaf) {
            leaf.remove(slot);
        }
    }

    fn create(&mut self, leaf: LeafKey) -> u32 {
        if self.live >= self.config.max_templates {
            self.evict_least_recent();
        }
        let crowded = self
            .leaves
            .get(&leaf)
            .is_some_and(|l| l.slots.len() >= self.config.max_leaf_templates);
        if crowded {
            self.evict_from_leaf(leaf);
        }
        let id = TemplateId(self.next_id);
        self.next_id += 1;
        self.stats.templates_created += 1;
        self.stats.changes += 1;
        let cluster = Cluster {
            id,
            tokens: self.line.clone(),
            display: self.display.clone(),
            leaf,
            count: 0,
            last_used: self.tick,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.clusters[slot as usize] = Some(cluster);
                slot
            }
            None => {
                self.clusters.push(Some(cluster));
                (self.clusters.len() - 1) as u32
            }
        };
        self.leaves
            .entry(leaf)
            .or_insert_with(|| Leaf::new(self.line.len()))
            .push(slot, &self.line);
        self.slot_of.insert(id, slot);
        self.live += 1;
        slot
    }

    /// Drops the least recently used template of a full leaf.
    fn evict_from_leaf(&mut self, leaf: LeafKey) {
        let clusters = &self.clusters;
        let oldest = self.leaves.get(&leaf).and_then(|l| {
            l.slots
                .iter()
                .copied()
                .min_by_key(|&slot| clusters[slot as usize].as_ref().map_or(0, |c| c.last_used))
        });
        let Some(slot) = oldest else {
            return;
        };
        self.evict(slot);
        self.leaf_evictions += 1;
        // What only evicted templates had is forgotten now and then, not per eviction.
        if self
            .leaf_evictions
            .is_multiple_of(self.config.max_leaf_templates.max(1) as u64)
        {
            self.forget_evicted();
        }
    }

    fn evict(&mut self, slot: u32) {
        let c = self.clusters[slot as usize].take().expect("live");
        self.leave(&c, slot);
        self.slot_of.remove(&c.id);
        self.free.push(slot);
        self.live -= 1;
        self.stats.templates_evicted += 1;
        self.stats.changes += 1;
    }

    /// Drops the least recently used tenth of the templates.
    fn evict_least_recent(&mut self) {
        let mut by_age: Vec<(u64, u32)> = self
            .clusters
            .iter()
            .enumerate()
            .filter_map(|(slot, c)| c.as_ref().map(|c| (c.last_used, slot as u32)))
            .collect();
        let n = (by_age.len() / 10).max(1);
        by_age.select_nth_unstable(n - 1);
        for &(_, slot) in &by_age[..n] {
            self.evict(slot);
        }
        self.forget_evicted();
    }

    fn forget_evicted(&mut self) {
        // Forget what only evicted templates had: sibling groups without a live member,
        // and aliases of evicted templates.
        let clusters = &self.clusters;
        self.siblings.retain(|_, group| {
            group.retain(|&(slot, id)| holds(clusters, slot, id));
            !group.is_empty()
        });
        let gone: Vec<_> = self
            .aliases
            .keys()
            .filter(|&&id| !self.is_live(id))
            .copied()
            .collect();
        for id in gone {
            self.aliases.remove(&id);
        }
    }
}

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
const QUOTED_MAX: usize = 256;

/// The whitespace-separated chunks of `message` (a `key="…"` value with spaces is one),
/// each with its start and the classes of its bytes (`DIGIT`, `ALPHA`) OR-ed together, in
/// one pass over the bytes.
fn chunks(message: &str) -> impl Iterator<Item = (usize, &str, u8)> {
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
        while i < bytes.len() {
            let b = bytes[i];
            let c = CLASS[b as usize];
            if c == SPACE {
                if i > close {
                    break;
                }
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

/// The opening brackets before and the closing brackets and punctuation after a chunk's
/// value: `(5)` → (`(`, `)`), `5,` → (``, `,`), `[x]:` → (`[`, `]:`).
fn brackets(chunk: &str) -> (&str, &str) {
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

impl std::fmt::Debug for Miner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} templates, {} shapes", self.live, self.shapes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn miner() -> Miner {
        Miner::new(MinerConfig::default())
    }

    #[test]
    fn variables_become_wildcards_and_ids_stay() {
        let mut m = miner();
        let a = m.add("Received block blk_-562 of size 67108864 from /10.250.10.6:40524");
        let b = m.add("Received block blk_7128 of size 3 from /10.251.73.220:50010");
        assert_eq!(a, b);
        assert_eq!(
            m.template(a).unwrap(),
            "Received block <*> of size <*> from <*>"
        );
        let c = m.add("PacketResponder 1 for block blk_38 terminating");
        assert_ne!(a, c);
        let d = m.add("login from host=alpha.local ok");
        let e = m.add("login from host=beta.local ok");
        assert_eq!(d, e, "refined in place");
        assert_eq!(m.template(d).unwrap(), "login from <*> ok");
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn a_key_with_a_long_number_keeps_its_key() {
        let mut m = miner();
        let a = m.add("onExtend:1514038530000 14 0 4");
        let b = m.add("onExtend:1514038590000 15 0 4");
        assert_eq!(a, b);
        // Not `<*> <*>`: the longest match once took `onExtend:15140` as an endpoint.
        assert_eq!(m.template(a).unwrap(), "onExtend:<*> <*>");
        // A port is still an endpoint, all variable.
        let d = m.add("connect to wpad:80 failed");
        let e = m.add("connect to proxy:3128 failed");
        assert_eq!(d, e);
        assert_eq!(m.template(d).unwrap(), "connect to <*> failed");
    }

    #[test]
    fn settled_words_stay_apart_until_many_siblings_prove_a_variable() {
        let mut m = miner();
        let started = m.add("VM Started (Lifecycle Event)");
        let paused = m.add("VM Paused (Lifecycle Event)");
        assert_ne!(
            started, paused,
            "a differing word does not generalise a template"
        );
        assert_eq!(m.add("VM Started (Lifecycle Event)"), started);
        let ids: Vec<_> = ["alice", "bob", "carol", "dave", "erin"]
            .iter()
            .map(|u| m.add(&format!("session opened for user {u}")))
            .collect();
        let first = m.resolve(ids[0]);
        assert!(
            ids.iter().all(|id| m.resolve(*id) == first),
            "four siblings merge"
        );
        assert_eq!(m.template(ids[1]).unwrap(), "session opened for user <*>");
        assert_eq!(m.add("session opened for user zoe"), first);
        assert_leaves_mirror_clusters(&m);
        assert_eq!(m.template(started).unwrap(), "VM Started (Lifecycle Event)");
    }

    #[test]
    fn key_value_words_are_settled_like_words() {
        let mut m = miner();
        let root = m.add("authentication failure; rhost=10.0.0.1 user=root");
        let guest = m.add("authentication failure; rhost=10.0.0.2 user=guest");
        assert_ne!(root, guest, "an enumeration-like value stays a constant");
        assert_eq!(
            m.add("authentication failure; rhost=10.0.0.3 user=root"),
            root
        );
        assert_eq!(
            m.template(root).unwrap(),
            "authentication failure; rhost=<*> user=root"
        );
        let ids: Vec<_> = ["a", "b", "c", "d"]
            .iter()
            .map(|u| m.add(&format!("login ok user={u}")))
            .collect();
        let first = m.resolve(ids[0]);
        assert!(
            ids.iter().all(|id| m.resolve(*id) == first),
            "many values prove a variable"
        );
    }

    #[test]
    fn shapes_keep_their_constant_parts() {
        let mut m = miner();
        let id = m.add("session opened for user root by (uid=0)");
        assert_eq!(
            m.template(id).unwrap(),
            "session opened for user root by (uid=<*>)"
        );
    }

    #[test]
    fn chunks_that_lex_alike_share_a_cached_shape_and_no_others_do() {
        let mut m = miner();
        let mut id = |chunk: &str| {
            let (start, text, class) = chunks(chunk).next().expect("one chunk");
            m.chunk_id(chunk.as_bytes(), start, text, class)
        };
        assert_eq!(id("blk_-562"), id("blk_-7128"), "digits do not matter");
        let cached = id("uid=42,");
        assert_eq!(id("uid=7,"), cached);
        // Constant parts with digits are not shared: a dotted class name keeps them.
        assert_ne!(id("org.apache.hadoop2.Foo"), id("org.apache.hadoop3.Foo"));
        // A leading `0x` is hex, a variable; any other digit there is a called function.
        assert_eq!(id("0x1f("), VAR);
        assert_ne!(id("5x1f("), VAR);
    }

    #[test]
    fn odd_messages_do_not_break_it() {
        let mut m = miner();
        let empty = m.add("");
        assert_eq!(m.add("   "), empty);
        assert_eq!(m.template(empty).unwrap(), "");
        m.add("x");
        let words = ["alpha", "bravo", "charlie"];
        let long: String = (0..100_000).map(|i| format!("{} ", words[i % 3])).collect();
        let id = m.add(&long);
        assert_eq!(m.template(id).unwrap().split(' ').count(), 257);
        assert_eq!(m.stats.truncated, 1);
        m.add("\u{0}\u{1}\u{fffd}\u{fffd} binary ÿÿ junk");
    }

    #[test]
    fn lines_of_a_seen_form_join_directly_if_their_own_digits_agree() {
        let mut m = miner();
        let took = m.add("took 15 ms on node-3");
        assert_eq!(m.add("took 72 ms on node-9"), took);
        assert_eq!(m.stats.repeated, 1, "the same form but for digits");
        assert_eq!(m.add("took 720 ms on node-9"), took);
        assert_eq!(m.stats.repeated, 1, "another length is another form");
        // `hadoop2` and `hadoop3` are constants of their own: the second line is not a
        // repeat of the first, and generalises the template; the third repeats it.
        let first = m.add("org.apache.hadoop2.Foo started");
        let second = m.add("org.apache.hadoop3.Foo started");
        assert_eq!(m.stats.repeated, 1);
        assert_eq!(first, second);
        assert_eq!(m.template(first).unwrap(), "<*> started");
        assert_eq!(m.add("org.apache.hadoop3.Foo started"), first);
        assert_eq!(m.stats.repeated, 2);
    }

    #[test]
    fn a_reused_slot_is_not_mistaken_for_the_evicted_template() {
        let mut m = Miner::new(MinerConfig {
            max_templates: 1,
            ..MinerConfig::default()
        });
        let full = m.add("disk full on node");
        // Routed elsewhere; at the cap of one it evicts `full` and takes its slot with
        // a template the first line would fit (`disk <*> on node`).
        let numbered = m.add("disk 42 on node");
        assert!(!m.is_live(full));
        let again = m.add("disk full on node");
        assert_ne!(
            again, numbered,
            "the cached slot now holds another template"
        );
        assert_eq!(m.template(again).unwrap(), "disk full on node");
    }

    #[test]
    fn words_past_a_full_shape_table_stay_wildcards_every_time() {
        let mut m = Miner::new(MinerConfig {
            max_chunks: 4,
            ..MinerConfig::default()
        });
        for _ in 0..3 {
            let id = m.add("alpha bravo charlie delta echo");
            assert_eq!(m.template(id).unwrap(), "alpha bravo <*>");
        }
        assert_eq!(m.stats.chunks_over_cap, 9, "counted on every line");
    }

    #[test]
    fn eviction_while_opening_a_sibling_does_not_lose_its_template() {
        // Lines that differ by one settled word open siblings; at the template cap,
        // making room for the new sibling may evict the template it is a sibling of.
        let mut m = Miner::new(MinerConfig {
            max_templates: 20,
            ..MinerConfig::default()
        });
        let words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];
        let mut state = 1u32;
        for _ in 0..20_000 {
            let line: Vec<_> = (0..5)
                .map(|_| {
                    state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    words[(state >> 16) as usize % words.len()]
                })
                .collect();
            let id = m.add(&line.join(" "));
            assert!(m.is_live(id), "the line's template is live");
        }
        assert!(m.len() <= 20);
        assert!(m.stats.templates_evicted > 0);
        // What only evicted templates had is forgotten: memory stays bounded.
        assert!(
            m.siblings.len() <= 20 * 5,
            "{} sibling groups",
            m.siblings.len()
        );
        assert!(m.aliases.len() <= 20 * 5, "{} aliases", m.aliases.len());
        assert_leaves_mirror_clusters(&m);
    }

    /// Every live template is in its leaf once, with its current tokens, and nothing else is.
    fn assert_leaves_mirror_clusters(m: &Miner) {
        let mut seen = 0;
        for (key, leaf) in &m.leaves {
            for (slot, tokens) in leaf.rows() {
                let c = m.clusters[slot as usize].as_ref().expect("live");
                assert_eq!((c.leaf, c.tokens.as_slice()), (*key, tokens));
                seen += 1;
            }
        }
        assert_eq!(seen, m.len());
    }

    #[test]
    fn a_leaf_holds_at_most_its_cap() {
        // Random words overflow both routing levels: every line lands in one leaf.
        let mut m = Miner::new(MinerConfig {
            max_children: 4,
            max_leaf_templates: 64,
            ..MinerConfig::default()
        });
        let mut x = 7u64;
        let mut word = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (0..6)
                .map(|i| char::from(b'a' + ((x >> (i * 5 + 20)) % 26) as u8))
                .collect::<String>()
        };
        for _ in 0..2_000 {
            let msg = (0..5).map(|_| word()).collect::<Vec<_>>().join(" ");
            m.add(&msg);
        }
        assert!(m.leaves.values().all(|l| l.slots.len() <= 64));
        assert!(m.stats.templates_evicted > 0);
        assert_eq!(m.clusters.iter().flatten().count(), m.len());
        assert_leaves_mirror_clusters(&m);
    }

    #[test]
    fn a_flood_of_unique_messages_stays_bounded() {
        let mut m = Miner::new(MinerConfig {
            max_templates: 1000,
            max_chunks: 5000,
            ..MinerConfig::default()
        });
        let words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];
        for i in 0..50_000u32 {
            let msg: String = (0..6)
                .map(|j| {
                    format!(
                        "{}{} ",
                        words[((i >> (j * 2)) % 6) as usize],
                        char::from(b'a' + ((i * 7 + j) % 26) as u8)
                    )
                })
                .collect();
            m.add(&msg);
        }
        assert!(m.len() <= 1000);
        assert!(m.shapes.len() <= 5000);
        assert!(m.stats.templates_evicted > 0 || m.stats.chunks_over_cap > 0);
        let live = m.clusters.iter().flatten().count();
        assert_eq!(live, m.len());
        assert_leaves_mirror_clusters(&m);
    }

    #[test]
    fn lines_that_agree_only_on_variables_stay_apart() {
        let mut m = miner();
        let a = m.add("onExtend:1514038530000 14 0 4");
        let b = m.add("getDiffTotalSteps= 12##7007");
        assert_ne!(a, b);
        assert_eq!(m.add("onExtend:1514038531000 1 0 4"), a);
        assert_eq!(m.template(a).unwrap(), "onExtend:<*> <*>");
    }

    #[test]
    fn dotted_constants_and_key_values_name_events() {
        let mut m = miner();
        let on = m.add("processHandleBroadcastAction action:android.intent.action.SCREEN_ON");
        let tick = m.add("processHandleBroadcastAction action:android.intent.action.TIME_TICK");
        assert_ne!(on, tick, "an upper-case constant is a word");
        let off = m.add("onReceive action: android.intent.action.SCREEN_OFF");
        assert_ne!(
            m.add("onReceive action: android.intent.action.SCREEN_ON"),
            off
        );
        // A dotted name that is not a constant is still a variable.
        let a = m.add("loaded bundle com.apple.alpha in place");
        assert_eq!(m.add("loaded bundle com.apple.beta in place"), a);
    }

    #[test]
    fn a_quoted_value_with_spaces_is_one_chunk() {
        let mut m = miner();
        let a = m.add(r#"acquire lock=1, flags=0x1, tag="View Lock", name=x, uid=2"#);
        let b = m.add(r#"acquire lock=3, flags=0x1, tag="*launch*", name=x, uid=4"#);
        assert_eq!(a, b);
        assert_eq!(
            m.template(a).unwrap(),
            "acquire lock=<*>, flags=<*>, <*> name=x, uid=<*>"
        );
        // An unclosed quote does not swallow the line.
        let c = m.add(r#"bad tag="open and never closed here"#);
        assert_eq!(
            m.template(c).unwrap(),
            r#"bad tag="open and never closed here"#
        );
        let texts = |line: &'static str| chunks(line).map(|(_, t, _)| t).collect::<Vec<_>>();
        assert_eq!(
            texts(r#"a="x y" b="z w "c" d"#),
            [r#"a="x y""#, r#"b="z w "c""#, "d"]
        );
        assert_eq!(
            texts(r#"say "x y" a= "b c""#),
            ["say", r#""x"#, r#"y""#, "a=", r#""b"#, r#"c""#]
        );
        let long = format!(r#"a="{}""#, "w ".repeat(QUOTED_MAX));
        assert_eq!(
            chunks(&long).count(),
            QUOTED_MAX + 1,
            "a long quote is text"
        );
    }
}
