//! What every handler and background task shares: the store, the Kafka clients, the broker's
//! status, the security keys and the configuration.

use crate::GROUP_ID;
use crate::config::DashboardConfig;
use crate::metrics::DashboardMetrics;
use crate::security;
use crate::server::HttpSettings;
use crate::store::Store;
use anyhow::Context;
use contract::Topics;
use request_reply::history::RecordReader;
use request_reply::requester::Requester;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long a request may wait for the broker's acknowledgement before the user is told.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

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

/// Shared by every handler and background task.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    store: Store,
    metrics: DashboardMetrics,
    requester: Requester<Topics>,
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
            metrics: DashboardMetrics::default(),
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

    pub(crate) fn metrics(&self) -> &DashboardMetrics {
        &self.0.metrics
    }

    pub(crate) fn security(&self) -> &security::Keys {
        &self.0.security
    }

    pub fn requester(&self) -> &Requester<Topics> {
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

    pub(crate) fn config(&self) -> &DashboardConfig {
        &self.0.config
    }

    /// Tells the live-update streams that the server is stopping, so they end.
    pub(crate) fn announce_stopping(&self) {
        self.0.stopping.send_replace(true);
    }

    pub(crate) fn update_broker(&self, change: impl FnOnce(&mut BrokerStatus)) {
        self.0.broker.send_if_modified(|status| {
            let before = status.clone();
            change(status);
            *status != before
        });
        self.metrics()
            .broker_healthy(self.broker_status().healthy());
    }
}
