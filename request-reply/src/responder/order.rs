//! Per-key order under concurrency: requests with the same Kafka key (in the same partition) are
//! handled one after another in log order, while requests with other keys, and requests without
//! a key, are handled alongside them.
//!
//! Each request takes a [`Turn`] when it is consumed, in consumption order: the turn waits for
//! the end of the turn taken last for its key, so the order is fixed at consumption time, not by
//! which task the runtime polls first. A request without a key has no order to keep (a producer
//! that sends no key asks for none, and Kafka spreads such requests over partitions anyway), so
//! it waits for nothing. The map holds only keys with a request in flight, so it is bounded by
//! the worker's in-flight limit.

use std::collections::HashMap;
use tokio::sync::oneshot;

/// Identifies one turn of one key, so that only the key's last turn clears its entry.
pub(super) type Ticket = u64;
/// A Kafka key within its partition.
type PartitionKey = (i32, Vec<u8>);
/// Resolves when a turn ends; held by the one turn that waits for it (or by the map until that
/// turn is taken).
type TurnEnded = oneshot::Receiver<()>;

/// Which requests of each key are still in flight.
#[derive(Debug, Default)]
pub(super) struct KeyOrder {
    last: HashMap<PartitionKey, (Ticket, TurnEnded)>,
    next_ticket: Ticket,
}

/// A request's place in its key's order: [`Turn::wait`] until the key's earlier requests are
/// done, then drop the turn (or call [`Turn::end`]) once this one's replies are queued.
#[derive(Debug)]
pub(super) struct Turn {
    after: Option<TurnEnded>,
    done: Option<oneshot::Sender<()>>,
    key: Option<(PartitionKey, Ticket)>,
}

impl KeyOrder {
    /// The turn of a request with `key` in `partition`, behind the requests of that key taken
    /// before it.
    pub(super) fn take_turn(&mut self, partition: i32, key: Option<&[u8]>) -> Turn {
        let Some(key) = key else {
            return Turn {
                after: None,
                done: None,
                key: None,
            };
        };
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        let (done, finished) = oneshot::channel();
        let key = (partition, key.to_vec());
        let after = self
            .last
            .insert(key.clone(), (ticket, finished))
            .map(|(_, previous)| previous);
        Turn {
            after,
            done: Some(done),
            key: Some((key, ticket)),
        }
    }

    /// Forgets `turn`'s key if no later request of it is in flight (called once the request is
    /// done, in consumption order).
    pub(super) fn forget(&mut self, turn: &Turn) {
        if let Some((key, ticket)) = &turn.key {
            if self.last.get(key).is_some_and(|(last, _)| last == ticket) {
                self.last.remove(key);
            }
        }
    }

    /// How many keys have a request in flight.
    #[cfg(test)]
    pub(super) fn keys(&self) -> usize {
        self.last.len()
    }
}

impl Turn {
    /// Resolves once every earlier request of the same key has ended its turn (or was dropped,
    /// as on shutdown). Cancel-safe: a wait dropped before it resolved leaves the turn waiting.
    pub(super) async fn wait(&mut self) {
        if let Some(after) = &mut self.after {
            // An error means the earlier turn was dropped without ending: it is over all the same.
            let _ = after.await;
            self.after = None;
        }
    }

    /// Lets the next request of the key go.
    pub(super) fn end(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::future::FutureExt;

    fn ready(turn: &mut Turn) -> bool {
        turn.wait().now_or_never().is_some()
    }

    #[test]
    fn the_same_key_waits_for_the_one_before_it() {
        let mut order = KeyOrder::default();
        let mut first = order.take_turn(0, Some(b"alice"));
        let mut second = order.take_turn(0, Some(b"alice"));
        let mut third = order.take_turn(0, Some(b"alice"));
        assert!(ready(&mut first));
        assert!(!ready(&mut second));
        first.end();
        assert!(ready(&mut second));
        assert!(
            !ready(&mut third),
            "the third waits for the second, not the first"
        );
        second.end();
        assert!(ready(&mut third));
    }

    #[test]
    fn other_keys_other_partitions_and_no_key_do_not_wait() {
        let mut order = KeyOrder::default();
        let _busy = order.take_turn(0, Some(b"alice"));
        assert!(ready(&mut order.take_turn(0, Some(b"bob"))));
        assert!(ready(&mut order.take_turn(1, Some(b"alice"))));
        assert!(ready(&mut order.take_turn(0, None)));
        assert!(ready(&mut order.take_turn(0, None)));
    }

    #[test]
    fn a_dropped_turn_releases_the_next() {
        let mut order = KeyOrder::default();
        let first = order.take_turn(0, Some(b"k"));
        let mut second = order.take_turn(0, Some(b"k"));
        drop(first);
        assert!(ready(&mut second));
    }

    #[test]
    fn only_the_last_turn_of_a_key_forgets_it() {
        let mut order = KeyOrder::default();
        let first = order.take_turn(0, Some(b"k"));
        let second = order.take_turn(0, Some(b"k"));
        let _other = order.take_turn(0, None);
        assert_eq!(order.keys(), 1);
        order.forget(&first);
        assert_eq!(order.keys(), 1, "a later request of the key is in flight");
        order.forget(&second);
        assert_eq!(order.keys(), 0);
        // A key taken again after it was forgotten starts afresh.
        assert!(ready(&mut order.take_turn(0, Some(b"k"))));
    }
}
