//! The invoice generator against a real broker: JSON and plain-text round trips.

mod common;

use common::invoice_request;
use contract::ReplyContent;
use contract::{Outcome, RequestKind, legacy};
use invoice_generator::invoice_number;
use request_reply::headers;
use request_reply::kafka::Outgoing;
use request_reply::responder::Origin;
use std::time::Duration;
use test_support::InProcessWorker;

#[tokio::test(flavor = "multi_thread")]
async fn json_request_gets_a_correlated_invoice() {
    let topics = test_support::unique_topics();
    let worker = InProcessWorker::spawn(|shutdown| {
        invoice_generator::run(test_support::worker_config(&topics, "invoices"), shutdown)
    });
    let client = test_support::client(&topics).await;

    let reply = client
        .call(
            RequestKind::Invoice,
            &invoice_request("ACME"),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    let ReplyContent::Invoice(Outcome::Ok(invoice)) = &reply.content else {
        panic!("expected an invoice, got {:?}", reply.content);
    };
    assert_eq!(invoice.customer, "ACME");
    assert_eq!(invoice.subtotal_cents, 1998);
    assert_eq!(
        reply.headers.last(headers::CONTENT_TYPE),
        Some(headers::JSON_CONTENT_TYPE.as_bytes())
    );

    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_text_request_gets_a_plain_text_reply_without_headers() {
    let topics = test_support::unique_topics();
    let worker = InProcessWorker::spawn(|shutdown| {
        invoice_generator::run(test_support::worker_config(&topics, "invoices"), shutdown)
    });
    let client = test_support::client(&topics).await;
    let request_topic = test_support::request_topic(&topics, RequestKind::Invoice);
    let sent = client
        .requester()
        .send_outgoing(&Outgoing::new(&request_topic, legacy::INVOICE_REQUEST_TEXT))
        .await
        .unwrap();

    let reply =
        test_support::first_reply(&topics, RequestKind::Invoice, "the plain-text reply").await;
    let expected = legacy::invoice_reply_text(invoice_number(Origin {
        partition: sent.partition,
        offset: sent.offset,
    }));
    assert_eq!(reply.text(), expected);
    assert!(reply.headers.is_empty(), "{:?}", reply.headers);
    assert_eq!(reply.key, None);

    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_endpoint_counts_handled_requests_and_reports_lag() {
    let topics = test_support::unique_topics();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = test_support::worker_config(&topics, "invoices");
    config.metrics_listen = Some(([127, 0, 0, 1], port).into());
    let worker = InProcessWorker::spawn(|shutdown| invoice_generator::run(config, shutdown));
    let client = test_support::client(&topics).await;
    client
        .call(
            RequestKind::Invoice,
            &invoice_request("Counted"),
            Duration::from_secs(30),
        )
        .await
        .unwrap();

    let url = format!("http://127.0.0.1:{port}/metrics");
    // Lag comes from librdkafka statistics, emitted every 5 s.
    let text = test_support::wait_for(
        "lag in the worker metrics",
        Duration::from_secs(30),
        || async {
            let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
            text.contains("worker_consumer_lag{").then_some(text)
        },
    )
    .await;
    assert!(text.contains("worker_requests_handled_total 1"), "{text}");
    assert!(text.contains("worker_handling_seconds_count 1"), "{text}");
    assert!(text.contains("worker_dead_lettered_total 0"), "{text}");
    let healthz = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .unwrap();
    assert!(healthz.status().is_success());
    // Joined is reported from the statistics, which may lag the first reply by a second.
    let readyz = format!("http://127.0.0.1:{port}/readyz");
    test_support::wait_for(
        "the worker to report ready",
        Duration::from_secs(30),
        || async {
            let answer = reqwest::get(&readyz).await.ok()?;
            (answer.status() == 200).then_some(())
        },
    )
    .await;
    let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
    assert!(text.contains("worker_group_joined 1"), "{text}");

    worker.stop().await;
}

/// A worker whose broker does not answer is alive but not ready: an orchestrator (and the
/// container smoke test) must not count it as serving while it is still connecting.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_without_a_broker_is_alive_but_not_ready() {
    let topics = test_support::unique_topics();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = closed.local_addr().unwrap();
    drop(closed);
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = test_support::worker_config(&topics, "invoices");
    config.responder.kafka =
        request_reply::config::KafkaSettings::for_bootstrap(&nowhere.to_string());
    config.metrics_listen = Some(([127, 0, 0, 1], metrics_port).into());
    let worker = tokio::spawn(invoice_generator::run(config, std::future::pending()));

    let base = format!("http://127.0.0.1:{metrics_port}");
    let healthz =
        test_support::wait_for("the worker's /healthz", Duration::from_secs(30), || async {
            reqwest::get(format!("{base}/healthz")).await.ok()
        })
        .await;
    assert_eq!(healthz.status(), 200);
    let readyz = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(readyz.status(), 503);
    let why = readyz.text().await.unwrap();
    assert!(why.contains("has not joined its group"), "{why}");
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("worker_group_joined 0"), "{text}");
    worker.abort();
}

/// A replica started next to a running one (`docker exec ... --reset`) finds the metrics port
/// taken and works on without an endpoint of its own.
#[tokio::test(flavor = "multi_thread")]
async fn a_taken_metrics_port_does_not_stop_the_worker() {
    let topics = test_support::unique_topics();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = test_support::worker_config(&topics, "invoices");
    config.metrics_listen = Some(taken.local_addr().unwrap());
    let worker = InProcessWorker::spawn(|shutdown| invoice_generator::run(config, shutdown));
    let client = test_support::client(&topics).await;
    let reply = client
        .call(
            RequestKind::Invoice,
            &invoice_request("Sidecar"),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert!(matches!(
        reply.content,
        ReplyContent::Invoice(Outcome::Ok(_))
    ));
    worker.stop().await;
}
