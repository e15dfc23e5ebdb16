//! The message contract: topic names, payload types, validation limits and the legacy text forms.
//!
//! Everything here is plain data with serde derives, so the wire format is defined in one place and
//! pinned by golden-JSON tests (see the tests at the bottom). Readers are lenient where the original
//! system was (a missing `schema_version` means version 1); writers always emit the full form.

#![warn(missing_docs)]

mod routes;
pub mod schema;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The payload schema version this build writes and the highest one it reads. Replies carry it
/// in the library's envelope, which writes the same version (a test holds them together).
pub const SCHEMA_VERSION: u32 = 1;

/// The reply envelope (`{"schema_version", "ok" | "error": {"code", "message"}}`) and the
/// validation hook are the request/reply library's; they are part of this contract as they are.
pub use request_reply::codec::{MAX_REQUEST_BYTES, Validate, ValidationError};
pub use request_reply::envelope::{ErrorBody, ErrorCode, Outcome, Reply};
pub use routes::ReplyContent;
/// Longest customer name, in characters.
pub const MAX_CUSTOMER_CHARS: usize = 200;
/// Longest line-item description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 200;
/// Most line items on one invoice.
pub const MAX_LINES: usize = 100;
/// Largest quantity on one line.
pub const MAX_QUANTITY: u32 = 1_000_000;
/// Largest unit price: one hundred million currency units, in cents.
pub const MAX_UNIT_PRICE_CENTS: u64 = 10_000_000_000;

/// The invoice number of the request at `partition` and `offset` of the request topic: the
/// offset plus one, times 1000, plus the partition, so the first invoice of partition 0 is #1000
/// (where the original's random numbers started).
///
/// Replicas of the worker share one topic, where a (partition, offset) pair is unique, so numbers
/// never collide; a redelivered request keeps its place, so it keeps its number. Partitions are
/// limited to 1000 by the topic settings, which keeps the encoding unambiguous. Here rather than
/// in the invoice generator because the dashboard explains it to its users.
pub fn invoice_number(partition: i32, offset: i64) -> u64 {
    (offset.unsigned_abs() + 1) * 1_000 + u64::from(partition.unsigned_abs())
}

/// The two kinds of work the system does; each has a request topic and a default reply topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// Invoice generation: an invoice request, an invoice in reply.
    Invoice,
    /// Score calculation: a customer name, its score in reply.
    Score,
}

impl RequestKind {
    /// Both kinds, in a fixed order.
    pub const ALL: [RequestKind; 2] = [RequestKind::Invoice, RequestKind::Score];

    /// The topic name used by the original system, without any namespace prefix.
    pub fn base_request_topic(self) -> &'static str {
        match self {
            RequestKind::Invoice => "generate-invoice",
            RequestKind::Score => "calculate-score",
        }
    }

    /// The reply topic name used by the original system, without any namespace prefix.
    pub fn base_reply_topic(self) -> &'static str {
        match self {
            RequestKind::Invoice => "invoice-generated",
            RequestKind::Score => "score-calculated",
        }
    }

    /// The kind's name in logs, metrics and the API (`invoice`, `score`).
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Invoice => "invoice",
            RequestKind::Score => "score",
        }
    }
}

impl fmt::Display for RequestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Topic names, optionally behind a namespace prefix.
///
/// The prefix exists so that several independent deployments (or parallel test runs) can share one
/// cluster; the default is no prefix, which gives exactly the original system's topic names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    /// The topic names under `prefix` (empty: the original names).
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        Topics {
            prefix: prefix.into(),
        }
    }

    /// The request topic of `kind`.
    pub fn request(&self, kind: RequestKind) -> String {
        format!("{}{}", self.prefix, kind.base_request_topic())
    }

    /// The default reply topic of `kind`.
    pub fn reply(&self, kind: RequestKind) -> String {
        format!("{}{}", self.prefix, kind.base_reply_topic())
    }

    /// Where a worker copies requests it cannot handle: `<request-topic>.dlq`.
    pub fn dead_letter(&self, kind: RequestKind) -> String {
        format!("{}.dlq", self.request(kind))
    }

    /// The reply topic NestJS clients use by default: `<request-topic>.reply`.
    pub fn nest_reply(&self, kind: RequestKind) -> String {
        format!("{}.reply", self.request(kind))
    }

    /// Which kind of reply a topic carries, if it is one of the default reply topics.
    pub fn kind_of_reply_topic(&self, topic: &str) -> Option<RequestKind> {
        request_reply::route::Routes::kind_of_reply_topic(self, topic)
    }

    /// The topics of `kind`, as the request/reply library takes them.
    pub fn route(&self, kind: RequestKind) -> request_reply::route::Route {
        request_reply::route::Route {
            request_topic: self.request(kind),
            reply_topic: self.reply(kind),
            dead_letter_topic: self.dead_letter(kind),
        }
    }
}

fn current_schema_version() -> u32 {
    SCHEMA_VERSION
}

/// `generate-invoice` payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InvoiceRequest {
    /// Payload version; a missing one reads as 1.
    #[serde(default = "current_schema_version")]
    pub schema_version: u32,
    /// Who the invoice is for.
    pub customer: String,
    /// What is invoiced, one entry per line.
    pub lines: Vec<LineItem>,
}

/// One line of an invoice request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LineItem {
    /// What the line is for.
    pub description: String,
    /// How many items.
    pub quantity: u32,
    /// Money is integer cents everywhere, so totals are exact.
    pub unit_price_cents: u64,
}

/// `calculate-score` payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ScoreRequest {
    /// Payload version; a missing one reads as 1.
    #[serde(default = "current_schema_version")]
    pub schema_version: u32,
    /// The customer whose score is asked for.
    pub customer: String,
}

/// What a request is keyed by in Kafka: its customer, so that one customer's requests land in
/// one partition and are answered in the order they were sent, while other customers' requests
/// are handled alongside them.
pub trait CustomerKey {
    /// The request's Kafka key.
    fn kafka_key(&self) -> &[u8];
}

impl CustomerKey for InvoiceRequest {
    fn kafka_key(&self) -> &[u8] {
        self.customer.as_bytes()
    }
}

impl CustomerKey for ScoreRequest {
    fn kafka_key(&self) -> &[u8] {
        self.customer.as_bytes()
    }
}

/// The invoice a worker generated (`invoice-generated`, success case).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Invoice {
    /// Unique across worker replicas and stable on redelivery: derived from the request's
    /// partition and offset (see `invoice_number` in this crate).
    pub number: u64,
    /// Who the invoice is for.
    pub customer: String,
    /// The priced lines, in request order.
    pub lines: Vec<InvoiceLine>,
    /// Sum of the lines.
    pub subtotal_cents: u64,
    /// Tax on the subtotal.
    pub tax_cents: u64,
    /// Subtotal plus tax.
    pub total_cents: u64,
}

/// One priced line of a generated invoice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InvoiceLine {
    /// What the line is for.
    pub description: String,
    /// How many items.
    pub quantity: u32,
    /// Price of one item.
    pub unit_price_cents: u64,
    /// Quantity times unit price.
    pub amount_cents: u64,
}

/// The score a worker calculated (`score-calculated`, success case).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Score {
    /// The customer the score is for.
    pub customer: String,
    /// The score, within the workers' documented range.
    pub score: u32,
    /// How the number was derived, in words, so the result can be checked by hand.
    pub explanation: String,
}

fn validate_text(field: &str, value: &str, max_chars: usize) -> Result<(), ValidationError> {
    if value.trim().is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    let chars = value.chars().count();
    if chars > max_chars {
        return Err(ValidationError::new(
            field,
            format!("must be at most {max_chars} characters (got {chars})"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ValidationError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

fn validate_schema_version(version: u32) -> Result<(), ValidationError> {
    if version == 0 || version > SCHEMA_VERSION {
        return Err(ValidationError::new(
            "schema_version",
            format!("version {version} is not supported (this build reads 1..={SCHEMA_VERSION})"),
        ));
    }
    Ok(())
}

impl InvoiceRequest {
    /// Every problem with the request, in field order, so a form can show them all at once;
    /// [`Validate::validate`] reports the first.
    pub fn problems(&self) -> Vec<ValidationError> {
        let mut problems: Vec<ValidationError> = [
            validate_schema_version(self.schema_version),
            validate_text("customer", &self.customer, MAX_CUSTOMER_CHARS),
        ]
        .into_iter()
        .filter_map(Result::err)
        .collect();
        if self.lines.is_empty() {
            problems.push(ValidationError::new(
                "lines",
                "must have at least one line item",
            ));
        }
        if self.lines.len() > MAX_LINES {
            problems.push(ValidationError::new(
                "lines",
                format!("must have at most {MAX_LINES} line items"),
            ));
            return problems;
        }
        for (index, line) in self.lines.iter().enumerate() {
            if let Err(problem) = validate_text(
                &format!("lines[{index}].description"),
                &line.description,
                MAX_DESCRIPTION_CHARS,
            ) {
                problems.push(problem);
            }
            if line.quantity == 0 || line.quantity > MAX_QUANTITY {
                problems.push(ValidationError::new(
                    format!("lines[{index}].quantity"),
                    format!("must be between 1 and {MAX_QUANTITY}"),
                ));
            }
            if line.unit_price_cents > MAX_UNIT_PRICE_CENTS {
                problems.push(ValidationError::new(
                    format!("lines[{index}].unit_price_cents"),
                    format!("must be at most {MAX_UNIT_PRICE_CENTS}"),
                ));
            }
        }
        problems
    }
}

impl Validate for InvoiceRequest {
    fn validate(&self) -> Result<(), ValidationError> {
        self.problems().into_iter().next().map_or(Ok(()), Err)
    }
}

impl ScoreRequest {
    /// Every problem with the request, in field order; [`Validate::validate`] reports the first.
    pub fn problems(&self) -> Vec<ValidationError> {
        [
            validate_schema_version(self.schema_version),
            validate_text("customer", &self.customer, MAX_CUSTOMER_CHARS),
        ]
        .into_iter()
        .filter_map(Result::err)
        .collect()
    }
}

impl Validate for ScoreRequest {
    fn validate(&self) -> Result<(), ValidationError> {
        self.problems().into_iter().next().map_or(Ok(()), Err)
    }
}

/// The plain-text messages of the original Node.js dashboard and Python workers.
pub mod legacy {
    /// What the original dashboard sends to `generate-invoice`.
    pub const INVOICE_REQUEST_TEXT: &str = "Gerar Nota fiscal";
    /// What the original dashboard sends to `calculate-score`.
    pub const SCORE_REQUEST_TEXT: &str = "Calcular score";

    /// The original invoice generator's plain-text reply.
    pub fn invoice_reply_text(number: u64) -> String {
        format!("Invoice number: #{number} generated.")
    }

    /// The original score calculator's plain-text reply.
    pub fn score_reply_text(score: u32) -> String {
        format!("Calculated score: {score}.")
    }

    /// A plain-text reply recognised as one of the original forms.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum LegacyReply {
        /// `Invoice number: #N generated.`
        Invoice {
            /// The invoice number.
            number: u64,
        },
        /// `Calculated score: N.`
        Score {
            /// The score.
            score: u64,
        },
    }

    /// Reads the number out of `Invoice number: #N generated.` or `Calculated score: N.`.
    pub fn parse_reply_text(text: &str) -> Option<LegacyReply> {
        let text = text.trim();
        if let Some(rest) = text.strip_prefix("Invoice number: #") {
            let number = rest.strip_suffix(" generated.")?.parse().ok()?;
            return Some(LegacyReply::Invoice { number });
        }
        if let Some(rest) = text.strip_prefix("Calculated score: ") {
            let score = rest.strip_suffix('.')?.parse().ok()?;
            return Some(LegacyReply::Score { score });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::legacy::*;
    use super::*;
    use serde_json::json;

    fn sample_invoice_request() -> InvoiceRequest {
        InvoiceRequest {
            schema_version: 1,
            customer: "ACME Ltd".into(),
            lines: vec![LineItem {
                description: "Widget".into(),
                quantity: 3,
                unit_price_cents: 1250,
            }],
        }
    }

    /// Golden JSON: if one of these changes, the wire format changed.
    #[test]
    fn invoice_request_wire_format_is_stable() {
        let golden = r#"{"schema_version":1,"customer":"ACME Ltd","lines":[{"description":"Widget","quantity":3,"unit_price_cents":1250}]}"#;
        assert_eq!(
            serde_json::to_string(&sample_invoice_request()).unwrap(),
            golden
        );
        let back: InvoiceRequest = serde_json::from_str(golden).unwrap();
        assert_eq!(back, sample_invoice_request());
    }

    #[test]
    fn score_request_wire_format_is_stable() {
        let request = ScoreRequest {
            schema_version: 1,
            customer: "ACME Ltd".into(),
        };
        let golden = r#"{"schema_version":1,"customer":"ACME Ltd"}"#;
        assert_eq!(serde_json::to_string(&request).unwrap(), golden);
    }

    #[test]
    fn missing_schema_version_reads_as_version_one() {
        let request: ScoreRequest = serde_json::from_str(r#"{"customer":"x"}"#).unwrap();
        assert_eq!(request.schema_version, 1);
    }

    #[test]
    fn invoice_reply_wire_format_is_stable() {
        let reply = Reply::ok(Invoice {
            number: 7002,
            customer: "ACME Ltd".into(),
            lines: vec![InvoiceLine {
                description: "Widget".into(),
                quantity: 3,
                unit_price_cents: 1250,
                amount_cents: 3750,
            }],
            subtotal_cents: 3750,
            tax_cents: 375,
            total_cents: 4125,
        });
        let value = serde_json::to_value(&reply).unwrap();
        assert_eq!(
            value,
            json!({
                "schema_version": 1,
                "ok": {
                    "number": 7002,
                    "customer": "ACME Ltd",
                    "lines": [{"description": "Widget", "quantity": 3, "unit_price_cents": 1250, "amount_cents": 3750}],
                    "subtotal_cents": 3750,
                    "tax_cents": 375,
                    "total_cents": 4125
                }
            })
        );
        let back: Reply<Invoice> = serde_json::from_value(value).unwrap();
        assert_eq!(back, reply);
    }

    #[test]
    fn score_and_error_reply_wire_formats_are_stable() {
        let ok = Reply::ok(Score {
            customer: "a".into(),
            score: 512,
            explanation: "e".into(),
        });
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            r#"{"schema_version":1,"ok":{"customer":"a","score":512,"explanation":"e"}}"#
        );
        let error: Reply<Score> =
            Reply::error(ErrorCode::InvalidRequest, "customer: must not be empty");
        let golden = r#"{"schema_version":1,"error":{"code":"invalid_request","message":"customer: must not be empty"}}"#;
        assert_eq!(serde_json::to_string(&error).unwrap(), golden);
        assert_eq!(serde_json::from_str::<Reply<Score>>(golden).unwrap(), error);
    }

    #[test]
    fn replies_carry_the_contract_schema_version() {
        assert_eq!(SCHEMA_VERSION, request_reply::envelope::SCHEMA_VERSION);
    }

    #[test]
    fn topics_follow_the_original_names_and_prefix() {
        let plain = Topics::default();
        assert_eq!(plain.request(RequestKind::Invoice), "generate-invoice");
        assert_eq!(plain.request(RequestKind::Score), "calculate-score");
        assert_eq!(plain.reply(RequestKind::Invoice), "invoice-generated");
        assert_eq!(plain.reply(RequestKind::Score), "score-calculated");
        assert_eq!(plain.dead_letter(RequestKind::Score), "calculate-score.dlq");
        assert_eq!(
            plain.nest_reply(RequestKind::Invoice),
            "generate-invoice.reply"
        );
        let prefixed = Topics::with_prefix("t1.");
        assert_eq!(prefixed.reply(RequestKind::Score), "t1.score-calculated");
        assert_eq!(
            prefixed.kind_of_reply_topic("t1.invoice-generated"),
            Some(RequestKind::Invoice)
        );
        assert_eq!(prefixed.kind_of_reply_topic("invoice-generated"), None);
    }

    #[test]
    fn validation_names_the_offending_field() {
        let mut request = sample_invoice_request();
        assert_eq!(request.validate(), Ok(()));
        request.lines[0].quantity = 0;
        assert_eq!(request.validate().unwrap_err().field, "lines[0].quantity");
        request.lines[0].quantity = 1;
        request.lines[0].unit_price_cents = MAX_UNIT_PRICE_CENTS + 1;
        assert_eq!(
            request.validate().unwrap_err().field,
            "lines[0].unit_price_cents"
        );
        request.lines.clear();
        assert_eq!(request.validate().unwrap_err().field, "lines");
        let blank = ScoreRequest {
            schema_version: 1,
            customer: "   ".into(),
        };
        assert_eq!(blank.validate().unwrap_err().field, "customer");
        let future = ScoreRequest {
            schema_version: 2,
            customer: "x".into(),
        };
        assert_eq!(future.validate().unwrap_err().field, "schema_version");
        let long = ScoreRequest {
            schema_version: 1,
            customer: "x".repeat(MAX_CUSTOMER_CHARS + 1),
        };
        assert!(long.validate().unwrap_err().problem.contains("at most"));
    }

    #[test]
    fn problems_lists_every_field_and_validate_the_first() {
        let mut request = sample_invoice_request();
        assert!(request.problems().is_empty());
        request.customer = " ".into();
        request.lines.push(LineItem {
            description: String::new(),
            quantity: MAX_QUANTITY + 1,
            unit_price_cents: MAX_UNIT_PRICE_CENTS + 1,
        });
        let fields: Vec<String> = request.problems().into_iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            [
                "customer",
                "lines[1].description",
                "lines[1].quantity",
                "lines[1].unit_price_cents"
            ]
        );
        assert_eq!(request.validate().unwrap_err().field, "customer");
        request.lines = vec![request.lines[0].clone(); MAX_LINES + 1];
        let fields: Vec<String> = request.problems().into_iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            ["customer", "lines"],
            "too many lines: the lines themselves are not listed"
        );
    }

    #[test]
    fn legacy_reply_texts_round_trip() {
        assert_eq!(
            invoice_reply_text(12345),
            "Invoice number: #12345 generated."
        );
        assert_eq!(score_reply_text(512), "Calculated score: 512.");
        assert_eq!(
            parse_reply_text("Invoice number: #12345 generated."),
            Some(LegacyReply::Invoice { number: 12345 })
        );
        assert_eq!(
            parse_reply_text("Calculated score: 9999."),
            Some(LegacyReply::Score { score: 9999 })
        );
        assert_eq!(parse_reply_text("Invoice number: #abc generated."), None);
        assert_eq!(parse_reply_text("hello"), None);
    }
}
