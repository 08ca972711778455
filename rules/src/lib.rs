//! logheal-rules: the rule files SREs edit.
//!
//! Owns the YAML schema (`schema`), loading with `file:line:col` errors (`load`),
//! validation into the compiled form the pipeline runs (`compile`, `model`) and the
//! built-in reference rule (`examples/cross-service-503.yaml`), and the rule test-file
//! format of `logheal test` (`testfile`).

#![forbid(unsafe_code)]

mod compile;
mod lint;
mod load;
mod model;
pub mod reference;
mod schema;
mod testfile;

pub use compile::{
    check_references, reference_policy, set_reference_policy, PolicyError, ReferenceError,
    ReferencePolicy, DEFAULT_ESCALATE_AFTER, DEFAULT_QUIET_PERIOD, DEFAULT_RECEIVER_TIMEOUT,
    DEFAULT_REOPEN_WITHIN, DEFAULT_RETRIES, RULE_ENV_PREFIX, RULE_SECRETS_DIR,
};
pub use lint::lint;
pub use load::{
    builtin, load_or_builtin, load_paths, load_sources, parse_yaml, read_paths,
    BUILTIN_ERRORS_NAME, BUILTIN_ERROR_RULES, BUILTIN_NAME, BUILTIN_RULES,
};
pub use model::*;
pub use testfile::{
    load_test_file, ActionExpectation, IncidentExpectation, Input, TestCase, TestFile,
};

use std::fmt;

/// One problem in a rule file, printed as `file:line:col: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub location: Location,
    pub message: String,
    pub severity: Severity,
}

/// Errors stop a rule set from loading; warnings point at rules that load but probably
/// do not do what their author meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

impl Diagnostic {
    pub fn new(location: Location, message: impl Into<String>) -> Self {
        Diagnostic {
            location,
            message: message.into(),
            severity: Severity::Error,
        }
    }

    pub fn warning(location: Location, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::new(location, message)
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.severity {
            Severity::Error => write!(f, "{}: {}", self.location, self.message),
            Severity::Warning => write!(f, "{}: warning: {}", self.location, self.message),
        }
    }
}
