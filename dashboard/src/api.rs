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

/// How long a client asked `POST /api/invoices|scores` to wait for the reply before answering,
/// from a `Prefer` header value (RFC 7240: `Prefer: wait=10`, seconds, maybe among other
/// preferences); `None` when it asked for no wait or the value is not a number of seconds.
pub fn preferred_wait(prefer: &str) -> Option<std::time::Duration> {
    prefer.split([',', ';']).find_map(|preference| {
        let (name, value) = preference.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("wait") {
            return None;
        }
        let seconds: u64 = value.trim().trim_matches('"').parse().ok()?;
        Some(std::time::Duration::from_secs(seconds))
    })
}

#[cfg(test)]
mod tests {
    use super::preferred_wait;
    use std::time::Duration;

    #[test]
    fn the_wait_preference_is_read_in_seconds_among_others() {
        assert_eq!(preferred_wait("wait=10"), Some(Duration::from_secs(10)));
        assert_eq!(
            preferred_wait("respond-async, Wait = \"5\""),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            preferred_wait("handling=lenient; wait=0"),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn no_wait_or_a_bad_one_asks_for_none() {
        assert_eq!(preferred_wait("respond-async"), None);
        assert_eq!(preferred_wait("wait=soon"), None);
        assert_eq!(preferred_wait("wait=-1"), None);
        assert_eq!(preferred_wait("return=minimal"), None);
    }
}
