//! The requesting side: send correlated requests and receive every reply.
//!
//! [`Requester`] produces requests; [`ReplyListener`] reads the reply topics. The listener does not
//! join a consumer group: it is assigned every partition of the reply topics directly, starting at
//! the offsets it looked up before returning, so several dashboard instances each see every reply
//! (and keep the ones for their own requests), and no reply that arrives after start-up is missed.
//! [`Client`] combines the two into a `call` that awaits the matching reply, for programs that
//! want a plain function call (the benchmarks, the tests).

use crate::admin::{AdminError, ensure_request_and_reply_topics};
use crate::codec::{ReplyBody, decode_reply};
use crate::config::{KafkaSettings, TopicSettings};
use crate::headers::{self, CorrelationId, TraceContext};
use crate::history::partition_watermarks;
use crate::kafka::{HeaderList, Outgoing, set_default};
use crate::watchdog::{
    CHECK_INTERVAL, DEFAULT_STALL_AFTER, PartitionKey, Remedy, Seen, Stalls, is_undecodable, remedy,
};
use contract::legacy::{LegacyReply, parse_reply_text};
use contract::{Invoice, Outcome, RequestKind, Score, Topics};
use prometheus_client::metrics::counter::Counter;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("cannot create Kafka client: {0}")]
    Client(#[source] KafkaError),
    #[error("cannot look up the reply topics: {0}")]
    Lookup(#[source] KafkaError),
    #[error("request not accepted by the broker: {0}")]
    Send(#[source] KafkaError),
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("the reply listener stopped")]
    ListenerStopped,
}

/// Where a produced request landed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentRequest {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Produces correlated requests to the request topics.
#[derive(Clone)]
pub struct Requester {
    producer: FutureProducer,
    topics: Topics,
}

impl std::fmt::Debug for Requester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Requester")
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl Requester {
    /// `send_timeout` bounds how long a request may wait for the broker's acknowledgement, so an
    /// outage shows up as an error instead of a hang.
    pub fn new(
        kafka: &KafkaSettings,
        topics: Topics,
        send_timeout: Duration,
    ) -> Result<Self, RequestError> {
        let mut config = kafka.producer_config();
        set_default(&mut config, "enable.idempotence", "true");
        // As for the worker's replies: a request leaves at once (see responder.rs).
        set_default(&mut config, "linger.ms", "0");
        set_default(
            &mut config,
            "message.timeout.ms",
            &send_timeout.as_millis().to_string(),
        );
        let producer = config.create().map_err(RequestError::Client)?;
        Ok(Requester { producer, topics })
    }

    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Produces a JSON request with its correlation ID and reply topic, and waits for the broker
    /// to acknowledge it.
    pub async fn send<T: Serialize>(
        &self,
        kind: RequestKind,
        correlation_id: &CorrelationId,
        request: &T,
    ) -> Result<SentRequest, RequestError> {
        let message =
            self.request_message(kind, correlation_id, request, &TraceContext::new_root());
        self.send_outgoing(&message).await
    }

    /// The message [`Requester::send`] produces: JSON payload, correlation ID, reply topic,
    /// content type and the W3C trace context, for callers that record what they sent.
    pub fn request_message<T: Serialize>(
        &self,
        kind: RequestKind,
        correlation_id: &CorrelationId,
        request: &T,
        trace: &TraceContext,
    ) -> Outgoing {
        // Serializing our own contract types cannot fail: they are plain structs with string keys.
        let payload = serde_json::to_vec(request).unwrap_or_default();
        Outgoing::new(self.topics.request(kind), payload)
            .header(headers::CORRELATION_ID, correlation_id.as_bytes())
            .header(headers::REPLY_TOPIC, self.topics.reply(kind))
            .header(headers::CONTENT_TYPE, headers::JSON_CONTENT_TYPE)
            .header(headers::TRACEPARENT, trace.header_value())
    }

    /// Produces an arbitrary message (plain-text requests, tests) and waits for its acknowledgement.
    pub async fn send_outgoing(&self, outgoing: &Outgoing) -> Result<SentRequest, RequestError> {
        let delivery = self
            .producer
            .send(outgoing.record(), Duration::ZERO)
            .await
            .map_err(|(error, _)| RequestError::Send(error))?;
        Ok(SentRequest {
            topic: outgoing.topic.clone(),
            partition: delivery.partition,
            offset: delivery.offset,
        })
    }
}

/// A reply payload, decoded as far as it can be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyContent {
    Invoice(Outcome<Invoice>),
    Score(Outcome<Score>),
    /// Plain text, with the number read out of it when it is one of the original forms.
    Text {
        text: String,
        legacy: Option<LegacyReply>,
    },
    /// Nothing we can read; kept so it is shown, not dropped.
    Undecodable(String),
}

/// One reply as read from a reply topic, with its Kafka metadata.
#[derive(Clone, Debug)]
pub struct IncomingReply {
    pub kind: RequestKind,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub correlation_id: Option<CorrelationId>,
    pub headers: HeaderList,
    pub content: ReplyContent,
}

impl IncomingReply {
    /// Decodes a message of the reply topic of `kind`; also used on messages read back later
    /// (see [`crate::history::RecordReader`]), so they are shown exactly as when they arrived.
    pub fn decode(kind: RequestKind, message: &impl Message) -> Self {
        let headers = HeaderList::from_message(message);
        let content_type = headers.last(headers::CONTENT_TYPE);
        let payload = message.payload();
        let content = match kind {
            RequestKind::Invoice => decode_reply::<Invoice>(payload, content_type)
                .map(|body| content_from(body, ReplyContent::Invoice)),
            RequestKind::Score => decode_reply::<Score>(payload, content_type)
                .map(|body| content_from(body, ReplyContent::Score)),
        }
        .unwrap_or_else(|error| ReplyContent::Undecodable(error.to_string()));
        // A NestJS responder's error reply has no payload, only `kafka_nest-err`; ours carry
        // both, and then the payload's error (the same body) stands.
        let content = match (headers.last(headers::NEST_ERR), content) {
            (
                Some(_),
                content @ (ReplyContent::Invoice(Outcome::Error(_))
                | ReplyContent::Score(Outcome::Error(_))),
            ) => content,
            (Some(error), _) => match (headers::decode_nest_error(error), kind) {
                (Ok(body), RequestKind::Invoice) => ReplyContent::Invoice(Outcome::Error(body)),
                (Ok(body), RequestKind::Score) => ReplyContent::Score(Outcome::Error(body)),
                (Err(message), _) => {
                    ReplyContent::Undecodable(format!("{}: {message}", headers::NEST_ERR))
                }
            },
            (None, content) => content,
        };
        IncomingReply {
            kind,
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            correlation_id: headers
                .last(headers::CORRELATION_ID)
                .map(CorrelationId::from_bytes),
            headers,
            content,
        }
    }
}

fn content_from<T>(body: ReplyBody<T>, wrap: fn(Outcome<T>) -> ReplyContent) -> ReplyContent {
    match body {
        ReplyBody::Json(reply) => wrap(reply.outcome),
        ReplyBody::Text(text) => {
            let legacy = parse_reply_text(&text);
            ReplyContent::Text { text, legacy }
        }
    }
}

/// Where the listener starts reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// Only replies that arrive after start-up.
    End,
    /// Exactly where an earlier read of the log stopped (see [`crate::history`]); partitions
    /// not listed are read from the beginning.
    Positions(Positions),
}

/// The next offset to read, per topic and partition.
pub type Positions = std::collections::HashMap<(String, i32), i64>;

/// Reads both reply topics, assigned directly (no consumer group), and never stalls for good:
/// a watchdog (see [`crate::watchdog`]) compares the next offset it expects from each partition
/// with the partition's high watermark every [`CHECK_INTERVAL`], and when a partition is behind
/// and has not moved for the stall time while the brokers answer, the consumer is replaced by a
/// new one assigned exactly where this one stopped. Nothing is skipped and nothing repeated.
pub struct ReplyListener {
    consumer: StreamConsumer,
    /// What a replacement consumer is made from.
    config: ClientConfig,
    /// Looks up high watermarks; a client of its own, so a wedged consumer cannot wedge it.
    probe: Arc<BaseConsumer>,
    topics: Topics,
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

impl std::fmt::Debug for ReplyListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyListener")
            .field("topics", &self.topics)
            .field("stalls", &self.stalls)
            .finish_non_exhaustive()
    }
}

/// Bound on one watermark look-up of the watchdog: an unanswered one means the brokers do not
/// answer, and then no partition is judged.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

impl ReplyListener {
    /// Assigns all partitions of the reply topics, which must exist (see
    /// [`ensure_request_and_reply_topics`]). When this returns, every reply produced from then on
    /// will be received.
    pub async fn start(
        kafka: &KafkaSettings,
        topic_settings: &TopicSettings,
        group_id: &str,
        start_at: StartAt,
    ) -> Result<Self, RequestError> {
        let topics = Topics::with_prefix(&topic_settings.prefix);
        let reply_topics: Vec<String> = RequestKind::ALL
            .iter()
            .map(|kind| topics.reply(*kind))
            .collect();
        let mut config = kafka.consumer_config();
        set_default(&mut config, "group.id", group_id);
        // Assigned, not subscribed: nothing to commit, and every instance reads every partition.
        config.set("enable.auto.commit", "false");
        config.set("enable.auto.offset.store", "false");
        // Should librdkafka ever reset an offset, it goes back, never forward past replies
        // nobody has read: what was read already is recognised by its offset and skipped.
        config.set("auto.offset.reset", "earliest");
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
            topics,
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
    pub async fn next(&mut self) -> IncomingReply {
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
                        match self.topics.kind_of_reply_topic(&key.0) {
                            Some(kind) => return IncomingReply::decode(kind, &message),
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
        if let Ok(positions) = self.consumer.position() {
            for element in positions.elements() {
                if let Offset::Offset(position) = element.offset() {
                    let key = (element.topic().to_owned(), element.partition());
                    self.stalls.passed(&key, position);
                }
            }
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

type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<IncomingReply>>>>;

/// Request/reply as a function call: send, then await the reply with the same correlation ID.
#[derive(Debug)]
pub struct Client {
    requester: Requester,
    waiters: Waiters,
    listener: tokio::task::JoinHandle<()>,
}

impl Client {
    pub async fn connect(
        kafka: &KafkaSettings,
        topic_settings: &TopicSettings,
        group_id: &str,
    ) -> Result<Self, RequestError> {
        ensure_request_and_reply_topics(kafka, topic_settings).await?;
        let mut listener =
            ReplyListener::start(kafka, topic_settings, group_id, StartAt::End).await?;
        let requester = Requester::new(
            kafka,
            Topics::with_prefix(&topic_settings.prefix),
            Duration::from_secs(30),
        )?;
        let waiters = Waiters::default();
        let dispatch_to = Arc::clone(&waiters);
        let listener = tokio::spawn(async move {
            loop {
                let reply = listener.next().await;
                let Some(key) = reply.correlation_id.as_ref().map(CorrelationId::key) else {
                    continue;
                };
                let waiter = dispatch_to
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner())
                    .remove(&key);
                if let Some(waiter) = waiter {
                    // The caller may have given up (timeout); nothing else to do then.
                    let _ = waiter.send(reply);
                }
            }
        });
        Ok(Client {
            requester,
            waiters,
            listener,
        })
    }

    pub fn requester(&self) -> &Requester {
        &self.requester
    }

    /// Sends `request` and waits up to `timeout` for its reply.
    pub async fn call<T: Serialize>(
        &self,
        kind: RequestKind,
        request: &T,
        timeout: Duration,
    ) -> Result<IncomingReply, RequestError> {
        let correlation_id = CorrelationId::generate();
        let reply = self.expect_reply(&correlation_id);
        if let Err(error) = self.requester.send(kind, &correlation_id, request).await {
            self.lock_waiters().remove(&correlation_id.key());
            return Err(error);
        }
        self.await_reply(&correlation_id, reply, timeout).await
    }

    /// Registers interest in the reply to `correlation_id` before its request is sent, for callers
    /// that produce the request themselves (other encodings, other headers).
    pub fn expect_reply(&self, correlation_id: &CorrelationId) -> oneshot::Receiver<IncomingReply> {
        let (sender, receiver) = oneshot::channel();
        self.lock_waiters().insert(correlation_id.key(), sender);
        receiver
    }

    pub async fn await_reply(
        &self,
        correlation_id: &CorrelationId,
        reply: oneshot::Receiver<IncomingReply>,
        timeout: Duration,
    ) -> Result<IncomingReply, RequestError> {
        let outcome = tokio::time::timeout(timeout, reply).await;
        self.lock_waiters().remove(&correlation_id.key());
        match outcome {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(RequestError::ListenerStopped),
            Err(_) => Err(RequestError::Timeout(timeout)),
        }
    }

    fn lock_waiters(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<IncomingReply>>> {
        self.waiters
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.listener.abort();
    }
}
