//! Templates per service: one miner per service, so a template explosion in one service
//! evicts only that service's templates.

use crate::miner::{Miner, MinerConfig, MinerStats, TemplateId};

/// A template of one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TemplateKey {
    /// The caller's service number (dense, from 0).
    pub service: u32,
    pub id: TemplateId,
}

#[derive(Debug)]
pub struct ServiceTemplates {
    config: MinerConfig,
    miners: Vec<Miner>,
    changes: u64,
}

impl ServiceTemplates {
    pub fn new(config: MinerConfig) -> Self {
        ServiceTemplates {
            config,
            miners: Vec::new(),
            changes: 0,
        }
    }

    /// Mines `message` of `service`; also says whether the message created the template.
    pub fn add(&mut self, service: u32, message: &str) -> (TemplateKey, bool) {
        let i = service as usize;
        if i >= self.miners.len() {
            let config = &self.config;
            self.miners
                .resize_with(i + 1, || Miner::new(config.clone()));
        }
        let miner = &mut self.miners[i];
        let (created, changes) = (miner.stats.templates_created, miner.stats.changes);
        let id = miner.add(message);
        self.changes += miner.stats.changes - changes;
        (
            TemplateKey { service, id },
            miner.stats.templates_created > created,
        )
    }

    /// Counts every change of any template's text; equal counts mean equal texts.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Whether a template is still live.
    pub fn is_live(&self, key: TemplateKey) -> bool {
        self.miners
            .get(key.service as usize)
            .is_some_and(|m| m.is_live(key.id))
    }

    /// The current text of a template, if it is still live.
    pub fn text(&self, key: TemplateKey) -> Option<String> {
        self.miners.get(key.service as usize)?.template(key.id)
    }

    /// Every live template with its text.
    pub fn texts(&self) -> Vec<(TemplateKey, String)> {
        let mut out = Vec::new();
        for (service, miner) in self.miners.iter().enumerate() {
            out.extend(miner.texts().into_iter().map(|(id, text)| {
                let key = TemplateKey {
                    service: service as u32,
                    id,
                };
                (key, text)
            }));
        }
        out
    }

    /// Live templates over all services.
    pub fn live(&self) -> usize {
        self.miners.iter().map(Miner::len).sum()
    }

    /// Housekeeping counters summed over all services.
    pub fn stats(&self) -> MinerStats {
        self.miners
            .iter()
            .fold(MinerStats::default(), |mut acc, m| {
                acc.lines += m.stats.lines;
                acc.templates_created += m.stats.templates_created;
                acc.templates_evicted += m.stats.templates_evicted;
                acc.chunks_over_cap += m.stats.chunks_over_cap;
                acc.truncated += m.stats.truncated;
                acc.changes += m.stats.changes;
                acc
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_mine_separately() {
        let mut t = ServiceTemplates::new(MinerConfig::default());
        let (a, new) = t.add(0, "connection refused to db-1");
        assert!(new);
        let (b, _) = t.add(3, "connection refused to db-2");
        assert_ne!(a, b, "different services, different templates");
        assert_eq!(t.add(0, "connection refused to db-7"), (a, false));
        assert!(t.is_live(a));
        assert_eq!(t.text(a).unwrap(), "connection refused to <*>");
        assert_eq!(t.live(), 2);
        assert_eq!(t.stats().lines, 3);
    }
}
