//! `bench e2e`: Kafka's one-way end-to-end latency through librdkafka (the client library our
//! services use), with microsecond resolution: what Kafka's own `EndToEndLatency` tool measures
//! (one message at a time, produced and then consumed), whose percentiles are whole milliseconds.

use crate::{KafkaArgs, parse_duration};
use anyhow::{Context, bail};
use clap::Args;
use hdrhistogram::Histogram;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use request_reply::admin::ensure_topics;
use request_reply::config::TopicSettings;
use request_reply::kafka::set_default;
use serde::Serialize;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct E2eArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Messages, one at a time.
    #[arg(long, default_value_t = 10_000)]
    count: u64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Give up waiting for one message after this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct E2eReport {
    count: u64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    mean_ms: f64,
}

pub async fn e2e(args: E2eArgs) -> anyhow::Result<()> {
    let kafka = args.kafka.settings()?;
    let topic = format!("{}bench-e2e", args.kafka.prefix);
    let single = TopicSettings {
        partitions: 1,
        ..args.kafka.topics()?
    };
    ensure_topics(&kafka, &single, std::slice::from_ref(&topic))
        .await
        .context("cannot create the topic")?;
    // As Kafka's EndToEndLatency: no linger, acks=all (the caller's -X settings still win).
    let mut producer_config = kafka.producer_config();
    set_default(&mut producer_config, "linger.ms", "0");
    set_default(&mut producer_config, "acks", "all");
    let producer: BaseProducer = producer_config
        .create()
        .context("cannot create the producer")?;
    let mut consumer_config = kafka.consumer_config();
    set_default(&mut consumer_config, "group.id", "bench-e2e");
    consumer_config.set("enable.auto.commit", "false");
    let consumer: BaseConsumer = consumer_config
        .create()
        .context("cannot create the consumer")?;
    let (count, size, timeout) = (args.count, args.size, args.timeout);
    let histogram = tokio::task::spawn_blocking(move || -> anyhow::Result<Histogram<u64>> {
        // A topic created a moment ago may not have a leader yet.
        let deadline = Instant::now() + Duration::from_secs(15);
        let high = loop {
            match consumer.fetch_watermarks(&topic, 0, Duration::from_secs(5)) {
                Ok((_, high)) => break high,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(error) => return Err(error).context("cannot look up the end of the topic"),
            }
        };
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&topic, 0, Offset::Offset(high))?;
        consumer.assign(&assignment)?;
        let payload = vec![b'x'; size];
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        // The first messages pay for connections and leader look-ups; not counted.
        let warmup = (count / 100).clamp(1, 100);
        for index in 0..count + warmup {
            let started = Instant::now();
            producer
                .send(BaseRecord::<(), [u8]>::to(&topic).payload(&payload))
                .map_err(|(error, _)| error)
                .context("cannot produce")?;
            loop {
                producer.poll(Duration::ZERO);
                match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(message)) if message.payload().map(<[u8]>::len) == Some(size) => break,
                    Some(Err(error)) => tracing::warn!(%error, "consumer error"),
                    _ if started.elapsed() > timeout => {
                        bail!("message {index} not consumed within {timeout:?}")
                    }
                    _ => {}
                }
            }
            if index >= warmup {
                let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                histogram.saturating_record(micros.max(1));
            }
        }
        producer.flush(Duration::from_secs(10))?;
        Ok(histogram)
    })
    .await
    .context("the e2e thread panicked")??;
    let ms = |micros: u64| micros as f64 / 1000.0;
    let report = E2eReport {
        count,
        p50_ms: ms(histogram.value_at_quantile(0.50)),
        p90_ms: ms(histogram.value_at_quantile(0.90)),
        p99_ms: ms(histogram.value_at_quantile(0.99)),
        p999_ms: ms(histogram.value_at_quantile(0.999)),
        max_ms: ms(histogram.max()),
        mean_ms: histogram.mean() / 1000.0,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "one-way produce-to-consume latency, {} messages: p50 {:.3} / p90 {:.3} / p99 {:.3} / p99.9 {:.3} / max {:.3} ms (mean {:.3})",
            report.count,
            report.p50_ms,
            report.p90_ms,
            report.p99_ms,
            report.p999_ms,
            report.max_ms,
            report.mean_ms
        );
    }
    Ok(())
}
