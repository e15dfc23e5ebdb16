//! The worker side of request/reply: consume a request topic, call the business function, reply,
//! and only then let the request's offset be committed (at-least-once).
//!
//! A worker crate implements [`Service`] and calls [`run`] with the [`Route`](crate::route::Route)
//! it serves;
//! everything about Kafka lives here.
//!
//! Pipeline: messages are consumed in order, each is turned into the messages it causes (a reply,
//! and for a bad request a dead-letter copy plus an error reply) by the pure function [`plan`],
//! those are queued in the producer at once, and the deliveries are awaited in consumption order.
//! A request's offset is stored only when everything it caused is acknowledged by the broker, so a
//! crash at any point leads to redelivery, never to a lost reply.

mod delivery;
mod group_watch;
mod inbound;
mod plan;
mod rebalance;
mod recovery;
mod routing;
mod run;

pub use inbound::Inbound;
pub use plan::{Plan, Verdict, plan};
pub use routing::Routing;
pub use run::{run, run_with_metrics};

use crate::admin::AdminError;
use crate::codec::Validate;
use crate::config::{KafkaSettings, TopicSettings};
use rdkafka::error::KafkaError;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A worker's business function, and how it answers plain-text requests.
///
/// The service names no topic: which ones it serves is the caller's
/// [`Route`](crate::route::Route), so one service
/// type can run under any names (a namespace per deployment, a test's own topics).
pub trait Service: Send + Sync + 'static {
    /// What a valid request deserializes into. Its [`Validate`] implementation is the
    /// validation hook: the responder refuses a request that fails it, and the service never
    /// sees it.
    type Request: DeserializeOwned + Validate;
    /// What a valid request is answered with, as the `ok` of the reply
    /// [`envelope`](crate::envelope).
    type Response: Serialize;

    /// Answers a valid request. Must be deterministic: redelivery must give the same reply.
    fn handle(&self, request: Self::Request, origin: Origin) -> Self::Response;

    /// Answers a plain-text request (one without a JSON content type that does not look like
    /// JSON) with plain text: how peers that predate JSON are served.
    fn handle_text(&self, text: &str, origin: Origin) -> String;
}

/// Where a request sits in the log; stable across redeliveries, unique within a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The request's partition.
    pub partition: i32,
    /// The request's offset.
    pub offset: i64,
}

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
