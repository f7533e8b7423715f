//! The sink's schema evolution against a real DuckLake: what fits, the widenings DuckLake
//! accepts, and one commit of several schema versions.

use super::tests::{batch, lake_in, misfit};
use super::*;
use arrow::array::{Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};

#[test]
fn under_evolution_added_widened_and_missing_columns_fit_and_the_rest_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut lake = lake_in(dir.path());
    let v1 = batch(0..1).schema();
    assert_eq!(lake.check_fit("ev", &v1).unwrap(), Fit::Fits);
    let v2 = Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, true),
        Field::new("id", DataType::Int64, false),
        Field::new("score", DataType::Int16, true),
    ]));
    assert_eq!(
        lake.check_fit("ev", &v2).unwrap(),
        Fit::Evolves(vec![Change::Add {
            column: "score".into(),
            ty: "SMALLINT".into()
        }])
    );
    let v3 = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("score", DataType::Int32, true),
    ]));
    assert_eq!(
        lake.check_fit("ev", &v3).unwrap(),
        Fit::Evolves(vec![Change::Widen {
            column: "score".into(),
            from: "SMALLINT".into(),
            to: "INTEGER".into()
        }])
    );
    let lossy = Arc::new(Schema::new(vec![Field::new("id", DataType::Float64, true)]));
    assert_eq!(
        misfit(lake.check_fit("ev", &lossy).unwrap()),
        "schema does not fit table \"ev\": column \"id\" is DOUBLE in the message but BIGINT in the table, which cannot change to it (only lossless numeric widening is applied)"
    );
}

#[test]
fn every_widening_sluice_makes_is_one_ducklake_accepts_with_values_intact() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_in(dir.path());
    let mut n = 0;
    for (from, targets) in evolve::LOSSLESS {
        for to in targets.iter().filter(|to| evolve::widens(from, to)) {
            let t = lake.qualified(&format!("w{n}"));
            n += 1;
            let sql = format!(
                "CREATE TABLE {t} (v {from}); INSERT INTO {t} VALUES (CAST(100 AS {from})); \
                 BEGIN; ALTER TABLE {t} ALTER COLUMN v SET TYPE {to}; COMMIT;"
            );
            lake.conn
                .execute(&sql)
                .unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
            assert_eq!(
                lake.query_rows(&format!("SELECT typeof(v), v::VARCHAR FROM {t}"))
                    .unwrap(),
                vec![vec![
                    Some(to.to_string()),
                    Some(
                        if to.contains("FLOAT") || to.contains("DOUBLE") {
                            "100.0"
                        } else {
                            "100"
                        }
                        .to_string()
                    )
                ]],
                "{from} -> {to}"
            );
        }
    }
    assert_eq!(n, 28);
}

#[test]
fn one_commit_of_three_schema_versions_evolves_the_table_and_keeps_kafka_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut lake = lake_in(dir.path());
    lake.register_partitions("t", &[0]).unwrap();
    let v1 = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::Int32, true),
        ])),
        vec![
            Arc::new(Int64Array::from(vec![0, 1])),
            Arc::new(arrow::array::Int32Array::from(vec![10, 11])),
        ],
    )
    .unwrap();
    let v2 = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("note", DataType::Utf8, true),
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::Int64, true),
        ])),
        vec![
            Arc::new(StringArray::from(vec!["two", "three"])),
            Arc::new(Int64Array::from(vec![2, 3])),
            Arc::new(Int64Array::from(vec![1 << 40, 13])),
        ],
    )
    .unwrap();
    let batches = vec![v1.clone(), v2, v1];
    let flush = |lake: &mut Lake, batches: &[RecordBatch], prev, next| {
        lake.commit(&TableFlush {
            table: "ev",
            batches,
            quarantine: &[],
            offsets: &[OffsetUpdate {
                topic: Arc::from("t"),
                partition: 0,
                prev,
                next,
            }],
        })
    };
    // The first commit creates the table with the widest columns; the second (a v1 table,
    // then v2 rows) evolves it.
    let created = flush(&mut lake, &batches, NO_OFFSET, 3).unwrap();
    assert_eq!(created.rows, 6);
    assert!(created.changes.is_empty());
    assert_eq!(
        lake.table_columns("ev").unwrap().unwrap(),
        vec![
            ("id".to_string(), "BIGINT".to_string()),
            ("v".to_string(), "BIGINT".to_string()),
            ("note".to_string(), "VARCHAR".to_string())
        ]
    );
    let dir2 = tempfile::tempdir().unwrap();
    let mut lake2 = lake_in(dir2.path());
    lake2.register_partitions("t", &[0]).unwrap();
    flush(&mut lake2, &batches[..1], NO_OFFSET, 1).unwrap();
    let evolved = flush(&mut lake2, &batches[1..], 1, 3).unwrap();
    assert_eq!(
        evolved.changes,
        vec![
            Change::Widen {
                column: "v".into(),
                from: "INTEGER".into(),
                to: "BIGINT".into()
            },
            Change::Add {
                column: "note".into(),
                ty: "VARCHAR".into()
            },
        ]
    );
    // A later commit must not change how the rows from before the widening read (it did with
    // the widening in the rows' transaction: 10 read as 4294967306, ducklake #1308).
    let again = [batches[0].clone()];
    flush(&mut lake2, &again, 3, 4).unwrap();
    flush(&mut lake, &again, 3, 4).unwrap();
    for l in [&lake, &lake2] {
        assert_eq!(
            l.query_rows("SELECT list(id ORDER BY rowid)::VARCHAR, list(v ORDER BY rowid)::VARCHAR, list(note ORDER BY rowid)::VARCHAR FROM lake.main.ev")
                .unwrap(),
            vec![vec![
                Some("[0, 1, 2, 3, 0, 1, 0, 1]".to_string()),
                Some("[10, 11, 1099511627776, 13, 10, 11, 10, 11]".to_string()),
                Some("[NULL, NULL, two, three, NULL, NULL, NULL, NULL]".to_string())
            ]]
        );
    }
}
