//! The rule-file reference (`docs/rules.md`), generated from [`KEYS`]. Tests check
//! [`KEYS`] against the schema itself (every key the parser accepts is documented, and
//! nothing else), and the committed document against [`markdown`], so neither can drift.

/// One documented key.
pub struct KeyDoc {
    /// Section, as in [`SECTIONS`].
    pub section: &'static str,
    pub key: &'static str,
    pub ty: &'static str,
    pub default: &'static str,
    pub doc: &'static str,
    pub example: &'static str,
}

/// Sections of a rule file and of a test file, in document order.
pub const SECTIONS: &[(&str, &str)] = &[
    ("top", "Top level of a rule file"),
    (
        "receivers.<name>",
        "A receiver, declared once and referenced by name",
    ),
    ("rules[]", "A rule"),
    (
        "select",
        "Which events a rule takes (every given condition must hold)",
    ),
    ("correlate", "How the selected events tie together"),
    ("incident", "How incidents group, resolve and escalate"),
    (
        "incident.health_probe",
        "An HTTP check run while recovering (with `--execute`)",
    ),
    (
        "incident.budget",
        "How much automated remediation an incident key may get",
    ),
    ("actions", "What each state calls"),
    ("actions.<state>[]", "One call"),
    ("test file", "Top level of a test file (`logheal test`)"),
    ("tests[]", "A test case"),
    (
        "tests[].incidents[]",
        "An incident state expected at an event time (also `absent_incidents`)",
    ),
    (
        "tests[].actions[]",
        "An action expected, in order (also `absent_actions`; `{}` matches any)",
    ),
];

macro_rules! key {
    ($section:expr, $key:expr, $ty:expr, $default:expr, $doc:expr, $example:expr) => {
        KeyDoc {
            section: $section,
            key: $key,
            ty: $ty,
            default: $default,
            doc: $doc,
            example: $example,
        }
    };
}

/// Every key of the rule and test file formats.
pub const KEYS: &[KeyDoc] = &[
    key!("top", "receivers", "map of name → receiver", "none", "Receivers, shared by all rule files loaded together.", "`receivers: {restart: {...}}`"),
    key!("top", "rules", "list of rules", "required (in some file)", "The rules.", "`rules: [{name: ..., ...}]`"),
    key!("receivers.<name>", "type", "`webhook` \\| `slack`", "required", "Webhooks get the incident JSON; Slack gets Block Kit messages.", "`type: webhook`"),
    key!("receivers.<name>", "url", "string", "required", "`http(s)://...`, `${ENV}` or `file:/path`. Unset variables make the receiver *not configured*.", "`url: ${LOGHEAL_RESTART_URL}`"),
    key!("receivers.<name>", "method", "string", "`POST`", "HTTP method.", "`method: PUT`"),
    key!("receivers.<name>", "timeout", "duration", "`5s`", "Per attempt.", "`timeout: 2s`"),
    key!("receivers.<name>", "retries", "integer", "`3`", "Further attempts after the first (backoff with full jitter; `Retry-After` honoured).", "`retries: 5`"),
    key!("receivers.<name>", "secret", "`${ENV}` \\| `file:/path`", "none", "HMAC-SHA256 key for `X-Logheal-Signature`. Never a literal.", "`secret: ${LOGHEAL_WEBHOOK_SECRET}`"),
    key!("receivers.<name>", "headers", "map", "none", "Extra headers; values may use `${ENV}`.", "`headers: {X-Team: sre}`"),
    key!("rules[]", "name", "string", "required", "Letters, digits, `-`, `_`, `.`; unique. Part of incident ids.", "`name: cross-service-503`"),
    key!("rules[]", "description", "string", "none", "For people.", "`description: A 503 propagated across services`"),
    key!("rules[]", "select", "mapping", "required", "See *select*.", "`select: {status: [503]}`"),
    key!("rules[]", "correlate", "mapping", "required", "See *correlate*.", "`correlate: {window: 30s, min_events: 3}`"),
    key!("rules[]", "incident", "mapping", "defaults", "See *incident*.", "`incident: {group_by: [root_service]}`"),
    key!("rules[]", "actions", "mapping", "none", "See *actions*.", "`actions: {confirmed: [...]}`"),
    key!("select", "status", "list of codes or classes", "any", "HTTP status: `503`, `5xx`; `none` for events without one (failures logged as errors, not answered with a code).", "`status: [502, 503]`"),
    key!("select", "level", "list", "any", "`trace`, `debug`, `info`, `warn`, `error`, `fatal` (common spellings accepted).", "`level: [error, fatal]`"),
    key!("select", "service", "list of globs", "any", "Service names.", "`service: [payment*]`"),
    key!("select", "message", "regex", "any", "Matched against the message.", "`message: timed out`"),
    key!("select", "fields", "map of field path → value", "none", "Exact values of other fields (captured only when a rule names them).", "`fields: {http.request.method: POST}`"),
    key!("select", "template", "glob", "any", "Over the event's mined template.", "`template: \"*connection refused*\"`"),
    key!("select", "family", "glob", "any", "Some template of the event's TF-IDF family matches it.", "`family: \"*redis*\"`"),
    key!("select", "anomaly", "list", "any", "`new_template` (after a 10-minute warm-up) and/or `rate_spike` (in the last minute ≥ 5 events and ≥ 5× the template's usual count: the median of its per-minute counts over the last 15 minutes with input).", "`anomaly: [new_template]`"),
    key!("correlate", "by", "`trace_id` \\| `request_id` \\| `service` \\| field path", "`trace_id`", "The key events are grouped by. `trace_id` falls back to the request id (`x-request-id`) for records without a trace id.", "`by: trace_id`"),
    key!("correlate", "window", "duration", "required", "Sliding window per key, on event time.", "`window: 30s`"),
    key!("correlate", "min_events", "integer ≥ 1", "required", "Selected events in one window that make a chain.", "`min_events: 3`"),
    key!("correlate", "min_services", "integer ≥ 1", "`1`", "Distinct services among them (at most `min_events`).", "`min_services: 2`"),
    key!("correlate", "min_chains", "integer ≥ 1", "`1`", "Chains of one incident key needed within `chains_within` to confirm; fewer keep it SUSPECTED (the suspicion then lasts at least `chains_within`).", "`min_chains: 3`"),
    key!("correlate", "chains_within", "duration", "the larger of `window` and `60s`", "The period `min_chains` counts in.", "`chains_within: 2m`"),
    key!("correlate", "min_anomalous", "integer", "`0`", "Events of a chain whose template is anomalous for its service (new since the warm-up, or far above its own baseline rate) needed for the chain to count: a chain of background errors does not.", "`min_anomalous: 1`"),
    key!("incident", "group_by", "list", "`[]`", "`root_service` (the service that failed first); empty: one incident per rule.", "`group_by: [root_service]`"),
    key!("incident", "suspect_timeout", "duration", "the window", "SUSPECTED without a chain this long → NORMAL.", "`suspect_timeout: 1m`"),
    key!("incident", "quiet_period", "duration", "`60s`", "No chain this long → RESTORED (with `restore_when` allowing it).", "`quiet_period: 2m`"),
    key!("incident", "reopen_within", "duration", "`5m`", "A chain this soon after RESTORED reopens the same incident (hysteresis).", "`reopen_within: 10m`"),
    key!("incident", "escalate_after", "duration", "`10m`", "Still failing, not restored, or CONFIRMED actions not done this long → ESCALATED.", "`escalate_after: 15m`"),
    key!("incident", "health_probe", "mapping", "none", "See *incident.health_probe*.", "`health_probe: {url: ${LOGHEAL_HEALTH_URL}}`"),
    key!("incident", "restore_when", "`quiet` \\| `probe` \\| `quiet_and_probe` \\| `quiet_or_probe`", "`quiet`; `quiet_or_probe` with a probe", "What restores a recovering incident.", "`restore_when: quiet_and_probe`"),
    key!("incident", "yield_to", "list of rule names", "none", "Rules this one gives way to: a suspicion or chain about a service that a live, confirmed incident of one of them already covers (its root or a service of its chains) opens nothing here (counted as `yielded`). One failure, one incident.", "`yield_to: [cross-service-503]`"),
    key!("incident", "budget", "mapping", "3 calls per 1h", "See *incident.budget*.", "`budget: {actions: 1, period: 30m}`"),
    key!("incident.budget", "actions", "integer ≥ 0", "`3`", "Calls of each webhook action per incident key (root service) within `period`; a call past it is not made (`action_cancelled`, reason `remediation budget`) and the incident goes to ESCALATED. `0`: notify only.", "`actions: 1`"),
    key!("incident.budget", "period", "duration", "`1h`", "The sliding window, in event time.", "`period: 30m`"),
    key!("incident.health_probe", "url", "string", "required", "`${ENV}` or `file:`; probed with GET.", "`url: ${LOGHEAL_HEALTH_URL}`"),
    key!("incident.health_probe", "expect_status", "integer", "`200`", "The status that passes.", "`expect_status: 204`"),
    key!("incident.health_probe", "interval", "duration", "`5s`", "On the incident's event-time clock.", "`interval: 10s`"),
    key!("incident.health_probe", "passes", "integer ≥ 1", "`3`", "Passes in a row; any chain in between starts over.", "`passes: 2`"),
    key!("incident.health_probe", "timeout", "duration", "`2s`", "Per probe.", "`timeout: 1s`"),
    key!("actions", "suspected", "list of calls", "none", "On entering SUSPECTED.", "`suspected: []`"),
    key!("actions", "confirmed", "list of calls", "none", "On entering CONFIRMED; all must succeed for RECOVERING.", "`confirmed: [{name: restart, receiver: restart}]`"),
    key!("actions", "recovering", "list of calls", "none", "On entering RECOVERING.", "`recovering: [{name: failover, receiver: failover, after: 5s}]`"),
    key!("actions", "restored", "list of calls", "none", "On entering RESTORED.", "`restored: [{name: failback, receiver: failback, after: 60s}]`"),
    key!("actions", "escalated", "list of calls", "none", "On entering ESCALATED.", "`escalated: [{name: page, receiver: slack}]`"),
    key!("actions.<state>[]", "name", "string", "required", "Unique within the rule; part of the idempotency key.", "`name: restart-downstream`"),
    key!("actions.<state>[]", "receiver", "string", "required", "A declared receiver.", "`receiver: restart`"),
    key!("actions.<state>[]", "after", "duration", "`0s`", "Delay on the incident's event-time clock; cancelled if the incident leaves the state first.", "`after: 5s`"),
    key!("test file", "rule_files", "list of paths", "the built-in rules", "Relative to the test file.", "`rule_files: [shop.yaml]`"),
    key!("test file", "tests", "list of cases", "required", "The cases.", "`tests: [{name: ..., ...}]`"),
    key!("tests[]", "name", "string", "required", "Shown as PASS / FAIL.", "`name: a cascade confirms`"),
    key!("tests[]", "input", "string", "one of input, input_file", "Log lines, any supported format.", "`input: \\|` then lines"),
    key!("tests[]", "input_file", "path", "one of input, input_file", "Relative to the test file.", "`input_file: ../logs/outage.jsonl`"),
    key!("tests[]", "incidents", "list", "none", "States that must hold.", "`incidents: [{key: {root_service: payment}, state: RESTORED}]`"),
    key!("tests[]", "actions", "list", "none", "Calls that must happen, in order.", "`actions: [{action: restart-downstream}]`"),
    key!("tests[]", "absent_actions", "list", "none", "Calls that must not happen.", "`absent_actions: [{action: failback}]`"),
    key!("tests[]", "absent_incidents", "list", "none", "States no matching incident may enter.", "`absent_incidents: [{state: CONFIRMED}]`"),
    key!("tests[].incidents[]", "at", "RFC 3339 time", "the end (all timers fired)", "When to look.", "`at: \"2026-03-14T10:00:01Z\"`"),
    key!("tests[].incidents[]", "key", "map", "`{}`", "The incident's labels, exactly.", "`key: {root_service: payment}`"),
    key!("tests[].incidents[]", "state", "state name", "required", "`NORMAL` (no incident), `SUSPECTED`, `CONFIRMED`, `RECOVERING`, `ESCALATED`, `RESTORED`.", "`state: RECOVERING`"),
    key!("tests[].actions[]", "action", "string", "any", "Action name.", "`action: failover`"),
    key!("tests[].actions[]", "receiver", "string", "any", "Receiver name.", "`receiver: failover`"),
    key!("tests[].actions[]", "state", "state name", "any", "The state that called it.", "`state: RECOVERING`"),
    key!("tests[].actions[]", "after", "duration", "any", "Delay after the transition into that state.", "`after: 5s`"),
    key!("tests[].actions[]", "at", "RFC 3339 time", "any", "When it was called (event time).", "`at: \"2026-03-14T10:00:05Z\"`"),
];

/// `docs/rules.md`.
pub fn markdown() -> String {
    let mut out = String::from(
        "# Rule reference\n\n\
         Generated from `rules/src/reference.rs` and checked against the schema by the \
         tests (`cargo test -p logheal-rules --test reference`; regenerate with \
         `LOGHEAL_REGENERATE=1`). Durations are written `500ms`, `30s`, `5m`, `1h`, `1m30s`.\n",
    );
    for (section, title) in SECTIONS {
        out.push_str(&format!("\n## `{section}`: {title}\n\n| key | type | default | meaning | example |\n|---|---|---|---|---|\n"));
        for k in KEYS.iter().filter(|k| k.section == *section) {
            out.push_str(&format!(
                "| `{}` | {} | {} | {} | {} |\n",
                k.key, k.ty, k.default, k.doc, k.example
            ));
        }
    }
    out.push_str(STATE_MACHINE);
    out.push_str(PAYLOAD);
    out
}

const STATE_MACHINE: &str = "
## The state machine

One machine per incident key (rule + `group_by` labels).

| from | to | driven by |
|---|---|---|
| NORMAL | SUSPECTED | the first selected event of a trace |
| SUSPECTED | CONFIRMED | a chain: `min_events` from `min_services` services in one `window` |
| SUSPECTED | NORMAL | no chain within `suspect_timeout` (the incident closes) |
| NORMAL | CONFIRMED | a chain whose root had no open suspicion |
| CONFIRMED | RECOVERING | every CONFIRMED action succeeded (dry run: when due) |
| CONFIRMED | ESCALATED | an action failed for good, or none done within `escalate_after` |
| RECOVERING | RESTORED | `restore_when`: no chain for `quiet_period` and/or the probe passed `passes` times |
| RECOVERING | ESCALATED | chains still arrive, or not restored, `escalate_after` into recovery; or an action failed |
| ESCALATED | RESTORED | no chain for `quiet_period` |
| RESTORED | CONFIRMED | a chain within `reopen_within` (same incident) that ends after the restore (one whose events all came before it was read late, and reopens nothing) |

After `reopen_within` in RESTORED the incident closes. Delayed actions of a state are
cancelled when the incident leaves it first.
";

const PAYLOAD: &str = "
## The webhook payload

`POST` (or the receiver's `method`), `Content-Type: application/json`,
`Idempotency-Key: <incident>/<transition number>-<state>/<action>` (the same on every
retry), and with a `secret` `X-Logheal-Signature: sha256=<hex HMAC-SHA256 of the body>`.

| field | meaning |
|---|---|
| `incident` | `<rule>-<labels>-<opening time>` (labels percent-encoded) |
| `rule`, `key` | the rule and the incident's labels |
| `state`, `previous_state`, `reason` | the transition that called this action |
| `action`, `idempotency_key` | this call |
| `services` | services seen failing, in order of first failure |
| `root_cause` | the service that failed first |
| `root_candidates` | `[{service, score}]`: `root_cause` first, then the services ranked by evidence (failed first, failed, new templates, named in another's error) |
| `sample_trace_ids`, `top_templates` | what to look at first |
| `counts` | `chains`, `failed_events`, `suspicions` |
| `first_seen`, `last_seen` | event times |
| `dry_run` | true when nothing is really called |
";
