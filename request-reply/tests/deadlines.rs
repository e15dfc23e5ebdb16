//! Deadlines against a real broker: requests that waited in their topic past the time their
//! requester stopped waiting (a worker was down) are answered `deadline_exceeded` without being
//! handled, while a request still in time behind them is answered as usual.

mod common;

use prometheus_client::registry::Registry;
use request_reply::deadline::Deadline;
use request_reply::envelope::ErrorCode;
use request_reply::headers::{CorrelationId, TraceContext};
use request_reply::metrics::WorkerMetrics;
use request_reply::responder;
use std::time::{Duration, SystemTime};
use test_support::{InProcessWorker, REPLY_TIMEOUT, TopicReader};

const EXPIRED: usize = 3;

#[tokio::test(flavor = "multi_thread")]
async fn requests_past_their_deadline_are_not_handled_and_their_requesters_learn_why() {
    let topics = test_support::unique_topics();
    common::create_topics(&topics).await;
    let client = common::connect(&topics).await;
    let requester = client.requester();

    // Sent while no worker runs: three whose requesters gave up a second ago, then one that is
    // still awaited, all on one partition so the last is read after the others.
    let mut pending = Vec::new();
    let gave_up = Deadline::at(SystemTime::now() - Duration::from_secs(1));
    let still_awaited = Deadline::after(Duration::from_secs(120));
    for (index, deadline) in [gave_up, gave_up, gave_up, still_awaited]
        .into_iter()
        .enumerate()
    {
        let id = CorrelationId::generate();
        let customer = format!("customer {index}");
        let message = requester.request_message(
            (),
            &id,
            &common::echo_request(&customer),
            &TraceContext::new_root(),
            Some(deadline),
        );
        let reply = test_support::send_to_partition(&client, &id, message, 0).await;
        pending.push((id, customer, reply));
    }

    let mut registry = Registry::default();
    let metrics = WorkerMetrics::register(&mut registry);
    let worker = {
        let route = common::route(&topics);
        let config = common::worker_config(&topics, "deadlines");
        let metrics = metrics.clone();
        InProcessWorker::spawn(|shutdown| async move {
            Ok(responder::run_with_metrics(
                request_reply::testing::EchoService,
                &route,
                config,
                metrics,
                shutdown,
            )
            .await?)
        })
    };

    let mut pending = pending.into_iter();
    for (id, customer, reply) in pending.by_ref().take(EXPIRED) {
        let reply = client.await_reply(&id, reply, REPLY_TIMEOUT).await.unwrap();
        let error = common::error_of(&reply)
            .unwrap_or_else(|| panic!("{customer}: expected an error reply, got {reply:?}"));
        assert_eq!(error.code, ErrorCode::DeadlineExceeded, "{customer}");
        assert!(error.message.contains("deadline"), "{}", error.message);
    }
    let (id, customer, reply) = pending.next().unwrap();
    let reply = client.await_reply(&id, reply, REPLY_TIMEOUT).await.unwrap();
    common::expect_echo(&reply, &customer);

    assert_eq!(metrics.deadline_exceeded.get(), EXPIRED as u64);
    assert_eq!(metrics.handled.get(), 1);
    assert_eq!(
        metrics.dead_lettered.get(),
        0,
        "nothing expired is dead-lettered"
    );
    worker.stop().await;
}

/// `Client::call` sends the end of its wait as the request's deadline.
#[tokio::test(flavor = "multi_thread")]
async fn a_call_carries_its_timeout_as_the_deadline() {
    let topics = test_support::unique_topics();
    common::create_topics(&topics).await;
    let worker = common::start_worker(&topics, common::worker_config(&topics, "deadlines"));
    let client = common::connect(&topics).await;
    let before = SystemTime::now();
    let reply = client
        .call((), &common::echo_request("Timed Ltd"), REPLY_TIMEOUT)
        .await
        .unwrap();
    common::expect_echo(&reply, "Timed Ltd");
    let mut requests = TopicReader::new(&common::route(&topics).request_topic, topics.partitions);
    let sent = requests
        .read_until("the request", REPLY_TIMEOUT, |seen| !seen.is_empty())
        .await;
    let deadline = sent[0]
        .headers
        .last(request_reply::headers::DEADLINE)
        .and_then(Deadline::parse)
        .expect("the request carries a deadline");
    let expected = Deadline::at(before + REPLY_TIMEOUT).unix_millis();
    let sent_within = Deadline::at(SystemTime::now() + REPLY_TIMEOUT).unix_millis();
    assert!(
        (expected..=sent_within).contains(&deadline.unix_millis()),
        "deadline {} not the call's timeout from when it was sent ({expected}..={sent_within})",
        deadline.unix_millis()
    );
    worker.stop().await;
}
