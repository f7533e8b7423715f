//! Whether batches fit a lake table. DuckDB's own view of an Arrow schema (its Arrow scan's
//! column types) is compared with the table's columns; a batch that does not fit is described
//! by a typed [`Misfit`] naming each column, its type in the message and in the table.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;

use super::duck::literal;
use super::ffi_stream::BatchStream;
use super::{LAKE_ALIAS, Lake, SinkError, duck};

/// A column of a lake table: name and DuckDB type as DuckDB prints it.
pub type Column = (String, String);

/// Whether batches of a schema fit a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fit {
    /// They can be inserted as they are.
    Fits,
    /// They cannot.
    Misfit(Misfit),
}

/// Why batches do not fit a table (the quarantine table's error text is its `Display`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schema does not fit table {table:?}: {}", describe(.problems))]
pub struct Misfit {
    /// The table.
    pub table: String,
    /// Each difference, in the message's column order, then the table's.
    pub problems: Vec<Problem>,
}

/// One difference between a message's columns and a table's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The message has a column the table lacks.
    NotInTable {
        /// Column.
        column: String,
        /// Its DuckDB type in the message.
        message_type: String,
    },
    /// A column has another type in the message than in the table.
    TypeDiffers {
        /// Column.
        column: String,
        /// Its DuckDB type in the message.
        message_type: String,
        /// Its type in the table.
        table_type: String,
    },
    /// The table has a column the message lacks.
    MissingFromMessage {
        /// Column.
        column: String,
        /// Its type in the table.
        table_type: String,
    },
    /// The message names a column twice.
    DuplicateNames,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::NotInTable {
                column,
                message_type,
            } => {
                write!(f, "column {column:?} ({message_type}) is not in the table")
            }
            Problem::TypeDiffers {
                column,
                message_type,
                table_type,
            } => write!(
                f,
                "column {column:?} is {message_type} in the message but {table_type} in the table"
            ),
            Problem::MissingFromMessage { column, table_type } => {
                write!(
                    f,
                    "column {column:?} ({table_type}) is missing from the message"
                )
            }
            Problem::DuplicateNames => f.write_str("the message has duplicate column names"),
        }
    }
}

fn describe(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// What a handle knows of one table.
#[derive(Default)]
pub(super) struct TableInfo {
    /// Columns of the table in the lake, or of the first batch when it does not exist yet.
    pub columns: Option<Vec<Column>>,
    /// Whether the table exists in the lake (else it is created by the next flush).
    pub exists: bool,
    /// Verdicts per Arrow schema already seen.
    verdicts: Vec<(SchemaRef, Fit)>,
}

impl Lake {
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

    /// Whether batches of `schema` fit `table`. The first schema seen for a table that does not
    /// exist yet defines it. Verdicts are cached per schema, so this costs a lookup per batch.
    pub fn check_fit(&mut self, table: &str, schema: &SchemaRef) -> Result<Fit, SinkError> {
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
                Fit::Fits
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
}

fn compare_columns(table: &str, table_cols: &[Column], incoming: &[Column]) -> Fit {
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
            None => problems.push(Problem::NotInTable {
                column: n.clone(),
                message_type: t.clone(),
            }),
            Some(wt) if wt != t => problems.push(Problem::TypeDiffers {
                column: n.clone(),
                message_type: t.clone(),
                table_type: wt.to_string(),
            }),
            _ => {}
        }
    }
    for (n, t) in table_cols {
        if !got.contains_key(n.as_str()) {
            problems.push(Problem::MissingFromMessage {
                column: n.clone(),
                table_type: t.clone(),
            });
        }
    }
    if incoming.len() != got.len() {
        problems.push(Problem::DuplicateNames);
    }
    if problems.is_empty() {
        Fit::Fits
    } else {
        Fit::Misfit(Misfit {
            table: table.to_string(),
            problems,
        })
    }
}
