//! One incident's state machine (`statig`, blocking):
//!
//! ```text
//! NORMAL ─suspect─▶ SUSPECTED ─chain─▶ CONFIRMED ─actions ok─▶ RECOVERING ─quiet─▶ RESTORED
//!   │                   │ timeout          │ action failed /       │ still failing after
//!   └──────chain────────┼──────────────────┘ no outcome in time    │ escalate_after
//!                       ▼                  ▼                       ▼
//!                    NORMAL            ESCALATED ◀─────────────────┘ ─quiet─▶ RESTORED
//!                   (closed)
//! RESTORED ─chain within reopen_within─▶ CONFIRMED (same incident: hysteresis)
//! RESTORED ─reopen_within passes─▶ closed
//! ```
//!
//! The machine does no I/O and reads no clock: each input carries its event time in the
//! context, and the machine answers with [`Effect`]s (transitions, deadlines, closing)
//! that the engine carries out. Deadlines are timers the engine fires back as
//! `Timeout { generation }`; a stale generation is ignored.

use logheal_parsers::EventTime;
use logheal_rules::{ActionState, IncidentPolicy, RestoreWhen};
use serde::Serialize;
use statig::blocking::*;
use std::time::Duration;

/// The states an incident is in, as printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IncidentState {
    Normal,
    Suspected,
    Confirmed,
    Recovering,
    Escalated,
    Restored,
}

impl IncidentState {
    pub const ALL: [IncidentState; 6] = [
        IncidentState::Normal,
        IncidentState::Suspected,
        IncidentState::Confirmed,
        IncidentState::Recovering,
        IncidentState::Escalated,
        IncidentState::Restored,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IncidentState::Normal => "NORMAL",
            IncidentState::Suspected => "SUSPECTED",
            IncidentState::Confirmed => "CONFIRMED",
            IncidentState::Recovering => "RECOVERING",
            IncidentState::Escalated => "ESCALATED",
            IncidentState::Restored => "RESTORED",
        }
    }

    /// The rule-file state whose actions run on entry, if any.
    pub fn action_state(self) -> Option<ActionState> {
        match self {
            IncidentState::Normal => None,
            IncidentState::Suspected => Some(ActionState::Suspected),
            IncidentState::Confirmed => Some(ActionState::Confirmed),
            IncidentState::Recovering => Some(ActionState::Recovering),
            IncidentState::Escalated => Some(ActionState::Escalated),
            IncidentState::Restored => Some(ActionState::Restored),
        }
    }
}

/// What happened to the incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// A first failure of a trace, attributed to this incident's key.
    Suspect,
    /// A confirmed chain for this incident's key.
    Chain,
    /// A deadline set earlier has passed.
    Timeout { generation: u64 },
    /// Every action of the current state completed successfully.
    ActionsDone,
    /// An action of the current state failed for good.
    ActionFailed,
    /// An action of the current state was not called: the remediation budget of its
    /// rule is spent, or the brake is on (its `action_cancelled` record says which).
    ActionWithheld,
    /// The health probe passed the required number of times in a row.
    ProbePassed,
}

/// What the engine must do after an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Transition {
        from: IncidentState,
        to: IncidentState,
        /// 1 for the first transition of this incident, then 2, 3, ...
        seq: u32,
        reason: String,
    },
    /// Fire `Timeout { generation }` at `at`.
    Deadline { at: EventTime, generation: u64 },
    /// The incident is over; drop it from the registry.
    Close,
}

/// Per-input context: the event time and the effects produced.
#[derive(Debug, Default)]
pub struct Ctx {
    pub at: EventTime,
    pub effects: Vec<Effect>,
    reason: String,
}

impl Ctx {
    pub fn at(at: EventTime) -> Self {
        Ctx {
            at,
            ..Ctx::default()
        }
    }
}

/// The durations the machine needs from the rule.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub suspect_timeout: Duration,
    pub quiet_period: Duration,
    pub reopen_within: Duration,
    pub escalate_after: Duration,
    pub restore_when: RestoreWhen,
}

impl From<&IncidentPolicy> for Timing {
    fn from(p: &IncidentPolicy) -> Self {
        Timing {
            suspect_timeout: p.suspect_timeout,
            quiet_period: p.quiet_period,
            reopen_within: p.reopen_within,
            escalate_after: p.escalate_after,
            restore_when: p.restore_when,
        }
    }
}

/// The machine's storage: timing, the deadline in force and the transition count.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    timing: Timing,
    generation: u64,
    seq: u32,
    recovering_since: EventTime,
    /// When it last entered RESTORED.
    restored_since: Option<EventTime>,
    /// While recovering: no chain for the quiet period / the probe passed.
    quiet_held: bool,
    probe_passed: bool,
}

impl Lifecycle {
    pub fn new(timing: Timing) -> Self {
        Lifecycle {
            timing,
            generation: 0,
            seq: 0,
            recovering_since: EventTime::MIN,
            restored_since: None,
            quiet_held: false,
            probe_passed: false,
        }
    }

    /// Whether what the rule asks for to restore has happened.
    fn restorable(&self) -> bool {
        match self.timing.restore_when {
            RestoreWhen::Quiet => self.quiet_held,
            RestoreWhen::Probe => self.probe_passed,
            RestoreWhen::QuietAndProbe => self.quiet_held && self.probe_passed,
            RestoreWhen::QuietOrProbe => self.quiet_held || self.probe_passed,
        }
    }

    fn restore_reason(&self) -> String {
        let quiet = format!("no chain for {}", humanize(self.timing.quiet_period));
        match (self.quiet_held, self.probe_passed) {
            (true, true) => format!("{quiet} and the health probe passed"),
            (false, true) => "the health probe passed".to_string(),
            _ => quiet,
        }
    }

    fn failing_for(&self, ctx: &Ctx) -> Duration {
        let nanos = ctx
            .at
            .nanos()
            .saturating_sub(self.recovering_since.nanos())
            .max(0);
        Duration::from_nanos(nanos as u64)
    }

    fn arm(&mut self, ctx: &mut Ctx, after: Duration) {
        self.generation += 1;
        ctx.effects.push(Effect::Deadline {
            at: ctx.at.plus(after),
            generation: self.generation,
        });
    }

    fn current(&self, generation: u64) -> bool {
        generation == self.generation
    }

    fn because(ctx: &mut Ctx, reason: impl Into<String>, to: State) -> Outcome<State> {
        ctx.reason = reason.into();
        Transition(to)
    }
}

/// The state machine type the registry holds.
pub type Machine = StateMachine<Lifecycle>;

/// A new machine in NORMAL.
pub fn machine(timing: Timing) -> Machine {
    Lifecycle::new(timing).state_machine()
}

/// When a machine last entered RESTORED, if ever.
pub fn restored_since(m: &Machine) -> Option<EventTime> {
    m.restored_since
}

/// The printed name of a machine's state.
pub fn state_of(m: &Machine) -> IncidentState {
    printed(m.state())
}

fn printed(s: &State) -> IncidentState {
    match s {
        State::Normal {} => IncidentState::Normal,
        State::Suspected {} => IncidentState::Suspected,
        State::Confirmed {} => IncidentState::Confirmed,
        State::Recovering {} => IncidentState::Recovering,
        State::Escalated {} => IncidentState::Escalated,
        State::Restored {} => IncidentState::Restored,
    }
}

/// `90s` → `1m30s`, `0.5s` → `500ms`.
pub fn humanize(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) || ms == 0 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

#[state_machine(
    initial = "State::normal()",
    state(derive(Debug, Clone, Copy, PartialEq, Eq)),
    after_transition = "Self::after_transition"
)]
impl Lifecycle {
    #[state]
    fn normal(context: &mut Ctx, event: &Input) -> Outcome<State> {
        match event {
            Input::Suspect => Self::because(context, "first matching event", State::suspected()),
            Input::Chain => Self::because(
                context,
                "chain seen before any suspicion",
                State::confirmed(),
            ),
            _ => Handled,
        }
    }

    #[state]
    fn suspected(&mut self, context: &mut Ctx, event: &Input) -> Outcome<State> {
        match event {
            Input::Suspect => {
                let after = self.timing.suspect_timeout;
                self.arm(context, after);
                Handled
            }
            Input::Chain => Self::because(
                context,
                "chain matched the rule's thresholds",
                State::confirmed(),
            ),
            Input::Timeout { generation } if self.current(*generation) => {
                let reason = format!("no chain within {}", humanize(self.timing.suspect_timeout));
                Self::because(context, reason, State::normal())
            }
            _ => Handled,
        }
    }

    #[state]
    fn confirmed(&mut self, context: &mut Ctx, event: &Input) -> Outcome<State> {
        match event {
            Input::ActionsDone => {
                Self::because(context, "recovery actions succeeded", State::recovering())
            }
            Input::ActionFailed => {
                Self::because(context, "a recovery action failed", State::escalated())
            }
            Input::ActionWithheld => Self::because(
                context,
                "a recovery action was withheld (remediation budget or brake): humans decide",
                State::escalated(),
            ),
            Input::Timeout { generation } if self.current(*generation) => {
                let reason = format!(
                    "recovery actions not done within {}",
                    humanize(self.timing.escalate_after)
                );
                Self::because(context, reason, State::escalated())
            }
            _ => Handled,
        }
    }

    #[state]
    fn recovering(&mut self, context: &mut Ctx, event: &Input) -> Outcome<State> {
        match event {
            Input::Chain => {
                if self.failing_for(context) >= self.timing.escalate_after {
                    let reason = format!(
                        "still failing {} after recovery started",
                        humanize(self.timing.escalate_after)
                    );
                    return Self::because(context, reason, State::escalated());
                }
                // The logs still show the failure: start over on both counts.
                self.quiet_held = false;
                self.probe_passed = false;
                let quiet = self.timing.quiet_period;
                self.arm(context, quiet);
                Handled
            }
            Input::ActionFailed => {
                Self::because(context, "a recovery action failed", State::escalated())
            }
            Input::ActionWithheld => Self::because(
                context,
                "a recovery action was withheld (remediation budget or brake): humans decide",
                State::escalated(),
            ),
            Input::ProbePassed => {
                self.probe_passed = true;
                self.restore_if_ready(context)
            }
            Input::Timeout { generation } if self.current(*generation) => {
                self.quiet_held = true;
                if self.restorable() {
                    return self.restore_if_ready(context);
                }
                if self.failing_for(context) >= self.timing.escalate_after {
                    let reason = format!(
                        "not restored {} after recovery started",
                        humanize(self.timing.escalate_after)
                    );
                    return Self::because(context, reason, State::escalated());
                }
                let quiet = self.timing.quiet_period;
                self.arm(context, quiet);
                Handled
            }
            _ => Handled,
        }
    }

    #[state]
    fn escalated(&mut self, context: &mut Ctx, event: &Input) -> Outcome<State> {
        match event {
            Input::Chain => {
                let quiet = self.timing.quiet_period;
                self.arm(context, quiet);
                Handled
            }
            Input::Timeout { generation } if self.current(*generation) => {
                let reason = format!("no chain for {}", humanize(self.timing.quiet_period));
                Self::because(context, reason, State::restored())
            }
            _ => Handled,
        }
    }

    #[state]
    fn restored(&mut self, context: &mut Ctx, event: &Input) -> Outcome<State> {
        match event {
            Input::Chain => {
                let reason = format!(
                    "chain again within {} of restore: reopened",
                    humanize(self.timing.reopen_within)
                );
                Self::because(context, reason, State::confirmed())
            }
            Input::Timeout { generation } if self.current(*generation) => {
                context.effects.push(Effect::Close);
                Handled
            }
            _ => Handled,
        }
    }
}

impl Lifecycle {
    fn restore_if_ready(&mut self, context: &mut Ctx) -> Outcome<State> {
        if !self.restorable() {
            return Handled;
        }
        let reason = self.restore_reason();
        Self::because(context, reason, State::restored())
    }

    /// Records the transition and arms the deadline of the state entered.
    fn after_transition(&mut self, source: &State, target: &State, context: &mut Ctx) {
        self.seq += 1;
        let to = printed(target);
        context.effects.push(Effect::Transition {
            from: printed(source),
            to,
            seq: self.seq,
            reason: std::mem::take(&mut context.reason),
        });
        let t = self.timing;
        match to {
            IncidentState::Normal => {
                self.generation += 1;
                context.effects.push(Effect::Close);
            }
            IncidentState::Suspected => self.arm(context, t.suspect_timeout),
            IncidentState::Confirmed => self.arm(context, t.escalate_after),
            IncidentState::Recovering => {
                self.recovering_since = context.at;
                self.quiet_held = false;
                self.probe_passed = false;
                self.arm(context, t.quiet_period);
            }
            IncidentState::Escalated => self.arm(context, t.quiet_period),
            IncidentState::Restored => {
                self.restored_since = Some(context.at);
                self.arm(context, t.reopen_within);
            }
        }
    }
}

/// The timing the unit tests use (suspect 30 s, quiet 1 m, reopen 5 m, escalate 10 m;
/// restored when quiet).
#[cfg(test)]
pub(crate) fn timing() -> Timing {
    Timing {
        suspect_timeout: Duration::from_secs(30),
        quiet_period: Duration::from_secs(60),
        reopen_within: Duration::from_secs(300),
        escalate_after: Duration::from_secs(600),
        restore_when: RestoreWhen::Quiet,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000_000;

    /// Drives one machine and keeps the effects.
    struct Run {
        m: Machine,
        effects: Vec<Effect>,
    }

    impl Run {
        fn new() -> Self {
            Run {
                m: machine(timing()),
                effects: Vec::new(),
            }
        }
        fn at(&mut self, secs: i64, input: Input) -> IncidentState {
            let mut ctx = Ctx::at(EventTime(secs * SEC));
            self.m.handle_with_context(&input, &mut ctx);
            self.effects.extend(ctx.effects);
            state_of(&self.m)
        }
        /// The generation of the latest deadline.
        fn deadline(&self) -> (i64, u64) {
            self.effects
                .iter()
                .rev()
                .find_map(|e| match e {
                    Effect::Deadline { at, generation } => Some((at.nanos() / SEC, *generation)),
                    _ => None,
                })
                .unwrap()
        }
        fn fire(&mut self) -> IncidentState {
            let (at, generation) = self.deadline();
            self.at(at, Input::Timeout { generation })
        }
        fn transitions(&self) -> Vec<(IncidentState, IncidentState, u32)> {
            self.effects
                .iter()
                .filter_map(|e| match e {
                    Effect::Transition { from, to, seq, .. } => Some((*from, *to, *seq)),
                    _ => None,
                })
                .collect()
        }
    }

    use IncidentState::*;

    #[test]
    fn the_whole_story() {
        let mut r = Run::new();
        assert_eq!(r.at(0, Input::Suspect), Suspected);
        assert_eq!(r.at(1, Input::Chain), Confirmed);
        assert_eq!(r.at(1, Input::ActionsDone), Recovering);
        assert_eq!(
            r.at(30, Input::Chain),
            Recovering,
            "an ongoing outage stays one incident"
        );
        assert_eq!(r.deadline().0, 90, "each chain restarts the quiet period");
        assert_eq!(r.fire(), Restored);
        assert_eq!(r.fire(), Restored);
        assert_eq!(r.effects.last(), Some(&Effect::Close));
        assert_eq!(
            r.transitions(),
            vec![
                (Normal, Suspected, 1),
                (Suspected, Confirmed, 2),
                (Confirmed, Recovering, 3),
                (Recovering, Restored, 4)
            ]
        );
    }

    #[test]
    fn suspicion_without_chain_clears() {
        let mut r = Run::new();
        r.at(0, Input::Suspect);
        r.at(10, Input::Suspect);
        assert_eq!(r.deadline().0, 40, "each suspicion extends the wait");
        assert_eq!(r.fire(), Normal);
        assert_eq!(r.effects.last(), Some(&Effect::Close));
    }

    #[test]
    fn stale_timeouts_are_ignored() {
        let mut r = Run::new();
        r.at(0, Input::Suspect);
        let (_, old) = r.deadline();
        r.at(10, Input::Suspect);
        assert_eq!(r.at(30, Input::Timeout { generation: old }), Suspected);
    }

    #[test]
    fn escalation_when_recovery_does_not_work() {
        let mut r = Run::new();
        r.at(0, Input::Chain);
        r.at(0, Input::ActionsDone);
        for t in (50..600).step_by(50) {
            assert_eq!(r.at(t, Input::Chain), Recovering);
        }
        assert_eq!(r.at(600, Input::Chain), Escalated);
        assert_eq!(
            r.fire(),
            Restored,
            "escalated incidents still restore when quiet"
        );

        let mut failed = Run::new();
        failed.at(0, Input::Chain);
        assert_eq!(failed.at(2, Input::ActionFailed), Escalated);

        let mut silent = Run::new();
        silent.at(0, Input::Chain);
        assert_eq!(silent.fire(), Escalated, "no outcome for escalate_after");
    }

    #[test]
    fn restore_by_probe_and_quiet_as_the_rule_says() {
        let recovering = |restore_when| {
            let mut r = Run {
                m: machine(Timing {
                    restore_when,
                    ..timing()
                }),
                effects: Vec::new(),
            };
            r.at(0, Input::Chain);
            r.at(0, Input::ActionsDone);
            r
        };
        let mut either = recovering(RestoreWhen::QuietOrProbe);
        assert_eq!(
            either.at(20, Input::ProbePassed),
            Restored,
            "the probe alone is enough"
        );

        let mut both = recovering(RestoreWhen::QuietAndProbe);
        assert_eq!(
            both.at(20, Input::ProbePassed),
            Recovering,
            "still needs the quiet period"
        );
        assert_eq!(both.fire(), Restored);

        let mut probe = recovering(RestoreWhen::Probe);
        assert_eq!(probe.fire(), Recovering, "quiet alone is not enough");
        assert_eq!(probe.at(70, Input::Chain), Recovering);
        assert_eq!(probe.at(80, Input::ProbePassed), Restored);

        let mut never = recovering(RestoreWhen::Probe);
        for _ in 0..9 {
            assert_eq!(never.fire(), Recovering);
        }
        assert_eq!(
            never.fire(),
            Escalated,
            "a probe that never passes escalates"
        );

        let mut reset = recovering(RestoreWhen::QuietAndProbe);
        reset.at(10, Input::ProbePassed);
        reset.at(20, Input::Chain);
        assert_eq!(reset.fire(), Recovering, "a chain cancels the earlier pass");
    }

    #[test]
    fn hysteresis_reopens_the_same_incident() {
        let mut r = Run::new();
        r.at(0, Input::Chain);
        r.at(0, Input::ActionsDone);
        r.fire();
        assert_eq!(r.at(100, Input::Chain), Confirmed);
        assert_eq!(
            r.at(100, Input::Suspect),
            Confirmed,
            "suspicions are absorbed"
        );
        assert_eq!(r.transitions().last(), Some(&(Restored, Confirmed, 4)));
    }

    #[test]
    fn humanized_durations() {
        assert_eq!(humanize(Duration::from_secs(30)), "30s");
        assert_eq!(humanize(Duration::from_secs(90)), "1m30s");
        assert_eq!(humanize(Duration::from_secs(300)), "5m");
        assert_eq!(humanize(Duration::from_millis(1500)), "1500ms");
        assert_eq!(humanize(Duration::from_secs(3600)), "1h");
    }
}
