//! A consumed request, copied out of the consumer, and the dead-letter copies made of it when it
//! cannot be answered.

use crate::codec::{MAX_QUOTED_CHARS, excerpt};
use crate::deadline::Deadline;
use crate::headers::{self, CorrelationId, TraceContext};
use crate::kafka::{HeaderList, Outgoing};
use rdkafka::message::Message;

/// A dead-letter copy too large for its topic is cut down to at most this many original headers,
/// each name and value to at most [`SHRUNK_VALUE_BYTES`], and the payload to
/// [`MAX_REQUEST_BYTES`](crate::codec::MAX_REQUEST_BYTES).
const SHRUNK_HEADERS: usize = 64;
const SHRUNK_VALUE_BYTES: usize = 1024;

/// A consumed request, copied out of the consumer so it can be released at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inbound {
    /// The request topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// The message key.
    pub key: Option<Vec<u8>>,
    /// The payload, if any.
    pub payload: Option<Vec<u8>>,
    /// Every header, as read.
    pub headers: HeaderList,
}

impl Inbound {
    /// Copies a consumed message.
    pub fn from_message(message: &impl Message) -> Self {
        Inbound {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            headers: HeaderList::from_message(message),
        }
    }

    pub(super) fn trace_context(&self) -> Option<TraceContext> {
        self.headers
            .last(headers::TRACEPARENT)
            .and_then(TraceContext::parse)
    }

    /// The requester's deadline: none when the request carries none, an error (saying why) when
    /// its value is not one.
    pub(super) fn deadline(&self) -> Result<Option<Deadline>, String> {
        match self.headers.last(headers::DEADLINE) {
            None => Ok(None),
            Some(value) => Deadline::parse(value).map(Some).ok_or_else(|| {
                format!(
                    "header {} is {:?}, not milliseconds since the Unix epoch",
                    headers::DEADLINE,
                    excerpt(&String::from_utf8_lossy(value), MAX_QUOTED_CHARS)
                )
            }),
        }
    }

    pub(super) fn correlation_id(&self) -> Option<CorrelationId> {
        self.headers
            .last(headers::CORRELATION_ID)
            .map(CorrelationId::from_bytes)
    }

    /// A dead-letter copy that fits any topic, for when [`Self::dead_letter`] is too large: the
    /// start of the payload, key and headers, plus why, whence, and `dlq-truncated` saying what
    /// was cut.
    pub fn dead_letter_shrunk(&self, topic: &str, reason: &str) -> Outgoing {
        let cut = |bytes: &[u8], max: usize| bytes[..bytes.len().min(max)].to_vec();
        let payload = self.payload.as_deref().unwrap_or_default();
        let mut copy = Outgoing::new(topic, cut(payload, crate::codec::MAX_REQUEST_BYTES));
        copy.key = self.key.as_deref().map(|key| cut(key, SHRUNK_VALUE_BYTES));
        let readable: Vec<(&str, &[u8])> = self
            .headers
            .iter()
            .filter_map(|(key, value)| Some((key, value?)))
            .collect();
        copy.headers = readable
            .iter()
            .take(SHRUNK_HEADERS)
            .map(|(key, value)| {
                let key: String = key.chars().take(SHRUNK_VALUE_BYTES / 4).collect();
                (key, cut(value, SHRUNK_VALUE_BYTES))
            })
            .collect();
        let note = format!(
            "too large for {topic}: kept {} of {} payload bytes and {} of {} headers, names and \
             values cut to {SHRUNK_VALUE_BYTES} bytes",
            copy.payload.len(),
            payload.len(),
            copy.headers.len(),
            readable.len(),
        );
        copy.header(headers::DEAD_LETTER_REASON, reason)
            .header(
                headers::DEAD_LETTER_SOURCE,
                format!("{}/{}/{}", self.topic, self.partition, self.offset),
            )
            .header(headers::DEAD_LETTER_TRUNCATED, note)
    }

    /// A copy for the dead-letter topic: same key, payload and headers, plus why and whence.
    pub fn dead_letter(&self, topic: &str, reason: &str) -> Outgoing {
        let mut copy = Outgoing::new(topic, self.payload.clone().unwrap_or_default());
        copy.key.clone_from(&self.key);
        copy.headers = self
            .headers
            .iter()
            .filter_map(|(key, value)| Some((key.to_owned(), value?.to_vec())))
            .collect();
        copy.header(headers::DEAD_LETTER_REASON, reason).header(
            headers::DEAD_LETTER_SOURCE,
            format!("{}/{}/{}", self.topic, self.partition, self.offset),
        )
    }
}
