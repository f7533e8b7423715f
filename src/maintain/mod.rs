//! `maintain`: the lake's lifecycle. A pass ([`pass`]) takes the maintenance lease (one
//! instance per lake at a time, also across crashes: a holder's lease runs out), then per table
//! moves inlined rows into Parquet, rewrites mostly deleted files and merges small ones, then
//! expires old snapshots and deletes the files nothing references any more — all through
//! DuckLake's own functions (see [`crate::sink::Lake::merge_files`] and its neighbours).
//!
//! `sluice run` runs passes on a thread of their own ([`Maintainer`]) with their own lake
//! connection, so a pass never holds up the loop; `sluice maintain` runs one and exits.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::MaintenanceTimes;
use crate::observe::Stats;
use crate::sink::{Deleted, LEASE_TABLE, Lake, LeaseState, OFFSETS_TABLE, Rewritten, SinkError};

use crate::sync::lock;

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Tables looked at.
    pub tables: u64,
    /// Rows moved from the catalog (inlined) into Parquet files.
    pub inlined_rows: u64,
    /// Mostly deleted files rewritten without their deleted rows.
    pub rewritten: Rewritten,
    /// Small files merged into larger ones.
    pub merged: Rewritten,
    /// Snapshots expired.
    pub snapshots_expired: u64,
    /// Files no snapshot references any more, deleted.
    pub old_files: Deleted,
    /// Files no snapshot ever referenced, deleted.
    pub orphans: Deleted,
    /// Steps that lost to a concurrent transaction and were retried.
    pub conflicts: u64,
    /// (files, bytes) of live data and delete files before and after.
    pub files_before: (u64, u64),
    /// See `files_before`.
    pub files_after: (u64, u64),
    /// Snapshots before and after.
    pub snapshots_before: u64,
    /// See `snapshots_before`.
    pub snapshots_after: u64,
    /// Wall time.
    pub duration: Duration,
}

/// How a pass went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassOutcome {
    /// This instance holds the lease and ran the pass (stopped early if `stopped`).
    Done {
        /// What it did.
        report: PassReport,
        /// Whether a stop cut it short (between steps).
        stopped: bool,
    },
    /// Another instance holds the lease: nothing done.
    NotHolder {
        /// The holder's name.
        holder: String,
        /// When its lease runs out unless renewed (UTC).
        until: String,
    },
}

/// A name for this process as a lease holder: host, process id and start time, so a restarted
/// process on the same host is a new holder.
pub fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{host}:{}:{nanos}", std::process::id())
}

/// Runs one pass as `holder` if it gets the lease (sluice's own tables too if `own_tables`);
/// `stopping` is asked between steps and cuts the pass short. Each step is a DuckLake transaction of its own: a pass cut short (or
/// failed) leaves the lake consistent, and the next pass goes on from there.
pub fn pass(
    lake: &Lake,
    times: &MaintenanceTimes,
    holder: &str,
    own_tables: bool,
    stopping: &dyn Fn() -> bool,
) -> Result<PassOutcome, SinkError> {
    let started = Instant::now();
    if let LeaseState::HeldBy { holder, until } = lake.take_lease(holder, times.lease)? {
        return Ok(PassOutcome::NotHolder { holder, until });
    }
    let mut r = PassReport {
        files_before: lake.lake_files()?,
        snapshots_before: lake.snapshot_count()?,
        ..PassReport::default()
    };
    let mut stopped = false;
    let tables: Vec<_> = lake
        .lake_tables()?
        .into_iter()
        .filter(|t| own_tables || (t.table != OFFSETS_TABLE && t.table != LEASE_TABLE))
        .collect();
    r.tables = tables.len() as u64;
    for t in &tables {
        if stopping() {
            stopped = true;
            break;
        }
        r.inlined_rows += lake.flush_inlined(t, &mut r.conflicts)?;
        let w = lake.rewrite_deleted(t, &mut r.conflicts)?;
        r.rewritten.files_in += w.files_in;
        r.rewritten.files_out += w.files_out;
        let m = lake.merge_files(t, &mut r.conflicts)?;
        r.merged.files_in += m.files_in;
        r.merged.files_out += m.files_out;
    }
    if !stopped && !stopping() {
        r.snapshots_expired = lake.expire_snapshots(times.keep_snapshots, &mut r.conflicts)?;
        r.old_files = lake.cleanup_old_files(times.delete_files_after, &mut r.conflicts)?;
        r.orphans = lake.delete_orphaned_files(times.delete_files_after, &mut r.conflicts)?;
    } else {
        stopped = true;
    }
    r.files_after = lake.lake_files()?;
    r.snapshots_after = lake.snapshot_count()?;
    // Renewed after the work too, so a long pass does not let the lease run out under it.
    lake.take_lease(holder, times.lease)?;
    r.duration = started.elapsed();
    Ok(PassOutcome::Done { report: r, stopped })
}

/// Logs a pass's outcome (one line) and counts it in `stats`.
pub fn record(stats: &Stats, outcome: &Result<PassOutcome, SinkError>) {
    let m = &stats.maintenance;
    match outcome {
        Ok(PassOutcome::Done { report: r, stopped }) => {
            m.lease_held.store(1, Relaxed);
            m.passes_ok.fetch_add(1, Relaxed);
            m.inlined_rows.fetch_add(r.inlined_rows, Relaxed);
            m.files_rewritten.fetch_add(r.rewritten.files_in, Relaxed);
            m.files_merged.fetch_add(r.merged.files_in, Relaxed);
            m.files_written
                .fetch_add(r.rewritten.files_out + r.merged.files_out, Relaxed);
            m.snapshots_expired.fetch_add(r.snapshots_expired, Relaxed);
            m.files_deleted
                .fetch_add(r.old_files.files + r.orphans.files, Relaxed);
            m.bytes_reclaimed
                .fetch_add(r.old_files.bytes + r.orphans.bytes, Relaxed);
            m.conflicts.fetch_add(r.conflicts, Relaxed);
            m.last_duration_ms
                .store(r.duration.as_millis() as u64, Relaxed);
            m.last_success_ms.store(crate::observe::now_ms(), Relaxed);
            tracing::info!(
                tables = r.tables,
                inlined_rows_flushed = r.inlined_rows,
                files_merged = r.merged.files_in,
                files_merged_into = r.merged.files_out,
                files_rewritten = r.rewritten.files_in,
                snapshots_expired = r.snapshots_expired,
                old_files_deleted = r.old_files.files,
                orphaned_files_deleted = r.orphans.files,
                bytes_reclaimed = r.old_files.bytes + r.orphans.bytes,
                files_before = r.files_before.0,
                files_after = r.files_after.0,
                snapshots_before = r.snapshots_before,
                snapshots_after = r.snapshots_after,
                conflicts = r.conflicts,
                duration_ms = r.duration.as_millis() as u64,
                stopped = *stopped,
                "maintenance pass"
            );
        }
        Ok(PassOutcome::NotHolder { holder, until }) => {
            m.lease_held.store(0, Relaxed);
            m.passes_skipped.fetch_add(1, Relaxed);
            tracing::debug!(%holder, %until, "maintenance lease held by another instance");
        }
        Err(e) => {
            m.passes_failed.fetch_add(1, Relaxed);
            tracing::warn!(error = %e, "maintenance pass failed; the next pass goes on from where it stopped");
        }
    }
}

/// The maintenance thread of `sluice run`: a pass every `maintenance.interval`, on its own lake
/// connection, until [`Maintainer::stop`].
pub struct Maintainer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Maintainer {
    /// Starts the thread; the first pass runs one interval after the start.
    pub fn start(
        lake: Lake,
        times: MaintenanceTimes,
        stats: Arc<Stats>,
    ) -> std::io::Result<Maintainer> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sluice-maintain".into())
            .spawn(move || {
                let holder = holder_name();
                let stopping = || *lock(&flag.0);
                loop {
                    {
                        let (m, cv) = &*flag;
                        let guard = lock(m);
                        let (guard, _) = cv
                            .wait_timeout_while(guard, times.interval, |s| !*s)
                            .unwrap_or_else(|e| e.into_inner());
                        if *guard {
                            break;
                        }
                    }
                    // Never sluice's own tables while instances commit: compacting the
                    // offsets (updated in place by every commit) raced a concurrent update
                    // once in the chaos suite (PostgreSQL catalog, 100 kills over 3
                    // instances) and brought a superseded offset back, and that range was
                    // committed twice. `sluice maintain --own-tables` does it on a quiet lake.
                    let outcome = pass(&lake, &times, &holder, false, &stopping);
                    record(&stats, &outcome);
                }
                // Let another instance take over at once.
                if stats.maintenance.lease_held.load(Relaxed) == 1 {
                    if let Err(e) = lake.release_lease(&holder) {
                        tracing::warn!(error = %e, "could not release the maintenance lease (it runs out by itself)");
                    }
                    stats.maintenance.lease_held.store(0, Relaxed);
                }
            })?;
        Ok(Maintainer {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread: a pass in progress ends after its current step.
    pub fn stop(mut self) {
        self.signal_and_join();
    }

    fn signal_and_join(&mut self) {
        let (m, cv) = &*self.stop;
        *lock(m) = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Maintainer {
    fn drop(&mut self) {
        self.signal_and_join();
    }
}
