//! The engine: one stream's path from a raw line to incident records, on event time.
//!
//! Per record: split OTLP batches into records, read UTF-8 (repairing bad bytes), parse,
//! admit the timestamp through the clock (`clock.rs`: per-source time, late, held or
//! future), fire what is due up to time, offer the event to each rule's selector and
//! correlator, feed the resulting signals to the incidents, and carry out the machines'
//! effects (records, deadlines, actions). The engine reads no clock and does no I/O:
//! live jobs pass the wall clock in (`set_wall_clock`, `advance_idle`). Actions are not
//! executed here: the engine records what would be called, and treats the call as
//! successful when it comes due (dry run), or hands requests to an executor.
//!
//! One type, `Engine`, whose methods are grouped by job, one file each:
//!
//! - here: construction, the entry points for records and time (`push_*`, `advance_idle`,
//!   `step`, `finish`), the agenda's loop (`run_until`), the rewind point and statistics;
//! - `correlate.rs`: a record's way to signals (parse, admit, mine, select, windows) and
//!   the models' upkeep (families, match caches);
//! - `decide.rs`: signals to incidents: keys, machines, their effects, root candidates
//!   and the reasons shown on transitions, the confirmation brake;
//! - `actions.rs`: due actions to requests and outcomes, health probes, and what may
//!   hold a call back (brake, budget, silences);
//! - `view.rs`: an incident as operators and receivers see it (`take_changes`, payloads);
//! - `reload.rs`: swapping rule sets, and giving up pending actions (reload, shutdown);
//! - `wire.rs`: the two stages apart (`Stage`): signals out of a correlator, into a
//!   decider, and the decider's time from the watermarks.

mod actions;
mod correlate;
mod decide;
mod reload;
#[cfg(test)]
mod tests;
mod view;
mod wire;

use actions::silence_detail;
pub use view::{Changes, IncidentSnapshot};
use wire::Split;

use crate::action::ActionRequest;
use crate::agenda::{Agenda, Due, PendingAction};
use crate::clock::{ClockConfig, EventClock};
use crate::correlator::{Correlator, Signal};
use crate::incident::{IncidentState, Input, Timing};
use crate::interner::Interner;
use crate::record::Record;
use crate::registry::{IncidentKey, Registry};
use crate::signal::Stage;
use crate::silence::Silence;
use crate::stats::{SkipReason, Stats};
use logheal_models::{
    AnomalyConfig, Detector, Families, MinerConfig, ServiceTemplates, TemplateKey,
    DEFAULT_FAMILY_SIMILARITY,
};
use logheal_parsers::{otlp, EventTime, FieldNames, FormatError, LineParser, ParseError};
use logheal_rules::{Receiver, RuleSet};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Settings of one engine. `Default` gives what `logheal replay` uses.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Event time: lateness, idle sources, lag and far-ahead limits (see `clock.rs`).
    pub time: ClockConfig,
    /// Records stamped further than this ahead of the wall clock are skipped.
    pub future_skew: Duration,
    /// Lines longer than this are skipped.
    pub max_line_bytes: usize,
    /// Open traces held per rule before the least recently active is evicted.
    pub max_traces_per_rule: usize,
    /// Services with a name (and a template miner) of their own; records of services
    /// past the cap are mined together and correlated by no rule (counted).
    pub max_services: usize,
    /// Field names tried before the built-in conventions.
    pub fields: Option<FieldNames>,
    /// A Loghub-style header format for text logs.
    pub header_format: Option<String>,
    /// Text line shapes (Loghub-style header formats) tried before the built-in ones.
    pub patterns: Vec<String>,
    /// The global brake on automated remediation (see [`Brake`]).
    pub brake: Brake,
    /// What makes a template anomalous for its service: warm-up, how long a new one
    /// stays new, rate-spike thresholds.
    pub anomaly: AnomalyConfig,
    /// Hand due actions to an executor (`take_outbox`, `action_outcome`) instead of
    /// recording them as a dry run that succeeds.
    pub execute: bool,
    /// Which part of the engine runs (see `signal.rs`): both (the default), only
    /// correlation (`take_signals`), or only decisions (`push_wire`).
    pub stage: Stage,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            time: ClockConfig::default(),
            future_skew: Duration::from_secs(300),
            max_line_bytes: 1 << 20,
            max_traces_per_rule: 100_000,
            max_services: 10_000,
            brake: Brake::default(),
            anomaly: AnomalyConfig::default(),
            fields: None,
            header_format: None,
            patterns: Vec::new(),
            execute: false,
            stage: Stage::All,
        }
    }
}

/// The global brake: more than `max_confirmed` incidents confirmed within `window` (of
/// event time, over all rules) stops every action (webhooks and per-incident Slack
/// messages) until the confirmations within the window fall back to `max_confirmed`.
/// Incidents whose actions it withholds go to ESCALATED; one Slack message (to the
/// Slack receiver of the rule that tripped it, if it has one) and a `limit` record say
/// so. A flood of forged or real failures hands over to humans instead of restarting
/// the fleet. `max_confirmed: 0` turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Brake {
    pub max_confirmed: u32,
    pub window: Duration,
}

impl Default for Brake {
    fn default() -> Self {
        Brake {
            max_confirmed: 10,
            window: Duration::from_secs(600),
        }
    }
}

/// What a reload changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reload {
    pub kept: usize,
    pub added: usize,
    pub removed: usize,
    /// Live incidents of removed rules, closed.
    pub closed: usize,
}

pub struct Engine {
    config: EngineConfig,
    /// One per rule, by slot (`IncidentKey::rule`); see [`Slot`].
    slots: Vec<Slot>,
    /// The receivers of the rule set, by index (as in `ActionRequest::receiver`).
    receivers: Vec<Receiver>,
    field_names: FieldNames,
    parser: LineParser,
    clock: EventClock,
    interner: Interner,
    templates: ServiceTemplates,
    families: Families,
    anomalies: Detector,
    /// Template changes when the slots' model match caches were last valid.
    models_seen: u64,
    /// Template changes and lines at the last family refresh.
    families_at: (u64, u64),
    registry: Registry,
    agenda: Agenda,
    /// The records of the current OTLP batch, as flat JSON (reused across batches).
    batch: Vec<String>,
    /// Signals of the current line, and (same index) the rule that raised each.
    signals: Vec<Signal>,
    signal_rules: Vec<u32>,
    inbox: VecDeque<(IncidentKey, EventTime, Input)>,
    records: Vec<Record>,
    stats: Stats,
    /// Requests for the executor, and those sent and not yet answered.
    outbox: Vec<ActionRequest>,
    in_flight: FxHashMap<u64, PendingAction>,
    /// Health probes sent and not yet answered: (incident, transition, incident id).
    probes_in_flight: FxHashMap<u64, (IncidentKey, u32, Arc<str>)>,
    next_request: u64,
    /// The latest event time anything happened at.
    now: EventTime,
    /// The event time of the last line admitted by `push_line`, if that line was.
    admitted: Option<EventTime>,
    /// Spans (first, last seen) of closed incidents that may still overlap the rewind
    /// point (see `rewind_point`).
    closed_spans: VecDeque<(EventTime, EventTime)>,
    /// Calls of each webhook action per incident key within its rule's budget period.
    budget_used: FxHashMap<(IncidentKey, Arc<str>), VecDeque<EventTime>>,
    /// Confirmations within the brake's window, and since when the brake is on.
    confirmations: VecDeque<EventTime>,
    braked_since: Option<EventTime>,
    /// Silences in force, as the live job last set them (`set_silences`).
    silences: Vec<Silence>,
    /// Incidents that took input since `take_changes`, and incidents closed since (at
    /// most `MAX_CLOSED_KEPT`, oldest dropped): what an operator's view refreshes.
    touched: rustc_hash::FxHashSet<IncidentKey>,
    closed: VecDeque<IncidentSnapshot>,
    /// The two stages apart (see `signal.rs`).
    split: Split,
}

/// What the engine keeps of one rule. Slots are stable: a reload keeps a rule's slot
/// (matched by name), appends new rules, and marks removed ones retired instead of
/// dropping them, so the slot number an incident, a pending action or a signal holds
/// always names the same rule.
struct Slot {
    rule: logheal_rules::Rule,
    name: Arc<str>,
    /// Removed by a reload: selects nothing, is yielded to by no rule.
    retired: bool,
    /// The slots of the running rules it yields to (`incident.yield_to`).
    yields_to: Vec<u32>,
    /// The incident timing of the rule as loaded (an incident keeps the timing it
    /// opened with).
    timing: Timing,
    /// Whether a template meets the rule's model conditions, valid while the template
    /// texts are unchanged (cleared when `Engine::models_seen` moves).
    model_matches: FxHashMap<TemplateKey, bool>,
    correlator: Correlator,
    /// Events it selected.
    selected: u64,
}

impl Slot {
    fn new(rule: logheal_rules::Rule, correlator: Correlator) -> Slot {
        Slot {
            name: rule.name.as_str().into(),
            retired: false,
            yields_to: Vec::new(),
            timing: Timing::from(&rule.incident),
            model_matches: FxHashMap::default(),
            correlator,
            selected: 0,
            rule,
        }
    }
}

/// Points each slot at the running rules it yields to.
fn link_yields(slots: &mut [Slot]) {
    let targets: Vec<Vec<u32>> = slots
        .iter()
        .map(|s| {
            (0..slots.len())
                .filter(|&i| {
                    !slots[i].retired && s.rule.incident.yield_to.contains(&slots[i].rule.name)
                })
                .map(|i| i as u32)
                .collect()
        })
        .collect();
    for (slot, to) in slots.iter_mut().zip(targets) {
        slot.yields_to = to;
    }
}

/// A configuration the engine cannot run with: its line shapes do not compile.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // The messages say what was wrong in full; no source, so that `{:#}` does not
    // repeat them.
    #[error("{0}")]
    HeaderFormat(FormatError),
    #[error("pattern {index}: {error}")]
    Pattern { index: usize, error: FormatError },
}

/// The line parser for a rule set: the configured field names plus the extra fields the
/// rules match on.
fn parser_for(rules: &RuleSet, config: &EngineConfig) -> Result<LineParser, ConfigError> {
    let mut names = match &config.fields {
        Some(custom) => FieldNames::with_overrides(custom),
        None => FieldNames::default(),
    };
    names.extra = rules.field_names.extra.clone();
    let year = logheal_parsers::time::current_year();
    LineParser::new(&names, config.header_format.as_deref(), year)
        .map_err(ConfigError::HeaderFormat)?
        .with_patterns(&config.patterns)
        .map_err(|(i, e)| ConfigError::Pattern {
            index: i + 1,
            error: e,
        })
}

/// The wall clock as event time.
pub fn wall_clock_now() -> EventTime {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    EventTime(i64::try_from(nanos).unwrap_or(i64::MAX))
}

impl Engine {
    pub fn new(rules: RuleSet, config: &EngineConfig) -> Result<Self, ConfigError> {
        let parser = parser_for(&rules, config)?;
        let mut slots: Vec<Slot> = rules
            .rules
            .into_iter()
            .map(|r| {
                let correlator = Correlator::new(&r.correlate, config.max_traces_per_rule);
                Slot::new(r, correlator)
            })
            .collect();
        link_yields(&mut slots);
        Ok(Engine {
            config: config.clone(),
            slots,
            receivers: rules.receivers,
            field_names: rules.field_names,
            parser,
            clock: EventClock::new(config.time, wall_clock_now().plus(config.future_skew)),
            interner: Interner::new(config.max_services),
            templates: ServiceTemplates::new(MinerConfig::default()),
            families: Families::new(DEFAULT_FAMILY_SIMILARITY),
            anomalies: Detector::new(config.anomaly.clone()),
            models_seen: 0,
            families_at: (0, 0),
            registry: Registry::default(),
            agenda: Agenda::default(),
            batch: Vec::new(),
            signals: Vec::new(),
            signal_rules: Vec::new(),
            inbox: VecDeque::new(),
            records: Vec::new(),
            stats: Stats::default(),
            outbox: Vec::new(),
            in_flight: FxHashMap::default(),
            probes_in_flight: FxHashMap::default(),
            next_request: 0,
            now: EventTime::MIN,
            admitted: None,
            closed_spans: VecDeque::new(),
            budget_used: FxHashMap::default(),
            confirmations: VecDeque::new(),
            braked_since: None,
            silences: Vec::new(),
            touched: Default::default(),
            closed: VecDeque::new(),
            split: Split::new(),
        })
    }

    /// An engine with the same rules (as reloaded) and settings and no state: for a
    /// consumer that rebuilds its state from the committed offsets after a rebalance.
    pub fn fresh(&self) -> Engine {
        let rules = RuleSet {
            rules: (self.slots.iter())
                .filter(|s| !s.retired)
                .map(|s| s.rule.clone())
                .collect(),
            receivers: self.receivers.clone(),
            field_names: self.field_names.clone(),
        };
        Engine::new(rules, &self.config).expect("the running rules were accepted before")
    }

    /// The maximum line length this engine accepts.
    pub fn max_line_bytes(&self) -> usize {
        self.config.max_line_bytes
    }

    /// Counts a line the reader could not deliver whole.
    pub fn skip_too_long(&mut self, len: usize) {
        self.stats.lines += 1;
        self.stats.bytes += len as u64 + 1;
        self.stats.skip(SkipReason::LineTooLong);
    }

    /// Processes one line (without its terminator) of partition 0 (stdin, files).
    pub fn push_line(&mut self, line: &[u8]) {
        self.push_record(0, line);
    }

    /// Processes one record (without a line terminator) of `partition`: each partition,
    /// and each service within it, is a source of event time of its own.
    pub fn push_record(&mut self, partition: u32, line: &[u8]) {
        self.push_stamped(partition, line, None);
    }

    /// [`push_record`](Self::push_record) for a record its transport stamped with a time
    /// (a Kafka record's timestamp: when the shipper produced it, or when the broker
    /// appended it): that time is the record's event time when the record names none,
    /// as Fluentd's Kafka output writes by default and as an app's time-of-day header
    /// without a date leaves it. Records that name their time keep it.
    pub fn push_stamped(&mut self, partition: u32, line: &[u8], stamp: Option<EventTime>) {
        self.admitted = None;
        self.stats.lines += 1;
        self.stats.bytes += line.len() as u64 + 1;
        if line.len() > self.config.max_line_bytes {
            return self.stats.skip(SkipReason::LineTooLong);
        }
        let json_batch = otlp::is_otlp_json(line);
        if json_batch || otlp::may_be_otlp_proto(line) {
            // The OTel Collector's batches: every log record is a record of its own.
            let mut batch = std::mem::take(&mut self.batch);
            batch.clear();
            let split = if json_batch {
                std::str::from_utf8(line)
                    .map_err(|_| ParseError::MalformedJson)
                    .and_then(|text| otlp::split_json(text, &mut batch))
            } else {
                otlp::split_proto(line, &mut batch)
            };
            match split {
                Ok(()) => {
                    self.stats.batched += batch.len() as u64;
                    for record in &batch {
                        self.process(partition, record.as_bytes(), false, stamp);
                    }
                }
                Err(e) if json_batch => self.stats.skip(SkipReason::Parse(e)),
                // Not protobuf after all: a line that starts with a newline byte.
                Err(_) => self.process(partition, line, false, stamp),
            }
            self.batch = batch;
        } else {
            self.process(partition, line, false, stamp);
        }
        self.process_released();
    }

    /// Processes the records held for being far ahead of their peers that the clock now
    /// admits, at the time they were held with (their own, or their transport's stamp).
    fn process_released(&mut self) {
        while let Some(held) = self.clock.take_released() {
            self.process(held.source.partition, &held.line, true, Some(held.at));
        }
    }

    /// Live mode: the wall clock now. It only bounds how far ahead a record may be
    /// stamped; it never moves time (see [`advance_idle`](Self::advance_idle)).
    pub fn set_wall_clock(&mut self, wall: EventTime) {
        self.clock.set_horizon(wall.plus(self.config.future_skew));
    }

    /// Live mode, when the input is idle and caught up and its newest record arrived
    /// `quiet` ago: time moves to that record's time plus `quiet`, minus the lateness,
    /// so timers fire on a quiet stream. A backlog never gets here, so it decides what
    /// a replay decides.
    pub fn advance_idle(&mut self, quiet: Duration) {
        self.clock.advance_idle(quiet);
        self.process_released();
        self.run_until(self.clock.time());
        self.expire_windows();
    }

    /// Fires the next thing due, however far ahead in event time; `false` when nothing
    /// is left. Used at end of input when actions are executed, so each outcome can be
    /// fed back before time moves on.
    pub fn step(&mut self) -> bool {
        if !self.split.pending.is_empty() {
            // A decider's held-back signals come first, in order, with what is due
            // before each.
            let before = self.split.pending.len();
            self.advance_decide();
            if self.split.pending.len() < before || self.awaiting_outcomes() {
                return true;
            }
            if let Some((_, signal)) = self.split.pending.pop_first() {
                self.deliver_wire(signal);
                return true;
            }
        }
        match self.agenda.next_due() {
            Some(t) => {
                self.run_until(t);
                true
            }
            None => false,
        }
    }

    /// Correlate stage: event time now (what its watermarks say).
    pub fn time(&self) -> EventTime {
        self.current_time()
    }

    /// End of input: lets event time run on until every timer has fired, so each open
    /// incident shows how it would end if the stream stayed quiet.
    pub fn finish(&mut self) {
        while let Some((order, signal)) = self.split.pending.pop_first() {
            self.run_until(order.0);
            self.deliver_wire(signal);
        }
        self.clock.end_of_input();
        self.process_released();
        self.refit_families();
        if !self.selects_by_family() {
            self.fit_families();
        }
        self.run_until(EventTime::MAX);
        for slot in &mut self.slots {
            slot.correlator.expire(EventTime::MAX);
        }
    }

    /// The event time of the line last given to `push_line`, if it was admitted.
    pub fn admitted(&self) -> Option<EventTime> {
        self.admitted
    }

    /// How far back a restarted consumer must re-read so that replaying from there
    /// rebuilds every live incident and open trace window exactly as they are: before
    /// the first event of every open incident and of every closed incident that
    /// overlaps that point (else a replay would open a fresh incident from a closed
    /// one's tail), and before the longest rule window plus the lateness. Never earlier
    /// than `max_rewind` before the newest record, which bounds the replay of a
    /// long-lived incident.
    pub fn rewind_point(&mut self, max_rewind: Duration) -> EventTime {
        let decide = self.config.stage == Stage::Decide;
        let newest = if decide {
            self.decide_time()
        } else {
            self.clock.newest()
        };
        if newest == EventTime::MIN {
            return newest;
        }
        let limit = newest.minus(max_rewind);
        if decide {
            // A correlator re-reads no further back than `max_rewind` before its own
            // newest record; twice that covers what it had not committed yet.
            self.split.repeats.forget_before(limit.minus(max_rewind));
        }
        // A decider holds no trace windows: its signals are needed only from the first
        // of its incidents on.
        let mut point = if decide {
            newest
        } else {
            let window = self
                .slots
                .iter()
                .map(|s| s.rule.correlate.window)
                .max()
                .unwrap_or_default();
            self.clock.retention_point().minus(window)
        };
        if let Some(first) = self.registry.oldest() {
            point = point.min(first);
        }
        // Closed spans that end before the point can never reach it again: the point
        // only moves forward as incidents close and time passes.
        loop {
            let before = point;
            for &(first, last) in &self.closed_spans {
                if first < point && last >= point {
                    point = first;
                }
            }
            if point == before {
                break;
            }
        }
        self.closed_spans.retain(|&(_, last)| last >= point);
        point.max(limit)
    }

    /// Records produced since the last call.
    pub fn take_records(&mut self) -> std::vec::Drain<'_, Record> {
        self.records.drain(..)
    }

    /// Statistics so far; live incidents are counted by their current state.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        for c in self.slots.iter().map(|s| &s.correlator) {
            s.traces_expired += c.stats.expired;
            s.traces_evicted += c.stats.evicted;
            s.traces_storm_evicted += c.stats.storm_evicted;
            s.traces_live = s.traces_live.max(c.live_traces() as u64);
        }
        s.brake_on = self.braked_since.is_some();
        s.chain_traces_forgotten = self.split.repeats.forgotten;
        for (_, _, state) in self.registry.states() {
            s.count_incident(state);
        }
        s.confirmed_incidents += self.registry.confirmed();
        s.held = self.clock.stats.held;
        s.skip_n(SkipReason::Ahead, self.clock.stats.dropped_ahead);
        let (sources, lagging) = self.clock.sources();
        s.sources = sources as u64;
        s.lagging_sources = lagging as u64;
        s.untracked_records = self.clock.stats.untracked;
        s.templates_live = self.templates.live() as u64;
        s.services = self.interner.len() as u64;
        s.families = self.families.len() as u64;
        s.templates_evicted = self.templates.stats().templates_evicted;
        s
    }

    /// Events selected so far by each running rule, by name.
    pub fn selected_by_rule(&self) -> Vec<(Arc<str>, u64)> {
        (self.slots.iter())
            .filter(|s| !s.retired)
            .map(|s| (s.name.clone(), s.selected))
            .collect()
    }

    /// Live incidents, counted by their current state.
    pub fn live_incidents(&self) -> Vec<(IncidentState, u64)> {
        let mut live = Stats::default();
        for (_, _, state) in self.registry.states() {
            live.count_incident(state);
        }
        live.incidents
    }

    /// The event time now: the latest of what happened and what was read.
    fn current_time(&self) -> EventTime {
        self.now.max(self.clock.time()).max(self.split.time)
    }

    /// Fires everything due at or before `until`, in order.
    fn run_until(&mut self, until: EventTime) {
        self.run_until_holding(until, false);
    }

    /// Fires everything due at or before `until`, in order; with `hold_for_calls`, stops
    /// while a call is in flight (the rest stays due).
    fn run_until_holding(&mut self, until: EventTime, hold_for_calls: bool) {
        loop {
            if hold_for_calls && self.awaiting_outcomes() {
                return;
            }
            let Some(due) = self.agenda.pop_due(until) else {
                break;
            };
            match due {
                Due::Action(p) => {
                    self.now = self.now.max(p.due);
                    if let Some(why) = self.withheld(&p) {
                        self.withhold(p, why);
                        self.settle();
                        continue;
                    }
                    if let Some(s) = self.silenced_by(&p) {
                        let (id, detail) = (s.id.clone(), silence_detail(s));
                        self.silence(p, id, detail);
                        self.settle();
                        continue;
                    }
                    self.stats.actions += 1;
                    let record = self.action_record(&p, p.due);
                    if self.config.execute {
                        self.dispatch(p, &record);
                    } else if !self.agenda.has_pending(p.key, p.seq) {
                        self.inbox.push_back((p.key, p.due, Input::ActionsDone));
                    }
                    self.records.push(Record::Action(record));
                }
                Due::Probe { at, key, seq } => {
                    self.now = self.now.max(at);
                    self.probe_due(key, seq);
                }
                Due::Timeout {
                    at,
                    key,
                    generation,
                } => {
                    self.now = self.now.max(at);
                    self.deliver(key, at, Input::Timeout { generation }, None);
                }
            }
            self.settle();
        }
    }

    fn settle(&mut self) {
        while let Some((key, at, input)) = self.inbox.pop_front() {
            self.deliver(key, at, input, None);
        }
    }
}
