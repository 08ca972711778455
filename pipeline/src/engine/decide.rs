//! Decide: signals to incidents. A suspicion or chain finds its incident by key (rule
//! and `group_by` labels, opening one), the incident's machine takes the input, and its
//! effects are carried out: records, deadlines and actions on the agenda, closes. Also
//! the root-cause candidates and the template evidence shown in a transition's reason,
//! and the confirmation brake.

use super::Engine;
use crate::action::ActionRequest;
use crate::agenda::PendingAction;
use crate::correlator::{ChainSignal, Signal};
use crate::incident::{Ctx, Effect, IncidentState, Input};
use crate::payload::{self};
use crate::record::{Labels, Record};
use crate::registry::{ChainTemplate, Incident, IncidentKey};
use crate::signal::Stage;
use logheal_models::TemplateKey;
use logheal_parsers::EventTime;
use logheal_rules::{ActionState, GroupLabel, ReceiverKind};
use std::sync::Arc;

/// `text` cut to about `max` characters by leaving out its middle ("…"): the end of a
/// long error often says what failed (`nested exception is …: No instances available
/// for ts-basic-service`), the start where.
pub(super) fn cut_middle(text: &str, max: usize) -> String {
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
pub(super) fn escape_label(value: &str, out: &mut String) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

impl Engine {
    pub(super) fn on_signal(&mut self, rule: u32, signal: &Signal) {
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
    pub(super) fn named_services(&self, chain: &ChainSignal) -> Vec<crate::interner::ServiceId> {
        if self.config.stage == Stage::Decide {
            return self.split.named.clone();
        }
        let texts = chain
            .templates
            .iter()
            .filter_map(|(t, _)| Some((t.service, self.templates.text(*t)?)));
        self.named_in(texts)
    }

    /// Services named in `texts`, each the text of a template of the service given with
    /// it (see `named_services`).
    pub(super) fn named_in<S: AsRef<str>>(
        &self,
        texts: impl Iterator<Item = (u32, S)>,
    ) -> Vec<crate::interner::ServiceId> {
        let mut named = Vec::new();
        for (of, text) in texts {
            let words = text
                .as_ref()
                .split(|c: char| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.')))
                .map(|w| w.trim_end_matches('.'));
            for word in words.filter(|w| w.len() >= 4) {
                if let Some(service) = self.interner.get(word) {
                    if service.0 != of && !named.contains(&service) {
                        named.push(service);
                    }
                }
            }
        }
        named
    }

    /// Whether `rule` gives way to a live incident of a rule it yields to that covers a
    /// service of `signal`.
    pub(super) fn yields(&self, rule: u32, signal: &Signal) -> bool {
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
    pub(super) fn deliver(
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
        // Why each of the chain's templates is anomalous, as of the chain (`at`), in the
        // chain's order.
        let whys: Vec<Option<Box<str>>> = chain.map_or_else(Vec::new, |c| {
            c.templates
                .iter()
                .map(|(t, _)| self.template_why(*t, at).map(Box::from))
                .collect()
        });
        let mut input = input;
        let new_id =
            (opens && self.registry.get(&key).is_none()).then(|| self.incident_id(key, at));
        let id = self.registry.with(
            key,
            || new_id.map(|id| Incident::new(id, timing, at)),
            |incident| {
                let state = crate::incident::state_of(&incident.machine);
                if let Some(chain) = chain {
                    incident.absorb_chain(chain, &novel, &named, whys);
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
    /// service, and why it is anomalous (new, or how far above its baseline) as of the
    /// latest chain that carried it.
    fn with_evidence(&self, reason: String, top: &[ChainTemplate]) -> String {
        let evidence: Vec<String> = top
            .iter()
            .filter_map(|t| {
                let text = self.template_text(t.key)?;
                let service = self
                    .interner
                    .name(crate::interner::ServiceId(t.key.service));
                let why = t.why.as_ref().map_or(String::new(), |w| format!(" ({w})"));
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
    pub(super) fn candidate_names(
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
                        self.with_evidence(reason, &top)
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
                        templates: self.template_texts(top.iter().map(|t| t.key)),
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
    pub(super) fn schedule(
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

    pub(super) fn key(&self, rule: u32, service: crate::interner::ServiceId) -> IncidentKey {
        let groups = &self.slots[rule as usize].rule.incident.group_by;
        IncidentKey {
            rule,
            root: groups.contains(&GroupLabel::RootService).then_some(service),
        }
    }

    pub(super) fn labels(&self, key: IncidentKey) -> Labels {
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

    /// Counts a confirmation; past the brake's threshold the brake goes on, once,
    /// with a record and one Slack message.
    pub(super) fn confirmed(&mut self, rule: u32, at: EventTime) {
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
    pub(super) fn release_brake(&mut self, at: EventTime) {
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

    pub(super) fn template_text(&self, t: TemplateKey) -> Option<String> {
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
}
