//! What a requester can learn of the workers from Kafka, against a real broker: the stamp a
//! worker puts on each reply (who handled it, when, how long) and the group as its coordinator
//! describes it, read without joining (`request_reply::groups`), agree with each other and with
//! what the test did.

mod common;

use request_reply::groups::GroupObserver;
use request_reply::stamp::WorkerStamp;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use test_support::REPLY_TIMEOUT;

const LOOKUP: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread")]
async fn the_stamp_names_the_member_that_answered_and_the_group_commits_past_the_request() {
    let topics = test_support::unique_topics();
    common::create_topics(&topics).await;
    let group = test_support::group_id(&topics, "viewed");
    let worker = common::start_worker(&topics, common::worker_config(&topics, "viewed"));
    test_support::groups::wait_for_stable_group(&group, 1, test_support::GROUP_TIMEOUT).await;
    let client = common::connect(&topics).await;

    let before_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let (id, reply) = common::send_to_partition(&client, &topics, 1, "stamped").await;
    let reply = client.await_reply(&id, reply, REPLY_TIMEOUT).await.unwrap();
    let echo = common::expect_echo(&reply, "stamped");
    let stamp = WorkerStamp::read(&reply.headers).expect("the worker stamps its replies");
    assert_eq!(stamp.worker.group, group);
    assert!(
        i128::from(stamp.received_at_ms) >= i128::try_from(before_ms).unwrap() - 1,
        "received at {} ms, sent after {before_ms} ms",
        stamp.received_at_ms
    );
    assert!(stamp.handled < REPLY_TIMEOUT && stamp.queued < REPLY_TIMEOUT);

    let request_topic = common::route(&topics).request_topic;
    let observer = GroupObserver::new(&test_support::kafka()).unwrap();
    let described = tokio::task::block_in_place(|| observer.describe(&group, LOOKUP)).unwrap();
    assert!(described.is_stable(), "{described:?}");
    let [member] = <[_; 1]>::try_from(described.members.clone()).expect("one member");
    assert_eq!(
        member.client_id, stamp.worker.client_id,
        "the stamp names the member"
    );
    assert_eq!(
        described.assigned_partitions(&request_topic),
        (0..topics.partitions).collect(),
        "the only member has every partition"
    );
    let count = tokio::task::block_in_place(|| observer.partition_count(&request_topic, LOOKUP));
    assert_eq!(count.unwrap(), usize::try_from(topics.partitions).unwrap());
    let ends = tokio::task::block_in_place(|| observer.partitions(&request_topic, LOOKUP)).unwrap();
    let partition_one = ends.iter().find(|ends| ends.partition == 1).unwrap();
    assert_eq!(
        partition_one.high,
        echo.offset + 1,
        "the request is the last of its partition"
    );
    assert!(partition_one.leader.is_some());

    // The worker commits about every second: wait until the group has passed the request.
    test_support::wait_for("the request's offset committed", LOOKUP, || {
        let committed =
            tokio::task::block_in_place(|| observer.committed(&group, &request_topic, [1], LOOKUP));
        std::future::ready(
            committed
                .ok()
                .and_then(|offsets| offsets.get(&1).copied().flatten())
                .filter(|offset| *offset == echo.offset + 1),
        )
    })
    .await;

    // A group nobody joined reads as dead with no members, not as an error.
    let unknown =
        tokio::task::block_in_place(|| observer.describe("no-such-group-here", LOOKUP)).unwrap();
    assert!(unknown.members.is_empty() && !unknown.is_stable());
    worker.stop().await;
}
