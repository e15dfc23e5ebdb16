//! A request's messages read back from Kafka by position, for the detail page and the API: the
//! store keeps only where they are (see `crate::store`), the log keeps them in full.

use crate::AppState;
use crate::error::AppError;
use crate::store::{RequestRecord, reply_body};
use contract::{RequestKind, Topics};
use rdkafka::message::{Message, OwnedMessage};
use request_reply::history::ReadError;
use request_reply::kafka::HeaderList;
use request_reply::requester::IncomingReply;
use std::time::Duration;

/// How long a page or API call waits for one message before saying Kafka did not answer.
const READ_TIMEOUT: Duration = Duration::from_secs(3);

/// A message as the detail page shows it.
#[derive(Clone, Debug)]
pub struct ReadBack {
    /// Headers as text (binary values in hex).
    pub headers: Vec<(String, String)>,
    pub message: OwnedMessage,
}

/// The message at `topic`/`partition`/`offset`. Errors say, for people, why it cannot be shown:
/// [`AppError::Gone`] when retention removed it, [`AppError::Unavailable`] when Kafka is known
/// to be unreachable or did not answer in time.
pub async fn read_back(
    state: &AppState,
    what: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<ReadBack, AppError> {
    // Waiting out the deadline while the banner already says Kafka is down would only make the
    // page slow.
    if !state.broker_status().reachable {
        return Err(AppError::Unavailable(format!(
            "The {what} message cannot be read back while Kafka is unreachable."
        )));
    }
    let reader = state.reader();
    let position = (topic.to_owned(), partition, offset);
    let result = tokio::task::spawn_blocking(move || {
        let (topic, partition, offset) = position;
        reader.read(&topic, partition, offset, READ_TIMEOUT)
    })
    .await
    .map_err(|error| AppError::Internal(anyhow::anyhow!("message reader panicked: {error}")))?;
    match result {
        Ok(message) => Ok(ReadBack {
            headers: HeaderList::from_message(&message)
                .iter()
                .map(|(key, value)| (key.to_owned(), text_or_hex(value)))
                .collect(),
            message,
        }),
        Err(error @ ReadError::Gone { .. }) => {
            tracing::info!(%error, "message no longer in Kafka");
            Err(AppError::Gone(format!(
                "The {what} message is no longer in Kafka: retention has removed it."
            )))
        }
        Err(error) => {
            tracing::warn!(%error, "message not read back from Kafka");
            Err(AppError::Unavailable(format!(
                "The {what} message could not be read back from Kafka just now; try again in a moment."
            )))
        }
    }
}

/// The request as JSON, from memory while it is recent, else from Kafka; `null` when it was
/// never sent and is no longer in memory, or is not JSON.
pub async fn request_json(
    state: &AppState,
    record: &RequestRecord,
) -> Result<serde_json::Value, AppError> {
    if let Some(json) = &record.request_json {
        return Ok(serde_json::from_slice(json).unwrap_or_default());
    }
    let Some(sent) = &record.sent else {
        return Ok(serde_json::Value::Null);
    };
    let read = read_back(state, "request", &sent.topic, sent.partition, sent.offset).await?;
    Ok(request_value(&read.message))
}

/// The reply as the API returns it ([`reply_body`]), from memory while it is recent, else from
/// Kafka; `None` before the reply.
pub async fn reply_json(
    state: &AppState,
    record: &RequestRecord,
) -> Result<Option<serde_json::Value>, AppError> {
    if let Some(json) = &record.reply_json {
        return Ok(Some(serde_json::from_slice(json).unwrap_or_default()));
    }
    let Some(reply) = &record.reply else {
        return Ok(None);
    };
    let read = read_back(state, "reply", &reply.topic, reply.partition, reply.offset).await?;
    Ok(Some(reply_value(reply.kind, &read.message)))
}

/// A request message's payload as JSON, `null` if it is not JSON.
pub fn request_value(message: &OwnedMessage) -> serde_json::Value {
    message
        .payload()
        .and_then(|payload| serde_json::from_slice(payload).ok())
        .unwrap_or_default()
}

/// A reply message decoded exactly as the reply listener decodes it.
pub fn reply_value(kind: RequestKind, message: &OwnedMessage) -> serde_json::Value {
    // How a reply reads depends on its kind alone, not on the topics' names.
    reply_body(&IncomingReply::decode(&Topics::default(), kind, message).content)
}

/// A header value or key as the pages show it: text, or `0x`-hex when it is binary.
pub(crate) fn text_or_hex(value: Option<&[u8]>) -> String {
    match value {
        None => "(null)".into(),
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) if !text.chars().any(char::is_control) => text.to_owned(),
            _ => format!("0x{}", hex::encode(bytes)),
        },
    }
}
