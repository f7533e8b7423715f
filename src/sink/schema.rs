//! Whether batches fit a lake table. DuckDB's own view of an Arrow schema (its Arrow scan's
//! column types) is compared with the table's columns, exactly (`strict`) or allowing the
//! changes [`super::evolve`] makes (`evolve`); a batch that does not fit is described by a typed
//! [`Misfit`] naming each column, its type in the message and in the table.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;

use super::duck::literal;
use super::evolve::{self, Change};
use super::ffi_stream::BatchStream;
use super::{LAKE_ALIAS, Lake, SinkError, duck};
use crate::config::SchemaEvolution;

/// A column of a lake table: name and DuckDB type as DuckDB prints it.
pub type Column = (String, String);

/// Whether batches of a schema fit a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fit {
    /// They can be inserted as they are.
    Fits,
    /// They fit once the table takes these changes (the commit of their rows makes them).
    Evolves(Vec<Change>),
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
    /// Under evolution: a column's type in the message is a lossless widening of the table's
    /// that sluice does not make, for the reason given.
    WideningRefused {
        /// Column.
        column: String,
        /// Its DuckDB type in the message.
        message_type: String,
        /// Its type in the table.
        table_type: String,
        /// Why.
        why: &'static str,
    },
    /// Under evolution: a column's type in the message is neither the table's, nor narrower
    /// than it, nor a lossless widening of it.
    CannotEvolve {
        /// Column.
        column: String,
        /// Its DuckDB type in the message.
        message_type: String,
        /// Its type in the table.
        table_type: String,
    },
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
            Problem::WideningRefused {
                column,
                message_type,
                table_type,
                why,
            } => write!(
                f,
                "column {column:?} is {message_type} in the message but {table_type} in the table; sluice does not widen {table_type} to {message_type}: {why}"
            ),
            Problem::CannotEvolve {
                column,
                message_type,
                table_type,
            } => write!(
                f,
                "column {column:?} is {message_type} in the message but {table_type} in the table, which cannot change to it (only lossless numeric widening is applied)"
            ),
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
    /// Columns of the table in the lake with the changes of the batches accepted since (or of
    /// the first batches, when it does not exist yet): what the next batch is compared with.
    pub columns: Option<Vec<Column>>,
    /// Its columns declared NOT NULL (a message must have them).
    pub not_null: HashSet<String>,
    /// Verdicts per Arrow schema already seen.
    verdicts: Vec<(SchemaRef, Fit)>,
}

/// A table's columns and the names of those declared NOT NULL.
pub(super) type TableSchema = (Vec<Column>, HashSet<String>);

/// The DuckDB columns of each Arrow schema a handle has seen (DuckDB's Arrow scan types).
#[derive(Default)]
pub(super) struct Described(Vec<(SchemaRef, Vec<Column>)>);

impl Lake {
    /// Columns of a lake table, or `None` if it does not exist.
    pub fn table_columns(&self, table: &str) -> Result<Option<Vec<Column>>, SinkError> {
        Ok(self.table_schema(table)?.map(|(c, _)| c))
    }

    /// Columns of a lake table and those of them declared NOT NULL, or `None` if it does not
    /// exist (inside a transaction: as that transaction sees it).
    pub(super) fn table_schema(&self, table: &str) -> Result<Option<TableSchema>, SinkError> {
        let sql = format!(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns \
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
        let mut columns = Vec::with_capacity(rows.len());
        let mut not_null = HashSet::new();
        for mut row in rows {
            let nullable = row.pop().flatten().unwrap_or_default();
            let ty = row.pop().flatten().unwrap_or_default();
            let name = row.pop().flatten().unwrap_or_default();
            if nullable == "NO" {
                not_null.insert(name.clone());
            }
            columns.push((name, ty));
        }
        Ok(Some((columns, not_null)))
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

    /// [`Lake::arrow_columns`], remembered per schema.
    pub(super) fn described(&mut self, schema: &SchemaRef) -> Result<Vec<Column>, SinkError> {
        if let Some((_, c)) = self
            .described
            .0
            .iter()
            .find(|(s, _)| Arc::ptr_eq(s, schema) || s == schema)
        {
            return Ok(c.clone());
        }
        let c = self.arrow_columns(schema)?;
        self.described.0.push((schema.clone(), c.clone()));
        Ok(c)
    }

    /// Whether batches of `schema` fit `table`, under this handle's schema evolution mode. The
    /// first schema seen for a table that does not exist yet defines it; under evolution each
    /// accepted change is what later schemas are compared with. Verdicts are cached per
    /// schema, so this costs a lookup per batch.
    pub fn check_fit(&mut self, table: &str, schema: &SchemaRef) -> Result<Fit, SinkError> {
        if let Some(info) = self.tables.get(table)
            && let Some((_, v)) = info
                .verdicts
                .iter()
                .find(|(s, _)| Arc::ptr_eq(s, schema) || s == schema)
        {
            return Ok(v.clone());
        }
        let incoming = self.described(schema)?;
        if self.tables.get(table).is_none_or(|i| i.columns.is_none()) {
            let existing = self.table_schema(table)?;
            let info = self.tables.entry(table.to_string()).or_default();
            if let Some((columns, not_null)) = existing {
                info.columns = Some(columns);
                info.not_null = not_null;
            }
        }
        let evolution = self.evolution;
        let info = self.tables.entry(table.to_string()).or_default();
        let verdict = match &info.columns {
            // The first schema defines the table, unless it names a column twice.
            None => match evolve::evolve(&[], &info.not_null, &incoming) {
                Ok(_) => {
                    info.columns = Some(incoming);
                    Fit::Fits
                }
                Err(problems) => Fit::Misfit(Misfit {
                    table: table.to_string(),
                    problems,
                }),
            },
            Some(cols) => match evolution {
                SchemaEvolution::Strict => compare_columns(table, cols, &incoming),
                SchemaEvolution::Evolve => match evolve::evolve(cols, &info.not_null, &incoming) {
                    Ok((changes, _)) if changes.is_empty() => Fit::Fits,
                    Ok((changes, after)) => {
                        info.columns = Some(after);
                        // A schema that did not fit the narrower table may fit this one.
                        info.verdicts.retain(|(_, v)| !matches!(v, Fit::Misfit(_)));
                        Fit::Evolves(changes)
                    }
                    Err(problems) => Fit::Misfit(Misfit {
                        table: table.to_string(),
                        problems,
                    }),
                },
            },
        };
        info.verdicts.push((schema.clone(), verdict.clone()));
        Ok(verdict)
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
