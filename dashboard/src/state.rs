//! What every handler and background task shares: the store, the Kafka clients, the broker's
//! status, the security keys and the configuration.

use crate::GROUP_ID;
use crate::config::{DashboardConfig, WorkerGroups};
use crate::metrics::DashboardMetrics;
use crate::security;
use crate::server::HttpSettings;
use crate::store::Store;
use anyhow::Context;
use contract::{RequestKind, Topics};
use request_reply::groups::GroupObserver;
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
    /// Why requests of a kind would wait although Kafka is reachable (no worker in its group, a
    /// rebalance), from the last look at the workers' groups; empty when both can answer.
    pub waiting: Vec<(RequestKind, String)>,
}

impl BrokerStatus {
    /// The dashboard can send requests and will see every reply: `/readyz`, and whether the
    /// forms are accepted.
    pub fn healthy(&self) -> bool {
        self.reachable && self.listening
    }

    /// Healthy, and a worker can answer each kind of request: the banner turns green.
    pub fn green(&self) -> bool {
        self.healthy() && self.waiting.is_empty()
    }

    /// Kafka did not answer, for `message`'s reason. What was known of the workers is
    /// forgotten: when Kafka comes back they may still be getting their partitions back, and
    /// the banner turns green only once their groups have been looked at again.
    pub fn lose_kafka(&mut self, message: String, groups: &WorkerGroups) {
        self.reachable = false;
        self.message = message;
        self.waiting = groups.unchecked("since Kafka was unreachable");
    }

    /// Why a request of `kind` waits, when the dashboard knows.
    pub fn waiting_because(&self, kind: RequestKind) -> Option<&str> {
        self.waiting
            .iter()
            .find(|(waiting, _)| *waiting == kind)
            .map(|(_, why)| why.as_str())
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
    /// Reads the workers' groups and the topics' ends for the system page and the banner.
    observer: Arc<GroupObserver>,
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
        let observer =
            GroupObserver::new(&config.kafka).context("cannot create the group observer")?;
        let (broker, _) = watch::channel(BrokerStatus {
            reachable: false,
            listening: false,
            message: format!(
                "Connecting to Kafka at {}…",
                config.kafka.bootstrap_servers()
            ),
            waiting: config.worker_groups.unchecked("yet"),
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
            observer: Arc::new(observer),
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

    pub(crate) fn observer(&self) -> Arc<GroupObserver> {
        Arc::clone(&self.0.observer)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_kafka_comes_back_the_banner_waits_for_a_new_look_at_the_workers() {
        let groups = WorkerGroups::default();
        let mut status = BrokerStatus {
            reachable: true,
            listening: true,
            message: "Connected".into(),
            waiting: Vec::new(),
        };
        assert!(status.green());
        status.lose_kafka("Kafka is unreachable".into(), &groups);
        assert!(!status.healthy());
        // The probe answers again, before the workers' groups are looked at.
        status.reachable = true;
        assert!(status.healthy(), "requests are taken again");
        assert!(!status.green(), "but nothing is known of the workers yet");
        assert_eq!(
            status.waiting_because(RequestKind::Score),
            Some(
                "the consumer group calculate-score has not been looked at since Kafka was \
                 unreachable"
            )
        );
    }
}
