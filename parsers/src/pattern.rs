//! Header patterns for text logs, written as Loghub formats:
//! `<Date> <Time> <Level> <Component>: <Content>`. Each `<Name>` captures lazily, runs of
//! spaces match any whitespace, other characters are regex text (so `\[` is a bracket and
//! `(\[<PID>\])?` is optional), and the whole line must match.

use crate::fields::{Field, FieldIndex};
use crate::record::{Raw, RawRecord};
use crate::time::HeaderTimeReader;
use regex::Regex;
use std::borrow::Cow;

/// What a named group of the format feeds.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    Field(Field),
    /// Part of the date/time, joined with the other parts in order.
    Time,
    Ignored,
}

/// A compiled header format.
#[derive(Debug, Clone)]
pub struct HeaderPattern {
    regex: Regex,
    roles: Vec<(usize, Role)>,
}

const TIME_GROUPS: &[&str] = &["date", "time", "month", "day", "timestamp", "datetime"];
const SERVICE_GROUPS: &[&str] = &["service", "component", "program", "app", "application"];

/// What is wrong with a header format (`--format`, `header_format:`, `patterns:`).
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("unclosed '<' in header format {0:?}")]
    Unclosed(String),
    #[error("bad field name <{0}> in header format")]
    FieldName(String),
    #[error("field <{0}> appears twice in header format")]
    Repeated(String),
    #[error("header format needs a <Content> field for the message")]
    NoContent,
    #[error("header format is not valid: {0}")]
    Regex(Box<regex::Error>),
}

impl HeaderPattern {
    /// Compiles `format`; the error says what is wrong with it.
    pub fn new(format: &str, index: &FieldIndex) -> Result<Self, FormatError> {
        let mut re = String::from("^");
        let mut names = Vec::new();
        let mut rest = format.trim();
        while let Some(open) = rest.find('<') {
            push_separator(&mut re, &rest[..open]);
            let close = rest[open..]
                .find('>')
                .map(|c| open + c)
                .ok_or_else(|| FormatError::Unclosed(format.to_string()))?;
            let name = &rest[open + 1..close];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(FormatError::FieldName(name.to_string()));
            }
            if names.iter().any(|n: &String| n.eq_ignore_ascii_case(name)) {
                return Err(FormatError::Repeated(name.to_string()));
            }
            re.push_str(&format!("(?P<{name}>.*?)"));
            names.push(name.to_string());
            rest = &rest[close + 1..];
        }
        push_separator(&mut re, rest);
        re.push('$');
        if !names.iter().any(|n| n.eq_ignore_ascii_case("content")) {
            return Err(FormatError::NoContent);
        }
        let regex = Regex::new(&re).map_err(|e| FormatError::Regex(Box::new(e)))?;
        let service_group = SERVICE_GROUPS
            .iter()
            .find_map(|s| names.iter().find(|n| n.eq_ignore_ascii_case(s)))
            .cloned();
        let roles = names
            .iter()
            .map(|name| {
                let idx = regex
                    .capture_names()
                    .position(|n| n == Some(name.as_str()))
                    .expect("group exists");
                let lower = name.to_ascii_lowercase();
                let role = if lower == "content" {
                    Role::Field(Field::Message)
                } else if Some(name) == service_group.as_ref() {
                    Role::Field(Field::Service)
                } else if TIME_GROUPS.contains(&lower.as_str()) {
                    Role::Time
                } else if let Some((field, _)) = index.lookup(&lower).and_then(|e| e.field) {
                    Role::Field(field)
                } else {
                    Role::Ignored
                };
                (idx, role)
            })
            .collect();
        Ok(HeaderPattern { regex, roles })
    }

    /// Whether the format captures a date or time.
    pub(crate) fn has_time(&self) -> bool {
        self.roles.iter().any(|(_, r)| matches!(r, Role::Time))
    }

    /// Reads `line` into `record`; `false` when the line does not fit the format.
    /// `time_buf` is a scratch buffer for joining date and time parts.
    pub(crate) fn read<'a>(
        &self,
        line: &'a str,
        record: &mut RawRecord<'a>,
        times: &mut HeaderTimeReader,
        time_buf: &mut String,
    ) -> bool {
        let Some(caps) = self.regex.captures(line) else {
            return false;
        };
        time_buf.clear();
        for &(idx, role) in &self.roles {
            let Some(m) = caps.get(idx) else { continue };
            match role {
                Role::Field(field) => record.offer(field, 0, Raw::Str(Cow::Borrowed(m.as_str()))),
                Role::Time => {
                    if !time_buf.is_empty() {
                        time_buf.push(' ');
                    }
                    time_buf.push_str(m.as_str());
                }
                Role::Ignored => {}
            }
        }
        // A header date in no known format leaves the event without a time (counted as
        // missing downstream) rather than losing its message.
        if let Some(t) = (!time_buf.is_empty())
            .then(|| times.read(time_buf))
            .flatten()
        {
            record.offer(Field::Ts, 0, Raw::Time(t));
        }
        true
    }
}

fn push_separator(re: &mut String, sep: &str) {
    let mut in_space = false;
    for c in sep.chars() {
        if c == ' ' {
            if !in_space {
                re.push_str(r"\s+");
            }
            in_space = true;
        } else {
            in_space = false;
            re.push(c);
        }
    }
}
