//! Consumer groups and topics as the broker sees them, read without joining a group: who is in a
//! responders' group, which partitions each member has, what the group has committed, and where
//! each partition ends. A requester reads these to tell "no responder" from "slow responder"; a
//! view of the running system shows them.

use crate::config::KafkaSettings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::groups::GroupInfo;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// One member of a consumer group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMember {
    /// The id the coordinator gave it.
    pub member_id: String,
    /// Its `client.id`.
    pub client_id: String,
    /// Where it connects from, as the broker sees it.
    pub host: String,
    /// The (topic, partition)s it is assigned; empty while the group rebalances.
    pub assigned: Vec<(String, i32)>,
}

/// A consumer group, as its coordinator describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupState {
    /// The group id.
    pub group: String,
    /// The coordinator's word for it: `Stable`, `PreparingRebalance`, `CompletingRebalance`,
    /// `Empty` (no members) or `Dead`.
    pub state: String,
    /// Its members.
    pub members: Vec<GroupMember>,
}

impl GroupState {
    fn of(info: &GroupInfo) -> Self {
        GroupState {
            group: info.name().to_owned(),
            state: info.state().to_owned(),
            members: info
                .members()
                .iter()
                .map(|member| GroupMember {
                    member_id: member.id().to_owned(),
                    client_id: member.client_id().to_owned(),
                    host: member.client_host().to_owned(),
                    assigned: member
                        .assignment()
                        .and_then(parse_assignment)
                        .unwrap_or_default(),
                })
                .collect(),
        }
    }

    /// No rebalance going on, and members to do the work.
    pub fn is_stable(&self) -> bool {
        self.state == "Stable" && !self.members.is_empty()
    }

    /// The partitions of `topic` some member is assigned.
    pub fn assigned_partitions(&self, topic: &str) -> BTreeSet<i32> {
        self.members
            .iter()
            .flat_map(|member| &member.assigned)
            .filter(|(assigned_topic, _)| assigned_topic == topic)
            .map(|(_, partition)| *partition)
            .collect()
    }
}

/// Reads groups and offsets through one client that joins no group.
pub struct GroupObserver {
    client: BaseConsumer,
    kafka: KafkaSettings,
}

impl std::fmt::Debug for GroupObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupObserver").finish_non_exhaustive()
    }
}

/// One partition of a topic: its leader and where it begins and ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionEnds {
    /// The partition number.
    pub partition: i32,
    /// The broker id of its leader, `None` while it has none.
    pub leader: Option<i32>,
    /// The brokers holding a copy.
    pub replicas: Vec<i32>,
    /// The replicas caught up with the leader.
    pub in_sync: Vec<i32>,
    /// The first offset still in the log.
    pub low: i64,
    /// The offset the next message will get (the end offset).
    pub high: i64,
}

impl GroupObserver {
    /// A client for `kafka`'s cluster. Blocking calls: run them off the async runtime.
    pub fn new(kafka: &KafkaSettings) -> KafkaResult<Self> {
        let mut config = kafka.common_config();
        config.set("enable.auto.commit", "false");
        Ok(GroupObserver {
            client: config.create()?,
            kafka: kafka.clone(),
        })
    }

    /// Group `group` as its coordinator describes it (an unknown group reads as `Dead` with no
    /// members, as Kafka reports it).
    pub fn describe(&self, group: &str, timeout: Duration) -> KafkaResult<GroupState> {
        let list = self.client.fetch_group_list(Some(group), timeout)?;
        Ok(list
            .groups()
            .iter()
            .find(|info| info.name() == group)
            .map_or_else(
                || GroupState {
                    group: group.to_owned(),
                    state: "Dead".into(),
                    members: Vec::new(),
                },
                GroupState::of,
            ))
    }

    /// How many partitions `topic` has: one metadata request, no watermarks.
    pub fn partition_count(&self, topic: &str, timeout: Duration) -> KafkaResult<usize> {
        let metadata = self.client.fetch_metadata(Some(topic), timeout)?;
        let mut count = 0;
        for topic_metadata in metadata.topics() {
            if let Some(error) = topic_metadata.error() {
                return Err(KafkaError::MetadataFetch(error.into()));
            }
            count += topic_metadata.partitions().len();
        }
        Ok(count)
    }

    /// Each partition of `topic`, with its leader, replicas and watermarks.
    pub fn partitions(&self, topic: &str, timeout: Duration) -> KafkaResult<Vec<PartitionEnds>> {
        let metadata = self.client.fetch_metadata(Some(topic), timeout)?;
        let mut partitions = Vec::new();
        for topic_metadata in metadata.topics() {
            if let Some(error) = topic_metadata.error() {
                return Err(KafkaError::MetadataFetch(error.into()));
            }
            for partition in topic_metadata.partitions() {
                let (low, high) = self
                    .client
                    .fetch_watermarks(topic, partition.id(), timeout)?;
                partitions.push(PartitionEnds {
                    partition: partition.id(),
                    leader: (partition.leader() >= 0).then_some(partition.leader()),
                    replicas: partition.replicas().to_vec(),
                    in_sync: partition.isr().to_vec(),
                    low,
                    high,
                });
            }
        }
        partitions.sort_by_key(|ends| ends.partition);
        Ok(partitions)
    }

    /// The offsets `group` has committed on `partitions` of `topic` (`None`: nothing committed).
    /// Asking needs a client with the group's id, which joins nothing.
    pub fn committed(
        &self,
        group: &str,
        topic: &str,
        partitions: impl IntoIterator<Item = i32>,
        timeout: Duration,
    ) -> KafkaResult<BTreeMap<i32, Option<i64>>> {
        let mut config = self.kafka.common_config();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false");
        let asker: BaseConsumer = config.create()?;
        let mut wanted = TopicPartitionList::new();
        for partition in partitions {
            wanted.add_partition(topic, partition);
        }
        let committed = asker.committed_offsets(wanted, timeout)?;
        Ok(committed
            .elements()
            .iter()
            .map(|element| {
                let offset = match element.offset() {
                    Offset::Offset(offset) => Some(offset),
                    _ => None,
                };
                (element.partition(), offset)
            })
            .collect())
    }
}

/// Reads a member assignment of the classic consumer protocol: version (i16), then topics
/// (i32 count; each a string with an i16 length, and i32 partitions with an i32 count), then user
/// data, which is ignored. `None` for anything that does not parse (the assignment of a group of
/// another protocol, or damaged bytes).
pub fn parse_assignment(bytes: &[u8]) -> Option<Vec<(String, i32)>> {
    fn take<'a>(bytes: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
        let (head, rest) = bytes.split_at_checked(len)?;
        *bytes = rest;
        Some(head)
    }
    fn int(bytes: &mut &[u8], len: usize) -> Option<i64> {
        let raw = take(bytes, len)?;
        Some(match len {
            2 => i16::from_be_bytes(raw.try_into().ok()?).into(),
            _ => i32::from_be_bytes(raw.try_into().ok()?).into(),
        })
    }
    let mut bytes = bytes;
    int(&mut bytes, 2)?;
    let mut assigned = Vec::new();
    for _ in 0..int(&mut bytes, 4)? {
        let len = usize::try_from(int(&mut bytes, 2)?).ok()?;
        let topic = String::from_utf8(take(&mut bytes, len)?.to_vec()).ok()?;
        for _ in 0..int(&mut bytes, 4)? {
            assigned.push((topic.clone(), i32::try_from(int(&mut bytes, 4)?).ok()?));
        }
    }
    Some(assigned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut bytes = 0_i16.to_be_bytes().to_vec();
        bytes.extend(i32::try_from(topics.len()).unwrap().to_be_bytes());
        for (topic, partitions) in topics {
            bytes.extend(i16::try_from(topic.len()).unwrap().to_be_bytes());
            bytes.extend(topic.as_bytes());
            bytes.extend(i32::try_from(partitions.len()).unwrap().to_be_bytes());
            for partition in *partitions {
                bytes.extend(partition.to_be_bytes());
            }
        }
        bytes.extend(0_i32.to_be_bytes());
        bytes
    }

    #[test]
    fn assignments_parse_and_damaged_ones_do_not() {
        let bytes = assignment(&[("a", &[0, 2]), ("b", &[1])]);
        assert_eq!(
            parse_assignment(&bytes),
            Some(vec![("a".into(), 0), ("a".into(), 2), ("b".into(), 1)])
        );
        for cut in 1..bytes.len() - 4 {
            assert_eq!(parse_assignment(&bytes[..cut]), None, "cut at {cut}");
        }
        // A count far beyond the bytes ends at the bytes, not in a huge allocation.
        let mut huge = 0_i16.to_be_bytes().to_vec();
        huge.extend(i32::MAX.to_be_bytes());
        assert_eq!(parse_assignment(&huge), None);
    }

    #[test]
    fn a_group_is_stable_only_with_members_and_knows_its_partitions() {
        let member = |partitions: &[i32]| GroupMember {
            member_id: "m".into(),
            client_id: "c".into(),
            host: "/127.0.0.1".into(),
            assigned: partitions.iter().map(|p| ("t".to_owned(), *p)).collect(),
        };
        let group = GroupState {
            group: "g".into(),
            state: "Stable".into(),
            members: vec![member(&[0, 2]), member(&[1])],
        };
        assert!(group.is_stable());
        assert_eq!(group.assigned_partitions("t"), BTreeSet::from([0, 1, 2]));
        assert!(group.assigned_partitions("other").is_empty());
        let empty = GroupState {
            members: Vec::new(),
            ..group.clone()
        };
        assert!(!empty.is_stable());
        let rebalancing = GroupState {
            state: "PreparingRebalance".into(),
            ..group
        };
        assert!(!rebalancing.is_stable());
    }
}
