//! One request's way through the worker once consumed: its turn behind the earlier requests of
//! its key, [`plan`] (which calls the service), the producer queue, and the acknowledgements.
//! The worker runs these futures side by side and, as each finishes, stores the offsets that
//! `progress` allows (up to the lowest unfinished request of the partition).

use super::Service;
use super::delivery::{deliver, enqueue};
use super::inbound::Inbound;
use super::order::Turn;
use super::plan::{Plan, Verdict, plan};
use super::progress::Epoch;
use super::retry::RetryPolicy;
use super::routing::Routing;
use crate::codec::{MAX_QUOTED_CHARS, loggable};
use crate::kafka::Outgoing;
use crate::metrics::WorkerMetrics;
use crate::producer::RenewingProducer as ReplyProducer;
use crate::stamp::{WorkerIdentity, WorkerStamp, stamp_replies};
use futures::FutureExt;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tracing::{Instrument, info_span};

/// A request whose replies are all acknowledged (or given up on, see `delivery`), with the turn
/// it held in its key's order.
pub(super) struct Finished {
    /// The request: its offset may now be stored.
    pub(super) inbound: Inbound,
    /// Its turn, so the worker can forget the key once no later request of it is in flight.
    pub(super) turn: Turn,
    /// The epoch of its partition it was consumed in (see `progress`).
    pub(super) epoch: Epoch,
    /// What it caused, still to be written (exactly-once delivery); empty when delivered
    /// already.
    pub(super) caused: Vec<Outgoing>,
}

/// Where what requests cause goes.
pub(super) enum Output {
    /// Delivered by the request's own future, which finishes once the broker acknowledged it
    /// (at-least-once).
    Deliver(Arc<ReplyProducer>),
    /// Handed back in [`Finished::caused`], for the worker to write into a transaction in log
    /// order (exactly-once).
    Transaction,
}

/// What every request's future shares.
pub(super) struct Pipeline<S> {
    pub(super) service: Arc<S>,
    pub(super) routing: Arc<Routing>,
    pub(super) output: Arc<Output>,
    pub(super) metrics: WorkerMetrics,
    pub(super) retry: RetryPolicy,
    /// Who this worker is, for the stamp on its replies.
    pub(super) worker: Arc<WorkerIdentity>,
}

/// Not derived: that would ask for `S: Clone`, and the service is shared, not copied.
impl<S> Clone for Pipeline<S> {
    fn clone(&self) -> Self {
        Pipeline {
            service: Arc::clone(&self.service),
            routing: Arc::clone(&self.routing),
            output: Arc::clone(&self.output),
            metrics: self.metrics.clone(),
            retry: self.retry,
            worker: Arc::clone(&self.worker),
        }
    }
}

impl<S: Service> Pipeline<S> {
    /// Handles `inbound` once `turn` comes, queues what it causes, ends the turn (so the key's
    /// next request may be handled, and its replies queued after these), then waits for the
    /// acknowledgements.
    pub(super) fn handle(
        &self,
        inbound: Inbound,
        mut turn: Turn,
        epoch: Epoch,
    ) -> BoxFuture<'static, Finished> {
        let pipeline = self.clone();
        let span = request_span(&inbound);
        let received_at = SystemTime::now();
        let received = Instant::now();
        async move {
            turn.wait().await;
            let started = Instant::now();
            let planned = plan(
                &*pipeline.service,
                &pipeline.routing,
                &inbound,
                SystemTime::now(),
                &pipeline.retry,
            )
            .await;
            count(&pipeline.metrics, &planned);
            let stamp = WorkerStamp::new(
                WorkerIdentity::clone(&pipeline.worker),
                received_at,
                started.duration_since(received),
                started.elapsed(),
            );
            let caused = stamp_replies(planned.caused, &pipeline.routing.dead_letter_topic, &stamp);
            pipeline
                .produce(inbound, turn, epoch, caused, received)
                .await
        }
        .instrument(span)
        .boxed()
    }

    /// Produces `caused` for a request the service never saw (one the consumer could not
    /// decode); its offset counts like any other's.
    pub(super) fn send(
        &self,
        inbound: Inbound,
        turn: Turn,
        epoch: Epoch,
        caused: Vec<Outgoing>,
        span: tracing::Span,
    ) -> BoxFuture<'static, Finished> {
        let pipeline = self.clone();
        async move {
            pipeline
                .produce(inbound, turn, epoch, caused, Instant::now())
                .await
        }
        .instrument(span)
        .boxed()
    }

    /// Queues `caused`, ends `turn` (the key's next request may now queue its replies after
    /// these), and waits for the acknowledgements.
    async fn produce(
        &self,
        inbound: Inbound,
        mut turn: Turn,
        epoch: Epoch,
        caused: Vec<Outgoing>,
        received: Instant,
    ) -> Finished {
        let producer = match &*self.output {
            Output::Deliver(producer) => producer,
            Output::Transaction => {
                // Written in log order per partition, so the key's order holds without waiting.
                turn.end();
                self.metrics
                    .handling_seconds
                    .observe(received.elapsed().as_secs_f64());
                return Finished {
                    inbound,
                    turn,
                    epoch,
                    caused,
                };
            }
        };
        let mut queued = Vec::with_capacity(caused.len());
        for outgoing in caused {
            let delivery = enqueue(producer, &outgoing).await;
            queued.push((outgoing, delivery));
        }
        turn.end();
        for (outgoing, delivery) in queued {
            deliver(
                producer,
                outgoing,
                delivery,
                &inbound,
                &self.routing,
                &self.metrics,
            )
            .await;
        }
        self.metrics
            .handling_seconds
            .observe(received.elapsed().as_secs_f64());
        Finished {
            inbound,
            turn,
            epoch,
            caused: Vec::new(),
        }
    }
}

/// The span every log line about the request carries: its correlation ID (bounded: a hostile
/// one can be huge), trace ID and place in the log.
fn request_span(inbound: &Inbound) -> tracing::Span {
    let correlation_id = inbound.correlation_id().map_or_else(
        || "-".to_owned(),
        |id| loggable(&id.key(), MAX_QUOTED_CHARS),
    );
    let trace_id = inbound
        .trace_context()
        .map_or_else(|| "-".to_owned(), |trace| trace.trace_id_hex());
    info_span!(
        "request",
        correlation_id = %correlation_id,
        trace_id = %trace_id,
        partition = inbound.partition,
        offset = inbound.offset
    )
}

fn count(metrics: &WorkerMetrics, planned: &Plan) {
    metrics.handler_retries.inc_by(u64::from(planned.retries));
    match planned.verdict {
        Verdict::Answered => {
            metrics.handled.inc();
        }
        Verdict::Rejected => {
            metrics.errors.inc();
            metrics.dead_lettered.inc();
        }
        Verdict::Expired => {
            metrics.deadline_exceeded.inc();
        }
    }
}
