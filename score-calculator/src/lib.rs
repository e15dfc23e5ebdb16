//! The score calculator: a customer's score is a documented, deterministic function of its
//! name, so the same request always gets the same answer. Kafka wiring is
//! `request_reply::responder`, start-up is `service::worker`.

use contract::{RequestKind, Score, ScoreRequest, legacy};
use request_reply::responder::{Failure, Origin, Service};
use service::worker::{self, WorkerConfig, WorkerError};
use std::future::Future;

/// Lowest score; the range 100..=9999 is the original workers'.
pub const MIN_SCORE: u32 = 100;
/// Highest score.
pub const MAX_SCORE: u32 = 9_999;

/// Case, surrounding blanks and runs of blanks do not change who the customer is.
pub fn normalize_customer(customer: &str) -> String {
    customer
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// 64-bit FNV-1a: tiny, fixed by its specification, and the same on every platform.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `MIN_SCORE + fnv1a64(normalized name) mod (MAX_SCORE - MIN_SCORE + 1)`.
pub fn score_of(customer: &str) -> u32 {
    let span = u64::from(MAX_SCORE - MIN_SCORE + 1);
    let offset = fnv1a64(normalize_customer(customer).as_bytes()) % span;
    MIN_SCORE + u32::try_from(offset).unwrap_or_default()
}

pub fn calculate_score(request: ScoreRequest) -> Score {
    let normalized = normalize_customer(&request.customer);
    let score = score_of(&request.customer);
    Score {
        explanation: format!(
            "{MIN_SCORE} + FNV-1a-64(\"{normalized}\") mod {}: the customer name, trimmed and \
             lower-cased, always maps to the same score in {MIN_SCORE}..={MAX_SCORE}",
            MAX_SCORE - MIN_SCORE + 1
        ),
        customer: request.customer,
        score,
    }
}

/// The [`Service`] the responder loop drives.
#[derive(Clone, Copy, Debug, Default)]
pub struct ScoreCalculator;

impl Service for ScoreCalculator {
    type Request = ScoreRequest;
    type Response = Score;

    async fn handle(&self, request: ScoreRequest, _origin: Origin) -> Result<Score, Failure> {
        Ok(calculate_score(request))
    }

    /// `Calcular score` (or any text, scored as if it were the customer name):
    /// `Calculated score: N.`
    async fn handle_text(&self, text: &str, _origin: Origin) -> Result<String, Failure> {
        Ok(legacy::score_reply_text(score_of(text)))
    }
}

/// Runs the score calculator until `shutdown` resolves.
pub async fn run(
    config: WorkerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WorkerError> {
    worker::run(ScoreCalculator, RequestKind::Score, config, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::SCHEMA_VERSION;

    #[test]
    fn fnv1a_matches_its_published_test_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn same_customer_same_score_whatever_the_spelling() {
        assert_eq!(score_of("ACME  Ltd "), score_of("acme ltd"));
        assert_ne!(score_of("acme ltd"), score_of("acme limited"));
    }

    #[test]
    fn scores_stay_in_the_original_range() {
        for index in 0..10_000 {
            let score = score_of(&format!("customer {index}"));
            assert!((MIN_SCORE..=MAX_SCORE).contains(&score), "{score}");
        }
    }

    #[test]
    fn reply_explains_itself() {
        let score = calculate_score(ScoreRequest {
            schema_version: SCHEMA_VERSION,
            customer: "ACME".into(),
        });
        assert_eq!(score.score, score_of("acme"));
        assert!(
            score.explanation.contains("\"acme\""),
            "{}",
            score.explanation
        );
        assert_eq!(score.customer, "ACME");
    }

    #[test]
    fn plain_text_requests_get_the_original_reply_form() {
        let origin = Origin {
            partition: 0,
            offset: 0,
        };
        let text =
            futures::executor::block_on(ScoreCalculator.handle_text("Calcular score", origin));
        assert_eq!(
            text,
            Ok(format!("Calculated score: {}.", score_of("Calcular score")))
        );
    }
}
