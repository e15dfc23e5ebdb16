//! A service that waits (as one calling a database would) against a real broker: requests with
//! different Kafka keys are handled alongside each other, requests with the same key one after
//! another in log order, and a request still being handled holds back the commit of everything
//! after it in its partition, so a crash redelivers it.

mod common;

use common::{EchoReply, EchoTopics};
use request_reply::headers::{CorrelationId, TraceContext};
use request_reply::requester::Client;
use request_reply::responder::{self, Failure, Origin, Service};
use request_reply::testing::{Echo, EchoRequest, EchoService};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use test_support::REPLY_TIMEOUT;
use tokio::sync::{Semaphore, oneshot};

/// What the waiting service saw.
#[derive(Default)]
struct Seen {
    /// Per customer (the request's Kafka key): the offsets handled, in the order started.
    started: HashMap<String, Vec<i64>>,
    /// Customers being handled right now.
    busy: HashSet<String>,
    /// A customer was handled twice at once.
    overlaps: Vec<String>,
}

/// Waits `pause` in every request, recording what runs when; a customer named `hold` waits
/// until `release` has a permit.
#[derive(Clone)]
struct Waiting {
    pause: Duration,
    seen: Arc<Mutex<Seen>>,
    running: Arc<AtomicUsize>,
    most_running: Arc<AtomicUsize>,
    release: Arc<Semaphore>,
}

impl Waiting {
    fn new(pause: Duration) -> Self {
        Waiting {
            pause,
            seen: Arc::default(),
            running: Arc::default(),
            most_running: Arc::default(),
            release: Arc::new(Semaphore::new(0)),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap()
    }
}

impl Service for Waiting {
    type Request = EchoRequest;
    type Response = Echo;

    async fn handle(&self, request: EchoRequest, origin: Origin) -> Result<Echo, Failure> {
        let customer = request.customer.clone();
        {
            let mut seen = self.seen();
            if !seen.busy.insert(customer.clone()) {
                seen.overlaps.push(customer.clone());
            }
            seen.started
                .entry(customer.clone())
                .or_default()
                .push(origin.offset);
        }
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_running.fetch_max(now, Ordering::SeqCst);
        if customer == "hold" {
            let _permit = self.release.acquire().await;
        } else {
            tokio::time::sleep(self.pause).await;
        }
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.seen().busy.remove(&customer);
        EchoService.handle(request, origin).await
    }

    async fn handle_text(&self, text: &str, origin: Origin) -> Result<String, Failure> {
        EchoService.handle_text(text, origin).await
    }
}

/// Sends an echo request for `customer`, keyed by the customer, to `partition`.
async fn send_keyed(
    client: &Client<EchoTopics>,
    partition: i32,
    customer: &str,
) -> (CorrelationId, oneshot::Receiver<EchoReply>) {
    let id = CorrelationId::generate();
    let mut message = client.requester().request_message(
        (),
        &id,
        &common::echo_request(customer),
        &TraceContext::new_root(),
        None,
    );
    message.key = Some(customer.as_bytes().to_vec());
    let reply = test_support::send_to_partition(client, &id, message, partition).await;
    (id, reply)
}

fn start(
    topics: &request_reply::config::TopicSettings,
    service: Waiting,
) -> tokio::task::JoinHandle<Result<(), responder::WorkerError>> {
    let route = common::route(topics);
    let config = common::worker_config(topics, "waiting");
    tokio::spawn(
        async move { responder::run(service, &route, config, std::future::pending()).await },
    )
}

const KEYS: usize = 8;
const PER_KEY: usize = 6;

/// 8 customers × 6 requests, interleaved on one partition, each handled for 50 ms: handled
/// serially that would take 2.4 s; different customers run alongside each other, each
/// customer's requests one at a time and in log order, and every reply arrives.
#[tokio::test(flavor = "multi_thread")]
async fn different_keys_run_alongside_each_other_and_each_key_keeps_its_order() {
    let topics = test_support::unique_topics();
    common::create_topics(&topics).await;
    let service = Waiting::new(Duration::from_millis(50));
    let worker = start(&topics, service.clone());
    let client = common::connect(&topics).await;

    let mut pending = Vec::new();
    for round in 0..PER_KEY {
        for key in 0..KEYS {
            let customer = format!("customer {key}");
            let (id, reply) = send_keyed(&client, 0, &customer).await;
            pending.push((id, customer, round, reply));
        }
    }
    for (id, customer, _, reply) in pending {
        let reply = client.await_reply(&id, reply, REPLY_TIMEOUT).await.unwrap();
        common::expect_echo(&reply, &customer);
    }

    let seen = service.seen();
    assert!(
        seen.overlaps.is_empty(),
        "same key handled at once: {:?}",
        seen.overlaps
    );
    assert_eq!(seen.started.len(), KEYS);
    for (customer, offsets) in &seen.started {
        assert_eq!(offsets.len(), PER_KEY, "{customer}: {offsets:?}");
        assert!(
            offsets.windows(2).all(|pair| pair[0] < pair[1]),
            "{customer} handled out of log order: {offsets:?}"
        );
    }
    let most = service.most_running.load(Ordering::SeqCst);
    assert!(most > 1, "no two requests were ever handled at once");
    assert!(most <= KEYS, "more at once ({most}) than there are keys");
    worker.abort();
}

/// A request still being handled holds back its partition's commit while the requests behind
/// it are answered; when the worker dies (its task dropped, as a crash would), a new worker
/// gets that request again and answers it.
#[tokio::test(flavor = "multi_thread")]
async fn an_unfinished_request_holds_back_the_commit_and_is_redelivered_after_a_crash() {
    let topics = test_support::unique_topics();
    common::create_topics(&topics).await;
    let first = Waiting::new(Duration::ZERO);
    let worker = start(&topics, first.clone());
    let client = common::connect(&topics).await;

    let (held_id, held) = send_keyed(&client, 0, "hold").await;
    for index in 0..5 {
        let customer = format!("quick {index}");
        let (id, reply) = send_keyed(&client, 0, &customer).await;
        let reply = client.await_reply(&id, reply, REPLY_TIMEOUT).await.unwrap();
        common::expect_echo(&reply, &customer);
    }
    // A request on another partition, answered and committed: the commit that carries it
    // carries whatever partition 0 had stored too, so partition 0's commit is read after it.
    let (id, reply) = send_keyed(&client, 1, "elsewhere").await;
    let reply = client.await_reply(&id, reply, REPLY_TIMEOUT).await.unwrap();
    common::expect_echo(&reply, "elsewhere");
    let group = test_support::group_id(&topics, "waiting");
    let request_topic = common::route(&topics).request_topic;
    let committed = test_support::wait_for(
        "the other partition's commit",
        Duration::from_secs(30),
        || async {
            let offsets = test_support::groups::committed_offsets(&group, &request_topic, 2);
            (offsets[1] == 1).then_some(offsets)
        },
    )
    .await;
    assert_eq!(
        committed[0], 0,
        "partition 0's commit went past its unfinished request at offset 0: {committed:?}"
    );

    worker.abort();
    let _ = worker.await;
    let second = Waiting::new(Duration::ZERO);
    second.release.add_permits(1);
    let worker = start(&topics, second.clone());
    let reply = client
        .await_reply(&held_id, held, REPLY_TIMEOUT)
        .await
        .unwrap();
    let echo = common::expect_echo(&reply, "hold");
    assert_eq!(echo.offset, 0);
    assert_eq!(second.seen().started["hold"], vec![0]);
    worker.abort();
}
