//! Spring Kafka's request/reply against ours, both ways, with the real library from Maven
//! Central (`spring-kafka` on `kafka-clients`; the peer in `peers/java`, built by its
//! `build` script):
//! - a `ReplyingKafkaTemplate` (binary correlation IDs, its own reply topics, one of them with a
//!   fixed reply partition) calls our invoice and score workers and gets every reply, correlated;
//! - our dashboard calls a `@KafkaListener` + `@SendTo` responder and shows its replies and errors.

// Each test binary uses part of the shared helpers.
#[allow(dead_code)]
mod common;

use common::peers::{self, ForeignResponder, PeerProcess, Workers};
use contract::RequestKind;
use request_reply::config::TopicSettings;
use request_reply::headers::{self, CorrelationId};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;
use test_support::{self, TopicReader};

/// Valid calls per client (the issue asks for at least 50 per pairing).
const CALLS: usize = 60;
/// Invalid calls per client, answered with error replies.
const INVALID: usize = 3;
/// Bound on a whole client run: JVM start-up, reply container assignment, every call.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(180);
/// Bound on the responder's start-up, up to both listeners being assigned.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// The reply partition the invoice client's reply container is assigned.
const INVOICE_REPLY_PARTITION: i32 = 2;

/// `java -jar spring-peer.jar ARGS`, the jar built first (once per test binary).
fn spring_peer(args: &[&str]) -> Command {
    let mut command = Command::new("java");
    command
        .arg("-jar")
        .arg(peers::prepared("java", "build", "target/spring-peer.jar"))
        .args(args);
    command
}

/// The Spring reply topic of `kind`: not one of ours, so the workers must be told to allow it.
fn spring_reply_topic(settings: &TopicSettings, kind: RequestKind) -> String {
    format!("{}spring.{kind}-replies", settings.prefix)
}

/// Runs the Spring client against `kind`'s request topic to the end; returns it for its output.
async fn run_client(
    settings: &TopicSettings,
    kind: RequestKind,
    partition: Option<i32>,
) -> PeerProcess {
    let request_topic = test_support::request_topic(settings, kind);
    let reply_topic = spring_reply_topic(settings, kind);
    let (calls, invalid) = (CALLS.to_string(), INVALID.to_string());
    let partition = partition.map(|partition| partition.to_string());
    let servers = peers::servers();
    let mut args = vec![
        "client",
        "--bootstrap",
        &servers,
        "--request-topic",
        &request_topic,
        "--reply-topic",
        &reply_topic,
        "--kind",
        kind.as_str(),
        "--count",
        &calls,
        "--invalid",
        &invalid,
        // Spring's default is 5 s, too tight for a busy test machine.
        "--timeout-ms",
        "60000",
    ];
    if let Some(partition) = &partition {
        args.extend(["--reply-partition", partition]);
    }
    peers::run_to_end(
        &format!("Spring {kind} client"),
        &mut spring_peer(&args),
        CLIENT_TIMEOUT,
    )
    .await
}

/// The client's result lines, split into replies and errors; each reply checked to be the
/// contract's success reply for its own customer, with a 16-byte correlation ID of its own.
fn results(client: &PeerProcess) -> (Vec<Value>, Vec<Value>) {
    let (replies, errors) = peers::split_results(client, "correlation_id", CALLS, INVALID);
    for line in replies.iter().chain(&errors) {
        // binaryCorrelation, Spring's default: 16 raw bytes of a UUID.
        assert_eq!(line["correlation_bytes"], 16, "{line}");
    }
    for error in &errors {
        // The template's reply error checker turned our error reply into the call's exception.
        let text = error["error"].as_str().unwrap();
        assert!(text.contains("ContractError: invalid_request"), "{error}");
    }
    (replies, errors)
}

/// What the template put on the requests and what came back on the wire: 16-byte correlation
/// IDs, the Spring reply topic, the reply partition as a 4-byte big-endian int when the reply
/// container has a fixed one; every reply on that topic (and partition) with its request's ID
/// byte for byte.
async fn check_the_wire(settings: &TopicSettings, kind: RequestKind, partition: Option<i32>) {
    let total = CALLS + INVALID;
    let (requests, replies) = peers::on_the_wire(
        "Spring",
        settings,
        &test_support::request_topic(settings, kind),
        &spring_reply_topic(settings, kind),
        total,
    )
    .await;
    let mut ids = HashSet::new();
    for request in &requests {
        let id = request
            .headers
            .last(headers::CORRELATION_ID)
            .expect("a correlation ID");
        assert_eq!(id.len(), 16, "{id:?}");
        assert!(ids.insert(id.to_vec()));
        assert_eq!(
            request.headers.last(headers::REPLY_TOPIC),
            Some(spring_reply_topic(settings, kind).as_bytes())
        );
        let expected = partition.map(i32::to_be_bytes);
        assert_eq!(
            request.headers.last(headers::REPLY_PARTITION),
            expected.as_ref().map(|bytes| &bytes[..])
        );
    }
    assert_eq!(ids.len(), total);

    let mut refused = HashSet::new();
    for reply in &replies {
        let (id, _) = peers::checked_reply(reply, kind);
        assert!(
            ids.remove(id),
            "unexpected or repeated reply {}",
            CorrelationId::from_bytes(id)
        );
        if let Some(partition) = partition {
            assert_eq!(reply.partition, partition);
        }
        if reply.headers.last(headers::NEST_ERR).is_some() {
            refused.insert(id.to_vec());
        }
    }
    // What the template sent, where valid, matches the checked-in request schema.
    peers::assert_valid_requests(&requests, &refused, INVALID, kind);
}

#[tokio::test(flavor = "multi_thread")]
async fn replying_kafka_template_gets_correlated_replies_from_our_workers() {
    let settings = test_support::unique_topics();
    let invoice_replies = spring_reply_topic(&settings, RequestKind::Invoice);
    let score_replies = spring_reply_topic(&settings, RequestKind::Score);
    test_support::create_topics(&settings, &[invoice_replies.clone(), score_replies.clone()]).await;
    let mut invoices = test_support::worker_config(&settings, "invoices");
    invoices.responder.extra_reply_topics = vec![invoice_replies];
    // The score worker answers in transactions: a read_uncommitted client (Java's default) gets
    // its replies as well.
    let mut scores = test_support::exactly_once_worker_config(&settings, "scores");
    scores.responder.extra_reply_topics = vec![score_replies];
    let workers = Workers::start(invoices, scores);

    // Invoices: the reply container is assigned one partition, so the template also sends
    // kafka_replyPartition. Scores: the reply container joins a group, so it does not.
    let (invoices, scores) = tokio::join!(
        run_client(
            &settings,
            RequestKind::Invoice,
            Some(INVOICE_REPLY_PARTITION)
        ),
        run_client(&settings, RequestKind::Score, None)
    );

    let (invoice_replies, _) = results(&invoices);
    for reply in &invoice_replies {
        assert_eq!(reply["partition"], INVOICE_REPLY_PARTITION, "{reply}");
    }
    let (score_replies, _) = results(&scores);
    peers::check_worker_replies(&invoice_replies, &score_replies, 199);

    check_the_wire(
        &settings,
        RequestKind::Invoice,
        Some(INVOICE_REPLY_PARTITION),
    )
    .await;
    check_the_wire(&settings, RequestKind::Score, None).await;
    workers.stop().await;
}

/// The Spring responder's score: 100 + `Math.floorMod(customer.hashCode(), 9900)`.
fn spring_score(customer: &str) -> i64 {
    let hash = customer.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    100 + i64::from(hash).rem_euclid(9900)
}

/// The peer's responder, as our dashboard should see it.
const SPRING: ForeignResponder = ForeignResponder {
    name: "Spring responder",
    buyer: "Spring buyer",
    unit_price_cents: 1999,
    score: spring_score,
};

#[tokio::test(flavor = "multi_thread")]
async fn our_dashboard_gets_replies_and_errors_from_a_spring_sendto_responder() {
    let run = SPRING
        .behind_dashboard(spring_peer, "--bootstrap", READY_TIMEOUT, CALLS)
        .await;
    let refused = run
        .post(
            "/api/invoices",
            &json!({"customer": "Reject Corp",
        "lines": [{"description": "Gadget", "quantity": 1, "unit_price_cents": 1}]}),
        )
        .await;
    // Spring itself answers a failed listener with nothing; the peer's KafkaListenerErrorHandler
    // answers with the contract's error reply, which the dashboard shows as it is.
    let state = run.wait(&refused).await;
    assert_eq!(state["status"], "failed", "{state}");
    assert_eq!(
        state["error"],
        "invalid_request: customer Reject Corp is refused by the Spring responder"
    );

    // The replies as Spring sent them: our request's text correlation ID, byte for byte, the
    // content type the responder set, and payloads (the error reply's too) that match the
    // checked-in reply schema.
    let topics = test_support::topics(&run.settings);
    for (kind, ids) in [
        (
            RequestKind::Invoice,
            [run.invoice_ids.as_slice(), &[refused]].concat(),
        ),
        (RequestKind::Score, run.score_ids),
    ] {
        let mut reader = TopicReader::new(&topics.reply(kind), run.settings.partitions);
        let replies = reader
            .read_until(
                &format!("the Spring {kind} replies"),
                Duration::from_secs(30),
                |seen| seen.len() >= ids.len(),
            )
            .await;
        for reply in replies {
            let id = reply.headers.last(headers::CORRELATION_ID).unwrap();
            let id = std::str::from_utf8(id).unwrap();
            assert!(ids.iter().any(|sent| sent == id), "{reply:?}");
            assert_eq!(
                reply.headers.last(headers::CONTENT_TYPE),
                Some(headers::JSON_CONTENT_TYPE.as_bytes())
            );
            let payload = reply.payload.as_deref().expect("a reply payload");
            test_support::assert_valid_payload(&format!("{kind}-reply"), payload);
        }
    }
    run.dashboard.stop().await;
}
