//! `bench`: a load generator for request/reply over Kafka, and the helpers `scripts/bench` needs.
//!
//! ```text
//! bench load --via library --bootstrap 127.0.0.1:9092 --concurrency 64 --duration 60s
//! bench load --via http --url http://127.0.0.1:3000 --rate 3000 --duration 60s --pids dashboard=1234
//! bench backlog --bootstrap 127.0.0.1:9092 --prefix b1. --count 20000      # plain-text requests
//! bench drain   --bootstrap 127.0.0.1:9092 --prefix b1. --count 20000      # waits for the replies
//! bench e2e     --bootstrap 127.0.0.1:9092 --count 10000                  # one-way baseline
//! bench io-bound --bootstrap 127.0.0.1:9092 --concurrency 256 [--serial]  # a service that waits
//! bench startup --bootstrap 127.0.0.1:9092 --prefix s1. -- target/release/invoice-generator w.ini
//! ```
//!
//! `load` drives correlated requests through the shared library ([`Client::call`]) or through the
//! dashboard's JSON API, closed-loop (`--concurrency N` calls in flight) or open-loop (`--rate R`
//! calls started per second, latency measured from each call's scheduled start so a stall is not
//! hidden), for a bounded time, and prints throughput, latency percentiles from an HDR histogram,
//! errors, timeouts, and the peak RSS and CPU use of the processes named with `--pids`. `--json`
//! prints one JSON line instead, for scripts.
//!
//! Only loopback addresses are accepted: this is a load generator, and the only servers it may
//! load are the ones on this machine.
//!
//! [`Client::call`]: request_reply::requester::Client::call

mod backlog;
mod e2e;
mod flood;
mod iobound;
mod load;
mod procs;
mod target;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use contract::RequestKind;
use request_reply::config::{KafkaSettings, TopicSettings};
use service::config::ConfigFile;
use std::path::PathBuf;
use std::time::Duration;

/// The `group.id` of the request/reply client's reply consumer (assigned, never subscribed).
const GROUP_ID: &str = "bench";

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Load generator for request/reply over Kafka (library path or the dashboard's JSON API)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Drive correlated round trips for a bounded time and report throughput and latency.
    Load(load::LoadArgs),
    /// Produce N plain-text requests (no key, no headers, as the original dashboard) to a request
    /// topic, creating the request and reply topics first.
    Backlog(backlog::BacklogArgs),
    /// Wait until N replies are on a reply topic (read from the beginning, no consumer group) and
    /// report the drain rate from the first reply's timestamp to the last one's.
    Drain(backlog::DrainArgs),
    /// Kafka's one-way end-to-end latency through librdkafka, one message at a time (what
    /// Kafka's EndToEndLatency tool measures), with microsecond resolution.
    E2e(e2e::E2eArgs),
    /// Start a worker (the command after `--`) with a request already waiting for it, and report
    /// the time from process start to its reply; then stop the worker with SIGTERM.
    Startup(backlog::StartupArgs),
    /// Put what a hostile writer could on the topics of a dashboard: near-megabyte uncorrelated
    /// replies, garbage replies, requests and replies with huge correlation IDs.
    Flood(flood::FloodArgs),
    /// Round trips through an in-process worker whose service waits on I/O (20 ms), keyed
    /// requests handled alongside each other (or `--serial`: one at a time per partition).
    IoBound(iobound::IoBoundArgs),
}

/// How to reach Kafka; shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Bootstrap servers; loopback addresses only. Default: KAFKA_BOOTSTRAP_SERVERS or
    /// 127.0.0.1:9092.
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap: String,
    /// Topic namespace prefix (the services' TOPIC_PREFIX).
    #[arg(long, env = "TOPIC_PREFIX", default_value = "")]
    pub prefix: String,
    /// Partitions of topics this program creates (existing topics are left alone).
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
    /// A config.ini whose `[default]`, `[producer]` and `[consumer]` librdkafka properties this
    /// program's own clients use (a tuning profile, for instance).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// One librdkafka property for this program's clients: `producer.linger.ms=5`,
    /// `consumer.fetch.wait.max.ms=10`, `default.socket.nagle.disable=true`. Repeatable.
    #[arg(short = 'X', value_name = "SECTION.KEY=VALUE")]
    pub set: Vec<String>,
}

impl KafkaArgs {
    pub fn settings(&self) -> anyhow::Result<KafkaSettings> {
        check_loopback_servers(&self.bootstrap)?;
        let mut settings = match &self.config {
            Some(path) => ConfigFile::load(path, &[])
                .with_context(|| format!("cannot read {}", path.display()))?
                .kafka(),
            None => KafkaSettings::default(),
        };
        settings
            .common
            .insert("bootstrap.servers".into(), self.bootstrap.clone());
        for assignment in &self.set {
            let (name, value) = assignment
                .split_once('=')
                .with_context(|| format!("-X {assignment}: expected SECTION.KEY=VALUE"))?;
            let (section, key) = name
                .split_once('.')
                .with_context(|| format!("-X {assignment}: expected SECTION.KEY=VALUE"))?;
            let map = match section {
                "default" => &mut settings.common,
                "producer" => &mut settings.producer,
                "consumer" => &mut settings.consumer,
                other => bail!("-X {assignment}: unknown section {other:?}"),
            };
            map.insert(key.into(), value.into());
        }
        check_loopback_servers(settings.bootstrap_servers())?;
        Ok(settings)
    }

    pub fn topics(&self) -> anyhow::Result<TopicSettings> {
        if !(1..=1000).contains(&self.partitions) {
            bail!("--partitions must be between 1 and 1000");
        }
        Ok(TopicSettings {
            prefix: self.prefix.clone(),
            partitions: self.partitions,
            ..TopicSettings::default()
        })
    }
}

/// Which request to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Invoice,
    Score,
}

impl From<Kind> for RequestKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Invoice => RequestKind::Invoice,
            Kind::Score => RequestKind::Score,
        }
    }
}

/// Refuses anything but loopback hosts in a comma-separated `host:port` list.
pub fn check_loopback_servers(servers: &str) -> anyhow::Result<()> {
    for server in servers.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let server = server
            .strip_prefix("PLAINTEXT://")
            .or_else(|| server.strip_prefix("plaintext://"))
            .unwrap_or(server);
        let host = match server.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or_default(),
            None => server.rsplit_once(':').map_or(server, |(host, _)| host),
        };
        if !is_loopback_host(host) {
            bail!("{server}: only loopback addresses (127.0.0.0/8, localhost, ::1) may be loaded");
        }
    }
    Ok(())
}

pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// `60s`, `500ms`, `2m`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(index) => text.split_at(index),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (try 60s, 500ms, 2m)"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "s" | "" => value,
        "m" | "min" => value * 60.0,
        other => return Err(format!("unknown unit {other:?} (ms, s, m)")),
    };
    if !(0.0..=86_400.0).contains(&seconds) {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    service::telemetry::init_tool_logging();
    let threads = std::env::var("BENCH_THREADS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(2usize);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Load(args) => load::run(args).await,
            Command::Backlog(args) => backlog::backlog(args).await,
            Command::Drain(args) => backlog::drain(args).await,
            Command::Startup(args) => backlog::startup(args).await,
            Command::Flood(args) => flood::flood(args).await,
            Command::E2e(args) => e2e::e2e(args).await,
            Command::IoBound(args) => iobound::io_bound(args).await,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_servers_pass() {
        for good in [
            "127.0.0.1:9092",
            "localhost:1,127.0.0.2:2",
            "[::1]:9092",
            "PLAINTEXT://127.0.0.1:9",
        ] {
            assert!(check_loopback_servers(good).is_ok(), "{good}");
        }
        for bad in [
            "10.0.0.1:9092",
            "example.com:9092",
            "127.0.0.1:1,192.168.1.1:2",
        ] {
            assert!(check_loopback_servers(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
    }
}
