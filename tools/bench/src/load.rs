//! `bench load`: correlated round trips through the library or the dashboard's JSON API.

use crate::procs::{self, Watcher};
use crate::target::{CallOutcome, Payload, Target, connect, wait_until_ready};
use crate::{KafkaArgs, Kind, parse_duration};
use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Largest latency the histogram holds (longer ones are clamped): ten minutes, in microseconds.
const MAX_LATENCY_US: u64 = 600_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Via {
    /// `request_reply::requester::Client::call`: produce, await the correlated reply.
    Library,
    /// `POST /api/invoices|scores` with `Prefer: wait` on the dashboard: one call when the reply
    /// comes in time, else `GET /api/requests/{id}?wait_ms=…` for the rest.
    Http,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    #[arg(long, value_enum, default_value = "library")]
    pub(crate) via: Via,
    #[command(flatten)]
    pub(crate) kafka: KafkaArgs,
    /// The dashboard's base URL (for --via http); loopback only.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    pub(crate) url: String,
    /// Closed loop: this many calls in flight, each starting the next when it ends.
    #[arg(long, conflicts_with = "rate")]
    pub(crate) concurrency: Option<usize>,
    /// Open loop: start this many calls per second, whatever the replies do.
    #[arg(long)]
    pub(crate) rate: Option<f64>,
    /// Open loop: calls in flight above this are not started but counted as dropped.
    #[arg(long, default_value_t = 50_000)]
    pub(crate) max_in_flight: usize,
    /// How long to measure (after the warm-up).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) duration: Duration,
    /// Load applied before measuring starts; its calls are not counted.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub(crate) warmup: Duration,
    #[arg(long, value_enum, default_value = "invoice")]
    pub(crate) kind: Kind,
    /// Approximate size of each request's JSON payload (invoices grow by lines, scores by the
    /// customer name, up to the contract's limits).
    #[arg(long, default_value_t = 0)]
    pub(crate) payload_bytes: usize,
    /// A call with no reply after this long counts as timed out.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
    /// How long the first call (made before the run, to see that a worker answers) may take.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub(crate) ready_timeout: Duration,
    /// Processes whose peak RSS (VmHWM) and CPU to report: `dashboard=1234,worker=5678`.
    #[arg(long, value_name = "NAME=PID,…")]
    pub(crate) pids: Vec<String>,
    /// A label carried into the report (scripts use it to name the figure).
    #[arg(long, default_value = "")]
    pub(crate) label: String,
    /// Print one JSON line instead of the text report.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug)]
struct Stats {
    latency_us: Histogram<u64>,
    ok: u64,
    failed: u64,
    timeouts: u64,
    errors: u64,
    first_problem: Option<String>,
}

impl Stats {
    fn new() -> Self {
        Stats {
            latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("valid histogram bounds"),
            ok: 0,
            failed: 0,
            timeouts: 0,
            errors: 0,
            first_problem: None,
        }
    }

    fn record(&mut self, outcome: CallOutcome, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        match outcome {
            CallOutcome::Ok => {
                self.ok += 1;
                // Clamped, so recording cannot fail.
                let _ = self.latency_us.record(micros.clamp(1, MAX_LATENCY_US));
            }
            CallOutcome::Failed(why) => {
                self.failed += 1;
                self.first_problem.get_or_insert(format!("failed: {why}"));
            }
            CallOutcome::Timeout => self.timeouts += 1,
            CallOutcome::Error(why) => {
                self.errors += 1;
                self.first_problem.get_or_insert(format!("error: {why}"));
            }
        }
    }

    fn merge(&mut self, other: Stats) {
        let _ = self.latency_us.add(&other.latency_us);
        self.ok += other.ok;
        self.failed += other.failed;
        self.timeouts += other.timeouts;
        self.errors += other.errors;
        if self.first_problem.is_none() {
            self.first_problem = other.first_problem;
        }
    }
}

/// Successful completions per second of the window, by completion time.
struct Timeline {
    from: Instant,
    end: Instant,
    seconds: Vec<AtomicU64>,
}

impl Timeline {
    fn new(from: Instant, end: Instant) -> Self {
        let count = (end - from).as_secs() as usize + 1;
        Timeline {
            from,
            end,
            seconds: (0..count).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn completed(&self, at: Instant) {
        if at >= self.from && at < self.end {
            let index = (at - self.from).as_secs() as usize;
            if let Some(slot) = self.seconds.get(index) {
                slot.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn total(&self) -> u64 {
        self.seconds
            .iter()
            .map(|slot| slot.load(Ordering::Relaxed))
            .sum()
    }

    /// The slowest whole second.
    fn min_per_second(&self) -> u64 {
        let whole = (self.end - self.from).as_secs() as usize;
        self.seconds
            .iter()
            .take(whole)
            .map(|slot| slot.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }
}

/// The report, printed as text or as one JSON line.
#[derive(Debug, Serialize)]
pub struct Report {
    label: String,
    via: String,
    kind: String,
    mode: String,
    concurrency: Option<usize>,
    rate: Option<f64>,
    payload_bytes: usize,
    duration_s: f64,
    /// Successful round trips completed in the window, per second.
    throughput: f64,
    /// The slowest whole second of the window.
    throughput_min_1s: u64,
    ok: u64,
    failed: u64,
    timeouts: u64,
    errors: u64,
    dropped: u64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    mean_ms: f64,
    machine_busy_pct: f64,
    bench_cpu_pct: f64,
    processes: BTreeMap<String, procs::ProcessReport>,
    first_problem: Option<String>,
}

impl Report {
    fn print_text(&self) {
        let mode = match (self.concurrency, self.rate) {
            (Some(concurrency), _) => format!("closed loop, {concurrency} in flight"),
            (_, Some(rate)) => format!("open loop, {rate}/s offered"),
            _ => self.mode.clone(),
        };
        println!(
            "{} via {}, {} requests of ~{} bytes, {mode}, {:.1} s measured",
            if self.label.is_empty() {
                "load"
            } else {
                &self.label
            },
            self.via,
            self.kind,
            self.payload_bytes,
            self.duration_s
        );
        println!(
            "  throughput  {:>10.0} round trips/s (slowest second {})",
            self.throughput, self.throughput_min_1s
        );
        println!(
            "  latency ms  p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  mean {:.2}",
            self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms, self.mean_ms
        );
        println!(
            "  calls       ok {}  failed {}  timeouts {}  errors {}  dropped {}",
            self.ok, self.failed, self.timeouts, self.errors, self.dropped
        );
        println!(
            "  cpu         machine {:.0} % busy, bench {:.0} % of a core",
            self.machine_busy_pct, self.bench_cpu_pct
        );
        for (name, process) in &self.processes {
            println!(
                "  {name:<11} pid {}: peak RSS {:.1} MiB, RSS {:.1} MiB, CPU {:.0} % of a core{}",
                process.pid,
                process.peak_rss_mib,
                process.rss_mib,
                process.cpu_pct,
                if process.alive { "" } else { " (exited)" }
            );
        }
        if let Some(problem) = &self.first_problem {
            println!("  first problem: {problem}");
        }
    }
}

pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    if args.concurrency.is_none() && args.rate.is_none() {
        bail!("give --concurrency N (closed loop) or --rate R (open loop)");
    }
    if args.concurrency == Some(0)
        || args
            .rate
            .is_some_and(|rate| !(rate > 0.0 && rate.is_finite()))
    {
        bail!("--concurrency and --rate must be positive");
    }
    let watched = procs::parse_pids(&args.pids)?;
    let payload = Payload::build(args.kind, args.payload_bytes);
    let payload_bytes = payload.json().len();
    let target = Arc::new(connect(&args, payload).await?);

    // One call first: the worker must be there before anything is measured.
    let probe_started = Instant::now();
    if let Target::Http { http, .. } = target.as_ref() {
        wait_until_ready(http, &args.url, args.ready_timeout).await?;
    }
    match tokio::time::timeout(args.ready_timeout, target.call()).await {
        Ok(CallOutcome::Ok) => {}
        Ok(CallOutcome::Failed(why) | CallOutcome::Error(why)) => {
            bail!("the first call failed: {why}")
        }
        Ok(CallOutcome::Timeout) | Err(_) => {
            bail!(
                "no reply to the first call within {:?}: is a worker running?",
                args.ready_timeout
            )
        }
    }
    tracing::info!(elapsed = ?probe_started.elapsed(), "first call answered");

    let self_cpu_start = procs::cpu_ticks("self");
    let mut watcher = Watcher::start(watched);
    let start = Instant::now();
    let measure_from = start + args.warmup;
    let end = measure_from + args.duration;
    let timeline = Arc::new(Timeline::new(measure_from, end));

    let (stats, dropped) = match (args.concurrency, args.rate) {
        (Some(concurrency), _) => {
            let tasks: Vec<_> = (0..concurrency)
                .map(|_| {
                    let target = Arc::clone(&target);
                    let timeline = Arc::clone(&timeline);
                    tokio::spawn(closed_loop(target, timeline, measure_from, end))
                })
                .collect();
            tokio::time::sleep_until(measure_from).await;
            watcher.begin_window();
            let mut stats = Stats::new();
            for task in tasks {
                stats.merge(task.await.context("a load task panicked")?);
            }
            (stats, 0)
        }
        (None, Some(rate)) => {
            open_loop(
                &target,
                &timeline,
                &mut watcher,
                rate,
                args.max_in_flight,
                start,
                measure_from,
                end,
            )
            .await
        }
        (None, None) => unreachable!("checked above"),
    };
    let finished = watcher.finish(self_cpu_start);

    let window = (end - measure_from).as_secs_f64();
    let histogram = &stats.latency_us;
    let ms = |micros: u64| micros as f64 / 1000.0;
    let quantile = |q: f64| {
        if histogram.is_empty() {
            0.0
        } else {
            ms(histogram.value_at_quantile(q))
        }
    };
    let report = Report {
        label: args.label.clone(),
        via: format!("{:?}", args.via).to_lowercase(),
        kind: format!("{:?}", args.kind).to_lowercase(),
        mode: if args.concurrency.is_some() {
            "closed"
        } else {
            "open"
        }
        .into(),
        concurrency: args.concurrency,
        rate: args.rate,
        payload_bytes,
        duration_s: window,
        throughput: timeline.total() as f64 / window,
        throughput_min_1s: timeline.min_per_second(),
        ok: stats.ok,
        failed: stats.failed,
        timeouts: stats.timeouts,
        errors: stats.errors,
        dropped,
        p50_ms: quantile(0.50),
        p90_ms: quantile(0.90),
        p99_ms: quantile(0.99),
        p999_ms: quantile(0.999),
        max_ms: if histogram.is_empty() {
            0.0
        } else {
            ms(histogram.max())
        },
        mean_ms: if histogram.is_empty() {
            0.0
        } else {
            histogram.mean() / 1000.0
        },
        machine_busy_pct: finished.machine_busy_pct,
        bench_cpu_pct: finished.self_cpu_pct,
        processes: finished.processes,
        first_problem: stats.first_problem.clone(),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        report.print_text();
    }
    Ok(())
}

async fn closed_loop(
    target: Arc<Target>,
    timeline: Arc<Timeline>,
    measure_from: Instant,
    end: Instant,
) -> Stats {
    let mut stats = Stats::new();
    loop {
        let started = Instant::now();
        if started >= end {
            break;
        }
        let outcome = target.call().await;
        let finished = Instant::now();
        if matches!(outcome, CallOutcome::Ok) {
            timeline.completed(finished);
        }
        if started >= measure_from {
            stats.record(outcome, finished - started);
        }
    }
    stats
}

#[allow(clippy::too_many_arguments)]
async fn open_loop(
    target: &Arc<Target>,
    timeline: &Arc<Timeline>,
    watcher: &mut Watcher,
    rate: f64,
    max_in_flight: usize,
    start: Instant,
    measure_from: Instant,
    end: Instant,
) -> (Stats, u64) {
    let stats = Arc::new(Mutex::new(Stats::new()));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let mut started: u64 = 0;
    let mut dropped: u64 = 0;
    let mut window_begun = false;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let now = Instant::now();
        if !window_begun && now >= measure_from {
            watcher.begin_window();
            window_begun = true;
        }
        if now >= end {
            break;
        }
        let due = ((now - start).as_secs_f64() * rate) as u64;
        while started < due {
            // The call's intended start: latency counts from here, so a stall shows up.
            let scheduled = start + Duration::from_secs_f64(started as f64 / rate);
            started += 1;
            if in_flight.load(Ordering::Relaxed) >= max_in_flight {
                if scheduled >= measure_from {
                    dropped += 1;
                }
                continue;
            }
            in_flight.fetch_add(1, Ordering::Relaxed);
            let target = Arc::clone(target);
            let timeline = Arc::clone(timeline);
            let stats = Arc::clone(&stats);
            let in_flight = Arc::clone(&in_flight);
            tasks.spawn(async move {
                let outcome = target.call().await;
                let finished = Instant::now();
                in_flight.fetch_sub(1, Ordering::Relaxed);
                if matches!(outcome, CallOutcome::Ok) {
                    timeline.completed(finished);
                }
                if scheduled >= measure_from {
                    stats
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .record(outcome, finished - scheduled);
                }
            });
        }
        // Reap finished tasks so the set does not grow for the whole run.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let stats = Arc::try_unwrap(stats)
        .map(|mutex| mutex.into_inner().unwrap_or_else(|p| p.into_inner()))
        .unwrap_or_else(|_| Stats::new());
    (stats, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_grow_to_the_asked_size_within_the_contract() {
        for (kind, bytes) in [
            (Kind::Invoice, 0),
            (Kind::Invoice, 1000),
            (Kind::Score, 150),
        ] {
            let payload = Payload::build(kind, bytes);
            let size = payload.json().len();
            assert!(size >= bytes.min(240), "{kind:?} {bytes}: {size}");
            assert!(size < bytes + 300, "{kind:?} {bytes}: {size}");
        }
        let Payload::Invoice(huge) = Payload::build(Kind::Invoice, 1_000_000) else {
            panic!()
        };
        assert_eq!(huge.lines.len(), 100);
    }
}
