//! The reply listener: reads every partition of the reply topics, assigned directly, and keeps
//! reading through stalls (see [`crate::watchdog`]).

use super::error::RequestError;
use super::reply::IncomingReply;
use crate::config::KafkaSettings;
use crate::kafka::set_default;
use crate::offsets::{Positions, consumer_positions, partition_watermarks};
use crate::route::Routes;
use crate::watchdog::{
    CHECK_INTERVAL, DEFAULT_STALL_AFTER, PartitionKey, Remedy, Seen, Stalls, is_undecodable, remedy,
};
use prometheus_client::metrics::counter::Counter;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::Duration;

/// Where the listener starts reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// Only replies that arrive after start-up.
    End,
    /// Exactly where an earlier read of the log stopped (see [`crate::history`]); partitions
    /// not listed are read from the beginning.
    Positions(Positions),
}

/// Reads both reply topics, assigned directly (no consumer group), and never stalls for good:
/// a watchdog (see [`crate::watchdog`]) compares the next offset it expects from each partition
/// with the partition's high watermark every [`CHECK_INTERVAL`], and when a partition is behind
/// and has not moved for the stall time while the brokers answer, the consumer is replaced by a
/// new one assigned exactly where this one stopped. Nothing is skipped and nothing repeated.
pub struct ReplyListener<R: Routes> {
    consumer: StreamConsumer,
    /// What a replacement consumer is made from.
    config: ClientConfig,
    /// Looks up high watermarks; a client of its own, so a wedged consumer cannot wedge it.
    probe: Arc<BaseConsumer>,
    routes: R,
    stalls: Stalls,
    /// A watermark look-up under way, and when the next one is due.
    check: Option<tokio::task::JoinHandle<Option<Positions>>>,
    next_check: tokio::time::Instant,
    /// The consumer reported a message it could not decode since the last recovery.
    undecodable: bool,
    counters: ListenerCounters,
}

/// What the reply listener's watchdog did, for the caller's metrics.
#[derive(Clone, Debug, Default)]
pub struct ListenerCounters {
    /// Times a stalled consumer was replaced.
    pub recoveries: Counter,
    /// Replies skipped because no client could decode them (see [`crate::watchdog::remedy`]).
    pub skipped: Counter,
}

impl<R: Routes> std::fmt::Debug for ReplyListener<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyListener")
            .field("routes", &self.routes)
            .field("stalls", &self.stalls)
            .finish_non_exhaustive()
    }
}

/// Bound on one watermark look-up of the watchdog: an unanswered one means the brokers do not
/// answer, and then no partition is judged.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How many KiB of fetched replies librdkafka may hold ahead of the listener, unless the
/// consumer settings say otherwise. Its own default, 64 MiB, is a buffer anyone who can write
/// to a reply topic fills: under a flood of near-megabyte replies the dashboard's peak RSS went
/// from about 30 MiB to 68-79 MiB with it. Replies are small, and those in flight are bounded
/// by the requests waiting, so 4 MiB holds thousands.
const LISTENER_QUEUE_KBYTES: &str = "4096";

/// The reply listener's consumer settings: `kafka`'s, in group `group_id` (never joined: the
/// listener assigns its partitions), with a bounded prefetch and no offset ever skipped.
///
/// `isolation.level` is left at librdkafka's default, `read_committed` (its CONFIGURATION.md):
/// a reply a transactional worker (`Delivery::ExactlyOnce`) wrote in a transaction it then
/// aborted is never seen, and one in an open transaction only once it is committed. A listener
/// configured `read_uncommitted` would see aborted replies too, and answer a call with one.
fn listener_config(kafka: &KafkaSettings, group_id: &str) -> ClientConfig {
    let mut config = kafka.consumer_config();
    set_default(&mut config, "group.id", group_id);
    set_default(
        &mut config,
        "queued.max.messages.kbytes",
        LISTENER_QUEUE_KBYTES,
    );
    // Assigned, not subscribed: nothing to commit, and every instance reads every partition.
    config.set("enable.auto.commit", "false");
    config.set("enable.auto.offset.store", "false");
    // Should librdkafka ever reset an offset, it goes back, never forward past replies
    // nobody has read: what was read already is recognised by its offset and skipped.
    config.set("auto.offset.reset", "earliest");
    config
}

impl<R: Routes> ReplyListener<R> {
    /// Assigns all partitions of the reply topics of `routes`, which must exist (see
    /// [`ensure_request_and_reply_topics`](crate::admin::ensure_request_and_reply_topics)). When
    /// this returns, every reply produced from then on will be received.
    pub async fn start(
        kafka: &KafkaSettings,
        routes: R,
        group_id: &str,
        start_at: StartAt,
    ) -> Result<Self, RequestError> {
        let reply_topics: Vec<String> = routes
            .kinds()
            .into_iter()
            .map(|kind| routes.route(kind).reply_topic)
            .collect();
        let config = listener_config(kafka, group_id);
        let probe: BaseConsumer = kafka
            .common_config()
            .create()
            .map_err(RequestError::Client)?;
        let consumer: StreamConsumer = config.create().map_err(RequestError::Client)?;
        let (consumer, starts) = tokio::task::spawn_blocking(move || {
            let starts = start_offsets(&consumer, &reply_topics, &start_at)?;
            assign_at(&consumer, &starts).map(|()| (consumer, starts))
        })
        .await
        .map_err(|_| RequestError::ListenerStopped)?
        .map_err(RequestError::Lookup)?;
        let mut stalls = Stalls::new(DEFAULT_STALL_AFTER);
        for (key, next) in starts {
            stalls.watch(key, next);
        }
        Ok(ReplyListener {
            consumer,
            config,
            probe: Arc::new(probe),
            routes,
            stalls,
            check: None,
            next_check: tokio::time::Instant::now() + CHECK_INTERVAL,
            undecodable: false,
            counters: ListenerCounters::default(),
        })
    }

    /// Counts what the watchdog does in `counters` (say, ones registered with Prometheus).
    #[must_use]
    pub fn count_in(mut self, counters: ListenerCounters) -> Self {
        counters.recoveries.inc_by(self.counters.recoveries.get());
        counters.skipped.inc_by(self.counters.skipped.get());
        self.counters = counters;
        self
    }

    /// How many times the watchdog replaced a stalled consumer.
    pub fn recoveries(&self) -> u64 {
        self.counters.recoveries.get()
    }

    /// The next reply. Consumer errors (broker briefly unreachable) are logged and skipped;
    /// librdkafka reconnects by itself, and the watchdog steps in where it does not.
    pub async fn next(&mut self) -> IncomingReply<R> {
        loop {
            let ReplyListener {
                consumer,
                check,
                next_check,
                ..
            } = self;
            let lookup_due = check.is_none();
            let lookup_done = async {
                match check.as_mut() {
                    Some(lookup) => lookup.await.ok().flatten(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                received = consumer.recv() => match received {
                    Ok(message) => {
                        let key = (message.topic().to_owned(), message.partition());
                        if self.stalls.read(&key, message.offset()) == Seen::Again {
                            continue;
                        }
                        match self.routes.kind_of_reply_topic(&key.0) {
                            Some(kind) => return IncomingReply::decode(&self.routes, kind, &message),
                            None => tracing::warn!(topic = key.0, "message from an unexpected topic"),
                        }
                    }
                    Err(error) => {
                        self.undecodable |= is_undecodable(&error);
                        tracing::warn!(%error, "reply consumer error");
                    }
                },
                ends = lookup_done => {
                    self.check = None;
                    self.next_check = tokio::time::Instant::now() + CHECK_INTERVAL;
                    if let Some(ends) = ends {
                        self.judge(&ends);
                    }
                }
                () = tokio::time::sleep_until(*next_check), if lookup_due => {
                    let probe = Arc::clone(&self.probe);
                    let partitions: Vec<PartitionKey> = self.stalls.positions().into_keys().collect();
                    self.check = Some(tokio::task::spawn_blocking(move || {
                        high_watermarks(&probe, &partitions)
                    }));
                }
            }
        }
    }

    /// Applies the watchdog's decision to the high watermarks just looked up.
    fn judge(&mut self, ends: &Positions) {
        for (key, position) in consumer_positions(&self.consumer) {
            self.stalls.passed(&key, position);
        }
        let stalled = self.stalls.observe(ends, std::time::Instant::now());
        if stalled.is_empty() {
            return;
        }
        let mut recovering = Vec::new();
        for stall in stalled {
            match remedy(&stall, self.undecodable) {
                Remedy::Skip => {
                    tracing::error!(
                        topic = stall.key.0,
                        partition = stall.key.1,
                        offset = stall.next,
                        "skipping a reply no client can decode"
                    );
                    self.stalls.skipped(&stall.key);
                    self.counters.skipped.inc();
                }
                Remedy::Recover => recovering.push(stall),
            }
        }
        self.undecodable = false;
        tracing::warn!(
            stalled = ?recovering,
            "reply partitions behind their end and not moving; replacing the reply consumer"
        );
        let replacement = self
            .config
            .create::<StreamConsumer>()
            .and_then(|consumer| assign_at(&consumer, &self.stalls.positions()).map(|()| consumer));
        match replacement {
            Ok(consumer) => {
                let stalled_consumer = std::mem::replace(&mut self.consumer, consumer);
                // Closing a client can wait on its broker threads: not on an async thread.
                tokio::task::spawn_blocking(move || drop(stalled_consumer));
                self.counters.recoveries.inc();
                self.stalls
                    .recovered(recovering.into_iter().map(|stall| stall.key));
            }
            Err(error) => tracing::error!(%error, "cannot replace the reply consumer; will retry"),
        }
    }

    /// Stops fetching, as a consumer whose fetcher has stalled does, so tests can show the
    /// watchdog recover it.
    #[cfg(feature = "test-hooks")]
    pub fn stall_for_test(&self) -> Result<(), KafkaError> {
        self.consumer.pause(&self.consumer.assignment()?)
    }
}

/// The high watermark of each partition, or nothing if any look-up fails (brokers not answering).
fn high_watermarks(probe: &BaseConsumer, partitions: &[PartitionKey]) -> Option<Positions> {
    let mut ends = Positions::new();
    for (topic, partition) in partitions {
        match probe.fetch_watermarks(topic, *partition, PROBE_TIMEOUT) {
            Ok((_, high)) => {
                ends.insert((topic.clone(), *partition), high);
            }
            Err(error) => {
                tracing::debug!(%error, topic, partition, "watermark look-up failed");
                return None;
            }
        }
    }
    Some(ends)
}

fn assign_at(consumer: &StreamConsumer, positions: &Positions) -> Result<(), KafkaError> {
    let mut assignment = TopicPartitionList::new();
    for ((topic, partition), offset) in positions {
        assignment.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
    }
    consumer.assign(&assignment)
}

/// The partitions of the reply topics with the offset to start each at.
fn start_offsets(
    consumer: &StreamConsumer,
    reply_topics: &[String],
    start_at: &StartAt,
) -> Result<Positions, KafkaError> {
    let mut starts = Positions::new();
    for topic in reply_topics {
        for (partition, low, high) in partition_watermarks(consumer, topic)? {
            let offset = match start_at {
                // The exact end offset now, rather than `Offset::End` resolved later, so a
                // reply that lands between start-up and the first fetch is not skipped.
                StartAt::End => high,
                StartAt::Positions(positions) => positions
                    .get(&(topic.clone(), partition))
                    .copied()
                    .unwrap_or(low),
            };
            starts.insert((topic.clone(), partition), offset);
        }
    }
    Ok(starts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefetch_is_bounded_unless_the_settings_say_otherwise() {
        let kafka = KafkaSettings::for_bootstrap("127.0.0.1:9092");
        let config = listener_config(&kafka, "dashboard");
        assert_eq!(config.get("queued.max.messages.kbytes"), Some("4096"));
        assert_eq!(config.get("auto.offset.reset"), Some("earliest"));
        let mut tuned = kafka.clone();
        tuned
            .consumer
            .insert("queued.max.messages.kbytes".into(), "512".into());
        assert_eq!(
            listener_config(&tuned, "dashboard").get("queued.max.messages.kbytes"),
            Some("512")
        );
    }
}
