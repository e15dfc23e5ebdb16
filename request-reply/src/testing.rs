//! A stand-in service for tests of the responder loop, the library's own and its users'
//! (feature `test-hooks`): it reads invoice requests, so the contract's validation applies, and
//! echoes who asked and where the request sat in the log.

use crate::responder::{Origin, Service};
use contract::{InvoiceRequest, RequestKind};
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
