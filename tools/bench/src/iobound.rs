//! `bench io-bound`: a service that waits on I/O (an async wait of `--wait`, 20 ms by default)
//! in one worker process, driven closed-loop through the library, so the figure is what a
//! worker gets out of handling requests alongside each other.
//!
//! By default requests are keyed by one of `--keys` customers at random: requests of one key are
//! handled in order while the others run. `--serial` keys each request by its partition instead,
//! which is what a worker that handles each partition one message at a time does (NestJS,
//! Spring without concurrency), for the side-by-side figure. Either way the service checks that
//! no key was ever handled twice at once and that each key's requests were handled in log
//! order, and the run reports the violations it saw (there must be none).

use crate::KafkaArgs;
use anyhow::Context;
use clap::Args;
use request_reply::codec::{Validate, ValidationError};
use request_reply::headers::{CorrelationId, TraceContext};
use request_reply::requester::{Client, SingleRoute};
use request_reply::responder::{self, Failure, Origin, Service, WorkerConfig};
use request_reply::route::Route;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct IoBoundArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Calls in flight.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// How long to drive load.
    #[arg(long, value_parser = crate::parse_duration, default_value = "10s")]
    duration: Duration,
    /// How long the service waits in each request.
    #[arg(long, value_parser = crate::parse_duration, default_value = "20ms")]
    wait: Duration,
    /// Distinct keys the requests are spread over.
    #[arg(long, default_value_t = 4096)]
    keys: u64,
    /// Key each request by its partition: one request at a time per partition.
    #[arg(long)]
    serial: bool,
    /// Print one JSON line instead of text.
    #[arg(long)]
    json: bool,
}

/// A job for one key.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Job {
    key: String,
}

impl Validate for Job {
    fn validate(&self) -> Result<(), ValidationError> {
        Ok(())
    }
}

/// What the service saw, to check per-key order.
#[derive(Default)]
struct Seen {
    /// Keys being handled now.
    busy: HashSet<String>,
    /// The offset each key was last handled at.
    last: HashMap<String, i64>,
    /// Requests handled while another of their key was, or before an earlier one of their key.
    violations: u64,
}

/// Waits, as a service calling a database would, and watches the order of each key.
struct Waiting {
    wait: Duration,
    seen: Arc<Mutex<Seen>>,
}

impl Waiting {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

impl Service for Waiting {
    type Request = Job;
    type Response = Job;

    async fn handle(&self, job: Job, origin: Origin) -> Result<Job, Failure> {
        {
            let mut seen = self.seen();
            let early = seen
                .last
                .get(&job.key)
                .is_some_and(|last| *last >= origin.offset);
            let overlapping = !seen.busy.insert(job.key.clone());
            if early || overlapping {
                seen.violations += 1;
            }
            seen.last.insert(job.key.clone(), origin.offset);
        }
        tokio::time::sleep(self.wait).await;
        self.seen().busy.remove(&job.key);
        Ok(job)
    }

    async fn handle_text(&self, text: &str, _origin: Origin) -> Result<String, Failure> {
        Ok(text.to_owned())
    }
}

pub async fn io_bound(args: IoBoundArgs) -> anyhow::Result<()> {
    let kafka = args.kafka.settings()?;
    let mut topics = args.kafka.topics()?;
    let run = CorrelationId::generate().key();
    topics.prefix = format!("{}io-{}.", topics.prefix, &run[..8]);
    let route = Route::new(
        format!("{}io-requests", topics.prefix),
        format!("{}io-replies", topics.prefix),
    );
    let seen = Arc::new(Mutex::new(Seen::default()));
    let service = Waiting {
        wait: args.wait,
        seen: Arc::clone(&seen),
    };
    let mut config = WorkerConfig::new(kafka.clone(), topics.clone());
    config.group_id = Some(format!("{}worker", topics.prefix));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn({
        let route = route.clone();
        async move {
            responder::run(service, &route, config, async {
                let _ = stopped.await;
            })
            .await
        }
    });
    let client: Arc<Client<SingleRoute<Job>>> = Arc::new(
        Client::connect(&kafka, &topics, SingleRoute::new(route), "bench-io")
            .await
            .context("cannot connect the requester")?,
    );
    // One warm-up call: the worker has joined its group once it is answered.
    call(&client, "warm-up".into(), None, Duration::from_secs(60))
        .await
        .context("the worker never answered")?;

    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + args.duration;
    let partitions = u64::try_from(topics.partitions).unwrap_or(1);
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|task| {
            let client = Arc::clone(&client);
            let done = Arc::clone(&done);
            let failed = Arc::clone(&failed);
            let (serial, keys) = (args.serial, args.keys.max(1));
            tokio::spawn(async move {
                let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ (task as u64 + 1);
                while Instant::now() < until {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let (key, partition) = if serial {
                        let partition = state % partitions;
                        (format!("partition-{partition}"), Some(partition as i32))
                    } else {
                        (format!("customer-{}", state % keys), None)
                    };
                    match call(&client, key, partition, Duration::from_secs(30)).await {
                        Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.context("a load task panicked")?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let _ = stop.send(());
    worker
        .await
        .context("the worker panicked")?
        .context("the worker failed")?;

    let calls = done.load(Ordering::Relaxed);
    let errors = failed.load(Ordering::Relaxed);
    let violations = seen.lock().unwrap_or_else(|p| p.into_inner()).violations;
    let throughput = calls as f64 / elapsed;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "throughput": throughput,
                "calls": calls,
                "errors": errors,
                "order_violations": violations,
                "concurrency": args.concurrency,
                "wait_ms": args.wait.as_secs_f64() * 1000.0,
                "serial": args.serial,
                "partitions": topics.partitions,
            })
        );
    } else {
        println!(
            "{throughput:.0} round trips/s ({calls} in {elapsed:.1} s, {errors} errors, {violations} per-key order violations)"
        );
    }
    Ok(())
}

/// One round trip for `key` (to `partition` when given), keyed by it.
async fn call(
    client: &Client<SingleRoute<Job>>,
    key: String,
    partition: Option<i32>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let id = CorrelationId::generate();
    let reply = client.expect_reply(&id);
    let mut message = client.requester().request_message(
        (),
        &id,
        &Job { key: key.clone() },
        &TraceContext::new_root(),
        None,
    );
    message.key = Some(key.into_bytes());
    message.partition = partition;
    client.requester().send_outgoing(&message).await?;
    let reply = client.await_reply(&id, reply, timeout).await?;
    match reply.content {
        Ok(request_reply::codec::ReplyBody::Json(request_reply::envelope::Reply {
            outcome: request_reply::envelope::Outcome::Ok(_),
            ..
        })) => Ok(()),
        other => anyhow::bail!("unexpected reply: {other:?}"),
    }
}
