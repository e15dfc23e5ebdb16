//! The journey of one request, for its detail page: each hop from the dashboard through the
//! broker and a worker and back, with when it happened and how long it took since the one
//! before. What a learner asks of a round trip ("why did the first invoice take 205 ms and the
//! next one 3?") is answered by where the time went.
//!
//! Pieced together from what each party knows: the dashboard's send and acknowledgement times and
//! the round trip (the store), the broker's record timestamps and positions (the messages read
//! back), and the worker's arrival, wait and handling times (the stamp on the reply, see
//! [`request_reply::stamp`]). A pure function of those, so every rule is unit-tested.

use crate::store::RequestRecord;
use rdkafka::Timestamp;
use rdkafka::message::{Message, OwnedMessage};
use request_reply::kafka::HeaderList;
use request_reply::stamp::WorkerStamp;
use std::time::{Duration, UNIX_EPOCH};

/// One hop of the journey.
#[derive(Clone, Debug, PartialEq)]
pub struct Hop {
    /// What happened, in a few words.
    pub what: &'static str,
    /// Who and where: the topic, partition and offset, the worker.
    pub detail: String,
    /// Milliseconds since the request was sent, as shown.
    pub since_sent: String,
    /// Milliseconds since the hop before, as shown.
    pub step: String,
}

/// The journey, and what the page says about the hops it cannot show.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Journey {
    pub hops: Vec<Hop>,
    /// Why some hops are missing, or how to read them.
    pub notes: Vec<&'static str>,
}

/// A point in time on the journey, in milliseconds since the request was sent (fractional where
/// the source has better than millisecond resolution). Relative, so that what the dashboard
/// measured itself (acknowledgement, round trip) is shown exactly as measured.
type Millis = f64;

fn millis_of(duration: Duration) -> Millis {
    duration.as_secs_f64() * 1000.0
}

/// Who set a record's timestamp, which decides what the hop at that time is.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Stamper {
    /// `LogAppendTime`: the broker, as it appended the record (the topics this project creates).
    Broker,
    /// `CreateTime`: the producer, as it created the record (Kafka's default for a topic).
    Producer,
}

/// The record timestamp of `message` relative to `sent` (ms since the epoch), and who set it.
fn record_time(message: &OwnedMessage, sent: f64) -> Option<(Millis, Stamper)> {
    match message.timestamp() {
        Timestamp::CreateTime(ms) => Some((ms as f64 - sent, Stamper::Producer)),
        Timestamp::LogAppendTime(ms) => Some((ms as f64 - sent, Stamper::Broker)),
        Timestamp::NotAvailable => None,
    }
}

/// Said of a hop timed by the broker's timestamp.
const LOG_APPEND_TIME: &str = "record timestamp LogAppendTime, set by the broker as it appended it";

/// Said of a hop timed by a producer's timestamp: why the append itself is not shown.
const CREATE_TIME: &str = "record timestamp CreateTime, set by its producer: this topic does not \
                           record when the broker appended it (one created with \
                           message.timestamp.type=LogAppendTime does)";

/// Where `message` sits, and its key when it has one.
fn position(message: &OwnedMessage) -> String {
    let key = message
        .key()
        .map(|key| format!(", key {}", String::from_utf8_lossy(key)))
        .unwrap_or_default();
    format!(
        "{}/{}/{} (topic/partition/offset){key}",
        message.topic(),
        message.partition(),
        message.offset()
    )
}

/// The journey of `record`, from the request and reply messages read back from Kafka (either
/// may be missing: not sent, no reply yet, or not readable just now).
pub fn journey(
    record: &RequestRecord,
    request: Option<&OwnedMessage>,
    reply: Option<&OwnedMessage>,
) -> Journey {
    let sent = millis_of(
        record
            .created_at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default(),
    );
    let mut hops: Vec<(&'static str, String, Millis)> = Vec::new();
    let mut notes = Vec::new();
    hops.push((
        "sent by the dashboard",
        format!("the {} request, correlation ID {}", record.kind, record.id),
        0.0,
    ));
    if let Some(message) = request {
        // The acknowledgement is when the dashboard heard of the append, which can be after
        // the worker already has the request (or even after the reply): told, not drawn.
        let acked = record
            .acked_after
            .map(|after| {
                format!(
                    "; the broker's acknowledgement reached the dashboard after {:.1} ms",
                    millis_of(after)
                )
            })
            .unwrap_or_default();
        let stored = position(message);
        let hop = match record_time(message, sent) {
            Some((at, Stamper::Broker)) => Some((
                "appended by the broker",
                format!("stored at {stored}; {LOG_APPEND_TIME}{acked}"),
                at,
            )),
            Some((at, Stamper::Producer)) => Some((
                "stamped by the dashboard's producer",
                format!("stored at {stored}; {CREATE_TIME}{acked}"),
                at,
            )),
            None => record.acked_after.map(|after| {
                (
                    "acknowledged by the broker",
                    format!("stored at {stored}; the record has no timestamp{acked}"),
                    millis_of(after),
                )
            }),
        };
        hops.extend(hop);
    }
    match reply {
        None => {}
        Some(message) => {
            match WorkerStamp::read(&HeaderList::from_message(message)) {
                Some(stamp) => {
                    let worker = &stamp.worker;
                    let arrived = stamp.received_at_ms as f64 - sent;
                    hops.push((
                        "picked up by a worker",
                        format!(
                            "{} in consumer group {} on host {}",
                            worker.client_id, worker.group, worker.host
                        ),
                        arrived,
                    ));
                    let started = arrived + millis_of(stamp.queued);
                    hops.push((
                        "handled",
                        format!(
                            "waited {:.1} ms for earlier requests with the same key, then the \
                             handler took {:.1} ms",
                            millis_of(stamp.queued),
                            millis_of(stamp.handled)
                        ),
                        started + millis_of(stamp.handled),
                    ));
                }
                None => notes.push(
                    "The reply carries no worker-* headers (it came from a worker that does not \
                     report its timing, such as the original, Spring or NestJS ones): the time \
                     spent in the worker is part of the step to the reply.",
                ),
            }
            let stored = position(message);
            match record_time(message, sent) {
                Some((at, Stamper::Broker)) => hops.push((
                    "reply appended",
                    format!("stored at {stored}; {LOG_APPEND_TIME}"),
                    at,
                )),
                Some((at, Stamper::Producer)) => hops.push((
                    "reply stamped by the worker's producer",
                    format!("stored at {stored}; {CREATE_TIME}"),
                    at,
                )),
                None => {}
            }
        }
    }
    if let Some(round_trip) = record.round_trip {
        hops.push((
            "reply received by the dashboard",
            "matched to the request by its correlation ID".to_owned(),
            millis_of(round_trip),
        ));
    }
    if hops.len() > 2 {
        notes.push(
            "The broker's and the worker's times come from their own clocks: on other machines \
             they are only as close as the clocks are (a negative step means they disagree). \
             Kafka's record timestamps have millisecond resolution.",
        );
    }
    let mut previous = 0.0;
    Journey {
        hops: hops
            .into_iter()
            .map(|(what, detail, at)| {
                let hop = Hop {
                    what,
                    detail,
                    since_sent: format!("{at:.1} ms"),
                    step: format!("{:+.1} ms", at - previous),
                };
                previous = at;
                hop
            })
            .collect(),
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Status;
    use contract::RequestKind;
    use rdkafka::message::{Header, OwnedHeaders};
    use request_reply::stamp::WorkerIdentity;

    const SENT_MS: i64 = 1_764_547_200_000;

    fn record(acked_after: Option<Duration>, round_trip: Option<Duration>) -> RequestRecord {
        RequestRecord {
            id: "c0ffee".into(),
            kind: RequestKind::Invoice,
            summary: String::new(),
            created_at: UNIX_EPOCH + Duration::from_millis(SENT_MS as u64),
            sent: None,
            status: Status::Completed,
            error: None,
            reply: None,
            round_trip,
            late: false,
            duplicate_replies: 0,
            duplicates: Vec::new(),
            acked_after,
            request_json: None,
            reply_json: None,
        }
    }

    fn message(topic: &str, timestamp: Timestamp, headers: Option<OwnedHeaders>) -> OwnedMessage {
        OwnedMessage::new(
            None,
            Some(b"ACME Corp".to_vec()),
            topic.into(),
            timestamp,
            2,
            41,
            headers,
        )
    }

    fn stamped(received_at_ms: i64) -> OwnedHeaders {
        let stamp = WorkerStamp::new(
            WorkerIdentity {
                group: "generate-invoice".into(),
                client_id: "generate-invoice-box-7-0".into(),
                host: "box".into(),
            },
            UNIX_EPOCH + Duration::from_millis(received_at_ms as u64),
            Duration::from_micros(500),
            Duration::from_micros(1_500),
        );
        stamp
            .headers()
            .iter()
            .fold(OwnedHeaders::new(), |all, (key, value)| {
                all.insert(Header {
                    key,
                    value: Some(value),
                })
            })
    }

    #[test]
    fn every_hop_in_order_with_its_step() {
        let request = message(
            "generate-invoice",
            Timestamp::LogAppendTime(SENT_MS + 1),
            None,
        );
        let reply = message(
            "invoice-generated",
            Timestamp::LogAppendTime(SENT_MS + 5),
            Some(stamped(SENT_MS + 2)),
        );
        let journey = journey(
            &record(
                Some(Duration::from_micros(1_200)),
                Some(Duration::from_millis(6)),
            ),
            Some(&request),
            Some(&reply),
        );
        let table: Vec<(&str, &str, &str)> = journey
            .hops
            .iter()
            .map(|hop| (hop.what, hop.since_sent.as_str(), hop.step.as_str()))
            .collect();
        assert_eq!(
            table,
            [
                ("sent by the dashboard", "0.0 ms", "+0.0 ms"),
                ("appended by the broker", "1.0 ms", "+1.0 ms"),
                ("picked up by a worker", "2.0 ms", "+1.0 ms"),
                ("handled", "4.0 ms", "+2.0 ms"),
                ("reply appended", "5.0 ms", "+1.0 ms"),
                ("reply received by the dashboard", "6.0 ms", "+1.0 ms"),
            ]
        );
        assert!(
            journey.hops[1]
                .detail
                .contains("generate-invoice/2/41 (topic/partition/offset), key ACME Corp")
        );
        assert!(journey.hops[1].detail.contains("LogAppendTime"));
        assert!(
            journey.hops[1]
                .detail
                .contains("acknowledgement reached the dashboard after 1.2 ms")
        );
        assert!(
            journey.hops[2].detail.contains(
                "generate-invoice-box-7-0 in consumer group generate-invoice on host box"
            )
        );
        assert!(journey.hops[3].detail.contains("waited 0.5 ms"));
        assert!(journey.hops[3].detail.contains("handler took 1.5 ms"));
        assert!(journey.hops[4].detail.contains("invoice-generated/2/41"));
        assert_eq!(journey.notes.len(), 1, "only the note about clocks");
    }

    #[test]
    fn producer_timestamps_are_not_called_appends() {
        let request = message("generate-invoice", Timestamp::CreateTime(SENT_MS + 1), None);
        let reply = message(
            "invoice-generated",
            Timestamp::CreateTime(SENT_MS + 5),
            Some(stamped(SENT_MS + 2)),
        );
        let journey = journey(
            &record(None, Some(Duration::from_millis(6))),
            Some(&request),
            Some(&reply),
        );
        let whats: Vec<&str> = journey.hops.iter().map(|hop| hop.what).collect();
        assert_eq!(
            whats,
            [
                "sent by the dashboard",
                "stamped by the dashboard's producer",
                "picked up by a worker",
                "handled",
                "reply stamped by the worker's producer",
                "reply received by the dashboard"
            ]
        );
        assert!(journey.hops[1].detail.contains("CreateTime"));
        assert!(
            journey.hops[4]
                .detail
                .contains("message.timestamp.type=LogAppendTime does")
        );
    }

    #[test]
    fn without_a_timestamp_the_acknowledgement_times_the_broker_hop() {
        let request = message("generate-invoice", Timestamp::NotAvailable, None);
        let journey = journey(
            &record(Some(Duration::from_micros(2_500)), None),
            Some(&request),
            None,
        );
        assert_eq!(journey.hops[1].what, "acknowledged by the broker");
        assert_eq!(journey.hops[1].since_sent, "2.5 ms");
    }

    #[test]
    fn a_reply_without_a_stamp_says_why_the_worker_hops_are_missing() {
        let request = message(
            "generate-invoice",
            Timestamp::LogAppendTime(SENT_MS + 1),
            None,
        );
        let reply = message(
            "invoice-generated",
            Timestamp::LogAppendTime(SENT_MS + 5),
            None,
        );
        // History: no acknowledgement time.
        let journey = journey(
            &record(None, Some(Duration::from_millis(7))),
            Some(&request),
            Some(&reply),
        );
        let whats: Vec<&str> = journey.hops.iter().map(|hop| hop.what).collect();
        assert_eq!(
            whats,
            [
                "sent by the dashboard",
                "appended by the broker",
                "reply appended",
                "reply received by the dashboard"
            ]
        );
        assert!(journey.hops[1].detail.contains("LogAppendTime"));
        assert!(journey.notes[0].contains("no worker-* headers"));
    }

    #[test]
    fn a_pending_request_shows_how_far_it_got_and_clock_skew_shows_as_negative() {
        let request = message("generate-invoice", Timestamp::CreateTime(SENT_MS - 3), None);
        let journey = journey(&record(None, None), Some(&request), None);
        assert_eq!(journey.hops.len(), 2);
        assert_eq!(journey.hops[1].step, "-3.0 ms");
        assert!(journey.notes.is_empty());
        let unsent = super::journey(&record(None, None), None, None);
        assert_eq!(unsent.hops.len(), 1);
    }
}
