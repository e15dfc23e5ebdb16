//! Driving requests through the dashboard's JSON API, and finding out afterwards what became of
//! each: from the dashboard (`GET /api/requests/{id}`) and from the log itself (the reply topics).

use anyhow::{Context, Result};
use dashboard::api::{RequestState, Status};
use futures::StreamExt;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use request_reply::config::KafkaSettings;
use request_reply::headers::{CORRELATION_ID, CorrelationId};
use request_reply::kafka::HeaderList;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// How long one API call may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(20);

/// The dashboard's HTTP API, on a loopback address.
#[derive(Clone, Debug)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Invoice,
    Score,
}

/// What the API said to one request.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// 202 with this correlation ID.
    Accepted(String),
    /// An HTTP error status with the body's message.
    Refused { status: u16, message: String },
    /// No HTTP answer at all.
    NoAnswer(String),
}

#[derive(Clone, Debug)]
pub struct Attempt {
    pub sent_at: SystemTime,
    /// From sending to the answer (or to giving up).
    pub took: Duration,
    pub outcome: Outcome,
}

/// The dashboard has an answer for the request (a reply or an error reply), not a timeout.
pub fn is_final(state: &RequestState) -> bool {
    matches!(state.status, Status::Completed | Status::Failed)
}

/// Replies the dashboard has matched to this request, first one and duplicates.
pub fn replies_seen(state: &RequestState) -> usize {
    if is_final(state) {
        state.duplicate_replies as usize + 1
    } else {
        0
    }
}

impl Api {
    pub fn new(addr: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            .pool_max_idle_per_host(64)
            .no_proxy()
            .build()
            .context("cannot create the HTTP client")?;
        Ok(Api {
            http,
            base: format!("http://{addr}"),
        })
    }

    pub async fn submit(&self, index: usize, kind: Kind) -> Attempt {
        let customer = format!("Chaos Customer {index}");
        let (path, body) = match kind {
            Kind::Invoice => (
                "/api/invoices",
                serde_json::json!({
                    "customer": customer,
                    "lines": [{"description": "Widget", "quantity": 1 + index % 7, "unit_price_cents": 1250}]
                }),
            ),
            Kind::Score => ("/api/scores", serde_json::json!({ "customer": customer })),
        };
        let sent_at = SystemTime::now();
        let started = Instant::now();
        let outcome = match self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
        {
            Err(error) => Outcome::NoAnswer(transport_error(&error)),
            Ok(response) => {
                let status = response.status().as_u16();
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                match (status, body["correlation_id"].as_str()) {
                    (202, Some(id)) => Outcome::Accepted(id.to_owned()),
                    _ => Outcome::Refused {
                        status,
                        message: body["error"].as_str().unwrap_or_default().to_owned(),
                    },
                }
            }
        };
        Attempt {
            sent_at,
            took: started.elapsed(),
            outcome,
        }
    }

    /// `Some(true)` ready, `Some(false)` answering 503, `None` not answering.
    pub async fn ready(&self) -> Option<bool> {
        let response = self
            .http
            .get(format!("{}/readyz", self.base))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        Some(response.status().is_success())
    }

    pub async fn wait_ready(&self, timeout: Duration) -> Result<Duration> {
        let started = Instant::now();
        while self.ready().await != Some(true) {
            if started.elapsed() > timeout {
                anyhow::bail!("dashboard at {} not ready after {timeout:?}", self.base);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(started.elapsed())
    }

    pub async fn page(&self, path: &str) -> Result<(u16, String)> {
        let response = self.http.get(format!("{}{path}", self.base)).send().await?;
        let status = response.status().as_u16();
        Ok((status, response.text().await?))
    }

    /// `None`: the dashboard does not know the request (404).
    pub async fn request_state(&self, id: &str) -> Result<Option<RequestState>> {
        let response = self
            .http
            // The status is all the verdict needs: no read-back of the payloads from Kafka.
            .get(format!("{}/api/requests/{id}?payloads=false", self.base))
            .send()
            .await?;
        if response.status().as_u16() == 404 {
            return Ok(None);
        }
        let response = response.error_for_status()?;
        Ok(Some(response.json().await?))
    }

    /// [`Api::request_state`] of each of `ids`, 32 calls at a time, in no particular order.
    pub async fn request_states(
        &self,
        ids: &[String],
    ) -> Vec<(String, Result<Option<RequestState>>)> {
        futures::stream::iter(ids.iter().cloned())
            .map(|id| async move {
                let state = self.request_state(&id).await;
                (id, state)
            })
            .buffer_unordered(32)
            .collect()
            .await
    }

    /// `dashboard_replies_total{outcome="duplicate"}` of the running dashboard.
    pub async fn duplicate_metric(&self) -> Option<u64> {
        let (_, text) = self.page("/metrics").await.ok()?;
        text.lines()
            .find(|line| {
                line.starts_with("dashboard_replies_total") && line.contains("\"duplicate\"")
            })
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse::<f64>().ok())
            .map(|value| value as u64)
    }
}

fn transport_error(error: &reqwest::Error) -> String {
    if error.is_connect() {
        "dashboard not answering (connection refused)".into()
    } else if error.is_timeout() {
        "no answer within the HTTP timeout".into()
    } else {
        "connection lost mid-request".into()
    }
}

/// How fast requests are started, and when they are held back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    Normal,
    /// A trickle: enough to see how the API answers during an outage.
    Slow,
    /// None at all (the dashboard is being restarted on purpose).
    Hold,
}

#[derive(Debug)]
pub struct Pacer {
    inner: Mutex<PacerState>,
}

#[derive(Debug)]
struct PacerState {
    next: Instant,
    rate: f64,
    slow_rate: f64,
    pace: Pace,
}

impl Pacer {
    pub fn new(rate: f64, slow_rate: f64) -> Self {
        Pacer {
            inner: Mutex::new(PacerState {
                next: Instant::now(),
                rate: rate.max(0.1),
                slow_rate: slow_rate.max(0.1),
                pace: Pace::Normal,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PacerState> {
        self.inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    pub fn set(&self, pace: Pace) {
        self.lock().pace = pace;
    }

    /// Waits for the next start slot; false once `deadline` has passed.
    async fn turn(&self, deadline: Instant) -> bool {
        loop {
            if Instant::now() >= deadline {
                return false;
            }
            let slot = {
                let mut state = self.lock();
                let rate = match state.pace {
                    Pace::Hold => None,
                    Pace::Normal => Some(state.rate),
                    Pace::Slow => Some(state.slow_rate),
                };
                rate.map(|rate| {
                    let slot = state.next.max(Instant::now());
                    state.next = slot + Duration::from_secs_f64(1.0 / rate);
                    slot
                })
            };
            match slot {
                Some(slot) => {
                    tokio::time::sleep_until(slot.into()).await;
                    // A hold that began meanwhile applies to this slot too.
                    if self.lock().pace != Pace::Hold {
                        return true;
                    }
                }
                None => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
}

/// Shared between the load and the fault plan of a scenario.
#[derive(Debug, Default)]
pub struct Progress {
    /// Requests started so far.
    pub started: AtomicUsize,
    /// The fault plan has finished; the load may stop once it reached its count.
    pub faults_done: AtomicBool,
}

impl Progress {
    pub fn started(&self) -> usize {
        self.started.load(Ordering::Relaxed)
    }
}

/// Sends at least `count` requests (invoices and scores alternately) with `concurrency` in flight,
/// paced by `pacer`; keeps going past `count` while the fault plan still runs, never past
/// `deadline`.
pub async fn drive(
    api: &Api,
    count: usize,
    concurrency: usize,
    pacer: &Pacer,
    progress: &Progress,
    deadline: Instant,
) -> Vec<Attempt> {
    let attempts = Mutex::new(Vec::with_capacity(count + count / 4));
    let worker = || async {
        loop {
            let enough =
                progress.started() >= count && progress.faults_done.load(Ordering::Relaxed);
            if enough || !pacer.turn(deadline).await {
                break;
            }
            let index = progress.started.fetch_add(1, Ordering::Relaxed);
            let kind = if index % 2 == 0 {
                Kind::Invoice
            } else {
                Kind::Score
            };
            let attempt = api.submit(index, kind).await;
            attempts
                .lock()
                .unwrap_or_else(|poison| poison.into_inner())
                .push(attempt);
        }
    };
    futures::future::join_all((0..concurrency.max(1)).map(|_| worker())).await;
    attempts
        .into_inner()
        .unwrap_or_else(|poison| poison.into_inner())
}

/// Polls the dashboard until every ID is completed or failed, or `deadline`; returns the last
/// state of each (`None`: unknown to the dashboard).
pub async fn settle(
    api: &Api,
    ids: &[String],
    deadline: Instant,
) -> HashMap<String, Option<RequestState>> {
    let mut states: HashMap<String, Option<RequestState>> = HashMap::new();
    let mut open: Vec<String> = ids.to_vec();
    loop {
        let polled = api.request_states(&open).await;
        let mut still_open = Vec::new();
        for (id, state) in polled {
            match state {
                Ok(state) => {
                    if !state.as_ref().is_some_and(is_final) {
                        still_open.push(id.clone());
                    }
                    states.insert(id, state);
                }
                // The dashboard did not answer this time; ask again.
                Err(_) => still_open.push(id),
            }
        }
        open = still_open;
        if open.is_empty() || Instant::now() >= deadline {
            return states;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Polls `ids` until the dashboard has counted as many replies to each as the log holds, or
/// `deadline`; returns their latest states.
pub async fn catch_up(
    api: &Api,
    ids: &[String],
    replies: &LogIndex,
    deadline: Instant,
) -> HashMap<String, Option<RequestState>> {
    let mut latest = HashMap::new();
    let mut open: Vec<String> = ids.to_vec();
    while !open.is_empty() {
        let polled = api.request_states(&open).await;
        open.clear();
        for (id, state) in polled {
            // The dashboard did not answer this time: ask again, keep what was known.
            let Ok(state) = state else {
                open.push(id);
                continue;
            };
            let in_log = replies.get(&id).map_or(0, Vec::len);
            let seen = state.as_ref().map_or(0, replies_seen);
            if seen < in_log {
                open.push(id.clone());
            }
            latest.insert(id, state);
        }
        if Instant::now() >= deadline {
            break;
        }
        if !open.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    latest
}

/// What the log holds for one topic: correlation ID → the Kafka timestamps (ms) of its messages.
pub type LogIndex = HashMap<String, Vec<i64>>;

/// The verifier's client context: a partition's end is how the verifier knows it has read a
/// partition (`enable.partition.eof`), which librdkafka also reports as a global error; only
/// real errors are logged.
struct Verifier;

impl ClientContext for Verifier {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::Global(RDKafkaErrorCode::PartitionEOF)) {
            eprintln!("chaos: the log verifier's Kafka client: {error} ({reason})");
        }
    }
}

impl ConsumerContext for Verifier {}

/// Reads `topics` from the beginning to their current end, outside any consumer group, as a
/// requester does: committed messages only (librdkafka's default `isolation.level`).
pub async fn read_log(bootstrap: &str, topics: Vec<String>, timeout: Duration) -> Result<LogIndex> {
    let mut config = KafkaSettings::for_bootstrap(bootstrap).consumer_config();
    config
        .set("group.id", "chaos-verifier")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true");
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer<Verifier> = config
            .create_with_context(Verifier)
            .context("cannot create the verifier")?;
        let deadline = Instant::now() + timeout;
        let mut index = LogIndex::new();
        for topic in &topics {
            read_topic(&consumer, topic, deadline, &mut index)
                .with_context(|| format!("cannot read {topic} (limit {timeout:?})"))?;
        }
        Ok(index)
    })
    .await
    .context("log reader panicked")?
}

/// Adds what `topic` holds to `index`. A partition is read once its end is reported: counting
/// against the high watermark alone never ends on a topic written in transactions, whose
/// commit markers take offsets but are not delivered.
fn read_topic(
    consumer: &BaseConsumer<Verifier>,
    topic: &str,
    deadline: Instant,
    index: &mut LogIndex,
) -> Result<()> {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .context("no metadata")?;
    let mut assignment = TopicPartitionList::new();
    let mut unread = std::collections::HashSet::new();
    for partition in metadata
        .topics()
        .iter()
        .flat_map(|topic| topic.partitions())
    {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition.id(), Duration::from_secs(10))
            .with_context(|| format!("no watermarks for partition {}", partition.id()))?;
        if high > low {
            assignment.add_partition_offset(topic, partition.id(), Offset::Offset(low))?;
            unread.insert(partition.id());
        }
    }
    if unread.is_empty() {
        return Ok(());
    }
    consumer.assign(&assignment)?;
    while !unread.is_empty() {
        if Instant::now() >= deadline {
            anyhow::bail!("{} partitions unfinished", unread.len());
        }
        let message = match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(message)) => message,
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                unread.remove(&partition);
                continue;
            }
            Some(Err(_)) | None => continue,
        };
        // Chaos tests its own traffic, but the log may hold hostile records from other runs:
        // the defensive reader never panics on non-UTF-8 header names.
        let id = HeaderList::from_message(&message)
            .last(CORRELATION_ID)
            .map(|value| CorrelationId::from_bytes(value).key());
        if let Some(id) = id {
            let timestamp = message.timestamp().to_millis().unwrap_or_default();
            index.entry(id).or_default().push(timestamp);
        }
    }
    Ok(())
}

/// Milliseconds since the epoch.
pub fn epoch_ms(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}
