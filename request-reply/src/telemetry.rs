//! Logging set-up shared by the binaries.

use tracing_subscriber::EnvFilter;

/// Text logs to stderr, filtered by `RUST_LOG` (default: `info`, librdkafka's own chatter at warn).
pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn,librdkafka=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
