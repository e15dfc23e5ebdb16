//! Telling a group consumer that lost its group for good from one that is only waiting.
//!
//! After a whole-cluster outage librdkafka can leave a consumer knowing no broker it can reach:
//! it never finds its group coordinator again, so it owns no partition and answers nothing,
//! while the process looks alive (see the README's reliability section). Nothing inside the
//! client reports that state, but two things outside it do: librdkafka's statistics say whether
//! the consumer's group handler is up, and a client of our own says whether brokers answer. A
//! group that has not been up for [`BLIND_AFTER`] while the brokers answered all that time is
//! not coming back by itself, and the worker replaces its consumer.

use std::time::{Duration, Instant};

/// How long the brokers must have answered, with the consumer's group still not up, before the
/// consumer is given up on. A healthy consumer finds its coordinator within a second or two of
/// the brokers coming back.
pub(crate) const BLIND_AFTER: Duration = Duration::from_secs(5);

/// What has been seen of the brokers and of the consumer's group, and when.
#[derive(Debug, Clone)]
pub(crate) struct GroupWatch {
    blind_after: Duration,
    /// Since when every look at the brokers found them answering; `None` while they do not.
    brokers_answer_since: Option<Instant>,
    /// When the consumer's group was last seen up (or the consumer was made).
    group_last_up: Instant,
}

impl GroupWatch {
    /// A watch over a consumer made at `now`.
    pub(crate) fn new(blind_after: Duration, now: Instant) -> Self {
        GroupWatch {
            blind_after,
            brokers_answer_since: None,
            group_last_up: now,
        }
    }

    /// Records whether the brokers answered a look at `now`.
    pub(crate) fn brokers(&mut self, answered: bool, now: Instant) {
        if answered {
            self.brokers_answer_since.get_or_insert(now);
        } else {
            self.brokers_answer_since = None;
        }
    }

    /// Records the consumer's group state as its statistics reported it at `now`.
    pub(crate) fn group(&mut self, up: bool, now: Instant) {
        if up {
            self.group_last_up = now;
        }
    }

    /// Whether the consumer has been without its group for the whole of the last
    /// `blind_after` while the brokers answered.
    pub(crate) fn is_blind(&self, now: Instant) -> bool {
        let Some(answering) = self.brokers_answer_since else {
            return false;
        };
        let waiting_since = answering.max(self.group_last_up);
        now.saturating_duration_since(waiting_since) >= self.blind_after
    }

    /// Starts the clock again for a consumer made at `now` in place of a blind one.
    pub(crate) fn replaced(&mut self, now: Instant) {
        self.group_last_up = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn watch(start: Instant) -> GroupWatch {
        GroupWatch::new(BLIND_AFTER, start)
    }

    #[test]
    fn a_group_that_stays_up_is_never_blind() {
        let start = Instant::now();
        let mut watch = watch(start);
        for second in 0..60 {
            let now = start + second * SECOND;
            watch.brokers(true, now);
            watch.group(true, now);
            assert!(!watch.is_blind(now));
        }
    }

    #[test]
    fn no_group_during_an_outage_is_only_waiting() {
        let start = Instant::now();
        let mut watch = watch(start);
        for second in 0..60 {
            let now = start + second * SECOND;
            watch.brokers(false, now);
            watch.group(false, now);
            assert!(!watch.is_blind(now));
        }
    }

    #[test]
    fn a_group_gets_its_time_after_the_brokers_are_back() {
        let start = Instant::now();
        let mut watch = watch(start);
        watch.group(true, start);
        // Down for a minute: the group has been down for long, the brokers too.
        for second in 1..60 {
            let now = start + second * SECOND;
            watch.brokers(false, now);
            watch.group(false, now);
        }
        let back = start + 60 * SECOND;
        watch.brokers(true, back);
        assert!(!watch.is_blind(back));
        assert!(!watch.is_blind(back + 4 * SECOND));
        watch.group(true, back + 2 * SECOND);
        assert!(!watch.is_blind(back + 6 * SECOND));
    }

    #[test]
    fn no_group_while_the_brokers_answer_is_blind_after_the_limit() {
        let start = Instant::now();
        let mut watch = watch(start);
        let back = start + 30 * SECOND;
        for second in 30..40 {
            let now = start + second * SECOND;
            watch.brokers(true, now);
            watch.group(false, now);
            assert_eq!(
                watch.is_blind(now),
                now >= back + BLIND_AFTER,
                "at {second} s"
            );
        }
    }

    #[test]
    fn a_brokers_outage_restarts_the_count() {
        let start = Instant::now();
        let mut watch = watch(start);
        watch.brokers(true, start + SECOND);
        watch.brokers(false, start + 4 * SECOND);
        watch.brokers(true, start + 5 * SECOND);
        assert!(!watch.is_blind(start + 9 * SECOND));
        assert!(watch.is_blind(start + 10 * SECOND));
    }

    #[test]
    fn a_replacement_gets_the_whole_time_again() {
        let start = Instant::now();
        let mut watch = watch(start);
        watch.brokers(true, start);
        assert!(watch.is_blind(start + BLIND_AFTER));
        watch.replaced(start + BLIND_AFTER);
        assert!(!watch.is_blind(start + BLIND_AFTER + 4 * SECOND));
        assert!(watch.is_blind(start + 2 * BLIND_AFTER));
    }
}
