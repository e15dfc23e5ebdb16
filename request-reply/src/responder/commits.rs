//! What the worker does as requests finish, per [`Delivery`](super::Delivery): store the
//! offsets `progress` allows (at-least-once), or write what they caused into a transaction and
//! commit it when due (exactly-once).

use super::inbound::Inbound;
use super::pipeline::Finished;
use super::progress::{Epoch, Progress};
use super::rebalance::WorkerContext;
use super::transaction::Rewind;
use super::transactional::{Caused, TransactionalReplies};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use std::time::Instant;

/// How the worker commits what it answered.
pub(super) enum Commits {
    /// At-least-once: offsets are stored as requests finish and committed by librdkafka.
    Offsets(Progress),
    /// Exactly-once: replies and offsets are committed in transactions.
    Transactions(Box<TransactionalReplies>),
}

impl Commits {
    /// Records a request consumed; returns the epoch its [`Finished`] hands back.
    pub(super) fn started(&mut self, inbound: &Inbound) -> Epoch {
        match self {
            Commits::Offsets(progress) => {
                progress.started(&inbound.topic, inbound.partition, inbound.offset)
            }
            Commits::Transactions(replies) => replies.started(inbound),
        }
    }

    /// A request is done.
    pub(super) async fn finished(
        &mut self,
        consumer: &StreamConsumer<WorkerContext>,
        finished: Finished,
    ) {
        match self {
            Commits::Offsets(progress) => store_progress(consumer, progress, &finished),
            Commits::Transactions(replies) => {
                let caused = Caused {
                    inbound: finished.inbound,
                    messages: finished.caused,
                };
                replies.finished(finished.epoch, caused).await;
                replies.commit_if_due(consumer, false).await;
            }
        }
    }

    /// Where the consumer was sent back since the last call (exactly-once only: see
    /// [`TransactionalReplies::take_rewound`]).
    pub(super) fn take_rewound(&mut self) -> Vec<Rewind> {
        match self {
            Commits::Offsets(_) => Vec::new(),
            Commits::Transactions(replies) => replies.take_rewound(),
        }
    }

    /// When the open transaction must be committed, if one is open.
    pub(super) fn deadline(&self) -> Option<Instant> {
        match self {
            Commits::Offsets(_) => None,
            Commits::Transactions(replies) => replies.deadline(),
        }
    }

    /// Commits the open transaction if it is due; `idle`: nothing is being handled and nothing
    /// more is waiting to be read, so nothing could join it.
    pub(super) async fn commit_if_due(
        &mut self,
        consumer: &StreamConsumer<WorkerContext>,
        idle: bool,
    ) {
        if let Commits::Transactions(replies) = self {
            replies.commit_if_due(consumer, idle).await;
        }
    }

    /// Abandons the open transaction if partitions were taken from `consumer` since the last
    /// look (see [`TransactionalReplies::partitions_moved`]).
    pub(super) async fn after_rebalance(&mut self, consumer: &StreamConsumer<WorkerContext>) {
        if let Commits::Transactions(replies) = self {
            let revoked = consumer.context().take_revoked();
            if !revoked.is_empty() {
                replies.partitions_moved(consumer, &revoked).await;
            }
        }
    }

    /// The consumer read a request below what the group has committed and was sent back up to
    /// it (librdkafka had reset a partition; see [`crate::watchdog::Floors`]): the open
    /// transaction may hold requests the consumer will now read again, so it is abandoned and
    /// its partitions sent back to the committed offsets. At-least-once answers them again,
    /// which the requesters absorb.
    pub(super) async fn consumer_went_back(&mut self, consumer: &StreamConsumer<WorkerContext>) {
        if let Commits::Transactions(replies) = self {
            replies
                .partitions_moved(consumer, &std::collections::HashSet::new())
                .await;
        }
    }

    /// `consumer` is about to be replaced: its group membership, and with it the open
    /// transaction's claim to its offsets, ends.
    pub(super) async fn consumer_replaced(&mut self, consumer: &StreamConsumer<WorkerContext>) {
        if let Commits::Transactions(replies) = self {
            let everything = consumer
                .assignment()
                .map(|assigned| {
                    assigned
                        .elements()
                        .iter()
                        .map(|element| (element.topic().to_owned(), element.partition()))
                        .collect()
                })
                .unwrap_or_default();
            replies.partitions_moved(consumer, &everything).await;
        }
    }

    /// At shutdown, once the in-flight requests are done: commits what they answered.
    pub(super) async fn close(&mut self, consumer: &StreamConsumer<WorkerContext>) {
        match self {
            Commits::Offsets(_) => {
                if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
                    tracing::debug!(%error, "final commit had nothing to do");
                }
            }
            Commits::Transactions(replies) => replies.commit(consumer).await,
        }
    }
}

/// Stores the offset `progress` allows now that `finished` is done: never past a request of the
/// partition that is still unfinished.
fn store_progress(
    consumer: &StreamConsumer<WorkerContext>,
    progress: &mut Progress,
    finished: &Finished,
) {
    let Inbound {
        topic, partition, ..
    } = &finished.inbound;
    let Some(offset) =
        progress.finished(topic, *partition, finished.inbound.offset, finished.epoch)
    else {
        return;
    };
    if let Err(error) = consumer.store_offset(topic, *partition, offset) {
        // The partition was revoked meanwhile; its new owner will redo this request.
        tracing::debug!(%error, partition, offset, "offset not stored");
    }
}
