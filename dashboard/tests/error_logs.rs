//! What the dashboard logs as an error: a 5xx answer is not one in itself. A `/readyz` 503 says
//! Kafka is not there yet, which the broker status task reports once; logged at ERROR on every
//! probe, it buried the real errors (an orchestrator asks every few seconds).

#[allow(dead_code)]
use test_support::system;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use dashboard::{AppState, build_app};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tower::ServiceExt;
use tracing_subscriber::fmt::MakeWriter;

/// Everything logged at WARN and above, as text.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// One thread, so the subscriber set for this test sees every event the requests cause.
#[tokio::test(flavor = "current_thread")]
async fn a_readiness_503_is_not_logged_as_an_error() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    tracing::error!("the capture works");
    assert!(captured.text().contains("ERROR"), "{}", captured.text());
    let before = captured.text();

    // Kafka is unreachable (a closed port): the dashboard is not ready.
    let app = build_app(
        AppState::new(system::offline_config(SocketAddr::from((
            [127, 0, 0, 1],
            0,
        ))))
        .unwrap(),
    );
    for _ in 0..3 {
        let response = app
            .clone()
            .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    let logged = captured.text();
    assert_eq!(
        logged[before.len()..].matches("ERROR").count(),
        0,
        "logged at ERROR:\n{logged}"
    );
}
