//! The remembered requests: one compact entry each, in reused slots found by correlation ID.

use contract::RequestKind;
use slab::Slab;
use std::collections::HashMap;

use super::cache::Payloads;
use super::key::Key;
use super::status::{Answer, Status};

/// Where a message is in its partition; the topic follows from the request kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Position {
    pub partition: i32,
    pub offset: i64,
}

/// The partition of a position not known yet.
pub(super) const NO_PARTITION: i32 = -1;

impl Position {
    /// The position at `partition` and `offset`, unless the partition is [`NO_PARTITION`].
    fn known(partition: i32, offset: i64) -> Option<Position> {
        (partition != NO_PARTITION).then_some(Position { partition, offset })
    }
}

/// One remembered request: about 100 bytes, plus the summary's few dozen.
#[derive(Debug)]
pub(super) struct Entry {
    /// When it was sent, in milliseconds since the epoch (the Kafka timestamp for history).
    pub created_ms: i64,
    /// When it was sent on the store's monotonic clock (see [`super::clock::Clock`]): round
    /// trips do not jump with the wall clock.
    pub started_us: i64,
    /// Meaningful once there is a reply.
    pub round_trip_us: u64,
    // Positions of request and reply, split up and with [`NO_PARTITION`] for "none yet": two
    // `Option<Position>` would take 48 bytes instead of 24 (2.4 MB per 100,000 entries).
    pub request_offset: i64,
    pub reply_offset: i64,
    pub request_partition: i32,
    pub reply_partition: i32,
    pub duplicate_replies: u32,
    pub kind: RequestKind,
    /// Which reply topic the reply came on.
    pub reply_kind: RequestKind,
    pub status: Status,
    pub late: bool,
    pub summary: Box<str>,
    pub answer: Answer,
    pub payloads: Option<Box<Payloads>>,
}

impl Entry {
    pub(super) fn request_at(&self) -> Option<Position> {
        Position::known(self.request_partition, self.request_offset)
    }

    pub(super) fn reply_at(&self) -> Option<Position> {
        Position::known(self.reply_partition, self.reply_offset)
    }
}

/// The entries in a slab, whose slots are reused as old entries are forgotten, found through a
/// map from key to slot.
///
/// Not a `HashMap<Key, Entry>`: with entries forgotten and added all the time, the map fills
/// with tombstones and, when more than half full, rebuilds itself at twice the size; with
/// ~130-byte buckets that is 33 MB for 100,000 entries, resident because the hash spreads them
/// over every page. Here the map's buckets are 32 bytes and sized up front so that it always
/// rebuilds in place, and the slab never outgrows the limit.
#[derive(Debug, Default)]
pub(super) struct Entries {
    index: HashMap<Key, usize>,
    slots: Slab<Entry>,
}

impl Entries {
    pub(super) fn with_capacity(limit: usize) -> Self {
        Entries {
            // Twice the limit: rebuilding in place needs the map at most half full.
            index: HashMap::with_capacity(limit.saturating_mul(2)),
            // One more than the limit: an entry is added before the oldest is forgotten.
            slots: Slab::with_capacity(limit.saturating_add(1)),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    pub(super) fn contains_key(&self, key: &Key) -> bool {
        self.index.contains_key(key)
    }

    pub(super) fn get(&self, key: &Key) -> Option<&Entry> {
        self.slots.get(*self.index.get(key)?)
    }

    pub(super) fn get_mut(&mut self, key: &Key) -> Option<&mut Entry> {
        self.slots.get_mut(*self.index.get(key)?)
    }

    pub(super) fn insert(&mut self, key: Key, entry: Entry) {
        match self
            .index
            .get(&key)
            .and_then(|slot| self.slots.get_mut(*slot))
        {
            Some(existing) => *existing = entry,
            None => {
                let slot = self.slots.insert(entry);
                self.index.insert(key, slot);
            }
        }
    }

    pub(super) fn remove(&mut self, key: &Key) -> Option<Entry> {
        let slot = self.index.remove(key)?;
        self.slots.try_remove(slot)
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Entry> {
        self.slots.iter().map(|(_, entry)| entry)
    }
}
