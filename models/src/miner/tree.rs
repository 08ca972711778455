//! The prefix tree: the leaf a line routes to (chunk count and the first plain words),
//! the leaves' clusters with their tokens side by side, and the search for the cluster
//! a line joins.

use super::{LeafKey, Miner, VAR};

/// Where a line goes.
pub(super) enum Match {
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
pub(super) struct Leaf {
    width: usize,
    pub(super) slots: Vec<u32>,
    tokens: Vec<u32>,
}

impl Leaf {
    pub(super) fn new(width: usize) -> Self {
        Leaf {
            width,
            slots: Vec::new(),
            tokens: Vec::new(),
        }
    }

    pub(super) fn rows(&self) -> impl Iterator<Item = (u32, &[u32])> {
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

    pub(super) fn push(&mut self, slot: u32, tokens: &[u32]) {
        self.slots.push(slot);
        self.tokens.extend_from_slice(tokens);
    }

    /// Copies a cluster's changed tokens.
    pub(super) fn update(&mut self, slot: u32, tokens: &[u32]) {
        if let Some(i) = self.index(slot) {
            let row = self.row(i);
            self.tokens[row].copy_from_slice(tokens);
        }
    }

    /// Drops a cluster, keeping the others in order (earlier ones win ties).
    pub(super) fn remove(&mut self, slot: u32) {
        if let Some(i) = self.index(slot) {
            self.slots.remove(i);
            self.tokens.drain(self.row(i));
        }
    }
}

impl Miner {
    /// The leaf for `self.line`: its length and first chunks, with wildcards and
    /// overflowing nodes sent to the wildcard branch.
    pub(super) fn route(&mut self) -> LeafKey {
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
    pub(super) fn best_match(&self, leaf: LeafKey) -> Match {
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
}
