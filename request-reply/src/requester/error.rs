//! Why a request, the reply listener or the history reader failed.

use crate::admin::AdminError;
use rdkafka::error::KafkaError;
use std::time::Duration;

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
