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

use crate::action::{ActionRequest, Attempt, Outcome};
use crate::agenda::{Agenda, Due, PendingAction};
use crate::clock::{Admission, ClockConfig, EventClock, SourceId};
use crate::correlator::{ChainSignal, Correlator, Signal, TraceEvent};
use crate::incident::{Ctx, Effect, IncidentState, Input, Timing};
use crate::interner::Interner;
use crate::payload::{self, Counts, IncidentView};
use crate::record::{ActionRecord, Labels, Record};
use crate::registry::{Incident, IncidentKey, Registry};
use crate::signal::{Origin, Stage, Watermark, Wire, WireChain, WireSignal, WireTemplate};
use crate::silence::Silence;
use crate::stats::{SkipReason, Stats};
use logheal_models::{
    AnomalyConfig, Detector, Families, Flags, MinerConfig, ServiceTemplates, TemplateKey,
    DEFAULT_FAMILY_SIMILARITY,
};
use logheal_parsers::{otlp, EventTime, FieldNames, FormatError, LineParser, ParseError};
use logheal_rules::{
    ActionState, AnomalyKind, CorrelationKey, GroupLabel, ModelConditions, Receiver, ReceiverKind,
    RuleSet,
};
use rustc_hash::FxHashMap;
use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Budget entries (incident key and action) held before those past their period are
/// dropped.
const BUDGET_KEYS_PRUNE_AT: usize = 4096;

/// New templates placed into families per refit during a run (each costs at most a few
/// thousand sparse products, see `families.rs`).
const FAMILY_PLACEMENTS_PER_REFIT: usize = 4096;

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

/// The state of a stage that runs apart from the other.
#[derive(Default)]
struct Split {
    /// Correlate: the input position of the record being processed, how many signals
    /// it raised so far, and the signals waiting to be published.
    position: Option<(Arc<str>, i32, i64)>,
    raised: u32,
    out: Vec<WireSignal>,
    /// Decide: every input partition, and each one's latest watermark.
    inputs: Vec<(Arc<str>, i32)>,
    /// Per input partition: its watermark, and whether it is idle (never had a record).
    /// Kept per signals partition: a watermark on one partition says nothing of the
    /// signals still on their way in another (each partition is in order, the
    /// partitions are not), so a decider's time is the least over its own partitions.
    marks: FxHashMap<(i32, Arc<str>, i32), (EventTime, bool)>,
    /// The keys of `marks` time waits for (see `refresh_mark_keys`).
    mark_keys: Vec<(i32, Arc<str>, i32)>,
    /// Decide: the signals partitions this decider owns (none known: those heard of).
    owned: Vec<i32>,
    /// Decide: what tells a correlator's repeats (see `repeats.rs`).
    repeats: crate::repeats::Repeats,
    /// Decide: templates known by text (a decider mines nothing); the key's id indexes
    /// `texts`, with the correlator's anomaly verdict.
    template_ids: FxHashMap<(u32, Box<str>), u32>,
    texts: Vec<(Box<str>, bool, Option<String>)>,
    /// Decide: the services named in the chain being delivered.
    named: Vec<crate::interner::ServiceId>,
    /// Decide, executing while catching up: while a call is in flight, time does not
    /// move on to a point before this (as one engine stands still, see `feed`).
    hold_before: Option<EventTime>,
    /// Decide: the time reached (the watermark time, unless held for a call).
    time: EventTime,
    /// Decide: signals taken and not yet delivered, by the correlator's time when it
    /// raised them (then arrival): each is delivered once every input partition has
    /// passed that time, after what fell due before it, as one engine would.
    pending: std::collections::BTreeMap<(EventTime, u64), WireSignal>,
    arrivals: u64,
}

/// Signals a decider holds back for a lagging partition; past this, the earliest is
/// delivered anyway (counted in `signals_early`), so a dead correlator cannot make a
/// decider's memory grow.
const MAX_PENDING_SIGNALS: usize = 100_000;

/// Templates a decider keeps by text; past this, new texts share one entry.
const MAX_WIRE_TEMPLATES: usize = 100_000;

/// What a silenced action's record says of its silence.
fn silence_detail(s: &Silence) -> String {
    if s.comment.is_empty() {
        s.describe()
    } else {
        format!("{} ({})", s.describe(), s.comment)
    }
}

/// Closed incidents kept for `take_changes` when nobody takes them (a replay).
const MAX_CLOSED_KEPT: usize = 4096;

/// An incident as an operator's view shows it (see `Engine::take_changes`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct IncidentSnapshot {
    pub id: Arc<str>,
    pub rule: Arc<str>,
    pub key: Labels,
    /// Its state, or the state it closed in.
    pub state: IncidentState,
    pub first_seen: String,
    pub last_seen: String,
    pub counts: Counts,
    pub services: Vec<String>,
    pub root_candidates: Vec<crate::registry::Candidate>,
    pub sample_trace_ids: Vec<String>,
    pub top_templates: Vec<String>,
}

/// What changed since the last `take_changes`: incidents that took input (as they are
/// now) and incidents that closed (as they were).
#[derive(Debug, Default)]
pub struct Changes {
    pub live: Vec<IncidentSnapshot>,
    pub closed: Vec<IncidentSnapshot>,
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
            split: Split {
                time: EventTime::MIN,
                ..Split::default()
            },
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

    /// Parses and admits one line (`released`: it was held before), then mines,
    /// selects and correlates it; `stamp` is its event time when it names none.
    fn process(&mut self, partition: u32, line: &[u8], released: bool, stamp: Option<EventTime>) {
        let text = match std::str::from_utf8(line) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) => {
                if !released {
                    self.stats.repaired_utf8 += 1;
                }
                String::from_utf8_lossy(line)
            }
        };
        let event = match self.parser.parse(&text) {
            Ok(e) => e,
            // A bare stack-trace line (no envelope, no header).
            Err(ParseError::Unrecognised) if is_continuation_text(&text) => {
                self.stats.continuations += 1;
                return;
            }
            Err(e) => return self.stats.skip(SkipReason::Parse(e)),
        };
        if !released {
            self.stats.parsed += 1;
        }
        if is_continuation(&event) {
            // A stack-trace line the shipper did not join: part of the record before it,
            // not an event of its own (nothing is buffered: memory stays bounded).
            self.stats.continuations += 1;
            return;
        }
        let ts = match (event.ts, stamp) {
            (Some(ts), _) => ts,
            (None, Some(stamp)) => {
                if !released {
                    self.stats.transport_timed += 1;
                }
                stamp
            }
            (None, None) => return self.stats.skip(SkipReason::MissingTimestamp),
        };
        let service = self
            .interner
            .intern(event.service.as_deref().unwrap_or_default());
        let over_cap = self.interner.is_overflow(service);
        let source = SourceId {
            partition,
            service: service.0,
        };
        let admission = if released {
            self.clock.admit_released(source, ts)
        } else {
            self.clock.admit(source, ts, line)
        };
        match admission {
            Admission::Admitted => {}
            Admission::Held => return,
            Admission::Late => return self.stats.skip(SkipReason::Late),
            Admission::Future => return self.stats.skip(SkipReason::FutureTimestamp),
        }
        if !released {
            self.admitted = Some(ts);
        }
        self.run_until(self.clock.time());
        let (template, new) = self.templates.add(service.0, &event.message);
        let flags = self.anomalies.observe(template, ts.nanos(), new);
        self.refresh_models();
        if over_cap {
            return self.over_service_cap(ts);
        }
        for (ri, slot) in self.slots.iter_mut().enumerate() {
            let rule = &slot.rule;
            if slot.retired || !rule.select.matches(&event) {
                continue;
            }
            let models = &rule.select.models;
            if !models.is_empty() {
                let cache = &mut slot.model_matches;
                if !model_match(
                    models,
                    cache,
                    &self.templates,
                    &self.families,
                    template,
                    flags,
                ) {
                    continue;
                }
            }
            self.stats.selected += 1;
            slot.selected += 1;
            let key = match rule.correlate.key {
                CorrelationKey::TraceId => {
                    event.trace_id.as_deref().or(event.request_id.as_deref())
                }
                CorrelationKey::RequestId => event.request_id.as_deref(),
                CorrelationKey::Service => event.service.as_deref(),
                CorrelationKey::Field(i) => event.extra(i),
            };
            let (Some(_), Some(key)) = (event.service.as_deref(), key) else {
                self.stats.unkeyed += 1;
                continue;
            };
            let selected = TraceEvent {
                at: ts,
                service,
                template,
                anomalous: flags.new_template || flags.rate_spike,
            };
            slot.correlator.observe(key, selected, &mut self.signals);
            self.signal_rules.resize(self.signals.len(), ri as u32);
        }
        self.expire_windows();
        if !self.signals.is_empty() {
            let signals = std::mem::take(&mut self.signals);
            for (signal, rule) in signals.iter().zip(std::mem::take(&mut self.signal_rules)) {
                self.on_signal(rule, signal);
            }
            self.signals = signals;
            self.signals.clear();
        }
        self.run_until(self.clock.time());
    }

    /// Counts a record of a service past the cap (mined, not correlated); the first one
    /// is reported.
    fn over_service_cap(&mut self, at: EventTime) {
        self.stats.services_over_cap += 1;
        if self.stats.services_over_cap == 1 {
            self.records.push(Record::Limit {
                at: at.to_rfc3339(),
                limit: "services",
                detail: format!(
                    "{} distinct service names: the records of any other service are mined \
                     together and correlated by no rule (raise `max_services`, or map \
                     `service` to a field of lower cardinality)",
                    self.config.max_services
                ),
            });
        }
    }

    /// Drops the trace windows no record can reach any more.
    fn expire_windows(&mut self) {
        let point = self.clock.retention_point();
        for slot in &mut self.slots {
            slot.correlator.expire(point);
        }
    }

    /// Keeps the model-derived state in step with the templates: match caches are dropped
    /// when any template text changed, and families are refitted on a schedule that grows
    /// with the number of templates (never per line).
    fn refresh_models(&mut self) {
        let changes = self.templates.changes();
        if changes == self.models_seen {
            return;
        }
        self.models_seen = changes;
        self.clear_model_matches();
        let lines = self.stats.parsed;
        let (changes_then, lines_then) = self.families_at;
        let due = 1_000u64.max(20 * self.templates.live() as u64);
        if changes != changes_then && lines - lines_then >= due {
            self.refit_families();
        }
    }

    /// Prunes the anomaly baselines of evicted templates and, when a rule selects by
    /// family, refits the families. Without such a rule the families are only fitted at
    /// the end of input (the summary): a refit costs milliseconds per few hundred
    /// templates, and in an outage new templates come on the decision path.
    fn refit_families(&mut self) {
        self.families_at = (self.templates.changes(), self.stats.parsed);
        if self.selects_by_family() {
            // Bounded: a flood of new templates is placed over several refits.
            self.families
                .refresh_bounded(&self.templates.texts(), FAMILY_PLACEMENTS_PER_REFIT);
        }
        let templates = &self.templates;
        self.anomalies.retain(|k| templates.is_live(*k));
        self.clear_model_matches();
    }

    fn clear_model_matches(&mut self) {
        for slot in &mut self.slots {
            slot.model_matches.clear();
        }
    }

    /// Whether a running rule selects events by template family.
    fn selects_by_family(&self) -> bool {
        self.slots
            .iter()
            .any(|s| !s.retired && s.rule.select.models.family.is_some())
    }

    /// The families of every template, fitted now (end of input, the summary).
    fn fit_families(&mut self) {
        self.families.refresh(&self.templates.texts());
        self.clear_model_matches();
    }

    /// Swaps in a new, already validated rule set. A rule that still exists keeps its
    /// live incidents (and its open trace windows when its correlation is unchanged);
    /// incidents of a removed rule are closed with the reason stated; new rules start
    /// empty. Existing incidents keep the timing they opened with.
    pub fn reload(&mut self, new: RuleSet) -> Result<Reload, ConfigError> {
        let parser = parser_for(&new, &self.config)?;
        let mut incoming: Vec<Option<logheal_rules::Rule>> =
            new.rules.into_iter().map(Some).collect();
        let mut summary = Reload::default();
        let mut removed = Vec::new();
        let max_traces = self.config.max_traces_per_rule;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let found = incoming
                .iter_mut()
                .find(|r| r.as_ref().is_some_and(|r| r.name == slot.rule.name))
                .and_then(Option::take);
            match found {
                Some(rule) => {
                    // Open trace windows survive only an unchanged correlation.
                    let keep = !slot.retired && rule.correlate == slot.rule.correlate;
                    let correlator = if keep {
                        std::mem::replace(
                            &mut slot.correlator,
                            Correlator::new(&rule.correlate, max_traces),
                        )
                    } else {
                        Correlator::new(&rule.correlate, max_traces)
                    };
                    if slot.retired {
                        summary.added += 1
                    } else {
                        summary.kept += 1
                    }
                    let selected = slot.selected;
                    *slot = Slot::new(rule, correlator);
                    slot.selected = selected;
                }
                None => {
                    if !slot.retired {
                        summary.removed += 1;
                        removed.push(i as u32);
                    }
                    slot.retired = true;
                    slot.model_matches.clear();
                }
            }
        }
        for rule in incoming.into_iter().flatten() {
            let correlator = Correlator::new(&rule.correlate, max_traces);
            self.slots.push(Slot::new(rule, correlator));
            summary.added += 1;
        }
        link_yields(&mut self.slots);
        self.parser = parser;
        self.receivers = new.receivers;
        self.field_names = new.field_names;
        let at = self.current_time();
        for rule in removed {
            for key in self.registry.keys_of_rule(rule) {
                summary.closed += self.close_removed(key, at) as usize;
            }
        }
        self.reconcile_pending(at);
        Ok(summary)
    }

    /// After a reload: a pending action still stands if its rule still has an action
    /// of that name for that state, and then calls that action's receiver as now
    /// declared; any other is cancelled, with the reason in its record.
    fn reconcile_pending(&mut self, at: EventTime) {
        let (slots, receivers) = (&self.slots, &self.receivers);
        let cancelled = self.agenda.cancel_where(|p| {
            let rule = &slots[p.key.rule as usize].rule;
            let now = p.state.action_state().and_then(|s| {
                rule.actions
                    .for_state(s)
                    .iter()
                    .find(|a| *a.name == *p.action)
            });
            match now {
                Some(action) => {
                    let receiver = receivers[action.receiver].name.as_str();
                    if *p.receiver != *receiver {
                        p.receiver = receiver.into();
                    }
                    false
                }
                None => true,
            }
        });
        for p in cancelled {
            let reason = format!(
                "action {:?} of state {} was removed from rule {:?} by a reload",
                p.action,
                p.state.as_str(),
                self.slots[p.key.rule as usize].name
            );
            self.cancelled(&p, at, reason);
            // Its state's work is done if nothing else of it is pending or in flight.
            self.check_state_done(p.key, p.seq, at);
        }
        self.settle();
    }

    /// Whether the actions of transition `seq` of `key` are all done: if so (and the
    /// incident is still there), the incident is told.
    fn check_state_done(&mut self, key: IncidentKey, seq: u32, at: EventTime) {
        let current = self.registry.with(key, || None, |i| i.seq) == Some(seq);
        if current
            && !self.agenda.has_pending(key, seq)
            && !self
                .in_flight
                .values()
                .any(|q| q.key == key && q.seq == seq)
        {
            self.inbox.push_back((key, at, Input::ActionsDone));
        }
    }

    /// Counts an action that will not be called, with its record saying why.
    fn cancelled(&mut self, p: &PendingAction, at: EventTime, reason: String) {
        self.stats.actions_cancelled += 1;
        let action = self.action_record(p, at);
        self.records
            .push(Record::ActionCancelled { action, reason });
    }

    /// Shutdown: every pending action is cancelled, with `why` in its record.
    pub fn cancel_pending(&mut self, why: &str) {
        let at = self.current_time();
        for p in self.agenda.cancel_everything() {
            self.cancelled(&p, at, why.to_string());
        }
    }

    /// Shutdown past its deadline: calls still in flight are recorded as abandoned
    /// (`why`); their outcomes, if any come, are ignored.
    pub fn abandon_in_flight(&mut self, why: &str) {
        let at = self.current_time();
        let mut abandoned: Vec<(u64, PendingAction)> = self.in_flight.drain().collect();
        abandoned.sort_by_key(|(id, _)| *id);
        for (_, p) in abandoned {
            self.cancelled(&p, at, why.to_string());
        }
        self.probes_in_flight.clear();
    }

    /// Closes an incident whose rule was removed, cancelling what it had scheduled.
    fn close_removed(&mut self, key: IncidentKey, at: EventTime) -> bool {
        let Some(incident) = self.registry.remove(&key) else {
            return false;
        };
        let state = crate::incident::state_of(&incident.machine);
        self.stats.count_incident(state);
        self.note_closed(key, &incident);
        let reason = format!(
            "rule {:?} was removed by a reload",
            self.slots[key.rule as usize].name
        );
        for p in self.agenda.cancel_all(key) {
            self.cancelled(&p, at, reason.clone());
        }
        self.records.push(Record::IncidentClosed {
            at: at.to_rfc3339(),
            incident: incident.id.clone(),
            rule: self.slots[key.rule as usize].name.clone(),
            key: self.labels(key),
            state,
            reason,
        });
        true
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

    /// The receivers of the loaded rules, by index (as in [`ActionRequest::receiver`]).
    pub fn receivers(&self) -> &[Receiver] {
        &self.receivers
    }

    /// Whether records or requests wait to be taken (`take_records`, `take_outbox`).
    pub fn has_output(&self) -> bool {
        !self.records.is_empty() || !self.outbox.is_empty()
    }

    /// Whether requests wait to be taken (`take_outbox`).
    pub fn has_requests(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// Requests made since the last call (execute mode).
    pub fn take_outbox(&mut self) -> Vec<ActionRequest> {
        std::mem::take(&mut self.outbox)
    }

    /// Whether executed actions are still waiting for their outcome.
    pub fn awaiting_outcomes(&self) -> bool {
        !self.in_flight.is_empty() || !self.probes_in_flight.is_empty()
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
                self.deliver_wire(&signal);
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

    /// Feeds an executed action's outcome back into its incident, at the current event
    /// time. Only an incident still in the state that asked for the action is steered:
    /// success of every action of that state moves it on, a failure escalates.
    pub fn action_outcome(&mut self, request: u64, outcome: &Outcome) {
        if let Some((key, seq, incident)) = self.probes_in_flight.remove(&request) {
            return self.probe_outcome(key, seq, incident, outcome);
        }
        let Some(p) = self.in_flight.remove(&request) else {
            return;
        };
        let at = self.current_time();
        let action = self.action_record(&p, at);
        self.records.push(Record::ActionResult {
            action,
            outcome: outcome.name(),
            attempts: outcome.attempts(),
            detail: outcome.detail(),
        });
        let current = self.registry.with(p.key, || None, |i| i.seq) == Some(p.seq);
        if !current {
            return;
        }
        // A notification that failed is reported (its record above, and the counters),
        // never a reason to change what the incident is: the recovery itself did not fail.
        let notification = self.receiver_kind(&p.receiver) == ReceiverKind::Slack;
        if !outcome.is_done() && notification {
            self.stats.notifications_failed += 1;
        }
        if !outcome.is_done() && !notification {
            self.inbox.push_back((p.key, at, Input::ActionFailed));
        } else {
            self.check_state_done(p.key, p.seq, at);
        }
        self.settle();
        // What the outcome made due now (an escalation's page) goes out now, not at
        // the next record: a quiet stream or a shutdown must not hold it back.
        self.run_until(at);
    }

    /// The audit record of one attempt of an executed action.
    pub fn attempt_record(&self, attempt: &Attempt) -> Option<Record> {
        let p = self.in_flight.get(&attempt.request)?;
        let wall = chrono::DateTime::<chrono::Utc>::from(attempt.at)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut action = self.action_record(p, p.due);
        action.at = wall;
        Some(Record::Attempt {
            action,
            attempt: attempt.attempt,
            status: attempt.status,
            latency_ms: attempt.latency.as_millis() as u64,
            error: attempt.error.clone(),
        })
    }

    /// Builds the request for a due action and remembers it until its outcome.
    fn dispatch(&mut self, p: PendingAction, record: &crate::record::ActionRecord) {
        // Reloads cancel the actions whose receiver went away, so it is there.
        let kind = self.receiver_kind(&p.receiver);
        let view = self.view(&p, record);
        let body = match kind {
            ReceiverKind::Slack => payload::slack_body(&view),
            ReceiverKind::Webhook | ReceiverKind::Probe => payload::webhook_body(&view),
        };
        let id = self.request_id();
        self.outbox.push(ActionRequest {
            id,
            receiver: p.receiver.clone(),
            action: record.action.clone(),
            idempotency_key: record.idempotency_key.clone(),
            body,
            expect_status: None,
        });
        self.in_flight.insert(id, p);
    }

    /// The texts of templates, each text once (services can share one).
    fn template_texts(&self, keys: Vec<logheal_models::TemplateKey>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for text in keys.into_iter().filter_map(|t| self.template_text(t)) {
            if !out.contains(&text) {
                out.push(text);
            }
        }
        out
    }

    /// The incident as the action's receiver sees it.
    fn view(&self, p: &PendingAction, record: &crate::record::ActionRecord) -> IncidentView {
        let snapshot = self.registry.get(&p.key).map(|i| self.snapshot(p.key, i));
        let (services, candidates, traces, templates, counts, first, last) = match snapshot {
            Some(s) => (
                s.services,
                s.root_candidates,
                s.sample_trace_ids,
                s.top_templates,
                s.counts,
                s.first_seen,
                s.last_seen,
            ),
            None => (
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Counts::default(),
                p.due.to_rfc3339(),
                p.due.to_rfc3339(),
            ),
        };
        IncidentView {
            incident: p.incident.to_string(),
            rule: record.rule.to_string(),
            key: self.labels(p.key),
            state: p.state,
            previous_state: p.from,
            reason: p.reason.to_string(),
            action: record.action.clone(),
            idempotency_key: record.idempotency_key.clone(),
            root_cause: p
                .key
                .root
                .map(|s| self.interner.name(s).to_string())
                .or_else(|| services.first().cloned()),
            services,
            root_candidates: candidates,
            sample_trace_ids: traces,
            top_templates: templates,
            counts,
            first_seen: first,
            last_seen: last,
            dry_run: !self.config.execute,
        }
    }

    /// An incident as an operator's view (and a receiver's payload) shows it.
    fn snapshot(&self, key: IncidentKey, i: &Incident) -> IncidentSnapshot {
        let name = |s: crate::interner::ServiceId| self.interner.name(s).to_string();
        IncidentSnapshot {
            id: i.id.clone(),
            rule: self.slots[key.rule as usize].name.clone(),
            key: self.labels(key),
            state: crate::incident::state_of(&i.machine),
            first_seen: i.first_seen.to_rfc3339(),
            last_seen: i.last_seen.to_rfc3339(),
            counts: Counts {
                chains: i.chains,
                failed_events: i.chain_events,
                suspicions: i.suspicions,
            },
            services: i.services.iter().map(|s| name(*s)).collect(),
            root_candidates: self.candidate_names(&i.candidates(key.root)),
            sample_trace_ids: i.sample_traces.iter().map(|t| t.to_string()).collect(),
            top_templates: self.template_texts(i.top_templates(5)),
        }
    }

    /// Remembers a closed incident for `take_changes`.
    fn note_closed(&mut self, key: IncidentKey, incident: &Incident) {
        self.touched.remove(&key);
        if self.closed.len() >= MAX_CLOSED_KEPT {
            self.closed.pop_front();
        }
        let snapshot = self.snapshot(key, incident);
        self.closed.push_back(snapshot);
    }

    /// What changed since the last call: the incidents that took input, as they are
    /// now, and those that closed, as they were when they closed. For an operator's
    /// view; costs nothing per line (an incident is marked when it takes input).
    pub fn take_changes(&mut self) -> Changes {
        let mut keys: Vec<IncidentKey> = self.touched.drain().collect();
        keys.sort();
        let live = keys
            .into_iter()
            .filter_map(|key| self.registry.get(&key).map(|i| self.snapshot(key, i)))
            .collect();
        Changes {
            live,
            closed: self.closed.drain(..).collect(),
        }
    }

    /// Correlate stage: the input position of the record about to be pushed (its
    /// signals carry it as their origin).
    pub fn set_position(&mut self, topic: &Arc<str>, partition: i32, offset: i64) {
        // Per record: the topic is cloned only when it changes (two atomic operations
        // saved on nearly every record).
        match &mut self.split.position {
            Some((t, p, o)) if Arc::ptr_eq(t, topic) => (*p, *o) = (partition, offset),
            position => *position = Some((topic.clone(), partition, offset)),
        }
        self.split.raised = 0;
    }

    /// Correlate stage: the signals raised since the last call, to publish.
    pub fn take_signals(&mut self) -> Vec<WireSignal> {
        std::mem::take(&mut self.split.out)
    }

    /// Correlate stage: event time now (what its watermarks say).
    pub fn time(&self) -> EventTime {
        self.current_time()
    }

    /// Whether `rule` keys its incidents by root service (its signals' message key).
    pub fn groups_by_root(&self, rule: &str) -> bool {
        self.slots
            .iter()
            .find(|s| *s.name == *rule)
            .is_some_and(|s| s.rule.incident.group_by.contains(&GroupLabel::RootService))
    }

    /// Correlate stage: a signal goes out by name and text instead of to an incident.
    fn export(&mut self, rule: u32, signal: &Signal) {
        let (topic, partition, offset) = self
            .split
            .position
            .clone()
            .unwrap_or_else(|| ("-".into(), 0, self.stats.lines as i64));
        let origin = Origin {
            topic: topic.to_string(),
            partition,
            offset,
            index: self.split.raised,
        };
        self.split.raised += 1;
        let time = self.clock.time().nanos();
        let name = |s: crate::interner::ServiceId| self.interner.name(s).to_string();
        let rule_name = self.slots[rule as usize].name.to_string();
        let wire = match signal {
            Signal::Suspect { service, at } => {
                self.stats.suspicions += 1;
                WireSignal {
                    rule: rule_name,
                    at: at.nanos(),
                    time,
                    origin,
                    service: name(*service),
                    chain: None,
                }
            }
            Signal::Chain(c) => {
                self.stats.chains += 1;
                let at = c.last;
                let templates = c
                    .templates
                    .iter()
                    .filter_map(|(t, count)| {
                        Some(WireTemplate {
                            service: name(crate::interner::ServiceId(t.service)),
                            text: self.templates.text(*t)?,
                            count: *count,
                            novel: self.anomalies.is_new(*t, at.nanos()),
                            why: self.anomalies.explain(*t, at.nanos()),
                        })
                    })
                    .collect();
                WireSignal {
                    rule: rule_name,
                    at: at.nanos(),
                    time,
                    origin,
                    service: name(c.root),
                    chain: Some(WireChain {
                        trace: c.trace.to_string(),
                        services: c.services.iter().map(|s| name(*s)).collect(),
                        events: c.events,
                        first: c.first.nanos(),
                        last: c.last.nanos(),
                        templates,
                        named: self.named_services(c).into_iter().map(name).collect(),
                    }),
                }
            }
        };
        self.split.out.push(wire);
    }

    /// Decide stage: every input partition whose watermark time waits for.
    pub fn set_inputs(&mut self, inputs: Vec<(Arc<str>, i32)>) {
        self.split.inputs = inputs;
        self.refresh_mark_keys();
    }

    /// Decide stage: the signals partitions this decider was assigned.
    pub fn set_owned(&mut self, partitions: Vec<i32>) {
        self.split.owned = partitions;
        self.refresh_mark_keys();
    }

    /// Decide stage: the rewind point at which a decider before this one committed a
    /// signals partition. A signal read from it that stands for an earlier time is a
    /// repeat, published again by a correlator that re-read its input after the
    /// original was taken, and is dropped: the repeat filter of that decider is gone,
    /// and a closed incident's signals would otherwise open it again.
    pub fn set_floor(&mut self, partition: i32, at: EventTime) {
        self.split.repeats.set_floor(partition, at);
    }

    /// Works out the (signals partition, input partition) pairs time waits for, when
    /// the partitions or the keys of `marks` change (not per signal: time is read at
    /// every one).
    fn refresh_mark_keys(&mut self) {
        let split = &self.split;
        let mut owned = split.owned.clone();
        if owned.is_empty() {
            owned = split.marks.keys().map(|k| k.0).collect();
            owned.sort_unstable();
            owned.dedup();
        }
        let mut inputs = split.inputs.clone();
        if inputs.is_empty() {
            inputs = split.marks.keys().map(|k| (k.1.clone(), k.2)).collect();
            inputs.sort();
            inputs.dedup();
        }
        self.split.mark_keys = owned
            .iter()
            .flat_map(|sp| inputs.iter().map(move |(t, p)| (*sp, t.clone(), *p)))
            .collect();
    }

    /// Decide stage: event time, the least watermark over the input partitions, as
    /// seen on each signals partition this decider owns (none yet from one of them:
    /// time has not started; idle ones hold nothing back).
    fn decide_time(&self) -> EventTime {
        let marks = &self.split.marks;
        let mut least: Option<EventTime> = None;
        for key in &self.split.mark_keys {
            match marks.get(key) {
                None => return EventTime::MIN,
                Some((_, true)) => {}
                Some((at, false)) => least = Some(least.map_or(*at, |l| l.min(*at))),
            }
        }
        // Every partition idle: time stays where the latest watermark left it.
        least.unwrap_or_else(|| marks.values().map(|m| m.0).max().unwrap_or(EventTime::MIN))
    }

    /// Decide stage: every input partition has ended (`--until-end`).
    pub fn input_ended(&self) -> bool {
        let keys = &self.split.mark_keys;
        !self.split.inputs.is_empty()
            && !keys.is_empty()
            && keys.iter().all(|k| {
                self.split
                    .marks
                    .get(k)
                    .is_some_and(|m| m.0 == EventTime(i64::MAX))
            })
    }

    /// Decide stage: one message of the signals topic (read from its `partition`);
    /// the event time it stands for, or `None` for a repeat or a signal of a rule this
    /// decider does not run (counted).
    pub fn push_wire(&mut self, partition: i32, wire: Wire) -> Option<EventTime> {
        match wire {
            Wire::Watermark(Watermark {
                at,
                partitions,
                idle,
            }) => {
                for (topic, p) in &partitions {
                    self.mark(partition, topic, *p, EventTime(at));
                }
                for (topic, p) in &idle {
                    self.with_mark(partition, topic, *p, |m| m.1 = true);
                }
                self.advance_decide();
                Some(EventTime(at))
            }
            Wire::Signal(signal) => {
                let o = &signal.origin;
                let time = EventTime(signal.time);
                // What a restart must read again: the incident it joins starts no
                // later than its event time (`at`), and the rewind point is never past
                // the first signal of a live incident; while held back, it also stands
                // for its correlator's time, never before the rewind point. The
                // correlator's time alone is not enough: a lagging source holds it
                // behind the event (see `clock.rs`), and a restart would then skip the
                // first signal of an incident still open.
                let stands = time.max(EventTime(signal.at));
                let topic = self.shared_topic(&o.topic);
                if (self.split.repeats)
                    .check(partition, topic, &signal, stands)
                    .is_err()
                {
                    self.stats.signals_repeated += 1;
                    return None;
                }
                self.stats.chains_taken += u64::from(signal.chain.is_some());
                // The correlator's time when it raised the signal is a watermark of its
                // partition; the signal waits until every partition has passed it.
                self.mark(partition, &o.topic, o.partition, time);
                self.split.arrivals += 1;
                let order = (time, self.split.arrivals);
                self.split.pending.insert(order, signal);
                if self.split.pending.len() > MAX_PENDING_SIGNALS {
                    if let Some((_, early)) = self.split.pending.pop_first() {
                        self.stats.signals_early += 1;
                        self.deliver_wire(&early);
                    }
                }
                self.advance_decide();
                Some(stands)
            }
        }
    }

    /// Decide stage, executing: while a call is in flight, time holds before `point`
    /// (the wall clock minus the lateness: a backlog), so a watermark that jumps minutes
    /// of a backlog at once does not time out a call that takes milliseconds. `None`:
    /// never hold.
    pub fn hold_for_calls_before(&mut self, point: Option<EventTime>) {
        self.split.hold_before = point;
    }

    /// Decide stage: runs what is due up to the watermark time, unless held (see
    /// `hold_for_calls_before`); call again once outcomes are in.
    pub fn advance_decide(&mut self) {
        let time = self.decide_time();
        // The end of the input (`--until-end`) is never run to at once: what is left
        // fires step by step at the end, each call's outcome first (`Engine::step`).
        let ended = time == EventTime(i64::MAX);
        let hold = ended || self.split.hold_before.is_some_and(|point| time < point);
        loop {
            let next = self
                .split
                .pending
                .first_key_value()
                .map(|(order, _)| order.0)
                .filter(|t| *t <= time);
            let until = next.unwrap_or(time);
            self.run_until_holding(until, hold);
            if hold && self.awaiting_outcomes() {
                return;
            }
            if until != EventTime(i64::MAX) {
                self.split.time = self.split.time.max(until);
            }
            if next.is_none() {
                return;
            }
            if let Some((_, signal)) = self.split.pending.pop_first() {
                self.deliver_wire(&signal);
            }
        }
    }

    /// Decide stage: delivers one signal to its incident.
    fn deliver_wire(&mut self, signal: &WireSignal) {
        let Some(rule) = (self.slots.iter()).position(|s| !s.retired && *s.name == *signal.rule)
        else {
            self.stats.signals_unknown_rule += 1;
            return;
        };
        let local = self.local_signal(signal);
        self.on_signal(rule as u32, &local);
        self.split.named.clear();
    }

    /// Decide stage: moves an input partition's watermark, as seen on signals
    /// partition `on`, on (never back).
    fn mark(&mut self, on: i32, topic: &str, partition: i32, at: EventTime) {
        self.with_mark(on, topic, partition, |m| *m = (m.0.max(at), false));
    }

    /// Applies `f` to an input partition's mark (its time, and whether it is idle) as
    /// seen on signals partition `on`; a new one starts at no time.
    fn with_mark(
        &mut self,
        on: i32,
        topic: &str,
        partition: i32,
        f: impl FnOnce(&mut (EventTime, bool)),
    ) {
        let known = self.split.marks.len();
        let topic = self.shared_topic(topic);
        f(self
            .split
            .marks
            .entry((on, topic, partition))
            .or_insert((EventTime::MIN, false)));
        if self.split.marks.len() != known {
            self.refresh_mark_keys();
        }
    }

    /// An input topic's name, shared with `set_inputs` rather than allocated per signal.
    fn shared_topic(&self, name: &str) -> Arc<str> {
        (self.split.inputs.iter())
            .find(|(t, _)| **t == *name)
            .map_or_else(|| Arc::from(name), |(t, _)| t.clone())
    }

    /// A signal from the wire with this decider's service and template numbers.
    fn local_signal(&mut self, signal: &WireSignal) -> Signal {
        let service = self.interner.intern(&signal.service);
        let Some(chain) = &signal.chain else {
            return Signal::Suspect {
                service,
                at: EventTime(signal.at),
            };
        };
        let services = chain
            .services
            .iter()
            .map(|s| self.interner.intern(s))
            .collect();
        let templates = chain
            .templates
            .iter()
            .map(|t| {
                let owner = self.interner.intern(&t.service);
                (self.wire_template(owner, t), t.count)
            })
            .collect();
        self.split.named = chain
            .named
            .iter()
            .map(|s| self.interner.intern(s))
            .collect();
        Signal::Chain(ChainSignal {
            trace: chain.trace.as_str().into(),
            services,
            events: chain.events,
            first: EventTime(chain.first),
            last: EventTime(chain.last),
            root: service,
            templates,
        })
    }

    /// Decide stage: the key of a template known by its text, with the correlator's
    /// latest verdict on it.
    fn wire_template(
        &mut self,
        owner: crate::interner::ServiceId,
        t: &WireTemplate,
    ) -> TemplateKey {
        let split = &mut self.split;
        let key = (owner.0, Box::<str>::from(t.text.as_str()));
        let id = match split.template_ids.get(&key) {
            Some(id) => *id,
            None if split.texts.len() < MAX_WIRE_TEMPLATES => {
                let id = split.texts.len() as u32;
                split.texts.push((key.1.clone(), t.novel, t.why.clone()));
                split.template_ids.insert(key, id);
                id
            }
            // Full: the oldest entry stands for every further text.
            None => 0,
        };
        if let Some(entry) = split.texts.get_mut(id as usize) {
            if *entry.0 == *t.text {
                entry.1 = t.novel;
                entry.2 = t.why.clone();
            }
        }
        TemplateKey {
            service: owner.0,
            id: logheal_models::TemplateId(id),
        }
    }

    fn template_text(&self, t: TemplateKey) -> Option<String> {
        if self.config.stage == Stage::Decide {
            return self
                .split
                .texts
                .get(t.id.0 as usize)
                .map(|e| e.0.to_string());
        }
        self.templates.text(t)
    }

    fn template_is_new(&self, t: TemplateKey, at: EventTime) -> bool {
        if self.config.stage == Stage::Decide {
            return self.split.texts.get(t.id.0 as usize).is_some_and(|e| e.1);
        }
        self.anomalies.is_new(t, at.nanos())
    }

    fn template_why(&self, t: TemplateKey, at: EventTime) -> Option<String> {
        if self.config.stage == Stage::Decide {
            return self
                .split
                .texts
                .get(t.id.0 as usize)
                .and_then(|e| e.2.clone());
        }
        self.anomalies.explain(t, at.nanos())
    }

    /// Live mode: the silences in force now (the live job keeps them in wall time and
    /// sets them again whenever the set changes). A due action of an incident that one
    /// of them matches is not called: an `action_result` record says `silenced`, and
    /// the incident moves on as if it had been done.
    pub fn set_silences(&mut self, active: Vec<Silence>) {
        self.silences = active;
    }

    /// The silence that covers an action's incident, if one does. Labels: `rule`,
    /// `incident` and the group-by labels.
    fn silenced_by(&self, p: &PendingAction) -> Option<&Silence> {
        if self.silences.is_empty() {
            return None;
        }
        let rule = &*self.slots[p.key.rule as usize].name;
        let labels = self.labels(p.key);
        self.silences.iter().find(|s| {
            s.matches(|name| match name {
                "rule" => Some(rule),
                "incident" => Some(&*p.incident),
                other => labels.get(other).and_then(|v| v.as_str()),
            })
        })
    }

    /// Records a silenced action; the incident's state counts it as done.
    fn silence(&mut self, p: PendingAction, silence_id: String, detail: String) {
        self.stats.actions_silenced += 1;
        let action = self.action_record(&p, p.due);
        self.records.push(Record::ActionResult {
            action,
            outcome: "silenced",
            attempts: 0,
            detail: format!("silence {silence_id}: {detail}"),
        });
        self.check_state_done(p.key, p.seq, p.due);
    }

    /// End of input: lets event time run on until every timer has fired, so each open
    /// incident shows how it would end if the stream stayed quiet.
    pub fn finish(&mut self) {
        while let Some((order, signal)) = self.split.pending.pop_first() {
            self.run_until(order.0);
            self.deliver_wire(&signal);
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

    fn key(&self, rule: u32, service: crate::interner::ServiceId) -> IncidentKey {
        let groups = &self.slots[rule as usize].rule.incident.group_by;
        IncidentKey {
            rule,
            root: groups.contains(&GroupLabel::RootService).then_some(service),
        }
    }

    fn labels(&self, key: IncidentKey) -> Labels {
        let mut labels = Labels::new();
        if let Some(root) = key.root {
            labels.insert(
                GroupLabel::RootService.name().into(),
                self.interner.name(root).into(),
            );
        }
        labels
    }

    /// `<rule>-<labels>-<opening time>`, stable for a replay and readable in a URL or header.
    fn incident_id(&self, key: IncidentKey, at: EventTime) -> Arc<str> {
        let mut id = self.slots[key.rule as usize].name.to_string();
        if let Some(root) = key.root {
            id.push('-');
            escape_label(self.interner.name(root), &mut id);
        }
        let t = chrono::DateTime::from_timestamp_nanos(at.nanos());
        id.push_str(&t.format("-%Y%m%dT%H%M%S%.3fZ").to_string());
        id.into()
    }

    fn on_signal(&mut self, rule: u32, signal: &Signal) {
        if self.config.stage == Stage::Correlate {
            return self.export(rule, signal);
        }
        if self.yields(rule, signal) {
            self.stats.yielded += 1;
            return;
        }
        match signal {
            Signal::Suspect { service, at } => {
                self.stats.suspicions += 1;
                self.deliver(self.key(rule, *service), *at, Input::Suspect, None);
            }
            Signal::Chain(chain) => {
                self.stats.chains += 1;
                self.deliver(
                    self.key(rule, chain.root),
                    chain.last,
                    Input::Chain,
                    Some(chain),
                );
            }
        }
        self.settle();
    }

    /// Services named in the texts of a chain's templates by another service: each word
    /// of a text (letters, digits, `-`, `_`, `.`; at least four characters) that is a
    /// known service name, as `ts-basic-service` in "No instances available for
    /// ts-basic-service]". One lookup per word, however many services there are.
    fn named_services(&self, chain: &ChainSignal) -> Vec<crate::interner::ServiceId> {
        if self.config.stage == Stage::Decide {
            return self.split.named.clone();
        }
        let mut named = Vec::new();
        for (t, _) in &chain.templates {
            let Some(text) = self.templates.text(*t) else {
                continue;
            };
            let words = text
                .split(|c: char| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.')))
                .map(|w| w.trim_end_matches('.'));
            for word in words.filter(|w| w.len() >= 4) {
                if let Some(service) = self.interner.get(word) {
                    if service.0 != t.service && !named.contains(&service) {
                        named.push(service);
                    }
                }
            }
        }
        named
    }

    /// Whether `rule` gives way to a live incident of a rule it yields to that covers a
    /// service of `signal`.
    fn yields(&self, rule: u32, signal: &Signal) -> bool {
        let to = &self.slots[rule as usize].yields_to;
        if to.is_empty() {
            return false;
        }
        let services = match signal {
            Signal::Suspect { service, .. } => std::slice::from_ref(service),
            Signal::Chain(chain) => &chain.services[..],
        };
        self.registry.covers(to, services)
    }

    /// Hands `input` to the incident of `key` (opening one for a suspicion or chain).
    fn deliver(
        &mut self,
        key: IncidentKey,
        at: EventTime,
        input: Input,
        chain: Option<&ChainSignal>,
    ) {
        let opens = matches!(input, Input::Suspect | Input::Chain);
        let mut ctx = Ctx::at(at);
        let timing = self.slots[key.rule as usize].timing;
        let correlate = &self.slots[key.rule as usize].rule.correlate;
        let (min_chains, within) = (correlate.min_chains, correlate.chains_within);
        let novel: Vec<TemplateKey> = chain.map_or_else(Vec::new, |c| {
            c.templates
                .iter()
                .filter(|(t, _)| self.template_is_new(*t, at))
                .map(|(t, _)| *t)
                .collect()
        });
        let named = chain.map_or_else(Vec::new, |c| self.named_services(c));
        let mut input = input;
        let new_id =
            (opens && self.registry.get(&key).is_none()).then(|| self.incident_id(key, at));
        let id = self.registry.with(
            key,
            || new_id.map(|id| Incident::new(id, timing, at)),
            |incident| {
                let state = crate::incident::state_of(&incident.machine);
                if let Some(chain) = chain {
                    incident.absorb_chain(chain, &novel, &named);
                    // Before confirmation, below `min_chains` a chain only keeps the
                    // incident suspected (once confirmed, every chain counts).
                    let confirming =
                        matches!(state, IncidentState::Normal | IncidentState::Suspected);
                    if !incident.chains_enough(at, min_chains, within) && confirming {
                        input = Input::Suspect;
                    }
                    // A chain that ended before the restore came late (a slow input):
                    // evidence of the outage that was, not of a new failure, so it
                    // reopens nothing (a chain after the restore does).
                    if state == IncidentState::Restored
                        && crate::incident::restored_since(&incident.machine)
                            .is_some_and(|r| chain.last < r)
                    {
                        input = Input::Suspect;
                    }
                }
                if input == Input::Suspect {
                    incident.suspicions += 1;
                }
                incident.handle(input, &mut ctx);
                incident.id.clone()
            },
        );
        if let Some(id) = id {
            self.touched.insert(key);
            self.apply(key, &id, at, ctx.effects);
        }
    }

    /// A confirmation's reason with its evidence: each top template of the chains, its
    /// service, and why it is anomalous (new, or how far above its baseline).
    fn with_evidence(&self, reason: String, top: &[TemplateKey], at: EventTime) -> String {
        let evidence: Vec<String> = top
            .iter()
            .filter_map(|t| {
                let text = self.template_text(*t)?;
                let service = self.interner.name(crate::interner::ServiceId(t.service));
                let why = self
                    .template_why(*t, at)
                    .map_or(String::new(), |w| format!(" ({w})"));
                Some(format!("{service}: \"{}\"{why}", cut_middle(&text, 160)))
            })
            .collect();
        if evidence.is_empty() {
            reason
        } else {
            format!("{reason}; {}", evidence.join("; "))
        }
    }

    /// Root-cause candidates with names, best first, at most five.
    fn candidate_names(
        &self,
        ranked: &[(crate::interner::ServiceId, f64)],
    ) -> Vec<crate::registry::Candidate> {
        ranked
            .iter()
            .take(5)
            .map(|(s, score)| crate::registry::Candidate {
                service: self.interner.name(*s).to_string(),
                score: *score,
            })
            .collect()
    }

    /// Carries out a machine's effects.
    fn apply(&mut self, key: IncidentKey, id: &Arc<str>, at: EventTime, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Transition {
                    from,
                    to,
                    seq,
                    reason,
                } => {
                    self.stats.transitions += 1;
                    let (top, candidates) = self
                        .registry
                        .with(
                            key,
                            || None,
                            |i| {
                                i.confirmed |= to == IncidentState::Confirmed;
                                i.seq = seq;
                                (i.top_templates(3), i.candidates(key.root))
                            },
                        )
                        .unwrap_or_default();
                    let reason = if to == IncidentState::Confirmed {
                        self.with_evidence(reason, &top, at)
                    } else {
                        reason
                    };
                    let candidates = self.candidate_names(&candidates);
                    let reason: Arc<str> = reason.into();
                    self.records.push(Record::Transition {
                        at: at.to_rfc3339(),
                        incident: id.clone(),
                        rule: self.slots[key.rule as usize].name.clone(),
                        key: self.labels(key),
                        from,
                        to,
                        reason: reason.to_string(),
                        templates: self.template_texts(top),
                        candidates,
                    });
                    for p in self.agenda.cancel_stale(key, seq) {
                        let reason = format!(
                            "incident left {} before the action was due",
                            p.state.as_str()
                        );
                        self.cancelled(&p, at, reason);
                    }
                    if to == IncidentState::Confirmed {
                        self.confirmed(key.rule, at);
                    }
                    let transition = (seq, from, to, reason);
                    self.schedule(key, id, at, transition);
                }
                Effect::Deadline { at, generation } => self.agenda.timer(at, key, generation),
                Effect::Close => {
                    if let Some(incident) = self.registry.remove(&key) {
                        self.closed_spans
                            .push_back((incident.first_seen, incident.last_seen));
                        self.stats
                            .count_incident(crate::incident::state_of(&incident.machine));
                        self.stats.confirmed_incidents += u64::from(incident.confirmed);
                        self.note_closed(key, &incident);
                    }
                }
            }
        }
    }

    /// Queues the actions of the state just entered; with none, the state's work is done.
    fn schedule(
        &mut self,
        key: IncidentKey,
        id: &Arc<str>,
        at: EventTime,
        (seq, from, to, reason): (u32, IncidentState, IncidentState, Arc<str>),
    ) {
        let rule = &self.slots[key.rule as usize].rule;
        let actions = to
            .action_state()
            .map_or(&[][..], |s| rule.actions.for_state(s));
        for action in actions {
            self.agenda.action(PendingAction {
                due: at.plus(action.after),
                key,
                incident: id.clone(),
                seq,
                state: to,
                from,
                reason: reason.clone(),
                action: action.name.as_str().into(),
                receiver: self.receivers[action.receiver].name.as_str().into(),
                order: 0,
            });
        }
        if actions.is_empty() {
            self.inbox.push_back((key, at, Input::ActionsDone));
        }
        // Probes are run only when actions are executed; a dry run cannot know.
        if let (true, IncidentState::Recovering, Some(probe)) =
            (self.config.execute, to, &rule.incident.probe)
        {
            self.agenda.probe(at.plus(probe.interval), key, seq);
            self.registry.with(key, || None, |i| i.probe_passes = 0);
        }
    }

    /// A probe is due: ask the executor, if the incident is still recovering.
    fn probe_due(&mut self, key: IncidentKey, seq: u32) {
        let Some(incident) = self
            .registry
            .with(key, || None, |i| (i.seq == seq).then(|| i.id.clone()))
            .flatten()
        else {
            return;
        };
        // A reload may have removed the probe: then it is simply not asked again.
        let Some(probe) = self.probe(key) else {
            return;
        };
        let id = self.request_id();
        self.outbox.push(ActionRequest {
            id,
            receiver: self.receivers[probe.receiver].name.as_str().into(),
            action: "health-probe".into(),
            idempotency_key: format!("{incident}/{seq}-probe/{id}"),
            body: String::new(),
            expect_status: Some(probe.expect_status),
        });
        self.probes_in_flight.insert(id, (key, seq, incident));
    }

    /// Counts a probe result; enough passes in a row restore (as the rule says), and
    /// the next probe is scheduled while the incident is still recovering.
    fn probe_outcome(&mut self, key: IncidentKey, seq: u32, incident: Arc<str>, outcome: &Outcome) {
        let at = self.current_time();
        let passed = matches!(outcome, Outcome::Succeeded { .. });
        // A probe sent in an earlier state does not count towards this one's passes.
        let passes = self.registry.with(
            key,
            || None,
            |i| {
                (i.seq == seq).then(|| {
                    i.probe_passes = if passed { i.probe_passes + 1 } else { 0 };
                    i.probe_passes
                })
            },
        );
        let Some(Some(passes)) = passes else {
            return;
        };
        self.records.push(Record::Probe {
            at: at.to_rfc3339(),
            incident,
            rule: self.slots[key.rule as usize].name.clone(),
            passed,
            consecutive: passes,
            detail: outcome.detail(),
        });
        let Some(probe) = self.probe(key) else {
            return;
        };
        if passes >= probe.passes {
            self.inbox.push_back((key, at, Input::ProbePassed));
            self.settle();
        }
        let still = self.registry.with(key, || None, |i| i.seq == seq) == Some(true);
        if still && !matches!(outcome, Outcome::NotConfigured { .. }) {
            self.agenda.probe(at.plus(probe.interval), key, seq);
        }
    }

    /// The health probe of an incident's rule, if it (still) has one.
    fn probe(&self, key: IncidentKey) -> Option<logheal_rules::HealthProbe> {
        self.slots[key.rule as usize].rule.incident.probe
    }

    /// A fresh id for a request to the executor.
    fn request_id(&mut self) -> u64 {
        self.next_request += 1;
        self.next_request
    }

    /// The event time now: the latest of what happened and what was read.
    fn current_time(&self) -> EventTime {
        self.now.max(self.clock.time()).max(self.split.time)
    }

    fn action_record(&self, p: &PendingAction, at: EventTime) -> ActionRecord {
        ActionRecord {
            at: at.to_rfc3339(),
            incident: p.incident.clone(),
            rule: self.slots[p.key.rule as usize].name.clone(),
            state: p.state,
            action: p.action.to_string(),
            receiver: p.receiver.to_string(),
            idempotency_key: format!(
                "{}/{}-{}/{}",
                p.incident,
                p.seq,
                p.state.as_str().to_ascii_lowercase(),
                p.action
            ),
            dry_run: !self.config.execute,
        }
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

    /// Why a due action must not be called, if it must not: the brake is on, or (for a
    /// webhook) its rule's budget for this incident key is spent. Otherwise the call
    /// is counted against the budget.
    fn withheld(&mut self, p: &PendingAction) -> Option<String> {
        self.release_brake(p.due);
        if let Some(since) = self.braked_since {
            return Some(format!(
                "brake: more than {} incidents confirmed within {} (on since {}); every \
                 action waits for humans",
                self.config.brake.max_confirmed,
                crate::incident::humanize(self.config.brake.window),
                since.to_rfc3339()
            ));
        }
        if self.receiver_kind(&p.receiver) != ReceiverKind::Webhook {
            return None;
        }
        let budget = self.slots[p.key.rule as usize].rule.incident.budget;
        let calls = self
            .budget_used
            .entry((p.key, p.action.clone()))
            .or_default();
        while calls
            .front()
            .is_some_and(|t| *t <= p.due.minus(budget.period))
        {
            calls.pop_front();
        }
        if calls.len() >= budget.actions as usize {
            return Some(format!(
                "remediation budget: {:?} already called {} time(s) for this incident key \
                 within {} (the rule's budget); humans decide",
                p.action,
                calls.len(),
                crate::incident::humanize(budget.period)
            ));
        }
        calls.push_back(p.due);
        if self.budget_used.len() > BUDGET_KEYS_PRUNE_AT {
            let horizon = p.due;
            let slots = &self.slots;
            self.budget_used.retain(|(key, _), calls| {
                let period = slots[key.rule as usize].rule.incident.budget.period;
                calls.back().is_some_and(|t| *t > horizon.minus(period))
            });
        }
        None
    }

    /// Cancels a withheld action with its record; a withheld recovery step hands the
    /// incident to humans, a withheld notification just does not go out.
    fn withhold(&mut self, p: PendingAction, why: String) {
        self.stats.actions_withheld += 1;
        let notification = self.receiver_kind(&p.receiver) == ReceiverKind::Slack;
        self.cancelled(&p, p.due, why);
        let current = self.registry.with(p.key, || None, |i| i.seq) == Some(p.seq);
        if !current {
            return;
        }
        if notification || p.state == IncidentState::Escalated {
            if !self.agenda.has_pending(p.key, p.seq) {
                self.check_state_done(p.key, p.seq, p.due);
            }
        } else {
            self.inbox.push_back((p.key, p.due, Input::ActionWithheld));
        }
    }

    fn receiver_kind(&self, name: &str) -> ReceiverKind {
        self.receivers
            .iter()
            .find(|r| *r.name == *name)
            .map_or(ReceiverKind::Webhook, |r| r.kind)
    }

    /// Counts a confirmation; past the brake's threshold the brake goes on, once,
    /// with a record and one Slack message.
    fn confirmed(&mut self, rule: u32, at: EventTime) {
        let brake = self.config.brake;
        if brake.max_confirmed == 0 {
            return;
        }
        self.confirmations.push_back(at);
        self.release_brake(at);
        if self.braked_since.is_some() || self.confirmations.len() <= brake.max_confirmed as usize {
            return;
        }
        self.braked_since = Some(at);
        self.stats.brakes += 1;
        let detail = format!(
            "{} incidents confirmed within {}: every automated action and incident \
             notification is withheld, and the incidents go to humans, until no more than \
             {} are confirmed within {}",
            self.confirmations.len(),
            crate::incident::humanize(brake.window),
            brake.max_confirmed,
            crate::incident::humanize(brake.window),
        );
        self.records.push(Record::Limit {
            at: at.to_rfc3339(),
            limit: "brake",
            detail: detail.clone(),
        });
        let rule = &self.slots[rule as usize].rule;
        let slack = ActionState::ALL
            .iter()
            .flat_map(|s| rule.actions.for_state(*s))
            .map(|a| &self.receivers[a.receiver])
            .find(|r| r.kind == ReceiverKind::Slack)
            .map(|r| r.name.clone());
        if let (Some(receiver), true) = (slack, self.config.execute) {
            let id = self.request_id();
            self.outbox.push(ActionRequest {
                id,
                receiver: receiver.as_str().into(),
                action: "brake".into(),
                idempotency_key: format!("brake-{}", at.to_rfc3339()),
                body: payload::slack_notice(&format!(
                    ":octagonal_sign: logheal brake on: {detail}"
                )),
                expect_status: None,
            });
        }
    }

    /// Drops confirmations older than the brake's window as of `at`; the brake goes off
    /// when no more than its threshold remain.
    fn release_brake(&mut self, at: EventTime) {
        let brake = self.config.brake;
        while self
            .confirmations
            .front()
            .is_some_and(|t| *t <= at.minus(brake.window))
        {
            self.confirmations.pop_front();
        }
        if let Some(since) = self.braked_since {
            if self.confirmations.len() <= brake.max_confirmed as usize {
                self.braked_since = None;
                self.records.push(Record::Limit {
                    at: at.to_rfc3339(),
                    limit: "brake",
                    detail: format!(
                        "released: on since {}, now {} confirmed within {}",
                        since.to_rfc3339(),
                        self.confirmations.len(),
                        crate::incident::humanize(brake.window)
                    ),
                });
            }
        }
    }

    fn settle(&mut self) {
        while let Some((key, at, input)) = self.inbox.pop_front() {
            self.deliver(key, at, input, None);
        }
    }
}

/// `text` cut to about `max` characters by leaving out its middle ("…"): the end of a
/// long error often says what failed (`nested exception is …: No instances available
/// for ts-basic-service`), the start where.
fn cut_middle(text: &str, max: usize) -> String {
    let chars = text.chars().count();
    if chars <= max {
        return text.to_string();
    }
    let head: String = text.chars().take(max / 2).collect();
    let tail: String = text.chars().skip(chars - max / 2).collect();
    format!("{head}…{tail}")
}

/// Appends `value` with every byte outside `[A-Za-z0-9._-]` percent-encoded (`%` too):
/// readable in a URL or header, and injective, so distinct names never share an id.
fn escape_label(value: &str, out: &mut String) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// A continuation line of a multi-line record (a Java or Python stack trace) that a
/// shipper delivered on its own: `\tat com.x.Y(Y.java:22)`, `Caused by: …`, `... 12 more`,
/// `  File "x.py", line 3, in f`. It carries no level, trace id or status of its own.
fn is_continuation(e: &logheal_parsers::LogEvent<'_>) -> bool {
    e.level == logheal_parsers::Level::Unknown
        && e.trace_id.is_none()
        && e.status.is_none()
        && is_continuation_text(&e.message)
}

fn is_continuation_text(m: &str) -> bool {
    let t = m.trim_start();
    let indented = t.len() < m.len();
    (t.starts_with("at ") && t.contains('(') && (indented || t.contains(".java:")))
        || t.starts_with("Caused by: ")
        || t.starts_with("Suppressed: ")
        || (t.starts_with("... ") && t.trim_end().ends_with(" more"))
        || (indented && t.starts_with("File \"") && t.contains("\", line "))
}

/// Whether an event with `template` and anomaly `flags` meets a rule's model conditions.
/// Template and family globs are evaluated once per template and cached.
fn model_match(
    conditions: &ModelConditions,
    cache: &mut FxHashMap<TemplateKey, bool>,
    templates: &ServiceTemplates,
    families: &Families,
    template: TemplateKey,
    flags: Flags,
) -> bool {
    let signalled = conditions.anomaly.iter().any(|a| match a {
        AnomalyKind::NewTemplate => flags.new_template,
        AnomalyKind::RateSpike => flags.rate_spike,
    });
    if !conditions.anomaly.is_empty() && !signalled {
        return false;
    }
    if conditions.template.is_none() && conditions.family.is_none() {
        return true;
    }
    *cache.entry(template).or_insert_with(|| {
        let matches = |glob: &globset::GlobMatcher, t: TemplateKey| {
            templates.text(t).is_some_and(|text| glob.is_match(&text))
        };
        let by_template = conditions
            .template
            .as_ref()
            .is_none_or(|g| matches(g, template));
        // Before the first refit a template is its own family.
        let by_family =
            conditions
                .family
                .as_ref()
                .is_none_or(|g| match families.family(template) {
                    Some(f) => families.members(f).iter().any(|m| matches(g, *m)),
                    None => matches(g, template),
                });
        by_template && by_family
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_lose_their_middle() {
        assert_eq!(cut_middle("short", 10), "short");
        let long = format!("start {} the end", "x".repeat(100));
        let cut = cut_middle(&long, 20);
        assert!(
            cut.starts_with("start ") && cut.ends_with(" the end"),
            "{cut}"
        );
        assert_eq!(cut.chars().count(), 21);
    }

    #[test]
    fn a_service_named_in_another_service_error_is_a_candidate() {
        let mut engine = Engine::new(logheal_rules::builtin(), &EngineConfig::default()).unwrap();
        let line = |ms: u32, service: &str, msg: &str| {
            format!(
                r#"{{"ts":"2026-03-14T10:00:00.{ms:03}Z","service":"{service}","trace_id":"t1","status":503,"msg":"{msg}"}}"#
            )
        };
        for l in [
            line(1, "ledger-db", "slow query"),
            line(2, "checkout", "call to ledger-db failed: connection reset"),
            line(3, "gateway", "checkout returned 503"),
        ] {
            engine.push_line(l.as_bytes());
        }
        let confirmed = engine
            .take_records()
            .find_map(|r| match r {
                Record::Transition {
                    to: IncidentState::Confirmed,
                    candidates,
                    ..
                } => Some(candidates),
                _ => None,
            })
            .expect("the cascade confirms");
        let names: Vec<&str> = confirmed.iter().map(|c| c.service.as_str()).collect();
        assert_eq!(names, ["ledger-db", "checkout", "gateway"]);
        // ledger-db: first to fail (2 + 1) and named by checkout (2); checkout: named by
        // gateway (2) and failed (1); gateway: failed (1).
        let scores: Vec<f64> = confirmed.iter().map(|c| c.score).collect();
        assert_eq!(scores, [5.0, 3.0, 1.0]);
    }

    #[test]
    fn a_rule_keeps_its_slot_across_reloads_and_a_removed_one_is_retired() {
        let builtin = logheal_rules::builtin();
        let names: Vec<String> = builtin.rules.iter().map(|r| r.name.clone()).collect();
        let mut engine = Engine::new(builtin.clone(), &EngineConfig::default()).unwrap();
        cascade(&mut engine, "payment");
        let selected = |e: &Engine| -> Vec<(String, u64)> {
            e.selected_by_rule()
                .into_iter()
                .map(|(n, c)| (n.to_string(), c))
                .collect()
        };
        let before = selected(&engine);
        assert!(before.iter().any(|(_, n)| *n > 0), "{before:?}");
        // Without the first rule: it is retired in its slot, the others keep theirs.
        let mut without = builtin.clone();
        let first = without.rules.remove(0);
        let summary = engine.reload(without).unwrap();
        assert_eq!(
            (summary.kept, summary.removed, summary.added),
            (names.len() - 1, 1, 0)
        );
        assert_eq!(engine.slots.len(), names.len());
        assert!(engine.slots[0].retired && *engine.slots[0].name == *first.name);
        assert_eq!(selected(&engine), before[1..]);
        // Back again: the same slot, running, with its count.
        let summary = engine.reload(builtin).unwrap();
        assert_eq!((summary.kept, summary.added), (names.len() - 1, 1));
        assert_eq!(engine.slots.len(), names.len());
        assert!(!engine.slots[0].retired);
        assert_eq!(selected(&engine), before);
    }

    fn cascade(engine: &mut Engine, root: &str) {
        let line = |ms: u32, service: &str| {
            format!(
                r#"{{"ts":"2026-03-14T10:00:00.{ms:03}Z","service":"{service}","trace_id":"t-{root}","status":503,"msg":"upstream failed"}}"#
            )
        };
        for l in [line(1, root), line(2, "checkout"), line(3, "gateway")] {
            engine.push_line(l.as_bytes());
        }
    }

    #[test]
    fn a_record_without_a_time_takes_its_transport_stamp_and_one_with_a_time_keeps_it() {
        let mut engine = Engine::new(logheal_rules::builtin(), &EngineConfig::default()).unwrap();
        // As Fluentd's Kafka output writes by default: no time key, the app's line inside.
        let untimed = |service: &str| {
            format!(
                r#"{{"log":"ERROR call failed trace_id=4bf92f3577b34da6a3ce929d0e0e4736 status=503","kubernetes":{{"labels":{{"app":"{service}"}}}}}}"#
            )
        };
        let stamp = EventTime::from_millis(1_773_482_400_000); // 2026-03-14T10:00:00Z
        engine.push_line(untimed("payment").as_bytes());
        assert_eq!(engine.stats().skipped(SkipReason::MissingTimestamp), 1);
        assert_eq!(engine.admitted(), None);
        engine.push_stamped(0, untimed("payment").as_bytes(), Some(stamp));
        assert_eq!(engine.admitted(), Some(stamp));
        assert_eq!(engine.stats().transport_timed, 1);
        let later = EventTime::from_millis(1_773_482_401_000);
        engine.push_stamped(0, untimed("checkout").as_bytes(), Some(later));
        assert_eq!(engine.admitted(), Some(later));
        // Its own time wins over the stamp.
        let own =
            r#"{"ts":"2026-03-14T10:00:01.500Z","service":"gateway","level":"error","msg":"x"}"#;
        engine.push_stamped(
            0,
            own.as_bytes(),
            Some(later.plus(Duration::from_secs(3600))),
        );
        assert_eq!(
            engine.admitted(),
            Some(EventTime(later.nanos() + 500_000_000))
        );
        assert_eq!(engine.stats().transport_timed, 2);
        assert_eq!(engine.stats().parsed, 4);
        // Every record of an OTLP batch that names no time takes the message's stamp.
        let batch = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"cart"}}]},"scopeLogs":[{"logRecords":[{"severityText":"ERROR","body":{"stringValue":"a"}},{"severityText":"ERROR","body":{"stringValue":"b"}},{"timeUnixNano":"1773482402500000000","body":{"stringValue":"c"}}]}]}]}"#;
        let third = later.plus(Duration::from_secs(1));
        engine.push_stamped(0, batch.as_bytes(), Some(third));
        assert_eq!(engine.stats().batched, 3);
        assert_eq!(engine.stats().parsed, 7);
        assert_eq!(engine.stats().transport_timed, 4);
        assert_eq!(
            engine.admitted(),
            Some(EventTime::from_millis(1_773_482_402_500))
        );
    }

    fn silence_of(matcher: &str) -> Silence {
        Silence {
            id: "s1".into(),
            matchers: vec![crate::silence::Matcher::parse(matcher).unwrap()],
            starts_at: 0,
            ends_at: 1,
            comment: "db migration".into(),
            created_by: String::new(),
        }
        .validated()
        .unwrap()
    }

    #[test]
    fn a_silenced_incident_moves_on_and_calls_nothing() {
        let mut engine = Engine::new(logheal_rules::builtin(), &EngineConfig::default()).unwrap();
        engine.set_silences(vec![silence_of("root_service=ledger-db")]);
        cascade(&mut engine, "ledger-db");
        engine.finish();
        let records: Vec<Record> = engine.take_records().collect();
        let states: Vec<IncidentState> = records
            .iter()
            .filter_map(|r| match r {
                Record::Transition { to, .. } => Some(*to),
                _ => None,
            })
            .collect();
        assert!(states.contains(&IncidentState::Confirmed), "{states:?}");
        assert_eq!(states.last(), Some(&IncidentState::Restored), "{states:?}");
        assert!(!records.iter().any(|r| matches!(r, Record::Action(_))));
        let silenced = records
            .iter()
            .filter(|r| matches!(r, Record::ActionResult { outcome: "silenced", detail, .. } if detail.contains("db migration")))
            .count();
        assert!(silenced >= 1, "{records:?}");
        assert_eq!(engine.stats().actions_silenced, silenced as u64);
    }

    #[test]
    fn a_silence_of_another_service_changes_nothing() {
        let mut engine = Engine::new(logheal_rules::builtin(), &EngineConfig::default()).unwrap();
        engine.set_silences(vec![silence_of("root_service=~pay.*")]);
        cascade(&mut engine, "ledger-db");
        engine.finish();
        let records: Vec<Record> = engine.take_records().collect();
        assert!(records.iter().any(|r| matches!(r, Record::Action(_))));
        assert_eq!(engine.stats().actions_silenced, 0);
    }

    #[test]
    fn changes_give_touched_incidents_then_closed_ones() {
        let mut engine = Engine::new(logheal_rules::builtin(), &EngineConfig::default()).unwrap();
        cascade(&mut engine, "ledger-db");
        let changes = engine.take_changes();
        assert_eq!(changes.live.len(), 1);
        let live = &changes.live[0];
        // Dry run: the confirmation's actions count as done at once.
        assert_eq!(live.state, IncidentState::Recovering);
        assert_eq!(live.sample_trace_ids, ["t-ledger-db"]);
        assert_eq!(live.root_candidates[0].service, "ledger-db");
        // Nothing happened since: nothing to refresh.
        let again = engine.take_changes();
        assert!(again.live.is_empty() && again.closed.is_empty());
        engine.finish();
        let changes = engine.take_changes();
        assert_eq!(changes.closed.len(), 1);
        assert_eq!(changes.closed[0].id, live.id);
        assert_eq!(changes.closed[0].state, IncidentState::Restored);
    }

    #[test]
    fn label_escapes_are_distinct() {
        let esc = |v: &str| {
            let mut out = String::new();
            escape_label(v, &mut out);
            out
        };
        assert_eq!(esc("pay ment"), "pay%20ment");
        assert_eq!(esc("pay/ment"), "pay%2Fment");
        assert_eq!(esc("pay_ment"), "pay_ment");
        assert_eq!(esc("100%"), "100%25");
    }
}
