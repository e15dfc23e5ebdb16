//! What a service's failure to answer leads to: a transient failure is tried again after an
//! exponentially growing pause, up to a limit, then given up like a permanent one.

use std::time::Duration;

/// Why a service could not answer a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Whether trying again may succeed (a timeout, a refused connection, a busy database):
    /// the request is retried. A permanent failure is answered at once.
    pub transient: bool,
    /// What went wrong, for the error reply and the dead-letter reason.
    pub message: String,
}

impl Failure {
    /// A failure that trying again cannot fix (the request asks for something impossible).
    pub fn permanent(message: impl Into<String>) -> Self {
        Failure {
            transient: false,
            message: message.into(),
        }
    }

    /// A failure that may pass (a dependency timed out): the request is retried.
    pub fn transient(message: impl Into<String>) -> Self {
        Failure {
            transient: true,
            message: message.into(),
        }
    }
}

/// How often, and after how long, a transiently failed request is tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries after the first one; 0 never retries.
    pub max_retries: u32,
    /// The pause before the first retry; each further retry waits twice as long as the last.
    pub first_backoff: Duration,
    /// The longest pause between two tries.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// Three retries after 100, 200 and 400 ms: a dependency's hiccup is ridden out well within
    /// a requester's usual timeout.
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The pause before retry number `retry` (1 for the first), or `None` when that retry is
    /// beyond the limit.
    pub fn backoff(&self, retry: u32) -> Option<Duration> {
        if retry == 0 || retry > self.max_retries {
            return None;
        }
        let factor = 2u32.saturating_pow(retry - 1);
        Some(
            self.first_backoff
                .saturating_mul(factor)
                .min(self.max_backoff),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_stops_at_the_limit() {
        let policy = RetryPolicy {
            max_retries: 5,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
        };
        let pauses: Vec<_> = (1..=6).map(|retry| policy.backoff(retry)).collect();
        let ms = |millis| Some(Duration::from_millis(millis));
        assert_eq!(
            pauses,
            vec![ms(100), ms(200), ms(400), ms(500), ms(500), None]
        );
        assert_eq!(policy.backoff(0), None);
    }

    #[test]
    fn no_retries_means_no_backoff() {
        let policy = RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        };
        assert_eq!(policy.backoff(1), None);
    }

    #[test]
    fn a_huge_retry_number_saturates_instead_of_overflowing() {
        let policy = RetryPolicy {
            max_retries: u32::MAX,
            ..RetryPolicy::default()
        };
        assert_eq!(policy.backoff(200), Some(policy.max_backoff));
    }
}
