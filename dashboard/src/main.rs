//! `dashboard [config/config.ini]`

use anyhow::Context;
use clap::Parser;
use dashboard::{DashboardConfig, ENV_OVERRIDES};
use service::config::ConfigFile;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Web dashboard for invoice and score requests over Kafka"
)]
struct Args {
    /// config.ini: librdkafka properties in [default], listen address and timeouts in [dashboard]
    #[arg(default_value = "config/config.ini")]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    service::telemetry::init_logging();
    let file =
        ConfigFile::load(&args.config, ENV_OVERRIDES).context("cannot read the configuration")?;
    let config = DashboardConfig::from_file(&file).context("invalid configuration")?;
    config.check_listen_address(config.listen)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr().context("listener has no address")?;
    println!("Dashboard: http://{address}/");
    dashboard::run(config, listener, service::shutdown::signal()).await
}
