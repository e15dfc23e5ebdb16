//! A request topic that gains partitions while its worker runs, against a real broker.

mod common;

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
use rdkafka::client::DefaultClientContext;
use std::time::Duration;
use test_support::REPLY_TIMEOUT;

/// A partition added to the request topic is answered within seconds. librdkafka's consumer
/// notices it only at its next metadata refresh, five minutes by default, and until then the
/// group, settled, leaves it to nobody; the worker sees that from outside and rejoins, which
/// makes the group's leader assign it. The same path frees a group whose leader assigned from
/// metadata that lacked a topic just created (the fault suite's leader-kill scenario).
#[tokio::test(flavor = "multi_thread")]
async fn a_partition_added_while_the_worker_runs_is_answered() {
    let topics = test_support::unique_topics();
    common::create_topics(&topics).await;
    let group = test_support::group_id(&topics, "grows");
    let worker = common::start_worker(&topics, common::worker_config(&topics, "grows"));
    test_support::groups::wait_for_stable_group(&group, 1, test_support::GROUP_TIMEOUT).await;

    let request_topic = common::route(&topics).request_topic;
    let added = topics.partitions;
    let admin: AdminClient<DefaultClientContext> = test_support::kafka()
        .common_config()
        .create()
        .expect("admin client");
    let grown = usize::try_from(added + 1).expect("a partition count");
    let results = admin
        .create_partitions(
            &[NewPartitions::new(&request_topic, grown)],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("add a partition");
    for result in results {
        result.expect("the partition is added");
    }

    // A requester made now knows the new partition from its first metadata.
    let client = common::connect(&topics).await;
    let (id, reply) =
        common::send_to_partition(&client, &topics, added, "on the new partition").await;
    let reply = client
        .await_reply(&id, reply, REPLY_TIMEOUT)
        .await
        .unwrap_or_else(|error| {
            panic!("no reply from partition {added}, added while the worker ran: {error}")
        });
    let echo = common::expect_echo(&reply, "on the new partition");
    assert_eq!(echo.partition, added, "answered from the new partition");
    let members = test_support::groups::wait_for_stable_group(&group, 1, REPLY_TIMEOUT).await;
    assert!(
        members.partitions_of(|_| true).contains(&added),
        "the worker owns the new partition: {members:?}"
    );
    worker.stop().await;
}
