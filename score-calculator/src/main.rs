//! `score-calculator config/config.ini [--reset]`

use anyhow::Context;
use request_reply::worker_cli::WorkerArgs;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = WorkerArgs::parse_and_load().context("cannot read the configuration")?;
    score_calculator::run(config, request_reply::shutdown::signal())
        .await
        .context("score-calculator stopped with an error")
}
