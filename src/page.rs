//! The incident pages (`/incidents`, `/incidents/{id}`): HTML rendered by the binary,
//! readable without JavaScript (there is none), on a phone as on a desk. A page with an
//! open incident reloads itself every few seconds (`<meta http-equiv="refresh">`).
//! Everything that came from the logs is escaped.

use crate::book::{Action, Page};
use logheal_pipeline::incident::IncidentState;
use logheal_pipeline::silence::{self, Silence};
use std::fmt::Write;

/// Seconds between reloads of a page that shows an open incident.
const REFRESH_SECONDS: u32 = 5;

const STYLE: &str = "
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}
header{background:#1d2330;color:#fff;padding:.6rem 1rem;display:flex;gap:1rem;align-items:baseline;flex-wrap:wrap}
header a{color:#fff}
main{max-width:60rem;margin:0 auto;padding:.5rem 1rem 2rem}
h1{font-size:1.15rem;margin:0}
h2{font-size:1.05rem;margin:1.4rem 0 .5rem}
.card{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:.6rem .8rem;margin:.5rem 0}
.card a.title{font-weight:600;word-break:break-all}
.meta{color:#566;font-size:.88rem}
.state{display:inline-block;border-radius:4px;padding:0 .4rem;font-size:.8rem;font-weight:700;color:#fff;background:#778}
.SUSPECTED{background:#b7791f}.CONFIRMED{background:#c53030}.RECOVERING{background:#2b6cb0}
.ESCALATED{background:#6b21a8}.RESTORED{background:#2f855a}.NORMAL{background:#718096}
.silenced{display:inline-block;border:1px dashed #6b21a8;color:#6b21a8;border-radius:4px;padding:0 .4rem;font-size:.8rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:.3rem .4rem;border-bottom:1px solid #e6e8ec;vertical-align:top}
.scroll{overflow-x:auto}
code{font-size:.85rem;word-break:break-word}
ol.timeline{padding-left:1.2rem}ol.timeline li{margin:.3rem 0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem .8rem;margin:0}dt{color:#566}dd{margin:0;word-break:break-word}
@media (max-width:40rem){dl{grid-template-columns:1fr}dt{margin-top:.4rem}}
";

/// HTML-escapes text that came from the logs or the operators.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a path segment (incident ids hold `%` escapes of their own).
pub fn url_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn head(title: &str, refresh: bool) -> String {
    let refresh = if refresh {
        format!("<meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">")
    } else {
        String::new()
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{refresh}\
         <title>{}</title><style>{STYLE}</style></head><body>\
         <header><h1><a href=\"/incidents\">logheal</a></h1><span>{}</span></header><main>",
        esc(title),
        esc(title)
    )
}

const FOOT: &str = "</main></body></html>";

fn state_badge(state: IncidentState) -> String {
    let s = state.as_str();
    format!("<span class=\"state {s}\">{s}</span>")
}

fn labels(page: &Page) -> String {
    let mut parts = vec![format!("rule={}", page.rule)];
    for (k, v) in &page.key {
        parts.push(format!("{k}={}", v.as_str().unwrap_or_default()));
    }
    esc(&parts.join(", "))
}

fn candidates(page: &Page, n: usize) -> String {
    let ranked: Vec<String> = page
        .root_candidates
        .iter()
        .take(n)
        .map(|c| format!("{} ({:.0})", c.service, c.score))
        .collect();
    esc(&ranked.join(", "))
}

/// `/incidents`: open incidents, then the recent history, then the silences.
pub fn list(pages: &[Page], silences: &[Silence], now_ms: i64) -> String {
    let open = pages.iter().filter(|p| p.open).count();
    let mut html = head(&format!("Incidents: {open} open"), open > 0);
    let (live, closed): (Vec<&Page>, Vec<&Page>) = pages.iter().partition(|p| p.open);
    let _ = write!(html, "<h2 id=\"open\">Open ({})</h2>", live.len());
    if live.is_empty() {
        html.push_str("<p class=\"meta\">No open incident.</p>");
    }
    for page in live {
        card(&mut html, page);
    }
    let _ = write!(html, "<h2 id=\"recent\">Recent ({})</h2>", closed.len());
    if closed.is_empty() {
        html.push_str("<p class=\"meta\">No closed incident yet.</p>");
    }
    for page in closed {
        card(&mut html, page);
    }
    html.push_str("<h2 id=\"silences\">Silences</h2>");
    let shown: Vec<&Silence> = silences.iter().collect();
    if shown.is_empty() {
        html.push_str(
            "<p class=\"meta\">None. <code>logheal silence add --match rule=NAME --for 2h \
             --comment WHY</code> adds one.</p>",
        );
    } else {
        html.push_str(
            "<div class=\"scroll\"><table><tr><th>id</th><th>matchers</th><th>status</th>\
             <th>ends</th><th>comment</th></tr>",
        );
        for s in shown {
            let _ = write!(
                html,
                "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&s.id),
                esc(&s.describe()),
                silence::status(s, now_ms),
                esc(&rfc3339_ms(s.ends_at)),
                esc(&s.comment)
            );
        }
        html.push_str("</table></div>");
    }
    html.push_str(FOOT);
    html
}

fn card(html: &mut String, page: &Page) {
    let _ = write!(
        html,
        "<div class=\"card incident\" data-state=\"{}\">{} <a class=\"title\" href=\"/incidents/{}\">{}</a>",
        page.state.as_str(),
        state_badge(page.state),
        esc(&url_segment(&page.id)),
        esc(&page.id)
    );
    if let Some(s) = &page.silenced_by {
        let _ = write!(
            html,
            " <span class=\"silenced\">silenced by {}</span>",
            esc(s)
        );
    }
    let _ = write!(
        html,
        "<div class=\"meta\">{} · first seen {} · last seen {} · {} chain(s), {} failed event(s)</div>",
        labels(page),
        esc(&page.first_seen),
        esc(&page.last_seen),
        page.counts.chains,
        page.counts.failed_events
    );
    if !page.root_candidates.is_empty() {
        let _ = write!(html, "<div>root candidates: {}</div>", candidates(page, 3));
    }
    html.push_str("</div>");
}

/// `/incidents/{id}`: one incident with its timeline, actions and evidence.
pub fn incident(page: &Page) -> String {
    let mut html = head(&format!("Incident {}", page.id), page.open);
    let _ = write!(
        html,
        "<div class=\"card\">{} {}",
        state_badge(page.state),
        if page.open { "open" } else { "closed" }
    );
    if let Some(s) = &page.silenced_by {
        let _ = write!(
            html,
            " <span class=\"silenced\">silenced by {}: its actions are not called</span>",
            esc(s)
        );
    }
    let _ = write!(
        html,
        "<dl><dt>incident</dt><dd><code>{}</code></dd><dt>labels</dt><dd>{}</dd>\
         <dt>first seen</dt><dd>{}</dd><dt>last seen</dt><dd>{}</dd>\
         <dt>counts</dt><dd>{} chain(s), {} failed event(s), {} suspicion(s)</dd>\
         <dt>services</dt><dd>{}</dd><dt>root candidates</dt><dd>{}</dd>",
        esc(&page.id),
        labels(page),
        esc(&page.first_seen),
        esc(&page.last_seen),
        page.counts.chains,
        page.counts.failed_events,
        page.counts.suspicions,
        esc(&page.services.join(", ")),
        candidates(page, 5)
    );
    if let Some(probe) = &page.last_probe {
        let _ = write!(html, "<dt>last probe</dt><dd>{}</dd>", esc(probe));
    }
    html.push_str("</dl></div>");

    html.push_str("<h2>Timeline</h2><ol class=\"timeline\">");
    for step in &page.timeline {
        let _ = write!(
            html,
            "<li class=\"step\"><span class=\"meta\">{}</span> {} → {}<br>{}</li>",
            esc(&step.at),
            state_badge(step.from),
            state_badge(step.to),
            esc(&step.reason)
        );
    }
    html.push_str("</ol>");
    if page.steps_dropped > 0 {
        let _ = write!(
            html,
            "<p class=\"meta\">{} later step(s) not kept.</p>",
            page.steps_dropped
        );
    }

    html.push_str("<h2>Actions</h2>");
    if page.actions.is_empty() {
        html.push_str("<p class=\"meta\">None yet.</p>");
    }
    for action in &page.actions {
        action_card(&mut html, action);
    }

    html.push_str("<h2>Top templates</h2><ul>");
    for t in &page.top_templates {
        let _ = write!(html, "<li><code>{}</code></li>", esc(t));
    }
    html.push_str("</ul><h2>Sample traces</h2><ul>");
    for t in &page.sample_trace_ids {
        let _ = write!(html, "<li><code>{}</code></li>", esc(t));
    }
    let _ = write!(
        html,
        "</ul><p class=\"meta\"><a href=\"/api/v1/incidents/{}\">JSON</a></p>",
        esc(&url_segment(&page.id))
    );
    html.push_str(FOOT);
    html
}

fn action_card(html: &mut String, action: &Action) {
    let outcome = match (&action.outcome, action.dry_run) {
        (Some(o), _) => o.as_str(),
        (None, true) => "dry run (not called)",
        (None, false) => "in flight",
    };
    let _ = write!(
        html,
        "<div class=\"card action\" data-outcome=\"{}\"><b>{}</b> → {} <span class=\"meta\">({} action, due {})</span>\
         <div>outcome: <b class=\"outcome\">{}</b> {}</div>",
        esc(outcome),
        esc(&action.action),
        esc(&action.receiver),
        action.state.as_str(),
        esc(&action.at),
        esc(outcome),
        esc(&action.detail)
    );
    if !action.attempts.is_empty() {
        html.push_str(
            "<div class=\"scroll\"><table class=\"attempts\"><tr><th>#</th><th>at</th><th>status</th><th>latency</th><th>error</th></tr>",
        );
        for a in &action.attempts {
            let _ = write!(
                html,
                "<tr class=\"attempt\"><td>{}</td><td>{}</td><td>{}</td><td>{} ms</td><td>{}</td></tr>",
                a.attempt,
                esc(&a.at),
                a.status.map_or("-".to_string(), |s| s.to_string()),
                a.latency_ms,
                esc(a.error.as_deref().unwrap_or(""))
            );
        }
        html.push_str("</table></div>");
    }
    let _ = write!(
        html,
        "<div class=\"meta\">idempotency key <code>{}</code></div></div>",
        esc(&action.idempotency_key)
    );
}

/// A page for what is not there.
pub fn not_found(what: &str) -> String {
    let mut html = head("Not found", false);
    let _ = write!(
        html,
        "<p>{} is not (or no longer) known here. <a href=\"/incidents\">All incidents</a></p>",
        esc(what)
    );
    html.push_str(FOOT);
    html
}

/// Milliseconds since the epoch as RFC 3339.
pub fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_the_logs_is_escaped() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(esc("a\u{1b}[2Jb"), "a\u{FFFD}[2Jb");
    }

    #[test]
    fn ids_are_one_path_segment() {
        assert_eq!(
            url_segment("cross-service-503-pay%20ment-20260101T000000.000Z"),
            "cross-service-503-pay%2520ment-20260101T000000.000Z"
        );
        assert_eq!(url_segment("a/b?c"), "a%2Fb%3Fc");
    }
}
