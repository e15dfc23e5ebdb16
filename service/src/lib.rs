//! What this project's services share beyond the message contract: config.ini loading with
//! environment overrides, logging, the shutdown signal, the metrics endpoint, and the workers'
//! command line and start-up around the library's responder loop.
//!
//! The `request-reply` library itself reads no files, parses no command line and serves no
//! HTTP; this crate is where the dashboard and the workers do those the same way.

pub mod config;
pub mod metrics;
pub mod shutdown;
pub mod telemetry;
pub mod worker;
