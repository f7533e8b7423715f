//! The one transaction of a flush: the table's creation or schema evolution, the batches
//! through DuckDB's Arrow scan (views over Arrow C streams of the very buffers sluice decoded),
//! the quarantined payloads, and the offsets update, committed together or not at all.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;

use super::coalesce::{Coalesce, Coalesced};
use super::duck::{DuckError, ident};
use super::evolve::{self, Change, Plan};
use super::ffi_stream::BatchStream;
use super::schema::Misfit;
use super::{
    CommitReport, LAKE_ALIAS, Lake, QUARANTINE_TABLE, SinkError, TableFlush, duck, quarantine,
};
use crate::config::SchemaEvolution;

impl Lake {
    /// Commits one table flush as one DuckLake transaction. On any error none of its rows,
    /// offsets or quarantined payloads is committed; a set-up committed before the rows' own
    /// transaction (the table's creation with its options, widened columns; see
    /// `commit_inner`) stays, and a retry finds it done.
    pub fn commit(&mut self, flush: &TableFlush<'_>) -> Result<CommitReport, SinkError> {
        let table = flush.table;
        // See `Lake::write_turn` (a clone of the lock: the commit needs `self` mutably).
        let writes = self.writes.clone();
        let _turn = writes.as_deref().map(crate::sync::lock);
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
            other => other,
        }
    }

    fn register(
        &self,
        table: &str,
        name: String,
        stream: Result<BatchStream, ArrowError>,
        streams: &mut Vec<BatchStream>,
        views: &mut Vec<String>,
    ) -> Result<String, SinkError> {
        let mut stream = stream.map_err(|source| SinkError::Arrow {
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
        self.note_row_size(table, flush.batches);
        let handed = self.hand_over(flush, streams, views)?;
        let groups = handed
            .schemas
            .iter()
            .map(|s| self.described(s))
            .collect::<Result<Vec<_>, _>>()?;
        let plan = self.prepare(table, &handed, &groups)?;
        // A table without options is created with its rows.
        if let Some(cols) = &plan.create {
            self.create(table, cols)?;
        }
        for change in &plan.changes {
            self.alter(table, change)?;
        }
        self.insert(table, &handed)?;
        let mut coalesced = Coalesced::default();
        for s in streams.iter() {
            coalesced.add(s.coalesced());
        }
        self.update_offsets(flush.offsets)?;
        if let Some(hook) = &self.commit_hook {
            hook(table);
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
            rows: handed.rows,
            quarantined: flush.quarantine.len() as u64,
            files,
            file_bytes,
            coalesced,
            changes: self.take_unreported(table).chain(plan.changes).collect(),
        })
    }

    /// Begins the rows' transaction and plans it against the table as that transaction sees
    /// it. A retry after a conflict (another writer created or evolved the table meanwhile)
    /// plans again from what that writer committed. What must be committed before the rows
    /// (creating the table with its options, widening, see `evolve`, and the options of a
    /// table this handle has not written yet) is, in a transaction of its own, and the rows'
    /// transaction plans again. Returns with the rows' transaction open.
    fn prepare(
        &mut self,
        table: &str,
        handed: &Handed,
        groups: &[Vec<super::Column>],
    ) -> Result<Plan, SinkError> {
        let mut rounds = 0;
        loop {
            self.conn
                .execute("BEGIN")
                .map_err(duck("begin a lake transaction"))?;
            let plan = if handed.data.is_empty() {
                Plan::default()
            } else {
                self.plan(table, groups)?
            };
            let widen: Vec<Change> = plan
                .changes
                .iter()
                .filter(|c| matches!(c, Change::Widen { .. }))
                .cloned()
                .collect();
            let options = (plan.create.is_some() || self.options_pending(table))
                .then(|| self.options_of(table))
                .filter(|o| !o.is_empty());
            if handed.data.is_empty() || (widen.is_empty() && options.is_none()) {
                return Ok(plan);
            }
            rounds += 1;
            if rounds > 3 {
                return Err(SinkError::Duck {
                    context: format!("prepare table {table}"),
                    source: DuckError::new("the table kept changing under this commit"),
                });
            }
            if let Some(cols) = &plan.create {
                self.create(table, cols)?;
            }
            for change in &widen {
                self.alter(table, change)?;
            }
            if let Some(o) = &options {
                let columns = match &plan.create {
                    Some(c) => c.clone(),
                    None => self.table_columns(table)?.unwrap_or_default(),
                };
                self.apply_layout(table, o, &columns)?;
            }
            self.conn
                .execute("COMMIT")
                .map_err(duck(format!("commit the set-up of table {table}")))?;
            self.unreported
                .extend(widen.into_iter().map(|c| (table.to_string(), c)));
            if let Some(o) = &options {
                self.apply_settings(table, o)?;
            }
        }
    }

    /// The widenings of `table` committed earlier and not reported yet.
    fn take_unreported(&mut self, table: &str) -> impl Iterator<Item = Change> + use<> {
        let (mine, others) = std::mem::take(&mut self.unreported)
            .into_iter()
            .partition::<Vec<_>, _>(|(t, _)| t == table);
        self.unreported = others;
        mine.into_iter().map(|(_, c)| c)
    }

    /// Creates `table` with `cols` (inside the open transaction).
    fn create(&self, table: &str, cols: &[super::Column]) -> Result<(), SinkError> {
        let cols_sql = cols
            .iter()
            .map(|(n, t)| format!("{} {}", ident(n), t))
            .collect::<Vec<_>>()
            .join(", ");
        self.conn
            .execute(&format!(
                "CREATE TABLE IF NOT EXISTS {} ({cols_sql})",
                self.qualified(table)
            ))
            .map(drop)
            .map_err(duck(format!("create table {table}")))
    }

    /// Applies one column change (inside the open transaction).
    fn alter(&self, table: &str, change: &Change) -> Result<(), SinkError> {
        let target = self.qualified(table);
        let sql = match change {
            Change::Add { column, ty } => {
                format!("ALTER TABLE {target} ADD COLUMN {} {ty}", ident(column))
            }
            Change::Widen { column, to, .. } => {
                format!(
                    "ALTER TABLE {target} ALTER COLUMN {} SET TYPE {to}",
                    ident(column)
                )
            }
        };
        self.conn.execute(&sql).map(drop).map_err(duck(format!(
            "evolve table {table} (column {:?} {} -> {})",
            change.column(),
            change.from().unwrap_or("new"),
            change.to()
        )))
    }

    /// What the open transaction must do to `table` before inserting batches with the columns
    /// `groups`: create it with the widest of them, or (under evolution) add and widen columns.
    /// Under `strict` an existing table is left as it is (the batches were checked to fit it).
    fn plan(&self, table: &str, groups: &[Vec<super::Column>]) -> Result<Plan, SinkError> {
        let current = self.table_schema(table)?;
        let groups: Vec<&[super::Column]> = groups.iter().map(Vec::as_slice).collect();
        let misfit = |problems| {
            SinkError::Schema(Misfit {
                table: table.to_string(),
                problems,
            })
        };
        match (current, self.evolution) {
            (None, _) => evolve::plan(None, &Default::default(), &groups).map_err(misfit),
            (Some((cols, not_null)), SchemaEvolution::Evolve) => {
                evolve::plan(Some(&cols), &not_null, &groups).map_err(misfit)
            }
            (Some(_), SchemaEvolution::Strict) => Ok(Plan::default()),
        }
    }

    /// Makes the flush's batches (one view per run of equal schema, runs of small batches
    /// joined as DuckDB reads them: see `coalesce`) and its quarantine batch scannable by
    /// DuckDB.
    fn hand_over(
        &self,
        flush: &TableFlush<'_>,
        streams: &mut Vec<BatchStream>,
        views: &mut Vec<String>,
    ) -> Result<Handed, SinkError> {
        let table = flush.table;
        let mut handed = Handed::default();
        for group in group_by_schema(flush.batches) {
            handed.rows += group.iter().map(|b| b.num_rows() as u64).sum::<u64>();
            let name = format!("{}_{}", self.view_prefix, handed.data.len());
            let schema = group[0].schema();
            let stream = BatchStream::coalescing(schema.clone(), group, Coalesce::default());
            let v = self.register(table, name, stream, streams, views)?;
            handed.data.push(v);
            handed.schemas.push(schema);
        }
        if !flush.quarantine.is_empty() {
            let batch = quarantine::batch(&self.group, flush.quarantine).map_err(|source| {
                SinkError::Arrow {
                    table: QUARANTINE_TABLE.to_string(),
                    source,
                }
            })?;
            let name = format!("{}_quarantine", self.view_prefix);
            let stream = BatchStream::new(batch.schema(), vec![batch]);
            let v = self.register(table, name, stream, streams, views)?;
            handed.quarantine = Some(v);
        }
        Ok(handed)
    }

    /// Inserts the handed-over rows and quarantined payloads (inside the open transaction).
    fn insert(&self, table: &str, handed: &Handed) -> Result<(), SinkError> {
        let target = self.qualified(table);
        let mut inserted = 0;
        for v in &handed.data {
            inserted += self
                .conn
                .execute(&format!(
                    "INSERT INTO {target} BY NAME SELECT * FROM {}",
                    ident(v)
                ))
                .map_err(duck(format!("insert into table {table}")))?;
        }
        if inserted != handed.rows {
            // Never commit a range whose rows did not all arrive.
            return Err(SinkError::Duck {
                context: format!("insert into table {table}"),
                source: DuckError::new(format!(
                    "DuckDB inserted {inserted} rows, the flush holds {}",
                    handed.rows
                )),
            });
        }
        if let Some(v) = &handed.quarantine {
            self.conn
                .execute(&format!(
                    "INSERT INTO {} SELECT *, now() FROM {}",
                    self.qualified(QUARANTINE_TABLE),
                    ident(v)
                ))
                .map_err(duck(format!("quarantine payloads of table {table}")))?;
        }
        Ok(())
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
}

/// The views of one flush's data and quarantine batch.
#[derive(Default)]
struct Handed {
    /// Data views, one per run of equal schema.
    data: Vec<String>,
    /// The schema of each.
    schemas: Vec<SchemaRef>,
    /// Rows in them.
    rows: u64,
    /// The quarantine batch's view, if any.
    quarantine: Option<String>,
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
