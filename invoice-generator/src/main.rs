//! `invoice-generator config/config.ini [--reset]`

use anyhow::Context;
use service::worker::WorkerArgs;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = WorkerArgs::parse_and_load(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
        .context("cannot read the configuration")?;
    invoice_generator::run(config, service::shutdown::signal())
        .await
        .context("invoice-generator stopped with an error")
}
