//! A broker with SCRAM-authenticated listeners for the Kafka security tests
//! (`request-reply/tests/kafka_security.rs`, `dashboard/tests/security_kafka.rs`).
//!
//! When `scripts/test` started its broker with the extra listeners it exports
//! `KAFKA_SASL_BOOTSTRAP_SERVERS`, `KAFKA_SSL_BOOTSTRAP_SERVERS`, `KAFKA_SSL_CA_LOCATION` and
//! `KAFKA_SCRAM_USERS`, and that broker is used. Otherwise the first test that needs one starts
//! its own through `scripts/kafka` (free ports, a temporary state dir, a SCRAM user with a random
//! password, a certificate made on the spot), and a watcher process stops it when the test
//! process exits, however it exits.

use request_reply::config::KafkaSettings;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// How to reach the SASL listeners, and who may.
#[derive(Debug)]
pub struct SecureBroker {
    /// SASL_PLAINTEXT listener (SCRAM).
    pub sasl_bootstrap: String,
    /// SASL_SSL listener (SCRAM over TLS).
    pub ssl_bootstrap: String,
    /// CA certificate that signed the broker's TLS certificate.
    pub ca_location: String,
    pub user: String,
    pub password: String,
    /// A second principal (a worker's, in the ACL test).
    pub worker_user: String,
    pub worker_password: String,
    /// `KAFKA_STATE_DIR` and `KAFKA_PORT` of the broker, for `scripts/kafka acl`.
    state: Vec<(String, String)>,
}

impl SecureBroker {
    /// librdkafka settings for the SASL_PLAINTEXT listener with SCRAM-SHA-256.
    pub fn sasl_settings(&self, password: &str) -> KafkaSettings {
        self.sasl_settings_of(&self.user, password)
    }

    /// The same for any user.
    pub fn sasl_settings_of(&self, user: &str, password: &str) -> KafkaSettings {
        let mut settings = KafkaSettings::for_bootstrap(&self.sasl_bootstrap);
        for (key, value) in [
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "SCRAM-SHA-256"),
            ("sasl.username", user),
            ("sasl.password", password),
        ] {
            settings.common.insert(key.into(), value.into());
        }
        settings
    }

    /// librdkafka settings for the SASL_SSL listener with SCRAM-SHA-512, trusting our CA.
    pub fn tls_settings(&self, password: &str) -> KafkaSettings {
        let mut settings = KafkaSettings::for_bootstrap(&self.ssl_bootstrap);
        for (key, value) in [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", self.user.as_str()),
            ("sasl.password", password),
            ("ssl.ca.location", self.ca_location.as_str()),
        ] {
            settings.common.insert(key.into(), value.into());
        }
        settings
    }
}

impl SecureBroker {
    /// Runs `scripts/kafka acl ARGS` (Kafka's AclCommand) against this broker.
    pub fn acl(&self, args: &[&str]) {
        let output = Command::new(repo_root().join("scripts/kafka"))
            .arg("acl")
            .args(args)
            .envs(self.state.iter().map(|(key, value)| (key, value)))
            .env_remove("KAFKA_BROKERS")
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/kafka acl");
        assert!(
            output.status.success(),
            "scripts/kafka acl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn repo_root() -> PathBuf {
    // Both including crates sit one level below the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crate has a parent directory")
        .to_path_buf()
}

/// 128 random bits as text.
fn random() -> String {
    request_reply::headers::CorrelationId::generate().key()
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// The broker of this test process (started on first use).
pub fn secure_broker() -> &'static SecureBroker {
    static BROKER: OnceLock<SecureBroker> = OnceLock::new();
    BROKER.get_or_init(|| from_environment().unwrap_or_else(start_own))
}

fn from_environment() -> Option<SecureBroker> {
    let sasl_bootstrap = std::env::var("KAFKA_SASL_BOOTSTRAP_SERVERS").ok()?;
    let ssl_bootstrap = std::env::var("KAFKA_SSL_BOOTSTRAP_SERVERS").ok()?;
    let ca_location = std::env::var("KAFKA_SSL_CA_LOCATION").ok()?;
    let users = std::env::var("KAFKA_SCRAM_USERS").ok()?;
    let mut users = users
        .split_whitespace()
        .filter_map(|pair| pair.split_once(':'));
    let (user, password) = users.next()?;
    let (worker_user, worker_password) = users.next()?;
    let state = ["KAFKA_STATE_DIR", "KAFKA_PORT"]
        .iter()
        .map(|key| Some(((*key).to_owned(), std::env::var(key).ok()?)))
        .collect::<Option<Vec<_>>>()?;
    Some(SecureBroker {
        sasl_bootstrap,
        ssl_bootstrap,
        ca_location,
        user: user.to_owned(),
        password: password.to_owned(),
        worker_user: worker_user.to_owned(),
        worker_password: worker_password.to_owned(),
        state,
    })
}

fn start_own() -> SecureBroker {
    let root = repo_root();
    let state_dir = std::env::temp_dir().join(format!("kafka-secure-test-{}", random()));
    let (port, sasl_port, ssl_port) = (free_port(), free_port(), free_port());
    let user = "rr-test".to_owned();
    let password = format!("pw-{}", random());
    let worker_user = "rr-worker".to_owned();
    let worker_password = format!("pw-{}", random());
    let script = root.join("scripts/kafka");
    let status = Command::new(&script)
        .arg("start")
        .env("KAFKA_PORT", port.to_string())
        .env("KAFKA_SASL_PORT", sasl_port.to_string())
        .env("KAFKA_SSL_PORT", ssl_port.to_string())
        .env(
            "KAFKA_SCRAM_USERS",
            format!("{user}:{password} {worker_user}:{worker_password}"),
        )
        .env("KAFKA_STATE_DIR", &state_dir)
        .env_remove("KAFKA_BROKERS")
        .stdout(Stdio::null())
        .status()
        .expect("run scripts/kafka start");
    // Stop the broker when this test process is gone, whatever way it goes.
    let watcher = format!(
        "tail --pid={} -f /dev/null; KAFKA_STATE_DIR='{dir}' '{script}' stop >/dev/null 2>&1; rm -rf '{dir}'",
        std::process::id(),
        dir = state_dir.display(),
        script = script.display()
    );
    // --fork: setsid itself returns at once, leaving the watcher in a session of its own.
    let watching = Command::new("setsid")
        .args(["--fork", "bash", "-c", &watcher])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("start the broker's watcher");
    assert!(watching.success(), "cannot start the broker's watcher");
    assert!(
        status.success(),
        "scripts/kafka could not start a broker with SASL listeners ({status}); see {}/kafka.log",
        state_dir.display()
    );
    SecureBroker {
        sasl_bootstrap: format!("127.0.0.1:{sasl_port}"),
        ssl_bootstrap: format!("127.0.0.1:{ssl_port}"),
        ca_location: state_dir.join("tls/ca.pem").display().to_string(),
        user,
        password,
        worker_user,
        worker_password,
        state: vec![
            ("KAFKA_STATE_DIR".into(), state_dir.display().to_string()),
            ("KAFKA_PORT".into(), port.to_string()),
        ],
    }
}
