//! Schema evolution: which column changes a message's schema asks of a table, and the plan a
//! commit applies in its own transaction (columns added, types widened) before the rows.
//!
//! Columns match by name, in any order. A message column the table lacks is added (nullable);
//! a message column narrower than the table's is cast on insert (losslessly, see [`holds`]); a
//! wider one widens the table's column when sluice makes that widening (see [`widens`]); a
//! table column the message lacks gets NULLs. Everything else (an unrelated type, a lossy
//! change, any change inside a nested type) is a misfit and its message is quarantined.
//!
//! Two DuckLake 1.5.5 bugs shape this (both reproduced here with the stock DuckDB CLI):
//! - A `SET TYPE` in the transaction that also inserts rows leaves wrong min/max statistics,
//!   and after the next insert older rows of that column read back wrong (INTEGER → BIGINT: 7
//!   read as 4294967303; duckdb/ducklake #1308, fix open in PR #1331). So a commit widens in a
//!   transaction of its own, committed just before the one of its rows (added columns stay in
//!   the rows' transaction).
//! - FLOAT → DOUBLE keeps the FLOAT statistics as strings reparsed as DOUBLE, and filtered
//!   queries then skip rows written before (100 rows of 0.1::FLOAT, widened: `WHERE f > 0.1`
//!   counted 0 of them; duckdb/ducklake #1307, open). sluice does not make that widening; the
//!   message is quarantined saying so. A table whose FLOAT column an operator widened by hand
//!   takes FLOAT messages (cast on insert).

use std::collections::HashSet;

use super::schema::{Column, Problem};

/// One change to a table's columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `ALTER TABLE … ADD COLUMN` (nullable).
    Add {
        /// Column.
        column: String,
        /// Its DuckDB type.
        ty: String,
    },
    /// `ALTER TABLE … ALTER COLUMN … SET TYPE`.
    Widen {
        /// Column.
        column: String,
        /// The table's type before.
        from: String,
        /// The wider type.
        to: String,
    },
}

impl Change {
    /// The column changed.
    pub fn column(&self) -> &str {
        match self {
            Change::Add { column, .. } | Change::Widen { column, .. } => column,
        }
    }

    /// The type before (`None`: the column is new).
    pub fn from(&self) -> Option<&str> {
        match self {
            Change::Add { .. } => None,
            Change::Widen { from, .. } => Some(from),
        }
    }

    /// The type after.
    pub fn to(&self) -> &str {
        match self {
            Change::Add { ty, .. } => ty,
            Change::Widen { to, .. } => to,
        }
    }

    /// `add_column` or `widen` (the metrics label).
    pub fn kind(&self) -> &'static str {
        match self {
            Change::Add { .. } => "add_column",
            Change::Widen { .. } => "widen",
        }
    }
}

/// Whether a table column of DuckDB type `table` holds every value of type `message` (cast on
/// insert, or after widening): the type itself or a lossless numeric promotion of it.
pub fn holds(table: &str, message: &str) -> bool {
    table == message
        || LOSSLESS
            .iter()
            .any(|(f, targets)| *f == message && targets.contains(&table))
}

/// Why sluice does not widen a column of type `from` to `to` although the promotion is
/// lossless (`None`: it does).
pub fn refused(from: &str, to: &str) -> Option<&'static str> {
    (from == "FLOAT" && to == "DOUBLE").then_some(
        "DuckLake 1.5.5 keeps the FLOAT min/max statistics and filtered queries then skip rows written before (duckdb/ducklake#1307)",
    )
}

/// Whether sluice widens a table column of type `from` to `to` (`SET TYPE`): the lossless
/// promotions but those [`refused`] (DuckLake itself accepts more, e.g. BIGINT to DOUBLE,
/// which loses precision). Each pair is checked against a real DuckLake in `sink::tests`.
pub fn widens(from: &str, to: &str) -> bool {
    from != to && holds(to, from) && refused(from, to).is_none()
}

/// The lossless numeric promotions, per source type.
pub const LOSSLESS: &[(&str, &[&str])] = &[
    (
        "TINYINT",
        &["SMALLINT", "INTEGER", "BIGINT", "FLOAT", "DOUBLE"],
    ),
    ("SMALLINT", &["INTEGER", "BIGINT", "FLOAT", "DOUBLE"]),
    ("INTEGER", &["BIGINT", "DOUBLE"]),
    (
        "UTINYINT",
        &[
            "USMALLINT",
            "UINTEGER",
            "UBIGINT",
            "SMALLINT",
            "INTEGER",
            "BIGINT",
            "FLOAT",
            "DOUBLE",
        ],
    ),
    (
        "USMALLINT",
        &[
            "UINTEGER", "UBIGINT", "INTEGER", "BIGINT", "FLOAT", "DOUBLE",
        ],
    ),
    ("UINTEGER", &["UBIGINT", "BIGINT", "DOUBLE"]),
    ("FLOAT", &["DOUBLE"]),
];

/// How a message column of type `message` relates to a table column of type `table`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// Same type, or the table's type holds the message's (cast on insert).
    Fits,
    /// The table's column widens to the message's type.
    Widens,
    /// A lossless widening sluice does not make, and why.
    Refused(&'static str),
    /// Neither.
    Incompatible,
}

/// See [`Relation`].
pub fn relate(message: &str, table: &str) -> Relation {
    if holds(table, message) {
        Relation::Fits
    } else if widens(table, message) {
        Relation::Widens
    } else if let Some(why) = refused(table, message).filter(|_| holds(message, table)) {
        Relation::Refused(why)
    } else {
        Relation::Incompatible
    }
}

/// The columns `table` (its columns, `not_null` the ones declared NOT NULL) needs to take rows
/// of `incoming` under evolution: `Ok` with the changes (empty: it fits as it is) and the
/// columns after them, or the problems that make it a misfit.
pub fn evolve(
    table: &[Column],
    not_null: &HashSet<String>,
    incoming: &[Column],
) -> Result<(Vec<Change>, Vec<Column>), Vec<Problem>> {
    let mut problems = Vec::new();
    let mut changes = Vec::new();
    let mut after: Vec<Column> = table.to_vec();
    let mut seen = HashSet::new();
    for (name, ty) in incoming {
        if !seen.insert(name.as_str()) {
            problems.push(Problem::DuplicateNames);
            continue;
        }
        match after.iter_mut().find(|(n, _)| n == name) {
            None => {
                changes.push(Change::Add {
                    column: name.clone(),
                    ty: ty.clone(),
                });
                after.push((name.clone(), ty.clone()));
            }
            Some((_, have)) => match relate(ty, have) {
                Relation::Fits => {}
                Relation::Widens => {
                    changes.push(Change::Widen {
                        column: name.clone(),
                        from: have.clone(),
                        to: ty.clone(),
                    });
                    *have = ty.clone();
                }
                Relation::Refused(why) => problems.push(Problem::WideningRefused {
                    column: name.clone(),
                    message_type: ty.clone(),
                    table_type: have.clone(),
                    why,
                }),
                Relation::Incompatible => problems.push(Problem::CannotEvolve {
                    column: name.clone(),
                    message_type: ty.clone(),
                    table_type: have.clone(),
                }),
            },
        }
    }
    for (name, ty) in table {
        if !seen.contains(name.as_str()) && not_null.contains(name) {
            problems.push(Problem::MissingFromMessage {
                column: name.clone(),
                table_type: format!("{ty} NOT NULL"),
            });
        }
    }
    if problems.is_empty() {
        Ok((changes, after))
    } else {
        problems.dedup();
        Err(problems)
    }
}

/// What one commit does to its table before inserting: create it with `create`, or apply
/// `changes` to it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Columns to create the table with (it does not exist).
    pub create: Option<Vec<Column>>,
    /// Changes to the existing table, in order.
    pub changes: Vec<Change>,
}

/// The plan for a commit of batches whose schemas have the columns `groups` (in Kafka order)
/// into a table whose columns are `current` (`None`: it does not exist yet). The table ends
/// with the widest columns of all of them, first-seen order.
pub fn plan(
    current: Option<&[Column]>,
    not_null: &HashSet<String>,
    groups: &[&[Column]],
) -> Result<Plan, Vec<Problem>> {
    let mut cols: Vec<Column> = current.map(<[Column]>::to_vec).unwrap_or_default();
    let mut changes = Vec::new();
    for g in groups {
        let (c, after) = evolve(&cols, not_null, g)?;
        changes.extend(c);
        cols = after;
    }
    Ok(match current {
        None => Plan {
            create: (!cols.is_empty()).then_some(cols),
            changes: Vec::new(),
        },
        Some(_) => Plan {
            create: None,
            changes: merge_widenings(changes),
        },
    })
}

/// Successive widenings of one column become one (INTEGER → BIGINT after SMALLINT → INTEGER is
/// SMALLINT → BIGINT); an added column that is later widened is added with the wider type.
fn merge_widenings(changes: Vec<Change>) -> Vec<Change> {
    let mut out: Vec<Change> = Vec::new();
    for c in changes {
        let prior = out.iter_mut().find(|p| p.column() == c.column());
        match (prior, c) {
            (Some(Change::Add { ty, .. }), Change::Widen { to, .. }) => *ty = to,
            (Some(Change::Widen { to: prev_to, .. }), Change::Widen { to, .. }) => *prev_to = to,
            (_, c) => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(v: &[(&str, &str)]) -> Vec<Column> {
        v.iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn added_widened_narrower_and_missing_columns_evolve() {
        let table = cols(&[("id", "BIGINT"), ("v", "INTEGER"), ("x", "DOUBLE")]);
        let msg = cols(&[
            ("note", "VARCHAR"),
            ("v", "BIGINT"),
            ("id", "INTEGER"),
            ("s", "STRUCT(a INTEGER, b VARCHAR)"),
        ]);
        let (changes, after) = evolve(&table, &HashSet::new(), &msg).unwrap();
        assert_eq!(
            changes,
            vec![
                Change::Add {
                    column: "note".into(),
                    ty: "VARCHAR".into()
                },
                Change::Widen {
                    column: "v".into(),
                    from: "INTEGER".into(),
                    to: "BIGINT".into()
                },
                Change::Add {
                    column: "s".into(),
                    ty: "STRUCT(a INTEGER, b VARCHAR)".into()
                },
            ]
        );
        assert_eq!(
            after,
            cols(&[
                ("id", "BIGINT"),
                ("v", "BIGINT"),
                ("x", "DOUBLE"),
                ("note", "VARCHAR"),
                ("s", "STRUCT(a INTEGER, b VARCHAR)")
            ])
        );
    }

    #[test]
    fn narrowing_unrelated_lossy_nested_and_not_null_gaps_are_misfits() {
        let table = cols(&[
            ("a", "BIGINT"),
            ("b", "INTEGER"),
            ("c", "BIGINT"),
            ("s", "STRUCT(a INTEGER)"),
            ("k", "VARCHAR"),
            ("f", "FLOAT"),
        ]);
        let msg = cols(&[
            ("a", "DOUBLE"),
            ("b", "VARCHAR"),
            ("c", "BIGINT"),
            ("s", "STRUCT(a INTEGER, b VARCHAR)"),
            ("f", "DOUBLE"),
        ]);
        let not_null = HashSet::from(["k".to_string()]);
        let problems = evolve(&table, &not_null, &msg).unwrap_err();
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            text,
            vec![
                "column \"a\" is DOUBLE in the message but BIGINT in the table, which cannot change to it (only lossless numeric widening is applied)",
                "column \"b\" is VARCHAR in the message but INTEGER in the table, which cannot change to it (only lossless numeric widening is applied)",
                "column \"s\" is STRUCT(a INTEGER, b VARCHAR) in the message but STRUCT(a INTEGER) in the table, which cannot change to it (only lossless numeric widening is applied)",
                "column \"f\" is DOUBLE in the message but FLOAT in the table; sluice does not widen FLOAT to DOUBLE: DuckLake 1.5.5 keeps the FLOAT min/max statistics and filtered queries then skip rows written before (duckdb/ducklake#1307)",
                "column \"k\" (VARCHAR NOT NULL) is missing from the message",
            ]
        );
    }

    #[test]
    fn a_plan_over_several_schemas_ends_at_the_widest_and_merges_widenings() {
        let table = cols(&[("id", "BIGINT"), ("v", "SMALLINT")]);
        let v2 = cols(&[("id", "BIGINT"), ("v", "INTEGER"), ("note", "VARCHAR")]);
        let v3 = cols(&[("id", "BIGINT"), ("v", "BIGINT"), ("f", "SMALLINT")]);
        let v4 = cols(&[("f", "INTEGER")]);
        let none = HashSet::new();
        let p = plan(Some(&table), &none, &[&v2, &v3, &v4]).unwrap();
        assert_eq!(
            p.changes,
            vec![
                Change::Widen {
                    column: "v".into(),
                    from: "SMALLINT".into(),
                    to: "BIGINT".into()
                },
                Change::Add {
                    column: "note".into(),
                    ty: "VARCHAR".into()
                },
                Change::Add {
                    column: "f".into(),
                    ty: "INTEGER".into()
                },
            ]
        );
        assert_eq!(p.create, None);
        let created = plan(None, &none, &[&v2, &v3]).unwrap();
        assert_eq!(
            created.create,
            Some(cols(&[
                ("id", "BIGINT"),
                ("v", "BIGINT"),
                ("note", "VARCHAR"),
                ("f", "SMALLINT")
            ]))
        );
        assert!(created.changes.is_empty());
        let fits = plan(Some(&table), &none, &[&cols(&[("v", "TINYINT")])]).unwrap();
        assert_eq!(fits, Plan::default());
    }

    #[test]
    fn widening_is_lossless_only_and_not_float_to_double() {
        assert!(widens("INTEGER", "BIGINT"));
        assert!(widens("UINTEGER", "BIGINT"));
        assert!(!widens("FLOAT", "DOUBLE"));
        assert!(holds("DOUBLE", "FLOAT"));
        assert!(matches!(relate("DOUBLE", "FLOAT"), Relation::Refused(_)));
        assert_eq!(relate("FLOAT", "DOUBLE"), Relation::Fits);
        assert!(!widens("BIGINT", "DOUBLE"));
        assert!(!widens("INTEGER", "FLOAT"));
        assert!(!widens("UBIGINT", "BIGINT"));
        assert!(!widens("BIGINT", "INTEGER"));
        assert_eq!(relate("INTEGER", "BIGINT"), Relation::Fits);
        assert_eq!(relate("BIGINT", "INTEGER"), Relation::Widens);
        assert_eq!(relate("VARCHAR", "INTEGER"), Relation::Incompatible);
    }
}
