//! Exactly-once delivery's decisions, without Kafka: which finished requests may be written into
//! the open transaction, which offsets it commits, when it is committed, and where the consumer
//! goes back to when it is aborted.
//!
//! A request's replies are written only once it and every request consumed before it in its
//! partition have finished (results that finish out of order are held until then). So a
//! transaction's offsets always cover exactly the replies it holds: committing it answers those
//! requests once and for all, aborting it answers none of them, and the consumer goes back to
//! the offset the group last committed to answer them again.
//!
//! One transaction per request would cost a round trip to the transaction coordinator each, so
//! a transaction collects requests until it holds [`TransactionPolicy::max_requests`], or is
//! [`TransactionPolicy::max_wait`] old, or the worker is idle (nothing more is being handled
//! that could join it, so waiting would only delay the replies: requesters read committed).

use super::progress::{Epoch, Progress};
use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

/// A partition of a topic.
type Partition = (String, i32);

/// How a worker's replies reach Kafka.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Delivery {
    /// Each reply is produced on its own and the request's offset committed after it is
    /// acknowledged: a crash or a rebalance can answer a request twice, never zero times.
    #[default]
    AtLeastOnce,
    /// Replies, dead letters and the consumed offsets are committed together in Kafka
    /// transactions: each request is answered once, as seen by a requester that reads committed
    /// messages (librdkafka's default; a `read_uncommitted` reader also sees aborted replies).
    ExactlyOnce(TransactionPolicy),
}

/// When a transaction is committed: whichever comes first of `max_requests` requests, `max_wait`
/// since its first one, or the worker running out of work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransactionPolicy {
    /// Most requests answered in one transaction.
    pub max_requests: NonZeroUsize,
    /// Longest a request's replies wait in an open transaction while other requests are being
    /// handled (the requester sees them only once it is committed).
    pub max_wait: Duration,
}

impl Default for TransactionPolicy {
    /// 20 ms or 500 requests: under load a commit's round trip is shared by many requests, and
    /// a reply is held back far less than a requester's timeout.
    fn default() -> Self {
        TransactionPolicy {
            max_requests: NonZeroUsize::new(500).expect("not zero"),
            max_wait: Duration::from_millis(20),
        }
    }
}

/// The transactions of one worker: the requests in flight, results waiting for an earlier
/// request of their partition, and the open transaction. `T` is what a request's result is
/// (the messages it causes).
#[derive(Debug)]
pub(super) struct Transactions<T> {
    policy: TransactionPolicy,
    progress: Progress,
    /// Finished out of order: waiting for an earlier request of the partition, per epoch.
    held: HashMap<Partition, (Epoch, BTreeMap<i64, T>)>,
    /// Per partition: the offset of the first request not committed (where an abort rewinds
    /// the consumer to).
    uncommitted_from: HashMap<Partition, i64>,
    open: Option<Open>,
}

#[derive(Debug)]
struct Open {
    since: Instant,
    requests: usize,
    /// Per partition: the next offset to consume, which the transaction commits.
    offsets: HashMap<Partition, i64>,
}

/// Results that may now be written into the transaction, in log order per partition.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Ready<T> {
    /// The transaction must be begun before they are written (none was open).
    pub(super) begin: bool,
    pub(super) results: Vec<T>,
}

/// Where a partition's consumer goes back to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Rewind {
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) offset: i64,
}

impl<T> Transactions<T> {
    pub(super) fn new(policy: TransactionPolicy) -> Self {
        Transactions {
            policy,
            progress: Progress::default(),
            held: HashMap::new(),
            uncommitted_from: HashMap::new(),
            open: None,
        }
    }

    /// Records a request consumed at `offset`; returns the epoch to hand back to
    /// [`Transactions::finished`].
    pub(super) fn started(&mut self, topic: &str, partition: i32, offset: i64) -> Epoch {
        self.uncommitted_from
            .entry((topic.to_owned(), partition))
            .or_insert(offset);
        self.progress.started(topic, partition, offset)
    }

    /// Records that the request at `offset` finished with `result`; returns the results that
    /// may be written into the transaction now (this one, if no earlier request of its
    /// partition is unfinished, and any held behind it). They count as written: the next commit
    /// carries their offsets. A request of an older epoch (consumed before a rewind) is dropped.
    pub(super) fn finished(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        epoch: Epoch,
        result: T,
        now: Instant,
    ) -> Ready<T> {
        let none = Ready {
            begin: false,
            results: Vec::new(),
        };
        if !self.progress.is_current(topic, partition, epoch) {
            return none;
        }
        let key = (topic.to_owned(), partition);
        let lane = self
            .held
            .entry(key.clone())
            .or_insert_with(|| (epoch, BTreeMap::new()));
        if lane.0 != epoch {
            *lane = (epoch, BTreeMap::new());
        }
        lane.1.insert(offset, result);
        let Some(done) = self.progress.finished(topic, partition, offset, epoch) else {
            return none;
        };
        let later = lane.1.split_off(&(done + 1));
        let results: Vec<T> = std::mem::replace(&mut lane.1, later)
            .into_values()
            .collect();
        if lane.1.is_empty() {
            self.held.remove(&key);
        }
        let begin = self.open.is_none();
        let open = self.open.get_or_insert_with(|| Open {
            since: now,
            requests: 0,
            offsets: HashMap::new(),
        });
        open.requests += results.len();
        open.offsets.insert(key, done + 1);
        Ready { begin, results }
    }

    /// Whether the open transaction is to be committed now; `idle`: nothing is being handled
    /// that could join it.
    pub(super) fn commit_due(&self, now: Instant, idle: bool) -> bool {
        self.open.as_ref().is_some_and(|open| {
            idle || open.requests >= self.policy.max_requests.get()
                || now >= open.since + self.policy.max_wait
        })
    }

    /// When the open transaction is due at the latest, whatever else happens.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.open
            .as_ref()
            .map(|open| open.since + self.policy.max_wait)
    }

    /// Whether a transaction is open (results were written into it).
    pub(super) fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// The offsets the open transaction commits: per partition, the next offset to consume.
    pub(super) fn offsets(&self) -> Vec<(String, i32, i64)> {
        let mut offsets: Vec<(String, i32, i64)> = self
            .open
            .iter()
            .flat_map(|open| &open.offsets)
            .map(|((topic, partition), next)| (topic.clone(), *partition, *next))
            .collect();
        offsets.sort();
        offsets
    }

    /// The open transaction was committed: its offsets are where an abort goes back to now.
    pub(super) fn committed(&mut self) {
        if let Some(open) = self.open.take() {
            self.uncommitted_from.extend(open.offsets);
        }
    }

    /// The open transaction was aborted (or is abandoned, as when the partitions move): every
    /// request not committed is to be answered again. Returns where each partition read since
    /// the last commit goes back to; what is in flight or held counts for nothing.
    pub(super) fn aborted(&mut self) -> Vec<Rewind> {
        self.open = None;
        self.held.clear();
        self.progress.forget_all();
        let mut rewinds: Vec<Rewind> = self
            .uncommitted_from
            .drain()
            .map(|((topic, partition), offset)| Rewind {
                topic,
                partition,
                offset,
            })
            .collect();
        rewinds.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        rewinds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_requests: usize, max_wait_ms: u64) -> TransactionPolicy {
        TransactionPolicy {
            max_requests: NonZeroUsize::new(max_requests).unwrap(),
            max_wait: Duration::from_millis(max_wait_ms),
        }
    }

    fn ready(results: Vec<&'static str>, begin: bool) -> Ready<&'static str> {
        Ready { begin, results }
    }

    #[test]
    fn results_wait_for_the_earlier_requests_of_their_partition() {
        let now = Instant::now();
        let mut txn = Transactions::new(policy(100, 20));
        let e10 = txn.started("t", 0, 10);
        let e11 = txn.started("t", 0, 11);
        let e12 = txn.started("t", 0, 12);
        assert_eq!(
            txn.finished("t", 0, 12, e12, "12", now),
            ready(vec![], false)
        );
        assert_eq!(
            txn.finished("t", 0, 11, e11, "11", now),
            ready(vec![], false)
        );
        assert!(!txn.is_open(), "nothing written yet");
        assert_eq!(
            txn.finished("t", 0, 10, e10, "10", now),
            ready(vec!["10", "11", "12"], true),
            "written together, in log order"
        );
        assert_eq!(txn.offsets(), vec![("t".to_owned(), 0, 13)]);
    }

    #[test]
    fn a_transaction_is_begun_once_and_carries_every_partition() {
        let now = Instant::now();
        let mut txn = Transactions::new(policy(100, 20));
        let a = txn.started("t", 0, 5);
        let b = txn.started("t", 1, 7);
        let c = txn.started("t", 0, 6);
        assert_eq!(txn.finished("t", 1, 7, b, "b", now), ready(vec!["b"], true));
        assert_eq!(
            txn.finished("t", 0, 5, a, "a", now),
            ready(vec!["a"], false)
        );
        assert_eq!(
            txn.offsets(),
            vec![("t".to_owned(), 0, 6), ("t".to_owned(), 1, 8)],
            "6 is unfinished: partition 0 commits up to it"
        );
        txn.committed();
        assert!(!txn.is_open());
        assert_eq!(txn.finished("t", 0, 6, c, "c", now), ready(vec!["c"], true));
        assert_eq!(txn.offsets(), vec![("t".to_owned(), 0, 7)]);
    }

    #[test]
    fn a_commit_is_due_after_enough_requests_or_time_or_when_idle() {
        let now = Instant::now();
        let mut txn = Transactions::new(policy(3, 20));
        assert!(!txn.commit_due(now, true), "nothing to commit");
        assert_eq!(txn.deadline(), None);
        for offset in 0..2 {
            let epoch = txn.started("t", 0, offset);
            txn.finished("t", 0, offset, epoch, "r", now);
        }
        assert_eq!(txn.deadline(), Some(now + Duration::from_millis(20)));
        assert!(!txn.commit_due(now, false));
        assert!(txn.commit_due(now, true), "idle: commit at once");
        assert!(!txn.commit_due(now + Duration::from_millis(19), false));
        assert!(txn.commit_due(now + Duration::from_millis(20), false));
        let epoch = txn.started("t", 0, 2);
        txn.finished("t", 0, 2, epoch, "r", now);
        assert!(txn.commit_due(now, false), "three requests");
    }

    #[test]
    fn an_abort_rewinds_to_the_last_commit_and_forgets_what_was_in_flight() {
        let now = Instant::now();
        let mut txn = Transactions::new(policy(100, 20));
        let e0 = txn.started("t", 0, 0);
        txn.finished("t", 0, 0, e0, "0", now);
        txn.committed();
        let e1 = txn.started("t", 0, 1);
        let e2 = txn.started("t", 0, 2);
        let e3 = txn.started("t", 0, 3);
        let other = txn.started("t", 1, 40);
        txn.finished("t", 0, 1, e1, "1", now);
        txn.finished("t", 0, 3, e3, "3", now);
        assert_eq!(
            txn.aborted(),
            vec![
                Rewind {
                    topic: "t".to_owned(),
                    partition: 0,
                    offset: 1
                },
                Rewind {
                    topic: "t".to_owned(),
                    partition: 1,
                    offset: 40
                },
            ]
        );
        assert!(!txn.is_open());
        // Finishing after the rewind: consumed before it, they count for nothing.
        assert_eq!(txn.finished("t", 0, 2, e2, "2", now), ready(vec![], false));
        assert_eq!(
            txn.finished("t", 1, 40, other, "x", now),
            ready(vec![], false)
        );
        // Read again: answered again, from the rewound offset.
        let again = txn.started("t", 0, 1);
        assert_eq!(
            txn.finished("t", 0, 1, again, "1", now),
            ready(vec!["1"], true)
        );
        assert_eq!(txn.offsets(), vec![("t".to_owned(), 0, 2)]);
        assert_eq!(
            txn.aborted(),
            vec![Rewind {
                topic: "t".to_owned(),
                partition: 0,
                offset: 1
            }],
            "the rewound offset is still the last commit"
        );
    }

    #[test]
    fn a_rewind_goes_back_to_the_last_commit_not_the_first_request() {
        let now = Instant::now();
        let mut txn = Transactions::new(policy(100, 20));
        for offset in 0..3 {
            let epoch = txn.started("t", 0, offset);
            txn.finished("t", 0, offset, epoch, "r", now);
        }
        txn.committed();
        let epoch = txn.started("t", 0, 3);
        txn.finished("t", 0, 3, epoch, "r", now);
        assert_eq!(txn.aborted()[0].offset, 3);
    }

    #[test]
    fn a_result_held_from_an_older_epoch_is_not_written() {
        let now = Instant::now();
        let mut txn = Transactions::new(policy(100, 20));
        let _old_5 = txn.started("t", 0, 5);
        let old_6 = txn.started("t", 0, 6);
        txn.finished("t", 0, 6, old_6, "old 6", now);
        // Read again from 5 (the partition came back): a new epoch.
        let new_5 = txn.started("t", 0, 5);
        assert_eq!(
            txn.finished("t", 0, 5, new_5, "new 5", now),
            ready(vec!["new 5"], true)
        );
        let new_6 = txn.started("t", 0, 6);
        assert_eq!(
            txn.finished("t", 0, 6, new_6, "new 6", now),
            ready(vec!["new 6"], false)
        );
    }
}
