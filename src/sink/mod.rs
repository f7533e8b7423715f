//! `sink`: DuckDB + DuckLake. One [`Lake::commit`] is one DuckLake transaction holding a table's
//! data, the next offset of every partition it covers (conditional on the previous value) and
//! the quarantined payloads of those partitions.

pub mod duck;
pub mod ffi_stream;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;

use crate::config::{CatalogKind, LakeConfig};
use crate::source::MessageMeta;
use duck::{Connection, Database, DuckError, ident, literal};
use ffi_stream::BatchStream;

/// Name under which the lake is attached inside sluice's DuckDB.
pub const LAKE_ALIAS: &str = "lake";
/// sluice's offsets table (inside the lake).
pub const OFFSETS_TABLE: &str = "sluice_offsets";
/// sluice's quarantine table (inside the lake).
pub const QUARANTINE_TABLE: &str = "sluice_quarantine";
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
}

/// A column of a lake table: name and DuckDB type as DuckDB prints it.
pub type Column = (String, String);

#[derive(Default)]
struct TableInfo {
    /// Columns of the table in the lake, or of the first batch when it does not exist yet.
    columns: Option<Vec<Column>>,
    /// Whether the table exists in the lake (else it is created by the next flush).
    exists: bool,
    /// Verdicts per Arrow schema already seen: `Err` holds the mismatch text.
    verdicts: Vec<(SchemaRef, Result<(), String>)>,
}

/// A DuckLake attached in an in-memory DuckDB.
pub struct Lake {
    conn: Connection,
    schema: String,
    group: String,
    tables: HashMap<String, TableInfo>,
    /// Fault injection for crash tests: hold each commit open this long before `COMMIT`.
    commit_delay: Option<std::time::Duration>,
    /// Prefix of this handle's Arrow views. Views live in the DuckDB instance's in-memory
    /// catalog, shared by all its connections, so each handle needs its own names.
    view_prefix: String,
}

fn view_prefix() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "sluice_view_{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// Environment variable (outside the `SLUICE_` config namespace) that makes every flush wait
/// this many milliseconds between writing its data and committing: crash tests kill the
/// process inside that window.
pub const COMMIT_DELAY_ENV: &str = "SLUICETEST_COMMIT_DELAY_MS";

fn commit_delay_from_env() -> Option<std::time::Duration> {
    std::env::var(COMMIT_DELAY_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .map(std::time::Duration::from_millis)
}

impl Lake {
    /// Opens DuckDB, loads the ducklake extension, attaches the lake and creates sluice's own
    /// tables if needed. `group` is the consumer group whose offsets this lake handle moves.
    ///
    /// Instances starting together race to initialize a new catalog and to create sluice's
    /// tables; the losers' errors (duplicate catalog tables, transaction conflicts) are retried
    /// a few times with jittered backoff.
    pub fn open(cfg: &LakeConfig, group: &str) -> Result<Lake, SinkError> {
        const ATTEMPTS: u32 = 8;
        let mut attempt = 0;
        loop {
            match Self::open_once(cfg, group) {
                Err(e) if attempt + 1 < ATTEMPTS && is_startup_race(&e) => {
                    let wait = jittered_backoff(attempt, 100, 2_000);
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, wait_ms = wait.as_millis() as u64, "lake initialization raced another instance; retrying");
                    std::thread::sleep(wait);
                }
                result => return result,
            }
        }
    }

    fn open_once(cfg: &LakeConfig, group: &str) -> Result<Lake, SinkError> {
        let db = open_database(cfg)?;
        let conn = db.connect().map_err(duck("connect to DuckDB"))?;
        attach(&conn, cfg)?;
        let lake = Lake {
            conn,
            schema: cfg.schema.clone(),
            group: group.to_string(),
            tables: HashMap::new(),
            commit_delay: commit_delay_from_env(),
            view_prefix: view_prefix(),
        };
        lake.ensure_own_tables()?;
        Ok(lake)
    }

    /// Holds every commit of this handle (and of handles made from it by [`Lake::another`])
    /// open for `delay` after its data is written: the in-process form of [`COMMIT_DELAY_ENV`].
    pub fn set_commit_delay(&mut self, delay: Option<std::time::Duration>) {
        self.commit_delay = delay;
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
            commit_delay: self.commit_delay,
            view_prefix: view_prefix(),
        })
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

    fn ensure_own_tables(&self) -> Result<(), SinkError> {
        let offsets = self.qualified(OFFSETS_TABLE);
        let quarantine = self.qualified(QUARANTINE_TABLE);
        let schema_sql = format!(
            "CREATE SCHEMA IF NOT EXISTS {}.{}",
            LAKE_ALIAS,
            ident(&self.schema)
        );
        self.conn
            .execute(&schema_sql)
            .map_err(duck(format!("create lake schema {}", self.schema)))?;
        for attempt in 0.. {
            if self.table_columns(OFFSETS_TABLE)?.is_some()
                && self.table_columns(QUARANTINE_TABLE)?.is_some()
            {
                return Ok(());
            }
            // Created in one transaction together with the guard row that serializes partition
            // registration (see `register_partitions`); a concurrent creator makes this commit
            // conflict, and the retry then finds the tables.
            let sql = format!(
                "BEGIN;
                 CREATE TABLE IF NOT EXISTS {offsets} (consumer_group VARCHAR, topic VARCHAR, \"partition\" INTEGER, next_offset BIGINT, committed_at TIMESTAMP WITH TIME ZONE);
                 INSERT INTO {offsets} SELECT '', '', -1, 0, now() WHERE NOT EXISTS (SELECT 1 FROM {offsets} WHERE \"partition\" = -1);
                 CREATE TABLE IF NOT EXISTS {quarantine} (consumer_group VARCHAR, topic VARCHAR, \"partition\" INTEGER, \"offset\" BIGINT, kafka_timestamp TIMESTAMP WITH TIME ZONE, error VARCHAR, payload BLOB, quarantined_at TIMESTAMP WITH TIME ZONE);
                 COMMIT;
                 CALL {alias}.set_option('data_inlining_row_limit', 1000000, schema := {schema}, table_name := '{OFFSETS_TABLE}');",
                alias = LAKE_ALIAS,
                schema = literal(&self.schema),
            );
            match self.conn.execute(&sql) {
                Ok(_) => {}
                Err(e) if e.is_conflict() && attempt < 5 => {
                    let _ = self.conn.execute("ROLLBACK");
                }
                Err(e) => {
                    let _ = self.conn.execute("ROLLBACK");
                    return Err(duck("create sluice's tables in the lake")(e));
                }
            }
        }
        unreachable!()
    }

    /// Columns of a lake table, or `None` if it does not exist.
    pub fn table_columns(&self, table: &str) -> Result<Option<Vec<Column>>, SinkError> {
        let sql = format!(
            "SELECT column_name, data_type FROM information_schema.columns \
             WHERE table_catalog = {} AND table_schema = {} AND table_name = {} ORDER BY ordinal_position",
            literal(LAKE_ALIAS),
            literal(&self.schema),
            literal(table)
        );
        let mut r = self
            .conn
            .query(&sql)
            .map_err(duck(format!("read the columns of table {table}")))?;
        let rows = r.rows();
        if rows.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            rows.into_iter()
                .map(|mut row| {
                    let ty = row.pop().flatten().unwrap_or_default();
                    let name = row.pop().flatten().unwrap_or_default();
                    (name, ty)
                })
                .collect(),
        ))
    }

    /// The DuckDB columns an Arrow schema maps to (as DuckDB's Arrow scan sees it).
    pub fn arrow_columns(&self, schema: &SchemaRef) -> Result<Vec<Column>, SinkError> {
        let mut stream =
            BatchStream::new(schema.clone(), Vec::new()).map_err(|source| SinkError::Arrow {
                table: String::new(),
                source,
            })?;
        let view = &format!("{}_describe", self.view_prefix);
        self.conn
            .register_arrow_view(view, &mut stream)
            .map_err(duck("describe an Arrow schema"))?;
        let result = self.conn.query(&format!("DESCRIBE {view}"));
        let _ = self.conn.execute(&format!("DROP VIEW IF EXISTS {view}"));
        let rows = result.map_err(duck("describe an Arrow schema"))?.rows();
        Ok(rows
            .into_iter()
            .map(|row| {
                (
                    row.first().cloned().flatten().unwrap_or_default(),
                    row.get(1).cloned().flatten().unwrap_or_default(),
                )
            })
            .collect())
    }

    /// Whether batches of `schema` fit `table`: `Ok(Ok(()))` if so, `Ok(Err(text))` with the
    /// mismatch otherwise. The first schema seen for a table that does not exist yet defines it.
    /// Verdicts are cached per schema, so this costs a lookup per batch.
    pub fn check_fit(
        &mut self,
        table: &str,
        schema: &SchemaRef,
    ) -> Result<Result<(), String>, SinkError> {
        if let Some(info) = self.tables.get(table)
            && let Some((_, v)) = info
                .verdicts
                .iter()
                .find(|(s, _)| Arc::ptr_eq(s, schema) || s == schema)
        {
            return Ok(v.clone());
        }
        let incoming = self.arrow_columns(schema)?;
        let known = match self.tables.get(table).and_then(|i| i.columns.clone()) {
            Some(c) => Some(c),
            None => {
                let existing = self.table_columns(table)?;
                let info = self.tables.entry(table.to_string()).or_default();
                info.exists = existing.is_some();
                info.columns = existing.clone();
                existing
            }
        };
        let verdict = match known {
            None => {
                let info = self.tables.entry(table.to_string()).or_default();
                info.columns = Some(incoming);
                Ok(())
            }
            Some(cols) => compare_columns(table, &cols, &incoming),
        };
        let info = self.tables.entry(table.to_string()).or_default();
        info.verdicts.push((schema.clone(), verdict.clone()));
        Ok(verdict)
    }

    /// The columns a table that does not exist yet will be created with (decided by
    /// [`Lake::check_fit`] from the first batch seen), so a flush committed through another
    /// handle creates the same table.
    pub fn planned_columns(&self, table: &str) -> Option<Vec<Column>> {
        self.tables
            .get(table)
            .filter(|i| !i.exists)
            .and_then(|i| i.columns.clone())
    }

    /// Adopts columns another handle planned for a table this handle does not know to exist.
    pub fn adopt_planned_columns(&mut self, table: &str, columns: Vec<Column>) {
        let info = self.tables.entry(table.to_string()).or_default();
        if !info.exists {
            info.columns = Some(columns);
        }
    }

    /// Ensures every (topic, partition) has an offsets row (registration is serialized through a
    /// guard row, so two instances never both create one) and returns the lake's next offset of
    /// each ([`NO_OFFSET`] if never committed).
    pub fn register_partitions(
        &self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, i64>, SinkError> {
        let mut known = self.read_offsets(topic)?;
        let missing: Vec<i32> = partitions
            .iter()
            .copied()
            .filter(|p| !known.contains_key(p))
            .collect();
        if missing.is_empty() {
            known.retain(|p, _| partitions.contains(p));
            return Ok(known);
        }
        let offsets = self.qualified(OFFSETS_TABLE);
        let values = missing
            .iter()
            .map(|p| format!("({p})"))
            .collect::<Vec<_>>()
            .join(", ");
        let g = literal(&self.group);
        let t = literal(topic);
        let sql = format!(
            "BEGIN;
             UPDATE {offsets} SET committed_at = now() WHERE consumer_group = '' AND topic = '' AND \"partition\" = -1;
             INSERT INTO {offsets} SELECT {g}, {t}, v.p, {NO_OFFSET}, now() FROM (VALUES {values}) v(p)
               WHERE NOT EXISTS (SELECT 1 FROM {offsets} o WHERE o.consumer_group = {g} AND o.topic = {t} AND o.\"partition\" = v.p);
             COMMIT;"
        );
        for attempt in 0..20u32 {
            match self.conn.execute(&sql) {
                Ok(_) => break,
                Err(e) if e.is_conflict() && attempt < 19 => {
                    let _ = self.conn.execute("ROLLBACK");
                    std::thread::sleep(jittered_backoff(attempt, 20, 2_000));
                }
                Err(e) => {
                    let _ = self.conn.execute("ROLLBACK");
                    return Err(duck(format!("register partitions of topic {topic}"))(e));
                }
            }
        }
        let mut all = self.read_offsets(topic)?;
        all.retain(|p, _| partitions.contains(p));
        Ok(all)
    }

    /// The lake's next offset of every registered partition of `topic` for this group.
    pub fn read_offsets(&self, topic: &str) -> Result<BTreeMap<i32, i64>, SinkError> {
        let sql = format!(
            "SELECT \"partition\", next_offset FROM {} WHERE consumer_group = {} AND topic = {}",
            self.qualified(OFFSETS_TABLE),
            literal(&self.group),
            literal(topic)
        );
        let mut r = self
            .conn
            .query(&sql)
            .map_err(duck(format!("read lake offsets of topic {topic}")))?;
        let n = r.row_count();
        let mut out = BTreeMap::new();
        for row in 0..n {
            if let (Some(p), Some(o)) = (r.i64(0, row), r.i64(1, row)) {
                out.insert(p as i32, o);
            }
        }
        Ok(out)
    }

    /// Commits one table flush as one DuckLake transaction. On any error nothing is committed.
    pub fn commit(&mut self, flush: &TableFlush<'_>) -> Result<CommitReport, SinkError> {
        let table = flush.table;
        // Views are created outside the transaction: a transaction may write to one attached
        // database only, and the views live in DuckDB's in-memory catalog.
        let mut streams = Vec::new();
        let mut views = Vec::new();
        let result = self.commit_inner(flush, &mut streams, &mut views);
        if result.is_err() {
            let _ = self.conn.execute("ROLLBACK");
        }
        for v in &views {
            let _ = self
                .conn
                .execute(&format!("DROP VIEW IF EXISTS {}", ident(v)));
        }
        drop(streams);
        match result {
            Err(SinkError::Duck { source, .. }) if source.is_conflict() => {
                Err(SinkError::CommitConflict {
                    table: table.to_string(),
                    message: source.message,
                })
            }
            Err(e) => Err(e),
            Ok(report) => {
                if let Some(info) = self.tables.get_mut(table) {
                    info.exists = true;
                }
                Ok(report)
            }
        }
    }

    fn register(
        &self,
        table: &str,
        name: String,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        streams: &mut Vec<BatchStream>,
        views: &mut Vec<String>,
    ) -> Result<String, SinkError> {
        let mut stream = BatchStream::new(schema, batches).map_err(|source| SinkError::Arrow {
            table: table.to_string(),
            source,
        })?;
        self.conn
            .register_arrow_view(&name, &mut stream)
            .map_err(duck(format!("hand batches for table {table} to DuckDB")))?;
        streams.push(stream);
        views.push(name.clone());
        Ok(name)
    }

    fn commit_inner(
        &mut self,
        flush: &TableFlush<'_>,
        streams: &mut Vec<BatchStream>,
        views: &mut Vec<String>,
    ) -> Result<CommitReport, SinkError> {
        let table = flush.table;
        let target = self.qualified(table);
        let mut data_views = Vec::new();
        let mut rows = 0u64;
        for group in group_by_schema(flush.batches) {
            rows += group.iter().map(|b| b.num_rows() as u64).sum::<u64>();
            let name = format!("{}_{}", self.view_prefix, data_views.len());
            let v = self.register(table, name, group[0].schema(), group, streams, views)?;
            data_views.push(v);
        }
        let quarantine_view = if flush.quarantine.is_empty() {
            None
        } else {
            let batch = quarantine_batch(&self.group, flush.quarantine).map_err(|source| {
                SinkError::Arrow {
                    table: QUARANTINE_TABLE.to_string(),
                    source,
                }
            })?;
            Some(self.register(
                table,
                format!("{}_quarantine", self.view_prefix),
                batch.schema(),
                vec![batch],
                streams,
                views,
            )?)
        };

        let needs_create =
            !data_views.is_empty() && !self.tables.get(table).is_some_and(|i| i.exists);
        let create_columns = if needs_create {
            Some(
                match self.tables.get(table).and_then(|i| i.columns.clone()) {
                    Some(c) => c,
                    None => self.arrow_columns(&flush.batches[0].schema())?,
                },
            )
        } else {
            None
        };

        self.conn
            .execute("BEGIN")
            .map_err(duck("begin a lake transaction"))?;
        if let Some(cols) = create_columns {
            let cols_sql = cols
                .iter()
                .map(|(n, t)| format!("{} {}", ident(n), t))
                .collect::<Vec<_>>()
                .join(", ");
            self.conn
                .execute(&format!("CREATE TABLE IF NOT EXISTS {target} ({cols_sql})"))
                .map_err(duck(format!("create table {table}")))?;
        }
        let mut inserted = 0;
        for v in &data_views {
            inserted += self
                .conn
                .execute(&format!(
                    "INSERT INTO {target} BY NAME SELECT * FROM {}",
                    ident(v)
                ))
                .map_err(duck(format!("insert into table {table}")))?;
        }
        if inserted != rows {
            // Never commit a range whose rows did not all arrive.
            return Err(SinkError::Duck {
                context: format!("insert into table {table}"),
                source: DuckError {
                    message: format!("DuckDB inserted {inserted} rows, the flush holds {rows}"),
                },
            });
        }
        if let Some(v) = &quarantine_view {
            self.conn
                .execute(&format!(
                    "INSERT INTO {} SELECT *, now() FROM {}",
                    self.qualified(QUARANTINE_TABLE),
                    ident(v)
                ))
                .map_err(duck(format!("quarantine payloads of table {table}")))?;
        }
        self.update_offsets(flush.offsets)?;
        if let Some(d) = self.commit_delay {
            eprintln!(
                "sluice: fault injection: holding the commit of table {table} open for {} ms",
                d.as_millis()
            );
            std::thread::sleep(d);
        }
        self.conn
            .execute("COMMIT")
            .map_err(duck(format!("commit the flush of table {table}")))?;
        // Committed: what follows only describes the commit and cannot undo it.
        let (files, file_bytes) = self.files_of_last_commit().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not count the files of the commit");
            (0, 0)
        });
        Ok(CommitReport {
            rows,
            quarantined: flush.quarantine.len() as u64,
            files,
            file_bytes,
        })
    }

    /// Data files (count, bytes) added by this connection's latest commit.
    fn files_of_last_commit(&self) -> Result<(u64, u64), SinkError> {
        let rows = self.query_rows(&format!(
            "SELECT count(*), coalesce(sum(file_size_bytes), 0) FROM __ducklake_metadata_{LAKE_ALIAS}.ducklake_data_file \
             WHERE begin_snapshot = (SELECT id FROM {LAKE_ALIAS}.last_committed_snapshot())"
        ))?;
        let v = |i: usize| {
            rows.first()
                .and_then(|r| r.get(i).cloned().flatten())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok((v(0), v(1)))
    }

    fn update_offsets(&self, offsets: &[OffsetUpdate]) -> Result<(), SinkError> {
        let mut by_topic: BTreeMap<&str, Vec<&OffsetUpdate>> = BTreeMap::new();
        for o in offsets {
            by_topic.entry(&o.topic).or_default().push(o);
        }
        let table = self.qualified(OFFSETS_TABLE);
        for (topic, updates) in by_topic {
            let values = updates
                .iter()
                .map(|o| format!("({}, {}, {})", o.partition, o.prev, o.next))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "UPDATE {table} SET next_offset = v.next, committed_at = now() \
                 FROM (VALUES {values}) v(p, prev, next) \
                 WHERE {table}.consumer_group = {g} AND {table}.topic = {t} \
                   AND {table}.\"partition\" = v.p AND {table}.next_offset = v.prev",
                g = literal(&self.group),
                t = literal(topic),
            );
            let changed = self
                .conn
                .execute(&sql)
                .map_err(duck(format!("move lake offsets of topic {topic}")))?;
            if changed != updates.len() as u64 {
                // Someone else moved (some of) them: find which, then give up this commit.
                let _ = self.conn.execute("ROLLBACK");
                let now = self.read_offsets(topic)?;
                let partitions = updates
                    .iter()
                    .filter_map(|o| {
                        let cur = now.get(&o.partition).copied().unwrap_or(NO_OFFSET);
                        (cur != o.prev).then_some((o.partition, cur))
                    })
                    .collect();
                return Err(SinkError::OffsetConflict {
                    topic: topic.to_string(),
                    partitions,
                });
            }
        }
        Ok(())
    }
}

fn open_database(cfg: &LakeConfig) -> Result<Arc<Database>, SinkError> {
    let mut settings: Vec<(&str, String)> = vec![
        // Network install stays available as a fallback for users; sluice's set-up installs
        // the extensions from PyPI wheels into the extension directory.
        ("autoinstall_known_extensions", "true".into()),
        ("autoload_known_extensions", "true".into()),
    ];
    if let Some(dir) = &cfg.extension_directory {
        settings.push(("extension_directory", dir.display().to_string()));
    }
    if let Some(t) = cfg.threads {
        settings.push(("threads", t.to_string()));
    }
    if let Some(m) = &cfg.memory_limit {
        settings.push(("memory_limit", m.clone()));
    }
    Database::open_in_memory(&settings).map_err(duck("open DuckDB"))
}

/// The `ATTACH` target for the configured catalog.
fn attach_target(cfg: &LakeConfig) -> String {
    match cfg.catalog_kind {
        CatalogKind::Duckdb => format!("ducklake:{}", cfg.catalog),
        CatalogKind::Sqlite => format!("ducklake:sqlite:{}", cfg.catalog),
        CatalogKind::Postgres => format!("ducklake:postgres:{}", cfg.catalog),
    }
}

/// Replaces `password=…` values (libpq connection strings) so a catalog string can be shown.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.to_ascii_lowercase().find("password=") {
        out.push_str(&rest[..i + "password=".len()]);
        out.push_str("***");
        let after = &rest[i + "password=".len()..];
        let end = after
            .find(|c: char| c.is_whitespace() || c == '\'' || c == '&')
            .unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Whether `e` is what losing a race to initialize the lake looks like (another instance
/// created the catalog or sluice's tables at the same moment).
fn is_startup_race(e: &SinkError) -> bool {
    match e {
        SinkError::CommitConflict { .. } => true,
        SinkError::Duck { source, .. } => {
            source.is_conflict()
                || source.message.contains("duplicate key value")
                || source.message.contains("already exists")
                || source
                    .message
                    .contains("has been created by another transaction")
        }
        _ => false,
    }
}

/// Whether the data path is on S3 (or an S3-compatible server).
pub fn is_s3(data_path: &str) -> bool {
    data_path
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("s3://")
}

/// `text` with every credential of `cfg` (S3 keys, a catalog password) replaced by `***`, for
/// error messages and logs.
pub fn scrub(text: &str, cfg: &LakeConfig) -> String {
    let mut out = redact(text);
    let s3 = cfg.s3.resolve(|k| std::env::var(k).ok());
    for secret in [s3.secret_access_key, s3.session_token]
        .into_iter()
        .flatten()
    {
        if !secret.expose().is_empty() {
            out = out.replace(secret.expose(), "***");
        }
    }
    out
}

/// Creates the DuckDB secret httpfs uses for the S3 data path.
fn create_s3_secret(conn: &Connection, cfg: &LakeConfig) -> Result<(), SinkError> {
    conn.execute("LOAD httpfs").map_err(duck(
        "load the DuckDB httpfs extension (run scripts/setup, or allow DuckDB to install it)",
    ))?;
    let s3 = cfg.s3.resolve(|k| std::env::var(k).ok());
    let mut params = vec!["TYPE s3".to_string()];
    let mut add = |key: &str, value: &str| params.push(format!("{key} {}", literal(value)));
    if let Some(v) = &s3.access_key_id {
        add("KEY_ID", v);
    }
    if let Some(v) = &s3.secret_access_key {
        add("SECRET", v.expose());
    }
    if let Some(v) = &s3.session_token {
        add("SESSION_TOKEN", v.expose());
    }
    if let Some(v) = &s3.region {
        add("REGION", v);
    }
    if let Some(v) = &s3.endpoint {
        add("ENDPOINT", v);
    }
    add(
        "URL_STYLE",
        match s3.url_style {
            crate::config::UrlStyle::Path => "path",
            crate::config::UrlStyle::Vhost => "vhost",
        },
    );
    params.push(format!("USE_SSL {}", s3.use_ssl));
    let sql = format!("CREATE OR REPLACE SECRET sluice_s3 ({})", params.join(", "));
    conn.execute(&sql).map_err(|e| SinkError::Duck {
        context: format!(
            "create the S3 secret for data path {} (endpoint {}, key id {})",
            cfg.data_path,
            s3.endpoint.as_deref().unwrap_or("AWS"),
            s3.access_key_id.as_deref().unwrap_or("none")
        ),
        source: DuckError {
            message: scrub(&e.message, cfg),
        },
    })?;
    Ok(())
}

fn attach(conn: &Connection, cfg: &LakeConfig) -> Result<(), SinkError> {
    conn.execute("LOAD ducklake").map_err(duck(
        "load the DuckDB ducklake extension (run scripts/setup, or allow DuckDB to install it)",
    ))?;
    if is_s3(&cfg.data_path) {
        create_s3_secret(conn, cfg)?;
    }
    let sql = format!(
        "ATTACH {} AS {} (DATA_PATH {})",
        literal(&attach_target(cfg)),
        LAKE_ALIAS,
        literal(&cfg.data_path)
    );
    conn.execute(&sql).map_err(|e| SinkError::Duck {
        context: format!(
            "attach the lake (catalog {} {}, data path {})",
            format!("{:?}", cfg.catalog_kind).to_lowercase(),
            redact(&cfg.catalog),
            cfg.data_path
        ),
        source: DuckError {
            message: scrub(&e.message, cfg),
        },
    })?;
    Ok(())
}

/// Splits batches into runs of equal schema (one Arrow stream each).
fn group_by_schema(batches: &[RecordBatch]) -> Vec<Vec<RecordBatch>> {
    let mut groups: Vec<Vec<RecordBatch>> = Vec::new();
    for b in batches {
        match groups.last_mut() {
            Some(g) if Arc::ptr_eq(&g[0].schema(), &b.schema()) || g[0].schema() == b.schema() => {
                g.push(b.clone())
            }
            _ => groups.push(vec![b.clone()]),
        }
    }
    groups
}

fn compare_columns(table: &str, table_cols: &[Column], incoming: &[Column]) -> Result<(), String> {
    let want: HashMap<&str, &str> = table_cols
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let got: HashMap<&str, &str> = incoming
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let mut problems = Vec::new();
    for (n, t) in incoming {
        match want.get(n.as_str()) {
            None => problems.push(format!("column {n:?} ({t}) is not in the table")),
            Some(wt) if wt != t => problems.push(format!(
                "column {n:?} is {t} in the message but {wt} in the table"
            )),
            _ => {}
        }
    }
    for (n, t) in table_cols {
        if !got.contains_key(n.as_str()) {
            problems.push(format!("column {n:?} ({t}) is missing from the message"));
        }
    }
    if incoming.len() != got.len() {
        problems.push("the message has duplicate column names".to_string());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "schema does not fit table {table:?}: {}",
            problems.join("; ")
        ))
    }
}

/// The quarantine rows as one Arrow batch (raw bytes travel through Arrow too, no escaping).
fn quarantine_batch(group: &str, rows: &[QuarantineRow]) -> Result<RecordBatch, ArrowError> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("consumer_group", DataType::Utf8, false),
        Field::new("topic", DataType::Utf8, false),
        Field::new("partition", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
        Field::new(
            "kafka_timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
        Field::new("error", DataType::Utf8, false),
        Field::new("payload", DataType::Binary, false),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![group; rows.len()])),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| &*r.meta.topic),
        )),
        Arc::new(Int32Array::from_iter_values(
            rows.iter().map(|r| r.meta.partition),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.meta.offset),
        )),
        Arc::new(
            TimestampMillisecondArray::from_iter(rows.iter().map(|r| r.meta.timestamp_ms))
                .with_timezone("UTC"),
        ),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.error.as_str()),
        )),
        Arc::new(BinaryArray::from_iter_values(
            rows.iter().map(|r| r.payload.as_slice()),
        )),
    ];
    RecordBatch::try_new(schema, cols)
}

/// Exponential backoff from `initial_ms`, capped at `max_ms`, with ±50% jitter.
pub fn jittered_backoff(attempt: u32, initial_ms: u64, max_ms: u64) -> std::time::Duration {
    let base = initial_ms
        .saturating_mul(1u64 << attempt.min(20))
        .min(max_ms);
    let jitter = 0.5 + fastrand::f64();
    std::time::Duration::from_millis(((base as f64) * jitter) as u64)
}

#[cfg(test)]
mod tests;
