//! Serving HTTP with bounds that a hostile client cannot stretch.
//!
//! `axum::serve` has no header or body read timeout, no connection cap and a graceful shutdown
//! that waits forever for slow clients: 300 connections with unfinished headers held 115 MB,
//! slowloris connections stayed open indefinitely, 1,100 idle connections exhausted the file
//! descriptors so that `/healthz` timed out, and a SIGTERM with half-sent requests open did not
//! stop the process. So the dashboard runs its own accept loop on hyper's HTTP/1 connection
//! builder (which has the header timeout and size limit), with a semaphore for the connection
//! cap and hyper-util's graceful shutdown under a deadline. The body deadline is tower-http's
//! (see `crate::build_app`); the Host/Origin check is `crate::hosts`.

use crate::config::DashboardSection;
use crate::hosts::HostList;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use service::config::ConfigError;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// What a connection beyond the cap is told before it is closed: a complete answer, so the
/// client reports "503" rather than a reset it cannot explain.
const REFUSED: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
content-length: 55\r\nconnection: close\r\nretry-after: 1\r\n\r\n\
Too many open connections to the dashboard; try again.\n";
/// Pause after a failed `accept` (out of file descriptors, say), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The HTTP bounds, each a `[dashboard]` setting. The defaults suit a dashboard a few people
/// look at; all of them can be tightened for tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpSettings {
    /// Names (optionally with a port) that requests may carry in `Host`/`Origin` besides the
    /// listen address (see `crate::hosts`).
    pub allowed_hosts: HostList,
    /// How long a client has to send a request's headers, counted from when the connection
    /// opens or the previous response ends: so it is also the idle keep-alive timeout.
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers) accepted; larger gets 431.
    pub max_header_bytes: usize,
    /// How long a client has to send a whole request body, however it trickles in.
    pub body_read_timeout: Duration,
    /// Connections served at once; more are answered 503 and closed at once.
    pub max_connections: usize,
    /// Live-update streams (`/events`) open at once; more are answered 503.
    pub max_event_streams: usize,
    /// How long shutdown waits for requests in progress before it closes their connections.
    pub shutdown_grace: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            allowed_hosts: HostList::default(),
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            body_read_timeout: Duration::from_secs(10),
            max_connections: 512,
            max_event_streams: 100,
            shutdown_grace: Duration::from_secs(1),
        }
    }
}

impl HttpSettings {
    /// Reads the `[dashboard]` settings; a zero limit or timeout is refused, since it would
    /// make the dashboard unusable rather than unbounded.
    pub(crate) fn from_section(section: &DashboardSection) -> Result<Self, ConfigError> {
        let millis = |key: &str, value: u64| positive(key, value).map(Duration::from_millis);
        Ok(HttpSettings {
            allowed_hosts: section.allowed_hosts.clone(),
            header_read_timeout: millis("header_read_timeout_ms", section.header_read_timeout_ms)?,
            max_header_bytes: positive("max_header_bytes", section.max_header_bytes)?,
            body_read_timeout: millis("body_read_timeout_ms", section.body_read_timeout_ms)?,
            max_connections: positive("max_connections", section.max_connections)?,
            max_event_streams: positive("max_event_streams", section.max_event_streams)?,
            shutdown_grace: millis("shutdown_grace_ms", section.shutdown_grace_ms)?,
        })
    }
}

/// A `[dashboard]` number that must be above zero.
fn positive<T: PartialEq + Default + ToString>(key: &str, value: T) -> Result<T, ConfigError> {
    if value == T::default() {
        return Err(ConfigError::Invalid {
            section: "dashboard".into(),
            key: key.into(),
            value: value.to_string(),
            problem: "must be greater than 0".into(),
        });
    }
    Ok(value)
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting, lets requests in
/// progress finish for at most `shutdown_grace`, and closes whatever is still open.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    settings: &HttpSettings,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_header_size(settings.max_header_bytes);
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "cannot accept a connection");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                    refuse(&stream, settings.max_connections);
                    continue;
                };
                let service = TowerToHyperService::new(app.clone());
                let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                connections.spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%peer, %error, "connection closed with an error");
                    }
                    drop(slot);
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(settings.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!(
            connections = connections.len(),
            grace = ?settings.shutdown_grace,
            "closing connections still open after the shutdown grace period"
        );
    }
    connections.shutdown().await;
}

/// Answers a connection beyond the cap with a 503 and closes it, without waiting on it: the
/// answer fits in any socket buffer, and a client that does not read it loses nothing.
fn refuse(stream: &TcpStream, cap: usize) {
    tracing::debug!(cap, "connection refused: too many open connections");
    let _ = stream.try_write(REFUSED);
}

#[cfg(test)]
mod tests {
    use super::*;
    use service::config::ConfigFile;

    fn from_file(file: &ConfigFile) -> Result<HttpSettings, ConfigError> {
        HttpSettings::from_section(&file.section_as("dashboard")?)
    }

    fn file(pairs: &[(&str, &str)]) -> ConfigFile {
        let dashboard = pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        ConfigFile::from_sections([("dashboard".to_owned(), dashboard)].into())
    }

    #[test]
    fn settings_come_from_the_file_with_defaults_and_refuse_zero() {
        assert_eq!(from_file(&file(&[])).unwrap(), HttpSettings::default());
        let settings = from_file(&file(&[
            ("allowed_hosts", "dashboard, localhost:8080"),
            ("header_read_timeout_ms", "500"),
            ("max_header_bytes", "4096"),
            ("body_read_timeout_ms", "700"),
            ("max_connections", "3"),
            ("max_event_streams", "2"),
            ("shutdown_grace_ms", "250"),
        ]))
        .unwrap();
        assert_eq!(
            settings.allowed_hosts,
            "dashboard,localhost:8080".parse().unwrap()
        );
        assert_eq!(settings.header_read_timeout, Duration::from_millis(500));
        assert_eq!(settings.max_header_bytes, 4096);
        assert_eq!(settings.body_read_timeout, Duration::from_millis(700));
        assert_eq!(settings.max_connections, 3);
        assert_eq!(settings.max_event_streams, 2);
        assert_eq!(settings.shutdown_grace, Duration::from_millis(250));
        for key in [
            "max_connections",
            "header_read_timeout_ms",
            "shutdown_grace_ms",
        ] {
            let error = from_file(&file(&[(key, "0")])).unwrap_err().to_string();
            assert!(
                error.contains(key) && error.contains("greater than 0"),
                "{error}"
            );
        }
        let error = from_file(&file(&[("allowed_hosts", "http://x")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("allowed_hosts"), "{error}");
        for key in ["allowed_hosts", "max_connections", "shutdown_grace_ms"] {
            assert!(
                crate::ENV_OVERRIDES.iter().any(|known| known.key == key
                    && known.var == format!("DASHBOARD_{}", key.to_ascii_uppercase())),
                "{key}"
            );
        }
    }

    #[test]
    fn the_refusal_is_a_complete_http_answer() {
        let text = std::str::from_utf8(REFUSED).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{text}"
        );
    }
}
