//! The dashboard's memory of requests and replies: what was asked, what came back, and when.
//!
//! Bounded (oldest requests are forgotten first), guarded by one short-held mutex, and the source
//! of the live-update events: every change is announced on a broadcast channel.

use request_reply::contract::legacy::LegacyReply;
use request_reply::contract::{Invoice, Outcome, RequestKind, Score};
use request_reply::requester::{IncomingReply, ReplyContent, SentRequest};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::broadcast;

/// How many uncorrelated replies are kept for the feed.
const UNCORRELATED_LIMIT: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
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

/// A reply as shown to people and returned by the API.
#[derive(Clone, Debug)]
pub struct ReplyView {
    /// One line for the table: `Invoice #41002, total 41.31`.
    pub summary: String,
    /// The reply in full: the JSON outcome, or the text as received.
    pub body: serde_json::Value,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Headers as text (binary values in hex), for the detail page.
    pub headers: Vec<(String, String)>,
}

/// One request and everything known about it.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// The correlation ID, canonical form.
    pub id: String,
    pub kind: RequestKind,
    /// One line for the table (see [`request_summary`]).
    pub summary: String,
    pub request: serde_json::Value,
    pub created_at: SystemTime,
    started: Instant,
    pub sent: Option<SentRequest>,
    /// Headers the request was sent with, as text.
    pub request_headers: Vec<(String, String)>,
    pub status: Status,
    /// Why a request failed (send error or error reply).
    pub error: Option<String>,
    pub reply: Option<ReplyView>,
    pub round_trip: Option<Duration>,
    /// The reply came after the request had been marked timed out.
    pub late: bool,
    /// Replies beyond the first (redeliveries); counted, not shown.
    pub duplicate_replies: u32,
}

/// A reply with no correlation ID, e.g. from the original Python workers.
#[derive(Clone, Debug)]
pub struct UncorrelatedReply {
    pub kind: RequestKind,
    pub text: String,
    /// The number read out of one of the original text forms, if it is one.
    pub number: Option<u64>,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub received_at: SystemTime,
}

/// What changed, for live updates.
#[derive(Clone, Debug)]
pub enum Change {
    Request(String),
    Uncorrelated,
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
    records: HashMap<String, RequestRecord>,
    /// Request IDs, oldest first: eviction order and table order.
    order: VecDeque<String>,
    /// Pending requests by deadline; deadlines grow with insertion since the timeout is fixed.
    deadlines: VecDeque<(Instant, String)>,
    uncorrelated: VecDeque<UncorrelatedReply>,
}

#[derive(Debug)]
pub struct Store {
    inner: Mutex<Inner>,
    timeout: Duration,
    limit: usize,
    changes: broadcast::Sender<Change>,
}

impl Store {
    pub fn new(timeout: Duration, limit: usize) -> Self {
        let (changes, _) = broadcast::channel(1024);
        Store {
            inner: Mutex::default(),
            timeout,
            limit: limit.max(1),
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

    /// Records a request before it is sent, so even an instant reply finds it.
    pub fn insert_pending(&self, id: &str, kind: RequestKind, request: serde_json::Value) {
        self.insert(id, kind, request, SystemTime::now(), Instant::now(), None);
    }

    /// Records a request read back from the log at start-up, as it was when it was sent.
    pub fn insert_historic(
        &self,
        id: &str,
        kind: RequestKind,
        request: serde_json::Value,
        created_at: SystemTime,
        sent: SentRequest,
    ) {
        if self.lock().records.contains_key(id) {
            return;
        }
        let age = SystemTime::now()
            .duration_since(created_at)
            .unwrap_or_default();
        let now = Instant::now();
        let started = now.checked_sub(age).unwrap_or(now);
        self.insert(id, kind, request, created_at, started, Some(sent));
    }

    fn insert(
        &self,
        id: &str,
        kind: RequestKind,
        request: serde_json::Value,
        created_at: SystemTime,
        started: Instant,
        sent: Option<SentRequest>,
    ) {
        let record = RequestRecord {
            id: id.to_owned(),
            kind,
            summary: request_summary(&request),
            request,
            created_at,
            started,
            sent,
            request_headers: Vec::new(),
            status: Status::Pending,
            error: None,
            reply: None,
            round_trip: None,
            late: false,
            duplicate_replies: 0,
        };
        {
            let mut inner = self.lock();
            inner.records.insert(id.to_owned(), record);
            inner.order.push_back(id.to_owned());
            inner
                .deadlines
                .push_back((started + self.timeout, id.to_owned()));
            while inner.order.len() > self.limit {
                if let Some(oldest) = inner.order.pop_front() {
                    inner.records.remove(&oldest);
                }
            }
        }
        self.announce(Change::Request(id.to_owned()));
    }

    /// The broker has the request; `headers` are the ones it was sent with, for the detail page.
    pub fn mark_sent(&self, id: &str, sent: SentRequest, headers: &[(String, Vec<u8>)]) {
        if let Some(record) = self.lock().records.get_mut(id) {
            record.sent = Some(sent);
        }
        self.set_request_headers(id, headers);
    }

    /// Keeps the headers a request was sent with, as text, for the detail page.
    pub fn set_request_headers(&self, id: &str, headers: &[(String, Vec<u8>)]) {
        if let Some(record) = self.lock().records.get_mut(id) {
            record.request_headers = headers
                .iter()
                .map(|(key, value)| (key.clone(), header_text(Some(value))))
                .collect();
        }
    }

    /// The broker did not take the request: it fails now rather than timing out later.
    pub fn mark_send_failed(&self, id: &str, reason: String) {
        if let Some(record) = self.lock().records.get_mut(id) {
            record.status = Status::Failed;
            record.error = Some(reason);
        }
        self.announce(Change::Request(id.to_owned()));
    }

    /// Marks requests whose deadline has passed as timed out; returns how many.
    pub fn expire(&self, now: Instant) -> usize {
        let mut expired = Vec::new();
        {
            let mut inner = self.lock();
            while inner
                .deadlines
                .front()
                .is_some_and(|(deadline, _)| *deadline <= now)
            {
                let Some((_, id)) = inner.deadlines.pop_front() else {
                    break;
                };
                if let Some(record) = inner.records.get_mut(&id) {
                    if record.status == Status::Pending {
                        record.status = Status::TimedOut;
                        expired.push(id);
                    }
                }
            }
        }
        let count = expired.len();
        for id in expired {
            self.announce(Change::Request(id));
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
        let Some(id) = reply.correlation_id.as_ref().map(|id| id.key()) else {
            self.record_uncorrelated(reply);
            return ReplyOutcome::Uncorrelated;
        };
        let outcome = {
            let mut inner = self.lock();
            let Some(record) = inner.records.get_mut(&id) else {
                return ReplyOutcome::Foreign;
            };
            if record.reply.is_some() {
                record.duplicate_replies += 1;
                ReplyOutcome::Duplicate
            } else {
                let late = match sent_at {
                    // A reply read back from the log was late if it came after the timeout,
                    // whatever the record says now: while history is being rebuilt, an old
                    // request can be marked timed out a moment before its reply is applied.
                    Some(reply_time) => {
                        reply_time
                            .duration_since(record.created_at)
                            .unwrap_or_default()
                            > self.timeout
                    }
                    None => record.status == Status::TimedOut,
                };
                let (view, error) = reply_view(&reply);
                record.status = if error.is_some() {
                    Status::Failed
                } else {
                    Status::Completed
                };
                record.error = error;
                record.reply = Some(view);
                let round_trip = match sent_at {
                    Some(reply_time) => reply_time
                        .duration_since(record.created_at)
                        .unwrap_or_default(),
                    None => record.started.elapsed(),
                };
                record.round_trip = Some(round_trip);
                record.late = late;
                if late {
                    ReplyOutcome::Late(round_trip)
                } else {
                    ReplyOutcome::Matched(round_trip)
                }
            }
        };
        self.announce(Change::Request(id));
        outcome
    }

    fn record_uncorrelated(&self, reply: IncomingReply) {
        let (text, number) = match &reply.content {
            ReplyContent::Text { text, legacy } => (
                text.clone(),
                legacy.map(|legacy| match legacy {
                    LegacyReply::Invoice { number } => number,
                    LegacyReply::Score { score } => score,
                }),
            ),
            other => (reply_view(&reply).0.summary, legacy_number(other)),
        };
        {
            let mut inner = self.lock();
            inner.uncorrelated.push_front(UncorrelatedReply {
                kind: reply.kind,
                text,
                number,
                topic: reply.topic,
                partition: reply.partition,
                offset: reply.offset,
                received_at: SystemTime::now(),
            });
            inner.uncorrelated.truncate(UNCORRELATED_LIMIT);
        }
        self.announce(Change::Uncorrelated);
    }

    pub fn pending_count(&self) -> usize {
        self.lock()
            .records
            .values()
            .filter(|record| record.status == Status::Pending)
            .count()
    }

    pub fn get(&self, id: &str) -> Option<RequestRecord> {
        self.lock().records.get(id).cloned()
    }

    /// The newest `count` requests that satisfy `keep`, newest first.
    pub fn recent(
        &self,
        count: usize,
        keep: impl Fn(&RequestRecord) -> bool,
    ) -> Vec<RequestRecord> {
        let inner = self.lock();
        inner
            .order
            .iter()
            .rev()
            .filter_map(|id| inner.records.get(id))
            .filter(|record| keep(record))
            .take(count)
            .cloned()
            .collect()
    }

    pub fn uncorrelated(&self) -> Vec<UncorrelatedReply> {
        self.lock().uncorrelated.iter().cloned().collect()
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

fn invoice_summary(invoice: &Invoice) -> String {
    format!(
        "Invoice #{}, total {}",
        invoice.number,
        money(invoice.total_cents)
    )
}

fn score_summary(score: &Score) -> String {
    format!("Score {}", score.score)
}

fn header_text(value: Option<&[u8]>) -> String {
    match value {
        None => "(null)".into(),
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) if !text.chars().any(char::is_control) => text.to_owned(),
            _ => format!(
                "0x{}",
                bytes
                    .iter()
                    .map(|byte| format!("{byte:02x}"))
                    .collect::<String>()
            ),
        },
    }
}

/// The shown form of a reply, and the error it reports, if any.
fn reply_view(reply: &IncomingReply) -> (ReplyView, Option<String>) {
    fn outcome_view<T: Serialize>(
        outcome: &Outcome<T>,
        summary: impl Fn(&T) -> String,
    ) -> (String, serde_json::Value, Option<String>) {
        let body = serde_json::to_value(outcome).unwrap_or_default();
        match outcome {
            Outcome::Ok(value) => (summary(value), body, None),
            Outcome::Error(error) => {
                let message = format!(
                    "{}: {}",
                    serde_json::to_value(error.code)
                        .unwrap_or_default()
                        .as_str()
                        .unwrap_or("error"),
                    error.message
                );
                (message.clone(), body, Some(message))
            }
        }
    }
    let (summary, body, error) = match &reply.content {
        ReplyContent::Invoice(outcome) => outcome_view(outcome, invoice_summary),
        ReplyContent::Score(outcome) => outcome_view(outcome, score_summary),
        ReplyContent::Text { text, .. } => {
            (text.clone(), serde_json::json!({ "text": text }), None)
        }
        ReplyContent::Undecodable(reason) => {
            let message = format!("undecodable reply: {reason}");
            (
                message.clone(),
                serde_json::json!({ "undecodable": reason }),
                Some(message),
            )
        }
    };
    let view = ReplyView {
        summary,
        body,
        topic: reply.topic.clone(),
        partition: reply.partition,
        offset: reply.offset,
        headers: reply
            .headers
            .iter()
            .map(|(key, value)| (key.to_owned(), header_text(value)))
            .collect(),
    };
    (view, error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use request_reply::contract::{ErrorBody, ErrorCode};
    use request_reply::headers::CorrelationId;
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
        let store = Store::new(timeout, 10);
        store.insert_pending(id, RequestKind::Score, serde_json::json!({"customer": "a"}));
        store
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
        let store = Store::new(Duration::from_secs(30), 10);
        let sent = SystemTime::now() - Duration::from_secs(120);
        for (offset, id) in [(0, "prompt"), (1, "slow")] {
            let at = SentRequest {
                topic: "calculate-score".into(),
                partition: 0,
                offset,
            };
            store.insert_historic(id, RequestKind::Score, serde_json::json!({}), sent, at);
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
    fn history_is_bounded_oldest_first() {
        let store = Store::new(Duration::from_secs(30), 3);
        for index in 0..5 {
            store.insert_pending(
                &format!("r{index}"),
                RequestKind::Score,
                serde_json::json!({}),
            );
        }
        let ids: Vec<String> = store
            .recent(10, |_| true)
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
    fn money_is_formatted_in_units_and_cents() {
        assert_eq!(money(0), "0.00");
        assert_eq!(money(4131), "41.31");
        assert_eq!(money(5), "0.05");
    }
}
