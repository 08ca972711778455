//! The job's configuration file (`logheal run --config FILE`): where to consume from,
//! librdkafka properties passed through as given, the rule files, and the job's own
//! settings. Command-line flags override it. Property values may be `${ENV}` or
//! `file:PATH` (for SASL passwords and TLS keys), so the file itself holds no secret.

use anyhow::{anyhow, bail, Result};
use logheal_kafka::KafkaConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub kafka: Option<KafkaSection>,
    #[serde(default)]
    pub rules: Vec<PathBuf>,
    pub listen: Option<std::net::SocketAddr>,
    /// Closed incidents kept for the incident pages and the API [100].
    pub history: Option<usize>,
    pub output: Option<String>,
    pub lateness: Option<String>,
    pub dry_run: Option<bool>,
    /// Field names tried before the built-in candidates, per field (`service:
    /// [app_name]`, `trace_id: [x_trace]`, ...); see the README's field table.
    pub fields: Option<logheal_parsers::FieldNames>,
    /// Text line shapes, as Loghub-style header formats (`<Date> <Time> <Level>
    /// \[<Component>\] <Content>`), tried in order before the built-in shapes.
    #[serde(default)]
    pub patterns: Vec<String>,
    /// Bounds on what the input can make the job hold, and the brake.
    pub limits: Option<LimitsSection>,
    /// What makes a template anomalous for its service (`select.anomaly`).
    pub anomaly: Option<AnomalySection>,
    /// What rule files may reference: `${VAR}` with these prefixes, `file:` under this
    /// directory (defaults `LOGHEAL_` and `/run/secrets/logheal/`).
    pub secrets: Option<SecretsSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsSection {
    #[serde(default)]
    pub env_prefixes: Vec<String>,
    pub dir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Services with names (and template miners) of their own [10000].
    pub services: Option<usize>,
    /// Open traces per rule [100000].
    pub traces_per_rule: Option<usize>,
    pub brake: Option<BrakeSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalySection {
    /// Templates first seen within this long of the stream's start are background [10m].
    pub warmup: Option<String>,
    /// How long a template first seen after the warm-up stays new [10m].
    pub new_for: Option<String>,
    /// A minute with at least this many events of a template [5]...
    pub spike_min: Option<u32>,
    /// ...and this many times its baseline is a rate spike [5].
    pub spike_factor: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrakeSection {
    /// More than this many incidents confirmed within `window` stop every action [10];
    /// 0 turns the brake off.
    pub max_confirmed: u32,
    /// [10m]
    pub window: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSection {
    pub brokers: String,
    pub topics: Vec<String>,
    pub group: Option<String>,
    pub ledger_topic: Option<String>,
    /// The longest a restart re-reads for a long-lived incident (e.g. `1h`).
    pub max_rewind: Option<String>,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Re-key the input through a topic of logheal's own (see `logheal rekey`).
    pub rekey: Option<RekeySection>,
    /// The topic between the stages: with it, each incident key is owned by one
    /// consumer of the group (see the README, "One incident per outage").
    pub signals_topic: Option<String>,
    /// `all` (default), `correlate` or `decide`.
    pub stage: Option<String>,
    /// Correlators in one process, each on a thread of its own [1].
    pub correlate_threads: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RekeySection {
    /// Where the re-keyed records go; `topics` above are then read by the re-keying
    /// stage, and the job consumes this topic.
    pub to: String,
}

impl FileConfig {
    /// Sets the process's reference policy from `secrets:` (before any rule file is
    /// read).
    pub fn apply_secrets(&self) -> Result<()> {
        let Some(secrets) = &self.secrets else {
            return Ok(());
        };
        let mut policy = logheal_rules::ReferencePolicy::default();
        if !secrets.env_prefixes.is_empty() {
            policy.env_prefixes = secrets.env_prefixes.clone();
        }
        if let Some(dir) = &secrets.dir {
            policy.secrets_dir = dir.clone();
        }
        Ok(logheal_rules::set_reference_policy(policy)?)
    }

    /// Sets what the file says of the engine: field names, line shapes and limits (and
    /// the reference policy of rule files, see `apply_secrets`).
    pub fn apply(&self, engine: &mut logheal_pipeline::EngineConfig) -> Result<()> {
        self.apply_secrets()?;
        if self.fields.is_some() {
            engine.fields = self.fields.clone();
        }
        engine.patterns.extend(self.patterns.iter().cloned());
        if let Some(anomaly) = &self.anomaly {
            let parse =
                |what: &str, text: &Option<String>| -> Result<Option<std::time::Duration>> {
                    text.as_ref()
                        .map(|t| {
                            humantime::parse_duration(t)
                                .map_err(|e| anyhow!("anomaly.{what} {t:?}: {e}"))
                        })
                        .transpose()
                };
            if let Some(d) = parse("warmup", &anomaly.warmup)? {
                engine.anomaly.warmup = d;
            }
            if let Some(d) = parse("new_for", &anomaly.new_for)? {
                engine.anomaly.new_for = d;
            }
            if let Some(n) = anomaly.spike_min {
                engine.anomaly.spike_min = n.max(1);
            }
            if let Some(f) = anomaly.spike_factor {
                engine.anomaly.spike_factor = f.max(1.0);
            }
        }
        let Some(limits) = &self.limits else {
            return Ok(());
        };
        if let Some(n) = limits.services {
            engine.max_services = n.max(1);
        }
        if let Some(n) = limits.traces_per_rule {
            engine.max_traces_per_rule = n.max(1);
        }
        if let Some(brake) = &limits.brake {
            engine.brake.max_confirmed = brake.max_confirmed;
            if let Some(window) = &brake.window {
                engine.brake.window = humantime::parse_duration(window)
                    .map_err(|e| anyhow!("limits.brake.window {window:?}: {e}"))?;
                if engine.brake.window.is_zero() {
                    bail!("limits.brake.window must be above zero");
                }
            }
        }
        Ok(())
    }

    /// Every error of the file as `file:line:col: message` (YAML errors, and text line
    /// patterns that do not compile, located at their text).
    pub fn check(path: &Path) -> Result<FileConfig, Vec<String>> {
        let config = FileConfig::load(path).map_err(|e| vec![e.to_string()])?;
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let index =
            logheal_parsers::LineParser::new(&logheal_parsers::FieldNames::default(), None, 2026)
                .expect("the default field names compile");
        let mut errors = Vec::new();
        for pattern in &config.patterns {
            if let Err((_, e)) = index.clone().with_patterns(std::slice::from_ref(pattern)) {
                let (line, col) = position_of(&text, pattern);
                errors.push(format!("{}:{line}:{col}: pattern: {e}", path.display()));
            }
        }
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors)
        }
    }

    pub fn load(path: &Path) -> Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?;
        let config: FileConfig = logheal_rules::parse_yaml(&path.display().to_string(), &text)
            .map_err(|d| anyhow!("{d}"))?;
        // Rule paths are relative to the file.
        let base = path.parent().unwrap_or(Path::new("."));
        Ok(FileConfig {
            rules: config.rules.iter().map(|r| base.join(r)).collect(),
            ..config
        })
    }
}

/// Line and column (1-based) of the first occurrence of `needle` in `text` (1:1 if none).
fn position_of(text: &str, needle: &str) -> (usize, usize) {
    let Some(at) = text.find(needle) else {
        return (1, 1);
    };
    let line = text[..at].matches('\n').count() + 1;
    let col = at - text[..at].rfind('\n').map_or(0, |n| n + 1) + 1;
    (line, col)
}

impl KafkaSection {
    /// The client settings, with every property reference resolved by `env`.
    pub fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<KafkaConfig> {
        let mut config = KafkaConfig::new(
            &self.brokers,
            self.topics.clone(),
            self.group.as_deref().unwrap_or("logheal"),
        );
        for (key, value) in &self.properties {
            let value = logheal_actions::receivers::expand(value, env)
                .map_err(|e| anyhow!("kafka property {key}: {e}"))?;
            config.properties.push((key.clone(), value));
        }
        if let Some(topic) = &self.ledger_topic {
            config.ledger_topic = topic.clone();
        }
        if let Some(rewind) = &self.max_rewind {
            config.max_rewind = humantime::parse_duration(rewind)
                .map_err(|e| anyhow!("kafka.max_rewind {rewind}: {e}"))?;
        }
        // `off` turns the stages apart off; unset: named after the group.
        config.signals_topic = match self.signals_topic.as_deref() {
            Some("off") => None,
            Some(topic) => Some(topic.to_string()),
            None => Some(format!("{}-signals", config.group)),
        };
        if let Some(stage) = &self.stage {
            config.stage = stage
                .parse()
                .map_err(|e: String| anyhow!("kafka.stage: {e}"))?;
        }
        if let Some(n) = self.correlate_threads {
            config.correlate_threads = n;
        }
        if config.brokers.is_empty() {
            bail!("kafka.brokers is empty");
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_example_config_and_resolves_secrets_from_the_environment() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/logheal.yaml");
        let config = FileConfig::load(&path).unwrap();
        let kafka = config.kafka.unwrap();
        let env = |name: &str| (name == "KAFKA_PASSWORD").then(|| "s3cret".to_string());
        let resolved = kafka.resolve(&env).unwrap();
        assert_eq!(resolved.topics, ["service-logs"]);
        assert!(resolved
            .properties
            .contains(&("sasl.password".into(), "s3cret".into())));
        let err = kafka.resolve(&|_| None).unwrap_err().to_string();
        assert_eq!(
            err,
            "kafka property sasl.password: KAFKA_PASSWORD is not set"
        );
        assert!(config
            .rules
            .iter()
            .all(|r| r.starts_with(path.parent().unwrap())));
    }

    #[test]
    fn a_fields_section_names_keys_first_and_a_typo_is_a_positioned_error() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let path = dir.join("job.yaml");
        std::fs::write(
            &path,
            "fields:\n  service: [app_name]\n  trace_id: [x_trace]\n",
        )
        .unwrap();
        let fields = FileConfig::load(&path).unwrap().fields.unwrap();
        let names = logheal_parsers::FieldNames::with_overrides(&fields);
        assert_eq!(names.service[0], "app_name");
        assert_eq!(names.trace_id[0], "x_trace");
        std::fs::write(&path, "fields:\n  servce: [app_name]\n").unwrap();
        let err = FileConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("job.yaml:2:"), "{err}");
        std::fs::write(
            &path,
            "patterns:\n  - '<Date> <Time> <Level> <Content>'\n  - '<Date> <Unclosed'\n",
        )
        .unwrap();
        let errors = FileConfig::check(&path).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("job.yaml:3:6: pattern:"), "{errors:?}");
    }
}
