//! Where partitions begin and end, looked up once: the history reader reads up to these ends and
//! the reply listener starts from them, so between the two nothing is missed or read twice.

use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::time::{Duration, Instant};

/// Runs a blocking broker look-up from async code: on a multi-threaded runtime it lets the
/// runtime move its other tasks to other threads meanwhile (`block_in_place`); on any other
/// thread it simply blocks.
pub(crate) fn blocking_lookup<T>(look_up: impl FnOnce() -> T) -> T {
    let multi_threaded = tokio::runtime::Handle::try_current().is_ok_and(|runtime| {
        runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
    });
    if multi_threaded {
        tokio::task::block_in_place(look_up)
    } else {
        look_up()
    }
}

/// The next offset to read, per topic and partition.
pub type Positions = std::collections::HashMap<(String, i32), i64>;

/// Bound on each metadata and watermark look-up; new topics may need a moment for leaders.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
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

/// How long an unknown topic is looked up again before it counts as missing: a topic created a
/// moment ago is unknown to a broker until its metadata has reached it, which a busy CI machine
/// saw take longer than the first look (UnknownTopicOrPartition right after CreateTopics).
const NEW_TOPIC_GRACE: Duration = Duration::from_millis(500);

/// [`try_partition_watermarks`], looked up again until `deadline` while a partition of `topic`
/// has no leader yet, and for at most [`NEW_TOPIC_GRACE`] while the broker does not know the
/// topic (both: a topic created a moment ago); any other error is returned at once.
pub(crate) fn led_partition_watermarks(
    consumer: &impl Consumer,
    topic: &str,
    deadline: Instant,
) -> Result<Vec<(i32, i64, i64)>, KafkaError> {
    let unknown_until = deadline.min(Instant::now() + NEW_TOPIC_GRACE);
    loop {
        match try_partition_watermarks(consumer, topic) {
            Err(KafkaError::MetadataFetch(
                RDKafkaErrorCode::NotLeaderForPartition | RDKafkaErrorCode::LeaderNotAvailable,
            )) if Instant::now() < deadline => {
                tracing::debug!(topic, "a partition has no leader yet; looking again");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition))
                if Instant::now() < unknown_until =>
            {
                tracing::debug!(
                    topic,
                    "the broker does not know the topic yet; looking again"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            result => return result,
        }
    }
}

fn try_partition_watermarks(
    consumer: &impl Consumer,
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

/// Where `consumer` will read next in each assigned partition. librdkafka moves this past
/// transaction markers, which are never handed over: a reader that compared only the offsets of
/// the messages it got with a high watermark would wait for ever on a partition written in
/// transactions, whose last offset is a commit marker.
pub(crate) fn consumer_positions<C: ConsumerContext>(consumer: &impl Consumer<C>) -> Positions {
    let mut positions = Positions::new();
    match consumer.position() {
        Ok(list) => {
            for element in list.elements() {
                if let rdkafka::Offset::Offset(next) = element.offset() {
                    positions.insert((element.topic().to_owned(), element.partition()), next);
                }
            }
        }
        Err(error) => tracing::debug!(%error, "cannot look up the reader's positions"),
    }
    positions
}
