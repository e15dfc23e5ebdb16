//! What tests of the responder loop need, the library's own and its users' (feature
//! `test-hooks`): a stand-in service that reads invoice requests, so the contract's validation
//! applies, and echoes who asked and where the request sat in the log; requests built as rdkafka
//! hands them over; the headers of what the responder sends.

use crate::kafka::Outgoing;
use crate::responder::{Inbound, Origin, Service};
use contract::{InvoiceRequest, RequestKind};
use rdkafka::Timestamp;
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use serde::{Deserialize, Serialize};

/// What [`EchoService`] answers: who asked, and where the request sat in the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Echo {
    /// The request's customer.
    pub customer: String,
    /// The request's partition.
    pub partition: i32,
    /// The request's offset.
    pub offset: i64,
}

/// A stand-in for a real worker.
#[derive(Clone, Copy, Debug, Default)]
pub struct EchoService;

impl Service for EchoService {
    const KIND: RequestKind = RequestKind::Invoice;
    type Request = InvoiceRequest;
    type Response = Echo;

    fn handle(&self, request: InvoiceRequest, origin: Origin) -> Echo {
        Echo {
            customer: request.customer,
            partition: origin.partition,
            offset: origin.offset,
        }
    }

    fn handle_text(&self, text: &str, origin: Origin) -> String {
        format!("{text} at {}/{}", origin.partition, origin.offset)
    }
}

/// A request consumed from partition 1, offset 42 of `topic`, built as rdkafka would hand it over
/// so [`Inbound::from_message`] is exercised too.
pub fn consumed(
    topic: &str,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: &[(&str, Option<&[u8]>)],
) -> Inbound {
    let headers = headers
        .iter()
        .fold(OwnedHeaders::new(), |all, (key, value)| {
            all.insert(Header { key, value: *value })
        });
    let message = OwnedMessage::new(
        payload,
        key,
        topic.to_owned(),
        Timestamp::NotAvailable,
        1,
        42,
        Some(headers),
    );
    Inbound::from_message(&message)
}

/// The value of the last header called `name` of a message the responder sends.
pub fn last_header<'a>(outgoing: &'a Outgoing, name: &str) -> Option<&'a [u8]> {
    outgoing
        .headers
        .iter()
        .rev()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_slice())
}
