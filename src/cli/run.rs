//! `sluice run`: consume the configured topics into the lake until SIGINT/SIGTERM.

use std::path::Path;

use anyhow::Result;

use super::{assemble, init_logging, run_until, stop_flag};
use crate::config::Config;

/// Runs the pipeline and its endpoints until a signal, then stops in order.
pub fn run(config: Option<&Path>) -> Result<()> {
    let cfg = Config::load(config)?;
    init_logging(&cfg.log.level, cfg.log.format);
    let stop = stop_flag()?;
    let a = assemble(&cfg)?;
    if let Some((_, server)) = &a.live {
        tracing::info!(url = %server.url(), "live Arrow Flight endpoint");
    }
    if let Some(server) = &a.sql {
        tracing::info!(url = %server.url(), "Flight SQL endpoint (real-time views: <table>_live)");
    }
    if let Some(uri) = &a.quack {
        tracing::info!(%uri, "Quack endpoint (real-time views: <table>_live)");
    }
    if let Some(addr) = &a.metrics {
        tracing::info!(url = %format!("http://{addr}/metrics"), "metrics endpoint");
    }
    tracing::info!(topics = ?cfg.kafka.topics, group = %cfg.kafka.group_id, "sluice running");
    run_until(a, &stop)?;
    tracing::info!("stopped cleanly");
    Ok(())
}
