//! Interop with real clients: pyarrow + confluent-kafka produce, sluice ingests, the stock
//! DuckDB Python client 1.5.5 reads the lake back.

mod common;

use std::process::Command;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::*;

fn run_python(args: &[&str]) -> String {
    let out = Command::new(python())
        .args(args)
        .output()
        .expect("run python");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "python {args:?} failed:\n{stderr}");
    stderr
}

#[test]
fn pyarrow_payloads_of_every_format_codec_and_type_read_back_equal_with_duckdb_python() {
    let (kafka, topic, _dir, cfg) = setup("interop", 1);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/interop.py");
    run_python(&[script, "produce", &kafka.brokers, &topic]);
    let stats = Running::until_committed(&cfg, 6);
    assert_eq!(stats.committed_rows.load(Relaxed), 300);
    assert_eq!(stats.quarantined.load(Relaxed), 0);
    let c = stats.copies();
    assert!(
        c.decompressed > 0,
        "lz4/zstd messages were decompressed: {c:?}"
    );
    let table = sluice::config::table_name_from_topic(&topic);
    let out = run_python(&[
        script,
        "verify",
        &attach_target(&cfg),
        &cfg.lake.data_path,
        &table,
    ]);
    assert!(out.contains("verified 300 rows x 22 columns"), "{out}");
}

#[test]
fn the_python_reference_producer_feeds_sluice_exactly() {
    let (kafka, topic, _dir, mut cfg) = setup("pyref", 3);
    cfg.tables.metadata.partition = true;
    cfg.tables.metadata.offset = true;
    cfg.tables.metadata.timestamp = true;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/producer/python/arrow_producer.py"
    );
    let total = "9000";
    for (start, format, compression) in [
        ("0", "stream", "none"),
        ("3000", "file", "zstd"),
        ("6000", "stream", "lz4"),
    ] {
        run_python(&[
            script,
            "--brokers",
            &kafka.brokers,
            "--topic",
            &topic,
            "--partitions",
            "3",
            "--total",
            "3000",
            "--start",
            start,
            "--rows-per-message",
            "500",
            "--format",
            format,
            "--compression",
            compression,
        ]);
    }
    let run = Running::start(&cfg);
    run.wait("all rows committed", Duration::from_secs(60), |s| {
        s.committed_rows.load(Relaxed) >= 9_000
    });
    run.stop().unwrap();
    let table = sluice::config::table_name_from_topic(&topic);
    assert_eq!(total.parse::<i64>().unwrap(), 9_000);
    assert_eq!(events_summary(&cfg, &table), expected_summary(9_000));
    // Metadata columns: 18 messages of 500 rows, 6 per partition at offsets 0..6.
    let meta = query(
        &cfg,
        &format!(
            "SELECT _kafka_partition, count(*), count(DISTINCT _kafka_offset), min(_kafka_offset), max(_kafka_offset), \
             count(_kafka_timestamp) FROM lake.main.\"{table}\" GROUP BY 1 ORDER BY 1"
        ),
    );
    let want: Vec<Vec<Option<String>>> = (0..3)
        .map(|p| {
            ["{p}", "3000", "6", "0", "5", "3000"]
                .iter()
                .map(|v| Some(v.replace("{p}", &p.to_string())))
                .collect()
        })
        .collect();
    assert_eq!(meta, want);
}
