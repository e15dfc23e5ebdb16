//! Property tests (a bounded fuzz) of everything that reads a message: the payload decoders, the
//! header codecs, and the responder's `plan`, fed arbitrary bytes, near-valid JSON and arbitrary
//! headers. None may panic; `plan` must always cause a reply or a dead letter, never nothing,
//! and never write outside the allowed reply topics and the dead-letter topic.
//!
//! Case counts are bounded so the whole file runs in a few seconds; `PROPTEST_CASES` raises them
//! for a longer fuzzing session.

use contract::{
    Invoice, InvoiceRequest, MAX_REQUEST_BYTES, Outcome, Reply, RequestKind, Score, ScoreRequest,
    Topics, Validate,
};
use proptest::prelude::*;
use request_reply::codec::{DecodeError, RequestBody, decode_reply, decode_request};
use request_reply::headers::{self, CorrelationId, TraceContext, decode_reply_partition};
use request_reply::kafka::Outgoing;
use request_reply::responder::{Inbound, RetryPolicy, Routing, plan};
use request_reply::testing::{Echo, EchoService, consumed, last_header};
use serde_json::{Value, json};
use std::collections::HashSet;

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Any JSON, with the contract's field names over-represented so objects often look like requests.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    let key = prop_oneof![
        Just("customer".to_owned()),
        Just("lines".to_owned()),
        Just("description".to_owned()),
        Just("quantity".to_owned()),
        Just("unit_price_cents".to_owned()),
        Just("schema_version".to_owned()),
        ".{0,8}",
    ];
    leaf.prop_recursive(4, 32, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// A field value: usually of the right shape (sometimes out of range), otherwise anything.
fn field(typical: BoxedStrategy<Value>) -> impl Strategy<Value = Value> {
    prop_oneof![3 => typical, 1 => json_value()]
}

/// An invoice request that is valid, nearly valid, or wrong in one or more fields.
fn near_valid_invoice() -> impl Strategy<Value = Value> {
    let text = ".{0,30}".prop_map(Value::String).boxed();
    let count = prop_oneof![
        0u64..5,
        999_990u64..1_000_010,
        Just(u64::from(u32::MAX) + 1)
    ]
    .prop_map(Value::from)
    .boxed();
    let price = prop_oneof![
        0u64..100_000,
        9_999_999_990u64..10_000_000_010,
        Just(u64::MAX)
    ]
    .prop_map(Value::from)
    .boxed();
    let line = (field(text.clone()), field(count), field(price)).prop_map(
        |(description, quantity, price)| {
            json!({"description": description, "quantity": quantity, "unit_price_cents": price})
        },
    );
    let version = prop_oneof![Just(None), (0u64..3).prop_map(|v| Some(Value::from(v)))];
    (
        field(text),
        prop::collection::vec(line, 0..4),
        version,
        any::<bool>(),
    )
        .prop_map(|(customer, lines, version, extra)| {
            let mut request = json!({"customer": customer, "lines": lines});
            if let Some(version) = version {
                request["schema_version"] = version;
            }
            if extra {
                request["extra"] = json!({"nested": [1, [2, [3]]]});
            }
            request
        })
}

/// Bytes from a valid request, damaged: cut short, a byte changed, or junk spliced in.
fn damaged_request() -> impl Strategy<Value = Vec<u8>> {
    (
        near_valid_invoice(),
        any::<prop::sample::Index>(),
        any::<u8>(),
        0..3u8,
    )
        .prop_map(|(request, at, byte, how)| {
            let mut bytes = serde_json::to_vec(&request).unwrap();
            let at = at.index(bytes.len());
            match how {
                0 => bytes.truncate(at),
                1 => bytes[at] = byte,
                _ => bytes.insert(at, byte),
            }
            bytes
        })
}

/// Every sort of payload a request topic could hold.
fn payload() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        1 => Just(None),
        3 => prop::collection::vec(any::<u8>(), 0..512).prop_map(Some),
        3 => near_valid_invoice().prop_map(|request| Some(serde_json::to_vec(&request).unwrap())),
        3 => damaged_request().prop_map(Some),
        2 => json_value().prop_map(|value| Some(serde_json::to_vec(&value).unwrap())),
        1 => Just(Some(b"Gerar Nota fiscal".to_vec())),
        1 => (MAX_REQUEST_BYTES - 2..MAX_REQUEST_BYTES + 2)
            .prop_map(|len| Some(vec![b'{'; len])),
    ]
}

fn content_type() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        Just(None),
        Just(Some(b"application/json".to_vec())),
        Just(Some(b"Application/JSON; charset=utf-8".to_vec())),
        Just(Some(b"text/plain; charset=utf-8".to_vec())),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(Some),
    ]
}

const PREFIX: &str = "p.";
const EXTRA_REPLY_TOPIC: &str = "p.extra-replies";

fn routing() -> Routing {
    Routing::new(
        &Topics::with_prefix(PREFIX).route(RequestKind::Invoice),
        &[EXTRA_REPLY_TOPIC.to_owned()],
    )
}

/// A header value for `name`: well-formed, near-miss or junk.
fn header_value(name: &'static str) -> BoxedStrategy<Vec<u8>> {
    let junk = prop::collection::vec(any::<u8>(), 0..64).boxed();
    let topics = Topics::with_prefix(PREFIX);
    match name {
        headers::REPLY_TOPIC => prop_oneof![
            Just(topics.reply(RequestKind::Invoice).into_bytes()),
            Just(topics.nest_reply(RequestKind::Invoice).into_bytes()),
            Just(EXTRA_REPLY_TOPIC.as_bytes().to_vec()),
            Just(topics.request(RequestKind::Invoice).into_bytes()),
            Just(topics.reply(RequestKind::Score).into_bytes()),
            Just(b"__consumer_offsets".to_vec()),
            "[a-z.-]{0,30}".prop_map(String::into_bytes),
            junk,
        ]
        .boxed(),
        headers::REPLY_PARTITION => prop_oneof![
            any::<i32>().prop_map(|partition| partition.to_string().into_bytes()),
            any::<i32>().prop_map(|partition| partition.to_be_bytes().to_vec()),
            (0..3i32).prop_map(|partition| partition.to_string().into_bytes()),
            junk,
        ]
        .boxed(),
        headers::CORRELATION_ID => prop_oneof![
            any::<u128>().prop_map(|id| uuid_text(id).into_bytes()),
            any::<u128>().prop_map(|id| id.to_be_bytes().to_vec()),
            prop::collection::vec(any::<u8>(), 0..2048),
        ]
        .boxed(),
        headers::TRACEPARENT => prop_oneof![
            (any::<u128>(), any::<u64>(), any::<u8>()).prop_map(|(trace, span, flags)| {
                format!("00-{trace:032x}-{span:016x}-{flags:02x}").into_bytes()
            }),
            junk,
        ]
        .boxed(),
        headers::CONTENT_TYPE => content_type().prop_map(Option::unwrap_or_default).boxed(),
        _ => junk,
    }
}

fn uuid_text(id: u128) -> String {
    let hex = format!("{id:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Headers as a hostile or careless producer sends them: ours (repeated, in any order), others,
/// and some without a value.
fn header_list() -> impl Strategy<Value = Vec<(String, Option<Vec<u8>>)>> {
    let ours = prop_oneof![
        Just(headers::CORRELATION_ID),
        Just(headers::REPLY_TOPIC),
        Just(headers::REPLY_PARTITION),
        Just(headers::CONTENT_TYPE),
        Just(headers::TRACEPARENT),
        Just(headers::DEAD_LETTER_REASON),
    ]
    .prop_flat_map(|name| {
        prop::option::weighted(0.9, header_value(name))
            .prop_map(move |value| (name.to_owned(), value))
    });
    let other = (
        ".{0,16}",
        prop::option::of(prop::collection::vec(any::<u8>(), 0..32)),
    );
    prop::collection::vec(prop_oneof![3 => ours, 1 => other], 0..8)
}

/// An arbitrary consumed request, built as rdkafka hands it over.
fn inbound() -> impl Strategy<Value = Inbound> {
    (
        payload(),
        header_list(),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..16)),
    )
        .prop_map(|(payload, headers, key)| {
            let headers: Vec<(&str, Option<&[u8]>)> = headers
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_deref()))
                .collect();
            let topic = Topics::with_prefix(PREFIX).request(RequestKind::Invoice);
            consumed(&topic, key, payload, &headers)
        })
}

proptest! {
    #![proptest_config(config(768))]

    /// Decoding never panics; whatever it accepts as JSON is valid; the size limit holds.
    #[test]
    fn decoding_never_panics_and_accepts_only_valid_requests(
        payload in payload(),
        content_type in content_type(),
    ) {
        let payload = payload.as_deref();
        let content_type = content_type.as_deref();
        let invoice = decode_request::<InvoiceRequest>(payload, content_type);
        match &invoice {
            Ok(RequestBody::Json(request)) => prop_assert!(request.validate().is_ok()),
            Ok(RequestBody::Text(text)) => {
                prop_assert!(!content_type.is_some_and(headers::is_json_content_type));
                prop_assert!(!text.trim().is_empty());
            }
            Err(DecodeError::TooLarge(len)) => prop_assert!(*len > MAX_REQUEST_BYTES),
            Err(error) => prop_assert!(!error.to_string().is_empty()),
        }
        if payload.is_some_and(|bytes| bytes.len() > MAX_REQUEST_BYTES) {
            prop_assert!(matches!(invoice, Err(DecodeError::TooLarge(_))));
        }
        if let Ok(RequestBody::Json(request)) = decode_request::<ScoreRequest>(payload, content_type) {
            prop_assert!(request.validate().is_ok());
        }
        let _ = decode_reply::<Invoice>(payload, content_type);
        let _ = decode_reply::<Score>(payload, content_type);
    }

    /// Valid requests, serialized, always come back unchanged.
    #[test]
    fn valid_requests_round_trip(request in near_valid_invoice()) {
        let typed = serde_json::from_value::<InvoiceRequest>(request)
            .ok()
            .filter(|typed| typed.validate().is_ok());
        if let Some(typed) = typed {
            let bytes = serde_json::to_vec(&typed).unwrap();
            prop_assert_eq!(
                decode_request::<InvoiceRequest>(Some(&bytes), Some(b"application/json")),
                Ok(RequestBody::Json(typed))
            );
        }
    }

    /// Nesting of any depth under the size limit is refused or skipped, never a stack overflow.
    #[test]
    fn deep_nesting_is_harmless(depth in 1usize..32_000, in_unknown_field in any::<bool>(), arrays in any::<bool>()) {
        let nested = if arrays {
            format!("{}{}", "[".repeat(depth), "]".repeat(depth))
        } else {
            format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
        };
        let payload = if in_unknown_field {
            format!(r#"{{"customer":"A","lines":[{{"description":"d","quantity":1,"unit_price_cents":1}}],"x":{nested}}}"#)
        } else {
            nested
        };
        let decoded = decode_request::<InvoiceRequest>(Some(payload.as_bytes()), Some(b"application/json"));
        if payload.len() > MAX_REQUEST_BYTES {
            prop_assert!(matches!(decoded, Err(DecodeError::TooLarge(_))));
        } else if in_unknown_field {
            prop_assert!(matches!(decoded, Ok(RequestBody::Json(_))), "{:?}", decoded);
        } else {
            prop_assert!(decoded.is_err());
        }
    }

    /// The reply partition codec never panics, never yields a negative partition, and reads
    /// back both encodings of every partition number.
    #[test]
    fn reply_partitions_decode_safely(bytes in prop::collection::vec(any::<u8>(), 0..16), partition in 0..=i32::MAX) {
        if let Some(decoded) = decode_reply_partition(&bytes) {
            prop_assert!(decoded >= 0);
        }
        prop_assert_eq!(decode_reply_partition(partition.to_string().as_bytes()), Some(partition));
        let binary = partition.to_be_bytes();
        // Four ASCII digits are read as decimal text, by design.
        if !binary.iter().all(u8::is_ascii_digit) {
            prop_assert_eq!(decode_reply_partition(&binary), Some(partition));
        }
    }

    /// Correlation keys exist for any bytes, are printable, stable, and fold both UUID forms.
    #[test]
    fn correlation_keys_are_printable_and_stable(bytes in prop::collection::vec(any::<u8>(), 0..64), id in any::<u128>()) {
        let key = CorrelationId::from_bytes(&bytes).key();
        prop_assert!(!key.is_empty());
        prop_assert!(!key.chars().any(char::is_control), "{:?}", key);
        prop_assert_eq!(&key, &CorrelationId::from_bytes(&bytes).key());
        let text = CorrelationId::from_bytes(uuid_text(id).as_bytes());
        let binary = CorrelationId::from_bytes(&id.to_be_bytes());
        prop_assert_eq!(text.key(), binary.key());
    }

    /// `traceparent` parsing never panics, and what it accepts it writes back the same way.
    #[test]
    fn traceparents_parse_safely(
        bytes in prop::collection::vec(any::<u8>(), 0..80),
        trace in 1..=u128::MAX,
        span in 1..=u64::MAX,
        flags in any::<u8>(),
    ) {
        if let Some(context) = TraceContext::parse(&bytes) {
            prop_assert_eq!(TraceContext::parse(context.header_value().as_bytes()), Some(context));
        }
        let text = format!("00-{trace:032x}-{span:016x}-{flags:02x}");
        let context = TraceContext::parse(text.as_bytes());
        prop_assert!(context.is_some());
        prop_assert_eq!(context.map(|context| context.sampled), Some(flags & 1 == 1));
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// `plan` never panics and never answers with nothing: a request causes exactly one reply,
    /// or a dead letter (first, with its reason and source) plus an error reply when it has a
    /// correlation ID. Nothing goes outside the allowed reply topics and the dead-letter topic.
    #[test]
    fn plan_answers_or_dead_letters_and_stays_within_its_topics(request in inbound()) {
        let routing = routing();
        // The echo service answers at once and never fails, so no retry waits on a clock.
        let caused = futures::executor::block_on(plan(
            &EchoService,
            &routing,
            &request,
            std::time::SystemTime::now(),
            &RetryPolicy::default(),
        ))
        .caused;
        let allowed: HashSet<&str> = routing
            .allowed_reply_topics
            .iter()
            .map(String::as_str)
            .chain([routing.dead_letter_topic.as_str()])
            .collect();
        prop_assert!(!caused.is_empty(), "nothing caused");
        for outgoing in &caused {
            prop_assert!(allowed.contains(outgoing.topic.as_str()), "wrote to {}", outgoing.topic);
            prop_assert!(outgoing.partition.is_none_or(|partition| partition >= 0));
        }
        let dead_letters: Vec<&Outgoing> = caused
            .iter()
            .filter(|outgoing| outgoing.topic == routing.dead_letter_topic)
            .collect();
        let correlation = request.headers.last(headers::CORRELATION_ID);
        match dead_letters.as_slice() {
            [] => {
                prop_assert_eq!(caused.len(), 1);
                let reply = &caused[0];
                prop_assert_eq!(last_header(reply, headers::CORRELATION_ID), correlation);
                if last_header(reply, headers::CONTENT_TYPE) == Some(headers::JSON_CONTENT_TYPE.as_bytes()) {
                    let body: Reply<Echo> = serde_json::from_slice(&reply.payload).unwrap();
                    prop_assert!(matches!(body.outcome, Outcome::Ok(_)));
                }
            }
            [copy] => {
                prop_assert!(std::ptr::eq(*copy, &caused[0]), "the dead letter comes first");
                prop_assert_eq!(&copy.payload, &request.payload.clone().unwrap_or_default());
                prop_assert_eq!(&copy.key, &request.key);
                let reason = last_header(copy, headers::DEAD_LETTER_REASON).unwrap_or_default();
                let reason = String::from_utf8_lossy(reason);
                prop_assert!(!reason.is_empty());
                prop_assert!(reason.chars().count() <= 1100, "a reason of {} characters", reason.chars().count());
                let source = format!("{}/1/42", routing.request_topic);
                prop_assert_eq!(
                    last_header(copy, headers::DEAD_LETTER_SOURCE),
                    Some(source.as_bytes())
                );
                match correlation {
                    None => prop_assert_eq!(caused.len(), 1),
                    Some(id) => {
                        prop_assert_eq!(caused.len(), 2);
                        let reply = &caused[1];
                        prop_assert_eq!(last_header(reply, headers::CORRELATION_ID), Some(id));
                        let body: Reply<Echo> = serde_json::from_slice(&reply.payload).unwrap();
                        let Outcome::Error(error) = body.outcome else {
                            return Err(TestCaseError::fail("a bad request answered as ok"));
                        };
                        prop_assert_eq!(error.message.as_str(), reason.as_ref());
                    }
                }
            }
            more => prop_assert!(false, "{} dead letters", more.len()),
        }
    }
}
