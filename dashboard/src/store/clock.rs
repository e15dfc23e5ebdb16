//! Time as the store keeps it: wall-clock milliseconds for when a request was sent (Kafka's
//! timestamps are those), and a monotonic clock for round trips and deadlines.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The store's monotonic clock, in microseconds from when the store was made (negative before
/// it, for history from before this process): round trips measured on it do not jump with the
/// wall clock.
#[derive(Debug)]
pub(super) struct Clock {
    epoch: Instant,
}

impl Clock {
    pub(super) fn start() -> Self {
        Clock {
            epoch: Instant::now(),
        }
    }

    /// `instant` in microseconds from the epoch, negative before it.
    pub(super) fn micros(&self, instant: Instant) -> i64 {
        match instant.checked_duration_since(self.epoch) {
            Some(after) => micros(after),
            None => -micros(self.epoch.duration_since(instant)),
        }
    }

    pub(super) fn now(&self) -> i64 {
        self.micros(Instant::now())
    }
}

pub(super) fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

pub(super) fn unix_millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
    })
}

/// Milliseconds since the epoch (a Kafka timestamp) as a point in time; before the epoch
/// counts as the epoch.
pub fn from_unix_millis(milliseconds: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(milliseconds.max(0).unsigned_abs())
}
