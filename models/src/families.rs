//! Template families: templates whose vocabularies agree, across services and variants,
//! grouped by TF-IDF cosine similarity, so `connection pool exhausted: redis://<*> timed
//! out` and `redis connection refused <*>` can be one family.
//!
//! A refresh (run on a schedule, never per line) fits a `linfa` `CountVectorizer` on the
//! constant words of every live template, weights counts by our own smoothed IDF table
//! (the vectorizer's TF-IDF recomputes IDF per call), L2-normalises each template's sparse
//! vector and places every template that has no family yet into the family whose centroid
//! is most similar, or a new one. A template keeps its family for life, so family ids are
//! stable; between refreshes, lookups are one hash probe.

use crate::services::TemplateKey;
use linfa_preprocessing::CountVectorizer;
use ndarray::Array1;
use rustc_hash::FxHashMap;

/// The cosine similarity to a family's centroid that joins it, by default.
pub const DEFAULT_FAMILY_SIMILARITY: f64 = 0.3;

/// A family of templates. Ids are never reused within a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FamilyId(pub u32);

/// A sparse vector: (vocabulary column, weight), sorted by column.
type Sparse = Vec<(u32, f64)>;

#[derive(Debug, Default)]
struct Family {
    members: Vec<TemplateKey>,
    /// Sum of the members' unit vectors, by column, for the current vocabulary.
    centroid: FxHashMap<u32, f64>,
    norm: f64,
}

#[derive(Debug)]
pub struct Families {
    /// Cosine similarity needed to join a family.
    similarity: f64,
    of: FxHashMap<TemplateKey, FamilyId>,
    families: Vec<Family>,
}

impl Families {
    pub fn new(similarity: f64) -> Self {
        Families {
            similarity,
            of: FxHashMap::default(),
            families: Vec::new(),
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

    /// The templates of a family that were live at the last refresh.
    pub fn members(&self, family: FamilyId) -> &[TemplateKey] {
        self.families
            .get(family.0 as usize)
            .map_or(&[], |f| &f.members[..])
    }

    /// Refits the vocabulary on `templates` (every live template with its text) and
    /// places the templates that have no family yet.
    pub fn refresh(&mut self, templates: &[(TemplateKey, String)]) {
        let vectors = tfidf(templates);
        let live: FxHashMap<TemplateKey, usize> = templates
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (*k, i))
            .collect();
        self.of.retain(|k, _| live.contains_key(k));
        for family in &mut self.families {
            family.members.retain(|k| live.contains_key(k));
            family.centroid.clear();
            for k in &family.members {
                add(&mut family.centroid, &vectors[live[k]]);
            }
            family.norm = norm(&family.centroid);
        }
        let mut fresh: Vec<usize> = (0..templates.len())
            .filter(|&i| !self.of.contains_key(&templates[i].0))
            .collect();
        fresh.sort_by_key(|&i| templates[i].0);
        for i in fresh {
            let v = &vectors[i];
            let best = self
                .families
                .iter()
                .enumerate()
                .filter(|(_, f)| f.norm > 0.0)
                .map(|(id, f)| (cosine(v, f), id))
                .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)));
            let id = match best {
                Some((sim, id)) if sim >= self.similarity => id,
                _ => {
                    self.families.push(Family::default());
                    self.families.len() - 1
                }
            };
            let family = &mut self.families[id];
            family.members.push(templates[i].0);
            add(&mut family.centroid, v);
            family.norm = norm(&family.centroid);
            self.of.insert(templates[i].0, FamilyId(id as u32));
        }
    }
}

/// Function words: they join templates that share nothing else.
const STOPWORDS: &[&str] = &[
    "a", "an", "the", "of", "is", "are", "was", "be", "to", "in", "on", "at", "for", "from", "by",
    "with", "and", "or", "as", "it", "this", "that",
];

/// The unit TF-IDF vector of each template's constant words.
fn tfidf(templates: &[(TemplateKey, String)]) -> Vec<Sparse> {
    let docs: Array1<String> = templates
        .iter()
        .map(|(_, text)| text.replace("<*>", " "))
        .collect();
    let counts = CountVectorizer::params()
        .stopwords(STOPWORDS)
        .fit(&docs)
        .and_then(|v| v.transform(&docs));
    let Ok(counts) = counts else {
        // No word in any template: every vector is empty.
        return vec![Vec::new(); templates.len()];
    };
    let n = templates.len() as f64;
    let mut df = vec![0u32; counts.cols()];
    for row in counts.outer_iterator() {
        for (col, _) in row.iter() {
            df[col] += 1;
        }
    }
    let idf: Vec<f64> = df
        .iter()
        .map(|&d| ((1.0 + n) / (1.0 + f64::from(d))).ln() + 1.0)
        .collect();
    counts
        .outer_iterator()
        .map(|row| {
            let mut v: Sparse = row
                .iter()
                .map(|(col, &count)| (col as u32, count as f64 * idf[col]))
                .collect();
            let len = v.iter().map(|(_, w)| w * w).sum::<f64>().sqrt();
            v.iter_mut()
                .for_each(|(_, w)| *w /= len.max(f64::MIN_POSITIVE));
            v
        })
        .collect()
}

fn add(centroid: &mut FxHashMap<u32, f64>, v: &Sparse) {
    for (col, w) in v {
        *centroid.entry(*col).or_default() += w;
    }
}

fn norm(centroid: &FxHashMap<u32, f64>) -> f64 {
    centroid.values().map(|w| w * w).sum::<f64>().sqrt()
}

fn cosine(v: &Sparse, f: &Family) -> f64 {
    let dot: f64 = v
        .iter()
        .map(|(col, w)| w * f.centroid.get(col).copied().unwrap_or(0.0))
        .sum();
    dot / f.norm
}

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
}
