//! What the responder loop's integration tests share: the library's stand-in service
//! ([`EchoService`]) running as a worker on topics of its own, its requests, and a requester for
//! it. Each test binary uses only some of them.
#![allow(dead_code)]

use request_reply::codec::ReplyBody;
use request_reply::config::TopicSettings;
use request_reply::envelope::{ErrorBody, Outcome, Reply};
use request_reply::headers::{self, CorrelationId};
use request_reply::kafka::Outgoing;
use request_reply::requester::{Client, IncomingReply, SingleRoute};
use request_reply::responder::{self, WorkerConfig};
use request_reply::route::Route;
use request_reply::testing::{Echo, EchoLine, EchoRequest, EchoService};
use test_support::InProcessWorker;
use tokio::sync::oneshot;

/// The echo requests and their replies, read as [`Echo`]s.
pub type EchoTopics = SingleRoute<Echo>;

/// A reply to an echo request.
pub type EchoReply = IncomingReply<EchoTopics>;

/// The echo worker's topics under `settings`' prefix: `echo-request`, `echo-reply` and the
/// dead letters on `echo-request.dlq`.
pub fn route(settings: &TopicSettings) -> Route {
    Route::new(
        format!("{}echo-request", settings.prefix),
        format!("{}echo-reply", settings.prefix),
    )
}

/// [`route`] as a requester's routes.
pub fn routes(settings: &TopicSettings) -> EchoTopics {
    SingleRoute::new(route(settings))
}

/// Creates every topic of the echo route (request, reply, NestJS reply, dead letter), so
/// readers can be assigned and requests produced before the worker has started.
pub async fn create_topics(settings: &TopicSettings) {
    let route = route(settings);
    let names = [
        route.request_topic.clone(),
        route.reply_topic.clone(),
        route.nest_reply_topic(),
        route.dead_letter_topic.clone(),
    ];
    request_reply::admin::ensure_topics(&test_support::kafka(), settings, &names)
        .await
        .expect("create the test topics");
}

/// A responder config for `settings`, in consumer group `group` (the id
/// `test_support::group_id(settings, group)`).
pub fn worker_config(settings: &TopicSettings, group: &str) -> WorkerConfig {
    test_support::worker_config(settings, group).responder
}

/// The echo worker running in-process with `config` on the topics of `settings`.
pub fn start_worker(settings: &TopicSettings, config: WorkerConfig) -> InProcessWorker {
    let route = route(settings);
    InProcessWorker::spawn(|shutdown| async move {
        Ok(responder::run(EchoService, &route, config, shutdown).await?)
    })
}

/// A requester of the echo worker, on the test broker.
pub async fn connect(settings: &TopicSettings) -> Client<EchoTopics> {
    Client::connect(
        &test_support::kafka(),
        settings,
        routes(settings),
        "requester",
    )
    .await
    .unwrap()
}

/// A valid echo request for `customer`: two widgets at 9.99.
pub fn echo_request(customer: &str) -> EchoRequest {
    EchoRequest {
        schema_version: 1,
        customer: customer.into(),
        lines: vec![EchoLine {
            description: "Widget".into(),
            quantity: 2,
            unit_price_cents: 999,
        }],
    }
}

/// The echo in `reply`, checked to be for `customer`.
pub fn expect_echo<'a>(reply: &'a EchoReply, customer: &str) -> &'a Echo {
    let Ok(ReplyBody::Json(Reply {
        outcome: Outcome::Ok(echo),
        ..
    })) = &reply.content
    else {
        panic!("expected an echo for {customer}, got {:?}", reply.content);
    };
    assert_eq!(echo.customer, customer);
    echo
}

/// The error body of an error reply, if `reply` is one.
pub fn error_of(reply: &EchoReply) -> Option<&ErrorBody> {
    match &reply.content {
        Ok(ReplyBody::Json(Reply {
            outcome: Outcome::Error(body),
            ..
        })) => Some(body),
        _ => None,
    }
}

/// A JSON request with a correlation ID and the default reply topic, as `Requester::send`
/// builds it, but with `payload` and the content type left to the caller.
pub fn correlated(
    settings: &TopicSettings,
    id: &CorrelationId,
    payload: impl Into<Vec<u8>>,
) -> Outgoing {
    let route = route(settings);
    Outgoing::new(route.request_topic, payload)
        .header(headers::CORRELATION_ID, id.as_bytes())
        .header(headers::REPLY_TOPIC, route.reply_topic)
}

/// Sends a JSON echo request for `customer` to one `partition` of the request topic and
/// registers for its reply: a request that is answered only after everything queued ahead of
/// it on that partition.
pub async fn send_to_partition(
    client: &Client<EchoTopics>,
    settings: &TopicSettings,
    partition: i32,
    customer: &str,
) -> (CorrelationId, oneshot::Receiver<EchoReply>) {
    let id = CorrelationId::generate();
    let payload = serde_json::to_vec(&echo_request(customer)).expect("serialize a request");
    let message = correlated(settings, &id, payload);
    let reply = test_support::send_to_partition(client, &id, message, partition).await;
    (id, reply)
}
