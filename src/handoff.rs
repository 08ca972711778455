//! Between the engine and the executor: submits the engine's requests, reports each
//! attempt, and feeds outcomes back. With an action ledger (Kafka), an action is written
//! down before it is called, and an action the ledger knows as done is answered from
//! there instead of being called again (a consumer replaying after a restart or a
//! rebalance). Requests are renumbered, so outcomes of calls made for an engine that has
//! since been rebuilt reach the ledger but not the new engine. An action another
//! consumer handed off moments ago (it gave the incident up in a rebalance, or this one
//! started while it ran) may still be in flight there: it is waited for, answered from
//! the ledger once done, and called here only if no outcome comes within
//! `ledger::IN_FLIGHT_GRACE` of its hand-off.

use crate::metrics::Metrics;
use crate::output::Printer;
use anyhow::Result;
use logheal_actions::executor::{Event, Executor};
use logheal_kafka::ledger::{Decision, Ledger};
use logheal_pipeline::action::{ActionRequest, Outcome};
use logheal_pipeline::Engine;
use std::collections::HashMap;
use std::io::Write;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

/// How often the ledger is read again for the outcome of an action in flight elsewhere,
/// while the engine waits for it.
const RECHECK_EVERY: Duration = Duration::from_millis(20);

/// The generation of calls resumed from the ledger at start: no engine awaits them.
const RESUMED: u64 = u64::MAX;

/// A call in flight: the engine generation and request it answers, and its key when
/// the ledger tracks it.
struct Call {
    generation: u64,
    request: u64,
    ledger_key: Option<String>,
}

/// A request for an action going through the ledger, with the engine generation it
/// answers (`RESUMED`: none).
struct Asked {
    generation: u64,
    request: ActionRequest,
}

#[derive(Default)]
pub struct Handoff {
    ledger: Option<Ledger>,
    calls: HashMap<u64, Call>,
    /// Actions waited for because another consumer may be calling them.
    deferred: Vec<Asked>,
    /// Keys being called here, and the engine requests (generation, id) waiting on them.
    calling: HashMap<String, Vec<(u64, u64)>>,
    next: u64,
    generation: u64,
    /// Actions answered from the ledger instead of being called.
    pub answered_from_ledger: u64,
    /// Where attempts and outcomes are counted (live jobs).
    metrics: Option<Metrics>,
}

impl Handoff {
    pub fn with_metrics(metrics: Metrics) -> Self {
        Handoff {
            metrics: Some(metrics),
            ..Handoff::default()
        }
    }

    pub fn with_ledger(self, ledger: Ledger) -> Self {
        Handoff {
            ledger: Some(ledger),
            ..self
        }
    }

    pub fn ledger(&mut self) -> Option<&mut Ledger> {
        self.ledger.as_mut()
    }

    /// The engine was rebuilt: outcomes of earlier calls no longer concern it.
    pub fn new_generation(&mut self) {
        self.generation += 1;
        for waiters in self.calling.values_mut() {
            waiters.clear();
        }
        // The new engine asks again for what it needs.
        self.deferred.retain(|d| d.generation == RESUMED);
    }

    /// Calls again what the ledger holds as handed off but never done (its caller
    /// died), under the same keys; what was handed off moments ago is waited for first.
    pub fn resume_pending(&mut self, engine: &mut Engine, executor: &Executor) {
        let Some(ledger) = &self.ledger else { return };
        for (key, handoff, in_flight) in ledger.pending() {
            if !engine
                .receivers()
                .iter()
                .any(|r| r.name == handoff.receiver)
            {
                tracing::warn!(
                    key,
                    receiver = handoff.receiver,
                    "pending action's receiver is no longer configured; not called"
                );
                continue;
            };
            let asked = Asked {
                generation: RESUMED,
                request: handoff.into_request(RESUMED, key),
            };
            let decision = if in_flight {
                tracing::info!(
                    key = %asked.request.idempotency_key,
                    "an action handed off moments ago may still be in flight: waiting for its outcome"
                );
                Decision::InFlight
            } else {
                Decision::Pending
            };
            self.settle(asked, decision, engine, executor);
        }
    }

    fn track(&mut self, generation: u64, request: u64, ledger_key: Option<String>) -> u64 {
        let id = self.next;
        self.next += 1;
        self.calls.insert(
            id,
            Call {
                generation,
                request,
                ledger_key,
            },
        );
        id
    }

    /// Hands the engine's requests on and feeds back what has happened; with `wait`,
    /// until the engine awaits no outcome, else only what is ready.
    pub fn exchange(
        &mut self,
        engine: &mut Engine,
        executor: &Executor,
        out: &mut Printer<impl Write>,
        wait: bool,
    ) -> Result<()> {
        loop {
            for request in engine.take_outbox() {
                self.submit(engine, executor, request);
            }
            self.recheck(engine, executor);
            // An answer from the ledger can make the next action due at once: submit
            // it before waiting, or the wait would be for a call never made.
            if engine.has_requests() {
                continue;
            }
            let event = if wait && engine.awaiting_outcomes() {
                if self.deferred.is_empty() {
                    executor.events.recv().ok()
                } else {
                    // An outcome may come through the ledger instead.
                    match executor.events.recv_timeout(RECHECK_EVERY) {
                        Ok(event) => Some(event),
                        Err(RecvTimeoutError::Timeout) => continue,
                        Err(RecvTimeoutError::Disconnected) => None,
                    }
                }
            } else {
                executor.events.try_recv().ok()
            };
            match event {
                Some(Event::Attempt(mut attempt)) => {
                    if let Some(m) = &self.metrics {
                        m.attempted(&attempt);
                    }
                    let Some(call) = self.calls.get(&attempt.request) else {
                        continue;
                    };
                    if call.generation == self.generation {
                        attempt.request = call.request;
                        if let Some(record) = engine.attempt_record(&attempt) {
                            out.record(&record)?;
                        }
                    }
                }
                Some(Event::Done { request, outcome }) => {
                    if let Some(m) = &self.metrics {
                        m.finished(&outcome);
                    }
                    self.done(engine, request, &outcome)
                }
                None => return Ok(()),
            }
        }
    }

    /// End of input with calls executed: event time runs on as if the stream went
    /// quiet, each outcome fed back before the next thing falls due, until nothing is
    /// left; then every timer fires (`Engine::finish`).
    pub fn run_out(
        &mut self,
        engine: &mut Engine,
        executor: Option<&Executor>,
        out: &mut Printer<impl Write>,
    ) -> Result<()> {
        if let Some(executor) = executor {
            loop {
                self.exchange(engine, executor, out, true)?;
                out.emit(engine)?;
                if !engine.step() {
                    break;
                }
            }
        }
        engine.finish();
        out.emit(engine)?;
        out.flush()?;
        Ok(())
    }

    fn submit(&mut self, engine: &mut Engine, executor: &Executor, mut request: ActionRequest) {
        // Health probes are asked afresh each time; only actions go through the ledger.
        let decision = match &self.ledger {
            Some(ledger) if request.expect_status.is_none() => {
                ledger.decide(&request.idempotency_key)
            }
            _ => {
                request.id = self.track(self.generation, request.id, None);
                executor.submit(request);
                return;
            }
        };
        let asked = Asked {
            generation: self.generation,
            request,
        };
        self.settle(asked, decision, engine, executor);
    }

    /// Looks again at the actions waited for because another consumer may be calling
    /// them: answered from the ledger once done there, called here once their hand-off
    /// is older than the grace.
    fn recheck(&mut self, engine: &mut Engine, executor: &Executor) {
        if self.deferred.is_empty() {
            return;
        }
        let Some(ledger) = self.ledger.as_mut() else {
            return;
        };
        ledger.follow();
        let decided: Vec<_> = std::mem::take(&mut self.deferred)
            .into_iter()
            .map(|d| {
                let decision = ledger.decide(&d.request.idempotency_key);
                (d, decision)
            })
            .collect();
        for (d, decision) in decided {
            self.settle(d, decision, engine, executor);
        }
    }

    /// Acts on the ledger's `decision` for an action: answers it from there, joins the
    /// call of it in flight here, waits for the consumer that may be calling it, or
    /// calls it.
    fn settle(&mut self, d: Asked, decision: Decision, engine: &mut Engine, executor: &Executor) {
        let key = &d.request.idempotency_key;
        match decision {
            Decision::Done(outcome) => {
                self.answered_from_ledger += 1;
                if d.generation == self.generation {
                    engine.action_outcome(d.request.id, &outcome);
                }
            }
            // Being called here already: that call answers this request.
            _ if self.calling.contains_key(key) => {
                if let Some(waiters) = self.calling.get_mut(key) {
                    if d.generation == self.generation {
                        waiters.push((d.generation, d.request.id));
                    }
                }
            }
            Decision::InFlight => self.deferred.push(d),
            Decision::Pending => {
                tracing::info!(key, "calling again an action left pending");
                self.call(d, executor);
            }
            Decision::Call => self.call(d, executor),
        }
    }

    /// Writes an action's hand-off (again, for one left pending: so that a third
    /// consumer takes it as in flight here), then calls it under its key.
    fn call(&mut self, d: Asked, executor: &Executor) {
        let key = d.request.idempotency_key.clone();
        if let Some(ledger) = self.ledger.as_mut() {
            if let Err(e) = ledger.hand_off(&d.request) {
                // Still called: the committed offsets stay before the incident, so a
                // restart replays it and calls again under the same key.
                tracing::warn!(key, error = %e, "action hand-off not written to the ledger");
            }
        }
        let mut request = d.request;
        request.id = self.track(d.generation, request.id, Some(key.clone()));
        self.calling.entry(key).or_default();
        executor.submit(request);
    }

    fn done(&mut self, engine: &mut Engine, id: u64, outcome: &Outcome) {
        let Some(call) = self.calls.remove(&id) else {
            return;
        };
        let mut answer = Vec::new();
        if call.generation == self.generation {
            answer.push(call.request);
        }
        if let Some(key) = call.ledger_key {
            if let Some(ledger) = &mut self.ledger {
                ledger.done(&key, outcome);
            }
            let waiters = self.calling.remove(&key).unwrap_or_default();
            answer.extend(
                waiters
                    .into_iter()
                    .filter(|(g, _)| *g == self.generation)
                    .map(|(_, r)| r),
            );
        }
        for request in answer {
            engine.action_outcome(request, outcome);
        }
    }
}
