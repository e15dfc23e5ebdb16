//! Sends one score request to `example.calculate-score` and prints the reply (the `responder`
//! example answers it). Run it with
//! `KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 cargo run -p request-reply --example requester`.

use contract::{RequestKind, SCHEMA_VERSION, ScoreRequest};
use request_reply::config::{KafkaSettings, TopicSettings};
use request_reply::requester::{Client, ReplyContent};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let servers = std::env::var("KAFKA_BOOTSTRAP_SERVERS").unwrap_or("127.0.0.1:9092".into());
    let kafka = KafkaSettings::for_bootstrap(&servers);
    let topics = TopicSettings::with_prefix("example.");
    let client = Client::connect(&kafka, &topics, "example-requester").await?;
    let customer = "Ada Lovelace".to_owned();
    let request = ScoreRequest {
        schema_version: SCHEMA_VERSION,
        customer,
    };
    let reply = client
        .call(RequestKind::Score, &request, Duration::from_secs(30))
        .await?;
    match reply.content {
        ReplyContent::Score(outcome) => println!("reply: {outcome:?}"),
        other => return Err(format!("unexpected reply: {other:?}").into()),
    }
    Ok(())
}
