//! `bench backlog`, `bench drain` and `bench startup`: a backlog of plain-text requests for a
//! worker to work through, the rate at which its replies come out, and how soon a fresh worker
//! answers.

use crate::procs;
use crate::{KafkaArgs, Kind, parse_duration};
use anyhow::{Context, bail};
use clap::Args;
use contract::{
    InvoiceRequest, LineItem, RequestKind, SCHEMA_VERSION, ScoreRequest, Topics, legacy,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use request_reply::admin::ensure_request_and_reply_topics;
use request_reply::headers::CorrelationId;
use request_reply::kafka::set_default;
use request_reply::requester::Client;
use serde::Serialize;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct BacklogArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[arg(long, value_enum, default_value = "invoice")]
    kind: Kind,
    /// How many requests.
    #[arg(long, default_value_t = 20_000)]
    count: u64,
    /// The request text; by default the original dashboard's (`Gerar Nota fiscal`,
    /// `Calcular score`).
    #[arg(long)]
    text: Option<String>,
    #[arg(long)]
    json: bool,
}

/// Produces one record, waiting while the producer's local queue is full.
pub fn send_waiting(
    producer: &BaseProducer,
    mut record: BaseRecord<'_, (), [u8]>,
) -> Result<(), KafkaError> {
    loop {
        match producer.send(record) {
            Ok(()) => break,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(Duration::from_millis(10));
            }
            Err((error, _)) => return Err(error),
        }
    }
    producer.poll(Duration::ZERO);
    Ok(())
}

pub async fn backlog(args: BacklogArgs) -> anyhow::Result<()> {
    let kafka = args.kafka.settings()?;
    let topic_settings = args.kafka.topics()?;
    let topics = Topics::with_prefix(&topic_settings.prefix);
    ensure_request_and_reply_topics(&kafka, &topic_settings, &topics)
        .await
        .context("cannot create the topics")?;
    let kind = RequestKind::from(args.kind);
    let topic = topics.request(kind);
    let text = args.text.clone().unwrap_or_else(|| {
        match kind {
            RequestKind::Invoice => legacy::INVOICE_REQUEST_TEXT,
            RequestKind::Score => legacy::SCORE_REQUEST_TEXT,
        }
        .to_owned()
    });
    let mut config = kafka.producer_config();
    set_default(&mut config, "linger.ms", "5");
    let producer: BaseProducer = config.create().context("cannot create the producer")?;
    let count = args.count;
    let started = Instant::now();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        for _ in 0..count {
            let record = BaseRecord::<(), [u8]>::to(&topic).payload(text.as_bytes());
            send_waiting(&producer, record).context("cannot produce a request")?;
        }
        producer
            .flush(Duration::from_secs(60))
            .context("the backlog was not all acknowledged")
    })
    .await
    .context("the producer thread panicked")??;
    let elapsed = started.elapsed().as_secs_f64();
    if args.json {
        println!(
            "{}",
            serde_json::json!({"count": count, "seconds": elapsed, "rate": count as f64 / elapsed})
        );
    } else {
        println!(
            "produced {count} plain-text requests in {elapsed:.2} s ({:.0}/s)",
            count as f64 / elapsed
        );
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct DrainArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[arg(long, value_enum, default_value = "invoice")]
    kind: Kind,
    /// How many replies to wait for.
    #[arg(long, default_value_t = 20_000)]
    count: u64,
    /// Give up after this long (the report then says how many replies came).
    #[arg(long, default_value = "600s", value_parser = parse_duration)]
    timeout: Duration,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct DrainReport {
    expected: u64,
    replies: u64,
    complete: bool,
    /// From the first reply's timestamp to the last one's.
    span_s: f64,
    /// Replies per second over that span.
    rate: f64,
}

pub async fn drain(args: DrainArgs) -> anyhow::Result<()> {
    let kafka = args.kafka.settings()?;
    let topic = Topics::with_prefix(&args.kafka.prefix).reply(args.kind.into());
    let mut config = kafka.consumer_config();
    set_default(&mut config, "group.id", "bench-drain");
    config.set("enable.auto.commit", "false");
    config.set("enable.auto.offset.store", "false");
    let consumer: BaseConsumer = config.create().context("cannot create the consumer")?;
    let expected = args.count;
    let timeout = args.timeout;
    let report = tokio::task::spawn_blocking(move || -> anyhow::Result<DrainReport> {
        let deadline = Instant::now() + timeout;
        let metadata = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .with_context(|| format!("cannot look up {topic}"))?;
        let mut assignment = TopicPartitionList::new();
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            assignment.add_partition_offset(&topic, partition.id(), Offset::Beginning)?;
        }
        if assignment.count() == 0 {
            bail!("{topic} has no partitions (does it exist?)");
        }
        consumer.assign(&assignment)?;
        let (mut replies, mut first, mut last) = (0u64, i64::MAX, i64::MIN);
        while replies < expected && Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(message)) => {
                    replies += 1;
                    if let Some(millis) = message.timestamp().to_millis() {
                        first = first.min(millis);
                        last = last.max(millis);
                    }
                }
                Some(Err(error)) => tracing::warn!(%error, "consumer error"),
                None => {}
            }
        }
        let span_s = if last > first {
            (last - first) as f64 / 1000.0
        } else {
            0.0
        };
        Ok(DrainReport {
            expected,
            replies,
            complete: replies >= expected,
            span_s,
            rate: if span_s > 0.0 {
                (replies.saturating_sub(1)) as f64 / span_s
            } else {
                0.0
            },
        })
    })
    .await
    .context("the consumer thread panicked")??;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{} of {} replies; first to last {:.3} s: {:.0} replies/s{}",
            report.replies,
            report.expected,
            report.span_s,
            report.rate,
            if report.complete { "" } else { " (INCOMPLETE)" }
        );
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct StartupArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[arg(long, value_enum, default_value = "invoice")]
    kind: Kind,
    /// Give up waiting for the reply after this long.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    timeout: Duration,
    /// Where the worker's output goes (default: discarded).
    #[arg(long)]
    log: Option<PathBuf>,
    #[arg(long)]
    json: bool,
    /// The worker command line.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(Debug, Serialize)]
struct StartupReport {
    /// From spawning the worker to receiving its reply.
    startup_ms: f64,
    worker_peak_rss_mib: f64,
}

pub async fn startup(args: StartupArgs) -> anyhow::Result<()> {
    let kafka = args.kafka.settings()?;
    let topic_settings = args.kafka.topics()?;
    let topics = Topics::with_prefix(&topic_settings.prefix);
    let client = Client::connect(&kafka, &topic_settings, topics, crate::GROUP_ID)
        .await
        .context("cannot connect the request/reply client")?;
    let kind = RequestKind::from(args.kind);
    let correlation_id = CorrelationId::generate();
    let reply = client.expect_reply(&correlation_id);
    let requester = client.requester();
    match args.kind {
        Kind::Invoice => {
            requester
                .send(
                    kind,
                    &correlation_id,
                    &InvoiceRequest {
                        schema_version: SCHEMA_VERSION,
                        customer: "ACME".into(),
                        lines: vec![LineItem {
                            description: "Widget".into(),
                            quantity: 1,
                            unit_price_cents: 100,
                        }],
                    },
                )
                .await
        }
        Kind::Score => {
            requester
                .send(
                    kind,
                    &correlation_id,
                    &ScoreRequest {
                        schema_version: SCHEMA_VERSION,
                        customer: "ACME".into(),
                    },
                )
                .await
        }
    }
    .context("cannot send the request")?;

    let output = |log: &Option<PathBuf>| -> anyhow::Result<Stdio> {
        Ok(match log {
            Some(path) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open {}", path.display()))?
                .into(),
            None => Stdio::null(),
        })
    };
    let started = tokio::time::Instant::now();
    let mut child = Command::new(&args.command[0])
        .args(&args.command[1..])
        .env("TOPIC_PREFIX", &args.kafka.prefix)
        .env("KAFKA_BOOTSTRAP_SERVERS", &args.kafka.bootstrap)
        .stdin(Stdio::null())
        .stdout(output(&args.log)?)
        .stderr(output(&args.log)?)
        .spawn()
        .with_context(|| format!("cannot start {}", args.command[0]))?;
    let answered = client
        .await_reply(&correlation_id, reply, args.timeout)
        .await;
    let elapsed = started.elapsed();
    let pid = child.id().to_string();
    let peak = procs::memory_kib(&pid).map_or(0.0, |(_, hwm)| hwm as f64 / 1024.0);
    // SIGTERM, as an operator would stop it; SIGKILL if it does not stop in 20 s.
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let stop_deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait()?.is_none() {
        if Instant::now() > stop_deadline {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    answered.context("the worker did not answer")?;
    let report = StartupReport {
        startup_ms: elapsed.as_secs_f64() * 1000.0,
        worker_peak_rss_mib: peak,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "first reply {:.0} ms after the worker started (its peak RSS then {:.1} MiB)",
            report.startup_ms, report.worker_peak_rss_mib
        );
    }
    Ok(())
}
