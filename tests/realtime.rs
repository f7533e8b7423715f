//! The real-time views over Flight SQL (issue 16 part 1), with real clients: the ADBC Flight
//! SQL driver and pyarrow.flight (tests/python/sql_client.py) against a whole sluice process
//! stage set (`sluice::cli::assemble`) on a mock cluster and a SQLite-catalog lake.

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::Value;
use sluice::config::Config;
use sluice::observe::Stats;
use sluice_producer::Encoding;
use sluice_producer::events::{EventGen, generate};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/sql_client.py");

/// sluice's stages on a thread: the Flight SQL URL, its counters, and how to stop it.
struct Sluice {
    url: String,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Sluice {
    fn start(cfg: &Config) -> Sluice {
        init_logs();
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let cfg = cfg.clone();
        let handle = std::thread::spawn(move || {
            let a = sluice::cli::assemble(&cfg).expect("assemble");
            let url = a.sql.as_ref().map(|s| s.url()).unwrap_or_default();
            tx.send((url, a.stats.clone())).unwrap();
            sluice::cli::run_until(a, &s).expect("clean run");
        });
        let (url, stats) = rx.recv_timeout(Duration::from_secs(60)).expect("started");
        Sluice {
            url,
            stats,
            stop,
            handle: Some(handle),
        }
    }

    /// Waits until `cond` holds of the counters (60 s at most, then fails naming `what`).
    fn wait(&self, what: &str, cond: impl Fn(&Stats) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !cond(&self.stats) {
            assert!(Instant::now() < deadline, "{what}: not within 60 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_committed(&self, messages: u64) {
        self.wait(&format!("{messages} messages committed"), |s| {
            s.committed_messages.load(Relaxed) >= messages
        });
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn sql_client(args: &[&str]) -> String {
    let out = Command::new(python())
        .arg(SCRIPT)
        .args(args)
        .output()
        .expect("run sql_client.py");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "sql_client.py {args:?} failed:\n{stderr}"
    );
    String::from_utf8(out.stdout).unwrap()
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn sql_config(prefix: &str, partitions: i32) -> (Kafka, String, tempfile::TempDir, Config) {
    let (kafka, topic, dir, mut cfg) = setup(prefix, partitions);
    cfg.tables.metadata.partition = true;
    cfg.sql.enabled = true;
    cfg.sql.address = "127.0.0.1:0".into();
    cfg.metrics.enabled = false;
    (kafka, topic, dir, cfg)
}

/// Answers of `SELECT count(*), sum(seq) FROM t_live` taken while rows arrive, 50 at a time in
/// 2 partitions, and are committed every 1.5 s: every answer holds, per partition, a gapless
/// prefix of that partition's messages (no row twice, none missing before the newest), at least
/// the rows its own lake snapshot committed and at most those produced before it returned.
#[test]
fn a_real_time_view_read_during_ingestion_is_always_a_gapless_prefix_between_committed_and_produced()
 {
    const PARTITIONS: i64 = 2;
    const ROWS: i64 = 50;
    const MESSAGES: i64 = 240;
    let (kafka, topic, _dir, mut cfg) = sql_config("rt_prefix", PARTITIONS as i32);
    cfg.flush.max_rows = 1_000_000;
    cfg.flush.max_age_ms = 1_500;
    let table = cfg.tables.table_for(&topic);
    let sluice = Sluice::start(&cfg);

    // (time before a send, rows sent up to and including it)
    let produced: Arc<Mutex<Vec<(f64, i64)>>> = Arc::default();
    let watcher = {
        let (url, table) = (sluice.url.clone(), table.clone());
        std::thread::spawn(move || {
            Command::new(python())
                .args([SCRIPT, "watch", &url, &table, "9"])
                .stderr(Stdio::inherit())
                .output()
                .expect("watch")
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    let p = kafka.producer(&topic, Encoding::default());
    let mut g = EventGen::starting_at(9, 0);
    for m in 0..MESSAGES {
        lock_push(&produced, now_s(), (m + 1) * ROWS);
        p.send(
            Some((m % PARTITIONS) as i32),
            None,
            &[generate(&mut g, ROWS as usize)],
        )
        .expect("send");
        std::thread::sleep(Duration::from_millis(20));
    }
    p.flush(Duration::from_secs(30)).unwrap();
    sluice.wait_committed(MESSAGES as u64);
    let out = watcher.join().unwrap();
    assert!(out.status.success(), "watch failed");
    let produced = produced.lock().unwrap().clone();

    let mut answers = 0;
    let mut ahead_of_lake = 0;
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let t1 = v["t1"].as_f64().unwrap();
        let upper = produced
            .iter()
            .filter(|(t, _)| *t <= t1)
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0);
        let rows = v["rows"].as_array().unwrap();
        let mut total = 0;
        let mut committed = 0;
        for r in rows {
            let (pa, n, d, mx) = (
                r["p"].as_i64().unwrap(),
                r["n"].as_i64().unwrap(),
                r["d"].as_i64().unwrap(),
                r["mx"].as_i64().unwrap(),
            );
            committed = r["committed"].as_i64().unwrap();
            assert_eq!(n, d, "a row twice in partition {pa}: {line}");
            assert_eq!(n % ROWS, 0, "part of a message in partition {pa}: {line}");
            // Partition pa's k-th message (k from 0) is message k*PARTITIONS + pa.
            let k = n / ROWS;
            assert_eq!(
                mx,
                ((k - 1) * PARTITIONS + pa) * ROWS + ROWS - 1,
                "a gap in partition {pa}: {line}"
            );
            total += n;
        }
        assert!(
            total >= committed,
            "fewer rows than the lake's snapshot committed: {line}"
        );
        assert!(
            total <= upper,
            "more rows than produced ({upper}) before the answer: {line}"
        );
        if total > committed {
            ahead_of_lake += 1;
        }
        answers += 1;
    }
    eprintln!("{answers} answers, {ahead_of_lake} ahead of the lake's committed rows");
    assert!(answers >= 10, "only {answers} answers");
    assert!(
        ahead_of_lake >= 1,
        "no answer showed rows the lake had not committed yet"
    );

    // At quiescence: exactly what was produced, and what the lake holds.
    let n = MESSAGES * ROWS;
    let q = format!("SELECT count(*), sum(seq)::BIGINT FROM \"{table}_live\"");
    let want = format!("[[{n}, {}]]", n * (n - 1) / 2);
    assert_eq!(sql_client(&["adbc", &sluice.url, &q]).trim(), want);
    assert_eq!(sql_client(&["pyarrow", &sluice.url, &q]).trim(), want);
    let lake_q = format!("SELECT count(*), sum(seq)::BIGINT FROM \"{table}\"");
    assert_eq!(sql_client(&["adbc", &sluice.url, &lake_q]).trim(), want);
}

fn lock_push(v: &Mutex<Vec<(f64, i64)>>, t: f64, n: i64) {
    v.lock().unwrap().push((t, n));
}

/// A GROUP BY over the real-time view while 900 of its 1,900 rows are not committed equals the
/// same query on the lake once they are; so does every value of every row; writes are refused.
#[test]
fn a_group_by_on_the_uncommitted_view_equals_the_lake_after_commit_and_writes_are_refused() {
    let (kafka, topic, _dir, mut cfg) = sql_config("rt_group", 3);
    cfg.flush.max_rows = 1_000;
    cfg.flush.max_age_ms = 600_000;
    let table = cfg.tables.table_for(&topic);
    let sluice = Sluice::start(&cfg);
    let p = kafka.producer(&topic, Encoding::default());
    // 1,000 rows: one flush by max_rows (the table's first commit creates it, and its view).
    let next = produce_events(&p, 3, 0, 10, 100);
    sluice.wait_committed(10);
    // 900 more stay pending (under max_rows, long before max_age).
    produce_events(&p, 3, next, 9, 100);
    sluice.wait("19 messages consumed", |s| s.messages.load(Relaxed) >= 19);
    let group_by = |from: &str| {
        format!(
            "SELECT \"_kafka_partition\", count(*), sum(seq)::BIGINT, min(seq), max(seq) FROM {from} GROUP BY 1 ORDER BY 1"
        )
    };
    let live = sql_client(&["adbc", &sluice.url, &group_by(&format!("\"{table}_live\""))]);
    // Every value of every row, as DuckDB prints it: the ring's Arrow columns (timestamps with
    // a zone, strings, nullable numbers, booleans) converted by sluice_ring equal what the lake
    // stores after the commit.
    let digest = |from: &str| {
        format!("SELECT md5(string_agg(CAST(t AS VARCHAR), '|' ORDER BY seq)) FROM {from} t")
    };
    let live_digest = sql_client(&["adbc", &sluice.url, &digest(&format!("\"{table}_live\""))]);
    assert_eq!(
        sluice.stats.committed_messages.load(Relaxed),
        10,
        "committed before the query"
    );
    let write = sql_client(&[
        "adbc_error",
        &sluice.url,
        "DELETE FROM lake.main.sluice_offsets",
    ]);
    assert!(
        write.contains("read-only queries (SELECT statements) only"),
        "{write}"
    );
    drop(sluice); // a clean stop commits
    let lake = query(&cfg, &group_by(&format!("lake.main.\"{table}\"")));
    let lake: Vec<Vec<i64>> = lake
        .iter()
        .map(|r| {
            r.iter()
                .map(|c| c.as_ref().unwrap().parse().unwrap())
                .collect()
        })
        .collect();
    let live: Vec<Vec<i64>> = serde_json::from_str(live.trim()).unwrap();
    let lake_digest = query(&cfg, &digest(&format!("lake.main.\"{table}\"")));
    let lake_digest = format!("[[\"{}\"]]", lake_digest[0][0].as_ref().unwrap());
    assert_eq!(live_digest.trim(), lake_digest);
    assert_eq!(live.len(), 3);
    assert_eq!(live.iter().map(|r| r[1]).sum::<i64>(), 1_900);
    assert_eq!(live, lake);
}

/// The endpoint takes `[live]`'s bearer token: refused without it or with a wrong one
/// (UNAUTHENTICATED), answered with it.
#[test]
fn flight_sql_asks_for_the_live_token() {
    let (kafka, topic, _dir, mut cfg) = sql_config("rt_auth", 1);
    cfg.live.auth_token = Some(sluice::config::Secret::new("s3cret-token".to_string()));
    let table = cfg.tables.table_for(&topic);
    let sluice = Sluice::start(&cfg);
    let p = kafka.producer(&topic, Encoding::default());
    produce_events(&p, 1, 0, 4, 10);
    sluice.wait_committed(4);
    let out = sql_client(&[
        "refused",
        &sluice.url,
        &format!("SELECT count(*) FROM \"{table}_live\""),
        "s3cret-token",
    ]);
    assert_eq!(
        out,
        "{\"none\": \"UNAUTHENTICATED\"}\n{\"wrong\": \"UNAUTHENTICATED\"}\n{\"token\": [[40]]}\n"
    );
}

/// Stock DuckDB over Quack (`sql.quack_address`) reads the same real-time view, with committed
/// and pending rows; a write and a wrong token are refused.
#[test]
fn stock_duckdb_reads_the_real_time_view_over_quack() {
    let (kafka, topic, _dir, mut cfg) = sql_config("rt_quack", 2);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    cfg.sql.enabled = false;
    cfg.sql.quack_address = Some(format!("127.0.0.1:{port}"));
    cfg.live.auth_token = Some(sluice::config::Secret::new("quack-token-1".to_string()));
    cfg.flush.max_rows = 500;
    cfg.flush.max_age_ms = 600_000;
    let table = cfg.tables.table_for(&topic);
    let sluice = Sluice::start(&cfg);
    let p = kafka.producer(&topic, Encoding::default());
    let next = produce_events(&p, 2, 0, 5, 100);
    sluice.wait_committed(5);
    produce_events(&p, 2, next, 3, 100);
    sluice.wait("8 messages consumed", |s| s.messages.load(Relaxed) >= 8);
    let uri = format!("quack:127.0.0.1:{port}");
    let ext = format!(
        "{}/.duckdb/extensions/v1.5.5/linux_amd64/quack.duckdb_extension",
        std::env::var("HOME").unwrap()
    );
    let ask = |token: &str, sql: &str| sql_client(&["quack", &uri, token, &ext, sql]);
    let q = format!(
        "SELECT (SELECT count(*) FROM lake.main.\"{table}\"), count(*), sum(seq)::BIGINT FROM \"{table}_live\""
    );
    // The view appears within a second of the table's first commit (Quack's refresh).
    let mut got = String::new();
    for _ in 0..50 {
        got = ask("quack-token-1", &q);
        if !got.contains("does not exist") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(got.trim(), "[[500, 800, 319600]]");
    assert_eq!(
        ask("quack-token-1", "DELETE FROM lake.main.sluice_offsets").trim(),
        "\"Invalid Input Error: Authorization failed\""
    );
    assert_eq!(
        ask("wrong-token", "SELECT 1").trim(),
        "\"Invalid Input Error: Authentication failed\""
    );
}
