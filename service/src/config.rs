//! Loading `config.ini` the way the original services did, plus environment overrides.
//!
//! `[default]` holds librdkafka properties for every client, `[consumer]` those for consumers
//! only (`group.id`, `auto.offset.reset`), `[producer]` those for producers only. Every key in
//! those sections goes to librdkafka unchanged. Other sections (`[topics]`, `[dashboard]`,
//! `[worker]`) hold this project's own settings.
//!
//! Sections are read as maps because librdkafka keys contain dots, which the `config` crate would
//! otherwise treat as path separators; this project's own sections are then deserialized into
//! typed structs (see [`ConfigFile::section_as`]).

use request_reply::config::{KafkaSettings, TopicSettings, is_secret};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_with::{DisplayFromStr, serde_as};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: Box<config::ConfigError>,
    },
    #[error("[{section}] {key} = {value:?}: {problem}")]
    Invalid {
        section: String,
        key: String,
        value: String,
        problem: String,
    },
}

/// An environment variable that overrides one key of one section.
#[derive(Clone, Copy, Debug)]
pub struct EnvOverride {
    pub var: &'static str,
    pub section: &'static str,
    pub key: &'static str,
}

/// Overrides every service honours.
pub const COMMON_ENV_OVERRIDES: &[EnvOverride] = &[
    EnvOverride {
        var: "KAFKA_BOOTSTRAP_SERVERS",
        section: "default",
        key: "bootstrap.servers",
    },
    EnvOverride {
        var: "TOPIC_PREFIX",
        section: "topics",
        key: "prefix",
    },
    EnvOverride {
        var: "TOPIC_PARTITIONS",
        section: "topics",
        key: "partitions",
    },
    EnvOverride {
        var: "TOPIC_REPLICATION_FACTOR",
        section: "topics",
        key: "replication_factor",
    },
    EnvOverride {
        var: "TOPIC_MIN_INSYNC_REPLICAS",
        section: "topics",
        key: "min_insync_replicas",
    },
];

/// Any librdkafka property can be set as `LIBRDKAFKA_<KEY>`, dots written as underscores
/// (`LIBRDKAFKA_SASL_PASSWORD` sets `sasl.password` in `[default]`).
const LIBRDKAFKA_ENV_PREFIX: &str = "LIBRDKAFKA_";

/// The sections of a config file after environment overrides.
#[derive(Clone, Default)]
pub struct ConfigFile {
    sections: BTreeMap<String, BTreeMap<String, String>>,
}

/// Shows every section, with the values of secret-looking keys (`sasl.password`,
/// `[dashboard] auth_token`, ...) redacted.
impl fmt::Debug for ConfigFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sections = f.debug_map();
        for (name, keys) in &self.sections {
            let shown: BTreeMap<&str, &str> = keys
                .iter()
                .map(|(key, value)| {
                    let value = if is_secret(key) { "<redacted>" } else { value };
                    (key.as_str(), value)
                })
                .collect();
            sections.entry(name, &shown);
        }
        sections.finish()
    }
}

impl ConfigFile {
    /// Reads `path`, then applies [`COMMON_ENV_OVERRIDES`], `LIBRDKAFKA_*` and `extra` overrides
    /// from the process environment.
    pub fn load(path: &Path, extra: &[EnvOverride]) -> Result<Self, ConfigError> {
        let read_error = |source| ConfigError::Read {
            path: path.display().to_string(),
            source: Box::new(source),
        };
        let sections: BTreeMap<String, BTreeMap<String, String>> = config::Config::builder()
            .add_source(config::File::new(
                &path.to_string_lossy(),
                config::FileFormat::Ini,
            ))
            .build()
            .and_then(|built| built.try_deserialize())
            .map_err(read_error)?;
        let mut file = ConfigFile { sections };
        file.apply_env(std::env::vars(), extra);
        Ok(file)
    }

    /// A config with no file behind it, for tests and embedding.
    pub fn from_sections(sections: BTreeMap<String, BTreeMap<String, String>>) -> Self {
        ConfigFile { sections }
    }

    fn apply_env(&mut self, vars: impl Iterator<Item = (String, String)>, extra: &[EnvOverride]) {
        for (var, value) in vars {
            if let Some(known) = COMMON_ENV_OVERRIDES
                .iter()
                .chain(extra)
                .find(|known| known.var == var)
            {
                self.set(known.section, known.key, value);
            } else if let Some(property) = var.strip_prefix(LIBRDKAFKA_ENV_PREFIX) {
                let key = property.to_ascii_lowercase().replace('_', ".");
                self.set("default", &key, value);
            }
        }
    }

    pub fn set(&mut self, section: &str, key: &str, value: impl Into<String>) {
        self.sections
            .entry(section.to_owned())
            .or_default()
            .insert(key.to_owned(), value.into());
    }

    pub fn section(&self, name: &str) -> BTreeMap<String, String> {
        self.sections.get(name).cloned().unwrap_or_default()
    }

    /// One of this project's own sections as `T`: a struct whose fields are the section's keys,
    /// with serde defaults for keys that are absent (keys it does not name are ignored). INI
    /// values are text, so fields of other types are marked `#[serde_as(as = "DisplayFromStr")]`
    /// and parsed with their `FromStr`. A bad value is refused naming its section and key.
    pub fn section_as<T: DeserializeOwned>(&self, name: &str) -> Result<T, ConfigError> {
        let keys = self.section(name);
        let text = keys
            .iter()
            .map(|(key, value)| (key.clone(), value.trim().into()))
            .collect::<serde_json::Map<_, _>>();
        serde_path_to_error::deserialize(serde_json::Value::Object(text)).map_err(|error| {
            let key = error.path().to_string();
            let value = match keys.get(&key) {
                Some(_) if is_secret(&key) => "<redacted>".to_owned(),
                Some(value) => value.clone(),
                None => String::new(),
            };
            ConfigError::Invalid {
                section: name.into(),
                key,
                value,
                problem: error.into_inner().to_string(),
            }
        })
    }

    pub fn kafka(&self) -> KafkaSettings {
        KafkaSettings {
            common: self.section("default"),
            consumer: self.section("consumer"),
            producer: self.section("producer"),
        }
    }

    pub fn topics(&self) -> Result<TopicSettings, ConfigError> {
        let section: TopicsSection = self.section_as("topics")?;
        let settings = TopicSettings {
            prefix: section.prefix,
            partitions: section.partitions,
            replication_factor: section.replication_factor,
            min_insync_replicas: section.min_insync_replicas,
        };
        // Invoice numbers reserve three decimal digits for the partition.
        if !(1..=1000).contains(&settings.partitions) {
            return Err(ConfigError::Invalid {
                section: "topics".into(),
                key: "partitions".into(),
                value: settings.partitions.to_string(),
                problem: "must be between 1 and 1000".into(),
            });
        }
        if settings.replication_factor < 1 {
            return Err(ConfigError::Invalid {
                section: "topics".into(),
                key: "replication_factor".into(),
                value: settings.replication_factor.to_string(),
                problem: "must be at least 1".into(),
            });
        }
        if let Some(min_insync) = settings.min_insync_replicas {
            if !(1..=settings.replication_factor).contains(&min_insync) {
                return Err(ConfigError::Invalid {
                    section: "topics".into(),
                    key: "min_insync_replicas".into(),
                    value: min_insync.to_string(),
                    problem: format!(
                        "must be between 1 and replication_factor ({})",
                        settings.replication_factor
                    ),
                });
            }
        }
        Ok(settings)
    }
}

/// `[topics]`: where the request and reply topics are, and how they are created.
#[serde_as]
#[derive(Deserialize)]
#[serde(default)]
struct TopicsSection {
    prefix: String,
    #[serde_as(as = "DisplayFromStr")]
    partitions: i32,
    #[serde_as(as = "DisplayFromStr")]
    replication_factor: i32,
    #[serde_as(as = "Option<DisplayFromStr>")]
    min_insync_replicas: Option<i32>,
}

impl Default for TopicsSection {
    fn default() -> Self {
        let defaults = TopicSettings::default();
        TopicsSection {
            prefix: defaults.prefix,
            partitions: defaults.partitions,
            replication_factor: defaults.replication_factor,
            min_insync_replicas: defaults.min_insync_replicas,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_ini(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::Builder::new().suffix(".ini").tempfile().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    #[test]
    fn dotted_librdkafka_keys_survive_and_sections_split_by_role() {
        let file = write_ini(
            "[default]\nbootstrap.servers=broker:9092\nclient.id=MixedCase\n\n[consumer]\ngroup.id=invoice\nauto.offset.reset=earliest\n\n[producer]\nlinger.ms=5\n",
        );
        let config = ConfigFile::load(file.path(), &[]).unwrap();
        let kafka = config.kafka();
        assert_eq!(kafka.common.get("client.id").unwrap(), "MixedCase");
        assert_eq!(kafka.consumer.get("group.id").unwrap(), "invoice");
        let consumer = kafka.consumer_config();
        assert_eq!(consumer.get("auto.offset.reset"), Some("earliest"));
        assert_eq!(consumer.get("linger.ms"), None);
        assert_eq!(kafka.producer_config().get("linger.ms"), Some("5"));
        assert_eq!(kafka.common_config().get("group.id"), None);
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut config = ConfigFile::default();
        config.set("default", "bootstrap.servers", "from-file:9092");
        let extra = [EnvOverride {
            var: "DASHBOARD_LISTEN",
            section: "dashboard",
            key: "listen",
        }];
        config.apply_env(
            [
                ("KAFKA_BOOTSTRAP_SERVERS", "from-env:9093"),
                ("LIBRDKAFKA_SASL_PASSWORD", "hunter2"),
                ("DASHBOARD_LISTEN", "0.0.0.0:80"),
                ("TOPIC_PARTITIONS", "6"),
                ("UNRELATED", "x"),
            ]
            .into_iter()
            .map(|(var, value)| (var.to_owned(), value.to_owned())),
            &extra,
        );
        let kafka = config.kafka();
        assert_eq!(kafka.bootstrap_servers(), "from-env:9093");
        assert_eq!(kafka.common.get("sasl.password").unwrap(), "hunter2");
        assert_eq!(
            config.section("dashboard").get("listen").unwrap(),
            "0.0.0.0:80"
        );
        assert_eq!(config.topics().unwrap().partitions, 6);
        assert!(!format!("{kafka:?}").contains("hunter2"));
    }

    #[test]
    fn bad_values_name_section_and_key() {
        let mut config = ConfigFile::default();
        config.set("topics", "partitions", "many");
        let error = config.topics().unwrap_err().to_string();
        assert!(error.contains("[topics] partitions"), "{error}");
        config.set("topics", "partitions", "0");
        assert!(config.topics().is_err());
    }

    #[test]
    fn min_insync_replicas_is_optional_and_bounded_by_the_replication_factor() {
        let mut config = ConfigFile::default();
        assert_eq!(config.topics().unwrap().min_insync_replicas, None);
        config.apply_env(
            [
                ("TOPIC_REPLICATION_FACTOR", "3"),
                ("TOPIC_MIN_INSYNC_REPLICAS", "2"),
            ]
            .into_iter()
            .map(|(var, value)| (var.to_owned(), value.to_owned())),
            &[],
        );
        let topics = config.topics().unwrap();
        assert_eq!(
            (topics.replication_factor, topics.min_insync_replicas),
            (3, Some(2))
        );
        config.set("topics", "min_insync_replicas", "4");
        let error = config.topics().unwrap_err().to_string();
        assert!(error.contains("[topics] min_insync_replicas"), "{error}");
        config.set("topics", "min_insync_replicas", "0");
        assert!(config.topics().is_err());
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let error = ConfigFile::load(Path::new("/nonexistent/config.ini"), &[]).unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/config.ini"),
            "{error}"
        );
    }
}
