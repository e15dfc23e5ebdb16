//! The processes of one scenario: the dashboard and the worker replicas, each started from the
//! release binaries with a config file of its own and environment overrides, its output in a log
//! file. Processes are only ever signalled while their `Child` is un-reaped, so a pid can never
//! have been recycled for something else.

use anyhow::{Context, Result, bail};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// How long a SIGTERMed process may take to stop before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(40);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Dashboard,
    Invoice,
    Score,
}

impl Role {
    pub fn binary(self) -> &'static str {
        match self {
            Role::Dashboard => "dashboard",
            Role::Invoice => "invoice-generator",
            Role::Score => "score-calculator",
        }
    }
}

/// What every process of a scenario shares.
#[derive(Clone, Debug)]
pub struct FleetConfig {
    pub bin_dir: PathBuf,
    /// Config files and logs of this scenario.
    pub dir: PathBuf,
    pub bootstrap: String,
    pub prefix: String,
    pub partitions: i32,
    pub replication_factor: i32,
    pub min_insync_replicas: i32,
    pub request_timeout_ms: u64,
    pub history_limit: usize,
    /// The workers' `[worker] delivery`.
    pub delivery: &'static str,
    /// `RUST_LOG` of the services.
    pub log_filter: String,
    /// Set for every service, after everything else.
    pub extra_env: Vec<(String, String)>,
}

#[derive(Debug)]
struct Proc {
    name: String,
    role: Role,
    child: Child,
    pid: u32,
}

/// How a process ended when it was asked to stop.
#[derive(Clone, Debug)]
pub struct Exit {
    pub name: String,
    pub status: Option<ExitStatus>,
    pub took: Duration,
    /// It did not stop within [`STOP_TIMEOUT`] and was killed.
    pub forced: bool,
}

impl Exit {
    pub fn clean(&self) -> bool {
        !self.forced && self.status.is_some_and(|status| status.success())
    }
}

#[derive(Debug)]
pub struct Fleet {
    config: FleetConfig,
    env: Vec<(String, String)>,
    pub dashboard_addr: String,
    procs: Vec<Proc>,
    started: usize,
    /// Processes that stopped without being told to: name and status.
    pub unexpected_exits: Vec<(String, String)>,
}

impl Fleet {
    pub fn new(config: FleetConfig, dashboard_port: u16) -> Result<Self> {
        std::fs::create_dir_all(config.dir.join("logs"))
            .with_context(|| format!("cannot create {}", config.dir.display()))?;
        let dashboard_addr = format!("127.0.0.1:{dashboard_port}");
        let env = vec![
            ("KAFKA_BOOTSTRAP_SERVERS".into(), config.bootstrap.clone()),
            ("TOPIC_PREFIX".into(), config.prefix.clone()),
            ("TOPIC_PARTITIONS".into(), config.partitions.to_string()),
            (
                "TOPIC_REPLICATION_FACTOR".into(),
                config.replication_factor.to_string(),
            ),
            (
                "TOPIC_MIN_INSYNC_REPLICAS".into(),
                config.min_insync_replicas.to_string(),
            ),
            ("DASHBOARD_LISTEN".into(), dashboard_addr.clone()),
            (
                "DASHBOARD_REQUEST_TIMEOUT_MS".into(),
                config.request_timeout_ms.to_string(),
            ),
            (
                "DASHBOARD_HISTORY_LIMIT".into(),
                config.history_limit.to_string(),
            ),
            ("WORKER_METRICS_LISTEN".into(), "127.0.0.1:0".into()),
            ("RUST_LOG".into(), config.log_filter.clone()),
        ];
        let fleet = Fleet {
            config,
            env,
            dashboard_addr,
            procs: Vec::new(),
            started: 0,
            unexpected_exits: Vec::new(),
        };
        for role in [Role::Dashboard, Role::Invoice, Role::Score] {
            fleet.write_config(role)?;
        }
        Ok(fleet)
    }

    fn config_path(&self, role: Role) -> PathBuf {
        self.config
            .dir
            .join(role.binary())
            .join("config")
            .join("config.ini")
    }

    /// The same settings the environment overrides carry, so the file alone would do too.
    fn write_config(&self, role: Role) -> Result<()> {
        let config = &self.config;
        let mut text = format!(
            "; Written by the chaos driver for one scenario.\n[default]\nbootstrap.servers={}\n\n[topics]\nprefix={}\npartitions={}\nreplication_factor={}\nmin_insync_replicas={}\n",
            config.bootstrap,
            config.prefix,
            config.partitions,
            config.replication_factor,
            config.min_insync_replicas
        );
        match role {
            // The workers' groups, so the dashboard's banner and pending requests say when a
            // fault has left a kind without a worker.
            Role::Dashboard => text.push_str(&format!(
                "\n[dashboard]\nlisten={}\nrequest_timeout_ms={}\nhistory_limit={}\ninvoice_group={}{}\nscore_group={}{}\n",
                self.dashboard_addr,
                config.request_timeout_ms,
                config.history_limit,
                config.prefix,
                Role::Invoice.binary(),
                config.prefix,
                Role::Score.binary()
            )),
            Role::Invoice | Role::Score => text.push_str(&format!(
                "\n[consumer]\ngroup.id={}{}\nauto.offset.reset=earliest\n\n[worker]\nmetrics_listen=127.0.0.1:0\ndelivery={}\n",
                config.prefix,
                role.binary(),
                config.delivery
            )),
        }
        let path = self.config_path(role);
        let parent = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent)?;
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Starts one more process of `role`; returns its name.
    pub fn spawn(&mut self, role: Role) -> Result<String> {
        self.started += 1;
        let name = format!("{}-{}", role.binary(), self.started);
        let log_path = self.config.dir.join("logs").join(format!("{name}.log"));
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let binary = self.config.bin_dir.join(role.binary());
        let mut command = Command::new(&binary);
        command
            .arg("config/config.ini")
            .current_dir(
                self.config_path(role)
                    .parent()
                    .and_then(Path::parent)
                    .unwrap_or(Path::new(".")),
            )
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        // Only this driver's settings reach librdkafka.
        for (key, _) in std::env::vars() {
            if key.starts_with("LIBRDKAFKA_") {
                command.env_remove(key);
            }
        }
        command.envs(
            self.config
                .extra_env
                .iter()
                .map(|(key, value)| (key, value)),
        );
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let pid = child.id().context("started process has no pid")?;
        self.procs.push(Proc {
            name: name.clone(),
            role,
            child,
            pid,
        });
        Ok(name)
    }

    /// Names of the running processes of `role`, oldest first.
    pub fn names(&self, role: Role) -> Vec<String> {
        self.procs
            .iter()
            .filter(|proc| proc.role == role)
            .map(|proc| proc.name.clone())
            .collect()
    }

    pub fn count(&self, role: Role) -> usize {
        self.procs.iter().filter(|proc| proc.role == role).count()
    }

    fn take(&mut self, name: &str) -> Result<Proc> {
        let index = self
            .procs
            .iter()
            .position(|proc| proc.name == name)
            .with_context(|| format!("no process {name}"))?;
        Ok(self.procs.remove(index))
    }

    /// SIGKILL: a crash, no chance to clean up.
    pub async fn kill(&mut self, name: &str) -> Result<()> {
        let mut proc = self.take(name)?;
        proc.child.start_kill().context("SIGKILL failed")?;
        tokio::time::timeout(Duration::from_secs(10), proc.child.wait())
            .await
            .context("killed process did not exit")??;
        Ok(())
    }

    /// SIGTERM, then wait for the process to stop by itself (SIGKILL after [`STOP_TIMEOUT`]).
    pub async fn terminate(&mut self, name: &str) -> Result<Exit> {
        let mut proc = self.take(name)?;
        let started = Instant::now();
        signal_term(proc.pid).await?;
        let (status, forced) = match tokio::time::timeout(STOP_TIMEOUT, proc.child.wait()).await {
            Ok(status) => (Some(status?), false),
            Err(_) => {
                proc.child.start_kill().ok();
                (proc.child.wait().await.ok(), true)
            }
        };
        Ok(Exit {
            name: proc.name,
            status,
            took: started.elapsed(),
            forced,
        })
    }

    /// Notes processes that exited although nobody asked them to, and forgets them.
    pub fn reap_unexpected(&mut self) {
        let mut index = 0;
        while index < self.procs.len() {
            if let Ok(Some(status)) = self.procs[index].child.try_wait() {
                let proc = self.procs.remove(index);
                self.unexpected_exits.push((proc.name, status.to_string()));
            } else {
                index += 1;
            }
        }
    }

    /// SIGTERM to every process, dashboard last; returns how each ended.
    pub async fn shutdown(&mut self) -> Vec<Exit> {
        self.reap_unexpected();
        let mut names: Vec<(bool, String)> = self
            .procs
            .iter()
            .map(|proc| (proc.role == Role::Dashboard, proc.name.clone()))
            .collect();
        names.sort();
        let mut exits = Vec::new();
        for (_, name) in names {
            match self.terminate(&name).await {
                Ok(exit) => exits.push(exit),
                Err(error) => eprintln!("chaos: stopping {name}: {error:#}"),
            }
        }
        exits
    }

    pub fn log_dir(&self) -> PathBuf {
        self.config.dir.join("logs")
    }
}

async fn signal_term(pid: u32) -> Result<()> {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .context("cannot run kill")?;
    if !status.success() {
        bail!("kill -TERM {pid} failed: {status}");
    }
    Ok(())
}
