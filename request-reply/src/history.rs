//! Reading the recent past of the request and reply topics, so a requester that restarts can
//! rebuild what it knew: the log is the source of truth, there is no database.

use crate::config::{KafkaSettings, TopicSettings};
use crate::contract::{RequestKind, Topics};
use crate::headers::{self, CorrelationId};
use crate::kafka::{HeaderList, set_default};
use crate::requester::{IncomingReply, Positions, RequestError};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Bound on each metadata and watermark look-up; new topics may need a moment for leaders.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on reading the whole window.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A correlated request as read back from a request topic.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub kind: RequestKind,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The message's Kafka timestamp, in milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
    pub correlation_id: CorrelationId,
    pub headers: HeaderList,
    pub payload: Option<Vec<u8>>,
}

/// What the log held when it was read.
#[derive(Debug, Default)]
pub struct LogWindow {
    /// Correlated requests, oldest first (by Kafka timestamp).
    pub requests: Vec<RecordedRequest>,
    /// Replies with their Kafka timestamps (milliseconds), in the order read.
    pub replies: Vec<(IncomingReply, Option<i64>)>,
    /// Where each reply partition ended: a listener started here misses and repeats nothing.
    pub reply_ends: Positions,
}

/// Each partition of `topic` with its low and high watermarks, retried while the topic is new.
pub(crate) fn partition_watermarks(
    consumer: &StreamConsumer,
    topic: &str,
) -> Result<Vec<(i32, i64, i64)>, KafkaError> {
    let deadline = Instant::now() + LOOKUP_TIMEOUT;
    loop {
        match try_partition_watermarks(consumer, topic) {
            Err(error) if Instant::now() < deadline => {
                tracing::debug!(%error, topic, "topic not ready yet; retrying");
                std::thread::sleep(Duration::from_millis(100));
            }
            result => return result,
        }
    }
}

fn try_partition_watermarks(
    consumer: &StreamConsumer,
    topic: &str,
) -> Result<Vec<(i32, i64, i64)>, KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), LOOKUP_TIMEOUT)?;
    let mut partitions = Vec::new();
    for topic_metadata in metadata.topics() {
        if let Some(error) = topic_metadata.error() {
            return Err(KafkaError::MetadataFetch(error.into()));
        }
        for partition in topic_metadata.partitions() {
            if let Some(error) = partition.error() {
                return Err(KafkaError::MetadataFetch(error.into()));
            }
            let (low, high) = consumer.fetch_watermarks(topic, partition.id(), LOOKUP_TIMEOUT)?;
            partitions.push((partition.id(), low, high));
        }
    }
    Ok(partitions)
}

/// Reads the last `per_partition` messages of every partition of the request and reply topics,
/// up to where they ended when this was called.
pub async fn read_recent(
    kafka: &KafkaSettings,
    settings: &TopicSettings,
    per_partition: usize,
) -> Result<LogWindow, RequestError> {
    let topics = Topics::with_prefix(&settings.prefix);
    let mut config = kafka.consumer_config();
    set_default(&mut config, "group.id", "dashboard");
    config.set("enable.auto.commit", "false");
    config.set("enable.auto.offset.store", "false");
    let consumer: StreamConsumer = config.create().map_err(RequestError::Client)?;
    let names: Vec<(String, RequestKind, bool)> = RequestKind::ALL
        .iter()
        .flat_map(|kind| {
            [
                (topics.request(*kind), *kind, true),
                (topics.reply(*kind), *kind, false),
            ]
        })
        .collect();
    let lookup_names: Vec<String> = names.iter().map(|(name, _, _)| name.clone()).collect();
    let window = i64::try_from(per_partition).unwrap_or(i64::MAX);
    // Watermark look-ups block; keep them off the async threads.
    let (consumer, ends) = tokio::task::spawn_blocking(move || {
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

    let mut assignment = TopicPartitionList::new();
    let mut unfinished: HashMap<(String, i32), i64> = HashMap::new();
    for ((topic, partition), (start, high)) in &ends {
        if start < high {
            assignment
                .add_partition_offset(topic, *partition, Offset::Offset(*start))
                .map_err(RequestError::Lookup)?;
            unfinished.insert((topic.clone(), *partition), *high);
        }
    }
    let mut log = LogWindow {
        reply_ends: ends
            .iter()
            .filter(|((topic, _), _)| {
                names
                    .iter()
                    .any(|(name, _, is_request)| name == topic && !is_request)
            })
            .map(|(key, (_, high))| (key.clone(), *high))
            .collect(),
        ..LogWindow::default()
    };
    if unfinished.is_empty() {
        return Ok(log);
    }
    consumer.assign(&assignment).map_err(RequestError::Lookup)?;
    let deadline = tokio::time::Instant::now() + READ_TIMEOUT;
    while !unfinished.is_empty() {
        let message = match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Err(_) => {
                tracing::warn!(
                    partitions = unfinished.len(),
                    "gave up reading the log window; history is partial"
                );
                break;
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "error while reading the log window");
                continue;
            }
            Ok(Ok(message)) => message,
        };
        let key = (message.topic().to_owned(), message.partition());
        if unfinished
            .get(&key)
            .is_some_and(|high| message.offset() + 1 >= *high)
        {
            unfinished.remove(&key);
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
                log.requests.push(RecordedRequest {
                    kind: *kind,
                    topic: key.0,
                    partition: key.1,
                    offset: message.offset(),
                    timestamp_ms,
                    correlation_id,
                    headers,
                    payload: message.payload().map(<[u8]>::to_vec),
                });
            }
        } else {
            log.replies
                .push((IncomingReply::decode(*kind, &message), timestamp_ms));
        }
    }
    log.requests.sort_by_key(|request| request.timestamp_ms);
    Ok(log)
}
