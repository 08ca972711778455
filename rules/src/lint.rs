//! Warnings about rules that load but probably do not do what their author meant: rules
//! that can never fire or never notify, overlapping rules that would notify twice,
//! windows shorter than the allowed lateness, and receivers nothing uses.

use crate::model::{ActionState, ReceiverKind, Rule, RuleSet};
use crate::Diagnostic;
use std::time::Duration;

/// Warnings for a valid rule set, given the allowed lateness it will run with.
pub fn lint(set: &RuleSet, lateness: Duration) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (i, receiver) in set.receivers.iter().enumerate() {
        let used = set
            .rules
            .iter()
            .any(|r| r.actions.all().any(|a| a.receiver == i));
        if !used && receiver.kind != ReceiverKind::Probe {
            out.push(Diagnostic::warning(
                receiver.location.clone(),
                format!("receiver {:?} is never used by any action", receiver.name),
            ));
        }
    }
    for (n, rule) in set.rules.iter().enumerate() {
        let at = || rule.location.clone();
        if rule.correlate.window < lateness {
            out.push(Diagnostic::warning(
                at(),
                format!(
                    "window {} is shorter than the allowed lateness {}: events that arrive late can miss it",
                    humantime::format_duration(rule.correlate.window),
                    humantime::format_duration(lateness)
                ),
            ));
        }
        if let [only] = &rule.select.services[..] {
            let pattern = only.glob().glob();
            let literal = !pattern.contains(['*', '?', '[', '{']);
            if literal && rule.correlate.min_services > 1 {
                out.push(Diagnostic::warning(
                    at(),
                    format!(
                        "can never fire: it selects only service {pattern:?} but needs {} services",
                        rule.correlate.min_services
                    ),
                ));
            }
        }
        if rule.actions.all().next().is_none() {
            out.push(Diagnostic::warning(
                at(),
                "has no actions: its incidents open and close without telling anyone",
            ));
        }
        for earlier in &set.rules[..n] {
            if let Some((receiver, state)) = double_notify(set, earlier, rule) {
                out.push(Diagnostic::warning(
                    at(),
                    format!(
                        "overlaps rule {:?}: it selects the same events, groups them the same way and also calls {receiver:?} on {state:?}; every incident would notify twice",
                        earlier.name
                    ),
                ));
            }
        }
    }
    out
}

/// What two rules selecting and grouping the same events both call in the same state.
fn double_notify<'a>(set: &'a RuleSet, a: &Rule, b: &Rule) -> Option<(&'a str, ActionState)> {
    if signature(a) != signature(b) {
        return None;
    }
    ActionState::ALL.into_iter().find_map(|s| {
        let theirs = b.actions.for_state(s);
        a.actions
            .for_state(s)
            .iter()
            .find(|x| theirs.iter().any(|y| y.receiver == x.receiver))
            .map(|x| (set.receivers[x.receiver].name.as_str(), s))
    })
}

/// Everything that decides which events a rule takes and how it groups them.
fn signature(r: &Rule) -> String {
    let s = &r.select;
    let globs = |g: &[globset::GlobMatcher]| {
        g.iter()
            .map(|m| m.glob().glob().to_string())
            .collect::<Vec<_>>()
    };
    let glob = |g: &Option<globset::GlobMatcher>| g.as_ref().map(|m| m.glob().glob().to_string());
    format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
        s.status,
        s.levels,
        globs(&s.services),
        s.message.as_ref().map(|m| m.as_str().to_string()),
        s.fields,
        glob(&s.models.template),
        glob(&s.models.family),
        s.models.anomaly,
        r.correlate.key,
        r.incident.group_by,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load_sources;

    fn warnings(text: &str) -> Vec<String> {
        let set = load_sources(&[("r.yaml".into(), text.into())]).unwrap();
        lint(&set, Duration::from_secs(10))
            .iter()
            .map(|d| d.to_string())
            .collect()
    }

    const RECEIVERS: &str = "receivers:\n  hook: {type: webhook, url: \"${LOGHEAL_HOOK}\"}\n  spare: {type: slack, url: \"${LOGHEAL_SLACK}\"}\n";

    #[test]
    fn each_kind_of_warning() {
        let text = format!(
            "{RECEIVERS}rules:\n  - name: a\n    select: {{status: [503], service: [payment]}}\n    correlate: {{window: 5s, min_events: 3, min_services: 2}}\n    actions: {{confirmed: [{{name: x, receiver: hook}}]}}\n  - name: b\n    select: {{status: [503], service: [payment]}}\n    correlate: {{window: 5s, min_events: 3, min_services: 2}}\n    actions: {{confirmed: [{{name: y, receiver: hook}}]}}\n  - name: quiet\n    select: {{status: [500]}}\n    correlate: {{window: 30s, min_events: 1}}\n"
        );
        let w = warnings(&text);
        let has = |s: &str| w.iter().any(|x| x.contains(s));
        assert!(
            has("r.yaml:3:3: warning: receiver \"spare\" is never used"),
            "{w:#?}"
        );
        assert!(
            has("r.yaml:5:11: warning: window 5s is shorter than the allowed lateness 10s"),
            "{w:#?}"
        );
        assert!(has("r.yaml:5:11: warning: can never fire: it selects only service \"payment\" but needs 2 services"), "{w:#?}");
        assert!(has("r.yaml:9:11: warning: overlaps rule \"a\""), "{w:#?}");
        assert!(has("r.yaml:13:11: warning: has no actions"), "{w:#?}");
    }

    #[test]
    fn the_reference_rule_is_clean() {
        let w = lint(&crate::builtin(), Duration::from_secs(10));
        assert!(w.is_empty(), "{w:#?}");
    }
}
