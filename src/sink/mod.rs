//! `sink`: DuckDB + DuckLake. One [`Lake::commit`] is one DuckLake transaction holding a table's
//! data, the next offset of every partition it covers (conditional on the previous value) and
//! the quarantined payloads of those partitions.
//!
//! - [`attach`]: opening DuckDB, attaching the lake (S3 secret, catalog kinds), scrubbing
//!   credentials from errors.
//! - [`offsets`]: sluice's offsets table and the conditional update that makes a range commit
//!   exactly once.
//! - [`schema`]: whether batches fit a table, as a typed [`Misfit`].
//! - [`evolve`]: the column changes (added, widened) a commit applies with its rows.
//! - [`options`]: table partitioning, sort order and Parquet settings.
//! - [`commit`]: the one transaction of a flush.
//! - [`contents`]: what a table holds (rows, data files, inlined rows).
//! - [`maintain`]: compaction, snapshot expiry and file clean-up through DuckLake's functions,
//!   and the lease that lets one instance run them.
//! - [`quarantine`]: sluice's quarantine table and the batch of rejected payloads.
//! - [`duck`] and [`ffi_stream`]: the DuckDB C API and the Arrow C stream (all `unsafe`).

pub mod attach;
pub mod coalesce;
mod commit;
mod contents;
pub mod duck;
pub mod evolve;
pub mod ffi_stream;
mod maintain;
mod offsets;
mod options;
mod quarantine;
mod schema;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use arrow::array::RecordBatch;
use arrow::error::ArrowError;

use crate::config::{LakeConfig, RetryConfig, SchemaEvolution, TablesConfig};
use crate::retry::Backoff;
use crate::source::MessageMeta;
pub use attach::{is_s3, redact, scrub};
pub use contents::TableContents;
use duck::{Connection, Database, DuckError, ident};
pub use evolve::Change;
pub use maintain::{Deleted, LakeTable, LeaseState, Rewritten};
pub use offsets::OffsetRow;
pub use schema::{Column, Fit, Misfit, Problem};

/// Name under which the lake is attached inside sluice's DuckDB.
pub const LAKE_ALIAS: &str = "lake";
/// sluice's offsets table (inside the lake).
pub const OFFSETS_TABLE: &str = "sluice_offsets";
/// sluice's quarantine table (inside the lake).
pub const QUARANTINE_TABLE: &str = "sluice_quarantine";
/// sluice's maintenance lease table (inside the lake): one row saying which instance maintains
/// the lake until when.
pub const LEASE_TABLE: &str = "sluice_maintenance_lease";
/// Offset value stored for a partition registered but never committed.
pub const NO_OFFSET: i64 = -1;

/// Errors of the sink. `OffsetConflict` and `CommitConflict` steer the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A DuckDB statement failed (lake unreachable, bad data path, …).
    #[error("{context}: {source}")]
    Duck {
        /// What sluice was doing.
        context: String,
        /// DuckDB's error.
        source: DuckError,
    },
    /// Another writer committed one of these partitions since we read its offset: our range was
    /// not committed. Each entry is (partition, the lake's current next offset).
    #[error(
        "offset conflict on topic {topic}: partitions {partitions:?} were committed by another writer"
    )]
    OffsetConflict {
        /// Topic of the partitions.
        topic: String,
        /// (partition, next offset now in the lake).
        partitions: Vec<(i32, i64)>,
    },
    /// DuckLake rejected the commit because a concurrent transaction touched the same tables;
    /// the whole transaction can be retried.
    #[error("commit conflict on table {table}: {message}")]
    CommitConflict {
        /// Table being flushed.
        table: String,
        /// DuckLake's message.
        message: String,
    },
    /// The table changed since the batches were checked (another writer) in a way they do not
    /// fit; none of the flush's rows were committed.
    #[error(transparent)]
    Schema(#[from] Misfit),
    /// Exporting batches to DuckDB failed.
    #[error("arrow export for table {table}: {source}")]
    Arrow {
        /// Table being flushed.
        table: String,
        /// arrow-rs's error.
        source: ArrowError,
    },
}

fn duck(context: impl Into<String>) -> impl FnOnce(DuckError) -> SinkError {
    move |source| SinkError::Duck {
        context: context.into(),
        source,
    }
}

/// The offsets a flush moves for one partition: from `prev` (as read from the lake) to `next`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetUpdate {
    /// Kafka topic.
    pub topic: Arc<str>,
    /// Kafka partition.
    pub partition: i32,
    /// The lake's next offset when we read it ([`NO_OFFSET`] if never committed).
    pub prev: i64,
    /// Next offset to consume after this flush.
    pub next: i64,
}

/// A payload that could not be ingested.
#[derive(Debug, Clone)]
pub struct QuarantineRow {
    /// The Kafka message it came in.
    pub meta: MessageMeta,
    /// Why it was rejected.
    pub error: String,
    /// The raw message value.
    pub payload: arrow::buffer::Buffer,
}

/// Everything one flush of one table commits.
pub struct TableFlush<'a> {
    /// Lake table name (unquoted).
    pub table: &'a str,
    /// Data, in order; consecutive batches of equal schema share one Arrow stream.
    pub batches: &'a [RecordBatch],
    /// Rejected payloads of the partitions covered.
    pub quarantine: &'a [QuarantineRow],
    /// Offsets moved by this flush.
    pub offsets: &'a [OffsetUpdate],
}

/// What a successful commit wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitReport {
    /// Rows inserted into the table.
    pub rows: u64,
    /// Payloads quarantined.
    pub quarantined: u64,
    /// Parquet files the commit added (0 when the rows were inlined in the catalog).
    pub files: u64,
    /// Their bytes.
    pub file_bytes: u64,
    /// Small batches joined on their way to DuckDB, and the bytes copied to join them.
    pub coalesced: coalesce::Coalesced,
    /// Column changes the commit made to the table before its rows (schema evolution).
    pub changes: Vec<Change>,
}

/// Called by every commit of a handle after the flush's data is written and before `COMMIT`,
/// with the table's name: the seam crash and hold-open tests inject faults through. Production
/// code never installs one.
pub type CommitHook = Arc<dyn Fn(&str) + Send + Sync>;

/// A DuckLake attached in an in-memory DuckDB.
pub struct Lake {
    conn: Connection,
    schema: String,
    group: String,
    tables: HashMap<String, schema::TableInfo>,
    /// DuckDB's columns of each Arrow schema seen.
    described: schema::Described,
    /// Whether a table takes new columns and widenings (see [`Lake::set_schema_evolution`]).
    evolution: SchemaEvolution,
    /// Widenings committed (in their own transaction) but not yet in a [`CommitReport`]: the
    /// next successful commit of this handle reports them.
    unreported: Vec<(String, Change)>,
    /// Table options (see [`Lake::set_tables`]).
    tables_config: Arc<TablesConfig>,
    /// Tables whose options this handle has applied.
    options_applied: HashSet<String>,
    /// Bytes a Parquet row group should hold (`LakeConfig::row_group_bytes`, from the memory
    /// limit); `None` leaves DuckLake's row groups as configured.
    row_group_bytes: Option<u64>,
    /// Bytes per row of each table's first flush through this handle while
    /// `row_group_bytes` is set: what [`Lake::options_of`] derives a row group size from.
    row_sizes: HashMap<String, u64>,
    /// How transactions that lost to a concurrent one are retried (partition registration,
    /// creating sluice's tables, initialising the catalog).
    conflicts: Backoff,
    /// See [`CommitHook`].
    commit_hook: Option<CommitHook>,
    /// Prefix of this handle's Arrow views. Views live in the DuckDB instance's in-memory
    /// catalog, shared by all its connections, so each handle needs its own names.
    view_prefix: String,
    /// Serializes the write transactions of this process's handles on one SQLite catalog (see
    /// [`Lake::write_turn`]); `None` for the other catalog kinds.
    writes: Option<Arc<Mutex<()>>>,
}

fn view_prefix() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "sluice_view_{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

impl Lake {
    /// Opens DuckDB, loads the ducklake extension, attaches the lake and creates sluice's own
    /// tables if needed. `group` is the consumer group whose offsets this lake handle moves.
    /// Lost races with other instances are retried with the default conflict policy (see
    /// [`Lake::open_with`]).
    pub fn open(cfg: &LakeConfig, group: &str) -> Result<Lake, SinkError> {
        Self::open_with(cfg, group, Backoff::conflicts(&RetryConfig::default()))
    }

    /// Installs (or removes) this handle's [`CommitHook`]; handles made from it by
    /// [`Lake::another`] inherit it.
    pub fn set_commit_hook(&mut self, hook: Option<CommitHook>) {
        self.commit_hook = hook;
    }

    /// Sets how batches whose schema differs from their table's are treated (default
    /// [`SchemaEvolution::Evolve`]); handles made from it by [`Lake::another`] inherit it.
    pub fn set_schema_evolution(&mut self, evolution: SchemaEvolution) {
        self.evolution = evolution;
        self.tables.clear();
    }

    /// Takes the `[tables]` settings this handle needs: schema evolution and the table options
    /// (applied with a table's creation or before this handle's first commit to it). Handles
    /// made from it by [`Lake::another`] inherit them.
    pub fn set_tables(&mut self, tables: &TablesConfig) {
        self.set_schema_evolution(tables.schema_evolution);
        self.tables_config = Arc::new(tables.clone());
        self.options_applied.clear();
    }

    /// Forgets what this handle knows of `table` (its columns, the verdicts of the schemas
    /// seen): the next check reads it from the lake again.
    pub fn forget_table(&mut self, table: &str) {
        self.tables.remove(table);
    }

    /// The consumer group whose offsets this handle reads and commits.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// A second handle on the same attached lake (its own connection and transactions).
    pub fn another(&self, group: &str) -> Result<Lake, SinkError> {
        let conn = self
            .conn
            .database()
            .connect()
            .map_err(duck("connect to DuckDB"))?;
        Ok(Lake {
            conn,
            schema: self.schema.clone(),
            group: group.to_string(),
            tables: HashMap::new(),
            described: schema::Described::default(),
            evolution: self.evolution,
            unreported: Vec::new(),
            tables_config: self.tables_config.clone(),
            options_applied: HashSet::new(),
            row_group_bytes: self.row_group_bytes,
            row_sizes: HashMap::new(),
            conflicts: self.conflicts,
            commit_hook: self.commit_hook.clone(),
            view_prefix: view_prefix(),
            writes: self.writes.clone(),
        })
    }

    /// Waits for this process's turn to write to a SQLite catalog. SQLite lets one connection
    /// write at a time, and DuckLake holds the catalog's SQLite transaction from the first
    /// statement of a DuckLake transaction to its commit: a connection that read the catalog
    /// while another one committed cannot upgrade to writing and fails at once with `database
    /// is locked`, without waiting for the busy timeout (duckdb/ducklake #1309; its fix, PR
    /// #1420, is not in DuckDB 1.5.5's ducklake). Within one process sluice's handles
    /// (the flush thread's commits, partition registration on assignment) therefore take turns.
    /// A PostgreSQL or DuckDB-file catalog takes concurrent transactions and needs no turn.
    fn write_turn(&self) -> Option<MutexGuard<'_, ()>> {
        self.writes.as_deref().map(crate::sync::lock)
    }

    /// The DuckDB database (for read-side queries through the duckdb crate).
    pub fn database(&self) -> &Arc<Database> {
        self.conn.database()
    }

    /// Runs SQL on this handle's connection (read-side helpers, tests, `sluice check`).
    pub fn query_rows(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, SinkError> {
        Ok(self.conn.query(sql).map_err(duck("query"))?.rows())
    }

    /// Fully qualified, quoted name of a lake table.
    pub fn qualified(&self, table: &str) -> String {
        format!("{}.{}.{}", LAKE_ALIAS, ident(&self.schema), ident(table))
    }
}

#[cfg(test)]
mod evolve_tests;
#[cfg(test)]
mod tests;
