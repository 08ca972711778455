//! End-to-end: `logheal test`, the SRE's rule workflow — copy the reference rule, change a
//! threshold, write a test that fails, fix the rule, see it pass.

use std::path::Path;
use std::process::{Command, Output};

fn logheal_test(path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_logheal"))
        .arg("test")
        .arg(path)
        .output()
        .unwrap()
}

#[test]
fn the_shipped_rule_tests_pass() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/examples");
    let out = logheal_test(&dir);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.lines().filter(|l| l.starts_with("PASS")).count() >= 9,
        "{stdout}"
    );
    assert!(stdout.ends_with("9 passed, 0 failed\n"), "{stdout}");
    let check = Command::new(env!("CARGO_BIN_EXE_logheal"))
        .arg("check")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "the test file is not taken for a rule file"
    );
}

const CASCADE: &str = r#"    input: |
      {"ts":"2026-03-14T10:00:00.000Z","service":"payment","trace_id":"t1","status":503}
      {"ts":"2026-03-14T10:00:00.010Z","service":"checkout","trace_id":"t1","status":503}
      {"ts":"2026-03-14T10:00:00.020Z","service":"gateway","trace_id":"t1","status":503}
"#;

#[test]
fn change_a_threshold_see_the_test_fail_fix_it_see_it_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let reference = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/examples/cross-service-503.yaml"),
    )
    .unwrap();
    // 1. Copy the reference rule and ask for four 503s instead of three.
    let strict = reference.replacen("min_events: 3", "min_events: 4", 1);
    assert_ne!(strict, reference);
    std::fs::write(dir.join("shop.yaml"), &strict).unwrap();
    // 2. A test that says a three-service cascade must still page.
    let test = format!(
        "rule_files: [shop.yaml]\ntests:\n  - name: a three-hop cascade confirms\n{CASCADE}    incidents:\n      - {{at: \"2026-03-14T10:00:01Z\", key: {{root_service: payment}}, state: RECOVERING}}\n    actions:\n      - {{action: restart-downstream, receiver: restart, after: 0s}}\n"
    );
    let test_file = dir.join("shop.test.yaml");
    std::fs::write(&test_file, test).unwrap();
    let out = logheal_test(&test_file);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL  "), "{stdout}");
    assert!(
        stdout.contains("incident {root_service=payment} at 2026-03-14T10:00:01.000Z: expected RECOVERING, got SUSPECTED"),
        "a readable diff: {stdout}"
    );
    assert!(
        stdout.contains(
            "expected action #1 [action=restart-downstream receiver=restart after=0s] in order"
        ),
        "{stdout}"
    );
    assert!(stdout.ends_with("0 passed, 1 failed\n"), "{stdout}");
    // 3. Fix the rule; the test passes.
    std::fs::write(dir.join("shop.yaml"), reference).unwrap();
    let out = logheal_test(&test_file);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.ends_with("1 passed, 0 failed\n"), "{stdout}");
}

#[test]
fn a_broken_test_file_is_reported_with_positions() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let file = dir.join("bad.test.yaml");
    std::fs::write(
        &file,
        format!("tests:\n  - name: x\n{CASCADE}    incidents:\n      - {{at: yesterday, state: FINE}}\n"),
    )
    .unwrap();
    let out = logheal_test(&file);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1));
    let path = file.display().to_string();
    assert!(
        stdout.contains(&format!("ERROR {path}:8:14: bad time \"yesterday\"")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("ERROR {path}:8:32: unknown state \"FINE\"")),
        "{stdout}"
    );
}
