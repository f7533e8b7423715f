//! `sluice demo`: the whole pipeline on embedded parts. librdkafka's in-process mock cluster,
//! PostHog-shaped events produced as Arrow IPC, ingested into a local DuckLake, read back.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::mocking::MockCluster;
use sluice_producer::events::{EventGen, generate};
use sluice_producer::{ArrowProducer, BodyCompression, Encoding, IpcFormat};

use super::assemble;
use crate::config::{Config, StartFrom};
use crate::observe::{FLUSH_TRIGGERS, Stats};
use crate::sink::Lake;

/// What the demo does.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Directory for the lake (catalog file and Parquet data); emptied of earlier demo output.
    pub dir: PathBuf,
    /// Rows to produce.
    pub rows: u64,
    /// Partitions of the topic.
    pub partitions: i32,
    /// Rows per Kafka message.
    pub rows_per_message: usize,
    /// IPC body compression of produced messages.
    pub compression: BodyCompression,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            dir: PathBuf::from("sluice-demo"),
            rows: 1_000_000,
            partitions: 4,
            rows_per_message: 100,
            compression: BodyCompression::None,
        }
    }
}

/// The mock cluster keeps only the newest 5 MiB per partition; the producer stays this far ahead
/// of the consumer at most, so nothing is truncated before it is read.
const MAX_UNCONSUMED_BYTES: u64 = 4 * 1024 * 1024;
const TOPIC: &str = "events";
/// The demo lake's catalog (SQLite, the default kind: readable while the demo runs).
const CATALOG_FILE: &str = "demo.sqlite";

/// Numbers the demo measured.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// Rows committed to the lake.
    pub rows: u64,
    /// Payload bytes ingested.
    pub bytes: u64,
    /// Wall time from the first produced message to the last commit.
    pub elapsed: Duration,
    /// Parquet files of the events table.
    pub files: u64,
    /// Their total size.
    pub file_bytes: u64,
}

/// Produces `rows` generated events, `rows_per_message` per message, round-robin over
/// `partitions`, never more than [`MAX_UNCONSUMED_BYTES`] ahead of `consumed` (the consumer's
/// payload bytes), so librdkafka's mock cluster truncates nothing unread. `keep_going` runs
/// between messages and while waiting, with the rows produced so far; `false` stops early.
/// Returns the rows produced.
pub fn produce_paced(
    producer: &ArrowProducer,
    gen_: &mut EventGen,
    rows: u64,
    rows_per_message: usize,
    partitions: i32,
    consumed: &std::sync::atomic::AtomicU64,
    mut keep_going: impl FnMut(u64) -> bool,
) -> Result<u64> {
    let (mut produced_rows, mut produced_bytes, mut messages) = (0u64, 0u64, 0u64);
    while produced_rows < rows {
        while produced_bytes.saturating_sub(consumed.load(Relaxed)) > MAX_UNCONSUMED_BYTES {
            producer.poll();
            std::thread::sleep(Duration::from_millis(1));
            if !keep_going(produced_rows) {
                return Ok(produced_rows);
            }
        }
        if !keep_going(produced_rows) {
            break;
        }
        let n = (rows - produced_rows).min(rows_per_message as u64) as usize;
        let batch = generate(gen_, n);
        let partition = (messages % partitions as u64) as i32;
        produced_bytes += producer.send(Some(partition), None, &[batch])? as u64;
        produced_rows += n as u64;
        messages += 1;
        producer.poll();
    }
    Ok(produced_rows)
}

fn prepare_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for name in [
        CATALOG_FILE,
        "demo.sqlite-wal",
        "demo.sqlite-shm",
        // Catalogs of demos before the SQLite default.
        "demo.ducklake",
        "demo.ducklake.wal",
    ] {
        let p = dir.join(name);
        if p.exists() {
            std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    let data = dir.join("data");
    if data.exists() {
        std::fs::remove_dir_all(&data).with_context(|| format!("removing {}", data.display()))?;
    }
    Ok(())
}

/// The demo's configuration for `topic` on librdkafka's mock cluster at `brokers`, with the lake
/// in `dir` (the live benchmark uses it too): fetches return fast, flushes at 96 MiB or 3 s,
/// a 512 MiB budget of which 128 MiB is live retention, Flight on a free port.
pub fn mock_config(brokers: &str, topic: &str, dir: &Path) -> Config {
    let mut cfg = Config::default();
    cfg.kafka.brokers = brokers.to_string();
    cfg.kafka.topics = vec![topic.into()];
    cfg.kafka.start_from = StartFrom::Earliest;
    // The mock broker holds an empty fetch for fetch.wait.max.ms.
    cfg.kafka
        .properties
        .insert("fetch.wait.max.ms".into(), "10".into());
    cfg.kafka
        .properties
        .insert("session.timeout.ms".into(), "6000".into());
    cfg.lake.catalog = dir.join(CATALOG_FILE).display().to_string();
    cfg.lake.data_path = format!("{}/", dir.join("data").display());
    cfg.flush.max_bytes = 96 * 1024 * 1024;
    cfg.flush.max_age_ms = 3_000;
    // Of 512 MiB: 128 MiB live retention, 114 MiB librdkafka prefetch, 270 MiB pending.
    cfg.flush.memory_cap_bytes = 512 * 1024 * 1024;
    cfg.live.retention_bytes = 128 * 1024 * 1024;
    cfg.live.address = "127.0.0.1:0".into();
    cfg
}

/// Runs the demo, printing progress and the result.
pub fn run(opts: &DemoOptions, stop: Arc<AtomicBool>) -> Result<DemoReport> {
    prepare_dir(&opts.dir)?;
    let dir = std::fs::canonicalize(&opts.dir)?;
    let cluster = MockCluster::new(1).context("starting librdkafka's mock cluster")?;
    cluster
        .create_topic(TOPIC, opts.partitions, 1)
        .context("creating the demo topic")?;
    let brokers = cluster.bootstrap_servers();

    let mut cfg = mock_config(&brokers, TOPIC, &dir);
    cfg.kafka.group_id = "sluice-demo".into();
    // The demo shows Flight; its metrics endpoint would take the port a `sluice run` uses.
    cfg.metrics.enabled = false;
    // A demo ends long before a pass would be due (`sluice maintain` shows one).
    cfg.maintenance.enabled = false;
    cfg.validate()?;
    let a = assemble(&cfg)?;
    banner(opts, &brokers, &dir, a.live.as_ref().map(|(_, s)| s.addr));
    let started = ingest(opts, &brokers, &a.stats, a.pipeline, &stop)?;
    // Ingestion has flushed and committed: the Flight endpoint stops after it.
    a.servers.stop();
    let live_summary = a
        .live
        .map(|(ring, _)| (ring.describe(TOPIC), a.stats.compacted_bytes.load(Relaxed)));
    let elapsed = started.elapsed();
    drop(cluster);
    summary(&a.stats, elapsed, live_summary);
    let (files, file_bytes) = check_lake(&cfg, opts)?;
    hints(&dir);
    Ok(DemoReport {
        rows: a.stats.committed_rows.load(Relaxed),
        bytes: a.stats.payload_bytes.load(Relaxed),
        elapsed,
        files,
        file_bytes,
    })
}

/// What the demo runs on, and how to read it live.
fn banner(opts: &DemoOptions, brokers: &str, dir: &Path, flight: Option<std::net::SocketAddr>) {
    println!(
        "sluice demo: mock Kafka at {brokers}, topic {TOPIC:?} with {} partitions",
        opts.partitions
    );
    println!(
        "             lake at {} (SQLite catalog, local Parquet)",
        dir.display()
    );
    println!(
        "             producing {} PostHog-shaped events as Arrow IPC ({} rows/message, compression {:?})",
        opts.rows, opts.rows_per_message, opts.compression
    );
    if let Some(addr) = flight {
        println!(
            "             live Arrow Flight at grpc://{} while the demo runs; read it with pyarrow:",
            addr
        );
        // One shell line, runnable as printed.
        println!(
            "               {} -c 'import pyarrow.flight as fl, json; print(fl.connect(\"grpc://{}\").do_get(fl.Ticket(json.dumps({{\"topic\": \"{TOPIC}\", \"from\": \"latest\", \"follow\": True}}))).read_chunk().data)'",
            tool("python", "python3"),
            addr
        );
    }
    println!("             query the lake with stock DuckDB while the demo runs (or after it):");
    for c in read_commands(dir) {
        println!("               {c}");
    }
    println!();
}

/// How to run a tool the printed commands need: the set-up's venv copy when `scripts/demo` runs
/// the demo (it exports `SLUICEDEV_VENV`), else the name on `PATH`.
fn tool(venv_name: &str, path_name: &str) -> String {
    std::env::var_os("SLUICEDEV_VENV")
        .map(|v| PathBuf::from(v).join("bin").join(venv_name))
        .filter(|p| p.is_file())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| path_name.to_string())
}

/// Shell lines that count the lake's events with the DuckDB CLI and with the DuckDB Python
/// client (1.5.5, ducklake extension), runnable as printed.
fn read_commands(dir: &Path) -> [String; 2] {
    let attach = format!(
        "ATTACH 'ducklake:sqlite:{}' AS lake (DATA_PATH '{}/', READ_ONLY)",
        dir.join(CATALOG_FILE).display(),
        dir.join("data").display()
    );
    [
        format!(
            "{} -c \"{attach}; SELECT count(*) FROM lake.events;\"",
            tool("duckdb", "duckdb")
        ),
        format!(
            "{} -c \"import duckdb; c = duckdb.connect(); c.execute(\\\"{attach}\\\"); print(c.sql('SELECT count(*) FROM lake.events'))\"",
            tool("python", "python3")
        ),
    ]
}

/// Produces the events paced by what the pipeline consumed, waits until all are consumed, and
/// stops the pipeline (which flushes and commits the tail). Returns when the first event was
/// produced.
fn ingest(
    opts: &DemoOptions,
    brokers: &str,
    stats: &Arc<Stats>,
    pipeline: crate::pipeline::Pipeline,
    stop: &AtomicBool,
) -> Result<Instant> {
    let pipeline_stop = Arc::new(AtomicBool::new(false));
    let ingest = {
        let ps = pipeline_stop.clone();
        std::thread::Builder::new()
            .name("sluice-ingest".into())
            .spawn(move || pipeline.run(&ps))?
    };

    let producer = ArrowProducer::new(
        brokers,
        TOPIC,
        Encoding {
            format: IpcFormat::Stream,
            compression: opts.compression,
        },
        &[("linger.ms", "2")],
    )?;
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut last = (0u64, 0u64, Instant::now());
    let interrupted = |s: &AtomicBool| s.load(Relaxed);
    let produced_rows = produce_paced(
        &producer,
        &mut EventGen::new(2026),
        opts.rows,
        opts.rows_per_message,
        opts.partitions,
        &stats.payload_bytes,
        |produced| {
            if last_report.elapsed() >= Duration::from_secs(1) {
                last_report = Instant::now();
                last = progress(stats, produced, last);
            }
            !ingest.is_finished() && !interrupted(stop)
        },
    )?;
    producer.flush(Duration::from_secs(30))?;
    // Wait until everything produced is consumed; stopping the pipeline then flushes the tail.
    while stats.rows.load(Relaxed) < produced_rows && !ingest.is_finished() && !interrupted(stop) {
        std::thread::sleep(Duration::from_millis(50));
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            last = progress(stats, produced_rows, last);
        }
    }
    pipeline_stop.store(true, Relaxed);
    let result = ingest
        .join()
        .map_err(|_| anyhow::anyhow!("the ingest thread panicked"))?;
    result.context("ingestion failed")?;
    progress(stats, produced_rows, last);
    Ok(started)
}

/// Throughput, where decoded bytes live, flushes, the live ring.
fn summary(
    stats: &Stats,
    elapsed: Duration,
    live_summary: Option<(Option<crate::live::ring::TopicView>, u64)>,
) {
    let committed = stats.committed_rows.load(Relaxed);
    let bytes = stats.payload_bytes.load(Relaxed);
    let secs = elapsed.as_secs_f64();
    println!(
        "\ningested {committed} rows ({:.1} MB of Arrow IPC) in {secs:.1} s: {:.0} rows/s, {:.1} MB/s",
        bytes as f64 / 1e6,
        committed as f64 / secs,
        bytes as f64 / 1e6 / secs
    );
    let c = stats.copies();
    let total = (c.in_place + c.realigned + c.decompressed).max(1) as f64;
    println!(
        "decoded buffers: {:.1} MB in place ({:.1}%), {:.1} MB realigned by arrow-rs ({:.1}%), {:.1} MB decompressed ({:.1}%)",
        c.in_place as f64 / 1e6,
        100.0 * c.in_place as f64 / total,
        c.realigned as f64 / 1e6,
        100.0 * c.realigned as f64 / total,
        c.decompressed as f64 / 1e6,
        100.0 * c.decompressed as f64 / total
    );
    let by: Vec<String> = FLUSH_TRIGGERS
        .iter()
        .zip(&stats.flushes_by_trigger)
        .filter(|(_, n)| n.load(Relaxed) > 0)
        .map(|(t, n)| format!("{} by {t}", n.load(Relaxed)))
        .collect();
    println!(
        "flushes: {} ({})",
        stats.flushes.load(Relaxed),
        by.join(", ")
    );
    if let Some((Some(view), compacted)) = live_summary {
        println!(
            "live ring at the end: {} rows, {:.1} MB retained; {:.1} MB compacted off Kafka buffers after their commits",
            view.rows,
            view.bytes as f64 / 1e6,
            compacted as f64 / 1e6
        );
    }
}

/// Checks the lake holds exactly the produced rows and reads a summary back; returns the
/// events table's (Parquet files, bytes).
fn check_lake(cfg: &Config, opts: &DemoOptions) -> Result<(u64, u64)> {
    let lake = Lake::open(&cfg.lake, &cfg.kafka.group_id)?;
    let (files, file_bytes) = lake.data_files("events")?;
    println!(
        "Parquet files of table events: {files}, {:.1} MB in total ({:.1} MB average)",
        file_bytes as f64 / 1e6,
        file_bytes as f64 / 1e6 / files.max(1) as f64
    );
    let check = lake.query_rows(
        "SELECT count(*), count(DISTINCT seq), sum(seq), min(seq), max(seq) FROM lake.main.events",
    )?;
    let row = &check[0];
    let n = opts.rows as i128;
    let expected_sum = n * (n - 1) / 2;
    let got: Vec<String> = row.iter().map(|v| v.clone().unwrap_or_default()).collect();
    println!(
        "check: count={} distinct seq={} sum(seq)={} (expected {}) min={} max={}",
        got[0], got[1], got[2], expected_sum, got[3], got[4]
    );
    if got[0] != opts.rows.to_string()
        || got[1] != opts.rows.to_string()
        || got[2] != expected_sum.to_string()
    {
        bail!("the lake does not hold exactly the produced rows");
    }
    println!("\nread back from the lake:");
    let conn = lake.database().crate_connection()?;
    let mut stmt = conn.prepare(
        "SELECT event, count(*) AS events, count(DISTINCT distinct_id) AS users, \
         round(sum(revenue), 2) AS revenue, \
         round(avg(json_extract(properties, '$.\"$viewport_width\"')::INT), 1) AS avg_viewport_width \
         FROM lake.main.events GROUP BY event ORDER BY events DESC",
    )?;
    let batches: Vec<arrow::array::RecordBatch> = stmt.query_arrow([])?.collect();
    println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?);
    drop(stmt);
    drop(conn);
    Ok((files, file_bytes))
}

/// How to open the lake with stock DuckDB.
fn hints(dir: &Path) {
    let [cli, python] = read_commands(dir);
    println!("\nopen the lake with the DuckDB CLI (1.5.5, ducklake extension):");
    println!("  {cli}");
    println!("or with the DuckDB Python client:");
    println!("  {python}");
}

fn progress(stats: &Stats, produced: u64, last: (u64, u64, Instant)) -> (u64, u64, Instant) {
    let rows = stats.rows.load(Relaxed);
    let bytes = stats.payload_bytes.load(Relaxed);
    let committed = stats.committed_rows.load(Relaxed);
    let dt = last.2.elapsed().as_secs_f64().max(1e-6);
    println!(
        "  consumed {rows:>9} rows  {:>9.0} rows/s  {:>6.1} MB/s | committed {committed:>9} rows in {:>3} flushes | lag {:>7} rows | pending {:>6.1} MB",
        (rows - last.0) as f64 / dt,
        (bytes - last.1) as f64 / 1e6 / dt,
        stats.flushes.load(Relaxed),
        produced.saturating_sub(committed),
        stats.pending_bytes.load(Relaxed) as f64 / 1e6,
    );
    (rows, bytes, Instant::now())
}
