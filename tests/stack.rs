//! The production stack's parts, real and on loopback: Parquet on an S3 server (moto) through
//! DuckDB's httpfs, the DuckLake catalog in PostgreSQL.

mod common;

use std::process::Command;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::services::{Postgres, S3_SECRET, S3Server};
use common::*;
use sluice_producer::Encoding;

#[test]
fn s3_data_and_a_postgres_catalog_hold_exactly_what_was_produced() {
    let s3 = S3Server::start();
    let pg = Postgres::start();
    let (kafka, topic, _dir, mut cfg) = setup("stack", 4);
    s3.configure(&mut cfg.lake, "lake");
    pg.configure(&mut cfg.lake);
    let p = kafka.producer(&topic, Encoding::default());
    produce_events(&p, 4, 0, 40, 100);
    let run = Running::start(&cfg);
    run.wait("all committed", Duration::from_secs(120), |s| {
        s.committed_rows.load(Relaxed) >= 4_000
    });
    let flushes = run.stats.flushes.load(Relaxed);
    run.stop().unwrap();
    let table = sluice::config::table_name_from_topic(&topic);
    assert_exact_events(&cfg, &table, 4_000);
    // The Parquet files are objects in the bucket, under the configured prefix.
    let objects = s3.list("lake/");
    let parquet = objects.iter().filter(|k| k.ends_with(".parquet")).count();
    assert!(
        parquet >= 1 && parquet as u64 <= flushes,
        "{parquet} Parquet objects for {flushes} flushes: {objects:?}"
    );
    // The catalog lives in PostgreSQL: DuckLake's own tables and sluice's offsets are there.
    assert_eq!(
        pg.psql(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'ducklake_snapshot'"
        ),
        "1"
    );
    assert_eq!(
        lake_offsets(&cfg, &topic),
        (0..4).map(|p| (p, 10)).collect::<Vec<_>>()
    );
}

#[test]
fn s3_credentials_never_reach_output_or_errors() {
    let s3 = S3Server::start();
    let (_kafka, _topic, dir, mut cfg) = setup("secret", 1);
    s3.configure(&mut cfg.lake, "secret");
    // A PostgreSQL catalog nobody listens on (port 1: privileged, unused here), with a
    // password in its connection string.
    cfg.lake.catalog_kind = sluice::config::CatalogKind::Postgres;
    let port = 1;
    cfg.lake.catalog =
        format!("host=127.0.0.1 port={port} user=u dbname=d password=pg-pass-do-not-log");
    let path = dir.path().join("secret.toml");
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["check", "--config", path.to_str().unwrap()])
        .env("SLUICE_LOG__LEVEL", "debug")
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains(&format!("port={port}")), "{all}");
    assert!(all.contains("password=***"), "{all}");
    assert!(!all.contains("pg-pass-do-not-log"), "{all}");
    assert!(!all.contains(S3_SECRET), "{all}");
    // The Debug form of the configuration hides the credential too.
    assert!(!format!("{cfg:?}").contains(S3_SECRET));
}
