//! The worker side of request/reply: consume a request topic, call the business function, reply,
//! and only then let the request's offset be committed (at-least-once).
//!
//! A worker crate implements [`Service`] and calls [`run`] with the [`Route`](crate::route::Route)
//! it serves;
//! everything about Kafka lives here.
//!
//! Pipeline: messages are consumed in order; each is handled as soon as the earlier requests with
//! its Kafka key are (requests with other keys, or none, run alongside it, up to
//! [`WorkerConfig::max_in_flight`]); [`plan`] turns it into the messages it causes (a reply, and
//! for a bad request a dead-letter copy plus an error reply), which are queued in the producer
//! and awaited. A request's offset is stored only when it and every request consumed before it
//! in its partition are acknowledged by the broker (the lowest unfinished offset bounds the
//! commit), so a crash at any point leads to redelivery, never to a lost reply.
//!
//! With [`Delivery::ExactlyOnce`] the replies are not produced on their own: once a request and
//! every request before it in its partition are handled, what it caused is written into a Kafka
//! transaction that also commits the consumed offsets (see `transaction` and `transactional`),
//! so a crash or a rebalance leads to an aborted transaction and the requests answered again,
//! never to a reply written twice.

mod commits;
mod delivery;
mod group_watch;
mod inbound;
mod order;
mod ownership;
mod pipeline;
mod plan;
mod progress;
mod rebalance;
mod recovery;
mod retry;
mod routing;
mod run;
mod transaction;
mod transactional;

pub use inbound::Inbound;
pub use plan::{Plan, Verdict, plan};
pub use retry::{Failure, RetryPolicy};
pub use routing::Routing;
pub use run::{run, run_with_metrics};
pub use transaction::{Delivery, TransactionPolicy};

use crate::admin::AdminError;
use crate::codec::Validate;
use crate::config::{KafkaSettings, TopicSettings};
use rdkafka::error::KafkaError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::num::NonZeroUsize;

/// A worker's business function, and how it answers plain-text requests.
///
/// The service names no topic: which ones it serves is the caller's
/// [`Route`](crate::route::Route), so one service
/// type can run under any names (a namespace per deployment, a test's own topics).
pub trait Service: Send + Sync + 'static {
    /// What a valid request deserializes into. Its [`Validate`] implementation is the
    /// validation hook: the responder refuses a request that fails it, and the service never
    /// sees it. Cloned for each retry.
    type Request: DeserializeOwned + Validate + Clone + Send + Sync;
    /// What a valid request is answered with, as the `ok` of the reply
    /// [`envelope`](crate::envelope).
    type Response: Serialize + Send;

    /// Answers a valid request. Must be deterministic: redelivery must give the same reply.
    ///
    /// It may wait (on a database, another service): requests with other Kafka keys are handled
    /// meanwhile, up to the worker's `max_in_flight`. A [`Failure::transient`] is retried as the
    /// worker's [`RetryPolicy`] says; a [`Failure::permanent`] (or a transient one past the last
    /// retry) is answered with a `handling_failed` error and dead-lettered.
    fn handle(
        &self,
        request: Self::Request,
        origin: Origin,
    ) -> impl Future<Output = Result<Self::Response, Failure>> + Send;

    /// Answers a plain-text request (one without a JSON content type that does not look like
    /// JSON) with plain text: how peers that predate JSON are served. Fails as
    /// [`Service::handle`] does.
    fn handle_text(
        &self,
        text: &str,
        origin: Origin,
    ) -> impl Future<Output = Result<String, Failure>> + Send;
}

/// Where a request sits in the log; stable across redeliveries, unique within a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The request's partition.
    pub partition: i32,
    /// The request's offset.
    pub offset: i64,
}

/// The default [`WorkerConfig::max_in_flight`]: enough to keep replies pipelined at full speed
/// and a waiting service busy, small enough that requests of at most 64 KiB stay within a few
/// hundred MiB.
pub const DEFAULT_MAX_IN_FLIGHT: NonZeroUsize = NonZeroUsize::new(4096).unwrap();

/// Everything a worker needs to run (the services read it from their config.ini).
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// librdkafka properties of the consumer and the producer.
    pub kafka: KafkaSettings,
    /// How the worker's topics are created.
    pub topics: TopicSettings,
    /// `--reset`: the first time this process is assigned a partition it reads it from the
    /// beginning, as the original workers' `--reset` did.
    pub reset: bool,
    /// Reply topics a request may name in `kafka_replyTopic` besides the default reply topic and
    /// the NestJS `<request-topic>.reply`; any other name is refused, so requests cannot make a
    /// worker write into arbitrary topics.
    pub extra_reply_topics: Vec<String>,
    /// The consumer group the worker joins unless the consumer settings name one (`group.id`);
    /// none: the request topic's name. Replicas of one worker share it, so each request is
    /// answered once.
    pub group_id: Option<String>,
    /// Most requests in flight at once (being handled, or their replies awaiting
    /// acknowledgement); the worker reads no more until one is done. Bounds memory, and is the
    /// concurrency a waiting service gets.
    pub max_in_flight: NonZeroUsize,
    /// How a service's transient failures are retried.
    pub retry: RetryPolicy,
    /// At-least-once (the default) or exactly-once in Kafka transactions.
    pub delivery: Delivery,
}

impl WorkerConfig {
    /// A worker that resumes from its group's committed offsets and replies only to the default
    /// and NestJS reply topics.
    pub fn new(kafka: KafkaSettings, topics: TopicSettings) -> Self {
        WorkerConfig {
            kafka,
            topics,
            reset: false,
            extra_reply_topics: Vec::new(),
            group_id: None,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            retry: RetryPolicy::default(),
            delivery: Delivery::default(),
        }
    }
}

/// Why a worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Its topics could not be created or the cluster refused us.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// A Kafka client could not be created.
    #[error("cannot create Kafka {role} for {servers}: {source}")]
    Client {
        /// `consumer` or `producer`.
        role: &'static str,
        /// The cluster's bootstrap servers.
        servers: String,
        /// librdkafka's error.
        #[source]
        source: KafkaError,
    },
    /// The subscription to the request topic failed.
    #[error("cannot subscribe to {topic}: {source}")]
    Subscribe {
        /// The request topic.
        topic: String,
        /// librdkafka's error.
        #[source]
        source: KafkaError,
    },
}

#[cfg(test)]
mod tests;
