//! Answers score requests on `example.calculate-score` until Ctrl-C. Run it with
//! `KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 cargo run -p request-reply --example responder`.

use contract::{RequestKind, Score, ScoreRequest};
use request_reply::config::{KafkaSettings, TopicSettings};
use request_reply::responder::{self, Origin, Service, WorkerConfig, WorkerError};

/// Scores a customer by the length of its name.
struct NameLength;

impl Service for NameLength {
    const KIND: RequestKind = RequestKind::Score;
    type Request = ScoreRequest;
    type Response = Score;

    fn handle(&self, request: ScoreRequest, _origin: Origin) -> Score {
        let score = 100 + request.customer.chars().count() as u32;
        let explanation = format!("100 plus {} letters", score - 100);
        let customer = request.customer;
        Score {
            customer,
            score,
            explanation,
        }
    }

    fn handle_text(&self, text: &str, _origin: Origin) -> String {
        format!("Calculated score: {}.", 100 + text.chars().count())
    }
}

#[tokio::main]
async fn main() -> Result<(), WorkerError> {
    let servers = std::env::var("KAFKA_BOOTSTRAP_SERVERS").unwrap_or("127.0.0.1:9092".into());
    let topics = TopicSettings::with_prefix("example.");
    let config = WorkerConfig::new(KafkaSettings::for_bootstrap(&servers), topics);
    let stop = async { tokio::signal::ctrl_c().await.unwrap_or_default() };
    responder::run(NameLength, config, stop).await
}
