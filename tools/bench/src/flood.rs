//! `bench flood`: what a hostile writer can put on a dashboard's topics, for the dashboard's
//! memory figure under attack: uncorrelated replies of almost a megabyte, tens of thousands of
//! garbage replies, and requests and replies with 100 KB correlation IDs.

use crate::KafkaArgs;
use crate::backlog::send_waiting;
use anyhow::Context;
use clap::Args;
use contract::{RequestKind, Topics};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use request_reply::admin::ensure_request_and_reply_topics;
use request_reply::headers;
use request_reply::kafka::set_default;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct FloodArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Uncorrelated replies of `--big-bytes` each, per reply topic.
    #[arg(long, default_value_t = 200)]
    big: u64,
    #[arg(long, default_value_t = 900_000)]
    big_bytes: usize,
    /// Small garbage replies (bytes that are no JSON, a correlation ID nothing waits for).
    #[arg(long, default_value_t = 20_000)]
    garbage: u64,
    /// Requests with a correlation ID of `--id-bytes`, each with a reply carrying that ID.
    #[arg(long, default_value_t = 300)]
    long_ids: u64,
    #[arg(long, default_value_t = 100_000)]
    id_bytes: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Flooded {
    big_replies: u64,
    garbage_replies: u64,
    long_id_requests: u64,
    bytes: u64,
}

/// Produces one message, waiting while the producer's queue is full; returns its size.
fn send(
    producer: &BaseProducer,
    topic: &str,
    payload: &[u8],
    correlation_id: Option<&[u8]>,
) -> anyhow::Result<u64> {
    let mut record = BaseRecord::<(), [u8]>::to(topic).payload(payload);
    if let Some(id) = correlation_id {
        record = record.headers(OwnedHeaders::new().insert(Header {
            key: headers::CORRELATION_ID,
            value: Some(id),
        }));
    }
    send_waiting(producer, record).context("cannot produce")?;
    Ok((payload.len() + correlation_id.map_or(0, <[u8]>::len)) as u64)
}

pub async fn flood(args: FloodArgs) -> anyhow::Result<()> {
    let kafka = args.kafka.settings()?;
    let topic_settings = args.kafka.topics()?;
    let topics = Topics::with_prefix(&topic_settings.prefix);
    ensure_request_and_reply_topics(&kafka, &topic_settings, &topics)
        .await
        .context("cannot create the topics")?;
    let mut config = kafka.producer_config();
    set_default(&mut config, "linger.ms", "5");
    let producer: BaseProducer = config.create().context("cannot create the producer")?;
    let flooded = tokio::task::spawn_blocking(move || -> anyhow::Result<Flooded> {
        let replies: Vec<String> = RequestKind::ALL
            .iter()
            .map(|kind| topics.reply(*kind))
            .collect();
        let mut bytes = 0;
        let big = vec![b'A'; args.big_bytes];
        for topic in &replies {
            for _ in 0..args.big {
                bytes += send(&producer, topic, &big, None)?;
            }
        }
        for n in 0..args.garbage {
            let topic = &replies[usize::from(n % 2 == 1)];
            let payload = format!("\u{1b}[31mgarbage {n} \u{0}\u{ff}");
            let id = format!("no-such-request-{n}");
            let id = (n % 3 != 0).then_some(id.as_bytes());
            bytes += send(&producer, topic, payload.as_bytes(), id)?;
        }
        let request = br#"{"schema_version":1,"customer":"x","lines":[]}"#;
        for n in 0..args.long_ids {
            let mut id = format!("{n:08}-").into_bytes();
            id.resize(args.id_bytes, b'x');
            bytes += send(
                &producer,
                &topics.request(RequestKind::Invoice),
                request,
                Some(&id),
            )?;
            bytes += send(
                &producer,
                &topics.reply(RequestKind::Invoice),
                b"{}",
                Some(&id),
            )?;
        }
        producer
            .flush(Duration::from_secs(120))
            .context("flood not acknowledged")?;
        Ok(Flooded {
            big_replies: args.big * 2,
            garbage_replies: args.garbage,
            long_id_requests: args.long_ids,
            bytes,
        })
    })
    .await??;
    if args.json {
        println!("{}", serde_json::to_string(&flooded)?);
    } else {
        println!("{flooded:?}");
    }
    Ok(())
}
