//! The Kafka cluster: node faults through `scripts/kafka` (which knows the cluster's state dir
//! from the environment `scripts/chaos` exported), partition leaders and in-sync replicas from
//! the cluster's metadata.

use anyhow::{Context, Result, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use request_reply::config::KafkaSettings;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::Command;

/// Longest a `scripts/kafka` command may take (a node start waits until it serves).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);

#[derive(Clone, Debug)]
pub struct Cluster {
    pub script: PathBuf,
    pub bootstrap: String,
    pub brokers: i32,
}

impl Cluster {
    /// Runs `scripts/kafka ARGS`; its progress goes to our stderr.
    pub async fn script(&self, args: &[&str]) -> Result<String> {
        let output = tokio::time::timeout(
            SCRIPT_TIMEOUT,
            Command::new(&self.script)
                .args(args)
                .stdin(Stdio::null())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .with_context(|| {
            format!(
                "scripts/kafka {} took over {SCRIPT_TIMEOUT:?}",
                args.join(" ")
            )
        })?
        .context("cannot run scripts/kafka")?;
        if !output.status.success() {
            bail!("scripts/kafka {} failed: {}", args.join(" "), output.status);
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    pub async fn kill_node(&self, id: i32) -> Result<()> {
        self.script(&["kill-node", &id.to_string()]).await.map(drop)
    }

    pub async fn stop_node(&self, id: i32) -> Result<()> {
        self.script(&["stop-node", &id.to_string()]).await.map(drop)
    }

    pub async fn start_node(&self, id: i32) -> Result<()> {
        self.script(&["start-node", &id.to_string()])
            .await
            .map(drop)
    }

    /// SIGSTOP: the node keeps its sockets and answers nothing (a long GC pause, a stalled disk).
    pub async fn pause_node(&self, id: i32) -> Result<()> {
        self.script(&["pause-node", &id.to_string()])
            .await
            .map(drop)
    }

    pub async fn resume_node(&self, id: i32) -> Result<()> {
        self.script(&["resume-node", &id.to_string()])
            .await
            .map(drop)
    }

    /// Waits until each consumer group named is stable with at least the given number of
    /// members, so the load does not start while the workers are still joining.
    pub async fn wait_groups_stable(
        &self,
        groups: &[(String, usize)],
        timeout: Duration,
    ) -> Result<()> {
        let client = self.metadata_client()?;
        let groups = groups.to_vec();
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + timeout;
            loop {
                let mut waiting = Vec::new();
                for (group, members) in &groups {
                    let stable = client
                        .fetch_group_list(Some(group), Duration::from_secs(5))
                        .ok()
                        .and_then(|list| {
                            list.groups()
                                .iter()
                                .find(|info| info.name() == group)
                                .map(|info| {
                                    info.state() == "Stable" && info.members().len() >= *members
                                })
                        })
                        .unwrap_or(false);
                    if !stable {
                        waiting.push(group.clone());
                    }
                }
                if waiting.is_empty() {
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    bail!(
                        "consumer groups not stable after {timeout:?}: {}",
                        waiting.join(", ")
                    );
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
        .await?
    }

    /// Starts every node that is not running (idempotent) and waits until all serve.
    pub async fn start_all(&self) -> Result<()> {
        self.script(&["start"]).await.map(drop)
    }

    pub async fn stop_all(&self) -> Result<()> {
        self.script(&["stop"]).await.map(drop)
    }

    fn metadata_client(&self) -> Result<BaseConsumer> {
        KafkaSettings::for_bootstrap(&self.bootstrap)
            .common_config()
            .create()
            .context("cannot create a metadata client")
    }

    /// The node leading `topic` partition `partition`.
    pub async fn leader(&self, topic: &str, partition: i32) -> Result<i32> {
        let client = self.metadata_client()?;
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let metadata = client.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
            metadata
                .topics()
                .iter()
                .flat_map(|topic| topic.partitions())
                .find(|candidate| candidate.id() == partition)
                .map(|found| found.leader())
                .filter(|leader| *leader >= 0)
                .with_context(|| format!("{topic}/{partition} has no leader"))
        })
        .await?
    }

    /// Waits until every partition of `topics` has all its replicas in sync (after a node came
    /// back), up to `timeout`; returns whether it got there.
    pub async fn wait_in_sync(&self, topics: &[String], timeout: Duration) -> Result<bool> {
        let client = self.metadata_client()?;
        let topics = topics.to_vec();
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + timeout;
            loop {
                let mut in_sync = true;
                for topic in &topics {
                    match client.fetch_metadata(Some(topic), Duration::from_secs(5)) {
                        Ok(metadata) => {
                            for partition in metadata
                                .topics()
                                .iter()
                                .flat_map(|topic| topic.partitions())
                            {
                                if partition.leader() < 0
                                    || partition.isr().len() < partition.replicas().len()
                                {
                                    in_sync = false;
                                }
                            }
                        }
                        Err(_) => in_sync = false,
                    }
                }
                if in_sync {
                    return Ok(true);
                }
                if Instant::now() >= deadline {
                    return Ok(false);
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        })
        .await?
    }
}
