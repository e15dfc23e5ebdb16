//! Reading messages back by position against a real broker: the last few of every partition of
//! a topic (what the dashboard's dead-letter page shows), what a topic without them gives, and
//! a restarting dashboard's history of a reply topic that transactions keep writing to.

mod common;

use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use request_reply::history::{LogMessage, RecordReader, read_recent};
use request_reply::kafka::Outgoing;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

const READ_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread")]
async fn the_last_messages_of_each_partition_are_read_oldest_first() {
    let topics = test_support::unique_topics();
    common::create_topics(&topics).await;
    let topic = common::route(&topics).dead_letter_topic;
    let reader = RecordReader::new(&test_support::kafka(), "read-back-test").unwrap();

    let empty = reader
        .read_last(&topic, 3, READ_TIMEOUT, |message| message.offset())
        .unwrap();
    assert!(empty.messages.is_empty() && empty.complete);

    let client = common::connect(&topics).await;
    for number in 0..5 {
        let mut message = Outgoing::new(&topic, format!("letter {number}"));
        message.partition = Some(0);
        client.requester().send_outgoing(&message).await.unwrap();
    }
    let mut last = Outgoing::new(&topic, "the only one on partition 1");
    last.partition = Some(1);
    client.requester().send_outgoing(&last).await.unwrap();

    let read = |per_partition| {
        reader
            .read_last(&topic, per_partition, READ_TIMEOUT, |message| {
                let text = String::from_utf8_lossy(message.payload().unwrap_or_default());
                (message.partition(), message.offset(), text.into_owned())
            })
            .unwrap()
    };
    let three = read(3);
    assert!(three.complete);
    let mut positions: Vec<_> = three.messages.clone();
    positions.sort();
    assert_eq!(
        positions,
        [
            (0, 2, "letter 2".to_owned()),
            (0, 3, "letter 3".to_owned()),
            (0, 4, "letter 4".to_owned()),
            (1, 0, "the only one on partition 1".to_owned()),
        ]
    );
    let partition_0: Vec<i64> = three
        .messages
        .iter()
        .filter(|(partition, ..)| *partition == 0)
        .map(|(_, offset, _)| *offset)
        .collect();
    assert_eq!(partition_0, [2, 3, 4], "each partition oldest first");
    assert_eq!(read(100).messages.len(), 6, "fewer than asked: all of them");
    // Topics are created with LogAppendTime: the broker, not the producer, stamps each record.
    let stamps = reader
        .read_last(&topic, 100, READ_TIMEOUT, |message| message.timestamp())
        .unwrap();
    assert!(
        stamps
            .messages
            .iter()
            .all(|stamp| matches!(stamp, rdkafka::Timestamp::LogAppendTime(_))),
        "record timestamps set by the broker: {:?}",
        stamps.messages
    );

    assert!(
        reader
            .read_last(&format!("{topic}.missing"), 3, READ_TIMEOUT, |_| ())
            .is_err(),
        "a topic that does not exist is an error"
    );
}

/// A topic read the moment it is created (as the dashboard's dead-letter page may read a worker's
/// new dead-letter topic) reads as empty, not as an error. Whether the read lands in the moment
/// before the broker knows the topic, or before its partitions have leaders, depends on the
/// broker's speed: a busy CI machine hit both (UnknownTopicOrPartition, NotLeaderForPartition),
/// a quiet one with a single broker does not.
#[tokio::test(flavor = "multi_thread")]
async fn a_topic_created_a_moment_ago_reads_as_empty() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let topic = format!("{}just-created", test_support::unique_topics().prefix);
    let admin: AdminClient<DefaultClientContext> =
        test_support::kafka().common_config().create().unwrap();
    let created = admin
        .create_topics(
            &[NewTopic::new(&topic, 3, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let reader = RecordReader::new(&test_support::kafka(), "read-back-test").unwrap();
    let read = tokio::task::block_in_place(|| {
        reader.read_last(&topic, 3, READ_TIMEOUT, |message| message.offset())
    })
    .unwrap();
    assert!(read.messages.is_empty() && read.complete);
}

/// A dashboard restarting while a transactional worker keeps answering: its history reads each
/// reply partition to the end it looked up, past the commit marker there (which no message
/// announces), well before it would give up (a minute), and hands over nothing past those ends,
/// which is where its reply listener starts: a reply handed over by both would count twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_history_read_stops_at_its_ends_while_transactions_keep_coming() {
    const GIVE_UP_LIMIT: Duration = Duration::from_secs(30);
    let topics = test_support::unique_topics();
    common::create_topics(&topics).await;
    let reply_topic = common::route(&topics).reply_topic;
    let stop = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(AtomicUsize::new(0));
    let writer = tokio::task::spawn_blocking({
        let (stop, committed) = (Arc::clone(&stop), Arc::clone(&committed));
        let (topic, partitions) = (reply_topic.clone(), topics.partitions);
        move || write_in_transactions(&topic, partitions, &stop, &committed)
    });
    test_support::wait_for("a first transaction", READ_TIMEOUT, || {
        std::future::ready((committed.load(Ordering::Relaxed) > 0).then_some(()))
    })
    .await;

    let mut last_handed: HashMap<i32, i64> = HashMap::new();
    let ends = tokio::time::timeout(
        GIVE_UP_LIMIT,
        read_recent(
            &test_support::kafka(),
            &common::routes(&topics),
            "history-while-writing",
            10_000,
            |message| {
                if let LogMessage::Reply(reply, _) = message {
                    let last = last_handed.entry(reply.partition).or_insert(-1);
                    *last = (*last).max(reply.offset);
                }
            },
        ),
    )
    .await
    .expect("the history read did not reach its ends")
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();

    assert!(!last_handed.is_empty(), "no reply read");
    for (partition, last) in &last_handed {
        let end = ends[&(reply_topic.clone(), *partition)];
        assert!(
            *last < end,
            "partition {partition}: offset {last} handed over, past the end {end} the listener starts at"
        );
    }
}

/// Writes a transaction of one message to each partition of `topic` after another until `stop`,
/// counting the committed ones.
fn write_in_transactions(topic: &str, partitions: i32, stop: &AtomicBool, committed: &AtomicUsize) {
    let mut config = test_support::kafka().producer_config();
    config.set(
        "transactional.id",
        format!("{topic}-writer-{}", uuid::Uuid::new_v4()),
    );
    let producer: ThreadedProducer<DefaultProducerContext> = config.create().unwrap();
    producer.init_transactions(READ_TIMEOUT).unwrap();
    while !stop.load(Ordering::Relaxed) {
        producer.begin_transaction().unwrap();
        for partition in 0..partitions {
            let payload = format!("reply {}", committed.load(Ordering::Relaxed));
            producer
                .send(
                    BaseRecord::<(), str>::to(topic)
                        .partition(partition)
                        .payload(&payload),
                )
                .map_err(|(error, _)| error)
                .unwrap();
        }
        producer.commit_transaction(READ_TIMEOUT).unwrap();
        committed.fetch_add(1, Ordering::Relaxed);
    }
}
