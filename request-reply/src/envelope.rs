//! The JSON envelope every reply travels in: the schema version plus either `"ok": {...}` or
//! `"error": {"code", "message"}`.
//!
//! The library writes error replies itself (for requests it cannot decode, validate or route, and
//! for replies it cannot deliver), and a NestJS client reads the error body from the
//! `kafka_nest-err` header, so the error shape belongs to the request/reply protocol, not to any
//! one service's messages: a service supplies only the answer type `T`. With the feature
//! `schemars`, the types also describe themselves as JSON Schema, for a contract that publishes
//! its reply schemas.

use serde::{Deserialize, Serialize};

/// The envelope version this library writes, and what a reply without one reads as.
pub const SCHEMA_VERSION: u32 = 1;

fn current_schema_version() -> u32 {
    SCHEMA_VERSION
}

/// Why a request failed, as carried in an error reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct ErrorBody {
    /// What kind of problem it is.
    pub code: ErrorCode,
    /// What was wrong, for people.
    pub message: String,
}

/// Why a request was refused, as a machine-readable code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The payload could not be read (bytes, encoding, JSON syntax, size).
    MalformedRequest,
    /// The payload was read but a field is missing or out of range.
    InvalidRequest,
    /// The payload names a schema version this worker does not know.
    UnsupportedSchemaVersion,
    /// The headers are unusable (reply partition, reply topic, deadline).
    InvalidHeaders,
    /// The request's deadline had passed when a worker picked it up, so it was not handled:
    /// nobody was waiting for the answer any more.
    DeadlineExceeded,
    /// The service could not answer the request: it failed for good, or kept failing after
    /// every retry its worker allows.
    HandlingFailed,
}

/// A reply payload: the schema version plus either `"ok": {...}` or `"error": {...}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct Reply<T> {
    /// Payload version; a missing one reads as 1.
    #[serde(default = "current_schema_version")]
    pub schema_version: u32,
    /// The answer or the error.
    #[serde(flatten)]
    pub outcome: Outcome<T>,
}

/// An answer or an error, serialized as `"ok": {...}` or `"error": {...}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Outcome<T> {
    /// The request was handled; its answer.
    Ok(T),
    /// The request was refused; why.
    Error(ErrorBody),
}

impl<T> Reply<T> {
    /// A successful reply in the current schema version.
    pub fn ok(value: T) -> Self {
        Reply {
            schema_version: SCHEMA_VERSION,
            outcome: Outcome::Ok(value),
        }
    }

    /// An error reply in the current schema version.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Reply {
            schema_version: SCHEMA_VERSION,
            outcome: Outcome::Error(ErrorBody {
                code,
                message: message.into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden JSON: what every peer reads.
    #[test]
    fn envelope_wire_format_is_stable() {
        let ok = Reply::ok(serde_json::json!({"n": 1}));
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            r#"{"schema_version":1,"ok":{"n":1}}"#
        );
        let error: Reply<()> = Reply::error(ErrorCode::InvalidHeaders, "m");
        let golden = r#"{"schema_version":1,"error":{"code":"invalid_headers","message":"m"}}"#;
        assert_eq!(serde_json::to_string(&error).unwrap(), golden);
        assert_eq!(serde_json::from_str::<Reply<()>>(golden).unwrap(), error);
        let versionless: Reply<u32> = serde_json::from_str(r#"{"ok":5}"#).unwrap();
        assert_eq!(versionless, Reply::ok(5));
    }
}
