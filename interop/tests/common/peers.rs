//! Helpers for the interop tests with other ecosystems' request/reply libraries (Spring Kafka in
//! `peers/java`, NestJS in `peers/nest`, the original stack in `peers/python` and `peers/node`):
//! their build scripts, the peers as child processes, both workers in-process with a config of the
//! test's choosing, and the topics.

use super::{Dashboard, Running, post_api, until, wait_api};
use futures::future::join_all;
use serde_json::Value;
use serde_json::json;
use service::worker::WorkerConfig;
use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;
use test_support::{ChildGuard, ReadMessage, TopicReader};

/// `interop/peers/<name>`.
pub fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("peers")
        .join(name)
}

/// Runs a peer's build or install script (idempotent, and quick when nothing changed); panics
/// with its output when it fails.
pub fn run_script(script: &Path) {
    let output = Command::new(script)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", script.display()));
    assert!(
        output.status.success(),
        "{} failed ({}):\n{}{}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Both workers running in-process, each with its own config.
pub struct Workers(Vec<Running>);

impl Workers {
    pub fn start(invoices: WorkerConfig, scores: WorkerConfig) -> Self {
        Workers(vec![
            Running::spawn(|stopped| async move {
                Ok(invoice_generator::run(invoices, until(stopped)).await?)
            }),
            Running::spawn(|stopped| async move {
                Ok(score_calculator::run(scores, until(stopped)).await?)
            }),
        ])
    }

    /// Stops both and checks that they stopped cleanly.
    pub async fn stop(self) {
        for worker in self.0 {
            worker.stop().await;
        }
    }
}

/// A peer running as a child process, its stdout and stderr in files of a scratch directory.
/// Killed when dropped; its output is printed if the test failed.
pub struct PeerProcess {
    child: ChildGuard,
    dir: PathBuf,
}

impl PeerProcess {
    /// Starts `command` with stdout and stderr going to files in a fresh scratch directory.
    pub fn start(name: &str, command: &mut Command) -> Self {
        let unique = request_reply::headers::CorrelationId::generate().key();
        let dir = std::env::temp_dir().join(format!("interop-peer-{unique}"));
        std::fs::create_dir_all(&dir).expect("create a scratch directory");
        Self::start_in(name, dir, command)
    }

    /// Starts `command` with stdout and stderr going to files in `dir` (which may hold its
    /// config already); `dir` is removed when the process is dropped.
    pub fn start_in(name: &str, dir: PathBuf, command: &mut Command) -> Self {
        let stdout = File::create(dir.join("stdout")).expect("create the stdout file");
        let stderr = File::create(dir.join("stderr")).expect("create the stderr file");
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start the {name}: {error}"));
        let child = ChildGuard::new(name, child)
            .show_on_panic(dir.join("stdout"))
            .show_on_panic(dir.join("stderr"))
            .remove_on_drop(&dir);
        PeerProcess { child, dir }
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.join("stdout")).unwrap_or_default()
    }

    /// Its stdout and stderr, for assertion messages.
    pub fn output(&self) -> String {
        self.child.output()
    }

    /// The lines of stdout that are JSON objects: the peers print their results that way.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(Value::is_object)
            .collect()
    }

    /// Waits for a JSON line of stdout that `matches`; panics if the process exits first.
    pub async fn wait_for_json_line(
        &mut self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Value {
        test_support::wait_for(what, timeout, || {
            let found = self.json_lines().into_iter().find(|line| matches(line));
            if found.is_none() {
                let exited = self.child.child().try_wait();
                if let Some(status) = exited.expect("poll the child process") {
                    panic!("the {} exited ({status}) before {what}", self.child.name());
                }
            }
            std::future::ready(found)
        })
        .await
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.child.wait_exit(timeout).await
    }
}

/// A request/reply responder from another ecosystem (Spring, NestJS) standing in for our workers
/// behind our dashboard, described by what it computes so its replies can be checked.
pub struct ForeignResponder {
    /// What it is called in messages; its score explanations begin with it.
    pub name: &'static str,
    /// Customers are named `"<buyer> <i>"`.
    pub buyer: &'static str,
    /// Invoice `i` has one line of `i + 1` items at this price.
    pub unit_price_cents: u64,
    /// The peer's own scoring rule, written again here.
    pub score: fn(&str) -> i64,
}

/// A foreign responder behind our dashboard, on topics of their own, after
/// [`ForeignResponder::behind_dashboard`].
pub struct Exchanged {
    pub settings: request_reply::config::TopicSettings,
    /// Kept running until the test ends.
    pub responder: PeerProcess,
    pub http: reqwest::Client,
    pub dashboard: Dashboard,
    /// The correlation IDs of the invoices and of the scores exchanged.
    pub invoice_ids: Vec<String>,
    pub score_ids: Vec<String>,
}

impl Exchanged {
    /// POSTs a JSON request to the dashboard's API; its correlation ID.
    pub async fn post(&self, path: &str, body: &Value) -> String {
        post_api(&self.http, &self.dashboard, path, body).await
    }

    /// The request's state once it is no longer pending.
    pub async fn wait(&self, id: &str) -> Value {
        wait_api(&self.http, &self.dashboard, id).await
    }
}

impl ForeignResponder {
    /// Creates fresh topics, starts the responder (`peer` with `responder <servers_flag> <the
    /// broker> --prefix <their prefix>`), waits for its `{"ready":true}` line, starts our
    /// dashboard on them (a 60 s request timeout), waits for it to be ready, and
    /// [exchanges](Self::exchange) `calls` requests through it.
    pub async fn behind_dashboard(
        &self,
        peer: fn(&[&str]) -> Command,
        servers_flag: &str,
        ready_timeout: Duration,
        calls: usize,
    ) -> Exchanged {
        let name = self.name;
        let settings = test_support::unique_topics();
        test_support::create_topics(&settings, &[]).await;
        let args = [
            "responder",
            servers_flag,
            &servers(),
            "--prefix",
            &settings.prefix,
        ];
        let mut responder = PeerProcess::start(name, &mut peer(&args));
        responder
            .wait_for_json_line(&format!("the {name} to be ready"), ready_timeout, |line| {
                line["ready"] == true
            })
            .await;
        let http = super::http_client();
        let dashboard =
            Dashboard::start(test_support::kafka(), &settings, Duration::from_secs(60)).await;
        dashboard.wait_ready(&http).await;
        let (invoice_ids, score_ids) = self.exchange(&http, &dashboard, calls).await;
        Exchanged {
            settings,
            responder,
            http,
            dashboard,
            invoice_ids,
            score_ids,
        }
    }

    /// Sends `calls / 2` invoices and as many scores through the dashboard's JSON API at once,
    /// checks that each completes with what the peer computes (invoice numbers all different),
    /// and returns the correlation IDs of the invoices and of the scores.
    pub async fn exchange(
        &self,
        http: &reqwest::Client,
        dashboard: &Dashboard,
        calls: usize,
    ) -> (Vec<String>, Vec<String>) {
        let half = calls / 2;
        let customer = |i: usize| format!("{} {i}", self.buyer);
        let invoice_ids = join_all((0..half).map(|i| {
            let body = json!({"customer": customer(i),
                "lines": [{"description": "Widget", "quantity": i + 1,
                           "unit_price_cents": self.unit_price_cents}]});
            async move { post_api(http, dashboard, "/api/invoices", &body).await }
        }))
        .await;
        let score_ids = join_all((0..half).map(|i| {
            let body = json!({"customer": customer(i)});
            async move { post_api(http, dashboard, "/api/scores", &body).await }
        }))
        .await;

        let mut numbers = HashSet::new();
        for (i, id) in invoice_ids.iter().enumerate() {
            let state = wait_api(http, dashboard, id).await;
            assert_eq!(state["status"], "completed", "{state}");
            let reply = &state["reply"]["ok"];
            assert_eq!(reply["customer"], customer(i), "{state}");
            let subtotal = (i as u64 + 1) * self.unit_price_cents;
            assert_eq!(reply["subtotal_cents"], subtotal, "{state}");
            assert_eq!(
                reply["total_cents"],
                subtotal + (subtotal * 1000 + 5000) / 10000,
                "{state}"
            );
            assert!(numbers.insert(reply["number"].as_u64().unwrap()), "{state}");
        }
        // The journey of a reply without our workers' worker-* headers: the hops the dashboard
        // can show, and a note on why the worker's are missing.
        let page = dashboard
            .get_text(http, &format!("/requests/{}", invoice_ids[0]))
            .await;
        assert!(
            page.contains("The reply carries no worker-* headers"),
            "{page}"
        );
        assert!(
            !page.contains(r#"data-hop="picked up by a worker""#),
            "{page}"
        );
        assert!(page.contains(r#"data-hop="reply appended""#), "{page}");
        for (i, id) in score_ids.iter().enumerate() {
            let state = wait_api(http, dashboard, id).await;
            assert_eq!(state["status"], "completed", "{state}");
            let reply = &state["reply"]["ok"];
            assert_eq!(reply["customer"], customer(i), "{state}");
            assert_eq!(reply["score"], (self.score)(&customer(i)), "{state}");
            let explanation = reply["explanation"].as_str().unwrap();
            assert!(explanation.starts_with(self.name), "{state}");
        }
        (invoice_ids, score_ids)
    }
}

/// A foreign client's result lines (each with a `distinct` field of its own: one line per call)
/// split into replies (with a `reply`) and errors, `calls` and `invalid` of them; each reply
/// checked to be the contract's success reply for its own customer.
pub fn split_results(
    client: &PeerProcess,
    distinct: &str,
    calls: usize,
    invalid: usize,
) -> (Vec<Value>, Vec<Value>) {
    let lines = client.json_lines();
    assert_one_line_each(&lines, distinct);
    let (replies, errors): (Vec<Value>, Vec<Value>) = lines
        .into_iter()
        .partition(|line| line.get("reply").is_some());
    assert_eq!(replies.len(), calls, "{replies:?}");
    assert_eq!(errors.len(), invalid, "{errors:?}");
    for reply in &replies {
        assert_eq!(reply["reply"]["schema_version"], 1, "{reply}");
        assert_eq!(
            reply["reply"]["ok"]["customer"], reply["customer"],
            "{reply}"
        );
    }
    (replies, errors)
}

/// Checks what our workers answered a foreign client: invoices of one line at
/// `unit_price_cents` each, with 10 % tax and numbers all different; each customer's documented
/// score.
pub fn check_worker_replies(invoices: &[Value], scores: &[Value], unit_price_cents: u64) {
    let mut numbers = HashSet::new();
    for reply in invoices {
        let invoice = &reply["reply"]["ok"];
        let quantity = invoice["lines"][0]["quantity"].as_u64().unwrap();
        let subtotal = quantity * unit_price_cents;
        assert_eq!(invoice["subtotal_cents"], subtotal, "{reply}");
        assert_eq!(
            invoice["total_cents"],
            subtotal + (subtotal * 1000 + 5000) / 10000,
            "{reply}"
        );
        assert!(
            numbers.insert(invoice["number"].as_u64().unwrap()),
            "{reply}"
        );
    }
    for reply in scores {
        let customer = reply["customer"].as_str().unwrap();
        assert_eq!(
            reply["reply"]["ok"]["score"],
            score_calculator::score_of(customer),
            "{reply}"
        );
    }
}

/// `invalid` requests were refused, and what a foreign client sent, where valid (its correlation
/// ID not among `refused`), matches the checked-in request schema of `kind`.
pub fn assert_valid_requests(
    requests: &[test_support::ReadMessage],
    refused: &HashSet<Vec<u8>>,
    invalid: usize,
    kind: contract::RequestKind,
) {
    assert_eq!(refused.len(), invalid);
    for request in requests {
        let id = request
            .headers
            .last(request_reply::headers::CORRELATION_ID)
            .unwrap();
        if !refused.contains(id) {
            let payload = request.payload.as_deref().expect("a request payload");
            test_support::assert_valid_payload(&format!("{kind}-request"), payload);
        }
    }
}

/// The test broker's bootstrap servers, for a peer's command line.
pub fn servers() -> String {
    test_support::kafka().bootstrap_servers().to_owned()
}

/// `peers/<name>/<artifact>`, after `peers/<name>/<script>` has installed or built it (once per
/// test binary, which uses one peer).
pub fn prepared(name: &str, script: &str, artifact: &str) -> &'static Path {
    static PREPARED: std::sync::OnceLock<(String, PathBuf)> = std::sync::OnceLock::new();
    let (prepared, path) = PREPARED.get_or_init(|| {
        let dir = dir(name);
        run_script(&dir.join(script));
        (name.to_owned(), dir.join(artifact))
    });
    assert_eq!(prepared, name, "one peer per test binary");
    path
}

/// Runs a peer's client (`command`) to its end, which must be a success within `timeout`;
/// returns it for its output.
pub async fn run_to_end(name: &str, command: &mut Command, timeout: Duration) -> PeerProcess {
    let mut client = PeerProcess::start(name, command);
    let status = client.wait_exit(timeout).await;
    assert!(status.success(), "the {name} failed: {status}");
    client
}

/// Checks that each of `lines` has its own `field` (one line per call).
pub fn assert_one_line_each(lines: &[Value], field: &str) {
    let distinct: HashSet<&str> = lines
        .iter()
        .filter_map(|line| line[field].as_str())
        .collect();
    assert_eq!(
        distinct.len(),
        lines.len(),
        "one {field} per call: {lines:?}"
    );
}

/// What a foreign client and our worker exchanged: the first `total` requests on `request_topic`
/// and replies on `reply_topic` (exactly `total` of those), each waited for up to 30 s.
pub async fn on_the_wire(
    peer: &str,
    settings: &request_reply::config::TopicSettings,
    request_topic: &str,
    reply_topic: &str,
    total: usize,
) -> (Vec<ReadMessage>, Vec<ReadMessage>) {
    let enough = |seen: &[ReadMessage]| seen.len() >= total;
    let mut requests = TopicReader::new(request_topic, settings.partitions);
    let requests = requests
        .read_until(
            &format!("the {peer} requests"),
            Duration::from_secs(30),
            enough,
        )
        .await
        .to_vec();
    let mut replies = TopicReader::new(reply_topic, settings.partitions);
    let replies = replies
        .read_until(
            &format!("the replies to the {peer} requests"),
            Duration::from_secs(30),
            enough,
        )
        .await
        .to_vec();
    assert_eq!(replies.len(), total);
    (requests, replies)
}

/// A reply's correlation ID and its payload, checked against the reply schema of `kind`.
pub fn checked_reply(reply: &ReadMessage, kind: contract::RequestKind) -> (&[u8], &[u8]) {
    let id = reply
        .headers
        .last(request_reply::headers::CORRELATION_ID)
        .expect("a correlation ID");
    let payload = reply.payload.as_deref().expect("a reply payload");
    test_support::assert_valid_payload(&format!("{kind}-reply"), payload);
    (id, payload)
}
