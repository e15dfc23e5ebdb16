//! Consumer-group state and offsets as the broker sees them, read without joining the group.

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::groups::GroupInfo;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// A client for reading the state and offsets of `group`; it joins no group.
pub fn observer(group: &str) -> BaseConsumer {
    let mut config = crate::kafka().consumer_config();
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false");
    config.create().expect("create an observing consumer")
}

/// Who is in a consumer group: member id to client id and assigned (topic, partition)s.
#[derive(Debug, PartialEq, Eq)]
pub struct GroupMembers(pub BTreeMap<String, (String, Vec<(String, i32)>)>);

impl GroupMembers {
    fn of(info: &GroupInfo) -> Self {
        GroupMembers(
            info.members()
                .iter()
                .map(|member| {
                    let assigned = member
                        .assignment()
                        .and_then(request_reply::groups::parse_assignment)
                        .unwrap_or_default();
                    (
                        member.id().to_owned(),
                        (member.client_id().to_owned(), assigned),
                    )
                })
                .collect(),
        )
    }

    /// The partition numbers of the members whose client id satisfies `which`.
    pub fn partitions_of(&self, which: impl Fn(&str) -> bool) -> BTreeSet<i32> {
        self.0
            .values()
            .filter(|(client_id, _)| which(client_id))
            .flat_map(|(_, assigned)| assigned.iter().map(|(_, partition)| *partition))
            .collect()
    }
}

/// Waits up to `timeout` until consumer group `group` is stable with exactly `members` members
/// (so no rebalance, and no redelivery, happens while the test runs), and returns them.
pub async fn wait_for_stable_group(group: &str, members: usize, timeout: Duration) -> GroupMembers {
    wait_for_group(group, members, timeout, true).await
}

/// Waits up to `timeout` until consumer group `group` has exactly `members` members, in any
/// state (a member that left is gone at once, before the rebalance it starts has settled).
pub async fn wait_for_members(group: &str, members: usize, timeout: Duration) -> GroupMembers {
    wait_for_group(group, members, timeout, false).await
}

async fn wait_for_group(
    group: &str,
    members: usize,
    timeout: Duration,
    stable: bool,
) -> GroupMembers {
    let observer = observer(group);
    let what = if stable { "stable with" } else { "with" };
    crate::wait_for(
        &format!("group {group} {what} {members} members"),
        timeout,
        || {
            let list = tokio::task::block_in_place(|| {
                observer.fetch_group_list(Some(group), Duration::from_secs(5))
            });
            let found = list.ok().and_then(|list| {
                list.groups()
                    .iter()
                    .find(|info| {
                        (!stable || info.state() == "Stable") && info.members().len() == members
                    })
                    .map(GroupMembers::of)
            });
            std::future::ready(found)
        },
    )
    .await
}

/// The sum of the offsets `group` has committed on `topic` (no commit counts as 0): on a fresh
/// topic, how many of its messages the group has finished with.
pub fn committed_total(group: &str, topic: &str, partitions: i32) -> i64 {
    committed_offsets(group, topic, partitions).iter().sum()
}

/// The offset `group` has committed on each of the first `partitions` partitions of `topic`
/// (no commit counts as 0).
pub fn committed_offsets(group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let mut wanted = TopicPartitionList::new();
    for partition in 0..partitions {
        wanted.add_partition(topic, partition);
    }
    let committed = observer(group)
        .committed_offsets(wanted, Duration::from_secs(10))
        .expect("read committed offsets");
    let mut offsets = vec![0; usize::try_from(partitions).unwrap_or_default()];
    for element in committed.elements() {
        if let (Offset::Offset(offset), Ok(index)) =
            (element.offset(), usize::try_from(element.partition()))
        {
            if let Some(slot) = offsets.get_mut(index) {
                *slot = offset;
            }
        }
    }
    offsets
}

/// How many messages `topic` holds now (no transactions here, so offsets are contiguous).
pub fn message_count(topic: &str, partitions: i32) -> usize {
    let observer = observer("test-support-observer");
    (0..partitions)
        .map(|partition| {
            let (low, high) = observer
                .fetch_watermarks(topic, partition, Duration::from_secs(10))
                .expect("read watermarks");
            usize::try_from(high - low).expect("watermarks are ordered")
        })
        .sum()
}
