//! This contract's topics as the request/reply library's [`Routes`]: which topics each kind of
//! request travels on, and how each kind's replies read (an invoice, a score, the original
//! system's plain text).

use crate::legacy::{LegacyReply, parse_reply_text};
use crate::{Invoice, RequestKind, Score, Topics};
use request_reply::codec::{DecodeError, ReplyBody, read_reply};
use request_reply::envelope::Outcome;
use request_reply::kafka::HeaderList;
use request_reply::route::{Route, Routes};

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

impl Routes for Topics {
    type Kind = RequestKind;
    type Content = ReplyContent;

    fn kinds(&self) -> Vec<RequestKind> {
        RequestKind::ALL.to_vec()
    }

    fn route(&self, kind: RequestKind) -> Route {
        Topics::route(self, kind)
    }

    fn decode_reply(
        &self,
        kind: RequestKind,
        payload: Option<&[u8]>,
        headers: &HeaderList,
    ) -> ReplyContent {
        match kind {
            RequestKind::Invoice => content(read_reply(payload, headers), ReplyContent::Invoice),
            RequestKind::Score => content(read_reply(payload, headers), ReplyContent::Score),
        }
    }
}

fn content<T>(
    read: Result<ReplyBody<T>, DecodeError>,
    wrap: fn(Outcome<T>) -> ReplyContent,
) -> ReplyContent {
    match read {
        Ok(ReplyBody::Json(reply)) => wrap(reply.outcome),
        Ok(ReplyBody::Text(text)) => {
            let legacy = parse_reply_text(&text);
            ReplyContent::Text { text, legacy }
        }
        Err(error) => ReplyContent::Undecodable(error.to_string()),
    }
}
