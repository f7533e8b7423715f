//! Schema evolution end to end: a pyarrow producer whose schema goes v1 → v2 (a string and a
//! struct column added) → v3 (int32 → int64, columns reordered) → v1 again (columns missing) →
//! a change the table cannot take (int64 → float64) → float32 → float64 (which sluice does not
//! make, ducklake #1307); `sluice run` evolves the table with the rows' commits, across a
//! restart and with two instances at once; the stock DuckDB Python client reads back every row
//! with exact values and NULLs where a column was absent.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::services::{Postgres, SluiceProc};
use common::*;

const EVOLVE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/evolve.py");
/// Rows per stage (evolve.py's MESSAGES × ROWS).
const STAGE_ROWS: u64 = 100;
/// The quarantine text of the `lossy` stage's messages.
const LOSSY: &str = "column \"v\" is DOUBLE in the message but BIGINT in the table, which cannot change to it (only lossless numeric widening is applied)";
/// The quarantine text of the `f64` stage's messages.
const F64: &str = "column \"f\" is DOUBLE in the message but FLOAT in the table; sluice does not widen FLOAT to DOUBLE: DuckLake 1.5.5 keeps the FLOAT min/max statistics and filtered queries then skip rows written before (duckdb/ducklake#1307)";

fn python_ok(args: &[&str]) -> String {
    let out = Command::new(python()).args(args).output().expect("python");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "python {args:?} failed:\n{stderr}");
    stderr
}

fn produce(brokers: &str, topic: &str, stage: &str, partitions: i32) {
    let out = python_ok(&[
        EVOLVE,
        "produce",
        brokers,
        topic,
        stage,
        &partitions.to_string(),
    ]);
    assert!(
        out.contains(&format!(
            "produced 4 messages of stage {stage}, 0 undelivered"
        )),
        "{out}"
    );
}

/// Sum of a `key=` field over the "flushed" lines of `logs`.
fn flushed(logs: &[String], key: &str) -> u64 {
    logs.iter()
        .flat_map(|l| l.lines())
        .filter(|l| l.contains(" flushed "))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|f| f.strip_prefix(key))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum()
}

/// Waits until the instances together flushed `rows` rows and quarantined `quarantined`.
fn wait_flushed(procs: &[&SluiceProc], rows: u64, quarantined: u64) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let logs: Vec<String> = procs.iter().map(|p| p.output()).collect();
        let (r, q) = (flushed(&logs, "rows="), flushed(&logs, "quarantined="));
        if r == rows && q == quarantined {
            return;
        }
        assert!(
            r <= rows && q <= quarantined && Instant::now() < deadline,
            "flushed {r} rows / {q} quarantined, waiting for {rows} / {quarantined}:\n{}",
            logs.join("\n---\n")
        );
        assert!(
            procs.iter().all(|p| !p.exited()),
            "an instance exited:\n{}",
            logs.join("\n---\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The "table schema evolved" lines of `logs`, from their `column=` field on.
fn evolutions(logs: &[String]) -> Vec<String> {
    let mut v: Vec<String> = logs
        .iter()
        .flat_map(|l| l.lines())
        .filter(|l| l.contains("table schema evolved"))
        .map(|l| l[l.find("column=").unwrap()..].to_string())
        .collect();
    v.sort();
    v
}

const EXPECTED_EVOLUTIONS: [&str; 3] = [
    "column=\"note\" from=\"(new column)\" to=\"VARCHAR\"",
    "column=\"s\" from=\"(new column)\" to=\"STRUCT(a INTEGER, b VARCHAR)\"",
    "column=\"v\" from=\"INTEGER\" to=\"BIGINT\"",
];

fn verify(cfg: &sluice::config::Config, table: &str) {
    let out = python_ok(&[
        EVOLVE,
        "verify",
        &attach_target(cfg),
        &cfg.lake.data_path,
        table,
        "v1,v2,v3,v1b",
    ]);
    for line in [
        "verified 400 rows".to_string(),
        format!("quarantined 4: schema does not fit table \"{table}\": {LOSSY}"),
        format!("quarantined 4: schema does not fit table \"{table}\": {F64}"),
    ] {
        assert!(out.lines().any(|l| l == line), "{line}\n{out}");
    }
}

#[test]
fn a_producer_evolving_its_schema_across_a_restart_loses_nothing_and_reads_back_exactly() {
    let (kafka, topic, dir, mut cfg) = setup("evolve", 2);
    cfg.flush.max_age_ms = 300;
    let table = sluice::config::table_name_from_topic(&topic);
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
    let start = |n: u32| {
        let mut p = SluiceProc::start(&path, dir.path().join(format!("sluice-{n}.log")), &[]);
        p.wait_for_log("partition assigned", 2, Duration::from_secs(60));
        p
    };
    let mut first = start(1);
    // Each stage is flushed before the next is sent, so each change is one evolution of an
    // existing table (a first flush holding v1 and v2 would create the table at v2).
    produce(&kafka.brokers, &topic, "v1", 2);
    wait_flushed(&[&first], STAGE_ROWS, 0);
    produce(&kafka.brokers, &topic, "v2", 2);
    wait_flushed(&[&first], 2 * STAGE_ROWS, 0);
    assert_eq!(first.terminate(Duration::from_secs(60)), Some(0));
    let mut second = start(2);
    produce(&kafka.brokers, &topic, "v3", 2);
    wait_flushed(&[&second], STAGE_ROWS, 0);
    produce(&kafka.brokers, &topic, "v1b", 2);
    wait_flushed(&[&second], 2 * STAGE_ROWS, 0);
    produce(&kafka.brokers, &topic, "lossy", 2);
    wait_flushed(&[&second], 2 * STAGE_ROWS, 4);
    produce(&kafka.brokers, &topic, "f64", 2);
    wait_flushed(&[&second], 2 * STAGE_ROWS, 8);
    assert_eq!(second.terminate(Duration::from_secs(60)), Some(0));

    let logs = [first.output(), second.output()];
    for l in logs.iter().flat_map(|l| l.lines()) {
        if l.contains("table schema evolved") || l.contains("payload quarantined") {
            eprintln!("{l}");
        }
    }
    assert_eq!(
        evolutions(&logs[..1]),
        EXPECTED_EVOLUTIONS[..2],
        "{}",
        logs[0]
    );
    assert_eq!(
        evolutions(&logs[1..]),
        EXPECTED_EVOLUTIONS[2..],
        "{}",
        logs[1]
    );
    let quarantined: Vec<&str> = logs[1]
        .lines()
        .filter(|l| l.contains("payload quarantined"))
        .collect();
    assert_eq!(quarantined.len(), 8, "{}", logs[1]);
    assert_eq!(
        quarantined.iter().filter(|l| l.contains(LOSSY)).count(),
        4,
        "{quarantined:?}"
    );
    assert_eq!(
        quarantined.iter().filter(|l| l.contains(F64)).count(),
        4,
        "{quarantined:?}"
    );
    verify(&cfg, &table);
    assert_eq!(
        lake_offsets(&cfg, &topic),
        vec![(0, 12), (1, 12)],
        "every message of the 6 stages is behind the lake's offsets"
    );
}

#[test]
fn two_instances_evolving_one_table_at_once_end_with_one_table_and_every_row_once() {
    let kafka = Kafka::start();
    let topic = kafka.topic("evolve2", 4);
    let dir = lake_dir();
    let mut cfg = config(&kafka.brokers, &topic, dir.path());
    let pg = Postgres::start();
    pg.configure(&mut cfg.lake);
    cfg.flush.max_age_ms = 300;
    let table = sluice::config::table_name_from_topic(&topic);
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
    let mut a = SluiceProc::start(&path, dir.path().join("a.log"), &[]);
    a.wait_for_log("partition assigned", 4, Duration::from_secs(60));
    let mut b = SluiceProc::start(&path, dir.path().join("b.log"), &[]);
    b.wait_for_log("partition assigned", 1, Duration::from_secs(60));
    // Both hold partitions: each stage's 4 messages (one per partition) reach both at once.
    let deadline = Instant::now() + Duration::from_secs(60);
    while a.output().matches("partition assigned").count()
        - a.output().matches("partition revoked").count()
        + b.output().matches("partition assigned").count()
        - b.output().matches("partition revoked").count()
        != 4
        || b.output().matches("partition assigned").count()
            == b.output().matches("partition revoked").count()
    {
        assert!(
            Instant::now() < deadline,
            "{}\n---\n{}",
            a.output(),
            b.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut rows = 0;
    for stage in ["v1", "v2", "v3", "v1b"] {
        produce(&kafka.brokers, &topic, stage, 4);
        rows += STAGE_ROWS;
        wait_flushed(&[&a, &b], rows, 0);
    }
    produce(&kafka.brokers, &topic, "lossy", 4);
    wait_flushed(&[&a, &b], rows, 4);
    produce(&kafka.brokers, &topic, "f64", 4);
    wait_flushed(&[&a, &b], rows, 8);
    assert_eq!(a.terminate(Duration::from_secs(60)), Some(0));
    assert_eq!(b.terminate(Duration::from_secs(60)), Some(0));
    let logs = [a.output(), b.output()];
    // Each change was made once, by whichever instance committed first; the other's commit
    // conflicted, was retried, and found the columns in place.
    assert_eq!(
        evolutions(&logs),
        EXPECTED_EVOLUTIONS,
        "{}\n---\n{}",
        logs[0],
        logs[1]
    );
    let conflicts = logs
        .iter()
        .map(|l| {
            l.matches("commit conflict with another writer; retrying")
                .count()
        })
        .sum::<usize>();
    eprintln!("commit conflicts retried: {conflicts}");
    verify(&cfg, &table);
    assert_eq!(
        lake_offsets(&cfg, &topic),
        vec![(0, 6), (1, 6), (2, 6), (3, 6)]
    );
}

#[test]
fn a_table_changed_under_a_flush_gets_its_messages_checked_again_and_quarantined_not_a_crash() {
    let (kafka, topic, _dir, mut cfg) = setup("changed", 1);
    cfg.flush.max_age_ms = 300;
    let table = sluice::config::table_name_from_topic(&topic);
    let run = Running::start(&cfg);
    run.wait("assigned", Duration::from_secs(30), |s| {
        s.assigned_partitions
            .load(std::sync::atomic::Ordering::Relaxed)
            == 1
    });
    let committed = |s: &sluice::observe::Stats| {
        s.committed_messages
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    produce(&kafka.brokers, &topic, "v1", 1);
    run.wait("v1", Duration::from_secs(60), |s| committed(s) == 4);
    // An operator widens v to BIGINT behind the pipeline's back: its handle still believes
    // INTEGER, so float64 v looks like a widening (INTEGER -> DOUBLE) until the commit finds
    // BIGINT, which DOUBLE cannot widen losslessly.
    let operator = sluice::sink::Lake::open(&cfg.lake, "operator").unwrap();
    operator
        .query_rows(&format!(
            "ALTER TABLE {} ALTER COLUMN v SET TYPE BIGINT",
            operator.qualified(&table)
        ))
        .unwrap();
    drop(operator);
    produce(&kafka.brokers, &topic, "lossy", 1);
    run.wait("lossy", Duration::from_secs(60), |s| committed(s) == 8);
    produce(&kafka.brokers, &topic, "v1b", 1);
    run.wait("v1b", Duration::from_secs(60), |s| committed(s) == 12);
    let stats = run.stats.clone();
    run.stop().unwrap();
    let r = std::sync::atomic::Ordering::Relaxed;
    assert_eq!(stats.quarantined.load(r), 4);
    assert_eq!(stats.committed_rows.load(r), 2 * STAGE_ROWS);
    assert_eq!(stats.flush_failures.load(r), 0);
    let q = query(
        &cfg,
        "SELECT count(*), min(error) FROM lake.main.sluice_quarantine WHERE topic <> ''",
    );
    assert_eq!(
        q,
        vec![vec![
            Some("4".into()),
            Some(format!("schema does not fit table \"{table}\": {LOSSY}"))
        ]]
    );
    assert_eq!(lake_offsets(&cfg, &topic), vec![(0, 12)]);
}
