//! Sends one greeting to `example.greetings` and prints the reply (the `responder` example
//! answers it). Run it with `KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 cargo run -p request-reply
//! --example requester`.

use request_reply::codec::ReplyBody;
use request_reply::config::{KafkaSettings, TopicSettings};
use request_reply::envelope::Outcome;
use request_reply::requester::{Client, SingleRoute};
use request_reply::route::Route;
use std::time::Duration;

#[derive(serde::Serialize)]
struct Greet {
    name: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let servers = std::env::var("KAFKA_BOOTSTRAP_SERVERS").unwrap_or("127.0.0.1:9092".into());
    let kafka = KafkaSettings::for_bootstrap(&servers);
    let route = Route::new("example.greetings", "example.greeted");
    let routes = SingleRoute::<String>::new(route);
    let client = Client::connect(&kafka, &TopicSettings::default(), routes, "example").await?;
    let request = Greet {
        name: "Ada Lovelace".to_owned(),
    };
    let reply = client.call((), &request, Duration::from_secs(30)).await?;
    match reply.content? {
        ReplyBody::Json(reply) => match reply.outcome {
            Outcome::Ok(greeting) => println!("reply: {greeting}"),
            Outcome::Error(error) => return Err(format!("refused: {error:?}").into()),
        },
        ReplyBody::Text(text) => println!("text reply: {text}"),
    }
    Ok(())
}
