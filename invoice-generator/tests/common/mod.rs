//! Helpers of the invoice generator's integration tests: invoice requests and replies, raw
//! messages, and the worker binary run as a child process. Each test binary uses only some of
//! them.
#![allow(dead_code)]

use contract::ReplyContent;
use contract::{Invoice, InvoiceRequest, LineItem, Outcome, RequestKind, SCHEMA_VERSION};
use request_reply::config::TopicSettings;
use request_reply::headers::{self, CorrelationId};
use request_reply::kafka::Outgoing;
use request_reply::requester::{Client, IncomingReply};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;
use test_support::ChildGuard;
use tokio::sync::oneshot;

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
pub fn expect_invoice<'a>(
    reply: &'a IncomingReply<contract::Topics>,
    customer: &str,
) -> &'a Invoice {
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

/// Sends a JSON invoice request for `customer` to one `partition` of the request topic and
/// registers for its reply: a request that is answered only after everything queued ahead of
/// it on that partition.
pub async fn send_invoice_to_partition(
    client: &Client<contract::Topics>,
    settings: &TopicSettings,
    partition: i32,
    customer: &str,
) -> (
    CorrelationId,
    oneshot::Receiver<IncomingReply<contract::Topics>>,
) {
    let id = CorrelationId::generate();
    let payload = serde_json::to_vec(&invoice_request(customer)).expect("serialize a request");
    let message = correlated(settings, RequestKind::Invoice, &id, payload);
    let reply = test_support::send_to_partition(client, &id, message, partition).await;
    (id, reply)
}

/// A worker binary running as a child process, with its own config.ini in a temporary
/// directory and its log next to it. Killed when dropped; its log is printed if the test failed.
pub struct WorkerProcess {
    child: ChildGuard,
    dir: tempfile::TempDir,
}

impl WorkerProcess {
    /// Starts `binary config.ini [args]` with topics under `settings` in group `group` (the same
    /// group id `test_support::worker_config(settings, group)` gives an in-process worker).
    pub fn start(binary: &str, settings: &TopicSettings, group: &str, args: &[&str]) -> Self {
        Self::start_with(binary, settings, group, args, "")
    }

    /// [`WorkerProcess::start`] with `worker` as the `[worker]` section of its config.ini.
    pub fn start_with(
        binary: &str,
        settings: &TopicSettings,
        group: &str,
        args: &[&str],
        worker: &str,
    ) -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let config = dir.path().join("config.ini");
        let servers = test_support::kafka().bootstrap_servers().to_owned();
        let ini = format!(
            "[default]\nbootstrap.servers={servers}\n\n\
             [consumer]\ngroup.id={}\nauto.offset.reset=earliest\n\n\
             [topics]\nprefix={}\npartitions={}\nreplication_factor={}\n\n\
             [worker]\n{worker}\n",
            test_support::group_id(settings, group),
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
        let child = ChildGuard::new("worker", child).show_on_panic(dir.path().join("worker.log"));
        WorkerProcess { child, dir }
    }

    /// SIGKILL: the process gets no chance to finish, commit or leave its group.
    pub fn kill(&mut self) {
        self.child.child().kill().expect("SIGKILL the worker");
        self.child.child().wait().expect("reap the worker");
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
        self.child.wait_exit(timeout).await
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> std::path::PathBuf {
        Path::new(self.dir.path()).join("worker.log")
    }
}
