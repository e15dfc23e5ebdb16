//! Answers greetings, a team's own message type, until Ctrl-C (`KAFKA_BOOTSTRAP_SERVERS=…`).

use request_reply::codec::{Validate, ValidationError};
use request_reply::config::KafkaSettings;
use request_reply::responder::{self, Failure, Origin, Service, WorkerConfig, WorkerError};
use request_reply::route::Route;

#[derive(Clone, serde::Deserialize)]
struct Greet {
    name: String,
}
impl Validate for Greet {
    fn validate(&self) -> Result<(), ValidationError> {
        match self.name.trim() {
            "" => Err(ValidationError::new("name", "must not be blank")),
            _ => Ok(()),
        }
    }
}

struct Greeter;
impl Service for Greeter {
    type Request = Greet;
    type Response = String;
    async fn handle(&self, request: Greet, _origin: Origin) -> Result<String, Failure> {
        Ok(format!("Hello, {}!", request.name))
    }
    async fn handle_text(&self, text: &str, _origin: Origin) -> Result<String, Failure> {
        Ok(format!("Hello, {text}!"))
    }
}

#[tokio::main]
async fn main() -> Result<(), WorkerError> {
    let servers = std::env::var("KAFKA_BOOTSTRAP_SERVERS").unwrap_or("127.0.0.1:9092".into());
    let config = WorkerConfig::new(KafkaSettings::for_bootstrap(&servers), Default::default());
    let route = Route::new("example.greetings", "example.greeted");
    let stop = async { tokio::signal::ctrl_c().await.unwrap_or_default() };
    responder::run(Greeter, &route, config, stop).await
}
