//! Run statistics: lines read, parsed and skipped by reason, what the rules selected,
//! signals, and incidents by the state they ended in. Printed as the replay summary.

use crate::incident::IncidentState;
use logheal_parsers::ParseError;
use std::fmt;

/// Why a line was not used. Every skipped line is counted under exactly one reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    Parse(ParseError),
    /// Longer than the configured maximum.
    LineTooLong,
    /// Parsed, but carries no timestamp.
    MissingTimestamp,
    /// Older than the watermark.
    Late,
    /// Further in the future than the allowed clock skew.
    FutureTimestamp,
}

impl SkipReason {
    pub const COUNT: usize = ParseError::ALL.len() + 4;

    fn index(self) -> usize {
        match self {
            SkipReason::Parse(e) => ParseError::ALL
                .iter()
                .position(|x| *x == e)
                .expect("listed"),
            SkipReason::LineTooLong => ParseError::ALL.len(),
            SkipReason::MissingTimestamp => ParseError::ALL.len() + 1,
            SkipReason::Late => ParseError::ALL.len() + 2,
            SkipReason::FutureTimestamp => ParseError::ALL.len() + 3,
        }
    }

    pub fn all() -> impl Iterator<Item = SkipReason> {
        ParseError::ALL.into_iter().map(SkipReason::Parse).chain([
            SkipReason::LineTooLong,
            SkipReason::MissingTimestamp,
            SkipReason::Late,
            SkipReason::FutureTimestamp,
        ])
    }

    pub fn name(self) -> &'static str {
        match self {
            SkipReason::Parse(e) => e.reason(),
            SkipReason::LineTooLong => "line_too_long",
            SkipReason::MissingTimestamp => "missing_timestamp",
            SkipReason::Late => "late",
            SkipReason::FutureTimestamp => "future_timestamp",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub lines: u64,
    pub bytes: u64,
    pub parsed: u64,
    skipped: [u64; SkipReason::COUNT],
    /// Lines with invalid UTF-8, read with U+FFFD in place of the bad bytes.
    pub repaired_utf8: u64,
    /// Events some rule selected.
    pub selected: u64,
    /// Selected events without a service or correlation key (not correlated).
    pub unkeyed: u64,
    pub suspicions: u64,
    pub chains: u64,
    pub traces_expired: u64,
    pub traces_evicted: u64,
    /// Templates mined and held, and those evicted at the per-service cap.
    pub templates_live: u64,
    pub templates_evicted: u64,
    pub families: u64,
    pub transitions: u64,
    pub actions: u64,
    pub actions_cancelled: u64,
    /// Incidents by the state they ended in (or are in, for live ones at the end).
    pub incidents: Vec<(IncidentState, u64)>,
    /// The ended incidents that had been confirmed.
    pub confirmed_incidents: u64,
}

impl Stats {
    pub fn skip(&mut self, reason: SkipReason) {
        self.skipped[reason.index()] += 1;
    }

    pub fn skipped(&self, reason: SkipReason) -> u64 {
        self.skipped[reason.index()]
    }

    pub fn skipped_total(&self) -> u64 {
        self.skipped.iter().sum()
    }

    pub fn count_incident(&mut self, state: IncidentState) {
        match self.incidents.iter_mut().find(|(s, _)| *s == state) {
            Some((_, n)) => *n += 1,
            None => {
                self.incidents.push((state, 1));
                self.incidents.sort();
            }
        }
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "summary:")?;
        writeln!(f, "  lines read      {} ({} bytes)", self.lines, self.bytes)?;
        writeln!(f, "  parsed          {}", self.parsed)?;
        let reasons: Vec<String> = SkipReason::all()
            .filter(|r| self.skipped(*r) > 0)
            .map(|r| format!("{} {}", r.name(), self.skipped(r)))
            .collect();
        let detail = if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", reasons.join(", "))
        };
        writeln!(f, "  skipped         {}{detail}", self.skipped_total())?;
        if self.repaired_utf8 > 0 {
            writeln!(
                f,
                "  repaired        {} lines with invalid UTF-8",
                self.repaired_utf8
            )?;
        }
        writeln!(
            f,
            "  selected        {} events ({} without service or correlation key)",
            self.selected, self.unkeyed
        )?;
        writeln!(
            f,
            "  signals         {} suspicions, {} chains",
            self.suspicions, self.chains
        )?;
        writeln!(
            f,
            "  traces          {} expired, {} evicted at the cap",
            self.traces_expired, self.traces_evicted
        )?;
        writeln!(
            f,
            "  templates       {} in {} families ({} evicted at the cap)",
            self.templates_live, self.families, self.templates_evicted
        )?;
        let states: Vec<String> = self
            .incidents
            .iter()
            .map(|(s, n)| format!("{} {n}", s.as_str()))
            .collect();
        let total: u64 = self.incidents.iter().map(|(_, n)| n).sum();
        writeln!(
            f,
            "  incidents       {total} ({} confirmed); by final state: {}",
            self.confirmed_incidents,
            if states.is_empty() {
                "none".to_string()
            } else {
                states.join(", ")
            }
        )?;
        write!(
            f,
            "  transitions     {}; actions {} ({} cancelled)",
            self.transitions, self.actions, self.actions_cancelled
        )
    }
}
