//! Kafka security against a real broker with SCRAM listeners (see `support/secure_broker.rs`):
//! a worker and a requester with the right credentials answer a request over SASL_PLAINTEXT and
//! over SASL_SSL (a certificate made at test time); a worker with the wrong password stops at
//! start-up, promptly, with an error that says authentication failed; a client that does not
//! trust the broker's certificate is refused; and no password shows up in an error or a log line.

mod common;

use common::routes;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use request_reply::admin::ensure_request_and_reply_topics;
use request_reply::codec::ReplyBody;
use request_reply::config::{KafkaSettings, TopicSettings};
use request_reply::headers::{self, CorrelationId};
use request_reply::kafka::Outgoing;
use request_reply::requester::{Client, ReplyListener, RequestError, Requester, StartAt};
use request_reply::responder::{WorkerConfig, WorkerError, run};
use request_reply::route::Routes;
use request_reply::testing::EchoService;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use test_support::secure_broker::secure_broker;

/// Longest a worker with bad credentials may take to give up.
const FAIL_FAST: Duration = Duration::from_secs(30);

/// Everything logged in this test process (the library's lines and librdkafka's).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn captured_logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        logs
    })
}

fn log_text() -> String {
    String::from_utf8_lossy(
        &captured_logs()
            .0
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()),
    )
    .into_owned()
}

/// What librdkafka said about logins and handshakes, for failure messages.
fn security_log_lines() -> String {
    log_text()
        .lines()
        .filter(|line| {
            let lower = line.to_lowercase();
            lower.contains("librdkafka")
                && ["auth", "ssl", "certificate", "sasl"]
                    .iter()
                    .any(|word| lower.contains(word))
        })
        .take(60)
        .collect::<Vec<_>>()
        .join("\n")
}

fn unique_topics() -> TopicSettings {
    let id = request_reply::headers::CorrelationId::generate().key();
    TopicSettings {
        prefix: format!("secure-{}.", &id[..8]),
        ..TopicSettings::default()
    }
}

fn worker_config(kafka: KafkaSettings, topics: &TopicSettings) -> WorkerConfig {
    let mut kafka = kafka;
    kafka
        .consumer
        .insert("group.id".into(), format!("{}echo", topics.prefix));
    WorkerConfig::new(kafka, topics.clone())
}

/// The error and every error it wraps, one per line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str("\n  caused by: ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A worker and a requester with `kafka` exchange one request and reply.
async fn round_trip(kafka: KafkaSettings, customer: &str) {
    let topics = unique_topics();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let route = routes(&topics).route(());
    let config = worker_config(kafka.clone(), &topics);
    let worker = tokio::spawn(async move {
        run(EchoService, &route, config, async {
            let _ = stopped.await;
        })
        .await
    });
    let client = Client::connect(&kafka, &topics, routes(&topics), "requester")
        .await
        .unwrap_or_else(|error| panic!("requester over {kafka:?}: {}", chain(&error)));
    let reply = client
        .call((), &common::echo_request(customer), Duration::from_secs(60))
        .await
        .unwrap_or_else(|error| panic!("no reply over {kafka:?}: {}", chain(&error)));
    common::expect_echo(&reply, customer);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(60), worker)
        .await
        .expect("worker stops after its shutdown signal")
        .unwrap()
        .unwrap_or_else(|error| panic!("worker failed: {}", chain(&error)));
}

#[tokio::test]
async fn scram_over_sasl_plaintext_answers_a_request() {
    captured_logs();
    let broker = secure_broker();
    round_trip(broker.sasl_settings(&broker.password), "Sasl Plaintext Ltd").await;
    assert!(
        !log_text().contains(&broker.password),
        "password in the logs"
    );
}

#[tokio::test]
async fn scram_over_tls_answers_a_request() {
    captured_logs();
    let broker = secure_broker();
    round_trip(broker.tls_settings(&broker.password), "Tls Ltd").await;
    assert!(
        !log_text().contains(&broker.password),
        "password in the logs"
    );
}

/// With ACLs (see the README's security section), only the principal a worker runs as can
/// write to a reply topic: a requester that may read replies but not write them cannot complete
/// someone's pending request with a forged reply, and the genuine reply still arrives.
#[tokio::test]
async fn a_requester_without_write_access_to_a_reply_topic_cannot_forge_a_reply() {
    let broker = secure_broker();
    let requester_kafka = broker.sasl_settings(&broker.password);
    let worker_kafka = broker.sasl_settings_of(&broker.worker_user, &broker.worker_password);
    let topics = unique_topics();
    ensure_request_and_reply_topics(&worker_kafka, &topics, &routes(&topics))
        .await
        .unwrap_or_else(|error| panic!("topics: {}", chain(&error)));
    let reply_topic = routes(&topics).route(()).reply_topic;
    let worker_principal = format!("User:{}", broker.worker_user);
    let requester_principal = format!("User:{}", broker.user);
    for (principal, operation) in [
        (worker_principal.as_str(), "Write"),
        (worker_principal.as_str(), "Describe"),
        (requester_principal.as_str(), "Read"),
        (requester_principal.as_str(), "Describe"),
    ] {
        broker.acl(&[
            "--add",
            "--allow-principal",
            principal,
            "--operation",
            operation,
            "--topic",
            &reply_topic,
        ]);
    }
    let mut listener =
        ReplyListener::start(&requester_kafka, routes(&topics), "requester", StartAt::End)
            .await
            .unwrap_or_else(|error| panic!("listener: {}", chain(&error)));

    let pending = CorrelationId::generate();
    // Both to partition 0, so the genuine reply's offset says whether anything came before it.
    let reply_to = |body: &str| {
        let mut reply = Outgoing::new(reply_topic.clone(), body.as_bytes().to_vec())
            .header(headers::CORRELATION_ID, pending.as_bytes());
        reply.partition = Some(0);
        reply
    };
    let requester =
        Requester::new(&requester_kafka, routes(&topics), Duration::from_secs(20)).unwrap();
    let forged = requester.send_outgoing(&reply_to("forged")).await;
    match forged {
        Err(RequestError::Send(KafkaError::MessageProduction(
            RDKafkaErrorCode::TopicAuthorizationFailed,
        ))) => {}
        other => panic!("the forged reply was not refused for authorization: {other:?}"),
    }
    let worker = Requester::new(&worker_kafka, routes(&topics), Duration::from_secs(20)).unwrap();
    worker
        .send_outgoing(&reply_to("genuine"))
        .await
        .unwrap_or_else(|error| panic!("the worker's reply: {}", chain(&error)));
    let received = tokio::time::timeout(Duration::from_secs(30), listener.next())
        .await
        .expect("the genuine reply arrives");
    assert_eq!(received.correlation_id, Some(pending));
    assert_eq!(
        received.offset, 0,
        "nothing, forged or not, came before the genuine reply in its partition"
    );
    match received.content {
        Ok(ReplyBody::Text(text)) => assert_eq!(text, "genuine"),
        other => panic!("expected the genuine text reply, got {other:?}"),
    }
}

/// Runs a worker that must fail at start-up; returns its error text, chain included.
async fn failing_worker(kafka: KafkaSettings) -> (String, Duration) {
    let topics = unique_topics();
    let started = Instant::now();
    let outcome = tokio::time::timeout(
        FAIL_FAST,
        run(
            EchoService,
            &routes(&topics).route(()),
            worker_config(kafka, &topics),
            std::future::pending(),
        ),
    )
    .await
    .unwrap_or_else(|_| panic!("a worker that cannot connect must stop within {FAIL_FAST:?}"));
    let error: WorkerError = match outcome {
        Ok(()) => panic!("a worker that cannot connect must not run"),
        Err(error) => error,
    };
    (chain(&error), started.elapsed())
}

#[tokio::test]
async fn wrong_password_stops_the_worker_promptly_saying_authentication_failed() {
    captured_logs();
    let broker = secure_broker();
    let wrong = format!("{}-but-wrong", broker.password);
    let (error, took) = failing_worker(broker.sasl_settings(&wrong)).await;
    assert!(
        error.to_lowercase().contains("authentication failed"),
        "the error must say authentication failed: {error}\nlibrdkafka said:\n{}",
        security_log_lines()
    );
    assert!(
        !error.contains(&wrong) && !error.contains(&broker.password),
        "password in the error: {error}"
    );
    let logs = log_text();
    assert!(
        !logs.contains(&wrong) && !logs.contains(&broker.password),
        "password in the logs"
    );
    eprintln!("wrong password: failed after {took:?} with: {error}");
}

#[tokio::test]
async fn unknown_user_over_tls_is_refused_too() {
    captured_logs();
    let broker = secure_broker();
    let mut kafka = broker.tls_settings("whatever-password-9");
    kafka
        .common
        .insert("sasl.username".into(), "nobody-of-that-name".into());
    let (error, _) = failing_worker(kafka).await;
    assert!(
        error.to_lowercase().contains("authentication failed"),
        "the error must say authentication failed: {error}\nlibrdkafka said:\n{}",
        security_log_lines()
    );
    assert!(
        !error.contains("whatever-password-9"),
        "password in the error: {error}"
    );
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_certificate_is_refused() {
    captured_logs();
    let broker = secure_broker();
    let mut kafka = broker.tls_settings(&broker.password);
    // No CA: the system trust store does not know our test CA, so the handshake must fail.
    kafka.common.remove("ssl.ca.location");
    let (error, _) = failing_worker(kafka).await;
    let lower = error.to_lowercase();
    assert!(
        lower.contains("certificate") || lower.contains("ssl"),
        "the error must name the TLS failure: {error}\nlibrdkafka said:\n{}",
        security_log_lines()
    );
    assert!(
        !error.contains(&broker.password),
        "password in the error: {error}"
    );
}
