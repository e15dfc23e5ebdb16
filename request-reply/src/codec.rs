//! Turning message bytes into the caller's types, for both JSON and plain text, and the
//! validation hook those types implement.
//!
//! Pure functions over the payload and the `content-type` header, so every rule about what is
//! accepted is unit-tested without a broker.

use crate::envelope::{ErrorCode, Outcome, Reply, SCHEMA_VERSION};
use crate::headers::{self, is_json_content_type, is_text_content_type};
use crate::kafka::HeaderList;
use serde::de::DeserializeOwned;
use std::borrow::Cow;

/// A request payload larger than this is refused before it is parsed: the worker copies whatever
/// it reads, and a parser's work grows with its input.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// A field that failed validation, named by its path (`lines[2].quantity`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ValidationError {
    /// The field at fault, as a path (`lines[2].quantity`).
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

impl ValidationError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        ValidationError {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// Range and shape checks a request type makes beyond what deserializing it checks: the
/// responder runs them on every JSON request before the service sees it, so a service only ever
/// handles valid requests, and a requester can run them before sending. A failure is answered
/// with `invalid_request`, or `unsupported_schema_version` when the field is `schema_version`.
pub trait Validate {
    /// Checks every limit; the first problem found is the error.
    fn validate(&self) -> Result<(), ValidationError>;
}

/// Longest excerpt of a request's own text (a header value) quoted in an error message.
pub const MAX_QUOTED_CHARS: usize = 200;

/// `text` cut to `max_chars` characters, saying how much was cut. Error messages quote what a
/// request carried, and a hostile request can make that as large as itself.
pub fn excerpt(text: &str, max_chars: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max_chars) {
        None => text.into(),
        Some((end, _)) => format!(
            "{}… ({} more characters)",
            &text[..end],
            text[end..].chars().count()
        )
        .into(),
    }
}

/// `text` as it may appear in a log line: cut like [`excerpt`], and with control characters
/// (newlines, terminal escape sequences) and backslashes escaped, so a value from the wire can
/// neither forge a line of its own nor drive the terminal of whoever reads the log.
pub fn loggable(text: &str, max_chars: usize) -> String {
    excerpt(text, max_chars).escape_debug().to_string()
}

/// A request as a worker sees it after decoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestBody<T> {
    /// A JSON request, already validated.
    Json(T),
    /// A plain-text request of the original system (`Gerar Nota fiscal`).
    Text(String),
}

/// A reply as the dashboard sees it after decoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyBody<T> {
    /// A JSON reply envelope.
    Json(Reply<T>),
    /// Plain text, as the original Python workers answer.
    Text(String),
}

/// Why a message could not be decoded; the text goes into error replies and dead-letter headers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The message has no payload at all.
    #[error("message has no payload")]
    Empty,
    /// The payload is larger than [`MAX_REQUEST_BYTES`] (its size).
    #[error("payload is {0} bytes, more than the {MAX_REQUEST_BYTES} allowed")]
    TooLarge(usize),
    /// The payload is not UTF-8 (offset of the first bad byte).
    #[error("payload is not valid UTF-8 (first bad byte at offset {0})")]
    NotUtf8(usize),
    /// The `content-type` header names an encoding we do not read.
    #[error("unsupported content-type {0:?}")]
    UnsupportedContentType(String),
    /// The payload is not JSON (the parser's message).
    #[error("payload is not valid JSON: {0}")]
    MalformedJson(String),
    /// The JSON does not satisfy the request type's limits.
    #[error("invalid request: {0}")]
    Invalid(ValidationError),
    /// A reply's `kafka_nest-err` header that is not an error body (the error's text).
    #[error("kafka_nest-err: {0}")]
    NestError(String),
}

impl DecodeError {
    /// The error code an error reply carries for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::Invalid(error) if error.field == "schema_version" => {
                ErrorCode::UnsupportedSchemaVersion
            }
            DecodeError::Invalid(_) => ErrorCode::InvalidRequest,
            _ => ErrorCode::MalformedRequest,
        }
    }
}

/// How the payload should be read, from the header or, failing that, from its first character.
enum Format {
    Json,
    Text,
}

fn detect_format(text: &str, content_type: Option<&[u8]>) -> Result<Format, DecodeError> {
    match content_type {
        Some(value) if is_json_content_type(value) => Ok(Format::Json),
        Some(value) if is_text_content_type(value) => Ok(Format::Text),
        Some(value) => Err(DecodeError::UnsupportedContentType(
            excerpt(&String::from_utf8_lossy(value), MAX_QUOTED_CHARS).into_owned(),
        )),
        // The original system sends no headers at all; kcat users often send JSON without one.
        None if text.trim_start().starts_with('{') => Ok(Format::Json),
        None => Ok(Format::Text),
    }
}

fn payload_text(payload: Option<&[u8]>) -> Result<&str, DecodeError> {
    let bytes = payload.ok_or(DecodeError::Empty)?;
    if bytes.len() > MAX_REQUEST_BYTES {
        return Err(DecodeError::TooLarge(bytes.len()));
    }
    let text =
        std::str::from_utf8(bytes).map_err(|error| DecodeError::NotUtf8(error.valid_up_to()))?;
    if text.trim().is_empty() {
        return Err(DecodeError::Empty);
    }
    Ok(text)
}

fn parse_json<T: DeserializeOwned>(text: &str) -> Result<T, DecodeError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_data() && path != "." {
            DecodeError::Invalid(ValidationError::new(path, inner.to_string()))
        } else if inner.is_data() {
            DecodeError::Invalid(ValidationError::new("payload", inner.to_string()))
        } else {
            DecodeError::MalformedJson(inner.to_string())
        }
    })?;
    deserializer
        .end()
        .map_err(|error| DecodeError::MalformedJson(error.to_string()))?;
    Ok(value)
}

/// Decodes and validates a request payload.
pub fn decode_request<T: DeserializeOwned + Validate>(
    payload: Option<&[u8]>,
    content_type: Option<&[u8]>,
) -> Result<RequestBody<T>, DecodeError> {
    let text = payload_text(payload)?;
    match detect_format(text, content_type)? {
        Format::Text => Ok(RequestBody::Text(text.to_owned())),
        Format::Json => {
            let request: T = parse_json(text)?;
            request.validate().map_err(DecodeError::Invalid)?;
            Ok(RequestBody::Json(request))
        }
    }
}

/// Decodes a reply payload. Replies are read leniently: header-less text that merely looks like
/// JSON but is not stays text, so nothing a peer sends is dropped.
pub fn decode_reply<T: DeserializeOwned>(
    payload: Option<&[u8]>,
    content_type: Option<&[u8]>,
) -> Result<ReplyBody<T>, DecodeError> {
    let bytes = payload.ok_or(DecodeError::Empty)?;
    let text =
        std::str::from_utf8(bytes).map_err(|error| DecodeError::NotUtf8(error.valid_up_to()))?;
    match detect_format(text, content_type)? {
        Format::Text => Ok(ReplyBody::Text(text.to_owned())),
        Format::Json => match parse_json::<Reply<T>>(text) {
            Ok(reply) => Ok(ReplyBody::Json(reply)),
            Err(_) if content_type.is_none() => Ok(ReplyBody::Text(text.to_owned())),
            Err(error) => Err(error),
        },
    }
}

/// Reads a reply message as far as the protocol goes: its JSON envelope, a NestJS error header,
/// or plain text (which the caller may know more about). The building block of
/// [`Routes::decode_reply`](crate::route::Routes::decode_reply).
///
/// A NestJS responder's error reply has no payload, only `kafka_nest-err`; ours carry both, and
/// then the payload's error (the same body) stands.
pub fn read_reply<T: DeserializeOwned>(
    payload: Option<&[u8]>,
    headers: &HeaderList,
) -> Result<ReplyBody<T>, DecodeError> {
    let decoded = decode_reply::<T>(payload, headers.last(headers::CONTENT_TYPE));
    match (headers.last(headers::NEST_ERR), decoded) {
        (
            Some(_),
            decoded @ Ok(ReplyBody::Json(Reply {
                outcome: Outcome::Error(_),
                ..
            })),
        ) => decoded,
        (Some(error), _) => match headers::decode_nest_error(error) {
            Ok(body) => Ok(ReplyBody::Json(Reply {
                schema_version: SCHEMA_VERSION,
                outcome: Outcome::Error(body),
            })),
            Err(message) => Err(DecodeError::NestError(message)),
        },
        (None, decoded) => decoded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loggable_text_forges_no_lines_and_stays_short() {
        let hostile = format!(
            "Gerar\n2026-01-01T00:00:00Z  INFO forged\x1b[31m{}",
            "x".repeat(5000)
        );
        let logged = loggable(&hostile, 100);
        assert!(
            !logged.contains('\n') && !logged.contains('\x1b'),
            "{logged}"
        );
        assert!(
            logged.contains("\\n") && logged.contains("\\u{1b}"),
            "{logged}"
        );
        assert!(logged.chars().count() < 200, "{logged}");
        assert_eq!(loggable("Gerar Nota fiscal", 100), "Gerar Nota fiscal");
    }
}
