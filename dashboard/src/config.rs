//! The dashboard's settings: the `[dashboard]` section of config.ini and the environment
//! variables that override it.

use crate::security;
use crate::server::HttpSettings;
use request_reply::config::{KafkaSettings, TopicSettings};
use secrecy::SecretString;
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
        var: "DASHBOARD_SHUTDOWN_GRACE_MS",
        section: "dashboard",
        key: "shutdown_grace_ms",
    },
];

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
}

impl DashboardConfig {
    pub fn from_file(file: &ConfigFile) -> Result<Self, ConfigError> {
        Ok(DashboardConfig {
            kafka: file.kafka(),
            topics: file.topics()?,
            listen: file.get(
                "dashboard",
                "listen",
                SocketAddr::from(([127, 0, 0, 1], 3000)),
            )?,
            request_timeout: Duration::from_millis(file.get(
                "dashboard",
                "request_timeout_ms",
                30_000,
            )?),
            history_limit: file.get("dashboard", "history_limit", 10_000)?,
            auth_token: auth_token(file)?,
            allow_unauthenticated: file
                .get(
                    "dashboard",
                    "allow_unauthenticated",
                    security::Switch(false),
                )?
                .0,
            http: HttpSettings::from_file(file)?,
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

/// `[dashboard] auth_token`: unset or blank means no authentication. Errors never quote it.
fn auth_token(file: &ConfigFile) -> Result<Option<SecretString>, ConfigError> {
    let token = file
        .section("dashboard")
        .get("auth_token")
        .map(|token| token.trim().to_owned())
        .filter(|token| !token.is_empty());
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
