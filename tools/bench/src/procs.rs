//! Memory and CPU of the processes under test, read from /proc (Linux only).

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `name=pid` pairs from `--pids`.
pub fn parse_pids(specs: &[String]) -> anyhow::Result<Vec<(String, u32)>> {
    let mut watched = Vec::new();
    for spec in specs.iter().flat_map(|spec| spec.split(',')) {
        let spec = spec.trim();
        if spec.is_empty() {
            continue;
        }
        let (name, pid) = match spec.split_once('=') {
            Some((name, pid)) => (name.to_owned(), pid),
            None => (format!("pid{spec}"), spec),
        };
        let pid: u32 = pid
            .parse()
            .map_err(|_| anyhow::anyhow!("--pids {spec}: expected NAME=PID"))?;
        watched.push((name, pid));
    }
    Ok(watched)
}

/// `VmRSS` and `VmHWM` (peak resident set) of a process, in KiB.
pub fn memory_kib(pid: &str) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|value| value.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// User plus system CPU time of a process, in clock ticks.
pub fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it are plain numbers.
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(user + system)
}

/// Busy and total jiffies of the whole machine (all CPUs), from the first line of /proc/stat.
pub fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let values: Vec<u64> = line
        .split_whitespace()
        .filter_map(|value| value.parse().ok())
        .collect();
    let total: u64 = values.iter().sum();
    // idle and iowait are the 4th and 5th values.
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

pub fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|ticks| *ticks > 0.0)
        .unwrap_or(100.0)
}

/// What was seen of one process during a run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProcessReport {
    pub pid: u32,
    /// VmHWM at the end: the process's peak resident set (since it started), in MiB.
    pub peak_rss_mib: f64,
    /// VmRSS at the end, in MiB.
    pub rss_mib: f64,
    /// CPU time used during the measured window, as a percentage of one core.
    pub cpu_pct: f64,
    /// False when the process was gone by the end.
    pub alive: bool,
}

/// When the measured window began: the time, each process's CPU ticks, the machine's ticks.
type Window = (Instant, Vec<Option<u64>>, Option<(u64, u64)>);

/// Samples memory every 250 ms (so a short peak after exit is not lost), and CPU time at the
/// start and end of the measured window.
#[derive(Debug)]
pub struct Watcher {
    watched: Vec<(String, u32)>,
    peaks: Arc<Mutex<BTreeMap<String, (u64, u64)>>>,
    sampler: tokio::task::JoinHandle<()>,
    window: Option<Window>,
}

impl Watcher {
    pub fn start(watched: Vec<(String, u32)>) -> Self {
        let peaks: Arc<Mutex<BTreeMap<String, (u64, u64)>>> = Arc::default();
        let sampler = {
            let watched = watched.clone();
            let peaks = Arc::clone(&peaks);
            tokio::spawn(async move {
                loop {
                    for (name, pid) in &watched {
                        if let Some((rss, hwm)) = memory_kib(&pid.to_string()) {
                            let mut peaks = peaks.lock().unwrap_or_else(|p| p.into_inner());
                            let entry = peaks.entry(name.clone()).or_default();
                            entry.0 = entry.0.max(rss);
                            entry.1 = entry.1.max(hwm);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            })
        };
        Watcher {
            watched,
            peaks,
            sampler,
            window: None,
        }
    }

    /// Marks the start of the measured window.
    pub fn begin_window(&mut self) {
        let cpu = self
            .watched
            .iter()
            .map(|(_, pid)| cpu_ticks(&pid.to_string()))
            .collect();
        self.window = Some((Instant::now(), cpu, machine_ticks()));
    }

    /// Per process, and for the machine and this program: the CPU used since
    /// [`Watcher::begin_window`] (percent of one core) and the memory peaks.
    pub fn finish(self, self_cpu_start: Option<u64>) -> Finished {
        self.sampler.abort();
        let ticks = clock_ticks_per_second();
        let (started, cpu_start, machine_start) = self
            .window
            .unwrap_or_else(|| (Instant::now(), vec![None; self.watched.len()], None));
        let wall = started.elapsed().as_secs_f64().max(1e-9);
        let peaks = self.peaks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut processes = BTreeMap::new();
        for ((name, pid), cpu_start) in self.watched.iter().zip(cpu_start) {
            let pid_text = pid.to_string();
            let now = memory_kib(&pid_text);
            let (seen_rss, seen_hwm) = peaks.get(name).copied().unwrap_or_default();
            let (rss, hwm) = now.unwrap_or((0, 0));
            let cpu_pct = match (cpu_start, cpu_ticks(&pid_text)) {
                (Some(start), Some(end)) => {
                    (end.saturating_sub(start)) as f64 / ticks / wall * 100.0
                }
                _ => 0.0,
            };
            processes.insert(
                name.clone(),
                ProcessReport {
                    pid: *pid,
                    peak_rss_mib: hwm.max(seen_hwm) as f64 / 1024.0,
                    rss_mib: if now.is_some() { rss } else { seen_rss } as f64 / 1024.0,
                    cpu_pct,
                    alive: now.is_some(),
                },
            );
        }
        let machine_busy_pct = match (machine_start, machine_ticks()) {
            (Some((busy0, total0)), Some((busy1, total1))) if total1 > total0 => {
                (busy1 - busy0) as f64 / (total1 - total0) as f64 * 100.0
            }
            _ => 0.0,
        };
        let self_cpu_pct = match (self_cpu_start, cpu_ticks("self")) {
            (Some(start), Some(end)) => (end.saturating_sub(start)) as f64 / ticks / wall * 100.0,
            _ => 0.0,
        };
        Finished {
            processes,
            machine_busy_pct,
            self_cpu_pct,
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Finished {
    pub processes: BTreeMap<String, ProcessReport>,
    /// All CPUs busy, in percent of the whole machine, during the window.
    pub machine_busy_pct: f64,
    /// This load generator's own CPU use, in percent of one core.
    pub self_cpu_pct: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_memory_and_cpu() {
        let (rss, hwm) = memory_kib("self").unwrap();
        assert!(rss > 0 && hwm >= rss);
        assert!(cpu_ticks("self").is_some());
        assert!(machine_ticks().is_some());
    }

    #[test]
    fn pid_lists_parse() {
        let pids = parse_pids(&["a=1,b=2".into(), "3".into()]).unwrap();
        assert_eq!(
            pids,
            [("a".into(), 1), ("b".into(), 2), ("pid3".to_string(), 3)]
        );
        assert!(parse_pids(&["a=x".into()]).is_err());
    }
}
