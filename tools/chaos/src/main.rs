//! `chaos`: the fault suite behind `scripts/chaos`.
//!
//! For each scenario it starts a dashboard and worker replicas from the release binaries (fresh
//! topic prefix, replication factor 3, `min.insync.replicas` 2), drives at least `--requests`
//! requests through the dashboard's JSON API while a fault plan runs (SIGKILLed replicas, a
//! killed partition leader, a stopped cluster, a restarted dashboard, rebalances, SIGTERM of every
//! process), heals everything, waits for the requests to settle and then checks every accepted
//! request against the dashboard and against the log itself. It prints one row per scenario:
//! sent / completed / failed with reasons / timed out / lost / duplicate replies absorbed.
//!
//! *Lost* is a request the dashboard accepted (202) that, once settled, has no reply in the reply
//! topic (the work was dropped, whatever the dashboard shows), or whose reply is there but the
//! dashboard does not know it, still shows it pending, or shows it timed out.
//!
//! Each scenario also records its fault windows (from the moment something broke to the moment
//! it served again) and prints its *recovery*: from the end of the last fault to the first reply
//! of the last request accepted before it. A scenario fails if it lost a request, if its recovery
//! took over [`RECOVERY_LIMIT`](verdict::RECOVERY_LIMIT), or if a request was answered late
//! although every fault was shorter than the request timeout minus the same limit (scenario 1,
//! which faults all the time, is held to lost = 0 only).
//!
//! The cluster is the one `scripts/chaos` started (`KAFKA_BOOTSTRAP_SERVERS`, and the
//! `KAFKA_STATE_DIR` `scripts/kafka` uses for node faults). Only loopback addresses are accepted,
//! every loop is bounded by a count and a deadline, and the driver stops by itself.

mod cluster;
mod faults;
mod fleet;
mod load;
mod suite;
mod verdict;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use cluster::Cluster;
use fleet::Role;
use std::path::PathBuf;
use std::time::Duration;
use suite::Suite;
use verdict::table;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Fault suite: drives requests through the dashboard while processes and brokers fail"
)]
struct Cli {
    /// Bootstrap servers of the cluster (loopback only).
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
    bootstrap: String,
    /// Nodes in the cluster (node ids 1..N, as scripts/kafka numbers them).
    #[arg(long, default_value_t = 3)]
    brokers: i32,
    /// scripts/kafka, for node faults (it finds the cluster through KAFKA_STATE_DIR).
    #[arg(long, default_value = "scripts/kafka")]
    kafka_script: PathBuf,
    /// Where the dashboard, invoice-generator and score-calculator binaries are.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Config files and service logs, one folder per scenario.
    #[arg(long)]
    work_dir: PathBuf,
    /// Requests per scenario (at least; the load goes on while a fault plan is unfinished).
    #[arg(long, default_value_t = 10_000)]
    requests: usize,
    /// Requests started per second.
    #[arg(long, default_value_t = 250.0)]
    rate: f64,
    /// Requests started per second while the cluster is down (scenario 3).
    #[arg(long, default_value_t = 10.0)]
    outage_rate: f64,
    /// Requests in flight at most.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Which scenarios, in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "worker-kill,leader-kill,cluster-outage,dashboard-restart,rebalance,sigterm,broker-freeze"
    )]
    scenario: Vec<Scenario>,
    /// How long the broker leading a request partition stays frozen in scenario 7.
    #[arg(long, default_value_t = 20)]
    freeze_secs: u64,
    /// How long the whole cluster stays down in scenario 3.
    #[arg(long, default_value_t = 30)]
    outage_secs: u64,
    /// Seconds between SIGKILLs of a worker replica in scenario 1.
    #[arg(long, default_value_t = 3)]
    kill_every_secs: u64,
    /// Seconds a killed leader stays down in scenario 2.
    #[arg(long, default_value_t = 8)]
    leader_down_secs: u64,
    /// Seconds a restarted dashboard stays down in scenario 4.
    #[arg(long, default_value_t = 5)]
    dashboard_down_secs: u64,
    /// The dashboard's request timeout (DASHBOARD_REQUEST_TIMEOUT_MS).
    #[arg(long, default_value_t = 30_000)]
    request_timeout_ms: u64,
    /// After the load and the faults: longest wait for every request to complete.
    #[arg(long, default_value_t = 150)]
    settle_secs: u64,
    /// Partitions of the scenario topics.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Upper bound on the load phase of one scenario.
    #[arg(long, default_value_t = 900)]
    max_load_secs: u64,
    /// RUST_LOG of the services.
    #[arg(long, default_value = "warn")]
    service_log: String,
    /// Extra environment for every service, `KEY=VALUE` (say `LIBRDKAFKA_DEBUG=fetch,eos` with
    /// `--service-log warn,librdkafka=debug` to watch librdkafka at work). Repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    service_env: Vec<String>,
    /// Also write the figure table (Markdown) here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// How the workers deliver their replies (`[worker] delivery`). With exactly-once, a
    /// duplicate reply in the log fails the scenario.
    #[arg(long, value_enum, default_value_t = Delivery::AtLeastOnce)]
    delivery: Delivery,
    /// Upper bound on the whole run; then the services are killed and the driver stops.
    #[arg(long, default_value_t = 7200)]
    time_limit_secs: u64,
}

/// The workers' delivery guarantee.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Delivery {
    AtLeastOnce,
    ExactlyOnce,
}

impl Delivery {
    /// The `[worker] delivery` value.
    fn config_value(self) -> &'static str {
        match self {
            Delivery::AtLeastOnce => "at_least_once",
            Delivery::ExactlyOnce => "exactly_once",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    WorkerKill,
    LeaderKill,
    ClusterOutage,
    DashboardRestart,
    Rebalance,
    Sigterm,
    BrokerFreeze,
}

impl Scenario {
    fn number(self) -> usize {
        self as usize + 1
    }

    fn slug(self) -> &'static str {
        match self {
            Scenario::WorkerKill => "worker-kill",
            Scenario::LeaderKill => "leader-kill",
            Scenario::ClusterOutage => "cluster-outage",
            Scenario::DashboardRestart => "dashboard-restart",
            Scenario::Rebalance => "rebalance",
            Scenario::Sigterm => "sigterm",
            Scenario::BrokerFreeze => "broker-freeze",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Scenario::WorkerKill => "SIGKILL a worker replica every few seconds",
            Scenario::LeaderKill => "SIGKILL the leader broker of a request partition",
            Scenario::ClusterOutage => "whole cluster stopped, then back",
            Scenario::DashboardRestart => "dashboard restarted mid-stream",
            Scenario::Rebalance => "worker replicas added and removed",
            Scenario::Sigterm => "SIGTERM every process in turn",
            Scenario::BrokerFreeze => "leader broker frozen (SIGSTOP), then resumed",
        }
    }

    /// Whether requests may be answered late although each fault is short: scenario 1 kills a
    /// replica every few seconds, so some partition is always between owners.
    fn faults_all_the_time(self) -> bool {
        self == Scenario::WorkerKill
    }

    /// Whether the cluster keeps serving throughout (one broker of three is down or frozen), so
    /// the dashboard must never find Kafka unreachable.
    fn keeps_a_quorum(self) -> bool {
        matches!(self, Scenario::LeaderKill | Scenario::BrokerFreeze)
    }

    /// Worker replicas per service at the start.
    fn replicas(self) -> usize {
        match self {
            Scenario::WorkerKill => 3,
            Scenario::Rebalance => 1,
            _ => 2,
        }
    }
}

/// Refuses anything but loopback hosts in a comma-separated `host:port` list.
fn check_loopback(servers: &str) -> Result<()> {
    for server in servers.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let host = server.rsplit_once(':').map_or(server, |(host, _)| host);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|address| address.is_loopback());
        if !loopback {
            bail!("{server}: the chaos driver only talks to loopback addresses");
        }
    }
    Ok(())
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// Resolves on SIGINT or SIGTERM.
async fn interrupted() -> String {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM".into(),
            _ = int.recv() => "SIGINT".into(),
        },
        _ => std::future::pending().await,
    }
}

fn main() {
    // The error alone: a backtrace says nothing about which requests were lost.
    if let Err(error) = run_suite() {
        eprintln!("chaos: {error:#}");
        std::process::exit(1);
    }
}

fn run_suite() -> Result<()> {
    let cli = Cli::parse();
    service::telemetry::init_tool_logging();
    check_loopback(&cli.bootstrap)?;
    if cli.requests == 0 || cli.rate.is_nan() || cli.rate <= 0.0 {
        bail!("--requests and --rate must be positive");
    }
    for role in [Role::Dashboard, Role::Invoice, Role::Score] {
        let binary = cli.bin_dir.join(role.binary());
        if !binary.is_file() {
            bail!(
                "{} not found: build with cargo build --release",
                binary.display()
            );
        }
    }
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let suite = Suite {
        cluster: Cluster {
            script: cli.kafka_script.clone(),
            bootstrap: cli.bootstrap.clone(),
            brokers: cli.brokers,
        },
        run_id,
        cli,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut rows = Vec::new();
    let stopped_early = runtime.block_on(async {
        let run = async {
            for scenario in suite.cli.scenario.clone() {
                let row = suite.run(scenario).await;
                eprintln!("{}", table(std::slice::from_ref(&row)));
                rows.push(row);
            }
        };
        // Dropping the run on a signal or at the time limit drops every scenario's processes,
        // which kills them (kill_on_drop).
        tokio::select! {
            () = run => None,
            () = tokio::time::sleep(Duration::from_secs(suite.cli.time_limit_secs)) => {
                Some(format!("over the time limit of {} s", suite.cli.time_limit_secs))
            }
            reason = interrupted() => Some(reason),
        }
    });
    let report = table(&rows);
    println!("{report}");
    if let Some(path) = &suite.cli.report {
        std::fs::write(path, &report)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(reason) = stopped_early {
        bail!("stopped early: {reason}");
    }
    let failed: Vec<String> = rows
        .iter()
        .filter(|row| row.error.is_some() || row.lost > 0 || !row.violations.is_empty())
        .filter_map(|row| row.scenario.map(|scenario| scenario.slug().to_owned()))
        .collect();
    if !failed.is_empty() {
        bail!(
            "scenarios with lost requests, broken promises or errors: {}",
            failed.join(", ")
        );
    }
    Ok(())
}
