//! Starts the real services in-process against the test broker: the dashboard on a port-0
//! listener and, when asked, both workers.

use dashboard::DashboardConfig;
use request_reply::config::{KafkaSettings, TopicSettings};
use request_reply::testkit;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
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
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let config = DashboardConfig {
            kafka,
            topics: topics.clone(),
            listen: listener.local_addr().unwrap(),
            request_timeout,
            history_limit: 10_000,
        };
        let running = Running::spawn(|stopped| dashboard::run(config, listener, until(stopped)));
        Dashboard { base, running }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Waits for `/readyz` to say the reply listener is assigned and the broker reachable.
    pub async fn wait_ready(&self, http: &reqwest::Client) {
        let url = self.url("/readyz");
        testkit::wait_for(
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
        let topics = testkit::unique_topics();
        let http = http_client();
        let dashboard = Dashboard::start(testkit::kafka(), &topics, request_timeout).await;
        dashboard.wait_ready(&http).await;
        let workers = if workers {
            vec![
                Running::spawn(|stopped| {
                    let config = testkit::worker_config(&topics, "invoices");
                    async move { Ok(invoice_generator::run(config, until(stopped)).await?) }
                }),
                Running::spawn(|stopped| {
                    let config = testkit::worker_config(&topics, "scores");
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
