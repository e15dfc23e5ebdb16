//! The reply listener's watchdog against a real broker: a listener whose fetching has stopped
//! (the state librdkafka can leave an assigned consumer in after a cluster outage, brought about
//! here directly) is noticed and replaced, and the replies that arrived meanwhile are all read,
//! once each, in order; and a reply no client can decode is skipped, so the partition moves on.

use request_reply::admin::ensure_request_and_reply_topics;
use request_reply::config::{KafkaSettings, TopicSettings};
use request_reply::headers::{self, CorrelationId};
use request_reply::kafka::Outgoing;
use request_reply::requester::{
    IncomingReply, ListenerCounters, ReplyListener, Requester, SingleRoute, StartAt,
};
use request_reply::route::{Route, Routes};
use std::time::Duration;

/// One kind of request whose replies are read as any JSON.
type Topics = SingleRoute<serde_json::Value>;

/// The stall time, a look-up interval and the time a replacement needs, with room to spare.
const RECOVERY_BOUND: Duration = Duration::from_secs(20);

/// Two recoveries at the undecodable message and the skip, each after a stall time and a
/// look-up, with room to spare.
const SKIP_BOUND: Duration = Duration::from_secs(45);

/// The score topics under `settings`' prefix.
fn routes(settings: &TopicSettings) -> Topics {
    Topics::new(Route::new(
        format!("{}calculate-score", settings.prefix),
        format!("{}score-calculated", settings.prefix),
    ))
}

fn reply(topics: &Topics, partition: i32, id: &CorrelationId) -> Outgoing {
    let mut outgoing = Outgoing::new(topics.route(()).reply_topic, b"{}".to_vec())
        .header(headers::CORRELATION_ID, id.as_bytes());
    outgoing.partition = Some(partition);
    outgoing
}

/// The test broker and topics of a test's own, created.
async fn created_topics() -> (KafkaSettings, Topics) {
    let kafka = test_support::kafka();
    let settings = test_support::unique_topics();
    let topics = routes(&settings);
    ensure_request_and_reply_topics(&kafka, &settings, &topics)
        .await
        .unwrap();
    (kafka, topics)
}

/// Produces a reply to `id` on `partition` of the reply topic.
async fn send_reply(
    producer: &Requester<Topics>,
    topics: &Topics,
    partition: i32,
    id: &CorrelationId,
) {
    producer
        .send_outgoing(&reply(topics, partition, id))
        .await
        .unwrap();
}

/// The next reply `listener` reads, within [`RECOVERY_BOUND`] (`what` in the message if none).
async fn next_within(listener: &mut ReplyListener<Topics>, what: &str) -> IncomingReply<Topics> {
    tokio::time::timeout(RECOVERY_BOUND, listener.next())
        .await
        .expect(what)
}

#[tokio::test]
async fn a_stalled_reply_listener_is_replaced_and_misses_nothing() {
    let (kafka, topics) = created_topics().await;
    let producer = Requester::new(&kafka, topics.clone(), Duration::from_secs(10)).unwrap();
    let mut listener = ReplyListener::start(&kafka, topics.clone(), "requester", StartAt::End)
        .await
        .unwrap();

    let first = CorrelationId::generate();
    send_reply(&producer, &topics, 0, &first).await;
    let received = next_within(&mut listener, "a healthy listener reads the first reply").await;
    assert_eq!(received.correlation_id, Some(first));
    assert_eq!(listener.recoveries(), 0, "nothing to recover yet");

    listener.stall_for_test().unwrap();
    let stranded: Vec<CorrelationId> = (0..3).map(|_| CorrelationId::generate()).collect();
    for (index, id) in stranded.iter().enumerate() {
        let partition = i32::try_from(index % 2).unwrap();
        send_reply(&producer, &topics, partition, id).await;
    }
    let mut read = Vec::new();
    while read.len() < stranded.len() {
        let received = tokio::time::timeout(RECOVERY_BOUND, listener.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "stalled listener not recovered: read {} of {} replies, {} recoveries",
                    read.len(),
                    stranded.len(),
                    listener.recoveries()
                )
            });
        read.push(received.correlation_id.unwrap());
    }
    read.sort_by_key(CorrelationId::key);
    let mut expected = stranded.clone();
    expected.sort_by_key(CorrelationId::key);
    assert_eq!(read, expected, "every stranded reply, once");
    assert_eq!(listener.recoveries(), 1, "one replacement was enough");

    // The replacement goes on reading what comes next, and nothing of before comes again.
    let after = CorrelationId::generate();
    send_reply(&producer, &topics, 1, &after).await;
    let received = next_within(&mut listener, "the replacement reads new replies").await;
    assert_eq!(received.correlation_id, Some(after));
}

/// A reply batch no client can decode (here a gzip batch damaged on its way from the broker, see
/// `test_support::relay`) makes librdkafka fetch it again for ever; the watchdog skips that one
/// reply, counts it, and the replies behind it on the partition are read.
#[tokio::test]
async fn an_undecodable_reply_is_skipped_and_counted_and_the_partition_moves_on() {
    let relay = test_support::relay::corrupting_relay();
    let (kafka, topics) = created_topics().await;
    let mut gzip = kafka.clone();
    gzip.producer
        .insert("compression.type".into(), "gzip".into());
    let compressing = Requester::new(&gzip, topics.clone(), Duration::from_secs(10)).unwrap();
    let plain = Requester::new(&kafka, topics.clone(), Duration::from_secs(10)).unwrap();
    let counters = ListenerCounters::default();
    let mut listener =
        ReplyListener::start(&relay.kafka(), topics.clone(), "requester", StartAt::End)
            .await
            .unwrap()
            .count_in(counters.clone());

    let lost = CorrelationId::generate();
    let mut undecodable = reply(&topics, 0, &lost);
    // Repetitive and long enough that librdkafka really compresses it.
    undecodable.payload = format!("{{\"padding\":\"{}\"}}", "x".repeat(4096)).into_bytes();
    compressing.send_outgoing(&undecodable).await.unwrap();
    let behind = CorrelationId::generate();
    send_reply(&plain, &topics, 0, &behind).await;

    let received = tokio::time::timeout(SKIP_BOUND, listener.next())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the partition did not move on: {} recoveries, {} skipped, {} gzip streams damaged",
                listener.recoveries(),
                counters.skipped.get(),
                relay.damaged()
            )
        });
    assert_eq!(received.correlation_id, Some(behind), "the reply behind it");
    assert!(relay.damaged() >= 1, "the relay damaged the gzip batch");
    assert_eq!(counters.skipped.get(), 1, "one reply skipped, and counted");
}
