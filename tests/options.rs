//! Tables tuned for how they are queried: `[tables.options."<table>"]` partitions a table by
//! day, sorts it and sets its Parquet codec and row groups; the stock DuckDB Python client
//! reads each day back exactly, a one-day query reads only that day's files, and a changed
//! codec takes effect at the next start.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use common::*;
use sluice::config::TableOptions;
use sluice_producer::{ArrowProducer, Encoding};

const VERIFY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/table_options.py");
const PER_DAY: i64 = 10_000;
/// Rows per Parquet row group (DuckDB writes row groups in whole vectors of 2,048 rows).
const ROW_GROUP: u64 = 2048;

/// `PER_DAY` rows on each day `days` of March 2026 (ids gapless from day 1), two messages a day.
fn produce_days(p: &ArrowProducer, days: std::ops::RangeInclusive<i64>) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("name", DataType::Utf8, false),
    ]));
    // 2026-03-01T00:00:00Z in microseconds.
    let march_1: i64 = 1_772_323_200_000_000;
    let hour: i64 = 3_600_000_000;
    for day in days {
        for half in 0..2 {
            let ids: Vec<i64> = (0..PER_DAY / 2)
                .map(|k| (day - 1) * PER_DAY + half * PER_DAY / 2 + k)
                .collect();
            let ts: Vec<i64> = ids
                .iter()
                .map(|id| march_1 + (day - 1) * 24 * hour + (id % PER_DAY) * (24 * hour / PER_DAY))
                .collect();
            let names: Vec<String> = ids.iter().map(|i| format!("row {i}")).collect();
            let b = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(ids)),
                    Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("UTC")),
                    Arc::new(StringArray::from(names)),
                ],
            )
            .unwrap();
            p.send(Some(0), None, &[b]).unwrap();
        }
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

fn verify(cfg: &sluice::config::Config, table: &str, days: i64, codecs: &str) -> String {
    let out = Command::new(python())
        .args([
            VERIFY,
            "verify",
            &attach_target(cfg),
            &cfg.lake.data_path,
            table,
            &days.to_string(),
            &PER_DAY.to_string(),
            &ROW_GROUP.to_string(),
            codecs,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn a_day_partitioned_zstd_table_reads_each_day_from_its_own_files_and_a_new_codec_applies_at_restart()
 {
    let (kafka, topic, _dir, mut cfg) = setup("options", 1);
    let table = sluice::config::table_name_from_topic(&topic);
    let options = TableOptions {
        partition_by: Some(vec![
            "year(ts)".into(),
            "month(ts)".into(),
            "day(ts)".into(),
        ]),
        sorted_by: Some(vec!["id DESC".into()]),
        parquet_compression: Some("zstd".into()),
        parquet_compression_level: None,
        parquet_row_group_size: Some(ROW_GROUP),
        target_file_size: None,
        // Every flush a Parquet file: the test reads which files a day went to.
        data_inlining_row_limit: Some(0),
    };
    cfg.tables.options.insert(table.clone(), options.clone());
    // Flushes by age only: a day's rows in as few files as the timing allows.
    cfg.flush.max_rows = 1_000_000;
    cfg.validate().unwrap();
    let p = kafka.producer(&topic, Encoding::default());
    produce_days(&p, 1..=3);
    let stats = Running::until_committed(&cfg, 6);
    assert_eq!(
        stats
            .committed_rows
            .load(std::sync::atomic::Ordering::Relaxed),
        3 * PER_DAY as u64
    );
    let out = verify(&cfg, &table, 3, "ZSTD");
    assert!(
        out.contains(
            "each of 3 days reads back exactly; a one-day query reads only that day's files"
        ),
        "{out}"
    );

    // The codec changes in the configuration: the next start applies it to the table (new
    // files are LZ4_RAW, the earlier ones stay ZSTD).
    cfg.tables.options.insert(
        table.clone(),
        TableOptions {
            parquet_compression: Some("lz4_raw".into()),
            ..options
        },
    );
    produce_days(&p, 4..=5);
    Running::until_committed(&cfg, 4);
    let out = verify(&cfg, &table, 5, "LZ4_RAW,ZSTD");
    assert!(out.contains("codecs LZ4_RAW,ZSTD"), "{out}");
    let settings = query(
        &cfg,
        &format!(
            "SELECT option_name, value FROM ducklake_options('lake') WHERE scope = 'TABLE' AND scope_entry = 'main.{table}' ORDER BY 1"
        ),
    );
    assert_eq!(
        settings,
        vec![
            vec![Some("data_inlining_row_limit".into()), Some("0".into())],
            vec![Some("parquet_compression".into()), Some("lz4_raw".into())],
            vec![Some("parquet_row_group_size".into()), Some("2048".into())],
        ]
    );
    assert_eq!(
        events_ids(&cfg, &table),
        (5 * PER_DAY, (0..5 * PER_DAY).sum::<i64>()),
        "every row once"
    );
}

/// (count, sum of ids) of `table`.
fn events_ids(cfg: &sluice::config::Config, table: &str) -> (i64, i64) {
    let r = query(
        cfg,
        &format!("SELECT count(*), sum(id) FROM lake.main.\"{table}\""),
    );
    (
        r[0][0].as_deref().unwrap().parse().unwrap(),
        r[0][1].as_deref().unwrap().parse().unwrap(),
    )
}
