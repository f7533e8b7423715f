//! `[tables]`: which lake table each topic's batches go to, and the Kafka metadata columns.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};

/// Which Kafka metadata columns are added to every row.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetadataColumns {
    /// `_kafka_partition INTEGER`.
    pub partition: bool,
    /// `_kafka_offset BIGINT`.
    pub offset: bool,
    /// `_kafka_batch INTEGER`: the index of the row's record batch within its message (0 in a
    /// message of one batch). With `partition` and `offset`, a row's exact Kafka position:
    /// Flight reads from positions older than the live ring read the lake by it.
    pub batch: bool,
    /// `_kafka_timestamp TIMESTAMP WITH TIME ZONE` (milliseconds).
    pub timestamp: bool,
    /// `_kafka_key BLOB`.
    pub key: bool,
}

/// What happens when a message's schema differs from its table's.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SchemaEvolution {
    /// Added columns are added to the table and lossless numeric widenings (int8→16→32→64,
    /// the same unsigned, float→double, …) widen its column, in the transaction of the rows;
    /// columns a message lacks get NULLs. Other changes are quarantined.
    #[default]
    Evolve,
    /// A message must have exactly the table's columns and types (in any order); anything else
    /// is quarantined.
    Strict,
}

/// Topic → table mapping.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TablesConfig {
    /// Topic → table, for the topics whose table is not the one `name_template` derives.
    #[schemars(example = example_map())]
    pub map: BTreeMap<String, String>,
    /// Table name of a topic not in `[tables.map]`: `{topic}` is replaced by the topic name,
    /// then the result is made an identifier (lowercase ASCII letters, digits, `_`).
    pub name_template: String,
    /// Kafka metadata columns added to every row.
    pub metadata: MetadataColumns,
    /// What happens when a message's schema differs from its table's (a change neither value
    /// takes is quarantined either way).
    pub schema_evolution: SchemaEvolution,
    /// How tables are laid out and written: DuckLake's partitioning and sort order and its
    /// Parquet settings, for every table (here) and per table (`[tables.options."<table>"]`,
    /// over these). Unset keys leave the table as DuckLake has it. Applied when sluice creates
    /// a table and again at each start (a changed value takes effect).
    pub defaults: TableOptions,
    /// Options of one table, over `[tables.defaults]`: `[tables.options."<table>"]` takes the
    /// keys of `[tables.defaults]`.
    #[schemars(example = example_options())]
    pub options: BTreeMap<String, TableOptions>,
}

/// How a lake table is laid out and written: DuckLake's partitioning and sort order, and the
/// Parquet settings DuckLake's `set_option` takes. Unset keys leave the table as it is (or as
/// the defaults say). Applied when sluice creates the table and again on each start.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TableOptions {
    /// `ALTER TABLE … SET PARTITIONED BY`: each entry a column (identity), `year(col)`,
    /// `month(col)`, `day(col)`, `hour(col)` or `bucket(N, col)`; `[]` removes partitioning.
    #[schemars(example = EXAMPLE_PARTITIONED_BY)]
    pub partition_by: Option<Vec<String>>,
    /// `ALTER TABLE … SET SORTED BY`: each entry `col [ASC|DESC] [NULLS FIRST|LAST]`.
    #[schemars(example = EXAMPLE_SORTED_BY)]
    pub sorted_by: Option<Vec<String>>,
    /// Parquet codec: uncompressed, snappy, gzip, zstd, brotli, lz4, lz4_raw. sluice's default
    /// is zstd (DuckLake's is snappy): in FINDINGS.md section 10 it stores half the bytes.
    #[schemars(example = &"zstd")]
    pub parquet_compression: Option<String>,
    /// Codec level, with zstd only (1–22); unset: DuckDB's, 3. Level 2 wrote no more bytes than
    /// 3 and took 8–20% less CPU per GB (README.md, "Tables tuned for how they are queried"),
    /// but a level set on a table cannot be unset: the table keeps zstd for good.
    #[schemars(example = 2)]
    pub parquet_compression_level: Option<i64>,
    /// Rows per Parquet row group; unset: DuckDB's 122,880, or under `memory.limit_bytes` the
    /// rows that fit its row-group share.
    #[schemars(example = 122_880)]
    pub parquet_row_group_size: Option<u64>,
    /// Target data file size for inserts and compaction, e.g. `"512MB"`.
    #[schemars(example = &"512MB")]
    pub target_file_size: Option<String>,
    /// A flush of at most this many rows is inlined: kept in the catalog instead of written as
    /// a Parquet file, until maintenance moves the inlined rows into one file. Lets a low-rate
    /// topic flush every second without a file per second; `0` writes every flush as Parquet.
    /// Unset in `[tables.defaults]`: 1,000 on PostgreSQL and DuckDB-file catalogs, 0 on SQLite
    /// (README: its readers).
    #[schemars(example = 1000)]
    pub data_inlining_row_limit: Option<u64>,
}

impl TableOptions {
    /// These options with the unset ones taken from `defaults`.
    pub fn over(&self, defaults: &TableOptions) -> TableOptions {
        TableOptions {
            partition_by: self
                .partition_by
                .clone()
                .or_else(|| defaults.partition_by.clone()),
            sorted_by: self
                .sorted_by
                .clone()
                .or_else(|| defaults.sorted_by.clone()),
            parquet_compression: self
                .parquet_compression
                .clone()
                .or_else(|| defaults.parquet_compression.clone()),
            parquet_compression_level: self
                .parquet_compression_level
                .or(defaults.parquet_compression_level),
            parquet_row_group_size: self
                .parquet_row_group_size
                .or(defaults.parquet_row_group_size),
            target_file_size: self
                .target_file_size
                .clone()
                .or_else(|| defaults.target_file_size.clone()),
            data_inlining_row_limit: self
                .data_inlining_row_limit
                .or(defaults.data_inlining_row_limit),
        }
    }

    /// Whether any option is set.
    pub fn is_empty(&self) -> bool {
        self == &TableOptions::default()
    }

    /// The `ducklake_set_option` settings among these: (option, SQL literal of its value).
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(c) = &self.parquet_compression {
            out.push((
                "parquet_compression",
                format!("'{}'", c.to_ascii_lowercase()),
            ));
        }
        if let Some(l) = self.parquet_compression_level {
            out.push(("parquet_compression_level", l.to_string()));
        }
        if let Some(n) = self.parquet_row_group_size {
            out.push(("parquet_row_group_size", n.to_string()));
        }
        if let Some(s) = &self.target_file_size {
            out.push(("target_file_size", format!("'{}'", s.trim())));
        }
        if let Some(n) = self.data_inlining_row_limit {
            out.push(("data_inlining_row_limit", n.to_string()));
        }
        out
    }

    fn validate(&self, key: &str) -> Result<(), ConfigError> {
        for (i, e) in self.partition_by.iter().flatten().enumerate() {
            PartitionField::parse(e).map_err(|m| invalid(format!("{key}.partition_by[{i}]"), m))?;
        }
        for (i, e) in self.sorted_by.iter().flatten().enumerate() {
            SortField::parse(e).map_err(|m| invalid(format!("{key}.sorted_by[{i}]"), m))?;
        }
        if let Some(c) = &self.parquet_compression
            && !PARQUET_CODECS.contains(&c.to_ascii_lowercase().as_str())
        {
            return Err(invalid(
                format!("{key}.parquet_compression"),
                format!("{c:?} is not one of {}", PARQUET_CODECS.join(", ")),
            ));
        }
        if let Some(l) = self.parquet_compression_level
            && !(1..=22).contains(&l)
        {
            return Err(invalid(
                format!("{key}.parquet_compression_level"),
                format!("{l} is not a zstd level (1 to 22)"),
            ));
        }
        if self.parquet_row_group_size == Some(0) {
            return Err(invalid(
                format!("{key}.parquet_row_group_size"),
                "must be at least 1",
            ));
        }
        if let Some(s) = &self.target_file_size
            && parse_size(s).is_none()
        {
            return Err(invalid(
                format!("{key}.target_file_size"),
                format!("{s:?} is not a size like \"512MB\", \"1GiB\" or \"1000000\""),
            ));
        }
        Ok(())
    }
}

/// `tables.map`, `partitioned_by` and `sorted_by` as `sluice config --defaults` shows them
/// (constants and functions: see `kafka::EXAMPLE_TOPICS`).
fn example_map() -> BTreeMap<String, String> {
    BTreeMap::from([("web.events-v2".to_string(), "web_events".to_string())])
}
const EXAMPLE_PARTITIONED_BY: [&str; 2] = ["year(timestamp)", "month(timestamp)"];
const EXAMPLE_SORTED_BY: [&str; 1] = ["timestamp"];

/// `tables.options` as `sluice config --defaults` shows them: one table partitioned by day.
fn example_options() -> BTreeMap<String, TableOptions> {
    let events = TableOptions {
        partition_by: Some(vec!["day(timestamp)".into()]),
        ..TableOptions::default()
    };
    [("events".to_string(), events)].into_iter().collect()
}

/// The Parquet codecs DuckLake's `parquet_compression` takes.
pub const PARQUET_CODECS: [&str; 7] = [
    "uncompressed",
    "snappy",
    "gzip",
    "zstd",
    "brotli",
    "lz4",
    "lz4_raw",
];

/// Bytes of a size such as `512MB`, `1GiB`, `1000000` (DuckDB's units).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..split].parse().ok()?;
    let unit = s[split..].trim().to_ascii_lowercase();
    let mult: u64 = match unit.as_str() {
        "" | "b" | "bytes" => 1,
        "kb" => 1000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// A column name as the options take it: ASCII letters, digits and `_`, not starting with a
/// digit (other names can be renamed with a view; they are quoted anyway).
fn column_name(s: &str) -> Option<&str> {
    let s = s.trim();
    let mut chars = s.chars();
    let first = chars.next()?;
    ((first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_'))
    .then_some(s)
}

/// One entry of `partition_by`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionField {
    /// The column's value.
    Identity(String),
    /// `year`, `month`, `day` or `hour` of a timestamp or date column.
    Time(&'static str, String),
    /// `bucket(N, col)`: Iceberg's murmur3 hash modulo N.
    Bucket(u32, String),
}

impl PartitionField {
    /// Parses `col`, `year(col)`, `month(col)`, `day(col)`, `hour(col)` or `bucket(N, col)`.
    pub fn parse(e: &str) -> Result<PartitionField, String> {
        let bad = || {
            format!(
                "{e:?} is not a partition expression: use a column name, year(col), month(col), day(col), hour(col) or bucket(N, col)"
            )
        };
        let e_trim = e.trim();
        if let Some(c) = column_name(e_trim) {
            return Ok(PartitionField::Identity(c.to_string()));
        }
        let (func, rest) = e_trim.split_once('(').ok_or_else(bad)?;
        let args = rest.strip_suffix(')').ok_or_else(bad)?;
        let func = func.trim().to_ascii_lowercase();
        for t in ["year", "month", "day", "hour"] {
            if func == t {
                let c = column_name(args).ok_or_else(bad)?;
                return Ok(PartitionField::Time(t, c.to_string()));
            }
        }
        if func == "bucket" {
            let (n, c) = args.split_once(',').ok_or_else(bad)?;
            let n: u32 = n.trim().parse().ok().filter(|n| *n > 0).ok_or_else(bad)?;
            let c = column_name(c).ok_or_else(bad)?;
            return Ok(PartitionField::Bucket(n, c.to_string()));
        }
        Err(bad())
    }
}

/// One entry of `sorted_by`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortField {
    /// Column.
    pub column: String,
    /// Descending (else ascending).
    pub descending: bool,
    /// `Some(true)`: NULLS FIRST, `Some(false)`: NULLS LAST, `None`: DuckDB's default.
    pub nulls_first: Option<bool>,
}

impl SortField {
    /// Parses `col [ASC|DESC] [NULLS FIRST|NULLS LAST]`.
    pub fn parse(e: &str) -> Result<SortField, String> {
        let bad =
            || format!("{e:?} is not a sort key: use `col`, `col DESC`, `col ASC NULLS FIRST`, …");
        let words: Vec<String> = e.split_whitespace().map(str::to_ascii_uppercase).collect();
        let column = e
            .split_whitespace()
            .next()
            .and_then(column_name)
            .ok_or_else(bad)?
            .to_string();
        let mut f = SortField {
            column,
            descending: false,
            nulls_first: None,
        };
        let mut rest = &words[1..];
        if let Some(d) = rest.first().filter(|w| *w == "ASC" || *w == "DESC") {
            f.descending = d == "DESC";
            rest = &rest[1..];
        }
        match rest {
            [] => {}
            [n, w] if n == "NULLS" && (w == "FIRST" || w == "LAST") => {
                f.nulls_first = Some(w == "FIRST")
            }
            _ => return Err(bad()),
        }
        Ok(f)
    }
}

impl Default for TablesConfig {
    fn default() -> Self {
        TablesConfig {
            map: BTreeMap::new(),
            name_template: "{topic}".into(),
            metadata: MetadataColumns::default(),
            schema_evolution: SchemaEvolution::default(),
            defaults: TableOptions {
                // sluice's default, not DuckLake's (snappy): in FINDINGS.md section 10 zstd
                // writes 0.150 Parquet bytes per IPC byte against snappy's 0.281, for 23% less
                // catch-up throughput on 2 cores (a backlog only; a steady stream is far from
                // CPU-bound) and half the bytes stored and scanned for as long as the lake lives.
                parquet_compression: Some("zstd".into()),
                // Unset: the lake decides by catalog kind (`Lake::default_inlining_row_limit`:
                // 1,000 rows, or 0 on SQLite).
                ..TableOptions::default()
            },
            options: BTreeMap::new(),
        }
    }
}

impl TablesConfig {
    /// The options of `table`: its own over the defaults.
    pub fn options_for(&self, table: &str) -> TableOptions {
        self.options
            .get(table)
            .map_or_else(|| self.defaults.clone(), |o| o.over(&self.defaults))
    }

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

impl TablesConfig {
    /// Why the batches of topics `a` and `b` must not share a table: both land in one whose
    /// name the template derived for at least one of them (e.g. `a.b` and `a_b` both become
    /// `a_b`), which is an accident, not a choice. `None` when their tables differ, or when
    /// `[tables.map]` sends both to the same table on purpose.
    pub fn collision(&self, a: &str, b: &str) -> Option<String> {
        let table = self.table_for(a);
        if a == b || table != self.table_for(b) {
            return None;
        }
        if self.map.contains_key(a) && self.map.contains_key(b) {
            return None;
        }
        Some(format!(
            "topics {a:?} and {b:?} both go to table {table:?} (derived by \
             tables.name_template {:?}); map one of them to another table under [tables.map]",
            self.name_template
        ))
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
        self.defaults.validate("tables.defaults")?;
        for (table, o) in &self.options {
            o.validate(&format!("tables.options.{table}"))?;
        }
        // DuckDB's Parquet writer takes a level only with zstd (and a level set on a DuckLake
        // table cannot be unset again).
        let level_without_zstd = |o: &TableOptions| {
            o.parquet_compression_level.is_some()
                && !o
                    .parquet_compression
                    .as_deref()
                    .is_some_and(|c| c.eq_ignore_ascii_case("zstd"))
        };
        if level_without_zstd(&self.defaults) {
            return Err(invalid(
                "tables.defaults.parquet_compression_level",
                "is only supported with parquet_compression = \"zstd\"",
            ));
        }
        for (table, o) in &self.options {
            if level_without_zstd(&o.over(&self.defaults)) {
                return Err(invalid(
                    format!("tables.options.{table}.parquet_compression_level"),
                    "is only supported with parquet_compression = \"zstd\"",
                ));
            }
        }
        Ok(())
    }
}
