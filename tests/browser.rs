//! End-to-end in a real headless Chromium (Debian's `chromium`; `scripts/test.sh`
//! installs it and builds these tests with the `browser-tests` feature): the incident
//! pages of a live job that calls a real receiver on 127.0.0.1 — the bundled example's
//! payment incident with its states and actions, an incident page with attempts and
//! outcomes, a phone-sized rendering, and a silence made with the CLI marking the
//! incident while the receiver gets no call.
#![cfg(feature = "browser-tests")]

#[path = "support/job.rs"]
mod job;
#[path = "support/receiver.rs"]
mod receiver;

use job::{Job, TOKEN};
use receiver::{logheal, point_receivers, Server};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const EXAMPLE: &str = include_str!("../examples/checkout-outage.jsonl");
const PAYMENT: &str = "cross-service-503-payment-20260314T100302.003Z";

fn chromium() -> String {
    std::env::var("LOGHEAL_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// Runs headless Chromium with a fresh profile and `args`; its stdout.
fn browse(tag: &str, args: &[&str]) -> String {
    let profile =
        std::env::temp_dir().join(format!("logheal-chromium-{tag}-{}", std::process::id()));
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--timeout=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{} does not run ({e}): scripts/test.sh installs it",
                chromium()
            )
        });
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The DOM Chromium built from a page (after parsing and layout).
fn dom(tag: &str, url: &str) -> String {
    browse(tag, &["--dump-dom", url])
}

fn job(server: &Server) -> Job {
    let mut cmd = logheal();
    point_receivers(&mut cmd, &server.base);
    cmd.arg("run");
    Job::start(cmd)
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn the_example_incident_and_its_actions_render_in_chromium() {
    let server = Server::start(&[]);
    let mut job = job(&server);
    // The payment outage begins at 10:03:02.
    job.write_until(
        EXAMPLE,
        "2026-03-14T10:03:10",
        "the payment incident's restart",
        |j| {
            j.incidents().iter().any(|i| {
                i["id"] == PAYMENT
                    && i["actions"].as_array().is_some_and(|a| {
                        a.iter().any(|a| {
                            a["action"] == "restart-downstream" && a["outcome"] == "succeeded"
                        })
                    })
            })
        },
    );
    job.wait_until(
        "the payment incident restored with its failback done",
        |j| {
            j.incidents().iter().any(|i| {
                i["id"] == PAYMENT
                    && i["actions"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|a| a["action"] == "failback" && a["outcome"] == "succeeded")
            })
        },
    );

    let list = dom("list", &job.url("/incidents"));
    assert!(list.contains("<title>Incidents: 1 open</title>"), "{list}");
    let link = format!("href=\"/incidents/{PAYMENT}\"");
    assert!(list.contains(&link), "{list}");
    assert!(list.contains("data-state=\"RESTORED\""), "{list}");
    assert!(list.contains("root_service=payment"), "{list}");
    assert!(list.contains("root candidates: payment"), "{list}");
    // The three isolated 503s: suspicions that closed, in the history.
    assert_eq!(count(&list, "data-state=\"NORMAL\""), 3, "{list}");
    // An open incident keeps the page fresh without JavaScript.
    assert!(list.contains("http-equiv=\"refresh\""), "{list}");
    assert!(!list.contains("<script"), "{list}");

    let page = dom("incident", &job.url(&format!("/incidents/{PAYMENT}")));
    for state in ["SUSPECTED", "CONFIRMED", "RECOVERING", "RESTORED"] {
        assert!(
            page.contains(&format!("<span class=\"state {state}\">")),
            "{state}: {page}"
        );
    }
    assert_eq!(count(&page, "<li class=\"step\">"), 4, "{page}");
    for action in [
        "restart-downstream",
        "failover",
        "notify-recovering",
        "failback",
        "notify-restored",
    ] {
        assert!(
            page.contains(&format!("<b>{action}</b>")),
            "{action}: {page}"
        );
    }
    assert_eq!(count(&page, "data-outcome=\"succeeded\""), 5, "{page}");
    assert_eq!(count(&page, "<tr class=\"attempt\">"), 5, "{page}");
    assert!(page.contains("<td>200</td>"), "{page}");
    assert!(
        page.contains("upstream connect error: connection refused"),
        "{page}"
    );

    // On a phone: Chromium lays the page out at 390 px and paints it.
    let shot = std::env::temp_dir().join(format!("logheal-phone-{}.png", std::process::id()));
    browse(
        "phone",
        &[
            "--window-size=390,844",
            &format!("--screenshot={}", shot.display()),
            &job.url(&format!("/incidents/{PAYMENT}")),
        ],
    );
    let png = std::fs::read(&shot).expect("a screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    assert_eq!(width, 390);
    let _ = std::fs::remove_file(PathBuf::from(&shot));
    assert!(job.finish().success());
}

#[test]
fn a_silence_made_with_the_cli_shows_on_the_page_and_no_receiver_is_called() {
    let server = Server::start(&[]);
    let mut job = job(&server);
    let out = logheal()
        .args([
            "silence",
            "add",
            "--match",
            "root_service=payment",
            "--for",
            "2h",
        ])
        .args(["--comment", "db migration", "--url", &job.url("")])
        .env("LOGHEAL_API_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();

    job.cascade("t-1", "payment");
    job.wait_until("the incident's actions to be silenced", |j| {
        j.incidents().iter().any(|i| {
            i["key"]["root_service"] == "payment"
                && i["actions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|a| a["outcome"] == "silenced")
                    .count()
                    >= 3
        })
    });
    let id_of_incident = job
        .incidents()
        .iter()
        .find(|i| i["key"]["root_service"] == "payment")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let list = dom("silenced-list", &job.url("/incidents"));
    assert!(list.contains(&format!("silenced by {id}")), "{list}");
    assert!(
        list.contains("db migration") && list.contains("<td>active</td>"),
        "{list}"
    );
    let page = dom(
        "silenced-page",
        &job.url(&format!("/incidents/{id_of_incident}")),
    );
    assert!(
        page.contains(&format!("silenced by {id}: its actions are not called")),
        "{page}"
    );
    assert!(page.contains("data-outcome=\"silenced\""), "{page}");
    assert!(page.contains("<span class=\"state RECOVERING\">"), "{page}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    assert!(job.finish().success());
}
