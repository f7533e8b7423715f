//! Configuration: one serde struct per stage, layered with figment as
//! defaults → TOML file → `SLUICE_…` environment variables (`__` separates nesting levels,
//! e.g. `SLUICE_KAFKA__BROKERS`). Unknown keys are rejected; [`Config::validate`] runs before
//! anything starts, each section checking its own keys, and names the offending key.

mod flush;
mod kafka;
mod lake;
mod live;
mod log;
mod maintenance;
mod memory;
mod metrics;
mod sql;
mod tables;

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use flush::{FlushConfig, RetryConfig};
pub use kafka::{DEFAULT_KAFKA_PROPERTIES, KafkaConfig, OnOffsetGap, SET_BY_SLUICE, StartFrom};
pub use lake::{CatalogKind, LakeConfig, S3Config, S3Resolved, Secret, UrlStyle};
pub use live::{LiveConfig, LiveTls};
pub use log::{LogConfig, LogFormat, env_filter, filter_problem};
pub use maintenance::{MaintenanceConfig, MaintenanceTimes};
pub use memory::{BASE_BYTES, MIN_LIMIT_BYTES, MemoryConfig, MemorySplit};
pub use metrics::MetricsConfig;
pub use sql::SqlConfig;
pub use tables::{
    MetadataColumns, PARQUET_CODECS, PartitionField, SchemaEvolution, SortField, TableOptions,
    TablesConfig, is_topic_pattern, parse_size, table_name_from_topic,
};

/// Errors found while loading or validating the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file, an environment variable or a value could not be parsed, or a key is unknown.
    #[error("configuration error: {0}")]
    Parse(String),
    /// A value parsed but is not acceptable; `key` is its full dotted path.
    #[error("configuration error: `{key}` {reason}")]
    Invalid {
        /// Dotted path of the offending key, e.g. `flush.max_bytes`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        // figment's messages already name the key and where it came from (file or env).
        let text = e
            .into_iter()
            .map(|one| one.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        ConfigError::Parse(text)
    }
}

/// A [`ConfigError::Invalid`] for `key` (its full dotted path).
fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

/// Whether `address` is `host:port` with a numeric IP (what the servers bind).
fn check_address(key: &str, address: &str, example: &str) -> Result<(), ConfigError> {
    match address.parse::<std::net::SocketAddr>() {
        Ok(_) => Ok(()),
        Err(_) => Err(invalid(
            key,
            format!("must be host:port with a numeric IP, e.g. {example}"),
        )),
    }
}

/// The whole configuration of one sluice process. Every key can be overridden by an environment
/// variable `SLUICE_<SECTION>__<KEY>`, e.g. `SLUICE_KAFKA__BROKERS=broker:9092` or
/// `SLUICE_FLUSH__MAX_AGE_MS=5000` (defaults, then the TOML file, then the environment).
/// Unknown keys are rejected at start. `sluice check --config sluice.toml` validates the config
/// and checks that the brokers answer and the lake attaches.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
#[derive(Default)]
pub struct Config {
    /// Kafka connection and consumer-group settings.
    pub kafka: KafkaConfig,
    /// DuckLake catalog and data location.
    pub lake: LakeConfig,
    /// Topic → table mapping and optional Kafka metadata columns.
    pub tables: TablesConfig,
    /// One memory limit for the whole process (e.g. the container's), split between its parts.
    pub memory: MemoryConfig,
    /// Flush thresholds, memory cap and retry policy.
    pub flush: FlushConfig,
    /// The live Arrow Flight endpoint (e.g. `pyarrow.flight.connect("grpc://127.0.0.1:8815")`;
    /// `grpc+tls://` with TLS).
    pub live: LiveConfig,
    /// Arrow Flight SQL over the lake and its real-time views (`<table>_live`), off by default.
    pub sql: SqlConfig,
    /// The operators' HTTP endpoint: Prometheus `/metrics`, and `/healthz` and `/readyz` for
    /// probes.
    pub metrics: MetricsConfig,
    /// The lake's lifecycle: DuckLake's own compaction, snapshot expiry and file clean-up. One
    /// instance at a time runs it (a lease in the lake); `sluice maintain` runs one pass and
    /// exits.
    pub maintenance: MaintenanceConfig,
    /// Logging.
    pub log: LogConfig,
}

/// How `flush.memory_cap_bytes` is split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBudget {
    /// `flush.memory_cap_bytes`.
    pub total: u64,
    /// Reserved for the live ring: `live.retention_bytes` × topics (0 when live is off).
    pub live: u64,
    /// Reserved for librdkafka's prefetch: `kafka.queued_max_messages_kbytes` KiB +
    /// `kafka.fetch_max_bytes` (the queue bound may be overshot by one fetch).
    pub prefetch: u64,
    /// What is left for pending (not yet flushed) data: the cap the flush policy enforces.
    pub pending: u64,
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

impl Config {
    /// The split of the memory budget between live retention, prefetch and pending data.
    pub fn memory_budget(&self) -> MemoryBudget {
        let total = self.flush.memory_cap_bytes;
        let live = if self.live.enabled {
            self.live
                .retention_bytes
                .saturating_mul(self.kafka.topics.len() as u64)
        } else {
            0
        };
        let prefetch = self
            .kafka
            .queued_max_messages_kbytes
            .saturating_mul(1024)
            .saturating_add(self.kafka.fetch_max_bytes);
        MemoryBudget {
            total,
            live,
            prefetch,
            pending: total.saturating_sub(live.saturating_add(prefetch)),
        }
    }

    /// Defaults, then the TOML file (if given), then `SLUICE_…` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Parse(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        Self::from_figment(fig.merge(Env::prefixed("SLUICE_").split("__")))
    }

    /// Extracts and validates a configuration from a prepared figment.
    pub fn from_figment(fig: Figment) -> Result<Config, ConfigError> {
        let mut cfg: Config = fig.extract()?;
        cfg.apply_memory_limit()?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values that parse but cannot work, naming the key: each section's own keys, then
    /// what they must satisfy together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.kafka.validate()?;
        self.lake.validate()?;
        self.tables.validate()?;
        self.flush.validate()?;
        self.live.validate()?;
        let token = self.live.auth_token.as_ref().map(|t| t.expose());
        self.sql.validate(self.live.enabled, token)?;
        self.metrics.validate()?;
        self.maintenance.validate()?;
        let names: Vec<&String> = (self.kafka.topics.iter())
            .filter(|t| !tables::is_topic_pattern(t))
            .collect();
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                if let Some(why) = self.tables.collision(a, b) {
                    return Err(invalid(
                        "kafka.topics",
                        format!("names two topics that collide: {why}"),
                    ));
                }
            }
        }
        let budget = self.memory_budget();
        if budget.pending == 0 {
            return Err(invalid(
                "flush.memory_cap_bytes",
                format!(
                    "({}) leaves nothing for pending data: the live ring reserves {} (live.retention_bytes × {} topics) and librdkafka's prefetch {} (kafka.queued_max_messages_kbytes + kafka.fetch_max_bytes); raise it or lower those",
                    mib(budget.total),
                    mib(budget.live),
                    self.kafka.topics.len(),
                    mib(budget.prefetch)
                ),
            ));
        }
        self.log.validate()
    }
}

#[cfg(test)]
mod tests;
