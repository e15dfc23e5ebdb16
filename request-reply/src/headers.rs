//! Kafka header names and codecs for the request/reply conventions we speak.
//!
//! The names are those of Spring Kafka's `ReplyingKafkaTemplate` and NestJS, so either kind of
//! client can talk to our workers. Values are read in every encoding those libraries write.

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

pub const JSON_CONTENT_TYPE: &str = "application/json";
pub const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

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

    pub fn from_bytes(bytes: &[u8]) -> Self {
        CorrelationId(bytes.to_vec())
    }

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
}
