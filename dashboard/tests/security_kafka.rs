//! The dashboard against a broker listener that requires SASL/SCRAM (see
//! `test_support::secure_broker`): the real `dashboard` binary, configured by a
//! config.ini like any deployment, its output captured. With the right credentials a request
//! goes round the system; with a wrong password `/readyz` is false and the banner and the API
//! say authentication failed. Neither password ever shows in a page, an API answer, a metric or
//! a log line.

#[allow(dead_code)] // each test binary uses only some of the shared helpers
use test_support::system;

use request_reply::config::{KafkaSettings, TopicSettings};
use request_reply::headers::CorrelationId;
use request_reply::responder::WorkerConfig;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use test_support::ChildGuard;
use test_support::secure_broker::{SecureBroker, secure_broker};

/// Longest wait for the dashboard to become ready, or to report the refusal.
const WAIT: Duration = Duration::from_secs(90);

/// How the test hands the password to the dashboard.
#[derive(Clone, Copy, Debug)]
enum PasswordIn {
    /// `sasl.password` in `[default]` of config.ini.
    ConfigFile,
    /// `LIBRDKAFKA_SASL_PASSWORD` in the environment.
    Environment,
}

/// The dashboard binary, running until dropped; its stdout and stderr go to `log`.
struct DashboardProcess {
    // Killed, and its directory removed, when dropped.
    _child: ChildGuard,
    base: String,
    log: PathBuf,
}

impl DashboardProcess {
    fn start(broker: &SecureBroker, password: &str, via: PasswordIn, prefix: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "dashboard-secure-{}",
            CorrelationId::generate().key()
        ));
        std::fs::create_dir_all(dir.join("config")).unwrap();
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut ini = format!(
            "[default]\nbootstrap.servers={}\nsecurity.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-256\nsasl.username={}\n",
            broker.sasl_bootstrap, broker.user
        );
        if matches!(via, PasswordIn::ConfigFile) {
            ini.push_str(&format!("sasl.password={password}\n"));
        }
        ini.push_str(&format!(
            "\n[dashboard]\nlisten=127.0.0.1:{port}\nrequest_timeout_ms=30000\n\n[topics]\nprefix={prefix}\npartitions=3\nreplication_factor=1\n"
        ));
        std::fs::write(dir.join("config/config.ini"), ini).unwrap();
        let log = dir.join("dashboard.log");
        let output = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_dashboard"));
        command
            .arg("config/config.ini")
            .current_dir(&dir)
            // Only what this test sets: scripts/test exports the plaintext broker's address,
            // which must not override the SASL listener's.
            .env_clear()
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output);
        if matches!(via, PasswordIn::Environment) {
            command.env("LIBRDKAFKA_SASL_PASSWORD", password);
        }
        let child = command.spawn().expect("start the dashboard binary");
        DashboardProcess {
            _child: ChildGuard::new("dashboard", child).remove_on_drop(&dir),
            base: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `/readyz` until `done` accepts its status and body, or fails after [`WAIT`].
    async fn readyz_until(
        &self,
        http: &reqwest::Client,
        what: &str,
        done: impl Fn(u16, &Value) -> bool,
    ) -> (u16, Value) {
        let deadline = Instant::now() + WAIT;
        let mut last = None;
        loop {
            if let Ok(response) = http.get(self.url("/readyz")).send().await {
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or_default();
                if done(status, &body) {
                    return (status, body);
                }
                last = Some((status, body));
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {WAIT:?} waiting for {what}; last /readyz: {last:?}; log:\n{}",
                tail(&self.log_text())
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn unique_prefix() -> String {
    format!("secure-dash-{}.", &CorrelationId::generate().key()[..8])
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .no_proxy()
        .build()
        .unwrap()
}

/// Every page and answer a user or a scraper can get, concatenated.
async fn everything_served(
    dashboard: &DashboardProcess,
    http: &reqwest::Client,
    id: Option<&str>,
) -> String {
    let mut paths = vec![
        "/".to_owned(),
        "/readyz".into(),
        "/healthz".into(),
        "/metrics".into(),
    ];
    if let Some(id) = id {
        paths.push(format!("/requests/{id}"));
        paths.push(format!("/api/requests/{id}"));
    }
    let mut served = String::new();
    for path in paths {
        let response = http.get(dashboard.url(&path)).send().await.unwrap();
        served.push_str(&response.text().await.unwrap());
    }
    served
}

fn worker_settings(broker: &SecureBroker) -> KafkaSettings {
    broker.sasl_settings(&broker.password)
}

#[tokio::test]
async fn over_scram_a_request_goes_round_and_the_password_shows_nowhere() {
    let broker = secure_broker();
    let prefix = unique_prefix();
    let http = http();
    let dashboard =
        DashboardProcess::start(broker, &broker.password, PasswordIn::Environment, &prefix);
    // The score worker, in-process, over the same SASL listener.
    let mut kafka = worker_settings(broker);
    kafka
        .consumer
        .insert("group.id".into(), format!("{prefix}score-calculator"));
    let config = WorkerConfig::new(
        kafka,
        TopicSettings {
            prefix: prefix.clone(),
            ..TopicSettings::default()
        },
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(score_calculator::run(config.into(), async {
        let _ = stopped.await;
    }));

    let (status, body) = dashboard
        .readyz_until(&http, "the dashboard to be ready over SASL", |status, _| {
            status == 200
        })
        .await;
    assert_eq!(body["ready"], true, "{body}");

    let accepted = http
        .post(dashboard.url("/api/scores"))
        .json(&serde_json::json!({ "customer": "Scram Customer" }))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status().as_u16(), 202, "{status}");
    let accepted: Value = accepted.json().await.unwrap();
    let id = accepted["correlation_id"].as_str().unwrap().to_owned();
    let url = dashboard.url(&format!("/api/requests/{id}?wait_ms=30000"));
    let state = system::fetch_json(&http, &url).await;
    assert_eq!(state["status"], "completed", "{state}");
    assert_eq!(
        state["reply"]["ok"]["customer"], "Scram Customer",
        "{state}"
    );

    let served = everything_served(&dashboard, &http, Some(&id)).await;
    assert!(!served.contains(&broker.password), "the password is served");
    let logs = dashboard.log_text();
    assert!(
        logs.contains("reply"),
        "the dashboard logged its work: {}",
        tail(&logs)
    );
    assert!(
        !logs.contains(&broker.password),
        "the password is in the dashboard's log"
    );

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(60), worker)
        .await
        .expect("worker stops")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn wrong_password_makes_readyz_false_and_the_banner_say_authentication_failed() {
    let broker = secure_broker();
    let wrong = format!("not-{}", broker.password);
    let http = http();
    let dashboard =
        DashboardProcess::start(broker, &wrong, PasswordIn::ConfigFile, &unique_prefix());
    let (status, body) = dashboard
        .readyz_until(&http, "/readyz to report the refused login", |_, body| {
            body["message"]
                .as_str()
                .is_some_and(|message| message.to_lowercase().contains("authentication failed"))
        })
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], false, "{body}");

    let page = http
        .get(dashboard.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.to_lowercase().contains("authentication failed"),
        "the banner says why: {page}"
    );
    let refused = http
        .post(dashboard.url("/api/scores"))
        .json(&serde_json::json!({ "customer": "Nobody" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 503);
    let refused = refused.text().await.unwrap();

    let served = everything_served(&dashboard, &http, None).await + &refused;
    for secret in [&wrong, &broker.password] {
        assert!(!served.contains(secret.as_str()), "a password is served");
        assert!(
            !dashboard.log_text().contains(secret.as_str()),
            "a password is in the dashboard's log"
        );
    }
}
