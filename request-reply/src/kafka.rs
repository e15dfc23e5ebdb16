//! Small adapters between rdkafka's types and ours, used by both sides of request/reply.

use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::FutureRecord;

/// Sets `key` unless the user's configuration already did: our defaults never override config.ini.
pub fn set_default(config: &mut ClientConfig, key: &str, value: &str) {
    if config.get(key).is_none() {
        config.set(key, value);
    }
}

/// The headers of a consumed message, copied out so the message itself can be released; and the
/// positions of those whose names are not UTF-8, which cannot be read (see [`Self::unreadable`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderList(Vec<(String, Option<Vec<u8>>)>, Vec<usize>);

impl HeaderList {
    /// The headers of a consumed message, in order.
    pub fn from_message(message: &impl Message) -> Self {
        let mut list = HeaderList::default();
        let Some(headers) = message.headers() else {
            return list;
        };
        for index in 0..headers.count() {
            // rdkafka panics on a header name that is not UTF-8, which Kafka allows and any
            // producer can send: such a header is skipped and noted, never allowed to take the
            // process down (it would again on every redelivery).
            let header = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                headers
                    .try_get(index)
                    .map(|header| (header.key.to_owned(), header.value.map(<[u8]>::to_vec)))
            }));
            match header {
                Ok(Some(header)) => list.0.push(header),
                Ok(None) => {}
                Err(_) => {
                    tracing::warn!(index, "skipped a header whose name is not UTF-8");
                    list.1.push(index);
                }
            }
        }
        list
    }

    /// Headers given as name and value (`None` for a null value), as a consumed message would
    /// carry them: for headers read some other way than from a message, and for tests.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, Option<Vec<u8>>)>) -> Self {
        HeaderList(pairs.into_iter().collect(), Vec::new())
    }

    /// Positions (from 0) of the headers left out because their names are not UTF-8.
    pub fn unreadable(&self) -> &[usize] {
        &self.1
    }

    /// The value of the last header called `name` (Kafka allows repeats; the last one wins, as
    /// in Spring's `lastHeader`).
    pub fn last(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| value.as_deref())
    }

    /// No headers at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every header in order, with its value (`None` for a null value).
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> {
        self.0
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_deref()))
    }
}

/// A message to produce, owned so it can be re-sent if delivery fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// Where it goes.
    pub topic: String,
    /// A fixed partition, or none to let the key decide.
    pub partition: Option<i32>,
    /// The message key.
    pub key: Option<Vec<u8>>,
    /// The message payload.
    pub payload: Vec<u8>,
    /// Headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Outgoing {
    /// A message to `topic` without key, partition or headers.
    pub fn new(topic: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Outgoing {
            topic: topic.into(),
            partition: None,
            key: None,
            payload: payload.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a header after the ones already set.
    pub fn header(mut self, key: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((key.to_owned(), value.into()));
        self
    }

    /// The record to hand to a librdkafka producer.
    pub fn record(&self) -> FutureRecord<'_, [u8], [u8]> {
        let headers = self
            .headers
            .iter()
            .fold(OwnedHeaders::new(), |headers, (key, value)| {
                headers.insert(Header {
                    key,
                    value: Some(value.as_slice()),
                })
            });
        let mut record = FutureRecord::to(&self.topic)
            .payload(self.payload.as_slice())
            .headers(headers);
        if let Some(key) = &self.key {
            record = record.key(key.as_slice());
        }
        if let Some(partition) = self.partition {
            record = record.partition(partition);
        }
        record
    }
}
