//! Analysts read the lake while it fills: stock DuckDB 1.5.5 (the Python client and the CLI, in
//! their own processes) attaches the default SQLite-catalog lake of a running `sluice run` and
//! counts every ~200 ms. Every read succeeds, sees only committed states, never goes back, and
//! sluice's commits are neither failed nor retried because of the readers.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use common::services::SluiceProc;
use common::*;
use sluice::config::CatalogKind;
use sluice_producer::Encoding;

const READER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/lake_reader.py");

/// Rows of each "flushed" log line, in order.
fn flushed_rows(log: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains(" flushed "))
        .map(|l| {
            let field = l
                .split_whitespace()
                .find_map(|f| f.strip_prefix("rows="))
                .unwrap_or_else(|| panic!("no rows= in {l}"));
            field.parse().unwrap()
        })
        .collect()
}

#[test]
fn stock_duckdb_reads_the_default_lake_while_sluice_run_ingests_and_every_count_is_a_commit() {
    let (kafka, topic, dir, mut cfg) = setup("readers", 2);
    assert_eq!(cfg.lake.catalog_kind, CatalogKind::Sqlite, "the default");
    cfg.flush.max_age_ms = 300;
    let table = sluice::config::table_name_from_topic(&topic);
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
    let mut sluice = SluiceProc::start(&path, dir.path().join("sluice.log"), &[]);
    sluice.wait_for_log("partition assigned", 2, Duration::from_secs(60));

    // The table exists from the first commit on; the readers start then.
    let p = kafka.producer(&topic, Encoding::default());
    let mut next = produce_events(&p, 2, 0, 2, 500);
    sluice.wait_for_log(" flushed ", 1, Duration::from_secs(60));

    let target = attach_target(&cfg);
    let stop_file = dir.path().join("stop-readers");
    let python_reader = Command::new(python())
        .args([
            READER,
            &target,
            &cfg.lake.data_path,
            &table,
            stop_file.to_str().unwrap(),
            "0.2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let cli = python().parent().unwrap().join("duckdb");
    let stop_cli = Arc::new(AtomicBool::new(false));
    let cli_reader = {
        let stop = stop_cli.clone();
        let sql = format!(
            "ATTACH 'ducklake:{target}' AS lake (DATA_PATH '{}', READ_ONLY); SELECT count(*) FROM lake.\"{table}\";",
            cfg.lake.data_path
        );
        std::thread::spawn(move || {
            let mut results: Vec<Result<u64, String>> = Vec::new();
            loop {
                let last = stop.load(Relaxed);
                let o = Command::new(&cli)
                    .args(["-noheader", "-list", "-c", &sql])
                    .output()
                    .unwrap();
                let out = String::from_utf8_lossy(&o.stdout).trim().to_string();
                results.push(match (o.status.success(), out.parse()) {
                    (true, Ok(n)) => Ok(n),
                    _ => Err(format!("{out}{}", String::from_utf8_lossy(&o.stderr))),
                });
                if last {
                    return results;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };

    // A paced topic: 2 messages of 500 rows every 150 ms for ~9 s.
    for _ in 0..60 {
        next = produce_events(&p, 2, next, 2, 500);
        std::thread::sleep(Duration::from_millis(150));
    }
    let total = next as u64;
    assert_eq!(total, 61_000);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while flushed_rows(&sluice.output()).iter().sum::<u64>() < total {
        assert!(std::time::Instant::now() < deadline, "{}", sluice.output());
        std::thread::sleep(Duration::from_millis(50));
    }
    // The readers go on through the shutdown, then read the final state once more.
    assert_eq!(sluice.terminate(Duration::from_secs(60)), Some(0));
    std::fs::write(&stop_file, "").unwrap();
    stop_cli.store(true, Relaxed);
    let out = python_reader.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let python_counts: Vec<u64> = report["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let python_errors = report["errors"].as_array().unwrap().clone();
    let cli_results = cli_reader.join().unwrap();

    let log = sluice.output();
    let flushes = flushed_rows(&log);
    assert_eq!(flushes.iter().sum::<u64>(), total, "{log}");
    // Readers never made a commit fail or wait for a retry.
    for bad in ["flush failed", "commit conflict", " WARN ", " ERROR "] {
        assert!(!log.contains(bad), "{bad:?} in the log:\n{log}");
    }
    // Every state a reader can see is a sum of committed flushes.
    let committed: BTreeSet<u64> = flushes
        .iter()
        .scan(0, |sum, rows| {
            *sum += rows;
            Some(*sum)
        })
        .collect();
    assert!(python_errors.is_empty(), "{python_errors:?}");
    let cli_errors: Vec<&String> = cli_results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .collect();
    assert!(cli_errors.is_empty(), "{cli_errors:?}");
    let cli_counts: Vec<u64> = cli_results.into_iter().map(Result::unwrap).collect();
    for (reader, counts) in [("python", &python_counts), ("cli", &cli_counts)] {
        assert!(
            counts.windows(2).all(|w| w[0] <= w[1]),
            "{reader} counts decreased: {counts:?}"
        );
        let stray: Vec<&u64> = counts.iter().filter(|c| !committed.contains(c)).collect();
        assert!(
            stray.is_empty(),
            "{reader} saw counts {stray:?} that are no committed state {committed:?}"
        );
        assert_eq!(counts.last(), Some(&total), "{reader}: {counts:?}");
        // The reads interleaved with the commits (not all after the last one).
        let states: BTreeSet<&u64> = counts.iter().collect();
        assert!(
            states.len() >= 3,
            "{reader} saw only {states:?} in {} reads over {} flushes",
            counts.len(),
            flushes.len()
        );
        eprintln!(
            "{reader}: {} reads, {} distinct committed states of {} flushes, final {}",
            counts.len(),
            states.len(),
            flushes.len(),
            counts.last().unwrap()
        );
    }
    assert_eq!(events_summary(&cfg, &table), expected_summary(total as i64));
}
