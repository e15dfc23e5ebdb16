//! The last ten minutes of what this dashboard did, in 2-second buckets: requests sent per kind,
//! replies matched, late and duplicated, timeouts, the pending requests sampled, and the matched
//! round trips. A ring of a fixed number of buckets, so its memory is the same whatever the
//! traffic; the time of each event is an argument, so tests drive it without waiting.

use super::latency::Latencies;
use crate::store::ReplyOutcome;
use contract::RequestKind;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long one bucket (one bar, one point of a line) lasts.
pub const BUCKET_SECONDS: u64 = 2;
/// How far back the charts go.
pub const WINDOW_SECONDS: u64 = 600;
/// Buckets in the window.
pub const BUCKETS: usize = (WINDOW_SECONDS / BUCKET_SECONDS) as usize;

/// What happened in one bucket's 2 seconds (or, added up, in a whole window).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Requests the broker accepted, per kind in the order of [`RequestKind::ALL`].
    pub sent: [u32; RequestKind::ALL.len()],
    /// First replies to pending requests: the round trips measured.
    pub matched: u32,
    /// First replies to requests already timed out.
    pub late: u32,
    /// Replies to requests that had one already.
    pub duplicates: u32,
    /// Requests that reached their timeout without a reply.
    pub timeouts: u32,
    /// The most requests seen waiting for their reply in one sample; `None` when no sample was
    /// taken.
    pub pending: Option<u32>,
    /// The round trips of the matched replies.
    pub round_trips: Latencies,
}

impl Bucket {
    /// Requests of `kind` sent.
    pub fn sent_of(&self, kind: RequestKind) -> u32 {
        self.sent[kind_index(kind)]
    }

    /// Adds `other`'s counts to these; the pending figure becomes the higher of the two.
    pub fn add(&mut self, other: &Bucket) {
        for (mine, theirs) in self.sent.iter_mut().zip(other.sent) {
            *mine = mine.saturating_add(theirs);
        }
        self.matched = self.matched.saturating_add(other.matched);
        self.late = self.late.saturating_add(other.late);
        self.duplicates = self.duplicates.saturating_add(other.duplicates);
        self.timeouts = self.timeouts.saturating_add(other.timeouts);
        self.pending = self.pending.max(other.pending);
        self.round_trips.merge(&other.round_trips);
    }
}

fn kind_index(kind: RequestKind) -> usize {
    RequestKind::ALL
        .iter()
        .position(|known| *known == kind)
        .unwrap_or_default()
}

/// Whole seconds since the Unix epoch (the epoch itself for earlier times).
fn seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// The ring of buckets, by wall-clock time.
pub struct Series {
    /// Bucket number `n` (seconds since the epoch / [`BUCKET_SECONDS`]) is in slot `n %
    /// BUCKETS`; slots not written since their bucket began are cleared as time moves on.
    buckets: Box<[Bucket]>,
    /// The number of the newest bucket written; `None` before the first event.
    newest: Option<u64>,
    /// The last pending sample: the second it was taken in, and the count.
    last_pending: Option<(u64, u32)>,
}

impl Default for Series {
    fn default() -> Self {
        Series {
            buckets: vec![Bucket::default(); BUCKETS].into_boxed_slice(),
            newest: None,
            last_pending: None,
        }
    }
}

/// Where the ring stands, not its few hundred buckets.
impl fmt::Debug for Series {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Series")
            .field("newest", &self.newest)
            .field("last_pending", &self.last_pending)
            .finish_non_exhaustive()
    }
}

impl Series {
    pub fn record_sent(&mut self, at: SystemTime, kind: RequestKind) {
        let slot = &mut self.bucket_at(at).sent[kind_index(kind)];
        *slot = slot.saturating_add(1);
    }

    /// Counts a reply by what became of it; replies that match no request of this dashboard
    /// (uncorrelated, foreign) are not charted.
    pub fn record_reply(&mut self, at: SystemTime, outcome: ReplyOutcome) {
        let bucket = match outcome {
            ReplyOutcome::Uncorrelated | ReplyOutcome::Foreign => return,
            _ => self.bucket_at(at),
        };
        match outcome {
            ReplyOutcome::Matched(round_trip) => {
                bucket.matched = bucket.matched.saturating_add(1);
                bucket.round_trips.record(round_trip);
            }
            ReplyOutcome::Late(_) => bucket.late = bucket.late.saturating_add(1),
            ReplyOutcome::Duplicate => bucket.duplicates = bucket.duplicates.saturating_add(1),
            ReplyOutcome::Uncorrelated | ReplyOutcome::Foreign => {}
        }
    }

    pub fn record_timeouts(&mut self, at: SystemTime, count: usize) {
        if count == 0 {
            return;
        }
        let bucket = self.bucket_at(at);
        bucket.timeouts = bucket
            .timeouts
            .saturating_add(u32::try_from(count).unwrap_or(u32::MAX));
    }

    /// Whether a pending sample taken at `at` would be the first of its second: counting the
    /// pending requests walks the whole store, so it is done at most once a second.
    pub fn wants_pending_sample(&self, at: SystemTime) -> bool {
        self.last_pending
            .is_none_or(|(second, _)| second != seconds(at))
    }

    pub fn record_pending(&mut self, at: SystemTime, count: usize) {
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        self.last_pending = Some((seconds(at), count));
        let bucket = self.bucket_at(at);
        bucket.pending = bucket.pending.max(Some(count));
    }

    /// The window that ends with the bucket `now` is in.
    pub fn window(&self, now: SystemTime) -> Window {
        let current = seconds(now) / BUCKET_SECONDS;
        let buckets = (0..BUCKETS as u64)
            .map(|position| {
                // Oldest first: position BUCKETS - 1 is the current bucket.
                (current + position + 1)
                    .checked_sub(BUCKETS as u64)
                    .and_then(|number| self.written(number))
                    .copied()
                    .unwrap_or_default()
            })
            .collect();
        Window {
            current_start: UNIX_EPOCH + Duration::from_secs(current * BUCKET_SECONDS),
            buckets,
            pending_now: self.last_pending.map(|(_, count)| count),
        }
    }

    /// Bucket `number`, if it is still in the ring.
    fn written(&self, number: u64) -> Option<&Bucket> {
        let newest = self.newest?;
        (number <= newest && newest - number < BUCKETS as u64).then(|| &self.buckets[slot(number)])
    }

    /// The bucket `at` falls in, moving the ring on to it first when it is newer than the
    /// newest. A time far older than the window means the wall clock was set back: the ring
    /// starts again from it.
    fn bucket_at(&mut self, at: SystemTime) -> &mut Bucket {
        let number = seconds(at) / BUCKET_SECONDS;
        match self.newest {
            Some(newest) if number > newest => {
                // Every bucket between the newest and this one saw nothing.
                let gap = (number - newest).min(BUCKETS as u64);
                for skipped in number + 1 - gap..=number {
                    self.buckets[slot(skipped)] = Bucket::default();
                }
                self.newest = Some(number);
            }
            Some(newest) if newest - number < BUCKETS as u64 => {}
            _ => {
                self.buckets.fill(Bucket::default());
                self.newest = Some(number);
            }
        }
        &mut self.buckets[slot(number)]
    }
}

fn slot(number: u64) -> usize {
    // Less than BUCKETS, so it fits.
    (number % BUCKETS as u64) as usize
}

/// The buckets of one window, oldest first, as the charts draw them.
#[derive(Clone, Debug)]
pub struct Window {
    /// When the current (last, still filling) bucket began.
    pub current_start: SystemTime,
    /// [`BUCKETS`] buckets, oldest first; the last is the current one.
    pub buckets: Vec<Bucket>,
    /// The latest pending sample, however old.
    pub pending_now: Option<u32>,
}

impl Window {
    /// When the bucket at `index` began.
    pub fn start_of(&self, index: usize) -> SystemTime {
        let before = (self.buckets.len() - 1 - index.min(self.buckets.len() - 1)) as u64;
        self.current_start - Duration::from_secs(before * BUCKET_SECONDS)
    }

    /// Everything in the window added up.
    pub fn totals(&self) -> Bucket {
        self.totals_of_last(self.buckets.len())
    }

    /// The last `count` buckets added up.
    pub fn totals_of_last(&self, count: usize) -> Bucket {
        let mut total = Bucket::default();
        for bucket in &self.buckets[self.buckets.len().saturating_sub(count)..] {
            total.add(bucket);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(second)
    }

    /// A time well after the epoch, at the start of a bucket.
    const T: u64 = 1_700_000_000;

    #[test]
    fn events_land_in_their_bucket_and_add_up() {
        let mut series = Series::default();
        series.record_sent(at(T), RequestKind::Invoice);
        series.record_sent(at(T + 1), RequestKind::Invoice);
        series.record_sent(at(T + 2), RequestKind::Score);
        series.record_reply(at(T + 3), ReplyOutcome::Matched(Duration::from_millis(5)));
        series.record_reply(at(T + 3), ReplyOutcome::Duplicate);
        series.record_reply(at(T + 3), ReplyOutcome::Late(Duration::from_secs(40)));
        series.record_reply(at(T + 3), ReplyOutcome::Uncorrelated);
        series.record_reply(at(T + 3), ReplyOutcome::Foreign);
        series.record_timeouts(at(T + 4), 2);
        series.record_timeouts(at(T + 4), 0);
        series.record_pending(at(T + 4), 7);
        series.record_pending(at(T + 5), 3);

        let window = series.window(at(T + 5));
        assert_eq!(window.buckets.len(), BUCKETS);
        let last = window.buckets.len() - 1;
        assert_eq!(window.start_of(last), at(T + 4));
        assert_eq!(window.start_of(last - 2), at(T));
        let first = &window.buckets[last - 2];
        assert_eq!(first.sent, [2, 0]);
        let second = &window.buckets[last - 1];
        assert_eq!(second.sent_of(RequestKind::Score), 1);
        assert_eq!((second.matched, second.duplicates, second.late), (1, 1, 1));
        assert_eq!(second.round_trips.count(), 1);
        let third = &window.buckets[last];
        assert_eq!((third.timeouts, third.pending), (2, Some(7)));
        assert_eq!(window.pending_now, Some(3));

        let totals = window.totals();
        assert_eq!(totals.sent, [2, 1]);
        assert_eq!(
            (
                totals.matched,
                totals.late,
                totals.duplicates,
                totals.timeouts
            ),
            (1, 1, 1, 2)
        );
        assert_eq!(totals.pending, Some(7));
        assert_eq!(window.totals_of_last(1).sent, [0, 0]);
    }

    #[test]
    fn the_window_rolls_over_and_forgets_what_is_older_than_ten_minutes() {
        let mut series = Series::default();
        series.record_sent(at(T), RequestKind::Invoice);
        series.record_sent(at(T + 300), RequestKind::Score);
        // Still in the window 598 s later: its bucket is the oldest.
        let window = series.window(at(T + WINDOW_SECONDS - 2));
        assert_eq!(window.totals().sent, [1, 1]);
        assert_eq!(window.buckets[0].sent, [1, 0]);
        // Gone once the window has moved past it, whether or not anything happened since...
        assert_eq!(series.window(at(T + WINDOW_SECONDS)).totals().sent, [0, 1]);
        // ...and once a later event reused its slot.
        series.record_sent(at(T + WINDOW_SECONDS), RequestKind::Score);
        let window = series.window(at(T + WINDOW_SECONDS));
        assert_eq!(window.totals().sent, [0, 2]);
        assert_eq!(window.buckets[BUCKETS - 1].sent, [0, 1]);
        // Nothing for longer than the window: all gone.
        assert_eq!(
            series.window(at(T + 3 * WINDOW_SECONDS)).totals(),
            Bucket::default()
        );
        series.record_sent(at(T + 3 * WINDOW_SECONDS), RequestKind::Invoice);
        assert_eq!(
            series.window(at(T + 3 * WINDOW_SECONDS)).totals().sent,
            [1, 0]
        );
    }

    #[test]
    fn a_clock_set_back_starts_the_ring_again_and_a_small_step_back_still_counts() {
        let mut series = Series::default();
        series.record_sent(at(T), RequestKind::Invoice);
        series.record_sent(at(T - 10), RequestKind::Invoice);
        assert_eq!(series.window(at(T)).totals().sent, [2, 0]);
        series.record_sent(at(T - 3600), RequestKind::Score);
        let window = series.window(at(T - 3600));
        assert_eq!(window.totals().sent, [0, 1]);
    }

    #[test]
    fn memory_is_bounded_whatever_the_traffic() {
        let mut series = Series::default();
        for second in 0..3 * WINDOW_SECONDS {
            for _ in 0..50 {
                series.record_sent(at(T + second), RequestKind::Score);
                series.record_reply(
                    at(T + second),
                    ReplyOutcome::Matched(Duration::from_millis(second)),
                );
            }
        }
        assert_eq!(series.buckets.len(), BUCKETS);
        let window = series.window(at(T + 3 * WINDOW_SECONDS - 1));
        assert_eq!(window.buckets.len(), BUCKETS);
        // Only the last ten minutes are counted: 50 a second.
        let totals = window.totals();
        assert_eq!(u64::from(totals.sent[1]), 50 * WINDOW_SECONDS);
        assert_eq!(totals.round_trips.count(), 50 * WINDOW_SECONDS);
        // A count that would overflow stays at the largest.
        let mut full = Bucket {
            matched: u32::MAX,
            ..Bucket::default()
        };
        full.add(&totals);
        assert_eq!(full.matched, u32::MAX);
    }

    #[test]
    fn pending_is_sampled_at_most_once_a_second() {
        let mut series = Series::default();
        assert!(series.wants_pending_sample(at(T)));
        series.record_pending(at(T), 4);
        assert!(!series.wants_pending_sample(at(T)));
        assert!(series.wants_pending_sample(at(T + 1)));
        // No sample in a bucket is not the same as a sample of none.
        series.record_pending(at(T + 10), 0);
        let window = series.window(at(T + 10));
        assert_eq!(window.buckets[BUCKETS - 1].pending, Some(0));
        assert_eq!(window.buckets[BUCKETS - 2].pending, None);
        assert_eq!(window.pending_now, Some(0));
    }
}
