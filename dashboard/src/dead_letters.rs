//! The dead-letter view (`GET /dead-letters`): the requests the workers could not handle, read
//! from each kind's `<request-topic>.dlq` with the reason and the position of the original, so
//! a learner sees where a bad message went instead of only a counter.

use crate::AppState;
use crate::error::AppError;
use crate::views::{BannerView, clock};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use contract::{RequestKind, Topics};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message, Timestamp};
use request_reply::codec::excerpt;
use request_reply::headers;
use request_reply::history::ReadError;
use request_reply::kafka::HeaderList;
use std::time::{Duration, UNIX_EPOCH};

/// How many dead letters of each partition are read, and how many of each kind are shown.
pub const DEAD_LETTERS_SHOWN: usize = 20;
/// Longest excerpt of a dead letter's payload shown (a dead letter can be as large as the
/// request it copies).
const PAYLOAD_EXCERPT_CHARS: usize = 200;
/// How long the page waits for each topic's messages.
const READ_TIMEOUT: Duration = Duration::from_secs(3);

/// One dead letter as the page shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetterView {
    /// Where the dead letter is: `topic/partition/offset`, as `dlq-source` names the original.
    pub position: String,
    /// When it was written, `HH:MM:SS` UTC; empty when the message has no timestamp.
    pub time: String,
    /// Its Kafka timestamp in milliseconds, for sorting newest first.
    timestamp_ms: i64,
    /// Why the worker gave up on the request (`dlq-reason`).
    pub reason: String,
    /// Where the request was (`dlq-source`).
    pub source: String,
    /// The request's correlation ID, when it had one.
    pub correlation_id: Option<String>,
    /// The start of the copied payload.
    pub payload: String,
    /// Whether the worker cut the copy (`dlq-truncated`).
    pub truncated: bool,
}

impl DeadLetterView {
    /// What the page keeps of a dead letter: a bounded excerpt, never the whole payload.
    pub fn from_message(message: &BorrowedMessage<'_>) -> Self {
        let headers = HeaderList::from_message(message);
        let text = |name: &str| headers.last(name).map(excerpt_of);
        let timestamp_ms = match message.timestamp() {
            Timestamp::CreateTime(ms) | Timestamp::LogAppendTime(ms) => ms,
            Timestamp::NotAvailable => 0,
        };
        DeadLetterView {
            position: format!(
                "{}/{}/{}",
                message.topic(),
                message.partition(),
                message.offset()
            ),
            time: clock_of(timestamp_ms),
            timestamp_ms,
            reason: text(headers::DEAD_LETTER_REASON).unwrap_or_else(|| "(no reason given)".into()),
            source: text(headers::DEAD_LETTER_SOURCE).unwrap_or_default(),
            correlation_id: text(headers::CORRELATION_ID),
            payload: message
                .payload()
                .map_or_else(|| "(no payload)".into(), excerpt_of),
            truncated: headers.last(headers::DEAD_LETTER_TRUNCATED).is_some(),
        }
    }
}

/// A Kafka timestamp as the pages show times; empty when the message has none.
fn clock_of(timestamp_ms: i64) -> String {
    match u64::try_from(timestamp_ms) {
        Ok(ms) if ms > 0 => clock(UNIX_EPOCH + Duration::from_millis(ms)),
        _ => String::new(),
    }
}

/// The start of a header value or payload, as text.
fn excerpt_of(bytes: &[u8]) -> String {
    excerpt(&String::from_utf8_lossy(bytes), PAYLOAD_EXCERPT_CHARS).into_owned()
}

/// One kind's dead-letter topic: its newest dead letters, or why they cannot be shown.
#[derive(Clone, Debug)]
pub struct DeadLetterTopic {
    pub kind: String,
    pub topic: String,
    pub letters: Vec<DeadLetterView>,
    pub notice: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "dead_letters.html")]
pub struct DeadLettersPage {
    pub banner: BannerView,
    pub topics: Vec<DeadLetterTopic>,
    pub shown: usize,
}

/// `GET /dead-letters`.
pub async fn dead_letters_page(State(state): State<AppState>) -> Result<DeadLettersPage, AppError> {
    let topics = Topics::with_prefix(&state.config().topics.prefix);
    let mut sections = Vec::new();
    for kind in RequestKind::ALL {
        sections.push(read_topic(&state, kind, topics.dead_letter(kind)).await?);
    }
    Ok(DeadLettersPage {
        banner: BannerView::from(state.broker_status()),
        topics: sections,
        shown: DEAD_LETTERS_SHOWN,
    })
}

async fn read_topic(
    state: &AppState,
    kind: RequestKind,
    topic: String,
) -> Result<DeadLetterTopic, AppError> {
    let mut section = DeadLetterTopic {
        kind: kind.to_string(),
        topic: topic.clone(),
        letters: Vec::new(),
        notice: None,
    };
    if !state.broker_status().reachable {
        section.notice = Some("Dead letters cannot be read while Kafka is unreachable.".into());
        return Ok(section);
    }
    let reader = state.reader();
    let read = tokio::task::spawn_blocking(move || {
        reader.read_last(
            &topic,
            DEAD_LETTERS_SHOWN as i64,
            READ_TIMEOUT,
            DeadLetterView::from_message,
        )
    })
    .await
    .map_err(|error| AppError::Internal(anyhow::anyhow!("dead-letter reader panicked: {error}")))?;
    match read {
        Ok(last) => {
            section.letters = newest_first(last.messages);
            if !last.complete {
                section.notice = Some(
                    "Kafka did not hand over every dead letter in time; reload to see the rest."
                        .into(),
                );
            }
        }
        // Workers create it when they start; until then there is nothing to show.
        Err(ReadError::Kafka(KafkaError::MetadataFetch(
            RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic,
        ))) => {}
        Err(ReadError::Kafka(error)) => {
            tracing::info!(%error, "dead letters not read");
            section.notice = Some(format!("No dead letters can be read from it: {error}."));
        }
        Err(error) => {
            tracing::warn!(%error, "dead letters not read");
            section.notice = Some("Dead letters could not be read just now.".into());
        }
    }
    Ok(section)
}

/// The newest [`DEAD_LETTERS_SHOWN`] of the letters read from every partition.
fn newest_first(mut letters: Vec<DeadLetterView>) -> Vec<DeadLetterView> {
    letters.sort_by(|a, b| {
        b.timestamp_ms
            .cmp(&a.timestamp_ms)
            .then_with(|| b.position.cmp(&a.position))
    });
    letters.truncate(DEAD_LETTERS_SHOWN);
    letters
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(position: &str, timestamp_ms: i64) -> DeadLetterView {
        DeadLetterView {
            position: position.into(),
            time: clock_of(timestamp_ms),
            timestamp_ms,
            reason: String::new(),
            source: String::new(),
            correlation_id: None,
            payload: String::new(),
            truncated: false,
        }
    }

    #[test]
    fn the_newest_are_shown_first_and_at_most_the_limit() {
        let letters: Vec<_> = (0..30)
            .map(|n| letter(&format!("t.dlq/{}/{n}", n % 3), 1_000 * n))
            .collect();
        let shown = newest_first(letters);
        assert_eq!(shown.len(), DEAD_LETTERS_SHOWN);
        assert_eq!(shown[0].position, "t.dlq/2/29");
        assert_eq!(shown[DEAD_LETTERS_SHOWN - 1].position, "t.dlq/1/10");
    }

    #[test]
    fn clock_is_utc_time_of_day() {
        assert_eq!(clock_of(0), "");
        assert_eq!(clock_of(86_400_000 + 3_723_000), "01:02:03");
    }
}
