//! The lake's lifecycle: a maintenance pass merges tiny flushes into few files and expires
//! snapshots with every row kept exactly once; ingestion running during maintenance stays
//! exact; of instances racing for the maintenance lease exactly one gets it; `sluice maintain`
//! runs one pass.

mod common;

use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use common::services::Postgres;
use common::{
    Running, assert_exact_events, lake_offsets, produce_events, query, setup, sluice_cli,
};
use sluice::config::{Config, MaintenanceTimes};
use sluice::maintain::{PassOutcome, PassReport, pass};
use sluice::sink::{Lake, LeaseState};
use sluice_producer::Encoding;

/// Parquet files under `dir`, recursively.
fn parquet_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                parquet_files(&p)
            } else {
                usize::from(p.extension().is_some_and(|x| x == "parquet"))
            }
        })
        .sum()
}

/// (data files, snapshots) of the table as DuckLake lists them now.
fn files_and_snapshots(cfg: &Config, table: &str) -> (i64, i64) {
    let r = query(
        cfg,
        &format!(
            "SELECT (SELECT count(*) FROM ducklake_list_files('lake', '{table}')), (SELECT count(*) FROM ducklake_snapshots('lake'))"
        ),
    );
    (
        r[0][0].as_deref().unwrap().parse().unwrap(),
        r[0][1].as_deref().unwrap().parse().unwrap(),
    )
}

fn times(keep: u64, delete_after: u64) -> MaintenanceTimes {
    MaintenanceTimes {
        interval: Duration::from_secs(1),
        keep_snapshots: Duration::from_secs(keep),
        delete_files_after: Duration::from_secs(delete_after),
        lease: Duration::from_secs(60),
    }
}

fn run_pass(cfg: &Config, t: &MaintenanceTimes) -> PassReport {
    let lake = Lake::open(&cfg.lake, &cfg.kafka.group_id).unwrap();
    match pass(&lake, t, "test-maintainer", true, &|| false).unwrap() {
        PassOutcome::Done { report, stopped } => {
            assert!(!stopped);
            report
        }
        other => panic!("expected a pass, got {other:?}"),
    }
}

/// `n` flushes of one 20-row message each, one after the other.
fn tiny_flushes(cfg: &Config, kafka: &common::Kafka, topic: &str, n: u64) {
    tiny_flushes_from(cfg, kafka, topic, 0, n);
}

/// `n` flushes of one 20-row message each, the first message being the `first`th.
fn tiny_flushes_from(cfg: &Config, kafka: &common::Kafka, topic: &str, first: i64, n: u64) {
    let mut cfg = cfg.clone();
    cfg.flush.max_rows = 20;
    let run = Running::start(&cfg);
    let p = kafka.producer(topic, Encoding::default());
    let mut seq = first * 20;
    for i in 1..=n {
        seq = produce_events(&p, 1, seq, 1, 20);
        run.wait("the message committed", Duration::from_secs(60), |s| {
            s.committed_messages.load(Relaxed) == i
        });
    }
    assert_eq!(run.stats.flushes.load(Relaxed), n);
    run.stop().unwrap();
}

/// 400 flushes of one 20-row message each, each written as a Parquet file (inlining off).
fn four_hundred_flushes(cfg: &mut Config, kafka: &common::Kafka, topic: &str) {
    cfg.tables.defaults.data_inlining_row_limit = Some(0);
    tiny_flushes(cfg, kafka, topic, 400);
}

#[test]
fn flushes_under_the_inlining_limit_write_no_file_until_maintenance_writes_them_as_one() {
    let (kafka, topic, dir, mut cfg) = setup("inlined", 1);
    // On a SQLite catalog sluice inlines nothing unless told to (its readers could miss
    // inlined rows while maintenance moves them).
    assert_eq!(cfg.tables.defaults.data_inlining_row_limit, None);
    tiny_flushes(&cfg, &kafka, &topic, 3);
    let table = cfg.tables.table_for(&topic);
    let table_dir = dir.path().join("data").join("main").join(&table);
    assert_eq!(parquet_files(&table_dir), 3);
    cfg.tables.defaults.data_inlining_row_limit = Some(1_000);
    tiny_flushes_from(&cfg, &kafka, &topic, 3, 100);
    // 100 flushes of 20 rows: every row readable, not one more Parquet file.
    assert_eq!(parquet_files(&table_dir), 3);
    assert_eq!(files_and_snapshots(&cfg, &table).0, 3);
    assert_exact_events(&cfg, &table, 2_060);
    let r = run_pass(&cfg, &times(3600, 3600));
    assert!(r.inlined_rows >= 2_000, "{r:?}");
    // The inlined rows became one file, then the four files were merged into one.
    assert_eq!(
        r.merged,
        sluice::sink::Rewritten {
            files_in: 4,
            files_out: 1
        },
        "{r:?}"
    );
    assert_eq!(parquet_files(&table_dir), 5);
    assert_eq!(files_and_snapshots(&cfg, &table).0, 1);
    assert_exact_events(&cfg, &table, 2_060);
    assert_eq!(lake_offsets(&cfg, &topic), vec![(0, 103)]);
}

#[test]
fn four_hundred_tiny_flushes_become_one_file_and_old_snapshots_expire_with_every_row_kept() {
    let (kafka, topic, dir, mut cfg) = setup("compact", 1);
    four_hundred_flushes(&mut cfg, &kafka, &topic);
    let table = cfg.tables.table_for(&topic);
    let (files, snapshots) = files_and_snapshots(&cfg, &table);
    assert_eq!(files, 400);
    assert!(snapshots > 400, "{snapshots}");
    let table_dir = dir.path().join("data").join("main").join(&table);
    assert_eq!(parquet_files(&table_dir), 400);

    // Snapshots of the last hour are kept: nothing expires, the files are merged.
    let r = run_pass(&cfg, &times(3600, 3600));
    eprintln!("pass: {r:?}");
    assert_eq!(r.merged.files_in, 400, "{r:?}");
    assert_eq!(r.merged.files_out, 1, "{r:?}");
    assert_eq!(r.snapshots_expired, 0, "{r:?}");
    assert_eq!((r.old_files.files, r.orphans.files), (0, 0), "{r:?}");
    assert_eq!(files_and_snapshots(&cfg, &table).0, 1);
    assert_exact_events(&cfg, &table, 8_000);
    assert_eq!(lake_offsets(&cfg, &topic), vec![(0, 400)]);
    // The merged files stay until no snapshot needs them and the grace period is over.
    assert_eq!(parquet_files(&table_dir), 401);

    // Keeping no history: every snapshot but the latest expires (the lease renewal after the
    // expiry adds one), and the rows are still exactly the produced ones.
    let r = run_pass(&cfg, &times(0, 3600));
    eprintln!("pass: {r:?}");
    assert_eq!(r.merged.files_in, 0, "{r:?}");
    // The pass's own steps (flushing the offsets' inlined rows, rewriting them) add snapshots
    // before the expiry, which leaves only the latest.
    assert!(r.snapshots_expired >= r.snapshots_before - 1, "{r:?}");
    assert_eq!(r.snapshots_after, 1, "{r:?}");
    assert_eq!(
        files_and_snapshots(&cfg, &table).1,
        2,
        "the lease renewal after the expiry"
    );
    assert_exact_events(&cfg, &table, 8_000);
    assert_eq!(lake_offsets(&cfg, &topic), vec![(0, 400)]);
    // A restart ingests nothing again.
    let stats = Running::until_committed(&cfg, 0);
    assert_eq!(stats.committed_messages.load(Relaxed), 0);
    assert_exact_events(&cfg, &table, 8_000);
}

#[test]
fn on_postgres_replaced_files_are_deleted_after_the_grace_period_and_counted() {
    let pg = Postgres::start();
    let (kafka, topic, dir, mut cfg) = setup("cleanup", 1);
    pg.configure(&mut cfg.lake);
    four_hundred_flushes(&mut cfg, &kafka, &topic);
    let table = cfg.tables.table_for(&topic);
    let data = dir.path().join("data");
    let on_disk = parquet_files(&data);
    assert!(on_disk >= 400, "{on_disk}");
    let bytes_before: u64 = query(
        &cfg,
        "SELECT sum(file_size_bytes)::BIGINT FROM ducklake_table_info('lake')",
    )[0][0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();

    // Merge, expire everything but the latest snapshot, delete what no snapshot references.
    let r = run_pass(&cfg, &times(0, 0));
    assert_eq!(r.merged.files_in, 400, "{r:?}");
    assert_eq!(r.merged.files_out, 1, "{r:?}");
    assert!(r.old_files.files >= 400, "{r:?}");
    assert!(r.old_files.bytes > 0, "{r:?}");
    // What is on disk is exactly what the lake references.
    assert_eq!(parquet_files(&data) as u64, r.files_after.0, "{r:?}");
    let (files, _) = files_and_snapshots(&cfg, &table);
    assert_eq!(files, 1);
    assert!(r.files_after.1 < bytes_before, "{r:?} vs {bytes_before}");
    assert_exact_events(&cfg, &table, 8_000);
    assert_eq!(lake_offsets(&cfg, &topic), vec![(0, 400)]);
}

#[test]
fn ingestion_during_maintenance_passes_stays_exact() {
    let (kafka, topic, _dir, mut cfg) = setup("maint_live", 2);
    cfg.flush.max_rows = 50;
    cfg.flush.max_age_ms = 100;
    cfg.maintenance.enabled = true;
    cfg.maintenance.interval = "1s".into();
    cfg.maintenance.lease = "10s".into();
    cfg.maintenance.keep_snapshots = "0s".into();
    // Inlined flushes, moved into Parquet by passes while rows come in (duckdb/ducklake #650).
    cfg.tables.defaults.data_inlining_row_limit = Some(1_000);
    let lake = Lake::open(&cfg.lake, &cfg.kafka.group_id).unwrap();
    let maint_lake = lake.another(&cfg.kafka.group_id).unwrap();
    let run = Running::start_on(&cfg, lake);
    let maintainer = sluice::maintain::Maintainer::start(
        maint_lake,
        cfg.maintenance.times().unwrap(),
        run.stats.clone(),
    )
    .unwrap();
    let p = kafka.producer(&topic, Encoding::default());
    let mut seq = 0;
    let started = Instant::now();
    // 600 messages of 10 rows over at least 12 s (paced by 50 ms per 5), while passes run.
    for i in 0..120 {
        seq = produce_events(&p, 2, seq, 5, 10);
        std::thread::sleep(Duration::from_millis(50));
        if i % 20 == 0 {
            eprintln!(
                "{:?}: passes {} merged {}",
                started.elapsed(),
                run.stats.maintenance.passes_ok.load(Relaxed),
                run.stats.maintenance.files_merged.load(Relaxed)
            );
        }
    }
    run.wait("every message committed", Duration::from_secs(120), |s| {
        s.committed_messages.load(Relaxed) == 600
    });
    let m = &run.stats.maintenance;
    let passes = m.passes_ok.load(Relaxed);
    run.wait(
        "a pass after the last commit",
        Duration::from_secs(60),
        |s| s.maintenance.passes_ok.load(Relaxed) > passes,
    );
    maintainer.stop();
    assert!(m.passes_ok.load(Relaxed) >= 5, "{m:?}");
    assert_eq!(m.passes_failed.load(Relaxed), 0, "{m:?}");
    assert!(m.files_merged.load(Relaxed) > 0, "{m:?}");
    assert!(m.snapshots_expired.load(Relaxed) > 0, "{m:?}");
    // Flushes of at most 50 rows are inlined: passes moved them to Parquet while rows came in.
    assert!(m.inlined_rows.load(Relaxed) > 0, "{m:?}");
    assert_eq!(m.lease_held.load(Relaxed), 0, "released at stop");
    run.stop().unwrap();
    let table = cfg.tables.table_for(&topic);
    assert_exact_events(&cfg, &table, 6_000);
    // Each round of 5 messages: partitions 0, 1, 0, 1, 0.
    assert_eq!(lake_offsets(&cfg, &topic), vec![(0, 360), (1, 240)]);
}

/// Rounds of `n` handles taking the lease at once: exactly one gets it each round; a holder
/// that stops renewing loses it once it runs out.
fn race_for_the_lease(cfg: &Config, n: usize) {
    let handles: Vec<Arc<Mutex<Lake>>> = (0..n)
        .map(|_| {
            Arc::new(Mutex::new(
                Lake::open(&cfg.lake, &cfg.kafka.group_id).unwrap(),
            ))
        })
        .collect();
    let lake = |i: usize| handles[i].lock().unwrap();
    let holders: Vec<String> = (0..n).map(|i| format!("instance-{i}")).collect();
    for round in 0..10 {
        let barrier = Arc::new(Barrier::new(n));
        let threads: Vec<_> = handles
            .iter()
            .zip(&holders)
            .map(|(lake, h)| {
                let (lake, h, b) = (lake.clone(), h.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let lake = lake.lock().unwrap();
                    b.wait();
                    lake.take_lease(&h, Duration::from_secs(60)).unwrap()
                })
            })
            .collect();
        let states: Vec<LeaseState> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let winners: Vec<usize> = (0..n).filter(|i| states[*i] == LeaseState::Held).collect();
        assert_eq!(winners.len(), 1, "round {round}: {states:?}");
        let w = winners[0];
        for (i, s) in states.iter().enumerate().filter(|(i, _)| *i != w) {
            match s {
                LeaseState::HeldBy { holder, .. } => assert_eq!(holder, &holders[w], "{i}"),
                other => panic!("{other:?}"),
            }
        }
        // The holder renews; the others still cannot take it.
        assert_eq!(
            lake(w)
                .take_lease(&holders[w], Duration::from_secs(60))
                .unwrap(),
            LeaseState::Held
        );
        let other = (w + 1) % n;
        assert!(matches!(
            lake(other)
                .take_lease(&holders[other], Duration::from_secs(60))
                .unwrap(),
            LeaseState::HeldBy { .. }
        ));
        lake(w).release_lease(&holders[w]).unwrap();
    }
    // A holder that crashed (stopped renewing) loses the lease when it runs out.
    assert_eq!(
        lake(0)
            .take_lease(&holders[0], Duration::from_millis(1500))
            .unwrap(),
        LeaseState::Held
    );
    assert!(matches!(
        lake(1)
            .take_lease(&holders[1], Duration::from_secs(60))
            .unwrap(),
        LeaseState::HeldBy { .. }
    ));
    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(
        lake(1)
            .take_lease(&holders[1], Duration::from_secs(60))
            .unwrap(),
        LeaseState::Held
    );
    lake(1).release_lease(&holders[1]).unwrap();
}

/// Two maintenance threads on one lake, passes every second: while both run, one runs the
/// passes and the other skips them; when the holder stops it gives the lease up, and the other
/// takes over at its next pass (not when the 30 s lease would have run out).
fn two_maintainers(cfg: &Config) {
    let t = MaintenanceTimes {
        interval: Duration::from_secs(1),
        keep_snapshots: Duration::from_secs(3600),
        delete_files_after: Duration::from_secs(3600),
        lease: Duration::from_secs(30),
    };
    let stats: Vec<Arc<sluice::observe::Stats>> = (0..2).map(|_| Arc::default()).collect();
    let mut maintainers: Vec<Option<_>> = stats
        .iter()
        .map(|s| {
            let lake = Lake::open(&cfg.lake, &cfg.kafka.group_id).unwrap();
            Some(sluice::maintain::Maintainer::start(lake, t, s.clone()).unwrap())
        })
        .collect();
    let ran = || -> Vec<(u64, u64, u64)> {
        stats
            .iter()
            .map(|s| {
                let m = &s.maintenance;
                (
                    m.passes_ok.load(Relaxed),
                    m.passes_skipped.load(Relaxed),
                    m.passes_failed.load(Relaxed),
                )
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while ran()
        .iter()
        .map(|(ok, skipped, _)| ok + skipped)
        .sum::<u64>()
        < 8
    {
        assert!(Instant::now() < deadline, "{:?}", ran());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Counted while both run (the lease is renewed by every pass and runs for 30 s, so
    // whoever holds it now has held it since its first pass).
    let both = ran();
    let holders: Vec<usize> = (0..2).filter(|i| both[*i].0 > 0).collect();
    assert_eq!(holders.len(), 1, "{both:?}");
    assert!(
        both.iter()
            .all(|(ok, skipped, failed)| *failed == 0 && (*ok == 0) == (*skipped > 0)),
        "{both:?}"
    );
    let (holder, other) = (holders[0], 1 - holders[0]);
    assert_eq!(stats[holder].maintenance.lease_held.load(Relaxed), 1);
    assert_eq!(stats[other].maintenance.lease_held.load(Relaxed), 0);

    // The holder stops and releases the lease: the other takes over within a few intervals.
    let stopped = Instant::now();
    maintainers[holder].take().unwrap().stop();
    assert_eq!(stats[holder].maintenance.lease_held.load(Relaxed), 0);
    while stats[other].maintenance.passes_ok.load(Relaxed) == 0 {
        assert!(
            stopped.elapsed() < Duration::from_secs(15),
            "no takeover: {:?}",
            ran()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = ran();
    assert_eq!(after[other].2, 0, "{after:?}");
    assert_eq!(stats[other].maintenance.lease_held.load(Relaxed), 1);
    maintainers[other].take().unwrap().stop();
    eprintln!(
        "lease: while both ran {both:?}; after the holder stopped {after:?}, taken over in {:?}",
        stopped.elapsed()
    );
}

#[test]
fn of_instances_racing_for_the_maintenance_lease_on_a_sqlite_catalog_exactly_one_gets_it() {
    let (_kafka, _topic, _dir, cfg) = setup("lease_sqlite", 1);
    race_for_the_lease(&cfg, 3);
    two_maintainers(&cfg);
}

#[test]
fn of_instances_racing_for_the_maintenance_lease_on_a_postgresql_catalog_exactly_one_gets_it() {
    let pg = Postgres::start();
    let (_kafka, _topic, _dir, mut cfg) = setup("lease_pg", 1);
    pg.configure(&mut cfg.lake);
    race_for_the_lease(&cfg, 3);
    two_maintainers(&cfg);
}

#[test]
fn sluice_maintain_runs_one_pass_unless_another_instance_holds_the_lease() {
    let (kafka, topic, dir, mut cfg) = setup("maintain_cli", 1);
    cfg.flush.max_rows = 20;
    cfg.tables.defaults.data_inlining_row_limit = Some(0);
    let run = Running::start(&cfg);
    let p = kafka.producer(&topic, Encoding::default());
    let mut seq = 0;
    for i in 1..=30u64 {
        seq = produce_events(&p, 1, seq, 1, 20);
        run.wait("the message committed", Duration::from_secs(60), |s| {
            s.committed_messages.load(Relaxed) == i
        });
    }
    run.stop().unwrap();
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();

    // A running instance holds the lease: nothing is done, and that is not an error.
    let lake = Lake::open(&cfg.lake, &cfg.kafka.group_id).unwrap();
    assert_eq!(
        lake.take_lease("instance-a", Duration::from_secs(60))
            .unwrap(),
        LeaseState::Held
    );
    let until = query(
        &cfg,
        "SELECT strftime(expires_at AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%SZ') FROM lake.main.sluice_maintenance_lease",
    )[0][0]
        .clone()
        .unwrap();
    let (ok, out, err) = sluice_cli(&["maintain"], &path);
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        format!(
            "maintenance: the lease is held by instance-a until {until}; that instance maintains the lake, nothing done"
        )
    );
    let table = cfg.tables.table_for(&topic);
    assert_eq!(files_and_snapshots(&cfg, &table).0, 30);

    lake.release_lease("instance-a").unwrap();
    drop(lake);
    let (ok, out, err) = sluice_cli(&["maintain"], &path);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    // The events table and the quarantine; sluice's own tables only with --own-tables.
    assert!(
        lines[0].starts_with("maintenance: 2 tables; ")
            && lines[0].contains("; 30 files merged into 1; "),
        "{out}"
    );
    assert!(lines[1].starts_with("lake: "), "{out}");
    assert!(err.contains("maintenance pass"), "{err}");
    assert_eq!(files_and_snapshots(&cfg, &table).0, 1);
    assert_exact_events(&cfg, &table, 600);
    let (ok, out, err) = sluice_cli(&["maintain", "--own-tables"], &path);
    assert!(ok, "{err}");
    assert!(out.starts_with("maintenance: 4 tables; "), "{out}");
    assert_exact_events(&cfg, &table, 600);
    assert_eq!(lake_offsets(&cfg, &topic), vec![(0, 30)]);
}
