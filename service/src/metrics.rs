//! The small HTTP endpoint a service without a web server of its own exposes its registry on
//! (`GET /metrics` in the Prometheus text format, `GET /healthz`).

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use request_reply::metrics::render;
use std::sync::Arc;

/// The content type Prometheus expects for the text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A response carrying the rendered registry.
fn response(registry: &Registry) -> impl IntoResponse + use<> {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], render(registry))
}

/// `GET /metrics` and `GET /healthz` for services that have no HTTP server of their own.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = Arc::clone(&registry);
                async move { response(&registry) }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
}
