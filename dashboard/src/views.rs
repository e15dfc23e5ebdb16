//! Template data: records turned into the strings pages show. Askama escapes every value.

use crate::BrokerStatus;
use crate::forms::{FieldError, InvoiceForm, ScoreForm};
use crate::journey::{self, Journey};
use crate::records::{self, ReadBack};
use crate::store::{RequestRecord, Status, UncorrelatedReply};
use askama::Template;
use askama_web::WebTemplate;
use contract::RequestKind;
use rdkafka::message::Message;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How many requests the home page lists.
pub const RECENT_ROWS: usize = 50;

/// `HH:MM:SS` UTC, enough to tell requests apart on one screen.
pub(crate) fn clock(time: SystemTime) -> String {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        % 86_400;
    format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

pub fn millis(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

/// One line of the requests table.
#[derive(Clone, Debug)]
pub struct RowView {
    pub id: String,
    pub kind: String,
    pub summary: String,
    pub status: &'static str,
    pub status_label: &'static str,
    pub outcome: String,
    pub round_trip: String,
    pub late: bool,
    pub duplicate_replies: u32,
    pub created: String,
    /// For a pending request: why it waits, when the dashboard knows (no worker, a rebalance).
    pub waiting_because: Option<String>,
}

impl RowView {
    /// The row, saying why it waits when it is pending and `status` knows why.
    pub fn explained(record: &RequestRecord, status: &BrokerStatus) -> Self {
        let mut row = RowView::from(record);
        if record.status == Status::Pending {
            row.waiting_because = status.waiting_because(record.kind).map(str::to_owned);
        }
        row
    }
}

impl From<&RequestRecord> for RowView {
    fn from(record: &RequestRecord) -> Self {
        let outcome = match (&record.reply, &record.error, record.status) {
            (Some(reply), _, _) => reply.summary.clone(),
            (None, Some(error), _) => error.clone(),
            (None, None, Status::TimedOut) => "no reply yet".into(),
            (None, None, _) => "waiting for the reply…".into(),
        };
        RowView {
            id: record.id.clone(),
            kind: record.kind.to_string(),
            summary: record.summary.clone(),
            status: record.status.as_str(),
            status_label: record.status.label(),
            outcome,
            round_trip: record.round_trip.map(millis).unwrap_or_default(),
            late: record.late,
            duplicate_replies: record.duplicate_replies,
            created: clock(record.created_at),
            waiting_because: None,
        }
    }
}

/// One entry of the uncorrelated-replies feed.
#[derive(Clone, Debug)]
pub struct UncorrelatedView {
    pub kind: String,
    pub text: String,
    pub number: String,
    pub position: String,
    pub received: String,
}

impl From<&UncorrelatedReply> for UncorrelatedView {
    fn from(reply: &UncorrelatedReply) -> Self {
        UncorrelatedView {
            kind: reply.kind.to_string(),
            text: reply.text.clone(),
            number: reply
                .number
                .map(|number| number.to_string())
                .unwrap_or_default(),
            position: format!("{}/{}/{}", reply.topic, reply.partition, reply.offset),
            received: clock(reply.received_at),
        }
    }
}

/// The banner at the top of every page.
#[derive(Clone, Debug)]
pub struct BannerView {
    /// Kafka is reachable and a worker can answer each kind of request.
    pub green: bool,
    pub message: String,
}

impl From<BrokerStatus> for BannerView {
    fn from(status: BrokerStatus) -> Self {
        let message = match crate::system::missing(&status.waiting) {
            Some(missing) if status.healthy() => format!("{}. {missing}", status.message),
            _ => status.message.clone(),
        };
        BannerView {
            green: status.green(),
            message,
        }
    }
}

/// One form input as the page shows it: what was typed and, next to it, what is wrong with it.
#[derive(Clone, Debug)]
pub struct FieldView {
    pub id: String,
    pub value: String,
    pub error: Option<String>,
}

impl FieldView {
    fn new(id: String, value: &str, errors: &[FieldError]) -> Self {
        let error = errors
            .iter()
            .find(|error| error.input_id == id)
            .map(|error| error.problem.clone());
        FieldView {
            id,
            value: value.to_owned(),
            error,
        }
    }
}

/// One line-item row of the invoice form.
#[derive(Clone, Debug)]
pub struct LineRowView {
    pub description: FieldView,
    pub quantity: FieldView,
    pub unit_price: FieldView,
}

/// Which requests the table shows (`GET /?kind=invoice&status=failed`).
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct Filter {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub status: String,
}

impl Filter {
    pub fn matches(&self, kind: RequestKind, status: Status) -> bool {
        (self.kind.is_empty() || self.kind == kind.as_str())
            && (self.status.is_empty() || self.status == status.as_str())
    }

    pub fn is_active(&self) -> bool {
        !self.kind.is_empty() || !self.status.is_empty()
    }
}

/// Options of the filter's selects: (value, label).
pub const KIND_OPTIONS: [(&str, &str); 3] = [
    ("", "all kinds"),
    ("invoice", "invoices"),
    ("score", "scores"),
];
pub const STATUS_OPTIONS: [(&str, &str); 5] = [
    ("", "any status"),
    ("pending", "pending"),
    ("completed", "completed"),
    ("failed", "failed"),
    ("timed_out", "timed out"),
];

#[derive(Template, WebTemplate)]
#[template(path = "index.html")]
pub struct IndexPage {
    pub banner: BannerView,
    pub invoice_customer: FieldView,
    pub invoice_lines: Vec<LineRowView>,
    /// The error about the line items as a whole (none given).
    pub lines_error: Option<String>,
    pub invoice_errors: Vec<FieldError>,
    pub score_customer: FieldView,
    pub score_errors: Vec<FieldError>,
    pub filter: Filter,
    pub kind_options: [(&'static str, &'static str); 3],
    pub status_options: [(&'static str, &'static str); 5],
    pub rows: Vec<RowView>,
    pub uncorrelated: Vec<UncorrelatedView>,
    /// The anti-forgery token both forms carry (see `security`).
    pub csrf_token: String,
}

impl IndexPage {
    pub fn new(
        banner: BannerView,
        filter: Filter,
        rows: Vec<RowView>,
        uncorrelated: Vec<UncorrelatedView>,
    ) -> Self {
        IndexPage {
            banner,
            invoice_customer: FieldView::new("invoice-customer".into(), "", &[]),
            invoice_lines: Vec::new(),
            lines_error: None,
            invoice_errors: Vec::new(),
            score_customer: FieldView::new("score-customer".into(), "", &[]),
            score_errors: Vec::new(),
            filter,
            kind_options: KIND_OPTIONS,
            status_options: STATUS_OPTIONS,
            rows,
            uncorrelated,
            csrf_token: String::new(),
        }
        .with_invoice_form(&InvoiceForm::default(), Vec::new())
    }

    pub fn with_csrf_token(mut self, token: String) -> Self {
        self.csrf_token = token;
        self
    }

    pub fn with_invoice_form(mut self, form: &InvoiceForm, errors: Vec<FieldError>) -> Self {
        self.invoice_customer = FieldView::new("invoice-customer".into(), &form.customer, &errors);
        self.invoice_lines = form
            .rows()
            .iter()
            .enumerate()
            .map(|(index, line)| {
                let id = |column: &str| format!("line-{}-{column}", index + 1);
                LineRowView {
                    description: FieldView::new(id("description"), &line.description, &errors),
                    quantity: FieldView::new(id("quantity"), &line.quantity, &errors),
                    unit_price: FieldView::new(id("unit_price"), &line.unit_price, &errors),
                }
            })
            .collect();
        self.lines_error = FieldView::new("invoice-lines".into(), "", &errors).error;
        self.invoice_errors = errors;
        self
    }

    pub fn with_score_form(mut self, form: &ScoreForm, errors: Vec<FieldError>) -> Self {
        self.score_customer = FieldView::new("score-customer".into(), &form.customer, &errors);
        self.score_errors = errors;
        self
    }
}

/// A table row on its own, sent to open pages by the live-update stream.
#[derive(Template)]
#[template(path = "row.html")]
pub struct RowFragment<'a> {
    pub row: &'a RowView,
}

/// An uncorrelated-feed entry on its own, for the live-update stream.
#[derive(Template)]
#[template(path = "uncorrelated.html")]
pub struct UncorrelatedFragment<'a> {
    pub reply: &'a UncorrelatedView,
}

/// A Kafka position and headers, for the detail page.
#[derive(Clone, Debug)]
pub struct KafkaMeta {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The key as text (hex when binary), `None` when the message has none or was not read back.
    pub key: Option<String>,
    /// The record timestamp and its type, when the message was read back.
    pub timestamp: Option<String>,
    /// Empty when the message could not be read back.
    pub headers: Vec<(String, String)>,
}

impl KafkaMeta {
    fn new(topic: &str, partition: i32, offset: i64, read: Option<&ReadBack>) -> Self {
        let message = read.map(|read| &read.message);
        KafkaMeta {
            topic: topic.to_owned(),
            partition,
            offset,
            key: message
                .and_then(|message| message.key())
                .map(|key| records::text_or_hex(Some(key))),
            timestamp: message.and_then(|message| match message.timestamp() {
                rdkafka::Timestamp::CreateTime(ms) => Some(format!(
                    "{} UTC (CreateTime: set by the producer)",
                    precise_clock(ms)
                )),
                rdkafka::Timestamp::LogAppendTime(ms) => Some(format!(
                    "{} UTC (LogAppendTime: set by the broker)",
                    precise_clock(ms)
                )),
                rdkafka::Timestamp::NotAvailable => None,
            }),
            headers: read.map(|read| read.headers.clone()).unwrap_or_default(),
        }
    }
}

/// `HH:MM:SS.mmm` UTC of a Kafka timestamp (milliseconds since the epoch).
fn precise_clock(timestamp_ms: i64) -> String {
    let ms = u64::try_from(timestamp_ms).unwrap_or_default();
    format!(
        "{}.{:03}",
        clock(UNIX_EPOCH + Duration::from_millis(ms)),
        ms % 1000
    )
}

#[derive(Template, WebTemplate)]
#[template(path = "request.html")]
pub struct RequestPage {
    pub banner: BannerView,
    pub row: RowView,
    pub request_json: Option<String>,
    pub request_meta: Option<KafkaMeta>,
    /// Why the request message is not shown, when it cannot be read back.
    pub request_notice: Option<String>,
    pub reply_body: Option<String>,
    pub reply_meta: Option<KafkaMeta>,
    /// Why the reply message is not shown, when it cannot be read back.
    pub reply_notice: Option<String>,
    /// Where the time went, hop by hop.
    pub journey: Journey,
    /// Where the duplicate replies are (`topic/partition/offset`), as far as remembered.
    pub duplicates: Vec<String>,
    /// Duplicates counted beyond those listed.
    pub duplicates_unlisted: u32,
    /// How the invoice number was made, for an invoice with a reply.
    pub invoice_number_note: Option<String>,
}

impl RequestPage {
    /// `request` and `reply` are the messages read back from Kafka (or why they could not be),
    /// `None` when there is none yet. A message that cannot be read falls back on the payload
    /// the store still holds for recent requests.
    pub fn new(
        status: BrokerStatus,
        record: &RequestRecord,
        request: Option<Result<ReadBack, String>>,
        reply: Option<Result<ReadBack, String>>,
    ) -> Self {
        let pretty =
            |value: &serde_json::Value| serde_json::to_string_pretty(value).unwrap_or_default();
        let cached = |json: &Option<std::sync::Arc<[u8]>>| {
            json.as_deref()
                .and_then(|json| serde_json::from_slice::<serde_json::Value>(json).ok())
        };
        let (request_read, request_notice) = split(request);
        let (reply_read, reply_notice) = split(reply);
        let request_json = match &request_read {
            Some(read) => Some(pretty(&records::request_value(&read.message))),
            None => cached(&record.request_json).map(|json| pretty(&json)),
        };
        let reply_text = |body: serde_json::Value| match body.get("text") {
            Some(serde_json::Value::String(text)) => text.clone(),
            _ => pretty(&body),
        };
        let reply_body = match (&reply_read, &record.reply) {
            (Some(read), Some(meta)) => {
                Some(reply_text(records::reply_value(meta.kind, &read.message)))
            }
            (None, _) if reply_notice.is_some() => cached(&record.reply_json).map(reply_text),
            _ => None,
        };
        let invoice_number_note = match (&record.reply, record.kind) {
            (Some(_), RequestKind::Invoice) => record.sent.as_ref().map(|sent| {
                format!(
                    "The invoice number is made from where the request sits in Kafka: offset {1} \
                     and partition {0} give #{2} ((offset + 1) × 1000 + partition). A position \
                     is unique in the topic, so two replicas never hand out the same number, and \
                     a redelivered request keeps its place, so it gets the same number again.",
                    sent.partition,
                    sent.offset,
                    contract::invoice_number(sent.partition, sent.offset)
                )
            }),
            _ => None,
        };
        let journey = journey::journey(
            record,
            request_read.as_ref().map(|read| &read.message),
            reply_read.as_ref().map(|read| &read.message),
        );
        let row = RowView::explained(record, &status);
        RequestPage {
            banner: BannerView::from(status),
            row,
            request_json,
            request_meta: record.sent.as_ref().map(|sent| {
                KafkaMeta::new(
                    &sent.topic,
                    sent.partition,
                    sent.offset,
                    request_read.as_ref(),
                )
            }),
            request_notice,
            reply_body,
            reply_meta: record.reply.as_ref().map(|reply| {
                KafkaMeta::new(
                    &reply.topic,
                    reply.partition,
                    reply.offset,
                    reply_read.as_ref(),
                )
            }),
            reply_notice,
            journey,
            duplicates: record.duplicates.iter().map(ToString::to_string).collect(),
            duplicates_unlisted: record
                .duplicate_replies
                .saturating_sub(u32::try_from(record.duplicates.len()).unwrap_or(u32::MAX)),
            invoice_number_note,
        }
    }
}

/// A message read back, or why it could not be (`None` for both when there is none yet).
fn split(read: Option<Result<ReadBack, String>>) -> (Option<ReadBack>, Option<String>) {
    match read {
        Some(Ok(read)) => (Some(read), None),
        Some(Err(notice)) => (None, Some(notice)),
        None => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(summary: &str, outcome: &str) -> RowView {
        RowView {
            id: "0b7c6b2e-2f5e-4a55-9d1a-3c1c2a8d9e10".into(),
            kind: "score".into(),
            summary: summary.into(),
            status: "completed",
            status_label: "completed",
            outcome: outcome.into(),
            round_trip: "3.2 ms".into(),
            late: false,
            duplicate_replies: 0,
            created: "12:00:00".into(),
            waiting_because: None,
        }
    }

    #[test]
    fn rows_escape_request_and_reply_text() {
        let view = row("<script>alert(1)</script>", "<img src=x onerror=alert(2)>");
        let html = RowFragment { row: &view }.render().unwrap();
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&#60;script&#62;"), "{html}");
        assert!(
            html.contains("id=\"req-0b7c6b2e-2f5e-4a55-9d1a-3c1c2a8d9e10\""),
            "{html}"
        );
    }

    #[test]
    fn uncorrelated_entries_escape_their_text() {
        let view = UncorrelatedView {
            kind: "invoice".into(),
            text: "</li><b>bold</b>".into(),
            number: String::new(),
            position: "t/0/1".into(),
            received: "12:00:00".into(),
        };
        let html = UncorrelatedFragment { reply: &view }.render().unwrap();
        assert!(html.contains("&#60;/li&#62;&#60;b&#62;"), "{html}");
    }

    #[test]
    fn index_page_refills_forms_escaped_and_lists_errors() {
        let banner = BannerView {
            green: false,
            message: "Kafka <down>".into(),
        };
        let form = InvoiceForm::from_body(
            b"customer=%22%3E%3Cscript%3E&description=W&quantity=x&unit_price=1",
        );
        let errors = form.to_request().unwrap_err();
        let page = IndexPage::new(banner, Filter::default(), vec![row("a", "b")], Vec::new())
            .with_invoice_form(&form, errors);
        let html = page.render().unwrap();
        // In the summary, linked to the field...
        assert!(
            html.contains(
                "<a href=\"#line-1-quantity\">line 1 quantity: must be a whole number</a>"
            ),
            "{html}"
        );
        // ...and next to the field, which points at it.
        assert!(
            html.contains("aria-describedby=\"line-1-quantity-error\""),
            "{html}"
        );
        assert!(html.contains("<span class=\"field-error\" id=\"line-1-quantity-error\">must be a whole number</span>"), "{html}");
        assert_eq!(
            html.matches("aria-invalid").count(),
            1,
            "only the bad field is marked"
        );
        assert!(html.contains("Kafka &#60;down&#62;"), "{html}");
        assert!(!html.contains("\"><script>"), "form value not escaped");
        assert!(
            html.contains("value=\"&#34;&#62;&#60;script&#62;\""),
            "{html}"
        );
    }

    #[test]
    fn filters_select_by_kind_and_status_and_show_in_the_form() {
        let filter = Filter {
            kind: "score".into(),
            status: "timed_out".into(),
        };
        let banner = BannerView {
            green: true,
            message: String::new(),
        };
        let html = IndexPage::new(banner, filter.clone(), Vec::new(), Vec::new())
            .render()
            .unwrap();
        assert!(html.contains("<option value=\"score\" selected>"), "{html}");
        assert!(
            html.contains("<option value=\"timed_out\" selected>"),
            "{html}"
        );
        assert!(html.contains("No requests match this filter."), "{html}");
        assert!(html.contains("data-filter-kind=\"score\""), "{html}");
    }

    #[test]
    fn clock_shows_utc_time_of_day() {
        assert_eq!(
            clock(UNIX_EPOCH + Duration::from_secs(86_400 + 3_723)),
            "01:02:03"
        );
    }
}
