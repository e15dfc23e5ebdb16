//! What tests of the responder loop need, the library's own and its users' (feature
//! `test-hooks`): a stand-in service with an order-shaped request of its own (a customer and
//! lines, with limits, so validation applies) that echoes who asked and where the request sat in
//! the log; requests built as rdkafka hands them over; the headers of what the responder sends.

use crate::codec::{Validate, ValidationError};
use crate::envelope::SCHEMA_VERSION;
use crate::kafka::Outgoing;
use crate::responder::{Failure, Inbound, Origin, Service};
use rdkafka::Timestamp;
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use serde::{Deserialize, Serialize};

/// Largest quantity on one line of an [`EchoRequest`].
pub const MAX_QUANTITY: u32 = 1_000_000;

fn current_schema_version() -> u32 {
    SCHEMA_VERSION
}

/// What [`EchoService`] reads: a customer and at least one line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EchoRequest {
    /// Payload version; a missing one reads as 1, and only 1 is supported.
    #[serde(default = "current_schema_version")]
    pub schema_version: u32,
    /// Who asks.
    pub customer: String,
    /// What is asked for.
    pub lines: Vec<EchoLine>,
}

/// One line of an [`EchoRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EchoLine {
    /// What the line is for.
    pub description: String,
    /// How many, from 1 to [`MAX_QUANTITY`].
    pub quantity: u32,
    /// Price of one.
    pub unit_price_cents: u64,
}

impl Validate for EchoRequest {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.schema_version != SCHEMA_VERSION {
            let version = self.schema_version;
            return Err(ValidationError::new(
                "schema_version",
                format!("version {version} is not supported"),
            ));
        }
        if self.customer.trim().is_empty() {
            return Err(ValidationError::new("customer", "must not be empty"));
        }
        if self.lines.is_empty() {
            return Err(ValidationError::new(
                "lines",
                "must have at least one line item",
            ));
        }
        for (index, line) in self.lines.iter().enumerate() {
            if line.quantity == 0 || line.quantity > MAX_QUANTITY {
                return Err(ValidationError::new(
                    format!("lines[{index}].quantity"),
                    format!("must be between 1 and {MAX_QUANTITY}"),
                ));
            }
        }
        Ok(())
    }
}

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
    type Request = EchoRequest;
    type Response = Echo;

    async fn handle(&self, request: EchoRequest, origin: Origin) -> Result<Echo, Failure> {
        Ok(Echo {
            customer: request.customer,
            partition: origin.partition,
            offset: origin.offset,
        })
    }

    async fn handle_text(&self, text: &str, origin: Origin) -> Result<String, Failure> {
        Ok(format!("{text} at {}/{}", origin.partition, origin.offset))
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
