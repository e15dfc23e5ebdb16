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
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a transactional call (initialising, committing, aborting) may take.
const TRANSACTION_CALL_TIMEOUT: Duration = Duration::from_secs(10);

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
        })
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
    async fn send(&self, outgoing: &Outgoing) -> KafkaResult<()> {
        loop {
            match self.producer.send_result(outgoing.record()) {
                // The delivery is not awaited: committing the transaction waits for them all,
                // and fails if any failed.
                Ok(_delivery) => return Ok(()),
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
                Ok(()) => {
                    self.transactions.committed();
                    self.metrics.transactions_committed.inc();
                    return;
                }
                Err(error) => tracing::warn!(
                    %error,
                    "transaction not committed; answering its requests again"
                ),
            }
        }
        let rewinds = self.abort().await;
        rewind(consumer, &rewinds, &HashSet::new());
    }

    async fn try_commit(&self, consumer: &StreamConsumer<WorkerContext>) -> KafkaResult<()> {
        let mut offsets = TopicPartitionList::new();
        for (topic, partition, next) in self.transactions.offsets() {
            offsets.add_partition_offset(&topic, partition, Offset::Offset(next))?;
        }
        // The generation of the group this consumer is in now: if its partitions have moved on
        // since, the coordinator refuses the offsets and the transaction aborts (KIP-447).
        let group = consumer
            .group_metadata()
            .ok_or(KafkaError::ConsumerCommit(RDKafkaErrorCode::State))?;
        let producer = self.producer.clone();
        blocking(move || {
            retrying(|| {
                producer.send_offsets_to_transaction(&offsets, &group, TRANSACTION_CALL_TIMEOUT)
            })?;
            retrying(|| producer.commit_transaction(TRANSACTION_CALL_TIMEOUT))
        })
        .await
    }

    /// Gives up the open transaction and everything not committed (see
    /// [`Transactions::aborted`]); returns where the consumer goes back to.
    async fn abort(&mut self) -> Vec<Rewind> {
        self.failed = false;
        if self.transactions.is_open() {
            self.metrics.transactions_aborted.inc();
            let producer = self.producer.clone();
            let aborted =
                blocking(move || producer.abort_transaction(TRANSACTION_CALL_TIMEOUT)).await;
            if let Err(error) = aborted {
                // A producer that cannot abort is fenced or broken for good: a new one's
                // initialisation aborts what this one left open.
                tracing::warn!(%error, "cannot abort the transaction; making a new producer");
                self.renew().await;
            }
        }
        self.transactions.aborted()
    }

    async fn renew(&mut self) {
        match initialised(&self.config).await {
            Ok(fresh) => {
                let broken = std::mem::replace(&mut self.producer, fresh);
                self.metrics.producer_replacements.inc();
                tokio::task::spawn_blocking(move || drop(broken));
            }
            Err(error) => tracing::error!(%error, "cannot make a new transactional producer"),
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
        let rewinds = self.abort().await;
        rewind(consumer, &rewinds, revoked);
    }
}

/// A transactional producer made from `config`, its transactions initialised.
async fn initialised(config: &ClientConfig) -> KafkaResult<FutureProducer> {
    let producer: FutureProducer = config.create()?;
    let init = producer.clone();
    blocking(move || init.init_transactions(TRANSACTION_CALL_TIMEOUT)).await?;
    Ok(producer)
}

/// Runs a blocking transactional call off the async threads.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> KafkaResult<T> + Send + 'static,
) -> KafkaResult<T> {
    tokio::task::spawn_blocking(call)
        .await
        .unwrap_or(Err(KafkaError::Canceled))
}

/// Calls a transactional API again while librdkafka says the error is retriable (a timeout
/// reaching the coordinator); any other error ends the transaction.
fn retrying(mut call: impl FnMut() -> KafkaResult<()>) -> KafkaResult<()> {
    loop {
        match call() {
            Err(KafkaError::Transaction(error)) if error.is_retriable() => {
                tracing::debug!(%error, "transactional call failed; calling again");
            }
            other => return other,
        }
    }
}

/// Sends each partition in `rewinds`, unless it was `revoked`, back to its offset.
fn rewind(
    consumer: &StreamConsumer<WorkerContext>,
    rewinds: &[Rewind],
    revoked: &HashSet<(String, i32)>,
) {
    for Rewind {
        topic,
        partition,
        offset,
    } in rewinds
    {
        if revoked.contains(&(topic.clone(), *partition)) {
            continue;
        }
        // Asynchronous: messages fetched before the seek are discarded by librdkafka.
        if let Err(error) =
            consumer.seek(topic, *partition, Offset::Offset(*offset), Duration::ZERO)
        {
            tracing::warn!(%error, topic, partition, offset, "cannot rewind partition");
        }
    }
}
