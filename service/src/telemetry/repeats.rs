//! librdkafka repeats itself while a broker is down: each client logs each failed connection
//! attempt, every second, so a short outage buried the services' own lines under hundreds of
//! identical ones. [`RepeatFilter`] lets one line of each kind through per window and drops the
//! repeats; the decision itself is [`RepeatLimiter`], a pure function of message and time.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tracing::field::{Field, Visit};
use tracing::{Event, Metadata};
use tracing_subscriber::layer::{Context, Filter};

/// How long the repeats of a logged librdkafka message are dropped.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(30);

/// Most kinds of message remembered at once: their text is librdkafka's, but topic names and
/// addresses in it make new kinds, and the memory for them has a bound.
const MAX_KINDS: usize = 1024;

/// Decides which messages are logged: the first of each kind, then none of that kind until
/// `window` has passed since the last one logged.
#[derive(Debug)]
pub struct RepeatLimiter {
    window: Duration,
    last_logged: HashMap<String, Instant>,
}

impl RepeatLimiter {
    pub fn new(window: Duration) -> Self {
        RepeatLimiter {
            window,
            last_logged: HashMap::new(),
        }
    }

    /// Whether `message`, seen at `now`, is logged.
    pub fn admit(&mut self, message: &str, now: Instant) -> bool {
        let kind = kind_of(message);
        if let Some(logged) = self.last_logged.get(&kind)
            && now.saturating_duration_since(*logged) < self.window
        {
            return false;
        }
        if self.last_logged.len() >= MAX_KINDS && !self.last_logged.contains_key(&kind) {
            let window = self.window;
            self.last_logged
                .retain(|_, logged| now.saturating_duration_since(*logged) < window);
            if self.last_logged.len() >= MAX_KINDS {
                // Too many kinds within one window to remember another: log it, unlimited,
                // rather than drop what may be the one line that explains an outage.
                return true;
            }
        }
        self.last_logged.insert(kind, now);
        true
    }
}

/// A message without its digits and without librdkafka's trailing `(after 0ms in state
/// CONNECT, 1 identical error(s) suppressed)`: the same failure against another broker's port,
/// after another wait or with its own repeat count, is the same kind.
fn kind_of(message: &str) -> String {
    let message = message.split(" (after ").next().unwrap_or(message);
    message.chars().filter(|c| !c.is_ascii_digit()).collect()
}

/// A per-layer filter that applies a [`RepeatLimiter`] to librdkafka's messages (targets
/// `librdkafka`, which the library's client contexts use, and `rdkafka`, rust-rdkafka's own);
/// every other event passes.
#[derive(Debug)]
pub struct RepeatFilter {
    limiter: Mutex<RepeatLimiter>,
}

impl RepeatFilter {
    pub fn new(window: Duration) -> Self {
        RepeatFilter {
            limiter: Mutex::new(RepeatLimiter::new(window)),
        }
    }
}

impl<S> Filter<S> for RepeatFilter {
    fn enabled(&self, _: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &Event<'_>, _: &Context<'_, S>) -> bool {
        let target = event.metadata().target();
        if !(target.starts_with("librdkafka") || target.starts_with("rdkafka")) {
            return true;
        }
        let mut text = MessageText::default();
        event.record(&mut text);
        self.limiter
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .admit(&text.0, Instant::now())
    }
}

/// An event's `message` field as text.
#[derive(Default)]
struct MessageText(String);

impl Visit for MessageText {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;

    const REFUSED: &str = "FAIL [thrd:127.0.0.1:9092/bootstrap]: 127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: Connection refused (after 0ms in state CONNECT)";

    #[test]
    fn a_kind_is_logged_once_per_window() {
        let start = Instant::now();
        let mut limiter = RepeatLimiter::new(Duration::from_secs(30));
        assert!(limiter.admit(REFUSED, start));
        let other_broker = REFUSED.replace("9092", "9093").replace(
            "0ms in state CONNECT",
            "12ms in state CONNECT, 1 identical error(s) suppressed",
        );
        assert!(!limiter.admit(&other_broker, start + Duration::from_secs(1)));
        assert!(!limiter.admit(REFUSED, start + Duration::from_secs(29)));
        assert!(limiter.admit("all brokers down", start + Duration::from_secs(29)));
        assert!(limiter.admit(REFUSED, start + Duration::from_secs(30)));
        assert!(!limiter.admit(REFUSED, start + Duration::from_secs(31)));
    }

    #[test]
    fn the_kinds_remembered_are_bounded_and_new_ones_still_logged() {
        let start = Instant::now();
        let mut limiter = RepeatLimiter::new(Duration::from_secs(30));
        for topic in 0..MAX_KINDS {
            let message = format!("unknown topic {}", "x".repeat(topic + 1));
            assert!(limiter.admit(&message, start));
        }
        assert!(limiter.admit("one kind too many", start));
        assert_eq!(limiter.last_logged.len(), MAX_KINDS);
        // Once the window has passed, the old kinds make room for new ones.
        assert!(limiter.admit("later", start + Duration::from_secs(30)));
        assert_eq!(limiter.last_logged.len(), 1);
        assert!(!limiter.admit("later", start + Duration::from_secs(31)));
    }

    /// Collects what a fmt layer writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn only_librdkafkas_repeats_are_dropped() {
        let captured = Captured::default();
        let writer = captured.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .with_filter(RepeatFilter::new(REPEAT_WINDOW));
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            for attempt in 0..5 {
                tracing::error!(target: "librdkafka", "librdkafka: {REFUSED}");
                tracing::error!(target: "rdkafka::client", "librdkafka: BrokerTransportFailure (Local: Broker transport failure): attempt {attempt}");
                tracing::warn!(correlation_id = attempt, "request not sent");
            }
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches("Connection refused").count(), 1, "{text}");
        assert_eq!(text.matches("BrokerTransportFailure").count(), 1, "{text}");
        assert_eq!(text.matches("request not sent").count(), 5, "{text}");
    }
}
