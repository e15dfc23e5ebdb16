//! The responder loop (driving the library's stand-in service) against a real broker, fed every
//! kind of bad message between good ones.

mod common;

use common::{EchoReply, EchoTopics};
use request_reply::codec::MAX_REQUEST_BYTES;
use request_reply::config::TopicSettings;
use request_reply::envelope::ErrorCode;
use request_reply::headers::{self, CorrelationId};
use request_reply::kafka::Outgoing;
use request_reply::requester::{Client, Requester, SentRequest};
use std::collections::{HashMap, HashSet};
use test_support::REPLY_TIMEOUT;
use tokio::sync::oneshot;

/// One kind of bad message: what is sent, and what the worker must do about it.
struct BadKind {
    name: &'static str,
    /// `None` is a tombstone (no payload at all).
    payload: Option<Vec<u8>>,
    headers: Vec<(&'static str, Vec<u8>)>,
    /// A word of the `dlq-reason` the dead-letter copy must carry.
    reason: &'static str,
    /// The error code a correlated request is answered with.
    code: ErrorCode,
}

fn bad_kinds() -> Vec<BadKind> {
    let json = || vec![(headers::CONTENT_TYPE, headers::JSON_CONTENT_TYPE.into())];
    let kind = |name, payload: &[u8], headers, reason, code| BadKind {
        name,
        payload: Some(payload.to_vec()),
        headers,
        reason,
        code,
    };
    let valid = serde_json::to_vec(&common::echo_request("ACME")).unwrap();
    let mut oversized = br#"{"customer":""#.to_vec();
    oversized.resize(MAX_REQUEST_BYTES + 10, b'x');
    oversized.extend_from_slice(br#"","lines":[]}"#);
    vec![
        kind(
            "not UTF-8",
            b"{\"customer\":\"\xc3\x28\"}",
            json(),
            "UTF-8",
            ErrorCode::MalformedRequest,
        ),
        kind(
            "malformed JSON",
            b"{\"customer\": \"ACME\",",
            json(),
            "not valid JSON",
            ErrorCode::MalformedRequest,
        ),
        kind(
            "missing field",
            br#"{"customer":"ACME"}"#,
            json(),
            "lines",
            ErrorCode::InvalidRequest,
        ),
        kind(
            "wrong type",
            br#"{"customer":"ACME","lines":[{"description":"d","quantity":"2","unit_price_cents":1}]}"#,
            Vec::new(),
            "lines[0].quantity",
            ErrorCode::InvalidRequest,
        ),
        kind(
            "absurd quantity",
            br#"{"customer":"ACME","lines":[{"description":"d","quantity":1000001,"unit_price_cents":1}]}"#,
            json(),
            "lines[0].quantity",
            ErrorCode::InvalidRequest,
        ),
        kind(
            "unsupported schema version",
            br#"{"schema_version":2,"customer":"ACME","lines":[{"description":"d","quantity":1,"unit_price_cents":1}]}"#,
            json(),
            "schema_version",
            ErrorCode::UnsupportedSchemaVersion,
        ),
        kind(
            "oversized",
            &oversized,
            json(),
            "more than the",
            ErrorCode::MalformedRequest,
        ),
        kind(
            "empty",
            b"",
            Vec::new(),
            "no payload",
            ErrorCode::MalformedRequest,
        ),
        BadKind {
            name: "tombstone",
            payload: None,
            headers: Vec::new(),
            reason: "no payload",
            code: ErrorCode::MalformedRequest,
        },
        kind(
            "unsupported content type",
            b"Gerar Nota fiscal",
            vec![(headers::CONTENT_TYPE, b"application/x-protobuf".to_vec())],
            "application/x-protobuf",
            ErrorCode::MalformedRequest,
        ),
        kind(
            "reply topic not allowed",
            &valid,
            vec![(headers::REPLY_TOPIC, b"__consumer_offsets".to_vec())],
            "is not allowed",
            ErrorCode::InvalidHeaders,
        ),
        kind(
            "reply partition unreadable",
            &valid,
            vec![(headers::REPLY_PARTITION, b"-1".to_vec())],
            headers::REPLY_PARTITION,
            ErrorCode::InvalidHeaders,
        ),
        // Readable, but the reply topic has no such partition: only the broker can tell, so the
        // reply itself fails, the request is dead-lettered, and the error goes to the default
        // reply topic instead.
        BadKind {
            name: "reply partition out of range",
            payload: Some(valid),
            headers: vec![(headers::REPLY_PARTITION, b"99".to_vec())],
            reason: "could not be delivered",
            code: ErrorCode::InvalidHeaders,
        },
    ]
}

impl BadKind {
    /// The message to send, with a correlation ID and the default reply topic when `id` is set.
    fn message(&self, topics: &TopicSettings, id: Option<&CorrelationId>) -> Outgoing {
        let payload = self.payload.clone().unwrap_or_default();
        let mut message = match id {
            Some(id) => common::correlated(topics, id, payload),
            None => Outgoing::new(common::route(topics).request_topic, payload),
        };
        for (key, value) in &self.headers {
            message = message.header(key, value.as_slice());
        }
        message
    }

    async fn send(&self, requester: &Requester<EchoTopics>, message: &Outgoing) -> SentRequest {
        match self.payload {
            Some(_) => requester.send_outgoing(message).await.unwrap(),
            None => test_support::send_tombstone(message).await,
        }
    }
}

/// A request whose reply the test awaits.
struct Expected {
    name: String,
    id: CorrelationId,
    reply: oneshot::Receiver<EchoReply>,
}

impl Expected {
    /// Registers for the reply to `id`; call before sending the request.
    fn register(client: &Client<EchoTopics>, name: String, id: CorrelationId) -> Self {
        let reply = client.expect_reply(&id);
        Expected { name, id, reply }
    }

    async fn reply(self, client: &Client<EchoTopics>) -> (String, EchoReply) {
        let reply = client
            .await_reply(&self.id, self.reply, REPLY_TIMEOUT)
            .await
            .unwrap_or_else(|error| panic!("{}: {error}", self.name));
        (self.name, reply)
    }
}

/// What the dead-letter copy of one bad message must look like.
struct DeadLetter {
    name: String,
    reason: &'static str,
    payload: Vec<u8>,
}

/// Every kind of bad message, with and without a correlation ID, interleaved with good requests:
/// each bad one shows up on `<request-topic>.dlq` with its payload and a `dlq-reason`, each
/// correlated one gets an error reply with the right code, every good one is answered, and good
/// requests sent to every partition after all the bad ones still complete (the worker did not
/// crash and no partition stalled).
#[tokio::test(flavor = "multi_thread")]
async fn each_kind_of_bad_message_is_dead_lettered_and_the_worker_keeps_going() {
    let topics = test_support::unique_topics();
    common::create_topics(&topics).await;
    let worker = common::start_worker(&topics, common::worker_config(&topics, "echo"));
    let client = common::connect(&topics).await;
    let requester = client.requester();

    let mut good = Vec::new();
    let mut errors = Vec::new();
    let mut dead_letters = HashMap::new();
    for (index, bad) in bad_kinds().into_iter().enumerate() {
        let customer = format!("good customer {index}");
        let id = CorrelationId::generate();
        good.push(Expected::register(&client, customer.clone(), id.clone()));
        let request = common::echo_request(&customer);
        requester.send((), &id, &request).await.unwrap();

        for correlated in [true, false] {
            let name = format!("{} (correlated: {correlated})", bad.name);
            let id = CorrelationId::generate();
            let message = bad.message(&topics, correlated.then_some(&id));
            if correlated {
                errors.push((bad.code, Expected::register(&client, name.clone(), id)));
            }
            let sent = bad.send(requester, &message).await;
            let dead_letter = DeadLetter {
                name,
                reason: bad.reason,
                payload: message.payload,
            };
            let source = format!("{}/{}/{}", sent.topic, sent.partition, sent.offset);
            dead_letters.insert(source, dead_letter);
        }
    }
    // After all the bad ones: one good request on every partition of the request topic.
    for partition in 0..topics.partitions {
        let customer = format!("after the bad ones, partition {partition}");
        let (id, reply) = common::send_to_partition(&client, &topics, partition, &customer).await;
        good.push(Expected {
            name: customer,
            id,
            reply,
        });
    }

    for expected in good {
        let (customer, reply) = expected.reply(&client).await;
        common::expect_echo(&reply, &customer);
    }
    for (code, expected) in errors {
        let (name, reply) = expected.reply(&client).await;
        let Some(body) = common::error_of(&reply) else {
            panic!("{name}: expected an error reply, got {:?}", reply.content);
        };
        assert_eq!(body.code, code, "{name}: {}", body.message);
    }

    let dead_letter_topic = common::route(&topics).dead_letter_topic;
    let mut dlq = test_support::TopicReader::new(&dead_letter_topic, topics.partitions);
    let read = dlq
        .read_until("every bad message on the DLQ", REPLY_TIMEOUT, |seen| {
            seen.len() >= dead_letters.len()
        })
        .await;
    let mut sources = HashSet::new();
    for copy in read {
        let source = copy.headers.last(headers::DEAD_LETTER_SOURCE).unwrap();
        let source = String::from_utf8_lossy(source).into_owned();
        let expected = dead_letters
            .get(&source)
            .unwrap_or_else(|| panic!("unexpected dead letter from {source}: {}", copy.text()));
        assert!(
            sources.insert(source),
            "{} dead-lettered twice",
            expected.name
        );
        let reason = copy.headers.last(headers::DEAD_LETTER_REASON).unwrap();
        let reason = String::from_utf8_lossy(reason);
        assert!(
            reason.contains(expected.reason),
            "{}: reason {reason:?} should mention {:?}",
            expected.name,
            expected.reason
        );
        assert_eq!(
            copy.payload.as_deref().unwrap_or_default(),
            expected.payload.as_slice(),
            "{}: payload preserved",
            expected.name
        );
    }

    worker.stop().await;
}

/// A request no client can decode (a gzip batch damaged on its way from the broker, see
/// `test_support::relay`; librdkafka then fetches it again for ever) on every partition: the
/// worker skips each one with a dead letter that says where it sits, and answers the requests
/// behind them.
#[tokio::test(flavor = "multi_thread")]
async fn an_undecodable_request_is_dead_lettered_and_its_partition_moves_on() {
    let relay = test_support::relay::corrupting_relay();
    let topics = test_support::unique_topics();
    common::create_topics(&topics).await;
    let mut config = common::worker_config(&topics, "echo");
    config.kafka.common.extend(relay.kafka().common);
    let worker = common::start_worker(&topics, config);
    let client = common::connect(&topics).await;
    let mut gzip = test_support::kafka();
    gzip.producer
        .insert("compression.type".into(), "gzip".into());
    let compressing = Requester::new(&gzip, common::routes(&topics), REPLY_TIMEOUT).unwrap();

    let mut undecodable = HashSet::new();
    let mut behind = Vec::new();
    for partition in 0..topics.partitions {
        // Repetitive and long enough that librdkafka really compresses it.
        let padding = format!("{{\"padding\":\"{}\"}}", "x".repeat(4096));
        let mut message = common::correlated(&topics, &CorrelationId::generate(), padding);
        message.partition = Some(partition);
        let sent = compressing.send_outgoing(&message).await.unwrap();
        undecodable.insert(format!("{}/{}/{}", sent.topic, sent.partition, sent.offset));
        let customer = format!("behind the undecodable one, partition {partition}");
        let (id, reply) = common::send_to_partition(&client, &topics, partition, &customer).await;
        behind.push(Expected {
            name: customer,
            id,
            reply,
        });
    }

    for expected in behind {
        let (customer, reply) = expected.reply(&client).await;
        common::expect_echo(&reply, &customer);
    }
    let dead_letter_topic = common::route(&topics).dead_letter_topic;
    let mut dlq = test_support::TopicReader::new(&dead_letter_topic, topics.partitions);
    let read = dlq
        .read_until("a dead letter per partition", REPLY_TIMEOUT, |seen| {
            seen.len() >= undecodable.len()
        })
        .await;
    let sources: HashSet<String> = read
        .iter()
        .map(|copy| {
            let reason = copy.headers.last(headers::DEAD_LETTER_REASON).unwrap();
            assert!(
                String::from_utf8_lossy(reason).contains("could not be decoded"),
                "reason: {}",
                String::from_utf8_lossy(reason)
            );
            let source = copy.headers.last(headers::DEAD_LETTER_SOURCE).unwrap();
            String::from_utf8_lossy(source).into_owned()
        })
        .collect();
    assert_eq!(sources, undecodable, "each undecodable request, once");
    assert!(
        relay.damaged() >= undecodable.len() as u64,
        "the relay damaged every gzip batch"
    );

    worker.stop().await;
}
