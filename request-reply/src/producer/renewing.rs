//! A producer that is replaced when it stops delivering.
//!
//! After a whole-cluster outage an idempotent producer can be left with its messages queued and
//! never sent: the fault suite saw a worker replica's replies undelivered four minutes after the
//! cluster was back. librdkafka does not recover such a producer by itself, so
//! whoever sees a message time out (`message.timeout.ms`) calls [`RenewingProducer::replace`]:
//! the next messages go out on a new producer, and what the old one still held is purged when it
//! closes (those deliveries fail, and their senders decide whether to send again).

use super::AdaptiveProducer;
use prometheus_client::metrics::counter::Counter;
use rdkafka::ClientConfig;
use rdkafka::error::KafkaResult;
use std::sync::Mutex;
use std::time::Duration;

/// A producer, its generation, and what a replacement is made from.
pub struct RenewingProducer {
    config: ClientConfig,
    /// Whether its producers are idempotent (see [`super::acknowledgement`]).
    idempotent: bool,
    current: Mutex<(u64, AdaptiveProducer)>,
    replacements: Counter,
}

impl std::fmt::Debug for RenewingProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenewingProducer")
            .field("generation", &self.lock().0)
            .finish_non_exhaustive()
    }
}

impl RenewingProducer {
    /// Creates the first producer from `config`; replacements are counted in `replacements`.
    pub fn new(config: ClientConfig, replacements: Counter) -> KafkaResult<Self> {
        let producer = AdaptiveProducer::new(&config)?;
        Ok(RenewingProducer {
            idempotent: super::acknowledgement::idempotent(&config),
            config,
            current: Mutex::new((0, producer)),
            replacements,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, AdaptiveProducer)> {
        self.current
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// The producer now, and its generation (which [`Self::replace`] names).
    pub fn current(&self) -> (u64, AdaptiveProducer) {
        let current = self.lock();
        (current.0, current.1.clone())
    }

    /// Whether its producers are idempotent, so that an acknowledgement without an offset is a
    /// duplicate's (see [`super::acknowledgement`]).
    pub fn idempotent(&self) -> bool {
        self.idempotent
    }

    /// How many times the producer was replaced.
    pub fn replacements(&self) -> u64 {
        self.replacements.get()
    }

    /// Replaces the producer of `generation` by a new one, unless that happened already (many
    /// messages time out together; one replacement serves them all). Call it from a Tokio
    /// runtime: the old producer is closed on a blocking thread.
    pub fn replace(&self, generation: u64) {
        let mut current = self.lock();
        if current.0 != generation {
            return;
        }
        match AdaptiveProducer::new(&self.config) {
            Ok(fresh) => {
                let stuck = std::mem::replace(&mut current.1, fresh);
                current.0 += 1;
                drop(current);
                self.replacements.inc();
                tracing::warn!(
                    generation,
                    "a message was not acknowledged in time; replaced the producer"
                );
                // Closing waits for its purge: not on an async thread.
                tokio::task::spawn_blocking(move || drop(stuck));
            }
            Err(error) => tracing::error!(%error, "cannot create a new producer"),
        }
    }

    /// Flushes the current producer (at shutdown).
    pub fn flush(&self, timeout: Duration) -> KafkaResult<()> {
        self.current().1.flush(timeout)
    }
}
