//! What the dashboard and the workers share: the message contract (topics, payloads, headers,
//! codecs) and the request/reply machinery (a requester that sends and receives replies, a
//! responder loop that consumes, handles, replies and commits), plus config loading and shutdown.

pub mod admin;
pub mod codec;
pub mod config;
pub mod headers;
pub mod history;
pub mod kafka;
pub mod metrics;
pub mod producer;
pub mod requester;
pub mod responder;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod watchdog;
pub mod worker_cli;
