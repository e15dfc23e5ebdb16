//! The JSON API's answers, public so that clients in this workspace (the `bench` and `chaos`
//! tools) read them with the dashboard's own types instead of re-declaring them.

pub use crate::store::Status;
use contract::RequestKind;
use serde::{Deserialize, Serialize};

/// Answer of `POST /api/invoices` and `POST /api/scores`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Accepted {
    /// The ID the request was sent with; `GET /api/requests/{id}` takes it.
    pub correlation_id: String,
    /// Where the request's state can be read (also the `Location` header).
    pub status_url: String,
}

/// Answer of `GET /api/requests/{id}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RequestState {
    /// The request's correlation ID.
    pub correlation_id: String,
    /// Invoice or score.
    pub kind: RequestKind,
    /// Where the request stands.
    pub status: Status,
    /// The reply arrived after the request had been shown timed out.
    pub late: bool,
    /// Replies to this request after the first one (absorbed, not shown).
    pub duplicate_replies: u32,
    /// From sending to the reply, in milliseconds.
    pub round_trip_ms: Option<f64>,
    /// The request as sent; null when asked for with `payloads=false`.
    pub request: serde_json::Value,
    /// The reply as received; null while pending or when asked for with `payloads=false`.
    pub reply: Option<serde_json::Value>,
    /// Why the request failed or timed out.
    pub error: Option<String>,
}
