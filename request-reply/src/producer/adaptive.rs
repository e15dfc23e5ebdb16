//! One producer that sends at once when nothing waits and batches when messages queue.
//!
//! librdkafka fixes `linger.ms` when a producer is made. At 0 each request and reply is its own
//! produce request, so under load the broker and both clients spend their CPU on per-request
//! work and thread wake-ups; at 1 ms or more every message waits for librdkafka's next wake-up,
//! which adds a millisecond or more to each hop of an idle round trip (scripts/bench, "Side by
//! side"). So there are two librdkafka producers: `immediate` (linger 0) and `batching` (linger
//! [`BATCH_LINGER_MS`]), and [`route`] picks one per message from what each still has
//! unacknowledged.
//!
//! Order is kept: a message goes to one producer only while the other has nothing
//! unacknowledged, so two messages to one partition are never in flight on different producers,
//! and each producer keeps its own in order (idempotence). Moving to batching therefore waits
//! until the immediate producer's last messages are acknowledged, as long as acknowledgements
//! keep coming: should none come for [`SWITCH_GRACE`], the messages left cannot be delivered yet
//! (their partition's leader is away), and they must not hold up every other partition's
//! messages, so then messages go out at once for [`HOLD`].
//!
//! A `linger.ms` (or its alias `queue.buffering.max.ms`) in the user's `[producer]` section
//! turns this off: one producer with exactly the user's settings.

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the batching producer waits for company before sending. librdkafka wakes no sooner
/// than a millisecond, so less would change nothing.
pub const BATCH_LINGER_MS: &str = "1";

/// Unacknowledged messages on the immediate producer at which the next one moves to batching:
/// that many sent together means requests are queueing.
pub const BUSY_AT: usize = 4;

/// How often a message waiting for the move to batching looks again.
const DRAIN_POLL: Duration = Duration::from_millis(1);

/// How long messages wait for the immediate producer's next acknowledgement before the move to
/// batching is given up. Its messages are acknowledged within milliseconds, unless one waits
/// for a partition whose leader is away: that can take until `message.timeout.ms`, and
/// meanwhile every message, to whatever partition, would wait behind it. Measured from the last
/// acknowledgement, not from the start of the wait: a busy machine drains a long queue slowly
/// but steadily, and giving up then would send a second of messages one by one under load.
pub const SWITCH_GRACE: Duration = Duration::from_millis(20);

/// After a move to batching was given up: how long messages go out at once, with no attempt to
/// move, so that a partition without a leader costs the others no more than one grace a second.
pub const HOLD: Duration = Duration::from_secs(1);

/// How many messages in a row must find the batching producer empty before messages go out at
/// once again. More than one: under load the batching producer empties now and then between
/// batches, and every move back to batching makes messages wait for the immediate producer.
pub const IDLE_LOOKS: u8 = 4;

/// Which producer messages take now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Out at once.
    #[default]
    Immediate,
    /// On the way to batching: waiting for the immediate producer to drain.
    Switching {
        /// When the wait began or the immediate producer last had a message acknowledged.
        since: Instant,
        /// Messages the immediate producer held unacknowledged then.
        left: usize,
    },
    /// Batching.
    Batching {
        /// Messages in a row that found the batching producer empty.
        idle_looks: u8,
    },
    /// Out at once, however busy: the immediate producer had nothing acknowledged for
    /// [`SWITCH_GRACE`] while it drained.
    Held {
        /// When moving to batching may be tried again.
        until: Instant,
    },
}

/// Where one message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Out at once, on the linger-0 producer.
    Immediate,
    /// On the lingering producer, in a batch with its neighbours.
    Batching,
    /// To batching, once the immediate producer has nothing unacknowledged; look again then.
    Wait,
}

/// Which producer a message takes in `mode` at `now`, given how many messages each producer has
/// unacknowledged; returns the route and the next mode.
///
/// Messages go out at once until [`BUSY_AT`] of them wait together; then they wait for the
/// immediate producer to drain and batch, until [`IDLE_LOOKS`] in a row find the batching
/// producer empty. If the draining immediate producer has nothing acknowledged for
/// [`SWITCH_GRACE`], messages go out at once for [`HOLD`] instead. A message never goes to one
/// producer while the other holds any.
pub fn route(
    mode: Mode,
    immediate: usize,
    batching: usize,
    busy_at: usize,
    now: Instant,
) -> (Route, Mode) {
    match mode {
        _ if batching > 0 && immediate == 0 => (Route::Batching, Mode::Batching { idle_looks: 0 }),
        // Both hold some only while an event other than an acknowledgement (which the counts
        // include) is being handed over: a moment.
        _ if batching > 0 => (Route::Wait, mode),
        Mode::Held { until } if now < until => (Route::Immediate, mode),
        Mode::Immediate | Mode::Held { .. } if immediate < busy_at => {
            (Route::Immediate, Mode::Immediate)
        }
        Mode::Immediate | Mode::Held { .. } => (Route::Wait, switching(now, immediate)),
        Mode::Switching { .. } if immediate == 0 => {
            (Route::Batching, Mode::Batching { idle_looks: 0 })
        }
        Mode::Switching { left, .. } if immediate < left => {
            (Route::Wait, switching(now, immediate))
        }
        Mode::Switching { since, .. } if now < since + SWITCH_GRACE => (Route::Wait, mode),
        Mode::Switching { .. } => (Route::Immediate, Mode::Held { until: now + HOLD }),
        Mode::Batching { idle_looks } if idle_looks + 1 >= IDLE_LOOKS && immediate == 0 => {
            (Route::Immediate, Mode::Immediate)
        }
        Mode::Batching { idle_looks } if immediate == 0 => (
            Route::Batching,
            Mode::Batching {
                idle_looks: idle_looks + 1,
            },
        ),
        Mode::Batching { .. } => (Route::Wait, switching(now, immediate)),
    }
}

/// Waiting, from `now`, for the immediate producer's `left` messages to be acknowledged.
fn switching(now: Instant, left: usize) -> Mode {
    Mode::Switching { since: now, left }
}

/// A producer that is fast when idle and efficient under load (see the module documentation).
/// Cheap to clone: clones share the librdkafka producers and the routing state.
#[derive(Clone)]
pub struct AdaptiveProducer {
    immediate: FutureProducer,
    /// None when the user set the linger: everything goes through `immediate` as configured.
    batching: Option<FutureProducer>,
    mode: Arc<Mutex<Mode>>,
    /// `enable.idempotence` is on: every acknowledgement carries an offset, or is a duplicate's
    /// (see [`super::acknowledgement`]).
    idempotent: bool,
}

impl std::fmt::Debug for AdaptiveProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdaptiveProducer")
            .field("adaptive", &self.batching.is_some())
            .finish_non_exhaustive()
    }
}

impl AdaptiveProducer {
    /// Two producers made from `config`, one with `linger.ms` 0 and one with
    /// [`BATCH_LINGER_MS`]; or, when `config` sets the linger, one producer with it.
    pub fn new(config: &ClientConfig) -> KafkaResult<Self> {
        let idempotent = super::acknowledgement::idempotent(config);
        let user_linger = ["linger.ms", "queue.buffering.max.ms"]
            .iter()
            .any(|key| config.get(key).is_some());
        if user_linger {
            return Ok(AdaptiveProducer {
                immediate: config.create()?,
                batching: None,
                mode: Arc::default(),
                idempotent,
            });
        }
        let mut immediate = config.clone();
        immediate.set("linger.ms", "0");
        let mut batching = config.clone();
        batching.set("linger.ms", BATCH_LINGER_MS);
        Ok(AdaptiveProducer {
            immediate: immediate.create()?,
            batching: Some(batching.create()?),
            mode: Arc::default(),
            idempotent,
        })
    }

    /// Queues `record` on the producer [`route`] picks, first waiting, if it must, until the
    /// immediate producer's messages are acknowledged. Returns when librdkafka has the message;
    /// the future it gives resolves when the broker acknowledges it.
    pub async fn send_result<'a, K, P>(
        &self,
        record: FutureRecord<'a, K, P>,
    ) -> Result<DeliveryFuture, (KafkaError, FutureRecord<'a, K, P>)>
    where
        K: rdkafka::message::ToBytes + ?Sized,
        P: rdkafka::message::ToBytes + ?Sized,
    {
        let Some(batching) = &self.batching else {
            return self.immediate.send_result(record);
        };
        loop {
            {
                // Held while choosing and queueing, so that no message goes to one producer
                // between another's look at the counts and its send to the other.
                let mut mode = self.mode.lock().unwrap_or_else(|e| e.into_inner());
                let (chosen, next) = route(
                    *mode,
                    in_flight(&self.immediate),
                    in_flight(batching),
                    BUSY_AT,
                    Instant::now(),
                );
                *mode = next;
                match chosen {
                    Route::Immediate => return self.immediate.send_result(record),
                    Route::Batching => return batching.send_result(record),
                    Route::Wait => {}
                }
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
    }

    /// Whether `enable.idempotence` is on, so that an acknowledgement without an offset is a
    /// duplicate's (see [`super::acknowledgement`]).
    pub fn idempotent(&self) -> bool {
        self.idempotent
    }

    /// Waits up to `timeout` for both producers to deliver what they hold (at shutdown).
    pub fn flush(&self, timeout: Duration) -> KafkaResult<()> {
        self.immediate.flush(Timeout::After(timeout))?;
        match &self.batching {
            Some(batching) => batching.flush(Timeout::After(timeout)),
            None => Ok(()),
        }
    }
}

/// Messages the producer holds that are not yet acknowledged (or whose acknowledgement is not
/// yet handed over).
fn in_flight(producer: &FutureProducer) -> usize {
    usize::try_from(producer.in_flight_count()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BATCHING: Mode = Mode::Batching { idle_looks: 0 };

    fn at(base: Instant, millis: u64) -> Instant {
        base + Duration::from_millis(millis)
    }

    #[test]
    fn an_idle_producer_sends_at_once() {
        let now = Instant::now();
        assert_eq!(
            route(Mode::Immediate, 0, 0, 4, now),
            (Route::Immediate, Mode::Immediate)
        );
        assert_eq!(
            route(Mode::Immediate, 3, 0, 4, now),
            (Route::Immediate, Mode::Immediate)
        );
    }

    #[test]
    fn queueing_messages_wait_for_the_immediate_producer_then_batch() {
        let start = Instant::now();
        let waiting = switching(start, 4);
        assert_eq!(
            route(Mode::Immediate, 4, 0, 4, start),
            (Route::Wait, waiting)
        );
        // Still draining: even below the threshold, nothing more goes out at once.
        assert_eq!(
            route(waiting, 1, 0, 4, at(start, 5)),
            (Route::Wait, switching(at(start, 5), 1))
        );
        // Drained: the first batched message.
        assert_eq!(
            route(waiting, 0, 0, 4, at(start, 6)),
            (Route::Batching, BATCHING)
        );
    }

    /// A message the immediate producer cannot deliver yet (its partition's leader is away)
    /// holds up the move to batching for a grace only, not every partition's messages until
    /// it times out.
    #[test]
    fn a_move_to_batching_that_does_not_drain_in_time_is_given_up_for_a_while() {
        let start = Instant::now();
        let waiting = switching(start, 3);
        let grace = u64::try_from(SWITCH_GRACE.as_millis()).unwrap();
        assert_eq!(
            route(waiting, 3, 0, 4, at(start, grace - 1)),
            (Route::Wait, waiting)
        );
        let held = Mode::Held {
            until: at(start, grace) + HOLD,
        };
        assert_eq!(
            route(waiting, 3, 0, 4, at(start, grace)),
            (Route::Immediate, held)
        );
        // However busy, out at once while held.
        assert_eq!(
            route(held, 50, 0, 4, at(start, grace + 10)),
            (Route::Immediate, held)
        );
        // Then moving to batching is tried again.
        let later = at(start, grace) + HOLD;
        assert_eq!(
            route(held, 50, 0, 4, later),
            (Route::Wait, switching(later, 50))
        );
        assert_eq!(
            route(held, 1, 0, 4, later),
            (Route::Immediate, Mode::Immediate)
        );
    }

    /// A busy machine drains a long queue slowly: as long as acknowledgements keep coming, the
    /// wait goes on past the grace, and the grace counts from the last one.
    #[test]
    fn a_draining_producer_is_waited_for_as_long_as_acknowledgements_come() {
        let start = Instant::now();
        let grace = u64::try_from(SWITCH_GRACE.as_millis()).unwrap();
        let mut mode = switching(start, 100);
        let mut now = start;
        for left in (1..100).rev().step_by(10) {
            now = at(now, grace - 1);
            let (chosen, next) = route(mode, left, 0, 4, now);
            assert_eq!((chosen, next), (Route::Wait, switching(now, left)));
            mode = next;
        }
        assert!(now > at(start, 5 * grace), "waited past the grace: {now:?}");
        // No acknowledgement for a grace since the last: given up.
        let (chosen, next) = route(mode, 9, 0, 4, at(now, grace));
        assert_eq!(chosen, Route::Immediate);
        assert!(matches!(next, Mode::Held { .. }), "{next:?}");
    }

    #[test]
    fn batching_goes_on_until_messages_in_a_row_find_the_batching_producer_empty() {
        let now = Instant::now();
        assert_eq!(route(BATCHING, 0, 500, 4, now), (Route::Batching, BATCHING));
        let mut mode = BATCHING;
        for _ in 1..IDLE_LOOKS {
            let (chosen, next) = route(mode, 0, 0, 4, now);
            assert_eq!(chosen, Route::Batching);
            mode = next;
        }
        // One busy look starts the count again.
        assert_eq!(route(mode, 0, 1, 4, now), (Route::Batching, BATCHING));
        assert_eq!(
            route(mode, 0, 0, 4, now),
            (Route::Immediate, Mode::Immediate)
        );
    }

    /// The order guarantee: whatever the mode, counts and time, a message never goes to a
    /// producer while the other holds something unacknowledged.
    #[test]
    fn no_message_goes_to_one_producer_while_the_other_holds_any() {
        let start = Instant::now();
        let modes = [
            Mode::Immediate,
            switching(start, 4),
            BATCHING,
            Mode::Batching {
                idle_looks: IDLE_LOOKS - 1,
            },
            Mode::Held {
                until: start + HOLD,
            },
        ];
        let times = [start, start + SWITCH_GRACE, start + HOLD + SWITCH_GRACE];
        for mode in modes {
            for now in times {
                for immediate in 0..8 {
                    for batching in 0..8 {
                        let (chosen, _) = route(mode, immediate, batching, 4, now);
                        match chosen {
                            Route::Batching => assert_eq!(immediate, 0, "{mode:?}"),
                            Route::Immediate => assert_eq!(batching, 0, "{mode:?}"),
                            Route::Wait => {}
                        }
                    }
                }
            }
        }
    }
}
