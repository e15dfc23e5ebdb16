//! Turning message bytes into contract types, for both new-style JSON and legacy plain text.
//!
//! Pure functions over the payload and the `content-type` header, so every rule about what is
//! accepted is unit-tested without a broker.

use crate::headers::{is_json_content_type, is_text_content_type};
use contract::{ErrorCode, MAX_REQUEST_BYTES, Reply, Validate, ValidationError};
use serde::de::DeserializeOwned;
use std::borrow::Cow;

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
    /// A JSON request of the current contract, already validated.
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
    /// The payload is larger than the contract allows (its size).
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
    /// The JSON does not satisfy the contract's limits.
    #[error("invalid request: {0}")]
    Invalid(ValidationError),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::JSON_CONTENT_TYPE;
    use contract::{InvoiceRequest, Outcome, Score, ScoreRequest};

    const JSON: Option<&[u8]> = Some(JSON_CONTENT_TYPE.as_bytes());

    fn score_request(
        payload: &[u8],
        content_type: Option<&[u8]>,
    ) -> Result<RequestBody<ScoreRequest>, DecodeError> {
        decode_request(Some(payload), content_type)
    }

    #[test]
    fn json_requests_decode_with_or_without_header() {
        let expected = RequestBody::Json(ScoreRequest {
            schema_version: 1,
            customer: "ACME".into(),
        });
        assert_eq!(
            score_request(br#"{"customer":"ACME"}"#, JSON),
            Ok(expected.clone())
        );
        assert_eq!(
            score_request(br#" {"customer":"ACME"}"#, None),
            Ok(expected)
        );
    }

    #[test]
    fn legacy_text_is_a_text_request() {
        assert_eq!(
            score_request(b"Calcular score", None),
            Ok(RequestBody::Text("Calcular score".into()))
        );
        assert_eq!(
            score_request(b"{not json", Some(b"text/plain")),
            Ok(RequestBody::Text("{not json".into()))
        );
    }

    #[test]
    fn each_kind_of_bad_payload_has_its_own_error() {
        assert_eq!(
            decode_request::<ScoreRequest>(None, None),
            Err(DecodeError::Empty)
        );
        assert_eq!(score_request(b"  ", None), Err(DecodeError::Empty));
        assert_eq!(score_request(b"ok\xff", None), Err(DecodeError::NotUtf8(2)));
        let huge = vec![b'a'; MAX_REQUEST_BYTES + 1];
        assert_eq!(
            score_request(&huge, None),
            Err(DecodeError::TooLarge(huge.len()))
        );
        assert!(matches!(
            score_request(b"x", Some(b"application/xml")),
            Err(DecodeError::UnsupportedContentType(_))
        ));
        assert!(matches!(
            score_request(b"{\"customer\":", JSON),
            Err(DecodeError::MalformedJson(_))
        ));
        assert!(matches!(
            score_request(br#"{"customer":"a"} trailing"#, JSON),
            Err(DecodeError::MalformedJson(_))
        ));
        let nested = format!("{}{}", "[".repeat(500), "]".repeat(500));
        assert!(matches!(
            score_request(nested.as_bytes(), JSON),
            Err(DecodeError::MalformedJson(_)) | Err(DecodeError::Invalid(_))
        ));
    }

    #[test]
    fn quoted_header_values_are_cut_short() {
        assert_eq!(excerpt("short", 10), "short");
        assert_eq!(excerpt("ééééé", 2), "éé… (3 more characters)");
        let long = format!("application/{}", "x".repeat(100_000));
        let Err(error) = score_request(b"{}", Some(long.as_bytes())) else {
            panic!("expected an unsupported content type");
        };
        let message = error.to_string();
        assert!(message.len() < 300, "{message}");
        assert!(message.contains("more characters"), "{message}");
    }

    #[test]
    fn field_errors_name_the_field_path() {
        let Err(DecodeError::Invalid(error)) = decode_request::<InvoiceRequest>(
            Some(br#"{"customer":"a","lines":[{"description":"d","quantity":"two","unit_price_cents":1}]}"#),
            JSON,
        ) else {
            panic!("expected a field error");
        };
        assert_eq!(error.field, "lines[0].quantity");

        let Err(DecodeError::Invalid(error)) = score_request(br#"{"name":"a"}"#, JSON) else {
            panic!("expected a missing-field error");
        };
        assert!(error.problem.contains("customer"), "{error}");

        let Err(error) = score_request(br#"{"customer":"a","schema_version":9}"#, JSON) else {
            panic!("expected a version error");
        };
        assert_eq!(error.code(), ErrorCode::UnsupportedSchemaVersion);

        let Err(error) = decode_request::<InvoiceRequest>(
            Some(br#"{"customer":"a","lines":[{"description":"d","quantity":99999999999,"unit_price_cents":1}]}"#),
            JSON,
        ) else {
            panic!("expected an out-of-range error");
        };
        assert_eq!(error.code(), ErrorCode::InvalidRequest);
    }

    #[test]
    fn replies_decode_json_and_keep_text() {
        let reply = decode_reply::<Score>(
            Some(br#"{"schema_version":1,"ok":{"customer":"a","score":5,"explanation":"e"}}"#),
            JSON,
        )
        .unwrap();
        assert!(matches!(
            reply,
            ReplyBody::Json(Reply {
                outcome: Outcome::Ok(Score { score: 5, .. }),
                ..
            })
        ));
        assert_eq!(
            decode_reply::<Score>(Some(b"Calculated score: 42."), None),
            Ok(ReplyBody::Text("Calculated score: 42.".into()))
        );
        assert_eq!(
            decode_reply::<Score>(Some(b"{looks like json"), None),
            Ok(ReplyBody::Text("{looks like json".into()))
        );
        assert!(decode_reply::<Score>(Some(b"{looks like json"), JSON).is_err());
    }

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
