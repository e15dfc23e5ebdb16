//! The worker side of request/reply: consume a request topic, call the business function, reply,
//! and only then let the request's offset be committed (at-least-once).
//!
//! A worker crate implements [`Service`] and calls [`run`]; everything about Kafka lives here.
//!
//! Pipeline: messages are consumed in order, each is turned into the messages it causes (a reply,
//! and for a bad request a dead-letter copy plus an error reply) by the pure function [`plan`],
//! those are queued in the producer at once, and the deliveries are awaited in consumption order.
//! A request's offset is stored only when everything it caused is acknowledged by the broker, so a
//! crash at any point leads to redelivery, never to a lost reply.

use crate::admin::{AdminError, ensure_topics};
use crate::codec::{MAX_QUOTED_CHARS, RequestBody, decode_request, excerpt, loggable};
use crate::config::{KafkaSettings, TopicSettings};
use crate::headers::{self, CorrelationId, TraceContext};
use crate::kafka::{HeaderList, Outgoing, set_default};
use crate::metrics::WorkerMetrics;
use contract::{ErrorCode, Reply, RequestKind, Topics, Validate};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use prometheus_client::registry::Registry;
use rdkafka::client::ClientContext;
use rdkafka::consumer::RebalanceProtocol;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::DeliveryFuture;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeSet, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{Instrument, info_span};

mod recovery;
use crate::producer::RenewingProducer as ReplyProducer;
use recovery::{AfterFailure, ConsumerWatch, Queued, Tick, after_failure, undecodable_dead_letter};

/// Most requests whose replies may be awaiting acknowledgement at once (backpressure).
const MAX_IN_FLIGHT: usize = 4096;
/// How long shutdown waits for in-flight replies before leaving them to redelivery.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest pause between attempts to deliver a reply while the broker is unavailable.
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(5);
/// The worker's default `message.timeout.ms`: a reply not acknowledged within this long means
/// the producer is stuck (or the cluster down) and it is replaced. Ten seconds is far beyond an
/// acknowledgement's usual milliseconds, and short enough for a stuck reply to go out again
/// well within a requester's 30 s timeout.
const REPLY_TIMEOUT_MS: &str = "10000";
/// Longest reason, in characters, put in `dlq-reason` and error replies: reasons quote header
/// values and parser messages, which a hostile request can make as large as itself.
const MAX_REASON_CHARS: usize = 1000;
/// A dead-letter copy too large for its topic is cut down to at most this many original headers,
/// each name and value to at most [`SHRUNK_VALUE_BYTES`], and the payload to
/// [`MAX_REQUEST_BYTES`](contract::MAX_REQUEST_BYTES).
const SHRUNK_HEADERS: usize = 64;
const SHRUNK_VALUE_BYTES: usize = 1024;

/// A worker's business function, and how it answers the original system's plain-text requests.
pub trait Service: Send + Sync + 'static {
    /// Which request topic this service consumes and which reply topic it answers on.
    const KIND: RequestKind;
    type Request: DeserializeOwned + Validate;
    type Response: Serialize;

    /// Answers a valid request. Must be deterministic: redelivery must give the same reply.
    fn handle(&self, request: Self::Request, origin: Origin) -> Self::Response;

    /// Answers a plain-text request in the plain-text form of the original Python workers.
    fn handle_text(&self, text: &str, origin: Origin) -> String;
}

/// Where a request sits in the log; stable across redeliveries, unique within a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    pub partition: i32,
    pub offset: i64,
}

/// Everything a worker needs to run, usually read from its config.ini.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub kafka: KafkaSettings,
    pub topics: TopicSettings,
    /// `--reset`: the first time this process is assigned a partition it reads it from the
    /// beginning, as the original workers' `--reset` did.
    pub reset: bool,
    /// Reply topics a request may name in `kafka_replyTopic` besides the default reply topic and
    /// the NestJS `<request-topic>.reply`; any other name is refused, so requests cannot make a
    /// worker write into arbitrary topics.
    pub extra_reply_topics: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("cannot create Kafka {role} for {servers}: {source}")]
    Client {
        role: &'static str,
        servers: String,
        #[source]
        source: KafkaError,
    },
    #[error("cannot subscribe to {topic}: {source}")]
    Subscribe {
        topic: String,
        #[source]
        source: KafkaError,
    },
}

/// The topics one worker reads from and writes to.
#[derive(Clone, Debug)]
pub struct Routing {
    pub request_topic: String,
    pub default_reply_topic: String,
    pub dead_letter_topic: String,
    pub allowed_reply_topics: HashSet<String>,
}

impl Routing {
    pub fn new(kind: RequestKind, topics: &Topics, extra_reply_topics: &[String]) -> Self {
        let mut allowed_reply_topics: HashSet<String> =
            extra_reply_topics.iter().cloned().collect();
        allowed_reply_topics.insert(topics.reply(kind));
        allowed_reply_topics.insert(topics.nest_reply(kind));
        Routing {
            request_topic: topics.request(kind),
            default_reply_topic: topics.reply(kind),
            dead_letter_topic: topics.dead_letter(kind),
            allowed_reply_topics,
        }
    }

    /// Every topic the worker needs to exist, sorted for stable logs.
    fn all_topics(&self) -> Vec<String> {
        let mut all: BTreeSet<String> = self.allowed_reply_topics.iter().cloned().collect();
        all.insert(self.request_topic.clone());
        all.insert(self.dead_letter_topic.clone());
        all.into_iter().collect()
    }
}

/// A consumed request, copied out of the consumer so it can be released at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inbound {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: HeaderList,
}

impl Inbound {
    pub fn from_message(message: &impl Message) -> Self {
        Inbound {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            headers: HeaderList::from_message(message),
        }
    }

    fn trace_context(&self) -> Option<TraceContext> {
        self.headers
            .last(headers::TRACEPARENT)
            .and_then(TraceContext::parse)
    }

    fn correlation_id(&self) -> Option<CorrelationId> {
        self.headers
            .last(headers::CORRELATION_ID)
            .map(CorrelationId::from_bytes)
    }

    /// A dead-letter copy that fits any topic, for when [`Self::dead_letter`] is too large: the
    /// start of the payload, key and headers, plus why, whence, and `dlq-truncated` saying what
    /// was cut.
    pub fn dead_letter_shrunk(&self, topic: &str, reason: &str) -> Outgoing {
        let cut = |bytes: &[u8], max: usize| bytes[..bytes.len().min(max)].to_vec();
        let payload = self.payload.as_deref().unwrap_or_default();
        let mut copy = Outgoing::new(topic, cut(payload, contract::MAX_REQUEST_BYTES));
        copy.key = self.key.as_deref().map(|key| cut(key, SHRUNK_VALUE_BYTES));
        let readable: Vec<(&str, &[u8])> = self
            .headers
            .iter()
            .filter_map(|(key, value)| Some((key, value?)))
            .collect();
        copy.headers = readable
            .iter()
            .take(SHRUNK_HEADERS)
            .map(|(key, value)| {
                let key: String = key.chars().take(SHRUNK_VALUE_BYTES / 4).collect();
                (key, cut(value, SHRUNK_VALUE_BYTES))
            })
            .collect();
        let note = format!(
            "too large for {topic}: kept {} of {} payload bytes and {} of {} headers, names and \
             values cut to {SHRUNK_VALUE_BYTES} bytes",
            copy.payload.len(),
            payload.len(),
            copy.headers.len(),
            readable.len(),
        );
        copy.header(headers::DEAD_LETTER_REASON, reason)
            .header(
                headers::DEAD_LETTER_SOURCE,
                format!("{}/{}/{}", self.topic, self.partition, self.offset),
            )
            .header(headers::DEAD_LETTER_TRUNCATED, note)
    }

    /// A copy for the dead-letter topic: same key, payload and headers, plus why and whence.
    pub fn dead_letter(&self, topic: &str, reason: &str) -> Outgoing {
        let mut copy = Outgoing::new(topic, self.payload.clone().unwrap_or_default());
        copy.key.clone_from(&self.key);
        copy.headers = self
            .headers
            .iter()
            .filter_map(|(key, value)| Some((key.to_owned(), value?.to_vec())))
            .collect();
        copy.header(headers::DEAD_LETTER_REASON, reason).header(
            headers::DEAD_LETTER_SOURCE,
            format!("{}/{}/{}", self.topic, self.partition, self.offset),
        )
    }
}

/// Where a reply goes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ReplyTarget {
    topic: String,
    partition: Option<i32>,
}

fn reply_target(routing: &Routing, inbound: &Inbound) -> Result<ReplyTarget, String> {
    let topic = match inbound.headers.last(headers::REPLY_TOPIC) {
        None => routing.default_reply_topic.clone(),
        Some(bytes) => {
            let topic = std::str::from_utf8(bytes)
                .map_err(|_| format!("{} is not UTF-8", headers::REPLY_TOPIC))?;
            if !routing.allowed_reply_topics.contains(topic) {
                let topic = excerpt(topic, MAX_QUOTED_CHARS);
                return Err(format!("reply topic {topic:?} is not allowed"));
            }
            topic.to_owned()
        }
    };
    let partition = match inbound.headers.last(headers::REPLY_PARTITION) {
        None => None,
        Some(bytes) => Some(headers::decode_reply_partition(bytes).ok_or_else(|| {
            let shown = &bytes[..bytes.len().min(16)];
            let more = if bytes.len() > shown.len() {
                format!("… ({} bytes)", bytes.len())
            } else {
                String::new()
            };
            format!(
                "{} {shown:?}{more} is not a partition number",
                headers::REPLY_PARTITION
            )
        })?),
    };
    Ok(ReplyTarget { topic, partition })
}

/// Decides what one consumed request causes: its reply, or for a bad request a dead-letter copy
/// and (when the requester can be told) an error reply. Pure, so every case is unit-tested.
pub fn plan<S: Service>(service: &S, routing: &Routing, inbound: &Inbound) -> Vec<Outgoing> {
    let correlation_id = inbound.correlation_id();
    let origin = Origin {
        partition: inbound.partition,
        offset: inbound.offset,
    };
    let target = match reply_target(routing, inbound) {
        Ok(target) => target,
        Err(reason) => {
            let fallback = ReplyTarget {
                topic: routing.default_reply_topic.clone(),
                partition: None,
            };
            return reject::<S>(
                routing,
                inbound,
                &fallback,
                correlation_id,
                ErrorCode::InvalidHeaders,
                &reason,
            );
        }
    };
    if let [first, ..] = inbound.headers.unreadable() {
        let reason = format!(
            "{} header name(s) are not UTF-8 (the first is header {first}); they are left out of \
             the dead-letter copy",
            inbound.headers.unreadable().len()
        );
        return reject::<S>(
            routing,
            inbound,
            &target,
            correlation_id,
            ErrorCode::InvalidHeaders,
            &reason,
        );
    }
    let content_type = inbound.headers.last(headers::CONTENT_TYPE);
    match decode_request::<S::Request>(inbound.payload.as_deref(), content_type) {
        Ok(RequestBody::Json(request)) => {
            let reply = Reply::ok(service.handle(request, origin));
            tracing::info!("answered request");
            vec![json_reply(
                &target,
                inbound,
                correlation_id.as_ref(),
                &reply,
            )]
        }
        Ok(RequestBody::Text(text)) => {
            let answer = service.handle_text(&text, origin);
            tracing::info!(
                request = %loggable(&text, MAX_QUOTED_CHARS),
                reply = %loggable(&answer, MAX_QUOTED_CHARS),
                "answered plain-text request"
            );
            let mut reply = Outgoing::new(&target.topic, answer);
            reply.partition = target.partition;
            // The original system's messages carry no headers; answer them the same way.
            if !inbound.headers.is_empty() {
                if let Some(id) = &correlation_id {
                    reply = reply.header(headers::CORRELATION_ID, id.as_bytes());
                }
                reply = reply
                    .header(headers::CONTENT_TYPE, headers::TEXT_CONTENT_TYPE)
                    .header(headers::NEST_IS_DISPOSED, headers::NEST_IS_DISPOSED_VALUE);
            }
            vec![reply]
        }
        Err(error) => reject::<S>(
            routing,
            inbound,
            &target,
            correlation_id,
            error.code(),
            &error.to_string(),
        ),
    }
}

fn json_reply<T: Serialize>(
    target: &ReplyTarget,
    inbound: &Inbound,
    correlation_id: Option<&CorrelationId>,
    reply: &Reply<T>,
) -> Outgoing {
    // Serializing our own contract types cannot fail: they are plain structs with string keys.
    let payload = serde_json::to_vec(reply).unwrap_or_default();
    let mut outgoing = Outgoing::new(&target.topic, payload);
    outgoing.partition = target.partition;
    outgoing.key.clone_from(&inbound.key);
    if let Some(id) = correlation_id {
        outgoing = outgoing.header(headers::CORRELATION_ID, id.as_bytes());
    }
    // What a NestJS client needs: `kafka_nest-err` fails its call with our error body, and
    // `kafka_nest-is-disposed` (on every reply: there is only one) completes it.
    if let contract::Outcome::Error(body) = &reply.outcome {
        let error = serde_json::to_vec(body).unwrap_or_default();
        outgoing = outgoing.header(headers::NEST_ERR, error);
    }
    outgoing = outgoing.header(headers::NEST_IS_DISPOSED, headers::NEST_IS_DISPOSED_VALUE);
    // The reply is a new span in the requester's trace (or the start of one).
    let trace = inbound
        .trace_context()
        .map_or_else(TraceContext::new_root, |parent| parent.child());
    outgoing
        .header(headers::CONTENT_TYPE, headers::JSON_CONTENT_TYPE)
        .header(headers::TRACEPARENT, trace.header_value())
}

fn reject<S: Service>(
    routing: &Routing,
    inbound: &Inbound,
    target: &ReplyTarget,
    correlation_id: Option<CorrelationId>,
    code: ErrorCode,
    reason: &str,
) -> Vec<Outgoing> {
    let bounded = excerpt(reason, MAX_REASON_CHARS);
    let reason: &str = &bounded;
    tracing::warn!(reason, "rejected request; copied to the dead-letter topic");
    let mut caused = vec![inbound.dead_letter(&routing.dead_letter_topic, reason)];
    if let Some(id) = correlation_id {
        let reply: Reply<S::Response> = Reply::error(code, reason);
        caused.push(json_reply(target, inbound, Some(&id), &reply));
    }
    caused
}

/// Queues a message in the producer, waiting while its local queue is full.
async fn enqueue(producer: &ReplyProducer, outgoing: &Outgoing) -> Queued {
    loop {
        let (generation, current) = producer.current();
        match current.send_result(outgoing.record()) {
            Ok(delivery) => return (generation, Ok(delivery)),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((error, _)) => return (generation, Err(error)),
        }
    }
}

async fn delivered(queued: Result<DeliveryFuture, KafkaError>) -> Result<(), KafkaError> {
    match queued?.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((error, _))) => Err(error),
        Err(_) => Err(KafkaError::Canceled),
    }
}

/// Waits until one message, and whatever replaces it if it can never be delivered, is
/// acknowledged. Transient failures are retried with backoff.
async fn deliver(
    producer: &ReplyProducer,
    outgoing: Outgoing,
    queued: Queued,
    inbound: &Inbound,
    routing: &Routing,
    metrics: &WorkerMetrics,
) {
    let mut work = VecDeque::from([(outgoing, queued)]);
    while let Some((outgoing, queued)) = work.pop_front() {
        let replacements = deliver_one(producer, outgoing, queued, inbound, routing).await;
        if !replacements.is_empty() {
            metrics.errors.inc();
            metrics.dead_lettered.inc();
        }
        for replacement in replacements {
            let queued = enqueue(producer, &replacement).await;
            work.push_back((replacement, queued));
        }
    }
}

/// Delivers one message; returns what to send instead when it can never be delivered.
async fn deliver_one(
    producer: &ReplyProducer,
    outgoing: Outgoing,
    mut queued: Queued,
    inbound: &Inbound,
    routing: &Routing,
) -> Vec<Outgoing> {
    let mut backoff = Duration::from_millis(100);
    loop {
        let (generation, delivery) = queued;
        let error = match delivered(delivery).await {
            Ok(()) => return Vec::new(),
            Err(error) => error,
        };
        match after_failure(&error) {
            AfterFailure::GiveUp => return undeliverable(&outgoing, &error, inbound, routing),
            AfterFailure::NewProducer => producer.replace(generation),
            AfterFailure::Retry => {}
        }
        tracing::warn!(%error, topic = %outgoing.topic, ?backoff, "delivery failed; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_RETRY_BACKOFF);
        queued = enqueue(producer, &outgoing).await;
    }
}

/// A reply that can never be delivered (say, to a partition that does not exist) dead-letters its
/// request and, when the requester can be told, becomes an error reply on the default reply
/// topic, so the requester does not wait for nothing.
fn undeliverable(
    outgoing: &Outgoing,
    error: &KafkaError,
    inbound: &Inbound,
    routing: &Routing,
) -> Vec<Outgoing> {
    if outgoing.topic == routing.dead_letter_topic {
        // A request near the size limit, grown by the dead-letter headers: send it cut down.
        // The cut-down copy ends with `dlq-truncated` (an original header of that name comes
        // earlier), so this happens at most once.
        let too_large = matches!(
            error,
            KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize
            )
        );
        let already_cut = outgoing
            .headers
            .last()
            .is_some_and(|(key, _)| key == headers::DEAD_LETTER_TRUNCATED);
        if too_large && !already_cut {
            // Ours is the last `dlq-reason`: the original headers come before it.
            let reason = outgoing
                .headers
                .iter()
                .rev()
                .find(|(key, _)| key == headers::DEAD_LETTER_REASON)
                .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
                .unwrap_or_default();
            tracing::warn!(%error, "dead-letter copy too large; sending it cut down");
            return vec![inbound.dead_letter_shrunk(&routing.dead_letter_topic, &reason)];
        }
        tracing::error!(%error, "cannot write to the dead-letter topic; dropping the copy");
        return Vec::new();
    }
    let destination = match outgoing.partition {
        Some(partition) => format!("{} partition {partition}", outgoing.topic),
        None => outgoing.topic.clone(),
    };
    let reason = format!("reply to {destination} could not be delivered: {error}");
    tracing::warn!(%reason, "dead-lettering request");
    let mut instead = vec![inbound.dead_letter(&routing.dead_letter_topic, &reason)];
    let default_target = ReplyTarget {
        topic: routing.default_reply_topic.clone(),
        partition: None,
    };
    let was_default_target = outgoing.topic == default_target.topic && outgoing.partition.is_none();
    if let Some(id) = inbound.correlation_id().filter(|_| !was_default_target) {
        let reply: Reply<()> = Reply::error(ErrorCode::InvalidHeaders, reason);
        instead.push(json_reply(&default_target, inbound, Some(&id), &reply));
    }
    instead
}

/// The consumer's context: logs rebalances and implements `--reset`.
struct WorkerContext {
    /// Partitions still to be rewound to the beginning on their first assignment (`--reset`).
    reset: bool,
    already_reset: Mutex<HashSet<(String, i32)>>,
    /// Consumer lag comes from librdkafka's periodic statistics.
    metrics: WorkerMetrics,
}

impl ClientContext for WorkerContext {
    fn stats(&self, statistics: rdkafka::statistics::Statistics) {
        self.metrics.record_lag(&statistics);
    }
}

impl ConsumerContext for WorkerContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        error: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match error {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if self.reset {
                    self.rewind_new_partitions(partitions);
                }
                tracing::info!(partitions = ?partition_numbers(partitions), "assigned partitions");
                if cooperative {
                    consumer.incremental_assign(partitions)
                } else {
                    consumer.assign(partitions)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(partitions = ?partition_numbers(partitions), "partitions revoked");
                // Hand over what is acknowledged so far, so the next owner does not redo it.
                if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
                    tracing::debug!(%error, "nothing committed on revoke");
                }
                if cooperative {
                    consumer.incremental_unassign(partitions)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance failed");
                consumer.unassign()
            }
        };
        if let Err(error) = result {
            tracing::error!(%error, "cannot apply the new partition assignment");
        }
    }

    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        _offsets: &TopicPartitionList,
    ) {
        if let Err(error) = result {
            if error != KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset) {
                tracing::warn!(%error, "offset commit failed");
            }
        }
    }
}

impl WorkerContext {
    fn rewind_new_partitions(&self, partitions: &mut TopicPartitionList) {
        let mut already_reset = self
            .already_reset
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let fresh: Vec<(String, i32)> = partitions
            .elements()
            .iter()
            .map(|element| (element.topic().to_owned(), element.partition()))
            .filter(|key| !already_reset.contains(key))
            .collect();
        for (topic, partition) in fresh {
            if let Err(error) =
                partitions.set_partition_offset(&topic, partition, Offset::Beginning)
            {
                tracing::error!(%error, topic, partition, "cannot rewind partition");
            }
            tracing::info!(
                topic,
                partition,
                "--reset: reading partition from the beginning"
            );
            already_reset.insert((topic, partition));
        }
    }
}

fn partition_numbers(partitions: &TopicPartitionList) -> Vec<i32> {
    partitions
        .elements()
        .iter()
        .map(|element| element.partition())
        .collect()
}

/// Runs a worker until `shutdown` resolves, then finishes what is in flight, commits, leaves the
/// consumer group and flushes the producer. Its counts go nowhere; see [`run_with_metrics`].
pub async fn run<S: Service>(
    service: S,
    config: WorkerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WorkerError> {
    let metrics = WorkerMetrics::register(&mut Registry::default());
    run_with_metrics(service, config, metrics, shutdown).await
}

/// [`run`], counting into `metrics` (registered by the caller in the registry it exposes).
pub async fn run_with_metrics<S: Service>(
    service: S,
    config: WorkerConfig,
    metrics: WorkerMetrics,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WorkerError> {
    let topics = Topics::with_prefix(&config.topics.prefix);
    let routing = Arc::new(Routing::new(S::KIND, &topics, &config.extra_reply_topics));
    ensure_topics(&config.kafka, &config.topics, &routing.all_topics()).await?;

    let servers = config.kafka.bootstrap_servers().to_owned();
    let client_error = |role| {
        let servers = servers.clone();
        move |source| WorkerError::Client {
            role,
            servers,
            source,
        }
    };
    let mut consumer_config = config.kafka.consumer_config();
    set_default(
        &mut consumer_config,
        "group.id",
        S::KIND.base_request_topic(),
    );
    set_default(&mut consumer_config, "auto.offset.reset", "earliest");
    set_default(&mut consumer_config, "enable.auto.commit", "true");
    set_default(&mut consumer_config, "auto.commit.interval.ms", "1000");
    // A killed replica's partitions move on after this, not after librdkafka's 45 s default:
    // the brokers' smallest allowed session (group.min.session.timeout.ms), with heartbeats a
    // third of it as Kafka advises.
    set_default(&mut consumer_config, "session.timeout.ms", "6000");
    set_default(&mut consumer_config, "heartbeat.interval.ms", "2000");
    // Not overridable: offsets are stored by hand once the reply is acknowledged.
    consumer_config.set("enable.auto.offset.store", "false");
    let context = WorkerContext {
        reset: config.reset,
        already_reset: Mutex::default(),
        metrics: metrics.clone(),
    };
    // The watchdog's probe reads the group's committed offsets but never joins it.
    let mut probe_config = consumer_config.clone();
    probe_config.set("enable.auto.commit", "false");
    let probe = probe_config.create().map_err(client_error("consumer"))?;
    let mut watch = ConsumerWatch::new(probe, metrics.consumer_recoveries.clone());
    let consumer: StreamConsumer<WorkerContext> = consumer_config
        .create_with_context(context)
        .map_err(client_error("consumer"))?;
    consumer
        .subscribe(&[&routing.request_topic])
        .map_err(|source| WorkerError::Subscribe {
            topic: routing.request_topic.clone(),
            source,
        })?;

    let mut producer_config = config.kafka.producer_config();
    set_default(&mut producer_config, "enable.idempotence", "true");
    // A reply leaves at once: with any linger librdkafka waits for its next wake-up (about
    // 1.2 ms per hop, measured), which quadruples a low-load round trip; batching still happens
    // under load while earlier produce requests are in flight (scripts/bench, tuning profiles).
    set_default(&mut producer_config, "linger.ms", "0");
    // How long a reply may wait for its acknowledgement before the producer counts as stuck
    // and is replaced (see `recovery`); librdkafka's default is five minutes.
    set_default(&mut producer_config, "message.timeout.ms", REPLY_TIMEOUT_MS);
    let producer = ReplyProducer::new(producer_config, metrics.producer_replacements.clone())
        .map(Arc::new)
        .map_err(client_error("producer"))?;
    tracing::info!(
        request_topic = %routing.request_topic,
        reply_topic = %routing.default_reply_topic,
        servers = %servers,
        "worker started"
    );

    let mut in_flight = FuturesOrdered::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let has_room = in_flight.len() < MAX_IN_FLIGHT;
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(done) = in_flight.next(), if !in_flight.is_empty() => store_offset(&consumer, &done),
            // A worker held back by its own in-flight bound is not stalled: not judged then.
            tick = watch.tick(has_room) => match tick {
                Tick::Due => watch.start_lookup(&consumer),
                Tick::LookedUp(Some(lookup)) => {
                    // A skipped request goes through the pipeline like any other: its offset
                    // is stored once its dead letter is acknowledged.
                    for skipped in watch.judge(lookup, &consumer) {
                        let copy = undecodable_dead_letter(&routing.dead_letter_topic, &skipped);
                        metrics.errors.inc();
                        metrics.dead_lettered.inc();
                        let span = info_span!("skipped", partition = skipped.key.1, offset = skipped.next);
                        let inbound = Inbound {
                            topic: skipped.key.0,
                            partition: skipped.key.1,
                            offset: skipped.next,
                            key: None,
                            payload: None,
                            headers: HeaderList::default(),
                        };
                        in_flight.push_back(dispatch(&producer, &routing, &metrics, inbound, (vec![copy], span)).await);
                    }
                }
                Tick::LookedUp(None) => {}
            },
            received = consumer.recv(), if has_room => match received {
                Err(error) => {
                    watch.error(&error);
                    tracing::warn!(%error, "consumer error");
                }
                Ok(message) => {
                    watch.read(&(message.topic().to_owned(), message.partition()), message.offset());
                    let inbound = Inbound::from_message(&message);
                    drop(message);
                    let caused = planned(&service, &routing, &metrics, &inbound);
                    in_flight.push_back(dispatch(&producer, &routing, &metrics, inbound, caused).await);
                }
            },
        }
    }

    tracing::info!(
        in_flight = in_flight.len(),
        "shutting down: finishing in-flight requests"
    );
    let drain = async {
        while let Some(done) = in_flight.next().await {
            store_offset(&consumer, &done);
        }
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
        tracing::warn!("gave up waiting for in-flight replies; those requests will be redelivered");
    }
    if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
        tracing::debug!(%error, "final commit had nothing to do");
    }
    consumer.unsubscribe();
    if let Err(error) = producer.flush(Duration::from_secs(10)) {
        tracing::warn!(%error, "producer flush incomplete");
    }
    tracing::info!("worker stopped");
    Ok(())
}

/// Plans everything one request causes, in the request's span (which carries its correlation
/// ID), and counts it.
fn planned<S: Service>(
    service: &S,
    routing: &Routing,
    metrics: &WorkerMetrics,
    inbound: &Inbound,
) -> (Vec<Outgoing>, tracing::Span) {
    // Bounded: every log line of the request carries it, and a hostile one can be huge.
    let correlation_id = inbound.correlation_id().map_or_else(
        || "-".to_owned(),
        |id| loggable(&id.key(), MAX_QUOTED_CHARS),
    );
    let trace_id = inbound
        .trace_context()
        .map_or_else(|| "-".to_owned(), |trace| trace.trace_id_hex());
    let span = info_span!(
        "request",
        correlation_id = %correlation_id,
        trace_id = %trace_id,
        partition = inbound.partition,
        offset = inbound.offset
    );
    let caused = span.in_scope(|| plan(service, routing, inbound));
    let dead_letters = caused
        .iter()
        .filter(|outgoing| outgoing.topic == routing.dead_letter_topic)
        .count();
    if dead_letters == 0 {
        metrics.handled.inc();
    } else {
        metrics.errors.inc();
        metrics.dead_lettered.inc_by(dead_letters as u64);
    }
    (caused, span)
}

/// Queues everything a request caused; the returned future resolves with the request once all
/// of it is acknowledged, when its offset may be stored.
async fn dispatch(
    producer: &Arc<ReplyProducer>,
    routing: &Arc<Routing>,
    metrics: &WorkerMetrics,
    inbound: Inbound,
    (caused, span): (Vec<Outgoing>, tracing::Span),
) -> impl Future<Output = Inbound> + use<> {
    let received = std::time::Instant::now();
    let mut queued = Vec::with_capacity(caused.len());
    for outgoing in caused {
        let delivery = enqueue(producer, &outgoing).await;
        queued.push((outgoing, delivery));
    }
    let producer = Arc::clone(producer);
    let routing = Arc::clone(routing);
    let metrics = metrics.clone();
    async move {
        for (outgoing, delivery) in queued {
            deliver(&producer, outgoing, delivery, &inbound, &routing, &metrics).await;
        }
        metrics
            .handling_seconds
            .observe(received.elapsed().as_secs_f64());
        inbound
    }
    .instrument(span)
}

fn store_offset(consumer: &StreamConsumer<WorkerContext>, done: &Inbound) {
    if let Err(error) = consumer.store_offset(&done.topic, done.partition, done.offset) {
        // The partition was revoked meanwhile; its new owner will redo this request.
        tracing::debug!(%error, partition = done.partition, offset = done.offset, "offset not stored");
    }
}

#[cfg(test)]
mod tests {
    //! [`plan`] is pure, so every routing and rejection rule is checked here without a broker.

    use super::*;
    use contract::{InvoiceRequest, LineItem, MAX_REQUEST_BYTES, Outcome, SCHEMA_VERSION, legacy};
    use rdkafka::Timestamp;
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
    use serde::Deserialize;

    /// What the test service answers: who asked, and where the request sat in the log.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    struct Echo {
        customer: String,
        partition: i32,
        offset: i64,
    }

    /// A stand-in for a real worker: reads invoice requests (so the contract's validation
    /// applies) and echoes what it was given.
    struct EchoService;

    impl Service for EchoService {
        const KIND: RequestKind = RequestKind::Invoice;
        type Request = InvoiceRequest;
        type Response = Echo;

        fn handle(&self, request: InvoiceRequest, origin: Origin) -> Echo {
            Echo {
                customer: request.customer,
                partition: origin.partition,
                offset: origin.offset,
            }
        }

        fn handle_text(&self, text: &str, origin: Origin) -> String {
            format!("{text} at {}/{}", origin.partition, origin.offset)
        }
    }

    const EXTRA_REPLY_TOPIC: &str = "t.custom-replies";

    fn topics() -> Topics {
        Topics::with_prefix("t.")
    }

    fn routing() -> Routing {
        Routing::new(
            RequestKind::Invoice,
            &topics(),
            &[EXTRA_REPLY_TOPIC.to_owned()],
        )
    }

    fn valid_payload(customer: &str) -> Vec<u8> {
        serde_json::to_vec(&InvoiceRequest {
            schema_version: SCHEMA_VERSION,
            customer: customer.into(),
            lines: vec![LineItem {
                description: "Widget".into(),
                quantity: 2,
                unit_price_cents: 150,
            }],
        })
        .unwrap()
    }

    /// A request consumed from partition 1, offset 42 of the request topic, built as rdkafka
    /// would hand it over so [`Inbound::from_message`] is exercised too.
    fn inbound(payload: Option<&[u8]>, headers: &[(&str, &[u8])]) -> Inbound {
        let headers = headers
            .iter()
            .fold(OwnedHeaders::new(), |all, (key, value)| {
                all.insert(Header {
                    key,
                    value: Some(*value),
                })
            });
        let message = OwnedMessage::new(
            payload.map(<[u8]>::to_vec),
            Some(b"request-key".to_vec()),
            topics().request(RequestKind::Invoice),
            Timestamp::NotAvailable,
            1,
            42,
            Some(headers),
        );
        Inbound::from_message(&message)
    }

    fn header<'a>(outgoing: &'a Outgoing, name: &str) -> Option<&'a [u8]> {
        outgoing
            .headers
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_slice())
    }

    fn decode(outgoing: &Outgoing) -> Reply<Echo> {
        serde_json::from_slice(&outgoing.payload).unwrap_or_else(|error| {
            panic!(
                "reply is not JSON ({error}): {}",
                String::from_utf8_lossy(&outgoing.payload)
            )
        })
    }

    fn error_code(outgoing: &Outgoing) -> ErrorCode {
        match decode(outgoing).outcome {
            Outcome::Error(body) => body.code,
            Outcome::Ok(echo) => panic!("expected an error reply, got {echo:?}"),
        }
    }

    /// Checks that `copy` is `request` unchanged on the dead-letter topic, plus the reason
    /// (which must mention `reason_part`) and the source headers; returns the reason.
    fn assert_dead_letter(copy: &Outgoing, request: &Inbound, reason_part: &str) -> String {
        assert_eq!(copy.topic, "t.generate-invoice.dlq");
        assert_eq!(copy.partition, None);
        assert_eq!(copy.key, request.key);
        assert_eq!(copy.payload, request.payload.clone().unwrap_or_default());
        let original: Vec<(String, Vec<u8>)> = request
            .headers
            .iter()
            .map(|(key, value)| (key.to_owned(), value.unwrap_or_default().to_vec()))
            .collect();
        let (copied, added) = copy.headers.split_at(original.len());
        assert_eq!(copied, original.as_slice(), "original headers preserved");
        assert_eq!(added.len(), 2, "{added:?}");
        assert_eq!(
            header(copy, headers::DEAD_LETTER_SOURCE),
            Some("t.generate-invoice/1/42".as_bytes())
        );
        let reason =
            String::from_utf8(header(copy, headers::DEAD_LETTER_REASON).unwrap().to_vec()).unwrap();
        assert!(
            reason.contains(reason_part),
            "reason {reason:?} should mention {reason_part:?}"
        );
        reason
    }

    /// A valid JSON request gets exactly one reply on the default reply topic, with the
    /// correlation ID copied byte for byte (Spring's 16-byte binary UUID and a text ID alike),
    /// the request's key, and a JSON content type.
    #[test]
    fn valid_json_gets_one_correlated_reply_on_the_default_topic() {
        let binary_uuid = *uuid::Uuid::new_v4().as_bytes();
        for id in [&binary_uuid[..], b"nest-42"] {
            let request = inbound(
                Some(&valid_payload("ACME")),
                &[(headers::CORRELATION_ID, id)],
            );
            let caused = plan(&EchoService, &routing(), &request);
            assert_eq!(caused.len(), 1, "{caused:?}");
            let reply = &caused[0];
            assert_eq!(reply.topic, "t.invoice-generated");
            assert_eq!(reply.partition, None);
            assert_eq!(reply.key.as_deref(), Some(&b"request-key"[..]));
            assert_eq!(header(reply, headers::CORRELATION_ID), Some(id));
            assert_eq!(
                header(reply, headers::CONTENT_TYPE),
                Some(headers::JSON_CONTENT_TYPE.as_bytes())
            );
            assert_eq!(
                decode(reply),
                Reply::ok(Echo {
                    customer: "ACME".into(),
                    partition: 1,
                    offset: 42
                })
            );
        }
    }

    /// `kafka_replyTopic` may name the NestJS `<request-topic>.reply`, a configured extra topic
    /// or the default topic, and the reply then goes there.
    #[test]
    fn allowed_reply_topics_are_honoured() {
        for topic in [
            "t.generate-invoice.reply",
            EXTRA_REPLY_TOPIC,
            "t.invoice-generated",
        ] {
            let request = inbound(
                Some(&valid_payload("ACME")),
                &[
                    (headers::CORRELATION_ID, b"id-1"),
                    (headers::REPLY_TOPIC, topic.as_bytes()),
                ],
            );
            let caused = plan(&EchoService, &routing(), &request);
            assert_eq!(caused.len(), 1, "{caused:?}");
            assert_eq!(caused[0].topic, topic);
            assert!(matches!(decode(&caused[0]).outcome, Outcome::Ok(_)));
        }
    }

    /// A reply topic outside the allowed set is refused: the request is dead-lettered and the
    /// error reply goes to the default reply topic, never to the named one.
    #[test]
    fn disallowed_reply_topic_is_dead_lettered_with_an_error_reply() {
        for (topic, reason) in [
            (&b"t.score-calculated"[..], "is not allowed"),
            (b"__consumer_offsets", "is not allowed"),
            (b"\xff\xfe", "is not UTF-8"),
        ] {
            let request = inbound(
                Some(&valid_payload("ACME")),
                &[
                    (headers::CORRELATION_ID, b"id-2"),
                    (headers::REPLY_TOPIC, topic),
                ],
            );
            let caused = plan(&EchoService, &routing(), &request);
            assert_eq!(caused.len(), 2, "{caused:?}");
            assert_dead_letter(&caused[0], &request, reason);
            let reply = &caused[1];
            assert_eq!(reply.topic, "t.invoice-generated");
            assert_eq!(header(reply, headers::CORRELATION_ID), Some(&b"id-2"[..]));
            assert_eq!(error_code(reply), ErrorCode::InvalidHeaders);
        }
    }

    /// `kafka_replyPartition` is read as decimal text (NestJS) and as a 4-byte big-endian int
    /// (Spring), and the reply is produced to that partition.
    #[test]
    fn reply_partition_is_read_in_both_encodings() {
        for encoded in [&b"2"[..], &2i32.to_be_bytes()] {
            let request = inbound(
                Some(&valid_payload("ACME")),
                &[
                    (headers::CORRELATION_ID, b"id-3"),
                    (headers::REPLY_PARTITION, encoded),
                ],
            );
            let caused = plan(&EchoService, &routing(), &request);
            assert_eq!(caused.len(), 1, "{caused:?}");
            assert_eq!(caused[0].partition, Some(2));
        }
    }

    /// An unreadable reply partition is refused like a bad reply topic: dead letter, and an
    /// error reply on the default topic without a partition.
    #[test]
    fn invalid_reply_partition_is_dead_lettered_with_an_error_reply() {
        for encoded in [&b"-1"[..], b"two", &(-5i32).to_be_bytes(), b"\x00\x01", b""] {
            let request = inbound(
                Some(&valid_payload("ACME")),
                &[
                    (headers::CORRELATION_ID, b"id-4"),
                    (headers::REPLY_PARTITION, encoded),
                ],
            );
            let caused = plan(&EchoService, &routing(), &request);
            assert_eq!(caused.len(), 2, "{encoded:?}: {caused:?}");
            assert_dead_letter(&caused[0], &request, headers::REPLY_PARTITION);
            assert_eq!(caused[1].topic, "t.invoice-generated");
            assert_eq!(caused[1].partition, None);
            assert_eq!(error_code(&caused[1]), ErrorCode::InvalidHeaders);
        }
    }

    /// One bad payload: its bytes, its content type, the error code and a word of the reason.
    struct BadPayload {
        name: &'static str,
        payload: Option<Vec<u8>>,
        content_type: Option<&'static str>,
        code: ErrorCode,
        reason: &'static str,
    }

    fn bad_payloads() -> Vec<BadPayload> {
        let json = Some(headers::JSON_CONTENT_TYPE);
        let bad = |name, payload: &[u8], content_type, code, reason| BadPayload {
            name,
            payload: Some(payload.to_vec()),
            content_type,
            code,
            reason,
        };
        let mut oversized = valid_payload("ACME");
        oversized.truncate(oversized.len() - 1);
        oversized.extend(std::iter::repeat_n(b' ', MAX_REQUEST_BYTES));
        oversized.push(b'}');
        vec![
            bad(
                "not UTF-8",
                b"{\"customer\":\"\xff\"}",
                json,
                ErrorCode::MalformedRequest,
                "UTF-8",
            ),
            bad(
                "malformed JSON",
                b"{\"customer\":",
                json,
                ErrorCode::MalformedRequest,
                "not valid JSON",
            ),
            bad(
                "JSON content type on legacy text",
                legacy::INVOICE_REQUEST_TEXT.as_bytes(),
                json,
                ErrorCode::MalformedRequest,
                "not valid JSON",
            ),
            bad(
                "missing field",
                br#"{"customer":"ACME"}"#,
                json,
                ErrorCode::InvalidRequest,
                "lines",
            ),
            bad(
                "wrong type",
                br#"{"customer":"ACME","lines":[{"description":"d","quantity":"two","unit_price_cents":1}]}"#,
                None,
                ErrorCode::InvalidRequest,
                "lines[0].quantity",
            ),
            bad(
                "absurd quantity",
                br#"{"customer":"ACME","lines":[{"description":"d","quantity":2000000,"unit_price_cents":1}]}"#,
                json,
                ErrorCode::InvalidRequest,
                "lines[0].quantity",
            ),
            bad(
                "unsupported schema version",
                br#"{"schema_version":9,"customer":"ACME","lines":[{"description":"d","quantity":1,"unit_price_cents":1}]}"#,
                json,
                ErrorCode::UnsupportedSchemaVersion,
                "schema_version",
            ),
            bad(
                "oversized",
                &oversized,
                json,
                ErrorCode::MalformedRequest,
                "more than the 65536",
            ),
            bad("empty", b"", None, ErrorCode::MalformedRequest, "no payload"),
            BadPayload {
                name: "tombstone",
                payload: None,
                content_type: None,
                code: ErrorCode::MalformedRequest,
                reason: "no payload",
            },
            bad(
                "unsupported content type",
                br#"<invoice customer="ACME"/>"#,
                Some("application/xml"),
                ErrorCode::MalformedRequest,
                "application/xml",
            ),
        ]
    }

    /// Every kind of bad payload is copied to `<request-topic>.dlq` unchanged (key, payload,
    /// headers) with `dlq-reason` and `dlq-source`, and answered with a JSON error reply of the
    /// right code, correlated, on the requested topic.
    #[test]
    fn bad_payloads_with_a_correlation_id_get_a_dead_letter_and_an_error_reply() {
        for case in bad_payloads() {
            let mut request_headers: Vec<(&str, &[u8])> = vec![
                (headers::CORRELATION_ID, b"id-5"),
                (headers::REPLY_TOPIC, b"t.generate-invoice.reply"),
            ];
            if let Some(content_type) = case.content_type {
                request_headers.push((headers::CONTENT_TYPE, content_type.as_bytes()));
            }
            let request = inbound(case.payload.as_deref(), &request_headers);
            let caused = plan(&EchoService, &routing(), &request);
            assert_eq!(caused.len(), 2, "{}: {caused:?}", case.name);
            let reason = assert_dead_letter(&caused[0], &request, case.reason);
            let reply = &caused[1];
            assert_eq!(reply.topic, "t.generate-invoice.reply", "{}", case.name);
            assert_eq!(header(reply, headers::CORRELATION_ID), Some(&b"id-5"[..]));
            assert_eq!(
                header(reply, headers::CONTENT_TYPE),
                Some(headers::JSON_CONTENT_TYPE.as_bytes())
            );
            let Outcome::Error(body) = decode(reply).outcome else {
                panic!("{}: expected an error reply", case.name);
            };
            assert_eq!(body.code, case.code, "{}", case.name);
            assert_eq!(body.message, reason, "{}", case.name);
        }
    }

    /// Without a correlation ID nobody can match an error reply, so a bad payload only goes to
    /// the dead-letter topic.
    #[test]
    fn bad_payloads_without_a_correlation_id_are_only_dead_lettered() {
        for case in bad_payloads() {
            let content_type: Vec<(&str, &[u8])> = case
                .content_type
                .map(|value| (headers::CONTENT_TYPE, value.as_bytes()))
                .into_iter()
                .collect();
            let request = inbound(case.payload.as_deref(), &content_type);
            let caused = plan(&EchoService, &routing(), &request);
            assert_eq!(caused.len(), 1, "{}: {caused:?}", case.name);
            assert_dead_letter(&caused[0], &request, case.reason);
        }
    }

    /// A request of the original system (plain text, no headers) gets a plain-text reply with
    /// no headers and no key, as the original Python workers sent.
    #[test]
    fn header_less_plain_text_gets_a_bare_plain_text_reply() {
        let request = inbound(Some(legacy::INVOICE_REQUEST_TEXT.as_bytes()), &[]);
        let caused = plan(&EchoService, &routing(), &request);
        assert_eq!(caused.len(), 1, "{caused:?}");
        let reply = &caused[0];
        assert_eq!(reply.topic, "t.invoice-generated");
        assert_eq!(reply.payload, b"Gerar Nota fiscal at 1/42");
        assert!(reply.headers.is_empty(), "{:?}", reply.headers);
        assert_eq!(reply.key, None);
        assert_eq!(reply.partition, None);
    }

    /// What a NestJS `ClientKafka` needs to finish a call: every reply carries
    /// `kafka_nest-is-disposed` (it completes the call), and an error reply also carries
    /// `kafka_nest-err` holding the same error body as its payload (it fails the call). The
    /// dead-letter copy gets neither.
    #[test]
    fn replies_carry_what_a_nestjs_client_needs() {
        let disposed = Some(headers::NEST_IS_DISPOSED_VALUE);
        let good = inbound(
            Some(&valid_payload("ACME")),
            &[
                (headers::CORRELATION_ID, b"nest-1"),
                (headers::REPLY_TOPIC, b"t.generate-invoice.reply"),
                (headers::REPLY_PARTITION, b"0"),
            ],
        );
        let caused = plan(&EchoService, &routing(), &good);
        assert_eq!(caused.len(), 1, "{caused:?}");
        assert_eq!(header(&caused[0], headers::NEST_IS_DISPOSED), disposed);
        assert_eq!(header(&caused[0], headers::NEST_ERR), None);

        let bad = inbound(
            Some(br#"{"customer":"ACME"}"#),
            &[(headers::CORRELATION_ID, b"nest-2")],
        );
        let caused = plan(&EchoService, &routing(), &bad);
        assert_eq!(caused.len(), 2, "{caused:?}");
        assert_eq!(header(&caused[0], headers::NEST_IS_DISPOSED), None);
        assert_eq!(header(&caused[0], headers::NEST_ERR), None);
        let Outcome::Error(body) = decode(&caused[1]).outcome else {
            panic!("expected an error reply: {:?}", caused[1]);
        };
        let nest_err = header(&caused[1], headers::NEST_ERR).expect("kafka_nest-err");
        assert_eq!(headers::decode_nest_error(nest_err), Ok(body));
        assert_eq!(header(&caused[1], headers::NEST_IS_DISPOSED), disposed);

        let text = inbound(
            Some(legacy::SCORE_REQUEST_TEXT.as_bytes()),
            &[(headers::CORRELATION_ID, b"nest-3")],
        );
        let caused = plan(&EchoService, &routing(), &text);
        assert_eq!(caused.len(), 1, "{caused:?}");
        assert_eq!(header(&caused[0], headers::NEST_IS_DISPOSED), disposed);
    }

    /// The error reply that replaces an undeliverable one fails a NestJS call too.
    #[test]
    fn undeliverable_replies_become_nest_errors() {
        let request = inbound(
            Some(&valid_payload("ACME")),
            &[
                (headers::CORRELATION_ID, b"nest-4"),
                (headers::REPLY_TOPIC, b"t.generate-invoice.reply"),
                (headers::REPLY_PARTITION, b"7"),
            ],
        );
        let caused = plan(&EchoService, &routing(), &request);
        assert_eq!(caused.len(), 1, "{caused:?}");
        let error = KafkaError::MessageProduction(RDKafkaErrorCode::UnknownPartition);
        let instead = undeliverable(&caused[0], &error, &request, &routing());
        assert_eq!(instead.len(), 2, "{instead:?}");
        let reply = &instead[1];
        assert_eq!(reply.topic, "t.invoice-generated");
        let nest_err = header(reply, headers::NEST_ERR).expect("kafka_nest-err");
        let body = headers::decode_nest_error(nest_err).expect("our error body");
        assert_eq!(body.code, ErrorCode::InvalidHeaders);
        assert!(body.message.contains("partition 7"), "{}", body.message);
        assert_eq!(
            header(reply, headers::NEST_IS_DISPOSED),
            Some(headers::NEST_IS_DISPOSED_VALUE)
        );
    }

    /// Plain text from a client that does send a correlation ID (and a reply topic) gets a
    /// plain-text reply that keeps the ID, so the client can match it.
    #[test]
    fn correlated_plain_text_keeps_the_correlation_id() {
        let request = inbound(
            Some(b"Gerar Nota fiscal"),
            &[
                (headers::CORRELATION_ID, b"nest-7"),
                (headers::REPLY_TOPIC, b"t.generate-invoice.reply"),
                (headers::REPLY_PARTITION, b"1"),
            ],
        );
        let caused = plan(&EchoService, &routing(), &request);
        assert_eq!(caused.len(), 1, "{caused:?}");
        let reply = &caused[0];
        assert_eq!(reply.topic, "t.generate-invoice.reply");
        assert_eq!(reply.partition, Some(1));
        assert_eq!(reply.payload, b"Gerar Nota fiscal at 1/42");
        assert_eq!(header(reply, headers::CORRELATION_ID), Some(&b"nest-7"[..]));
        assert_eq!(
            header(reply, headers::CONTENT_TYPE),
            Some(headers::TEXT_CONTENT_TYPE.as_bytes())
        );
    }

    /// When `kafka_correlationId` is repeated the last one wins (Spring's `lastHeader`), and the
    /// dead-letter copy still carries every original header.
    #[test]
    fn repeated_correlation_headers_answer_with_the_last() {
        let request = inbound(
            Some(b"{\"customer\":"),
            &[
                (headers::CORRELATION_ID, b"first"),
                (headers::CORRELATION_ID, b"second"),
            ],
        );
        let caused = plan(&EchoService, &routing(), &request);
        assert_eq!(caused.len(), 2, "{caused:?}");
        assert_dead_letter(&caused[0], &request, "JSON");
        assert_eq!(
            header(&caused[1], headers::CORRELATION_ID),
            Some(&b"second"[..])
        );
    }

    /// Reasons quote what the request carried, cut short: a half-MiB header must not turn into
    /// a half-MiB `dlq-reason` (and error reply), which could make the copy too large to write.
    #[test]
    fn reasons_quote_huge_header_values_only_in_part() {
        let huge_topic = "r".repeat(512 * 1024);
        let huge_partition = vec![b'x'; 100_000];
        let huge_type = format!("application/{}", "z".repeat(512 * 1024));
        let payload = valid_payload("ACME");
        for (name, value, reason) in [
            (
                headers::REPLY_TOPIC,
                huge_topic.as_bytes(),
                "is not allowed",
            ),
            (
                headers::REPLY_PARTITION,
                &huge_partition,
                "is not a partition number",
            ),
            (
                headers::CONTENT_TYPE,
                huge_type.as_bytes(),
                "unsupported content-type",
            ),
        ] {
            let request = inbound(
                Some(&payload),
                &[(headers::CORRELATION_ID, b"id-6"), (name, value)],
            );
            let caused = plan(&EchoService, &routing(), &request);
            assert_eq!(caused.len(), 2, "{name}");
            let reason = assert_dead_letter(&caused[0], &request, reason);
            assert!(reason.len() < 400, "{name}: {} bytes", reason.len());
            assert!(
                caused[1].payload.len() < 1000,
                "{name}: error reply too large"
            );
        }
    }

    /// A dead-letter copy too large for its topic is sent cut down (once), marked as such, with
    /// its reason and source; any other failure to write a dead letter drops it as before.
    #[test]
    fn a_dead_letter_too_large_for_its_topic_is_sent_cut_down() {
        let mut payload = vec![b'p'; 1_040_000];
        payload[0] = b'{';
        let many: Vec<(String, Vec<u8>)> = (0..100)
            .map(|index| (format!("h{index}"), vec![b'v'; 5000]))
            .collect();
        let mut headers_in: Vec<(&str, &[u8])> = many
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_slice()))
            .collect();
        headers_in.push((headers::DEAD_LETTER_TRUNCATED, b"forged"));
        let request = inbound(Some(&payload), &headers_in);
        let caused = plan(&EchoService, &routing(), &request);
        assert_eq!(caused.len(), 1, "uncorrelated: only the dead letter");
        let too_large = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        let instead = undeliverable(&caused[0], &too_large, &request, &routing());
        assert_eq!(instead.len(), 1, "{instead:?}");
        let cut = &instead[0];
        assert_eq!(cut.topic, "t.generate-invoice.dlq");
        assert_eq!(cut.payload, payload[..MAX_REQUEST_BYTES]);
        assert_eq!(cut.key, request.key);
        assert_eq!(
            header(cut, headers::DEAD_LETTER_SOURCE),
            Some("t.generate-invoice/1/42".as_bytes())
        );
        assert_eq!(
            header(cut, headers::DEAD_LETTER_REASON),
            header(&caused[0], headers::DEAD_LETTER_REASON)
        );
        let note = String::from_utf8_lossy(header(cut, headers::DEAD_LETTER_TRUNCATED).unwrap());
        assert!(note.contains("1040000 payload bytes"), "{note}");
        let size: usize = cut.payload.len()
            + cut
                .headers
                .iter()
                .map(|(key, value)| key.len() + value.len())
                .sum::<usize>();
        assert!(size < 200 * 1024, "cut-down copy of {size} bytes");
        // Never cut twice, and other failures still drop the copy.
        assert!(undeliverable(cut, &too_large, &request, &routing()).is_empty());
        let unknown = KafkaError::MessageProduction(RDKafkaErrorCode::UnknownTopic);
        assert!(undeliverable(&caused[0], &unknown, &request, &routing()).is_empty());
    }
}
