//! What became of a request: its status, and what came back, kept as little as the table needs.

use contract::Outcome;
use contract::ReplyContent;
use serde::{Deserialize, Serialize};

use super::display::{ERROR_CHARS, SUMMARY_CHARS, bounded, money};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Completed,
    Failed,
    TimedOut,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::TimedOut => "timed_out",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::TimedOut => "timed out",
        }
    }
}

/// What came back, as little as the table needs: numbers rather than formatted text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Answer {
    NotYet,
    Invoice {
        number: u64,
        total_cents: u64,
    },
    Score(u32),
    /// A text reply, cut to [`SUMMARY_CHARS`].
    Text(Box<str>),
    /// An error reply, an undecodable one, or a request the broker did not take.
    Error(Box<str>),
}

impl Answer {
    pub(super) fn of(content: &ReplyContent) -> Answer {
        fn outcome<T>(outcome: &Outcome<T>, ok: impl Fn(&T) -> Answer) -> Answer {
            match outcome {
                Outcome::Ok(value) => ok(value),
                Outcome::Error(error) => {
                    let code = serde_json::to_value(error.code).unwrap_or_default();
                    Answer::error(&format!(
                        "{}: {}",
                        code.as_str().unwrap_or("error"),
                        error.message
                    ))
                }
            }
        }
        match content {
            ReplyContent::Invoice(invoice) => outcome(invoice, |invoice| Answer::Invoice {
                number: invoice.number,
                total_cents: invoice.total_cents,
            }),
            ReplyContent::Score(score) => outcome(score, |score| Answer::Score(score.score)),
            ReplyContent::Text { text, .. } => Answer::Text(bounded(text, SUMMARY_CHARS)),
            ReplyContent::Undecodable(reason) => {
                Answer::error(&format!("undecodable reply: {reason}"))
            }
        }
    }

    pub(super) fn error(message: &str) -> Answer {
        Answer::Error(bounded(message, ERROR_CHARS))
    }

    /// One line for the table: `Invoice #41002, total 41.31`.
    pub(super) fn summary(&self) -> Option<String> {
        match self {
            Answer::NotYet => None,
            Answer::Invoice {
                number,
                total_cents,
            } => Some(format!("Invoice #{number}, total {}", money(*total_cents))),
            Answer::Score(score) => Some(format!("Score {score}")),
            Answer::Text(text) | Answer::Error(text) => Some(text.to_string()),
        }
    }
}

/// The number in a successful reply (an invoice's number, a score), as the original workers'
/// text replies carry it.
pub(super) fn legacy_number(content: &ReplyContent) -> Option<u64> {
    match content {
        ReplyContent::Invoice(Outcome::Ok(invoice)) => Some(invoice.number),
        ReplyContent::Score(Outcome::Ok(score)) => Some(u64::from(score.score)),
        _ => None,
    }
}
