//! Why a request, the reply listener or the history reader failed.

use crate::admin::AdminError;
use rdkafka::error::KafkaError;
use std::time::Duration;

/// Why a request, the reply listener or the history reader failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The topics could not be created or the cluster refused us.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// A Kafka client could not be created (bad settings).
    #[error("cannot create Kafka client: {0}")]
    Client(#[source] KafkaError),
    /// The reply topics' partitions or watermarks could not be looked up.
    #[error("cannot look up the reply topics: {0}")]
    Lookup(#[source] KafkaError),
    /// The broker did not acknowledge the request.
    #[error("request not accepted by the broker: {0}")]
    Send(#[source] KafkaError),
    /// No reply arrived in time (the time waited).
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The task that receives replies has stopped.
    #[error("the reply listener stopped")]
    ListenerStopped,
}
