//! Rule test files (`logheal test`): input log lines and what must (and must not) happen,
//! at given event times. Modelled on `promtool test rules`.
//!
//! ```yaml
//! rule_files: [cross-service-503.yaml]   # relative to this file; none: the built-in rules
//! tests:
//!   - name: a cascade confirms one incident for the root service
//!     input: |                           # or input_file: path/to/log
//!       {"ts":"2026-03-14T10:00:00.000Z","service":"payment","trace_id":"t1","status":503}
//!     incidents:                         # the state at an event time (default: the end)
//!       - {at: 2026-03-14T10:00:05Z, key: {root_service: payment}, state: RECOVERING}
//!     actions:                           # called, in this order (others may come between)
//!       - {action: restart-downstream, receiver: restart, state: CONFIRMED, after: 0s}
//!     absent_actions: [{action: failback}]
//!     absent_incidents: [{key: {root_service: search}, state: CONFIRMED}]
//! ```

use crate::compile::location_of;
use crate::model::Location;
use crate::schema::{in_file_order, S};
use crate::Diagnostic;
use logheal_parsers::time::parse_timestamp;
use logheal_parsers::EventTime;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default)]
    rule_files: Vec<S<String>>,
    tests: Vec<CaseSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseSpec {
    name: S<String>,
    input: Option<String>,
    input_file: Option<S<String>>,
    #[serde(default)]
    incidents: Vec<IncidentSpec>,
    #[serde(default)]
    actions: Vec<ActionSpec>,
    #[serde(default)]
    absent_actions: Vec<ActionSpec>,
    #[serde(default)]
    absent_incidents: Vec<IncidentSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IncidentSpec {
    at: Option<S<String>>,
    #[serde(default)]
    key: HashMap<S<String>, S<String>>,
    state: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionSpec {
    action: Option<String>,
    receiver: Option<String>,
    state: Option<S<String>>,
    after: Option<S<String>>,
    at: Option<S<String>>,
}

/// A loaded test file.
#[derive(Debug, Clone)]
pub struct TestFile {
    pub path: PathBuf,
    /// Resolved relative to the test file; empty: the built-in rules.
    pub rule_files: Vec<PathBuf>,
    pub cases: Vec<TestCase>,
}

#[derive(Debug, Clone)]
pub struct TestCase {
    pub name: String,
    pub location: Location,
    pub input: Input,
    pub incidents: Vec<IncidentExpectation>,
    pub actions: Vec<ActionExpectation>,
    pub absent_actions: Vec<ActionExpectation>,
    pub absent_incidents: Vec<IncidentExpectation>,
}

#[derive(Debug, Clone)]
pub enum Input {
    Inline(String),
    File(PathBuf),
}

/// An incident with these labels is in `state` at `at` (`None`: after the input ended
/// and every timer fired).
#[derive(Debug, Clone)]
pub struct IncidentExpectation {
    pub at: Option<EventTime>,
    pub key: Vec<(String, String)>,
    /// Upper-case state name, e.g. `RECOVERING`.
    pub state: String,
}

/// An action call; each given field must match.
#[derive(Debug, Clone, Default)]
pub struct ActionExpectation {
    pub action: Option<String>,
    pub receiver: Option<String>,
    pub state: Option<String>,
    /// The delay after the transition that scheduled it.
    pub after: Option<Duration>,
    pub at: Option<EventTime>,
}

const STATES: &[&str] = &[
    "NORMAL",
    "SUSPECTED",
    "CONFIRMED",
    "RECOVERING",
    "ESCALATED",
    "RESTORED",
];

/// Loads a test file, reporting every error at its `file:line:col`.
pub fn load_test_file(path: &Path) -> Result<TestFile, Vec<Diagnostic>> {
    let name = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| vec![crate::load::unreadable(&name, &e)])?;
    let spec: FileSpec = crate::load::parse_yaml(&name, &text).map_err(|d| vec![d])?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut r = Reader {
        file: &name,
        errors: Vec::new(),
    };
    let mut cases = Vec::new();
    for c in &spec.tests {
        let input = match (&c.input, &c.input_file) {
            (Some(text), None) => Input::Inline(text.clone()),
            (None, Some(file)) => Input::File(base.join(&**file)),
            _ => {
                r.error(&c.name, "give exactly one of input or input_file".into());
                continue;
            }
        };
        cases.push(TestCase {
            name: c.name.to_string(),
            location: location_of(&name, &c.name),
            input,
            incidents: c.incidents.iter().map(|i| r.incident(i)).collect(),
            actions: c.actions.iter().map(|a| r.action(a)).collect(),
            absent_actions: c.absent_actions.iter().map(|a| r.action(a)).collect(),
            absent_incidents: c.absent_incidents.iter().map(|i| r.incident(i)).collect(),
        });
    }
    if !r.errors.is_empty() {
        return Err(r.errors);
    }
    Ok(TestFile {
        path: path.to_path_buf(),
        rule_files: spec.rule_files.iter().map(|f| base.join(&**f)).collect(),
        cases,
    })
}

/// Converts specs, collecting errors.
struct Reader<'a> {
    file: &'a str,
    errors: Vec<Diagnostic>,
}

impl Reader<'_> {
    fn error<T>(&mut self, at: &S<T>, message: String) {
        self.errors
            .push(Diagnostic::new(location_of(self.file, at), message));
    }

    fn time(&mut self, s: &S<String>) -> Option<EventTime> {
        let t = parse_timestamp(s);
        if t.is_none() {
            self.error(s, format!("bad time {:?}: write RFC 3339", &**s));
        }
        t
    }

    fn state(&mut self, s: &S<String>) -> String {
        let upper = s.to_ascii_uppercase();
        if !STATES.contains(&upper.as_str()) {
            self.error(
                s,
                format!("unknown state {:?} (known: {})", &**s, STATES.join(", ")),
            );
        }
        upper
    }

    fn incident(&mut self, i: &IncidentSpec) -> IncidentExpectation {
        IncidentExpectation {
            at: i.at.as_ref().and_then(|t| self.time(t)),
            key: in_file_order(&i.key)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            state: self.state(&i.state),
        }
    }

    fn action(&mut self, a: &ActionSpec) -> ActionExpectation {
        let after = a
            .after
            .as_ref()
            .and_then(|d| match humantime::parse_duration(d) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.error(d, format!("bad duration {:?}: {e}", &**d));
                    None
                }
            });
        ActionExpectation {
            action: a.action.clone(),
            receiver: a.receiver.clone(),
            state: a.state.as_ref().map(|s| self.state(s)),
            after,
            at: a.at.as_ref().and_then(|t| self.time(t)),
        }
    }
}
