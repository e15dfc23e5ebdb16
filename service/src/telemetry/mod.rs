//! Logging set-up shared by the binaries: the services' and the tools'.

mod repeats;

pub use repeats::{REPEAT_WINDOW, RepeatFilter, RepeatLimiter};

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Logs to stderr, filtered by `RUST_LOG` (default: `info`, librdkafka's own chatter at warn),
/// as text or, with `LOG_FORMAT=json`, one JSON object per line. Spans carry the correlation ID
/// and trace ID, so every line about a request names them. A librdkafka message is logged once
/// per [`REPEAT_WINDOW`] of its kind (see [`RepeatFilter`]).
pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn,librdkafka=warn"))
        .and(RepeatFilter::new(REPEAT_WINDOW));
    // Colours only for a terminal: escape codes in a log file cost CPU on every line.
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry();
    if std::env::var("LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json")) {
        let layer = layer.json().with_current_span(true).with_span_list(false);
        registry.with(layer.with_filter(filter)).init();
    } else {
        registry.with(layer.with_filter(filter)).init();
    }
}

/// Logs to stderr for the command-line tools (`bench`, `chaos`), whose report is their output:
/// warnings only by default, more with `RUST_LOG` (`RUST_LOG=info` shows the library's logs).
pub fn init_tool_logging() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,rdkafka=error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
