//! Two replicas of a worker (the library's stand-in service) sharing one consumer group, against
//! a real broker.

mod common;

use std::collections::HashSet;
use std::time::Duration;
use test_support::REPLY_TIMEOUT;

const REQUESTS: usize = 100;

/// Two workers in one consumer group split the request partitions between them: 100
/// concurrent requests each get exactly one correct reply (right customer, each from a request
/// of its own: distinct partition and offset), and the reply topic holds no duplicate for any of them. "No duplicate" is checked
/// after one more round trip on every request partition, which cannot complete before either
/// replica has finished everything queued ahead of it.
#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_answer_each_request_exactly_once() {
    let topics = test_support::unique_topics();
    common::create_topics(&topics).await;
    let spawn_replica =
        || common::start_worker(&topics, common::worker_config(&topics, "same-group"));
    let replicas = [spawn_replica(), spawn_replica()];
    // Requests sent while the second replica joins could be answered twice by design
    // (at-least-once); wait for the group to settle so any duplicate is a real bug.
    test_support::groups::wait_for_stable_group(
        &test_support::group_id(&topics, "same-group"),
        2,
        test_support::GROUP_TIMEOUT,
    )
    .await;
    let client = common::connect(&topics).await;

    let customers: Vec<String> = (0..REQUESTS).map(|i| format!("customer {i}")).collect();
    let replies = futures::future::join_all(customers.iter().map(|customer| async {
        let request = common::echo_request(customer);
        client.call((), &request, REPLY_TIMEOUT).await
    }))
    .await;
    let mut ids = HashSet::new();
    let mut positions = HashSet::new();
    for (customer, reply) in customers.iter().zip(replies) {
        let reply = reply.unwrap_or_else(|error| panic!("{customer}: {error}"));
        let echo = common::expect_echo(&reply, customer);
        assert!(
            positions.insert((echo.partition, echo.offset)),
            "request {}/{} answered twice",
            echo.partition,
            echo.offset
        );
        ids.insert(reply.correlation_id.expect("replies are correlated").key());
    }
    assert_eq!(ids.len(), REQUESTS);

    // One more round trip per request partition: behind everything sent so far.
    for partition in 0..topics.partitions {
        let customer = format!("last on partition {partition}");
        let (id, reply) = common::send_to_partition(&client, &topics, partition, &customer).await;
        let reply = client.await_reply(&id, reply, REPLY_TIMEOUT).await.unwrap();
        common::expect_echo(&reply, &customer);
        ids.insert(id.key());
    }

    let reply_topic = common::route(&topics).reply_topic;
    let in_topic = test_support::groups::message_count(&reply_topic, topics.partitions);
    let mut reader = test_support::TopicReader::new(&reply_topic, topics.partitions);
    let read = reader
        .read_until("every message in the reply topic", REPLY_TIMEOUT, |seen| {
            seen.len() >= in_topic
        })
        .await;
    let counts = test_support::count_by_correlation(read);
    for id in &ids {
        assert_eq!(counts.get(id), Some(&1), "replies for {id}");
    }
    assert_eq!(
        counts.len(),
        ids.len(),
        "replies nobody asked for: {counts:?}"
    );
    assert_eq!(
        read.len(),
        ids.len(),
        "every reply read is for a distinct request"
    );

    for replica in replicas {
        replica.stop().await;
    }
}

/// Well within the workers' 6 s session, after which the group drops a member that did not leave.
const LEFT_WITHIN: Duration = Duration::from_secs(3);

/// A replica stopped gracefully leaves its group itself, at once, so its partitions move on
/// without waiting for its session to run out (which a static member, `group.instance.id`, would
/// not do; see the README's reliability section on why workers are not static members).
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_stopped_gracefully_leaves_the_group_at_once() {
    let topics = test_support::unique_topics();
    common::create_topics(&topics).await;
    let spawn_replica = || common::start_worker(&topics, common::worker_config(&topics, "leaving"));
    let (leaving, staying) = (spawn_replica(), spawn_replica());
    let group = test_support::group_id(&topics, "leaving");
    test_support::groups::wait_for_stable_group(&group, 2, test_support::GROUP_TIMEOUT).await;

    leaving.stop().await;
    test_support::groups::wait_for_members(&group, 1, LEFT_WITHIN).await;
    let members =
        test_support::groups::wait_for_stable_group(&group, 1, test_support::GROUP_TIMEOUT).await;
    assert_eq!(
        members.partitions_of(|_| true),
        (0..topics.partitions).collect(),
        "the staying replica holds every partition"
    );
    staying.stop().await;
}
