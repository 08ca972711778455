//! What receivers are sent: the webhook JSON that describes the incident, and Slack Block
//! Kit messages (firing for opened / confirmed / recovering / escalated, resolved for
//! restored).

use crate::incident::IncidentState;
use crate::record::Labels;
use serde::Serialize;

/// The incident as one action call sees it.
#[derive(Debug, Clone, Serialize)]
pub struct IncidentView {
    pub incident: String,
    pub rule: String,
    pub key: Labels,
    pub state: IncidentState,
    pub previous_state: IncidentState,
    /// Why the incident entered this state.
    pub reason: String,
    pub action: String,
    pub idempotency_key: String,
    /// Services seen failing in its chains, in order of first appearance.
    pub services: Vec<String>,
    /// The incident's root service (the first to fail in its chains).
    pub root_cause: Option<String>,
    /// Services ranked by evidence as the root cause, best first, with their scores.
    pub root_candidates: Vec<crate::registry::Candidate>,
    pub sample_trace_ids: Vec<String>,
    pub top_templates: Vec<String>,
    pub counts: Counts,
    pub first_seen: String,
    pub last_seen: String,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Counts {
    pub chains: u32,
    pub failed_events: u64,
    pub suspicions: u32,
}

/// The webhook body: the view as JSON.
pub fn webhook_body(view: &IncidentView) -> String {
    serde_json::to_string(view).expect("views serialise")
}

/// A Slack incoming-webhook message with blocks, and a plain-text fallback.
pub fn slack_body(view: &IncidentView) -> String {
    let (icon, verb) = match view.state {
        IncidentState::Restored => (":large_green_circle:", "RESOLVED"),
        IncidentState::Escalated => (":rotating_light:", "ESCALATED — needs a human"),
        IncidentState::Recovering => (":large_orange_circle:", "RECOVERING"),
        IncidentState::Confirmed => (":red_circle:", "CONFIRMED"),
        IncidentState::Suspected => (":large_yellow_circle:", "SUSPECTED"),
        IncidentState::Normal => (":white_circle:", "CLEARED"),
    };
    // Everything below but the fixed labels comes from logs (services, templates) or
    // rule files: it is escaped for mrkdwn (no `<!channel>`, no `<url|link>`), kept out
    // of code-fence breakouts, and cut to Slack's limits with "…".
    let root = mrkdwn(view.root_cause.as_deref().unwrap_or("unknown"), 200);
    let headline = cut(
        &format!(
            "{verb}: {} — {}",
            view.rule,
            view.root_cause.as_deref().unwrap_or("unknown")
        ),
        150,
    );
    let field = |label: &str, value: String| serde_json::json!({"type": "mrkdwn", "text": format!("*{label}*\n{value}")});
    let services: Vec<&str> = view.services.iter().map(String::as_str).collect();
    let mut blocks = vec![
        serde_json::json!({"type": "header", "text": {"type": "plain_text", "text": headline}}),
        serde_json::json!({"type": "section", "fields": [
            field("What failed", mrkdwn(&services.join(" → "), 1_500)),
            field("Root cause candidates", if view.root_candidates.is_empty() {
                root.clone()
            } else {
                mrkdwn(
                    &view
                        .root_candidates
                        .iter()
                        .take(3)
                        .map(|c| format!("{} ({:.0})", c.service, c.score))
                        .collect::<Vec<_>>()
                        .join(", "),
                    500,
                )
            }),
            field("Since", view.first_seen.clone()),
            field("Last seen", view.last_seen.clone()),
        ]}),
        serde_json::json!({"type": "section", "text": {"type": "mrkdwn", "text": format!(
            "*Why:* {}\n*Chains:* {}  *Failed events:* {}",
            mrkdwn(&view.reason, 2_000), view.counts.chains, view.counts.failed_events
        )}}),
    ];
    if !view.top_templates.is_empty() {
        let templates = mrkdwn(&view.top_templates.join("\n"), 2_500).replace('`', "ˋ");
        blocks.push(
            serde_json::json!({"type": "section", "text": {"type": "mrkdwn", "text": format!(
                "*Top templates*\n```{templates}```"
            )}}),
        );
    }
    blocks.push(
        serde_json::json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
            "{} · {} → {} · logheal action `{}`",
            mrkdwn(&view.incident, 500), view.previous_state.as_str(), view.state.as_str(),
            mrkdwn(&view.action, 200).replace('`', "ˋ")
        )}]}),
    );
    let fallback = format!("{icon} {}", mrkdwn(&headline, 200));
    serde_json::json!({"text": fallback, "blocks": blocks}).to_string()
}

/// A Slack message of one line of text (escaped and cut like every other).
pub fn slack_notice(text: &str) -> String {
    let text = mrkdwn(text, 2_900);
    serde_json::json!({
        "text": text,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
    })
    .to_string()
}

/// `s` escaped for Slack mrkdwn (`&`, `<`, `>`), cut to at most `max` characters.
pub fn mrkdwn(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max) + 8);
    for (n, c) in s.chars().enumerate() {
        if n >= max {
            out.push('…');
            break;
        }
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` cut to at most `max` characters, with "…" when it was longer.
fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max.saturating_sub(1)) {
        Some((i, _)) if s.chars().count() > max => format!("{}…", &s[..i]),
        _ => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(state: IncidentState) -> IncidentView {
        let mut key = Labels::new();
        key.insert("root_service".into(), "payment".into());
        IncidentView {
            incident: "cross-service-503-payment-20260314T100302.003Z".into(),
            rule: "cross-service-503".into(),
            key,
            state,
            previous_state: IncidentState::Suspected,
            reason: "chain matched the rule's thresholds".into(),
            action: "restart-downstream".into(),
            idempotency_key:
                "cross-service-503-payment-20260314T100302.003Z/2-confirmed/restart-downstream"
                    .into(),
            services: vec!["payment".into(), "checkout".into(), "gateway".into()],
            root_cause: Some("payment".into()),
            root_candidates: vec![crate::registry::Candidate {
                service: "payment".into(),
                score: 9.0,
            }],
            sample_trace_ids: vec!["4bf92f3577b34da6".into()],
            top_templates: vec!["upstream connect error: connection refused".into()],
            counts: Counts {
                chains: 3,
                failed_events: 9,
                suspicions: 1,
            },
            first_seen: "2026-03-14T10:03:02.003Z".into(),
            last_seen: "2026-03-14T10:03:05.003Z".into(),
            dry_run: false,
        }
    }

    #[test]
    fn webhook_body_describes_the_incident() {
        let body: serde_json::Value =
            serde_json::from_str(&webhook_body(&view(IncidentState::Confirmed))).unwrap();
        assert_eq!(body["state"], "CONFIRMED");
        assert_eq!(body["previous_state"], "SUSPECTED");
        assert_eq!(body["key"]["root_service"], "payment");
        assert_eq!(body["root_cause"], "payment");
        assert_eq!(body["services"][2], "gateway");
        assert_eq!(body["counts"]["chains"], 3);
        assert_eq!(body["dry_run"], false);
    }

    #[test]
    fn slack_messages_fire_and_resolve() {
        let firing: serde_json::Value =
            serde_json::from_str(&slack_body(&view(IncidentState::Confirmed))).unwrap();
        assert!(firing["text"]
            .as_str()
            .unwrap()
            .contains("CONFIRMED: cross-service-503 — payment"));
        let blocks = firing["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        assert!(blocks[1]["fields"][0]["text"]
            .as_str()
            .unwrap()
            .contains("payment → checkout → gateway"));
        assert!(firing.to_string().contains("connection refused"));
        let resolved: serde_json::Value =
            serde_json::from_str(&slack_body(&view(IncidentState::Restored))).unwrap();
        assert!(resolved["text"].as_str().unwrap().contains("RESOLVED"));
    }

    #[test]
    fn slack_text_from_logs_is_escaped_and_bounded() {
        let mut v = view(IncidentState::Confirmed);
        v.services = vec!["<!channel>".into(), "checkout".into()];
        v.root_cause = Some("<https://evil.example|click here>".into());
        v.top_templates = vec!["``` break out ``` & <!here>".into(), "x".repeat(100_000)];
        let body = slack_body(&v);
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        // Every text Slack reads as mrkdwn (the header is plain text, shown as is).
        let mut mrkdwn_texts = vec![parsed["text"].as_str().unwrap().to_string()];
        for block in parsed["blocks"].as_array().unwrap() {
            let texts = [&block["text"], &block["fields"], &block["elements"]];
            for t in texts {
                match t {
                    serde_json::Value::Array(items) => mrkdwn_texts.extend(
                        items
                            .iter()
                            .map(|i| i["text"].as_str().unwrap().to_string()),
                    ),
                    serde_json::Value::Object(_) if t["type"] == "mrkdwn" => {
                        mrkdwn_texts.push(t["text"].as_str().unwrap().to_string())
                    }
                    _ => {}
                }
            }
        }
        let all = mrkdwn_texts.join("\n");
        assert!(
            !all.contains("<!channel>") && !all.contains("<!here>"),
            "{all}"
        );
        assert!(!all.contains("<https://evil"), "{all}");
        assert!(all.contains("&lt;!channel&gt;"));
        assert!(!all.contains("``` break"), "no code-fence breakout");
        assert!(body.len() < 12_000, "bounded: {} bytes", body.len());
        let header = parsed["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(header.chars().count() <= 151, "{header}");
    }
}
