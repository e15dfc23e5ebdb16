//! How a worker gets over what librdkafka does not heal by itself: a reply producer that stops
//! delivering, and a consumer that stops fetching a partition with requests in it.
//!
//! A reply is never waited for longer than `message.timeout.ms`: when one times out, the
//! producer that queued it is replaced (see [`crate::producer::RenewingProducer`]) and the reply is
//! sent again on the new one. A consumer whose partition is behind its high watermark and has not moved for the
//! stall time (see [`crate::watchdog`]) is sent back by a seek to the next offset it expects.

use crate::headers;
use crate::kafka::Outgoing;
use crate::offsets::{blocking_lookup, consumer_positions};
use crate::watchdog::{Floors, PartitionKey, Remedy, Stall, Stalls, is_undecodable, remedy};
use prometheus_client::metrics::counter::Counter;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::DeliveryFuture;
use rdkafka::topic_partition_list::Offset;
use rdkafka::types::RDKafkaErrorCode;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// A message queued in a producer of some generation.
pub(crate) type Queued = (u64, Result<DeliveryFuture, KafkaError>);

/// What to do after a delivery failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// Retrying cannot help: dead-letter the request instead.
    GiveUp,
    /// The producer did not get it acknowledged in time: send it again on a new producer.
    NewProducer,
    /// A passing failure: send it again after a pause.
    Retry,
}

/// Decides what a delivery failure calls for.
pub(crate) fn after_failure(error: &KafkaError) -> AfterFailure {
    use RDKafkaErrorCode::*;
    match error {
        KafkaError::MessageProduction(
            UnknownPartition
            | UnknownTopic
            | UnknownTopicOrPartition
            | InvalidTopic
            | MessageSizeTooLarge
            | InvalidMessageSize
            | InvalidMessage
            | InvalidRecord
            | TopicAuthorizationFailed,
        ) => AfterFailure::GiveUp,
        KafkaError::MessageProduction(MessageTimedOut) => AfterFailure::NewProducer,
        _ => AfterFailure::Retry,
    }
}

/// The group consumer's side: which assigned partitions have stalled.
pub(crate) struct ConsumerWatch {
    stalls: Stalls,
    /// Looks up high watermarks and committed offsets; a client of its own.
    probe: Arc<BaseConsumer>,
    /// What the probe is made from, to make a new one when it reaches no broker.
    probe_config: ClientConfig,
    /// The topic whose metadata tells whether brokers answer at all.
    request_topic: String,
    /// Look-ups in a row that reached no broker.
    unanswered: u32,
    lookup: Option<tokio::task::JoinHandle<Option<Lookup>>>,
    next_lookup: tokio::time::Instant,
    /// The consumer reported a message it could not decode since the last look-up.
    undecodable: bool,
    /// The worker stopped reading at its in-flight limit since the last look-up was judged.
    held_back: bool,
    /// What the group has committed, below which nothing is answered again; `None` when the
    /// worker was asked to answer its requests again from the beginning (`--reset`).
    floors: Option<Floors>,
    /// Partitions sent back up to their committed offset, and where to.
    sent_back: HashMap<PartitionKey, i64>,
    recoveries: Counter,
}

impl std::fmt::Debug for ConsumerWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerWatch")
            .field("stalls", &self.stalls)
            .finish_non_exhaustive()
    }
}

/// Whether a request just read lies below what the group has committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Below {
    /// No: answer it.
    No,
    /// Yes, the first of its partition: the consumer was just sent back up to the committed
    /// offset (exactly-once abandons its open transaction then).
    SentBack,
    /// Yes, fetched before the consumer was sent back: pass over it.
    AlreadySentBack,
}

/// What the watch has to say to the worker's loop.
#[derive(Debug)]
pub(crate) enum Tick {
    /// Time to start a look-up.
    Due,
    /// A look-up finished (with nothing when the brokers did not answer).
    LookedUp(Option<Lookup>),
}

/// What one look-up found: the high watermark of each assigned partition, and where the group
/// left each partition the watch does not know yet.
#[derive(Debug)]
pub(crate) struct Lookup {
    ends: HashMap<PartitionKey, i64>,
    /// Where each partition looked up starts: the group's committed offset, or its log start.
    starts: HashMap<PartitionKey, i64>,
    /// The group's committed offsets, where it has one.
    committed: HashMap<PartitionKey, i64>,
}

/// Bound on each look-up; an unanswered one means the brokers do not answer, and then nothing
/// is judged.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Look-ups in a row that reach no broker after which the probe gets a new client: a client
/// can stay blind after a whole-cluster outage (see `group_watch`), and the probe is a client too.
const PROBE_RENEW_AFTER: u32 = 5;

impl ConsumerWatch {
    pub(crate) fn new(
        probe_config: ClientConfig,
        request_topic: String,
        replaying: bool,
        recoveries: Counter,
    ) -> KafkaResult<Self> {
        Ok(ConsumerWatch {
            stalls: Stalls::new(crate::watchdog::DEFAULT_STALL_AFTER),
            probe: Arc::new(probe_config.create()?),
            probe_config,
            request_topic,
            unanswered: 0,
            lookup: None,
            next_lookup: tokio::time::Instant::now() + crate::watchdog::CHECK_INTERVAL,
            undecodable: false,
            held_back: false,
            floors: (!replaying).then(Floors::default),
            sent_back: HashMap::new(),
            recoveries,
        })
    }

    /// Whether the request at `offset` of `key`, just read, is below what the group has
    /// committed (see [`Floors`]), and so must not be answered again. The first such request
    /// sends the consumer back up to the committed offset ([`Below::SentBack`]); the ones
    /// fetched before that are only passed over ([`Below::AlreadySentBack`]).
    pub(crate) fn below_committed<C: ConsumerContext>(
        &mut self,
        consumer: &impl Consumer<C>,
        key: &PartitionKey,
        offset: i64,
    ) -> Below {
        let Some(floors) = self.floors.as_ref() else {
            return Below::No;
        };
        if let Some(&sent_to) = self.sent_back.get(key) {
            if offset < sent_to {
                return Below::AlreadySentBack;
            }
            self.sent_back.remove(key);
        }
        let Some(known) = floors.below(key, offset) else {
            return Below::No;
        };
        let (topic, partition) = key;
        // The floor can lag the group's commits by a look-up interval: asked again now, so
        // that nothing committed since is answered twice.
        let floor = self
            .committed_now(key)
            .map_or(known, |committed| committed.max(known));
        tracing::warn!(
            topic,
            partition,
            offset,
            committed = floor,
            "read a request the group has committed past (librdkafka reset the partition); \
             going back to the committed offset"
        );
        // Asynchronous, like every seek here: what was fetched before it is discarded, and
        // anything below the floor that still comes is caught here again.
        if let Err(error) = consumer.seek(topic, *partition, Offset::Offset(floor), Duration::ZERO)
        {
            tracing::warn!(%error, topic, partition, "seek failed");
        }
        self.sent_back.insert(key.clone(), floor);
        Below::SentBack
    }

    /// Records a consumer error.
    pub(crate) fn error(&mut self, error: &KafkaError) {
        self.undecodable |= is_undecodable(error);
    }

    /// Records that the worker stopped reading because its in-flight limit was full. A partition
    /// left unread meanwhile is not stalled: the next look-up is not judged, and watching starts
    /// afresh, so slow requests can never make the watchdog seek or skip.
    pub(crate) fn held_back(&mut self) {
        self.held_back = true;
    }

    /// Records that the worker sent `key` back to `offset` (an aborted transaction): the next
    /// request is expected there, and the stall clock starts afresh.
    pub(crate) fn rewound(&mut self, key: PartitionKey, offset: i64) {
        self.stalls.watch(key, offset);
    }

    /// Records a request read from `key` at `offset`.
    pub(crate) fn read(&mut self, key: &PartitionKey, offset: i64) {
        self.stalls.read(key, offset);
    }

    /// Resolves when a look-up has finished, or when the next one is due and `may_look` says a
    /// look-up may start now.
    pub(crate) async fn tick(&mut self, may_look: bool) -> Tick {
        match self.lookup.as_mut() {
            Some(lookup) => {
                let found = lookup.await.ok().flatten();
                self.lookup = None;
                self.unanswered = if found.is_some() {
                    0
                } else {
                    self.unanswered + 1
                };
                if self.unanswered % PROBE_RENEW_AFTER == 0 && self.unanswered > 0 {
                    self.renew_probe();
                }
                self.next_lookup = tokio::time::Instant::now() + crate::watchdog::CHECK_INTERVAL;
                Tick::LookedUp(found)
            }
            None if may_look => {
                tokio::time::sleep_until(self.next_lookup).await;
                Tick::Due
            }
            None => std::future::pending().await,
        }
    }

    fn renew_probe(&mut self) {
        match self.probe_config.create::<BaseConsumer>() {
            Ok(fresh) => {
                tracing::info!(
                    unanswered = self.unanswered,
                    "no broker answered the watchdog's probe; replacing its client"
                );
                let blind = std::mem::replace(&mut self.probe, Arc::new(fresh));
                // Closing a blind client can take long: never on the worker's own threads,
                // and never holding up the process's exit.
                std::thread::spawn(move || drop(blind));
            }
            Err(error) => tracing::warn!(%error, "cannot create a new probe"),
        }
    }

    /// The group's committed offset of `key` now, if the probe can tell within the look-up
    /// bound (see [`blocking_lookup`]).
    fn committed_now(&self, key: &PartitionKey) -> Option<i64> {
        let mut list = rdkafka::TopicPartitionList::new();
        list.add_partition(&key.0, key.1);
        let committed = blocking_lookup(|| self.probe.committed_offsets(list, LOOKUP_TIMEOUT));
        match committed.ok()?.find_partition(&key.0, key.1)?.offset() {
            Offset::Offset(offset) => Some(offset),
            _ => None,
        }
    }

    /// Starts a look-up for the partitions the consumer owns now.
    pub(crate) fn start_lookup<C: ConsumerContext>(&mut self, consumer: &impl Consumer<C>) {
        let assigned: Vec<PartitionKey> = match consumer.assignment() {
            Ok(list) => list
                .elements()
                .iter()
                .map(|element| (element.topic().to_owned(), element.partition()))
                .collect(),
            Err(_) => Vec::new(),
        };
        let watched = self.stalls.positions();
        for key in watched.keys().filter(|key| !assigned.contains(key)) {
            self.stalls.forget(key);
        }
        let unknown: Vec<PartitionKey> = assigned
            .iter()
            .filter(|key| !watched.contains_key(*key))
            .cloned()
            .collect();
        // The floors need the group's committed offsets of every assigned partition.
        let committed_of = if self.floors.is_some() {
            assigned.clone()
        } else {
            unknown
        };
        let probe = Arc::clone(&self.probe);
        let request_topic = self.request_topic.clone();
        self.lookup = Some(tokio::task::spawn_blocking(move || {
            look_up(&probe, &request_topic, &assigned, &committed_of)
        }));
    }

    /// Applies a finished look-up: starts watching new partitions, takes the consumer's own
    /// positions as progress, and sends each stalled partition back to the next offset expected,
    /// or past it where a message there cannot be decoded. Returns the messages skipped.
    pub(crate) fn judge<C: ConsumerContext>(
        &mut self,
        lookup: Lookup,
        consumer: &impl Consumer<C>,
    ) -> Vec<Stall> {
        if std::mem::take(&mut self.held_back) {
            for key in self.stalls.positions().keys() {
                self.stalls.forget(key);
            }
            return Vec::new();
        }
        let watched = self.stalls.positions();
        for (key, start) in lookup.starts {
            if !watched.contains_key(&key) {
                self.stalls.watch(key, start);
            }
        }
        if let Some(floors) = self.floors.as_mut() {
            for (key, offset) in lookup.committed {
                let Some(&end) = lookup.ends.get(&key) else {
                    continue;
                };
                if offset > end {
                    tracing::warn!(
                        topic = key.0,
                        partition = key.1,
                        committed = offset,
                        end,
                        "the group's committed offset is past the partition's end (records lost \
                         on the broker?): answering what the partition holds now"
                    );
                    self.sent_back.remove(&key);
                }
                floors.committed_within(key, offset, end);
            }
        }
        for (key, position) in consumer_positions(consumer) {
            self.stalls.passed(&key, position);
        }
        let stalled = self.stalls.observe(&lookup.ends, std::time::Instant::now());
        let mut skipped = Vec::new();
        for stall in stalled {
            let (topic, partition) = &stall.key;
            let skip = remedy(&stall, self.undecodable) == Remedy::Skip;
            let resume = if skip { stall.next + 1 } else { stall.next };
            if skip {
                tracing::error!(
                    topic,
                    partition,
                    offset = stall.next,
                    "skipping a request no client can decode"
                );
            } else {
                tracing::warn!(
                    topic,
                    partition,
                    next = stall.next,
                    "request partition behind its end and not moving; seeking back to it"
                );
            }
            match consumer.seek(topic, *partition, Offset::Offset(resume), Duration::ZERO) {
                Ok(()) if skip => {
                    self.stalls.skipped(&stall.key);
                    skipped.push(stall);
                }
                Ok(()) => {
                    self.recoveries.inc();
                    self.stalls.recovered([stall.key]);
                }
                Err(error) => tracing::warn!(%error, topic, partition, "seek failed"),
            }
        }
        self.undecodable = false;
        skipped
    }
}

/// The dead-letter copy of a request no client could decode: the message itself cannot be read,
/// so the copy carries only where it is and why it was skipped, for someone to look at it there.
pub(crate) fn undecodable_dead_letter(dead_letter_topic: &str, skipped: &Stall) -> Outgoing {
    let (topic, partition) = &skipped.key;
    Outgoing::new(dead_letter_topic, Vec::new())
        .header(
            headers::DEAD_LETTER_REASON,
            "the request could not be decoded (compression codec or record format this worker cannot read); skipped",
        )
        .header(
            headers::DEAD_LETTER_SOURCE,
            format!("{topic}/{partition}/{}", skipped.next),
        )
}

/// High watermarks of `assigned`, and the committed offsets (or the low watermark, where the
/// group has none) of `committed_of`; nothing when a look-up fails or no broker answers for
/// `request_topic` (asked even when nothing is assigned: a consumer without partitions may be
/// one that lost its group, and the worker must know whether the brokers answer).
///
/// The committed offsets are read before the watermarks: the group commits while this runs, and
/// an offset committed after the end was read would look past the end, which `judge` takes for
/// records lost on the broker.
fn look_up(
    probe: &BaseConsumer,
    request_topic: &str,
    assigned: &[PartitionKey],
    committed_of: &[PartitionKey],
) -> Option<Lookup> {
    probe
        .fetch_metadata(Some(request_topic), LOOKUP_TIMEOUT)
        .map_err(|error| tracing::debug!(%error, "metadata look-up failed"))
        .ok()?;
    let mut committed_offsets = HashMap::new();
    let mut uncommitted = Vec::new();
    if !committed_of.is_empty() {
        let mut list = rdkafka::TopicPartitionList::new();
        for (topic, partition) in committed_of {
            list.add_partition(topic, *partition);
        }
        let committed = probe
            .committed_offsets(list, LOOKUP_TIMEOUT)
            .map_err(|error| tracing::debug!(%error, "committed-offset look-up failed"))
            .ok()?;
        for element in committed.elements() {
            let key = (element.topic().to_owned(), element.partition());
            match element.offset() {
                Offset::Offset(offset) => {
                    committed_offsets.insert(key, offset);
                }
                _ => uncommitted.push(key),
            }
        }
    }
    let mut ends = HashMap::new();
    let mut lows = HashMap::new();
    for (topic, partition) in assigned {
        let (low, high) = probe
            .fetch_watermarks(topic, *partition, LOOKUP_TIMEOUT)
            .map_err(|error| tracing::debug!(%error, topic, partition, "watermark look-up failed"))
            .ok()?;
        ends.insert((topic.clone(), *partition), high);
        lows.insert((topic.clone(), *partition), low);
    }
    let mut starts = committed_offsets.clone();
    for key in uncommitted {
        let low = lows.get(&key).copied().unwrap_or(0);
        starts.insert(key, low);
    }
    Some(Lookup {
        ends,
        starts,
        committed: committed_offsets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::producer::RenewingProducer;
    use rdkafka::ClientConfig;

    #[test]
    fn a_skipped_request_is_dead_lettered_with_its_position_and_reason() {
        let skipped = Stall {
            key: ("calculate-score".into(), 2),
            next: 41,
            recoveries: 2,
        };
        let copy = undecodable_dead_letter("calculate-score.dlq", &skipped);
        assert_eq!(copy.topic, "calculate-score.dlq");
        assert!(copy.payload.is_empty());
        let header = |name: &str| {
            copy.headers
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
        };
        assert_eq!(
            header(headers::DEAD_LETTER_SOURCE).as_deref(),
            Some("calculate-score/2/41")
        );
        assert!(
            header(headers::DEAD_LETTER_REASON)
                .unwrap()
                .contains("could not be decoded")
        );
    }

    /// An aborted transaction sent a partition back from 253 to 248; its leader then answered
    /// nothing for a while. The watchdog, told of the rewind, judges the partition from 248 and
    /// a recovery seeks there, not forward to 253 past the five requests to answer again.
    #[test]
    fn a_partition_sent_back_is_expected_where_it_was_sent_back() {
        let mut probe = ClientConfig::new();
        probe.set("bootstrap.servers", "127.0.0.1:9");
        let mut watch =
            ConsumerWatch::new(probe, "requests".into(), false, Counter::default()).unwrap();
        let key: PartitionKey = ("requests".into(), 5);
        watch.stalls.watch(key.clone(), 240);
        for offset in 240..253 {
            watch.read(&key, offset);
        }
        watch.rewound(key.clone(), 248);
        let ends = HashMap::from([(key.clone(), 258)]);
        let start = std::time::Instant::now();
        assert!(watch.stalls.observe(&ends, start).is_empty());
        let stalled = watch
            .stalls
            .observe(&ends, start + crate::watchdog::DEFAULT_STALL_AFTER);
        let next: Vec<i64> = stalled.iter().map(|stall| stall.next).collect();
        assert_eq!(next, [248]);
    }

    #[test]
    fn a_reply_not_acknowledged_in_time_calls_for_a_new_producer() {
        let timed_out = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        assert_eq!(after_failure(&timed_out), AfterFailure::NewProducer);
    }

    #[test]
    fn only_failures_retrying_cannot_fix_give_up() {
        for code in [
            RDKafkaErrorCode::UnknownPartition,
            RDKafkaErrorCode::MessageSizeTooLarge,
            RDKafkaErrorCode::TopicAuthorizationFailed,
        ] {
            let error = KafkaError::MessageProduction(code);
            assert_eq!(after_failure(&error), AfterFailure::GiveUp, "{code:?}");
        }
        for code in [
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::NotEnoughReplicas,
            RDKafkaErrorCode::PurgeQueue,
            RDKafkaErrorCode::PurgeInflight,
            RDKafkaErrorCode::LeaderNotAvailable,
        ] {
            let error = KafkaError::MessageProduction(code);
            assert_eq!(after_failure(&error), AfterFailure::Retry, "{code:?}");
        }
        assert_eq!(after_failure(&KafkaError::Canceled), AfterFailure::Retry);
    }

    /// A producer whose broker never answers (a port nobody listens on) times its message out,
    /// and the replacement happens once per generation however many replies time out.
    #[tokio::test]
    async fn a_producer_whose_replies_time_out_is_replaced_once_per_generation() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = closed.local_addr().unwrap();
        drop(closed);
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", address.to_string())
            .set("message.timeout.ms", "300");
        let replacements = Counter::default();
        let producer = RenewingProducer::new(config, replacements.clone()).unwrap();
        let (generation, current) = producer.current();
        let record = rdkafka::producer::FutureRecord::<(), [u8]>::to("replies").payload(b"x");
        let failure = match current
            .send_result(record)
            .await
            .map_err(|(error, _)| error)
        {
            Ok(delivery) => delivery.await.unwrap().unwrap_err().0,
            Err(error) => error,
        };
        assert_eq!(
            after_failure(&failure),
            AfterFailure::NewProducer,
            "{failure}"
        );
        producer.replace(generation);
        producer.replace(generation);
        assert_eq!(producer.current().0, generation + 1);
        assert_eq!(replacements.get(), 1);
    }
}
