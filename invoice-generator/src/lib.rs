//! The invoice generator: prices each line of an invoice request, adds tax, and numbers the
//! invoice by the request's place in the log. Kafka wiring is
//! `request_reply::responder`, start-up is `service::worker`.

use contract::{Invoice, InvoiceLine, InvoiceRequest, RequestKind, legacy};
use request_reply::responder::{Failure, Origin, Service};
use service::worker::{self, WorkerConfig, WorkerError};
use std::future::Future;

/// Tax added to every invoice, in basis points of the subtotal (10 %), rounded half up to the cent.
pub const TAX_RATE_BASIS_POINTS: u64 = 1_000;

/// The invoice number of the request at `origin` (see [`contract::invoice_number`]).
pub fn invoice_number(origin: Origin) -> u64 {
    contract::invoice_number(origin.partition, origin.offset)
}

/// Prices a validated request. The contract's limits keep every amount far below `u64::MAX`.
pub fn generate_invoice(request: InvoiceRequest, origin: Origin) -> Invoice {
    let lines: Vec<InvoiceLine> = request
        .lines
        .into_iter()
        .map(|line| InvoiceLine {
            amount_cents: u64::from(line.quantity) * line.unit_price_cents,
            description: line.description,
            quantity: line.quantity,
            unit_price_cents: line.unit_price_cents,
        })
        .collect();
    let subtotal_cents: u64 = lines.iter().map(|line| line.amount_cents).sum();
    // In u128: the subtotal times the rate can exceed u64 for the largest allowed invoices.
    let tax = (u128::from(subtotal_cents) * u128::from(TAX_RATE_BASIS_POINTS) + 5_000) / 10_000;
    let tax_cents = u64::try_from(tax).unwrap_or(u64::MAX);
    Invoice {
        number: invoice_number(origin),
        customer: request.customer,
        lines,
        subtotal_cents,
        tax_cents,
        total_cents: subtotal_cents + tax_cents,
    }
}

/// The [`Service`] the responder loop drives.
#[derive(Clone, Copy, Debug, Default)]
pub struct InvoiceGenerator;

impl Service for InvoiceGenerator {
    type Request = InvoiceRequest;
    type Response = Invoice;

    async fn handle(&self, request: InvoiceRequest, origin: Origin) -> Result<Invoice, Failure> {
        Ok(generate_invoice(request, origin))
    }

    /// `Gerar Nota fiscal` (or any text): `Invoice number: #N generated.`
    async fn handle_text(&self, _text: &str, origin: Origin) -> Result<String, Failure> {
        Ok(legacy::invoice_reply_text(invoice_number(origin)))
    }
}

/// Runs the invoice generator until `shutdown` resolves.
pub async fn run(
    config: WorkerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WorkerError> {
    worker::run(InvoiceGenerator, RequestKind::Invoice, config, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::{LineItem, MAX_LINES, MAX_QUANTITY, MAX_UNIT_PRICE_CENTS, SCHEMA_VERSION};

    fn line(description: &str, quantity: u32, unit_price_cents: u64) -> LineItem {
        LineItem {
            description: description.into(),
            quantity,
            unit_price_cents,
        }
    }

    fn request(lines: Vec<LineItem>) -> InvoiceRequest {
        InvoiceRequest {
            schema_version: SCHEMA_VERSION,
            customer: "ACME".into(),
            lines,
        }
    }

    const ORIGIN: Origin = Origin {
        partition: 2,
        offset: 41,
    };

    #[test]
    fn prices_lines_and_adds_rounded_tax() {
        let invoice = generate_invoice(
            request(vec![line("Widget", 3, 1250), line("Bolt", 1, 5)]),
            ORIGIN,
        );
        assert_eq!(invoice.lines[0].amount_cents, 3750);
        assert_eq!(invoice.subtotal_cents, 3755);
        // 10 % of 37.55 is 3.755, rounded half up to 3.76.
        assert_eq!(invoice.tax_cents, 376);
        assert_eq!(invoice.total_cents, 4131);
        assert_eq!(invoice.customer, "ACME");
    }

    #[test]
    fn number_comes_from_the_log_position() {
        assert_eq!(invoice_number(ORIGIN), 42_002);
        assert_ne!(
            invoice_number(Origin {
                partition: 0,
                offset: 41
            }),
            invoice_number(ORIGIN)
        );
        let again = generate_invoice(request(vec![line("Widget", 1, 1)]), ORIGIN);
        assert_eq!(again.number, 42_002);
    }

    #[test]
    fn largest_allowed_invoice_does_not_overflow() {
        let lines = (0..MAX_LINES)
            .map(|_| line("x", MAX_QUANTITY, MAX_UNIT_PRICE_CENTS))
            .collect();
        let invoice = generate_invoice(request(lines), ORIGIN);
        assert_eq!(invoice.subtotal_cents, 100 * 1_000_000 * 10_000_000_000);
        assert!(invoice.total_cents > invoice.subtotal_cents);
    }

    #[test]
    fn plain_text_requests_get_the_original_reply_form() {
        assert_eq!(
            futures::executor::block_on(InvoiceGenerator.handle_text("Gerar Nota fiscal", ORIGIN)),
            Ok("Invoice number: #42002 generated.".to_owned())
        );
    }
}
