//! Template data: records turned into the strings pages show. Askama escapes every value.

use crate::BrokerStatus;
use crate::forms::{InvoiceForm, LineInput, ScoreForm};
use crate::store::{RequestRecord, Status, UncorrelatedReply};
use askama::Template;
use askama_web::WebTemplate;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How many requests the home page lists.
pub const RECENT_ROWS: usize = 50;

/// `HH:MM:SS` UTC, enough to tell requests apart on one screen.
fn clock(time: SystemTime) -> String {
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
    pub healthy: bool,
    pub message: String,
}

impl From<BrokerStatus> for BannerView {
    fn from(status: BrokerStatus) -> Self {
        BannerView {
            healthy: status.healthy(),
            message: status.message,
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "index.html")]
pub struct IndexPage {
    pub banner: BannerView,
    pub invoice_customer: String,
    pub invoice_rows: Vec<LineInput>,
    pub score_customer: String,
    pub invoice_errors: Vec<String>,
    pub score_errors: Vec<String>,
    pub rows: Vec<RowView>,
    pub uncorrelated: Vec<UncorrelatedView>,
}

impl IndexPage {
    pub fn new(
        banner: BannerView,
        rows: Vec<RowView>,
        uncorrelated: Vec<UncorrelatedView>,
    ) -> Self {
        IndexPage {
            banner,
            invoice_customer: String::new(),
            invoice_rows: InvoiceForm::default().rows(),
            score_customer: String::new(),
            invoice_errors: Vec::new(),
            score_errors: Vec::new(),
            rows,
            uncorrelated,
        }
    }

    pub fn with_invoice_form(mut self, form: &InvoiceForm, errors: Vec<String>) -> Self {
        self.invoice_customer.clone_from(&form.customer);
        self.invoice_rows = form.rows();
        self.invoice_errors = errors;
        self
    }

    pub fn with_score_form(mut self, form: &ScoreForm, errors: Vec<String>) -> Self {
        self.score_customer.clone_from(&form.customer);
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
    pub position: String,
    pub headers: Vec<(String, String)>,
}

#[derive(Template, WebTemplate)]
#[template(path = "request.html")]
pub struct RequestPage {
    pub banner: BannerView,
    pub row: RowView,
    pub request_json: String,
    pub request_meta: Option<KafkaMeta>,
    pub reply_body: Option<String>,
    pub reply_meta: Option<KafkaMeta>,
}

impl RequestPage {
    pub fn new(banner: BannerView, record: &RequestRecord) -> Self {
        let pretty =
            |value: &serde_json::Value| serde_json::to_string_pretty(value).unwrap_or_default();
        RequestPage {
            banner,
            row: RowView::from(record),
            request_json: pretty(&record.request),
            request_meta: record.sent.as_ref().map(|sent| KafkaMeta {
                position: format!("{}/{}/{}", sent.topic, sent.partition, sent.offset),
                headers: record.request_headers.clone(),
            }),
            reply_body: record
                .reply
                .as_ref()
                .map(|reply| match reply.body.get("text") {
                    Some(serde_json::Value::String(text)) => text.clone(),
                    _ => pretty(&reply.body),
                }),
            reply_meta: record.reply.as_ref().map(|reply| KafkaMeta {
                position: format!("{}/{}/{}", reply.topic, reply.partition, reply.offset),
                headers: reply.headers.clone(),
            }),
        }
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
            healthy: false,
            message: "Kafka <down>".into(),
        };
        let form = InvoiceForm::from_body(
            b"customer=%22%3E%3Cscript%3E&description=W&quantity=x&unit_price=1",
        );
        let page = IndexPage::new(banner, vec![row("a", "b")], Vec::new()).with_invoice_form(
            &form,
            vec!["line 1 quantity: must be a whole number".into()],
        );
        let html = page.render().unwrap();
        assert!(html.contains("line 1 quantity: must be a whole number"));
        assert!(html.contains("Kafka &#60;down&#62;"), "{html}");
        assert!(!html.contains("\"><script>"), "form value not escaped");
        assert!(
            html.contains("value=\"&#34;&#62;&#60;script&#62;\""),
            "{html}"
        );
    }

    #[test]
    fn clock_shows_utc_time_of_day() {
        assert_eq!(
            clock(UNIX_EPOCH + Duration::from_secs(86_400 + 3_723)),
            "01:02:03"
        );
    }
}
