//! A real broker process (tansu) with the production stack's parts: the Python reference
//! producer (confluent-kafka) → tansu → `sluice run` → Parquet on an S3 server with the catalog
//! in PostgreSQL → read back by the stock DuckDB Python client.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::services::{Postgres, S3_KEY_ID, S3_SECRET, S3Server, SluiceProc, Tansu};
use common::*;
use sluice::config::Config;

const REFERENCE_PRODUCER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/producer/python/arrow_producer.py"
);
const INTEROP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/interop.py");

/// Rows of `table` in the lake of `cfg` (0 while it does not exist).
fn lake_rows(cfg: &Config, table: &str) -> i64 {
    let lake = sluice::sink::Lake::open(&cfg.lake, &cfg.kafka.group_id).expect("open lake");
    lake.query_rows(&format!("SELECT count(*) FROM lake.main.\"{table}\""))
        .map(|r| r[0][0].clone().unwrap().parse().unwrap())
        .unwrap_or(0)
}

/// Waits until the lake holds `rows` rows of `table`.
fn wait_for_rows(cfg: &Config, table: &str, rows: i64, timeout: Duration, procs: &[&SluiceProc]) {
    let deadline = Instant::now() + timeout;
    loop {
        let n = lake_rows(cfg, table);
        if n >= rows {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the lake holds {n} of {rows} rows after {timeout:?}; logs:\n{}",
            procs
                .iter()
                .map(|p| p.output())
                .collect::<Vec<_>>()
                .join("\n----\n")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn run_python(args: &[&str], env: &[(&str, String)]) -> String {
    let mut cmd = Command::new(python());
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run python");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{args:?} failed:\n{text}");
    text
}

#[test]
fn reference_producer_through_tansu_to_s3_and_postgres_reads_back_exactly_in_duckdb() {
    let tansu = Tansu::start();
    let s3 = S3Server::start();
    let pg = Postgres::start();
    let topic = tansu.topic("e2e", 4);
    let dir = lake_dir();
    let mut cfg = config(&tansu.brokers(), &topic, dir.path());
    s3.configure(&mut cfg.lake, "e2e");
    pg.configure(&mut cfg.lake);
    // The secret comes from the environment, not the file.
    cfg.lake.s3.secret_access_key = None;
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
    assert!(!std::fs::read_to_string(&path).unwrap().contains(S3_SECRET));
    let mut sluice = SluiceProc::start(
        &path,
        dir.path().join("sluice.log"),
        &[("SLUICE_LAKE__S3__SECRET_ACCESS_KEY", S3_SECRET)],
    );

    let out = run_python(
        &[
            REFERENCE_PRODUCER,
            "--brokers",
            &tansu.brokers(),
            "--topic",
            &topic,
            "--partitions",
            "4",
            "--total",
            "20000",
            "--rows-per-message",
            "500",
            "--compression",
            "zstd",
            "--seed",
            "7",
        ],
        &[],
    );
    assert!(out.contains("produced 20000 rows in 40 messages"), "{out}");
    cfg.lake.s3.secret_access_key = Some(sluice::config::Secret::new(S3_SECRET));
    let table = sluice::config::table_name_from_topic(&topic);
    wait_for_rows(&cfg, &table, 20_000, Duration::from_secs(120), &[&sluice]);
    assert_eq!(sluice.terminate(Duration::from_secs(60)), Some(0));
    let log = sluice.output();
    assert!(!log.contains(S3_SECRET), "{log}");

    let catalog = format!("postgres:{}", pg.conninfo());
    let out = run_python(
        &[
            INTEROP,
            "verify-reference",
            &catalog,
            &cfg.lake.data_path,
            &table,
            "20000",
            "500",
            "7",
        ],
        &[
            ("SLUICEDEV_S3_ENDPOINT", s3.endpoint()),
            ("SLUICEDEV_S3_KEY_ID", S3_KEY_ID.to_string()),
            ("SLUICEDEV_S3_SECRET", S3_SECRET.to_string()),
        ],
    );
    assert!(out.contains("verified 20000 rows x 10 columns"), "{out}");
    let offsets = query(
        &cfg,
        &format!(
            "SELECT \"partition\", next_offset FROM lake.main.sluice_offsets WHERE topic = '{topic}' ORDER BY 1"
        ),
    );
    assert_eq!(
        offsets,
        (0..4)
            .map(|p| vec![Some(p.to_string()), Some("10".to_string())])
            .collect::<Vec<_>>()
    );
}
