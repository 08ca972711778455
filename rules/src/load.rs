//! Reading rule files (or directories of them) and the built-in default rules.

use crate::compile::{compile, SourceFile};
use crate::model::{Location, RuleSet};
use crate::schema::RuleFile;
use crate::Diagnostic;
use marked_yaml::{FromNodeError, LoadError, LoaderOptions, Marker, Node};
use std::path::{Path, PathBuf};

/// The shipped reference rule, used when no rule files are given.
pub const BUILTIN_NAME: &str = "builtin:cross-service-503.yaml";
pub const BUILTIN_RULES: &str = include_str!("../examples/cross-service-503.yaml");
/// The built-in rules for failures logged as errors (no status codes).
pub const BUILTIN_ERRORS_NAME: &str = "builtin:error-chains.yaml";
pub const BUILTIN_ERROR_RULES: &str = include_str!("../examples/error-chains.yaml");

/// The built-in rule set: the cross-service 503 rule, then the error-chain and
/// error-burst rules (which give way to it).
pub fn builtin() -> RuleSet {
    load_sources(&[
        (BUILTIN_NAME.to_string(), BUILTIN_RULES.to_string()),
        (
            BUILTIN_ERRORS_NAME.to_string(),
            BUILTIN_ERROR_RULES.to_string(),
        ),
    ])
    .expect("the built-in rules are valid (checked by tests)")
}

/// Loads files and directories (every `*.yaml` / `*.yml` inside, sorted) as one set.
pub fn load_paths(paths: &[PathBuf]) -> Result<RuleSet, Vec<Diagnostic>> {
    load_sources(&read_paths(paths)?)
}

/// Reads files and directories (every `*.yaml` / `*.yml` inside, sorted) as `(name,
/// text)` pairs, for `load_sources`.
pub fn read_paths(paths: &[PathBuf]) -> Result<Vec<(String, String)>, Vec<Diagnostic>> {
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for path in expand(paths, &mut errors) {
        let name = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(text) => sources.push((name, text)),
            Err(e) => errors.push(unreadable(&name, &e)),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(sources)
}

/// The rule files given, or the built-in rules when none are.
pub fn load_or_builtin(paths: &[PathBuf]) -> Result<RuleSet, Vec<Diagnostic>> {
    if paths.is_empty() {
        Ok(builtin())
    } else {
        load_paths(paths)
    }
}

/// Loads `(name, text)` pairs as one set.
pub fn load_sources(sources: &[(String, String)]) -> Result<RuleSet, Vec<Diagnostic>> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for (name, text) in sources {
        match parse(name, text) {
            Ok(content) => files.push(SourceFile {
                name: name.clone(),
                content,
            }),
            Err(d) => errors.push(d),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    compile(&files)
}

fn expand(paths: &[PathBuf], errors: &mut Vec<Diagnostic>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for path in paths {
        if !path.is_dir() {
            out.push(path.clone());
            continue;
        }
        match std::fs::read_dir(path) {
            Ok(entries) => {
                let mut files: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| is_rule_file(p))
                    .collect();
                files.sort();
                out.extend(files);
            }
            Err(e) => errors.push(Diagnostic::new(
                at(&path.display().to_string(), 1, 1),
                format!("cannot read directory: {e}"),
            )),
        }
    }
    out
}

/// A `*.yaml` / `*.yml` file that is neither hidden (editors' swap files, Kubernetes'
/// `..data` links) nor a rule test (`*.test.yaml`).
fn is_rule_file(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let hidden = name.starts_with('.') || name.contains(".test.");
    let yaml = p.extension().is_some_and(|e| e == "yaml" || e == "yml");
    yaml && !hidden && p.is_file()
}

/// A file that cannot be read, reported at its start.
pub(crate) fn unreadable(file: &str, e: &std::io::Error) -> Diagnostic {
    Diagnostic::new(at(file, 1, 1), format!("cannot read: {e}"))
}

fn at(file: &str, line: usize, col: usize) -> Location {
    Location {
        file: file.to_string(),
        line,
        col,
    }
}

fn parse(name: &str, text: &str) -> Result<RuleFile, Diagnostic> {
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Ok(RuleFile::default());
    }
    parse_yaml(name, text)
}

/// Parses YAML into `T` with every error at its `file:line:col`.
pub fn parse_yaml<T: serde::de::DeserializeOwned>(name: &str, text: &str) -> Result<T, Diagnostic> {
    let options = LoaderOptions::default()
        .error_on_duplicate_keys(true)
        .toplevel_mapping();
    let diagnostic = |mark: Option<Marker>, message: String| {
        let (line, col) = mark.map_or((1, 1), |m| (m.line().max(1), m.column().max(1)));
        Diagnostic::new(at(name, line, col), message)
    };
    let node = marked_yaml::parse_yaml_with_options(0, text, options).map_err(|e| {
        let (mark, message) = describe_load(0, &e);
        diagnostic(Some(mark), message)
    })?;
    marked_yaml::from_node(&node).map_err(|e| {
        let inner: &marked_yaml::Error = &e;
        let mut message = lowercase_first(&inner.to_string());
        if let Some(path) = e.path() {
            message.push_str(&format!(" (at {path})"));
        }
        let mark = unknown_key_mark(&node, &e).or_else(|| e.start_mark());
        diagnostic(mark, message)
    })
}

/// For an unknown key, the position of the key itself: the library reports the enclosing
/// mapping, so follow the error's path (`rules[0].correlate.min_service`) down the tree.
fn unknown_key_mark(root: &Node, e: &FromNodeError) -> Option<Marker> {
    let marked_yaml::Error::UnknownFieldError(..) = &**e else {
        return None;
    };
    let mut node = root;
    let mut segments = e.path()?.split('.').peekable();
    while let Some(segment) = segments.next() {
        let (key, indexes) = match segment.find('[') {
            Some(i) => (&segment[..i], &segment[i..]),
            None => (segment, ""),
        };
        let map = node.as_mapping()?;
        if segments.peek().is_none() && indexes.is_empty() {
            return map
                .iter()
                .find(|(k, _)| k.as_str() == key)
                .and_then(|(k, _)| k.span().start().copied());
        }
        node = map
            .iter()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v)?;
        for idx in indexes.split(['[', ']']).filter(|s| !s.is_empty()) {
            node = node.as_sequence()?.get(idx.parse::<usize>().ok()?)?;
        }
    }
    None
}

/// The position and a message, without the library's own position prefix.
fn describe_load(source: usize, e: &LoadError) -> (Marker, String) {
    match e {
        LoadError::TopLevelMustBeMapping(m) => (
            *m,
            "the top level must be a mapping with `rules:` (and `receivers:`)".to_string(),
        ),
        LoadError::TopLevelMustBeSequence(m) => {
            (*m, "the top level must be a sequence".to_string())
        }
        LoadError::UnexpectedAnchor(m) => (
            *m,
            "YAML anchors and aliases are not supported in rule files".to_string(),
        ),
        LoadError::MappingKeyMustBeScalar(m) => {
            (*m, "mapping keys must be plain strings".to_string())
        }
        LoadError::UnexpectedTag(m) => {
            (*m, "YAML tags are not supported in rule files".to_string())
        }
        LoadError::ScanError(m, s) => (*m, format!("YAML syntax error: {s}")),
        LoadError::DuplicateKey(d) => (
            d.key
                .span()
                .start()
                .copied()
                .unwrap_or(Marker::new(source, 0, 1, 1)),
            format!("duplicate key {:?}", d.key.as_str()),
        ),
    }
}

fn lowercase_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_lowercase().chain(c).collect())
        .unwrap_or_default()
}
