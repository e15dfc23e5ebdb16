//! The caller's deadline, carried with a request so a worker does not compute answers that
//! nobody waits for any more.
//!
//! A requester that gives up after a timeout sends the absolute time it gives up at in the
//! [`DEADLINE`](crate::headers::DEADLINE) header: milliseconds since the Unix epoch (UTC) as
//! decimal text, the unit and epoch of Kafka's own timestamps, readable with kcat. Absolute
//! rather than a remaining duration because a request can sit in its partition for any time
//! before a worker reads it; the price is that requester and worker clocks must agree to within
//! the margin that matters (NTP keeps them within milliseconds). Peers that send no deadline
//! (the original system, Spring, NestJS) are answered as before.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Most digits a deadline value may have: every `u64` fits in 20.
const MAX_DIGITS: usize = 20;

/// The time after which nobody waits for a request's reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline {
    unix_millis: u64,
}

impl Deadline {
    /// `timeout` from now.
    pub fn after(timeout: Duration) -> Self {
        Deadline::at(SystemTime::now() + timeout)
    }

    /// At `time`, to the millisecond (a time before the Unix epoch reads as the epoch).
    pub fn at(time: SystemTime) -> Self {
        let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        Deadline {
            unix_millis: u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_millis(self) -> u64 {
        self.unix_millis
    }

    /// The header value: decimal milliseconds since the Unix epoch.
    pub fn header_value(self) -> String {
        self.unix_millis.to_string()
    }

    /// Reads a header value written by [`Deadline::header_value`]: 1 to 20 ASCII digits. Anything
    /// else (a sign, spaces, a fraction, a date) is refused rather than guessed at.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        if bytes.is_empty() || bytes.len() > MAX_DIGITS || !bytes.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let unix_millis = std::str::from_utf8(bytes).ok()?.parse().ok()?;
        Some(Deadline { unix_millis })
    }

    /// How long ago the deadline passed, as of `now`; `None` while it has not.
    pub fn overdue(self, now: SystemTime) -> Option<Duration> {
        let now = Deadline::at(now).unix_millis;
        (now > self.unix_millis).then(|| Duration::from_millis(now - self.unix_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_travels_as_decimal_milliseconds_since_the_epoch() {
        let deadline = Deadline::at(UNIX_EPOCH + Duration::from_millis(1_764_512_345_678));
        assert_eq!(deadline.header_value(), "1764512345678");
        assert_eq!(Deadline::parse(b"1764512345678"), Some(deadline));
        assert_eq!(deadline.unix_millis(), 1_764_512_345_678);
    }

    #[test]
    fn anything_but_plain_digits_is_refused() {
        for bad in [
            &b""[..],
            b"-5",
            b"+5",
            b" 5",
            b"5 ",
            b"1.5",
            b"2026-11-30T12:00:00Z",
            b"\x00\x00\x01\x9a",
            b"123456789012345678901",
            b"99999999999999999999",
        ] {
            assert_eq!(Deadline::parse(bad), None, "{bad:?}");
        }
        assert_eq!(
            Deadline::parse(b"18446744073709551615").map(Deadline::unix_millis),
            Some(u64::MAX)
        );
    }

    #[test]
    fn a_deadline_is_overdue_only_after_it_passed() {
        let deadline = Deadline::at(UNIX_EPOCH + Duration::from_secs(100));
        let at = |millis| UNIX_EPOCH + Duration::from_millis(millis);
        assert_eq!(deadline.overdue(at(99_999)), None);
        assert_eq!(deadline.overdue(at(100_000)), None);
        assert_eq!(
            deadline.overdue(at(100_250)),
            Some(Duration::from_millis(250))
        );
    }

    #[test]
    fn after_is_in_the_future_by_the_timeout() {
        let before = SystemTime::now();
        let deadline = Deadline::after(Duration::from_secs(30));
        assert_eq!(deadline.overdue(before + Duration::from_secs(29)), None);
        assert!(deadline.overdue(before + Duration::from_secs(31)).is_some());
    }
}
