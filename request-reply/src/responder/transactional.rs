//! Exactly-once delivery's Kafka side: a transactional producer that writes what finished
//! requests caused into the open transaction, commits it with the consumed offsets and the
//! consumer group's metadata (KIP-447: a worker whose partitions moved on is fenced by the
//! group's generation, not by a `transactional.id` of its own), and on failure aborts and sends
//! the consumer back to the last committed offsets so the requests are answered again.
//! The decisions are in `transaction`.

use super::delivery::undeliverable;
use super::inbound::Inbound;
use super::progress::Epoch;
use super::rebalance::WorkerContext;
use super::recovery::{AfterFailure, after_failure};
use super::routing::Routing;
use super::transaction::{Rewind, TransactionPolicy, Transactions};
use crate::kafka::Outgoing;
use crate::metrics::WorkerMetrics;
use crate::offsets::blocking_lookup;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::{DeliveryFuture, FutureProducer, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long initialising a producer's transactions, or looking up the group's committed
/// offsets, may take.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one call that ends a transaction (sending its offsets, committing, aborting) may
/// take; they normally take milliseconds, and one that times out is called again (see
/// [`TRANSACTION_END_LIMIT`]).
const TRANSACTION_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long past its own timeout a call may take before the producer is taken to be stuck and
/// replaced. librdkafka 2.12 can wait for ever in `send_offsets_to_transaction`, whatever its
/// timeout says, when the group coordinator went away (confluentinc/librdkafka#5456, #5511;
/// seen in scripts/chaos when a broker was SIGKILLed).
const STUCK_AFTER: Duration = Duration::from_secs(2);
/// How long a worker whose producer is stuck tries to make a new one before it goes on with
/// the old one (the brokers may be down for longer).
const RENEW_LIMIT: Duration = Duration::from_secs(30);
/// How long ending a transaction may take in all, calls made again included.
const TRANSACTION_END_LIMIT: Duration = Duration::from_secs(25);

/// What a request caused, waiting to be written into a transaction.
pub(super) struct Caused {
    pub(super) inbound: Inbound,
    pub(super) messages: Vec<Outgoing>,
}

/// The transactional producer and the worker's transactions.
pub(super) struct TransactionalReplies {
    producer: FutureProducer,
    /// What a new producer is made from after a fatal error (a fenced producer stays fenced).
    config: ClientConfig,
    transactions: Transactions<Caused>,
    routing: Arc<Routing>,
    metrics: WorkerMetrics,
    /// A write into the open transaction failed: it can only be aborted.
    failed: bool,
    /// Where the consumer was sent back since the worker last asked (see
    /// [`TransactionalReplies::take_rewound`]).
    rewound: Vec<Rewind>,
    /// The acknowledgements of the messages written into the open transaction.
    deliveries: Vec<DeliveryFuture>,
    /// A transactional call did not return in time (see [`STUCK_AFTER`]): the producer is
    /// replaced rather than asked again.
    stuck: bool,
}

impl TransactionalReplies {
    /// Creates the producer from `config` (which names its `transactional.id`) and initialises
    /// its transactions: this fences an earlier producer with the same id and finishes what it
    /// left open.
    pub(super) async fn new(
        config: ClientConfig,
        policy: TransactionPolicy,
        routing: Arc<Routing>,
        metrics: WorkerMetrics,
    ) -> KafkaResult<Self> {
        let producer = initialised(&config).await?;
        Ok(TransactionalReplies {
            producer,
            config,
            transactions: Transactions::new(policy),
            routing,
            metrics,
            failed: false,
            rewound: Vec::new(),
            deliveries: Vec::new(),
            stuck: false,
        })
    }

    /// Where the consumer was sent back since the last call. The worker's watchdog expects the
    /// next request of each partition where it last read one; told nothing, it would take a
    /// partition sent back (and slow to be read again, say while its leader is frozen) for
    /// stalled, and seek it forward again, past the requests to be answered again.
    pub(super) fn take_rewound(&mut self) -> Vec<Rewind> {
        std::mem::take(&mut self.rewound)
    }

    /// Records a request consumed (see [`Transactions::started`]).
    pub(super) fn started(&mut self, inbound: &Inbound) -> Epoch {
        self.transactions
            .started(&inbound.topic, inbound.partition, inbound.offset)
    }

    /// When the open transaction is due at the latest.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.transactions.deadline()
    }

    /// Takes a finished request's messages; writes them, and those of the requests it was
    /// holding up, into the transaction (begun if none is open).
    pub(super) async fn finished(&mut self, epoch: Epoch, caused: Caused) {
        let Inbound {
            topic,
            partition,
            offset,
            ..
        } = &caused.inbound;
        let (topic, partition, offset) = (topic.clone(), *partition, *offset);
        let ready =
            self.transactions
                .finished(&topic, partition, offset, epoch, caused, Instant::now());
        if ready.begin {
            if let Err(error) = self.producer.begin_transaction() {
                tracing::warn!(%error, "cannot begin a transaction");
                self.failed = true;
            }
        }
        for caused in ready.results {
            if self.failed {
                // Its offsets are in the transaction, which will be aborted: it is read again.
                continue;
            }
            self.write(caused).await;
        }
    }

    /// Queues a request's messages in the transaction. One that can never be written (say, to
    /// a partition that does not exist) is replaced, as at-least-once delivery does, by a dead
    /// letter and an error reply; if even those fail the transaction is aborted.
    async fn write(&mut self, caused: Caused) {
        let mut work = caused.messages;
        let mut replaced = false;
        while let Some(outgoing) = (!work.is_empty()).then(|| work.remove(0)) {
            let error = match self.send(&outgoing).await {
                Ok(()) => continue,
                Err(error) => error,
            };
            if !replaced && after_failure(&error) == AfterFailure::GiveUp {
                replaced = true;
                self.metrics.errors.inc();
                self.metrics.dead_lettered.inc();
                let instead = undeliverable(&outgoing, &error, &caused.inbound, &self.routing);
                work.splice(0..0, instead);
                continue;
            }
            tracing::warn!(%error, topic = %outgoing.topic, "cannot write into the transaction");
            self.failed = true;
            return;
        }
    }

    /// Queues one message, waiting while the producer's queue is full.
    async fn send(&mut self, outgoing: &Outgoing) -> KafkaResult<()> {
        loop {
            match self.producer.send_result(outgoing.record()) {
                // Not awaited here: the commit waits for them all (see `acknowledged`), and
                // fails if any failed.
                Ok(delivery) => {
                    self.deliveries.push(delivery);
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((error, _)) => return Err(error),
            }
        }
    }

    /// Commits the open transaction if it is due (`idle`: nothing is being handled that could
    /// join it).
    pub(super) async fn commit_if_due(
        &mut self,
        consumer: &StreamConsumer<WorkerContext>,
        idle: bool,
    ) {
        if self.transactions.commit_due(Instant::now(), idle) {
            self.commit(consumer).await;
        }
    }

    /// Commits the open transaction with its offsets; if that fails, aborts it and sends the
    /// consumer back to the last committed offsets.
    pub(super) async fn commit(&mut self, consumer: &StreamConsumer<WorkerContext>) {
        if !self.transactions.is_open() {
            return;
        }
        if self.failed {
            tracing::warn!("a write into the transaction failed; answering its requests again");
        } else {
            match self.try_commit(consumer).await {
                Some(Ok(())) => {
                    self.transactions.committed();
                    self.metrics.transactions_committed.inc();
                    return;
                }
                Some(Err(error)) => tracing::warn!(
                    %error,
                    "transaction not committed; answering its requests again"
                ),
                None => tracing::warn!(
                    "a commit call has not returned in {} s; replacing the producer and \
                     answering the transaction's requests again",
                    (TRANSACTION_CALL_TIMEOUT + STUCK_AFTER).as_secs()
                ),
            }
        }
        let rewinds = self.abort(consumer).await;
        self.rewound
            .extend(rewind(consumer, rewinds, &HashSet::new()));
    }

    /// Commits the open transaction with its offsets, calling again while librdkafka says a
    /// call may succeed if made again, for at most [`TRANSACTION_END_LIMIT`]; `None` if a call
    /// did not return in time (the producer is then marked stuck).
    async fn try_commit(
        &mut self,
        consumer: &StreamConsumer<WorkerContext>,
    ) -> Option<KafkaResult<()>> {
        let mut offsets = TopicPartitionList::new();
        for (topic, partition, next) in self.transactions.offsets() {
            if let Err(error) =
                offsets.add_partition_offset(&topic, partition, Offset::Offset(next))
            {
                return Some(Err(error));
            }
        }
        let deadline = Instant::now() + TRANSACTION_END_LIMIT;
        loop {
            // The generation of the group this consumer is in now: if its partitions have moved
            // on since, the coordinator refuses the offsets and the transaction aborts (KIP-447).
            let Some(group) = consumer.group_metadata() else {
                return Some(Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::State)));
            };
            let (producer, offsets) = (self.producer.clone(), offsets.clone());
            let sent = self
                .bounded(move || {
                    producer.send_offsets_to_transaction(&offsets, &group, TRANSACTION_CALL_TIMEOUT)
                })
                .await;
            match sent {
                Some(Err(error)) if retriable(&error, deadline) => {}
                Some(Ok(())) => break,
                other => return other,
            }
        }
        self.acknowledged().await;
        loop {
            let producer = self.producer.clone();
            let committed = self
                .bounded(move || producer.commit_transaction(TRANSACTION_CALL_TIMEOUT))
                .await;
            match committed {
                Some(Err(error)) if retriable(&error, deadline) => {}
                other => return other,
            }
        }
    }

    /// Waits (at most [`TRANSACTION_CALL_TIMEOUT`]) until the broker has acknowledged every
    /// message of the open transaction and librdkafka has let go of them. rust-rdkafka's
    /// `commit_transaction` flushes the producer first and, while librdkafka still counts a
    /// message, polls for up to 100 ms for an event that the producer's own polling thread takes
    /// first: without this wait nearly every commit would last those 100 ms. A message is still
    /// counted for a moment after its acknowledgement has completed its future (the polling
    /// thread releases it after the callback), and a commit that fell into that moment waited
    /// the 100 ms too, hence the second wait.
    async fn acknowledged(&mut self) {
        let deliveries = futures::future::join_all(self.deliveries.drain(..));
        let producer = &self.producer;
        let released = async {
            deliveries.await;
            while producer.in_flight_count() > 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        // A failed or missing acknowledgement fails the commit itself.
        let _ = tokio::time::timeout(TRANSACTION_CALL_TIMEOUT, released).await;
    }

    /// Runs a blocking transactional call off the async threads; if it has not returned
    /// [`STUCK_AFTER`] past [`TRANSACTION_CALL_TIMEOUT`], it is left to finish (or not) on its
    /// own, the producer is marked stuck and `None` returned.
    async fn bounded(
        &mut self,
        call: impl FnOnce() -> KafkaResult<()> + Send + 'static,
    ) -> Option<KafkaResult<()>> {
        let result = tokio::time::timeout(TRANSACTION_CALL_TIMEOUT + STUCK_AFTER, blocking(call))
            .await
            .ok();
        self.stuck |= result.is_none();
        result
    }

    /// Gives up the open transaction and everything not committed (see
    /// [`Transactions::aborted`]); returns where the consumer goes back to.
    async fn abort(&mut self, consumer: &StreamConsumer<WorkerContext>) -> Vec<Rewind> {
        self.failed = false;
        self.deliveries.clear();
        if !self.transactions.is_open() {
            return self.transactions.aborted();
        }
        self.metrics.transactions_aborted.inc();
        if !self.stuck {
            let producer = self.producer.clone();
            match self
                .bounded(move || producer.abort_transaction(TRANSACTION_CALL_TIMEOUT))
                .await
            {
                Some(Ok(())) => return self.transactions.aborted(),
                Some(Err(error)) => {
                    tracing::warn!(%error, "cannot abort the transaction; making a new producer");
                }
                None => tracing::warn!("the abort has not returned; making a new producer"),
            }
        }
        // A producer that cannot abort (fenced, stuck, or with a commit still under way) is
        // replaced: the new one's initialisation fences it and settles its transaction, which
        // may have committed after all. Only the coordinator knows, so the consumer goes back
        // to what the group has committed, not to what this worker thinks it has. Until a new
        // producer is made (the brokers may be down), nothing could be answered anyway.
        self.stuck = true;
        let deadline = Instant::now() + RENEW_LIMIT;
        while !self.renew().await && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let rewinds = self.transactions.aborted();
        if self.stuck {
            rewinds
        } else {
            committed_positions(consumer, rewinds)
        }
    }

    /// Replaces the producer by a new one with the same `transactional.id`, whose
    /// initialisation fences the old one and settles what it left open; returns whether the new
    /// one is in place. The old one is dropped off the async threads once any call it is stuck
    /// in returns.
    async fn renew(&mut self) -> bool {
        match initialised(&self.config).await {
            Ok(fresh) => {
                let broken = std::mem::replace(&mut self.producer, fresh);
                self.stuck = false;
                self.metrics.producer_replacements.inc();
                // Dropping it waits for a call it may be stuck in: on a thread of its own, for
                // the reason `blocking` gives.
                std::thread::spawn(move || drop(broken));
                true
            }
            // Still stuck: the next abort tries again.
            Err(error) => {
                tracing::error!(%error, "cannot make a new transactional producer");
                false
            }
        }
    }

    /// The partitions in `revoked` left this worker (or the consumer was replaced): the open
    /// transaction is aborted, as its offsets would be committed under the group's next
    /// generation while another worker may already be answering those requests. Partitions
    /// this worker kept go back to the last commit; the ones it lost are not touched (if they
    /// come back, they start from the group's committed offsets).
    pub(super) async fn partitions_moved(
        &mut self,
        consumer: &StreamConsumer<WorkerContext>,
        revoked: &HashSet<(String, i32)>,
    ) {
        let rewinds = self.abort(consumer).await;
        self.rewound.extend(rewind(consumer, rewinds, revoked));
    }
}

/// A transactional producer made from `config`, its transactions initialised.
async fn initialised(config: &ClientConfig) -> KafkaResult<FutureProducer> {
    let producer: FutureProducer = config.create()?;
    let init = producer.clone();
    blocking(move || init.init_transactions(INIT_TIMEOUT)).await?;
    Ok(producer)
}

/// Runs a blocking transactional call off the async threads, on a thread of its own rather
/// than in tokio's blocking pool: a call librdkafka never returns from (see [`STUCK_AFTER`])
/// must not hold up the runtime's shutdown, which waits for every task of that pool.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> KafkaResult<T> + Send + 'static,
) -> KafkaResult<T> {
    let (result, returned) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("transaction-call".into())
        .spawn(move || {
            // The caller may have stopped waiting.
            let _ = result.send(call());
        })
        .map_err(|_| KafkaError::Canceled)?;
    returned.await.unwrap_or(Err(KafkaError::Canceled))
}

/// Whether a transactional call that failed with `error` is to be made again: librdkafka says
/// it may succeed then (a timeout reaching the coordinator), and `deadline` has not passed.
fn retriable(error: &KafkaError, deadline: Instant) -> bool {
    let again = matches!(error, KafkaError::Transaction(error) if error.is_retriable());
    if again {
        tracing::debug!(%error, "transactional call failed; calling again");
    }
    again && Instant::now() < deadline
}

/// `rewinds` with each offset replaced by the one the consumer's group has committed for the
/// partition, where it has one (a lookup that fails keeps this worker's own). A consumer that
/// reads committed messages asks for stable offsets, so the lookup waits for a transaction still
/// being settled. Blocks for the lookup (see [`blocking_lookup`]).
fn committed_positions(
    consumer: &StreamConsumer<WorkerContext>,
    mut rewinds: Vec<Rewind>,
) -> Vec<Rewind> {
    let mut partitions = TopicPartitionList::new();
    for rewind in &rewinds {
        partitions.add_partition(&rewind.topic, rewind.partition);
    }
    let committed = blocking_lookup(|| consumer.committed_offsets(partitions, INIT_TIMEOUT));
    match committed {
        Ok(committed) => {
            for rewind in &mut rewinds {
                if let Some(Offset::Offset(offset)) = committed
                    .find_partition(&rewind.topic, rewind.partition)
                    .map(|element| element.offset())
                {
                    rewind.offset = offset;
                }
            }
        }
        Err(error) => tracing::warn!(%error, "cannot look up the group's committed offsets"),
    }
    rewinds
}

/// Sends each partition in `rewinds`, unless it was `revoked`, back to its offset; returns
/// those it sent back.
fn rewind(
    consumer: &StreamConsumer<WorkerContext>,
    rewinds: Vec<Rewind>,
    revoked: &HashSet<(String, i32)>,
) -> Vec<Rewind> {
    let mut sent_back = Vec::with_capacity(rewinds.len());
    for rewind in rewinds {
        let Rewind {
            topic,
            partition,
            offset,
        } = &rewind;
        if revoked.contains(&(topic.clone(), *partition)) {
            continue;
        }
        // Asynchronous: messages fetched before the seek are discarded by librdkafka.
        match consumer.seek(topic, *partition, Offset::Offset(*offset), Duration::ZERO) {
            Ok(()) => sent_back.push(rewind),
            Err(error) => {
                tracing::warn!(%error, topic, partition, offset, "cannot rewind partition");
            }
        }
    }
    sent_back
}
