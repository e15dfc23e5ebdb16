//! Exactly-once delivery against a real broker: replies and offsets committed in transactions,
//! batched, and read back by a `read_committed` reader exactly once each.

mod common;

use prometheus_client::registry::Registry;
use request_reply::history::{LogMessage, RecordReader, read_recent};
use request_reply::metrics::WorkerMetrics;
use request_reply::responder::{self, Delivery, Failure, Origin, Service, TransactionPolicy};
use request_reply::testing::{Echo, EchoRequest, EchoService};
use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;
use test_support::{InProcessWorker, REPLY_TIMEOUT};
use tokio::sync::Notify;

const REQUESTS: usize = 300;
/// Well below what a history read takes to give up (a minute), well above what it takes.
const HISTORY_READ_LIMIT: Duration = Duration::from_secs(20);

/// 300 concurrent requests to a transactional worker get one reply each, the reply topic holds
/// exactly one committed reply per request, and the requests were answered in fewer
/// transactions than requests (batched), none aborted.
#[tokio::test(flavor = "multi_thread")]
async fn every_request_is_answered_once_in_batched_transactions() {
    let topics = test_support::unique_topics();
    common::create_topics(&topics).await;
    let mut config = common::worker_config(&topics, "exactly-once");
    config.delivery = Delivery::ExactlyOnce(TransactionPolicy::default());
    let (worker, metrics) = start_counted(EchoService, &topics, config);
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

    test_support::assert_one_committed_reply_each(
        &common::route(&topics).reply_topic,
        topics.partitions,
        &ids,
    )
    .await;
    let committed = metrics.transactions_committed.get();
    assert!(
        (1..REQUESTS as u64).contains(&committed),
        "{committed} transactions for {REQUESTS} concurrent requests: not batched"
    );
    assert_eq!(metrics.transactions_aborted.get(), 0);

    // Read back as a restarted dashboard does: its history and its dead-letter page's reader
    // reach the end of partitions whose last offset is a commit marker, which no message
    // announces, well before they would give up.
    let reply_topic = common::route(&topics).reply_topic;
    let mut history_replies = HashSet::new();
    tokio::time::timeout(
        HISTORY_READ_LIMIT,
        read_recent(
            &test_support::kafka(),
            &common::routes(&topics),
            "exactly-once-history",
            REQUESTS,
            |message| {
                if let LogMessage::Reply(reply, _) = message {
                    history_replies.extend(reply.correlation_id.map(|id| id.key()));
                }
            },
        ),
    )
    .await
    .expect("the history read did not reach the commit markers at the ends")
    .unwrap();
    assert_eq!(history_replies, ids);
    let reader = RecordReader::new(&test_support::kafka(), "exactly-once-reader").unwrap();
    let last = tokio::task::block_in_place(|| {
        reader.read_last(&reply_topic, 5, HISTORY_READ_LIMIT, |_| ())
    })
    .unwrap();
    assert!(last.complete, "the last replies were not read to the end");
    assert!(!last.messages.is_empty());
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
    let (worker, metrics) = start_counted(EchoService, &topics, config);
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

/// `service` answering on the echo route under `topics` with `config`, and the counters it
/// keeps (transactions committed and aborted among them).
fn start_counted<S: Service>(
    service: S,
    topics: &request_reply::config::TopicSettings,
    config: responder::WorkerConfig,
) -> (InProcessWorker, WorkerMetrics) {
    let metrics = WorkerMetrics::register(&mut Registry::default());
    let (route, counted) = (common::route(topics), metrics.clone());
    let worker = InProcessWorker::spawn(|shutdown| async move {
        Ok(responder::run_with_metrics(service, &route, config, counted, shutdown).await?)
    });
    (worker, metrics)
}

/// Answers like [`EchoService`], but holds the request of one customer until the test releases
/// it, and says when it has it.
#[derive(Clone)]
struct Gate {
    customer: &'static str,
    holding: Arc<Notify>,
    release: Arc<Notify>,
}

impl Service for Gate {
    type Request = EchoRequest;
    type Response = Echo;

    async fn handle(&self, request: EchoRequest, origin: Origin) -> Result<Echo, Failure> {
        if request.customer == self.customer {
            self.holding.notify_one();
            self.release.notified().await;
        }
        EchoService.handle(request, origin).await
    }

    async fn handle_text(&self, text: &str, origin: Origin) -> Result<String, Failure> {
        EchoService.handle_text(text, origin).await
    }
}

/// A zombie is fenced: a worker whose one request slot is held by a request its service has not
/// finished stops polling, and the group puts it out after `max.poll.interval.ms`; a second
/// worker answers that request. When the first worker's service finally answers, it cannot
/// commit its reply: its transaction is aborted, and every request has exactly one committed
/// reply in the log although both workers answered the held one. A client that reads
/// uncommitted messages sees the aborted reply as well: why requesters must read committed.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_put_out_of_its_group_cannot_commit_its_reply() {
    let topics = test_support::unique_topics();
    common::create_topics(&topics).await;
    let exactly_once = |config: &mut responder::WorkerConfig| {
        config.delivery = Delivery::ExactlyOnce(TransactionPolicy::default());
    };
    let mut zombie_config = common::worker_config(&topics, "fenced");
    exactly_once(&mut zombie_config);
    // Holding one request it reads no more, so it stops polling; the group notices after this.
    zombie_config.max_in_flight = NonZeroUsize::MIN;
    zombie_config
        .kafka
        .consumer
        .insert("max.poll.interval.ms".into(), "7000".into());
    let gate = Gate {
        customer: "held",
        holding: Arc::new(Notify::new()),
        release: Arc::new(Notify::new()),
    };
    let (zombie, zombie_metrics) = start_counted(gate.clone(), &topics, zombie_config);
    let group = test_support::group_id(&topics, "fenced");
    test_support::groups::wait_for_stable_group(&group, 1, test_support::GROUP_TIMEOUT).await;
    let client = Arc::new(common::connect(&topics).await);
    let before = client
        .call((), &common::echo_request("before"), REPLY_TIMEOUT)
        .await
        .unwrap();
    common::expect_echo(&before, "before");

    let held = tokio::spawn({
        let client = Arc::clone(&client);
        async move {
            client
                .call((), &common::echo_request("held"), REPLY_TIMEOUT)
                .await
        }
    });
    tokio::time::timeout(REPLY_TIMEOUT, gate.holding.notified())
        .await
        .expect("the first worker got the held request");
    let mut successor_config = common::worker_config(&topics, "fenced");
    exactly_once(&mut successor_config);
    let successor = common::start_worker(&topics, successor_config);
    // Answered by the successor once the group has put the first worker out.
    let reply = held.await.unwrap().unwrap();
    common::expect_echo(&reply, "held");

    // The first worker's service answers now, in a transaction that must not commit.
    let committed_before = zombie_metrics.transactions_committed.get();
    gate.release.notify_one();
    test_support::wait_for(
        "the first worker's transaction aborted",
        REPLY_TIMEOUT,
        || std::future::ready((zombie_metrics.transactions_aborted.get() >= 1).then_some(())),
    )
    .await;
    assert_eq!(
        zombie_metrics.transactions_committed.get(),
        committed_before,
        "the first worker committed after it was put out"
    );
    zombie.stop().await;
    successor.stop().await;

    let ids = [&before, &reply]
        .iter()
        .map(|reply| reply.correlation_id.as_ref().expect("correlated").key())
        .collect();
    let reply_topic = common::route(&topics).reply_topic;
    test_support::assert_one_committed_reply_each(&reply_topic, topics.partitions, &ids).await;
    let held_key = reply.correlation_id.as_ref().expect("correlated").key();
    let mut uncommitted = test_support::TopicReader::uncommitted(&reply_topic, topics.partitions);
    uncommitted
        .read_until(
            "the aborted reply, read uncommitted",
            REPLY_TIMEOUT,
            |seen| test_support::count_by_correlation(seen).get(&held_key) == Some(&2),
        )
        .await;
}
