//! Creating the topics a service needs at start-up, instead of relying on broker auto-creation.

use crate::config::{KafkaSettings, TopicSettings};
use crate::contract::{RequestKind, Topics};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

/// How long one admin request may take before start-up fails with a clear error.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot create a Kafka admin client for {servers}: {source}")]
    Client {
        servers: String,
        #[source]
        source: KafkaError,
    },
    #[error("cannot create topics on Kafka at {servers}: {source}")]
    Request {
        servers: String,
        #[source]
        source: KafkaError,
    },
    #[error("cannot create topic {topic}: {code}")]
    Topic {
        topic: String,
        code: RDKafkaErrorCode,
    },
}

/// Creates each topic that does not exist yet; existing topics are left as they are.
pub async fn ensure_topics(
    kafka: &KafkaSettings,
    settings: &TopicSettings,
    names: &[String],
) -> Result<(), AdminError> {
    let servers = kafka.bootstrap_servers().to_owned();
    let admin: AdminClient<DefaultClientContext> =
        kafka
            .common_config()
            .create()
            .map_err(|source| AdminError::Client {
                servers: servers.clone(),
                source,
            })?;
    let min_insync = settings.min_insync_replicas.map(|count| count.to_string());
    let new_topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|name| {
            let topic = NewTopic::new(
                name,
                settings.partitions,
                TopicReplication::Fixed(settings.replication_factor),
            );
            match &min_insync {
                Some(count) => topic.set("min.insync.replicas", count),
                None => topic,
            }
        })
        .collect();
    let options = AdminOptions::new()
        .request_timeout(Some(ADMIN_TIMEOUT))
        .operation_timeout(Some(ADMIN_TIMEOUT));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(|source| AdminError::Request { servers, source })?;
    for result in results {
        match result {
            Ok(topic) => tracing::info!(topic, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(AdminError::Topic { topic, code }),
        }
    }
    Ok(())
}

/// Creates the request and reply topics of every kind: what a requester needs before it sends.
pub async fn ensure_request_and_reply_topics(
    kafka: &KafkaSettings,
    settings: &TopicSettings,
) -> Result<(), AdminError> {
    let topics = Topics::with_prefix(&settings.prefix);
    let names: Vec<String> = RequestKind::ALL
        .iter()
        .flat_map(|kind| [topics.request(*kind), topics.reply(*kind)])
        .collect();
    ensure_topics(kafka, settings, &names).await
}
