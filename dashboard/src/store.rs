//! The dashboard's memory of requests and replies: an index of what was asked, what came back
//! and when, and where in Kafka the messages are.
//!
//! Compact on purpose (issue "Performance": 100,000 requests within 64 MiB): each request keeps
//! integers and enums, a short summary for the table and an error reason only when there is one.
//! The payloads stay in Kafka and are read back by position for the detail page and the API
//! (see `crate::records`). Only the newest requests keep theirs in memory, up to
//! `PAYLOAD_CACHE_BYTES`, so a client asking for its reply right after it arrives is answered
//! without a trip to the broker.
//!
//! Bounded (oldest requests are forgotten first), guarded by one short-held mutex, and the source
//! of the live-update events: every change is announced on a broadcast channel.

use contract::legacy::LegacyReply;
use contract::{Outcome, RequestKind, Topics};
use request_reply::headers::CorrelationId;
use request_reply::requester::{IncomingReply, ReplyContent, SentRequest};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast;

use crate::feed::{Feed, REPLY_TEXT_BYTES, cut_text};

/// Longest correlation ID kept or logged, in bytes. Ours are UUIDs (36 bytes of text, or 16
/// raw bytes from Spring); a reply or a request in the log with a longer one cannot be one of
/// ours, so it is not stored (a hostile 100 KB ID would otherwise be kept and logged in full).
pub const MAX_CORRELATION_ID_BYTES: usize = 128;
/// Longest request summary or reply text the table keeps, in characters; the detail page reads
/// the rest back from Kafka.
const SUMMARY_CHARS: usize = 80;
/// Longest error reason kept, in characters.
const ERROR_CHARS: usize = 300;
/// Request and reply JSON kept in memory for the newest requests, in bytes.
const PAYLOAD_CACHE_BYTES: usize = 4 << 20;
/// What one cached pair costs besides its bytes (allocation headers), for the cache's bound.
const PAYLOAD_OVERHEAD: usize = 96;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Completed,
    Failed,
    TimedOut,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::TimedOut => "timed_out",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::TimedOut => "timed out",
        }
    }
}

/// A correlation ID as the store keys it: 16 bytes for a UUID (ours, Spring's), the canonical
/// text only for the rare other kinds.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    Uuid([u8; 16]),
    Other(Box<str>),
}

impl Key {
    fn of(id: &CorrelationId) -> Key {
        match id.uuid() {
            Some(uuid) => Key::Uuid(uuid.into_bytes()),
            None => Key::Other(id.key().into()),
        }
    }

    /// From the canonical text ([`CorrelationId::key`]), as in URLs.
    fn parse(text: &str) -> Key {
        Key::of(&CorrelationId::from_bytes(text.as_bytes()))
    }

    fn text(&self) -> String {
        match self {
            Key::Uuid(bytes) => CorrelationId::from_bytes(bytes).key(),
            Key::Other(text) => text.to_string(),
        }
    }
}

/// Where a message is in its partition; the topic follows from the request kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Position {
    partition: i32,
    offset: i64,
}

/// What came back, as little as the table needs: numbers rather than formatted text.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Answer {
    NotYet,
    Invoice {
        number: u64,
        total_cents: u64,
    },
    Score(u32),
    /// A text reply, cut to [`SUMMARY_CHARS`].
    Text(Box<str>),
    /// An error reply, an undecodable one, or a request the broker did not take.
    Error(Box<str>),
}

impl Answer {
    fn of(content: &ReplyContent) -> Answer {
        fn outcome<T>(outcome: &Outcome<T>, ok: impl Fn(&T) -> Answer) -> Answer {
            match outcome {
                Outcome::Ok(value) => ok(value),
                Outcome::Error(error) => {
                    let code = serde_json::to_value(error.code).unwrap_or_default();
                    Answer::error(&format!(
                        "{}: {}",
                        code.as_str().unwrap_or("error"),
                        error.message
                    ))
                }
            }
        }
        match content {
            ReplyContent::Invoice(invoice) => outcome(invoice, |invoice| Answer::Invoice {
                number: invoice.number,
                total_cents: invoice.total_cents,
            }),
            ReplyContent::Score(score) => outcome(score, |score| Answer::Score(score.score)),
            ReplyContent::Text { text, .. } => Answer::Text(bounded(text, SUMMARY_CHARS)),
            ReplyContent::Undecodable(reason) => {
                Answer::error(&format!("undecodable reply: {reason}"))
            }
        }
    }

    fn error(message: &str) -> Answer {
        Answer::Error(bounded(message, ERROR_CHARS))
    }

    /// One line for the table: `Invoice #41002, total 41.31`.
    fn summary(&self) -> Option<String> {
        match self {
            Answer::NotYet => None,
            Answer::Invoice {
                number,
                total_cents,
            } => Some(format!("Invoice #{number}, total {}", money(*total_cents))),
            Answer::Score(score) => Some(format!("Score {score}")),
            Answer::Text(text) | Answer::Error(text) => Some(text.to_string()),
        }
    }
}

/// The request and reply JSON of one of the newest requests.
#[derive(Debug)]
struct Payloads {
    request: Arc<[u8]>,
    reply: Option<Arc<[u8]>>,
}

impl Payloads {
    fn cost(&self) -> usize {
        PAYLOAD_OVERHEAD + self.request.len() + self.reply.as_ref().map_or(0, |reply| reply.len())
    }
}

/// The partition of a position not known yet.
const NO_PARTITION: i32 = -1;

/// One remembered request: about 100 bytes, plus the summary's few dozen.
#[derive(Debug)]
struct Entry {
    /// When it was sent, in milliseconds since the epoch (the Kafka timestamp for history).
    created_ms: i64,
    /// When it was sent on the store's monotonic clock, in microseconds from [`Store::epoch`]
    /// (negative for history from before this process): round trips do not jump with the
    /// wall clock.
    started_us: i64,
    /// Meaningful once there is a reply.
    round_trip_us: u64,
    // Positions of request and reply, split up and with [`NO_PARTITION`] for "none yet": two
    // `Option<Position>` would take 48 bytes instead of 24 (2.4 MB per 100,000 entries).
    request_offset: i64,
    reply_offset: i64,
    request_partition: i32,
    reply_partition: i32,
    duplicate_replies: u32,
    kind: RequestKind,
    /// Which reply topic the reply came on.
    reply_kind: RequestKind,
    status: Status,
    late: bool,
    summary: Box<str>,
    answer: Answer,
    payloads: Option<Box<Payloads>>,
}

impl Entry {
    fn request_at(&self) -> Option<Position> {
        (self.request_partition != NO_PARTITION).then_some(Position {
            partition: self.request_partition,
            offset: self.request_offset,
        })
    }

    fn reply_at(&self) -> Option<Position> {
        (self.reply_partition != NO_PARTITION).then_some(Position {
            partition: self.reply_partition,
            offset: self.reply_offset,
        })
    }
}

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
    /// Replies beyond the first (redeliveries); counted, not shown.
    pub duplicate_replies: u32,
    /// The request's JSON as sent, while it is one of the newest.
    pub request_json: Option<Arc<[u8]>>,
    /// The reply's JSON as the API returns it ([`reply_body`]), while it is one of the newest.
    pub reply_json: Option<Arc<[u8]>>,
}

pub use crate::feed::UncorrelatedReply;

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

/// The entries in slots that are reused as old ones are forgotten, found through a map from
/// key to slot.
///
/// Not a `HashMap<Key, Entry>`: with entries forgotten and added all the time, the map fills
/// with tombstones and, when more than half full, rebuilds itself at twice the size; with
/// ~130-byte buckets that is 33 MB for 100,000 entries, resident because the hash spreads them
/// over every page. Here the map's buckets are 32 bytes and sized up front so that it always
/// rebuilds in place, and the entries sit in a `Vec` that never outgrows the limit.
#[derive(Debug, Default)]
struct Entries {
    index: HashMap<Key, usize>,
    slots: Vec<Option<Entry>>,
    /// Slots whose entries were forgotten, for the next ones.
    free: Vec<usize>,
}

impl Entries {
    fn with_capacity(limit: usize) -> Self {
        Entries {
            // Twice the limit: rebuilding in place needs the map at most half full.
            index: HashMap::with_capacity(limit.saturating_mul(2)),
            slots: Vec::with_capacity(limit.saturating_add(1)),
            free: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    fn contains_key(&self, key: &Key) -> bool {
        self.index.contains_key(key)
    }

    fn get(&self, key: &Key) -> Option<&Entry> {
        self.slots.get(*self.index.get(key)?)?.as_ref()
    }

    fn get_mut(&mut self, key: &Key) -> Option<&mut Entry> {
        self.slots.get_mut(*self.index.get(key)?)?.as_mut()
    }

    fn insert(&mut self, key: Key, entry: Entry) {
        if let Some(slot) = self.index.get(&key).copied() {
            self.slots[slot] = Some(entry);
            return;
        }
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(entry);
                slot
            }
            None => {
                self.slots.push(Some(entry));
                self.slots.len() - 1
            }
        };
        self.index.insert(key, slot);
    }

    fn remove(&mut self, key: &Key) -> Option<Entry> {
        let slot = self.index.remove(key)?;
        self.free.push(slot);
        self.slots.get_mut(slot)?.take()
    }

    fn values(&self) -> impl Iterator<Item = &Entry> {
        self.slots.iter().flatten()
    }
}

#[derive(Debug, Default)]
struct Inner {
    entries: Entries,
    /// Keys by time sent (ms since the epoch): eviction order and table order. Sorted rather
    /// than in arrival order because history arrives partition by partition, not in time order.
    order: BTreeSet<(i64, Key)>,
    /// Pending requests by deadline (µs from the epoch), removed when they are settled.
    deadlines: BTreeSet<(i64, Key)>,
    /// Historic requests already overdue when read back, marked timed out at once and reported
    /// by the next [`Store::expire`].
    expired_unreported: usize,
    /// Keys of the requests holding payloads, oldest first.
    cached: VecDeque<Key>,
    cached_bytes: usize,
    uncorrelated: Feed,
}

impl Inner {
    /// Drops the oldest cached payloads until the cache fits its bounds.
    fn trim_cache(&mut self, limit: usize) {
        while self.cached_bytes > PAYLOAD_CACHE_BYTES || self.cached.len() > limit {
            let Some(key) = self.cached.pop_front() else {
                break;
            };
            if let Some(payloads) = self
                .entries
                .get_mut(&key)
                .and_then(|entry| entry.payloads.take())
            {
                self.cached_bytes -= payloads.cost();
            }
        }
    }
}

#[derive(Debug)]
pub struct Store {
    inner: Mutex<Inner>,
    topics: Topics,
    timeout: Duration,
    limit: usize,
    /// The zero of the entries' monotonic clock.
    epoch: Instant,
    changes: broadcast::Sender<Change>,
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
            epoch: Instant::now(),
            changes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn announce(&self, change: Change) {
        // No receivers is fine: nobody has a page open.
        let _ = self.changes.send(change);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// `instant` in microseconds from the epoch, negative before it.
    fn micros(&self, instant: Instant) -> i64 {
        match instant.checked_duration_since(self.epoch) {
            Some(after) => micros(after),
            None => -micros(self.epoch.duration_since(instant)),
        }
    }

    /// When a request started at `started_us` times out, in µs from the epoch.
    fn deadline(&self, started_us: i64) -> i64 {
        started_us.saturating_add(micros(self.timeout))
    }

    /// Records a request before it is sent, so even an instant reply finds it. `payload` is the
    /// JSON being sent; it is kept while the request is one of the newest.
    pub fn insert_pending(&self, id: &str, kind: RequestKind, payload: &[u8]) {
        let created_ms = unix_millis(SystemTime::now());
        let started_us = self.micros(Instant::now());
        let mut entry = self.new_entry(kind, payload, created_ms, started_us);
        entry.payloads = Some(Box::new(Payloads {
            request: Arc::from(payload),
            reply: None,
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
        let started_us = self.micros(Instant::now()) - micros(age);
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
        let overdue = self.deadline(started_us) <= self.micros(Instant::now());
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
            inner.cached_bytes += payloads.cost();
            inner.cached.push_back(key.clone());
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
                .remove(&(self.deadline(entry.started_us), oldest));
            if let Some(payloads) = entry.payloads {
                inner.cached_bytes -= payloads.cost();
            }
        }
        inner.trim_cache(self.limit);
    }

    /// The broker has the request.
    pub fn mark_sent(&self, id: &str, sent: &SentRequest) {
        if let Some(entry) = self.lock().entries.get_mut(&Key::parse(id)) {
            entry.request_partition = sent.partition;
            entry.request_offset = sent.offset;
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
        let now_us = self.micros(now);
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

    pub fn record_reply(&self, reply: IncomingReply) -> ReplyOutcome {
        self.apply_reply(reply, None)
    }

    /// Records a reply read back from the log at start-up; its round trip comes from the Kafka
    /// timestamps of request and reply.
    pub fn record_historic_reply(
        &self,
        reply: IncomingReply,
        sent_at: Option<SystemTime>,
    ) -> ReplyOutcome {
        self.apply_reply(reply, sent_at)
    }

    fn apply_reply(&self, reply: IncomingReply, sent_at: Option<SystemTime>) -> ReplyOutcome {
        let Some(correlation_id) = reply.correlation_id.as_ref() else {
            self.record_uncorrelated(reply);
            return ReplyOutcome::Uncorrelated;
        };
        if correlation_id.as_bytes().len() > MAX_CORRELATION_ID_BYTES {
            return ReplyOutcome::Foreign;
        }
        let key = Key::of(correlation_id);
        let now_us = self.micros(Instant::now());
        let outcome = {
            let mut inner = self.lock();
            let inner = &mut *inner;
            let Some(entry) = inner.entries.get_mut(&key) else {
                return ReplyOutcome::Foreign;
            };
            if entry.reply_at().is_some() {
                entry.duplicate_replies += 1;
                ReplyOutcome::Duplicate
            } else {
                let round_trip = match sent_at {
                    // A reply read back from the log was late if it came after the timeout,
                    // whatever the entry says now: while history is being rebuilt, an old
                    // request can be marked timed out a moment before its reply is applied.
                    Some(reply_time) => {
                        let created = UNIX_EPOCH
                            + Duration::from_millis(entry.created_ms.max(0).unsigned_abs());
                        reply_time.duration_since(created).unwrap_or_default()
                    }
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
                    let body: Arc<[u8]> = serde_json::to_vec(&reply_body(&reply.content))
                        .unwrap_or_default()
                        .into();
                    inner.cached_bytes += body.len();
                    payloads.reply = Some(body);
                }
                inner.trim_cache(self.limit);
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

    fn record_uncorrelated(&self, reply: IncomingReply) {
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

    fn record(&self, key: &Key, entry: &Entry) -> RequestRecord {
        let replied = entry.reply_at().is_some();
        RequestRecord {
            id: key.text(),
            kind: entry.kind,
            summary: entry.summary.to_string(),
            created_at: UNIX_EPOCH + Duration::from_millis(entry.created_ms.max(0).unsigned_abs()),
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
            .map(|entry| self.record(&key, entry))
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
            .map(|(key, entry)| self.record(key, entry))
            .collect()
    }

    /// The feed of uncorrelated replies, newest first.
    pub fn uncorrelated(&self) -> Vec<Arc<UncorrelatedReply>> {
        self.lock().uncorrelated.snapshot()
    }

    /// Waits until the request is no longer pending or `wait` has passed; returns its latest state.
    pub async fn wait_for_reply(&self, id: &str, wait: Duration) -> Option<RequestRecord> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut changes = self.subscribe();
        loop {
            let record = self.get(id)?;
            if record.status != Status::Pending {
                return Some(record);
            }
            match tokio::time::timeout_at(deadline, changes.recv()).await {
                Err(_) => return Some(record),
                Ok(Err(broadcast::error::RecvError::Closed)) => return Some(record),
                // A change (or lagging behind several) means: look again.
                Ok(_) => {}
            }
        }
    }
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

fn unix_millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
    })
}

/// `text` cut to `max_chars` characters, the cut marked with an ellipsis.
fn bounded(text: &str, max_chars: usize) -> Box<str> {
    match text.char_indices().nth(max_chars) {
        None => text.into(),
        Some(_) => {
            let keep: String = text.chars().take(max_chars.saturating_sub(1)).collect();
            format!("{keep}…").into()
        }
    }
}

/// A correlation ID as logs show it: in full up to [`MAX_CORRELATION_ID_BYTES`], else its
/// first bytes and its length, so a hostile ID cannot flood the log.
pub fn loggable_id(id: &CorrelationId) -> String {
    let bytes = id.as_bytes();
    if bytes.len() <= MAX_CORRELATION_ID_BYTES {
        return id.key();
    }
    let start = CorrelationId::from_bytes(&bytes[..32]).key();
    format!("{start}… ({} bytes)", bytes.len())
}

fn legacy_number(content: &ReplyContent) -> Option<u64> {
    match content {
        ReplyContent::Invoice(Outcome::Ok(invoice)) => Some(invoice.number),
        ReplyContent::Score(Outcome::Ok(score)) => Some(u64::from(score.score)),
        _ => None,
    }
}

/// One line for the table: the customer, and the number of lines for invoices.
pub fn request_summary(request: &serde_json::Value) -> String {
    let customer = request["customer"].as_str().unwrap_or("(no customer)");
    match request["lines"].as_array().map(Vec::len) {
        Some(1) => format!("{customer}, 1 line"),
        Some(lines) => format!("{customer}, {lines} lines"),
        None => customer.to_owned(),
    }
}

/// Formats integer cents as `1234.50`.
pub fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// A reply in full as the API returns it and the detail page shows it: the JSON outcome, the
/// text as received, or why it could not be read.
pub fn reply_body(content: &ReplyContent) -> serde_json::Value {
    match content {
        ReplyContent::Invoice(outcome) => serde_json::to_value(outcome).unwrap_or_default(),
        ReplyContent::Score(outcome) => serde_json::to_value(outcome).unwrap_or_default(),
        ReplyContent::Text { text, .. } => serde_json::json!({ "text": text }),
        ReplyContent::Undecodable(reason) => serde_json::json!({ "undecodable": reason }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::{ErrorBody, ErrorCode, Score};
    use request_reply::kafka::HeaderList;

    fn reply(id: Option<&str>, content: ReplyContent) -> IncomingReply {
        IncomingReply {
            kind: RequestKind::Score,
            topic: "score-calculated".into(),
            partition: 1,
            offset: 7,
            correlation_id: id.map(|id| CorrelationId::from_bytes(id.as_bytes())),
            headers: HeaderList::default(),
            content,
        }
    }

    fn score(value: u32) -> ReplyContent {
        ReplyContent::Score(Outcome::Ok(Score {
            customer: "a".into(),
            score: value,
            explanation: "e".into(),
        }))
    }

    fn store_with(id: &str, timeout: Duration) -> Store {
        let store = Store::new(Topics::with_prefix(""), timeout, 10);
        store.insert_pending(id, RequestKind::Score, br#"{"customer": "a"}"#);
        store
    }

    fn sent_at(offset: i64) -> SentRequest {
        SentRequest {
            topic: "calculate-score".into(),
            partition: 0,
            offset,
        }
    }

    #[test]
    fn a_reply_completes_its_request_once_and_counts_duplicates() {
        let store = store_with("r1", Duration::from_secs(30));
        assert!(matches!(
            store.record_reply(reply(Some("r1"), score(500))),
            ReplyOutcome::Matched(_)
        ));
        assert_eq!(
            store.record_reply(reply(Some("r1"), score(500))),
            ReplyOutcome::Duplicate
        );
        let record = store.get("r1").unwrap();
        assert_eq!(record.status, Status::Completed);
        assert_eq!(record.duplicate_replies, 1);
        assert_eq!(record.reply.unwrap().summary, "Score 500");
        assert!(record.round_trip.is_some());
    }

    #[test]
    fn error_replies_fail_the_request_with_their_message() {
        let store = store_with("r1", Duration::from_secs(30));
        let content = ReplyContent::Score(Outcome::Error(ErrorBody {
            code: ErrorCode::InvalidRequest,
            message: "customer: must not be empty".into(),
        }));
        store.record_reply(reply(Some("r1"), content));
        let record = store.get("r1").unwrap();
        assert_eq!(record.status, Status::Failed);
        assert_eq!(
            record.error.unwrap(),
            "invalid_request: customer: must not be empty"
        );
    }

    #[test]
    fn pending_requests_time_out_and_late_replies_are_marked() {
        let store = store_with("r1", Duration::ZERO);
        assert_eq!(store.expire(Instant::now()), 1);
        assert_eq!(store.get("r1").unwrap().status, Status::TimedOut);
        assert!(matches!(
            store.record_reply(reply(Some("r1"), score(1))),
            ReplyOutcome::Late(_)
        ));
        let record = store.get("r1").unwrap();
        assert!(record.late);
        assert_eq!(record.status, Status::Completed);
        assert_eq!(store.expire(Instant::now()), 0);
    }

    #[test]
    fn rebuilt_history_is_late_only_when_the_reply_came_after_the_timeout() {
        let store = Store::new(Topics::with_prefix(""), Duration::from_secs(30), 10);
        let sent = SystemTime::now() - Duration::from_secs(120);
        for (offset, id) in [(0, "prompt"), (1, "slow")] {
            store.insert_historic(
                &CorrelationId::from_bytes(id.as_bytes()),
                RequestKind::Score,
                b"{}",
                sent,
                &sent_at(offset),
            );
        }
        // Two minutes old: the expiry marks both timed out before their replies are applied.
        assert_eq!(store.expire(Instant::now()), 2);
        let prompt = store.record_historic_reply(
            reply(Some("prompt"), score(1)),
            Some(sent + Duration::from_millis(40)),
        );
        assert!(matches!(prompt, ReplyOutcome::Matched(_)), "{prompt:?}");
        let slow = store.record_historic_reply(
            reply(Some("slow"), score(2)),
            Some(sent + Duration::from_secs(45)),
        );
        assert!(matches!(slow, ReplyOutcome::Late(_)), "{slow:?}");
        assert!(!store.get("prompt").unwrap().late);
        assert!(store.get("slow").unwrap().late);
        assert_eq!(store.get("prompt").unwrap().status, Status::Completed);
    }

    #[test]
    fn uncorrelated_and_foreign_replies_are_told_apart() {
        let store = store_with("r1", Duration::from_secs(30));
        let text = ReplyContent::Text {
            text: "Calculated score: 42.".into(),
            legacy: Some(LegacyReply::Score { score: 42 }),
        };
        assert_eq!(
            store.record_reply(reply(None, text)),
            ReplyOutcome::Uncorrelated
        );
        assert_eq!(
            store.record_reply(reply(Some("other"), score(1))),
            ReplyOutcome::Foreign
        );
        let feed = store.uncorrelated();
        assert_eq!(feed.len(), 1);
        assert_eq!(feed[0].number, Some(42));
        assert_eq!(store.get("r1").unwrap().status, Status::Pending);
    }

    #[test]
    fn overlong_correlation_ids_are_neither_stored_nor_logged_in_full() {
        let store = store_with("r1", Duration::from_secs(30));
        let long = "x".repeat(100 * 1024);
        assert_eq!(
            store.record_reply(reply(Some(&long), score(1))),
            ReplyOutcome::Foreign
        );
        let id = CorrelationId::from_bytes(long.as_bytes());
        let sent = SentRequest {
            topic: "calculate-score".into(),
            partition: 0,
            offset: 0,
        };
        store.insert_historic(&id, RequestKind::Score, b"{}", SystemTime::now(), &sent);
        assert!(store.get(&long).is_none());
        let logged = loggable_id(&id);
        assert!(logged.len() < 100, "{logged}");
        assert!(logged.ends_with("(102400 bytes)"), "{logged}");
        assert_eq!(loggable_id(&CorrelationId::from_bytes(b"r1")), "r1");
    }

    #[test]
    fn history_is_bounded_oldest_first() {
        let store = Store::new(Topics::with_prefix(""), Duration::from_secs(30), 3);
        for index in 0..5 {
            store.insert_pending(&format!("r{index}"), RequestKind::Score, b"{}");
        }
        let ids: Vec<String> = store
            .recent(10, |_, _| true)
            .into_iter()
            .map(|record| record.id)
            .collect();
        assert_eq!(ids, ["r4", "r3", "r2"]);
        assert!(store.get("r0").is_none());
    }

    #[tokio::test]
    async fn waiting_returns_as_soon_as_the_reply_is_in() {
        let store = std::sync::Arc::new(store_with("r1", Duration::from_secs(30)));
        let waiter = {
            let store = std::sync::Arc::clone(&store);
            tokio::spawn(async move { store.wait_for_reply("r1", Duration::from_secs(30)).await })
        };
        // The waiter re-reads the record after subscribing, so the reply may land at any moment.
        store.record_reply(reply(Some("r1"), score(3)));
        let record = waiter.await.unwrap().unwrap();
        assert_eq!(record.status, Status::Completed);
        assert!(
            store
                .wait_for_reply("missing", Duration::ZERO)
                .await
                .is_none()
        );
    }

    #[test]
    fn history_read_out_of_order_keeps_the_newest_in_time_order() {
        let store = Store::new(Topics::with_prefix(""), Duration::from_secs(30), 3);
        let base = SystemTime::now() - Duration::from_secs(600);
        // Two partitions read one after the other: times interleave.
        for (offset, seconds) in [(0, 1), (1, 3), (2, 5), (3, 2), (4, 4), (5, 6)] {
            store.insert_historic(
                &CorrelationId::from_bytes(format!("t{seconds}").as_bytes()),
                RequestKind::Score,
                b"{}",
                base + Duration::from_secs(seconds),
                &sent_at(offset),
            );
        }
        let ids: Vec<String> = store
            .recent(10, |_, _| true)
            .into_iter()
            .map(|record| record.id)
            .collect();
        assert_eq!(ids, ["t6", "t5", "t4"]);
        assert_eq!(store.get("t4").unwrap().sent.unwrap().offset, 4);
    }

    #[test]
    fn uuid_ids_are_found_by_their_canonical_text() {
        let id = CorrelationId::generate();
        let store = Store::new(Topics::with_prefix("p."), Duration::from_secs(30), 10);
        store.insert_pending(
            &id.key(),
            RequestKind::Invoice,
            br#"{"customer":"ACME","lines":[{}]}"#,
        );
        store.mark_sent(&id.key(), &sent_at(9));
        let record = store.get(&id.key()).unwrap();
        assert_eq!(record.id, id.key());
        assert_eq!(record.summary, "ACME, 1 line");
        // The position comes back with the topic named from the kind and the prefix.
        assert_eq!(record.sent.unwrap().topic, "p.generate-invoice");
        assert!(store.get(&CorrelationId::generate().key()).is_none());
    }

    /// The issue's budget: 100,000 requests within 64 MiB. The entry itself stays small; its
    /// map slot, order key and summary add about as much again.
    #[test]
    fn an_entry_is_compact() {
        assert!(
            std::mem::size_of::<Entry>() <= 104,
            "{} bytes",
            std::mem::size_of::<Entry>()
        );
        assert!(std::mem::size_of::<Key>() <= 24);
    }

    #[test]
    fn summaries_and_errors_are_bounded() {
        let store = store_with("r1", Duration::from_secs(30));
        let long = "x".repeat(10_000);
        store.insert_pending(
            "r2",
            RequestKind::Score,
            format!(r#"{{"customer":"{long}"}}"#).as_bytes(),
        );
        store.mark_send_failed("r2", &long);
        let record = store.get("r2").unwrap();
        assert_eq!(record.summary.chars().count(), SUMMARY_CHARS);
        assert!(record.summary.ends_with('…'));
        assert_eq!(record.error.unwrap().chars().count(), ERROR_CHARS);
    }

    #[test]
    fn only_the_newest_payloads_stay_in_memory() {
        let store = Store::new(Topics::with_prefix(""), Duration::from_secs(30), 100_000);
        let payload = format!(r#"{{"customer":"{}"}}"#, "c".repeat(10_000));
        let count = PAYLOAD_CACHE_BYTES / payload.len() + 10;
        for index in 0..count {
            store.insert_pending(&format!("r{index}"), RequestKind::Score, payload.as_bytes());
        }
        assert!(store.lock().cached_bytes <= PAYLOAD_CACHE_BYTES);
        let newest = store.get(&format!("r{}", count - 1)).unwrap();
        assert_eq!(newest.request_json.as_deref(), Some(payload.as_bytes()));
        assert!(store.get("r0").unwrap().request_json.is_none());
        // The index entry outlives its payload.
        assert_eq!(store.get("r0").unwrap().status, Status::Pending);
        // A reply to a cached request is cached with it.
        store.record_reply(reply(Some(&format!("r{}", count - 1)), score(7)));
        let replied = store.get(&format!("r{}", count - 1)).unwrap();
        let body: serde_json::Value =
            serde_json::from_slice(replied.reply_json.as_deref().unwrap()).unwrap();
        assert_eq!(body["ok"]["score"], 7);
    }

    #[test]
    fn money_is_formatted_in_units_and_cents() {
        assert_eq!(money(0), "0.00");
        assert_eq!(money(4131), "41.31");
        assert_eq!(money(5), "0.05");
    }
}
