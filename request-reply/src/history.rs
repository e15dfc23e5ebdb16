//! Reading the recent past of the request and reply topics, so a requester that restarts can
//! rebuild what it knew, and single messages back by position, so it need not keep what the log
//! already holds: the log is the source of truth, there is no database.

use crate::config::KafkaSettings;
use crate::headers::{self, CorrelationId};
use crate::kafka::{HeaderList, set_default};
use crate::offsets::{
    Positions, consumer_positions, led_partition_watermarks, partition_watermarks,
};
use crate::requester::{IncomingReply, RequestError};
use crate::route::Routes;
use crate::watchdog::{CHECK_INTERVAL, DEFAULT_STALL_AFTER, Stalls};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message, OwnedMessage};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Bound on each pass over the window (requests, then replies).
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A correlated request as read back from a request topic.
#[derive(Clone, Debug)]
pub struct RecordedRequest<R: Routes> {
    /// Which kind of request it is (from its topic).
    pub kind: R::Kind,
    /// The request topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// The message's Kafka timestamp, in milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
    /// The request's correlation ID.
    pub correlation_id: CorrelationId,
    /// Its headers, as read.
    pub headers: HeaderList,
    /// Its payload, as read.
    pub payload: Option<Vec<u8>>,
}

/// One message of the log window, handed over as soon as it is read.
#[derive(Debug)]
pub enum LogMessage<R: Routes> {
    /// A correlated request. Every request comes before every reply, but requests of different
    /// partitions interleave: they are not in timestamp order.
    Request(RecordedRequest<R>),
    /// A reply with its Kafka timestamp (milliseconds since the epoch).
    Reply(IncomingReply<R>, Option<i64>),
}

/// Prefetch bounds of the history reader unless config.ini sets them: librdkafka's defaults
/// queue up to 64 MiB ahead, which a reader that only wants to go through the window once and
/// keep little of it does not need.
const HISTORY_QUEUE_KBYTES: &str = "1024";
/// Per partition and fetch, so the fetch responses in flight stay small too.
const HISTORY_PARTITION_FETCH_BYTES: &str = "262144";
/// With a small queue, librdkafka's default 1 s pause after the queue fills would dominate.
const HISTORY_QUEUE_BACKOFF_MS: &str = "10";

/// Reads the last `per_partition` messages of every partition of the request and reply topics
/// of `routes`,
/// up to where they ended when this was called, and hands each one to `on_message` as it is
/// read: the window is never held in memory at once, so a large history costs the caller only
/// what it keeps of each message. All requests are handed over before any reply, so a reply
/// always finds its request. Returns where each reply partition ended: a listener started there
/// misses and repeats nothing.
pub async fn read_recent<R: Routes>(
    kafka: &KafkaSettings,
    routes: &R,
    group_id: &str,
    per_partition: usize,
    mut on_message: impl FnMut(LogMessage<R>),
) -> Result<Positions, RequestError> {
    let mut config = kafka.consumer_config();
    set_default(&mut config, "group.id", group_id);
    set_default(
        &mut config,
        "queued.max.messages.kbytes",
        HISTORY_QUEUE_KBYTES,
    );
    set_default(
        &mut config,
        "fetch.queue.backoff.ms",
        HISTORY_QUEUE_BACKOFF_MS,
    );
    set_default(
        &mut config,
        "max.partition.fetch.bytes",
        HISTORY_PARTITION_FETCH_BYTES,
    );
    config.set("enable.auto.commit", "false");
    config.set("enable.auto.offset.store", "false");
    let consumer: StreamConsumer = config.create().map_err(RequestError::Client)?;
    let names: Vec<(String, R::Kind, bool)> = routes
        .kinds()
        .into_iter()
        .flat_map(|kind| {
            let route = routes.route(kind);
            [
                (route.request_topic, kind, true),
                (route.reply_topic, kind, false),
            ]
        })
        .collect();
    let lookup_names: Vec<String> = names.iter().map(|(name, _, _)| name.clone()).collect();
    let window = i64::try_from(per_partition).unwrap_or(i64::MAX);
    // Watermark look-ups block; keep them off the async threads.
    let (mut consumer, ends) = tokio::task::spawn_blocking(move || {
        let mut ends: HashMap<(String, i32), (i64, i64)> = HashMap::new();
        for topic in &lookup_names {
            for (partition, low, high) in partition_watermarks(&consumer, topic)? {
                ends.insert(
                    (topic.clone(), partition),
                    (low.max(high.saturating_sub(window)), high),
                );
            }
        }
        Ok::<_, KafkaError>((consumer, ends))
    })
    .await
    .map_err(|_| RequestError::ListenerStopped)?
    .map_err(RequestError::Lookup)?;

    let is_request_topic = |topic: &str| {
        names
            .iter()
            .any(|(name, _, is_request)| name == topic && *is_request)
    };
    let reply_ends = ends
        .iter()
        .filter(|((topic, _), _)| !is_request_topic(topic))
        .map(|(key, (_, high))| (key.clone(), *high))
        .collect();
    // Requests first, then replies: two passes over one consumer.
    for requests in [true, false] {
        let mut assignment = TopicPartitionList::new();
        let mut unfinished: HashMap<(String, i32), i64> = HashMap::new();
        for ((topic, partition), (start, high)) in &ends {
            if start < high && is_request_topic(topic) == requests {
                assignment
                    .add_partition_offset(topic, *partition, Offset::Offset(*start))
                    .map_err(RequestError::Lookup)?;
                unfinished.insert((topic.clone(), *partition), *high);
            }
        }
        if unfinished.is_empty() {
            continue;
        }
        consumer.assign(&assignment).map_err(RequestError::Lookup)?;
        consumer = read_until_ends(
            consumer,
            &config,
            routes,
            &names,
            unfinished,
            &mut on_message,
        )
        .await;
    }
    Ok(reply_ends)
}

/// Reads the assigned partitions up to `unfinished`'s end offsets (or gives up after
/// [`READ_TIMEOUT`], leaving the history partial), handing each message over. A partition that
/// is behind its end and has not moved for the stall time gets the consumer replaced by a new
/// one (made from `config`) assigned where reading stopped, as the reply listener's watchdog
/// does (see [`crate::watchdog`]); the consumer in use at the end is returned.
async fn read_until_ends<R: Routes>(
    mut consumer: StreamConsumer,
    config: &ClientConfig,
    routes: &R,
    names: &[(String, R::Kind, bool)],
    mut unfinished: HashMap<(String, i32), i64>,
    on_message: &mut impl FnMut(LogMessage<R>),
) -> StreamConsumer {
    let deadline = tokio::time::Instant::now() + READ_TIMEOUT;
    // What lies past these is the reply listener's to read (it starts there): handing it over
    // too would count it twice.
    let ends = unfinished.clone();
    let mut stalls = Stalls::new(DEFAULT_STALL_AFTER);
    for element in consumer.assignment().unwrap_or_default().elements() {
        if let Offset::Offset(start) = element.offset() {
            stalls.watch((element.topic().to_owned(), element.partition()), start);
        }
    }
    // On a clock of its own: messages that keep coming (past the ends) must not put off the
    // checks.
    let mut checks = tokio::time::interval(CHECK_INTERVAL);
    checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    checks.reset();
    while !unfinished.is_empty() {
        let received = tokio::select! {
            received = consumer.recv() => received,
            _ = checks.tick() => {
                // Past a transaction's commit marker at the end is at the end.
                for (key, next) in consumer_positions(&consumer) {
                    stalls.passed(&key, next);
                    if unfinished.get(&key).is_some_and(|high| next >= *high) {
                        unfinished.remove(&key);
                    }
                }
                if unfinished.is_empty() {
                    break;
                }
                let stalled = stalls.observe(&unfinished, std::time::Instant::now());
                if !stalled.is_empty() {
                    match replacement(config, &stalls.positions(), &unfinished) {
                        Ok(fresh) => {
                            tracing::warn!(?stalled, "log window not moving; replacing the history reader");
                            consumer = fresh;
                            stalls.recovered(stalled.into_iter().map(|stall| stall.key));
                        }
                        Err(error) => tracing::warn!(%error, "cannot replace the history reader"),
                    }
                }
                if tokio::time::Instant::now() >= deadline {
                    tracing::warn!(
                        partitions = unfinished.len(),
                        "gave up reading the log window; history is partial"
                    );
                    break;
                }
                continue;
            }
        };
        let message = match received {
            Err(error) => {
                tracing::warn!(%error, "error while reading the log window");
                continue;
            }
            Ok(message) => message,
        };
        let key = (message.topic().to_owned(), message.partition());
        stalls.read(&key, message.offset());
        if unfinished
            .get(&key)
            .is_some_and(|high| message.offset() + 1 >= *high)
        {
            unfinished.remove(&key);
        }
        if ends.get(&key).is_none_or(|end| message.offset() >= *end) {
            continue;
        }
        let Some((_, kind, is_request)) = names.iter().find(|(name, _, _)| *name == key.0) else {
            continue;
        };
        let timestamp_ms = message.timestamp().to_millis();
        if *is_request {
            let headers = HeaderList::from_message(&message);
            // Requests without a correlation ID (the original system's) cannot be matched.
            if let Some(correlation_id) = headers
                .last(headers::CORRELATION_ID)
                .map(CorrelationId::from_bytes)
            {
                on_message(LogMessage::Request(RecordedRequest {
                    kind: *kind,
                    topic: key.0,
                    partition: key.1,
                    offset: message.offset(),
                    timestamp_ms,
                    correlation_id,
                    headers,
                    payload: message.payload().map(<[u8]>::to_vec),
                }));
            }
        } else {
            on_message(LogMessage::Reply(
                IncomingReply::decode(routes, *kind, &message),
                timestamp_ms,
            ));
        }
    }
    consumer
}

/// A new reader assigned to the unfinished partitions where reading stopped.
fn replacement(
    config: &ClientConfig,
    positions: &HashMap<(String, i32), i64>,
    unfinished: &HashMap<(String, i32), i64>,
) -> Result<StreamConsumer, KafkaError> {
    let consumer: StreamConsumer = config.create()?;
    let mut list = TopicPartitionList::new();
    for (topic, partition) in unfinished.keys() {
        if let Some(next) = positions.get(&(topic.clone(), *partition)) {
            list.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
        }
    }
    consumer.assign(&list)?;
    Ok(consumer)
}

/// Why a message could not be read back by [`RecordReader::read`].
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Retention or compaction removed it: asking again will not help.
    #[error("{topic}/{partition}/{offset} is no longer in the log")]
    Gone {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The offset asked for.
        offset: i64,
    },
    /// No answer in time: the broker is unreachable or slow; asking again may help.
    #[error("{topic}/{partition}/{offset} could not be read within {timeout:?}")]
    Timeout {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The offset asked for.
        offset: i64,
        /// How long the read waited.
        timeout: Duration,
    },
    /// Any other Kafka error.
    #[error("cannot read from Kafka: {0}")]
    Kafka(#[source] KafkaError),
}

/// What [`RecordReader::read_last`] found.
#[derive(Clone, Debug)]
pub struct LastMessages<T> {
    /// What the caller kept of each message, in the order read (per partition, oldest first).
    pub messages: Vec<T>,
    /// False when the deadline passed before every partition's end was read.
    pub complete: bool,
}

/// Reads messages back by their position (one, or the last few of a topic), for programs that remember only where a
/// message is and show it in full on demand (the dashboard's detail page) instead of keeping
/// every payload in memory.
///
/// One consumer, assigned to one partition at a time and never in a consumer group, is reused
/// for every read: creating a client per read would cost a connection and a metadata round
/// trip each time. Reads are serialized.
pub struct RecordReader {
    consumer: std::sync::Mutex<BaseConsumer>,
}

impl std::fmt::Debug for RecordReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordReader").finish_non_exhaustive()
    }
}

/// Prefetch bounds of the reader unless config.ini sets them: it wants one message, not the
/// batch after it.
const READER_QUEUE_KBYTES: &str = "1024";
const READER_QUEUE_MESSAGES: &str = "1";
/// After the message it wanted, librdkafka at once sends the next fetch, which the broker holds
/// for `fetch.wait.max.ms` (500 by default) when nothing follows; the next read waits behind it
/// on the same connection. With the default, 32 API calls reading back at once took 17 s each in
/// scripts/chaos: about 250 ms a read, one read at a time.
const READER_FETCH_WAIT_MS: &str = "10";
/// How often a reader with nothing to read looks whether its position reached the end.
const END_CHECK_INTERVAL: Duration = Duration::from_millis(50);

impl RecordReader {
    /// A reader whose consumer uses `group_id` (it is assigned partitions, never subscribed).
    pub fn new(kafka: &KafkaSettings, group_id: &str) -> Result<Self, RequestError> {
        let mut config = kafka.consumer_config();
        set_default(&mut config, "group.id", group_id);
        set_default(
            &mut config,
            "queued.max.messages.kbytes",
            READER_QUEUE_KBYTES,
        );
        set_default(&mut config, "queued.min.messages", READER_QUEUE_MESSAGES);
        set_default(&mut config, "fetch.wait.max.ms", READER_FETCH_WAIT_MS);
        config.set("enable.auto.commit", "false");
        config.set("enable.auto.offset.store", "false");
        // An offset that retention has deleted must be an error, not a silent jump to another
        // message.
        config.set("auto.offset.reset", "error");
        let consumer = config.create().map_err(RequestError::Client)?;
        Ok(RecordReader {
            consumer: std::sync::Mutex::new(consumer),
        })
    }

    /// The last `per_partition` messages of every partition of `topic`, each turned into a `T`
    /// by `keep` as it is read (so what is held is what the caller keeps, not the messages),
    /// waiting at most `timeout` in all. Blocks: call it from `spawn_blocking`. A topic that
    /// does not exist is an error (after half a second: it may be one created a moment ago
    /// that the broker does not know yet); one without messages is empty; one whose partitions
    /// have no leader yet is looked up again within `timeout`.
    pub fn read_last<T>(
        &self,
        topic: &str,
        per_partition: i64,
        timeout: Duration,
        mut keep: impl FnMut(&BorrowedMessage<'_>) -> T,
    ) -> Result<LastMessages<T>, ReadError> {
        let consumer = self
            .consumer
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let deadline = Instant::now() + timeout;
        let mut assignment = TopicPartitionList::new();
        // The end of each partition as looked up: later messages are not waited for.
        let mut ends = HashMap::new();
        for (partition, low, high) in
            led_partition_watermarks(&*consumer, topic, deadline).map_err(ReadError::Kafka)?
        {
            if high > low {
                let from = high.saturating_sub(per_partition.max(1)).max(low);
                assignment
                    .add_partition_offset(topic, partition, Offset::Offset(from))
                    .map_err(ReadError::Kafka)?;
                ends.insert(partition, high);
            }
        }
        let mut last = LastMessages {
            messages: Vec::new(),
            complete: true,
        };
        if ends.is_empty() {
            return Ok(last);
        }
        consumer.assign(&assignment).map_err(ReadError::Kafka)?;
        while !ends.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                last.complete = false;
                break;
            }
            // In short steps, to notice a partition whose position went past a transaction's
            // commit marker at its end, which no message announces.
            match consumer.poll(left.min(END_CHECK_INTERVAL)) {
                Some(Ok(message)) if message.topic() == topic => {
                    let Some(&end) = ends.get(&message.partition()) else {
                        continue;
                    };
                    if message.offset() < end {
                        last.messages.push(keep(&message));
                    }
                    if message.offset() + 1 >= end {
                        ends.remove(&message.partition());
                    }
                }
                // Retention removed the start meanwhile, or connection trouble librdkafka
                // retries: what was read is kept, and the deadline bounds the wait.
                Some(Err(error)) => tracing::debug!(%error, topic, "reading the last messages"),
                Some(Ok(_)) => {}
                None => {
                    for ((_, partition), next) in consumer_positions(&*consumer) {
                        if ends.get(&partition).is_some_and(|end| next >= *end) {
                            ends.remove(&partition);
                        }
                    }
                }
            }
        }
        if let Err(error) = consumer.unassign() {
            tracing::debug!(%error, "unassigning the message reader");
        }
        Ok(last)
    }

    /// The message at `offset` of `topic`/`partition`, waiting at most `timeout`. Blocks: call
    /// it from `spawn_blocking`.
    pub fn read(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        timeout: Duration,
    ) -> Result<OwnedMessage, ReadError> {
        let consumer = self
            .consumer
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, partition, Offset::Offset(offset))
            .map_err(ReadError::Kafka)?;
        consumer.assign(&assignment).map_err(ReadError::Kafka)?;
        let gone = || ReadError::Gone {
            topic: topic.to_owned(),
            partition,
            offset,
        };
        let deadline = Instant::now() + timeout;
        let result = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Err(ReadError::Timeout {
                    topic: topic.to_owned(),
                    partition,
                    offset,
                    timeout,
                });
            }
            match consumer.poll(left) {
                None => {}
                Some(Ok(message))
                    if message.topic() == topic && message.partition() == partition =>
                {
                    match message.offset().cmp(&offset) {
                        std::cmp::Ordering::Equal => break Ok(message.detach()),
                        // Compaction removed it: the log goes on after the gap.
                        std::cmp::Ordering::Greater => break Err(gone()),
                        // Left over from an earlier read of this partition.
                        std::cmp::Ordering::Less => {}
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset))) => {
                    break Err(gone());
                }
                // Connection trouble is reported here and retried by librdkafka: keep waiting
                // until the deadline.
                Some(Err(error)) => tracing::debug!(%error, "reading a message back"),
            }
        };
        // Stop fetching until the next read.
        if let Err(error) = consumer.unassign() {
            tracing::debug!(%error, "unassigning the message reader");
        }
        result
    }
}
