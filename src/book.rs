//! The incident book: what the operator's view (`/incidents`, `/api/v1/incidents`, the
//! `incidents` command) shows of each incident, and the recovery SLIs measured on the
//! way. Built at the edge from the records the job prints and the engine's
//! `take_changes`, so the engine stays unaware of it.
//!
//! A Kafka consumer that restarts rebuilds its incidents by re-reading records, and so
//! re-prints their records: the book takes a record it already holds (the same step of
//! the same incident) as a repeat, so neither the page nor the SLIs count it twice.
//! Recent history therefore survives a restart as far as incidents do.
//!
//! Bounds: open incidents (`MAX_OPEN`, least recently seen dropped first), closed ones
//! (`history`), and per incident its steps, actions and attempts.

use crate::metrics::Metrics;
use logheal_pipeline::incident::IncidentState;
use logheal_pipeline::payload::Counts;
use logheal_pipeline::record::{ActionRecord, Labels};
use logheal_pipeline::registry::Candidate;
use logheal_pipeline::silence::Silence;
use logheal_pipeline::{Changes, IncidentSnapshot, Record};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Open incidents shown at most; past it the one seen longest ago is dropped.
const MAX_OPEN: usize = 1000;
/// Per incident: transitions, actions and attempts per action kept.
const MAX_STEPS: usize = 200;
const MAX_ACTIONS: usize = 200;
const MAX_ATTEMPTS: usize = 10;
/// Closed incidents kept when the job's config says nothing.
pub const DEFAULT_HISTORY: usize = 100;

/// One incident as the operator's view shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    pub id: Arc<str>,
    pub rule: Arc<str>,
    pub key: Labels,
    pub state: IncidentState,
    /// Still live in the engine.
    pub open: bool,
    pub first_seen: String,
    pub last_seen: String,
    pub counts: Counts,
    pub services: Vec<String>,
    pub root_candidates: Vec<Candidate>,
    pub sample_trace_ids: Vec<String>,
    pub top_templates: Vec<String>,
    pub timeline: Vec<Step>,
    /// Steps left out past `MAX_STEPS` (the first ones are kept).
    pub steps_dropped: u32,
    pub actions: Vec<Action>,
    /// The latest health probe's result while recovering.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_probe: Option<String>,
    /// Set when shown: the silence that covers it now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub silenced_by: Option<String>,
    /// For the SLIs: when (wall time) it was confirmed here, and whether a receiver
    /// has answered 2xx since.
    #[serde(skip)]
    confirmed_wall: Option<Instant>,
    #[serde(skip)]
    acted: bool,
}

/// A transition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub at: String,
    pub from: IncidentState,
    pub to: IncidentState,
    pub reason: String,
}

/// An action: when it came due, its attempts and how it ended.
#[derive(Debug, Clone, Serialize)]
pub struct Action {
    pub idempotency_key: String,
    pub action: String,
    pub receiver: String,
    /// The state whose action it is.
    pub state: IncidentState,
    /// Event time it came due.
    pub at: String,
    pub dry_run: bool,
    pub attempts: Vec<AttemptEntry>,
    /// `succeeded`, `rejected`, `gave_up`, `circuit_open`, `not_configured`,
    /// `silenced`, `cancelled`; none while in flight.
    pub outcome: Option<String>,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptEntry {
    /// Wall time of the attempt.
    pub at: String,
    pub attempt: u32,
    pub status: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
}

impl Page {
    fn new(id: Arc<str>, rule: Arc<str>, key: Labels, at: &str) -> Page {
        Page {
            id,
            rule,
            key,
            state: IncidentState::Normal,
            open: true,
            first_seen: at.to_string(),
            last_seen: at.to_string(),
            counts: Counts::default(),
            services: Vec::new(),
            root_candidates: Vec::new(),
            sample_trace_ids: Vec::new(),
            top_templates: Vec::new(),
            timeline: Vec::new(),
            steps_dropped: 0,
            actions: Vec::new(),
            last_probe: None,
            silenced_by: None,
            confirmed_wall: None,
            acted: false,
        }
    }

    fn take_snapshot(&mut self, s: IncidentSnapshot) {
        self.state = s.state;
        self.first_seen = s.first_seen;
        self.last_seen = s.last_seen;
        self.counts = s.counts;
        self.services = s.services;
        self.root_candidates = s.root_candidates;
        self.sample_trace_ids = s.sample_trace_ids;
        self.top_templates = s.top_templates;
        self.key = s.key;
    }

    fn action(&mut self, record: &ActionRecord) -> Option<&mut Action> {
        let i = match self
            .actions
            .iter()
            .position(|a| a.idempotency_key == record.idempotency_key)
        {
            Some(i) => i,
            None if self.actions.len() < MAX_ACTIONS => {
                self.actions.push(Action {
                    idempotency_key: record.idempotency_key.clone(),
                    action: record.action.clone(),
                    receiver: record.receiver.clone(),
                    state: record.state,
                    at: record.at.clone(),
                    dry_run: record.dry_run,
                    attempts: Vec::new(),
                    outcome: None,
                    detail: String::new(),
                });
                self.actions.len() - 1
            }
            None => return None,
        };
        Some(&mut self.actions[i])
    }

    /// Whether this incident's labels match `silence`.
    pub fn matches(&self, silence: &Silence) -> bool {
        silence.matches(|name| match name {
            "rule" => Some(&*self.rule),
            "incident" => Some(&*self.id),
            other => self.key.get(other).and_then(|v| v.as_str()),
        })
    }
}

#[derive(Default)]
struct Pages {
    open: HashMap<Arc<str>, Page>,
    /// Newest first.
    closed: VecDeque<Page>,
    dropped: u64,
}

impl Pages {
    fn find(&mut self, id: &str) -> Option<&mut Page> {
        if self.open.contains_key(id) {
            return self.open.get_mut(id);
        }
        self.closed.iter_mut().find(|p| &*p.id == id)
    }
}

/// The book, shared between the job's loop (which writes) and the HTTP endpoints
/// (which read). Locked per record and per refresh, never per line.
#[derive(Clone)]
pub struct Book {
    pages: Arc<Mutex<Pages>>,
    history: usize,
    metrics: Option<Metrics>,
}

impl Book {
    pub fn new(history: usize, metrics: Option<Metrics>) -> Book {
        Book {
            pages: Arc::default(),
            history,
            metrics,
        }
    }

    /// Takes in one record the job printed.
    pub fn note(&self, record: &Record) {
        let mut pages = self.pages.lock().expect("not poisoned");
        match record {
            Record::Transition {
                at,
                incident,
                rule,
                key,
                from,
                to,
                reason,
                templates,
                candidates,
            } => {
                if pages.find(incident).is_none() {
                    if pages.open.len() >= MAX_OPEN {
                        drop_stalest(&mut pages);
                    }
                    let page = Page::new(incident.clone(), rule.clone(), key.clone(), at);
                    pages.open.insert(incident.clone(), page);
                }
                let page = pages.find(incident).expect("just made");
                let step = Step {
                    at: at.clone(),
                    from: *from,
                    to: *to,
                    reason: reason.clone(),
                };
                if page
                    .timeline
                    .iter()
                    .any(|s| s.at == step.at && s.to == step.to && s.from == step.from)
                {
                    return; // a repeat after a rebuild
                }
                if page.timeline.len() < MAX_STEPS {
                    page.timeline.push(step);
                } else {
                    page.steps_dropped += 1;
                }
                page.state = *to;
                page.last_seen = page.last_seen.clone().max(at.clone());
                if !templates.is_empty() {
                    page.top_templates = templates.clone();
                }
                if !candidates.is_empty() {
                    page.root_candidates = candidates.clone();
                }
                if let Some(m) = &self.metrics {
                    self.measure_transition(m, page, at, *to);
                }
            }
            Record::Action(action) => {
                if let Some(page) = pages.find(&action.incident) {
                    page.action(action);
                }
            }
            Record::ActionCancelled { action, reason } => {
                if let Some(entry) = pages.find(&action.incident).and_then(|p| p.action(action)) {
                    if entry.outcome.is_none() {
                        entry.outcome = Some("cancelled".into());
                        entry.detail = reason.clone();
                        if let Some(m) = &self.metrics {
                            m.action_ended(&action.rule, "cancelled");
                        }
                    }
                }
            }
            Record::ActionResult {
                action,
                outcome,
                detail,
                ..
            } => {
                if let Some(entry) = pages.find(&action.incident).and_then(|p| p.action(action)) {
                    if entry.outcome.as_deref() != Some(outcome) {
                        entry.outcome = Some(outcome.to_string());
                        entry.detail = detail.clone();
                        if let Some(m) = &self.metrics {
                            m.action_ended(&action.rule, outcome);
                        }
                    }
                }
            }
            Record::Attempt {
                action,
                attempt,
                status,
                latency_ms,
                error,
            } => {
                let Some(page) = pages.find(&action.incident) else {
                    return;
                };
                let ok = status.is_some_and(|s| (200..300).contains(&s));
                if ok && !page.acted {
                    if let (Some(confirmed), Some(m)) = (page.confirmed_wall, &self.metrics) {
                        page.acted = true;
                        m.time_to_act(&page.rule, confirmed.elapsed().as_secs_f64());
                    }
                }
                if let Some(entry) = page.action(action) {
                    if entry.attempts.len() < MAX_ATTEMPTS {
                        entry.attempts.push(AttemptEntry {
                            at: action.at.clone(),
                            attempt: *attempt,
                            status: *status,
                            latency_ms: *latency_ms,
                            error: error.clone(),
                        });
                    }
                }
            }
            Record::Probe {
                incident,
                passed,
                consecutive,
                detail,
                at,
                ..
            } => {
                if let Some(page) = pages.find(incident) {
                    let result = if *passed { "passed" } else { "failed" };
                    page.last_probe =
                        Some(format!("{at}: {result} ({consecutive} in a row): {detail}"));
                }
            }
            Record::IncidentClosed {
                incident, state, ..
            } => {
                // The snapshot of the closing comes with `refresh`; the state is known now.
                if let Some(page) = pages.find(incident) {
                    page.state = *state;
                }
            }
            Record::Limit { .. } => {}
        }
    }

    fn measure_transition(&self, m: &Metrics, page: &mut Page, at: &str, to: IncidentState) {
        let since = |earlier: &str| seconds_between(earlier, at);
        match to {
            IncidentState::Confirmed if page.confirmed_wall.is_none() => {
                page.confirmed_wall = Some(Instant::now());
                if let Some(s) = page.timeline.first().and_then(|first| since(&first.at)) {
                    m.time_to_detect(&page.rule, s);
                }
            }
            IncidentState::Restored => {
                let confirmed = page
                    .timeline
                    .iter()
                    .rev()
                    .find(|s| s.to == IncidentState::Confirmed);
                if let Some(s) = confirmed.and_then(|c| since(&c.at)) {
                    m.time_to_restore(&page.rule, s);
                }
            }
            IncidentState::Escalated => m.escalated(&page.rule),
            _ => {}
        }
    }

    /// Takes in what changed in the engine: live incidents as they are now, closed
    /// ones as they ended (moved to the history).
    pub fn refresh(&self, changes: Changes) {
        if changes.live.is_empty() && changes.closed.is_empty() {
            return;
        }
        let mut pages = self.pages.lock().expect("not poisoned");
        for snapshot in changes.live {
            if let Some(page) = pages.find(&snapshot.id) {
                page.take_snapshot(snapshot);
            }
        }
        for snapshot in changes.closed {
            let Some(mut page) = pages.open.remove(&snapshot.id) else {
                continue; // closed before (a repeat after a rebuild), or never shown
            };
            page.take_snapshot(snapshot);
            page.open = false;
            if let Some(m) = &self.metrics {
                m.incident_closed(&page.rule, page.state.as_str());
            }
            pages.closed.push_front(page);
            while pages.closed.len() > self.history {
                pages.closed.pop_back();
            }
        }
    }

    /// Open incidents (most recently seen first), then closed ones (newest first),
    /// each marked with the silence that covers it.
    pub fn list(&self, silences: &[Silence]) -> Vec<Page> {
        let pages = self.pages.lock().expect("not poisoned");
        let mut open: Vec<Page> = pages.open.values().cloned().collect();
        open.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then(a.id.cmp(&b.id)));
        let mut all: Vec<Page> = open
            .into_iter()
            .chain(pages.closed.iter().cloned())
            .collect();
        for page in &mut all {
            mark(page, silences);
        }
        all
    }

    pub fn get(&self, id: &str, silences: &[Silence]) -> Option<Page> {
        let mut pages = self.pages.lock().expect("not poisoned");
        let mut page = pages.find(id)?.clone();
        mark(&mut page, silences);
        Some(page)
    }

    /// Open incidents dropped for the bound.
    pub fn dropped(&self) -> u64 {
        self.pages.lock().expect("not poisoned").dropped
    }
}

fn mark(page: &mut Page, silences: &[Silence]) {
    page.silenced_by = silences
        .iter()
        .find(|s| page.matches(s))
        .map(|s| s.id.clone());
}

fn drop_stalest(pages: &mut Pages) {
    let stalest = pages
        .open
        .values()
        .min_by(|a, b| a.last_seen.cmp(&b.last_seen))
        .map(|p| p.id.clone());
    if let Some(id) = stalest {
        pages.open.remove(&id);
        pages.dropped += 1;
    }
}

/// Seconds from one RFC 3339 time to a later one.
fn seconds_between(earlier: &str, later: &str) -> Option<f64> {
    let a = chrono::DateTime::parse_from_rfc3339(earlier).ok()?;
    let b = chrono::DateTime::parse_from_rfc3339(later).ok()?;
    let nanos = (b - a).num_nanoseconds()?;
    (nanos >= 0).then(|| nanos as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transition(at: &str, from: IncidentState, to: IncidentState) -> Record {
        Record::Transition {
            at: at.into(),
            incident: "r-payment-1".into(),
            rule: "r".into(),
            key: serde_json::from_str(r#"{"root_service":"payment"}"#).unwrap(),
            from,
            to,
            reason: "why".into(),
            templates: vec![],
            candidates: vec![],
        }
    }

    fn action(outcome: Option<&'static str>) -> Record {
        let action = ActionRecord {
            at: "2026-01-01T00:00:05Z".into(),
            incident: "r-payment-1".into(),
            rule: "r".into(),
            state: IncidentState::Confirmed,
            action: "restart".into(),
            receiver: "k8s".into(),
            idempotency_key: "r-payment-1/2-confirmed/restart".into(),
            dry_run: false,
        };
        match outcome {
            None => Record::Action(action),
            Some(outcome) => Record::ActionResult {
                action,
                outcome,
                attempts: 1,
                detail: "200".into(),
            },
        }
    }

    #[test]
    fn records_build_the_page_and_repeats_are_ignored() {
        use IncidentState::*;
        let book = Book::new(10, None);
        let records = [
            transition("2026-01-01T00:00:00Z", Normal, Suspected),
            transition("2026-01-01T00:00:05Z", Suspected, Confirmed),
            action(None),
            action(Some("succeeded")),
        ];
        // A rebuilt consumer prints the same records again.
        for r in records.iter().chain(records.iter()) {
            book.note(r);
        }
        let page = book.get("r-payment-1", &[]).unwrap();
        assert_eq!(page.timeline.len(), 2);
        assert_eq!(page.state, Confirmed);
        assert_eq!(page.actions.len(), 1);
        assert_eq!(page.actions[0].outcome.as_deref(), Some("succeeded"));
    }

    #[test]
    fn closed_incidents_move_to_a_bounded_history() {
        let book = Book::new(2, None);
        for i in 0..3 {
            let id: Arc<str> = format!("r-{i}").into();
            book.note(&Record::Transition {
                at: "2026-01-01T00:00:00Z".into(),
                incident: id.clone(),
                rule: "r".into(),
                key: Labels::new(),
                from: IncidentState::Normal,
                to: IncidentState::Suspected,
                reason: String::new(),
                templates: vec![],
                candidates: vec![],
            });
            book.refresh(Changes {
                live: vec![],
                closed: vec![IncidentSnapshot {
                    id,
                    rule: "r".into(),
                    key: Labels::new(),
                    state: IncidentState::Normal,
                    first_seen: "2026-01-01T00:00:00Z".into(),
                    last_seen: "2026-01-01T00:00:30Z".into(),
                    counts: Counts::default(),
                    services: vec![],
                    root_candidates: vec![],
                    sample_trace_ids: vec![],
                    top_templates: vec![],
                }],
            });
        }
        let ids: Vec<String> = book.list(&[]).iter().map(|p| p.id.to_string()).collect();
        assert_eq!(ids, ["r-2", "r-1"]);
        assert!(book.list(&[]).iter().all(|p| !p.open));
    }

    #[test]
    fn seconds_between_times() {
        assert_eq!(
            seconds_between("2026-01-01T00:00:00Z", "2026-01-01T00:01:30.5Z"),
            Some(90.5)
        );
        assert_eq!(
            seconds_between("2026-01-01T00:01:00Z", "2026-01-01T00:00:00Z"),
            None
        );
    }
}
