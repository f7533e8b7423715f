use super::*;
use crate::config::{CatalogKind, SchemaEvolution};
use arrow::array::{Int64Array, StringArray};
use arrow::buffer::Buffer;
use arrow::datatypes::{DataType, Field, Schema};
use duck::ErrorKind;
use std::collections::BTreeMap;

/// The text of a misfit verdict (what the quarantine table records).
pub(super) fn misfit(fit: Fit) -> String {
    match fit {
        Fit::Misfit(m) => m.to_string(),
        other => panic!("expected a misfit, got {other:?}"),
    }
}

/// A lake in `dir` on the default (SQLite) catalog.
pub(super) fn lake_in(dir: &std::path::Path) -> Lake {
    lake_of_kind(dir, CatalogKind::Sqlite)
}

fn lake_of_kind(dir: &std::path::Path, catalog_kind: CatalogKind) -> Lake {
    let cfg = LakeConfig {
        catalog_kind,
        catalog: dir.join("cat.catalog").display().to_string(),
        data_path: format!("{}/data/", dir.display()),
        ..LakeConfig::default()
    };
    Lake::open(&cfg, "g1").unwrap()
}

pub(super) fn batch(ids: std::ops::Range<i64>) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]));
    let names: Vec<Option<String>> = ids
        .clone()
        .map(|i| (i % 3 != 0).then(|| format!("n{i}")))
        .collect();
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(ids)),
            Arc::new(StringArray::from(names)),
        ],
    )
    .unwrap()
}

fn one(lake: &Lake, sql: &str) -> String {
    lake.query_rows(sql).unwrap()[0][0]
        .clone()
        .unwrap_or_else(|| "NULL".into())
}

#[test]
fn commit_lands_data_offsets_and_quarantine_in_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let mut lake = lake_in(dir.path());
    let topic: Arc<str> = Arc::from("events");
    assert_eq!(
        lake.register_partitions("events", &[0, 1]).unwrap(),
        BTreeMap::from([(0, NO_OFFSET), (1, NO_OFFSET)])
    );
    let b = batch(0..1000);
    assert_eq!(lake.check_fit("ev", &b.schema()).unwrap(), Fit::Fits);
    let report = lake
        .commit(&TableFlush {
            table: "ev",
            batches: &[b.clone(), batch(1000..1500)],
            quarantine: &[QuarantineRow {
                meta: MessageMeta {
                    topic: topic.clone(),
                    partition: 1,
                    offset: 7,
                    timestamp_ms: Some(1_700_000_000_123),
                },
                error: "not Arrow IPC".into(),
                payload: Buffer::from(b"\x00bad\xff".to_vec()),
            }],
            offsets: &[
                OffsetUpdate {
                    topic: topic.clone(),
                    partition: 0,
                    prev: NO_OFFSET,
                    next: 10,
                },
                OffsetUpdate {
                    topic: topic.clone(),
                    partition: 1,
                    prev: NO_OFFSET,
                    next: 8,
                },
            ],
        })
        .unwrap();
    assert_eq!(
        report,
        CommitReport {
            rows: 1500,
            quarantined: 1,
            files: 1,
            file_bytes: report.file_bytes,
            // Both batches are small (~16 KB and ~8 KB): DuckDB was handed them joined.
            coalesced: coalesce::Coalesced {
                batches: 2,
                joined: 1,
                bytes: (coalesce::bytes(&b) + coalesce::bytes(&batch(1000..1500))) as u64,
            },
            changes: Vec::new(),
        }
    );
    // The one Parquet file on disk has exactly the reported size.
    fn sizes(dir: &std::path::Path, out: &mut Vec<u64>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                sizes(&p, out);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(e.metadata().unwrap().len());
            }
        }
    }
    let mut on_disk = Vec::new();
    sizes(&dir.path().join("data"), &mut on_disk);
    assert_eq!(on_disk, vec![report.file_bytes]);
    assert_eq!(
        lake.query_rows("SELECT count(*), sum(id), count(name) FROM lake.main.ev")
            .unwrap(),
        vec![vec![
            Some("1500".into()),
            Some("1124250".into()),
            Some("1000".into())
        ]]
    );
    assert_eq!(
        lake.read_offsets("events").unwrap(),
        BTreeMap::from([(0, 10), (1, 8)])
    );
    assert_eq!(
        lake.query_rows(
            "SELECT consumer_group, topic, \"partition\", \"offset\", epoch_ms(kafka_timestamp), error, hex(payload) FROM lake.main.sluice_quarantine"
        )
        .unwrap(),
        vec![vec![
            Some("g1".into()),
            Some("events".into()),
            Some("1".into()),
            Some("7".into()),
            Some("1700000000123".into()),
            Some("not Arrow IPC".into()),
            Some("00626164FF".into()),
        ]]
    );
    // A later flush continues from the committed offsets.
    lake.commit(&TableFlush {
        table: "ev",
        batches: &[batch(1500..1600)],
        quarantine: &[],
        offsets: &[OffsetUpdate {
            topic: topic.clone(),
            partition: 0,
            prev: 10,
            next: 11,
        }],
    })
    .unwrap();
    assert_eq!(one(&lake, "SELECT count(*) FROM lake.main.ev"), "1600");
    assert_eq!(
        lake.read_offsets("events").unwrap(),
        BTreeMap::from([(0, 11), (1, 8)])
    );
}

#[test]
fn second_writer_of_a_range_gets_an_offset_conflict_and_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = lake_in(dir.path());
    let mut b = a.another("g1").unwrap();
    let topic: Arc<str> = Arc::from("t");
    a.register_partitions("t", &[0]).unwrap();
    // Both believe they own partition 0 from offset NO_OFFSET.
    let flush = |lake: &mut Lake, ids: std::ops::Range<i64>, next: i64| {
        assert_eq!(
            lake.check_fit("tt", &batch(0..1).schema()).unwrap(),
            Fit::Fits
        );
        lake.commit(&TableFlush {
            table: "tt",
            batches: &[batch(ids)],
            quarantine: &[],
            offsets: &[OffsetUpdate {
                topic: topic.clone(),
                partition: 0,
                prev: NO_OFFSET,
                next,
            }],
        })
    };
    flush(&mut a, 0..100, 100).unwrap();
    match flush(&mut b, 0..100, 100) {
        Err(SinkError::OffsetConflict { topic, partitions }) => {
            assert_eq!(topic, "t");
            assert_eq!(partitions, vec![(0, 100)]);
        }
        other => panic!("expected an offset conflict, got {other:?}"),
    }
    assert_eq!(one(&a, "SELECT count(*) FROM lake.main.tt"), "100");
    assert_eq!(a.read_offsets("t").unwrap(), BTreeMap::from([(0, 100)]));
}

#[test]
fn concurrent_transactions_on_one_partition_commit_exactly_once() {
    // Both read the same previous offset inside open transactions; DuckLake's conflict check
    // at commit must reject the second even though its conditional update matched a row.
    // (On a DuckDB-file catalog: on SQLite, sluice's handles never hold write transactions open
    // at once, see `Lake::write_turn`; the next test runs on both.)
    let dir = tempfile::tempdir().unwrap();
    let a = lake_of_kind(dir.path(), CatalogKind::Duckdb);
    let b = a.another("g1").unwrap();
    a.register_partitions("t", &[0]).unwrap();
    let offsets = a.qualified(OFFSETS_TABLE);
    let update = format!(
        "UPDATE {offsets} SET next_offset = 5 WHERE consumer_group = 'g1' AND topic = 't' AND \"partition\" = 0 AND next_offset = -1"
    );
    a.conn.execute("BEGIN").unwrap();
    b.conn.execute("BEGIN").unwrap();
    assert_eq!(a.conn.execute(&update).unwrap(), 1);
    assert_eq!(b.conn.execute(&update).unwrap(), 1);
    a.conn.execute("COMMIT").unwrap();
    let err = b.conn.execute("COMMIT").unwrap_err();
    // DuckDB's C API types it as a transaction error; its wording makes it a conflict.
    assert_eq!(err.kind, ErrorKind::Transaction, "{err}");
    assert!(err.is_conflict(), "{err}");
    let _ = b.conn.execute("ROLLBACK");
    assert_eq!(a.read_offsets("t").unwrap(), BTreeMap::from([(0, 5)]));
}

#[test]
fn schema_mismatch_is_described() {
    let dir = tempfile::tempdir().unwrap();
    let mut lake = lake_in(dir.path());
    lake.set_schema_evolution(SchemaEvolution::Strict);
    assert_eq!(
        lake.check_fit("ev", &batch(0..1).schema()).unwrap(),
        Fit::Fits
    );
    let other = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("extra", DataType::Float64, true),
    ]));
    assert_eq!(
        misfit(lake.check_fit("ev", &other).unwrap()),
        ("schema does not fit table \"ev\": column \"id\" is VARCHAR in the message but BIGINT in the table; \
             column \"extra\" (DOUBLE) is not in the table; column \"name\" (VARCHAR) is missing from the message"
            .to_string())
    );
    // Nullability and dictionary encoding do not matter: DuckDB types are compared.
    let dict = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new(
            "name",
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            true,
        ),
    ]));
    assert_eq!(lake.check_fit("ev", &dict).unwrap(), Fit::Fits);
}

#[test]
fn existing_table_defines_the_fit_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut lake = lake_in(dir.path());
        lake.register_partitions("t", &[0]).unwrap();
        assert_eq!(
            lake.check_fit("ev", &batch(0..1).schema()).unwrap(),
            Fit::Fits
        );
        lake.commit(&TableFlush {
            table: "ev",
            batches: &[batch(0..10)],
            quarantine: &[],
            offsets: &[OffsetUpdate {
                topic: Arc::from("t"),
                partition: 0,
                prev: NO_OFFSET,
                next: 1,
            }],
        })
        .unwrap();
    }
    let mut lake = lake_in(dir.path());
    let narrower = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    assert_eq!(
        lake.check_fit("ev", &narrower).unwrap(),
        Fit::Fits,
        "under evolution a missing column gets NULLs"
    );
    lake.set_schema_evolution(SchemaEvolution::Strict);
    assert_eq!(
        misfit(lake.check_fit("ev", &narrower).unwrap()),
        ("schema does not fit table \"ev\": column \"name\" (VARCHAR) is missing from the message"
            .to_string())
    );
    assert_eq!(
        lake.check_fit("ev", &batch(0..1).schema()).unwrap(),
        Fit::Fits
    );
}

#[test]
fn odd_table_names_are_quoted() {
    let dir = tempfile::tempdir().unwrap();
    let mut lake = lake_in(dir.path());
    lake.register_partitions("t", &[0]).unwrap();
    let name = "we\"ird table; DROP";
    assert_eq!(
        lake.check_fit(name, &batch(0..1).schema()).unwrap(),
        Fit::Fits
    );
    lake.commit(&TableFlush {
        table: name,
        batches: &[batch(0..3)],
        quarantine: &[],
        offsets: &[OffsetUpdate {
            topic: Arc::from("t"),
            partition: 0,
            prev: NO_OFFSET,
            next: 3,
        }],
    })
    .unwrap();
    assert_eq!(
        one(
            &lake,
            "SELECT count(*) FROM lake.main.\"we\"\"ird table; DROP\""
        ),
        "3"
    );
}

#[test]
fn unreachable_catalog_error_names_it_without_the_password() {
    let cfg = LakeConfig {
        catalog_kind: CatalogKind::Postgres,
        catalog: "host=127.0.0.1 port=1 dbname=lake user=sluice password=hunter2 connect_timeout=2"
            .into(),
        data_path: "/tmp/nowhere/".into(),
        ..LakeConfig::default()
    };
    let err = Lake::open(&cfg, "g")
        .err()
        .expect("attaching an unreachable catalog fails")
        .to_string();
    assert!(
        err.starts_with("attach the lake (catalog postgres host=127.0.0.1 port=1 dbname=lake user=sluice password=*** connect_timeout=2, data path /tmp/nowhere/)"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn redact_hides_password_values() {
    assert_eq!(
        redact("host=h password=s3cr3t user=u"),
        "host=h password=*** user=u"
    );
    assert_eq!(
        redact("postgres://u@h/db?PASSWORD=x&a=b"),
        "postgres://u@h/db?PASSWORD=***&a=b"
    );
    assert_eq!(redact("no secrets"), "no secrets");
    assert_eq!(
        redact(r"host=h password='a b\'c' user=u"),
        "host=h password=*** user=u"
    );
    assert_eq!(
        redact(r#"Unable to connect to Postgres at "host=h password=pw": refused"#),
        r#"Unable to connect to Postgres at "host=h password=***": refused"#
    );
    assert_eq!(
        redact("at postgresql://sluice:hunter2@db:5432/lake?sslmode=require and http://h/x"),
        "at postgresql://sluice:***@db:5432/lake?sslmode=require and http://h/x"
    );
    assert_eq!(
        redact("postgresql://sluice@db/lake"),
        "postgresql://sluice@db/lake"
    );
}

#[test]
fn every_error_of_a_scrubbed_database_is_scrubbed() {
    let scrubber: crate::sink::duck::Scrubber = Box::new(|t| t.replace("hunter2", "***"));
    let db = crate::sink::duck::Database::open_in_memory(&[], Some(scrubber)).unwrap();
    let conn = db.connect().unwrap();
    let err = conn
        .execute("SELECT error('could not reach host=db password=hunter2')")
        .unwrap_err();
    assert_eq!(
        err.message,
        "Invalid Input Error: could not reach host=db password=***"
    );
}

/// Returns the commit conflicts the handles retried.
fn two_handles_commit_concurrently(kind: CatalogKind) -> u64 {
    // Views of the Arrow streams live in the shared in-memory catalog; each handle must scan
    // only its own. 2 threads x 15 commits of 1000 distinct ids, conflicts retried.
    let dir = tempfile::tempdir().unwrap();
    let a = lake_of_kind(dir.path(), kind);
    a.register_partitions("t", &[0, 1]).unwrap();
    let handles: Vec<Lake> = vec![a.another("g1").unwrap(), a.another("g1").unwrap()];
    let conflicts = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let threads: Vec<_> = handles
        .into_iter()
        .enumerate()
        .map(|(p, mut lake)| {
            let conflicts = conflicts.clone();
            std::thread::spawn(move || {
                let mut prev = NO_OFFSET;
                for i in 0..15i64 {
                    let base = (p as i64 * 15 + i) * 1000;
                    let b = batch(base..base + 1000);
                    assert_eq!(lake.check_fit("shared", &b.schema()).unwrap(), Fit::Fits);
                    loop {
                        let r = lake.commit(&TableFlush {
                            table: "shared",
                            batches: std::slice::from_ref(&b),
                            quarantine: &[],
                            offsets: &[OffsetUpdate {
                                topic: Arc::from("t"),
                                partition: p as i32,
                                prev,
                                next: i + 1,
                            }],
                        });
                        match r {
                            Ok(report) => {
                                assert_eq!(report.rows, 1000);
                                break;
                            }
                            Err(SinkError::CommitConflict { .. }) => {
                                conflicts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                continue;
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                    prev = i + 1;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        a.query_rows("SELECT count(*), count(DISTINCT id), sum(id) FROM lake.main.shared")
            .unwrap(),
        vec![vec![
            Some("30000".into()),
            Some("30000".into()),
            Some("449985000".into())
        ]]
    );
    assert_eq!(
        a.read_offsets("t").unwrap(),
        BTreeMap::from([(0, 15), (1, 15)])
    );
    conflicts.load(std::sync::atomic::Ordering::Relaxed)
}

#[test]
fn two_handles_on_one_database_commit_concurrently_without_mixing_their_streams() {
    two_handles_commit_concurrently(CatalogKind::Duckdb);
}

#[test]
fn two_handles_on_one_sqlite_catalog_take_turns_and_commit_every_row_once() {
    // Without the turn a handle's commit fails with `database is locked` (ducklake #1309),
    // which would be retried as a conflict: with it, none is.
    assert_eq!(two_handles_commit_concurrently(CatalogKind::Sqlite), 0);
}

#[test]
fn under_a_memory_limit_a_tables_row_groups_hold_the_target_bytes_of_its_first_flush() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LakeConfig {
        catalog: dir.path().join("cat.catalog").display().to_string(),
        data_path: format!("{}/data/", dir.path().display()),
        row_group_bytes: Some(4 * 1024 * 1024),
        ..LakeConfig::default()
    };
    let mut lake = Lake::open(&cfg, "g1").unwrap();
    lake.register_partitions("wide", &[0]).unwrap();
    // 1,012 bytes a row (8 of id, 4 of string offset, 1,000 of text): 4 MiB hold 4,144 rows,
    // two whole vectors of 2,048.
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("text", DataType::Utf8, false),
    ]));
    let b = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(0..20_000)),
            Arc::new(StringArray::from_iter_values(
                (0..20_000).map(|i| format!("{i:01000}")),
            )),
        ],
    )
    .unwrap();
    let topic: Arc<str> = Arc::from("wide");
    lake.commit(&TableFlush {
        table: "wide",
        batches: &[b],
        quarantine: &[],
        offsets: &[OffsetUpdate {
            topic,
            partition: 0,
            prev: NO_OFFSET,
            next: 20,
        }],
    })
    .unwrap();
    assert_eq!(
        one(
            &lake,
            "SELECT value FROM ducklake_options('lake') WHERE option_name = 'parquet_row_group_size' \
             AND scope_entry = 'main.wide'"
        ),
        "4096"
    );
    let files = format!("{}/data/**/*.parquet", dir.path().display());
    assert_eq!(
        lake.query_rows(&format!(
            "SELECT count(*), max(row_group_num_rows), sum(row_group_num_rows) FROM \
             (SELECT DISTINCT file_name, row_group_id, row_group_num_rows FROM parquet_metadata('{files}'))"
        ))
        .unwrap()[0],
        vec![Some("5".into()), Some("4096".into()), Some("20000".into())]
    );
}
