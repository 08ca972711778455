//! A cluster's life: created in a leaf, refined by the lines that join it, opened as a
//! sibling when a settled word differs, merged with its siblings once enough of them
//! differ in one place, and evicted (least recently used first) when the miner is full.

use super::tree::Leaf;
use super::{LeafKey, Miner, TemplateId, VAR};

/// Whether `slot` still holds template `id` (not evicted, merged away or reused).
pub(super) fn holds(clusters: &[Option<Cluster>], slot: u32, id: TemplateId) -> bool {
    clusters[slot as usize].as_ref().is_some_and(|c| c.id == id)
}

#[derive(Debug)]
pub(super) struct Cluster {
    pub(super) id: TemplateId,
    pub(super) tokens: Vec<u32>,
    /// How each position is shown: its shape, or for a variable `<*>` with the brackets
    /// and punctuation around it (`(<*>)`, `<*>,`) while every line agreed on them.
    pub(super) display: Vec<u32>,
    pub(super) leaf: LeafKey,
    pub(super) count: u64,
    pub(super) last_used: u64,
}

impl Miner {
    /// Records `new` as a sibling of `of` (equal but at `position`); when the group is
    /// large enough the word there is a variable: the siblings merge into the oldest,
    /// which keeps its id, and the others become its aliases. Returns the slot the
    /// current line belongs to.
    pub(super) fn sibling(&mut self, of: u32, new: u32, position: usize) -> u32 {
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
        // Shown as a variable too, from now on (not only once a later line differs).
        let s = self.clusters[survivor as usize].as_mut().expect("live");
        s.tokens[position] = VAR;
        s.display[position] = VAR;
        self.sync_leaf(survivor);
        self.stats.changes += 1;
        survivor
    }

    pub(super) fn merge(&mut self, slot: u32) {
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

    pub(super) fn create(&mut self, leaf: LeafKey) -> u32 {
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

    pub(super) fn evict(&mut self, slot: u32) {
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
