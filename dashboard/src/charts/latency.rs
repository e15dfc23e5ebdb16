//! Round trips counted in a small fixed set of logarithmic buckets, so that p50 and p99 of any
//! number of replies take the same few hundred bytes: each chart bucket holds one, and the
//! window's figures merge them.
//!
//! Bucket `i` holds the round trips from `FIRST_BOUND × STEP^(i-1)` up to `FIRST_BOUND ×
//! STEP^i`, with `STEP` = 2^(1/4): four buckets an octave. A percentile is read as the geometric
//! middle of the bucket its rank falls in, which is within 9.1 % (2^(1/8)) of the true value,
//! for round trips between `FIRST_BOUND` and the last bound (about 105 s, beyond any request
//! timeout the dashboard allows by default); those outside are counted in the first or last
//! bucket.

use std::time::Duration;

/// The upper bound of the first bucket: shorter round trips than this are not told apart.
const FIRST_BOUND_MICROS: f64 = 100.0;
/// Buckets an octave: a quarter octave apart, each bound is 19 % above the one before.
const BUCKETS_PER_OCTAVE: f64 = 4.0;
/// 20 octaves above `FIRST_BOUND_MICROS`: up to 105 s.
const BUCKETS: usize = 81;

/// Counts of round trips, per logarithmic bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Latencies {
    counts: [u32; BUCKETS],
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies {
            counts: [0; BUCKETS],
        }
    }
}

impl Latencies {
    pub fn record(&mut self, round_trip: Duration) {
        let slot = &mut self.counts[bucket_of(round_trip)];
        *slot = slot.saturating_add(1);
    }

    /// Adds another bucket's counts to these.
    pub fn merge(&mut self, other: &Latencies) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine = mine.saturating_add(theirs);
        }
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|&count| u64::from(count)).sum()
    }

    /// The round trip that `quantile` (0.5 for p50) of the replies did not exceed, by nearest
    /// rank: the `ceil(quantile × count)`th shortest. `None` without replies.
    pub fn percentile(&self, quantile: f64) -> Option<Duration> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        // At most `count`: the cast back cannot overflow.
        let rank = ((quantile.clamp(0.0, 1.0) * count as f64).ceil() as u64).max(1);
        let mut seen = 0_u64;
        let bucket = self.counts.iter().position(|&in_bucket| {
            seen += u64::from(in_bucket);
            seen >= rank
        })?;
        Some(middle_of(bucket))
    }
}

/// The bucket a round trip is counted in.
fn bucket_of(round_trip: Duration) -> usize {
    let micros = round_trip.as_secs_f64() * 1e6;
    if micros <= FIRST_BOUND_MICROS {
        return 0;
    }
    let above = ((micros / FIRST_BOUND_MICROS).log2() * BUCKETS_PER_OCTAVE).ceil();
    // Positive here; anything beyond the last bucket is counted in it.
    (above as usize).min(BUCKETS - 1)
}

/// The geometric middle of a bucket: the value that is at most 2^(1/8) off any round trip in it.
fn middle_of(bucket: usize) -> Duration {
    let octaves = (bucket as f64 - 0.5) / BUCKETS_PER_OCTAVE;
    Duration::from_secs_f64(FIRST_BOUND_MICROS * octaves.exp2() / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(value: f64) -> Duration {
        Duration::from_secs_f64(value / 1000.0)
    }

    /// Within the 2^(1/8) the buckets promise.
    fn assert_close(got: Duration, expected: Duration) {
        let ratio = got.as_secs_f64() / expected.as_secs_f64();
        assert!(
            (1.0 / 1.091..=1.091).contains(&ratio),
            "{got:?} is not within 9.1 % of {expected:?}"
        );
    }

    #[test]
    fn percentiles_of_a_known_distribution_are_within_the_bucket_resolution() {
        // 1 ms, 2 ms, ... 1000 ms: p50 is 500 ms and p99 990 ms by nearest rank.
        let mut latencies = Latencies::default();
        for millis in 1..=1000 {
            latencies.record(ms(f64::from(millis)));
        }
        assert_eq!(latencies.count(), 1000);
        assert_close(latencies.percentile(0.5).unwrap(), ms(500.0));
        assert_close(latencies.percentile(0.99).unwrap(), ms(990.0));
        assert_close(latencies.percentile(1.0).unwrap(), ms(1000.0));
        assert_close(latencies.percentile(0.0).unwrap(), ms(1.0));
    }

    #[test]
    fn a_few_replies_give_their_nearest_ranks() {
        // Six replies, as the browser test sends: p50 is the third, p99 the sixth.
        let mut latencies = Latencies::default();
        for millis in [40.0, 7.5, 12.0, 300.0, 9.0, 18.0] {
            latencies.record(ms(millis));
        }
        assert_close(latencies.percentile(0.5).unwrap(), ms(12.0));
        assert_close(latencies.percentile(0.99).unwrap(), ms(300.0));
    }

    #[test]
    fn merged_buckets_count_both() {
        let (mut fast, mut slow) = (Latencies::default(), Latencies::default());
        for _ in 0..99 {
            fast.record(ms(2.0));
        }
        slow.record(ms(2000.0));
        fast.merge(&slow);
        assert_eq!(fast.count(), 100);
        assert_close(fast.percentile(0.5).unwrap(), ms(2.0));
        assert_close(fast.percentile(0.99).unwrap(), ms(2.0));
        assert_close(fast.percentile(1.0).unwrap(), ms(2000.0));
    }

    #[test]
    fn no_replies_have_no_percentile_and_extremes_stay_in_range() {
        let mut latencies = Latencies::default();
        assert_eq!(latencies.percentile(0.5), None);
        latencies.record(Duration::ZERO);
        latencies.record(Duration::from_secs(86_400));
        assert_eq!(latencies.count(), 2);
        assert!(latencies.percentile(0.5).unwrap() < Duration::from_micros(100));
        assert!(latencies.percentile(1.0).unwrap() < Duration::from_secs(120));
    }
}
