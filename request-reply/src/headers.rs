//! Kafka header names and codecs for the request/reply conventions we speak.
//!
//! The names are those of Spring Kafka's `ReplyingKafkaTemplate` and NestJS, so either kind of
//! client can talk to our workers. Values are read in every encoding those libraries write.

use crate::envelope::ErrorBody;
use std::fmt;
use uuid::Uuid;

/// Correlation ID: copied byte for byte from request to reply.
pub const CORRELATION_ID: &str = "kafka_correlationId";
/// The topic the requester listens on for the reply.
pub const REPLY_TOPIC: &str = "kafka_replyTopic";
/// The partition of the reply topic to answer on (4-byte big-endian int or decimal text).
pub const REPLY_PARTITION: &str = "kafka_replyPartition";
/// `application/json` or `text/plain`; absent on the original system's messages.
pub const CONTENT_TYPE: &str = "content-type";
/// On a dead-lettered message: why it could not be handled.
pub const DEAD_LETTER_REASON: &str = "dlq-reason";
/// On a dead-lettered message: where it came from, as `topic/partition/offset`.
pub const DEAD_LETTER_SOURCE: &str = "dlq-source";
/// On a dead-lettered message cut down to fit the dead-letter topic: what was cut.
pub const DEAD_LETTER_TRUNCATED: &str = "dlq-truncated";

/// When the requester stops waiting for the reply, as milliseconds since the Unix epoch; see
/// [`Deadline`](crate::deadline::Deadline). A worker does not handle a request past it.
pub const DEADLINE: &str = "request-deadline";

/// W3C trace context, so one trace spans dashboard → worker → dashboard.
pub const TRACEPARENT: &str = "traceparent";

/// On a reply from one of our workers: its consumer group (see [`crate::stamp`]).
pub const WORKER_GROUP: &str = "worker-group";
/// On a reply from one of our workers: its consumer's `client.id`.
pub const WORKER_CLIENT_ID: &str = "worker-client-id";
/// On a reply from one of our workers: the host it runs on.
pub const WORKER_HOST: &str = "worker-host";
/// On a reply from one of our workers: when it consumed the request, as decimal milliseconds
/// since the Unix epoch.
pub const WORKER_RECEIVED_AT: &str = "worker-received-at";
/// On a reply from one of our workers: how long the request waited for the earlier requests of
/// its key, in decimal microseconds.
pub const WORKER_QUEUED_US: &str = "worker-queued-us";
/// On a reply from one of our workers: how long handling the request took, in decimal
/// microseconds.
pub const WORKER_HANDLER_US: &str = "worker-handler-us";

/// `content-type` of JSON payloads.
pub const JSON_CONTENT_TYPE: &str = "application/json";
/// `content-type` of plain-text payloads.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// NestJS: marks the last reply to a request. A NestJS `ClientKafka.send()` completes only on a
/// reply that carries it (any value: NestJS checks for presence), so every reply of ours does.
pub const NEST_IS_DISPOSED: &str = "kafka_nest-is-disposed";
/// What a NestJS responder itself writes for [`NEST_IS_DISPOSED`]: one zero byte.
pub const NEST_IS_DISPOSED_VALUE: &[u8] = &[0];
/// NestJS: marks an error reply, with the error as JSON text; a NestJS client fails the call with
/// the parsed value. Our error replies carry the [`ErrorBody`] here; see [`decode_nest_error`].
pub const NEST_ERR: &str = "kafka_nest-err";

/// A correlation ID exactly as it travels in the `kafka_correlationId` header.
///
/// We generate UUIDs as 36-character text (readable with kcat, what NestJS does); Spring sends
/// 16 raw bytes by default. Both denote the same UUID, so [`CorrelationId::key`] folds them into
/// one canonical string, while [`CorrelationId::as_bytes`] keeps the original bytes for echoing.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CorrelationId(Vec<u8>);

impl CorrelationId {
    /// A fresh random UUID, in text form.
    pub fn generate() -> Self {
        CorrelationId(Uuid::new_v4().hyphenated().to_string().into_bytes())
    }

    /// Takes the header's bytes as they are.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        CorrelationId(bytes.to_vec())
    }

    /// The header's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The UUID, if the bytes are one in either the binary or the text encoding.
    pub fn uuid(&self) -> Option<Uuid> {
        if let Ok(bytes) = <[u8; 16]>::try_from(self.0.as_slice()) {
            return Some(Uuid::from_bytes(bytes));
        }
        std::str::from_utf8(&self.0)
            .ok()
            .and_then(|text| Uuid::try_parse(text.trim()).ok())
    }

    /// Canonical text for lookups, URLs and logs: the hyphenated UUID when it is one, else the
    /// text itself, else `hex:` and the bytes in hex.
    pub fn key(&self) -> String {
        if let Some(uuid) = self.uuid() {
            return uuid.hyphenated().to_string();
        }
        match std::str::from_utf8(&self.0) {
            Ok(text) if !text.is_empty() && !text.chars().any(char::is_control) => text.to_owned(),
            _ => {
                let hex: String = self.0.iter().map(|byte| format!("{byte:02x}")).collect();
                format!("hex:{hex}")
            }
        }
    }
}

impl fmt::Debug for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CorrelationId({})", self.key())
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// Reads `kafka_replyPartition`: decimal text (NestJS) or a 4-byte big-endian int (Spring).
///
/// All-digit values are read as text first: four ASCII digits as a big-endian int would be a
/// partition number above 800 million, which no real topic has.
pub fn decode_reply_partition(bytes: &[u8]) -> Option<i32> {
    if !bytes.is_empty() && bytes.len() <= 10 && bytes.iter().all(u8::is_ascii_digit) {
        return std::str::from_utf8(bytes).ok()?.parse().ok();
    }
    let raw = <[u8; 4]>::try_from(bytes).ok()?;
    let partition = i32::from_be_bytes(raw);
    (partition >= 0).then_some(partition)
}

/// Whether a `content-type` header value names JSON (parameters such as charset are ignored).
pub fn is_json_content_type(value: &[u8]) -> bool {
    media_type(value).is_some_and(|media| media.eq_ignore_ascii_case(JSON_CONTENT_TYPE))
}

/// Whether a `content-type` header value names plain text.
pub fn is_text_content_type(value: &[u8]) -> bool {
    media_type(value).is_some_and(|media| media.eq_ignore_ascii_case("text/plain"))
}

fn media_type(value: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(value).ok()?;
    Some(text.split(';').next().unwrap_or_default().trim())
}

/// A W3C `traceparent` (version 00): which trace a message belongs to and which span caused it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace's 16-byte ID.
    pub trace_id: [u8; 16],
    /// This span's 8-byte ID.
    pub span_id: [u8; 8],
    /// Whether the trace is sampled (flag `01`).
    pub sampled: bool,
}

impl TraceContext {
    /// The start of a new trace.
    pub fn new_root() -> Self {
        TraceContext {
            trace_id: *Uuid::new_v4().as_bytes(),
            span_id: random_span_id(),
            sampled: true,
        }
    }

    /// A new span in the same trace, caused by this one.
    pub fn child(&self) -> Self {
        TraceContext {
            span_id: random_span_id(),
            ..*self
        }
    }

    /// Reads `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`; all-zero ids are invalid.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?.trim();
        let mut parts = text.split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || version != "00" {
            return None;
        }
        let trace_id: [u8; 16] = hex_bytes(trace)?;
        let span_id: [u8; 8] = hex_bytes(span)?;
        let [flags]: [u8; 1] = hex_bytes(flags)?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceContext {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// The `traceparent` header value (`00-<trace>-<span>-<flags>`).
    pub fn header_value(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.span_id),
            u8::from(self.sampled)
        )
    }

    /// The trace ID in lowercase hex, for logs.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }
}

fn random_span_id() -> [u8; 8] {
    let bytes = Uuid::new_v4().into_bytes();
    let mut span = [0; 8];
    span.copy_from_slice(&bytes[..8]);
    span
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn hex_bytes<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2
        || !text
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
    {
        return None;
    }
    let mut bytes = [0; N];
    for (index, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[index * 2..index * 2 + 2], 16).ok()?;
    }
    Some(bytes)
}

/// Reads a `kafka_nest-err` value: our own [`ErrorBody`] when one of our workers sent it (or a
/// NestJS responder threw `RpcException({code, message})` with one of our codes); otherwise the
/// error's text, for the `{"status":"error","message":...}` of NestJS's exception filter or
/// anything else: its `message` when it is a JSON object with one, else the whole value.
pub fn decode_nest_error(value: &[u8]) -> Result<ErrorBody, String> {
    if let Ok(body) = serde_json::from_slice::<ErrorBody>(value) {
        return Ok(body);
    }
    let text = String::from_utf8_lossy(value).into_owned();
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|json| json.get("message")?.as_str().map(str::to_owned));
    Err(message.unwrap_or(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_text_uuids_share_one_key() {
        let uuid = Uuid::new_v4();
        let binary = CorrelationId::from_bytes(uuid.as_bytes());
        let text = CorrelationId::from_bytes(uuid.hyphenated().to_string().as_bytes());
        assert_eq!(binary.key(), text.key());
        assert_eq!(binary.uuid(), Some(uuid));
        assert_ne!(binary.as_bytes(), text.as_bytes());
    }

    #[test]
    fn generated_ids_are_text_uuids() {
        let id = CorrelationId::generate();
        assert_eq!(id.as_bytes().len(), 36);
        assert!(id.uuid().is_some());
        assert_ne!(id, CorrelationId::generate());
    }

    #[test]
    fn non_uuid_ids_keep_their_text_or_become_hex() {
        assert_eq!(CorrelationId::from_bytes(b"nest-42").key(), "nest-42");
        assert_eq!(CorrelationId::from_bytes(&[0xff, 0x00]).key(), "hex:ff00");
        assert_eq!(CorrelationId::from_bytes(b"").key(), "hex:");
    }

    #[test]
    fn reply_partition_reads_both_encodings() {
        assert_eq!(decode_reply_partition(b"2"), Some(2));
        assert_eq!(decode_reply_partition(b"1234"), Some(1234));
        assert_eq!(decode_reply_partition(&7i32.to_be_bytes()), Some(7));
        assert_eq!(decode_reply_partition(&(-1i32).to_be_bytes()), None);
        assert_eq!(decode_reply_partition(b"-1"), None);
        assert_eq!(decode_reply_partition(b""), None);
        assert_eq!(decode_reply_partition(b"99999999999"), None);
        assert_eq!(decode_reply_partition(b"abc"), None);
    }

    #[test]
    fn content_types_ignore_parameters_and_case() {
        assert!(is_json_content_type(b"application/json"));
        assert!(is_json_content_type(b"Application/JSON; charset=utf-8"));
        assert!(!is_json_content_type(b"text/plain"));
        assert!(is_text_content_type(TEXT_CONTENT_TYPE.as_bytes()));
        assert!(!is_text_content_type(&[0xff]));
    }

    #[test]
    fn nest_errors_read_our_error_body_or_the_nest_message() {
        use crate::envelope::ErrorCode;
        let ours = br#"{"code":"invalid_request","message":"lines: must not be empty"}"#;
        assert_eq!(
            decode_nest_error(ours),
            Ok(ErrorBody {
                code: ErrorCode::InvalidRequest,
                message: "lines: must not be empty".into()
            })
        );
        // NestJS's exception filter, for an RpcException("...") or any other exception.
        assert_eq!(
            decode_nest_error(br#"{"status":"error","message":"Internal server error"}"#),
            Err("Internal server error".into())
        );
        assert_eq!(
            decode_nest_error(br#"{"code":"teapot","message":"short and stout"}"#),
            Err("short and stout".into())
        );
        assert_eq!(decode_nest_error(b"boom"), Err("boom".into()));
        assert_eq!(decode_nest_error(b"[1,2]"), Err("[1,2]".into()));
    }

    #[test]
    fn traceparent_round_trips_and_children_keep_the_trace() {
        let value = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = TraceContext::parse(value).unwrap();
        assert_eq!(context.header_value().as_bytes(), value);
        assert_eq!(context.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(context.sampled);
        let child = context.child();
        assert_eq!(child.trace_id, context.trace_id);
        assert_ne!(child.span_id, context.span_id);
        let root = TraceContext::new_root();
        assert_eq!(
            TraceContext::parse(root.header_value().as_bytes()),
            Some(root)
        );
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        for bad in [
            &b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"[..],
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            b"garbage",
            &[0xff, 0xfe],
        ] {
            assert_eq!(
                TraceContext::parse(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
