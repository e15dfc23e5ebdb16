//! What the integration tests of every crate share (a dev-dependency only): the broker they run
//! against, unique topic namespaces, worker configs, reading topics back, schema checks.
//!
//! Tests get the broker from `KAFKA_BOOTSTRAP_SERVERS` (set by `scripts/test`, which starts one on
//! a free port) and isolate themselves with a unique topic prefix, so they can run in parallel
//! against one broker.

pub mod groups;
mod process;
pub mod relay;
pub mod secure_broker;
#[cfg(feature = "system")]
pub mod system;
mod worker;

pub use process::ChildGuard;
pub use worker::{GROUP_TIMEOUT, InProcessWorker, REPLY_TIMEOUT};

use contract::{RequestKind, Topics};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use request_reply::config::{KafkaSettings, TopicSettings};
use request_reply::kafka::HeaderList;
use request_reply::requester::SentRequest;
use request_reply::responder;
use service::worker::WorkerConfig;
use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

/// The broker the tests run against.
pub fn kafka() -> KafkaSettings {
    let servers = std::env::var("KAFKA_BOOTSTRAP_SERVERS").unwrap_or_else(|_| {
        panic!("KAFKA_BOOTSTRAP_SERVERS is not set: run the tests with scripts/test, which starts a broker")
    });
    KafkaSettings::for_bootstrap(&servers)
}

/// Topic settings with a prefix no other test uses.
pub fn unique_topics() -> TopicSettings {
    let id = uuid::Uuid::new_v4().simple().to_string();
    TopicSettings::with_prefix(format!("test-{}.", &id[..12]))
}

/// A worker config for `topics`, in consumer group `group`.
pub fn worker_config(topics: &TopicSettings, group: &str) -> WorkerConfig {
    let mut kafka = kafka();
    kafka
        .consumer
        .insert("group.id".into(), format!("{}{group}", topics.prefix));
    WorkerConfig::from(responder::WorkerConfig::new(kafka, topics.clone()))
}

/// [`worker_config`] with exactly-once delivery: replies and consumed offsets committed in
/// transactions.
pub fn exactly_once_worker_config(topics: &TopicSettings, group: &str) -> WorkerConfig {
    let mut config = worker_config(topics, group);
    config.responder.delivery =
        responder::Delivery::ExactlyOnce(responder::TransactionPolicy::default());
    config
}

/// The consumer group id [`worker_config`]`(topics, group)` gives a worker.
pub fn group_id(topics: &TopicSettings, group: &str) -> String {
    worker_config(topics, group)
        .responder
        .kafka
        .consumer
        .get("group.id")
        .cloned()
        .expect("worker_config sets group.id")
}

/// Produces `message` as a tombstone: its topic, partition, key and headers, but no payload at
/// all (which `Outgoing` cannot express: its payload is always present, if empty).
pub async fn send_tombstone(message: &request_reply::kafka::Outgoing) -> SentRequest {
    let producer: FutureProducer = kafka()
        .producer_config()
        .create()
        .expect("create test producer");
    let headers = message
        .headers
        .iter()
        .fold(OwnedHeaders::new(), |all, (key, value)| {
            all.insert(Header {
                key,
                value: Some(value.as_slice()),
            })
        });
    let mut record: FutureRecord<'_, [u8], [u8]> =
        FutureRecord::to(&message.topic).headers(headers);
    if let Some(key) = &message.key {
        record = record.key(key.as_slice());
    }
    if let Some(partition) = message.partition {
        record = record.partition(partition);
    }
    let delivery = producer
        .send(record, REPLY_TIMEOUT)
        .await
        .map_err(|(error, _)| error)
        .expect("produce a tombstone");
    SentRequest {
        topic: message.topic.clone(),
        partition: delivery.partition,
        offset: delivery.offset,
    }
}

/// Sends `message` (a JSON request correlated by `id`) to one `partition` of its topic,
/// registered for its reply first: a request that is answered only after everything queued
/// ahead of it on that partition.
pub async fn send_to_partition<R: request_reply::route::Routes>(
    client: &request_reply::requester::Client<R>,
    id: &request_reply::headers::CorrelationId,
    message: request_reply::kafka::Outgoing,
    partition: i32,
) -> tokio::sync::oneshot::Receiver<request_reply::requester::IncomingReply<R>> {
    use request_reply::headers;
    let mut message = message.header(headers::CONTENT_TYPE, headers::JSON_CONTENT_TYPE);
    message.partition = Some(partition);
    let reply = client.expect_reply(id);
    client
        .requester()
        .send_outgoing(&message)
        .await
        .expect("send a request");
    reply
}

/// The canonical correlation key of a message read back from a topic, if it has one.
pub fn correlation_key(message: &ReadMessage) -> Option<String> {
    message
        .headers
        .last(request_reply::headers::CORRELATION_ID)
        .map(|id| request_reply::headers::CorrelationId::from_bytes(id).key())
}

/// How many messages carry each correlation key.
pub fn count_by_correlation(messages: &[ReadMessage]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for key in messages.iter().filter_map(correlation_key) {
        *counts.entry(key).or_default() += 1;
    }
    counts
}

/// A requester of both kinds of request under `settings`, in group `requester`.
pub async fn client(settings: &TopicSettings) -> request_reply::requester::Client<Topics> {
    request_reply::requester::Client::connect(&kafka(), settings, topics(settings), "requester")
        .await
        .unwrap()
}

/// The first message on the reply topic of `kind` under `settings` (`what`, in the message if
/// none comes within [`REPLY_TIMEOUT`]).
pub async fn first_reply(settings: &TopicSettings, kind: RequestKind, what: &str) -> ReadMessage {
    let mut replies = TopicReader::new(&topics(settings).reply(kind), settings.partitions);
    let read = replies
        .read_until(what, REPLY_TIMEOUT, |seen| !seen.is_empty())
        .await;
    read[0].clone()
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A message read back from a topic.
#[derive(Clone, Debug)]
pub struct ReadMessage {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: HeaderList,
}

impl ReadMessage {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(self.payload.as_deref().unwrap_or_default()).into_owned()
    }
}

/// Reads every partition of one topic from the beginning, outside any consumer group.
pub struct TopicReader {
    consumer: StreamConsumer,
    seen: Vec<ReadMessage>,
}

impl std::fmt::Debug for TopicReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicReader")
            .field("seen", &self.seen.len())
            .finish_non_exhaustive()
    }
}

impl TopicReader {
    pub fn new(topic: &str, partitions: i32) -> Self {
        Self::with_isolation(topic, partitions, "read_committed")
    }

    /// A reader that also sees the messages of aborted and open transactions, as a client set
    /// to `isolation.level=read_uncommitted` does.
    pub fn uncommitted(topic: &str, partitions: i32) -> Self {
        Self::with_isolation(topic, partitions, "read_uncommitted")
    }

    fn with_isolation(topic: &str, partitions: i32, isolation: &str) -> Self {
        let mut config = kafka().consumer_config();
        config
            .set("group.id", "testkit-reader")
            .set("enable.auto.commit", "false")
            .set("isolation.level", isolation);
        let consumer = from_beginning(&config, topic, partitions);
        TopicReader {
            consumer,
            seen: Vec::new(),
        }
    }

    /// Reads until `enough` holds for everything read so far, or panics after `timeout`.
    pub async fn read_until(
        &mut self,
        what: &str,
        timeout: Duration,
        enough: impl Fn(&[ReadMessage]) -> bool,
    ) -> &[ReadMessage] {
        let deadline = Instant::now() + timeout;
        while !enough(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out after {timeout:?} waiting for {what}; read {:?}",
                self.seen
            );
            if let Ok(Ok(message)) = tokio::time::timeout(left, self.consumer.recv()).await {
                self.seen.push(ReadMessage::from_message(&message));
            }
        }
        &self.seen
    }
}

impl ReadMessage {
    fn from_message(message: &impl Message) -> Self {
        ReadMessage {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            headers: HeaderList::from_message(message),
        }
    }
}

/// Reads every committed message of `topic` (`isolation.level=read_committed`: nothing of an
/// aborted or open transaction) until `enough` holds and every partition is read to its end;
/// panics with `what` after `timeout`. Counting against the high watermark, as [`TopicReader`]
/// callers do, does not work on a topic written in transactions: its commit markers take
/// offsets too.
pub async fn read_committed_to_end(
    topic: &str,
    partitions: i32,
    what: &str,
    timeout: Duration,
    enough: impl Fn(&[ReadMessage]) -> bool,
) -> Vec<ReadMessage> {
    let mut config = kafka().consumer_config();
    config
        .set("group.id", "testkit-committed-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true");
    let consumer = from_beginning(&config, topic, partitions);
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    let mut at_end = std::collections::HashSet::new();
    while !(at_end.len() == usize::try_from(partitions).unwrap_or_default() && enough(&seen)) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "timed out after {timeout:?} waiting for {what}; read {} messages, {} partitions at \
             their end",
            seen.len(),
            at_end.len()
        );
        match tokio::time::timeout(left, consumer.recv()).await {
            Ok(Ok(message)) => {
                at_end.remove(&message.partition());
                seen.push(ReadMessage::from_message(&message));
            }
            Ok(Err(rdkafka::error::KafkaError::PartitionEOF(partition))) => {
                at_end.insert(partition);
            }
            Ok(Err(_)) | Err(_) => {}
        }
    }
    seen
}

/// Asserts that `topic`, read committed, holds exactly one reply to each of `keys` (correlation
/// keys) and no other: what exactly-once delivery promises a requester.
pub async fn assert_one_committed_reply_each(
    topic: &str,
    partitions: i32,
    keys: &std::collections::HashSet<String>,
) {
    let read = read_committed_to_end(
        topic,
        partitions,
        "every committed reply",
        REPLY_TIMEOUT,
        |seen| seen.len() >= keys.len(),
    )
    .await;
    let counts = count_by_correlation(&read);
    for key in keys {
        assert_eq!(counts.get(key), Some(&1), "committed replies to {key}");
    }
    assert_eq!(
        counts.len(),
        keys.len(),
        "replies nobody asked for: {counts:?}"
    );
}

/// A consumer made from `config`, assigned every partition of `topic` from its beginning.
fn from_beginning(config: &rdkafka::ClientConfig, topic: &str, partitions: i32) -> StreamConsumer {
    let consumer: StreamConsumer = config.create().expect("create test consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("add partition");
    }
    consumer.assign(&assignment).expect("assign test consumer");
    consumer
}

/// The topic names behind `settings`.
pub fn topics(settings: &TopicSettings) -> Topics {
    Topics::with_prefix(&settings.prefix)
}

/// Request topic of `kind` under `settings`, for tests that produce raw messages.
pub fn request_topic(settings: &TopicSettings, kind: RequestKind) -> String {
    topics(settings).request(kind)
}

/// Panics unless `payload` is JSON valid against the checked-in schema `schema`
/// (`invoice-request`, `invoice-reply`, ...; see [`contract::schema`]).
pub fn assert_valid_payload(schema: &str, payload: &[u8]) {
    let instance: serde_json::Value = serde_json::from_slice(payload).unwrap_or_else(|error| {
        panic!(
            "payload is not JSON ({error}): {}",
            String::from_utf8_lossy(payload)
        )
    });
    let problems = contract::schema::problems(schema, &instance);
    assert!(
        problems.is_empty(),
        "{instance} does not match {schema}: {problems:?}"
    );
}

/// Creates every topic of both kinds under `settings` (request, reply, NestJS reply, dead
/// letter) plus `extra`, so readers can be assigned and requests produced before any worker or
/// peer has started.
pub async fn create_topics(settings: &TopicSettings, extra: &[String]) {
    let topics = topics(settings);
    let mut names: Vec<String> = RequestKind::ALL
        .into_iter()
        .flat_map(|kind| {
            [
                topics.request(kind),
                topics.reply(kind),
                topics.nest_reply(kind),
                topics.dead_letter(kind),
            ]
        })
        .collect();
    names.extend_from_slice(extra);
    request_reply::admin::ensure_topics(&kafka(), settings, &names)
        .await
        .expect("create the test topics");
}

/// A port nothing listens on: bound, then let go.
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
