//! The request and reply JSON of the newest requests, kept in memory so that a client asking
//! for its reply right after it arrives is answered without a trip to the broker. Bounded by
//! bytes and by count; the oldest go first, and their entries stay in the index without them.

use std::collections::VecDeque;
use std::sync::Arc;

use super::entries::Entries;
use super::key::Key;

/// Request and reply JSON kept in memory for the newest requests, in bytes.
pub(super) const PAYLOAD_CACHE_BYTES: usize = 4 << 20;
/// What one cached pair costs besides its bytes (allocation headers), for the cache's bound.
const PAYLOAD_OVERHEAD: usize = 96;

/// The request and reply JSON of one of the newest requests, and when the broker acknowledged
/// the request (kept here rather than in every entry: only recent requests are looked at
/// closely enough to need it).
#[derive(Debug)]
pub(super) struct Payloads {
    pub(super) request: Arc<[u8]>,
    pub(super) reply: Option<Arc<[u8]>>,
    /// How long after sending the broker acknowledged the request, once it has.
    pub(super) acked_after: Option<std::time::Duration>,
}

impl Payloads {
    pub(super) fn cost(&self) -> usize {
        PAYLOAD_OVERHEAD + self.request.len() + self.reply.as_ref().map_or(0, |reply| reply.len())
    }
}

/// Which entries hold payloads, oldest first, and what they cost in all. The payloads
/// themselves live in their entries.
#[derive(Debug, Default)]
pub(super) struct PayloadCache {
    keys: VecDeque<Key>,
    pub(super) bytes: usize,
}

impl PayloadCache {
    /// Counts the payloads just given to the entry under `key`.
    pub(super) fn added(&mut self, key: Key, payloads: &Payloads) {
        self.bytes += payloads.cost();
        self.keys.push_back(key);
    }

    /// Caches a reply's JSON with the request it answers.
    pub(super) fn add_reply(&mut self, payloads: &mut Payloads, reply: Arc<[u8]>) {
        self.bytes += reply.len();
        payloads.reply = Some(reply);
    }

    /// Uncounts the payloads of an entry that was forgotten.
    pub(super) fn forgotten(&mut self, payloads: &Payloads) {
        self.bytes -= payloads.cost();
    }

    /// Drops the oldest cached payloads until the cache fits its bounds: [`PAYLOAD_CACHE_BYTES`]
    /// and `limit` entries.
    pub(super) fn trim(&mut self, entries: &mut Entries, limit: usize) {
        while self.bytes > PAYLOAD_CACHE_BYTES || self.keys.len() > limit {
            let Some(key) = self.keys.pop_front() else {
                break;
            };
            if let Some(payloads) = entries
                .get_mut(&key)
                .and_then(|entry| entry.payloads.take())
            {
                self.bytes -= payloads.cost();
            }
        }
    }
}
