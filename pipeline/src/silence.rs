//! Silences: an operator's "do not act on these incidents until then", in the mould of
//! Alertmanager's. A silence matches incidents by their labels (`rule`, `incident` and
//! the rule's group-by labels such as `root_service`); a silenced incident still moves
//! through its states, but its actions are not called (each is recorded as `silenced`).
//!
//! Time: silences live in wall time (an operator's "for 2h"), which the engine never
//! reads. The live job keeps the [`Silences`] and hands the engine the active ones
//! (`Engine::set_silences`) whenever that set changes; the engine only matches.

use serde::{Deserialize, Serialize};

/// Why a silence or a matcher was refused (the API answers 400 with the text).
#[derive(Debug, thiserror::Error)]
pub enum SilenceError {
    #[error("{0:?}: expected NAME=VALUE, NAME!=VALUE or NAME=~REGEX")]
    Syntax(String),
    #[error("{0:?}: a label name is letters, digits, _ and -")]
    LabelName(String),
    #[error("the value of {0} is longer than {MAX_TEXT} bytes")]
    ValueTooLong(String),
    #[error("{matcher}: {error}")]
    Regex {
        matcher: String,
        error: Box<regex::Error>,
    },
    #[error("a silence needs at least one matcher (it would silence everything)")]
    NoMatchers,
    #[error("a silence has at most {MAX_MATCHERS} matchers")]
    TooManyMatchers,
    #[error("comment and author are at most {MAX_TEXT} bytes")]
    TextTooLong,
    #[error("a silence id is 1 to 64 bytes")]
    Id,
    #[error("a silence must end after it starts")]
    EndsBeforeStart,
    #[error("{MAX_SILENCES} silences have not ended: expire some first")]
    Full,
}

/// How a matcher compares a label's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchOp {
    /// `name=value`
    Equal,
    /// `name!=value`
    NotEqual,
    /// `name=~regex` (anchored at both ends)
    Regex,
}

/// One condition on one label. A label the incident does not have has the value "".
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    #[serde(skip)]
    compiled: Option<regex::Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

/// Bounds that keep a silence cheap to match and to store.
pub const MAX_MATCHERS: usize = 16;
const MAX_TEXT: usize = 1024;

impl Matcher {
    /// Parses `name=value`, `name!=value` or `name=~regex`.
    pub fn parse(text: &str) -> Result<Matcher, SilenceError> {
        let (name, op, value) = if let Some((n, v)) = text.split_once("=~") {
            (n, MatchOp::Regex, v)
        } else if let Some((n, v)) = text.split_once("!=") {
            (n, MatchOp::NotEqual, v)
        } else if let Some((n, v)) = text.split_once('=') {
            (n, MatchOp::Equal, v)
        } else {
            return Err(SilenceError::Syntax(text.to_string()));
        };
        Matcher::new(name.trim(), op, value)
    }

    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Matcher, SilenceError> {
        let valid_name = !name.is_empty()
            && name.len() <= 128
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid_name {
            return Err(SilenceError::LabelName(name.to_string()));
        }
        if value.len() > MAX_TEXT {
            return Err(SilenceError::ValueTooLong(name.to_string()));
        }
        let mut m = Matcher {
            name: name.to_string(),
            op,
            value: value.to_string(),
            compiled: None,
        };
        m.compile()?;
        Ok(m)
    }

    /// Builds the regex of a `=~` matcher (after deserialising).
    fn compile(&mut self) -> Result<(), SilenceError> {
        if self.op == MatchOp::Regex && self.compiled.is_none() {
            let anchored = format!("^(?:{})$", self.value);
            let re = regex::RegexBuilder::new(&anchored)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| SilenceError::Regex {
                    matcher: self.to_string(),
                    error: Box::new(e),
                })?;
            self.compiled = Some(re);
        }
        Ok(())
    }

    fn matches(&self, value: &str) -> bool {
        match self.op {
            MatchOp::Equal => value == self.value,
            MatchOp::NotEqual => value != self.value,
            MatchOp::Regex => self.compiled.as_ref().is_some_and(|re| re.is_match(value)),
        }
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = match self.op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
        };
        write!(f, "{}{op}{}", self.name, self.value)
    }
}

/// A silence: incidents matching every matcher get no action called between
/// `starts_at` and `ends_at` (milliseconds since the epoch, wall time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<Matcher>,
    pub starts_at: i64,
    pub ends_at: i64,
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub created_by: String,
}

impl Silence {
    /// Checks bounds and compiles the matchers (a silence read from the API or the
    /// ledger is untrusted input).
    pub fn validated(mut self) -> Result<Silence, SilenceError> {
        if self.matchers.is_empty() {
            return Err(SilenceError::NoMatchers);
        }
        if self.matchers.len() > MAX_MATCHERS {
            return Err(SilenceError::TooManyMatchers);
        }
        if self.comment.len() > MAX_TEXT || self.created_by.len() > MAX_TEXT {
            return Err(SilenceError::TextTooLong);
        }
        if self.id.is_empty() || self.id.len() > 64 {
            return Err(SilenceError::Id);
        }
        if self.ends_at <= self.starts_at {
            return Err(SilenceError::EndsBeforeStart);
        }
        for m in &mut self.matchers {
            m.compile()?;
        }
        Ok(self)
    }

    /// This silence ended at `now_ms` (one that had not started ends as it would have
    /// begun); unchanged if it has ended already.
    pub fn ended(&self, now_ms: i64) -> Silence {
        let mut s = self.clone();
        if s.ends_at > now_ms {
            s.starts_at = s.starts_at.min(now_ms - 1);
            s.ends_at = now_ms;
        }
        s
    }

    pub fn is_active(&self, now_ms: i64) -> bool {
        self.starts_at <= now_ms && now_ms < self.ends_at
    }

    /// Whether an incident with these labels is silenced by this silence;
    /// `label(name)` gives a label's value.
    pub fn matches<'a>(&self, label: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.matchers
            .iter()
            .all(|m| m.matches(label(&m.name).unwrap_or("")))
    }

    /// `rule=x, root_service=y`
    pub fn describe(&self) -> String {
        let matchers: Vec<String> = self.matchers.iter().map(|m| m.to_string()).collect();
        matchers.join(", ")
    }
}

/// Silences kept: at most this many, the ones that ended longest ago dropped first.
pub const MAX_SILENCES: usize = 1000;
/// Ended silences are listed for this long (milliseconds), then forgotten.
pub const KEEP_ENDED_MS: i64 = 24 * 3600 * 1000;

/// The silences a job knows: active, pending (starting later) and recently ended.
#[derive(Debug, Default, Clone)]
pub struct Silences {
    all: Vec<Silence>,
}

impl Silences {
    /// Adds or replaces (same id) a silence; refused when the store is full of
    /// silences that have not ended.
    pub fn put(&mut self, silence: Silence, now_ms: i64) -> Result<(), SilenceError> {
        self.forget_ended(now_ms);
        if let Some(old) = self.all.iter_mut().find(|s| s.id == silence.id) {
            *old = silence;
            return Ok(());
        }
        if self.all.len() >= MAX_SILENCES {
            return Err(SilenceError::Full);
        }
        self.all.push(silence);
        Ok(())
    }

    /// Ends a silence now; the ended silence, or `None` if there is no such id.
    pub fn expire(&mut self, id: &str, now_ms: i64) -> Option<Silence> {
        let s = self.all.iter_mut().find(|s| s.id == id)?;
        *s = s.ended(now_ms);
        Some(s.clone())
    }

    fn forget_ended(&mut self, now_ms: i64) {
        self.all.retain(|s| s.ends_at + KEEP_ENDED_MS > now_ms);
    }

    /// The silences in force at `now_ms`.
    pub fn active(&self, now_ms: i64) -> Vec<Silence> {
        self.all
            .iter()
            .filter(|s| s.is_active(now_ms))
            .cloned()
            .collect()
    }

    /// Every silence known (ended ones for a day), newest first.
    pub fn list(&self, now_ms: i64) -> Vec<Silence> {
        let mut all: Vec<Silence> = self
            .all
            .iter()
            .filter(|s| s.ends_at + KEEP_ENDED_MS > now_ms)
            .cloned()
            .collect();
        all.sort_by(|a, b| b.starts_at.cmp(&a.starts_at).then(a.id.cmp(&b.id)));
        all
    }

    pub fn get(&self, id: &str) -> Option<&Silence> {
        self.all.iter().find(|s| s.id == id)
    }
}

/// A state of a silence, as listed.
pub fn status(s: &Silence, now_ms: i64) -> &'static str {
    if now_ms < s.starts_at {
        "pending"
    } else if now_ms < s.ends_at {
        "active"
    } else {
        "expired"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn silence(id: &str, matchers: &[&str], starts: i64, ends: i64) -> Silence {
        Silence {
            id: id.into(),
            matchers: matchers
                .iter()
                .map(|m| Matcher::parse(m).unwrap())
                .collect(),
            starts_at: starts,
            ends_at: ends,
            comment: "db migration".into(),
            created_by: "sre".into(),
        }
        .validated()
        .unwrap()
    }

    fn labels<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> + 'a {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }

    #[test]
    fn matchers_parse_and_match_every_operator() {
        let s = silence(
            "a",
            &["rule=cross-service-503", "root_service=~pay.*", "env!=prod"],
            0,
            10,
        );
        assert!(s.matches(labels(&[
            ("rule", "cross-service-503"),
            ("root_service", "payment")
        ])));
        // The anchored regex does not match a substring.
        assert!(!s.matches(labels(&[
            ("rule", "cross-service-503"),
            ("root_service", "repayment")
        ])));
        assert!(!s.matches(labels(&[
            ("rule", "cross-service-503"),
            ("root_service", "payment"),
            ("env", "prod")
        ])));
        assert!(!s.matches(labels(&[
            ("rule", "error-chain"),
            ("root_service", "payment")
        ])));
        assert_eq!(
            s.describe(),
            "rule=cross-service-503, root_service=~pay.*, env!=prod"
        );
    }

    #[test]
    fn bad_silences_are_refused() {
        assert!(Matcher::parse("no operator").is_err());
        assert!(Matcher::parse("=value").is_err());
        assert!(Matcher::parse("a=~(unclosed").is_err());
        let empty = Silence {
            id: "x".into(),
            matchers: vec![],
            starts_at: 0,
            ends_at: 1,
            comment: String::new(),
            created_by: String::new(),
        };
        assert!(empty.clone().validated().is_err());
        let backwards = Silence {
            matchers: vec![Matcher::parse("rule=a").unwrap()],
            ends_at: 0,
            ..empty
        };
        assert!(backwards.validated().is_err());
    }

    #[test]
    fn silences_start_end_expire_and_are_forgotten() {
        let mut store = Silences::default();
        store.put(silence("now", &["rule=a"], 0, 1_000), 0).unwrap();
        store
            .put(silence("later", &["rule=b"], 500, 2_000), 0)
            .unwrap();
        assert_eq!(store.active(100).len(), 1);
        assert_eq!(store.active(600).len(), 2);
        let ended = store.expire("later", 700).unwrap();
        assert_eq!(status(&ended, 700), "expired");
        assert_eq!(store.active(700).len(), 1);
        assert!(store.expire("nope", 700).is_none());
        // Ended silences stay listed for a day, then go.
        assert_eq!(store.list(1_500).len(), 2);
        assert_eq!(store.list(2_000 + KEEP_ENDED_MS).len(), 0);
    }

    #[test]
    fn the_store_is_bounded() {
        let mut store = Silences::default();
        for i in 0..MAX_SILENCES {
            store
                .put(silence(&format!("s{i}"), &["rule=a"], 0, 10_000), 0)
                .unwrap();
        }
        assert!(store
            .put(silence("one-more", &["rule=a"], 0, 10_000), 0)
            .is_err());
        // Once they have ended (and a day passed), there is room again.
        assert!(store
            .put(
                silence("one-more", &["rule=a"], 0, i64::MAX),
                10_000 + KEEP_ENDED_MS
            )
            .is_ok());
    }
}
