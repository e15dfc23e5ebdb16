//! How requests and replies are put in words and JSON: the table's one-line summaries, money,
//! and the reply body the API returns and the detail page shows.

use contract::ReplyContent;

/// Longest request summary or reply text the table keeps, in characters; the detail page reads
/// the rest back from Kafka.
pub(super) const SUMMARY_CHARS: usize = 80;
/// Longest error reason kept, in characters.
pub(super) const ERROR_CHARS: usize = 300;

/// `text` cut to `max_chars` characters, the cut marked with an ellipsis.
pub(super) fn bounded(text: &str, max_chars: usize) -> Box<str> {
    match text.char_indices().nth(max_chars) {
        None => text.into(),
        Some(_) => {
            let keep: String = text.chars().take(max_chars.saturating_sub(1)).collect();
            format!("{keep}…").into()
        }
    }
}

/// One line for the table: the customer, and the number of lines for invoices.
pub fn request_summary(request: &serde_json::Value) -> String {
    let customer = request["customer"].as_str().unwrap_or("(no customer)");
    match request["lines"].as_array().map(Vec::len) {
        Some(1) => format!("{customer}, 1 line"),
        Some(lines) => format!("{customer}, {lines} lines"),
        None => customer.to_owned(),
    }
}

/// Formats integer cents as `1234.50`.
pub fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// A reply in full as the API returns it and the detail page shows it: the JSON outcome, the
/// text as received, or why it could not be read.
pub fn reply_body(content: &ReplyContent) -> serde_json::Value {
    match content {
        ReplyContent::Invoice(outcome) => serde_json::to_value(outcome).unwrap_or_default(),
        ReplyContent::Score(outcome) => serde_json::to_value(outcome).unwrap_or_default(),
        ReplyContent::Text { text, .. } => serde_json::json!({ "text": text }),
        ReplyContent::Undecodable(reason) => serde_json::json!({ "undecodable": reason }),
    }
}
