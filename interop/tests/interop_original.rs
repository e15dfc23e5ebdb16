//! The original stack against ours, on a real broker. The peers in `peers/` behave on the
//! wire exactly like the services this project re-creates: Python workers with confluent-kafka
//! (`python/*/src/*.py`) and a Node.js dashboard with KafkaJS (`node/dashboard.js`). Each pairing
//! exchanges at least 50 plain-text requests, every one answered:
//!
//! - the Rust dashboard with both Python workers: their replies show as uncorrelated, numbers
//!   read out of the text;
//! - the Node dashboard with both Rust workers: they answer in the Python workers' text forms;
//! - one Rust and one Python invoice worker in one consumer group: both get partitions, and every
//!   request is answered exactly once.
//!
//! The peers run as child processes with the interpreters that `peers/install` sets up
//! (`scripts/test` runs it first): `.cache/peers/venv/bin/python` and `node` from `PATH`, with
//! `peers/node/node_modules`. Their one deviation from the originals is a topic namespace
//! (`TOPIC_PREFIX`, or `[topics] prefix` for the Python workers), so each test has topics of its
//! own. A child process is killed when its handle drops; its output is printed if the test fails.

#[allow(dead_code)] // each test binary uses only some of the shared helpers
mod common;

use common::System;
use common::peers::PeerProcess;
use contract::{RequestKind, legacy, legacy::LegacyReply};
use request_reply::config::TopicSettings;
use request_reply::kafka::Outgoing;
use request_reply::requester::{Requester, SentRequest};
use request_reply::responder::Origin;
use serde_json::json;
use service::worker::{WorkerConfig, WorkerError};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;
use test_support::groups::{committed_total, message_count, wait_for_stable_group};
use test_support::{ReadMessage, TopicReader};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Bound for anything that waits on a consumer group forming, or on a batch of replies.
const TIMEOUT: Duration = Duration::from_secs(90);

/// Rust dashboard + Python workers: the dashboard sends its usual JSON requests, the Python
/// workers answer each with plain text and no headers, and the dashboard shows every one of those
/// replies in its uncorrelated feed, with the number read out of the text. None of them completes
/// a request: there is nothing to correlate them by.
#[tokio::test(flavor = "multi_thread")]
async fn rust_dashboard_shows_the_python_workers_replies_as_uncorrelated() {
    /// Requests of each kind: 60 in all, within the 100 the feed keeps.
    const PER_KIND: usize = 30;
    // A request timeout well beyond the test, so every request still reads "pending" at the end.
    let system = System::start_with(false, Duration::from_secs(600)).await;
    let topics = test_support::topics(&system.topics);
    let prefix = &system.topics.prefix;
    let _invoices = PythonWorker::start(
        RequestKind::Invoice,
        &system.topics,
        &format!("{prefix}invoice-generator"),
    );
    let _scores = PythonWorker::start(
        RequestKind::Score,
        &system.topics,
        &format!("{prefix}score-calculator"),
    );

    let mut ids = Vec::new();
    for index in 0..PER_KIND {
        let customer = format!("customer-{index}");
        let invoice = json!({"customer": customer, "lines": [{"description": "Widget", "quantity": 1, "unit_price_cents": 100}]});
        ids.push(system.post_api("/api/invoices", &invoice).await);
        ids.push(
            system
                .post_api("/api/scores", &json!({"customer": customer}))
                .await,
        );
    }

    let home = system.dashboard.url("/");
    let http = &system.http;
    let feed = test_support::wait_for(
        &format!("{} uncorrelated replies on the home page", 2 * PER_KIND),
        TIMEOUT,
        || async {
            let html = http.get(&home).send().await.ok()?.text().await.ok()?;
            let feed = uncorrelated_feed(&html);
            (feed.len() >= 2 * PER_KIND).then_some(feed)
        },
    )
    .await;
    assert_eq!(feed.len(), 2 * PER_KIND, "more replies than requests");

    // Each entry: the right kind and reply topic, the Python text form, the number read out of it.
    let mut per_kind = HashMap::new();
    for entry in &feed {
        let kind = match entry.kind.as_str() {
            "invoice" => RequestKind::Invoice,
            "score" => RequestKind::Score,
            other => panic!("unknown kind {other:?} in {entry:?}"),
        };
        *per_kind.entry(kind).or_insert(0) += 1;
        assert!(
            entry
                .position
                .starts_with(&format!("{}/", topics.reply(kind))),
            "{entry:?}"
        );
        let number = entry
            .number
            .unwrap_or_else(|| panic!("no number: {entry:?}"));
        match kind {
            RequestKind::Invoice => {
                assert!((1000..=99_999).contains(&number), "{entry:?}");
                assert_eq!(entry.text, legacy::invoice_reply_text(number));
            }
            RequestKind::Score => {
                assert!((100..=9999).contains(&number), "{entry:?}");
                let score = u32::try_from(number).unwrap();
                assert_eq!(entry.text, legacy::score_reply_text(score));
            }
        }
    }
    assert_eq!(per_kind[&RequestKind::Invoice], PER_KIND);
    assert_eq!(per_kind[&RequestKind::Score], PER_KIND);

    // The feed shows exactly what is on the wire, and that is bare plain text: no key, no headers.
    let mut on_the_wire = BTreeMap::new();
    for kind in RequestKind::ALL {
        for reply in read_exactly(&topics.reply(kind), &system.topics, PER_KIND).await {
            assert_bare(&reply);
            let position = format!(
                "{}/{}/{}",
                topics.reply(kind),
                reply.partition,
                reply.offset
            );
            on_the_wire.insert(position, reply.text());
        }
    }
    let shown: BTreeMap<String, String> = feed
        .iter()
        .map(|entry| (entry.position.clone(), entry.text.clone()))
        .collect();
    assert_eq!(shown, on_the_wire);

    // A reply without a correlation ID completes nothing.
    for id in &ids {
        let url = system.dashboard.url(&format!("/api/requests/{id}"));
        let state = common::fetch_json(http, &url).await;
        assert_eq!(state["status"], "pending", "{state}");
    }
    system.stop().await;
}

/// Node dashboard + Rust workers: the Node dashboard sends bare plain-text requests and gets every
/// reply in the Python workers' text forms (invoice numbers unique, each score that of the text
/// `Calcular score`, which the Rust score calculator scores as a customer name).
#[tokio::test(flavor = "multi_thread")]
async fn node_dashboard_gets_python_style_replies_from_the_rust_workers() {
    const PER_KIND: usize = 25;
    let settings = test_support::unique_topics();
    let topics = test_support::topics(&settings);
    // Every topic exists before anyone subscribes (the broker does not create topics).
    create_request_and_reply_topics(&settings).await;
    let invoices = InProcessWorker::spawn(
        test_support::worker_config(&settings, "invoices"),
        invoice_generator::run,
    );
    // The score worker answers in transactions, which the Node dashboard (KafkaJS, reading
    // committed messages) must not notice.
    let scores = InProcessWorker::spawn(
        test_support::exactly_once_worker_config(&settings, "scores"),
        score_calculator::run,
    );

    let mut dashboard = NodeDashboard::run(&settings, PER_KIND, PER_KIND);
    let status = dashboard.wait_exit(TIMEOUT + Duration::from_secs(30)).await;
    assert!(status.success(), "node dashboard: {status}");
    let printed = dashboard.stdout();
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 2 * PER_KIND, "{printed}");

    let mut invoice_numbers = BTreeSet::new();
    let mut scores_seen = 0;
    let expected_score = score_calculator::score_of(legacy::SCORE_REQUEST_TEXT);
    for line in &lines {
        match legacy::parse_reply_text(line) {
            Some(LegacyReply::Invoice { number }) => {
                assert_eq!(*line, legacy::invoice_reply_text(number));
                assert!(invoice_numbers.insert(number), "{number} twice: {printed}");
            }
            Some(LegacyReply::Score { .. }) => {
                assert_eq!(*line, legacy::score_reply_text(expected_score));
                scores_seen += 1;
            }
            None => panic!("not one of the Python workers' forms: {line:?}"),
        }
    }
    assert_eq!(invoice_numbers.len(), PER_KIND);
    assert_eq!(scores_seen, PER_KIND);

    // On the wire: the Node dashboard's requests and the Rust workers' replies are bare text.
    for (kind, text) in [
        (RequestKind::Invoice, legacy::INVOICE_REQUEST_TEXT),
        (RequestKind::Score, legacy::SCORE_REQUEST_TEXT),
    ] {
        for request in read_exactly(&topics.request(kind), &settings, PER_KIND).await {
            assert_bare(&request);
            assert_eq!(request.text(), text);
        }
        for reply in read_exactly(&topics.reply(kind), &settings, PER_KIND).await {
            assert_bare(&reply);
        }
    }
    invoices.stop().await;
    scores.stop().await;
}

/// One Rust and one Python invoice worker in the same consumer group: once the group is stable
/// with both, each has partitions; plain-text requests spread over every partition are each
/// answered exactly once, by the worker that owns the partition.
#[tokio::test(flavor = "multi_thread")]
async fn rust_and_python_invoice_workers_share_one_consumer_group() {
    const REQUESTS: usize = 60;
    const RUST_CLIENT_ID: &str = "rust-invoice-generator";
    let settings = test_support::unique_topics();
    let partitions = settings.partitions;
    let topics = test_support::topics(&settings);
    let request_topic = topics.request(RequestKind::Invoice);
    let reply_topic = topics.reply(RequestKind::Invoice);
    create_request_and_reply_topics(&settings).await;

    let mut rust_config = test_support::worker_config(&settings, "invoices");
    rust_config
        .responder
        .kafka
        .consumer
        .insert("client.id".into(), RUST_CLIENT_ID.into());
    let group = rust_config.responder.kafka.consumer["group.id"].clone();
    let rust = InProcessWorker::spawn(rust_config, invoice_generator::run);
    let python = PythonWorker::start(RequestKind::Invoice, &settings, &group);

    let before = wait_for_stable_group(&group, 2, TIMEOUT).await;
    let rust_partitions = before.partitions_of(|client_id| client_id == RUST_CLIENT_ID);
    let python_partitions = before.partitions_of(|client_id| client_id != RUST_CLIENT_ID);
    assert!(!rust_partitions.is_empty(), "{before:?}");
    assert!(!python_partitions.is_empty(), "{before:?}");

    // The original dashboard's requests, spread over every partition so both workers get some.
    let requester = Requester::new(
        &test_support::kafka(),
        topics.clone(),
        Duration::from_secs(30),
    )
    .unwrap();
    let send = |partition: i32| {
        let mut request = Outgoing::new(&request_topic, legacy::INVOICE_REQUEST_TEXT);
        request.partition = Some(partition);
        let requester = &requester;
        async move {
            requester
                .send_outgoing(&request)
                .await
                .expect("send a request")
        }
    };
    let mut sent: Vec<SentRequest> = Vec::new();
    for index in 0..REQUESTS {
        sent.push(send(i32::try_from(index).unwrap() % partitions).await);
    }
    let mut replies = TopicReader::new(&reply_topic, partitions);
    replies
        .read_until("a reply to every request", TIMEOUT, |seen| {
            seen.len() >= REQUESTS
        })
        .await;
    // One more full round trip on every partition: once those are answered and the group has
    // committed everything, any duplicate of an earlier reply would already be on the topic.
    for partition in 0..partitions {
        sent.push(send(partition).await);
    }
    let total = sent.len();
    replies
        .read_until("the last round trip", TIMEOUT, |seen| seen.len() >= total)
        .await;
    test_support::wait_for("the group to commit every request", TIMEOUT, || {
        let committed = committed_total(&group, &request_topic, partitions);
        std::future::ready((committed == total as i64).then_some(()))
    })
    .await;
    assert_eq!(
        message_count(&reply_topic, partitions),
        total,
        "a request was answered twice"
    );
    let seen = replies
        .read_until("every reply", TIMEOUT, |seen| seen.len() >= total)
        .await;
    assert_eq!(seen.len(), total);
    for reply in seen {
        assert_bare(reply);
        assert!(
            matches!(
                legacy::parse_reply_text(&reply.text()),
                Some(LegacyReply::Invoice { number }) if reply.text() == legacy::invoice_reply_text(number)
            ),
            "not the plain-text invoice form: {reply:?}"
        );
    }

    // Each request was answered by the owner of its partition: the Python worker logged exactly
    // its share, and each of the Rust worker's requests got the Rust invoice number (which
    // depends on the request's partition and offset).
    let python_share = sent
        .iter()
        .filter(|request| python_partitions.contains(&request.partition))
        .count();
    assert_eq!(python.consumed(), python_share, "{}", python.output());
    let texts: Vec<String> = seen.iter().map(ReadMessage::text).collect();
    for request in sent
        .iter()
        .filter(|request| rust_partitions.contains(&request.partition))
    {
        let number = invoice_generator::invoice_number(Origin {
            partition: request.partition,
            offset: request.offset,
        });
        assert!(
            texts.contains(&legacy::invoice_reply_text(number)),
            "no Rust reply to {request:?}"
        );
    }

    // Nothing moved while the requests were handled: the same members, the same partitions.
    let after = wait_for_stable_group(&group, 2, TIMEOUT).await;
    assert_eq!(after, before, "the group rebalanced during the test");
    rust.stop().await;
}

/// Creates the request and reply topics of `settings`, as a service would at start-up.
async fn create_request_and_reply_topics(settings: &TopicSettings) {
    request_reply::admin::ensure_request_and_reply_topics(
        &test_support::kafka(),
        settings,
        &test_support::topics(settings),
    )
    .await
    .expect("create the topics");
}

// ------------------------------------------------------------------------------------------------
// The peers

/// The repository's root, where `peers/install` puts the Python virtualenv.
fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the interop crate is inside the repository")
}

fn peers_dir() -> PathBuf {
    common::peers::dir("")
}

/// Fails with what to do when `path` is not there.
fn installed(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run interop/peers/install first (scripts/test does)",
        path.display()
    );
    path
}

/// A fresh directory for a peer called `name` of the test that uses `settings`.
fn scratch_dir(settings: &TopicSettings, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("interop-original-{}{name}", settings.prefix));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// An original Python worker (`python src/<worker>.py config/config.ini`), with a config.ini
/// like the original's: `[default]` bootstrap.servers, `[consumer]` group.id and
/// auto.offset.reset=earliest, plus the peer's `[topics] prefix`.
struct PythonWorker(PeerProcess);

impl PythonWorker {
    fn start(kind: RequestKind, settings: &TopicSettings, group: &str) -> Self {
        let (folder, script) = match kind {
            RequestKind::Invoice => ("invoice-generator", "invoice_generator.py"),
            RequestKind::Score => ("score-calculator", "score_calculator.py"),
        };
        let python = installed(repo_root().join(".cache/peers/venv/bin/python"));
        let home = peers_dir().join("python").join(folder);
        let dir = scratch_dir(settings, folder);
        let config = dir.join("config.ini");
        let ini = format!(
            "[default]\nbootstrap.servers={}\n\n\
             [consumer]\ngroup.id={group}\nauto.offset.reset=earliest\n\n\
             [topics]\nprefix={}\n",
            test_support::kafka().bootstrap_servers(),
            settings.prefix,
        );
        std::fs::write(&config, ini).expect("write config.ini");
        let name = format!("Python {folder}");
        let peer = PeerProcess::start_in(
            &name,
            dir,
            Command::new(python)
                .arg(home.join("src").join(script))
                .arg(&config)
                .current_dir(&home)
                // The file is the whole configuration.
                .env_remove("TOPIC_PREFIX"),
        );
        PythonWorker(peer)
    }

    /// How many requests the worker has taken so far (it logs each before answering it).
    fn consumed(&self) -> usize {
        self.0
            .stdout()
            .lines()
            .filter(|line| line.starts_with("Consumed event from topic"))
            .count()
    }

    fn output(&self) -> String {
        self.0.output()
    }
}

/// The original Node.js dashboard (`node dashboard.js`): sends the plain-text requests, then
/// prints every reply value it consumes, one per line, and exits once it has one per request.
struct NodeDashboard(PeerProcess);

impl NodeDashboard {
    fn run(settings: &TopicSettings, invoices: usize, scores: usize) -> Self {
        let home = peers_dir().join("node");
        installed(home.join("node_modules/kafkajs"));
        let dir = scratch_dir(settings, "node-dashboard");
        let timeout = TIMEOUT.as_millis().to_string();
        let peer = PeerProcess::start_in(
            "Node dashboard",
            dir,
            Command::new("node")
                .arg(home.join("dashboard.js"))
                .args(["--invoices", &invoices.to_string()])
                .args(["--scores", &scores.to_string()])
                .args(["--timeout-ms", &timeout])
                .current_dir(&home)
                .env(
                    "KAFKA_BOOTSTRAP_SERVERS",
                    test_support::kafka().bootstrap_servers(),
                )
                .env("TOPIC_PREFIX", &settings.prefix),
        );
        NodeDashboard(peer)
    }

    async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.0.wait_exit(timeout).await
    }

    /// The reply values it printed.
    fn stdout(&self) -> String {
        self.0.stdout()
    }
}

// ------------------------------------------------------------------------------------------------
// Our side, and what the tests read back

/// A Rust worker running as a task of the test, stopped through its shutdown future.
struct InProcessWorker {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), WorkerError>>,
}

impl InProcessWorker {
    /// Spawns `run(config, shutdown)`, e.g. `invoice_generator::run`.
    fn spawn<F, Fut>(config: WorkerConfig, run: F) -> Self
    where
        F: FnOnce(WorkerConfig, std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
        Fut: Future<Output = Result<(), WorkerError>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = Box::pin(async {
            stopped.await.ok();
        });
        InProcessWorker {
            stop,
            task: tokio::spawn(run(config, shutdown)),
        }
    }

    /// Triggers shutdown and checks that the worker finished cleanly.
    async fn stop(self) {
        self.stop.send(()).expect("worker still running");
        tokio::time::timeout(TIMEOUT, self.task)
            .await
            .expect("worker stops in time")
            .expect("worker task did not panic")
            .expect("worker stopped without error");
    }
}

/// One entry of the dashboard's uncorrelated-replies feed, as the home page shows it.
#[derive(Debug)]
struct FeedEntry {
    kind: String,
    text: String,
    number: Option<u64>,
    /// `topic/partition/offset` of the reply.
    position: String,
}

/// The entries of the `<ul id="uncorrelated">` feed on the home page (see
/// `templates/uncorrelated.html`).
fn uncorrelated_feed(html: &str) -> Vec<FeedEntry> {
    fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
        let from = text.find(start)? + start.len();
        let len = text[from..].find(end)?;
        Some(&text[from..from + len])
    }
    let Some(list) = between(html, "<ul id=\"uncorrelated\">", "</ul>") else {
        return Vec::new();
    };
    list.split("<li>")
        .filter_map(|item| {
            Some(FeedEntry {
                kind: between(item, "<span class=\"badge ", "\"")?.to_owned(),
                text: between(item, "<q>", "</q>")?.to_owned(),
                number: between(item, "<strong>№ ", "</strong>").and_then(|n| n.parse().ok()),
                position: between(item, "<small>", " at ")?.to_owned(),
            })
        })
        .collect()
}

/// Checks that `message` is bare, as the original services send everything: no key, no headers.
fn assert_bare(message: &ReadMessage) {
    assert_eq!(message.key, None, "{message:?}");
    assert!(message.headers.is_empty(), "{message:?}");
}

/// Every message of `topic`, which must hold exactly `count`.
async fn read_exactly(topic: &str, settings: &TopicSettings, count: usize) -> Vec<ReadMessage> {
    // To the end of every partition, so a message too many is seen; counting against the
    // watermarks would count a transactional writer's commit markers as messages.
    let read = test_support::read_committed_to_end(
        topic,
        settings.partitions,
        &format!("{count} messages on {topic}"),
        TIMEOUT,
        |seen| seen.len() >= count,
    )
    .await;
    assert_eq!(read.len(), count, "{topic}");
    read
}
