//! What a lake table holds now, read from the lake (for `sluice status` and `sluice demo`): its
//! rows, its live data files and their bytes (as `ducklake_list_files` reports them), and the
//! rows DuckLake keeps inlined in the catalog (data inlining: a small flush adds rows to the
//! catalog and no file, so a table can hold rows and no files).

use super::duck::{ident, literal};
use super::{LAKE_ALIAS, Lake, SinkError, duck};

/// What one lake table holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TableContents {
    /// Rows (`count(*)`: in files, less their deletes, plus the inlined rows).
    pub rows: u64,
    /// Live Parquet data files.
    pub data_files: u64,
    /// Their bytes.
    pub data_file_bytes: u64,
    /// Rows inlined in the catalog (not yet in a file).
    pub inlined_rows: u64,
}

impl Lake {
    /// What `table` (in the lake's schema) holds now; `None` if it does not exist.
    pub fn table_contents(&self, table: &str) -> Result<Option<TableContents>, SinkError> {
        if self.table_columns(table)?.is_none() {
            return Ok(None);
        }
        let what = |w: &str| format!("read {w} of lake table {}.{table}", self.schema);
        let number = |sql: &str, w: &str| -> Result<u64, SinkError> {
            let mut r = self.conn.query(sql).map_err(duck(what(w)))?;
            Ok(r.i64(0, 0).unwrap_or(0).max(0) as u64)
        };
        let (files, bytes) = self.data_files(table)?;
        let rows = number(
            &format!("SELECT count(*) FROM {}", self.qualified(table)),
            "the rows",
        )?;
        let meta = format!("__ducklake_metadata_{LAKE_ALIAS}");
        // One inlined-data table per schema version of the table; its live rows are those no
        // snapshot ended.
        let mut r = self
            .conn
            .query(&format!(
                "SELECT i.table_name FROM {meta}.ducklake_inlined_data_tables i \
                 JOIN {meta}.ducklake_table t ON t.table_id = i.table_id \
                 JOIN {meta}.ducklake_schema s ON s.schema_id = t.schema_id \
                 WHERE t.table_name = {} AND s.schema_name = {} \
                   AND t.end_snapshot IS NULL AND s.end_snapshot IS NULL \
                 ORDER BY i.schema_version",
                literal(table),
                literal(&self.schema)
            ))
            .map_err(duck(what("the inlined-data tables")))?;
        let inlined_tables: Vec<String> = (0..r.row_count()).filter_map(|i| r.text(0, i)).collect();
        let mut inlined = 0;
        for t in inlined_tables {
            inlined += number(
                &format!(
                    "SELECT count(*) FROM {meta}.{} WHERE end_snapshot IS NULL",
                    ident(&t)
                ),
                "the inlined rows",
            )?;
        }
        Ok(Some(TableContents {
            rows,
            data_files: files,
            data_file_bytes: bytes,
            inlined_rows: inlined,
        }))
    }

    /// (count, bytes) of `table`'s live Parquet data files, as `ducklake_list_files` lists them.
    pub fn data_files(&self, table: &str) -> Result<(u64, u64), SinkError> {
        let mut r = self
            .conn
            .query(&format!(
                "SELECT count(*), coalesce(sum(data_file_size_bytes), 0)::BIGINT \
                 FROM ducklake_list_files('{LAKE_ALIAS}', {}, schema => {})",
                literal(table),
                literal(&self.schema)
            ))
            .map_err(duck(format!(
                "list the data files of lake table {}.{table}",
                self.schema
            )))?;
        Ok((
            r.i64(0, 0).unwrap_or(0).max(0) as u64,
            r.i64(1, 0).unwrap_or(0).max(0) as u64,
        ))
    }
}
