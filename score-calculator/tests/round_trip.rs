//! The score calculator against a real broker: JSON and plain-text round trips. The Kafka
//! machinery is the library's, tested at length there and with the invoice generator; these tests
//! only prove this worker is wired to it correctly.

use contract::ReplyContent;
use contract::legacy::{self, LegacyReply};
use contract::{Outcome, RequestKind, SCHEMA_VERSION, ScoreRequest};
use request_reply::headers;
use request_reply::kafka::Outgoing;
use score_calculator::score_of;
use test_support::{InProcessWorker, REPLY_TIMEOUT};

fn start_worker(topics: &request_reply::config::TopicSettings) -> InProcessWorker {
    let config = test_support::worker_config(topics, "scores");
    InProcessWorker::spawn(|shutdown| score_calculator::run(config, shutdown))
}

/// A JSON request is answered on `score-calculated` with the customer's documented score,
/// correlated and marked as JSON.
#[tokio::test(flavor = "multi_thread")]
async fn json_request_gets_the_customers_score() {
    let topics = test_support::unique_topics();
    test_support::create_topics(&topics, &[]).await;
    let worker = start_worker(&topics);
    let client = test_support::client(&topics).await;

    let request = ScoreRequest {
        schema_version: SCHEMA_VERSION,
        customer: "ACME Ltd".into(),
    };
    let reply = client
        .call(RequestKind::Score, &request, REPLY_TIMEOUT)
        .await
        .unwrap();
    let ReplyContent::Score(Outcome::Ok(score)) = &reply.content else {
        panic!("expected a score, got {:?}", reply.content);
    };
    assert_eq!(score.customer, "ACME Ltd");
    assert_eq!(score.score, score_of("ACME Ltd"));
    assert_eq!(
        reply.topic,
        test_support::topics(&topics).reply(RequestKind::Score)
    );
    assert_eq!(
        reply.headers.last(headers::CONTENT_TYPE),
        Some(headers::JSON_CONTENT_TYPE.as_bytes())
    );

    worker.stop().await;
}

/// The original dashboard's header-less `Calcular score` gets the original workers' reply,
/// `Calculated score: N.`, with no headers and no key.
#[tokio::test(flavor = "multi_thread")]
async fn plain_text_request_gets_a_plain_text_score() {
    let topics = test_support::unique_topics();
    test_support::create_topics(&topics, &[]).await;
    let worker = start_worker(&topics);
    let client = test_support::client(&topics).await;
    let request_topic = test_support::request_topic(&topics, RequestKind::Score);
    client
        .requester()
        .send_outgoing(&Outgoing::new(&request_topic, legacy::SCORE_REQUEST_TEXT))
        .await
        .unwrap();

    let reply =
        test_support::first_reply(&topics, RequestKind::Score, "the plain-text reply").await;
    let expected = score_of(legacy::SCORE_REQUEST_TEXT);
    assert_eq!(reply.text(), legacy::score_reply_text(expected));
    assert_eq!(
        legacy::parse_reply_text(&reply.text()),
        Some(LegacyReply::Score {
            score: u64::from(expected)
        })
    );
    assert!(reply.headers.is_empty(), "{:?}", reply.headers);
    assert_eq!(reply.key, None);

    worker.stop().await;
}
