//! Getting what a request caused acknowledged by the broker: queueing with backpressure,
//! retries with backoff, a new producer when one is stuck, and what to send instead when a
//! message can never be delivered.

use super::inbound::Inbound;
use super::plan::json_reply;
use super::recovery::{AfterFailure, Queued, after_failure};
use super::routing::{ReplyTarget, Routing};
use crate::envelope::{ErrorCode, Reply};
use crate::headers;
use crate::kafka::Outgoing;
use crate::metrics::WorkerMetrics;
use crate::producer::RenewingProducer as ReplyProducer;
use crate::producer::acknowledgement::send_again;
use rdkafka::error::KafkaError;
use rdkafka::producer::DeliveryFuture;
use rdkafka::types::RDKafkaErrorCode;
use std::collections::VecDeque;
use std::time::Duration;

/// Longest pause between attempts to deliver a reply while the broker is unavailable.
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(5);
/// Queues a message in the producer, waiting while its local queue is full.
pub(super) async fn enqueue(producer: &ReplyProducer, outgoing: &Outgoing) -> Queued {
    loop {
        let (generation, current) = producer.current();
        match current.send_result(outgoing.record()).await {
            Ok(delivery) => return (generation, Ok(delivery)),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((error, _)) => return (generation, Err(error)),
        }
    }
}

/// The offset the message was written at, once acknowledged.
async fn delivered(queued: Result<DeliveryFuture, KafkaError>) -> Result<i64, KafkaError> {
    match queued?.await {
        Ok(Ok(delivery)) => Ok(delivery.offset),
        Ok(Err((error, _))) => Err(error),
        Err(_) => Err(KafkaError::Canceled),
    }
}

/// Waits until one message, and whatever replaces it if it can never be delivered, is
/// acknowledged. Transient failures are retried with backoff.
pub(super) async fn deliver(
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
    let mut resent = 0;
    loop {
        let (generation, delivery) = queued;
        let error = match delivered(delivery).await {
            Ok(offset) if send_again(producer.idempotent(), offset, resent) => {
                resent += 1;
                tracing::warn!(
                    topic = %outgoing.topic,
                    "reply acknowledged without an offset (a duplicate, says the broker); \
                     sending it again"
                );
                queued = enqueue(producer, &outgoing).await;
                continue;
            }
            Ok(_) => return Vec::new(),
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
pub(super) fn undeliverable(
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
