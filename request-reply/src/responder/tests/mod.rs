//! [`plan`] touches no broker, so every routing and rejection rule is checked here without one;
//! its deadline and retry rules have files of their own.

use super::delivery::undeliverable;
use super::*;
use crate::codec::MAX_REQUEST_BYTES;
use crate::deadline::Deadline;
use crate::envelope::{ErrorCode, Outcome, Reply, SCHEMA_VERSION};
use crate::headers;
use crate::kafka::Outgoing;
use crate::route::Route;
use crate::testing::{Echo, EchoLine, EchoRequest, EchoService, consumed, last_header as header};
use rdkafka::types::RDKafkaErrorCode;
use std::time::SystemTime;

mod deadlines;
mod retries;
const EXTRA_REPLY_TOPIC: &str = "t.custom-replies";
/// What the original system's dashboard sends as an invoice request and a score request.
const INVOICE_REQUEST_TEXT: &str = "Gerar Nota fiscal";
const SCORE_REQUEST_TEXT: &str = "Calcular score";

fn route() -> Route {
    Route::new("t.generate-invoice", "t.invoice-generated")
}

/// [`plan`] with the echo service, which answers at once and never fails (so no retry waits on
/// a clock), driven to completion here.
fn planned(request: &Inbound, now: SystemTime) -> Plan {
    futures::executor::block_on(plan(
        &EchoService,
        &routing(),
        request,
        now,
        &RetryPolicy::default(),
    ))
}

fn routing() -> Routing {
    Routing::new(&route(), &[EXTRA_REPLY_TOPIC.to_owned()])
}

fn valid_payload(customer: &str) -> Vec<u8> {
    serde_json::to_vec(&EchoRequest {
        schema_version: SCHEMA_VERSION,
        customer: customer.into(),
        lines: vec![EchoLine {
            description: "Widget".into(),
            quantity: 2,
            unit_price_cents: 150,
        }],
    })
    .unwrap()
}

/// A request consumed from partition 1, offset 42 of the request topic.
fn inbound(payload: Option<&[u8]>, headers: &[(&str, &[u8])]) -> Inbound {
    let headers: Vec<(&str, Option<&[u8]>)> = headers
        .iter()
        .map(|(key, value)| (*key, Some(*value)))
        .collect();
    let key = Some(b"request-key".to_vec());
    let topic = route().request_topic;
    consumed(&topic, key, payload.map(<[u8]>::to_vec), &headers)
}

fn decode(outgoing: &Outgoing) -> Reply<Echo> {
    serde_json::from_slice(&outgoing.payload).unwrap_or_else(|error| {
        panic!(
            "reply is not JSON ({error}): {}",
            String::from_utf8_lossy(&outgoing.payload)
        )
    })
}

fn error_code(outgoing: &Outgoing) -> ErrorCode {
    match decode(outgoing).outcome {
        Outcome::Error(body) => body.code,
        Outcome::Ok(echo) => panic!("expected an error reply, got {echo:?}"),
    }
}

/// Checks that `copy` is `request` unchanged on the dead-letter topic, plus the reason
/// (which must mention `reason_part`) and the source headers; returns the reason.
fn assert_dead_letter(copy: &Outgoing, request: &Inbound, reason_part: &str) -> String {
    assert_eq!(copy.topic, "t.generate-invoice.dlq");
    assert_eq!(copy.partition, None);
    assert_eq!(copy.key, request.key);
    assert_eq!(copy.payload, request.payload.clone().unwrap_or_default());
    let original: Vec<(String, Vec<u8>)> = request
        .headers
        .iter()
        .map(|(key, value)| (key.to_owned(), value.unwrap_or_default().to_vec()))
        .collect();
    let (copied, added) = copy.headers.split_at(original.len());
    assert_eq!(copied, original.as_slice(), "original headers preserved");
    assert_eq!(added.len(), 2, "{added:?}");
    assert_eq!(
        header(copy, headers::DEAD_LETTER_SOURCE),
        Some("t.generate-invoice/1/42".as_bytes())
    );
    let reason =
        String::from_utf8(header(copy, headers::DEAD_LETTER_REASON).unwrap().to_vec()).unwrap();
    assert!(
        reason.contains(reason_part),
        "reason {reason:?} should mention {reason_part:?}"
    );
    reason
}

/// A valid JSON request gets exactly one reply on the default reply topic, with the
/// correlation ID copied byte for byte (Spring's 16-byte binary UUID and a text ID alike),
/// the request's key, and a JSON content type.
#[test]
fn valid_json_gets_one_correlated_reply_on_the_default_topic() {
    let binary_uuid = *uuid::Uuid::new_v4().as_bytes();
    for id in [&binary_uuid[..], b"nest-42"] {
        let request = inbound(
            Some(&valid_payload("ACME")),
            &[(headers::CORRELATION_ID, id)],
        );
        let caused = planned(&request, SystemTime::now()).caused;
        assert_eq!(caused.len(), 1, "{caused:?}");
        let reply = &caused[0];
        assert_eq!(reply.topic, "t.invoice-generated");
        assert_eq!(reply.partition, None);
        assert_eq!(reply.key.as_deref(), Some(&b"request-key"[..]));
        assert_eq!(header(reply, headers::CORRELATION_ID), Some(id));
        assert_eq!(
            header(reply, headers::CONTENT_TYPE),
            Some(headers::JSON_CONTENT_TYPE.as_bytes())
        );
        assert_eq!(
            decode(reply),
            Reply::ok(Echo {
                customer: "ACME".into(),
                partition: 1,
                offset: 42
            })
        );
    }
}

/// `kafka_replyTopic` may name the NestJS `<request-topic>.reply`, a configured extra topic
/// or the default topic, and the reply then goes there.
#[test]
fn allowed_reply_topics_are_honoured() {
    for topic in [
        "t.generate-invoice.reply",
        EXTRA_REPLY_TOPIC,
        "t.invoice-generated",
    ] {
        let request = inbound(
            Some(&valid_payload("ACME")),
            &[
                (headers::CORRELATION_ID, b"id-1"),
                (headers::REPLY_TOPIC, topic.as_bytes()),
            ],
        );
        let caused = planned(&request, SystemTime::now()).caused;
        assert_eq!(caused.len(), 1, "{caused:?}");
        assert_eq!(caused[0].topic, topic);
        assert!(matches!(decode(&caused[0]).outcome, Outcome::Ok(_)));
    }
}

/// A reply topic outside the allowed set is refused: the request is dead-lettered and the
/// error reply goes to the default reply topic, never to the named one.
#[test]
fn disallowed_reply_topic_is_dead_lettered_with_an_error_reply() {
    for (topic, reason) in [
        (&b"t.score-calculated"[..], "is not allowed"),
        (b"__consumer_offsets", "is not allowed"),
        (b"\xff\xfe", "is not UTF-8"),
    ] {
        let request = inbound(
            Some(&valid_payload("ACME")),
            &[
                (headers::CORRELATION_ID, b"id-2"),
                (headers::REPLY_TOPIC, topic),
            ],
        );
        let caused = planned(&request, SystemTime::now()).caused;
        assert_eq!(caused.len(), 2, "{caused:?}");
        assert_dead_letter(&caused[0], &request, reason);
        let reply = &caused[1];
        assert_eq!(reply.topic, "t.invoice-generated");
        assert_eq!(header(reply, headers::CORRELATION_ID), Some(&b"id-2"[..]));
        assert_eq!(error_code(reply), ErrorCode::InvalidHeaders);
    }
}

/// `kafka_replyPartition` is read as decimal text (NestJS) and as a 4-byte big-endian int
/// (Spring), and the reply is produced to that partition.
#[test]
fn reply_partition_is_read_in_both_encodings() {
    for encoded in [&b"2"[..], &2i32.to_be_bytes()] {
        let request = inbound(
            Some(&valid_payload("ACME")),
            &[
                (headers::CORRELATION_ID, b"id-3"),
                (headers::REPLY_PARTITION, encoded),
            ],
        );
        let caused = planned(&request, SystemTime::now()).caused;
        assert_eq!(caused.len(), 1, "{caused:?}");
        assert_eq!(caused[0].partition, Some(2));
    }
}

/// An unreadable reply partition is refused like a bad reply topic: dead letter, and an
/// error reply on the default topic without a partition.
#[test]
fn invalid_reply_partition_is_dead_lettered_with_an_error_reply() {
    for encoded in [&b"-1"[..], b"two", &(-5i32).to_be_bytes(), b"\x00\x01", b""] {
        let request = inbound(
            Some(&valid_payload("ACME")),
            &[
                (headers::CORRELATION_ID, b"id-4"),
                (headers::REPLY_PARTITION, encoded),
            ],
        );
        let caused = planned(&request, SystemTime::now()).caused;
        assert_eq!(caused.len(), 2, "{encoded:?}: {caused:?}");
        assert_dead_letter(&caused[0], &request, headers::REPLY_PARTITION);
        assert_eq!(caused[1].topic, "t.invoice-generated");
        assert_eq!(caused[1].partition, None);
        assert_eq!(error_code(&caused[1]), ErrorCode::InvalidHeaders);
    }
}

/// One bad payload: its bytes, its content type, the error code and a word of the reason.
struct BadPayload {
    name: &'static str,
    payload: Option<Vec<u8>>,
    content_type: Option<&'static str>,
    code: ErrorCode,
    reason: &'static str,
}

fn bad_payloads() -> Vec<BadPayload> {
    let json = Some(headers::JSON_CONTENT_TYPE);
    let bad = |name, payload: &[u8], content_type, code, reason| BadPayload {
        name,
        payload: Some(payload.to_vec()),
        content_type,
        code,
        reason,
    };
    let mut oversized = valid_payload("ACME");
    oversized.truncate(oversized.len() - 1);
    oversized.extend(std::iter::repeat_n(b' ', MAX_REQUEST_BYTES));
    oversized.push(b'}');
    vec![
        bad(
            "not UTF-8",
            b"{\"customer\":\"\xff\"}",
            json,
            ErrorCode::MalformedRequest,
            "UTF-8",
        ),
        bad(
            "malformed JSON",
            b"{\"customer\":",
            json,
            ErrorCode::MalformedRequest,
            "not valid JSON",
        ),
        bad(
            "JSON content type on legacy text",
            INVOICE_REQUEST_TEXT.as_bytes(),
            json,
            ErrorCode::MalformedRequest,
            "not valid JSON",
        ),
        bad(
            "missing field",
            br#"{"customer":"ACME"}"#,
            json,
            ErrorCode::InvalidRequest,
            "lines",
        ),
        bad(
            "wrong type",
            br#"{"customer":"ACME","lines":[{"description":"d","quantity":"two","unit_price_cents":1}]}"#,
            None,
            ErrorCode::InvalidRequest,
            "lines[0].quantity",
        ),
        bad(
            "absurd quantity",
            br#"{"customer":"ACME","lines":[{"description":"d","quantity":2000000,"unit_price_cents":1}]}"#,
            json,
            ErrorCode::InvalidRequest,
            "lines[0].quantity",
        ),
        bad(
            "unsupported schema version",
            br#"{"schema_version":9,"customer":"ACME","lines":[{"description":"d","quantity":1,"unit_price_cents":1}]}"#,
            json,
            ErrorCode::UnsupportedSchemaVersion,
            "schema_version",
        ),
        bad(
            "oversized",
            &oversized,
            json,
            ErrorCode::MalformedRequest,
            "more than the 65536",
        ),
        bad("empty", b"", None, ErrorCode::MalformedRequest, "no payload"),
        BadPayload {
            name: "tombstone",
            payload: None,
            content_type: None,
            code: ErrorCode::MalformedRequest,
            reason: "no payload",
        },
        bad(
            "unsupported content type",
            br#"<invoice customer="ACME"/>"#,
            Some("application/xml"),
            ErrorCode::MalformedRequest,
            "application/xml",
        ),
    ]
}

/// Every kind of bad payload is copied to `<request-topic>.dlq` unchanged (key, payload,
/// headers) with `dlq-reason` and `dlq-source`, and answered with a JSON error reply of the
/// right code, correlated, on the requested topic.
#[test]
fn bad_payloads_with_a_correlation_id_get_a_dead_letter_and_an_error_reply() {
    for case in bad_payloads() {
        let mut request_headers: Vec<(&str, &[u8])> = vec![
            (headers::CORRELATION_ID, b"id-5"),
            (headers::REPLY_TOPIC, b"t.generate-invoice.reply"),
        ];
        if let Some(content_type) = case.content_type {
            request_headers.push((headers::CONTENT_TYPE, content_type.as_bytes()));
        }
        let request = inbound(case.payload.as_deref(), &request_headers);
        let caused = planned(&request, SystemTime::now()).caused;
        assert_eq!(caused.len(), 2, "{}: {caused:?}", case.name);
        let reason = assert_dead_letter(&caused[0], &request, case.reason);
        let reply = &caused[1];
        assert_eq!(reply.topic, "t.generate-invoice.reply", "{}", case.name);
        assert_eq!(header(reply, headers::CORRELATION_ID), Some(&b"id-5"[..]));
        assert_eq!(
            header(reply, headers::CONTENT_TYPE),
            Some(headers::JSON_CONTENT_TYPE.as_bytes())
        );
        let Outcome::Error(body) = decode(reply).outcome else {
            panic!("{}: expected an error reply", case.name);
        };
        assert_eq!(body.code, case.code, "{}", case.name);
        assert_eq!(body.message, reason, "{}", case.name);
    }
}

/// Without a correlation ID nobody can match an error reply, so a bad payload only goes to
/// the dead-letter topic.
#[test]
fn bad_payloads_without_a_correlation_id_are_only_dead_lettered() {
    for case in bad_payloads() {
        let content_type: Vec<(&str, &[u8])> = case
            .content_type
            .map(|value| (headers::CONTENT_TYPE, value.as_bytes()))
            .into_iter()
            .collect();
        let request = inbound(case.payload.as_deref(), &content_type);
        let caused = planned(&request, SystemTime::now()).caused;
        assert_eq!(caused.len(), 1, "{}: {caused:?}", case.name);
        assert_dead_letter(&caused[0], &request, case.reason);
    }
}

/// A request of the original system (plain text, no headers) gets a plain-text reply with
/// no headers and no key, as the original Python workers sent.
#[test]
fn header_less_plain_text_gets_a_bare_plain_text_reply() {
    let request = inbound(Some(INVOICE_REQUEST_TEXT.as_bytes()), &[]);
    let caused = planned(&request, SystemTime::now()).caused;
    assert_eq!(caused.len(), 1, "{caused:?}");
    let reply = &caused[0];
    assert_eq!(reply.topic, "t.invoice-generated");
    assert_eq!(reply.payload, b"Gerar Nota fiscal at 1/42");
    assert!(reply.headers.is_empty(), "{:?}", reply.headers);
    assert_eq!(reply.key, None);
    assert_eq!(reply.partition, None);
}

/// What a NestJS `ClientKafka` needs to finish a call: every reply carries
/// `kafka_nest-is-disposed` (it completes the call), and an error reply also carries
/// `kafka_nest-err` holding the same error body as its payload (it fails the call). The
/// dead-letter copy gets neither.
#[test]
fn replies_carry_what_a_nestjs_client_needs() {
    let disposed = Some(headers::NEST_IS_DISPOSED_VALUE);
    let good = inbound(
        Some(&valid_payload("ACME")),
        &[
            (headers::CORRELATION_ID, b"nest-1"),
            (headers::REPLY_TOPIC, b"t.generate-invoice.reply"),
            (headers::REPLY_PARTITION, b"0"),
        ],
    );
    let caused = planned(&good, SystemTime::now()).caused;
    assert_eq!(caused.len(), 1, "{caused:?}");
    assert_eq!(header(&caused[0], headers::NEST_IS_DISPOSED), disposed);
    assert_eq!(header(&caused[0], headers::NEST_ERR), None);

    let bad = inbound(
        Some(br#"{"customer":"ACME"}"#),
        &[(headers::CORRELATION_ID, b"nest-2")],
    );
    let caused = planned(&bad, SystemTime::now()).caused;
    assert_eq!(caused.len(), 2, "{caused:?}");
    assert_eq!(header(&caused[0], headers::NEST_IS_DISPOSED), None);
    assert_eq!(header(&caused[0], headers::NEST_ERR), None);
    let Outcome::Error(body) = decode(&caused[1]).outcome else {
        panic!("expected an error reply: {:?}", caused[1]);
    };
    let nest_err = header(&caused[1], headers::NEST_ERR).expect("kafka_nest-err");
    assert_eq!(headers::decode_nest_error(nest_err), Ok(body));
    assert_eq!(header(&caused[1], headers::NEST_IS_DISPOSED), disposed);

    let text = inbound(
        Some(SCORE_REQUEST_TEXT.as_bytes()),
        &[(headers::CORRELATION_ID, b"nest-3")],
    );
    let caused = planned(&text, SystemTime::now()).caused;
    assert_eq!(caused.len(), 1, "{caused:?}");
    assert_eq!(header(&caused[0], headers::NEST_IS_DISPOSED), disposed);
}

/// The error reply that replaces an undeliverable one fails a NestJS call too.
#[test]
fn undeliverable_replies_become_nest_errors() {
    let request = inbound(
        Some(&valid_payload("ACME")),
        &[
            (headers::CORRELATION_ID, b"nest-4"),
            (headers::REPLY_TOPIC, b"t.generate-invoice.reply"),
            (headers::REPLY_PARTITION, b"7"),
        ],
    );
    let caused = planned(&request, SystemTime::now()).caused;
    assert_eq!(caused.len(), 1, "{caused:?}");
    let error = KafkaError::MessageProduction(RDKafkaErrorCode::UnknownPartition);
    let instead = undeliverable(&caused[0], &error, &request, &routing());
    assert_eq!(instead.len(), 2, "{instead:?}");
    let reply = &instead[1];
    assert_eq!(reply.topic, "t.invoice-generated");
    let nest_err = header(reply, headers::NEST_ERR).expect("kafka_nest-err");
    let body = headers::decode_nest_error(nest_err).expect("our error body");
    assert_eq!(body.code, ErrorCode::InvalidHeaders);
    assert!(body.message.contains("partition 7"), "{}", body.message);
    assert_eq!(
        header(reply, headers::NEST_IS_DISPOSED),
        Some(headers::NEST_IS_DISPOSED_VALUE)
    );
}

/// Plain text from a client that does send a correlation ID (and a reply topic) gets a
/// plain-text reply that keeps the ID, so the client can match it.
#[test]
fn correlated_plain_text_keeps_the_correlation_id() {
    let request = inbound(
        Some(b"Gerar Nota fiscal"),
        &[
            (headers::CORRELATION_ID, b"nest-7"),
            (headers::REPLY_TOPIC, b"t.generate-invoice.reply"),
            (headers::REPLY_PARTITION, b"1"),
        ],
    );
    let caused = planned(&request, SystemTime::now()).caused;
    assert_eq!(caused.len(), 1, "{caused:?}");
    let reply = &caused[0];
    assert_eq!(reply.topic, "t.generate-invoice.reply");
    assert_eq!(reply.partition, Some(1));
    assert_eq!(reply.payload, b"Gerar Nota fiscal at 1/42");
    assert_eq!(header(reply, headers::CORRELATION_ID), Some(&b"nest-7"[..]));
    assert_eq!(
        header(reply, headers::CONTENT_TYPE),
        Some(headers::TEXT_CONTENT_TYPE.as_bytes())
    );
}

/// When `kafka_correlationId` is repeated the last one wins (Spring's `lastHeader`), and the
/// dead-letter copy still carries every original header.
#[test]
fn repeated_correlation_headers_answer_with_the_last() {
    let request = inbound(
        Some(b"{\"customer\":"),
        &[
            (headers::CORRELATION_ID, b"first"),
            (headers::CORRELATION_ID, b"second"),
        ],
    );
    let caused = planned(&request, SystemTime::now()).caused;
    assert_eq!(caused.len(), 2, "{caused:?}");
    assert_dead_letter(&caused[0], &request, "JSON");
    assert_eq!(
        header(&caused[1], headers::CORRELATION_ID),
        Some(&b"second"[..])
    );
}

/// Reasons quote what the request carried, cut short: a half-MiB header must not turn into
/// a half-MiB `dlq-reason` (and error reply), which could make the copy too large to write.
#[test]
fn reasons_quote_huge_header_values_only_in_part() {
    let huge_topic = "r".repeat(512 * 1024);
    let huge_partition = vec![b'x'; 100_000];
    let huge_type = format!("application/{}", "z".repeat(512 * 1024));
    let payload = valid_payload("ACME");
    for (name, value, reason) in [
        (
            headers::REPLY_TOPIC,
            huge_topic.as_bytes(),
            "is not allowed",
        ),
        (
            headers::REPLY_PARTITION,
            &huge_partition,
            "is not a partition number",
        ),
        (
            headers::CONTENT_TYPE,
            huge_type.as_bytes(),
            "unsupported content-type",
        ),
    ] {
        let request = inbound(
            Some(&payload),
            &[(headers::CORRELATION_ID, b"id-6"), (name, value)],
        );
        let caused = planned(&request, SystemTime::now()).caused;
        assert_eq!(caused.len(), 2, "{name}");
        let reason = assert_dead_letter(&caused[0], &request, reason);
        assert!(reason.len() < 400, "{name}: {} bytes", reason.len());
        assert!(
            caused[1].payload.len() < 1000,
            "{name}: error reply too large"
        );
    }
}

/// A dead-letter copy too large for its topic is sent cut down (once), marked as such, with
/// its reason and source; any other failure to write a dead letter drops it as before.
#[test]
fn a_dead_letter_too_large_for_its_topic_is_sent_cut_down() {
    let mut payload = vec![b'p'; 1_040_000];
    payload[0] = b'{';
    let many: Vec<(String, Vec<u8>)> = (0..100)
        .map(|index| (format!("h{index}"), vec![b'v'; 5000]))
        .collect();
    let mut headers_in: Vec<(&str, &[u8])> = many
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_slice()))
        .collect();
    headers_in.push((headers::DEAD_LETTER_TRUNCATED, b"forged"));
    let request = inbound(Some(&payload), &headers_in);
    let caused = planned(&request, SystemTime::now()).caused;
    assert_eq!(caused.len(), 1, "uncorrelated: only the dead letter");
    let too_large = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
    let instead = undeliverable(&caused[0], &too_large, &request, &routing());
    assert_eq!(instead.len(), 1, "{instead:?}");
    let cut = &instead[0];
    assert_eq!(cut.topic, "t.generate-invoice.dlq");
    assert_eq!(cut.payload, payload[..MAX_REQUEST_BYTES]);
    assert_eq!(cut.key, request.key);
    assert_eq!(
        header(cut, headers::DEAD_LETTER_SOURCE),
        Some("t.generate-invoice/1/42".as_bytes())
    );
    assert_eq!(
        header(cut, headers::DEAD_LETTER_REASON),
        header(&caused[0], headers::DEAD_LETTER_REASON)
    );
    let note = String::from_utf8_lossy(header(cut, headers::DEAD_LETTER_TRUNCATED).unwrap());
    assert!(note.contains("1040000 payload bytes"), "{note}");
    let size: usize = cut.payload.len()
        + cut
            .headers
            .iter()
            .map(|(key, value)| key.len() + value.len())
            .sum::<usize>();
    assert!(size < 200 * 1024, "cut-down copy of {size} bytes");
    // Never cut twice, and other failures still drop the copy.
    assert!(undeliverable(cut, &too_large, &request, &routing()).is_empty());
    let unknown = KafkaError::MessageProduction(RDKafkaErrorCode::UnknownTopic);
    assert!(undeliverable(&caused[0], &unknown, &request, &routing()).is_empty());
}
