//! One scenario from start to verdict: a fresh topic prefix, a dashboard and worker replicas,
//! load through the API while the fault plan runs, then settling and checking every request.

use crate::cluster::Cluster;
use crate::faults::{PlanReport, outage_note};
use crate::fleet::{Fleet, FleetConfig, Role};
use crate::load::{self, Api, Attempt, Outcome, Pace, Pacer, Progress};
use crate::verdict::{Row, judge_recovery, verdict, write_verdicts};
use crate::{Cli, Delivery, Scenario, free_port};
use anyhow::Result;
use contract::{RequestKind, Topics};
use dashboard::api::RequestState;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Requests each scenario's dashboard remembers beyond three times `--requests`: more than any
/// scenario sends, since the load runs as long as its fault plan does and a slow machine
/// stretches the plan (a short run of scenario 6 once sent 12,802 requests, and a limit of
/// 11,200 made the dashboard forget the first 1,602, which the verdict then counted as lost).
const HISTORY_HEADROOM: usize = 100_000;

pub(crate) struct Suite {
    pub(crate) cli: Cli,
    pub(crate) cluster: Cluster,
    pub(crate) run_id: String,
}

impl Suite {
    pub(crate) async fn run(&self, scenario: Scenario) -> Row {
        let started = Instant::now();
        let mut row = match self.scenario(scenario).await {
            Ok(row) => row,
            Err(error) => Row {
                error: Some(format!("{error:#}")),
                ..Row::default()
            },
        };
        row.scenario = Some(scenario);
        row.seconds = started.elapsed().as_secs_f64();
        row
    }

    pub(crate) fn topics(prefix: &str) -> (Vec<String>, Vec<String>) {
        let topics = Topics::with_prefix(prefix);
        let requests = RequestKind::ALL
            .iter()
            .map(|kind| topics.request(*kind))
            .collect();
        let replies = RequestKind::ALL
            .iter()
            .map(|kind| topics.reply(*kind))
            .collect();
        (requests, replies)
    }

    pub(crate) async fn scenario(&self, scenario: Scenario) -> Result<Row> {
        let cli = &self.cli;
        let prefix = format!("chaos-{}-{}.", self.run_id, scenario.slug());
        let (request_topics, reply_topics) = Self::topics(&prefix);
        let fleet_config = FleetConfig {
            bin_dir: cli.bin_dir.clone(),
            dir: cli
                .work_dir
                .join(format!("{}-{}", scenario.number(), scenario.slug())),
            bootstrap: cli.bootstrap.clone(),
            prefix: prefix.clone(),
            partitions: cli.partitions,
            replication_factor: cli.brokers.min(3),
            min_insync_replicas: cli.brokers.min(2),
            request_timeout_ms: cli.request_timeout_ms,
            history_limit: cli.requests * 3 + HISTORY_HEADROOM,
            delivery: cli.delivery.config_value(),
            log_filter: cli.service_log.clone(),
            extra_env: cli
                .service_env
                .iter()
                .filter_map(|pair| pair.split_once('='))
                .map(|(key, value)| (key.to_owned(), value.to_owned()))
                .collect(),
        };
        let mut fleet = Fleet::new(fleet_config, free_port()?)?;
        eprintln!(
            "chaos: scenario {} ({}): topics {prefix}*, logs in {}",
            scenario.number(),
            scenario.title(),
            fleet.log_dir().display()
        );
        let api = Api::new(&fleet.dashboard_addr)?;
        fleet.spawn(Role::Dashboard)?;
        for _ in 0..scenario.replicas() {
            fleet.spawn(Role::Invoice)?;
            fleet.spawn(Role::Score)?;
        }
        api.wait_ready(Duration::from_secs(180)).await?;
        let groups: Vec<(String, usize)> = [Role::Invoice, Role::Score]
            .iter()
            .map(|role| (format!("{prefix}{}", role.binary()), scenario.replicas()))
            .collect();
        self.cluster
            .wait_groups_stable(&groups, Duration::from_secs(120))
            .await?;
        let all_topics: Vec<String> = request_topics
            .iter()
            .chain(&reply_topics)
            .cloned()
            .collect();
        self.cluster
            .wait_in_sync(&all_topics, Duration::from_secs(60))
            .await?;

        let fleet = Arc::new(Mutex::new(fleet));
        let pacer = Pacer::new(cli.rate, cli.outage_rate);
        let progress = Progress::default();
        let deadline = Instant::now() + Duration::from_secs(cli.max_load_secs);
        let load_started = Instant::now();
        let plan = async {
            let report = self
                .plan(
                    scenario,
                    &fleet,
                    &api,
                    &pacer,
                    &progress,
                    &all_topics,
                    deadline,
                )
                .await;
            progress.faults_done.store(true, Ordering::Relaxed);
            pacer.set(Pace::Normal);
            report
        };
        let (attempts, report) = tokio::join!(
            load::drive(
                &api,
                cli.requests,
                cli.concurrency,
                &pacer,
                &progress,
                deadline
            ),
            plan
        );
        let load_seconds = load_started.elapsed().as_secs_f64();
        let mut report = report?;
        eprintln!(
            "chaos: {} requests sent in {load_seconds:.0} s; healing and settling",
            attempts.len()
        );

        // Heal: every node up, a dashboard and at least one replica of each worker running.
        self.cluster.start_all().await?;
        {
            let mut fleet = fleet.lock().await;
            fleet.reap_unexpected();
            for role in [Role::Dashboard, Role::Invoice, Role::Score] {
                if fleet.count(role) == 0 {
                    fleet.spawn(role)?;
                }
            }
        }
        api.wait_ready(Duration::from_secs(180)).await?;

        let accepted: Vec<String> = attempts
            .iter()
            .filter_map(|attempt| match &attempt.outcome {
                Outcome::Accepted(id) => Some(id.clone()),
                _ => None,
            })
            .collect();
        let settle_deadline = Instant::now() + Duration::from_secs(cli.settle_secs);
        let states = load::settle(&api, &accepted, settle_deadline).await;
        let replies =
            load::read_log(&cli.bootstrap, reply_topics, Duration::from_secs(180)).await?;
        let requests =
            load::read_log(&cli.bootstrap, request_topics, Duration::from_secs(180)).await?;
        // Replies may still be on their way to the dashboard (a first one that came just after
        // the settle deadline, or redeliveries): give it until it has counted every reply the
        // log holds (or half a minute), then take the final states.
        let behind: Vec<String> = accepted
            .iter()
            .filter(|id| {
                let in_log = replies.get(id.as_str()).map_or(0, Vec::len);
                let seen = states
                    .get(id.as_str())
                    .and_then(Option::as_ref)
                    .map_or(0, load::replies_seen);
                in_log > seen
            })
            .cloned()
            .collect();
        let mut states = states;
        let caught_up = Instant::now() + Duration::from_secs(30);
        states.extend(load::catch_up(&api, &behind, &replies, caught_up).await);
        let duplicate_metric = api.duplicate_metric().await;
        let down_notes = self
            .while_down(&api, &report, &attempts, &states, &replies)
            .await;

        let mut fleet = fleet.lock().await;
        fleet.reap_unexpected();
        let unexpected = std::mem::take(&mut fleet.unexpected_exits);
        let final_exits = fleet.shutdown().await;
        let log_dir = fleet.log_dir();
        drop(fleet);

        let mut row = verdict(&attempts, &accepted, &states, &replies, &requests);
        if cli.delivery == Delivery::ExactlyOnce && row.log_duplicates > 0 {
            row.violations.push(format!(
                "{} duplicate replies in the log with exactly-once delivery",
                row.log_duplicates
            ));
        }
        judge_recovery(
            &mut row,
            scenario,
            &report.faults,
            &attempts,
            &replies,
            Duration::from_millis(cli.request_timeout_ms),
        );
        write_verdicts(
            &log_dir.join("requests.tsv"),
            &attempts,
            &states,
            &replies,
            &requests,
        );
        row.notes.append(&mut report.notes);
        row.notes.push(format!(
            "load: {} requests in {load_seconds:.0} s ({:.0}/s offered), {} replicas per worker at the start",
            attempts.len(),
            cli.rate,
            scenario.replicas()
        ));
        if let Some((began, detected, ready)) = report.outage {
            row.notes
                .push(outage_note(&attempts, began, detected, ready));
        }
        row.notes.extend(down_notes);
        report.exits.extend(final_exits);
        let unclean: Vec<String> = report
            .exits
            .iter()
            .filter(|exit| !exit.clean())
            .map(|exit| {
                format!(
                    "{} ({:?}{})",
                    exit.name,
                    exit.status,
                    if exit.forced { ", forced" } else { "" }
                )
            })
            .collect();
        let slowest = report
            .exits
            .iter()
            .map(|exit| exit.took)
            .max()
            .unwrap_or_default();
        row.notes.push(format!(
            "SIGTERM: {} of {} processes stopped cleanly (exit 0), slowest in {:.1} s{}",
            report.exits.len() - unclean.len(),
            report.exits.len(),
            slowest.as_secs_f64(),
            if unclean.is_empty() {
                String::new()
            } else {
                format!("; not clean: {}", unclean.join(", "))
            }
        ));
        if !unexpected.is_empty() {
            let list: Vec<String> = unexpected
                .iter()
                .map(|(name, status)| format!("{name} ({status})"))
                .collect();
            row.notes.push(format!(
                "processes that exited by themselves: {}",
                list.join(", ")
            ));
        }
        if let Some(metric) = duplicate_metric {
            row.notes.push(format!(
                "duplicate replies: {} absorbed as the dashboard's request states count them (the last dashboard's counter says {metric})",
                row.duplicates
            ));
        }
        Ok(row)
    }

    /// Scenario 4: the replies written while the dashboard was down, and whether the restarted
    /// dashboard shows each matched to its request (also those whose POST the kill cut off).
    pub(crate) async fn while_down(
        &self,
        api: &Api,
        report: &PlanReport,
        attempts: &[Attempt],
        states: &HashMap<String, Option<RequestState>>,
        replies: &load::LogIndex,
    ) -> Vec<String> {
        let mut notes = Vec::new();
        for (from, to) in &report.dashboard_down {
            let window = load::epoch_ms(*from)..=load::epoch_ms(*to);
            let arrived: Vec<&String> = replies
                .iter()
                .filter(|(_, stamps)| stamps.iter().any(|stamp| window.contains(stamp)))
                .map(|(id, _)| id)
                .collect();
            let (mut matched, mut unaccepted) = (0, 0);
            for id in &arrived {
                let state = match states.get(id.as_str()) {
                    Some(state) => state.clone(),
                    None => {
                        unaccepted += 1;
                        api.request_state(id).await.ok().flatten()
                    }
                };
                if state.as_ref().is_some_and(load::is_final) {
                    matched += 1;
                }
            }
            let before = attempts
                .iter()
                .filter(|attempt| {
                    attempt.sent_at < *from && matches!(attempt.outcome, Outcome::Accepted(_))
                })
                .count();
            notes.push(format!(
                "while the dashboard was down ({:.1} s): {} replies written ({unaccepted} of them to requests whose POST the stop cut off), {matched} of them shown matched by the restarted dashboard; {before} requests had been accepted before it went down",
                to.duration_since(*from).unwrap_or_default().as_secs_f64(),
                arrived.len()
            ));
        }
        notes
    }
}
