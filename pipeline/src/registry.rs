//! The incident registry: live incidents by key. One decider owns it (the correlators,
//! however many threads they run on, never touch incidents: they hand signals to the
//! decider), so it is a plain map with `&mut` access, not a concurrent one.

use crate::incident::{self, Ctx, Input, Machine, Timing};
use crate::interner::ServiceId;
use logheal_models::TemplateKey;
use logheal_parsers::EventTime;
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// One incident per rule and group-by labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IncidentKey {
    pub rule: u32,
    /// The root-cause service, when the rule groups by `root_service`.
    pub root: Option<ServiceId>,
}

/// Sample trace ids kept per incident.
const SAMPLE_TRACES: usize = 5;

/// A live incident: its machine and what it has seen.
pub struct Incident {
    pub id: Arc<str>,
    pub machine: Machine,
    pub first_seen: EventTime,
    pub last_seen: EventTime,
    pub suspicions: u32,
    pub chains: u32,
    /// Failed events in the chains seen.
    pub chain_events: u64,
    /// Services seen failing in chains, in order of first appearance.
    pub services: Vec<ServiceId>,
    pub sample_traces: Vec<Box<str>>,
    /// Whether it ever reached CONFIRMED.
    pub confirmed: bool,
    /// Templates of the failed events in its chains.
    pub templates: Vec<ChainTemplate>,
    /// The number of its latest transition: outcomes of actions scheduled by an
    /// earlier one no longer steer it.
    pub seq: u32,
    /// Health probe passes in a row while recovering.
    pub probe_passes: u32,
    /// Times of its latest chains (at most the rule's `min_chains`).
    pub recent_chains: std::collections::VecDeque<EventTime>,
    /// Root-cause candidates: each service that failed in its chains, with its evidence
    /// score (see `absorb_chain`), in order of first appearance.
    pub scores: Vec<(ServiceId, f64)>,
}

/// A template of an incident's chains: how many of their failed events it had, and why
/// it was anomalous as of the latest chain that carried it. (A decider apart from its
/// correlators learns that from the chain, judged at the chain's time; one engine judges
/// it at the same time, so both say the same.)
#[derive(Debug, Clone, PartialEq)]
pub struct ChainTemplate {
    pub key: TemplateKey,
    pub count: u64,
    pub why: Option<Box<str>>,
}

/// A root-cause candidate and its evidence score.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Candidate {
    pub service: String,
    pub score: f64,
}

impl Incident {
    pub fn new(id: Arc<str>, timing: Timing, at: EventTime) -> Self {
        Incident {
            id,
            machine: incident::machine(timing),
            first_seen: at,
            last_seen: at,
            suspicions: 0,
            chains: 0,
            chain_events: 0,
            services: Vec::new(),
            sample_traces: Vec::new(),
            confirmed: false,
            templates: Vec::new(),
            seq: 0,
            probe_passes: 0,
            recent_chains: std::collections::VecDeque::new(),
            scores: Vec::new(),
        }
    }

    /// Counts a chain at `at`: whether `min` chains fell within `within` of it.
    pub fn chains_enough(&mut self, at: EventTime, min: u32, within: std::time::Duration) -> bool {
        self.recent_chains.push_back(at);
        while self.recent_chains.len() > min.max(1) as usize {
            self.recent_chains.pop_front();
        }
        self.recent_chains.len() >= min as usize
            && self
                .recent_chains
                .front()
                .is_some_and(|first| *first >= at.minus(within))
    }

    /// The services ranked by evidence: `root` (the incident's root service) first,
    /// then the others best first (ties: first to fail).
    pub fn candidates(&self, root: Option<ServiceId>) -> Vec<(ServiceId, f64)> {
        let mut ranked = self.scores.clone();
        ranked.sort_by(|a, b| {
            (Some(b.0) == root)
                .cmp(&(Some(a.0) == root))
                .then(b.1.total_cmp(&a.1))
        });
        ranked
    }

    /// Feeds one input; effects land in `ctx`.
    pub fn handle(&mut self, input: Input, ctx: &mut Ctx) {
        self.last_seen = self.last_seen.max(ctx.at);
        self.machine.handle_with_context(&input, ctx);
    }

    /// Notes a chain's services and trace, and scores its services as root-cause
    /// candidates: 2 for failing first in the trace (the callee, in a call chain that
    /// logs innermost first), 1 for failing in it at all, 1 for each of its templates in
    /// the chain that is new for the service (`novel`), and 2 for being named in another
    /// service's error (`named`).
    pub fn absorb_chain(
        &mut self,
        chain: &crate::correlator::ChainSignal,
        novel: &[logheal_models::TemplateKey],
        named: &[ServiceId],
        whys: Vec<Option<Box<str>>>,
    ) {
        // A service named by another's error ("No instances available for X",
        // "connection refused: X") is likely the callee that failed.
        for s in named {
            self.score(*s, 2.0);
        }
        for s in &chain.services {
            let mut score = 1.0;
            if *s == chain.root {
                score += 2.0;
            }
            score += chain
                .templates
                .iter()
                .filter(|(t, _)| t.service == s.0 && novel.contains(t))
                .count() as f64;
            self.score(*s, score);
        }
        self.absorb(chain, whys);
    }

    /// Adds `points` to a candidate's evidence.
    fn score(&mut self, service: ServiceId, points: f64) {
        match self.scores.iter_mut().find(|(x, _)| *x == service) {
            Some((_, total)) => *total += points,
            None => self.scores.push((service, points)),
        }
    }

    fn absorb(&mut self, chain: &crate::correlator::ChainSignal, whys: Vec<Option<Box<str>>>) {
        self.chains += 1;
        // The logs still show the failure: a passing probe streak starts over.
        self.probe_passes = 0;
        self.chain_events += u64::from(chain.events);
        self.first_seen = self.first_seen.min(chain.first);
        for s in &chain.services {
            if !self.services.contains(s) {
                self.services.push(*s);
            }
        }
        if self.sample_traces.len() < SAMPLE_TRACES {
            self.sample_traces.push(chain.trace.clone());
        }
        // `whys`: one per template of the chain, in its order (missing: nothing to say).
        let whys = whys.into_iter().chain(std::iter::repeat(None));
        for ((template, n), why) in chain.templates.iter().zip(whys) {
            match self.templates.iter_mut().find(|t| t.key == *template) {
                Some(t) => {
                    t.count += u64::from(*n);
                    t.why = why;
                }
                None => self.templates.push(ChainTemplate {
                    key: *template,
                    count: u64::from(*n),
                    why,
                }),
            }
        }
    }

    /// The `n` most frequent templates of its chains.
    pub fn top_templates(&self, n: usize) -> Vec<ChainTemplate> {
        let mut all = self.templates.clone();
        // Ties keep the order the incident first saw them in (that of its chains),
        // which does not depend on how a process numbers services and templates: a
        // decider apart from its correlators ranks them as one engine does.
        all.sort_by_key(|t| std::cmp::Reverse(t.count));
        all.truncate(n);
        all
    }
}

/// Live incidents.
#[derive(Default)]
pub struct Registry {
    live: FxHashMap<IncidentKey, Incident>,
}

impl Registry {
    /// Runs `f` on the incident for `key`, creating it with `create` if absent and
    /// `create` gives one.
    pub fn with<R>(
        &mut self,
        key: IncidentKey,
        create: impl FnOnce() -> Option<Incident>,
        f: impl FnOnce(&mut Incident) -> R,
    ) -> Option<R> {
        if let Some(entry) = self.live.get_mut(&key) {
            return Some(f(entry));
        }
        let incident = create()?;
        Some(f(self.live.entry(key).or_insert(incident)))
    }

    /// The live incident for `key`.
    pub fn get(&self, key: &IncidentKey) -> Option<&Incident> {
        self.live.get(key)
    }

    pub fn remove(&mut self, key: &IncidentKey) -> Option<Incident> {
        self.live.remove(key)
    }

    /// Keys of the live incidents of `rule`, in key order (not the map's).
    pub fn keys_of_rule(&self, rule: u32) -> Vec<IncidentKey> {
        let mut keys: Vec<IncidentKey> = self
            .live
            .keys()
            .filter(|k| k.rule == rule)
            .copied()
            .collect();
        keys.sort();
        keys
    }

    /// The first event time of the oldest live incident.
    pub fn oldest(&self) -> Option<EventTime> {
        self.live.values().map(|e| e.first_seen).min()
    }

    /// Live incidents that have been confirmed.
    pub fn confirmed(&self) -> u64 {
        self.live.values().filter(|e| e.confirmed).count() as u64
    }

    /// Whether a live, confirmed incident of one of `rules` covers one of `services` (its
    /// root, or a service of its chains).
    pub fn covers(&self, rules: &[u32], services: &[ServiceId]) -> bool {
        self.live.iter().any(|(key, e)| {
            rules.contains(&key.rule)
                && e.confirmed
                && incident::state_of(&e.machine) != incident::IncidentState::Normal
                && services
                    .iter()
                    .any(|s| key.root == Some(*s) || e.services.contains(s))
        })
    }

    /// Current state of every live incident.
    pub fn states(&self) -> Vec<(IncidentKey, Arc<str>, incident::IncidentState)> {
        let mut out: Vec<_> = self
            .live
            .iter()
            .map(|(key, e)| (*key, e.id.clone(), incident::state_of(&e.machine)))
            .collect();
        out.sort_by_key(|(key, ..)| *key);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_incidents_of_a_rule_come_in_key_order_whatever_the_map_holds() {
        let timing = incident::timing();
        let mut registry = Registry::default();
        let key = |rule, root| IncidentKey {
            rule,
            root: Some(ServiceId(root)),
        };
        for (rule, root) in [(1, 40), (0, 7), (1, 3), (1, 900), (1, 12), (0, 1)] {
            let id: Arc<str> = format!("{rule}-{root}").into();
            registry.with(
                key(rule, root),
                || Some(Incident::new(id, timing, EventTime(0))),
                |_| (),
            );
        }
        assert_eq!(
            registry.keys_of_rule(1),
            [key(1, 3), key(1, 12), key(1, 40), key(1, 900)]
        );
    }

    #[test]
    fn a_templates_evidence_is_as_of_the_latest_chain_that_carried_it() {
        let template = |id| TemplateKey {
            service: 1,
            id: logheal_models::TemplateId(id),
        };
        let chain = |at: i64, templates: Vec<(TemplateKey, u32)>| crate::correlator::ChainSignal {
            trace: "t".into(),
            services: vec![ServiceId(1)],
            events: 2,
            first: EventTime(at),
            last: EventTime(at),
            root: ServiceId(1),
            templates,
        };
        let mut incident = Incident::new("i".into(), incident::timing(), EventTime(0));
        let why = |text: &'static str| Some(Box::<str>::from(text));
        incident.absorb_chain(
            &chain(1, vec![(template(7), 3), (template(8), 1)]),
            &[],
            &[],
            vec![why("first"), why("first")],
        );
        let second = chain(2, vec![(template(8), 1)]);
        incident.absorb_chain(&second, &[], &[], vec![why("second")]);
        incident.absorb_chain(&chain(3, vec![(template(9), 1)]), &[], &[], vec![None]);
        let top = incident.top_templates(3);
        let seen: Vec<_> = top
            .iter()
            .map(|t| (t.key.id.0, t.count, t.why.as_deref()))
            .collect();
        // Template 7 was last carried by the first chain, 8 by the second; 9 by the third,
        // which found nothing anomalous about it (and that replaces nothing of the others').
        assert_eq!(
            seen,
            [(7, 3, Some("first")), (8, 2, Some("second")), (9, 1, None)]
        );
    }
}
