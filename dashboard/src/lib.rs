//! The dashboard: server-rendered pages and a JSON API that send invoice and score requests over
//! Kafka and show their replies as they arrive.
//!
//! `main` reads the config and calls [`run`]; tests call [`run`] on a port-0 listener, or drive
//! [`build_app`] directly. [`build_app`] lists every route and the layers around them; the
//! handlers are in `routes`, what they share in `state`, and what runs beside them in
//! `background`.

pub mod api;
mod background;
mod body;
mod charts;
mod config;
mod dead_letters;
pub mod error;
mod feed;
pub mod forms;
mod glossary;
pub mod hosts;
mod journey;
mod metrics;
mod records;
mod routes;
pub mod security;
mod server;
mod state;
pub mod store;
mod system;
mod views;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tower_http::timeout::RequestBodyDeadlineLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;

pub use config::{DashboardConfig, ENV_OVERRIDES, WorkerGroups};
pub use secrecy::{ExposeSecret, SecretString};
pub use server::HttpSettings;
pub use state::{AppState, BrokerStatus};

/// The `group.id` of the dashboard's Kafka consumers, unless config.ini sets one.
const GROUP_ID: &str = "dashboard";

/// Request bodies above this are refused before they are read.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;

/// The dashboard's routes, behind a body size limit and deadline, authentication (when an
/// `auth_token` is configured), the security headers and request tracing.
pub fn build_app(state: AppState) -> Router {
    let body_deadline = state.http_settings().body_read_timeout;
    let routes = routes::routes()
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // A hard deadline for the whole body, however it trickles in (a per-read timeout lets
        // a client sending a byte every few seconds hold a connection for days).
        .layer(RequestBodyDeadlineLayer::new(body_deadline))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            security::require_auth,
        ));
    // A 5xx is not an error in itself: a 503 says Kafka is unreachable or not ready yet (the
    // broker status task logs that once), and a 500 was logged by `AppError` with its cause.
    let trace = TraceLayer::new_for_http().on_failure(DefaultOnFailure::new().level(Level::DEBUG));
    security::with_security_headers(routes)
        .layer(trace)
        .with_state(state)
}

/// Serves the dashboard on `listener` until `shutdown` resolves, then returns within
/// `shutdown_grace_ms` however slow its clients are. Refuses to serve a non-loopback listener
/// without authentication unless `allow_unauthenticated` says so. Only requests that name the
/// listener's address (or an `allowed_hosts` name) are answered (see [`hosts`]).
pub async fn run(
    config: DashboardConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let address = listener.local_addr().context("listener has no address")?;
    config.check_listen_address(address)?;
    let allowed = Arc::new(hosts::AllowedHosts::new(
        address,
        &config.http.allowed_hosts,
    ));
    let http = config.http.clone();
    let state = AppState::new(config)?;
    let background = background::start(&state);
    let app =
        build_app(state.clone()).layer(axum::middleware::from_fn_with_state(allowed, hosts::check));
    server::serve(listener, app, &http, async move {
        shutdown.await;
        state.announce_stopping();
    })
    .await;
    for task in background {
        task.abort();
    }
    tracing::info!("dashboard stopped");
    Ok(())
}
