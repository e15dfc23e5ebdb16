//! The library's payload decoders on this contract's types: JSON with or without a header,
//! legacy text, every kind of bad payload, field paths in errors, lenient replies.

use contract::{ErrorCode, InvoiceRequest, MAX_REQUEST_BYTES, Outcome, Reply, Score, ScoreRequest};
use request_reply::codec::{
    DecodeError, ReplyBody, RequestBody, decode_reply, decode_request, excerpt,
};
use request_reply::headers::JSON_CONTENT_TYPE;

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
