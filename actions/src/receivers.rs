//! Receiver endpoints: the rule file's references (`${ENV}`, `file:/path`) resolved into
//! URLs, headers and signing keys when actions are executed. A reference that cannot be
//! resolved makes the receiver "not configured": its actions are reported as such, the
//! rules still run. Secrets never reach the output.

use logheal_rules::{Receiver, ReceiverKind};
use std::time::Duration;

/// A receiver ready to call.
#[derive(Clone)]
pub struct Endpoint {
    pub name: String,
    pub kind: ReceiverKind,
    pub method: reqwest::Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// HMAC-SHA256 key for `X-Logheal-Signature`.
    pub secret: Option<Vec<u8>>,
    pub timeout: Duration,
    pub retries: u32,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a token: show the receiver's name only.
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A receiver as the executor sees it.
#[derive(Debug, Clone)]
pub enum Resolved {
    Ready(Endpoint),
    /// Why it cannot be called, e.g. "LOGHEAL_RESTART_URL is not set".
    NotConfigured(String),
}

/// Resolves every receiver with `env` (the process environment in production), by name.
pub fn resolve_all(
    receivers: &[Receiver],
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<(std::sync::Arc<str>, Resolved)> {
    receivers
        .iter()
        .map(|r| (r.name.as_str().into(), resolve(r, env)))
        .collect()
}

fn resolve(r: &Receiver, env: &dyn Fn(&str) -> Option<String>) -> Resolved {
    // A rule file's references: the rules' policy is checked again here (a rule set
    // built some other way than through `logheal check` gets no more than it allows).
    let expand = |template: &str| -> Result<String, ResolveError> {
        logheal_rules::check_references(template)?;
        Ok(expand(template, env)?)
    };
    let resolved: Result<Endpoint, ResolveError> = (|| {
        let url = expand(&r.url)?;
        let headers = r
            .headers
            .iter()
            .map(|(k, v)| Ok((k.clone(), expand(v)?)))
            .collect::<Result<Vec<_>, ResolveError>>()?;
        let secret = r
            .secret
            .as_deref()
            .map(|s| expand(s).map(String::into_bytes))
            .transpose()?;
        let method = reqwest::Method::from_bytes(r.method.as_bytes())
            .map_err(|_| ResolveError::Method(r.method.clone()))?;
        Ok(Endpoint {
            name: r.name.clone(),
            kind: r.kind,
            method,
            url,
            headers,
            secret,
            timeout: r.timeout,
            retries: r.retries,
        })
    })();
    match resolved {
        Ok(endpoint) => Resolved::Ready(endpoint),
        Err(reason) => Resolved::NotConfigured(reason.to_string()),
    }
}

/// Why a receiver cannot be called.
#[derive(Debug, thiserror::Error)]
enum ResolveError {
    #[error(transparent)]
    Reference(#[from] logheal_rules::ReferenceError),
    #[error(transparent)]
    Expand(#[from] ExpandError),
    #[error("method {0} is not valid")]
    Method(String),
}

/// A reference that could not be expanded; it names what is missing, never a value.
#[derive(Debug, thiserror::Error)]
pub enum ExpandError {
    #[error("cannot read {path}: {error}")]
    File { path: String, error: std::io::Error },
    #[error("unclosed ${{")]
    Unclosed,
    #[error("{0} is not set")]
    Unset(String),
}

/// Replaces every `${NAME}` with the variable's value; a whole value `file:PATH` is the
/// file's content (trimmed). Errors name what is missing, never a value. No policy: the
/// job's own configuration uses it as is (`KAFKA_PASSWORD`); a rule file's references
/// are checked first (`resolve`).
pub fn expand(template: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, ExpandError> {
    if let Some(path) = template.strip_prefix("file:") {
        return std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .map_err(|error| ExpandError::File {
                path: path.to_string(),
                error,
            });
    }
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').ok_or(ExpandError::Unclosed)?;
        let name = &rest[start + 2..start + end];
        match env(name) {
            Some(v) if !v.is_empty() => out.push_str(&v),
            _ => return Err(ExpandError::Unset(name.to_string())),
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "LOGHEAL_HOOK" => Some("http://127.0.0.1:9/hook?token=abc".into()),
            "LOGHEAL_KEY" => Some("s3cret".into()),
            "KAFKA_PASSWORD" => Some("kafka-s3cret".into()),
            _ => None,
        }
    }

    fn receiver(url: &str, secret: Option<&str>) -> Receiver {
        Receiver {
            name: "restart".into(),
            kind: ReceiverKind::Webhook,
            url: url.into(),
            method: "POST".into(),
            timeout: Duration::from_secs(1),
            retries: 2,
            secret: secret.map(str::to_string),
            headers: vec![("X-Team".into(), "sre-${LOGHEAL_KEY}".into())],
            location: Default::default(),
        }
    }

    #[test]
    fn references_expand_or_say_what_is_missing() {
        match resolve(&receiver("${LOGHEAL_HOOK}", Some("${LOGHEAL_KEY}")), &env) {
            Resolved::Ready(e) => {
                assert_eq!(e.url, "http://127.0.0.1:9/hook?token=abc");
                assert_eq!(e.secret.as_deref(), Some(&b"s3cret"[..]));
                assert_eq!(e.headers[0].1, "sre-s3cret");
                assert!(
                    !format!("{e:?}").contains("token"),
                    "secrets stay out of debug output"
                );
            }
            other => panic!("{other:?}"),
        }
        match resolve(&receiver("${LOGHEAL_NOPE_URL}", None), &env) {
            Resolved::NotConfigured(why) => assert_eq!(why, "LOGHEAL_NOPE_URL is not set"),
            other => panic!("{other:?}"),
        }
        match resolve(
            &receiver("${LOGHEAL_HOOK}", Some("${LOGHEAL_NOPE_KEY}")),
            &env,
        ) {
            Resolved::NotConfigured(why) => assert_eq!(why, "LOGHEAL_NOPE_KEY is not set"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rule_references_reach_logheal_variables_only() {
        let exfil = receiver("http://127.0.0.1:9/x?pw=${KAFKA_PASSWORD}", None);
        match resolve(&exfil, &env) {
            Resolved::NotConfigured(why) => {
                assert!(why.contains("LOGHEAL_* variables only"), "{why}");
                assert!(!why.contains("kafka-s3cret"));
            }
            other => panic!("{other:?}"),
        }
        // The job's own configuration is not a rule file: no policy there.
        assert_eq!(expand("${KAFKA_PASSWORD}", &env).unwrap(), "kafka-s3cret");
    }

    #[test]
    fn secrets_from_files() {
        let path = std::env::temp_dir().join(format!("logheal-key-{}", std::process::id()));
        std::fs::write(&path, "filekey\n").unwrap();
        // The job's configuration may read any file it names...
        let reference = format!("file:{}", path.display());
        assert_eq!(expand(&reference, &env).unwrap(), "filekey");
        // ...a rule file only those under the secrets directory.
        let r = receiver("${LOGHEAL_HOOK}", Some(&reference));
        match resolve(&r, &env) {
            Resolved::NotConfigured(why) => {
                assert!(why.contains("/run/secrets/logheal/"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        std::fs::remove_file(path).unwrap();
    }
}
