//! Creating the topics a service needs at start-up, instead of relying on broker auto-creation.

use crate::config::{KafkaSettings, TopicSettings};
use crate::route::Routes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long one admin request may take before start-up fails with a clear error.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Why topics could not be created or the cluster could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No admin client could be created (bad settings).
    #[error("cannot create a Kafka admin client for {servers}: {source}")]
    Client {
        /// The cluster's bootstrap servers.
        servers: String,
        /// librdkafka's error.
        #[source]
        source: KafkaError,
    },
    /// The topic creation request failed as a whole.
    #[error("cannot create topics on Kafka at {servers}: {source}")]
    Request {
        /// The cluster's bootstrap servers.
        servers: String,
        /// librdkafka's error.
        #[source]
        source: KafkaError,
    },
    /// The broker refused to create one topic.
    #[error("cannot create topic {topic}: {code}")]
    Topic {
        /// The topic.
        topic: String,
        /// The broker's error code.
        code: RDKafkaErrorCode,
    },
    /// The broker refused our credentials or our TLS handshake: retrying cannot help.
    #[error("Kafka at {servers} refused us: {failure}")]
    Security {
        /// The cluster's bootstrap servers.
        servers: String,
        /// What was refused.
        failure: SecurityFailure,
    },
}

/// Why the broker refused us: `what` failed ("authentication", "the TLS handshake"), and
/// librdkafka's reason, which names the mechanism but never the password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecurityFailure {
    /// What was refused (authentication, TLS, authorization).
    pub what: &'static str,
    /// The broker's or librdkafka's explanation.
    pub reason: String,
}

impl fmt::Display for SecurityFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.what, self.reason)
    }
}

/// A client context that remembers the first authentication or TLS failure librdkafka reports.
/// librdkafka reports these only as events on a client's main queue, which a consumer's `poll`
/// serves; requests such as metadata look-ups or topic creation merely time out.
#[derive(Debug, Default)]
pub struct SecurityWatch {
    failure: Mutex<Option<SecurityFailure>>,
}

impl SecurityWatch {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<SecurityFailure>> {
        self.failure
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// The failure seen so far, if any.
    pub fn failure(&self) -> Option<SecurityFailure> {
        self.lock().clone()
    }

    /// The failure seen since the last call, if any.
    pub fn take_failure(&self) -> Option<SecurityFailure> {
        self.lock().take()
    }

    fn note(&self, what: &'static str, reason: &str) {
        let mut failure = self.lock();
        if failure.is_none() {
            *failure = Some(SecurityFailure {
                what,
                reason: reason.to_owned(),
            });
        }
    }
}

/// Which step of connecting a librdkafka message says failed, if it is a refusal.
fn refused_step(message: &str) -> Option<&'static str> {
    if message.contains("Authentication failed") || message.contains("SASL authentication error") {
        Some("authentication")
    } else if message.contains("SSL handshake failed")
        || message.contains("certificate verify failed")
    {
        Some("the TLS handshake")
    } else {
        None
    }
}

impl ClientContext for SecurityWatch {
    // librdkafka raises an error event for a refused login but, for a failed TLS handshake,
    // often only logs it: both are watched.
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", "librdkafka: {facility} {message}");
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", "librdkafka: {facility} {message}");
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", "librdkafka: {facility} {message}");
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", "librdkafka: {facility} {message}");
            }
        }
        if let Some(what) = refused_step(message) {
            self.note(what, message);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::error!(target: "librdkafka", "librdkafka: {error}: {reason}");
        let what = match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed) => {
                Some("authentication")
            }
            Some(RDKafkaErrorCode::SSL) => Some("the TLS handshake"),
            _ => refused_step(reason),
        };
        if let Some(what) = what {
            self.note(what, reason);
        }
    }
}

impl ConsumerContext for SecurityWatch {}

/// Connects a throw-away client with `kafka`'s settings and waits until it is let in (`None`),
/// the broker refuses its login or TLS handshake (`Some`), `stop` is set or `within` has passed
/// (`None`). Blocking.
pub fn watch_login(
    kafka: &KafkaSettings,
    within: Duration,
    stop: &AtomicBool,
) -> Option<SecurityFailure> {
    let client: BaseConsumer<SecurityWatch> = kafka
        .common_config()
        .create_with_context(SecurityWatch::default())
        .ok()?;
    let deadline = Instant::now() + within;
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        // A metadata request makes the client connect and log in; an answer means it is in.
        if client
            .fetch_metadata(None, Duration::from_millis(500))
            .is_ok()
        {
            return None;
        }
        while client.poll(Duration::ZERO).is_some() {}
        if let Some(failure) = client.context().failure() {
            return Some(failure);
        }
    }
    None
}

/// Sets its flag when dropped.
#[derive(Debug)]
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Creates each topic that does not exist yet, its records stamped with the broker's append
/// time (`LogAppendTime`); existing topics are left as they are.
pub async fn ensure_topics(
    kafka: &KafkaSettings,
    settings: &TopicSettings,
    names: &[String],
) -> Result<(), AdminError> {
    let servers = kafka.bootstrap_servers().to_owned();
    let admin: AdminClient<DefaultClientContext> =
        kafka
            .common_config()
            .create()
            .map_err(|source| AdminError::Client {
                servers: servers.clone(),
                source,
            })?;
    let min_insync = settings.min_insync_replicas.map(|count| count.to_string());
    let new_topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|name| {
            // The broker stamps each record with the time it appended it, so a reader can
            // tell how long a message took to reach the log and how long it waited there
            // (the dashboard's journey); a producer's clock is not asked.
            let topic = NewTopic::new(
                name,
                settings.partitions,
                TopicReplication::Fixed(settings.replication_factor),
            )
            .set("message.timestamp.type", "LogAppendTime");
            match &min_insync {
                Some(count) => topic.set("min.insync.replicas", count),
                None => topic,
            }
        })
        .collect();
    let options = AdminOptions::new()
        .request_timeout(Some(ADMIN_TIMEOUT))
        .operation_timeout(Some(ADMIN_TIMEOUT));
    // When the broker refuses our login or TLS handshake, topic creation merely times out; a
    // watching client sees the refusal within a second and says why.
    let stop_watching = Arc::new(AtomicBool::new(false));
    // Also stops the watch when this future is dropped (a service shutting down while Kafka is
    // unreachable): otherwise its blocking thread runs on for up to ADMIN_TIMEOUT and the
    // runtime, which waits for blocking threads, keeps the process alive that long.
    let _stop_on_drop = StopOnDrop(Arc::clone(&stop_watching));
    let mut login = tokio::task::spawn_blocking({
        let kafka = kafka.clone();
        let stop = Arc::clone(&stop_watching);
        move || watch_login(&kafka, ADMIN_TIMEOUT, &stop)
    });
    let created = tokio::select! {
        created = admin.create_topics(&new_topics, &options) => created,
        Ok(Some(failure)) = &mut login => {
            return Err(AdminError::Security { servers, failure });
        }
    };
    stop_watching.store(true, Ordering::Relaxed);
    let results = created.map_err(|source| AdminError::Request { servers, source })?;
    for result in results {
        match result {
            Ok(topic) => tracing::info!(topic, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(AdminError::Topic { topic, code }),
        }
    }
    Ok(())
}

/// Creates the request and reply topics of every kind of `routes`: what a requester needs
/// before it sends.
pub async fn ensure_request_and_reply_topics(
    kafka: &KafkaSettings,
    settings: &TopicSettings,
    routes: &impl Routes,
) -> Result<(), AdminError> {
    let names: Vec<String> = routes
        .kinds()
        .into_iter()
        .flat_map(|kind| {
            let route = routes.route(kind);
            [route.request_topic, route.reply_topic]
        })
        .collect();
    ensure_topics(kafka, settings, &names).await
}
