//! Starts the real services in-process against the test broker: the dashboard on a port-0
//! listener and, when asked, both workers. Also what several tests read out of the dashboard's
//! pages: the anti-forgery cookie and tokens.

use dashboard::DashboardConfig;
use request_reply::config::{KafkaSettings, TopicSettings};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A service running in a task, stopped through its shutdown future.
struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    fn spawn<F>(start: impl FnOnce(oneshot::Receiver<()>) -> F) -> Self
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel();
        Running {
            stop,
            task: tokio::spawn(start(stopped)),
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task
            .await
            .expect("service panicked")
            .expect("service failed");
    }
}

async fn until(stopped: oneshot::Receiver<()>) {
    let _ = stopped.await;
}

pub use test_support::closed_port;

/// A dashboard's settings for tests without a broker: Kafka is a closed port, so a request that
/// passes every HTTP check ends in 503 (Kafka unreachable), which tells it apart from the
/// refusals of the checks.
pub fn offline_config(listen: SocketAddr) -> DashboardConfig {
    DashboardConfig {
        kafka: KafkaSettings::for_bootstrap(&format!("127.0.0.1:{}", closed_port())),
        topics: TopicSettings::default(),
        listen,
        request_timeout: Duration::from_secs(30),
        history_limit: 100,
        auth_token: None,
        allow_unauthenticated: false,
        http: dashboard::HttpSettings::default(),
    }
}

/// The values of a page's hidden `csrf_token` fields, in page order.
pub fn csrf_tokens(html: &str) -> Vec<String> {
    html.split("name=\"csrf_token\" value=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .collect()
}

/// The `name=value` a `Set-Cookie` header sets: what the browser sends back in `Cookie`.
pub fn cookie_of(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().trim().to_owned()
}

/// One dashboard, reachable at `base`.
pub struct Dashboard {
    pub base: String,
    running: Running,
}

impl Dashboard {
    pub async fn start(
        kafka: KafkaSettings,
        topics: &TopicSettings,
        request_timeout: Duration,
    ) -> Self {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let config = DashboardConfig {
            kafka,
            topics: topics.clone(),
            request_timeout,
            history_limit: 10_000,
            ..offline_config(listener.local_addr().unwrap())
        };
        Dashboard::serve(config, listener)
    }

    /// Serves `config` on `listener`, which `config.listen` names.
    pub fn serve(config: DashboardConfig, listener: TcpListener) -> Self {
        let base = format!("http://{}", listener.local_addr().unwrap());
        let running = Running::spawn(|stopped| dashboard::run(config, listener, until(stopped)));
        Dashboard { base, running }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// What a browser gets from the home page to post a form: the anti-forgery cookie (as a
    /// `Cookie` header value) and the token of the forms' hidden `csrf_token` field.
    pub async fn form_token(&self, http: &reqwest::Client) -> (String, String) {
        let page = http.get(self.url("/")).send().await.unwrap();
        assert_eq!(page.status(), reqwest::StatusCode::OK);
        let cookie = cookie_of(page.headers()["set-cookie"].to_str().unwrap());
        let html = page.text().await.unwrap();
        let token = csrf_tokens(&html)
            .into_iter()
            .next()
            .expect("the page has a csrf_token field");
        (cookie, token)
    }

    /// Posts an HTML form the way a browser does from the home page: with the page's cookie
    /// and anti-forgery token.
    pub async fn post_form(
        &self,
        http: &reqwest::Client,
        path: &str,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        let (cookie, token) = self.form_token(http).await;
        let mut fields = fields.to_vec();
        fields.push(("csrf_token", &token));
        http.post(self.url(path))
            .header("cookie", cookie)
            .form(&fields)
            .send()
            .await
            .unwrap()
    }

    /// `GET path`: the body as text, whatever the status.
    pub async fn get_text(&self, http: &reqwest::Client, path: &str) -> String {
        let response = http.get(self.url(path)).send().await.unwrap();
        response.text().await.unwrap()
    }

    /// Waits for `/readyz` to say the reply listener is assigned and the broker reachable.
    pub async fn wait_ready(&self, http: &reqwest::Client) {
        let url = self.url("/readyz");
        test_support::wait_for(
            "the dashboard to be ready",
            Duration::from_secs(60),
            || async {
                let response = http.get(&url).send().await.ok()?;
                response.status().is_success().then_some(())
            },
        )
        .await;
    }

    pub async fn stop(self) {
        self.running.stop().await;
    }
}

/// Dashboard plus both workers on topics of their own.
pub struct System {
    pub topics: TopicSettings,
    pub dashboard: Dashboard,
    pub http: reqwest::Client,
    workers: Vec<Running>,
}

impl System {
    pub async fn start() -> Self {
        Self::start_with(true, Duration::from_secs(30)).await
    }

    pub async fn start_with(workers: bool, request_timeout: Duration) -> Self {
        Self::start_on(test_support::unique_topics(), workers, request_timeout).await
    }

    /// Like [`System::start_with`], on topics an earlier system may have used.
    pub async fn start_on(topics: TopicSettings, workers: bool, request_timeout: Duration) -> Self {
        let http = http_client();
        let dashboard = Dashboard::start(test_support::kafka(), &topics, request_timeout).await;
        dashboard.wait_ready(&http).await;
        let workers = if workers {
            vec![
                Running::spawn(|stopped| {
                    let config = test_support::worker_config(&topics, "invoices");
                    async move { Ok(invoice_generator::run(config, until(stopped)).await?) }
                }),
                Running::spawn(|stopped| {
                    let config = test_support::worker_config(&topics, "scores");
                    async move { Ok(score_calculator::run(config, until(stopped)).await?) }
                }),
            ]
        } else {
            Vec::new()
        };
        System {
            topics,
            dashboard,
            http,
            workers,
        }
    }

    pub async fn stop(self) {
        for worker in self.workers {
            worker.stop().await;
        }
        self.dashboard.stop().await;
    }

    /// POSTs a JSON request to the API and returns the correlation ID from the `202`.
    pub async fn post_api(&self, path: &str, body: &Value) -> String {
        post_api(&self.http, &self.dashboard, path, body).await
    }

    /// The request's state once it is no longer pending (or after `wait_ms`).
    pub async fn wait_api(&self, id: &str) -> Value {
        wait_api(&self.http, &self.dashboard, id).await
    }

    /// `GET path` on the dashboard, which must answer 200 with JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        let response = self
            .http
            .get(self.dashboard.url(path))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, reqwest::StatusCode::OK, "GET {path}: {text}");
        serde_json::from_str(&text).unwrap()
    }
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(90))
        .build()
        .unwrap()
}

pub async fn post_api(
    http: &reqwest::Client,
    dashboard: &Dashboard,
    path: &str,
    body: &Value,
) -> String {
    let response = http
        .post(dashboard.url(path))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "POST {path}: {text}");
    let accepted: Value = serde_json::from_str(&text).unwrap();
    accepted["correlation_id"].as_str().unwrap().to_owned()
}

pub async fn wait_api(http: &reqwest::Client, dashboard: &Dashboard, id: &str) -> Value {
    let url = dashboard.url(&format!("/api/requests/{id}?wait_ms=60000"));
    let response = http.get(url).send().await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    response.json().await.unwrap()
}

/// Helpers for the interop tests with other ecosystems' request/reply libraries (Spring Kafka in
/// `tests/peers/java`, NestJS in `tests/peers/nest`): their build scripts, the peers as child
/// processes, both workers in-process with a config of the test's choosing, and the topics.
#[allow(dead_code)]
pub mod peers {
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
    use test_support::ChildGuard;

    /// `dashboard/tests/peers/<name>`.
    pub fn dir(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/peers")
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
        /// Customers are named `"<buyer> <i>"`.
        pub buyer: &'static str,
        /// Invoice `i` has one line of `i + 1` items at this price.
        pub unit_price_cents: u64,
        /// The peer's own scoring rule, written again here.
        pub score: fn(&str) -> i64,
        /// How the peer's score explanations begin.
        pub explanation_prefix: &'static str,
    }

    impl ForeignResponder {
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
            for (i, id) in score_ids.iter().enumerate() {
                let state = wait_api(http, dashboard, id).await;
                assert_eq!(state["status"], "completed", "{state}");
                let reply = &state["reply"]["ok"];
                assert_eq!(reply["customer"], customer(i), "{state}");
                assert_eq!(reply["score"], (self.score)(&customer(i)), "{state}");
                let explanation = reply["explanation"].as_str().unwrap();
                assert!(explanation.starts_with(self.explanation_prefix), "{state}");
            }
            (invoice_ids, score_ids)
        }
    }
}
