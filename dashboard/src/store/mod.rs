//! The dashboard's memory of requests and replies: an index of what was asked, what came back
//! and when, and where in Kafka the messages are.
//!
//! Compact on purpose (issue "Performance": 100,000 requests within 64 MiB): each request keeps
//! integers and enums, a short summary for the table and an error reason only when there is one
//! (`entries`). The payloads stay in Kafka and are read back by position for the detail page
//! and the API (see `crate::records`). Only the newest requests keep theirs in memory
//! (`cache`), so a client asking for its reply right after it arrives is answered without a
//! trip to the broker.
//!
//! Bounded (oldest requests are forgotten first), guarded by one short-held mutex, and the source
//! of the live-update events: every change is announced on a broadcast channel.

mod cache;
mod clock;
mod display;
mod entries;
mod key;
mod status;
mod waiters;

use contract::legacy::LegacyReply;
use contract::{ReplyContent, RequestKind, Topics};
use request_reply::headers::CorrelationId;
use request_reply::requester::{IncomingReply, SentRequest};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::broadcast;

use crate::feed::{Feed, REPLY_TEXT_BYTES, cut_text};
use cache::{PayloadCache, Payloads};
use clock::{Clock, micros, unix_millis};
use display::{SUMMARY_CHARS, bounded};
use entries::{Entries, Entry, NO_PARTITION, Position};
use key::Key;
use status::{Answer, legacy_number};
use waiters::Waiters;

pub use crate::feed::UncorrelatedReply;
pub use clock::from_unix_millis;
pub use display::{money, reply_body, request_summary};
pub use key::{MAX_CORRELATION_ID_BYTES, loggable_id};
pub use status::Status;

/// A reply as shown in the table and on the detail page, without its payload.
#[derive(Clone, Debug)]
pub struct ReplyRef {
    /// One line for the table: `Invoice #41002, total 41.31`.
    pub summary: String,
    pub kind: RequestKind,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Where a message sits in Kafka.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogPosition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl std::fmt::Display for LogPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.topic, self.partition, self.offset)
    }
}

/// How many duplicate replies of one request the store remembers the positions of; more are
/// only counted (a worker stuck in a redelivery loop must not grow the store).
pub const DUPLICATE_POSITIONS: usize = 16;

/// One request and everything the store knows about it, copied out for a page or the API.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// The correlation ID, canonical form.
    pub id: String,
    pub kind: RequestKind,
    /// One line for the table (see [`request_summary`]).
    pub summary: String,
    pub created_at: SystemTime,
    pub sent: Option<SentRequest>,
    pub status: Status,
    /// Why a request failed (send error or error reply).
    pub error: Option<String>,
    pub reply: Option<ReplyRef>,
    pub round_trip: Option<Duration>,
    /// The reply came after the request had been marked timed out.
    pub late: bool,
    /// Replies beyond the first (redeliveries).
    pub duplicate_replies: u32,
    /// Where the first [`DUPLICATE_POSITIONS`] of them are in the log.
    pub duplicates: Vec<LogPosition>,
    /// How long the broker took to acknowledge the request, while it is one of the newest;
    /// unknown for history.
    pub acked_after: Option<Duration>,
    /// The request's JSON as sent, while it is one of the newest.
    pub request_json: Option<Arc<[u8]>>,
    /// The reply's JSON as the API returns it ([`reply_body`]), while it is one of the newest.
    pub reply_json: Option<Arc<[u8]>>,
}

/// What changed, for live updates.
#[derive(Clone, Debug)]
pub enum Change {
    Request(String),
    /// A new entry of the uncorrelated feed, shared with the feed.
    Uncorrelated(Arc<UncorrelatedReply>),
}

/// What became of an incoming reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyOutcome {
    /// The first reply to a pending request, after this round trip.
    Matched(Duration),
    /// The first reply to a request already marked timed out.
    Late(Duration),
    Duplicate,
    Uncorrelated,
    /// Correlated, but to a request this instance did not send (another dashboard's).
    Foreign,
}

#[derive(Debug, Default)]
struct Inner {
    entries: Entries,
    /// Keys by time sent (ms since the epoch): eviction order and table order. Sorted rather
    /// than in arrival order because history arrives partition by partition, not in time order.
    order: BTreeSet<(i64, Key)>,
    /// Pending requests by deadline (µs on the store's clock), removed when they are settled.
    deadlines: BTreeSet<(i64, Key)>,
    /// Historic requests already overdue when read back, marked timed out at once and reported
    /// by the next [`Store::expire`].
    expired_unreported: usize,
    /// Which entries still hold their payloads, and what those cost.
    cache: PayloadCache,
    /// Where the duplicate replies of a request are (at most [`DUPLICATE_POSITIONS`] each),
    /// for the requests that had any: kept apart so the common entry stays small.
    duplicates: HashMap<Key, Vec<(RequestKind, Position)>>,
    uncorrelated: Feed,
}

#[derive(Debug)]
pub struct Store {
    inner: Mutex<Inner>,
    topics: Topics,
    timeout: Duration,
    limit: usize,
    /// The entries' monotonic clock.
    clock: Clock,
    changes: broadcast::Sender<Change>,
    waiters: Waiters,
}

impl Store {
    /// `topics` name the positions the store hands out: it keeps only partition and offset.
    pub fn new(topics: Topics, timeout: Duration, limit: usize) -> Self {
        let (changes, _) = broadcast::channel(1024);
        let limit = limit.max(1);
        Store {
            inner: Mutex::new(Inner {
                entries: Entries::with_capacity(limit),
                ..Inner::default()
            }),
            topics,
            timeout,
            limit,
            clock: Clock::start(),
            changes,
            waiters: Waiters::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn announce(&self, change: Change) {
        if let Change::Request(id) = &change
            && !self.waiters.is_empty()
        {
            self.waiters.wake(&Key::parse(id));
        }
        // No receivers is fine: nobody has a page open.
        let _ = self.changes.send(change);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// When a request started at `started_us` times out, in µs on the store's clock.
    fn deadline(&self, started_us: i64) -> i64 {
        started_us.saturating_add(micros(self.timeout))
    }

    /// Records a request before it is sent, so even an instant reply finds it. `payload` is the
    /// JSON being sent; it is kept while the request is one of the newest.
    pub fn insert_pending(&self, id: &str, kind: RequestKind, payload: &[u8]) {
        let created_ms = unix_millis(SystemTime::now());
        let started_us = self.clock.now();
        let mut entry = self.new_entry(kind, payload, created_ms, started_us);
        entry.payloads = Some(Box::new(Payloads {
            request: Arc::from(payload),
            reply: None,
            acked_after: None,
        }));
        self.insert(Key::parse(id), entry);
        self.announce(Change::Request(id.to_owned()));
    }

    /// Records a request read back from the log at start-up, as it was when it was sent. Its
    /// payload is not kept: the detail page reads it back like any other.
    pub fn insert_historic(
        &self,
        id: &CorrelationId,
        kind: RequestKind,
        payload: &[u8],
        created_at: SystemTime,
        sent: &SentRequest,
    ) {
        if id.as_bytes().len() > MAX_CORRELATION_ID_BYTES {
            return;
        }
        let key = Key::of(id);
        if self.lock().entries.contains_key(&key) {
            return;
        }
        let age = SystemTime::now()
            .duration_since(created_at)
            .unwrap_or_default();
        let started_us = self.clock.now() - micros(age);
        let mut entry = self.new_entry(kind, payload, unix_millis(created_at), started_us);
        entry.request_partition = sent.partition;
        entry.request_offset = sent.offset;
        self.insert(key, entry);
        self.announce(Change::Request(id.key()));
    }

    /// An entry for a request sent at `created_ms` (wall clock) and `started_us` (the store's
    /// clock): pending, or already timed out when its deadline has passed (old history).
    fn new_entry(
        &self,
        kind: RequestKind,
        payload: &[u8],
        created_ms: i64,
        started_us: i64,
    ) -> Entry {
        let request = serde_json::from_slice(payload).unwrap_or_default();
        let overdue = self.deadline(started_us) <= self.clock.now();
        Entry {
            created_ms,
            started_us,
            round_trip_us: 0,
            request_offset: 0,
            reply_offset: 0,
            request_partition: NO_PARTITION,
            reply_partition: NO_PARTITION,
            duplicate_replies: 0,
            kind,
            reply_kind: kind,
            status: if overdue {
                Status::TimedOut
            } else {
                Status::Pending
            },
            late: false,
            summary: bounded(&request_summary(&request), SUMMARY_CHARS),
            answer: Answer::NotYet,
            payloads: None,
        }
    }

    /// Adds `entry`, then forgets the oldest requests beyond the limit.
    fn insert(&self, key: Key, entry: Entry) {
        let created_ms = entry.created_ms;
        let mut inner = self.lock();
        if let Some(payloads) = &entry.payloads {
            inner.cache.added(key.clone(), payloads);
        }
        if entry.status == Status::TimedOut {
            inner.expired_unreported += 1;
        } else {
            inner
                .deadlines
                .insert((self.deadline(entry.started_us), key.clone()));
        }
        inner.order.insert((created_ms, key.clone()));
        inner.entries.insert(key, entry);
        while inner.entries.len() > self.limit {
            let Some((_, oldest)) = inner.order.pop_first() else {
                break;
            };
            let Some(entry) = inner.entries.remove(&oldest) else {
                continue;
            };
            inner
                .deadlines
                .remove(&(self.deadline(entry.started_us), oldest.clone()));
            inner.duplicates.remove(&oldest);
            if let Some(payloads) = entry.payloads {
                inner.cache.forgotten(&payloads);
            }
        }
        let inner = &mut *inner;
        inner.cache.trim(&mut inner.entries, self.limit);
    }

    /// The broker has the request.
    pub fn mark_sent(&self, id: &str, sent: &SentRequest) {
        let now_us = self.clock.now();
        if let Some(entry) = self.lock().entries.get_mut(&Key::parse(id)) {
            entry.request_partition = sent.partition;
            entry.request_offset = sent.offset;
            if let Some(payloads) = &mut entry.payloads {
                payloads.acked_after = Some(Duration::from_micros(
                    (now_us - entry.started_us).max(0).unsigned_abs(),
                ));
            }
        }
    }

    /// The broker did not take the request: it fails now rather than timing out later.
    pub fn mark_send_failed(&self, id: &str, reason: &str) {
        if let Some(entry) = self.lock().entries.get_mut(&Key::parse(id)) {
            entry.status = Status::Failed;
            entry.answer = Answer::error(reason);
        }
        self.announce(Change::Request(id.to_owned()));
    }

    /// Marks requests whose deadline has passed as timed out; returns how many.
    pub fn expire(&self, now: Instant) -> usize {
        let now_us = self.clock.micros(now);
        let mut expired = Vec::new();
        let unreported = {
            let mut inner = self.lock();
            while inner
                .deadlines
                .first()
                .is_some_and(|(deadline, _)| *deadline <= now_us)
            {
                let Some((_, key)) = inner.deadlines.pop_first() else {
                    break;
                };
                if let Some(entry) = inner.entries.get_mut(&key)
                    && entry.status == Status::Pending
                {
                    entry.status = Status::TimedOut;
                    expired.push(key);
                }
            }
            std::mem::take(&mut inner.expired_unreported)
        };
        let count = expired.len() + unreported;
        for key in expired {
            self.announce(Change::Request(key.text()));
        }
        count
    }

    pub fn record_reply(&self, reply: IncomingReply<Topics>) -> ReplyOutcome {
        self.apply_reply(reply, None)
    }

    /// Records a reply read back from the log at start-up; its round trip comes from the Kafka
    /// timestamps of request and reply.
    pub fn record_historic_reply(
        &self,
        reply: IncomingReply<Topics>,
        sent_at: Option<SystemTime>,
    ) -> ReplyOutcome {
        self.apply_reply(reply, sent_at)
    }

    fn apply_reply(
        &self,
        reply: IncomingReply<Topics>,
        sent_at: Option<SystemTime>,
    ) -> ReplyOutcome {
        let Some(correlation_id) = reply.correlation_id.as_ref() else {
            self.record_uncorrelated(reply);
            return ReplyOutcome::Uncorrelated;
        };
        if correlation_id.as_bytes().len() > MAX_CORRELATION_ID_BYTES {
            return ReplyOutcome::Foreign;
        }
        let key = Key::of(correlation_id);
        let now_us = self.clock.now();
        let outcome = {
            let mut inner = self.lock();
            let inner = &mut *inner;
            let Some(entry) = inner.entries.get_mut(&key) else {
                return ReplyOutcome::Foreign;
            };
            if entry.reply_at().is_some() {
                entry.duplicate_replies += 1;
                let positions = inner.duplicates.entry(key.clone()).or_default();
                if positions.len() < DUPLICATE_POSITIONS {
                    positions.push((
                        reply.kind,
                        Position {
                            partition: reply.partition,
                            offset: reply.offset,
                        },
                    ));
                }
                ReplyOutcome::Duplicate
            } else {
                let round_trip = match sent_at {
                    // A reply read back from the log was late if it came after the timeout,
                    // whatever the entry says now: while history is being rebuilt, an old
                    // request can be marked timed out a moment before its reply is applied.
                    Some(reply_time) => reply_time
                        .duration_since(from_unix_millis(entry.created_ms))
                        .unwrap_or_default(),
                    None => {
                        Duration::from_micros((now_us - entry.started_us).max(0).unsigned_abs())
                    }
                };
                let late = match sent_at {
                    Some(_) => round_trip > self.timeout,
                    None => entry.status == Status::TimedOut,
                };
                let answer = Answer::of(&reply.content);
                entry.status = if matches!(answer, Answer::Error(_)) {
                    Status::Failed
                } else {
                    Status::Completed
                };
                entry.answer = answer;
                entry.reply_kind = reply.kind;
                entry.reply_partition = reply.partition;
                entry.reply_offset = reply.offset;
                entry.round_trip_us = u64::try_from(round_trip.as_micros()).unwrap_or(u64::MAX);
                entry.late = late;
                inner
                    .deadlines
                    .remove(&(self.deadline(entry.started_us), key.clone()));
                if let Some(payloads) = &mut entry.payloads {
                    let body = serde_json::to_vec(&reply_body(&reply.content)).unwrap_or_default();
                    inner.cache.add_reply(payloads, body.into());
                }
                inner.cache.trim(&mut inner.entries, self.limit);
                if late {
                    ReplyOutcome::Late(round_trip)
                } else {
                    ReplyOutcome::Matched(round_trip)
                }
            }
        };
        self.announce(Change::Request(key.text()));
        outcome
    }

    fn record_uncorrelated(&self, reply: IncomingReply<Topics>) {
        let (text, number) = match &reply.content {
            ReplyContent::Text { text, legacy } => (
                cut_text(text, REPLY_TEXT_BYTES),
                legacy.map(|legacy| match legacy {
                    LegacyReply::Invoice { number } => number,
                    LegacyReply::Score { score } => score,
                }),
            ),
            other => (
                Answer::of(other).summary().unwrap_or_default(),
                legacy_number(other),
            ),
        };
        let added = self.lock().uncorrelated.push(UncorrelatedReply {
            kind: reply.kind,
            text,
            number,
            topic: reply.topic,
            partition: reply.partition,
            offset: reply.offset,
            received_at: SystemTime::now(),
        });
        self.announce(Change::Uncorrelated(added));
    }

    pub fn pending_count(&self) -> usize {
        self.lock()
            .entries
            .values()
            .filter(|entry| entry.status == Status::Pending)
            .count()
    }

    fn record(&self, inner: &Inner, key: &Key, entry: &Entry) -> RequestRecord {
        let replied = entry.reply_at().is_some();
        let duplicates = inner
            .duplicates
            .get(key)
            .map(|positions| {
                positions
                    .iter()
                    .map(|(kind, at)| LogPosition {
                        topic: self.topics.reply(*kind),
                        partition: at.partition,
                        offset: at.offset,
                    })
                    .collect()
            })
            .unwrap_or_default();
        RequestRecord {
            id: key.text(),
            kind: entry.kind,
            summary: entry.summary.to_string(),
            created_at: from_unix_millis(entry.created_ms),
            sent: entry.request_at().map(|at| SentRequest {
                topic: self.topics.request(entry.kind),
                partition: at.partition,
                offset: at.offset,
            }),
            status: entry.status,
            error: match &entry.answer {
                Answer::Error(reason) => Some(reason.to_string()),
                _ => None,
            },
            reply: entry.reply_at().map(|at| ReplyRef {
                summary: entry.answer.summary().unwrap_or_default(),
                kind: entry.reply_kind,
                topic: self.topics.reply(entry.reply_kind),
                partition: at.partition,
                offset: at.offset,
            }),
            round_trip: replied.then(|| Duration::from_micros(entry.round_trip_us)),
            late: entry.late,
            duplicate_replies: entry.duplicate_replies,
            duplicates,
            acked_after: entry
                .payloads
                .as_ref()
                .and_then(|payloads| payloads.acked_after),
            request_json: entry
                .payloads
                .as_ref()
                .map(|payloads| Arc::clone(&payloads.request)),
            reply_json: entry
                .payloads
                .as_ref()
                .and_then(|payloads| payloads.reply.clone()),
        }
    }

    pub fn get(&self, id: &str) -> Option<RequestRecord> {
        let key = Key::parse(id);
        let inner = self.lock();
        inner
            .entries
            .get(&key)
            .map(|entry| self.record(&inner, &key, entry))
    }

    /// The newest `count` requests whose kind and status satisfy `keep`, newest first.
    pub fn recent(
        &self,
        count: usize,
        keep: impl Fn(RequestKind, Status) -> bool,
    ) -> Vec<RequestRecord> {
        let inner = self.lock();
        inner
            .order
            .iter()
            .rev()
            .map(|(_, key)| key)
            .filter_map(|key| inner.entries.get(key).map(|entry| (key, entry)))
            .filter(|(_, entry)| keep(entry.kind, entry.status))
            .take(count)
            .map(|(key, entry)| self.record(&inner, key, entry))
            .collect()
    }

    /// The feed of uncorrelated replies, newest first.
    pub fn uncorrelated(&self) -> Vec<Arc<UncorrelatedReply>> {
        self.lock().uncorrelated.snapshot()
    }
}

#[cfg(test)]
mod tests;
