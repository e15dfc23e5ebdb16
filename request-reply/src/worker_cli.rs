//! The command line every worker shares: `<worker> config/config.ini [--reset]`, as the originals.

use crate::config::{ConfigError, ConfigFile, EnvOverride};
use crate::responder::WorkerConfig;
use clap::Parser;
use std::path::PathBuf;

/// Environment variables a worker reads besides the common ones.
pub const WORKER_ENV_OVERRIDES: &[EnvOverride] = &[EnvOverride {
    var: "WORKER_METRICS_LISTEN",
    section: "worker",
    key: "metrics_listen",
}];

#[derive(Debug, Parser)]
#[command(
    version,
    about = "A request/reply worker: consumes its request topic, replies on its reply topic"
)]
pub struct WorkerArgs {
    /// config.ini: librdkafka properties in `[default]` and `[consumer]`, topics in `[topics]`
    pub config: PathBuf,
    /// Read the request topic from the beginning instead of the committed offsets
    #[arg(long)]
    pub reset: bool,
}

impl WorkerArgs {
    /// Parses the command line, starts logging and reads the config file with its environment
    /// overrides.
    pub fn parse_and_load() -> Result<WorkerConfig, ConfigError> {
        let args = WorkerArgs::parse();
        crate::telemetry::init_logging();
        let file = ConfigFile::load(&args.config, WORKER_ENV_OVERRIDES)?;
        WorkerConfig::from_file(&file, args.reset)
    }
}
