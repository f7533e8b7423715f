//! Table options: DuckLake's partitioning (`SET PARTITIONED BY`), sort order (`SET SORTED BY`)
//! and per-table Parquet settings (`set_option`), from `[tables.defaults]` and
//! `[tables.options."<table>"]`.
//!
//! A handle applies a table's options with the table's creation, or else before its first
//! commit to the table (so a changed configuration takes effect at the next start). Partitioning
//! and sort order change the table's catalog entry (a snapshot); `set_option` takes no
//! transaction-local table, so the settings follow the creating transaction's commit.

use super::duck::{ident, literal};
use super::{LAKE_ALIAS, Lake, SinkError, duck};
use crate::config::{PartitionField, SortField, TableOptions};

/// `PARTITIONED BY` list of `fields` (already validated by the configuration).
fn partition_sql(fields: &[String]) -> String {
    fields
        .iter()
        .filter_map(|f| PartitionField::parse(f).ok())
        .map(|f| match f {
            PartitionField::Identity(c) => ident(&c),
            PartitionField::Time(t, c) => format!("{t}({})", ident(&c)),
            PartitionField::Bucket(n, c) => format!("bucket({n}, {})", ident(&c)),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `SORTED BY` list of `fields` (already validated by the configuration).
fn sort_sql(fields: &[String]) -> String {
    fields
        .iter()
        .filter_map(|f| SortField::parse(f).ok())
        .map(|f| {
            let mut s = ident(&f.column);
            s.push_str(if f.descending { " DESC" } else { " ASC" });
            match f.nulls_first {
                Some(true) => s.push_str(" NULLS FIRST"),
                Some(false) => s.push_str(" NULLS LAST"),
                None => {}
            }
            s
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// DuckDB's vector size: row groups are a multiple of it.
const VECTOR_ROWS: u64 = 2048;

/// DuckDB's default Parquet row group size, in rows.
const DEFAULT_ROW_GROUP_ROWS: u64 = 122_880;

/// Rows of a row group holding about `target` bytes at `per_row` bytes per row.
fn row_group_rows(target: u64, per_row: u64) -> u64 {
    (target / per_row.max(1) / VECTOR_ROWS * VECTOR_ROWS).clamp(VECTOR_ROWS, DEFAULT_ROW_GROUP_ROWS)
}

impl Lake {
    /// The configured options of `table`, with sluice's default inlining limit for this
    /// catalog kind where none is configured ([`Lake::default_inlining_row_limit`]).
    ///
    /// Under a memory limit (`row_group_bytes` set), a table without a configured
    /// `parquet_row_group_size` gets the rows that hold about `row_group_bytes` at the bytes
    /// per row of its first flush through this handle: a multiple of 2,048 (DuckDB's vector
    /// size), between 2,048 and DuckDB's default of 122,880.
    pub(super) fn options_of(&self, table: &str) -> TableOptions {
        let mut o = self.tables_config.options_for(table);
        o.data_inlining_row_limit = o
            .data_inlining_row_limit
            .or(Some(self.default_inlining_row_limit()));
        if o.parquet_row_group_size.is_none()
            && let (Some(target), Some(&per_row)) =
                (self.row_group_bytes, self.row_sizes.get(table))
        {
            o.parquet_row_group_size = Some(row_group_rows(target, per_row));
        }
        o
    }

    /// Notes the bytes per row of a flush of `table` (while its options are not applied yet
    /// and a row group target is set), for [`Lake::options_of`].
    pub(super) fn note_row_size(&mut self, table: &str, batches: &[arrow::array::RecordBatch]) {
        if self.row_group_bytes.is_none() || self.options_applied.contains(table) {
            return;
        }
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        let bytes: u64 = (batches.iter())
            .flat_map(|b| b.columns())
            .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0) as u64)
            .sum();
        if let Some(per_row) = bytes.checked_div(rows) {
            self.row_sizes.insert(table.to_string(), per_row.max(1));
        }
    }

    /// `data_inlining_row_limit` where `[tables]` sets none: 1,000 rows on PostgreSQL and
    /// DuckDB-file catalogs; 0 (every flush a Parquet file) on SQLite, whose readers could miss
    /// rows otherwise. DuckDB's SQLite scanner reads each catalog query of a read-only
    /// transaction on a fresh SQLite connection, so a read whose queries straddle a
    /// maintenance step moving inlined rows into a Parquet file sees the old file list and
    /// the emptied inlined table (measured: 4 to 12 of every 27 flushes of inlined data were
    /// followed by a read missing their rows; 0 on PostgreSQL, which reads in one REPEATABLE
    /// READ transaction; README, "Running it for months").
    pub fn default_inlining_row_limit(&self) -> u64 {
        if self.writes.is_some() { 0 } else { 1_000 }
    }

    /// Whether `table`'s options still have to be applied by this handle.
    pub(super) fn options_pending(&self, table: &str) -> bool {
        !self.options_applied.contains(table) && !self.options_of(table).is_empty()
    }

    /// Sets `table`'s partitioning and sort order (inside the open transaction). A
    /// partitioning or sort order naming a column the table (of `columns`) does not have is
    /// not applied and logged as an error: ingestion goes on.
    pub(super) fn apply_layout(
        &self,
        table: &str,
        o: &TableOptions,
        columns: &[super::Column],
    ) -> Result<(), SinkError> {
        let target = self.qualified(table);
        let has = |c: &str| columns.iter().any(|(n, _)| n == c);
        let missing = |option: &str, names: Vec<String>| {
            let absent: Vec<String> = names.into_iter().filter(|c| !has(c)).collect();
            if !absent.is_empty() {
                tracing::error!(%table, option, columns = ?absent, "table option names columns the table does not have; not applied");
            }
            absent.is_empty()
        };
        let partition_columns = |p: &[String]| -> Vec<String> {
            p.iter()
                .filter_map(|f| PartitionField::parse(f).ok())
                .map(|f| match f {
                    PartitionField::Identity(c)
                    | PartitionField::Time(_, c)
                    | PartitionField::Bucket(_, c) => c,
                })
                .collect()
        };
        let sort_columns = |s: &[String]| -> Vec<String> {
            s.iter()
                .filter_map(|f| SortField::parse(f).ok())
                .map(|f| f.column)
                .collect()
        };
        if let Some(p) = o
            .partition_by
            .as_ref()
            .filter(|p| missing("partition_by", partition_columns(p)))
        {
            let sql = if p.is_empty() {
                format!("ALTER TABLE {target} RESET PARTITIONED BY")
            } else {
                format!(
                    "ALTER TABLE {target} SET PARTITIONED BY ({})",
                    partition_sql(p)
                )
            };
            self.conn
                .execute(&sql)
                .map_err(duck(format!("partition table {table} by {p:?}")))?;
        }
        if let Some(s) = o
            .sorted_by
            .as_ref()
            .filter(|s| missing("sorted_by", sort_columns(s)))
        {
            let sql = if s.is_empty() {
                format!("ALTER TABLE {target} RESET SORTED BY")
            } else {
                format!("ALTER TABLE {target} SET SORTED BY ({})", sort_sql(s))
            };
            self.conn
                .execute(&sql)
                .map_err(duck(format!("sort table {table} by {s:?}")))?;
        }
        Ok(())
    }

    /// Sets `table`'s Parquet settings (no transaction open) and marks its options applied.
    /// A codec other than zstd on a table that has a compression level (which DuckLake cannot
    /// unset, and DuckDB's Parquet writer refuses with any other codec) is not applied and
    /// logged as an error naming both: the table keeps writing zstd.
    pub(super) fn apply_settings(
        &mut self,
        table: &str,
        o: &TableOptions,
    ) -> Result<(), SinkError> {
        let mut o = o.clone();
        if let Some(codec) = o.parquet_compression.clone()
            && !codec.eq_ignore_ascii_case("zstd")
        {
            let level = self.query_rows(&format!(
                "SELECT value FROM ducklake_options({}) WHERE option_name = 'parquet_compression_level' \
                 AND scope = 'TABLE' AND scope_entry = {}",
                literal(LAKE_ALIAS),
                literal(&format!("{}.{table}", self.schema))
            ))?;
            if let Some(Some(level)) = level.first().and_then(|r| r.first()) {
                tracing::error!(%table, %codec, %level, "parquet_compression not applied: the table has a parquet_compression_level from an earlier configuration, which DuckLake cannot unset and which only works with zstd; set parquet_compression = \"zstd\" for this table");
                o.parquet_compression = None;
            }
        }
        for (option, value) in o.settings() {
            let sql = format!(
                "CALL {LAKE_ALIAS}.set_option({}, {value}, schema := {}, table_name := {})",
                literal(option),
                literal(&self.schema),
                literal(table)
            );
            self.conn
                .execute(&sql)
                .map_err(duck(format!("set {option} = {value} on table {table}")))?;
        }
        self.options_applied.insert(table.to_string());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_groups_hold_the_target_bytes_in_whole_vectors_within_duckdbs_bounds() {
        // 40 MiB of 1,000-byte rows: 41,943 rows, down to 20 vectors.
        assert_eq!(row_group_rows(40 << 20, 1000), 40_960);
        // Narrow rows: DuckDB's default is the most.
        assert_eq!(row_group_rows(40 << 20, 40), 122_880);
        // Rows wider than the target: one vector at least.
        assert_eq!(row_group_rows(4 << 20, 10 << 20), 2048);
        // No bytes counted (e.g. all-null columns): treated as one byte a row.
        assert_eq!(row_group_rows(4 << 20, 0), 122_880);
    }

    #[test]
    fn options_render_as_quoted_ducklake_sql() {
        assert_eq!(
            partition_sql(&[
                "year(ts)".into(),
                "Month( ts )".into(),
                "bucket(8, user_id)".into(),
                "country".into()
            ]),
            "year(\"ts\"), month(\"ts\"), bucket(8, \"user_id\"), \"country\""
        );
        assert_eq!(
            sort_sql(&["ts".into(), "id desc nulls first".into()]),
            "\"ts\" ASC, \"id\" DESC NULLS FIRST"
        );
    }
}
