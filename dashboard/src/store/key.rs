//! Correlation IDs as the store keys and logs them: compact for ours, bounded for anyone's.

use request_reply::headers::CorrelationId;

/// Longest correlation ID kept or logged, in bytes. Ours are UUIDs (36 bytes of text, or 16
/// raw bytes from Spring); a reply or a request in the log with a longer one cannot be one of
/// ours, so it is not stored (a hostile 100 KB ID would otherwise be kept and logged in full).
pub const MAX_CORRELATION_ID_BYTES: usize = 128;

/// A correlation ID as the store keys it: 16 bytes for a UUID (ours, Spring's), the canonical
/// text only for the rare other kinds.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Key {
    Uuid([u8; 16]),
    Other(Box<str>),
}

impl Key {
    pub(super) fn of(id: &CorrelationId) -> Key {
        match id.uuid() {
            Some(uuid) => Key::Uuid(uuid.into_bytes()),
            None => Key::Other(id.key().into()),
        }
    }

    /// From the canonical text ([`CorrelationId::key`]), as in URLs.
    pub(super) fn parse(text: &str) -> Key {
        Key::of(&CorrelationId::from_bytes(text.as_bytes()))
    }

    pub(super) fn text(&self) -> String {
        match self {
            Key::Uuid(bytes) => CorrelationId::from_bytes(bytes).key(),
            Key::Other(text) => text.to_string(),
        }
    }
}

/// A correlation ID as logs show it: in full up to [`MAX_CORRELATION_ID_BYTES`], else its
/// first bytes and its length, so a hostile ID cannot flood the log.
pub fn loggable_id(id: &CorrelationId) -> String {
    let bytes = id.as_bytes();
    if bytes.len() <= MAX_CORRELATION_ID_BYTES {
        return id.key();
    }
    let start = CorrelationId::from_bytes(&bytes[..32]).key();
    format!("{start}… ({} bytes)", bytes.len())
}
