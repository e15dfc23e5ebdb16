//! NestJS's request/reply over Kafka against ours, both ways, with the real libraries from npm
//! (`@nestjs/microservices` on KafkaJS; the peer in `peers/nest`, installed by its `install`
//! script):
//! - `ClientKafka.send()` calls our invoice and score workers and every call completes with the
//!   reply to its own request (or fails with our error, for invalid requests);
//! - our dashboard calls a `@MessagePattern` responder and shows its replies and its errors.

// Each test binary uses part of the shared helpers.
#[allow(dead_code)]
mod common;

use common::peers::{self, ForeignResponder, PeerProcess, Workers};
use contract::RequestKind;
use request_reply::config::TopicSettings;
use request_reply::headers::{self, CorrelationId};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::time::Duration;
use test_support::{self, TopicReader};

/// Valid calls per client (the issue asks for at least 50 per pairing).
const CALLS: usize = 60;
/// Invalid calls per client, answered with error replies.
const INVALID: usize = 3;
/// Bound on a whole client run: Node start-up, group join, every call.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(180);
/// Bound on the responder's start-up, up to its consumer group being joined.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// `node dist/main.js ARGS`, installed and compiled first (once per test binary).
fn nest_peer(args: &[&str]) -> Command {
    let mut command = Command::new("node");
    command
        .arg(peers::prepared("nest", "install", "dist/main.js"))
        .args(args);
    command
}

/// Runs the NestJS client against `kind`'s request topic to the end; returns it for its output.
async fn run_client(settings: &TopicSettings, kind: RequestKind) -> PeerProcess {
    let topic = test_support::request_topic(settings, kind);
    let (calls, invalid) = (CALLS.to_string(), INVALID.to_string());
    peers::run_to_end(
        &format!("NestJS {kind} client"),
        &mut nest_peer(&[
            "client",
            "--brokers",
            &peers::servers(),
            "--topic",
            &topic,
            "--kind",
            kind.as_str(),
            "--count",
            &calls,
            "--invalid",
            &invalid,
            "--timeout-ms",
            "60000",
        ]),
        CLIENT_TIMEOUT,
    )
    .await
}

/// The client's result lines, split into replies and errors, each checked to be for a distinct
/// customer of its own.
fn results(client: &PeerProcess) -> (Vec<Value>, Vec<Value>) {
    // send() emits the reply payload parsed as JSON: our whole contract reply.
    let (replies, errors) = peers::split_results(client, "customer", CALLS, INVALID);
    for error in &errors {
        // The observable failed with the parsed `kafka_nest-err`: our error body.
        assert_eq!(error["detail"]["code"], "invalid_request", "{error}");
        assert!(error["detail"]["message"].as_str().is_some(), "{error}");
    }
    (replies, errors)
}

/// What a NestJS client put on a request and how our worker answered it on the wire: the text
/// correlation ID, `<request-topic>.reply` and a decimal reply partition; the reply on that
/// partition with the same ID, `kafka_nest-is-disposed` on every reply and `kafka_nest-err`
/// exactly on the error replies.
async fn check_the_wire(settings: &TopicSettings, kind: RequestKind) {
    let topics = test_support::topics(settings);
    let total = CALLS + INVALID;
    let (requests, replies) = peers::on_the_wire(
        "NestJS",
        settings,
        &topics.request(kind),
        &topics.nest_reply(kind),
        total,
    )
    .await;
    let mut reply_partitions = HashMap::new();
    for request in &requests {
        let id = request
            .headers
            .last(headers::CORRELATION_ID)
            .expect("a correlation ID");
        assert!(
            !id.is_empty() && id.iter().all(u8::is_ascii_graphic),
            "NestJS correlation IDs are printable text: {id:?}"
        );
        assert_eq!(
            request.headers.last(headers::REPLY_TOPIC),
            Some(topics.nest_reply(kind).as_bytes())
        );
        let partition = request
            .headers
            .last(headers::REPLY_PARTITION)
            .expect("kafka_replyPartition");
        assert!(
            partition.iter().all(u8::is_ascii_digit),
            "decimal text: {partition:?}"
        );
        let partition: i32 = std::str::from_utf8(partition).unwrap().parse().unwrap();
        reply_partitions.insert(id.to_vec(), partition);
    }
    assert_eq!(reply_partitions.len(), total, "distinct correlation IDs");

    let mut refused = HashSet::new();
    for reply in &replies {
        let (id, payload) = peers::checked_reply(reply, kind);
        assert_eq!(
            reply_partitions.get(id),
            Some(&reply.partition),
            "{}",
            CorrelationId::from_bytes(id)
        );
        assert_eq!(
            reply.headers.last(headers::NEST_IS_DISPOSED),
            Some(headers::NEST_IS_DISPOSED_VALUE)
        );
        if let Some(error) = reply.headers.last(headers::NEST_ERR) {
            let body = headers::decode_nest_error(error).expect("our error body");
            let payload: Value = serde_json::from_slice(payload).unwrap();
            assert_eq!(payload["error"]["message"], body.message.as_str());
            refused.insert(id.to_vec());
        }
    }
    // What the NestJS client sent, where valid, matches the checked-in request schema.
    peers::assert_valid_requests(&requests, &refused, INVALID, kind);
}

#[tokio::test(flavor = "multi_thread")]
async fn nestjs_client_kafka_calls_our_workers_and_every_call_completes() {
    let settings = test_support::unique_topics();
    test_support::create_topics(&settings, &[]).await;
    let workers = Workers::start(
        test_support::worker_config(&settings, "invoices"),
        // Transactions on one side: KafkaJS reads committed messages, as exactly-once needs.
        test_support::exactly_once_worker_config(&settings, "scores"),
    );

    let (invoices, scores) = tokio::join!(
        run_client(&settings, RequestKind::Invoice),
        run_client(&settings, RequestKind::Score)
    );

    let (invoice_replies, _) = results(&invoices);
    let (score_replies, _) = results(&scores);
    peers::check_worker_replies(&invoice_replies, &score_replies, 250);

    check_the_wire(&settings, RequestKind::Invoice).await;
    check_the_wire(&settings, RequestKind::Score).await;
    workers.stop().await;
}

/// The NestJS responder's score: 100 + the sum of the name's UTF-16 code units, mod 9900.
fn nest_score(customer: &str) -> i64 {
    100 + customer.encode_utf16().map(i64::from).sum::<i64>() % 9900
}

/// The peer's responder, as our dashboard should see it.
const NEST: ForeignResponder = ForeignResponder {
    name: "NestJS responder",
    buyer: "Nest buyer",
    unit_price_cents: 1250,
    score: nest_score,
};

#[tokio::test(flavor = "multi_thread")]
async fn our_dashboard_gets_replies_and_errors_from_a_nestjs_message_pattern_responder() {
    let run = NEST
        .behind_dashboard(nest_peer, "--brokers", READY_TIMEOUT, CALLS)
        .await;
    let refused = run
        .post("/api/scores", &json!({"customer": "Reject Corp"}))
        .await;
    let crashed = run
        .post("/api/scores", &json!({"customer": "Crash Ltd"}))
        .await;
    // RpcException({code, message}): kafka_nest-err holds our error body, shown as it is.
    let state = run.wait(&refused).await;
    assert_eq!(state["status"], "failed", "{state}");
    assert_eq!(
        state["error"],
        "invalid_request: customer Reject Corp is refused by the NestJS responder"
    );
    // Any other exception: NestJS's own {"status":"error","message":"Internal server error"}.
    let state = run.wait(&crashed).await;
    assert_eq!(state["status"], "failed", "{state}");
    let error = state["error"].as_str().unwrap();
    assert!(
        error.contains(headers::NEST_ERR) && error.contains("Internal server error"),
        "{state}"
    );

    // The responder's replies on the wire: the dashboard's text correlation ID, byte for byte;
    // success payloads that match the checked-in reply schema; the two error replies with no
    // payload at all, only kafka_nest-err.
    let topics = test_support::topics(&run.settings);
    for (kind, ids, errors) in [
        (RequestKind::Invoice, &run.invoice_ids, 0),
        (RequestKind::Score, &run.score_ids, 2),
    ] {
        let mut reader = TopicReader::new(&topics.reply(kind), run.settings.partitions);
        let replies = reader
            .read_until(
                &format!("the NestJS {kind} replies"),
                Duration::from_secs(30),
                |seen| seen.len() >= ids.len() + errors,
            )
            .await;
        let mut without_payload = 0;
        for reply in replies {
            let id = reply.headers.last(headers::CORRELATION_ID).unwrap();
            let id = std::str::from_utf8(id).unwrap();
            match &reply.payload {
                Some(payload) => {
                    assert!(ids.iter().any(|sent| sent == id), "{reply:?}");
                    test_support::assert_valid_payload(&format!("{kind}-reply"), payload);
                }
                None => {
                    assert!(id == refused || id == crashed, "{reply:?}");
                    assert!(reply.headers.last(headers::NEST_ERR).is_some(), "{reply:?}");
                    without_payload += 1;
                }
            }
        }
        assert_eq!(without_payload, errors);
    }

    run.dashboard.stop().await;
}
