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
    /// Held for being far ahead of every other source, and never corroborated (the
    /// bounded hold overflowed, or the input ended first).
    Ahead,
}

impl SkipReason {
    pub const COUNT: usize = ParseError::ALL.len() + 5;

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
            SkipReason::Ahead => ParseError::ALL.len() + 4,
        }
    }

    pub fn all() -> impl Iterator<Item = SkipReason> {
        ParseError::ALL.into_iter().map(SkipReason::Parse).chain([
            SkipReason::LineTooLong,
            SkipReason::MissingTimestamp,
            SkipReason::Late,
            SkipReason::FutureTimestamp,
            SkipReason::Ahead,
        ])
    }

    pub fn name(self) -> &'static str {
        match self {
            SkipReason::Parse(e) => e.reason(),
            SkipReason::LineTooLong => "line_too_long",
            SkipReason::MissingTimestamp => "missing_timestamp",
            SkipReason::Late => "late",
            SkipReason::FutureTimestamp => "future_timestamp",
            SkipReason::Ahead => "ahead",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub lines: u64,
    pub bytes: u64,
    /// Records taken out of batches (OTLP: one line, many records).
    pub batched: u64,
    pub parsed: u64,
    /// Parsed records without a time of their own, timed by their transport's stamp
    /// (a Kafka record's timestamp).
    pub transport_timed: u64,
    /// Stack-trace lines counted with the record before them (not events of their own).
    pub continuations: u64,
    skipped: [u64; SkipReason::COUNT],
    /// Lines with invalid UTF-8, read with U+FFFD in place of the bad bytes.
    pub repaired_utf8: u64,
    /// Events some rule selected.
    pub selected: u64,
    /// Selected events without a service or correlation key (not correlated).
    pub unkeyed: u64,
    pub suspicions: u64,
    pub chains: u64,
    /// Signals dropped because a rule yields to another's live incident (`yield_to`).
    pub yielded: u64,
    pub traces_expired: u64,
    pub traces_evicted: u64,
    /// Of the evicted, traces of a storming service that no other service had joined.
    pub traces_storm_evicted: u64,
    /// Traces open now in the rule that holds the most (the cap is per rule).
    pub traces_live: u64,
    /// Templates mined and held, and those evicted at the per-service cap.
    pub templates_live: u64,
    pub templates_evicted: u64,
    pub families: u64,
    pub transitions: u64,
    pub actions: u64,
    pub actions_cancelled: u64,
    /// Actions withheld by a rule's remediation budget or the brake (also cancelled).
    pub actions_withheld: u64,
    /// Actions not called because a silence covered their incident.
    pub actions_silenced: u64,
    /// Decide stage: signals dropped as repeats of a correlator that re-read its input,
    /// and signals of a rule this decider does not run.
    pub signals_repeated: u64,
    /// Decide stage: traces whose latest chain was forgotten early (more traces than
    /// `repeats::MAX_TRACES_KEPT`): a repeat of one of their chains is not recognised.
    pub chain_traces_forgotten: u64,
    pub signals_unknown_rule: u64,
    /// Decide stage: chain signals taken (repeats excluded): the chains decided on,
    /// counted once however often correlators that re-read their input raised them.
    pub chains_taken: u64,
    /// Decide stage: signals delivered before every partition passed their time
    /// (more were held back than the bound allows).
    pub signals_early: u64,
    /// Times the brake went on, and whether it is on now.
    pub brakes: u64,
    pub brake_on: bool,
    /// Notifications (Slack) that failed: reported, never a change of an incident's state.
    pub notifications_failed: u64,
    /// Records held for being far ahead of their peers (admitted later or skipped as
    /// `ahead`), and the sources of event time tracked now.
    pub held: u64,
    pub sources: u64,
    /// Sources holding time back now (their records arrive later than the lateness).
    pub lagging_sources: u64,
    /// Records of sources past the clock's cap (admitted, but never holding time back).
    pub untracked_records: u64,
    /// Services with names of their own, and records of services past that cap (mined
    /// together, correlated by no rule).
    pub services: u64,
    pub services_over_cap: u64,
    /// Incidents by the state they ended in (or are in, for live ones at the end).
    pub incidents: Vec<(IncidentState, u64)>,
    /// Incidents that reached CONFIRMED, ended or still open.
    pub confirmed_incidents: u64,
}

impl Stats {
    /// Adds another correlator's input counters (lines, skips, selection, signals,
    /// traces, templates, sources, services): the input side of several correlators of
    /// one process, whose partitions are disjoint.
    pub fn add_input(&mut self, o: &Stats) {
        self.lines += o.lines;
        self.bytes += o.bytes;
        self.batched += o.batched;
        self.parsed += o.parsed;
        self.transport_timed += o.transport_timed;
        self.continuations += o.continuations;
        for (a, b) in self.skipped.iter_mut().zip(o.skipped) {
            *a += b;
        }
        self.repaired_utf8 += o.repaired_utf8;
        self.selected += o.selected;
        self.unkeyed += o.unkeyed;
        self.suspicions += o.suspicions;
        self.chains += o.chains;
        self.traces_expired += o.traces_expired;
        self.traces_evicted += o.traces_evicted;
        self.traces_storm_evicted += o.traces_storm_evicted;
        self.traces_live = self.traces_live.max(o.traces_live);
        self.templates_live += o.templates_live;
        self.templates_evicted += o.templates_evicted;
        self.families += o.families;
        self.held += o.held;
        self.sources += o.sources;
        self.lagging_sources += o.lagging_sources;
        self.untracked_records += o.untracked_records;
        self.services += o.services;
        self.services_over_cap += o.services_over_cap;
    }

    /// Takes the decide stage's counters (transitions, actions, incidents, signals
    /// dropped or early, the brake) from the decider's statistics.
    pub fn take_decisions(&mut self, d: &Stats) {
        self.transitions = d.transitions;
        self.actions = d.actions;
        self.actions_cancelled = d.actions_cancelled;
        self.actions_withheld = d.actions_withheld;
        self.actions_silenced = d.actions_silenced;
        self.brakes = d.brakes;
        self.brake_on = d.brake_on;
        self.incidents = d.incidents.clone();
        self.confirmed_incidents = d.confirmed_incidents;
        self.notifications_failed = d.notifications_failed;
        self.yielded = d.yielded;
        self.signals_repeated = d.signals_repeated;
        self.chain_traces_forgotten = d.chain_traces_forgotten;
        self.chains_taken = d.chains_taken;
        self.signals_unknown_rule = d.signals_unknown_rule;
        self.signals_early = d.signals_early;
    }

    pub fn skip(&mut self, reason: SkipReason) {
        self.skipped[reason.index()] += 1;
    }

    /// Counts `n` lines skipped for `reason` at once.
    pub fn skip_n(&mut self, reason: SkipReason, n: u64) {
        self.skipped[reason.index()] += n;
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

impl Stats {
    /// The `{"type":"summary",...}` record that closes `--output json`.
    pub fn to_json(&self) -> String {
        let skipped: serde_json::Map<String, serde_json::Value> = SkipReason::all()
            .filter(|r| self.skipped(*r) > 0)
            .map(|r| (r.name().to_string(), self.skipped(r).into()))
            .collect();
        let by_state: serde_json::Map<String, serde_json::Value> = self
            .incidents
            .iter()
            .map(|(s, n)| (s.as_str().to_string(), (*n).into()))
            .collect();
        serde_json::json!({
            "type": "summary",
            "lines": self.lines,
            "bytes": self.bytes,
            "batched": self.batched,
            "parsed": self.parsed,
            "transport_timed": self.transport_timed,
            "continuations": self.continuations,
            "skipped": skipped,
            "held": self.held,
            "selected": self.selected,
            "unkeyed": self.unkeyed,
            "suspicions": self.suspicions,
            "chains": self.chains,
            "yielded": self.yielded,
            "traces_expired": self.traces_expired,
            "traces_evicted": self.traces_evicted,
            "traces_storm_evicted": self.traces_storm_evicted,
            "incidents": self.incidents.iter().map(|(_, n)| n).sum::<u64>(),
            "confirmed": self.confirmed_incidents,
            "by_state": by_state,
            "transitions": self.transitions,
            "actions": self.actions,
            "actions_cancelled": self.actions_cancelled,
            "actions_withheld": self.actions_withheld,
            "actions_silenced": self.actions_silenced,
            "signals_repeated": self.signals_repeated,
            "chain_traces_forgotten": self.chain_traces_forgotten,
            "chains_taken": self.chains_taken,
            "signals_unknown_rule": self.signals_unknown_rule,
            "signals_early": self.signals_early,
            "brakes": self.brakes,
            "notifications_failed": self.notifications_failed,
            "templates": self.templates_live,
            "services": self.services,
            "services_over_cap": self.services_over_cap,
            "families": self.families,
        })
        .to_string()
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "summary:")?;
        writeln!(f, "  lines read      {} ({} bytes)", self.lines, self.bytes)?;
        if self.batched > 0 {
            writeln!(
                f,
                "  batched         {} records taken out of OTLP batches",
                self.batched
            )?;
        }
        writeln!(f, "  parsed          {}", self.parsed)?;
        if self.transport_timed > 0 {
            writeln!(
                f,
                "  timed           {} records by their Kafka timestamp (they name no time)",
                self.transport_timed
            )?;
        }
        if self.continuations > 0 {
            writeln!(
                f,
                "  joined          {} stack-trace lines to the record before them",
                self.continuations
            )?;
        }
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
        if self.held > 0 {
            writeln!(
                f,
                "  held            {} records far ahead of the other sources",
                self.held
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
            "  traces          {} expired, {} evicted at the cap ({} of a storming service)",
            self.traces_expired, self.traces_evicted, self.traces_storm_evicted
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
