//! Helpers shared by the worker integration tests (invoice-generator's, and score-calculator's,
//! which include this file by path): topic set-up, a worker run in-process or as a child process,
//! and reading consumer-group state. Each test binary uses only some of them.
#![allow(dead_code)]

use contract::{Invoice, InvoiceRequest, LineItem, Outcome, RequestKind, SCHEMA_VERSION};
use futures::future::BoxFuture;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use request_reply::config::TopicSettings;
use request_reply::headers::{self, CorrelationId};
use request_reply::kafka::Outgoing;
use request_reply::requester::{Client, IncomingReply, ReplyContent, SentRequest};
use service::worker::WorkerError;
use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;
use test_support::{self, ReadMessage};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Generous bound for anything that needs a consumer group to form or recover.
pub const GROUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound for one request/reply round trip on a running worker.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Creates every topic of both kinds under `settings` (request, reply, NestJS reply, dead
/// letter), so readers can be assigned and requests produced before any worker has started.
pub async fn ensure_topics(settings: &TopicSettings) {
    let topics = test_support::topics(settings);
    let names: Vec<String> = RequestKind::ALL
        .into_iter()
        .flat_map(|kind| {
            [
                topics.request(kind),
                topics.reply(kind),
                topics.nest_reply(kind),
                topics.dead_letter(kind),
            ]
        })
        .collect();
    request_reply::admin::ensure_topics(&test_support::kafka(), settings, &names)
        .await
        .expect("create test topics");
}

/// A valid invoice request for `customer`: two widgets at 9.99.
pub fn invoice_request(customer: &str) -> InvoiceRequest {
    InvoiceRequest {
        schema_version: SCHEMA_VERSION,
        customer: customer.into(),
        lines: vec![LineItem {
            description: "Widget".into(),
            quantity: 2,
            unit_price_cents: 999,
        }],
    }
}

/// The invoice in `reply`, checked to be for `customer`.
pub fn expect_invoice<'a>(reply: &'a IncomingReply, customer: &str) -> &'a Invoice {
    let ReplyContent::Invoice(Outcome::Ok(invoice)) = &reply.content else {
        panic!(
            "expected an invoice for {customer}, got {:?}",
            reply.content
        );
    };
    assert_eq!(invoice.customer, customer);
    invoice
}

/// A JSON request with a correlation ID and the default reply topic, as `Requester::send`
/// builds it, but with `payload` and the content type left to the caller.
pub fn correlated(
    settings: &TopicSettings,
    kind: RequestKind,
    id: &CorrelationId,
    payload: impl Into<Vec<u8>>,
) -> Outgoing {
    let topics = test_support::topics(settings);
    Outgoing::new(topics.request(kind), payload)
        .header(headers::CORRELATION_ID, id.as_bytes())
        .header(headers::REPLY_TOPIC, topics.reply(kind))
}

/// Produces `message` as a tombstone: its topic, partition, key and headers, but no payload at
/// all (which `Outgoing` cannot express: its payload is always present, if empty).
pub async fn send_tombstone(message: &Outgoing) -> SentRequest {
    let producer: FutureProducer = test_support::kafka()
        .producer_config()
        .create()
        .expect("create test producer");
    let headers = message
        .headers
        .iter()
        .fold(OwnedHeaders::new(), |all, (key, value)| {
            all.insert(Header {
                key,
                value: Some(value.as_slice()),
            })
        });
    let mut record: FutureRecord<'_, [u8], [u8]> =
        FutureRecord::to(&message.topic).headers(headers);
    if let Some(key) = &message.key {
        record = record.key(key.as_slice());
    }
    if let Some(partition) = message.partition {
        record = record.partition(partition);
    }
    let delivery = producer
        .send(record, REPLY_TIMEOUT)
        .await
        .map_err(|(error, _)| error)
        .expect("produce a tombstone");
    SentRequest {
        topic: message.topic.clone(),
        partition: delivery.partition,
        offset: delivery.offset,
    }
}

/// Sends a JSON invoice request for `customer` to one `partition` of the request topic and
/// registers for its reply: a request that is answered only after everything queued ahead of
/// it on that partition.
pub async fn send_invoice_to_partition(
    client: &Client,
    settings: &TopicSettings,
    partition: i32,
    customer: &str,
) -> (CorrelationId, oneshot::Receiver<IncomingReply>) {
    let id = CorrelationId::generate();
    let payload = serde_json::to_vec(&invoice_request(customer)).expect("serialize a request");
    let mut message = correlated(settings, RequestKind::Invoice, &id, payload)
        .header(headers::CONTENT_TYPE, headers::JSON_CONTENT_TYPE);
    message.partition = Some(partition);
    let reply = client.expect_reply(&id);
    client
        .requester()
        .send_outgoing(&message)
        .await
        .expect("send a request");
    (id, reply)
}

/// The canonical correlation key of a message read back from a topic, if it has one.
pub fn correlation_key(message: &ReadMessage) -> Option<String> {
    message
        .headers
        .last(headers::CORRELATION_ID)
        .map(|id| CorrelationId::from_bytes(id).key())
}

/// How many messages carry each correlation key.
pub fn count_by_correlation(messages: &[ReadMessage]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for key in messages.iter().filter_map(correlation_key) {
        *counts.entry(key).or_default() += 1;
    }
    counts
}

/// The consumer group id `test_support::worker_config(settings, group)` gives a worker.
pub fn group_id(settings: &TopicSettings, group: &str) -> String {
    test_support::worker_config(settings, group)
        .responder
        .kafka
        .consumer
        .get("group.id")
        .cloned()
        .expect("worker_config sets group.id")
}

fn admin_consumer(group: &str) -> BaseConsumer {
    let mut config = test_support::kafka().consumer_config();
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false");
    config.create().expect("create test consumer")
}

/// Waits until consumer group `group` is stable with exactly `members` members, so that no
/// rebalance (and no redelivery) happens while the test runs.
pub async fn wait_for_stable_group(group: &str, members: usize) {
    let consumer = admin_consumer(group);
    test_support::wait_for(
        &format!("group {group} stable with {members} members"),
        GROUP_TIMEOUT,
        || {
            let list = tokio::task::block_in_place(|| {
                consumer.fetch_group_list(Some(group), Duration::from_secs(5))
            });
            let stable = list.ok().is_some_and(|list| {
                list.groups()
                    .iter()
                    .any(|info| info.state() == "Stable" && info.members().len() == members)
            });
            std::future::ready(stable.then_some(()))
        },
    )
    .await;
}

/// The sum of the offsets group `group` has committed on `topic` (partitions without a commit
/// count as 0). On a fresh topic this is the number of requests the group has finished.
pub fn committed_total(group: &str, topic: &str, partitions: i32) -> i64 {
    let consumer = admin_consumer(group);
    let mut wanted = TopicPartitionList::new();
    for partition in 0..partitions {
        wanted.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(wanted, Duration::from_secs(10))
        .expect("read committed offsets");
    committed
        .elements()
        .iter()
        .map(|element| match element.offset() {
            Offset::Offset(offset) => offset,
            _ => 0,
        })
        .sum()
}

/// How many messages `topic` holds now (no transactions here, so offsets are contiguous).
pub fn message_count(topic: &str, partitions: i32) -> usize {
    let consumer = admin_consumer("testkit-reader");
    (0..partitions)
        .map(|partition| {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, Duration::from_secs(10))
                .expect("read watermarks");
            usize::try_from(high - low).expect("watermarks are ordered")
        })
        .sum()
}

/// A worker running as a task of the test, stopped through its shutdown future.
pub struct InProcessWorker {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), WorkerError>>,
}

impl InProcessWorker {
    /// Spawns `run` (for example `|shutdown| invoice_generator::run(config, shutdown)`).
    pub fn spawn<F, Fut>(run: F) -> Self
    where
        F: FnOnce(BoxFuture<'static, ()>) -> Fut,
        Fut: Future<Output = Result<(), WorkerError>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(Box::pin(async {
            stopped.await.ok();
        })));
        InProcessWorker { stop, task }
    }

    /// Triggers shutdown and checks that the worker finished cleanly.
    pub async fn stop(self) {
        self.stop.send(()).expect("worker still running");
        tokio::time::timeout(GROUP_TIMEOUT, self.task)
            .await
            .expect("worker stops in time")
            .expect("worker task did not panic")
            .expect("worker stopped without error");
    }
}

/// A worker binary running as a child process, with its own config.ini in a temporary
/// directory and its log next to it. Killed when dropped; its log is printed if the test failed.
pub struct WorkerProcess {
    child: Child,
    dir: tempfile::TempDir,
}

impl WorkerProcess {
    /// Starts `binary config.ini [args]` with topics under `settings` in group `group` (the same
    /// group id `test_support::worker_config(settings, group)` gives an in-process worker).
    pub fn start(binary: &str, settings: &TopicSettings, group: &str, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let config = dir.path().join("config.ini");
        let servers = test_support::kafka().bootstrap_servers().to_owned();
        let ini = format!(
            "[default]\nbootstrap.servers={servers}\n\n\
             [consumer]\ngroup.id={}\nauto.offset.reset=earliest\n\n\
             [topics]\nprefix={}\npartitions={}\nreplication_factor={}\n",
            group_id(settings, group),
            settings.prefix,
            settings.partitions,
            settings.replication_factor,
        );
        std::fs::write(&config, ini).expect("write config.ini");
        let log = std::fs::File::create(dir.path().join("worker.log")).expect("create log");
        let child = Command::new(binary)
            .arg(&config)
            .args(args)
            // The file is the whole configuration: no overrides from the test's environment.
            .env("KAFKA_BOOTSTRAP_SERVERS", &servers)
            .env_remove("TOPIC_PREFIX")
            .env_remove("TOPIC_PARTITIONS")
            .env_remove("TOPIC_REPLICATION_FACTOR")
            .env("RUST_LOG", "info,rdkafka=warn,librdkafka=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {binary}: {error}"));
        WorkerProcess { child, dir }
    }

    /// SIGKILL: the process gets no chance to finish, commit or leave its group.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the worker");
        self.child.wait().expect("reap the worker");
    }

    /// SIGTERM: asks for a graceful shutdown.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// Waits up to `timeout` for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = &mut self.child;
        test_support::wait_for("the worker process to exit", timeout, || {
            std::future::ready(child.try_wait().expect("poll the worker process"))
        })
        .await
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> std::path::PathBuf {
        Path::new(self.dir.path()).join("worker.log")
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "--- worker log ({}) ---", self.log_path().display());
            let _ = stderr.write_all(self.log().as_bytes());
        }
    }
}
