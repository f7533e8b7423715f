//! `[maintenance]`: the lake's lifecycle — DuckLake's own compaction, snapshot expiry and file
//! clean-up, run by the one instance that holds the maintenance lease.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};

/// When and how the lake is maintained. Durations are written like `90s`, `10m`, `1h`, `7d`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MaintenanceConfig {
    /// Whether `sluice run` maintains the lake (the instance holding the lease does; the
    /// others only try to take the lease). `sluice maintain` runs one pass regardless.
    pub enabled: bool,
    /// Time between passes (and between attempts to take the lease). Durations are written like
    /// `90s`, `10m`, `1h`, `7d`.
    pub interval: String,
    /// Snapshots older than this are expired (DuckLake always keeps the latest): time travel
    /// and readers that pinned a snapshot reach back this far.
    pub keep_snapshots: String,
    /// Files no snapshot references any more (merged away, expired), and files no snapshot
    /// ever referenced (written by a crashed writer), are deleted once this old: a query that
    /// started before a merge can still read what it planned to. On a SQLite catalog the
    /// cut-off is rounded down to midnight UTC (DuckLake compares its times there as text).
    pub delete_files_after: String,
    /// How long the lease lasts without renewal; the holder renews it at every pass, and
    /// another instance takes it over once a crashed holder's lease has run out. Must exceed
    /// `interval`.
    pub lease: String,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        MaintenanceConfig {
            enabled: true,
            interval: "10m".into(),
            keep_snapshots: "1h".into(),
            delete_files_after: "1h".into(),
            lease: "30m".into(),
        }
    }
}

/// The parsed durations of [`MaintenanceConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaintenanceTimes {
    /// `maintenance.interval`.
    pub interval: Duration,
    /// `maintenance.keep_snapshots`.
    pub keep_snapshots: Duration,
    /// `maintenance.delete_files_after`.
    pub delete_files_after: Duration,
    /// `maintenance.lease`.
    pub lease: Duration,
}

fn duration(key: &str, text: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        invalid(
            key,
            format!("is not a duration like \"90s\", \"10m\", \"1h\" or \"7d\" ({text:?}: {e})"),
        )
    })
}

impl MaintenanceConfig {
    /// The durations, parsed (checked by [`MaintenanceConfig::validate`]).
    pub fn times(&self) -> Result<MaintenanceTimes, ConfigError> {
        Ok(MaintenanceTimes {
            interval: duration("maintenance.interval", &self.interval)?,
            keep_snapshots: duration("maintenance.keep_snapshots", &self.keep_snapshots)?,
            delete_files_after: duration(
                "maintenance.delete_files_after",
                &self.delete_files_after,
            )?,
            lease: duration("maintenance.lease", &self.lease)?,
        })
    }

    /// Checks the `[maintenance]` keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let t = self.times()?;
        if t.interval < Duration::from_secs(1) {
            return Err(invalid("maintenance.interval", "must be at least 1s"));
        }
        if t.lease <= t.interval {
            return Err(invalid(
                "maintenance.lease",
                format!(
                    "({}) must exceed maintenance.interval ({}): the holder renews it once per pass",
                    self.lease, self.interval
                ),
            ));
        }
        Ok(())
    }
}
