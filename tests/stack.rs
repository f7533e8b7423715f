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

/// Two lakes (each its own DuckDB, as two processes would have) on one PostgreSQL catalog
/// commit the same offset range from the same snapshot at the same instant, 60 times: the
/// conditional offset update must let exactly one through each time (duckdb/ducklake#1341 says
/// conflicts can be missed on PostgreSQL under REPEATABLE READ).
#[test]
fn two_lakes_on_postgres_committing_one_range_at_the_same_instant_commit_it_once() {
    use arrow::array::{Int64Array, RecordBatch};
    use sluice::sink::{Lake, OffsetUpdate, SinkError, TableFlush};
    use std::collections::HashMap;
    use std::sync::atomic::AtomicI64;
    use std::sync::{Arc, Barrier, Condvar, Mutex};

    const ROUNDS: i64 = 60;
    const ROWS: i64 = 10;
    let pg = Postgres::start();
    let dir = lake_dir();
    let mut cfg = config("127.0.0.1:1", "race", dir.path());
    pg.configure(&mut cfg.lake);
    let batch = |who: i64, round: i64| {
        let ids =
            Int64Array::from_iter_values((0..ROWS).map(|i| who * 1_000_000 + round * ROWS + i));
        let rounds = Int64Array::from_iter_values((0..ROWS).map(|_| round));
        RecordBatch::try_from_iter([("id", Arc::new(ids) as _), ("round", Arc::new(rounds) as _)])
            .unwrap()
    };
    let flush = |lake: &mut Lake, b: &RecordBatch, round: i64| {
        lake.commit(&TableFlush {
            table: "race",
            batches: std::slice::from_ref(b),
            quarantine: &[],
            offsets: &[OffsetUpdate {
                topic: Arc::from("race"),
                partition: 0,
                prev: if round == 0 { -1 } else { round * ROWS },
                next: (round + 1) * ROWS,
            }],
        })
    };
    // Round 0 by one of them: the table and the partition's offset exist before the races.
    let group = cfg.kafka.group_id.clone();
    let mut first = Lake::open(&cfg.lake, &group).unwrap();
    first.register_partitions("race", &[0]).unwrap();
    flush(&mut first, &batch(0, 0), 0).unwrap();
    drop(first);

    // Both begin each round together, and each holds its written transaction at COMMIT (the
    // commit hook) until the other has written its own too, for at most 10 s; then both commit.
    let start = Arc::new(Barrier::new(2));
    let at_commit = Arc::new((Mutex::new(HashMap::<i64, u32>::new()), Condvar::new()));
    let outcomes = Arc::new(Mutex::new(vec![Vec::new(); ROUNDS as usize]));
    let threads: Vec<_> = (0..2i64)
        .map(|who| {
            let (cfg, group, start, at_commit, outcomes) = (
                cfg.clone(),
                group.clone(),
                start.clone(),
                at_commit.clone(),
                outcomes.clone(),
            );
            std::thread::spawn(move || {
                let mut lake = Lake::open(&cfg.lake, &group).unwrap();
                let current = Arc::new(AtomicI64::new(0));
                let (rendezvous, mine) = (at_commit.clone(), current.clone());
                lake.set_commit_hook(Some(Arc::new(move |_| {
                    let round = mine.load(Relaxed); // round and attempt
                    let (arrived, cv) = &*rendezvous;
                    let mut arrived = arrived.lock().unwrap();
                    *arrived.entry(round).or_default() += 1;
                    cv.notify_all();
                    let _ = cv
                        .wait_timeout_while(arrived, Duration::from_secs(10), |a| a[&round] < 2)
                        .unwrap();
                })));
                let mut round = 1;
                let mut attempt = 0;
                while round < ROUNDS {
                    current.store(round * 100 + attempt, Relaxed);
                    start.wait();
                    let b = batch(who + 1, round);
                    let outcome = match flush(&mut lake, &b, round) {
                        Ok(r) if r.rows == ROWS as u64 => "committed".to_string(),
                        Ok(r) => format!("committed {} rows", r.rows),
                        Err(SinkError::CommitConflict { .. }) => "commit conflict".into(),
                        Err(SinkError::OffsetConflict { .. }) => "offset conflict".into(),
                        Err(e) => format!("error: {e}"),
                    };
                    outcomes.lock().unwrap()[round as usize].push(outcome);
                    start.wait();
                    // Both lost (a conflict each): the round is raced again, up to 5 times.
                    let o = &outcomes.lock().unwrap()[round as usize];
                    if o.iter().any(|x| x != "commit conflict") || attempt == 4 {
                        (round, attempt) = (round + 1, 0);
                    } else {
                        attempt += 1;
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let outcomes = outcomes.lock().unwrap();
    for (round, o) in outcomes.iter().enumerate().skip(1) {
        let won = o.iter().filter(|x| *x == "committed").count();
        assert_eq!(won, 1, "round {round}: {o:?}");
        // Both wrote before either committed (the rendezvous at COMMIT), so the loser can only
        // have lost at COMMIT, to DuckLake's conflict check: never by reading the winner's
        // offset, and never by committing too.
        assert!(
            o.iter().all(|x| x == "committed" || x == "commit conflict"),
            "round {round}: {o:?}"
        );
    }
    let lake = Lake::open(&cfg.lake, &group).unwrap();
    assert_eq!(
        lake.query_rows(
            "SELECT count(*), count(DISTINCT round), count(DISTINCT id), min(round), max(round) \
             FROM lake.main.race"
        )
        .unwrap(),
        vec![vec![
            Some((ROUNDS * ROWS).to_string()),
            Some(ROUNDS.to_string()),
            Some((ROUNDS * ROWS).to_string()),
            Some("0".into()),
            Some((ROUNDS - 1).to_string())
        ]]
    );
    assert_eq!(lake_offsets(&cfg, "race"), vec![(0, ROUNDS * ROWS)]);
}
