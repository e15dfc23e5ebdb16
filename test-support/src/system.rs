//! (Feature `system`.) Starts the real services in-process against the test broker: the
//! dashboard on a port-0 listener and, when asked, both workers. Also what several tests read
//! out of the dashboard's pages: the anti-forgery cookie and tokens.

use dashboard::DashboardConfig;
use request_reply::config::{KafkaSettings, TopicSettings};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A service running in a task, stopped through its shutdown future.
#[derive(Debug)]
pub struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub fn spawn<F>(start: impl FnOnce(oneshot::Receiver<()>) -> F) -> Self
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel();
        Running {
            stop,
            task: tokio::spawn(start(stopped)),
        }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task
            .await
            .expect("service panicked")
            .expect("service failed");
    }
}

pub async fn until(stopped: oneshot::Receiver<()>) {
    let _ = stopped.await;
}

pub use crate::closed_port;

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
        worker_groups: dashboard::WorkerGroups::default(),
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
#[derive(Debug)]
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
            // The groups `System` starts its workers in.
            worker_groups: dashboard::WorkerGroups {
                invoice: crate::group_id(topics, "invoices"),
                score: crate::group_id(topics, "scores"),
            },
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
        crate::wait_for(
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
#[derive(Debug)]
pub struct System {
    pub topics: TopicSettings,
    pub dashboard: Dashboard,
    pub http: reqwest::Client,
    /// The running workers, with the kind each answers.
    workers: Vec<(contract::RequestKind, Running)>,
}

impl System {
    pub async fn start() -> Self {
        Self::start_with(true, Duration::from_secs(30)).await
    }

    pub async fn start_with(workers: bool, request_timeout: Duration) -> Self {
        Self::start_on(crate::unique_topics(), workers, request_timeout).await
    }

    /// Like [`System::start_with`], on topics an earlier system may have used.
    pub async fn start_on(topics: TopicSettings, workers: bool, request_timeout: Duration) -> Self {
        let http = http_client();
        let dashboard = Dashboard::start(crate::kafka(), &topics, request_timeout).await;
        dashboard.wait_ready(&http).await;
        let workers = if workers {
            vec![
                (
                    contract::RequestKind::Invoice,
                    Running::spawn(|stopped| {
                        let config = crate::worker_config(&topics, "invoices");
                        async move { Ok(invoice_generator::run(config, until(stopped)).await?) }
                    }),
                ),
                (
                    contract::RequestKind::Score,
                    Running::spawn(|stopped| {
                        let config = crate::worker_config(&topics, "scores");
                        async move { Ok(score_calculator::run(config, until(stopped)).await?) }
                    }),
                ),
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
        for (_, worker) in self.workers {
            worker.stop().await;
        }
        self.dashboard.stop().await;
    }

    /// Stops the worker of `kind` (as SIGTERM does: it finishes, commits and leaves its group);
    /// the rest of the system runs on.
    pub async fn stop_worker(&mut self, kind: contract::RequestKind) {
        let index = self
            .workers
            .iter()
            .position(|(running, _)| *running == kind)
            .expect("a worker of that kind is running");
        self.workers.remove(index).1.stop().await;
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

/// `GET url` as JSON, whatever the status.
pub async fn fetch_json(http: &reqwest::Client, url: &str) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

pub async fn wait_api(http: &reqwest::Client, dashboard: &Dashboard, id: &str) -> Value {
    let url = dashboard.url(&format!("/api/requests/{id}?wait_ms=60000"));
    let response = http.get(url).send().await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    response.json().await.unwrap()
}
