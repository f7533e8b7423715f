//! Configuration: one serde struct per stage, layered with figment as
//! defaults → TOML file → `SLUICE_…` environment variables (`__` separates nesting levels,
//! e.g. `SLUICE_KAFKA__BROKERS`). Unknown keys are rejected; [`Config::validate`] runs before
//! anything starts and names the offending key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

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

/// The whole configuration of one sluice process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
#[derive(Default)]
pub struct Config {
    /// Kafka connection and consumer-group settings.
    pub kafka: KafkaConfig,
    /// DuckLake catalog and data location.
    pub lake: LakeConfig,
    /// Topic → table mapping and optional Kafka metadata columns.
    pub tables: TablesConfig,
    /// Flush thresholds, memory cap and retry policy.
    pub flush: FlushConfig,
    /// The live Arrow Flight endpoint.
    pub live: LiveConfig,
    /// The operators' HTTP endpoint (`/metrics`, `/healthz`, `/readyz`).
    pub metrics: MetricsConfig,
    /// Logging.
    pub log: LogConfig,
}

/// Where a partition starts when the lake holds no offset for it yet.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    /// The oldest message the broker still has (like `auto.offset.reset=earliest`).
    Earliest,
    /// Only messages produced after the partition is assigned.
    Latest,
}

/// Kafka settings. Any librdkafka property can be given in `properties`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// `group.id`; also the key of this pipeline's offsets in the lake.
    pub group_id: String,
    /// Topics to consume. An entry starting with `^` is a regular expression: every matching
    /// topic is consumed, including ones created later (found at metadata refresh,
    /// `topic.metadata.refresh.interval.ms`). The memory budget reserves live retention for
    /// each entry, so a pattern counts as one topic there.
    pub topics: Vec<String>,
    /// Start position of a partition the lake has no offset for.
    pub start_from: StartFrom,
    /// librdkafka `queued.max.messages.kbytes`: prefetch bound per partition queue.
    pub queued_max_messages_kbytes: u64,
    /// librdkafka `fetch.max.bytes`.
    pub fetch_max_bytes: u64,
    /// librdkafka `max.partition.fetch.bytes`.
    pub max_partition_fetch_bytes: u64,
    /// Copy each payload once into an aligned buffer before decoding it, and release
    /// librdkafka's message at once. Off by default: payloads are decoded in place. Worth it
    /// for topics of mostly fixed-width columns: librdkafka places most payloads at addresses
    /// that break 8-byte alignment, so arrow-rs copies those buffers anyway, and batches
    /// decoded in place keep librdkafka's whole fetch buffers alive until their flush commits
    /// (FINDINGS.md, section 7, measures both settings).
    pub copy_payloads: bool,
    /// Extra librdkafka properties passed through verbatim (SASL, SSL, timeouts, …).
    pub properties: BTreeMap<String, String>,
}

fn default_group_id() -> String {
    "sluice".to_string()
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "localhost:9092".into(),
            group_id: default_group_id(),
            topics: Vec::new(),
            start_from: StartFrom::Earliest,
            // librdkafka's default is 65536 (64 MiB); sluice keeps it.
            queued_max_messages_kbytes: 65_536,
            // librdkafka's default fetch.max.bytes is 52428800 (50 MiB).
            fetch_max_bytes: 52_428_800,
            // librdkafka's default max.partition.fetch.bytes is 1048576 (1 MiB).
            max_partition_fetch_bytes: 1_048_576,
            copy_payloads: false,
            properties: BTreeMap::new(),
        }
    }
}

/// librdkafka properties that sluice sets itself; giving them in `kafka.properties` is an error.
pub const RESERVED_KAFKA_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "kafka.brokers"),
    ("group.id", "kafka.group_id"),
    (
        "enable.auto.commit",
        "sluice commits offsets to the lake itself",
    ),
    ("enable.auto.offset.store", "sluice stores offsets itself"),
    (
        "queued.max.messages.kbytes",
        "kafka.queued_max_messages_kbytes",
    ),
    ("fetch.max.bytes", "kafka.fetch_max_bytes"),
    (
        "max.partition.fetch.bytes",
        "kafka.max_partition_fetch_bytes",
    ),
    ("auto.offset.reset", "kafka.start_from"),
];

/// Kind of the DuckLake catalog database (closed set).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CatalogKind {
    /// A DuckDB database file (the embedded default).
    Duckdb,
    /// A SQLite database file.
    Sqlite,
    /// A PostgreSQL database (`catalog` is a libpq connection string).
    Postgres,
}

/// DuckLake settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// Catalog database kind.
    pub catalog_kind: CatalogKind,
    /// Catalog location: a file path (duckdb, sqlite) or a libpq connection string (postgres).
    pub catalog: String,
    /// Where Parquet files go: a local directory or an `s3://bucket/prefix/` URL.
    pub data_path: String,
    /// DuckDB schema inside the lake that holds the tables.
    pub schema: String,
    /// DuckDB extension directory; unset means DuckDB's default (`~/.duckdb/extensions`).
    pub extension_directory: Option<PathBuf>,
    /// DuckDB threads used for Parquet writing; unset means DuckDB's default (all cores).
    pub threads: Option<u32>,
    /// DuckDB `memory_limit`, e.g. `"2GB"`; unset means DuckDB's default (80% of RAM).
    pub memory_limit: Option<String>,
    /// S3 (or S3-compatible, e.g. MinIO) access for an `s3://` data path.
    pub s3: S3Config,
}

/// A credential: deserialized and serialized as its plain value, but never printed by `Debug`
/// (so it cannot reach a log line through a `{:?}` of the configuration).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The credential itself, for the one place that hands it to DuckDB.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

/// How bucket names appear in S3 URLs.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UrlStyle {
    /// `https://endpoint/bucket/key` (MinIO and most S3-compatible servers).
    Path,
    /// `https://bucket.endpoint/key` (AWS S3).
    Vhost,
}

/// S3 settings, handed to DuckDB's httpfs as a secret. Unset values fall back to the standard
/// AWS environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
/// `AWS_REGION` or `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// `host:port` of an S3-compatible server, or a URL (`http://` turns SSL off); unset: AWS.
    pub endpoint: Option<String>,
    /// Region, e.g. `us-east-1`.
    pub region: Option<String>,
    /// `path` or `vhost`; unset: path style with a custom endpoint, vhost for AWS.
    pub url_style: Option<UrlStyle>,
    /// HTTPS to the endpoint; unset: from the endpoint URL's scheme, else true.
    pub use_ssl: Option<bool>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key (never logged).
    pub secret_access_key: Option<Secret>,
    /// Session token of temporary credentials (never logged).
    pub session_token: Option<Secret>,
}

/// S3 settings with the environment's fallbacks applied: what DuckDB gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Resolved {
    /// `host:port`, without scheme.
    pub endpoint: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// `path` or `vhost`.
    pub url_style: UrlStyle,
    /// HTTPS.
    pub use_ssl: bool,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<Secret>,
    /// Session token.
    pub session_token: Option<Secret>,
}

impl S3Config {
    /// Applies the AWS environment fallbacks (`env` looks a variable up, e.g. `std::env::var`).
    pub fn resolve(&self, env: impl Fn(&str) -> Option<String>) -> S3Resolved {
        let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        let raw_endpoint =
            nonempty(self.endpoint.clone()).or_else(|| nonempty(env("AWS_ENDPOINT_URL")));
        let (endpoint, scheme_ssl) = match raw_endpoint {
            None => (None, None),
            Some(e) => {
                let e = e.trim().trim_end_matches('/').to_string();
                if let Some(rest) = e.strip_prefix("http://") {
                    (Some(rest.to_string()), Some(false))
                } else if let Some(rest) = e.strip_prefix("https://") {
                    (Some(rest.to_string()), Some(true))
                } else {
                    (Some(e), None)
                }
            }
        };
        let url_style = self.url_style.unwrap_or(if endpoint.is_some() {
            UrlStyle::Path
        } else {
            UrlStyle::Vhost
        });
        S3Resolved {
            use_ssl: self.use_ssl.or(scheme_ssl).unwrap_or(true),
            url_style,
            endpoint,
            region: nonempty(self.region.clone())
                .or_else(|| nonempty(env("AWS_REGION")))
                .or_else(|| nonempty(env("AWS_DEFAULT_REGION"))),
            access_key_id: nonempty(self.access_key_id.clone())
                .or_else(|| nonempty(env("AWS_ACCESS_KEY_ID"))),
            secret_access_key: self
                .secret_access_key
                .clone()
                .filter(|s| !s.expose().is_empty())
                .or_else(|| nonempty(env("AWS_SECRET_ACCESS_KEY")).map(Secret)),
            session_token: self
                .session_token
                .clone()
                .filter(|s| !s.expose().is_empty())
                .or_else(|| nonempty(env("AWS_SESSION_TOKEN")).map(Secret)),
        }
    }
}

impl Default for LakeConfig {
    fn default() -> Self {
        LakeConfig {
            catalog_kind: CatalogKind::Duckdb,
            catalog: "sluice.ducklake".into(),
            data_path: "sluice_data/".into(),
            schema: "main".into(),
            extension_directory: None,
            threads: None,
            memory_limit: None,
            s3: S3Config::default(),
        }
    }
}

/// Which Kafka metadata columns are added to every row.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetadataColumns {
    /// `_kafka_partition INTEGER`.
    pub partition: bool,
    /// `_kafka_offset BIGINT`.
    pub offset: bool,
    /// `_kafka_timestamp TIMESTAMP WITH TIME ZONE` (milliseconds).
    pub timestamp: bool,
    /// `_kafka_key BLOB`.
    pub key: bool,
}

/// Topic → table mapping.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TablesConfig {
    /// Explicit topic → table names; other topics get a name from `name_template`.
    pub map: BTreeMap<String, String>,
    /// Table name of a topic not in `map`: `{topic}` is replaced by the topic name, then the
    /// result is made an identifier (lowercase ASCII letters, digits, `_`).
    pub name_template: String,
    /// Kafka metadata columns added to each row.
    pub metadata: MetadataColumns,
}

impl Default for TablesConfig {
    fn default() -> Self {
        TablesConfig {
            map: BTreeMap::new(),
            name_template: "{topic}".into(),
            metadata: MetadataColumns::default(),
        }
    }
}

impl TablesConfig {
    /// The lake table a topic's batches go to. A derived name that would fall among sluice's
    /// own tables (`sluice_…`) gets a `t_` prefix.
    pub fn table_for(&self, topic: &str) -> String {
        if let Some(t) = self.map.get(topic) {
            return t.clone();
        }
        let name = table_name_from_topic(&self.name_template.replace("{topic}", topic));
        if name.starts_with("sluice_") {
            format!("t_{name}")
        } else {
            name
        }
    }
}

/// Whether a `kafka.topics` entry is a regular expression (librdkafka's convention: it starts
/// with `^`) rather than a topic name.
pub fn is_topic_pattern(entry: &str) -> bool {
    entry.starts_with('^')
}

/// A valid, unquoted-safe SQL identifier derived from a topic name: lowercase ASCII letters,
/// digits and `_`, never starting with a digit. (Identifiers are quoted anyway.)
pub fn table_name_from_topic(topic: &str) -> String {
    let mut out: String = topic
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.as_bytes()[0].is_ascii_digit() {
        out.insert(0, 't');
        out.insert(1, '_');
    }
    out
}

/// Retry policy for a failing flush.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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
    /// from `attempts`).
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
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FlushConfig {
    /// Flush a table when its pending decoded Arrow data reaches this (bytes of the decoded
    /// buffers: after decompression, whether in place or copied).
    pub max_bytes: u64,
    /// Flush a table when its pending rows reach this.
    pub max_rows: u64,
    /// Flush a table when its oldest pending message is this old.
    pub max_age_ms: u64,
    /// The process's memory budget for Arrow data: pending bytes, the live ring's retention
    /// (`live.retention_bytes` per topic) and librdkafka's prefetch
    /// (`kafka.queued_max_messages_kbytes` plus `kafka.fetch_max_bytes`) together. Pending data
    /// gets what the other two leave (see [`Config::memory_budget`]); when it is full the
    /// largest tables are flushed, and while a failed flush waits partitions pause.
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

/// The live Arrow Flight endpoint: the decoded batches, retained per topic.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LiveConfig {
    /// Serve Flight at all.
    pub enabled: bool,
    /// Listen address (`host:port`; port 0 picks a free one).
    pub address: String,
    /// Bytes of batches retained per topic.
    pub retention_bytes: u64,
    /// Age after which retained batches are dropped.
    pub retention_ms: u64,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            enabled: true,
            // 8815 is the port Arrow Flight examples conventionally use.
            address: "127.0.0.1:8815".into(),
            retention_bytes: 256 * 1024 * 1024,
            retention_ms: 300_000,
        }
    }
}

/// The HTTP endpoint for Prometheus and health checks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve it at all.
    pub enabled: bool,
    /// Listen address (`host:port`; port 0 picks a free one).
    pub address: String,
    /// `/healthz` fails when the ingest loop has not polled for this long.
    pub stall_after_ms: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            // 9464 is the port OpenTelemetry's Prometheus exporter conventionally uses.
            address: "127.0.0.1:9464".into(),
            stall_after_ms: 30_000,
        }
    }
}

/// Log format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Text or JSON lines.
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `sluice=debug`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
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
        let cfg: Config = fig.extract()?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values that parse but cannot work, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: &str| {
            Err(ConfigError::Invalid {
                key: key.to_string(),
                reason: reason.to_string(),
            })
        };
        if self.kafka.brokers.trim().is_empty() {
            return bad("kafka.brokers", "must name at least one broker (host:port)");
        }
        if self.kafka.group_id.trim().is_empty() {
            return bad("kafka.group_id", "must not be empty");
        }
        if self.kafka.topics.is_empty() {
            return bad("kafka.topics", "must list at least one topic");
        }
        if let Some(t) = self.kafka.topics.iter().find(|t| t.trim().is_empty()) {
            return bad(
                "kafka.topics",
                &format!("contains an empty topic name {t:?}"),
            );
        }
        if self.kafka.queued_max_messages_kbytes == 0 {
            return bad("kafka.queued_max_messages_kbytes", "must be greater than 0");
        }
        if self.kafka.fetch_max_bytes == 0 {
            return bad("kafka.fetch_max_bytes", "must be greater than 0");
        }
        if self.kafka.max_partition_fetch_bytes == 0 {
            return bad("kafka.max_partition_fetch_bytes", "must be greater than 0");
        }
        for (prop, instead) in RESERVED_KAFKA_PROPERTIES {
            if self.kafka.properties.contains_key(*prop) {
                return bad(
                    &format!("kafka.properties.{prop}"),
                    &format!("is set by sluice; use {instead}"),
                );
            }
        }
        if self.lake.catalog.trim().is_empty() {
            return bad("lake.catalog", "must not be empty");
        }
        if self.lake.data_path.trim().is_empty() {
            return bad("lake.data_path", "must not be empty");
        }
        if self.lake.schema.trim().is_empty() {
            return bad("lake.schema", "must not be empty");
        }
        if self.lake.threads == Some(0) {
            return bad("lake.threads", "must be at least 1");
        }
        for (topic, table) in &self.tables.map {
            if table.trim().is_empty() {
                return bad(
                    &format!("tables.map.{topic}"),
                    "must not be an empty table name",
                );
            }
            if table.starts_with("sluice_") {
                return bad(
                    &format!("tables.map.{topic}"),
                    "must not start with `sluice_` (reserved for sluice's own tables)",
                );
            }
        }
        if self.tables.name_template.trim().is_empty() {
            return bad("tables.name_template", "must not be empty");
        }
        if self.flush.max_bytes == 0 {
            return bad("flush.max_bytes", "must be greater than 0");
        }
        if self.flush.max_rows == 0 {
            return bad("flush.max_rows", "must be greater than 0");
        }
        if self.flush.max_age_ms == 0 {
            return bad("flush.max_age_ms", "must be greater than 0");
        }
        if self.flush.memory_cap_bytes == 0 {
            return bad("flush.memory_cap_bytes", "must be greater than 0");
        }
        if self.flush.retry.attempts == 0 {
            return bad("flush.retry.attempts", "must be at least 1");
        }
        if self.flush.retry.initial_backoff_ms > self.flush.retry.max_backoff_ms {
            return bad(
                "flush.retry.initial_backoff_ms",
                "must not exceed flush.retry.max_backoff_ms",
            );
        }
        if self.flush.retry.conflict_attempts == 0 {
            return bad("flush.retry.conflict_attempts", "must be at least 1");
        }
        if self.flush.retry.conflict_initial_backoff_ms > self.flush.retry.conflict_max_backoff_ms {
            return bad(
                "flush.retry.conflict_initial_backoff_ms",
                "must not exceed flush.retry.conflict_max_backoff_ms",
            );
        }
        if self.live.enabled {
            if self.live.address.parse::<std::net::SocketAddr>().is_err() {
                return bad(
                    "live.address",
                    "must be host:port with a numeric IP, e.g. 127.0.0.1:8815",
                );
            }
            if self.live.retention_bytes == 0 {
                return bad("live.retention_bytes", "must be greater than 0");
            }
            if self.live.retention_ms == 0 {
                return bad("live.retention_ms", "must be greater than 0");
            }
        }
        if self.metrics.enabled {
            if self
                .metrics
                .address
                .parse::<std::net::SocketAddr>()
                .is_err()
            {
                return bad(
                    "metrics.address",
                    "must be host:port with a numeric IP, e.g. 127.0.0.1:9464",
                );
            }
            if self.metrics.stall_after_ms == 0 {
                return bad("metrics.stall_after_ms", "must be greater than 0");
            }
        }
        let budget = self.memory_budget();
        if budget.pending == 0 {
            return bad(
                "flush.memory_cap_bytes",
                &format!(
                    "({}) leaves nothing for pending data: the live ring reserves {} (live.retention_bytes × {} topics) and librdkafka's prefetch {} (kafka.queued_max_messages_kbytes + kafka.fetch_max_bytes); raise it or lower those",
                    mib(budget.total),
                    mib(budget.live),
                    self.kafka.topics.len(),
                    mib(budget.prefetch)
                ),
            );
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return bad("log.level", &format!("is not a valid filter: {e}"));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment's error type.
mod tests {
    use super::*;
    use figment::Jail;

    fn load_in_jail(toml: &str) -> Result<Config, ConfigError> {
        let mut out = None;
        Jail::expect_with(|jail| {
            jail.create_file("sluice.toml", toml)?;
            out = Some(Config::load(Some(Path::new("sluice.toml"))));
            Ok(())
        });
        out.unwrap()
    }

    #[test]
    fn file_then_env_layering() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "sluice.toml",
                r#"
                [kafka]
                brokers = "k1:9092"
                topics = ["events", "Page-Views"]
                [kafka.properties]
                "security.protocol" = "SASL_SSL"
                [flush]
                max_rows = 500
                "#,
            )?;
            jail.set_env("SLUICE_KAFKA__BROKERS", "k2:9092");
            jail.set_env("SLUICE_FLUSH__RETRY__ATTEMPTS", "3");
            let cfg = Config::load(Some(Path::new("sluice.toml"))).unwrap();
            assert_eq!(cfg.kafka.brokers, "k2:9092");
            assert_eq!(cfg.kafka.topics, vec!["events", "Page-Views"]);
            assert_eq!(cfg.flush.max_rows, 500);
            assert_eq!(cfg.flush.retry.attempts, 3);
            assert_eq!(cfg.flush.max_bytes, 128 * 1024 * 1024);
            assert_eq!(
                cfg.kafka
                    .properties
                    .get("security.protocol")
                    .map(String::as_str),
                Some("SASL_SSL")
            );
            assert_eq!(cfg.tables.table_for("Page-Views"), "page_views");
            Ok(())
        });
    }

    #[test]
    fn unknown_key_in_file_is_named() {
        let err = load_in_jail("[kafka]\ntopics=[\"a\"]\nbrokerz = \"x\"\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("unknown field: found `brokerz`"), "{text}");
        assert!(text.contains("kafka.brokerz"), "{text}");
    }

    #[test]
    fn unknown_section_is_named() {
        let err = load_in_jail("[kafak]\ntopics=[\"a\"]\n").unwrap_err();
        assert!(
            err.to_string().contains("unknown field: found `kafak`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_env_key_is_named() {
        Jail::expect_with(|jail| {
            jail.set_env("SLUICE_KAFKA__TOPICS", "[\"a\"]");
            jail.set_env("SLUICE_FLUSH__MAX_BYTEZ", "5");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("unknown field: found `max_bytez`"), "{err}");
            assert!(err.contains("SLUICE_"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn bad_value_type_is_named() {
        let err =
            load_in_jail("[kafka]\ntopics=[\"a\"]\n[flush]\nmax_rows = \"many\"\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("flush.max_rows"), "{text}");
        assert!(
            text.contains("invalid type: found string \"many\""),
            "{text}"
        );
    }

    #[test]
    fn bad_enum_value_is_named() {
        let err = load_in_jail("[kafka]\ntopics=[\"a\"]\nstart_from = \"middle\"\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("kafka.start_from"), "{text}");
        assert!(text.contains("unknown variant: found `middle`"), "{text}");
    }

    #[test]
    fn validation_names_the_key() {
        let cases = [
            (
                "[kafka]\ntopics=[]\n",
                "`kafka.topics` must list at least one topic",
            ),
            (
                "[kafka]\ntopics=[\"a\"]\n[flush]\nmax_bytes=0\n",
                "`flush.max_bytes` must be greater than 0",
            ),
            (
                "[kafka]\ntopics=[\"a\"]\n[kafka.properties]\n\"enable.auto.commit\"=\"true\"\n",
                "`kafka.properties.enable.auto.commit` is set by sluice",
            ),
            (
                "[kafka]\ntopics=[\"a\"]\n[flush.retry]\nattempts=0\n",
                "`flush.retry.attempts` must be at least 1",
            ),
            (
                "[kafka]\ntopics=[\"a\"]\n[tables.map]\na=\"sluice_x\"\n",
                "`tables.map.a` must not start with `sluice_`",
            ),
            (
                "[kafka]\ntopics=[\"a\"]\n[log]\nlevel=\"[[\"\n",
                "`log.level` is not a valid filter",
            ),
        ];
        for (toml, want) in cases {
            let err = load_in_jail(toml).unwrap_err().to_string();
            assert!(err.contains(want), "for {toml:?}: got {err}, want {want}");
        }
    }

    #[test]
    fn the_memory_budget_reserves_live_retention_and_prefetch() {
        let mut cfg = Config::default();
        cfg.kafka.topics = vec!["a".into(), "b".into()];
        const MIB: u64 = 1024 * 1024;
        // Defaults: 1024 MiB budget; 256 MiB live per topic; 64 MiB queue + 50 MiB fetch.
        assert_eq!(
            cfg.memory_budget(),
            MemoryBudget {
                total: 1024 * MIB,
                live: 512 * MIB,
                prefetch: 64 * MIB + 52_428_800,
                pending: 1024 * MIB - 512 * MIB - 64 * MIB - 52_428_800,
            }
        );
        cfg.live.enabled = false;
        assert_eq!(cfg.memory_budget().live, 0);
        cfg.live.enabled = true;
        cfg.kafka.topics.extend(["c".into(), "d".into()]);
        assert_eq!(
            cfg.validate().unwrap_err().to_string(),
            "configuration error: `flush.memory_cap_bytes` (1024 MiB) leaves nothing for pending \
             data: the live ring reserves 1024 MiB (live.retention_bytes × 4 topics) and \
             librdkafka's prefetch 114 MiB (kafka.queued_max_messages_kbytes + \
             kafka.fetch_max_bytes); raise it or lower those"
        );
    }

    #[test]
    fn s3_settings_fall_back_to_the_aws_environment() {
        let env = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some("env-key".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("env-secret".to_string()),
            "AWS_DEFAULT_REGION" => Some("eu-west-1".to_string()),
            "AWS_ENDPOINT_URL" => Some("http://minio:9000/".to_string()),
            _ => None,
        };
        let r = S3Config::default().resolve(env);
        assert_eq!(
            r,
            S3Resolved {
                endpoint: Some("minio:9000".into()),
                region: Some("eu-west-1".into()),
                url_style: UrlStyle::Path,
                use_ssl: false,
                access_key_id: Some("env-key".into()),
                secret_access_key: Some(Secret::new("env-secret")),
                session_token: None,
            }
        );
        // Configured values win; no endpoint means AWS: vhost style over HTTPS.
        let cfg = S3Config {
            region: Some("us-east-2".into()),
            access_key_id: Some("cfg-key".into()),
            ..Default::default()
        };
        let r = cfg.resolve(|_| None);
        assert_eq!(
            (r.endpoint, r.region.as_deref(), r.url_style, r.use_ssl),
            (None, Some("us-east-2"), UrlStyle::Vhost, true)
        );
        assert_eq!(r.access_key_id.as_deref(), Some("cfg-key"));
        assert_eq!(format!("{:?}", Secret::new("x")), "\"***\"");
    }

    #[test]
    fn missing_file_is_named() {
        let err = Config::load(Some(Path::new("/nonexistent/sluice.toml"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration error: config file /nonexistent/sluice.toml does not exist"
        );
    }

    #[test]
    fn the_example_config_is_valid_and_matches_the_defaults() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/sluice.example.toml"));
        let mut out = None;
        Jail::expect_with(|_| {
            out = Some(Config::load(Some(path)));
            Ok(())
        });
        let cfg = out.unwrap().unwrap();
        let mut want = Config::default();
        want.kafka.topics = vec!["events".into()];
        assert_eq!(cfg, want);
    }

    #[test]
    fn table_names_follow_the_map_then_the_template() {
        let mut t = TablesConfig::default();
        assert_eq!(t.table_for("Web.Events"), "web_events");
        t.name_template = "raw_{topic}_v1".into();
        t.map.insert("orders".into(), "Orders Table".into());
        assert_eq!(t.table_for("Web.Events"), "raw_web_events_v1");
        assert_eq!(t.table_for("orders"), "Orders Table");
        t.name_template = "{topic}".into();
        // Never one of sluice's own tables.
        assert_eq!(t.table_for("sluice_offsets"), "t_sluice_offsets");
        assert!(is_topic_pattern("^events_.*") && !is_topic_pattern("events"));
    }

    #[test]
    fn table_names_from_topics() {
        assert_eq!(table_name_from_topic("events"), "events");
        assert_eq!(table_name_from_topic("Web.Events-v2"), "web_events_v2");
        assert_eq!(table_name_from_topic("2024events"), "t_2024events");
        assert_eq!(table_name_from_topic("ü"), "_");
    }
}
