use super::cache::PAYLOAD_CACHE_BYTES;
use super::display::{ERROR_CHARS, SUMMARY_CHARS};
use super::*;
use contract::{ErrorBody, ErrorCode, Outcome, Score};
use request_reply::kafka::HeaderList;

fn reply(id: Option<&str>, content: ReplyContent) -> IncomingReply<Topics> {
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
fn duplicate_replies_are_listed_where_they_sit_up_to_a_bound_and_forgotten_with_their_request() {
    let store = store_with("r1", Duration::from_secs(30));
    store.mark_sent("r1", &sent_at(3));
    assert!(store.get("r1").unwrap().acked_after.is_some());
    let at = |offset| {
        let mut message = reply(Some("r1"), score(500));
        message.offset = offset;
        message
    };
    store.record_reply(at(7));
    for offset in 8..8 + DUPLICATE_POSITIONS as i64 + 5 {
        assert_eq!(store.record_reply(at(offset)), ReplyOutcome::Duplicate);
    }
    let record = store.get("r1").unwrap();
    assert_eq!(record.duplicate_replies, DUPLICATE_POSITIONS as u32 + 5);
    assert_eq!(record.duplicates.len(), DUPLICATE_POSITIONS);
    assert_eq!(record.duplicates[0].to_string(), "score-calculated/1/8");
    assert_eq!(
        record.reply.unwrap().offset,
        7,
        "the first reply is the answer"
    );
    // Ten newer requests push r1 out of the store (its limit is 10), and its duplicates with it.
    for n in 0..10 {
        store.insert_pending(&format!("z{n}"), RequestKind::Score, b"{}");
    }
    assert!(store.get("r1").is_none());
    assert!(store.lock().duplicates.is_empty());
}

#[test]
fn history_has_no_acknowledgement_time() {
    let store = Store::new(Topics::with_prefix(""), Duration::from_secs(30), 10);
    let id = CorrelationId::from_bytes(b"old");
    store.insert_historic(
        &id,
        RequestKind::Score,
        b"{}",
        SystemTime::now(),
        &sent_at(1),
    );
    assert_eq!(store.get("old").unwrap().acked_after, None);
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

/// The IDs of the newest ten requests, newest first.
fn newest_ids(store: &Store) -> Vec<String> {
    store
        .recent(10, |_, _| true)
        .into_iter()
        .map(|record| record.id)
        .collect()
}

#[test]
fn history_is_bounded_oldest_first() {
    let store = Store::new(Topics::with_prefix(""), Duration::from_secs(30), 3);
    for index in 0..5 {
        store.insert_pending(&format!("r{index}"), RequestKind::Score, b"{}");
    }
    assert_eq!(newest_ids(&store), ["r4", "r3", "r2"]);
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
    assert_eq!(newest_ids(&store), ["t6", "t5", "t4"]);
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
    assert!(store.lock().cache.bytes <= PAYLOAD_CACHE_BYTES);
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
