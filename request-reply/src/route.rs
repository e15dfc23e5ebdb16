//! Where requests and replies travel: the caller's topic names, used exactly as given.
//!
//! The library names no topic of its own. A [`Route`] is one kind of request's request, reply
//! and dead-letter topics; a [`Routes`] is every kind a requester sends, with how each kind's
//! replies are read, so the requester, the reply listener and the log reader work with the
//! caller's own kinds and reply types.

use crate::kafka::HeaderList;
use std::fmt;

/// The topics one kind of request travels on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    /// Where requests are sent and the worker consumes.
    pub request_topic: String,
    /// Where replies go unless a request names another allowed topic.
    pub reply_topic: String,
    /// Where a worker copies requests it cannot answer.
    pub dead_letter_topic: String,
}

impl Route {
    /// Requests on `request_topic`, replies on `reply_topic`, and dead letters on
    /// `<request_topic>.dlq`, the usual name (change the field for another).
    pub fn new(request_topic: impl Into<String>, reply_topic: impl Into<String>) -> Self {
        let request_topic = request_topic.into();
        Route {
            dead_letter_topic: format!("{request_topic}.dlq"),
            request_topic,
            reply_topic: reply_topic.into(),
        }
    }

    /// The reply topic a NestJS client of this route listens on by default:
    /// `<request_topic>.reply`. Workers always accept it as a reply topic.
    pub fn nest_reply_topic(&self) -> String {
        format!("{}.reply", self.request_topic)
    }
}

/// Every kind of request a requester sends, where each travels, and how its replies are read.
///
/// Implemented by the caller's contract (this project's is `contract::Topics`); a program with a
/// single kind can use [`SingleRoute`](crate::requester::SingleRoute).
pub trait Routes: Clone + fmt::Debug + Send + Sync + 'static {
    /// Names one kind of request (an enum of the caller's kinds, say).
    type Kind: Copy + Eq + fmt::Debug + Send + Sync + 'static;
    /// A reply payload as the caller reads it: its answer types, errors, text forms.
    type Content: Clone + fmt::Debug + Send + 'static;

    /// Every kind, in a fixed order.
    fn kinds(&self) -> Vec<Self::Kind>;

    /// The topics of `kind`.
    fn route(&self, kind: Self::Kind) -> Route;

    /// Reads the reply to a request of `kind`. Must not fail: whatever cannot be read is kept
    /// as something the caller can show, so no reply is dropped. The library's
    /// [`read_reply`](crate::codec::read_reply) does the protocol's part (the JSON envelope, a
    /// NestJS error header, plain text).
    fn decode_reply(
        &self,
        kind: Self::Kind,
        payload: Option<&[u8]>,
        headers: &HeaderList,
    ) -> Self::Content;

    /// Which kind's default reply topic `topic` is, if any.
    fn kind_of_reply_topic(&self, topic: &str) -> Option<Self::Kind> {
        self.kinds()
            .into_iter()
            .find(|kind| self.route(*kind).reply_topic == topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_and_nest_reply_topics_follow_the_request_topic() {
        let route = Route::new("t.generate-invoice", "t.invoice-generated");
        assert_eq!(route.dead_letter_topic, "t.generate-invoice.dlq");
        assert_eq!(route.nest_reply_topic(), "t.generate-invoice.reply");
        assert_eq!(route.reply_topic, "t.invoice-generated");
    }
}
