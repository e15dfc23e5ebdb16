//! Exactly-once delivery against a real broker: replies and offsets committed in transactions,
//! batched, and read back by a `read_committed` reader exactly once each.

mod common;

use prometheus_client::registry::Registry;
use request_reply::metrics::WorkerMetrics;
use request_reply::responder::{self, Delivery, TransactionPolicy};
use request_reply::testing::EchoService;
use std::collections::HashSet;
use std::time::Duration;
use test_support::{InProcessWorker, REPLY_TIMEOUT};

const REQUESTS: usize = 300;

/// 300 concurrent requests to a transactional worker get one reply each, the reply topic holds
/// exactly one committed reply per request, and the requests were answered in fewer
/// transactions than requests (batched), none aborted.
#[tokio::test(flavor = "multi_thread")]
async fn every_request_is_answered_once_in_batched_transactions() {
    let topics = test_support::unique_topics();
    common::create_topics(&topics).await;
    let mut config = common::worker_config(&topics, "exactly-once");
    config.delivery = Delivery::ExactlyOnce(TransactionPolicy::default());
    let metrics = WorkerMetrics::register(&mut Registry::default());
    let route = common::route(&topics);
    let counted = metrics.clone();
    let worker = InProcessWorker::spawn(|shutdown| async move {
        Ok(responder::run_with_metrics(EchoService, &route, config, counted, shutdown).await?)
    });
    let client = common::connect(&topics).await;

    let customers: Vec<String> = (0..REQUESTS).map(|i| format!("customer {i}")).collect();
    let replies = futures::future::join_all(customers.iter().map(|customer| async {
        let request = common::echo_request(customer);
        client.call((), &request, REPLY_TIMEOUT).await
    }))
    .await;
    let mut ids = HashSet::new();
    for (customer, reply) in customers.iter().zip(replies) {
        let reply = reply.unwrap_or_else(|error| panic!("{customer}: {error}"));
        common::expect_echo(&reply, customer);
        ids.insert(reply.correlation_id.expect("replies are correlated").key());
    }
    assert_eq!(ids.len(), REQUESTS);
    // Stopped: everything it will ever write is committed.
    worker.stop().await;

    let read = test_support::read_committed_to_end(
        &common::route(&topics).reply_topic,
        topics.partitions,
        "every committed reply",
        REPLY_TIMEOUT,
        |seen| seen.len() >= REQUESTS,
    )
    .await;
    let counts = test_support::count_by_correlation(&read);
    for id in &ids {
        assert_eq!(counts.get(id), Some(&1), "replies for {id}");
    }
    assert_eq!(counts.len(), ids.len(), "replies nobody asked for");
    let committed = metrics.transactions_committed.get();
    assert!(
        (1..REQUESTS as u64).contains(&committed),
        "{committed} transactions for {REQUESTS} concurrent requests: not batched"
    );
    assert_eq!(metrics.transactions_aborted.get(), 0);
}

/// A transaction may also be committed after every request (`max_requests` 1): each request
/// still gets exactly one reply, in as many transactions.
#[tokio::test(flavor = "multi_thread")]
async fn one_request_per_transaction_still_answers_once() {
    let topics = test_support::unique_topics();
    common::create_topics(&topics).await;
    let mut config = common::worker_config(&topics, "exactly-once");
    config.delivery = Delivery::ExactlyOnce(TransactionPolicy {
        max_requests: std::num::NonZeroUsize::MIN,
        max_wait: Duration::from_millis(20),
    });
    let metrics = WorkerMetrics::register(&mut Registry::default());
    let route = common::route(&topics);
    let counted = metrics.clone();
    let worker = InProcessWorker::spawn(|shutdown| async move {
        Ok(responder::run_with_metrics(EchoService, &route, config, counted, shutdown).await?)
    });
    let client = common::connect(&topics).await;
    let customers: Vec<String> = (0..20).map(|i| format!("customer {i}")).collect();
    let replies = futures::future::join_all(customers.iter().map(|customer| async {
        client
            .call((), &common::echo_request(customer), REPLY_TIMEOUT)
            .await
    }))
    .await;
    for (customer, reply) in customers.iter().zip(replies) {
        let reply = reply.unwrap_or_else(|error| panic!("{customer}: {error}"));
        common::expect_echo(&reply, customer);
    }
    worker.stop().await;
    assert_eq!(metrics.transactions_committed.get(), 20);
}
