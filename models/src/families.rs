//! Template families: templates whose vocabularies agree, across services and variants,
//! grouped by TF-IDF cosine similarity, so `connection pool exhausted: redis://<*> timed
//! out` and `redis connection refused <*>` can be one family.
//!
//! Families are built incrementally. A refresh (run on a schedule, never per line) drops
//! the templates that were evicted since the last one (their family's centroid loses
//! their vector; a family with no member left is gone), then places the templates that
//! have no family yet, at most `budget` of them: `linfa`'s `CountVectorizer` counts the
//! constant words of that batch, the words get columns of one vocabulary that lives as
//! long as some template uses them, counts are weighted by a smoothed IDF over the placed
//! templates (document frequencies kept as templates come and go), and each unit vector
//! joins the family whose centroid is most similar, or a new one.
//!
//! Cost: candidate families are found through an inverted index (column → families whose
//! centroid has it), and at most [`POSTING_SCAN`] families are read per column, so placing
//! one template costs O(words × `POSTING_SCAN`) however many families exist; a word
//! shared by more families than that is too common to decide alone. Weights are those of
//! the moment a template was placed: a template keeps its family for life, so family ids
//! are stable; between refreshes, lookups are one hash probe.

use crate::services::TemplateKey;
use linfa_preprocessing::CountVectorizer;
use ndarray::Array1;
use rustc_hash::{FxHashMap, FxHashSet};

/// The cosine similarity to a family's centroid that joins it, by default.
pub const DEFAULT_FAMILY_SIMILARITY: f64 = 0.3;

/// Families read per word when a template looks for its family: the most recently formed.
pub const POSTING_SCAN: usize = 512;

/// A family of templates. Ids are never reused within a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FamilyId(pub u32);

/// A sparse vector: (vocabulary column, weight), sorted by column.
type Sparse = Vec<(u32, f64)>;

#[derive(Debug, Default)]
struct Family {
    members: Vec<TemplateKey>,
    /// Sum of the members' unit vectors by column, with how many members have the column
    /// (a column leaves when its last member does: no floating-point residue stays).
    centroid: FxHashMap<u32, (f64, u32)>,
    norm: f64,
}

impl Family {
    fn add(&mut self, v: &Sparse) -> Vec<u32> {
        let mut new_columns = Vec::new();
        for (col, w) in v {
            let entry = self.centroid.entry(*col).or_insert_with(|| {
                new_columns.push(*col);
                (0.0, 0)
            });
            entry.0 += w;
            entry.1 += 1;
        }
        self.update_norm();
        new_columns
    }

    /// Takes a member's vector out; returns the columns the centroid lost.
    fn remove(&mut self, v: &Sparse) -> Vec<u32> {
        let mut lost = Vec::new();
        for (col, w) in v {
            if let Some(entry) = self.centroid.get_mut(col) {
                entry.0 -= w;
                entry.1 -= 1;
                if entry.1 == 0 {
                    self.centroid.remove(col);
                    lost.push(*col);
                }
            }
        }
        self.update_norm();
        lost
    }

    fn update_norm(&mut self) {
        self.norm = self
            .centroid
            .values()
            .map(|(w, _)| w * w)
            .sum::<f64>()
            .sqrt();
    }
}

/// The families that have a column in their centroid; entries of families that lost the
/// column are dropped lazily (`stale` counts them; compacted when they are half).
#[derive(Debug, Default)]
struct Posting {
    families: Vec<u32>,
    stale: usize,
}

/// The vocabulary: word ↔ column, with the number of placed templates using each word.
#[derive(Debug, Default)]
struct Vocabulary {
    columns: FxHashMap<Box<str>, u32>,
    words: Vec<Box<str>>,
    df: Vec<u32>,
    postings: Vec<Posting>,
    free: Vec<u32>,
}

impl Vocabulary {
    fn column(&mut self, word: &str) -> u32 {
        if let Some(&col) = self.columns.get(word) {
            return col;
        }
        let col = match self.free.pop() {
            Some(col) => {
                self.words[col as usize] = word.into();
                col
            }
            None => {
                self.words.push(word.into());
                self.df.push(0);
                self.postings.push(Posting::default());
                (self.words.len() - 1) as u32
            }
        };
        self.columns.insert(word.into(), col);
        col
    }

    /// One placed template fewer uses `col`; the word goes when none does.
    fn release(&mut self, col: u32) {
        let c = col as usize;
        self.df[c] -= 1;
        if self.df[c] == 0 {
            let word = std::mem::take(&mut self.words[c]);
            self.columns.remove(&word);
            self.postings[c] = Posting::default();
            self.free.push(col);
        }
    }
}

#[derive(Debug)]
pub struct Families {
    /// Cosine similarity needed to join a family.
    similarity: f64,
    of: FxHashMap<TemplateKey, FamilyId>,
    families: FxHashMap<u32, Family>,
    next_id: u32,
    vocabulary: Vocabulary,
    /// Each placed template's vector, to take it out of its family when it is evicted.
    vectors: FxHashMap<TemplateKey, Sparse>,
}

impl Families {
    pub fn new(similarity: f64) -> Self {
        Families {
            similarity,
            of: FxHashMap::default(),
            families: FxHashMap::default(),
            next_id: 0,
            vocabulary: Vocabulary::default(),
            vectors: FxHashMap::default(),
        }
    }

    /// The family of a template, as of the last refresh.
    #[inline]
    pub fn family(&self, template: TemplateKey) -> Option<FamilyId> {
        self.of.get(&template).copied()
    }

    /// Number of families.
    pub fn len(&self) -> usize {
        self.families.len()
    }

    pub fn is_empty(&self) -> bool {
        self.families.is_empty()
    }

    /// Words in the vocabulary (those some placed template uses).
    pub fn words(&self) -> usize {
        self.vocabulary.columns.len()
    }

    /// The templates of a family that were live at the last refresh.
    pub fn members(&self, family: FamilyId) -> &[TemplateKey] {
        self.families.get(&family.0).map_or(&[], |f| &f.members[..])
    }

    /// Places every template of `templates` (every live template with its text) that has
    /// no family yet; templates placed before and absent now leave their family.
    pub fn refresh(&mut self, templates: &[(TemplateKey, String)]) {
        self.refresh_bounded(templates, usize::MAX);
    }

    /// As [`refresh`](Self::refresh), placing at most `budget` new templates (the
    /// oldest keys first); returns how many are still waiting.
    pub fn refresh_bounded(&mut self, templates: &[(TemplateKey, String)], budget: usize) -> usize {
        self.forget_evicted(templates);
        let mut fresh: Vec<usize> = (0..templates.len())
            .filter(|&i| !self.of.contains_key(&templates[i].0))
            .collect();
        fresh.sort_by_key(|&i| templates[i].0);
        let waiting = fresh.len().saturating_sub(budget);
        fresh.truncate(budget);
        let batch: Vec<&(TemplateKey, String)> = fresh.iter().map(|&i| &templates[i]).collect();
        let vectors = self.vectorize(&batch);
        let mut dots: FxHashMap<u32, (f64, u32)> = FxHashMap::default();
        for ((key, _), v) in batch.into_iter().zip(vectors) {
            let id = self.closest(&v, &mut dots).unwrap_or_else(|| {
                let id = self.next_id;
                self.next_id += 1;
                self.families.insert(id, Family::default());
                id
            });
            let family = self.families.get_mut(&id).expect("just found or made");
            family.members.push(*key);
            for col in family.add(&v) {
                self.vocabulary.postings[col as usize].families.push(id);
            }
            self.of.insert(*key, FamilyId(id));
            self.vectors.insert(*key, v);
        }
        waiting
    }

    /// Takes the templates that are no longer live out of their families.
    fn forget_evicted(&mut self, templates: &[(TemplateKey, String)]) {
        if self.of.len() <= templates.len()
            && templates.iter().all(|(k, _)| self.of.contains_key(k))
        {
            return;
        }
        let live: FxHashSet<TemplateKey> = templates.iter().map(|(k, _)| *k).collect();
        let gone: Vec<TemplateKey> = self
            .of
            .keys()
            .filter(|k| !live.contains(k))
            .copied()
            .collect();
        for key in gone {
            let id = self.of.remove(&key).expect("listed").0;
            let v = self.vectors.remove(&key).unwrap_or_default();
            let family = self
                .families
                .get_mut(&id)
                .expect("a placed template's family");
            family.members.retain(|m| *m != key);
            for col in family.remove(&v) {
                self.vocabulary.postings[col as usize].stale += 1;
            }
            if family.members.is_empty() {
                self.families.remove(&id);
            }
            for (col, _) in &v {
                self.vocabulary.release(*col);
            }
        }
    }

    /// The unit TF-IDF vector of each template's constant words; the words join the
    /// vocabulary, and the batch counts in the document frequencies it is weighted by.
    fn vectorize(&mut self, batch: &[&(TemplateKey, String)]) -> Vec<Sparse> {
        let docs: Array1<String> = batch
            .iter()
            .map(|(_, text)| text.replace("<*>", " "))
            .collect();
        let counts = CountVectorizer::params()
            .stopwords(STOPWORDS)
            .fit(&docs)
            .and_then(|v| v.transform(&docs).map(|c| (v, c)));
        let Ok((vectorizer, counts)) = counts else {
            // No word in any template: every vector is empty.
            return vec![Vec::new(); batch.len()];
        };
        let columns: Vec<u32> = vectorizer
            .vocabulary()
            .iter()
            .map(|word| self.vocabulary.column(word))
            .collect();
        let rows: Vec<Vec<(u32, f64)>> = counts
            .outer_iterator()
            .map(|row| {
                row.iter()
                    .map(|(col, &count)| (columns[col], count as f64))
                    .collect()
            })
            .collect();
        for row in &rows {
            for (col, _) in row {
                self.vocabulary.df[*col as usize] += 1;
            }
        }
        let n = (self.vectors.len() + batch.len()) as f64;
        let df = &self.vocabulary.df;
        rows.into_iter()
            .map(|mut v| {
                for (col, w) in &mut v {
                    *w *= ((1.0 + n) / (1.0 + f64::from(df[*col as usize]))).ln() + 1.0;
                }
                let len = v.iter().map(|(_, w)| w * w).sum::<f64>().sqrt();
                v.iter_mut()
                    .for_each(|(_, w)| *w /= len.max(f64::MIN_POSITIVE));
                v.sort_by_key(|(col, _)| *col);
                v
            })
            .collect()
    }

    /// The family most similar to `v`, if it is similar enough (ties: the older family).
    fn closest(&mut self, v: &Sparse, dots: &mut FxHashMap<u32, (f64, u32)>) -> Option<u32> {
        dots.clear();
        for (col, w) in v {
            let posting = &mut self.vocabulary.postings[*col as usize];
            if posting.stale > 0 && posting.stale * 2 >= posting.families.len() {
                let mut seen = FxHashSet::default();
                let families = &self.families;
                posting.families.retain(|f| {
                    families
                        .get(f)
                        .is_some_and(|fam| fam.centroid.contains_key(col))
                        && seen.insert(*f)
                });
                posting.stale = 0;
            }
            for f in posting.families.iter().rev().take(POSTING_SCAN) {
                let Some((weight, _)) = self.families.get(f).and_then(|fam| fam.centroid.get(col))
                else {
                    continue;
                };
                // A family that lost the column and gained it again is listed twice.
                let entry = dots.entry(*f).or_insert((0.0, u32::MAX));
                if entry.1 != *col {
                    entry.0 += w * weight;
                    entry.1 = *col;
                }
            }
        }
        dots.iter()
            .filter_map(|(f, (dot, _))| {
                let norm = self.families[f].norm;
                (norm > 0.0).then(|| (dot / norm, *f))
            })
            .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)))
            .filter(|(sim, _)| *sim >= self.similarity)
            .map(|(_, f)| f)
    }
}

/// Function words: they join templates that share nothing else.
const STOPWORDS: &[&str] = &[
    "a", "an", "the", "of", "is", "are", "was", "be", "to", "in", "on", "at", "for", "from", "by",
    "with", "and", "or", "as", "it", "this", "that",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::miner::TemplateId;

    fn key(service: u32, id: u32) -> TemplateKey {
        TemplateKey {
            service,
            id: TemplateId(id),
        }
    }

    fn templates(texts: &[(u32, &str)]) -> Vec<(TemplateKey, String)> {
        texts
            .iter()
            .enumerate()
            .map(|(i, (svc, t))| (key(*svc, i as u32), t.to_string()))
            .collect()
    }

    #[test]
    fn agreeing_vocabularies_share_a_family() {
        let all = templates(&[
            (
                0,
                "connection pool exhausted: redis://<*> timed out after <*>ms",
            ),
            (1, "redis connection refused <*>"),
            (0, "user <*> logged in from <*>"),
            (2, "user <*> logged out"),
            (1, "disk <*> is full"),
            (0, "request completed in <*>"),
        ]);
        let mut f = Families::new(DEFAULT_FAMILY_SIMILARITY);
        f.refresh(&all);
        let fam = |i: usize| f.family(all[i].0).unwrap();
        assert_eq!(fam(0), fam(1), "redis failures across services");
        assert_eq!(fam(2), fam(3), "user sessions");
        assert_ne!(fam(0), fam(2));
        assert_ne!(fam(4), fam(0));
        assert_ne!(fam(4), fam(5));
    }

    #[test]
    fn families_are_stable_and_follow_evictions() {
        let mut all = templates(&[(0, "redis connection refused <*>"), (0, "disk <*> is full")]);
        let mut f = Families::new(DEFAULT_FAMILY_SIMILARITY);
        f.refresh(&all);
        let redis = f.family(all[0].0).unwrap();
        all.push((key(1, 9), "redis connection reset by peer".into()));
        all.remove(1);
        f.refresh(&all);
        assert_eq!(
            f.family(all[0].0),
            Some(redis),
            "a template keeps its family"
        );
        assert_eq!(f.family(key(1, 9)), Some(redis));
        assert_eq!(f.family(key(0, 1)), None, "evicted templates leave");
        assert_eq!(f.members(redis).len(), 2);
    }

    #[test]
    fn wordless_templates_get_families_of_their_own() {
        let all = templates(&[(0, "<*>"), (0, "<*> <*>"), (0, "")]);
        let mut f = Families::new(DEFAULT_FAMILY_SIMILARITY);
        f.refresh(&all);
        assert_eq!(f.len(), 3);
    }

    #[test]
    fn families_shrink_with_their_templates() {
        let mut all = templates(&[
            (0, "redis connection refused <*>"),
            (1, "redis connection reset by peer"),
            (0, "disk <*> is full"),
        ]);
        let mut f = Families::new(DEFAULT_FAMILY_SIMILARITY);
        f.refresh(&all);
        assert_eq!(f.len(), 2);
        let words = f.words();
        all.truncate(1);
        f.refresh(&all);
        assert_eq!(f.len(), 1, "the disk family went with its last template");
        assert_eq!(f.members(f.family(all[0].0).unwrap()).len(), 1);
        assert!(
            f.words() < words,
            "words no template uses leave the vocabulary"
        );
        all.clear();
        f.refresh(&all);
        assert!(f.is_empty());
        assert_eq!(f.words(), 0);
    }

    #[test]
    fn a_refresh_places_at_most_its_budget() {
        let all = templates(&[
            (0, "redis connection refused <*>"),
            (1, "redis connection reset by peer"),
            (0, "disk <*> is full"),
        ]);
        let mut f = Families::new(DEFAULT_FAMILY_SIMILARITY);
        assert_eq!(f.refresh_bounded(&all, 2), 1);
        let unplaced = |f: &Families| all.iter().filter(|(k, _)| f.family(*k).is_none()).count();
        assert_eq!(unplaced(&f), 1, "one waits for the next refresh");
        assert_eq!(f.refresh_bounded(&all, 2), 0);
        assert_eq!(unplaced(&f), 0);
        assert_eq!(f.family(all[0].0), f.family(all[1].0));
    }

    #[test]
    fn churn_keeps_the_index_bounded() {
        // Templates come and go; the vocabulary and the families follow the live ones.
        let mut f = Families::new(DEFAULT_FAMILY_SIMILARITY);
        for round in 0..50u32 {
            let texts: Vec<(TemplateKey, String)> = (0..20u32)
                .map(|i| {
                    let n = round * 20 + i;
                    (key(0, n), format!("word{n} common thing{} <*>", n % 7))
                })
                .collect();
            f.refresh(&texts);
            assert!(f.len() <= 20);
            assert!(f.words() <= 20 + 2 + 7);
        }
    }
}
