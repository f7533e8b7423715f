//! The lake's lifecycle through DuckLake's own functions, and the lease that lets exactly one
//! instance run them at a time.
//!
//! Each step is one DuckLake transaction, small enough that ingestion's commits only wait for
//! one step (on a SQLite catalog they take turns with it in this process; elsewhere DuckLake's
//! conflict rules let compaction and inserts commit side by side, and a lost race is retried):
//!
//! - `ducklake_flush_inlined_data` per table: rows inlined in the catalog go to one Parquet file.
//! - `ducklake_rewrite_data_files` per table: files mostly deleted (sluice's offsets and lease
//!   rows, which are updated in place) are rewritten without their deleted rows.
//! - `ducklake_merge_adjacent_files` per table, one merge group per call
//!   (`max_compacted_files => 1`) until none is left: small files become files of the table's
//!   `target_file_size`. Merges never cross partitions or schema versions.
//! - `ducklake_expire_snapshots` of the snapshots older than `maintenance.keep_snapshots`,
//!   named by id (DuckLake compares `older_than` as text on a SQLite catalog).
//! - `ducklake_cleanup_old_files` and `ducklake_delete_orphaned_files`, each with a grace
//!   period: never `cleanup_all`, which deletes the files of a commit still in progress.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::duck::{DuckError, literal};
use super::{LAKE_ALIAS, LEASE_TABLE, Lake, SinkError, duck};

/// The lease row's name.
const LEASE: &str = "maintenance";

/// Snapshot ids passed to one `ducklake_expire_snapshots` call.
const EXPIRE_CHUNK: usize = 10_000;

/// Merge calls per table per pass at most (each merges one group of files).
const MAX_MERGES: u32 = 10_000;

/// Who holds the maintenance lease, as the lake says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseState {
    /// We hold it (taken or renewed now).
    Held,
    /// Another instance holds it until `until` (UTC, RFC 3339).
    HeldBy {
        /// The holder's name.
        holder: String,
        /// When it runs out unless renewed.
        until: String,
    },
}

/// A lake table maintenance works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakeTable {
    /// Schema.
    pub schema: String,
    /// Table.
    pub table: String,
}

/// Files a step rewrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rewritten {
    /// Files read (and replaced).
    pub files_in: u64,
    /// Files written.
    pub files_out: u64,
}

/// Files a clean-up step deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deleted {
    /// Files deleted.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

fn is_conflict(e: &SinkError) -> bool {
    matches!(e, SinkError::Duck { source, .. } if source.is_conflict())
}

/// `to_timestamp(seconds)` of the moment `age` ago; on a SQLite catalog rounded down to
/// midnight UTC, less a microsecond: DuckLake compares the cut-off there as text against times
/// it stored as `YYYY-MM-DD hh:mm:ss+00`, which makes any cut-off act as the end of its UTC day,
/// so a cut-off just before a midnight acts as that midnight — never later than `age` ago.
fn cutoff(age: Duration, sqlite: bool) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let at = now.saturating_sub(age).as_secs_f64();
    let at = if sqlite {
        (at / 86_400.0).floor() * 86_400.0 - 0.000_001
    } else {
        at
    };
    format!("to_timestamp({at:.6})")
}

impl Lake {
    /// Creates sluice's lease table and its row if they do not exist yet.
    pub(super) fn ensure_lease_table(&self) -> Result<(), SinkError> {
        if self.table_columns(LEASE_TABLE)?.is_some() {
            return Ok(());
        }
        let _turn = self.write_turn();
        let t = self.qualified(LEASE_TABLE);
        let sql = format!(
            "BEGIN;
             CREATE TABLE IF NOT EXISTS {t} (lease VARCHAR, holder VARCHAR, expires_at TIMESTAMP WITH TIME ZONE, renewed_at TIMESTAMP WITH TIME ZONE);
             INSERT INTO {t} SELECT '{LEASE}', '', TIMESTAMPTZ '1970-01-01 00:00:00+00', now() WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE lease = '{LEASE}');
             COMMIT;
             CALL {LAKE_ALIAS}.set_option('data_inlining_row_limit', 1000000, schema := {schema}, table_name := '{LEASE_TABLE}');",
            schema = literal(&self.schema),
        );
        self.conn.execute(&sql).map(drop).map_err(|e| {
            let _ = self.conn.execute("ROLLBACK");
            duck("create sluice's lease table in the lake")(e)
        })
    }

    /// Takes or renews the maintenance lease for `holder` until `ttl` from now, if it is free,
    /// run out, or already `holder`'s: one conditional update, so of two instances racing only
    /// one gets it (the other's commit conflicts, and its retry finds the lease held).
    pub fn take_lease(&self, holder: &str, ttl: Duration) -> Result<LeaseState, SinkError> {
        let t = self.qualified(LEASE_TABLE);
        let h = literal(holder);
        let sql = format!(
            "UPDATE {t} SET holder = {h}, expires_at = now() + INTERVAL ({ms}) MILLISECOND, renewed_at = now() \
             WHERE lease = '{LEASE}' AND (holder = {h} OR expires_at < now())",
            ms = ttl.as_millis()
        );
        let changed = {
            let _turn = self.write_turn();
            self.conflicts.run(
                "maintenance lease (raced another instance)",
                is_conflict,
                || {
                    self.conn
                        .execute("BEGIN")
                        .map_err(duck("begin the lease update"))?;
                    let n = self.conn.execute(&sql).map_err(|e| {
                        let _ = self.conn.execute("ROLLBACK");
                        duck("update the maintenance lease")(e)
                    })?;
                    self.conn.execute("COMMIT").map_err(|e| {
                        let _ = self.conn.execute("ROLLBACK");
                        duck("commit the maintenance lease")(e)
                    })?;
                    Ok(n)
                },
            )?
        };
        if changed == 1 {
            return Ok(LeaseState::Held);
        }
        let mut r = self
            .conn
            .query(&format!(
                "SELECT holder, strftime(expires_at AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%SZ') FROM {t} WHERE lease = '{LEASE}'"
            ))
            .map_err(duck("read the maintenance lease"))?;
        Ok(LeaseState::HeldBy {
            holder: r.text(0, 0).unwrap_or_default(),
            until: r.text(1, 0).unwrap_or_default(),
        })
    }

    /// Gives the lease up (if `holder` has it), so another instance can take it at once.
    pub fn release_lease(&self, holder: &str) -> Result<(), SinkError> {
        let _turn = self.write_turn();
        let sql = format!(
            "UPDATE {} SET expires_at = TIMESTAMPTZ '1970-01-01 00:00:00+00', renewed_at = now() WHERE lease = '{LEASE}' AND holder = {}",
            self.qualified(LEASE_TABLE),
            literal(holder)
        );
        self.conflicts
            .run("maintenance lease release", DuckError::is_conflict, || {
                self.conn.execute(&sql)
            })
            .map(drop)
            .map_err(duck("release the maintenance lease"))
    }

    /// Every table of the lake (all schemas), sluice's own included.
    pub fn lake_tables(&self) -> Result<Vec<LakeTable>, SinkError> {
        let mut r = self
            .conn
            .query(&format!(
                "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = '{LAKE_ALIAS}' ORDER BY 1, 2"
            ))
            .map_err(duck("list the lake's tables"))?;
        let mut out = Vec::new();
        for row in 0..r.row_count() {
            if let (Some(schema), Some(table)) = (r.text(0, row), r.text(1, row)) {
                out.push(LakeTable { schema, table });
            }
        }
        Ok(out)
    }

    /// Runs one maintenance statement (in its turn, retried while it loses to a concurrent
    /// transaction); its result rows as text.
    fn maintenance_step(
        &self,
        what: &str,
        sql: &str,
        conflicts: &mut u64,
    ) -> Result<Vec<Vec<Option<String>>>, SinkError> {
        let _turn = self.write_turn();
        self.conflicts
            .run(what, DuckError::is_conflict, || {
                let r = self.conn.query(sql).map(|mut r| r.rows());
                if r.as_ref().is_err_and(DuckError::is_conflict) {
                    *conflicts += 1;
                }
                r
            })
            .map_err(duck(what.to_string()))
    }

    /// Moves `t`'s inlined rows into a Parquet file; the rows moved.
    pub fn flush_inlined(&self, t: &LakeTable, conflicts: &mut u64) -> Result<u64, SinkError> {
        let sql = format!(
            "SELECT coalesce(sum(rows_flushed), 0)::BIGINT FROM ducklake_flush_inlined_data('{LAKE_ALIAS}', schema_name => {}, table_name => {})",
            literal(&t.schema),
            literal(&t.table)
        );
        let rows = self.maintenance_step(
            &format!("flush inlined data of {}.{}", t.schema, t.table),
            &sql,
            conflicts,
        )?;
        Ok(first_number(&rows, 0))
    }

    /// Rewrites `t`'s files whose rows are mostly deleted.
    pub fn rewrite_deleted(
        &self,
        t: &LakeTable,
        conflicts: &mut u64,
    ) -> Result<Rewritten, SinkError> {
        let sql = format!(
            "SELECT coalesce(sum(files_processed), 0)::BIGINT, coalesce(sum(files_created), 0)::BIGINT FROM ducklake_rewrite_data_files('{LAKE_ALIAS}', {}, schema => {})",
            literal(&t.table),
            literal(&t.schema)
        );
        let rows = self.maintenance_step(
            &format!("rewrite deleted rows of {}.{}", t.schema, t.table),
            &sql,
            conflicts,
        )?;
        Ok(Rewritten {
            files_in: first_number(&rows, 0),
            files_out: first_number(&rows, 1),
        })
    }

    /// Merges `t`'s adjacent small files, one group per transaction, until none is left.
    pub fn merge_files(&self, t: &LakeTable, conflicts: &mut u64) -> Result<Rewritten, SinkError> {
        let sql = format!(
            "SELECT coalesce(sum(files_processed), 0)::BIGINT, coalesce(sum(files_created), 0)::BIGINT FROM ducklake_merge_adjacent_files('{LAKE_ALIAS}', {}, schema => {}, max_compacted_files => 1)",
            literal(&t.table),
            literal(&t.schema)
        );
        let what = format!("merge files of {}.{}", t.schema, t.table);
        let mut total = Rewritten::default();
        for _ in 0..MAX_MERGES {
            let rows = self.maintenance_step(&what, &sql, conflicts)?;
            let step = Rewritten {
                files_in: first_number(&rows, 0),
                files_out: first_number(&rows, 1),
            };
            if step.files_in == 0 {
                break;
            }
            total.files_in += step.files_in;
            total.files_out += step.files_out;
        }
        Ok(total)
    }

    /// Expires the snapshots older than `age` (never the latest); how many.
    pub fn expire_snapshots(&self, age: Duration, conflicts: &mut u64) -> Result<u64, SinkError> {
        let mut r = self
            .conn
            .query(&format!(
                "SELECT snapshot_id FROM ducklake_snapshots('{LAKE_ALIAS}') \
                 WHERE snapshot_time < {} AND snapshot_id < (SELECT max(snapshot_id) FROM ducklake_snapshots('{LAKE_ALIAS}')) ORDER BY 1",
                cutoff(age, false)
            ))
            .map_err(duck("list the lake's snapshots"))?;
        let ids: Vec<i64> = (0..r.row_count()).filter_map(|row| r.i64(0, row)).collect();
        let mut expired = 0;
        for chunk in ids.chunks(EXPIRE_CHUNK) {
            let list = chunk
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let rows = self.maintenance_step(
                "expire snapshots",
                &format!(
                    "SELECT count(*) FROM ducklake_expire_snapshots('{LAKE_ALIAS}', versions => [{list}])"
                ),
                conflicts,
            )?;
            expired += first_number(&rows, 0);
        }
        Ok(expired)
    }

    /// Deletes the files no snapshot references any more, scheduled more than `age` ago.
    pub fn cleanup_old_files(
        &self,
        age: Duration,
        conflicts: &mut u64,
    ) -> Result<Deleted, SinkError> {
        self.delete_files(
            "ducklake_cleanup_old_files",
            "delete files no snapshot references",
            &cutoff(age, self.writes.is_some()),
            conflicts,
        )
    }

    /// Deletes the files in the data path that no snapshot ever referenced, older than `age`.
    pub fn delete_orphaned_files(
        &self,
        age: Duration,
        conflicts: &mut u64,
    ) -> Result<Deleted, SinkError> {
        // Compared by DuckDB against the files' modification times: exact on every catalog.
        self.delete_files(
            "ducklake_delete_orphaned_files",
            "delete orphaned files",
            &cutoff(age, false),
            conflicts,
        )
    }

    fn delete_files(
        &self,
        function: &str,
        what: &str,
        older_than: &str,
        conflicts: &mut u64,
    ) -> Result<Deleted, SinkError> {
        // The sizes of what a dry run lists, read before the files go.
        let listed = self.maintenance_step(
            what,
            &format!(
                "SELECT path FROM {function}('{LAKE_ALIAS}', older_than => {older_than}, dry_run => true)"
            ),
            conflicts,
        )?;
        let paths: Vec<String> = listed.into_iter().filter_map(|r| r[0].clone()).collect();
        if paths.is_empty() {
            return Ok(Deleted::default());
        }
        let sizes = self.file_sizes(&paths)?;
        let deleted = self.maintenance_step(
            what,
            &format!("SELECT path FROM {function}('{LAKE_ALIAS}', older_than => {older_than})"),
            conflicts,
        )?;
        let mut out = Deleted::default();
        for path in deleted.into_iter().filter_map(|r| r[0].clone()) {
            out.files += 1;
            out.bytes += sizes.get(&path).copied().unwrap_or(0);
        }
        Ok(out)
    }

    /// Bytes of each of `paths` (local or object store), as DuckDB reads them.
    fn file_sizes(&self, paths: &[String]) -> Result<HashMap<String, u64>, SinkError> {
        let mut out = HashMap::new();
        for chunk in paths.chunks(1_000) {
            let list = chunk
                .iter()
                .map(|p| literal(p))
                .collect::<Vec<_>>()
                .join(", ");
            let mut r = self
                .conn
                .query(&format!("SELECT filename, size FROM read_blob([{list}])"))
                .map_err(duck("read the sizes of files to delete"))?;
            for row in 0..r.row_count() {
                if let (Some(p), Some(n)) = (r.text(0, row), r.i64(1, row)) {
                    out.insert(p, n.max(0) as u64);
                }
            }
        }
        Ok(out)
    }

    /// (files, bytes) of the lake's live data and delete files, over all tables.
    pub fn lake_files(&self) -> Result<(u64, u64), SinkError> {
        let mut r = self
            .conn
            .query(&format!(
                "SELECT coalesce(sum(file_count + delete_file_count), 0)::BIGINT, coalesce(sum(file_size_bytes + delete_file_size_bytes), 0)::BIGINT FROM ducklake_table_info('{LAKE_ALIAS}')"
            ))
            .map_err(duck("list the lake's files"))?;
        Ok((
            r.i64(0, 0).unwrap_or(0).max(0) as u64,
            r.i64(1, 0).unwrap_or(0).max(0) as u64,
        ))
    }

    /// Snapshots the lake keeps now.
    pub fn snapshot_count(&self) -> Result<u64, SinkError> {
        let mut r = self
            .conn
            .query(&format!(
                "SELECT count(*) FROM ducklake_snapshots('{LAKE_ALIAS}')"
            ))
            .map_err(duck("count the lake's snapshots"))?;
        Ok(r.i64(0, 0).unwrap_or(0).max(0) as u64)
    }
}

fn first_number(rows: &[Vec<Option<String>>], col: usize) -> u64 {
    rows.first()
        .and_then(|r| r.get(col).cloned().flatten())
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0)
        .max(0) as u64
}
