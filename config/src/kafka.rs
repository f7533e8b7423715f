//! `[kafka]`: the consumer. Everything sluice knows about librdkafka's properties is here: the
//! ones it sets from its own keys (and forbids in `kafka.properties`), and the defaults it
//! changes.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};

/// Where a partition starts when the lake holds no offset for it yet.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    /// The oldest message the broker still has (like `auto.offset.reset=earliest`).
    Earliest,
    /// Only messages produced after the partition is assigned.
    Latest,
}

/// What happens when a partition's lake offset is outside what the broker holds: above the high
/// watermark (the topic was deleted and created again, or truncated) or below the low watermark
/// (retention deleted messages sluice had not read).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnOffsetGap {
    /// Stop with an error naming topic, partition, lake offset and watermarks; offsets unmoved
    /// (move them with `sluice offsets set`, or choose a policy, then start again).
    Fail,
    /// Move the lake offset to the low watermark (re-read a recreated topic from its start;
    /// after retention, read what is left) in a lake transaction, and log what was skipped.
    Earliest,
    /// Move the lake offset to the high watermark (skip everything the broker holds now), in a
    /// lake transaction, and log what was skipped.
    Latest,
}

impl OnOffsetGap {
    /// The value as written in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            OnOffsetGap::Fail => "fail",
            OnOffsetGap::Earliest => "earliest",
            OnOffsetGap::Latest => "latest",
        }
    }
}

/// Kafka settings. Any librdkafka property can be given in `properties`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// `group.id`; also the key of this pipeline's offsets in the lake.
    pub group_id: String,
    /// Topics to consume: at least one (there is no default). An entry starting with `^` is a
    /// regular expression (e.g. `"^web\\..*"`): every matching topic is consumed, including ones
    /// created later (found at metadata refresh, `topic.metadata.refresh.interval.ms`). The
    /// memory budget reserves live retention for each entry, so a pattern counts as one topic
    /// there.
    #[schemars(example = EXAMPLE_TOPICS)]
    pub topics: Vec<String>,
    /// Where a partition starts when the lake has no offset for it yet.
    pub start_from: StartFrom,
    /// What to do with a lake offset outside the broker's watermarks (the topic was deleted and
    /// recreated, or retention deleted messages not yet read), checked at assignment and when a
    /// fetch is out of range.
    pub on_offset_gap: OnOffsetGap,
    /// librdkafka `queued.max.messages.kbytes` (its default): prefetch bound per partition
    /// queue. Part of the memory budget (`flush.memory_cap_bytes`).
    pub queued_max_messages_kbytes: u64,
    /// librdkafka `fetch.max.bytes` (its default): bytes one fetch request may return. Part of
    /// the memory budget (`flush.memory_cap_bytes`).
    pub fetch_max_bytes: u64,
    /// librdkafka `max.partition.fetch.bytes` (its default): bytes one fetch may return per
    /// partition.
    pub max_partition_fetch_bytes: u64,
    /// Copy every payload once into an aligned buffer before decoding it, and release
    /// librdkafka's message at once. Off by default: payloads are decoded in place, except
    /// those of a schema of mostly fixed-width columns, which sluice copies on its own once a
    /// payload of it had more than half its bytes realigned (librdkafka places most payloads
    /// at addresses that break 8-byte alignment, so arrow-rs copies those buffers anyway, and
    /// batches decoded in place keep librdkafka's whole fetch buffers alive until their flush
    /// commits; FINDINGS.md, section 7, measures both settings).
    pub copy_payloads: bool,
    /// Any librdkafka property, passed through verbatim (SASL, SSL, timeouts, …); those sluice
    /// sets from its own keys (`bootstrap.servers`, `group.id`, `auto.offset.reset`, …) are
    /// rejected. sluice changes two librdkafka defaults, which these override:
    /// `statistics.interval.ms` 5000 (consumer lag for /metrics) and `fetch.queue.backoff.ms` 10
    /// (librdkafka's 1000 stalled each partition for a second whenever the memory cap held the
    /// loop for a flush; see FINDINGS.md). Property names hold dots, which an environment
    /// variable's name cannot carry as a key (`__` and `.` both nest): set them from the
    /// environment as one table, e.g. `SLUICE_KAFKA__PROPERTIES={"sasl.password"="…"}` (merged
    /// with this table; `"` and `\` in a value escaped with `\`).
    #[schemars(example = example_properties())]
    pub properties: BTreeMap<String, String>,
}

/// `kafka.topics` as `sluice config --defaults` shows it. (The examples are constants and
/// functions, not literals in the attribute: schemars' derive parses array expressions only with
/// syn's `full` feature, which a build of this crate alone does not enable.)
const EXAMPLE_TOPICS: [&str; 1] = ["events"];

/// `kafka.properties` as `sluice config --defaults` shows them: SASL over TLS.
fn example_properties() -> BTreeMap<String, String> {
    [
        ("security.protocol", "SASL_SSL"),
        ("sasl.mechanisms", "SCRAM-SHA-512"),
        ("sasl.username", "sluice"),
        ("sasl.password", "…"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The group id when none is configured.
fn default_group_id() -> String {
    "sluice".to_string()
}

/// librdkafka's own default of `queued.max.messages.kbytes` (65536 KiB = 64 MiB); sluice
/// keeps it.
fn default_queued_max_messages_kbytes() -> u64 {
    65_536
}

/// librdkafka's own default of `fetch.max.bytes` (52428800 = 50 MiB).
fn default_fetch_max_bytes() -> u64 {
    52_428_800
}

/// librdkafka's own default of `max.partition.fetch.bytes` (1048576 = 1 MiB).
fn default_max_partition_fetch_bytes() -> u64 {
    1_048_576
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "localhost:9092".into(),
            group_id: default_group_id(),
            topics: Vec::new(),
            start_from: StartFrom::Earliest,
            on_offset_gap: OnOffsetGap::Fail,
            queued_max_messages_kbytes: default_queued_max_messages_kbytes(),
            fetch_max_bytes: default_fetch_max_bytes(),
            max_partition_fetch_bytes: default_max_partition_fetch_bytes(),
            copy_payloads: false,
            properties: BTreeMap::new(),
        }
    }
}

/// librdkafka properties that sluice sets itself, with what to use instead; giving them in
/// `kafka.properties` is an error. [`KafkaConfig::librdkafka_properties`] sets each.
pub const SET_BY_SLUICE: &[(&str, &str)] = &[
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
    (
        "auto.offset.reset",
        "kafka.start_from and kafka.on_offset_gap",
    ),
];

/// librdkafka properties whose defaults sluice changes; `kafka.properties` overrides them.
pub const DEFAULT_KAFKA_PROPERTIES: &[(&str, &str)] = &[
    // High watermarks (consumer lag) and broker states for the metrics endpoint.
    ("statistics.interval.ms", "5000"),
    // librdkafka's 1000 ms default postpones a partition's next fetch by a whole second once
    // its prefetch queue was full. sluice fills that queue by design whenever the memory cap
    // holds the loop for a flush (FINDINGS.md section 7 has the before/after numbers).
    ("fetch.queue.backoff.ms", "10"),
];

impl KafkaConfig {
    /// Every librdkafka property of sluice's consumer, in the order they are applied: those
    /// sluice sets ([`SET_BY_SLUICE`]), its changed defaults ([`DEFAULT_KAFKA_PROPERTIES`]),
    /// then `kafka.properties`.
    pub fn librdkafka_properties(&self) -> Vec<(String, String)> {
        let set: [(&str, String); 8] = [
            ("bootstrap.servers", self.brokers.clone()),
            ("group.id", self.group_id.clone()),
            ("enable.auto.commit", "false".into()),
            ("enable.auto.offset.store", "false".into()),
            (
                "queued.max.messages.kbytes",
                self.queued_max_messages_kbytes.to_string(),
            ),
            ("fetch.max.bytes", self.fetch_max_bytes.to_string()),
            (
                "max.partition.fetch.bytes",
                self.max_partition_fetch_bytes.to_string(),
            ),
            // sluice seeks every partition itself (to the lake's offset, or to the start
            // `kafka.start_from` names); a fetch out of range is reported to it instead of
            // being reset silently, and `kafka.on_offset_gap` decides.
            ("auto.offset.reset", "error".into()),
        ];
        debug_assert!(
            set.iter()
                .map(|(k, _)| k)
                .eq(SET_BY_SLUICE.iter().map(|(k, _)| k))
        );
        let mut out: Vec<(String, String)> =
            set.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        out.push(("enable.partition.eof".into(), "false".into()));
        out.extend(
            DEFAULT_KAFKA_PROPERTIES
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        out.extend(self.properties.iter().map(|(k, v)| (k.clone(), v.clone())));
        out
    }

    /// Checks the `[kafka]` keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.brokers.trim().is_empty() {
            return Err(invalid(
                "kafka.brokers",
                "must name at least one broker (host:port)",
            ));
        }
        if self.group_id.trim().is_empty() {
            return Err(invalid("kafka.group_id", "must not be empty"));
        }
        if self.topics.is_empty() {
            return Err(invalid("kafka.topics", "must list at least one topic"));
        }
        if let Some(t) = self.topics.iter().find(|t| t.trim().is_empty()) {
            return Err(invalid(
                "kafka.topics",
                format!("contains an empty topic name {t:?}"),
            ));
        }
        for (key, v) in [
            (
                "kafka.queued_max_messages_kbytes",
                self.queued_max_messages_kbytes,
            ),
            ("kafka.fetch_max_bytes", self.fetch_max_bytes),
            (
                "kafka.max_partition_fetch_bytes",
                self.max_partition_fetch_bytes,
            ),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        for (prop, instead) in SET_BY_SLUICE {
            if self.properties.contains_key(*prop) {
                return Err(invalid(
                    format!("kafka.properties.{prop}"),
                    format!("is set by sluice; use {instead}"),
                ));
            }
        }
        Ok(())
    }
}
