//! Partitions of the request topic that no member of a settled group owns.
//!
//! The group's leader assigns the partitions it finds in the group coordinator's metadata. A
//! topic created a moment earlier may not have reached that broker yet (brokers learn of new
//! topics from the controller shortly after it accepts them), and then the leader assigns none
//! of its partitions. librdkafka asks again only when its own metadata shows the topic change,
//! which it never does, since the other broker it asked had the topic all along: the group
//! looks settled and answers nothing, for good. The fault suite met this in one leader-kill run
//! in eight (both replicas of a worker assigned no partition) and lost every request of that
//! kind. Partitions added to a topic wait the same way, for librdkafka's metadata refresh, five
//! minutes by default. A look at the group from outside sees both, and the worker then replaces
//! its consumer: its joining makes the leader assign the partitions again.

use crate::groups::{GroupObserver, GroupState};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long a settled group must leave partitions to nobody before the worker steps in: more
/// than a look or two, so that a group which settles as partitions are being added gets its
/// own chance first.
pub(crate) const STRANDED_AFTER: Duration = Duration::from_secs(3);

/// The longest wait between two replacements for partitions that stay stranded: each one
/// doubles the wait, so a group this watch misjudges is rebalanced a few times, not every few
/// seconds.
const STRANDED_AFTER_AT_MOST: Duration = Duration::from_secs(60);

/// Bound on each look at the group and its topic.
const LOOK_TIMEOUT: Duration = Duration::from_secs(2);

/// The partitions of `topic`, which has `partitions`, that no member of `group` is assigned;
/// `None` while the group is not settled (a rebalance decides afresh), where nothing is judged.
pub(crate) fn unowned(group: &GroupState, topic: &str, partitions: usize) -> Option<BTreeSet<i32>> {
    if !group.is_stable() {
        return None;
    }
    let owned = group.assigned_partitions(topic);
    let count = i32::try_from(partitions).unwrap_or(i32::MAX);
    Some(
        (0..count)
            .filter(|partition| !owned.contains(partition))
            .collect(),
    )
}

/// Since when the group has left partitions to nobody, and how long that may last.
#[derive(Debug, Clone)]
pub(crate) struct OwnershipWatch {
    after: Duration,
    /// `after`, doubled by every report since the group was last seen owning everything.
    wait: Duration,
    stranded_since: Option<Instant>,
}

impl OwnershipWatch {
    pub(crate) fn new(after: Duration) -> Self {
        OwnershipWatch {
            after,
            wait: after,
            stranded_since: None,
        }
    }

    /// Records a look at `now` (`unowned`: see [`unowned`]; `None` also for a look that got no
    /// answer) and says whether partitions have been stranded for the wait, [`STRANDED_AFTER`]
    /// at first. Once it says so, the clock starts again with twice the wait (up to
    /// [`STRANDED_AFTER_AT_MOST`]), until a look finds every partition owned.
    pub(crate) fn observe(&mut self, unowned: Option<&BTreeSet<i32>>, now: Instant) -> bool {
        match unowned {
            Some(partitions) if !partitions.is_empty() => {
                let since = *self.stranded_since.get_or_insert(now);
                if now.saturating_duration_since(since) < self.wait {
                    return false;
                }
                self.stranded_since = None;
                self.wait = (self.wait * 2).min(STRANDED_AFTER_AT_MOST);
                true
            }
            Some(_) => {
                self.stranded_since = None;
                self.wait = self.after;
                false
            }
            None => {
                self.stranded_since = None;
                false
            }
        }
    }
}

/// Looks at `group` and `topic` every `every` (blocking calls, on a thread of their own) and
/// sends the partitions that have been stranded for [`STRANDED_AFTER`]. Ends when the receiver
/// is dropped.
pub(crate) fn watch(
    observer: GroupObserver,
    group: String,
    topic: String,
    every: Duration,
) -> mpsc::Receiver<BTreeSet<i32>> {
    let (stranded, receiver) = mpsc::channel(1);
    let observer = std::sync::Arc::new(observer);
    tokio::spawn(async move {
        let mut watch = OwnershipWatch::new(STRANDED_AFTER);
        loop {
            tokio::select! {
                () = stranded.closed() => return,
                () = tokio::time::sleep(every) => {}
            }
            let look = tokio::task::spawn_blocking({
                let observer = std::sync::Arc::clone(&observer);
                let (group, topic) = (group.clone(), topic.clone());
                move || look(&observer, &group, &topic)
            })
            .await
            .ok()
            .flatten();
            let act = watch.observe(look.as_ref(), Instant::now());
            if let Some(partitions) = look.filter(|_| act) {
                if stranded.send(partitions).await.is_err() {
                    return;
                }
            }
        }
    });
    receiver
}

/// One look: the group as its coordinator describes it, and the topic's partition count.
fn look(observer: &GroupObserver, group: &str, topic: &str) -> Option<BTreeSet<i32>> {
    let state = observer
        .describe(group, LOOK_TIMEOUT)
        .map_err(|error| tracing::debug!(%error, "group look-up failed"))
        .ok()?;
    let partitions = observer
        .partition_count(topic, LOOK_TIMEOUT)
        .map_err(|error| tracing::debug!(%error, "partition count look-up failed"))
        .ok()?;
    unowned(&state, topic, partitions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::groups::GroupMember;

    const TOPIC: &str = "requests";

    fn group(state: &str, assignments: &[&[i32]]) -> GroupState {
        GroupState {
            group: "workers".into(),
            state: state.into(),
            members: assignments
                .iter()
                .enumerate()
                .map(|(index, partitions)| GroupMember {
                    member_id: format!("member-{index}"),
                    client_id: format!("client-{index}"),
                    host: "/127.0.0.1".into(),
                    assigned: partitions
                        .iter()
                        .map(|partition| (TOPIC.to_owned(), *partition))
                        .collect(),
                })
                .collect(),
        }
    }

    fn set(partitions: &[i32]) -> BTreeSet<i32> {
        partitions.iter().copied().collect()
    }

    #[test]
    fn a_group_that_owns_every_partition_strands_none() {
        assert_eq!(
            unowned(&group("Stable", &[&[0, 1, 2], &[3, 4, 5]]), TOPIC, 6),
            Some(set(&[]))
        );
        // More replicas than partitions: some own nothing, which is fine.
        assert_eq!(
            unowned(&group("Stable", &[&[0], &[1], &[]]), TOPIC, 2),
            Some(set(&[]))
        );
    }

    /// What the fault suite met: the leader assigned from metadata that lacked the topic.
    #[test]
    fn a_settled_group_assigned_nothing_strands_every_partition() {
        assert_eq!(
            unowned(&group("Stable", &[&[], &[]]), TOPIC, 6),
            Some(set(&[0, 1, 2, 3, 4, 5]))
        );
        // Partitions added to the topic after the last assignment.
        assert_eq!(
            unowned(&group("Stable", &[&[0, 1], &[2]]), TOPIC, 4),
            Some(set(&[3]))
        );
    }

    #[test]
    fn nothing_is_judged_while_the_group_rebalances_or_has_no_members() {
        for state in ["PreparingRebalance", "CompletingRebalance", "Empty", "Dead"] {
            assert_eq!(
                unowned(&group(state, &[&[], &[]]), TOPIC, 6),
                None,
                "{state}"
            );
        }
        assert_eq!(unowned(&group("Stable", &[]), TOPIC, 6), None);
    }

    #[test]
    fn partitions_stranded_long_enough_are_reported_then_waited_for_twice_as_long() {
        let start = Instant::now();
        let mut watch = OwnershipWatch::new(STRANDED_AFTER);
        let stranded = set(&[3]);
        assert!(!watch.observe(Some(&stranded), start));
        assert!(!watch.observe(Some(&stranded), start + STRANDED_AFTER / 2));
        assert!(watch.observe(Some(&stranded), start + STRANDED_AFTER));
        // The worker acted and the partitions are still stranded: twice the wait.
        let again = start + STRANDED_AFTER + Duration::from_millis(1);
        assert!(!watch.observe(Some(&stranded), again));
        assert!(!watch.observe(Some(&stranded), again + STRANDED_AFTER));
        assert!(watch.observe(Some(&stranded), again + 2 * STRANDED_AFTER));
    }

    #[test]
    fn the_wait_grows_to_a_bound_and_starts_over_once_everything_is_owned() {
        let mut now = Instant::now();
        let mut watch = OwnershipWatch::new(STRANDED_AFTER);
        let stranded = set(&[0]);
        let mut waits = Vec::new();
        for _ in 0..8 {
            let since = now;
            assert!(!watch.observe(Some(&stranded), since));
            while !watch.observe(Some(&stranded), now) {
                now += Duration::from_secs(1);
            }
            waits.push(now.duration_since(since).as_secs());
            now += Duration::from_secs(1);
        }
        assert_eq!(waits, [3, 6, 12, 24, 48, 60, 60, 60]);
        // Owned again: the next stranding gets the first wait.
        assert!(!watch.observe(Some(&set(&[])), now));
        assert!(!watch.observe(Some(&stranded), now));
        assert!(watch.observe(Some(&stranded), now + STRANDED_AFTER));
    }

    #[test]
    fn a_rebalance_or_an_unanswered_look_starts_the_clock_again() {
        let start = Instant::now();
        let second = Duration::from_secs(1);
        for interruption in [None, Some(set(&[]))] {
            let mut watch = OwnershipWatch::new(STRANDED_AFTER);
            let stranded = set(&[0, 1]);
            assert!(!watch.observe(Some(&stranded), start));
            assert!(!watch.observe(interruption.as_ref(), start + second));
            assert!(!watch.observe(Some(&stranded), start + 2 * second));
            assert!(!watch.observe(Some(&stranded), start + STRANDED_AFTER + second));
            assert!(watch.observe(Some(&stranded), start + STRANDED_AFTER + 2 * second));
        }
    }
}
