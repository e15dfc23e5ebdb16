//! What the dashboard does besides answering HTTP: rebuilding its history from the log,
//! listening for replies, timing out requests and watching the broker (and, in `system`, the
//! workers' groups).

use crate::GROUP_ID;
use crate::state::AppState;
use crate::store::{from_unix_millis, loggable_id};
use anyhow::Context;
use contract::{RequestKind, Topics};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use request_reply::admin::{SecurityFailure, SecurityWatch, ensure_request_and_reply_topics};
use request_reply::history::{LogMessage, read_recent};
use request_reply::requester::{Positions, ReplyListener, RequestError, SentRequest, StartAt};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::task::JoinHandle;

/// How often the broker's reachability is checked.
const BROKER_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How long one reachability check may take before the broker counts as down.
const BROKER_CHECK_TIMEOUT: Duration = Duration::from_millis(1500);
/// Checks in a row with no broker answering after which the probe gets a new client.
const PROBE_RENEW_AFTER_CHECKS: u32 = 5;
/// Pause between attempts to set up the reply listener while Kafka is unreachable.
const CONNECT_RETRY: Duration = Duration::from_secs(2);

/// Starts the reply listener, the worker group checks, the request timeouts and the broker
/// checks; they run until aborted.
pub(crate) fn start(state: &AppState) -> [JoinHandle<()>; 4] {
    [
        tokio::spawn(listen_for_replies(state.clone())),
        tokio::spawn(crate::system::watch_workers(state.clone())),
        tokio::spawn(expire_requests(state.clone())),
        tokio::spawn({
            let state = state.clone();
            async move {
                if let Err(error) = watch_broker_reachability(state).await {
                    tracing::error!(error = format!("{error:#}"), "broker status checks stopped");
                }
            }
        }),
    ]
}

/// Rebuilds the history from the log: requests made before this process started, and the
/// replies to them, including those that arrived while it was down. Each message is reduced
/// to the store's index entry as it is read, so the rebuild never holds the window's
/// payloads. Returns where the reply topics ended, so the live listener continues exactly
/// there.
async fn restore_history(state: &AppState) -> Result<Positions, RequestError> {
    let config = state.config();
    let (mut requests, mut replies) = (0_usize, 0_usize);
    let topics = Topics::with_prefix(&config.topics.prefix);
    let reply_ends = read_recent(
        &config.kafka,
        &topics,
        GROUP_ID,
        config.history_limit,
        |message| match message {
            LogMessage::Request(request) => {
                requests += 1;
                let created_at = request
                    .timestamp_ms
                    .map_or_else(SystemTime::now, from_unix_millis);
                let sent = SentRequest {
                    topic: request.topic,
                    partition: request.partition,
                    offset: request.offset,
                };
                state.store().insert_historic(
                    &request.correlation_id,
                    request.kind,
                    request.payload.as_deref().unwrap_or_default(),
                    created_at,
                    &sent,
                );
            }
            LogMessage::Reply(reply, timestamp_ms) => {
                replies += 1;
                state
                    .store()
                    .record_historic_reply(reply, timestamp_ms.map(from_unix_millis));
            }
        },
    )
    .await?;
    tracing::info!(requests, replies, "history rebuilt from the log");
    Ok(reply_ends)
}

/// Sets up the reply listener (retrying while Kafka is unreachable), then feeds every reply
/// to the store. Runs until aborted.
async fn listen_for_replies(state: AppState) {
    let config = state.config();
    let mut listener = loop {
        let started = async {
            let topics = Topics::with_prefix(&config.topics.prefix);
            ensure_request_and_reply_topics(&config.kafka, &config.topics, &topics).await?;
            let reply_ends = restore_history(&state).await?;
            ReplyListener::start(
                &config.kafka,
                topics,
                GROUP_ID,
                StartAt::Positions(reply_ends),
            )
            .await
        };
        match started.await {
            Ok(listener) => {
                break listener.count_in(state.metrics().listener_counters());
            }
            Err(error) => {
                tracing::warn!(%error, "reply listener not started; retrying");
                state.update_broker(|status| {
                    status.message = format!(
                        "Cannot reach Kafka at {}: {error}",
                        config.kafka.bootstrap_servers()
                    );
                });
                tokio::time::sleep(CONNECT_RETRY).await;
            }
        }
    };
    state.update_broker(|status| status.listening = true);
    tracing::info!("reply listener assigned; dashboard ready");
    loop {
        let reply = listener.next().await;
        let correlation_id = reply.correlation_id.as_ref().map(loggable_id);
        let trace_id = reply
            .headers
            .last(request_reply::headers::TRACEPARENT)
            .and_then(request_reply::headers::TraceContext::parse)
            .map(|trace| trace.trace_id_hex());
        let outcome = state.store().record_reply(reply);
        state.metrics().reply_received(outcome);
        tracing::info!(
            correlation_id = correlation_id.as_deref().unwrap_or("-"),
            trace_id = trace_id.as_deref().unwrap_or("-"),
            ?outcome,
            "reply received"
        );
    }
}

/// Marks overdue requests as timed out. Runs until aborted.
async fn expire_requests(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let expired = state.store().expire(Instant::now());
        state.metrics().timed_out(expired);
        let pending = || state.store().pending_count();
        state.metrics().sample_pending(pending);
    }
}

/// What one metadata request through `probe` says: answered, or the error and any refusal
/// (login, TLS) librdkafka reported meanwhile.
async fn ask(
    probe: Arc<BaseConsumer<SecurityWatch>>,
    topic: String,
) -> anyhow::Result<Result<(), (KafkaError, Option<SecurityFailure>)>> {
    tokio::task::spawn_blocking(move || {
        let result = probe
            .fetch_metadata(Some(&topic), BROKER_CHECK_TIMEOUT)
            .map(|_| ());
        while probe.poll(Duration::ZERO).is_some() {}
        match result {
            Ok(()) => {
                // Let in: any earlier refusal is history.
                probe.context().take_failure();
                Ok(())
            }
            Err(error) => Err((error, probe.context().failure())),
        }
    })
    .await
    .context("broker probe panicked")
}

/// Whether any bootstrap server answers a client made for it alone (a new client's first
/// request goes to its bootstrap server, so none of them can be passed over).
async fn any_server_answers(state: &AppState, topic: &str) -> anyhow::Result<bool> {
    let servers = state.config().kafka.bootstrap_servers().to_owned();
    let asked = servers
        .split(',')
        .map(str::trim)
        .filter(|server| !server.is_empty())
        .map(|server| {
            let mut config = state.config().kafka.common_config();
            config.set("bootstrap.servers", server);
            let topic = topic.to_owned();
            async move {
                let probe: BaseConsumer<SecurityWatch> = config
                    .create_with_context(SecurityWatch::default())
                    .context("cannot create a broker probe")?;
                let probe = Arc::new(probe);
                let answered = ask(Arc::clone(&probe), topic).await?.is_ok();
                // Closing a client whose broker does not answer can take a while.
                tokio::task::spawn_blocking(move || drop(probe));
                anyhow::Ok(answered)
            }
        });
    let answers = futures::future::join_all(asked).await;
    let mut any = false;
    for answered in answers {
        any |= answered?;
    }
    Ok(any)
}

/// Checks every second that a broker answers, so an outage is shown at once. Runs until aborted.
async fn watch_broker_reachability(state: AppState) -> anyhow::Result<()> {
    // The watch context hears librdkafka say a login or TLS handshake was refused, which a
    // metadata request alone only reports as a timeout.
    let new_probe = || -> anyhow::Result<Arc<BaseConsumer<SecurityWatch>>> {
        let probe = state
            .config()
            .kafka
            .common_config()
            .create_with_context(SecurityWatch::default())
            .context("cannot create the broker probe")?;
        Ok(Arc::new(probe))
    };
    let mut probe = new_probe()?;
    let mut probe_failures = 0_u32;
    let topic = Topics::with_prefix(&state.config().topics.prefix).reply(RequestKind::Invoice);
    let servers = state.config().kafka.bootstrap_servers().to_owned();
    loop {
        let mut result = ask(Arc::clone(&probe), topic.clone()).await?;
        probe_failures = match &result {
            Err((_, None)) => probe_failures + 1,
            _ => 0,
        };
        // The probe asks one broker, and keeps asking the one it asked last: one broker frozen
        // (SIGSTOPped, swapping, partitioned away) while the others serve would keep the
        // dashboard refusing requests the cluster could take. So before it calls Kafka
        // unreachable, each bootstrap server is asked by a client of its own.
        if matches!(result, Err((_, None))) && any_server_answers(&state, &topic).await? {
            result = Ok(());
        }
        // A probe that keeps failing is replaced: one that lost every broker while a whole
        // cluster shut down can stay blind after the cluster is back, and one can keep asking a
        // frozen broker; a new one starts again from bootstrap.servers.
        if probe_failures % PROBE_RENEW_AFTER_CHECKS == 0 && probe_failures > 0 {
            tracing::info!(
                probe_failures,
                "no broker answered the probe; replacing its client"
            );
            let blind = std::mem::replace(&mut probe, new_probe()?);
            tokio::task::spawn_blocking(move || drop(blind));
        }
        let groups = &state.config().worker_groups;
        state.update_broker(|status| match &result {
            Ok(()) => {
                status.reachable = true;
                status.message = format!("Connected to Kafka at {servers}");
            }
            Err((_, Some(refused))) => {
                let why = format!(
                    "Kafka at {servers} refused the dashboard: {refused}. New requests are \
                     refused until the credentials or TLS settings are fixed."
                );
                status.lose_kafka(why, groups);
            }
            Err((error, None)) => {
                let why = format!(
                    "Kafka at {servers} is unreachable: {error}. New requests are refused until \
                     it is back."
                );
                status.lose_kafka(why, groups);
            }
        });
        tokio::time::sleep(BROKER_CHECK_INTERVAL).await;
    }
}
