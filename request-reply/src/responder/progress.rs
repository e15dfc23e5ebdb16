//! Which offsets may be committed while requests finish out of order: per partition, only up to
//! the lowest request still unfinished (the rule of Confluent's Parallel Consumer). A crash then
//! redelivers every request that was not answered, and only requests at or after the lowest
//! unfinished one are answered twice.
//!
//! A partition read again from an earlier offset (revoked and assigned back, or rewound) starts
//! a new epoch: requests of the old epoch still finishing count for nothing, so an old request
//! at the same offset as a new one cannot mark the new one done.

use std::collections::{BTreeMap, HashMap};

/// A partition of a topic.
type Partition = (String, i32);

/// The epoch a request was consumed in, handed back when it finishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Epoch(u64);

/// The requests in flight per partition, in offset order, and whether each has finished.
#[derive(Debug, Default)]
pub(super) struct Progress {
    partitions: HashMap<Partition, Track>,
    next_epoch: u64,
}

#[derive(Debug)]
struct Track {
    epoch: Epoch,
    /// Offset → finished; only offsets not yet passed to the commit.
    in_flight: BTreeMap<i64, bool>,
}

impl Progress {
    /// Records a request consumed at `offset`; returns the epoch to hand back to
    /// [`Progress::finished`].
    pub(super) fn started(&mut self, topic: &str, partition: i32, offset: i64) -> Epoch {
        let key = (topic.to_owned(), partition);
        let rewound = self.partitions.get(&key).is_some_and(|track| {
            track
                .in_flight
                .last_key_value()
                .is_some_and(|(last, _)| offset <= *last)
        });
        if rewound || !self.partitions.contains_key(&key) {
            let epoch = Epoch(self.next_epoch);
            self.next_epoch += 1;
            self.partitions.insert(
                key.clone(),
                Track {
                    epoch,
                    in_flight: BTreeMap::new(),
                },
            );
        }
        let track = self.partitions.get_mut(&key).expect("inserted above");
        track.in_flight.insert(offset, false);
        track.epoch
    }

    /// Records that the request at `offset` finished; returns the highest offset whose request
    /// and every request before it in the partition have finished, when that moved (the offset
    /// to store), or `None`.
    pub(super) fn finished(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        epoch: Epoch,
    ) -> Option<i64> {
        let key = (topic.to_owned(), partition);
        let track = self.partitions.get_mut(&key)?;
        if track.epoch != epoch {
            return None;
        }
        *track.in_flight.get_mut(&offset)? = true;
        let mut done = None;
        while let Some(entry) = track.in_flight.first_entry() {
            if !*entry.get() {
                break;
            }
            done = Some(*entry.key());
            entry.remove();
        }
        if track.in_flight.is_empty() {
            self.partitions.remove(&key);
        }
        done
    }

    /// Whether `epoch` is the one `partition` is read in now: a request finishing in an older
    /// one was consumed before a rewind and counts for nothing.
    pub(super) fn is_current(&self, topic: &str, partition: i32, epoch: Epoch) -> bool {
        self.partitions
            .get(&(topic.to_owned(), partition))
            .is_some_and(|track| track.epoch == epoch)
    }

    /// Forgets every request in flight, as after an aborted transaction rewinds the consumer:
    /// they all finish in epochs that count for nothing, and each partition starts a new epoch
    /// with the next request consumed in it.
    pub(super) fn forget_all(&mut self) {
        self.partitions.clear();
    }

    /// How many partitions have requests in flight.
    #[cfg(test)]
    fn partitions(&self) -> usize {
        self.partitions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commit_waits_for_the_lowest_unfinished_request() {
        let mut progress = Progress::default();
        let epochs: Vec<Epoch> = (10..15)
            .map(|offset| progress.started("t", 0, offset))
            .collect();
        assert_eq!(progress.finished("t", 0, 12, epochs[2]), None);
        assert_eq!(progress.finished("t", 0, 11, epochs[1]), None);
        assert_eq!(progress.finished("t", 0, 14, epochs[4]), None);
        assert_eq!(
            progress.finished("t", 0, 10, epochs[0]),
            Some(12),
            "10, 11 and 12 are done"
        );
        assert_eq!(progress.finished("t", 0, 13, epochs[3]), Some(14));
        assert_eq!(progress.partitions(), 0, "nothing in flight is forgotten");
    }

    #[test]
    fn partitions_are_independent() {
        let mut progress = Progress::default();
        let slow = progress.started("t", 0, 0);
        let quick = progress.started("t", 1, 0);
        assert_eq!(progress.finished("t", 1, 0, quick), Some(0));
        assert_eq!(progress.finished("t", 0, 0, slow), Some(0));
        let other_topic = progress.started("u", 0, 5);
        assert_eq!(progress.finished("u", 0, 5, other_topic), Some(5));
    }

    #[test]
    fn a_partition_read_again_from_earlier_starts_a_new_epoch() {
        let mut progress = Progress::default();
        let old_5 = progress.started("t", 0, 5);
        let old_6 = progress.started("t", 0, 6);
        // Revoked and assigned back: read again from the committed offset 5.
        let new_5 = progress.started("t", 0, 5);
        assert_ne!(old_5, new_5);
        // The old requests finishing count for nothing, not even the one at the same offset.
        assert_eq!(progress.finished("t", 0, 6, old_6), None);
        assert_eq!(progress.finished("t", 0, 5, old_5), None);
        let new_6 = progress.started("t", 0, 6);
        assert_eq!(
            progress.finished("t", 0, 6, new_6),
            None,
            "5 is still unfinished"
        );
        assert_eq!(progress.finished("t", 0, 5, new_5), Some(6));
    }

    #[test]
    fn requests_forgotten_count_for_nothing() {
        let mut progress = Progress::default();
        let old = progress.started("t", 0, 3);
        progress.forget_all();
        assert!(!progress.is_current("t", 0, old));
        assert_eq!(progress.finished("t", 0, 3, old), None);
        let new = progress.started("t", 0, 3);
        assert_ne!(old, new, "epochs are never reused");
        assert!(progress.is_current("t", 0, new));
        assert_eq!(progress.finished("t", 0, 3, new), Some(3));
    }

    #[test]
    fn an_unknown_or_repeated_finish_changes_nothing() {
        let mut progress = Progress::default();
        let epoch = progress.started("t", 0, 1);
        let _later = progress.started("t", 0, 2);
        assert_eq!(progress.finished("t", 0, 7, epoch), None);
        assert_eq!(progress.finished("t", 3, 1, epoch), None);
        assert_eq!(progress.finished("t", 0, 1, epoch), Some(1));
        assert_eq!(progress.finished("t", 0, 1, epoch), None);
    }
}
