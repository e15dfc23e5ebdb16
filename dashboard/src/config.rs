//! The dashboard's settings: the `[dashboard]` section of config.ini and the environment
//! variables that override it.

use crate::hosts::HostList;
use crate::security;
use crate::server::HttpSettings;
use contract::RequestKind;
use request_reply::config::{KafkaSettings, TopicSettings};
use secrecy::SecretString;
use serde::Deserialize;
use serde_with::{DisplayFromStr, serde_as};
use service::config::{ConfigError, ConfigFile, EnvOverride};
use std::net::SocketAddr;
use std::time::Duration;

/// Environment variables the dashboard reads besides the common ones.
pub const ENV_OVERRIDES: &[EnvOverride] = &[
    EnvOverride {
        var: "DASHBOARD_LISTEN",
        section: "dashboard",
        key: "listen",
    },
    EnvOverride {
        var: "DASHBOARD_REQUEST_TIMEOUT_MS",
        section: "dashboard",
        key: "request_timeout_ms",
    },
    EnvOverride {
        var: "DASHBOARD_HISTORY_LIMIT",
        section: "dashboard",
        key: "history_limit",
    },
    EnvOverride {
        var: "DASHBOARD_AUTH_TOKEN",
        section: "dashboard",
        key: "auth_token",
    },
    EnvOverride {
        var: "DASHBOARD_ALLOW_UNAUTHENTICATED",
        section: "dashboard",
        key: "allow_unauthenticated",
    },
    EnvOverride {
        var: "DASHBOARD_ALLOWED_HOSTS",
        section: "dashboard",
        key: "allowed_hosts",
    },
    EnvOverride {
        var: "DASHBOARD_HEADER_READ_TIMEOUT_MS",
        section: "dashboard",
        key: "header_read_timeout_ms",
    },
    EnvOverride {
        var: "DASHBOARD_MAX_HEADER_BYTES",
        section: "dashboard",
        key: "max_header_bytes",
    },
    EnvOverride {
        var: "DASHBOARD_BODY_READ_TIMEOUT_MS",
        section: "dashboard",
        key: "body_read_timeout_ms",
    },
    EnvOverride {
        var: "DASHBOARD_MAX_CONNECTIONS",
        section: "dashboard",
        key: "max_connections",
    },
    EnvOverride {
        var: "DASHBOARD_MAX_EVENT_STREAMS",
        section: "dashboard",
        key: "max_event_streams",
    },
    EnvOverride {
        var: "DASHBOARD_INVOICE_GROUP",
        section: "dashboard",
        key: "invoice_group",
    },
    EnvOverride {
        var: "DASHBOARD_SCORE_GROUP",
        section: "dashboard",
        key: "score_group",
    },
    EnvOverride {
        var: "DASHBOARD_SHUTDOWN_GRACE_MS",
        section: "dashboard",
        key: "shutdown_grace_ms",
    },
];

/// `[dashboard]` as written in config.ini, each key a field; [`DashboardConfig::from_file`]
/// checks it and turns it into the settings the dashboard runs with.
#[serde_as]
#[derive(Deserialize)]
#[serde(default)]
pub(crate) struct DashboardSection {
    #[serde_as(as = "DisplayFromStr")]
    pub(crate) listen: SocketAddr,
    #[serde_as(as = "DisplayFromStr")]
    pub(crate) request_timeout_ms: u64,
    #[serde_as(as = "DisplayFromStr")]
    pub(crate) history_limit: usize,
    pub(crate) auth_token: String,
    #[serde_as(as = "DisplayFromStr")]
    pub(crate) allow_unauthenticated: security::Switch,
    #[serde_as(as = "DisplayFromStr")]
    pub(crate) allowed_hosts: HostList,
    #[serde_as(as = "DisplayFromStr")]
    pub(crate) header_read_timeout_ms: u64,
    #[serde_as(as = "DisplayFromStr")]
    pub(crate) max_header_bytes: usize,
    #[serde_as(as = "DisplayFromStr")]
    pub(crate) body_read_timeout_ms: u64,
    #[serde_as(as = "DisplayFromStr")]
    pub(crate) max_connections: usize,
    #[serde_as(as = "DisplayFromStr")]
    pub(crate) max_event_streams: usize,
    #[serde_as(as = "DisplayFromStr")]
    pub(crate) shutdown_grace_ms: u64,
    pub(crate) invoice_group: String,
    pub(crate) score_group: String,
}

impl Default for DashboardSection {
    fn default() -> Self {
        let http = HttpSettings::default();
        let millis = |duration: Duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        DashboardSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            request_timeout_ms: 30_000,
            history_limit: 10_000,
            auth_token: String::new(),
            allow_unauthenticated: security::Switch(false),
            allowed_hosts: http.allowed_hosts,
            header_read_timeout_ms: millis(http.header_read_timeout),
            max_header_bytes: http.max_header_bytes,
            body_read_timeout_ms: millis(http.body_read_timeout),
            max_connections: http.max_connections,
            max_event_streams: http.max_event_streams,
            shutdown_grace_ms: millis(http.shutdown_grace),
            invoice_group: WorkerGroups::default().invoice,
            score_group: WorkerGroups::default().score,
        }
    }
}

/// The consumer groups the workers answer in: the dashboard watches them to tell a learner why a
/// request waits (no worker, a rebalance) and to turn its banner green only when both can
/// answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerGroups {
    pub invoice: String,
    pub score: String,
}

impl Default for WorkerGroups {
    /// The workers' own default: the group named after the original request topic.
    fn default() -> Self {
        WorkerGroups {
            invoice: RequestKind::Invoice.base_request_topic().to_owned(),
            score: RequestKind::Score.base_request_topic().to_owned(),
        }
    }
}

impl WorkerGroups {
    pub fn of(&self, kind: RequestKind) -> &str {
        match kind {
            RequestKind::Invoice => &self.invoice,
            RequestKind::Score => &self.score,
        }
    }

    /// Why requests may wait while the groups have not been looked at `since` (the start, Kafka
    /// coming back): nothing is known of the workers, so the banner must not turn green yet.
    pub fn unchecked(&self, since: &str) -> Vec<(RequestKind, String)> {
        RequestKind::ALL
            .iter()
            .map(|kind| {
                let group = self.of(*kind);
                (
                    *kind,
                    format!("the consumer group {group} has not been looked at {since}"),
                )
            })
            .collect()
    }
}

#[derive(Clone, Debug)]
pub struct DashboardConfig {
    pub kafka: KafkaSettings,
    pub topics: TopicSettings,
    /// Where `main` listens; tests bind their own listener instead.
    pub listen: SocketAddr,
    /// A request with no reply after this long is shown as timed out.
    pub request_timeout: Duration,
    /// How many requests are remembered.
    pub history_limit: usize,
    /// When set, every route but `/healthz` and `/readyz` needs this token (as a bearer token or
    /// the password of HTTP Basic).
    pub auth_token: Option<SecretString>,
    /// Serve without authentication on a non-loopback address (a proxy in front authenticates).
    pub allow_unauthenticated: bool,
    /// The names requests may use, and the bounds on connections, headers, bodies, event
    /// streams and shutdown.
    pub http: HttpSettings,
    /// Where the workers consume.
    pub worker_groups: WorkerGroups,
}

impl DashboardConfig {
    pub fn from_file(file: &ConfigFile) -> Result<Self, ConfigError> {
        let section: DashboardSection = file.section_as("dashboard")?;
        let http = HttpSettings::from_section(&section)?;
        Ok(DashboardConfig {
            kafka: file.kafka(),
            topics: file.topics()?,
            listen: section.listen,
            request_timeout: Duration::from_millis(section.request_timeout_ms),
            history_limit: section.history_limit,
            auth_token: auth_token(section.auth_token)?,
            allow_unauthenticated: section.allow_unauthenticated.0,
            http,
            worker_groups: WorkerGroups {
                invoice: non_empty(section.invoice_group, "invoice_group")?,
                score: non_empty(section.score_group, "score_group")?,
            },
        })
    }

    /// Fails unless serving on `address` is safe: loopback, authenticated, or explicitly allowed.
    pub fn check_listen_address(&self, address: SocketAddr) -> anyhow::Result<()> {
        security::check_exposure(
            address,
            self.auth_token.is_some(),
            self.allow_unauthenticated,
        )
    }
}

/// A group id, which must not be blank.
fn non_empty(value: String, key: &str) -> Result<String, ConfigError> {
    let value = value.trim().to_owned();
    if value.is_empty() {
        return Err(ConfigError::Invalid {
            section: "dashboard".into(),
            key: key.into(),
            value,
            problem: "must name the workers' consumer group".into(),
        });
    }
    Ok(value)
}

/// `[dashboard] auth_token`: unset or blank means no authentication. Errors never quote it.
fn auth_token(configured: String) -> Result<Option<SecretString>, ConfigError> {
    let token = Some(configured.trim().to_owned()).filter(|token| !token.is_empty());
    match token {
        Some(token) if token.chars().count() < security::MIN_AUTH_TOKEN_CHARS => {
            Err(ConfigError::Invalid {
                section: "dashboard".into(),
                key: "auth_token".into(),
                value: "<redacted>".into(),
                problem: format!(
                    "must be at least {} characters (for example the output of `openssl rand -hex 32`)",
                    security::MIN_AUTH_TOKEN_CHARS
                ),
            })
        }
        token => Ok(token.map(SecretString::from)),
    }
}
