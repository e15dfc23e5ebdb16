//! A reply as read from a reply topic, decoded as far as it can be: the JSON envelope, a NestJS
//! error header, or the original system's plain text.

use crate::codec::{ReplyBody, decode_reply};
use crate::headers::{self, CorrelationId};
use crate::kafka::HeaderList;
use contract::legacy::{LegacyReply, parse_reply_text};
use contract::{Invoice, Outcome, RequestKind, Score};
use rdkafka::message::Message;

/// A reply payload, decoded as far as it can be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyContent {
    /// A JSON invoice reply: an invoice or an error.
    Invoice(Outcome<Invoice>),
    /// A JSON score reply: a score or an error.
    Score(Outcome<Score>),
    /// Plain text, with the number read out of it when it is one of the original forms.
    Text {
        /// The text as received.
        text: String,
        /// The number in it, when the text is one of the original forms.
        legacy: Option<LegacyReply>,
    },
    /// Nothing we can read; kept so it is shown, not dropped.
    Undecodable(String),
}

/// One reply as read from a reply topic, with its Kafka metadata.
#[derive(Clone, Debug)]
pub struct IncomingReply {
    /// Which kind of reply topic it came from.
    pub kind: RequestKind,
    /// The reply topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// The `kafka_correlationId` header, if any.
    pub correlation_id: Option<CorrelationId>,
    /// Every header, as read.
    pub headers: HeaderList,
    /// The payload, decoded.
    pub content: ReplyContent,
}

impl IncomingReply {
    /// Decodes a message of the reply topic of `kind`; also used on messages read back later
    /// (see [`crate::history::RecordReader`]), so they are shown exactly as when they arrived.
    pub fn decode(kind: RequestKind, message: &impl Message) -> Self {
        let headers = HeaderList::from_message(message);
        let content_type = headers.last(headers::CONTENT_TYPE);
        let payload = message.payload();
        let content = match kind {
            RequestKind::Invoice => decode_reply::<Invoice>(payload, content_type)
                .map(|body| content_from(body, ReplyContent::Invoice)),
            RequestKind::Score => decode_reply::<Score>(payload, content_type)
                .map(|body| content_from(body, ReplyContent::Score)),
        }
        .unwrap_or_else(|error| ReplyContent::Undecodable(error.to_string()));
        // A NestJS responder's error reply has no payload, only `kafka_nest-err`; ours carry
        // both, and then the payload's error (the same body) stands.
        let content = match (headers.last(headers::NEST_ERR), content) {
            (
                Some(_),
                content @ (ReplyContent::Invoice(Outcome::Error(_))
                | ReplyContent::Score(Outcome::Error(_))),
            ) => content,
            (Some(error), _) => match (headers::decode_nest_error(error), kind) {
                (Ok(body), RequestKind::Invoice) => ReplyContent::Invoice(Outcome::Error(body)),
                (Ok(body), RequestKind::Score) => ReplyContent::Score(Outcome::Error(body)),
                (Err(message), _) => {
                    ReplyContent::Undecodable(format!("{}: {message}", headers::NEST_ERR))
                }
            },
            (None, content) => content,
        };
        IncomingReply {
            kind,
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            correlation_id: headers
                .last(headers::CORRELATION_ID)
                .map(CorrelationId::from_bytes),
            headers,
            content,
        }
    }
}

fn content_from<T>(body: ReplyBody<T>, wrap: fn(Outcome<T>) -> ReplyContent) -> ReplyContent {
    match body {
        ReplyBody::Json(reply) => wrap(reply.outcome),
        ReplyBody::Text(text) => {
            let legacy = parse_reply_text(&text);
            ReplyContent::Text { text, legacy }
        }
    }
}
