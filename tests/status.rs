//! `sluice status`: offsets, watermarks, lag and last commit age per partition, rows, files and
//! inlined rows per table, read from the lake and the broker; with a `sluice run` instance
//! answering at the configured metrics address, its readiness and pending bytes; a DuckDB
//! catalog locked by that instance; an unreachable broker.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::services::SluiceProc;
use common::{Running, lake_offsets, query, setup, sluice_cli};
use sluice::config::{CatalogKind, Config};
use sluice_producer::events::{EventGen, generate};
use sluice_producer::{ArrowProducer, Encoding};

/// A loopback port nothing listens on (bound once and released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes `cfg` to `sluice.toml` in `dir`.
fn write_config(cfg: &Config, dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("sluice.toml");
    std::fs::write(&path, toml::to_string(cfg).unwrap()).unwrap();
    path
}

/// Sends `messages` messages of `rows` events each to `partition`, from seq `first`.
fn produce_to(p: &ArrowProducer, partition: i32, first: i64, messages: usize, rows: usize) {
    let mut g = EventGen::starting_at(9, first);
    for _ in 0..messages {
        p.send(Some(partition), None, &[generate(&mut g, rows)])
            .unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

/// (files, bytes) of `table` as `ducklake_list_files` lists them.
fn listed_files(cfg: &Config, table: &str) -> (String, String) {
    let r = query(
        cfg,
        &format!(
            "SELECT count(*), coalesce(sum(data_file_size_bytes), 0) FROM ducklake_list_files('lake', '{table}')"
        ),
    );
    (r[0][0].clone().unwrap(), r[0][1].clone().unwrap())
}

/// `sluice status` on `path`: its stdout split into lines of words; panics with stderr if it
/// fails.
fn status(path: &std::path::Path) -> (String, Vec<Vec<String>>) {
    let (ok, out, err) = sluice_cli(&["status"], path);
    assert!(ok, "{out}{err}");
    let words = out
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect();
    (out, words)
}

/// A partition row whose last commit is `Ns ago` (N < 60: the commit was just made), as the
/// words before and after the age.
fn partition_row(line: &[String], out: &str) -> Vec<String> {
    assert_eq!(line.len(), 8, "{out}");
    let n: u64 = line[5]
        .strip_suffix('s')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("age {:?} is not seconds in\n{out}", line[5]));
    assert!(n < 60, "{out}");
    assert_eq!(line[6], "ago", "{out}");
    [&line[..5], &line[7..]].concat()
}

#[test]
fn status_shows_offsets_lag_files_and_inlined_rows_from_the_lake_and_the_broker() {
    let (kafka, topic, dir, mut cfg) = setup("status", 2);
    cfg.flush.max_age_ms = 200;
    // Flushes of at most 10 rows stay in the catalog (inlined); larger ones are files.
    cfg.tables.defaults.data_inlining_row_limit = Some(10);
    let port = free_port();
    cfg.metrics.address = format!("127.0.0.1:{port}");
    let path = write_config(&cfg, dir.path());
    let table = cfg.tables.table_for(&topic);
    let p = kafka.producer(&topic, Encoding::default());
    // 10 messages of 100 rows to each partition, all ingested.
    produce_to(&p, 0, 0, 10, 100);
    produce_to(&p, 1, 1000, 10, 100);
    Running::until_committed(&cfg, 20);
    assert_eq!(lake_offsets(&cfg, &topic), vec![(0, 10), (1, 10)]);

    let (files, bytes) = listed_files(&cfg, &table);
    assert_ne!(files, "0");
    let (out, lines) = status(&path);
    assert_eq!(lines.len(), 13, "{out}");
    assert_eq!(lines[0], ["consumer", "group", cfg.kafka.group_id.as_str()]);
    assert_eq!(
        out.lines().nth(1).unwrap(),
        format!("no instance answering at 127.0.0.1:{port} (connection refused)")
    );
    assert!(lines[2].is_empty(), "{out}");
    assert_eq!(lines[3], ["topic", topic.as_str(), "->", "table", &table]);
    assert_eq!(
        lines[4],
        [
            "partition",
            "lake_offset",
            "low",
            "high",
            "lag",
            "last_commit",
            "status"
        ]
    );
    assert_eq!(
        partition_row(&lines[5], &out),
        ["0", "10", "0", "10", "0", "ok"]
    );
    assert_eq!(
        partition_row(&lines[6], &out),
        ["1", "10", "0", "10", "0", "ok"]
    );
    assert!(lines[7].is_empty(), "{out}");
    assert_eq!(
        lines[8],
        [
            "table",
            "topics",
            "rows",
            "data_files",
            "bytes",
            "inlined_rows"
        ]
    );
    assert_eq!(
        lines[9],
        [table.as_str(), &topic, "2000", &files, &bytes, "0"],
        "{out}"
    );
    assert_eq!(
        lines[10],
        ["sluice_quarantine", "(quarantine)", "0", "0", "0", "0"]
    );
    assert!(lines[11].is_empty(), "{out}");
    assert_eq!(
        out.lines().nth(12).unwrap(),
        format!(
            "total: 2 partitions, lag 0; 2000 rows, {files} data files, {bytes} bytes, 0 inlined rows"
        )
    );

    // 3 messages of 2 rows to partition 1 that nothing has read: lag 3 there.
    produce_to(&p, 1, 5000, 3, 2);
    let (out, lines) = status(&path);
    assert_eq!(
        partition_row(&lines[5], &out),
        ["0", "10", "0", "10", "0", "ok"]
    );
    assert_eq!(
        partition_row(&lines[6], &out),
        ["1", "10", "0", "13", "3", "ok"]
    );
    assert_eq!(
        out.lines().nth(12).unwrap(),
        format!(
            "total: 2 partitions, lag 3; 2000 rows, {files} data files, {bytes} bytes, 0 inlined rows"
        )
    );

    // Ingested: each flush of them holds at most 6 rows, so they are inlined, in no file.
    Running::until_committed(&cfg, 3);
    assert_eq!(listed_files(&cfg, &table), (files.clone(), bytes.clone()));
    let (out, lines) = status(&path);
    assert_eq!(
        partition_row(&lines[6], &out),
        ["1", "13", "0", "13", "0", "ok"]
    );
    assert_eq!(
        lines[9],
        [table.as_str(), &topic, "2006", &files, &bytes, "6"],
        "{out}"
    );
    assert_eq!(
        out.lines().nth(12).unwrap(),
        format!(
            "total: 2 partitions, lag 0; 2006 rows, {files} data files, {bytes} bytes, 6 inlined rows"
        )
    );

    // The same as one JSON object.
    let (ok, out, err) = sluice_cli(&["status", "--json"], &path);
    assert!(ok, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["instance"]["answering"], false);
    assert_eq!(j["instance"]["note"], "connection refused");
    let parts = &j["topics"][0]["partitions"];
    assert_eq!(parts[1]["lake_offset"], 13);
    assert_eq!(parts[1]["high"], 13);
    assert_eq!(parts[1]["lag"], 0);
    assert_eq!(j["tables"][0]["rows"], 2006);
    assert_eq!(j["tables"][0]["inlined_rows"], 6);
    assert_eq!(j["tables"][0]["data_files"], files.parse::<u64>().unwrap());
    assert_eq!(
        j["tables"][0]["data_file_bytes"],
        bytes.parse::<u64>().unwrap()
    );
    assert_eq!(j["totals"]["lag"], 0);
}

/// Runs `sluice status` until `done` holds for its output (60 s at most).
fn status_until(
    path: &std::path::Path,
    proc: &SluiceProc,
    what: &str,
    done: impl Fn(&str) -> bool,
) -> (String, Vec<Vec<String>>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, out, err) = sluice_cli(&["status"], path);
        if ok && done(&out) {
            let words = out
                .lines()
                .map(|l| l.split_whitespace().map(String::from).collect())
                .collect();
            return (out, words);
        }
        assert!(
            Instant::now() < deadline,
            "status never showed {what}:\n{out}{err}\n{}",
            proc.output()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn status_shows_a_running_instance_its_readiness_and_pending_bytes() {
    let (kafka, topic, dir, mut cfg) = setup("status_run", 2);
    let port = free_port();
    cfg.metrics.address = format!("127.0.0.1:{port}");
    let path = write_config(&cfg, dir.path());
    let table = cfg.tables.table_for(&topic);
    let mut proc = SluiceProc::start(&path, dir.path().join("sluice.log"), &[]);
    let p = kafka.producer(&topic, Encoding::default());
    produce_to(&p, 0, 0, 5, 100);
    produce_to(&p, 1, 500, 5, 100);
    // Everything committed: nothing pending.
    let want = format!(
        "instance at 127.0.0.1:{port}: ready; 2 partitions assigned; pending 0 bytes (0 in flight)"
    );
    let (out, lines) = status_until(&path, &proc, "everything committed", |out| {
        out.lines().nth(1) == Some(want.as_str())
            && out.contains("total: 2 partitions, lag 0; 1000 rows")
    });
    assert_eq!(
        lines[4],
        [
            "partition",
            "lake_offset",
            "low",
            "high",
            "lag",
            "last_commit",
            "status",
            "instance"
        ]
    );
    // (The README's sample: `--success-output immediate` shows it.)
    println!("{out}");
    let row = |l: &[String]| {
        let mut r = partition_row(&l[..8], &out);
        r.push(l[8].clone());
        r
    };
    assert_eq!(lines[5].len(), 9, "{out}");
    assert_eq!(row(&lines[5]), ["0", "5", "0", "5", "0", "ok", "assigned"]);
    assert_eq!(row(&lines[6]), ["1", "5", "0", "5", "0", "ok", "assigned"]);
    let (files, bytes) = listed_files(&cfg, &table);
    assert_eq!(
        lines[9],
        [table.as_str(), &topic, "1000", &files, &bytes, "0"],
        "{out}"
    );
    assert_eq!(
        out.lines().nth(12).unwrap(),
        format!(
            "total: 2 partitions, lag 0; 1000 rows, {files} data files, {bytes} bytes, 0 inlined rows; pending 0 bytes"
        )
    );
    assert_eq!(proc.terminate(Duration::from_secs(60)), Some(0));
}

#[test]
fn status_names_a_locked_duckdb_catalog_and_shows_the_instance_offsets() {
    let (kafka, topic, dir, mut cfg) = setup("status_locked", 1);
    cfg.lake.catalog_kind = CatalogKind::Duckdb;
    let catalog = dir.path().join("lake.duckdb");
    cfg.lake.catalog = catalog.display().to_string();
    let port = free_port();
    cfg.metrics.address = format!("127.0.0.1:{port}");
    let path = write_config(&cfg, dir.path());
    let mut proc = SluiceProc::start(&path, dir.path().join("sluice.log"), &[]);
    let p = kafka.producer(&topic, Encoding::default());
    produce_to(&p, 0, 0, 4, 100);
    let (out, lines) = status_until(&path, &proc, "the instance's offset 4", |out| {
        out.contains("total: 1 partitions, lag 0; pending 0 bytes")
    });
    let pid = proc.pid();
    let lock = out.lines().nth(2).unwrap();
    assert!(
        lock.starts_with(&format!(
            "lake: the DuckDB catalog {} is locked by ",
            catalog.display()
        )) && lock.contains(&format!("(PID {pid})"))
            && lock.ends_with("The SQLite catalog (lake.catalog_kind = \"sqlite\", the default) can be read while sluice ingests; meanwhile the instance's /metrics ([metrics] address) shows its lake offsets"),
        "{out}"
    );
    assert_eq!(lines.len(), 9, "{out}");
    // The lake offset is the instance's; no commit time can be read.
    assert_eq!(
        lines[6],
        ["0", "4", "0", "4", "0", "-", "ok", "assigned"],
        "{out}"
    );
    assert_eq!(proc.terminate(Duration::from_secs(60)), Some(0));
    // Stopped: the lake is readable again and shows the same offset.
    let (out, lines) = status(&path);
    assert_eq!(
        out.lines().nth(1).unwrap(),
        format!("no instance answering at 127.0.0.1:{port} (connection refused)")
    );
    assert_eq!(
        partition_row(&lines[5], &out),
        ["0", "4", "0", "4", "0", "ok"]
    );
}

#[test]
fn status_with_an_unreachable_broker_names_it() {
    let (_kafka, topic, dir, mut cfg) = setup("status_nobroker", 1);
    let broker = format!("127.0.0.1:{}", free_port());
    cfg.kafka.brokers = broker.clone();
    let path = write_config(&cfg, dir.path());
    let (ok, out, err) = sluice_cli(&["status"], &path);
    assert!(!ok, "{out}");
    assert_eq!(out, "", "{err}");
    // (librdkafka's own warnings come first.)
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!(
            "sluice: reading topic {topic}'s partitions from the brokers: kafka metadata from {broker}: "
        )),
        "{err}"
    );
}
