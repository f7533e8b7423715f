//! Flight reads older than the live ring: a topic's rows read back from the lake by their Kafka
//! position (the lineage columns `_kafka_partition`, `_kafka_offset` and `_kafka_batch`, which
//! `[tables.metadata]` adds), up to what the lake has committed.
//!
//! A round reads, in one DuckLake snapshot, each asked partition's `sluice_offsets.next_offset`
//! and, in one query, the partitions' rows from the asked positions up to those offsets, in
//! windows of offsets sized so a round holds about [`ROUND_ROWS`] rows. Rows come back ordered
//! by position (partition, offset, batch, then `rowid`) and are cut into one batch per record
//! batch of the original message, so a
//! reader's `app_metadata` means what the ring's means. Since a commit moves a partition's
//! `next_offset` with its rows, the round ends exactly where the ring's uncommitted batches
//! begin (see [`super::ring`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Int32Type, Int64Type};

use crate::config::TablesConfig;
use crate::live::ring::after;
use crate::sink::duck::{Database, ident};
use crate::sink::{LAKE_ALIAS, OFFSETS_TABLE};

/// The lineage columns a lake read needs, in position order.
pub const LINEAGE: [&str; 3] = ["_kafka_partition", "_kafka_offset", "_kafka_batch"];

/// The Kafka timestamp column (`[tables.metadata] timestamp`), which timestamp starts need.
pub const TIMESTAMP: &str = "_kafka_timestamp";

/// Rows a round aims at: what one reader holds at most from the lake (about; a partition's
/// window is cut at a record batch, and a single record batch larger than this is read whole).
pub const ROUND_ROWS: usize = 16_384;

/// Rounds that run at once, over all readers: lake reads share sluice's DuckDB (its threads
/// and memory) with the commits, and a crowd of readers catching up must not crowd those out.
pub const CONCURRENT_ROUNDS: usize = 2;

/// A position in a partition: (offset, index of the batch within its message).
pub type Position = (i64, u32);

/// Why the lake cannot serve a read.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// The table lacks the lineage columns.
    #[error(
        "the lake table {table:?} has no column {missing}: reading positions older than the live ring from the lake needs [tables.metadata] partition, offset and batch = true"
    )]
    NoLineage {
        /// Table.
        table: String,
        /// The first lineage column it lacks.
        missing: &'static str,
    },
    /// Several topics write the table, and its rows do not say which.
    #[error(
        "the lake table {table:?} takes the topics {topics:?}, and its rows do not record their topic: the lake cannot serve reads of one of them"
    )]
    Shared {
        /// Table.
        table: String,
        /// The topics mapped to it.
        topics: Vec<String>,
    },
    /// Rows ingested before the lineage columns were enabled have no position.
    #[error(
        "partition {partition} of the lake table {table:?} has rows only from offset {first} on with a position (lineage), and {unplaced} rows without one (ingested before [tables.metadata] partition, offset and batch were enabled): offset {requested} cannot be placed"
    )]
    Unplaced {
        /// Table.
        table: String,
        /// Partition.
        partition: i32,
        /// What was asked for.
        requested: i64,
        /// The oldest offset with lineage (`-1`: none).
        first: i64,
        /// Rows without lineage.
        unplaced: u64,
    },
    /// DuckDB failed.
    #[error("DuckDB: {0}")]
    Duck(String),
}

impl From<duckdb::Error> for LakeError {
    fn from(e: duckdb::Error) -> Self {
        LakeError::Duck(e.to_string())
    }
}

/// One batch read back: the rows of one record batch of one message.
#[derive(Debug, Clone)]
pub struct LakeBatch {
    /// Kafka partition.
    pub partition: i32,
    /// Kafka offset of its message.
    pub offset: i64,
    /// Index of the batch within its message.
    pub batch_index: u32,
    /// Batches of its message the lake holds rows of.
    pub batches_in_message: u32,
    /// The rows, with the table's columns.
    pub batch: RecordBatch,
}

/// What one round read.
#[derive(Debug, Default)]
pub struct Round {
    /// The batches, per partition in position order.
    pub batches: Vec<LakeBatch>,
    /// Per partition asked for: the lake's `next_offset` in the snapshot read (absent: the
    /// lake has committed nothing of it).
    pub committed: BTreeMap<i32, i64>,
    /// Per partition asked for: the position up to which it has been read (everything below
    /// it that the lake holds is in `batches` or was read before).
    pub reached: BTreeMap<i32, Position>,
}

/// What a round reads of one partition: its rows from `from` on, below offset `to` (one window
/// of offsets, up to the lake's committed offset at most).
struct Span {
    partition: i32,
    from: Position,
    to: i64,
}

/// Reads topics' rows back from the lake.
pub struct LakeSource {
    db: Arc<Database>,
    tables: TablesConfig,
    group: String,
    schema: String,
    round_rows: usize,
    rounds: Arc<tokio::sync::Semaphore>,
    /// Tables found fit for lake reads, and when (checked again after [`CHECKED_FOR`]).
    checked: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

/// How long a table found fit for lake reads is not checked again.
const CHECKED_FOR: std::time::Duration = std::time::Duration::from_secs(10);

/// Per partition, the rows per offset a reader has seen in the lake: a round's window of offsets
/// per partition is its share of the round's rows over that (so a round reads about what it
/// returns), or a small probe before anything was seen.
#[derive(Debug, Default, Clone)]
pub struct Windows(BTreeMap<i32, f64>);

impl Windows {
    /// Offsets a partition's first window spans.
    const PROBE: i64 = 16;
    const MAX: i64 = 1 << 24;

    /// Offsets the next window of `p` spans, for `rows` rows.
    fn span(&self, p: i32, rows: usize) -> i64 {
        match self.0.get(&p) {
            Some(per_offset) => ((rows as f64 / per_offset.max(1e-3)) as i64).clamp(1, Self::MAX),
            None => Self::PROBE,
        }
    }

    /// Notes that `rows` rows of `p` spanned `offsets` offsets.
    fn saw(&mut self, p: i32, rows: usize, offsets: i64) {
        if offsets > 0 && rows > 0 {
            self.0.insert(p, rows as f64 / offsets as f64);
        }
    }
}

impl LakeSource {
    /// Reads from the lake on `db` (schema `schema`, offsets of consumer group `group`), with
    /// topics named into tables as `tables` says.
    pub fn new(db: Arc<Database>, tables: TablesConfig, group: &str, schema: &str) -> Self {
        LakeSource {
            db,
            tables,
            group: group.to_string(),
            schema: schema.to_string(),
            round_rows: ROUND_ROWS,
            rounds: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_ROUNDS)),
            checked: Default::default(),
        }
    }

    /// The same, with at most `n` rounds at once instead of [`CONCURRENT_ROUNDS`].
    pub fn with_concurrent_rounds(self, n: usize) -> Self {
        LakeSource {
            rounds: Arc::new(tokio::sync::Semaphore::new(n.max(1))),
            ..self
        }
    }

    /// A turn to run a round (at most [`CONCURRENT_ROUNDS`], or as set, run at once); `None`
    /// if the turns were closed.
    pub async fn turn(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.rounds.clone().acquire_owned().await.ok()
    }

    /// The same, with rounds of about `rows` rows instead of [`ROUND_ROWS`].
    pub fn with_round_rows(self, rows: usize) -> Self {
        LakeSource {
            round_rows: rows.max(1),
            ..self
        }
    }

    /// One round of `topic`: per partition of `from`, its rows from that position on, up to
    /// the lake's committed offset (blocking).
    pub fn read(
        &self,
        topic: &str,
        from: &BTreeMap<i32, Position>,
        windows: &mut Windows,
    ) -> Result<Round, LakeError> {
        let conn = self.connect()?;
        // One transaction: the offsets and the rows from one snapshot.
        conn.execute_batch("BEGIN TRANSACTION")?;
        let round = self.read_in(&conn, topic, from, windows);
        conn.execute_batch("ROLLBACK")?;
        round
    }

    fn read_in(
        &self,
        conn: &duckdb::Connection,
        topic: &str,
        from: &BTreeMap<i32, Position>,
        windows: &mut Windows,
    ) -> Result<Round, LakeError> {
        let schema = ident(&self.schema);
        let offsets = format!("{LAKE_ALIAS}.{schema}.{}", ident(OFFSETS_TABLE));
        let mut round = Round::default();
        let mut stmt = conn.prepare(&format!(
            "SELECT \"partition\", next_offset FROM {offsets} \
             WHERE consumer_group = ? AND topic = ? AND \"partition\" >= 0 AND next_offset >= 0"
        ))?;
        let rows = stmt.query_map([self.group.as_str(), topic], |r| {
            Ok((r.get::<_, i32>(0)?, r.get::<_, i64>(1)?))
        })?;
        for r in rows {
            let (p, next) = r?;
            if from.contains_key(&p) {
                round.committed.insert(p, next);
            }
        }
        round.reached = from.clone();
        if round
            .committed
            .iter()
            .all(|(p, w)| from.get(p).is_none_or(|(o, _)| o >= w))
        {
            return Ok(round);
        }
        let table = self.tables.table_for(topic);
        self.check_table(conn, &offsets, &table)?;
        let qualified = format!("{LAKE_ALIAS}.{schema}.{}", ident(&table));
        let share = self.round_rows / from.len().max(1);
        let spans: Vec<Span> = from
            .iter()
            .filter_map(|(&p, &at)| {
                let w = *round.committed.get(&p)?;
                (at.0 < w).then(|| Span {
                    partition: p,
                    from: at,
                    // From inside a message: its rest and at least the next one.
                    to: w.min(
                        at.0.saturating_add(windows.span(p, share).max(1 + i64::from(at.1 > 0))),
                    ),
                })
            })
            .collect();
        let (batches, reached) = self.read_spans(conn, &qualified, &spans, windows)?;
        round.batches = batches;
        round.reached.extend(reached);
        Ok(round)
    }

    /// A connection of its own to sluice's DuckDB.
    fn connect(&self) -> Result<duckdb::Connection, LakeError> {
        self.db
            .crate_connection()
            .map_err(|e| LakeError::Duck(e.to_string()))
    }

    /// The columns of the lake table `table` (none if it does not exist).
    fn columns(
        &self,
        conn: &duckdb::Connection,
        table: &str,
    ) -> Result<BTreeSet<String>, LakeError> {
        let mut stmt = conn.prepare(
            "SELECT column_name FROM duckdb_columns() \
             WHERE database_name = ? AND schema_name = ? AND table_name = ?",
        )?;
        let columns = stmt
            .query_map([LAKE_ALIAS, self.schema.as_str(), table], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(columns)
    }

    /// Fails unless `table` has the lineage columns and no other topic writes it (as found at
    /// most [`CHECKED_FOR`] ago).
    fn check_table(
        &self,
        conn: &duckdb::Connection,
        offsets: &str,
        table: &str,
    ) -> Result<(), LakeError> {
        let fresh = crate::sync::lock(&self.checked)
            .get(table)
            .is_some_and(|at| at.elapsed() < CHECKED_FOR);
        if !fresh {
            self.check_table_now(conn, offsets, table)?;
            crate::sync::lock(&self.checked).insert(table.to_string(), std::time::Instant::now());
        }
        Ok(())
    }

    fn check_table_now(
        &self,
        conn: &duckdb::Connection,
        offsets: &str,
        table: &str,
    ) -> Result<(), LakeError> {
        let columns = self.columns(conn, table)?;
        if let Some(missing) = LINEAGE.iter().find(|c| !columns.contains(**c)) {
            return Err(LakeError::NoLineage {
                table: table.to_string(),
                missing,
            });
        }
        let mut stmt = conn.prepare(&format!(
            "SELECT DISTINCT topic FROM {offsets} WHERE \"partition\" >= 0"
        ))?;
        let topics: Vec<String> = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|t| self.tables.table_for(t) == table)
            .collect();
        if topics.len() > 1 {
            let mut topics = topics;
            topics.sort();
            return Err(LakeError::Shared {
                table: table.to_string(),
                topics,
            });
        }
        Ok(())
    }

    /// Fails unless the lake can place a read of `topic` starting at each position of `from`:
    /// its table has the lineage columns, no other topic writes it, and no rows without
    /// lineage (ingested before the columns were enabled) could lie between a position and the
    /// partition's oldest row with lineage (blocking).
    pub fn check_start(
        &self,
        topic: &str,
        from: &BTreeMap<i32, Position>,
    ) -> Result<(), LakeError> {
        let conn = self.connect()?;
        let schema = ident(&self.schema);
        let offsets = format!("{LAKE_ALIAS}.{schema}.{}", ident(OFFSETS_TABLE));
        let table = self.tables.table_for(topic);
        if self.columns(&conn, &table)?.is_empty() {
            return Ok(()); // no table yet
        }
        self.check_table(&conn, &offsets, &table)?;
        let qualified = format!("{LAKE_ALIAS}.{schema}.{}", ident(&table));
        let [cp, co, cb] = LINEAGE.map(ident);
        let unplaced: i64 = conn.query_row(
            &format!("SELECT count(*) FROM {qualified} WHERE {cp} IS NULL OR {co} IS NULL OR {cb} IS NULL"),
            [],
            |r| r.get(0),
        )?;
        if unplaced == 0 {
            return Ok(());
        }
        for (&p, &(offset, _)) in from {
            let first: Option<i64> = conn.query_row(
                &format!("SELECT min({co}) FROM {qualified} WHERE {cp} = {p} AND {cb} IS NOT NULL"),
                [],
                |r| r.get(0),
            )?;
            if first.is_none_or(|f| f > offset) {
                return Err(LakeError::Unplaced {
                    table: table.clone(),
                    partition: p,
                    requested: offset,
                    first: first.unwrap_or(-1),
                    unplaced: unplaced as u64,
                });
            }
        }
        Ok(())
    }

    /// Per partition of `topic`'s table, the oldest offset of a row with lineage whose Kafka
    /// timestamp (`_kafka_timestamp`) is at or after `ms` (Kafka's offsets-for-times), among
    /// what the lake has committed; empty if the table does not exist yet or has no
    /// `_kafka_timestamp` (blocking).
    pub fn offsets_for_time(&self, topic: &str, ms: i64) -> Result<BTreeMap<i32, i64>, LakeError> {
        let conn = self.connect()?;
        let table = self.tables.table_for(topic);
        let columns = self.columns(&conn, &table)?;
        if !columns.contains(TIMESTAMP) || LINEAGE.iter().any(|c| !columns.contains(*c)) {
            return Ok(BTreeMap::new());
        }
        let schema = ident(&self.schema);
        let offsets = format!("{LAKE_ALIAS}.{schema}.{}", ident(OFFSETS_TABLE));
        self.check_table(&conn, &offsets, &table)?;
        let [cp, co, cb] = LINEAGE.map(ident);
        let ts = ident(TIMESTAMP);
        let mut stmt = conn.prepare(&format!(
            "SELECT {cp}, min({co}) FROM {LAKE_ALIAS}.{schema}.{} \
             WHERE epoch_ms({ts}) >= ? AND {co} IS NOT NULL AND {cb} IS NOT NULL GROUP BY {cp}",
            ident(&table)
        ))?;
        let rows = stmt.query_map([ms], |r| Ok((r.get::<_, i32>(0)?, r.get::<_, i64>(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The rows of `spans`, in one query ordered by position, at most the round's rows (or one
    /// record batch); and the position each partition was read up to.
    fn read_spans(
        &self,
        conn: &duckdb::Connection,
        table: &str,
        spans: &[Span],
        windows: &mut Windows,
    ) -> Result<(Vec<LakeBatch>, BTreeMap<i32, Position>), LakeError> {
        let mut reached = BTreeMap::new();
        if spans.is_empty() {
            return Ok((Vec::new(), reached));
        }
        let [cp, co, cb] = LINEAGE.map(ident);
        let wanted: Vec<String> = spans
            .iter()
            .map(|s| {
                let (p, (o, b), to) = (s.partition, s.from, s.to);
                format!(
                    "({cp} = {p} AND {co} >= {o} AND {co} < {to} AND ({co} > {o} OR {cb} >= {b}))"
                )
            })
            .collect();
        let select = format!(
            "SELECT * FROM {table} WHERE {cb} IS NOT NULL AND ({}) \
             ORDER BY {cp}, {co}, {cb}, rowid LIMIT {}",
            wanted.join(" OR "),
            self.round_rows + 1
        );
        let batches = query(conn, &select)?;
        let mut groups = split(&batches)?;
        let rows: usize = groups.iter().map(|g| g.batch.num_rows()).sum();
        // Partitions after the one a cut round ended in are not read this round.
        let mut cut: Option<(i32, Position)> = None;
        if rows > self.round_rows {
            // The round ended inside the last record batch, perhaps: it is read in the next
            // round (or alone, whole, if it is the only one).
            let last = groups.pop().expect("rows > 0");
            let mut at = (last.offset, last.batch_index);
            if groups.is_empty() {
                let one = format!(
                    "SELECT * FROM {table} WHERE {cp} = {} AND {co} = {} AND {cb} = {} ORDER BY rowid",
                    last.partition, last.offset, last.batch_index
                );
                groups = split(&query(conn, &one)?)?;
                at = after(at);
            }
            cut = Some((last.partition, at));
            // How many batches the message the round ended in has, from the lake.
            if let Some(g) = groups.last().filter(|g| g.partition == last.partition) {
                let (p, o) = (g.partition, g.offset);
                let n: Option<i32> = conn.query_row(
                    &format!("SELECT max({cb}) FROM {table} WHERE {cp} = {p} AND {co} = {o}"),
                    [],
                    |r| r.get(0),
                )?;
                let n = n.map_or(1, |n| n.max(0) as u32 + 1);
                for g in groups
                    .iter_mut()
                    .rev()
                    .take_while(|g| (g.partition, g.offset) == (p, o))
                {
                    g.batches_in_message = n;
                }
            }
        }
        for s in spans {
            let p = s.partition;
            let at = match cut {
                Some((q, at)) if q == p => at,
                Some((q, _)) if q < p => continue,
                _ => (s.to, 0),
            };
            reached.insert(p, at);
            let rows: usize = groups
                .iter()
                .filter(|g| g.partition == p)
                .map(|g| g.batch.num_rows())
                .sum();
            windows.saw(p, rows, at.0 - s.from.0 + i64::from(at.1 > 0));
        }
        Ok((groups, reached))
    }
}

fn query(conn: &duckdb::Connection, sql: &str) -> Result<Vec<RecordBatch>, LakeError> {
    let mut stmt = conn.prepare(sql)?;
    Ok(stmt.query_arrow([])?.collect())
}

/// Cuts position-ordered rows into one batch per (partition, offset, batch index).
fn split(batches: &[RecordBatch]) -> Result<Vec<LakeBatch>, LakeError> {
    /// A row's key: (partition, offset, batch index).
    type Key = (i32, i64, u32);
    let mut out: Vec<LakeBatch> = Vec::new();
    // Pieces of the current group, which may span DuckDB's result chunks.
    let mut pieces: Vec<RecordBatch> = Vec::new();
    let mut current: Option<Key> = None;
    let flush = |pieces: &mut Vec<RecordBatch>, key: Key, out: &mut Vec<LakeBatch>| {
        let batch = if pieces.len() == 1 {
            pieces.pop().expect("one piece")
        } else {
            let b = arrow::compute::concat_batches(&pieces[0].schema(), pieces.iter())
                .map_err(|e| LakeError::Duck(e.to_string()))?;
            pieces.clear();
            b
        };
        out.push(LakeBatch {
            partition: key.0,
            offset: key.1,
            batch_index: key.2,
            batches_in_message: key.2 + 1,
            batch,
        });
        Ok::<(), LakeError>(())
    };
    for b in batches {
        let column = |name: &str| {
            b.column_by_name(name)
                .ok_or_else(|| LakeError::Duck(format!("the lake's rows lack {name}")))
        };
        let partitions = column(LINEAGE[0])?.as_primitive::<Int32Type>().clone();
        let offsets = column(LINEAGE[1])?.as_primitive::<Int64Type>().clone();
        let indexes = column(LINEAGE[2])?.as_primitive::<Int32Type>().clone();
        let mut start = 0;
        for i in 0..b.num_rows() {
            let key = (
                partitions.value(i),
                offsets.value(i),
                indexes.value(i).max(0) as u32,
            );
            if current != Some(key) {
                if i > start {
                    pieces.push(b.slice(start, i - start));
                }
                if let Some(c) = current
                    && !pieces.is_empty()
                {
                    flush(&mut pieces, c, &mut out)?;
                }
                current = Some(key);
                start = i;
            }
        }
        if b.num_rows() > start {
            pieces.push(b.slice(start, b.num_rows() - start));
        }
    }
    if let Some(c) = current
        && !pieces.is_empty()
    {
        flush(&mut pieces, c, &mut out)?;
    }
    // The batches of each message the lake holds, told on each of its batches.
    let mut i = 0;
    while i < out.len() {
        let mut j = i;
        let message = |g: &LakeBatch| (g.partition, g.offset);
        while j < out.len() && message(&out[j]) == message(&out[i]) {
            j += 1;
        }
        let n = out[j - 1].batch_index + 1;
        for g in &mut out[i..j] {
            g.batches_in_message = n;
        }
        i = j;
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
