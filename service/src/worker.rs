//! What both workers share around the library's responder loop: the command line
//! (`<worker> config/config.ini [--reset]`, as the originals), reading the worker's settings from
//! config.ini, the topics and consumer group of the worker's kind of request (the contract's
//! names, which the library takes as given), and serving `GET /metrics` next to the loop.

use crate::config::{ConfigError, ConfigFile, EnvOverride};
use clap::{CommandFactory, FromArgMatches, Parser};
use contract::{RequestKind, Topics};
use prometheus_client::registry::Registry;
use request_reply::metrics::WorkerMetrics;
use request_reply::responder::{
    self, DEFAULT_MAX_IN_FLIGHT, Delivery, RetryPolicy, Service, TransactionPolicy,
};
use serde::Deserialize;
use serde_with::{DisplayFromStr, serde_as};
use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Environment variables a worker reads besides the common ones.
pub const WORKER_ENV_OVERRIDES: &[EnvOverride] = &[EnvOverride {
    var: "WORKER_METRICS_LISTEN",
    section: "worker",
    key: "metrics_listen",
}];

#[derive(Debug, Parser)]
#[command(
    version,
    about = "A request/reply worker: consumes its request topic, replies on its reply topic"
)]
pub struct WorkerArgs {
    /// config.ini: librdkafka properties in `[default]` and `[consumer]`, topics in `[topics]`
    pub config: PathBuf,
    /// Read the request topic from the beginning instead of the committed offsets
    #[arg(long)]
    pub reset: bool,
}

impl WorkerArgs {
    /// Parses the command line of the worker binary `name` (its `--help` and `--version` name
    /// it, not this crate), starts logging and reads the config file with its environment
    /// overrides.
    pub fn parse_and_load(
        name: &'static str,
        version: &'static str,
    ) -> Result<WorkerConfig, ConfigError> {
        let matches = WorkerArgs::command()
            .name(name)
            .bin_name(name)
            .version(version)
            .get_matches();
        let args = WorkerArgs::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
        crate::telemetry::init_logging();
        let file = ConfigFile::load(&args.config, WORKER_ENV_OVERRIDES)?;
        WorkerConfig::from_file(&file, args.reset)
    }
}

/// Everything a worker needs to run, usually read from its config.ini.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// What the responder loop needs.
    pub responder: responder::WorkerConfig,
    /// Where to serve `GET /metrics`, `GET /healthz` and `GET /readyz`; none when unset.
    pub metrics_listen: Option<SocketAddr>,
}

/// A worker without a metrics endpoint.
impl From<responder::WorkerConfig> for WorkerConfig {
    fn from(responder: responder::WorkerConfig) -> Self {
        WorkerConfig {
            responder,
            metrics_listen: None,
        }
    }
}

impl WorkerConfig {
    /// Reads `[default]`, `[consumer]`, `[producer]`, `[topics]`, `[worker] reply_topics`
    /// (comma-separated), its delivery, concurrency and retry settings, and `[worker]
    /// metrics_listen`.
    pub fn from_file(file: &ConfigFile, reset: bool) -> Result<Self, ConfigError> {
        let section: WorkerSection = file.section_as("worker")?;
        let extra_reply_topics = section
            .reply_topics
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .collect();
        let metrics_listen = section.metrics_listen;
        let delivery = match section.delivery {
            DeliveryMode::AtLeastOnce => Delivery::AtLeastOnce,
            DeliveryMode::ExactlyOnce => Delivery::ExactlyOnce(TransactionPolicy {
                max_requests: section.transaction_max_requests,
                max_wait: Duration::from_millis(section.transaction_max_ms),
            }),
        };
        Ok(WorkerConfig {
            responder: responder::WorkerConfig {
                kafka: file.kafka(),
                topics: file.topics()?,
                reset,
                extra_reply_topics,
                group_id: None,
                max_in_flight: section.max_in_flight,
                retry: RetryPolicy {
                    max_retries: section.max_retries,
                    first_backoff: Duration::from_millis(section.retry_backoff_ms),
                    ..RetryPolicy::default()
                },
                delivery,
            },
            metrics_listen,
        })
    }
}

/// `[worker]`: what the responder allows besides its defaults, how many requests it handles at
/// once, how it retries, and where its metrics are served.
#[serde_as]
#[derive(Deserialize)]
#[serde(default)]
struct WorkerSection {
    /// Further reply topics a request may name, comma-separated.
    reply_topics: String,
    #[serde_as(as = "Option<DisplayFromStr>")]
    metrics_listen: Option<SocketAddr>,
    #[serde_as(as = "DisplayFromStr")]
    max_in_flight: NonZeroUsize,
    #[serde_as(as = "DisplayFromStr")]
    max_retries: u32,
    #[serde_as(as = "DisplayFromStr")]
    retry_backoff_ms: u64,
    delivery: DeliveryMode,
    /// Exactly-once: most requests per transaction, and longest a transaction stays open while
    /// requests are being handled.
    #[serde_as(as = "DisplayFromStr")]
    transaction_max_requests: NonZeroUsize,
    #[serde_as(as = "DisplayFromStr")]
    transaction_max_ms: u64,
}

/// `[worker] delivery`: `at_least_once` (the default) or `exactly_once` (see
/// [`Delivery`]).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum DeliveryMode {
    #[default]
    AtLeastOnce,
    ExactlyOnce,
}

impl Default for WorkerSection {
    fn default() -> Self {
        let retry = RetryPolicy::default();
        let transactions = TransactionPolicy::default();
        WorkerSection {
            reply_topics: String::new(),
            metrics_listen: None,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_retries: retry.max_retries,
            retry_backoff_ms: u64::try_from(retry.first_backoff.as_millis()).unwrap_or(u64::MAX),
            delivery: DeliveryMode::default(),
            transaction_max_requests: transactions.max_requests,
            transaction_max_ms: u64::try_from(transactions.max_wait.as_millis())
                .unwrap_or(u64::MAX),
        }
    }
}

/// Why a worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Responder(#[from] responder::WorkerError),
    #[error("cannot serve metrics on {address}: {source}")]
    Metrics {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Runs `service` in the library's responder loop on the topics of `kind` (under the configured
/// prefix) until `shutdown` resolves, serving its metrics on `metrics_listen` when set.
///
/// The worker joins the consumer group named after its original request topic
/// (`generate-invoice`, `calculate-score`, whatever the prefix) unless config.ini names one, as
/// the original workers did.
pub async fn run<S: Service>(
    service: S,
    kind: RequestKind,
    mut config: WorkerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WorkerError> {
    let route = Topics::with_prefix(&config.responder.topics.prefix).route(kind);
    config
        .responder
        .group_id
        .get_or_insert_with(|| kind.base_request_topic().to_owned());
    let mut registry = Registry::default();
    let metrics = WorkerMetrics::register(&mut registry);
    let metrics_listener = match config.metrics_listen {
        None => None,
        Some(address) => match tokio::net::TcpListener::bind(address).await {
            Ok(listener) => Some(listener),
            // A second replica started by hand next to a running one (`docker exec ... --reset`)
            // finds the port taken: it works on, without an endpoint of its own.
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => {
                tracing::warn!(%address, "metrics port in use; running without /metrics");
                None
            }
            Err(source) => return Err(WorkerError::Metrics { address, source }),
        },
    };
    let metrics_server = match metrics_listener {
        None => None,
        Some(listener) => {
            tracing::info!(address = ?listener.local_addr().ok(), "serving /metrics");
            let app = crate::metrics::router(Arc::new(registry), metrics.clone());
            Some(tokio::spawn(
                async move { axum::serve(listener, app).await },
            ))
        }
    };
    let result =
        responder::run_with_metrics(service, &route, config.responder, metrics, shutdown).await;
    if let Some(server) = metrics_server {
        server.abort();
    }
    Ok(result?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker_section(key: &str, value: &str) -> Result<WorkerConfig, ConfigError> {
        let mut file = ConfigFile::default();
        file.set("worker", key, value);
        WorkerConfig::from_file(&file, false)
    }

    #[test]
    fn worker_section_sets_concurrency_and_retries() {
        let mut file = ConfigFile::default();
        file.set("worker", "max_in_flight", "8");
        file.set("worker", "max_retries", "1");
        file.set("worker", "retry_backoff_ms", "250");
        let config = WorkerConfig::from_file(&file, false).unwrap().responder;
        assert_eq!(config.max_in_flight.get(), 8);
        assert_eq!(config.retry.max_retries, 1);
        assert_eq!(config.retry.first_backoff, Duration::from_millis(250));
    }

    #[test]
    fn delivery_is_at_least_once_unless_exactly_once_is_asked_for() {
        let mut file = ConfigFile::default();
        let config = WorkerConfig::from_file(&file, false).unwrap().responder;
        assert_eq!(config.delivery, Delivery::AtLeastOnce);
        file.set("worker", "delivery", "exactly_once");
        file.set("worker", "transaction_max_requests", "50");
        file.set("worker", "transaction_max_ms", "5");
        let config = WorkerConfig::from_file(&file, false).unwrap().responder;
        assert_eq!(
            config.delivery,
            Delivery::ExactlyOnce(TransactionPolicy {
                max_requests: NonZeroUsize::new(50).unwrap(),
                max_wait: Duration::from_millis(5),
            })
        );
        assert!(worker_section("delivery", "at_most_once").is_err());
        assert!(worker_section("transaction_max_requests", "0").is_err());
    }

    #[test]
    fn zero_in_flight_is_refused_not_rounded_up() {
        let error = worker_section("max_in_flight", "0").unwrap_err();
        let ConfigError::Invalid { section, key, .. } = &error else {
            panic!("expected an invalid value, got {error}");
        };
        assert_eq!(
            (section.as_str(), key.as_str()),
            ("worker", "max_in_flight")
        );
        assert!(worker_section("max_in_flight", "-3").is_err());
    }
}
