//! Correlate: one record's way to signals. The line is read (OTLP batches split, bad
//! UTF-8 repaired), parsed, admitted by the clock, its template mined and flagged by the
//! anomaly baselines, offered to each rule's selector and correlator; the signals they
//! raise go to `on_signal` (decided here, or exported when the stages run apart). Also
//! the models' upkeep: family refits and the rules' template and family match caches.

use super::Engine;
use crate::clock::{Admission, SourceId};
use crate::correlator::TraceEvent;
use crate::record::Record;
use crate::stats::SkipReason;
use logheal_models::{Families, Flags, ServiceTemplates, TemplateKey};
use logheal_parsers::{EventTime, ParseError};
use logheal_rules::{AnomalyKind, CorrelationKey, ModelConditions};
use rustc_hash::FxHashMap;
use std::borrow::Cow;

/// New templates placed into families per refit during a run (each costs at most a few
/// thousand sparse products, see `families.rs`).
const FAMILY_PLACEMENTS_PER_REFIT: usize = 4096;

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

impl Engine {
    /// Parses and admits one line (`released`: it was held before), then mines,
    /// selects and correlates it; `stamp` is its event time when it names none.
    pub(super) fn process(
        &mut self,
        partition: u32,
        line: &[u8],
        released: bool,
        stamp: Option<EventTime>,
    ) {
        // Validated with SIMD (`std`'s check was 2.3 % of a flat-JSON replay); the
        // details of an error are not needed, the line is repaired either way.
        let text = match simdutf8::basic::from_utf8(line) {
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
            // (key, shown): a trace id is matched by its lower 64 bits and shown whole.
            fn same(k: Option<&str>) -> Option<(&str, &str)> {
                k.map(|k| (k, k))
            }
            let keyed = match rule.correlate.key {
                CorrelationKey::TraceId => match event.trace_id.as_deref() {
                    Some(t) => Some((logheal_parsers::trace_match_part(t), t)),
                    None => same(event.request_id.as_deref()),
                },
                CorrelationKey::RequestId => same(event.request_id.as_deref()),
                CorrelationKey::Service => same(event.service.as_deref()),
                CorrelationKey::Field(i) => same(event.extra(i)),
            };
            let (Some(_), Some((key, shown))) = (event.service.as_deref(), keyed) else {
                self.stats.unkeyed += 1;
                continue;
            };
            let selected = TraceEvent {
                at: ts,
                service,
                template,
                anomalous: flags.new_template || flags.rate_spike,
            };
            slot.correlator
                .observe(key, shown, selected, &mut self.signals);
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
    pub(super) fn expire_windows(&mut self) {
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
    pub(super) fn refit_families(&mut self) {
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
    pub(super) fn selects_by_family(&self) -> bool {
        self.slots
            .iter()
            .any(|s| !s.retired && s.rule.select.models.family.is_some())
    }

    /// The families of every template, fitted now (end of input, the summary).
    pub(super) fn fit_families(&mut self) {
        self.families.refresh(&self.templates.texts());
        self.clear_model_matches();
    }
}
