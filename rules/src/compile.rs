//! Validation: raw rule files → [`RuleSet`], collecting every error with its location
//! instead of stopping at the first.

use crate::model::*;
use crate::schema::{self, in_file_order, RuleFile, S};
use crate::Diagnostic;
use globset::{Glob, GlobMatcher};
use logheal_parsers::{FieldNames, Level};
use regex::Regex;
use std::collections::HashSet;
use std::time::Duration;

/// Defaults for keys a rule may leave out.
pub const DEFAULT_CHAINS_WITHIN: Duration = Duration::from_secs(60);
pub const DEFAULT_QUIET_PERIOD: Duration = Duration::from_secs(60);
pub const DEFAULT_REOPEN_WITHIN: Duration = Duration::from_secs(300);
pub const DEFAULT_ESCALATE_AFTER: Duration = Duration::from_secs(600);
pub const DEFAULT_RECEIVER_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_RETRIES: u32 = 3;

/// One parsed file, named for messages.
pub(crate) struct SourceFile {
    pub name: String,
    pub content: RuleFile,
}

struct Compiler<'f> {
    files: &'f [SourceFile],
    errors: Vec<Diagnostic>,
    field_names: FieldNames,
}

/// Checks and compiles the files as one set (receivers are shared between files).
pub(crate) fn compile(files: &[SourceFile]) -> Result<RuleSet, Vec<Diagnostic>> {
    let mut c = Compiler {
        files,
        errors: Vec::new(),
        field_names: FieldNames::default(),
    };
    let mut receivers = c.receivers();
    let mut rules = Vec::new();
    let mut names = HashSet::new();
    for (fi, file) in files.iter().enumerate() {
        for spec in &file.content.rules {
            if !names.insert(spec.name.as_str().to_owned()) {
                c.error(
                    fi,
                    &spec.name,
                    format!("rule {:?} is defined twice", &*spec.name),
                );
            }
            if let Some(rule) = c.rule(fi, spec, &mut receivers) {
                rules.push(rule);
            }
        }
    }
    // A rule may yield only to another rule of the set (a typo would never yield).
    for (fi, file) in files.iter().enumerate() {
        for spec in &file.content.rules {
            for target in &spec.incident.yield_to {
                if !names.contains(target.as_str()) || **target == *spec.name {
                    c.error(
                        fi,
                        target,
                        format!(
                            "yield_to: {:?} is not another rule of this set",
                            target.as_str()
                        ),
                    );
                }
            }
        }
    }
    if rules.is_empty() && c.errors.is_empty() {
        let file = files
            .first()
            .map_or("<rules>".to_string(), |f| f.name.clone());
        c.errors.push(Diagnostic::new(
            Location {
                file,
                line: 1,
                col: 1,
            },
            "no rules defined",
        ));
    }
    if c.errors.is_empty() {
        Ok(RuleSet {
            rules,
            receivers,
            field_names: c.field_names,
        })
    } else {
        Err(c.errors)
    }
}

pub(crate) fn location_of<T>(file: &str, s: &S<T>) -> Location {
    let (line, col) = s.span().start().map_or((1, 1), |m| (m.line(), m.column()));
    Location {
        file: file.to_string(),
        line,
        col,
    }
}

impl<'f> Compiler<'f> {
    fn error<T>(&mut self, file: usize, at: &S<T>, message: impl Into<String>) {
        let loc = location_of(&self.files[file].name, at);
        self.errors.push(Diagnostic::new(loc, message));
    }

    fn duration(&mut self, file: usize, s: &S<String>) -> Option<Duration> {
        match humantime::parse_duration(s.trim()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(
                    file,
                    s,
                    format!(
                        "bad duration {:?}: {e} (write e.g. 500ms, 30s, 5m, 1h)",
                        &**s
                    ),
                );
                None
            }
        }
    }

    fn duration_or(&mut self, file: usize, s: &Option<S<String>>, default: Duration) -> Duration {
        s.as_ref()
            .map_or(Some(default), |s| self.duration(file, s))
            .unwrap_or(default)
    }

    fn receivers(&mut self) -> Vec<Receiver> {
        let mut out: Vec<Receiver> = Vec::new();
        for (fi, file) in self.files.iter().enumerate() {
            for (name, spec) in in_file_order(&file.content.receivers) {
                if out.iter().any(|r| r.name == **name) {
                    self.error(
                        fi,
                        name,
                        format!("receiver {:?} is declared twice", &**name),
                    );
                    continue;
                }
                if let Some(r) = self.receiver(fi, name, spec) {
                    out.push(r);
                }
            }
        }
        out
    }

    fn receiver(
        &mut self,
        fi: usize,
        name: &S<String>,
        spec: &schema::ReceiverSpec,
    ) -> Option<Receiver> {
        let kind = match spec.kind.as_str() {
            "webhook" => Some(ReceiverKind::Webhook),
            "slack" => Some(ReceiverKind::Slack),
            other => {
                self.error(
                    fi,
                    &spec.kind,
                    format!("unknown receiver type {other:?} (expected webhook or slack)"),
                );
                None
            }
        };
        if let Err(msg) = check_url(&spec.url) {
            self.error(fi, &spec.url, msg);
        }
        if let Some(secret) = &spec.secret {
            if !is_reference(secret) {
                self.error(
                    fi,
                    secret,
                    "secrets must come from the environment (${NAME}) or a file (file:/path), never the rule file",
                );
            } else if let Err(msg) = check_references(secret) {
                self.error(fi, secret, format!("secret: {msg}"));
            }
        }
        for (header, value) in in_file_order(&spec.headers) {
            if let Err(msg) = check_references(value) {
                self.error(fi, value, format!("header {:?}: {msg}", &**header));
            }
        }
        let method = spec
            .method
            .as_ref()
            .map_or("POST".to_string(), |m| m.to_ascii_uppercase());
        if !["POST", "PUT", "GET", "PATCH", "DELETE"].contains(&method.as_str()) {
            let at = spec.method.as_ref().expect("non-default method");
            self.error(fi, at, format!("unsupported method {method:?}"));
        }
        let timeout = self.duration_or(fi, &spec.timeout, DEFAULT_RECEIVER_TIMEOUT);
        if timeout.is_zero() {
            self.error(
                fi,
                spec.timeout.as_ref().expect("given"),
                "timeout must be above zero",
            );
        }
        Some(Receiver {
            location: location_of(&self.files[fi].name, name),
            name: name.to_string(),
            kind: kind?,
            url: spec.url.to_string(),
            method,
            timeout,
            retries: spec.retries.as_deref().copied().unwrap_or(DEFAULT_RETRIES),
            secret: spec.secret.as_ref().map(|s| s.to_string()),
            headers: in_file_order(&spec.headers)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    }

    fn rule(
        &mut self,
        fi: usize,
        spec: &schema::RuleSpec,
        receivers: &mut Vec<Receiver>,
    ) -> Option<Rule> {
        let before = self.errors.len();
        let name = spec.name.as_str();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            self.error(
                fi,
                &spec.name,
                format!("rule name {name:?} must be letters, digits, '-', '_' or '.'"),
            );
        }
        let select = self.selector(fi, &spec.select);
        let correlate = self.correlation(fi, &spec.correlate);
        let incident = self.incident(fi, spec, correlate.as_ref(), receivers);
        let actions = self.actions(fi, &spec.actions, receivers);
        if self.errors.len() > before {
            return None;
        }
        Some(Rule {
            name: name.to_string(),
            description: spec.description.clone().unwrap_or_default(),
            select: select?,
            correlate: correlate?,
            incident,
            actions,
            location: location_of(&self.files[fi].name, &spec.name),
        })
    }

    fn selector(&mut self, fi: usize, spec: &S<schema::SelectSpec>) -> Option<Selector> {
        let mut status = Vec::new();
        for s in &spec.status {
            match parse_status(s) {
                Some(range) => status.push(range),
                None if s.as_str() == "none" => status.push(NO_STATUS),
                None => self.error(
                    fi,
                    s,
                    format!(
                        "bad status {:?}: write a code from 100 to 599, a class like 5xx, or none",
                        &**s
                    ),
                ),
            }
        }
        let mut levels = Vec::new();
        for l in &spec.level {
            match Level::parse(l) {
                Level::Unknown => self.error(fi, l, format!("unknown level {:?}", &**l)),
                level => levels.push(level),
            }
        }
        let services: Vec<GlobMatcher> = spec
            .service
            .iter()
            .filter_map(|g| self.glob(fi, g, "service"))
            .collect();
        let message = spec.message.as_ref().and_then(|m| match Regex::new(m) {
            Ok(re) => Some(re),
            Err(e) => {
                self.error(fi, m, format!("bad message regex: {e}"));
                None
            }
        });
        let fields: Vec<(u16, String)> = in_file_order(&spec.fields)
            .into_iter()
            .map(|(k, v)| (self.field_names.extra_index(k), v.to_string()))
            .collect();
        let models = ModelConditions {
            template: spec
                .template
                .as_ref()
                .and_then(|g| self.glob(fi, g, "template")),
            family: spec
                .family
                .as_ref()
                .and_then(|g| self.glob(fi, g, "family")),
            anomaly: spec
                .anomaly
                .iter()
                .filter_map(|a| match a.as_str() {
                    "new_template" => Some(AnomalyKind::NewTemplate),
                    "rate_spike" => Some(AnomalyKind::RateSpike),
                    other => {
                        let msg =
                            format!("unknown anomaly {other:?} (known: new_template, rate_spike)");
                        self.error(fi, a, msg);
                        None
                    }
                })
                .collect(),
        };
        let empty = status.is_empty()
            && levels.is_empty()
            && services.is_empty()
            && spec.message.is_none()
            && fields.is_empty()
            && models.is_empty()
            && spec.anomaly.is_empty();
        if empty {
            self.error(
                fi,
                spec,
                "select has no condition, so it would match every line",
            );
        }
        Some(Selector {
            status,
            levels,
            services,
            message,
            fields,
            models,
        })
    }

    fn glob(&mut self, fi: usize, g: &S<String>, what: &str) -> Option<GlobMatcher> {
        match Glob::new(g) {
            Ok(glob) => Some(glob.compile_matcher()),
            Err(e) => {
                self.error(fi, g, format!("bad {what} glob: {e}"));
                None
            }
        }
    }

    fn correlation(&mut self, fi: usize, spec: &S<schema::CorrelateSpec>) -> Option<Correlation> {
        let key = match spec.by.as_ref().map(|b| b.as_str()) {
            None | Some("trace_id") => CorrelationKey::TraceId,
            Some("request_id") => CorrelationKey::RequestId,
            Some("service") => CorrelationKey::Service,
            Some(path) => CorrelationKey::Field(self.field_names.extra_index(path)),
        };
        let window = self.duration(fi, &spec.window);
        if window.is_some_and(|w| w.is_zero()) {
            self.error(fi, &spec.window, "window must be above zero");
        }
        let min_events = *spec.min_events;
        if min_events == 0 {
            self.error(fi, &spec.min_events, "min_events must be at least 1");
        }
        let min_services = spec.min_services.as_deref().copied().unwrap_or(1);
        if let Some(ms) = &spec.min_services {
            if **ms == 0 {
                self.error(fi, ms, "min_services must be at least 1");
            } else if **ms > min_events {
                self.error(
                    fi,
                    ms,
                    format!("impossible threshold: min_services ({}) exceeds min_events ({min_events}); each event comes from one service", **ms),
                );
            }
            if key == CorrelationKey::Service && **ms > 1 {
                self.error(
                    fi,
                    ms,
                    "impossible threshold: correlating by service puts one service in each window",
                );
            }
        }
        let min_chains = spec.min_chains.as_deref().copied().unwrap_or(1);
        if let Some(mc) = &spec.min_chains {
            if **mc == 0 {
                self.error(fi, mc, "min_chains must be at least 1");
            }
        }
        let window = window?;
        let chains_within =
            self.duration_or(fi, &spec.chains_within, window.max(DEFAULT_CHAINS_WITHIN));
        if let (Some(at), true) = (&spec.chains_within, chains_within.is_zero()) {
            self.error(fi, at, "chains_within must be above zero");
        }
        Some(Correlation {
            key,
            window,
            min_events,
            min_services,
            min_chains,
            chains_within,
            min_anomalous: spec.min_anomalous.as_deref().copied().unwrap_or(0),
        })
    }

    fn incident(
        &mut self,
        fi: usize,
        rule: &schema::RuleSpec,
        correlate: Option<&Correlation>,
        receivers: &mut Vec<Receiver>,
    ) -> IncidentPolicy {
        let spec = &rule.incident;
        let mut group_by = Vec::new();
        for label in &spec.group_by {
            match label.as_str() {
                "root_service" => group_by.push(GroupLabel::RootService),
                other => self.error(
                    fi,
                    label,
                    format!("unknown group_by label {other:?} (known: root_service)"),
                ),
            }
        }
        let window = correlate.map_or(Duration::ZERO, |c| c.window);
        // A rule that needs chains to repeat stays suspected long enough to see them.
        let suspect_default = correlate.map_or(window, |c| {
            if c.min_chains > 1 {
                window.max(c.chains_within)
            } else {
                window
            }
        });
        let policy = IncidentPolicy {
            group_by,
            suspect_timeout: self.duration_or(fi, &spec.suspect_timeout, suspect_default),
            quiet_period: self.duration_or(fi, &spec.quiet_period, DEFAULT_QUIET_PERIOD),
            reopen_within: self.duration_or(fi, &spec.reopen_within, DEFAULT_REOPEN_WITHIN),
            escalate_after: self.duration_or(fi, &spec.escalate_after, DEFAULT_ESCALATE_AFTER),
            probe: spec
                .health_probe
                .as_ref()
                .map(|p| self.probe(fi, &rule.name, p, receivers)),
            restore_when: self.restore_when(fi, spec),
            budget: match &spec.budget {
                Some(b) => {
                    let period = self.duration(fi, &b.period).unwrap_or_default();
                    if period.is_zero() {
                        self.error(fi, &b.period, "budget period must be above zero");
                    }
                    Budget {
                        actions: *b.actions,
                        period,
                    }
                }
                None => Budget::default(),
            },
            yield_to: spec.yield_to.iter().map(|n| n.to_string()).collect(),
        };
        let positive = [
            (
                &spec.suspect_timeout,
                policy.suspect_timeout,
                "suspect_timeout",
            ),
            (&spec.quiet_period, policy.quiet_period, "quiet_period"),
            (
                &spec.escalate_after,
                policy.escalate_after,
                "escalate_after",
            ),
        ];
        for (given, value, key) in positive {
            if let (Some(at), true) = (given, value.is_zero()) {
                self.error(fi, at, format!("{key} must be above zero"));
            }
        }
        policy
    }

    /// The probe, declared as a receiver of its own (`<rule>/health`) so that it is
    /// resolved, isolated and reported like any receiver.
    fn probe(
        &mut self,
        fi: usize,
        rule: &S<String>,
        spec: &schema::ProbeSpec,
        receivers: &mut Vec<Receiver>,
    ) -> HealthProbe {
        if let Err(msg) = check_url(&spec.url) {
            self.error(fi, &spec.url, msg);
        }
        let interval = self.duration_or(fi, &spec.interval, Duration::from_secs(5));
        let timeout = self.duration_or(fi, &spec.timeout, Duration::from_secs(2));
        let passes = spec.passes.as_deref().copied().unwrap_or(3);
        let expect_status = spec.expect_status.as_deref().copied().unwrap_or(200);
        if let Some(p) = spec.passes.as_ref().filter(|p| ***p == 0) {
            self.error(fi, p, "passes must be at least 1");
        }
        if let Some(e) = spec
            .expect_status
            .as_ref()
            .filter(|e| !(100..=599).contains(&***e))
        {
            self.error(fi, e, "expect_status must be an HTTP status (100-599)");
        }
        for (given, value, key) in [
            (&spec.interval, interval, "interval"),
            (&spec.timeout, timeout, "timeout"),
        ] {
            if let (Some(at), true) = (given, value.is_zero()) {
                self.error(fi, at, format!("{key} must be above zero"));
            }
        }
        receivers.push(Receiver {
            location: location_of(&self.files[fi].name, rule),
            name: format!("{}/health", rule.as_str()),
            kind: ReceiverKind::Probe,
            url: spec.url.to_string(),
            method: "GET".into(),
            timeout,
            retries: 0,
            secret: None,
            headers: Vec::new(),
        });
        HealthProbe {
            receiver: receivers.len() - 1,
            expect_status,
            interval,
            passes,
        }
    }

    fn restore_when(&mut self, fi: usize, spec: &schema::IncidentSpec) -> RestoreWhen {
        let default = if spec.health_probe.is_some() {
            RestoreWhen::QuietOrProbe
        } else {
            RestoreWhen::Quiet
        };
        let Some(given) = &spec.restore_when else {
            return default;
        };
        let when = match given.as_str() {
            "quiet" => RestoreWhen::Quiet,
            "probe" => RestoreWhen::Probe,
            "quiet_and_probe" => RestoreWhen::QuietAndProbe,
            "quiet_or_probe" => RestoreWhen::QuietOrProbe,
            other => {
                let msg = format!("unknown restore_when {other:?} (known: quiet, probe, quiet_and_probe, quiet_or_probe)");
                self.error(fi, given, msg);
                return default;
            }
        };
        if when != RestoreWhen::Quiet && spec.health_probe.is_none() {
            self.error(fi, given, "restore_when needs a health_probe");
        }
        when
    }

    fn actions(
        &mut self,
        fi: usize,
        spec: &schema::ActionsSpec,
        receivers: &[Receiver],
    ) -> StateActions {
        let mut seen = HashSet::new();
        let mut list = |c: &mut Self, specs: &[schema::ActionSpec]| -> Vec<Action> {
            specs
                .iter()
                .filter_map(|a| {
                    if !seen.insert(a.name.as_str().to_owned()) {
                        c.error(
                            fi,
                            &a.name,
                            format!("action name {:?} is used twice in this rule", &*a.name),
                        );
                    }
                    let receiver = receivers.iter().position(|r| r.name == *a.receiver);
                    if receiver.is_none() {
                        c.error(
                            fi,
                            &a.receiver,
                            format!("undeclared receiver {:?}", &*a.receiver),
                        );
                    }
                    let after = c.duration_or(fi, &a.after, Duration::ZERO);
                    Some(Action {
                        name: a.name.to_string(),
                        receiver: receiver?,
                        after,
                    })
                })
                .collect()
        };
        StateActions {
            suspected: list(self, &spec.suspected),
            confirmed: list(self, &spec.confirmed),
            recovering: list(self, &spec.recovering),
            restored: list(self, &spec.restored),
            escalated: list(self, &spec.escalated),
        }
    }
}

fn parse_status(s: &str) -> Option<(u16, u16)> {
    let s = s.trim();
    if let Some(class) = s.strip_suffix("xx").or_else(|| s.strip_suffix("XX")) {
        let d: u16 = class.parse().ok().filter(|d| (1..=5).contains(d))?;
        return Some((d * 100, d * 100 + 99));
    }
    let code: u16 = s.parse().ok().filter(|c| (100..=599).contains(c))?;
    Some((code, code))
}

/// `${NAME}` or `file:PATH`: a value taken from outside the rule file.
fn is_reference(s: &str) -> bool {
    let s = s.trim();
    let env = s
        .strip_prefix("${")
        .and_then(|r| r.strip_suffix('}'))
        .is_some_and(is_env_name);
    env || s.strip_prefix("file:").is_some_and(|p| !p.is_empty())
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The environment variables a rule file may read by default: whoever can edit rules (a
/// ConfigMap) must not be able to read every Secret of the job's environment.
pub const RULE_ENV_PREFIX: &str = "LOGHEAL_";

/// The directory under which a rule file may read `file:` references, by default.
pub const RULE_SECRETS_DIR: &str = "/run/secrets/logheal/";

/// What a rule file may reference: environment variables with one of `env_prefixes`,
/// and files under `secrets_dir`. Set once per process from the job configuration's
/// `secrets:` (before any rule file is read); [`RULE_ENV_PREFIX`] and
/// [`RULE_SECRETS_DIR`] otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferencePolicy {
    pub env_prefixes: Vec<String>,
    pub secrets_dir: String,
}

impl Default for ReferencePolicy {
    fn default() -> Self {
        ReferencePolicy {
            env_prefixes: vec![RULE_ENV_PREFIX.into()],
            secrets_dir: RULE_SECRETS_DIR.into(),
        }
    }
}

static POLICY: std::sync::OnceLock<ReferencePolicy> = std::sync::OnceLock::new();

/// Why a reference policy (the job config's `secrets:`) was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    #[error("secrets.env_prefixes: at least one prefix")]
    NoPrefix,
    #[error(
        "secrets.env_prefixes: {0:?} is not the start of a variable name (letters, digits, _)"
    )]
    Prefix(String),
    #[error("secrets.dir: {0:?} must be an absolute directory other than /")]
    Dir(String),
    #[error("the reference policy is already set")]
    AlreadySet,
}

/// A reference (`${NAME}`, `file:PATH`) that a rule file may not make.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReferenceError {
    #[error("file:{path}: rule files may read files under {dir} only (job config `secrets.dir`)")]
    File { path: String, dir: String },
    #[error("unclosed ${{")]
    Unclosed,
    #[error("bad environment variable name {0:?}")]
    Name(String),
    #[error("${{{name}}}: rule files may read {prefixes}* variables only (job config `secrets.env_prefixes`)")]
    Variable { name: String, prefixes: String },
}

/// Sets the process's reference policy; refused if the policy is unsafe (an empty
/// prefix would open every variable; a relative or root directory every file) or was
/// already set to another.
pub fn set_reference_policy(mut policy: ReferencePolicy) -> Result<(), PolicyError> {
    if policy.env_prefixes.is_empty() {
        return Err(PolicyError::NoPrefix);
    }
    if let Some(p) = policy.env_prefixes.iter().find(|p| !is_env_name(p)) {
        return Err(PolicyError::Prefix(p.clone()));
    }
    if !policy.secrets_dir.ends_with('/') {
        policy.secrets_dir.push('/');
    }
    let dir = &policy.secrets_dir;
    if !dir.starts_with('/') || dir == "/" || dir.split('/').any(|p| p == "..") {
        return Err(PolicyError::Dir(dir.clone()));
    }
    let set = POLICY.get_or_init(|| policy.clone());
    if *set == policy {
        Ok(())
    } else {
        Err(PolicyError::AlreadySet)
    }
}

/// The process's reference policy.
pub fn reference_policy() -> &'static ReferencePolicy {
    POLICY.get_or_init(ReferencePolicy::default)
}

/// Every `${...}` in `s` names an environment variable a rule file may read, and a
/// `file:` reference lies under the secrets directory (see [`ReferencePolicy`]; the same
/// checks run again when the references are resolved).
pub fn check_references(s: &str) -> Result<(), ReferenceError> {
    let policy = reference_policy();
    if let Some(path) = s.trim().strip_prefix("file:") {
        if !path.starts_with(&policy.secrets_dir) || path.split('/').any(|p| p == "..") {
            return Err(ReferenceError::File {
                path: path.to_string(),
                dir: policy.secrets_dir.clone(),
            });
        }
        return Ok(());
    }
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        let Some(end) = rest[start..].find('}') else {
            return Err(ReferenceError::Unclosed);
        };
        let name = &rest[start + 2..start + end];
        if !is_env_name(name) {
            return Err(ReferenceError::Name(name.to_string()));
        }
        if !policy
            .env_prefixes
            .iter()
            .any(|p| name.starts_with(p.as_str()))
        {
            return Err(ReferenceError::Variable {
                name: name.to_string(),
                prefixes: policy.env_prefixes.join("*, "),
            });
        }
        rest = &rest[start + end + 1..];
    }
    Ok(())
}

fn check_url(url: &str) -> Result<(), String> {
    check_references(url).map_err(|e| e.to_string())?;
    let url = url.trim();
    if url.starts_with("${") || url.starts_with("file:") {
        return Ok(());
    }
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return Err(format!(
            "url {url:?} must be http(s)://..., ${{ENV}} or file:/path"
        ));
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.contains("${") {
        return Err(format!(
            "url {url:?}: a reference may not build the host of a URL written in the rule"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_forms() {
        assert_eq!(parse_status("503"), Some((503, 503)));
        assert_eq!(parse_status("5xx"), Some((500, 599)));
        assert_eq!(parse_status("600"), None);
        assert_eq!(parse_status("6xx"), None);
        assert_eq!(parse_status("abc"), None);
    }

    #[test]
    fn references() {
        assert!(is_reference("${LOGHEAL_WEBHOOK_SECRET}"));
        assert!(is_reference("file:/run/secrets/key"));
        assert!(!is_reference("hunter2"));
        assert!(!is_reference("${1BAD}"));
        assert!(check_url("https://hooks.example/${LOGHEAL_TOKEN}").is_ok());
        assert!(
            check_url("https://hooks.example/${TOKEN}").is_err(),
            "not LOGHEAL_*"
        );
        assert!(
            check_url("https://${LOGHEAL_HOST}/x").is_err(),
            "no host from a reference"
        );
        assert!(check_url("${URL").is_err());
        assert!(check_references("file:/run/secrets/logheal/hmac").is_ok());
        assert!(check_references("file:/etc/hostname").is_err());
        assert!(check_references("file:/run/secrets/logheal/../../../etc/shadow").is_err());
        assert!(check_url("ftp://x").is_err());
    }
}
