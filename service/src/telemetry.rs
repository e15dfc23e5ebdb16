//! Logging set-up shared by the binaries: the services' and the tools'.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Logs to stderr, filtered by `RUST_LOG` (default: `info`, librdkafka's own chatter at warn),
/// as text or, with `LOG_FORMAT=json`, one JSON object per line. Spans carry the correlation ID
/// and trace ID, so every line about a request names them.
pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn,librdkafka=warn"));
    // Colours only for a terminal: escape codes in a log file cost CPU on every line.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if std::env::var("LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json")) {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder.init();
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
