//! `sluice maintain`: one maintenance pass over the lake, for cron or a Kubernetes job.

use std::path::Path;

use anyhow::Result;

use super::init_logging;
use crate::config::Config;
use crate::maintain::{PassOutcome, holder_name, pass, record};
use crate::observe::Stats;
use crate::retry::Backoff;
use crate::sink::Lake;

/// Runs one pass if the lease is free (or run out), prints what it did, gives the lease up;
/// `own_tables` compacts sluice's own tables too (only safe while nothing ingests). Another
/// instance holding the lease is not an error: it maintains the lake.
pub fn maintain(config: Option<&Path>, own_tables: bool) -> Result<()> {
    let cfg = Config::load(config)?;
    init_logging(&cfg.log.level, cfg.log.format);
    let times = cfg.maintenance.times()?;
    let lake = Lake::open_with(
        &cfg.lake,
        &cfg.kafka.group_id,
        Backoff::conflicts(&cfg.flush.retry),
    )?;
    let holder = holder_name();
    let outcome = pass(&lake, &times, &holder, own_tables, &|| false);
    record(&Stats::default(), &outcome);
    match outcome? {
        PassOutcome::NotHolder { holder, until } => {
            println!(
                "maintenance: the lease is held by {holder} until {until}; that instance maintains the lake, nothing done"
            );
        }
        PassOutcome::Done { report: r, .. } => {
            lake.release_lease(&holder)?;
            println!(
                "maintenance: {} tables; {} inlined rows flushed to Parquet; {} files merged into {}; {} files rewritten; {} snapshots expired; {} files deleted ({} bytes)",
                r.tables,
                r.inlined_rows,
                r.merged.files_in,
                r.merged.files_out,
                r.rewritten.files_in,
                r.snapshots_expired,
                r.old_files.files + r.orphans.files,
                r.old_files.bytes + r.orphans.bytes,
            );
            println!(
                "lake: {} -> {} files ({} -> {} bytes), {} -> {} snapshots, in {:.2} s",
                r.files_before.0,
                r.files_after.0,
                r.files_before.1,
                r.files_after.1,
                r.snapshots_before,
                r.snapshots_after,
                r.duration.as_secs_f64()
            );
        }
    }
    Ok(())
}
