//! The small HTTP endpoint a worker exposes its registry on (`GET /metrics` in the Prometheus
//! text format) with its health checks: `GET /healthz` says the process is up, `GET /readyz`
//! that its consumer has joined its group, so that an orchestrator (or a test) does not send
//! work to a worker that is still connecting.

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use request_reply::metrics::{WorkerMetrics, render};
use std::sync::Arc;

/// The content type Prometheus expects for the text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A response carrying the rendered registry.
fn response(registry: &Registry) -> impl IntoResponse + use<> {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], render(registry))
}

/// `GET /readyz`: 200 once the worker's consumer is a settled member of its group, 503 before
/// that and while it rejoins.
fn readiness(metrics: &WorkerMetrics) -> (StatusCode, &'static str) {
    if metrics.is_group_joined() {
        (StatusCode::OK, "ready")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the consumer has not joined its group",
        )
    }
}

/// `GET /metrics`, `GET /healthz` and `GET /readyz` of a worker whose metrics are registered in
/// `registry`.
pub fn router(registry: Arc<Registry>, metrics: WorkerMetrics) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = Arc::clone(&registry);
                async move { response(&registry) }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let metrics = metrics.clone();
                async move { readiness(&metrics) }
            }),
        )
}
