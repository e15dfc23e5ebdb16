//! The real `invoice-generator` binary as a child process against a real broker: killed,
//! terminated and restarted mid-stream, and re-reading its topic with `--reset`.

mod common;

use common::WorkerProcess;
use contract::{RequestKind, Topics, legacy};
use invoice_generator::invoice_number;
use request_reply::config::TopicSettings;
use request_reply::headers::CorrelationId;
use request_reply::kafka::Outgoing;
use request_reply::requester::{Client, IncomingReply, RequestError, Requester};
use request_reply::responder::Origin;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use test_support::{GROUP_TIMEOUT, InProcessWorker, REPLY_TIMEOUT};
use tokio::task::JoinHandle;

const BINARY: &str = env!("CARGO_BIN_EXE_invoice-generator");
/// Long enough for a replacement worker to start and for the group to drop a killed member
/// (the worker's session.timeout.ms is 10 s).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// A graceful shutdown must be at least this prompt.
const EXIT_TIMEOUT: Duration = Duration::from_secs(15);
const REQUESTS: usize = 200;

/// A stream of invoice requests sent in batches; each request awaits its reply in a task.
struct RequestStream {
    client: Arc<Client<Topics>>,
    answered: Arc<AtomicUsize>,
    calls: Vec<Call>,
}

/// One request's call: its customer, and the reply or why there was none.
type Call = JoinHandle<(String, Result<IncomingReply<Topics>, RequestError>)>;

impl RequestStream {
    async fn connect(topics: &TopicSettings) -> Self {
        let client = Client::connect(
            &test_support::kafka(),
            topics,
            test_support::topics(topics),
            "requester",
        )
        .await
        .unwrap();
        RequestStream {
            client: Arc::new(client),
            answered: Arc::default(),
            calls: Vec::new(),
        }
    }

    /// Sends the requests of customers `numbers` all at once; returns when the broker has them.
    async fn send(&mut self, numbers: Range<usize>) {
        let client = &self.client;
        let sent = futures::future::join_all(numbers.map(|number| async move {
            let customer = format!("customer {number}");
            let id = CorrelationId::generate();
            let reply = client.expect_reply(&id);
            let request = common::invoice_request(&customer);
            client
                .requester()
                .send(RequestKind::Invoice, &id, &request)
                .await
                .unwrap();
            (customer, id, reply)
        }))
        .await;
        for (customer, id, reply) in sent {
            let client = Arc::clone(&self.client);
            let answered = Arc::clone(&self.answered);
            self.calls.push(tokio::spawn(async move {
                let reply = client.await_reply(&id, reply, CALL_TIMEOUT).await;
                if reply.is_ok() {
                    answered.fetch_add(1, Ordering::SeqCst);
                }
                (customer, reply)
            }));
        }
    }

    fn answered(&self) -> usize {
        self.answered.load(Ordering::SeqCst)
    }

    async fn wait_answered(&self, at_least: usize) {
        test_support::wait_for(&format!("{at_least} replies"), REPLY_TIMEOUT, || {
            std::future::ready((self.answered() >= at_least).then_some(()))
        })
        .await;
    }

    /// Checks that every request got a reply with its own customer's invoice; returns the
    /// correlation keys.
    async fn assert_all_answered(self) -> Vec<String> {
        let mut keys = Vec::new();
        for call in self.calls {
            let (customer, reply) = call.await.unwrap();
            let reply = reply.unwrap_or_else(|error| panic!("{customer}: {error}"));
            common::expect_invoice(&reply, &customer);
            keys.push(reply.correlation_id.unwrap().key());
        }
        keys
    }
}

/// How many replies the invoice reply topic holds for each correlation key.
async fn read_all_replies(topics: &TopicSettings) -> HashMap<String, usize> {
    let reply_topic = test_support::topics(topics).reply(RequestKind::Invoice);
    let in_topic = test_support::groups::message_count(&reply_topic, topics.partitions);
    let mut reader = test_support::TopicReader::new(&reply_topic, topics.partitions);
    let read = reader
        .read_until("the whole reply topic", REPLY_TIMEOUT, |seen| {
            seen.len() >= in_topic
        })
        .await;
    test_support::count_by_correlation(read)
}

/// A worker process on topics of its own, and a stream of which the first half is sent and at
/// least one request answered.
async fn half_streamed() -> (TopicSettings, WorkerProcess, RequestStream) {
    let topics = test_support::unique_topics();
    test_support::create_topics(&topics, &[]).await;
    let first = WorkerProcess::start(BINARY, &topics, "invoices", &[]);
    let mut stream = RequestStream::connect(&topics).await;
    stream.send(0..REQUESTS / 2).await;
    stream.wait_answered(1).await;
    (topics, first, stream)
}

/// SIGKILL mid-stream loses nothing: a worker is killed after some replies have arrived, the
/// rest of the stream is sent while no worker runs, and a new worker process answers every
/// request still open, including those the killed one had read but not committed (which may
/// thus be answered twice: delivery is at-least-once).
#[tokio::test(flavor = "multi_thread")]
async fn every_request_is_answered_after_a_sigkill() {
    let (topics, mut first, mut stream) = half_streamed().await;
    first.kill();
    let answered_at_kill = stream.answered();
    stream.send(REQUESTS / 2..REQUESTS).await;
    let restarted = Instant::now();
    let _second = WorkerProcess::start(BINARY, &topics, "invoices", &[]);

    let keys = stream.assert_all_answered().await;
    let recovered = restarted.elapsed();
    // One kill means at most one redelivery: each request is answered once or twice.
    let counts = read_all_replies(&topics).await;
    let twice = keys.iter().filter(|key| counts[*key] == 2).count();
    for key in &keys {
        assert!(
            (1..=2).contains(&counts[key]),
            "{} replies to {key}",
            counts[key]
        );
    }
    eprintln!(
        "{answered_at_kill} of {REQUESTS} answered at the SIGKILL, the rest {recovered:?} after \
         the restart; {twice} answered twice"
    );
}

/// With `delivery = exactly_once`, SIGKILL mid-stream leaves neither a gap nor a duplicate: the
/// killed worker's open transaction is aborted (by the coordinator, after the transaction
/// timeout), a new worker process answers every request it had not committed, and the reply
/// topic read committed holds exactly one reply per request.
#[tokio::test(flavor = "multi_thread")]
async fn exactly_once_survives_a_sigkill_without_duplicates() {
    const EXACTLY_ONCE: &str = "delivery=exactly_once";
    let topics = test_support::unique_topics();
    test_support::create_topics(&topics, &[]).await;
    let mut first = WorkerProcess::start_with(BINARY, &topics, "invoices", &[], EXACTLY_ONCE);
    let mut stream = RequestStream::connect(&topics).await;
    stream.send(0..REQUESTS / 2).await;
    stream.wait_answered(1).await;
    first.kill();
    let answered_at_kill = stream.answered();
    stream.send(REQUESTS / 2..REQUESTS).await;
    let restarted = Instant::now();
    let mut second = WorkerProcess::start_with(BINARY, &topics, "invoices", &[], EXACTLY_ONCE);

    let keys = stream.assert_all_answered().await;
    let recovered = restarted.elapsed();
    // Stopped: everything it will ever write is committed.
    second.terminate();
    assert!(second.wait_exit(EXIT_TIMEOUT).await.success());
    let reply_topic = test_support::topics(&topics).reply(RequestKind::Invoice);
    let keys = keys.into_iter().collect();
    test_support::assert_one_committed_reply_each(&reply_topic, topics.partitions, &keys).await;
    eprintln!(
        "{answered_at_kill} of {REQUESTS} answered at the SIGKILL, the rest {recovered:?} after \
         the restart; each exactly once"
    );
}

/// SIGTERM while requests are in flight: the worker finishes what it has started, commits and
/// exits 0 promptly; a restarted worker answers the rest, and since everything answered was
/// committed, no request is answered twice.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_exits_cleanly_and_loses_nothing() {
    let (topics, mut first, mut stream) = half_streamed().await;
    first.terminate();
    let terminated = Instant::now();
    let answered_at_term = stream.answered();
    let status = first.wait_exit(EXIT_TIMEOUT).await;
    assert!(status.success(), "{status}; log:\n{}", first.log());
    eprintln!(
        "{answered_at_term} of {REQUESTS} answered at the SIGTERM; exited {:?} after it",
        terminated.elapsed()
    );
    stream.send(REQUESTS / 2..REQUESTS).await;
    let mut second = WorkerProcess::start(BINARY, &topics, "invoices", &[]);

    let keys = stream.assert_all_answered().await;
    let counts = read_all_replies(&topics).await;
    for key in &keys {
        assert_eq!(counts.get(key), Some(&1), "replies to {key}");
    }

    second.terminate();
    assert!(second.wait_exit(EXIT_TIMEOUT).await.success());
}

/// `--reset` re-reads the request topic from the beginning even though the group has
/// committed it: three plain-text requests answered (and committed) by one worker are
/// answered again, with the same invoice numbers, by the binary started with `--reset`.
#[tokio::test(flavor = "multi_thread")]
async fn reset_answers_committed_requests_again() {
    let topics = test_support::unique_topics();
    test_support::create_topics(&topics, &[]).await;
    let names = test_support::topics(&topics);
    let request_topic = names.request(RequestKind::Invoice);
    let requester = Requester::new(&test_support::kafka(), names.clone(), REPLY_TIMEOUT).unwrap();
    let mut expected = Vec::new();
    for _ in 0..3 {
        let sent = requester
            .send_outgoing(&Outgoing::new(&request_topic, legacy::INVOICE_REQUEST_TEXT))
            .await
            .unwrap();
        expected.push(legacy::invoice_reply_text(invoice_number(Origin {
            partition: sent.partition,
            offset: sent.offset,
        })));
    }
    expected.sort();

    let worker = InProcessWorker::spawn(|shutdown| {
        invoice_generator::run(test_support::worker_config(&topics, "invoices"), shutdown)
    });
    let reply_topic = names.reply(RequestKind::Invoice);
    let mut replies = test_support::TopicReader::new(&reply_topic, topics.partitions);
    replies
        .read_until("three replies", REPLY_TIMEOUT, |seen| seen.len() >= 3)
        .await;
    worker.stop().await;
    let group = test_support::group_id(&topics, "invoices");
    assert_eq!(
        test_support::groups::committed_total(&group, &request_topic, topics.partitions),
        3,
        "the first worker committed all three requests"
    );

    let mut reset = WorkerProcess::start(BINARY, &topics, "invoices", &["--reset"]);
    let read = replies
        .read_until("three more replies", GROUP_TIMEOUT, |seen| seen.len() >= 6)
        .await;
    let texts = |range: Range<usize>| {
        let mut texts: Vec<String> = read[range].iter().map(|reply| reply.text()).collect();
        texts.sort();
        texts
    };
    assert_eq!(texts(0..3), expected);
    assert_eq!(texts(3..6), expected);

    reset.terminate();
    assert!(reset.wait_exit(EXIT_TIMEOUT).await.success());
    assert_eq!(
        test_support::groups::message_count(&reply_topic, topics.partitions),
        6,
        "each request answered once per worker"
    );
}

#[test]
fn version_and_help_name_the_worker() {
    for flag in ["--version", "--help"] {
        let output = std::process::Command::new(BINARY)
            .arg(flag)
            .output()
            .unwrap();
        assert!(output.status.success(), "{flag} failed");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            text.contains("invoice-generator"),
            "{flag} does not name the worker: {text}"
        );
    }
}
