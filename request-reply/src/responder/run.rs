//! The responder loop: consume in order, hand each request to the pipeline (handled in its
//! key's order, alongside other keys), and store offsets as requests finish, never past one
//! whose replies are not yet acknowledged.

use super::commits::Commits;
use super::group_watch::{BLIND_AFTER, GroupWatch};
use super::inbound::Inbound;
use super::order::KeyOrder;
use super::ownership::{self, STRANDED_AFTER};
use super::pipeline::{Finished, Output, Pipeline};
use super::progress::Progress;
use super::rebalance::WorkerContext;
use super::recovery::{Below, ConsumerWatch, Tick, undecodable_dead_letter};
use super::routing::Routing;
use super::transaction::Rewind;
use super::transactional::TransactionalReplies;
use super::{Delivery, Service, WorkerConfig, WorkerError};
use crate::admin::ensure_topics;
use crate::groups::GroupObserver;
use crate::kafka::{HeaderList, set_default};
use crate::metrics::WorkerMetrics;
use crate::producer::RenewingProducer as ReplyProducer;
use crate::route::Route;
use crate::stamp::WorkerIdentity;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use prometheus_client::registry::Registry;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::info_span;

/// How long shutdown waits for in-flight replies before leaving them to redelivery.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// The worker's default `message.timeout.ms`: a reply not acknowledged within this long means
/// the producer is stuck (or the cluster down) and it is replaced. Ten seconds is far beyond an
/// acknowledgement's usual milliseconds, and short enough for a stuck reply to go out again
/// well within a requester's 30 s timeout.
const REPLY_TIMEOUT_MS: &str = "10000";
/// The exactly-once worker's default `transaction.timeout.ms`: how long a transaction left open
/// by a worker that died holds back the replies after it (readers of committed messages stop at
/// it) and the group's committed offsets (its successor waits for them), until the coordinator
/// aborts it. librdkafka's default is a minute, twice a requester's timeout; a transaction
/// normally lasts milliseconds.
const TRANSACTION_TIMEOUT_MS: &str = "10000";
/// The exactly-once worker's default `retry.backoff.ms` (see where it is set); the backoff
/// still grows to `retry.backoff.max.ms` when calls keep failing.
const TRANSACTION_RETRY_BACKOFF_MS: &str = "5";
/// Runs a worker that answers the requests of `route` until `shutdown` resolves, then finishes
/// what is in flight, commits, leaves the consumer group and flushes the producer. Its counts go
/// nowhere; see [`run_with_metrics`].
pub async fn run<S: Service>(
    service: S,
    route: &Route,
    config: WorkerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WorkerError> {
    let metrics = WorkerMetrics::register(&mut Registry::default());
    run_with_metrics(service, route, config, metrics, shutdown).await
}

/// [`run`], counting into `metrics` (registered by the caller in the registry it exposes).
pub async fn run_with_metrics<S: Service>(
    service: S,
    route: &Route,
    config: WorkerConfig,
    metrics: WorkerMetrics,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WorkerError> {
    let routing = Arc::new(Routing::new(route, &config.extra_reply_topics));
    ensure_topics(&config.kafka, &config.topics, &routing.all_topics()).await?;

    let servers = config.kafka.bootstrap_servers().to_owned();
    let client_error = |role| {
        let servers = servers.clone();
        move |source| WorkerError::Client {
            role,
            servers,
            source,
        }
    };
    let mut consumer_config = config.kafka.consumer_config();
    let group_id = config.group_id.as_deref().unwrap_or(&route.request_topic);
    set_default(&mut consumer_config, "group.id", group_id);
    // The group it really joins: `[consumer] group.id` wins over the default.
    let group_id = consumer_config
        .get("group.id")
        .unwrap_or(group_id)
        .to_owned();
    // Each replica under a name of its own, so the group's member list and the stamp on its
    // replies say which one answered (librdkafka calls every client `rdkafka`).
    let host = WorkerIdentity::this_host();
    let replica = format!(
        "{group_id}-{host}-{}-{}",
        std::process::id(),
        next_replica()
    );
    set_default(&mut consumer_config, "client.id", &replica);
    let worker = Arc::new(WorkerIdentity {
        client_id: consumer_config
            .get("client.id")
            .unwrap_or_default()
            .to_owned(),
        group: group_id,
        host,
    });
    set_default(&mut consumer_config, "auto.offset.reset", "earliest");
    set_default(&mut consumer_config, "enable.auto.commit", "true");
    set_default(&mut consumer_config, "auto.commit.interval.ms", "1000");
    // A killed replica's partitions move on after this, not after librdkafka's 45 s default:
    // the brokers' smallest allowed session (group.min.session.timeout.ms), with heartbeats a
    // third of it as Kafka advises.
    set_default(&mut consumer_config, "session.timeout.ms", "6000");
    set_default(&mut consumer_config, "heartbeat.interval.ms", "2000");
    // Not overridable: offsets are stored by hand once the reply is acknowledged.
    consumer_config.set("enable.auto.offset.store", "false");
    if let Delivery::ExactlyOnce(_) = config.delivery {
        // Offsets are committed in the transactions only, and a request some producer wrote in
        // a transaction it then aborted is never answered.
        consumer_config.set("enable.auto.commit", "false");
        consumer_config.set("isolation.level", "read_committed");
    }
    // The statistics feed the lag gauges and tell whether the consumer's group is up.
    set_default(&mut consumer_config, "statistics.interval.ms", "1000");
    // The watchdog's probe reads the group's committed offsets but never joins it.
    let mut probe_config = consumer_config.clone();
    probe_config.set("enable.auto.commit", "false");
    probe_config.remove("statistics.interval.ms");
    let mut watch = ConsumerWatch::new(
        probe_config,
        routing.request_topic.clone(),
        config.reset,
        metrics.consumer_recoveries.clone(),
    )
    .map_err(client_error("consumer"))?;
    let subscribed =
        |context: WorkerContext| -> Result<StreamConsumer<WorkerContext>, WorkerError> {
            let consumer: StreamConsumer<WorkerContext> = consumer_config
                .create_with_context(context)
                .map_err(client_error("consumer"))?;
            consumer
                .subscribe(&[&routing.request_topic])
                .map_err(|source| WorkerError::Subscribe {
                    topic: routing.request_topic.clone(),
                    source,
                })?;
            Ok(consumer)
        };
    let mut consumer = subscribed(WorkerContext {
        reset: config.reset,
        already_reset: Mutex::default(),
        metrics: metrics.clone(),
        group_up: Mutex::default(),
        revoked: Mutex::default(),
    })?;
    let mut group_watch = GroupWatch::new(BLIND_AFTER, Instant::now());
    let mut stranded = ownership::watch(
        GroupObserver::new(&config.kafka).map_err(client_error("consumer"))?,
        worker.group.clone(),
        routing.request_topic.clone(),
        crate::watchdog::CHECK_INTERVAL,
    );

    let mut producer_config = config.kafka.producer_config();
    set_default(&mut producer_config, "enable.idempotence", "true");
    let (output, mut commits) = match config.delivery {
        Delivery::AtLeastOnce => {
            // How long a reply may wait for its acknowledgement before the producer counts as
            // stuck and is replaced (see `recovery`); librdkafka's default is five minutes.
            set_default(&mut producer_config, "message.timeout.ms", REPLY_TIMEOUT_MS);
            let producer =
                ReplyProducer::new(producer_config, metrics.producer_replacements.clone())
                    .map(Arc::new)
                    .map_err(client_error("producer"))?;
            (
                Output::Deliver(producer),
                Commits::Offsets(Progress::default()),
            )
        }
        Delivery::ExactlyOnce(policy) => {
            // librdkafka fits `message.timeout.ms` within the transaction's timeout.
            set_default(
                &mut producer_config,
                "transaction.timeout.ms",
                TRANSACTION_TIMEOUT_MS,
            );
            // A transaction begun just after a commit is refused (CONCURRENT_TRANSACTIONS)
            // while the coordinator still writes the previous one's markers, and librdkafka asks
            // again after `retry.backoff.ms`, 100 ms by default, which the reply then waits too.
            set_default(
                &mut producer_config,
                "retry.backoff.ms",
                TRANSACTION_RETRY_BACKOFF_MS,
            );
            // Replies batch within a transaction: committing flushes at once whatever is still
            // lingering, so an idle worker's lone reply is not held back, while under load the
            // replies of a transaction share produce requests (scripts/bench, exactly-once rows).
            set_default(
                &mut producer_config,
                "linger.ms",
                crate::producer::adaptive::BATCH_LINGER_MS,
            );
            // Unique per replica: a zombie is fenced by the group's generation (KIP-447), so
            // the id need not survive a restart, and two live replicas never fence each other.
            producer_config.set("transactional.id", &replica);
            let replies = TransactionalReplies::new(
                producer_config,
                policy,
                Arc::clone(&routing),
                metrics.clone(),
            )
            .await
            .map_err(client_error("producer"))?;
            (
                Output::Transaction,
                Commits::Transactions(Box::new(replies)),
            )
        }
    };
    let output = Arc::new(output);
    tracing::info!(
        request_topic = %routing.request_topic,
        reply_topic = %routing.default_reply_topic,
        servers = %servers,
        "worker started"
    );

    let pipeline = Pipeline {
        service: Arc::new(service),
        routing: Arc::clone(&routing),
        output: Arc::clone(&output),
        metrics: metrics.clone(),
        retry: config.retry,
        worker,
    };
    let max_in_flight = config.max_in_flight.get();
    let mut order = KeyOrder::default();
    let mut in_flight: FuturesUnordered<BoxFuture<'static, Finished>> = FuturesUnordered::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let has_room = in_flight.len() < max_in_flight;
        if !has_room {
            watch.held_back();
        }
        commits.after_rebalance(&consumer).await;
        for Rewind {
            topic,
            partition,
            offset,
        } in commits.take_rewound()
        {
            watch.rewound((topic, partition), offset);
        }
        let deadline = commits.deadline();
        // Checked last: only when no request finished and none is waiting to be read.
        let idle = in_flight.is_empty() && deadline.is_some();
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(finished) = in_flight.next(), if !in_flight.is_empty() => {
                order.forget(&finished.turn);
                commits.finished(&consumer, finished).await;
            }
            () = sleep_until(deadline), if deadline.is_some() => {
                commits.commit_if_due(&consumer, false).await;
            }
            // A worker held back by its own in-flight bound is not stalled: no look-up starts
            // then, and one that was running is not judged (see `held_back`).
            tick = watch.tick(has_room) => match tick {
                Tick::Due => watch.start_lookup(&consumer),
                Tick::LookedUp(found) => {
                    let now = Instant::now();
                    group_watch.brokers(found.is_some(), now);
                    if let Some((up, at)) = consumer.context().take_group_state() {
                        group_watch.group(up, at);
                    }
                    if group_watch.is_blind(now) {
                        let why = format!("the consumer has had no group for {} s while the brokers answer", BLIND_AFTER.as_secs());
                        commits.consumer_replaced(&consumer).await;
                        consumer = replace_consumer(consumer, subscribed, &why)?;
                        group_watch.replaced(now);
                        metrics.consumer_replacements.inc();
                        continue;
                    }
                    let Some(lookup) = found else { continue };
                    // A skipped request goes through the pipeline like any other: its offset
                    // is stored once its dead letter is acknowledged.
                    for skipped in watch.judge(lookup, &consumer) {
                        let copy = undecodable_dead_letter(&routing.dead_letter_topic, &skipped);
                        metrics.errors.inc();
                        metrics.dead_lettered.inc();
                        let span = info_span!("skipped", partition = skipped.key.1, offset = skipped.next);
                        let inbound = Inbound {
                            topic: skipped.key.0,
                            partition: skipped.key.1,
                            offset: skipped.next,
                            key: None,
                            payload: None,
                            headers: HeaderList::default(),
                        };
                        let turn = order.take_turn(inbound.partition, None);
                        let epoch = commits.started(&inbound);
                        in_flight.push(pipeline.send(inbound, turn, epoch, vec![copy], span));
                    }
                }
            },
            Some(partitions) = stranded.recv() => {
                let why = format!(
                    "the group has left partitions {partitions:?} of {} to no member for {} s",
                    routing.request_topic,
                    STRANDED_AFTER.as_secs()
                );
                commits.consumer_replaced(&consumer).await;
                consumer = replace_consumer(consumer, subscribed, &why)?;
                group_watch.replaced(Instant::now());
                metrics.consumer_replacements.inc();
            }
            received = consumer.recv(), if has_room => match received {
                Err(error) => {
                    watch.error(&error);
                    tracing::warn!(%error, "consumer error");
                    // A fatal error ends the consumer for good: nothing would be read again.
                    if matches!(error, KafkaError::MessageConsumptionFatal(_)) {
                        commits.consumer_replaced(&consumer).await;
                        consumer = replace_consumer(consumer, subscribed, "the consumer failed for good")?;
                        // The new consumer has its group to join: not blind before its time.
                        group_watch.replaced(Instant::now());
                        metrics.consumer_replacements.inc();
                    }
                }
                Ok(message) => {
                    let key = (message.topic().to_owned(), message.partition());
                    match watch.below_committed(&consumer, &key, message.offset()) {
                        Below::No => {}
                        Below::SentBack => {
                            drop(message);
                            commits.consumer_went_back(&consumer).await;
                            continue;
                        }
                        Below::AlreadySentBack => continue,
                    }
                    watch.read(&key, message.offset());
                    let inbound = Inbound::from_message(&message);
                    drop(message);
                    // Partitions revoked while this message was polled: the transaction that
                    // would answer it must not carry what the old assignment consumed.
                    commits.after_rebalance(&consumer).await;
                    let turn = order.take_turn(inbound.partition, inbound.key.as_deref());
                    let epoch = commits.started(&inbound);
                    in_flight.push(pipeline.handle(inbound, turn, epoch));
                }
            },
            () = std::future::ready(()), if idle => commits.commit_if_due(&consumer, true).await,
        }
    }

    tracing::info!(
        in_flight = in_flight.len(),
        "shutting down: finishing in-flight requests"
    );
    let drain = async {
        while let Some(finished) = in_flight.next().await {
            commits.finished(&consumer, finished).await;
        }
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
        tracing::warn!("gave up waiting for in-flight replies; those requests will be redelivered");
    }
    commits.close(&consumer).await;
    consumer.unsubscribe();
    if let Output::Deliver(producer) = &*output {
        if let Err(error) = producer.flush(Duration::from_secs(10)) {
            tracing::warn!(%error, "producer flush incomplete");
        }
    }
    tracing::info!("worker stopped");
    Ok(())
}

/// Tells apart the replicas one process runs (tests run several), in their default `client.id`.
fn next_replica() -> u32 {
    static STARTED: AtomicU32 = AtomicU32::new(0);
    STARTED.fetch_add(1, Ordering::Relaxed)
}

/// Makes a new consumer (with `subscribed`) in place of one that lost its group for good,
/// failed, or sits in a group that strands partitions, saying `why`. The old one is closed on a
/// thread of its own: a client that knows no reachable broker can take long to close, and must
/// not hold up the worker or its exit.
fn replace_consumer(
    lost: StreamConsumer<WorkerContext>,
    subscribed: impl Fn(WorkerContext) -> Result<StreamConsumer<WorkerContext>, WorkerError>,
    why: &str,
) -> Result<StreamConsumer<WorkerContext>, WorkerError> {
    tracing::warn!("{why}; replacing it");
    let fresh = subscribed(WorkerContext::successor(lost.context()))?;
    std::thread::spawn(move || drop(lost));
    Ok(fresh)
}

/// Resolves at `deadline` (never when there is none).
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}
