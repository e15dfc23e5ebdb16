//! Noticing a consumer that has stopped reading although there is something to read.
//!
//! librdkafka normally heals by itself after an outage, but not always: after a whole-cluster
//! restart an assigned consumer can keep a partition's fetcher idle for good while the partition
//! grows (librdkafka issue 5153, rust-rdkafka issue 597), and a stuck request or reply stays
//! unanswered until someone restarts the process. So the readers here never depend on it: each
//! one knows the next offset it expects from every partition, compares that with the partition's
//! high watermark now and then, and recovers a partition that is behind and has not moved for a
//! while (see [`Stalls::observe`]). The decision is this module's pure state machine; the readers
//! do the I/O.
//!
//! A partition can also stop at a message no client can decode (a batch in a codec this build
//! cannot read, a corrupt record): librdkafka reports an error and fetches the same batch again,
//! for ever. Recovering does not help there, so after [`SKIP_AFTER_RECOVERIES`] recoveries at the
//! same offset, with such an error reported meanwhile, the reader skips that one message (see
//! [`remedy`]) and says so: a worker with a dead letter, the dashboard in its log and metrics.

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A partition of a topic.
pub type PartitionKey = (String, i32);

/// How long a partition may be behind its high watermark without moving before it counts as
/// stalled, unless a reader is told otherwise. Long enough that a consumer which is merely
/// reconnecting (librdkafka retries within a second here) is left alone, short enough that a
/// stalled one is recovered well within a request timeout.
pub const DEFAULT_STALL_AFTER: Duration = Duration::from_secs(3);

/// How often readers look up the high watermarks.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Recoveries at one offset, without any progress, after which an undecodable message there is
/// skipped. Two: a fresh consumer that still cannot get past it is not stuck, the message is.
pub const SKIP_AFTER_RECOVERIES: u32 = 2;

/// What the watchdog knows of one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Progress {
    /// The next offset the reader expects: one past the last message it handled, or where it
    /// was told to start.
    next: i64,
    /// Since when the partition has been behind its high watermark with `next` unchanged.
    behind_since: Option<Instant>,
    /// Recoveries since `next` last moved.
    recoveries: u32,
}

/// A partition found stalled.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stall {
    /// The partition.
    pub key: PartitionKey,
    /// The offset the reader expects next: where it resumes, or the message it skips.
    pub next: i64,
    /// Recoveries already tried at this offset.
    pub recoveries: u32,
}

/// What to do about a stalled partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Remedy {
    /// Start reading again where the reader stopped.
    Recover,
    /// Give up on the message at the stalled offset and go on after it.
    Skip,
}

/// Decides what a stall calls for: skipping only when recovering has failed
/// [`SKIP_AFTER_RECOVERIES`] times at this offset and the consumer reported a message it could
/// not decode (never a message that is merely slow to come).
pub fn remedy(stall: &Stall, undecodable_reported: bool) -> Remedy {
    if undecodable_reported && stall.recoveries >= SKIP_AFTER_RECOVERIES {
        Remedy::Skip
    } else {
        Remedy::Recover
    }
}

/// Whether a consumer error says a message could not be decoded (as opposed to a broker that is
/// unreachable or slow).
pub fn is_undecodable(error: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        error,
        KafkaError::MessageConsumption(
            BadMessage
                | BadCompression
                | NotImplemented
                | InvalidMessage
                | InvalidRecord
                | UnsupportedCompressionType
        )
    )
}

/// Per-partition progress of one reader, and the decision which partitions have stalled.
#[derive(Clone, Debug)]
pub struct Stalls {
    partitions: HashMap<PartitionKey, Progress>,
    stall_after: Duration,
}

/// Whether a message was new to the reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// At or past the expected offset: handle it.
    New,
    /// Before the expected offset: handled already (the consumer went back, say after an
    /// offset reset to the beginning); skip it.
    Again,
}

impl Stalls {
    /// Watches nothing yet; a partition behind and unmoved for `stall_after` is stalled.
    pub fn new(stall_after: Duration) -> Self {
        Stalls {
            partitions: HashMap::new(),
            stall_after,
        }
    }

    /// Starts watching `key` from `next` (or moves it there).
    pub fn watch(&mut self, key: PartitionKey, next: i64) {
        self.partitions.insert(
            key,
            Progress {
                next,
                behind_since: None,
                recoveries: 0,
            },
        );
    }

    /// Stops watching `key` (a partition the reader no longer owns).
    pub fn forget(&mut self, key: &PartitionKey) {
        self.partitions.remove(key);
    }

    /// Records that the message at `offset` of `key` was read. Messages of partitions not
    /// watched are new by definition (the reader will start watching them).
    pub fn read(&mut self, key: &PartitionKey, offset: i64) -> Seen {
        match self.partitions.get_mut(key) {
            Some(progress) if offset < progress.next => Seen::Again,
            Some(progress) => {
                progress.next = offset + 1;
                progress.behind_since = None;
                progress.recoveries = 0;
                Seen::New
            }
            None => {
                self.watch(key.clone(), offset + 1);
                Seen::New
            }
        }
    }

    /// Records that the consumer's own position of `key` reached `position` without handing
    /// over a message (transaction markers, compacted gaps): progress all the same.
    pub fn passed(&mut self, key: &PartitionKey, position: i64) {
        if let Some(progress) = self.partitions.get_mut(key) {
            if position > progress.next {
                progress.next = position;
                progress.behind_since = None;
                progress.recoveries = 0;
            }
        }
    }

    /// The next offset expected from each watched partition: where a recovered reader resumes.
    pub fn positions(&self) -> HashMap<PartitionKey, i64> {
        self.partitions
            .iter()
            .map(|(key, progress)| (key.clone(), progress.next))
            .collect()
    }

    /// Compares the expected offsets with the high watermarks just looked up (`ends`), at
    /// `now`, and returns the partitions that have been behind for at least the stall time
    /// without moving, sorted. A partition is behind
    /// when its high watermark is past the next offset expected; the clock starts at the first
    /// observation that sees it so, and any message read stops it.
    pub fn observe(&mut self, ends: &HashMap<PartitionKey, i64>, now: Instant) -> Vec<Stall> {
        let mut stalled = Vec::new();
        for (key, progress) in &mut self.partitions {
            let Some(&high) = ends.get(key) else {
                continue;
            };
            if high <= progress.next {
                progress.behind_since = None;
                continue;
            }
            let since = *progress.behind_since.get_or_insert(now);
            if now.duration_since(since) >= self.stall_after {
                stalled.push(Stall {
                    key: key.clone(),
                    next: progress.next,
                    recoveries: progress.recoveries,
                });
            }
        }
        stalled.sort();
        stalled
    }

    /// After a recovery: the clocks of the recovered partitions start again, so a recovery gets
    /// its own stall time to show its effect.
    pub fn recovered(&mut self, keys: impl IntoIterator<Item = PartitionKey>) {
        for key in keys {
            if let Some(progress) = self.partitions.get_mut(&key) {
                progress.behind_since = None;
                progress.recoveries += 1;
            }
        }
    }

    /// After skipping the message at the expected offset of `key`: the next one is expected.
    pub fn skipped(&mut self, key: &PartitionKey) {
        if let Some(progress) = self.partitions.get_mut(key) {
            progress.next += 1;
            progress.behind_since = None;
            progress.recoveries = 0;
        }
    }
}

/// The offsets below which a partition's requests are known to be answered: the group's committed
/// offsets, as last looked up. librdkafka moves a consumer below them on its own in one case: a
/// broker that calls the consumer's offset out of range makes it reset to `auto.offset.reset`,
/// the beginning, even when that broker is a stale leader just resumed from a freeze, which has
/// not seen the offset yet. A reader that meets a message below the floor goes back up to it
/// instead of answering the partition's whole history again.
#[derive(Clone, Debug, Default)]
pub struct Floors {
    floors: HashMap<PartitionKey, i64>,
}

impl Floors {
    /// Records that the group has committed `offset` for `key`. Floors only rise: an older
    /// look-up answered late never lowers one.
    pub fn committed(&mut self, key: PartitionKey, offset: i64) {
        let floor = self.floors.entry(key).or_insert(offset);
        *floor = (*floor).max(offset);
    }

    /// Records the group's committed `offset` of `key` as its floor where the partition's log
    /// reaches it (`end`, its high watermark). A committed offset past the end means the broker
    /// lost records the group had read (an unclean leader election): what is there now was
    /// written since and must be answered, so the partition has no floor.
    pub fn committed_within(&mut self, key: PartitionKey, offset: i64, end: i64) {
        if offset <= end {
            self.committed(key, offset);
        } else {
            self.floors.remove(&key);
        }
    }

    /// Where a reader that has just read `offset` of `key` must go instead, if that message is
    /// below what the group has committed: the floor.
    pub fn below(&self, key: &PartitionKey, offset: i64) -> Option<i64> {
        self.floors
            .get(key)
            .copied()
            .filter(|floor| offset < *floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALL: Duration = Duration::from_secs(3);

    #[test]
    fn a_message_below_the_committed_offset_sends_the_reader_back_up() {
        let mut floors = Floors::default();
        assert_eq!(floors.below(&key(2), 0), None, "nothing known: handled");
        floors.committed(key(2), 543);
        assert_eq!(
            floors.below(&key(2), 0),
            Some(543),
            "reset to the beginning"
        );
        assert_eq!(floors.below(&key(2), 542), Some(543));
        assert_eq!(floors.below(&key(2), 543), None, "the next request");
        assert_eq!(floors.below(&key(2), 600), None);
        assert_eq!(floors.below(&key(1), 0), None, "another partition");
        floors.committed(key(2), 500);
        assert_eq!(floors.below(&key(2), 520), Some(543), "floors never sink");
    }

    #[test]
    fn a_committed_offset_past_the_log_end_is_no_floor() {
        let mut floors = Floors::default();
        floors.committed_within(key(0), 40, 40);
        assert_eq!(floors.below(&key(0), 3), Some(40), "the log reaches it");
        // The broker lost records the group had read: what is there now is new.
        floors.committed_within(key(0), 40, 12);
        assert_eq!(floors.below(&key(0), 3), None);
        floors.committed_within(key(0), 40, 41);
        assert_eq!(floors.below(&key(0), 3), Some(40), "reached again");
    }

    fn key(partition: i32) -> PartitionKey {
        ("replies".to_owned(), partition)
    }

    fn ends(pairs: &[(i32, i64)]) -> HashMap<PartitionKey, i64> {
        pairs.iter().map(|(p, high)| (key(*p), *high)).collect()
    }

    #[test]
    fn a_partition_that_is_caught_up_never_stalls() {
        let start = Instant::now();
        let mut stalls = Stalls::new(STALL);
        stalls.watch(key(0), 10);
        for second in 0..10 {
            let now = start + Duration::from_secs(second);
            assert!(stalls.observe(&ends(&[(0, 10)]), now).is_empty());
        }
    }

    #[test]
    fn a_partition_behind_without_progress_stalls_after_the_stall_time() {
        let start = Instant::now();
        let mut stalls = Stalls::new(STALL);
        stalls.watch(key(0), 10);
        assert!(stalls.observe(&ends(&[(0, 15)]), start).is_empty());
        let almost = start + STALL - Duration::from_millis(1);
        assert!(stalls.observe(&ends(&[(0, 16)]), almost).is_empty());
        assert_eq!(
            stalls.observe(&ends(&[(0, 17)]), start + STALL),
            vec![Stall {
                key: key(0),
                next: 10,
                recoveries: 0
            }]
        );
    }

    #[test]
    fn reading_anything_restarts_the_clock() {
        let start = Instant::now();
        let mut stalls = Stalls::new(STALL);
        stalls.watch(key(0), 10);
        stalls.observe(&ends(&[(0, 20)]), start);
        assert_eq!(stalls.read(&key(0), 10), Seen::New);
        let later = start + STALL;
        assert!(stalls.observe(&ends(&[(0, 20)]), later).is_empty());
        // A slow but moving reader is never recovered.
        for step in 1..8 {
            let now = later + Duration::from_secs(step * 2);
            stalls.read(&key(0), 10 + i64::try_from(step).unwrap());
            assert!(stalls.observe(&ends(&[(0, 20)]), now).is_empty());
        }
    }

    #[test]
    fn a_message_that_arrives_after_a_quiet_spell_is_not_a_stall() {
        // Caught up for a long time, then one new reply: the clock starts when it is first
        // seen behind, not when the partition last moved.
        let start = Instant::now();
        let mut stalls = Stalls::new(STALL);
        stalls.watch(key(0), 10);
        stalls.observe(&ends(&[(0, 10)]), start);
        let much_later = start + Duration::from_secs(60);
        assert!(stalls.observe(&ends(&[(0, 11)]), much_later).is_empty());
    }

    #[test]
    fn only_the_stalled_partitions_are_named_with_their_resume_offsets() {
        let start = Instant::now();
        let mut stalls = Stalls::new(STALL);
        stalls.watch(key(0), 10);
        stalls.watch(key(1), 4);
        stalls.watch(key(2), 7);
        let behind = ends(&[(0, 12), (1, 4), (2, 9)]);
        stalls.observe(&behind, start);
        stalls.read(&key(0), 10);
        let stalled = stalls.observe(&behind, start + STALL);
        let named: Vec<(PartitionKey, i64)> =
            stalled.into_iter().map(|s| (s.key, s.next)).collect();
        assert_eq!(
            named,
            vec![(key(2), 7)],
            "partition 0 moved, partition 1 is caught up"
        );
    }

    #[test]
    fn messages_before_the_expected_offset_are_seen_again() {
        let mut stalls = Stalls::new(STALL);
        stalls.watch(key(0), 10);
        assert_eq!(stalls.read(&key(0), 0), Seen::Again);
        assert_eq!(stalls.read(&key(0), 9), Seen::Again);
        assert_eq!(stalls.read(&key(0), 10), Seen::New);
        assert_eq!(stalls.positions()[&key(0)], 11);
        // A gap (compaction) moves on to past the message read.
        assert_eq!(stalls.read(&key(0), 15), Seen::New);
        assert_eq!(stalls.positions()[&key(0)], 16);
    }

    #[test]
    fn a_position_past_a_transaction_marker_is_progress() {
        let start = Instant::now();
        let mut stalls = Stalls::new(STALL);
        stalls.watch(key(0), 10);
        stalls.observe(&ends(&[(0, 11)]), start);
        stalls.passed(&key(0), 11);
        assert!(stalls.observe(&ends(&[(0, 11)]), start + STALL).is_empty());
        // Never backwards.
        stalls.passed(&key(0), 5);
        assert_eq!(stalls.positions()[&key(0)], 11);
    }

    #[test]
    fn a_recovery_gets_its_own_stall_time() {
        let start = Instant::now();
        let mut stalls = Stalls::new(STALL);
        stalls.watch(key(0), 10);
        stalls.observe(&ends(&[(0, 12)]), start);
        assert_eq!(stalls.observe(&ends(&[(0, 12)]), start + STALL).len(), 1);
        stalls.recovered([key(0)]);
        let after = start + STALL + Duration::from_millis(500);
        assert!(stalls.observe(&ends(&[(0, 12)]), after).is_empty());
        assert_eq!(stalls.observe(&ends(&[(0, 12)]), after + STALL).len(), 1);
    }

    #[test]
    fn forgotten_and_unknown_partitions_are_not_judged() {
        let start = Instant::now();
        let mut stalls = Stalls::new(STALL);
        stalls.watch(key(0), 10);
        stalls.forget(&key(0));
        stalls.observe(&ends(&[(0, 12), (1, 5)]), start);
        assert!(
            stalls
                .observe(&ends(&[(0, 12), (1, 5)]), start + STALL)
                .is_empty()
        );
        // A message from an unwatched partition starts watching it past that message.
        assert_eq!(stalls.read(&key(3), 41), Seen::New);
        assert_eq!(stalls.positions()[&key(3)], 42);
    }

    #[test]
    fn only_a_message_that_cannot_be_decoded_and_survives_recoveries_is_skipped() {
        let start = Instant::now();
        let mut stalls = Stalls::new(STALL);
        stalls.watch(key(0), 10);
        let behind = ends(&[(0, 12)]);
        let mut now = start;
        stalls.observe(&behind, now);
        let mut remedies = Vec::new();
        for _ in 0..3 {
            now += STALL;
            let stall = stalls.observe(&behind, now).pop().unwrap();
            remedies.push((remedy(&stall, false), remedy(&stall, true)));
            stalls.recovered([key(0)]);
            stalls.observe(&behind, now);
        }
        assert_eq!(
            remedies,
            vec![
                (Remedy::Recover, Remedy::Recover),
                (Remedy::Recover, Remedy::Recover),
                (Remedy::Recover, Remedy::Skip),
            ],
            "never without a decoding error; only after two recoveries with one"
        );
        stalls.skipped(&key(0));
        assert_eq!(stalls.positions()[&key(0)], 11);
        now += STALL;
        assert!(
            stalls.observe(&behind, now).is_empty(),
            "its own stall time"
        );
        let stall = stalls.observe(&behind, now + STALL).pop().unwrap();
        assert_eq!(stall.recoveries, 0, "a fresh start at the next message");
    }

    #[test]
    fn decoding_errors_are_told_from_connection_trouble() {
        for code in [
            RDKafkaErrorCode::BadCompression,
            RDKafkaErrorCode::NotImplemented,
        ] {
            assert!(is_undecodable(&KafkaError::MessageConsumption(code)));
        }
        for code in [
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::BrokerTransportFailure,
        ] {
            assert!(!is_undecodable(&KafkaError::MessageConsumption(code)));
        }
    }

    #[test]
    fn progress_forgets_earlier_recoveries() {
        let start = Instant::now();
        let mut stalls = Stalls::new(STALL);
        stalls.watch(key(0), 10);
        stalls.recovered([key(0)]);
        stalls.recovered([key(0)]);
        stalls.read(&key(0), 10);
        stalls.observe(&ends(&[(0, 20)]), start);
        let stall = stalls
            .observe(&ends(&[(0, 20)]), start + STALL)
            .pop()
            .unwrap();
        assert_eq!(remedy(&stall, true), Remedy::Recover);
    }
}
