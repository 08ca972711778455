//! `docs/rules.md` cannot drift: every key the parser accepts is documented (and nothing
//! else), and the committed document is the generated one.

use logheal_rules::reference::{markdown, KEYS, SECTIONS};
use std::collections::BTreeSet;
use std::path::Path;

/// A document with an unknown key `__x` in the section, for each section.
fn probe(section: &str) -> (&'static str, String) {
    let rule = |inner: &str| {
        format!("rules:\n  - {{name: r, select: {{status: [503]}}, correlate: {{window: 1s, min_events: 1}}, {inner}}}\n")
    };
    let case = |inner: &str| format!("tests:\n  - {{name: t, input: x, {inner}}}\n");
    match section {
        "top" => ("rules", "__x: 1\n".into()),
        "receivers.<name>" => (
            "rules",
            "receivers:\n  r: {type: webhook, url: x, __x: 1}\n".into(),
        ),
        "rules[]" => ("rules", rule("__x: 1")),
        "select" => ("rules", "rules:\n  - {name: r, select: {__x: 1}}\n".into()),
        "correlate" => (
            "rules",
            "rules:\n  - {name: r, select: {status: [1]}, correlate: {__x: 1}}\n".into(),
        ),
        "incident" => ("rules", rule("incident: {__x: 1}")),
        "incident.health_probe" => ("rules", rule("incident: {health_probe: {url: x, __x: 1}}")),
        "incident.budget" => (
            "rules",
            rule("incident: {budget: {actions: 1, period: 1h, __x: 1}}"),
        ),
        "actions" => ("rules", rule("actions: {__x: 1}")),
        "actions.<state>[]" => (
            "rules",
            rule("actions: {confirmed: [{name: a, receiver: b, __x: 1}]}"),
        ),
        "test file" => ("tests", "tests: []\n__x: 1\n".into()),
        "tests[]" => ("tests", case("__x: 1")),
        "tests[].incidents[]" => ("tests", case("incidents: [{state: NORMAL, __x: 1}]")),
        "tests[].actions[]" => ("tests", case("actions: [{__x: 1}]")),
        other => panic!("no probe for section {other}"),
    }
}

/// The fields the parser lists as expected when it meets `__x`.
fn accepted(kind: &str, text: &str) -> BTreeSet<String> {
    let message = match kind {
        "rules" => logheal_rules::load_sources(&[("p.yaml".into(), text.into())])
            .expect_err("an unknown key is an error")[0]
            .message
            .clone(),
        _ => {
            let path = std::env::temp_dir()
                .join(format!("logheal-probe-{}.test.yaml", std::process::id()));
            std::fs::write(&path, text).unwrap();
            let err = logheal_rules::load_test_file(&path).expect_err("an unknown key is an error")
                [0]
            .message
            .clone();
            std::fs::remove_file(path).unwrap();
            err
        }
    };
    assert!(message.contains("unknown field `__x`"), "{message}");
    let expected = message.split("expected").nth(1).unwrap_or_default();
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn every_accepted_key_is_documented_and_nothing_else() {
    for (section, _) in SECTIONS {
        let (kind, text) = probe(section);
        let schema = accepted(kind, &text);
        let documented: BTreeSet<String> = KEYS
            .iter()
            .filter(|k| k.section == *section)
            .map(|k| k.key.to_string())
            .collect();
        assert_eq!(documented, schema, "section {section}");
    }
}

#[test]
fn docs_rules_md_is_generated() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/rules.md");
    let generated = markdown();
    if std::env::var_os("LOGHEAL_REGENERATE").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).expect("docs/rules.md exists");
    assert!(
        committed == generated,
        "docs/rules.md is stale: LOGHEAL_REGENERATE=1 cargo test -p logheal-rules --test reference"
    );
}
