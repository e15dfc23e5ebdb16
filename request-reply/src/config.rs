//! Client settings every service passes to the library: librdkafka properties by client role,
//! and how topics are created. Plain data, so a caller can fill them from any source (this
//! project's services read them from config.ini, see the `service` crate).

use rdkafka::ClientConfig;
use std::collections::BTreeMap;
use std::fmt;

/// The librdkafka properties of one service.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaSettings {
    /// `[default]`: shared by every client the service creates.
    pub common: BTreeMap<String, String>,
    /// `[consumer]`: consumers only.
    pub consumer: BTreeMap<String, String>,
    /// `[producer]`: producers only.
    pub producer: BTreeMap<String, String>,
}

impl KafkaSettings {
    /// Settings that only name the cluster; everything else is left at its default.
    pub fn for_bootstrap(servers: &str) -> Self {
        let mut settings = KafkaSettings::default();
        settings
            .common
            .insert("bootstrap.servers".into(), servers.into());
        settings
    }

    /// `bootstrap.servers`, for logs and error messages.
    pub fn bootstrap_servers(&self) -> &str {
        self.common
            .get("bootstrap.servers")
            .map(String::as_str)
            .unwrap_or("(bootstrap.servers not set)")
    }

    /// `[default]` only: for admin clients and other clients that neither consume nor produce.
    /// Every client also gets [`RECONNECT_BACKOFF_MAX_MS`] and [`REBOOTSTRAP_TRIGGER_MS`] unless
    /// config.ini sets them.
    pub fn common_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (key, value) in CLIENT_DEFAULTS {
            config.set(key, value);
        }
        for (key, value) in &self.common {
            config.set(key, value);
        }
        config
    }

    /// `[default]` then `[consumer]`, so consumer-specific values win.
    pub fn consumer_config(&self) -> ClientConfig {
        let mut config = self.common_config();
        for (key, value) in &self.consumer {
            config.set(key, value);
        }
        config
    }

    /// `[default]` then `[producer]`.
    pub fn producer_config(&self) -> ClientConfig {
        let mut config = self.common_config();
        for (key, value) in &self.producer {
            config.set(key, value);
        }
        config
    }
}

/// Longest pause between a client's attempts to reach a broker that is down. librdkafka doubles
/// the pause from 100 ms up to 10 s by default, so after an outage of ten seconds or more a
/// client could sit out up to ten more seconds after the brokers were back; with one second it
/// is back within a second, at the price of one connection attempt a second per broker while
/// they are down.
pub const RECONNECT_BACKOFF_MAX_MS: &str = "1000";

/// How long a client may go without an answer to a metadata request before it forgets the
/// brokers it learned and starts again from `bootstrap.servers`. While a whole cluster shuts down
/// broker by broker, each metadata response lists fewer brokers and the client forgets the others;
/// when the last one it knows is gone, librdkafka's own check for "all brokers down" can miss
/// (the forgotten ones are still being counted), and then only this timer brings the client back.
/// librdkafka's default of 5 minutes left a worker replica's consumer, or the dashboard's producer,
/// dead for minutes after the cluster was back (scripts/chaos scenario 3).
pub const REBOOTSTRAP_TRIGGER_MS: &str = "5000";

/// What every client gets unless config.ini says otherwise: how it comes back after an outage.
const CLIENT_DEFAULTS: [(&str, &str); 2] = [
    ("reconnect.backoff.max.ms", RECONNECT_BACKOFF_MAX_MS),
    (
        "metadata.recovery.rebootstrap.trigger.ms",
        REBOOTSTRAP_TRIGGER_MS,
    ),
];

/// Values of keys that look like secrets never reach logs.
pub fn is_secret(key: &str) -> bool {
    ["password", "secret", "token", ".key", "jaas"]
        .iter()
        .any(|marker| key.contains(marker))
}

impl fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |map: &BTreeMap<String, String>| -> BTreeMap<String, String> {
            map.iter()
                .map(|(key, value)| {
                    let shown = if is_secret(key) { "<redacted>" } else { value };
                    (key.clone(), shown.to_owned())
                })
                .collect()
        };
        f.debug_struct("KafkaSettings")
            .field("common", &redact(&self.common))
            .field("consumer", &redact(&self.consumer))
            .field("producer", &redact(&self.producer))
            .finish()
    }
}

/// How the services create the topics they need at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSettings {
    /// A namespace the caller puts before each of its topic names (empty: none), so several
    /// deployments or test runs can share a cluster. The library itself takes whole names (see
    /// [`Route`](crate::route::Route)); this is where a service's configuration carries it.
    pub prefix: String,
    /// Partitions of each topic created.
    pub partitions: i32,
    /// Replicas of each partition of each topic created.
    pub replication_factor: i32,
    /// `min.insync.replicas` of the topics created at start-up; none: the broker's default.
    pub min_insync_replicas: Option<i32>,
}

impl Default for TopicSettings {
    fn default() -> Self {
        TopicSettings {
            prefix: String::new(),
            partitions: 3,
            replication_factor: 1,
            min_insync_replicas: None,
        }
    }
}

impl TopicSettings {
    /// The default settings, with the namespace `prefix`.
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        TopicSettings {
            prefix: prefix.into(),
            ..TopicSettings::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_comes_back_quickly_after_an_outage_unless_told_otherwise() {
        let quick = KafkaSettings::for_bootstrap("broker:9092");
        for config in [
            quick.common_config(),
            quick.consumer_config(),
            quick.producer_config(),
        ] {
            assert_eq!(config.get("reconnect.backoff.max.ms"), Some("1000"));
            assert_eq!(
                config.get("metadata.recovery.rebootstrap.trigger.ms"),
                Some("5000")
            );
        }
        let mut patient = quick.clone();
        patient
            .common
            .insert("reconnect.backoff.max.ms".into(), "10000".into());
        assert_eq!(
            patient.consumer_config().get("reconnect.backoff.max.ms"),
            Some("10000")
        );
    }
}
