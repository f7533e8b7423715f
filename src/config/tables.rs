//! `[tables]`: which lake table each topic's batches go to, and the Kafka metadata columns.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};

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

impl TablesConfig {
    /// Checks the `[tables]` keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (topic, table) in &self.map {
            let key = format!("tables.map.{topic}");
            if table.trim().is_empty() {
                return Err(invalid(key, "must not be an empty table name"));
            }
            if table.starts_with("sluice_") {
                return Err(invalid(
                    key,
                    "must not start with `sluice_` (reserved for sluice's own tables)",
                ));
            }
        }
        if self.name_template.trim().is_empty() {
            return Err(invalid("tables.name_template", "must not be empty"));
        }
        Ok(())
    }
}
