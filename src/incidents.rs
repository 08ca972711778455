//! `logheal incidents` and `logheal silence`: a running job's incidents and silences
//! from the command line, in the mould of `amtool`, over the job's API
//! (`--url`, default `$LOGHEAL_URL` or `http://127.0.0.1:9464`). Writes send the token
//! in `LOGHEAL_API_TOKEN`.

use crate::output::Output;
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Client {
    /// The running job's address (its `--listen`).
    #[arg(
        long,
        global = true,
        env = "LOGHEAL_URL",
        default_value = "http://127.0.0.1:9464"
    )]
    url: String,
    /// text for people, json for scripts.
    #[arg(long, global = true, value_enum, default_value = "text")]
    output: Output,
}

#[derive(clap::Args)]
pub struct IncidentsArgs {
    #[command(flatten)]
    client: Client,
    #[command(subcommand)]
    command: Option<IncidentsCommand>,
}

#[derive(clap::Subcommand)]
enum IncidentsCommand {
    /// One incident: its timeline, actions with their attempts, evidence.
    Show { id: String },
}

#[derive(clap::Args)]
pub struct SilenceArgs {
    #[command(flatten)]
    client: Client,
    #[command(subcommand)]
    command: SilenceCommand,
}

#[derive(clap::Subcommand)]
enum SilenceCommand {
    /// Silence incidents whose labels match every `--match` (labels: rule, incident,
    /// root_service): they still move through their states, but no receiver is called.
    Add {
        /// NAME=VALUE, NAME!=VALUE or NAME=~REGEX (repeatable; all must match).
        #[arg(long = "match", value_name = "MATCHER", required = true)]
        matchers: Vec<String>,
        /// How long, from now (e.g. 2h, 30m).
        #[arg(long = "for", value_name = "DURATION", conflicts_with = "until")]
        duration: Option<String>,
        /// Until when (RFC 3339).
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        #[arg(long, default_value = "")]
        comment: String,
        /// Who silences [default: $USER].
        #[arg(long)]
        author: Option<String>,
    },
    /// Active, pending and recently ended silences.
    List,
    /// End a silence now.
    Expire { id: String },
}

/// A small blocking client of the job's API.
struct Api {
    base: String,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Api {
    fn new(base: &str) -> Result<Api> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Api {
            base: base.trim_end_matches('/').to_string(),
            http,
            runtime,
        })
    }

    /// Sends a request; the JSON answer, or the API's error.
    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method.clone(), &url);
        if method != reqwest::Method::GET {
            if let Some(token) = std::env::var("LOGHEAL_API_TOKEN")
                .ok()
                .filter(|t| !t.is_empty())
            {
                request = request.bearer_auth(token);
            }
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let (status, text) = self
            .runtime
            .block_on(async {
                let response = request.send().await?;
                let status = response.status();
                Ok::<_, reqwest::Error>((status, response.text().await?))
            })
            .with_context(|| format!("cannot reach the job at {}", self.base))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let message = value
                .get("error")
                .and_then(Value::as_str)
                .map_or_else(|| value.to_string(), str::to_string);
            bail!("{method} {path}: {status}: {message}");
        }
        Ok(value)
    }
}

/// Percent-encodes an id for a path segment.
fn segment(id: &str) -> String {
    crate::page::url_segment(id)
}

pub fn incidents(args: &IncidentsArgs) -> Result<ExitCode> {
    let api = Api::new(&args.client.url)?;
    match &args.command {
        None => {
            let answer = api.call(reqwest::Method::GET, "/api/v1/incidents", None)?;
            match args.client.output {
                Output::Json => println!("{answer}"),
                Output::Text => print_list(&answer),
            }
        }
        Some(IncidentsCommand::Show { id }) => {
            let path = format!("/api/v1/incidents/{}", segment(id));
            let answer = api.call(reqwest::Method::GET, &path, None)?;
            match args.client.output {
                Output::Json => println!("{answer}"),
                Output::Text => print_incident(&answer),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn labels(incident: &Value) -> String {
    let mut parts = vec![format!("rule={}", s(incident, "rule"))];
    if let Some(key) = incident.get("key").and_then(Value::as_object) {
        for (k, v) in key {
            parts.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    parts.join(",")
}

fn candidates(incident: &Value, n: usize) -> String {
    let ranked: Vec<String> = incident
        .get("root_candidates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .take(n)
        .map(|c| {
            format!(
                "{}({})",
                s(c, "service"),
                c.get("score").and_then(Value::as_f64).unwrap_or(0.0)
            )
        })
        .collect();
    if ranked.is_empty() {
        "-".into()
    } else {
        ranked.join(",")
    }
}

/// Text from the job is escaped before it reaches the terminal.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

fn print_list(answer: &Value) {
    let incidents = answer
        .get("incidents")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if incidents.is_empty() {
        println!("no incidents");
        return;
    }
    println!(
        "{:<11} {:<6} {:<24} {:<34} {:<28} ID",
        "STATE", "OPEN", "LAST SEEN", "LABELS", "ROOT CANDIDATES"
    );
    for i in &incidents {
        let mut state = s(i, "state").to_string();
        if i.get("silenced_by").is_some() {
            state.push('*');
        }
        println!(
            "{:<11} {:<6} {:<24} {:<34} {:<28} {}",
            state,
            if i.get("open") == Some(&Value::Bool(true)) {
                "open"
            } else {
                "closed"
            },
            clean(s(i, "last_seen")),
            clean(&labels(i)),
            clean(&candidates(i, 3)),
            clean(s(i, "id"))
        );
    }
    if incidents.iter().any(|i| i.get("silenced_by").is_some()) {
        println!("(* silenced: its actions are not called)");
    }
}

fn print_incident(i: &Value) {
    println!("incident     {}", clean(s(i, "id")));
    println!(
        "state        {}{}",
        s(i, "state"),
        if i.get("open") == Some(&Value::Bool(true)) {
            " (open)"
        } else {
            " (closed)"
        }
    );
    if let Some(silence) = i.get("silenced_by").and_then(Value::as_str) {
        println!("silenced by  {}", clean(silence));
    }
    println!("labels       {}", clean(&labels(i)));
    println!("first seen   {}", clean(s(i, "first_seen")));
    println!("last seen    {}", clean(s(i, "last_seen")));
    if let Some(c) = i.get("counts") {
        println!(
            "counts       {} chain(s), {} failed event(s), {} suspicion(s)",
            c["chains"], c["failed_events"], c["suspicions"]
        );
    }
    println!("candidates   {}", clean(&candidates(i, 5)));
    let list = |key: &str| -> Vec<String> {
        i.get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(clean)
            .collect()
    };
    println!("traces       {}", list("sample_trace_ids").join(", "));
    for t in list("top_templates") {
        println!("template     {t}");
    }
    println!("timeline:");
    for step in i
        .get("timeline")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        println!(
            "  {}  {} → {}  {}",
            clean(s(step, "at")),
            s(step, "from"),
            s(step, "to"),
            clean(s(step, "reason"))
        );
    }
    println!("actions:");
    for a in i
        .get("actions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let outcome = match a.get("outcome").and_then(Value::as_str) {
            Some(o) => o.to_string(),
            None if a.get("dry_run") == Some(&Value::Bool(true)) => "dry run".into(),
            None => "in flight".into(),
        };
        println!(
            "  {}  {} → {} ({}): {} {}",
            clean(s(a, "at")),
            clean(s(a, "action")),
            clean(s(a, "receiver")),
            s(a, "state"),
            outcome,
            clean(s(a, "detail"))
        );
        for t in a
            .get("attempts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            println!(
                "      attempt {} at {}: {} in {} ms {}",
                t["attempt"],
                clean(s(t, "at")),
                t.get("status")
                    .and_then(Value::as_u64)
                    .map_or("no answer".to_string(), |s| s.to_string()),
                t["latency_ms"],
                clean(t.get("error").and_then(Value::as_str).unwrap_or(""))
            );
        }
    }
}

pub fn silence(args: &SilenceArgs) -> Result<ExitCode> {
    let api = Api::new(&args.client.url)?;
    let answer = match &args.command {
        SilenceCommand::Add {
            matchers,
            duration,
            until,
            comment,
            author,
        } => {
            for m in matchers {
                logheal_pipeline::silence::Matcher::parse(m)?;
            }
            let mut body = serde_json::json!({
                "matchers": matchers,
                "comment": comment,
                "created_by": author.clone().or_else(|| std::env::var("USER").ok()).unwrap_or_default(),
            });
            match (duration, until) {
                (Some(d), None) => body["duration"] = d.clone().into(),
                (None, Some(t)) => body["ends_at"] = t.clone().into(),
                _ => bail!("give --for DURATION or --until TIME"),
            }
            let answer = api.call(reqwest::Method::POST, "/api/v1/silences", Some(body))?;
            if let Output::Text = args.client.output {
                println!("{}", s(&answer, "id"));
                return Ok(ExitCode::SUCCESS);
            }
            answer
        }
        SilenceCommand::List => {
            let answer = api.call(reqwest::Method::GET, "/api/v1/silences", None)?;
            if let Output::Text = args.client.output {
                print_silences(&answer);
                return Ok(ExitCode::SUCCESS);
            }
            answer
        }
        SilenceCommand::Expire { id } => {
            let path = format!("/api/v1/silences/{}", segment(id));
            let answer = api.call(reqwest::Method::DELETE, &path, None)?;
            if let Output::Text = args.client.output {
                println!("expired {}", s(&answer, "id"));
                return Ok(ExitCode::SUCCESS);
            }
            answer
        }
    };
    println!("{answer}");
    Ok(ExitCode::SUCCESS)
}

fn print_silences(answer: &Value) {
    let silences = answer
        .get("silences")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if silences.is_empty() {
        println!("no silences");
        return;
    }
    println!(
        "{:<26} {:<8} {:<21} {:<40} COMMENT",
        "ID", "STATUS", "ENDS", "MATCHERS"
    );
    for x in &silences {
        println!(
            "{:<26} {:<8} {:<21} {:<40} {}",
            clean(s(x, "id")),
            s(x, "status"),
            clean(s(x, "ends_at")),
            clean(s(x, "match")),
            clean(s(x, "comment"))
        );
    }
}
