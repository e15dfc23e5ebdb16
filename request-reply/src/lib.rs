//! Request/reply over Kafka: a requester that sends correlated requests and receives their
//! replies, a responder loop that consumes, handles, replies and commits (at-least-once), the
//! header codecs both sides agree on, log replay and read-back, and topic administration.
//!
//! It knows no message of its own: a worker implements [`responder::Service`] for its request
//! and response types, a requester describes its kinds of request with [`route::Routes`], and
//! both exchange JSON in the reply [`envelope`]. It reads no config file, parses no command line
//! and serves no HTTP: callers pass client settings, topic names and consumer group ids in (this
//! project's services do that in the `service` crate, with the topics of the `contract` crate).

#![warn(missing_docs)]

pub mod admin;
pub mod codec;
pub mod config;
pub mod deadline;
pub mod envelope;
pub mod groups;
pub mod headers;
pub mod history;
pub mod kafka;
pub mod metrics;
mod offsets;
pub mod producer;
pub mod requester;
pub mod responder;
pub mod route;
pub mod stamp;
#[cfg(any(test, feature = "test-hooks"))]
pub mod testing;
pub mod watchdog;
