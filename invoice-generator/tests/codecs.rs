//! Every compression codec Kafka producers use, through both hops against a real broker: the
//! request is produced compressed and read by the worker, the reply is produced compressed and
//! read by the requester's reply listener, and both are read back by the history rebuild. A
//! client built without a codec cannot read such a
//! batch at all, and stalls the partition it is in.

use contract::ReplyContent;
use contract::{InvoiceRequest, LineItem, Outcome, RequestKind, SCHEMA_VERSION};
use request_reply::history::{LogMessage, read_recent};
use request_reply::requester::Client;
use std::time::Duration;
use tokio::sync::oneshot;

async fn round_trip_compressed_with(codec: &str) {
    let topics = test_support::unique_topics();
    let mut worker_config = test_support::worker_config(&topics, "invoices");
    worker_config
        .responder
        .kafka
        .producer
        .insert("compression.type".into(), codec.into());
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = tokio::spawn(invoice_generator::run(worker_config, async {
        stopped.await.ok();
    }));
    let mut client_kafka = test_support::kafka();
    client_kafka
        .producer
        .insert("compression.type".into(), codec.into());
    let client = Client::connect(
        &client_kafka,
        &topics,
        test_support::topics(&topics),
        "requester",
    )
    .await
    .unwrap();

    let request = InvoiceRequest {
        schema_version: SCHEMA_VERSION,
        customer: format!("{codec} customer"),
        // Repetitive, so every codec really compresses it.
        lines: vec![
            LineItem {
                description: "widget ".repeat(25),
                quantity: 3,
                unit_price_cents: 250,
            };
            20
        ],
    };
    let reply = client
        .call(RequestKind::Invoice, &request, Duration::from_secs(30))
        .await
        .unwrap_or_else(|error| panic!("{codec}: no reply: {error}"));
    let ReplyContent::Invoice(Outcome::Ok(invoice)) = &reply.content else {
        panic!("{codec}: expected an invoice, got {:?}", reply.content);
    };
    assert_eq!(invoice.customer, format!("{codec} customer"));
    assert_eq!(invoice.subtotal_cents, 20 * 3 * 250, "{codec}");

    // A dashboard that restarts reads both compressed messages back from the log.
    let id = reply.correlation_id.clone().unwrap();
    let (mut request_read, mut reply_read) = (false, false);
    read_recent(
        &test_support::kafka(),
        &test_support::topics(&topics),
        "requester",
        100,
        |message| match message {
            LogMessage::Request(request) => request_read |= request.correlation_id == id,
            LogMessage::Reply(reply, _) => reply_read |= reply.correlation_id.as_ref() == Some(&id),
        },
    )
    .await
    .unwrap();
    assert!(request_read && reply_read, "{codec}: history rebuild");

    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
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
