//! The fault plans: what each scenario breaks, when, and how it heals, with what the plan saw.

use crate::Scenario;
use crate::fleet::{Exit, Fleet, Role};
use crate::load::{Api, Attempt, Outcome, Pace, Pacer, Progress};
use crate::suite::Suite;
use anyhow::{Context, Result};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Mutex;

/// What a fault plan saw and did.
#[derive(Debug, Default)]
pub(crate) struct PlanReport {
    pub(crate) notes: Vec<String>,
    /// When the dashboard was down on purpose (scenario 4).
    pub(crate) dashboard_down: Vec<(SystemTime, SystemTime)>,
    /// Scenario 3: when the stop began, when `/readyz` first answered 503, when the dashboard
    /// was ready again.
    pub(crate) outage: Option<(SystemTime, Option<SystemTime>, SystemTime)>,
    pub(crate) exits: Vec<Exit>,
    /// From when something broke to when it served again, for every fault of the plan.
    pub(crate) faults: Vec<(SystemTime, SystemTime)>,
}

impl Suite {
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn plan(
        &self,
        scenario: Scenario,
        fleet: &Mutex<Fleet>,
        api: &Api,
        pacer: &Pacer,
        progress: &Progress,
        topics: &[String],
        deadline: Instant,
    ) -> Result<PlanReport> {
        let cli = &self.cli;
        let count = cli.requests;
        let started = Instant::now();
        let until = |fraction: f64| async move {
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let target = (count as f64 * fraction) as usize;
            while progress.started() < target && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let mut report = PlanReport::default();
        match scenario {
            Scenario::WorkerKill => {
                let mut kills = 0;
                let mut turn = 0usize;
                while progress.started() < count && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_secs(cli.kill_every_secs)).await;
                    let role = if turn % 2 == 0 {
                        Role::Invoice
                    } else {
                        Role::Score
                    };
                    turn += 1;
                    let mut guard = fleet.lock().await;
                    let names = guard.names(role);
                    let victim = names[(turn / 2) % names.len()].clone();
                    let broke = SystemTime::now();
                    guard.kill(&victim).await?;
                    drop(guard);
                    kills += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    fleet.lock().await.spawn(role)?;
                    report.faults.push((broke, SystemTime::now()));
                }
                report.notes.push(format!(
                    "{kills} worker replicas SIGKILLed, one every {} s, each replaced 1 s later; the others kept running",
                    cli.kill_every_secs
                ));
            }
            Scenario::LeaderKill => {
                until(0.1).await;
                let mut turn = 0usize;
                loop {
                    let topic = &topics[turn % 2];
                    turn += 1;
                    let leader = self.cluster.leader(topic, 0).await?;
                    let at = started.elapsed().as_secs_f64();
                    let broke = SystemTime::now();
                    self.cluster.kill_node(leader).await?;
                    tokio::time::sleep(Duration::from_secs(cli.leader_down_secs)).await;
                    self.cluster.start_node(leader).await?;
                    report.faults.push((broke, SystemTime::now()));
                    let back = started.elapsed().as_secs_f64();
                    let in_sync = self
                        .cluster
                        .wait_in_sync(topics, Duration::from_secs(120))
                        .await?;
                    report.notes.push(format!(
                        "node {leader}, leader of {topic}[0], SIGKILLed at {at:.0} s, serving again at {back:.0} s, all replicas in sync at {:.0} s{}",
                        started.elapsed().as_secs_f64(),
                        if in_sync { "" } else { " (NOT in sync after 120 s)" }
                    ));
                    if progress.started() >= count || Instant::now() >= deadline {
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
            Scenario::ClusterOutage => {
                until(0.3).await;
                pacer.set(Pace::Slow);
                let stop_began = Instant::now();
                let outage_from = SystemTime::now();
                let watch = async {
                    // /readyz and the banner, polled from the moment the stop begins.
                    let watch_deadline = Instant::now() + Duration::from_secs(60);
                    while Instant::now() < watch_deadline {
                        if api.ready().await == Some(false) {
                            let after = stop_began.elapsed();
                            let at = SystemTime::now();
                            let banner = api
                                .page("/")
                                .await
                                .map(|(_, page)| banner_text(&page))
                                .unwrap_or_default();
                            return Some((after, at, banner));
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    None
                };
                let (seen, stopped) = tokio::join!(watch, async {
                    self.cluster.stop_all().await?;
                    Ok::<_, anyhow::Error>(stop_began.elapsed())
                });
                let stopped = stopped?;
                tokio::time::sleep(Duration::from_secs(cli.outage_secs)).await;
                let restart = Instant::now();
                self.cluster.start_all().await?;
                let brokers_back = restart.elapsed();
                report.faults.push((outage_from, SystemTime::now()));
                let ready_after = api.wait_ready(Duration::from_secs(180)).await?;
                let outage_to = SystemTime::now();
                pacer.set(Pace::Normal);
                report.outage = Some((outage_from, seen.as_ref().map(|(_, at, _)| *at), outage_to));
                report.notes.push(match seen {
                    Some((after, _, banner)) => format!(
                        "cluster stopped (SIGTERM to every broker) at {:.0} s: /readyz answered 503 {:.1} s after the stop began (the last broker exited at {:.1} s); banner: \"{banner}\"",
                        started.elapsed().as_secs_f64() - stop_began.elapsed().as_secs_f64(),
                        after.as_secs_f64(),
                        stopped.as_secs_f64()
                    ),
                    None => "cluster stopped, but /readyz never answered 503 (NOT detected)".into(),
                });
                report.notes.push(format!(
                    "down {} s; brokers serving again {:.0} s after the restart began, dashboard ready {:.1} s later",
                    cli.outage_secs,
                    brokers_back.as_secs_f64(),
                    ready_after.as_secs_f64()
                ));
                // As much load again after the outage as before it.
                let resumed_at = progress.started();
                while progress.started() < resumed_at + count * 3 / 10 && Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            Scenario::DashboardRestart => {
                for (fraction, kill) in [(1.0 / 3.0, true), (2.0 / 3.0, false)] {
                    until(fraction).await;
                    pacer.set(Pace::Hold);
                    let down_from = SystemTime::now();
                    let sent = progress.started();
                    let mut fleet_guard = fleet.lock().await;
                    let dashboard = fleet_guard
                        .names(Role::Dashboard)
                        .pop()
                        .context("no dashboard running")?;
                    if kill {
                        fleet_guard.kill(&dashboard).await?;
                    } else {
                        let exit = fleet_guard.terminate(&dashboard).await?;
                        report.exits.push(exit);
                    }
                    drop(fleet_guard);
                    tokio::time::sleep(Duration::from_secs(cli.dashboard_down_secs)).await;
                    let restarted = Instant::now();
                    fleet.lock().await.spawn(Role::Dashboard)?;
                    api.wait_ready(Duration::from_secs(180)).await?;
                    let down_to = SystemTime::now();
                    pacer.set(Pace::Normal);
                    report.dashboard_down.push((down_from, down_to));
                    report.faults.push((down_from, down_to));
                    report.notes.push(format!(
                        "dashboard {} after {sent} requests, down {} s, ready {:.1} s after its restart (history rebuilt from the log)",
                        if kill { "SIGKILLed" } else { "SIGTERMed" },
                        cli.dashboard_down_secs,
                        restarted.elapsed().as_secs_f64()
                    ));
                }
                until(1.0).await;
            }
            Scenario::Rebalance => {
                let (mut added, mut removed, mut most) = (0, 0, 0);
                let mut growing = true;
                let mut turn = 0usize;
                // At least one whole cycle: up to four replicas of each worker and back to one.
                let mut cycled = false;
                while (progress.started() < count || !cycled) && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    let role = if turn % 2 == 0 {
                        Role::Invoice
                    } else {
                        Role::Score
                    };
                    turn += 1;
                    let mut guard = fleet.lock().await;
                    if growing {
                        guard.spawn(role)?;
                        added += 1;
                        growing = guard.count(Role::Invoice).min(guard.count(Role::Score)) < 4;
                    } else {
                        if guard.count(role) > 1 {
                            let oldest = guard.names(role).remove(0);
                            let broke = SystemTime::now();
                            report.exits.push(guard.terminate(&oldest).await?);
                            report.faults.push((broke, SystemTime::now()));
                            removed += 1;
                        }
                        growing = guard.count(Role::Invoice).max(guard.count(Role::Score)) <= 1;
                        cycled |= growing;
                    }
                    most = most.max(guard.count(Role::Invoice).max(guard.count(Role::Score)));
                }
                report.notes.push(format!(
                    "{added} replicas added and {removed} removed (SIGTERM), one every 3 s, between 1 and {most} per worker"
                ));
            }
            Scenario::Sigterm => {
                let pause = Duration::from_secs(3);
                tokio::time::sleep(pause).await;
                let mut workers = 0;
                for role in [Role::Invoice, Role::Score] {
                    let names = fleet.lock().await.names(role);
                    for name in names {
                        let broke = SystemTime::now();
                        let exit = fleet.lock().await.terminate(&name).await?;
                        report.exits.push(exit);
                        fleet.lock().await.spawn(role)?;
                        report.faults.push((broke, SystemTime::now()));
                        workers += 1;
                        tokio::time::sleep(pause).await;
                    }
                }
                pacer.set(Pace::Hold);
                let dashboard = fleet
                    .lock()
                    .await
                    .names(Role::Dashboard)
                    .pop()
                    .context("no dashboard running")?;
                let broke = SystemTime::now();
                let exit = fleet.lock().await.terminate(&dashboard).await?;
                report.exits.push(exit);
                fleet.lock().await.spawn(Role::Dashboard)?;
                api.wait_ready(Duration::from_secs(180)).await?;
                report.faults.push((broke, SystemTime::now()));
                pacer.set(Pace::Normal);
                tokio::time::sleep(pause).await;
                let mut broker_stops = Vec::new();
                for node in 1..=self.cluster.brokers {
                    let stop = Instant::now();
                    let broke = SystemTime::now();
                    self.cluster.stop_node(node).await?;
                    broker_stops.push(stop.elapsed().as_secs_f64());
                    tokio::time::sleep(pause).await;
                    self.cluster.start_node(node).await?;
                    report.faults.push((broke, SystemTime::now()));
                    self.cluster
                        .wait_in_sync(topics, Duration::from_secs(120))
                        .await?;
                    tokio::time::sleep(pause).await;
                }
                let stops: Vec<String> = broker_stops
                    .iter()
                    .map(|took| format!("{took:.1}"))
                    .collect();
                report.notes.push(format!(
                    "SIGTERMed in turn under load, each restarted: {workers} worker replicas, the dashboard, brokers 1-{} (controlled shutdowns took {} s)",
                    self.cluster.brokers,
                    stops.join(" / ")
                ));
                until(1.0).await;
            }
            Scenario::BrokerFreeze => {
                until(0.3).await;
                let topic = &topics[0];
                let leader = self.cluster.leader(topic, 0).await?;
                let at = started.elapsed().as_secs_f64();
                let broke = SystemTime::now();
                self.cluster.pause_node(leader).await?;
                tokio::time::sleep(Duration::from_secs(cli.freeze_secs)).await;
                self.cluster.resume_node(leader).await?;
                report.faults.push((broke, SystemTime::now()));
                let in_sync = self
                    .cluster
                    .wait_in_sync(topics, Duration::from_secs(120))
                    .await?;
                report.notes.push(format!(
                    "node {leader}, leader of {topic}[0], frozen (SIGSTOP) at {at:.0} s for {} s, then resumed (SIGCONT); all replicas in sync at {:.0} s{}",
                    cli.freeze_secs,
                    started.elapsed().as_secs_f64(),
                    if in_sync { "" } else { " (NOT in sync after 120 s)" }
                ));
                until(1.0).await;
            }
        }
        Ok(report)
    }
}

/// The banner's text out of the home page: the element with class `banner`, tags stripped.
pub(crate) fn banner_text(page: &str) -> String {
    let Some(start) = page.find("class=\"banner") else {
        return "(no banner element found)".into();
    };
    let rest = &page[start..];
    let rest = &rest[rest.find('>').map_or(0, |index| index + 1)..];
    let end = rest.find("</").unwrap_or(rest.len()).min(300);
    let mut text = String::new();
    let mut in_tag = false;
    for character in rest[..end].chars() {
        match character {
            '<' => in_tag = true,
            '>' => in_tag = false,
            _ if !in_tag => text.push(character),
            _ => {}
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What the API answered to requests sent during the outage: before the dashboard noticed, and
/// after.
pub(crate) fn outage_note(
    attempts: &[Attempt],
    began: SystemTime,
    detected: Option<SystemTime>,
    ready: SystemTime,
) -> String {
    let tally = |from: SystemTime, to: SystemTime| {
        let during: Vec<&Attempt> = attempts
            .iter()
            .filter(|attempt| attempt.sent_at >= from && attempt.sent_at < to)
            .collect();
        let refused = during
            .iter()
            .filter(|attempt| matches!(attempt.outcome, Outcome::Refused { status: 503, .. }))
            .count();
        let accepted = during
            .iter()
            .filter(|attempt| matches!(attempt.outcome, Outcome::Accepted(_)))
            .count();
        let slowest = during
            .iter()
            .map(|attempt| attempt.took)
            .max()
            .unwrap_or_default();
        (during.len(), refused, accepted, slowest.as_secs_f64())
    };
    let detected = detected.unwrap_or(ready);
    let (before, before_refused, before_accepted, _) = tally(began, detected);
    let (after, refused, accepted, slowest) = tally(detected, ready);
    format!(
        "requests sent after /readyz turned 503 and before the cluster was back: {refused} of {after} answered 503 (slowest answer {slowest:.2} s), {accepted} accepted; sent while the brokers were shutting down, before that: {before} ({before_accepted} accepted, {before_refused} answered 503)"
    )
}
