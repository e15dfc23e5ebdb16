//! Hostile input against a real worker and a real broker: a corpus of more than a thousand bad
//! messages, generated deterministically from a seed, interleaved with good requests.
//!
//! The bad ones: random bytes, invalid UTF-8, truncated and deeply nested JSON, wrong types, huge
//! numbers, payloads of about 1 MiB, garbage, duplicate and oversized headers, header names that
//! are not UTF-8 (sent with a hand-made produce request, as no client library lets one do that),
//! malformed correlation IDs (empty, binary junk, 10 KB), malformed and non-existent reply
//! partitions, reply topics that do not exist or are not allowed, unsupported content types,
//! empty payloads and tombstones. Each has exactly one defect, so each must cause exactly one
//! dead letter carrying a reason, plus an error reply when it carries a correlation ID. The good
//! ones (including odd but valid ones: binary, empty and 10 KB correlation IDs, garbage extra
//! headers, NestJS reply topics and partitions, legacy plain text) must each get the right reply.
//! At the end the worker is still running, and its group has committed every request: nothing
//! crashed, nothing stalled, nothing was lost.
//!
//! `HOSTILE_SEED=<n>` replays another corpus; the seed in use is printed.

mod common;

use contract::{ErrorCode, Invoice, Outcome, Reply, RequestKind, legacy};
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use request_reply::config::TopicSettings;
use request_reply::headers;
use request_reply::kafka::HeaderList;
use request_reply::responder::Origin;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use test_support::{self, ReadMessage};
use tokio::task::JoinHandle;

/// Bad messages in the corpus (at least 1000), and good ones mixed in with them.
const BAD: usize = 1100;
const GOOD: usize = 260;
/// Bound for the whole corpus to be answered.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_SEED: u64 = 0x5eed_0fba_d1de_a5ed;
/// Payloads of about 1 MiB: under the broker's default limit of 1 MiB per message batch.
const NEAR_MIB: usize = 900 * 1024;
/// Just under the broker's limit and over a producer's default `message.max.bytes`
/// (1,000,000), so a full dead-letter copy of it can never be produced.
const BROKER_LIMIT_PAYLOAD: usize = 1_040_000;

/// SplitMix64: small, fast and deterministic across platforms.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: usize) -> usize {
        usize::try_from(self.next() % bound as u64).unwrap()
    }

    fn range(&mut self, low: usize, high: usize) -> usize {
        low + self.below(high - low)
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Printable text of any script, as a header name or value might be.
    fn text(&mut self, len: usize) -> String {
        const CHARS: &[char] = &[
            'a', 'Z', '0', '-', '_', '.', ' ', '/', ':', ';', '=', '"', '\\', 'é', 'ß', 'ж', '中',
            '🦀', '\u{200b}', '\u{fffd}',
        ];
        (0..len).map(|_| *self.pick(CHARS)).collect()
    }
}

/// What the worker must do with one message.
#[derive(Clone, Debug)]
enum Expect {
    /// Answer with the invoice, on `topic` (and `partition`, when one was asked for).
    Invoice {
        customer: String,
        correlation: Vec<u8>,
        topic: String,
        partition: Option<i32>,
    },
    /// Answer in the original system's plain text, with no headers.
    Text,
    /// Dead-letter it with a reason mentioning one of `reasons`; when it is correlated, also
    /// send an error reply with one of `codes` to `topic`, echoing `correlation`.
    Dead {
        reasons: Vec<&'static str>,
        codes: Vec<ErrorCode>,
        error_reply: Option<(Vec<u8>, String)>,
        /// The copy was too large for the dead-letter topic and is cut down.
        shrunk: bool,
    },
}

type RawHeaders = Vec<(Vec<u8>, Option<Vec<u8>>)>;

#[derive(Clone, Debug)]
struct Case {
    kind: &'static str,
    /// Unique per case: replies and dead letters keep the request's key, so they are matched
    /// by it whatever the correlation ID (or its absence).
    key: Vec<u8>,
    payload: Option<Vec<u8>>,
    headers: RawHeaders,
    /// Some header name is not UTF-8: only a hand-made produce request can send it.
    raw: bool,
    expect: Expect,
}

fn header(name: &str, value: impl Into<Vec<u8>>) -> (Vec<u8>, Option<Vec<u8>>) {
    (name.as_bytes().to_vec(), Some(value.into()))
}

fn json_header() -> (Vec<u8>, Option<Vec<u8>>) {
    header(headers::CONTENT_TYPE, headers::JSON_CONTENT_TYPE)
}

fn valid_json(customer: &str) -> Vec<u8> {
    serde_json::to_vec(&common::invoice_request(customer)).unwrap()
}

/// An invoice request with the given JSON text spliced in for each field.
fn invoice_text(customer: &str, description: &str, quantity: &str, price: &str) -> Vec<u8> {
    format!(
        r#"{{"schema_version":1,"customer":{customer},"lines":[{{"description":{description},"quantity":{quantity},"unit_price_cents":{price}}}]}}"#
    )
    .into_bytes()
}

/// A bad payload and what the worker says about it.
struct BadPayload {
    kind: &'static str,
    payload: Option<Vec<u8>>,
    /// Besides the correlation headers: content type and the like.
    headers: RawHeaders,
    reasons: Vec<&'static str>,
    codes: Vec<ErrorCode>,
}

fn bad_payload(
    kind: &'static str,
    payload: Vec<u8>,
    json: bool,
    reasons: &[&'static str],
    codes: &[ErrorCode],
) -> BadPayload {
    BadPayload {
        kind,
        payload: Some(payload),
        headers: if json {
            vec![json_header()]
        } else {
            Vec::new()
        },
        reasons: reasons.to_vec(),
        codes: codes.to_vec(),
    }
}

const MALFORMED: &[ErrorCode] = &[ErrorCode::MalformedRequest];
const INVALID: &[ErrorCode] = &[ErrorCode::InvalidRequest];
const NOT_JSON: &[&str] = &["not valid JSON"];

/// One payload-level defect, chosen by `rng`.
fn random_bad_payload(rng: &mut Rng) -> BadPayload {
    match rng.below(12) {
        0 => {
            // A leading NUL keeps it from ever being valid JSON or plain text.
            let mut bytes = vec![0];
            let len = rng.range(0, 2000);
            bytes.extend(rng.bytes(len));
            bad_payload(
                "random bytes",
                bytes,
                true,
                &["UTF-8", "not valid JSON"],
                MALFORMED,
            )
        }
        1 => {
            const INVALID_UTF8: &[&[u8]] = &[
                b"\xff",
                b"\xc0\xaf",
                b"\x80",
                b"\xe2\x82",
                b"\xed\xa0\x80",
                b"\xf8\x88\x80\x80\x80",
                b"\xf4\x90\x80\x80",
            ];
            let mut json = valid_json("ACME");
            let at = r#"{"schema_version":1,"customer":"AC"#.len();
            let junk = rng.pick(INVALID_UTF8);
            json.splice(at..at, junk.iter().copied());
            bad_payload("invalid UTF-8", json, rng.chance(50), &["UTF-8"], MALFORMED)
        }
        2 => {
            let json = valid_json("Truncated Ltd");
            let cut = rng.range(1, json.len() - 1);
            bad_payload(
                "truncated JSON",
                json[..cut].to_vec(),
                rng.chance(50),
                NOT_JSON,
                MALFORMED,
            )
        }
        3 => {
            // Deep nesting where a field is expected fails at once on its type; in an unknown
            // field it is skipped without recursion (see the good cases), so there it is left
            // unterminated.
            // Up to 60 KB: under the size limit, so the nesting itself is what is judged.
            let depth = rng.range(200, 12_000);
            let (open, close) = ("[".repeat(depth), "]".repeat(depth));
            let (payload, reason, code) = match rng.below(3) {
                0 => (
                    format!(r#"{{"customer":{open}{close},"lines":[]}}"#),
                    "customer",
                    ErrorCode::InvalidRequest,
                ),
                1 => (
                    format!(r#"{{"customer":"A","lines":{open}{close}}}"#),
                    "lines[0]",
                    ErrorCode::InvalidRequest,
                ),
                _ => {
                    let mut json = String::from_utf8(valid_json("Deep")).unwrap();
                    json.pop();
                    json.push_str(&format!(r#","x":{}1}}"#, r#"{"a":"#.repeat(depth)));
                    (json, "not valid JSON", ErrorCode::MalformedRequest)
                }
            };
            bad_payload(
                "deeply nested JSON",
                payload.into_bytes(),
                true,
                &[reason],
                &[code],
            )
        }
        4 => {
            let w = r#""Widget""#;
            let invalid = |payload: Vec<u8>, reason| (payload, reason, ErrorCode::InvalidRequest);
            let cases: &[(Vec<u8>, &'static str, ErrorCode)] = &[
                invalid(invoice_text("5", w, "1", "1"), "customer"),
                invalid(invoice_text("null", w, "1", "1"), "customer"),
                invalid(invoice_text(r#"["A"]"#, w, "1", "1"), "customer"),
                invalid(invoice_text(r#"{"a":1}"#, w, "1", "1"), "customer"),
                invalid(
                    invoice_text(r#""A""#, "7", "1", "1"),
                    "lines[0].description",
                ),
                invalid(
                    invoice_text(r#""A""#, w, r#""2""#, "1"),
                    "lines[0].quantity",
                ),
                invalid(invoice_text(r#""A""#, w, "-1", "1"), "lines[0].quantity"),
                invalid(invoice_text(r#""A""#, w, "1.5", "1"), "lines[0].quantity"),
                invalid(invoice_text(r#""A""#, w, "true", "1"), "lines[0].quantity"),
                invalid(
                    invoice_text(r#""A""#, w, "1", r#""x""#),
                    "lines[0].unit_price_cents",
                ),
                invalid(
                    invoice_text(r#""A""#, w, "1", "-5"),
                    "lines[0].unit_price_cents",
                ),
                invalid(br#"{"customer":"A","lines":"many"}"#.to_vec(), "lines"),
                invalid(br#"{"customer":"A","lines":[5]}"#.to_vec(), "lines[0]"),
                invalid(br#"{"customer":"A","lines":[]}"#.to_vec(), "lines"),
                invalid(br#"{"customer":"A"}"#.to_vec(), "lines"),
                (
                    br#"{"schema_version":"1","customer":"A","lines":[]}"#.to_vec(),
                    "schema_version",
                    ErrorCode::UnsupportedSchemaVersion,
                ),
                (
                    br#"{"schema_version":2,"customer":"A","lines":[]}"#.to_vec(),
                    "schema_version",
                    ErrorCode::UnsupportedSchemaVersion,
                ),
                invalid(
                    br#"{"customer":"A","customer":"B","lines":[]}"#.to_vec(),
                    "customer",
                ),
                invalid(
                    invoice_text(r#""A\u0007B""#, w, "1", "1"),
                    "control characters",
                ),
                invalid(b"42".to_vec(), "invalid request"),
                invalid(b"null".to_vec(), "invalid request"),
                invalid(b"[]".to_vec(), "invalid request"),
                invalid(br#""a string""#.to_vec(), "invalid request"),
            ];
            let (payload, reason, code) = rng.pick(cases);
            bad_payload("wrong types", payload.clone(), true, &[reason], &[*code])
        }
        5 => {
            let w = r#""Widget""#;
            let digits = "9".repeat(rng.range(30, 5000));
            let cases: Vec<(Vec<u8>, &'static str)> = vec![
                (invoice_text(r#""A""#, w, "1e400", "1"), "lines[0].quantity"),
                (
                    invoice_text(r#""A""#, w, "18446744073709551616", "1"),
                    "lines[0].quantity",
                ),
                (
                    invoice_text(r#""A""#, w, "4294967296", "1"),
                    "lines[0].quantity",
                ),
                (
                    invoice_text(r#""A""#, w, "1000001", "1"),
                    "lines[0].quantity",
                ),
                (invoice_text(r#""A""#, w, &digits, "1"), "lines[0].quantity"),
                (
                    invoice_text(r#""A""#, w, "1", "10000000001"),
                    "lines[0].unit_price_cents",
                ),
                (
                    invoice_text(r#""A""#, w, "1", "18446744073709551615"),
                    "lines[0].unit_price_cents",
                ),
                (
                    invoice_text(r#""A""#, w, "1", "1e30"),
                    "lines[0].unit_price_cents",
                ),
                (
                    invoice_text(r#""A""#, w, "1", &digits),
                    "lines[0].unit_price_cents",
                ),
            ];
            let (payload, reason) = rng.pick(&cases).clone();
            bad_payload(
                "huge numbers",
                payload,
                true,
                &[reason, "not valid JSON"],
                &[ErrorCode::InvalidRequest, ErrorCode::MalformedRequest],
            )
        }
        6 => {
            let (payload, reason): (Option<Vec<u8>>, &'static str) = match rng.below(4) {
                0 => (None, "no payload"),
                1 => (Some(Vec::new()), "no payload"),
                2 => (Some(b" \n\t ".to_vec()), "no payload"),
                _ => (
                    Some(legacy::INVOICE_REQUEST_TEXT.as_bytes().to_vec()),
                    "not valid JSON",
                ),
            };
            let json = reason == "not valid JSON";
            BadPayload {
                kind: "empty or tombstone",
                payload,
                headers: if json {
                    vec![json_header()]
                } else {
                    Vec::new()
                },
                reasons: vec![reason],
                codes: MALFORMED.to_vec(),
            }
        }
        7 => {
            let long = format!("application/x-{}", "y".repeat(5000));
            let content_types: Vec<Vec<u8>> = vec![
                b"application/xml".to_vec(),
                b"text/html".to_vec(),
                Vec::new(),
                b";".to_vec(),
                b"\xff\xfe".to_vec(),
                b"application/jsonx".to_vec(),
                long.into_bytes(),
                rng.text(20).into_bytes(),
            ];
            let content_type = rng.pick(&content_types).clone();
            BadPayload {
                kind: "unsupported content type",
                payload: Some(valid_json("Typed")),
                headers: vec![(
                    headers::CONTENT_TYPE.as_bytes().to_vec(),
                    Some(content_type),
                )],
                reasons: vec!["unsupported content-type"],
                codes: MALFORMED.to_vec(),
            }
        }
        8 => {
            // A duplicate content type: the last one counts.
            BadPayload {
                kind: "duplicate content type",
                payload: Some(valid_json("Twice")),
                headers: vec![
                    json_header(),
                    header(headers::CONTENT_TYPE, "application/xml"),
                ],
                reasons: vec!["application/xml"],
                codes: MALFORMED.to_vec(),
            }
        }
        9 => {
            let mut json = b"\xef\xbb\xbf".to_vec();
            json.extend(valid_json("Bom"));
            bad_payload("byte-order mark", json, true, NOT_JSON, MALFORMED)
        }
        10 => {
            let mut json = valid_json("Trailing");
            let tails: [&[u8]; 4] = [b" x", b"}", b",", b"{}"];
            let tail = *rng.pick(&tails);
            json.extend_from_slice(tail);
            bad_payload(
                "trailing garbage",
                json,
                rng.chance(50),
                NOT_JSON,
                MALFORMED,
            )
        }
        _ => {
            let long = "x".repeat(rng.range(201, 5000));
            let payload = invoice_text(
                &serde_json::to_string(&long).unwrap(),
                r#""Widget""#,
                "1",
                "1",
            );
            bad_payload("field too long", payload, true, &["customer"], INVALID)
        }
    }
}

/// Garbage extra headers: random names (never one we read) and values, some with no value.
fn garbage_headers(rng: &mut Rng, count: usize) -> RawHeaders {
    let known = [
        headers::CORRELATION_ID,
        headers::REPLY_TOPIC,
        headers::REPLY_PARTITION,
        headers::CONTENT_TYPE,
        headers::TRACEPARENT,
    ];
    (0..count)
        .filter_map(|_| {
            let len = rng.range(0, 40);
            let name = rng.text(len);
            if known.contains(&name.as_str()) {
                return None;
            }
            let len = rng.range(0, 300);
            let value = (!rng.chance(10)).then(|| rng.bytes(len));
            Some((name.into_bytes(), value))
        })
        .collect()
}

struct Corpus {
    topics: contract::Topics,
    rng: Rng,
    cases: Vec<Case>,
}

impl Corpus {
    fn default_reply(&self) -> String {
        self.topics.reply(RequestKind::Invoice)
    }

    fn nest_reply(&self) -> String {
        self.topics.nest_reply(RequestKind::Invoice)
    }

    fn key(&self) -> Vec<u8> {
        format!("case-{}", self.cases.len()).into_bytes()
    }

    /// A fresh text correlation ID.
    fn correlation(&mut self) -> Vec<u8> {
        format!("hostile-{:016x}-{}", self.rng.next(), self.cases.len()).into_bytes()
    }

    fn push_dead(
        &mut self,
        kind: &'static str,
        payload: Option<Vec<u8>>,
        headers: RawHeaders,
        reasons: Vec<&'static str>,
        codes: Vec<ErrorCode>,
        error_reply: Option<(Vec<u8>, String)>,
    ) {
        let case = Case {
            kind,
            key: self.key(),
            payload,
            headers,
            raw: false,
            expect: Expect::Dead {
                reasons,
                codes,
                error_reply,
                shrunk: false,
            },
        };
        self.cases.push(case);
    }

    /// A bad payload, correlated or not, asking for the default or the NestJS reply topic.
    fn add_bad_payload(&mut self) {
        let bad = random_bad_payload(&mut self.rng);
        let mut headers = RawHeaders::new();
        let mut error_reply = None;
        if self.rng.chance(60) {
            let id = self.correlation();
            let topic = if self.rng.chance(30) {
                self.nest_reply()
            } else {
                self.default_reply()
            };
            headers.push(header(headers::CORRELATION_ID, id.clone()));
            headers.push(header(headers::REPLY_TOPIC, topic.clone()));
            error_reply = Some((id, topic));
        }
        if self.rng.chance(15) {
            let count = self.rng.range(1, 50);
            headers.extend(garbage_headers(&mut self.rng, count));
        }
        headers.extend(bad.headers);
        self.push_dead(
            bad.kind,
            bad.payload,
            headers,
            bad.reasons,
            bad.codes,
            error_reply,
        );
    }

    /// A bad payload under a correlation ID that is not a UUID: empty, binary junk, or 10 KB.
    /// The error reply must echo it byte for byte.
    fn add_malformed_correlation(&mut self) {
        let id = match self.rng.below(3) {
            0 => Vec::new(),
            1 => {
                let len = self.rng.range(1, 64);
                self.rng.bytes(len)
            }
            _ => {
                let mut long = self.correlation();
                long.resize(10 * 1024, b'#');
                long
            }
        };
        let bad = random_bad_payload(&mut self.rng);
        let mut headers = vec![
            header(headers::CORRELATION_ID, id.clone()),
            header(headers::REPLY_TOPIC, self.default_reply()),
        ];
        headers.extend(bad.headers);
        let reply = Some((id, self.default_reply()));
        self.push_dead(
            "malformed correlation ID",
            bad.payload,
            headers,
            bad.reasons,
            bad.codes,
            reply,
        );
    }

    /// Two correlation IDs: the error reply carries the last, as Spring's `lastHeader` does.
    fn add_duplicate_correlation(&mut self) {
        let decoy = self.correlation();
        let id = self.correlation();
        let headers = vec![
            header(headers::CORRELATION_ID, decoy),
            header(headers::REPLY_TOPIC, self.default_reply()),
            header(headers::CORRELATION_ID, id.clone()),
            json_header(),
        ];
        let reply = Some((id, self.default_reply()));
        self.push_dead(
            "duplicate correlation ID",
            Some(b"{\"customer\":".to_vec()),
            headers,
            NOT_JSON.to_vec(),
            MALFORMED.to_vec(),
            reply,
        );
    }

    /// A good payload with an unusable reply topic: refused, error reply on the default topic.
    fn add_bad_reply_topic(&mut self, correlated: bool) {
        let request_topic = self.topics.request(RequestKind::Invoice);
        let names: Vec<Vec<u8>> = vec![
            b"__consumer_offsets".to_vec(),
            request_topic.clone().into_bytes(),
            self.topics.dead_letter(RequestKind::Invoice).into_bytes(),
            self.topics.reply(RequestKind::Score).into_bytes(),
            format!("{request_topic}.does-not-exist").into_bytes(),
            b"no-such-topic".to_vec(),
            Vec::new(),
            b"../../etc/passwd".to_vec(),
            b"a b".to_vec(),
            "t".repeat(300).into_bytes(),
            format!("{}\0", self.default_reply()).into_bytes(),
            b"\xff\xfe".to_vec(),
        ];
        let name = self.rng.pick(&names).clone();
        let reason = if std::str::from_utf8(&name).is_ok() {
            "is not allowed"
        } else {
            "is not UTF-8"
        };
        let mut headers = Vec::new();
        let mut reply = None;
        if correlated {
            let id = self.correlation();
            headers.push(header(headers::CORRELATION_ID, id.clone()));
            reply = Some((id, self.default_reply()));
            // Sometimes an allowed one first: the last one counts.
            if self.rng.chance(30) {
                headers.push(header(headers::REPLY_TOPIC, self.default_reply()));
            }
        }
        headers.push((headers::REPLY_TOPIC.as_bytes().to_vec(), Some(name)));
        headers.push(json_header());
        let payload = valid_json("Misdirected");
        self.push_dead(
            "reply topic not allowed",
            Some(payload),
            headers,
            vec![reason],
            vec![ErrorCode::InvalidHeaders],
            reply,
        );
    }

    /// A good payload with a reply partition that cannot be read, or that does not exist.
    fn add_bad_reply_partition(&mut self) {
        let unreadable: Vec<Vec<u8>> = vec![
            b"-1".to_vec(),
            b"abc".to_vec(),
            Vec::new(),
            b"1.5".to_vec(),
            b" 1".to_vec(),
            b"+1".to_vec(),
            b"0x1".to_vec(),
            vec![0, 0, 1],
            vec![0, 0, 0, 0, 1],
            (-5i32).to_be_bytes().to_vec(),
            b"99999999999".to_vec(),
        ];
        let missing: Vec<Vec<u8>> = vec![
            b"7".to_vec(),
            b"999".to_vec(),
            i32::MAX.to_be_bytes().to_vec(),
            b"abcd".to_vec(),
        ];
        let id = self.correlation();
        let readable = self.rng.chance(35);
        let value = if readable {
            self.rng.pick(&missing).clone()
        } else {
            self.rng.pick(&unreadable).clone()
        };
        let headers = vec![
            header(headers::CORRELATION_ID, id.clone()),
            header(headers::REPLY_TOPIC, self.default_reply()),
            (headers::REPLY_PARTITION.as_bytes().to_vec(), Some(value)),
            json_header(),
        ];
        let reason = if readable {
            "could not be delivered"
        } else {
            headers::REPLY_PARTITION
        };
        self.push_dead(
            if readable {
                "reply partition does not exist"
            } else {
                "reply partition unreadable"
            },
            Some(valid_json("Partitioned")),
            headers,
            vec![reason],
            vec![ErrorCode::InvalidHeaders],
            Some((id, self.default_reply())),
        );
    }

    /// A good payload with a header whose name is not UTF-8.
    fn add_non_utf8_header_name(&mut self) {
        let id = self.correlation();
        let correlated = self.rng.chance(50);
        let mut headers = Vec::new();
        if correlated {
            headers.push(header(headers::CORRELATION_ID, id.clone()));
        }
        headers.push(json_header());
        headers.push((b"x-\xff\xfe-name".to_vec(), Some(b"value".to_vec())));
        headers.push(header("after", "the bad one"));
        let case = Case {
            kind: "header name not UTF-8",
            key: self.key(),
            payload: Some(valid_json("Bytes")),
            headers,
            raw: true,
            expect: Expect::Dead {
                reasons: vec!["not UTF-8"],
                codes: vec![ErrorCode::InvalidHeaders],
                error_reply: correlated.then(|| (id, self.default_reply())),
                shrunk: false,
            },
        };
        self.cases.push(case);
    }

    /// The big ones: payloads near 1 MiB and headers of half a MiB. Each reason must stay small
    /// and each dead-letter copy must fit the topic.
    fn add_big_ones(&mut self) {
        for index in 0..4 {
            let mut payload = br#"{"customer":""#.to_vec();
            payload.resize(NEAR_MIB, b'x');
            payload.extend_from_slice(br#"","lines":[]}"#);
            let mut headers = vec![json_header()];
            let mut reply = None;
            if index % 2 == 0 {
                let id = self.correlation();
                headers.insert(0, header(headers::CORRELATION_ID, id.clone()));
                reply = Some((id, self.default_reply()));
            }
            self.push_dead(
                "900 KiB payload",
                Some(payload),
                headers,
                vec!["more than the"],
                MALFORMED.to_vec(),
                reply,
            );
        }
        for correlated in [false, true] {
            let mut headers = vec![json_header()];
            let mut reply = None;
            if correlated {
                let id = self.correlation();
                headers.insert(0, header(headers::CORRELATION_ID, id.clone()));
                reply = Some((id, self.default_reply()));
            }
            let key = self.key();
            self.cases.push(Case {
                kind: "payload at the broker's limit",
                key,
                payload: Some(self.rng.bytes(BROKER_LIMIT_PAYLOAD)),
                headers,
                raw: false,
                expect: Expect::Dead {
                    reasons: vec!["more than the"],
                    codes: MALFORMED.to_vec(),
                    error_reply: reply,
                    shrunk: true,
                },
            });
        }
        let half_mib = 512 * 1024;
        let long_topic = "r".repeat(half_mib).into_bytes();
        let long_type = format!("application/{}", "z".repeat(half_mib)).into_bytes();
        for (kind, name, value, reason, code) in [
            (
                "half-MiB reply topic",
                headers::REPLY_TOPIC,
                long_topic,
                "is not allowed",
                ErrorCode::InvalidHeaders,
            ),
            (
                "half-MiB content type",
                headers::CONTENT_TYPE,
                long_type,
                "unsupported content-type",
                ErrorCode::MalformedRequest,
            ),
        ] {
            self.push_dead(
                kind,
                Some(valid_json("Big header")),
                vec![(name.as_bytes().to_vec(), Some(value))],
                vec![reason],
                vec![code],
                None,
            );
        }
        // A thousand tiny headers on an empty payload.
        let mut many = Vec::new();
        for index in 0..1000 {
            many.push(header(&format!("h{index}"), index.to_string()));
        }
        self.push_dead(
            "a thousand headers",
            Some(Vec::new()),
            many,
            vec!["no payload"],
            MALFORMED.to_vec(),
            None,
        );
    }

    fn add_bad(&mut self) {
        match self.rng.below(20) {
            0..=10 => self.add_bad_payload(),
            11 | 12 => self.add_malformed_correlation(),
            13 => self.add_duplicate_correlation(),
            14 | 15 => {
                let correlated = self.rng.chance(70);
                self.add_bad_reply_topic(correlated);
            }
            16..=18 => self.add_bad_reply_partition(),
            _ => self.add_non_utf8_header_name(),
        }
    }

    /// A good request, in one of the forms clients really send.
    fn add_good(&mut self) {
        let customer = format!("good customer {}", self.cases.len());
        let mut payload = valid_json(&customer);
        let mut id = self.correlation();
        let mut topic = self.default_reply();
        let mut partition = None;
        let mut headers = RawHeaders::new();
        let kind = match self.rng.below(10) {
            0 => {
                let key = self.key();
                self.cases.push(Case {
                    kind: "legacy plain text",
                    key,
                    payload: Some(legacy::INVOICE_REQUEST_TEXT.as_bytes().to_vec()),
                    headers: Vec::new(),
                    raw: false,
                    expect: Expect::Text,
                });
                return;
            }
            1 => {
                id = self.rng.bytes(16);
                "Spring binary correlation ID"
            }
            2 => {
                topic = self.nest_reply();
                let number = i32::try_from(self.rng.below(3)).unwrap();
                partition = Some(number);
                let encoded = if self.rng.chance(50) {
                    number.to_string().into_bytes()
                } else {
                    number.to_be_bytes().to_vec()
                };
                headers.push((headers::REPLY_PARTITION.as_bytes().to_vec(), Some(encoded)));
                "NestJS reply topic and partition"
            }
            3 => {
                id = match self.rng.below(3) {
                    0 => Vec::new(),
                    1 => {
                        let len = self.rng.range(1, 64);
                        self.rng.bytes(len)
                    }
                    _ => {
                        let mut long = id;
                        long.resize(10 * 1024, b'-');
                        long
                    }
                };
                "odd correlation ID, good payload"
            }
            7 => {
                // Up to 54 KB: under the size limit.
                let depth = self.rng.range(200, 9_000);
                payload.pop();
                let nested = if self.rng.chance(50) {
                    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
                } else {
                    format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth))
                };
                payload.extend(format!(r#","x":{nested}}}"#).bytes());
                "deeply nested unknown field, good payload"
            }
            4 => {
                let count = self.rng.range(1, 40);
                headers.extend(garbage_headers(&mut self.rng, count));
                "garbage extra headers, good payload"
            }
            5 => {
                payload = format!(
                    r#"{{"customer":{},"lines":[{{"description":"Widget","quantity":2,"unit_price_cents":999,"colour":"red"}}],"extra":{{"deep":[1,2,3]}}}}"#,
                    serde_json::to_string(&customer).unwrap()
                )
                .into_bytes();
                "unknown fields, no schema version"
            }
            _ => "plain JSON request",
        };
        let mut all = vec![
            header(headers::CORRELATION_ID, id.clone()),
            header(headers::REPLY_TOPIC, topic.clone()),
            header(headers::CONTENT_TYPE, "Application/JSON; charset=utf-8"),
        ];
        all.extend(headers);
        let key = self.key();
        self.cases.push(Case {
            kind,
            key,
            payload: Some(payload),
            headers: all,
            raw: false,
            expect: Expect::Invoice {
                customer,
                correlation: id,
                topic,
                partition,
            },
        });
    }
}

fn generate(seed: u64, topics: &TopicSettings) -> Vec<Case> {
    let mut corpus = Corpus {
        topics: test_support::topics(topics),
        rng: Rng(seed),
        cases: Vec::new(),
    };
    corpus.add_big_ones();
    while corpus.cases.len() < BAD {
        corpus.add_bad();
    }
    for _ in 0..GOOD {
        corpus.add_good();
    }
    // Interleaved: a Fisher-Yates shuffle.
    let mut cases = corpus.cases;
    for index in (1..cases.len()).rev() {
        let other = corpus.rng.below(index + 1);
        cases.swap(index, other);
    }
    cases
}

/// Produces the cases an ordinary client can send, in order, and returns where each landed.
async fn send_cases(cases: &[&Case], topic: &str) -> Vec<(i32, i64)> {
    let producer: FutureProducer = test_support::kafka()
        .producer_config()
        .set("message.max.bytes", "1048000")
        .set("batch.size", "1048000")
        .set("linger.ms", "5")
        .create()
        .expect("create the test producer");
    let sends = cases.iter().map(|case| {
        let headers = case
            .headers
            .iter()
            .fold(OwnedHeaders::new(), |all, (name, value)| {
                all.insert(Header {
                    key: std::str::from_utf8(name).expect("a UTF-8 header name"),
                    value: value.as_deref(),
                })
            });
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
            .key(case.key.as_slice())
            .headers(headers);
        if let Some(payload) = &case.payload {
            record = record.payload(payload.as_slice());
        }
        producer.send(record, Duration::from_secs(30))
    });
    futures::future::join_all(sends)
        .await
        .into_iter()
        .map(|delivered| {
            let delivery = delivered
                .map_err(|(error, _)| error)
                .expect("produce a case");
            (delivery.partition, delivery.offset)
        })
        .collect()
}

/// Produce requests written by hand (Kafka protocol, Produce v3 with a v2 record batch): the
/// only way to send a header whose name is not UTF-8, which Kafka itself allows.
mod raw {
    use super::RawHeaders;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    fn varint(out: &mut Vec<u8>, value: i64) {
        let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
        while zigzag >= 0x80 {
            out.push((zigzag as u8) | 0x80);
            zigzag >>= 7;
        }
        out.push(zigzag as u8);
    }

    fn varbytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
        match bytes {
            None => varint(out, -1),
            Some(bytes) => {
                varint(out, i64::try_from(bytes.len()).unwrap());
                out.extend_from_slice(bytes);
            }
        }
    }

    fn string(out: &mut Vec<u8>, text: &str) {
        out.extend(i16::try_from(text.len()).unwrap().to_be_bytes());
        out.extend(text.as_bytes());
    }

    fn crc32c(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for byte in data {
            crc ^= u32::from(*byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0x82f6_3b78
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    fn record_batch(key: &[u8], value: Option<&[u8]>, headers: &RawHeaders) -> Vec<u8> {
        let mut record = vec![0]; // attributes
        varint(&mut record, 0); // timestamp delta
        varint(&mut record, 0); // offset delta
        varbytes(&mut record, Some(key));
        varbytes(&mut record, value);
        varint(&mut record, i64::try_from(headers.len()).unwrap());
        for (name, value) in headers {
            varbytes(&mut record, Some(name));
            varbytes(&mut record, value.as_deref());
        }
        let now = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap();
        let mut checked = Vec::new();
        checked.extend(0i16.to_be_bytes()); // attributes: no compression
        checked.extend(0i32.to_be_bytes()); // last offset delta
        checked.extend(now.to_be_bytes()); // first timestamp
        checked.extend(now.to_be_bytes()); // max timestamp
        checked.extend((-1i64).to_be_bytes()); // producer id
        checked.extend((-1i16).to_be_bytes()); // producer epoch
        checked.extend((-1i32).to_be_bytes()); // base sequence
        checked.extend(1i32.to_be_bytes()); // one record
        varint(&mut checked, i64::try_from(record.len()).unwrap());
        checked.extend(record);
        let mut batch = Vec::new();
        batch.extend(0i64.to_be_bytes()); // base offset
        let length = 4 + 1 + 4 + checked.len(); // epoch, magic, crc, the rest
        batch.extend(i32::try_from(length).unwrap().to_be_bytes());
        batch.extend((-1i32).to_be_bytes()); // partition leader epoch
        batch.push(2); // magic
        batch.extend(crc32c(&checked).to_be_bytes());
        batch.extend(checked);
        batch
    }

    /// The leader of `topic`/`partition`, as `host:port`.
    fn leader(topic: &str, partition: i32) -> String {
        let consumer: BaseConsumer = test_support::kafka()
            .common_config()
            .create()
            .expect("create a metadata client");
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("fetch metadata");
        let leader = metadata.topics()[0]
            .partitions()
            .iter()
            .find(|found| found.id() == partition)
            .expect("the partition exists")
            .leader();
        let broker = metadata
            .brokers()
            .iter()
            .find(|broker| broker.id() == leader)
            .expect("the leader is known");
        format!("{}:{}", broker.host(), broker.port())
    }

    fn read_exact(stream: &mut TcpStream, len: usize) -> Vec<u8> {
        let mut buffer = vec![0; len];
        stream.read_exact(&mut buffer).expect("read the response");
        buffer
    }

    /// Produces one record to `topic`/`partition` with acks=all; returns its offset.
    pub fn produce(
        topic: &str,
        partition: i32,
        key: &[u8],
        value: Option<&[u8]>,
        headers: &RawHeaders,
    ) -> i64 {
        let batch = record_batch(key, value, headers);
        let mut request = Vec::new();
        request.extend(0i16.to_be_bytes()); // Produce
        request.extend(3i16.to_be_bytes()); // version 3
        request.extend(7i32.to_be_bytes()); // correlation id
        string(&mut request, "hostile-input-test");
        request.extend((-1i16).to_be_bytes()); // no transactional id
        request.extend((-1i16).to_be_bytes()); // acks=all
        request.extend(10_000i32.to_be_bytes()); // timeout
        request.extend(1i32.to_be_bytes()); // one topic
        string(&mut request, topic);
        request.extend(1i32.to_be_bytes()); // one partition
        request.extend(partition.to_be_bytes());
        request.extend(i32::try_from(batch.len()).unwrap().to_be_bytes());
        request.extend(batch);

        let mut stream = TcpStream::connect(leader(topic, partition)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream
            .write_all(&i32::try_from(request.len()).unwrap().to_be_bytes())
            .unwrap();
        stream.write_all(&request).unwrap();
        let size = i32::from_be_bytes(read_exact(&mut stream, 4).try_into().unwrap());
        let response = read_exact(&mut stream, usize::try_from(size).unwrap());
        let mut at = 4; // correlation id
        at += 4; // topic count
        let name_len =
            usize::try_from(i16::from_be_bytes([response[at], response[at + 1]])).unwrap();
        at += 2 + name_len + 4; // name, partition count
        at += 4; // partition index
        let error = i16::from_be_bytes([response[at], response[at + 1]]);
        at += 2;
        assert_eq!(error, 0, "the broker refused the hand-made record");
        i64::from_be_bytes(response[at..at + 8].try_into().unwrap())
    }
}

/// Reads `topic` from the beginning until `count` messages are in or the deadline passes; fails
/// at once if the worker stops.
async fn read_topic(
    topic: &str,
    settings: &TopicSettings,
    count: usize,
    worker: &JoinHandle<Result<(), service::worker::WorkerError>>,
) -> Vec<ReadMessage> {
    let mut config = test_support::kafka().consumer_config();
    config
        .set("group.id", "hostile-input-reader")
        .set("enable.auto.commit", "false");
    let consumer: StreamConsumer = config.create().expect("create a reader");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..settings.partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("add a partition");
    }
    consumer.assign(&assignment).expect("assign the reader");
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    let mut seen = Vec::new();
    while seen.len() < count {
        assert!(
            !worker.is_finished(),
            "the worker stopped (crashed?) with {} of {count} messages on {topic}",
            seen.len()
        );
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            // What is missing is reported case by case.
            eprintln!(
                "timed out after {ANSWER_TIMEOUT:?} with {} of {count} messages on {topic}",
                seen.len()
            );
            break;
        }
        let wait = left.min(Duration::from_millis(500));
        if let Ok(Ok(message)) = tokio::time::timeout(wait, consumer.recv()).await {
            seen.push(ReadMessage {
                partition: message.partition(),
                offset: message.offset(),
                key: message.key().map(<[u8]>::to_vec),
                payload: message.payload().map(<[u8]>::to_vec),
                headers: HeaderList::from_message(&message),
            });
        }
    }
    seen
}

fn header_value<'a>(message: &'a ReadMessage, name: &str) -> Option<&'a [u8]> {
    message.headers.last(name)
}

fn text(bytes: Option<&[u8]>) -> String {
    String::from_utf8_lossy(bytes.unwrap_or_default()).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_hostile_messages_are_dead_lettered_and_every_good_one_is_answered() {
    let seed = std::env::var("HOSTILE_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    println!("hostile input corpus: HOSTILE_SEED={seed}");
    let started = Instant::now();
    let settings = test_support::unique_topics();
    test_support::create_topics(&settings, &[]).await;
    let topics = test_support::topics(&settings);
    let request_topic = topics.request(RequestKind::Invoice);
    let cases = generate(seed, &settings);
    let bad = cases
        .iter()
        .filter(|case| matches!(case.expect, Expect::Dead { .. }))
        .count();
    assert!(bad >= 1000, "only {bad} bad messages");

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(invoice_generator::run(
        test_support::worker_config(&settings, "invoices"),
        async {
            stopped.await.ok();
        },
    ));

    // Ordinary messages through a client library; the few with non-UTF-8 header names by hand,
    // to partition 0 in between.
    let (raw, ordinary): (Vec<&Case>, Vec<&Case>) = cases.iter().partition(|case| case.raw);
    let mut positions: HashMap<Vec<u8>, (i32, i64)> = HashMap::new();
    let half = ordinary.len() / 2;
    for (case, position) in ordinary[..half]
        .iter()
        .zip(send_cases(&ordinary[..half], &request_topic).await)
    {
        positions.insert(case.key.clone(), position);
    }
    for case in &raw {
        let offset = tokio::task::block_in_place(|| {
            raw::produce(
                &request_topic,
                0,
                &case.key,
                case.payload.as_deref(),
                &case.headers,
            )
        });
        positions.insert(case.key.clone(), (0, offset));
    }
    for (case, position) in ordinary[half..]
        .iter()
        .zip(send_cases(&ordinary[half..], &request_topic).await)
    {
        positions.insert(case.key.clone(), position);
    }
    let sent_in = started.elapsed();

    // What must come out.
    let default_reply = topics.reply(RequestKind::Invoice);
    let nest_reply = topics.nest_reply(RequestKind::Invoice);
    let mut expected_replies: HashMap<String, usize> = HashMap::new();
    for case in &cases {
        let topic = match &case.expect {
            Expect::Invoice { topic, .. } => Some(topic.clone()),
            Expect::Text => Some(default_reply.clone()),
            Expect::Dead { error_reply, .. } => {
                error_reply.as_ref().map(|(_, topic)| topic.clone())
            }
        };
        if let Some(topic) = topic {
            *expected_replies.entry(topic).or_default() += 1;
        }
    }
    let dead_letter_topic = topics.dead_letter(RequestKind::Invoice);
    let expected_on = |topic: &String| expected_replies.get(topic).copied().unwrap_or(0);
    let dead_letters = read_topic(&dead_letter_topic, &settings, bad, &worker).await;
    let replies = read_topic(
        &default_reply,
        &settings,
        expected_on(&default_reply),
        &worker,
    )
    .await;
    let nest_replies = read_topic(&nest_reply, &settings, expected_on(&nest_reply), &worker).await;
    let answered_in = started.elapsed();

    // Exactly one dead letter per bad message, none for a good one, each with its reason.
    let source_of = |key: &[u8]| {
        let (partition, offset) = positions[key];
        format!("{request_topic}/{partition}/{offset}")
    };
    let by_source: HashMap<String, &ReadMessage> = dead_letters
        .iter()
        .map(|copy| (text(header_value(copy, headers::DEAD_LETTER_SOURCE)), copy))
        .collect();
    let mut missing: HashMap<&str, usize> = HashMap::new();
    for case in &cases {
        if matches!(case.expect, Expect::Dead { .. })
            && !by_source.contains_key(&source_of(&case.key))
        {
            *missing.entry(case.kind).or_default() += 1;
        }
    }
    let dead: HashMap<String, &str> = cases
        .iter()
        .filter(|case| matches!(case.expect, Expect::Dead { .. }))
        .map(|case| (source_of(&case.key), case.kind))
        .collect();
    let kind_of: HashMap<String, &str> = cases
        .iter()
        .map(|case| (source_of(&case.key), case.kind))
        .collect();
    let unexpected: Vec<String> = by_source
        .iter()
        .filter(|(source, _)| !dead.contains_key(*source))
        .map(|(source, copy)| {
            let reason = text(header_value(copy, headers::DEAD_LETTER_REASON));
            let kind = kind_of.get(source).copied().unwrap_or("no such request");
            format!("{source} ({kind}): {reason}")
        })
        .collect();
    assert!(
        missing.is_empty() && unexpected.is_empty(),
        "bad messages with no dead letter, by kind: {missing:?}; unexpected dead letters: {unexpected:#?}"
    );
    assert_eq!(dead_letters.len(), bad, "dead letters vs bad messages");
    assert_eq!(by_source.len(), bad, "one dead letter per source");
    let mut kinds: HashMap<&str, usize> = HashMap::new();
    for case in &cases {
        let source = source_of(&case.key);
        let Expect::Dead {
            reasons, shrunk, ..
        } = &case.expect
        else {
            assert!(
                !by_source.contains_key(&source),
                "{}: a good request was dead-lettered: {}",
                case.kind,
                text(header_value(
                    by_source[&source],
                    headers::DEAD_LETTER_REASON
                ))
            );
            continue;
        };
        *kinds.entry(case.kind).or_default() += 1;
        let copy = by_source
            .get(&source)
            .unwrap_or_else(|| panic!("{} ({source}): no dead letter", case.kind));
        let reason = text(header_value(copy, headers::DEAD_LETTER_REASON));
        assert!(
            reasons.iter().any(|part| reason.contains(part)),
            "{}: reason {reason:?} mentions none of {reasons:?}",
            case.kind
        );
        assert!(
            reason.len() <= 4096,
            "{}: a reason of {} bytes",
            case.kind,
            reason.len()
        );
        assert_eq!(
            copy.key.as_deref(),
            Some(case.key.as_slice()),
            "{}",
            case.kind
        );
        let truncated = header_value(copy, headers::DEAD_LETTER_TRUNCATED);
        let payload = case.payload.as_deref().unwrap_or_default();
        if *shrunk {
            assert!(truncated.is_some(), "{}: copy not marked as cut", case.kind);
            assert!(
                payload.starts_with(copy.payload.as_deref().unwrap_or_default()),
                "{}: the cut copy keeps the start of the payload",
                case.kind
            );
        } else {
            assert_eq!(truncated, None, "{}", case.kind);
            assert_eq!(
                copy.payload.as_deref().unwrap_or_default(),
                payload,
                "{}: payload preserved",
                case.kind
            );
        }
    }

    // Every reply: the right one, to the right request, where it was asked for.
    for (topic, read) in [(&default_reply, &replies), (&nest_reply, &nest_replies)] {
        assert_eq!(
            read.len(),
            expected_replies.get(topic).copied().unwrap_or(0),
            "replies on {topic}"
        );
    }
    let mut by_key: HashMap<Vec<u8>, (&String, &ReadMessage)> = HashMap::new();
    let mut legacy_numbers = HashSet::new();
    for (topic, read) in [(&default_reply, &replies), (&nest_reply, &nest_replies)] {
        for reply in read {
            match &reply.key {
                Some(key) => assert!(
                    by_key.insert(key.clone(), (topic, reply)).is_none(),
                    "two replies to {}",
                    String::from_utf8_lossy(key)
                ),
                None => match legacy::parse_reply_text(&reply.text()) {
                    Some(legacy::LegacyReply::Invoice { number }) if topic == &default_reply => {
                        assert!(legacy_numbers.insert(number), "two replies #{number}");
                    }
                    other => panic!(
                        "unexpected reply without a key on {topic}: {other:?} {}",
                        reply.text()
                    ),
                },
            }
        }
    }
    // The reply (`what`) to `case` on `topic`, echoing `correlation`.
    let correlated_reply = |case: &Case, topic: &String, correlation: &[u8], what: &str| {
        let (on, reply) = by_key
            .get(&case.key)
            .unwrap_or_else(|| panic!("{}: no {what}", case.kind));
        assert_eq!(*on, topic, "{}: {what} topic", case.kind);
        assert_eq!(
            header_value(reply, headers::CORRELATION_ID),
            Some(correlation),
            "{}",
            case.kind
        );
        let body: Reply<Invoice> = serde_json::from_slice(reply.payload.as_deref().unwrap())
            .unwrap_or_else(|error| panic!("{}: {error}: {}", case.kind, reply.text()));
        (*reply, body)
    };
    let mut good = 0;
    for case in &cases {
        let (partition, offset) = positions[&case.key];
        let origin = Origin { partition, offset };
        match &case.expect {
            Expect::Text => {
                good += 1;
                let number = invoice_generator::invoice_number(origin);
                assert!(
                    legacy_numbers.contains(&number),
                    "no plain-text reply #{number}"
                );
            }
            Expect::Invoice {
                customer,
                correlation,
                topic,
                partition: reply_partition,
            } => {
                good += 1;
                let (reply, body) = correlated_reply(case, topic, correlation, "reply");
                let expected =
                    invoice_generator::generate_invoice(common::invoice_request(customer), origin);
                assert_eq!(body.outcome, Outcome::Ok(expected), "{}", case.kind);
                if let Some(number) = reply_partition {
                    assert_eq!(reply.partition, *number, "{}: reply partition", case.kind);
                }
            }
            Expect::Dead {
                codes, error_reply, ..
            } => {
                let Some((correlation, topic)) = error_reply else {
                    assert!(
                        !by_key.contains_key(&case.key),
                        "{}: an uncorrelated bad message was answered",
                        case.kind
                    );
                    continue;
                };
                let (_, body) = correlated_reply(case, topic, correlation, "error reply");
                let Outcome::Error(error) = body.outcome else {
                    panic!("{}: expected an error reply", case.kind);
                };
                assert!(
                    codes.contains(&error.code),
                    "{}: {:?} not in {codes:?}: {}",
                    case.kind,
                    error.code,
                    error.message
                );
            }
        }
    }

    // Still running and caught up: the group has committed every request.
    let group = test_support::group_id(&settings, "invoices");
    let total = i64::try_from(cases.len()).unwrap();
    test_support::wait_for(
        "the worker to commit every request",
        Duration::from_secs(20),
        || {
            let committed = tokio::task::block_in_place(|| {
                test_support::groups::committed_total(&group, &request_topic, settings.partitions)
            });
            std::future::ready((committed == total).then_some(()))
        },
    )
    .await;
    stop.send(()).expect("the worker is still running");
    tokio::time::timeout(Duration::from_secs(60), worker)
        .await
        .expect("the worker stops in time")
        .expect("the worker did not panic")
        .expect("the worker stopped without error");
    // Nothing more came out than was read: no duplicates, no strays.
    for (topic, count) in [
        (&dead_letter_topic, bad),
        (&default_reply, expected_on(&default_reply)),
        (&nest_reply, expected_on(&nest_reply)),
    ] {
        let held = tokio::task::block_in_place(|| {
            test_support::groups::message_count(topic, settings.partitions)
        });
        assert_eq!(held, count, "messages on {topic}");
    }
    let mut kinds: Vec<_> = kinds.into_iter().collect();
    kinds.sort();
    println!(
        "{} messages ({bad} bad, {good} good) sent in {sent_in:?}, all answered after {answered_in:?}; bad by kind: {kinds:?}",
        cases.len()
    );
}
