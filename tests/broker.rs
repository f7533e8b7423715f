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
        // An instance that died would go unnoticed while the others take its partitions over.
        if let Some(p) = procs.iter().find(|p| p.exited()) {
            panic!(
                "{} exited while the lake filled:\n{}",
                p.log.display(),
                p.output()
            );
        }
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
    assert_eq!(
        lake_offsets(&cfg, &topic),
        (0..4).map(|p| (p, 10)).collect::<Vec<_>>()
    );
}

#[test]
fn three_instances_one_killed_one_restarted_commit_every_row_exactly_once() {
    let tansu = Tansu::start();
    let s3 = S3Server::start();
    let pg = Postgres::start();
    let topic = tansu.topic("scale", 8);
    let dir = lake_dir();
    let mut cfg = config(&tansu.brokers(), &topic, dir.path());
    s3.configure(&mut cfg.lake, "scale");
    pg.configure(&mut cfg.lake);
    cfg.flush.max_rows = 3_000;
    cfg.flush.max_age_ms = 1_000;
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
    let start = |name: &str| SluiceProc::start(&path, dir.path().join(format!("{name}.log")), &[]);
    let mut a = start("a");
    let mut b = start("b");
    let mut c = start("c");

    let producer = sluice_producer::ArrowProducer::new(
        &tansu.brokers(),
        &topic,
        sluice_producer::Encoding::default(),
        &[("linger.ms", "5")],
    )
    .unwrap();
    let started = Instant::now();
    let (rounds, per_round) = (60, 8);
    let mut next = 0;
    let mut restarted = None;
    let mut killed_at = None;
    for round in 0..rounds {
        next = produce_events(&producer, 8, next, per_round, 100);
        std::thread::sleep(Duration::from_millis(250));
        if round == 20 {
            a.kill();
            killed_at = Some(Instant::now());
        }
        // tansu does not rebalance when a member's session expires (seen here: a SIGKILLed
        // member kept its partitions for the 180 s a run waited); the next rebalance after the
        // expiry (6 s) hands them over. B's stop and restart are that rebalance: after it.
        if restarted.is_none() && killed_at.is_some_and(|t| t.elapsed() > Duration::from_secs(8)) {
            assert_eq!(
                b.terminate(Duration::from_secs(60)),
                Some(0),
                "{}",
                b.output()
            );
            restarted = Some(start("b-restarted"));
        }
    }
    let total = next;
    assert_eq!(total, 48_000);
    let b2 = restarted.expect("B was restarted mid-stream");
    let table = sluice::config::table_name_from_topic(&topic);
    wait_for_rows(&cfg, &table, total, Duration::from_secs(180), &[&b2, &c]);
    let elapsed = started.elapsed();
    let mut b2 = b2;
    assert_eq!(
        b2.terminate(Duration::from_secs(60)),
        Some(0),
        "{}",
        b2.output()
    );
    assert_eq!(
        c.terminate(Duration::from_secs(60)),
        Some(0),
        "{}",
        c.output()
    );

    assert_exact_events(&cfg, &table, total);
    assert_eq!(
        lake_offsets(&cfg, &topic),
        (0..8).map(|p| (p, 60)).collect::<Vec<_>>()
    );
    let logs: Vec<String> = [&a, &b, &b2, &c].iter().map(|p| p.output()).collect();
    let count = |what: &str| -> usize { logs.iter().map(|l| l.matches(what).count()).sum() };
    let per_instance: Vec<(usize, usize)> = logs
        .iter()
        .map(|l| {
            (
                l.matches("partition assigned").count(),
                l.matches(" flushed").count(),
            )
        })
        .collect();
    eprintln!(
        "three instances: {total} rows exactly once in {:.1} s; {} flushes, {} commit conflicts retried, {} offset conflicts, {} initialization races retried; (assignments, flushes) per process a, b, b restarted, c: {per_instance:?}",
        elapsed.as_secs_f64(),
        count(" flushed"),
        count("commit conflict"),
        count("another writer committed this partition"),
        count("lake initialization raced"),
    );
    // Every process that lived through the ingest committed something.
    for (name, (_, flushes)) in ["b", "b restarted", "c"].iter().zip(&per_instance[1..]) {
        assert!(*flushes > 0, "{name} never flushed");
    }
}
