//! `[flush]`: when pending data is committed, the memory cap, and how failing commits retry.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};

/// Retry policy for a failing flush.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts before the process gives up (exits non-zero, offsets unmoved).
    pub attempts: u32,
    /// First backoff; doubles each attempt, with ±50% jitter.
    pub initial_backoff_ms: u64,
    /// Cap of the backoff.
    pub max_backoff_ms: u64,
    /// Commits DuckLake rejects because another instance committed concurrently are retried
    /// this many times per flush (they are expected with several instances, and counted apart
    /// from `attempts`); so are racing catalog initialization and partition registration.
    pub conflict_attempts: u32,
    /// First backoff after a commit conflict; doubles per conflict, with ±50% jitter.
    pub conflict_initial_backoff_ms: u64,
    /// Cap of the conflict backoff.
    pub conflict_max_backoff_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            attempts: 10,
            initial_backoff_ms: 200,
            max_backoff_ms: 30_000,
            conflict_attempts: 100,
            conflict_initial_backoff_ms: 20,
            conflict_max_backoff_ms: 2_000,
        }
    }
}

/// When pending data is flushed into the lake.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FlushConfig {
    /// Flush a table when its pending decoded Arrow data reaches this (bytes of the decoded
    /// buffers: after decompression, whether in place or copied); default 128 MiB.
    pub max_bytes: u64,
    /// Flush a table when its pending rows reach this.
    pub max_rows: u64,
    /// Flush a table when its oldest pending message is this old (milliseconds).
    pub max_age_ms: u64,
    /// The process's memory budget for Arrow data: pending bytes, the live ring's retention
    /// (`live.retention_bytes` per topic) and librdkafka's prefetch
    /// (`kafka.queued_max_messages_kbytes` plus `kafka.fetch_max_bytes`) together. Pending data
    /// gets what the other two leave (`sluice check` prints the split); when it is full the
    /// largest tables are flushed, and while a failed flush waits partitions pause. Default
    /// 1 GiB.
    pub memory_cap_bytes: u64,
    /// Retry policy of a failing flush.
    pub retry: RetryConfig,
}

impl Default for FlushConfig {
    fn default() -> Self {
        FlushConfig {
            max_bytes: 128 * 1024 * 1024,
            max_rows: 10_000_000,
            max_age_ms: 60_000,
            memory_cap_bytes: 1024 * 1024 * 1024,
            retry: RetryConfig::default(),
        }
    }
}

impl RetryConfig {
    /// Checks the `[flush.retry]` keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.attempts == 0 {
            return Err(invalid("flush.retry.attempts", "must be at least 1"));
        }
        if self.initial_backoff_ms > self.max_backoff_ms {
            return Err(invalid(
                "flush.retry.initial_backoff_ms",
                "must not exceed flush.retry.max_backoff_ms",
            ));
        }
        if self.conflict_attempts == 0 {
            return Err(invalid(
                "flush.retry.conflict_attempts",
                "must be at least 1",
            ));
        }
        if self.conflict_initial_backoff_ms > self.conflict_max_backoff_ms {
            return Err(invalid(
                "flush.retry.conflict_initial_backoff_ms",
                "must not exceed flush.retry.conflict_max_backoff_ms",
            ));
        }
        Ok(())
    }
}

impl FlushConfig {
    /// Checks the `[flush]` keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, v) in [
            ("flush.max_bytes", self.max_bytes),
            ("flush.max_rows", self.max_rows),
            ("flush.max_age_ms", self.max_age_ms),
            ("flush.memory_cap_bytes", self.memory_cap_bytes),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        self.retry.validate()
    }
}
