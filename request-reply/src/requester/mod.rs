//! The requesting side: send correlated requests and receive every reply.
//!
//! [`Requester`] produces requests; [`ReplyListener`] reads the reply topics. The listener does not
//! join a consumer group: it is assigned every partition of the reply topics directly, starting at
//! the offsets it looked up before returning, so several dashboard instances each see every reply
//! (and keep the ones for their own requests), and no reply that arrives after start-up is missed.
//! [`Client`] combines the two into a `call` that awaits the matching reply, for programs that
//! want a plain function call (the benchmarks, the tests).

mod error;
mod listener;
mod reply;

pub use crate::offsets::Positions;
pub use error::RequestError;
pub use listener::{ListenerCounters, ReplyListener, StartAt};
pub use reply::{IncomingReply, SingleRoute};

use crate::admin::ensure_request_and_reply_topics;
use crate::config::{KafkaSettings, TopicSettings};
use crate::deadline::Deadline;
use crate::headers::{self, CorrelationId, TraceContext};
use crate::kafka::{Outgoing, set_default};
use crate::producer::AdaptiveProducer;
use crate::producer::acknowledgement::send_again;
use crate::route::Routes;
use rdkafka::error::KafkaError;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// Where a produced request landed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentRequest {
    /// The request topic.
    pub topic: String,
    /// The partition it landed in.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
}

/// Produces correlated requests to the request topics of `R`.
#[derive(Clone)]
pub struct Requester<R: Routes> {
    producer: AdaptiveProducer,
    routes: R,
}

impl<R: Routes> std::fmt::Debug for Requester<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Requester")
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

impl<R: Routes> Requester<R> {
    /// `send_timeout` bounds how long a request may wait for the broker's acknowledgement, so an
    /// outage shows up as an error instead of a hang.
    pub fn new(
        kafka: &KafkaSettings,
        routes: R,
        send_timeout: Duration,
    ) -> Result<Self, RequestError> {
        let mut config = kafka.producer_config();
        set_default(&mut config, "enable.idempotence", "true");
        set_default(
            &mut config,
            "message.timeout.ms",
            &send_timeout.as_millis().to_string(),
        );
        let producer = AdaptiveProducer::new(&config).map_err(RequestError::Client)?;
        Ok(Requester { producer, routes })
    }

    /// Where requests are sent, and how their replies are read.
    pub fn routes(&self) -> &R {
        &self.routes
    }

    /// Produces a JSON request with its correlation ID and reply topic, and waits for the broker
    /// to acknowledge it.
    pub async fn send<T: Serialize>(
        &self,
        kind: R::Kind,
        correlation_id: &CorrelationId,
        request: &T,
    ) -> Result<SentRequest, RequestError> {
        let message = self.request_message(
            kind,
            correlation_id,
            request,
            &TraceContext::new_root(),
            None,
        );
        self.send_outgoing(&message).await
    }

    /// The message [`Requester::send`] produces: JSON payload, correlation ID, reply topic,
    /// content type and the W3C trace context, for callers that record what they sent; with
    /// `deadline`, also the time the caller stops waiting (header
    /// [`DEADLINE`](headers::DEADLINE)), so no worker handles the request after it.
    pub fn request_message<T: Serialize>(
        &self,
        kind: R::Kind,
        correlation_id: &CorrelationId,
        request: &T,
        trace: &TraceContext,
        deadline: Option<Deadline>,
    ) -> Outgoing {
        // Serializing fails only for types JSON cannot express (maps with non-string keys); the
        // payload is then empty, and the worker refuses it with an error reply.
        let payload = serde_json::to_vec(request).unwrap_or_default();
        let route = self.routes.route(kind);
        let message = Outgoing::new(route.request_topic, payload)
            .header(headers::CORRELATION_ID, correlation_id.as_bytes())
            .header(headers::REPLY_TOPIC, route.reply_topic)
            .header(headers::CONTENT_TYPE, headers::JSON_CONTENT_TYPE)
            .header(headers::TRACEPARENT, trace.header_value());
        match deadline {
            Some(deadline) => message.header(headers::DEADLINE, deadline.header_value()),
            None => message,
        }
    }

    /// Produces an arbitrary message (plain-text requests, tests) and waits for its acknowledgement.
    /// An acknowledgement without an offset sends the message again (see
    /// [`crate::producer::acknowledgement`]).
    pub async fn send_outgoing(&self, outgoing: &Outgoing) -> Result<SentRequest, RequestError> {
        let mut resent = 0;
        loop {
            let delivery = self
                .producer
                .send_result(outgoing.record())
                .await
                .map_err(|(error, _)| RequestError::Send(error))?
                .await
                .map_err(|_| RequestError::Send(KafkaError::Canceled))?
                .map_err(|(error, _)| RequestError::Send(error))?;
            if send_again(self.producer.idempotent(), delivery.offset, resent) {
                resent += 1;
                tracing::warn!(
                    topic = %outgoing.topic,
                    partition = delivery.partition,
                    "request acknowledged without an offset (a duplicate, says the broker); \
                     sending it again"
                );
                continue;
            }
            return Ok(SentRequest {
                topic: outgoing.topic.clone(),
                partition: delivery.partition,
                offset: delivery.offset,
            });
        }
    }
}

type Waiters<R> = Arc<Mutex<HashMap<String, oneshot::Sender<IncomingReply<R>>>>>;

/// Request/reply as a function call: send, then await the reply with the same correlation ID.
#[derive(Debug)]
pub struct Client<R: Routes> {
    requester: Requester<R>,
    waiters: Waiters<R>,
    listener: tokio::task::JoinHandle<()>,
}

impl<R: Routes> Client<R> {
    /// Creates the request and reply topics of `routes` if needed (with `topic_settings`),
    /// starts a reply listener at the current end of the reply topics (its consumer in group
    /// `group_id`), and a producer.
    pub async fn connect(
        kafka: &KafkaSettings,
        topic_settings: &TopicSettings,
        routes: R,
        group_id: &str,
    ) -> Result<Self, RequestError> {
        ensure_request_and_reply_topics(kafka, topic_settings, &routes).await?;
        let mut listener =
            ReplyListener::start(kafka, routes.clone(), group_id, StartAt::End).await?;
        let requester = Requester::new(kafka, routes, Duration::from_secs(30))?;
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

    /// The requester underneath, for sending requests built by hand.
    pub fn requester(&self) -> &Requester<R> {
        &self.requester
    }

    /// Sends `request` and waits up to `timeout` for its reply; the request carries the end of
    /// that wait as its deadline, so no worker handles it once nobody waits.
    pub async fn call<T: Serialize>(
        &self,
        kind: R::Kind,
        request: &T,
        timeout: Duration,
    ) -> Result<IncomingReply<R>, RequestError> {
        let correlation_id = CorrelationId::generate();
        let reply = self.expect_reply(&correlation_id);
        let message = self.requester.request_message(
            kind,
            &correlation_id,
            request,
            &TraceContext::new_root(),
            Some(Deadline::after(timeout)),
        );
        if let Err(error) = self.requester.send_outgoing(&message).await {
            self.lock_waiters().remove(&correlation_id.key());
            return Err(error);
        }
        self.await_reply(&correlation_id, reply, timeout).await
    }

    /// Registers interest in the reply to `correlation_id` before its request is sent, for callers
    /// that produce the request themselves (other encodings, other headers).
    pub fn expect_reply(
        &self,
        correlation_id: &CorrelationId,
    ) -> oneshot::Receiver<IncomingReply<R>> {
        let (sender, receiver) = oneshot::channel();
        self.lock_waiters().insert(correlation_id.key(), sender);
        receiver
    }

    /// Waits up to the client's timeout for the reply registered with [`Client::expect_reply`].
    pub async fn await_reply(
        &self,
        correlation_id: &CorrelationId,
        reply: oneshot::Receiver<IncomingReply<R>>,
        timeout: Duration,
    ) -> Result<IncomingReply<R>, RequestError> {
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
    ) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<IncomingReply<R>>>> {
        self.waiters
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

impl<R: Routes> Drop for Client<R> {
    fn drop(&mut self) {
        self.listener.abort();
    }
}
