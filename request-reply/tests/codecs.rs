//! Every compression codec Kafka producers use, through both hops against a real broker: the
//! request is produced compressed and read by the worker, the reply is produced compressed and
//! read by the requester's reply listener, and both are read back by the history rebuild. A
//! client built without a codec cannot read such a
//! batch at all, and stalls the partition it is in. The worker is the library's stand-in service.

mod common;

use request_reply::history::{LogMessage, read_recent};
use request_reply::requester::Client;
use request_reply::testing::{EchoLine, EchoRequest};
use std::time::Duration;

async fn round_trip_compressed_with(codec: &str) {
    let topics = test_support::unique_topics();
    common::create_topics(&topics).await;
    let mut worker_config = common::worker_config(&topics, "echo");
    worker_config
        .kafka
        .producer
        .insert("compression.type".into(), codec.into());
    let worker = common::start_worker(&topics, worker_config);
    let mut client_kafka = test_support::kafka();
    client_kafka
        .producer
        .insert("compression.type".into(), codec.into());
    let client = Client::connect(&client_kafka, &topics, common::routes(&topics), "requester")
        .await
        .unwrap();

    let request = EchoRequest {
        schema_version: 1,
        customer: format!("{codec} customer"),
        // Repetitive, so every codec really compresses it.
        lines: vec![
            EchoLine {
                description: "widget ".repeat(25),
                quantity: 3,
                unit_price_cents: 250,
            };
            20
        ],
    };
    let reply = client
        .call((), &request, Duration::from_secs(30))
        .await
        .unwrap_or_else(|error| panic!("{codec}: no reply: {error}"));
    let echo = common::expect_echo(&reply, &format!("{codec} customer"));

    // A dashboard that restarts reads both compressed messages back from the log.
    let id = reply.correlation_id.clone().unwrap();
    let (mut request_read, mut reply_read) = (false, false);
    read_recent(
        &test_support::kafka(),
        &common::routes(&topics),
        "requester",
        100,
        |message| match message {
            LogMessage::Request(recorded) if recorded.correlation_id == id => {
                // The request the worker answered, whole: it echoes where it read it.
                assert_eq!(
                    (recorded.partition, recorded.offset),
                    (echo.partition, echo.offset),
                    "{codec}"
                );
                let payload = recorded.payload.as_deref().unwrap_or_default();
                assert_eq!(payload, serde_json::to_vec(&request).unwrap(), "{codec}");
                request_read = true;
            }
            LogMessage::Request(_) => {}
            LogMessage::Reply(reply, _) => reply_read |= reply.correlation_id.as_ref() == Some(&id),
        },
    )
    .await
    .unwrap();
    assert!(request_read && reply_read, "{codec}: history rebuild");

    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gzip_both_hops() {
    round_trip_compressed_with("gzip").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn snappy_both_hops() {
    round_trip_compressed_with("snappy").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lz4_both_hops() {
    round_trip_compressed_with("lz4").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn zstd_both_hops() {
    round_trip_compressed_with("zstd").await;
}
