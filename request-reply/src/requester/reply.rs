//! A reply as read from a reply topic, decoded by the caller's [`Routes`], and the simplest
//! [`Routes`]: one route whose replies carry one JSON type.

use crate::codec::{DecodeError, ReplyBody, read_reply};
use crate::headers::{self, CorrelationId};
use crate::kafka::HeaderList;
use crate::route::{Route, Routes};
use rdkafka::message::Message;
use serde::de::DeserializeOwned;
use std::fmt;
use std::marker::PhantomData;

/// One reply as read from a reply topic, with its Kafka metadata.
#[derive(Clone, Debug)]
pub struct IncomingReply<R: Routes> {
    /// Which kind of reply topic it came from.
    pub kind: R::Kind,
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
    /// The payload, decoded by [`Routes::decode_reply`].
    pub content: R::Content,
}

impl<R: Routes> IncomingReply<R> {
    /// Decodes a message of the reply topic of `kind`; also used on messages read back later
    /// (see [`crate::history::RecordReader`]), so they are shown exactly as when they arrived.
    pub fn decode(routes: &R, kind: R::Kind, message: &impl Message) -> Self {
        let headers = HeaderList::from_message(message);
        let content = routes.decode_reply(kind, message.payload(), &headers);
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

/// The [`Routes`] of a requester with one kind of request (its kind is `()`), whose replies are
/// envelopes of `T`: each decodes to what [`read_reply`] makes of it.
pub struct SingleRoute<T> {
    route: Route,
    reply: PhantomData<fn() -> T>,
}

impl<T> SingleRoute<T> {
    /// Requests and replies on the topics of `route`.
    pub fn new(route: Route) -> Self {
        SingleRoute {
            route,
            reply: PhantomData,
        }
    }
}

impl<T> Clone for SingleRoute<T> {
    fn clone(&self) -> Self {
        SingleRoute::new(self.route.clone())
    }
}

impl<T> fmt::Debug for SingleRoute<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SingleRoute").field(&self.route).finish()
    }
}

impl<T> Routes for SingleRoute<T>
where
    T: DeserializeOwned + Clone + fmt::Debug + Send + 'static,
{
    type Kind = ();
    type Content = Result<ReplyBody<T>, DecodeError>;

    fn kinds(&self) -> Vec<()> {
        vec![()]
    }

    fn route(&self, (): ()) -> Route {
        self.route.clone()
    }

    fn decode_reply(&self, (): (), payload: Option<&[u8]>, headers: &HeaderList) -> Self::Content {
        read_reply(payload, headers)
    }
}
