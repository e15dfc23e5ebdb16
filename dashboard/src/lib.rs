//! The dashboard: server-rendered pages and a JSON API that send invoice and score requests over
//! Kafka and show their replies as they arrive.
//!
//! `main` reads the config and calls [`run`]; tests call [`run`] on a port-0 listener, or drive
//! [`build_app`] directly.

pub mod api;
mod body;
pub mod error;
mod feed;
pub mod forms;
pub mod hosts;
mod metrics;
mod records;
mod routes;
pub mod security;
mod server;
pub mod store;
mod views;

use anyhow::Context;
use contract::{RequestKind, Topics};
use rdkafka::consumer::{BaseConsumer, Consumer};
use request_reply::admin::{SecurityWatch, ensure_request_and_reply_topics};
use request_reply::config::{KafkaSettings, TopicSettings};
use request_reply::history::{LogMessage, RecordReader, read_recent};
use request_reply::requester::{
    Positions, ReplyListener, RequestError, Requester, SentRequest, StartAt,
};
use service::config::{ConfigError, ConfigFile, EnvOverride};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use routes::build_app;
pub use security::Secret;
pub use server::HttpSettings;

/// The `group.id` of the dashboard's Kafka consumers, unless config.ini sets one.
const GROUP_ID: &str = "dashboard";

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

/// How often the broker's reachability is checked.
const BROKER_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How long one reachability check may take before the broker counts as down.
const BROKER_CHECK_TIMEOUT: Duration = Duration::from_millis(1500);
/// Checks in a row with no broker answering after which the probe gets a new client.
const PROBE_RENEW_AFTER_CHECKS: u32 = 5;
/// How long a request may wait for the broker's acknowledgement before the user is told.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between attempts to set up the reply listener while Kafka is unreachable.
const CONNECT_RETRY: Duration = Duration::from_secs(2);

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
    pub auth_token: Option<Secret>,
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
fn auth_token(file: &ConfigFile) -> Result<Option<Secret>, ConfigError> {
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
        token => Ok(token.map(Secret::new)),
    }
}

/// What the page banner and `/readyz` say about Kafka.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerStatus {
    /// The last reachability check succeeded.
    pub reachable: bool,
    /// The reply listener is assigned, so no reply to a request sent now can be missed.
    pub listening: bool,
    /// For people: what is wrong, or where we are connected.
    pub message: String,
}

impl BrokerStatus {
    pub fn healthy(&self) -> bool {
        self.reachable && self.listening
    }
}

/// Shared by every handler.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    store: Store,
    metrics: metrics::DashboardMetrics,
    requester: Requester,
    /// Reads requests and replies back from Kafka for the detail page and the API.
    reader: Arc<RecordReader>,
    broker: watch::Sender<BrokerStatus>,
    /// Flips to true when the server is shutting down, so live-update streams end.
    stopping: watch::Sender<bool>,
    /// One permit per live-update stream that may be open (`max_event_streams`).
    event_slots: Arc<tokio::sync::Semaphore>,
    /// The CSRF key and the credential requests must present.
    security: security::Keys,
    config: DashboardConfig,
}

impl AppState {
    pub fn new(config: DashboardConfig) -> anyhow::Result<Self> {
        let requester = Requester::new(
            &config.kafka,
            Topics::with_prefix(&config.topics.prefix),
            SEND_TIMEOUT,
        )
        .context("cannot create the Kafka producer")?;
        let reader =
            RecordReader::new(&config.kafka, GROUP_ID).context("cannot create the Kafka reader")?;
        let (broker, _) = watch::channel(BrokerStatus {
            reachable: false,
            listening: false,
            message: format!(
                "Connecting to Kafka at {}…",
                config.kafka.bootstrap_servers()
            ),
        });
        let (stopping, _) = watch::channel(false);
        let security = security::Keys::generate(config.auth_token.clone())?;
        Ok(AppState(Arc::new(Shared {
            store: Store::new(
                Topics::with_prefix(&config.topics.prefix),
                config.request_timeout,
                config.history_limit,
            ),
            metrics: metrics::DashboardMetrics::default(),
            requester,
            reader: Arc::new(reader),
            broker,
            stopping,
            event_slots: Arc::new(tokio::sync::Semaphore::new(config.http.max_event_streams)),
            security,
            config,
        })))
    }

    pub fn store(&self) -> &Store {
        &self.0.store
    }

    pub(crate) fn metrics(&self) -> &metrics::DashboardMetrics {
        &self.0.metrics
    }

    pub(crate) fn security(&self) -> &security::Keys {
        &self.0.security
    }

    pub fn requester(&self) -> &Requester {
        &self.0.requester
    }

    pub(crate) fn http_settings(&self) -> &HttpSettings {
        &self.0.config.http
    }

    pub(crate) fn event_slots(&self) -> Arc<tokio::sync::Semaphore> {
        Arc::clone(&self.0.event_slots)
    }

    pub(crate) fn reader(&self) -> Arc<RecordReader> {
        Arc::clone(&self.0.reader)
    }

    pub fn broker_status(&self) -> BrokerStatus {
        self.0.broker.borrow().clone()
    }

    pub fn watch_broker(&self) -> watch::Receiver<BrokerStatus> {
        self.0.broker.subscribe()
    }

    pub fn watch_stopping(&self) -> watch::Receiver<bool> {
        self.0.stopping.subscribe()
    }

    fn update_broker(&self, change: impl FnOnce(&mut BrokerStatus)) {
        self.0.broker.send_if_modified(|status| {
            let before = status.clone();
            change(status);
            *status != before
        });
        self.metrics()
            .broker_healthy(self.broker_status().healthy());
    }

    /// Rebuilds the history from the log: requests made before this process started, and the
    /// replies to them, including those that arrived while it was down. Each message is reduced
    /// to the store's index entry as it is read, so the rebuild never holds the window's
    /// payloads. Returns where the reply topics ended, so the live listener continues exactly
    /// there.
    async fn restore_history(&self) -> Result<Positions, RequestError> {
        let config = &self.0.config;
        let (mut requests, mut replies) = (0_usize, 0_usize);
        let reply_ends = read_recent(
            &config.kafka,
            &config.topics,
            GROUP_ID,
            config.history_limit,
            |message| match message {
                LogMessage::Request(request) => {
                    requests += 1;
                    let created_at = request
                        .timestamp_ms
                        .map_or_else(SystemTime::now, kafka_time);
                    let sent = SentRequest {
                        topic: request.topic,
                        partition: request.partition,
                        offset: request.offset,
                    };
                    self.store().insert_historic(
                        &request.correlation_id,
                        request.kind,
                        request.payload.as_deref().unwrap_or_default(),
                        created_at,
                        &sent,
                    );
                }
                LogMessage::Reply(reply, timestamp_ms) => {
                    replies += 1;
                    self.store()
                        .record_historic_reply(reply, timestamp_ms.map(kafka_time));
                }
            },
        )
        .await?;
        tracing::info!(requests, replies, "history rebuilt from the log");
        Ok(reply_ends)
    }

    /// Sets up the reply listener (retrying while Kafka is unreachable), then feeds every reply
    /// to the store. Runs until aborted.
    async fn listen_for_replies(self) {
        let config = &self.0.config;
        let mut listener = loop {
            let started = async {
                ensure_request_and_reply_topics(&config.kafka, &config.topics).await?;
                let reply_ends = self.restore_history().await?;
                ReplyListener::start(
                    &config.kafka,
                    &config.topics,
                    GROUP_ID,
                    StartAt::Positions(reply_ends),
                )
                .await
            };
            match started.await {
                Ok(listener) => {
                    break listener.count_in(self.metrics().listener_counters());
                }
                Err(error) => {
                    tracing::warn!(%error, "reply listener not started; retrying");
                    self.update_broker(|status| {
                        status.message = format!(
                            "Cannot reach Kafka at {}: {error}",
                            config.kafka.bootstrap_servers()
                        );
                    });
                    tokio::time::sleep(CONNECT_RETRY).await;
                }
            }
        };
        self.update_broker(|status| status.listening = true);
        tracing::info!("reply listener assigned; dashboard ready");
        loop {
            let reply = listener.next().await;
            let correlation_id = reply.correlation_id.as_ref().map(store::loggable_id);
            let trace_id = reply
                .headers
                .last(request_reply::headers::TRACEPARENT)
                .and_then(request_reply::headers::TraceContext::parse)
                .map(|trace| trace.trace_id_hex());
            let outcome = self.store().record_reply(reply);
            self.metrics().reply_received(outcome);
            tracing::info!(
                correlation_id = correlation_id.as_deref().unwrap_or("-"),
                trace_id = trace_id.as_deref().unwrap_or("-"),
                ?outcome,
                "reply received"
            );
        }
    }

    /// Marks overdue requests as timed out. Runs until aborted.
    async fn expire_requests(self) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            let expired = self.store().expire(Instant::now());
            self.metrics().timed_out(expired);
        }
    }

    /// Checks every second that a broker answers, so an outage is shown at once. Runs until aborted.
    async fn watch_broker_reachability(self) -> anyhow::Result<()> {
        // The watch context hears librdkafka say a login or TLS handshake was refused, which a
        // metadata request alone only reports as a timeout.
        let new_probe = || -> anyhow::Result<Arc<BaseConsumer<SecurityWatch>>> {
            let probe = self
                .0
                .config
                .kafka
                .common_config()
                .create_with_context(SecurityWatch::default())
                .context("cannot create the broker probe")?;
            Ok(Arc::new(probe))
        };
        let mut probe = new_probe()?;
        let mut unreachable_checks = 0_u32;
        let topic = Topics::with_prefix(&self.0.config.topics.prefix).reply(RequestKind::Invoice);
        let servers = self.0.config.kafka.bootstrap_servers().to_owned();
        loop {
            let check = {
                let probe = Arc::clone(&probe);
                let topic = topic.clone();
                tokio::task::spawn_blocking(move || {
                    let result = probe
                        .fetch_metadata(Some(&topic), BROKER_CHECK_TIMEOUT)
                        .map(|_| ());
                    while probe.poll(Duration::ZERO).is_some() {}
                    match result {
                        Ok(()) => {
                            // Let in: any earlier refusal is history.
                            probe.context().take_failure();
                            Ok(())
                        }
                        Err(error) => Err((error, probe.context().failure())),
                    }
                })
            };
            let result = check.await.context("broker probe panicked")?;
            unreachable_checks = match &result {
                Err((_, None)) => unreachable_checks + 1,
                _ => 0,
            };
            // A client that lost every broker while a whole cluster shut down can stay blind
            // after the cluster is back; a new one starts again from bootstrap.servers.
            if unreachable_checks % PROBE_RENEW_AFTER_CHECKS == 0 && unreachable_checks > 0 {
                tracing::info!(
                    unreachable_checks,
                    "no broker answered the probe; replacing its client"
                );
                let blind = std::mem::replace(&mut probe, new_probe()?);
                tokio::task::spawn_blocking(move || drop(blind));
            }
            self.update_broker(|status| match &result {
                Ok(()) => {
                    status.reachable = true;
                    status.message = format!("Connected to Kafka at {servers}");
                }
                Err((_, Some(refused))) => {
                    status.reachable = false;
                    status.message = format!("Kafka at {servers} refused the dashboard: {refused}. New requests are refused until the credentials or TLS settings are fixed.");
                }
                Err((error, None)) => {
                    status.reachable = false;
                    status.message = format!("Kafka at {servers} is unreachable: {error}. New requests are refused until it is back.");
                }
            });
            tokio::time::sleep(BROKER_CHECK_INTERVAL).await;
        }
    }
}

/// A Kafka timestamp (milliseconds since the epoch) as a point in time.
fn kafka_time(milliseconds: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(milliseconds.max(0).unsigned_abs())
}

/// Serves the dashboard on `listener` until `shutdown` resolves, then returns within
/// `shutdown_grace_ms` however slow its clients are. Refuses to serve a non-loopback listener
/// without authentication unless `allow_unauthenticated` says so. Only requests that name the
/// listener's address (or an `allowed_hosts` name) are answered (see [`hosts`]).
pub async fn run(
    config: DashboardConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let address = listener.local_addr().context("listener has no address")?;
    config.check_listen_address(address)?;
    let allowed = Arc::new(hosts::AllowedHosts::new(
        address,
        &config.http.allowed_hosts,
    ));
    let http = config.http.clone();
    let state = AppState::new(config)?;
    let background = [
        tokio::spawn(state.clone().listen_for_replies()),
        tokio::spawn(state.clone().expire_requests()),
        tokio::spawn({
            let state = state.clone();
            async move {
                if let Err(error) = state.watch_broker_reachability().await {
                    tracing::error!(error = format!("{error:#}"), "broker status checks stopped");
                }
            }
        }),
    ];
    let stopping = state.0.stopping.clone();
    let app =
        build_app(state.clone()).layer(axum::middleware::from_fn_with_state(allowed, hosts::check));
    server::serve(listener, app, &http, async move {
        shutdown.await;
        stopping.send_replace(true);
    })
    .await;
    for task in background {
        task.abort();
    }
    tracing::info!("dashboard stopped");
    Ok(())
}
