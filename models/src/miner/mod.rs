//! The template miner: online, streaming, in the Drain family.
//!
//! A message is split at whitespace into chunks (a `key="…"` value with spaces in its
//! quotes is one chunk, and so is a path with a space in it). Each chunk is lexed (see
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

//!
//! The files: here the configuration, the miner's state and its entry points (`add`,
//! `template`, `resolve`); `encode.rs` a message to chunk shapes (chunking, lexing, the
//! shape table and its memos); `tree.rs` the prefix tree's leaves and the search for the
//! best cluster; `clusters.rs` a cluster's life (creation, siblings and their merge,
//! eviction).

mod clusters;
mod encode;
#[cfg(test)]
mod tests;
mod tree;

use clusters::{holds, Cluster};
use tree::{Leaf, Match};

use crate::memo::Memo;
use crate::seen::Seen;
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
        let shapes = cluster
            .display
            .iter()
            .map(|t| self.shapes[*t as usize].len());
        let mut out = String::with_capacity(shapes.sum::<usize>() + cluster.display.len());
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
}

impl std::fmt::Debug for Miner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} templates, {} shapes", self.live, self.shapes.len())
    }
}
