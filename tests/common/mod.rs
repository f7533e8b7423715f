//! Fixtures for integration tests: a librdkafka mock cluster per test, unique topics, a lake in
//! a temporary directory, a pipeline running on its own thread, and exact read-backs.
#![allow(dead_code)]

pub mod pki;
pub mod services;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use sluice::config::Config;
use sluice::observe::Stats;
use sluice::pipeline::{Pipeline, PipelineError};
use sluice::sink::Lake;
use sluice_producer::events::{EventGen, generate};
use sluice_producer::{ArrowProducer, Encoding};

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        N.fetch_add(1, Relaxed)
    )
}

/// An in-process Kafka (librdkafka's mock cluster) listening on loopback.
pub struct Kafka {
    pub cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    pub brokers: String,
}

impl Kafka {
    pub fn start() -> Kafka {
        let cluster = MockCluster::new(1).expect("mock cluster");
        let brokers = cluster.bootstrap_servers();
        Kafka { cluster, brokers }
    }

    pub fn topic(&self, prefix: &str, partitions: i32) -> String {
        let t = unique(prefix);
        self.cluster
            .create_topic(&t, partitions, 1)
            .expect("create topic");
        t
    }

    pub fn producer(&self, topic: &str, encoding: Encoding) -> ArrowProducer {
        ArrowProducer::new(&self.brokers, topic, encoding, &[("linger.ms", "1")]).expect("producer")
    }
}

/// A test configuration: small flush thresholds, fast group protocol timings.
pub fn config(brokers: &str, topic: &str, dir: &Path) -> Config {
    let mut cfg = Config::default();
    cfg.kafka.brokers = brokers.to_string();
    cfg.kafka.group_id = unique("group");
    cfg.kafka.topics = vec![topic.to_string()];
    for (k, v) in [
        ("fetch.wait.max.ms", "10"),
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "500"),
        ("topic.metadata.refresh.interval.ms", "1000"),
    ] {
        cfg.kafka.properties.insert(k.into(), v.into());
    }
    cfg.lake.catalog = dir.join("lake.sqlite").display().to_string();
    cfg.lake.data_path = format!("{}/", dir.join("data").display());
    cfg.lake.threads = Some(2);
    // Child `sluice run` processes serve Flight and metrics on free ports.
    cfg.live.address = "127.0.0.1:0".into();
    cfg.metrics.address = "127.0.0.1:0".into();
    cfg.flush.max_rows = 2_000;
    cfg.flush.max_age_ms = 500;
    cfg.flush.retry.attempts = 40;
    cfg.flush.retry.initial_backoff_ms = 20;
    cfg.flush.retry.max_backoff_ms = 500;
    cfg
}

/// Produces `messages` messages of `rows` events each, round robin over `partitions`, starting
/// at seq `first`. Returns the next seq.
pub fn produce_events(
    p: &ArrowProducer,
    partitions: i32,
    first: i64,
    messages: usize,
    rows: usize,
) -> i64 {
    let mut g = EventGen::starting_at(9, first);
    for m in 0..messages {
        let b = generate(&mut g, rows);
        p.send(Some((m as i32) % partitions), None, &[b])
            .expect("send");
    }
    p.flush(Duration::from_secs(30)).expect("flush");
    g.next_seq()
}

/// Where the decoded buffers of the messages `produce_events(_, _, first, messages, rows)`
/// sends with `encoding` live when decoded from aligned memory: what sluice must count for them
/// (from Kafka, some in-place bytes are realigned instead; their sum is the same).
pub fn decoded_copies(
    encoding: Encoding,
    first: i64,
    messages: usize,
    rows: usize,
) -> sluice::decode::Copies {
    let mut g = EventGen::starting_at(9, first);
    let mut total = sluice::decode::Copies::default();
    for _ in 0..messages {
        let ipc = sluice_producer::encode(&[generate(&mut g, rows)], encoding).expect("encode");
        let d = sluice::decode::decode(&arrow::buffer::Buffer::from_vec(ipc)).expect("decode");
        total.add(&d.copies);
    }
    total
}

/// A mock cluster, a topic of `partitions` partitions named after `prefix`, a lake directory
/// and a test configuration tying them together.
pub fn setup(prefix: &str, partitions: i32) -> (Kafka, String, tempfile::TempDir, Config) {
    let kafka = Kafka::start();
    let topic = kafka.topic(prefix, partitions);
    let dir = lake_dir();
    let cfg = config(&kafka.brokers, &topic, dir.path());
    (kafka, topic, dir, cfg)
}

/// A pipeline running on its own thread.
pub struct Running {
    pub stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Result<(), PipelineError>>>,
}

impl Running {
    pub fn start(cfg: &Config) -> Running {
        let lake = Lake::open(&cfg.lake, &cfg.kafka.group_id).expect("open lake");
        Self::start_on(cfg, lake)
    }

    /// Starts a pipeline on a given lake handle (several pipelines can share one DuckDB).
    pub fn start_on(cfg: &Config, lake: Lake) -> Running {
        Self::start_with(cfg, lake, |_| {})
    }

    /// Like `start_on`, letting `prepare` configure the pipeline before it runs.
    pub fn start_with(cfg: &Config, lake: Lake, prepare: impl FnOnce(&Pipeline)) -> Running {
        init_logs();
        let stats = Arc::new(Stats::default());
        let pipeline = Pipeline::with_lake(cfg, lake, stats.clone()).expect("pipeline");
        prepare(&pipeline);
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || pipeline.run(&s));
        Running {
            stats,
            stop,
            handle: Some(handle),
        }
    }

    /// Waits until `cond` holds (panics after `timeout`, naming `what`).
    pub fn wait(&self, what: &str, timeout: Duration, cond: impl Fn(&Stats) -> bool) {
        let deadline = Instant::now() + timeout;
        while !cond(&self.stats) {
            if self.handle.as_ref().is_some_and(|h| h.is_finished()) {
                panic!("pipeline stopped while waiting for {what}");
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs a pipeline until `messages` messages are committed (60 s at most), stops it
    /// cleanly and returns its counters.
    pub fn until_committed(cfg: &Config, messages: u64) -> Arc<Stats> {
        let run = Running::start(cfg);
        run.wait(
            &format!("{messages} messages committed"),
            Duration::from_secs(60),
            |s| s.committed_messages.load(Relaxed) >= messages,
        );
        let stats = run.stats.clone();
        run.stop().expect("clean stop");
        stats
    }

    /// Waits up to `timeout` for the pipeline to stop by itself (an error), and returns its
    /// result.
    pub fn ended(mut self, timeout: Duration) -> Result<(), PipelineError> {
        let deadline = Instant::now() + timeout;
        while !self.handle.as_ref().unwrap().is_finished() {
            assert!(
                Instant::now() < deadline,
                "the pipeline did not stop within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.handle
            .take()
            .unwrap()
            .join()
            .expect("pipeline thread panicked")
    }

    /// Stops cleanly (flush, commit) and returns the pipeline's result.
    pub fn stop(mut self) -> Result<(), PipelineError> {
        self.stop.store(true, Relaxed);
        self.handle
            .take()
            .unwrap()
            .join()
            .expect("pipeline thread panicked")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            self.stop.store(true, Relaxed);
            let _ = h.join();
        }
    }
}

/// Runs the `sluice` binary with `args` then `--config <config>`: (success, stdout, stderr).
pub fn sluice_cli(args: &[&str], config: &Path) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Opens the lake of `cfg` (read side) and runs one query, returning its rows as text.
pub fn query(cfg: &Config, sql: &str) -> Vec<Vec<Option<String>>> {
    let lake = Lake::open(&cfg.lake, &cfg.kafka.group_id).expect("open lake");
    lake.query_rows(sql).expect("query")
}

/// (count, count distinct seq, sum seq) of an events table.
pub fn events_summary(cfg: &Config, table: &str) -> (i64, i64, i128) {
    let rows = query(
        cfg,
        &format!(
            "SELECT count(*), count(DISTINCT seq), coalesce(sum(seq), 0) FROM lake.main.\"{table}\""
        ),
    );
    let v = |i: usize| rows[0][i].clone().unwrap();
    (
        v(0).parse().unwrap(),
        v(1).parse().unwrap(),
        v(2).parse().unwrap(),
    )
}

/// Asserts the lake table holds exactly the events with seq 0..n, column for column (the Kafka
/// metadata columns `_kafka_*` aside).
pub fn assert_exact_events(cfg: &Config, table: &str, n: i64) {
    assert_eq!(events_summary(cfg, table), expected_summary(n));
    let lake = Lake::open(&cfg.lake, &cfg.kafka.group_id).unwrap();
    let db: &Arc<sluice::sink::duck::Database> = lake.database();
    let conn = db.connect().unwrap();
    let mut g = EventGen::starting_at(9, 0);
    let mut batches = Vec::new();
    let mut left = n;
    while left > 0 {
        let k = left.min(10_000);
        batches.push(generate(&mut g, k as usize));
        left -= k;
    }
    let mut stream =
        sluice::sink::ffi_stream::BatchStream::new(sluice_producer::events::schema(), batches)
            .unwrap();
    conn.register_arrow_view("expected_src", &mut stream)
        .unwrap();
    conn.execute("CREATE TABLE expected AS SELECT * FROM expected_src")
        .unwrap();
    conn.execute("DROP VIEW expected_src").unwrap();
    let lake_table = format!("lake.main.\"{table}\"");
    let events = "COLUMNS(c -> NOT starts_with(c, '_kafka_'))";
    for (a, b) in [
        ("expected", lake_table.as_str()),
        (lake_table.as_str(), "expected"),
    ] {
        let rows = lake
            .query_rows(&format!(
                "SELECT count(*) FROM (SELECT {events} FROM {a} EXCEPT ALL SELECT {events} FROM {b})"
            ))
            .unwrap();
        assert_eq!(
            rows[0][0].as_deref(),
            Some("0"),
            "rows of {a} missing from {b}"
        );
    }
}

/// `(partition, next offset)` of `topic` in the lake's offsets table, by partition.
pub fn lake_offsets(cfg: &Config, topic: &str) -> Vec<(i32, i64)> {
    query(
        cfg,
        &format!(
            "SELECT \"partition\", next_offset FROM lake.main.sluice_offsets WHERE topic = '{topic}' ORDER BY 1"
        ),
    )
    .into_iter()
    .map(|r| {
        (
            r[0].as_deref().unwrap().parse().unwrap(),
            r[1].as_deref().unwrap().parse().unwrap(),
        )
    })
    .collect()
}

/// The summary `events_summary` must return for seqs `0..n`.
pub fn expected_summary(n: i64) -> (i64, i64, i128) {
    (n, n, (n as i128) * (n as i128 - 1) / 2)
}

/// A tool scripts/setup installs: `$var` if set, else `~/.cache/sluice/<default>`; panics with
/// the fix if it is missing.
pub fn setup_tool(var: &str, default: &str, what: &str) -> PathBuf {
    let p = std::env::var(var).map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(std::env::var("HOME").unwrap())
            .join(".cache/sluice")
            .join(default)
    });
    assert!(
        p.exists(),
        "{what} is missing at {}: run scripts/setup (scripts/test does)",
        p.display()
    );
    p
}

/// The Python interpreter of the test venv (prepared by scripts/setup).
pub fn python() -> PathBuf {
    setup_tool(
        "SLUICEDEV_PYTHON",
        "venv/bin/python",
        "the test venv's python",
    )
}

/// Runs `script` with the test venv's python and `args`; returns it once its first line of
/// stdout is `first_line` (`""`: once its stdout closed), with the rest of its stdout.
pub fn spawn_script(
    script: &str,
    args: &[&str],
    first_line: &str,
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStdout>,
) {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let mut child = Command::new(python())
        .arg(script)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), first_line);
    (child, stdout)
}

/// A directory for one test's lake.
pub fn lake_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Logs to stderr when TEST_LOG is set (e.g. TEST_LOG=sluice=debug).
pub fn init_logs() {
    if let Ok(filter) = std::env::var("TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// What follows `ducklake:` in a stock DuckDB `ATTACH` of the lake of `cfg`.
pub fn attach_target(cfg: &Config) -> String {
    use sluice::config::CatalogKind;
    match cfg.lake.catalog_kind {
        CatalogKind::Duckdb => cfg.lake.catalog.clone(),
        CatalogKind::Sqlite => format!("sqlite:{}", cfg.lake.catalog),
        CatalogKind::Postgres => format!("postgres:{}", cfg.lake.catalog),
    }
}

/// GET `path` from `addr` with extra header lines (`Name: value\r\n` each): (status code,
/// body). HTTP/1.0, so the body is neither chunked (Prometheus's API would chunk a 1.1 answer)
/// nor kept alive.
pub fn http_get(addr: &str, path: &str, headers: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{headers}\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (code, body)
}

/// The `host:port` logged right after `marker` (e.g. the metrics endpoint's URL).
pub fn address_after(log: &str, marker: &str) -> String {
    let rest = log
        .split(marker)
        .nth(1)
        .unwrap_or_else(|| panic!("no {marker:?} in:\n{log}"));
    rest.split('/').next().unwrap().to_string()
}
