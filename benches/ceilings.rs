//! One measurement of the catch-up comparison, printed as one JSON line (scripts/bench runs
//! them side by side against a pre-filled topic on a real broker and aggregates):
//!
//! - `--mode sluice`:  the whole pipeline, Kafka → decode → DuckLake, until every row is
//!   committed (the final flush included).
//! - `--mode consume`: librdkafka consuming the same topic with the same fetch settings, no
//!   decode, no sink (the consume ceiling).
//! - `--mode sink`:    the same Arrow batches (regenerated in memory) committed into a fresh
//!   DuckLake through the same sink, flush by flush at the same threshold (the sink ceiling).
//! - `--mode delivery`: `sink` and `consume` at once, started together, timed until both are
//!   done: the unavoidable work of any Kafka → DuckLake consumer (the broker serving,
//!   librdkafka receiving, DuckDB writing Parquet) sharing this machine's cores.
//!
//! Every line also carries the process's CPU seconds, its peak RSS and RSS over time (sampled
//! every 200 ms), and the heap allocations made through Rust's allocator (a counting global
//! allocator; DuckDB's and librdkafka's C/C++ allocations are not counted), so the caller can
//! report allocations per Kafka message. `--dir` keeps the lake for inspection.
//! `--parquet-compression CODEC`, `--parquet-compression-level N` and `--partition-by EXPR`
//! (repeatable) set the lake tables'
//! `[tables.defaults]` options.
//! `--copy-payloads` runs sluice with `kafka.copy_payloads`; `--sink-batches decoded|realigned`
//! feeds the sink ceiling batches decoded from their IPC bytes in place or realigned (to see
//! whether the buffers' origin changes DuckDB's work); `--sink-batch-rows N` feeds it the same
//! rows in batches of N (the producer's cut against the Parquet write's own limit).
//!
//! `cargo bench --bench ceilings -- --mode sluice --brokers 127.0.0.1:9092 --topic events --rows 1000000`

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Rust's allocator, counting allocations (and reallocations, which may move).
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

use anyhow::{Context, Result, bail};
use arrow::array::RecordBatch;
use rdkafka::consumer::{BaseConsumer, Consumer};
use sluice::config::{Config, StartFrom};
use sluice::decode::Copies;
use sluice::observe::Stats;
use sluice::pipeline::Pipeline;
use sluice::sink::{Lake, NO_OFFSET, OffsetUpdate, TableFlush};
use sluice_producer::events::{Dataset, EventGen};

struct Args {
    mode: String,
    brokers: String,
    topic: String,
    rows: u64,
    rows_per_message: usize,
    flush_mib: u64,
    partition_fetch_mib: u64,
    seed: u64,
    dataset: Dataset,
    memory_cap_mib: u64,
    fetch_wait_ms: u64,
    lake_threads: Option<u32>,
    dir: Option<PathBuf>,
    properties: Vec<(String, String)>,
    sink_batches: String,
    /// `--sink-batch-rows`: the sink ceiling's batches hold this many rows (default: the
    /// producer's rows per message).
    sink_batch_rows: Option<usize>,
    copy_payloads: bool,
    /// `tables.defaults.parquet_compression` (unset: sluice's default, zstd).
    parquet_compression: Option<String>,
    /// `tables.defaults.parquet_compression_level` (zstd only; unset: DuckDB's, 3).
    parquet_compression_level: Option<i64>,
    /// `tables.defaults.partition_by` entries (repeatable flag).
    partition_by: Vec<String>,
}

fn args() -> Result<Args> {
    let mut a = Args {
        mode: String::new(),
        brokers: "127.0.0.1:9092".into(),
        topic: "events".into(),
        rows: 1_000_000,
        rows_per_message: 1000,
        flush_mib: 128,
        partition_fetch_mib: 1,
        seed: 1,
        dataset: Dataset::Events,
        memory_cap_mib: 256,
        fetch_wait_ms: 10,
        lake_threads: None,
        dir: None,
        properties: Vec::new(),
        sink_batches: "generated".into(),
        sink_batch_rows: None,
        copy_payloads: false,
        parquet_compression: None,
        parquet_compression_level: None,
        partition_by: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match flag.as_str() {
            "--mode" => a.mode = value("--mode")?,
            "--brokers" => a.brokers = value("--brokers")?,
            "--topic" => a.topic = value("--topic")?,
            "--rows" => a.rows = value("--rows")?.parse()?,
            "--rows-per-message" => a.rows_per_message = value("--rows-per-message")?.parse()?,
            "--flush-mib" => a.flush_mib = value("--flush-mib")?.parse()?,
            "--partition-fetch-mib" => {
                a.partition_fetch_mib = value("--partition-fetch-mib")?.parse()?
            }
            "--seed" => a.seed = value("--seed")?.parse()?,
            "--dataset" => {
                a.dataset = match value("--dataset")?.as_str() {
                    "events" => Dataset::Events,
                    "narrow" => Dataset::Narrow,
                    other => bail!("--dataset must be events or narrow, not {other:?}"),
                }
            }
            "--memory-cap-mib" => a.memory_cap_mib = value("--memory-cap-mib")?.parse()?,
            "--fetch-wait-ms" => a.fetch_wait_ms = value("--fetch-wait-ms")?.parse()?,
            "--lake-threads" => a.lake_threads = Some(value("--lake-threads")?.parse()?),
            "--dir" => a.dir = Some(value("--dir")?.into()),
            "--property" => {
                let p = value("--property")?;
                let (k, v) = p
                    .split_once('=')
                    .with_context(|| format!("--property {p:?} is not key=value"))?;
                a.properties.push((k.to_string(), v.to_string()));
            }
            "--sink-batches" => a.sink_batches = value("--sink-batches")?,
            "--sink-batch-rows" => {
                a.sink_batch_rows = Some(value("--sink-batch-rows")?.parse()?).filter(|n| *n > 0)
            }
            "--copy-payloads" => a.copy_payloads = true,
            "--parquet-compression" => {
                a.parquet_compression = Some(value("--parquet-compression")?)
            }
            "--parquet-compression-level" => {
                a.parquet_compression_level = Some(value("--parquet-compression-level")?.parse()?)
            }
            "--partition-by" => a.partition_by.push(value("--partition-by")?),
            "--bench" => {}
            other => bail!("unknown argument {other:?}"),
        }
    }
    if !["generated", "decoded", "realigned"].contains(&a.sink_batches.as_str()) {
        bail!("--sink-batches must be generated, decoded or realigned");
    }
    if !["sluice", "consume", "sink", "delivery"].contains(&a.mode.as_str()) {
        bail!("--mode must be sluice, consume, sink or delivery");
    }
    Ok(a)
}

fn base_config(a: &Args, dir: &Path) -> Config {
    let mut cfg = Config::default();
    cfg.kafka.brokers = a.brokers.clone();
    cfg.kafka.group_id = format!("bench-{}-{}", a.mode, std::process::id());
    cfg.kafka.topics = vec![a.topic.clone()];
    cfg.kafka.start_from = StartFrom::Earliest;
    cfg.lake.catalog = dir.join("bench.sqlite").display().to_string();
    cfg.lake.data_path = format!("{}/", dir.join("data").display());
    if a.parquet_compression.is_some() {
        cfg.tables.defaults.parquet_compression = a.parquet_compression.clone();
    }
    cfg.tables.defaults.parquet_compression_level = a.parquet_compression_level;
    if !a.partition_by.is_empty() {
        cfg.tables.defaults.partition_by = Some(a.partition_by.clone());
    }
    cfg.flush.max_bytes = a.flush_mib * 1024 * 1024;
    cfg.kafka.max_partition_fetch_bytes = a.partition_fetch_mib * 1024 * 1024;
    cfg.flush.max_rows = u64::MAX / 2;
    cfg.flush.max_age_ms = 10_000;
    cfg.flush.memory_cap_bytes = a.memory_cap_mib * 1024 * 1024;
    cfg.lake.threads = a.lake_threads;
    // tansu answers a fetch only after fetch.wait.max.ms even when data is waiting (Kafka answers
    // at once): librdkafka's 500 ms default caps it at ~41 MB/s here, 10 ms gives ~500 MB/s.
    cfg.kafka
        .properties
        .insert("fetch.wait.max.ms".into(), a.fetch_wait_ms.to_string());
    for (k, v) in &a.properties {
        cfg.kafka.properties.insert(k.clone(), v.clone());
    }
    cfg.kafka.copy_payloads = a.copy_payloads;
    cfg.live.enabled = false;
    cfg.metrics.enabled = false;
    cfg
}

/// The lake's directory: `--dir` (kept) or a temporary one.
fn lake_dir(a: &Args) -> Result<(Option<tempfile::TempDir>, PathBuf)> {
    match &a.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            Ok((None, d.clone()))
        }
        None => {
            let t = tempfile::tempdir()?;
            let p = t.path().to_path_buf();
            Ok((Some(t), p))
        }
    }
}

/// Parquet files under `dir` and their total size.
fn parquet_files(dir: &Path) -> (u64, u64) {
    let (mut n, mut bytes) = (0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                n += 1;
                bytes += e.metadata().map_or(0, |m| m.len());
            }
        }
    }
    (n, bytes)
}

/// This process's resident set and CPU seconds (user + system), from /proc.
fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Samples RSS every 200 ms until dropped.
struct RssSampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<(f64, u64)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    origin: Instant,
}

impl RssSampler {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let origin = Instant::now();
        let thread = {
            let (stop, samples) = (stop.clone(), samples.clone());
            std::thread::spawn(move || {
                let t0 = origin;
                while !stop.load(Relaxed) {
                    let s = (t0.elapsed().as_secs_f64(), rss_bytes());
                    samples.lock().unwrap().push(s);
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
        };
        RssSampler {
            stop,
            samples,
            thread: Some(thread),
            origin,
        }
    }

    fn finish(mut self) -> Vec<(f64, u64)> {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        std::mem::take(&mut *self.samples.lock().unwrap())
    }
}

/// What every mode measures around its timed part.
struct Probe {
    started: Instant,
    cpu: f64,
    allocations: u64,
    rss: RssSampler,
}

impl Probe {
    fn start(rss: RssSampler) -> Self {
        Probe {
            started: Instant::now(),
            cpu: cpu_seconds(),
            allocations: ALLOCATIONS.load(Relaxed),
            rss,
        }
    }
}

fn report(a: &Args, rows: u64, bytes: u64, probe: Probe, extra: serde_json::Value) {
    let secs = probe.started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - probe.cpu;
    let allocations = ALLOCATIONS.load(Relaxed) - probe.allocations;
    let timed_from = probe.started.duration_since(probe.rss.origin).as_secs_f64();
    let rss = probe.rss.finish();
    let mut v = serde_json::json!({
        "mode": a.mode,
        "dataset": format!("{:?}", a.dataset).to_lowercase(),
        "topic": a.topic,
        "memory_cap_bytes": a.memory_cap_mib * 1024 * 1024,
        "properties": a.properties.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        "parquet_compression": a.parquet_compression,
        "parquet_compression_level": a.parquet_compression_level,
        "partition_by": a.partition_by,
        "cpu_seconds": cpu,
        "rust_allocations": allocations,
        "peak_rss_bytes": rss.iter().map(|s| s.1).max().unwrap_or(0),
        "rss": rss,
        "timed_from_s": timed_from,
        "rows": rows,
        "bytes": bytes,
        "seconds": secs,
        "rows_per_s": rows as f64 / secs,
        "mb_per_s": bytes as f64 / 1e6 / secs,
    });
    if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    println!("{v}");
}

fn sluice_run(a: &Args) -> Result<()> {
    let rss = RssSampler::start();
    let (_tmp, dir) = lake_dir(a)?;
    let cfg = base_config(a, &dir);
    let stats = Arc::new(Stats::default());
    let pipeline = Pipeline::new(&cfg, stats.clone())?;
    let stop = Arc::new(AtomicBool::new(false));
    let ingest = {
        let stop = stop.clone();
        std::thread::spawn(move || pipeline.run(&stop))
    };
    // The clock starts at the first consumed row: the group join is not ingestion.
    let deadline = Instant::now() + Duration::from_secs(120);
    while stats.rows.load(Relaxed) == 0 {
        if Instant::now() > deadline || ingest.is_finished() {
            bail!("nothing consumed within 120 s");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let probe = Probe::start(rss);
    let deadline = probe.started + Duration::from_secs(1800);
    while stats.rows.load(Relaxed) < a.rows {
        if Instant::now() > deadline || ingest.is_finished() {
            bail!("consumed {} of {} rows", stats.rows.load(Relaxed), a.rows);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    stop.store(true, Relaxed);
    ingest
        .join()
        .map_err(|_| anyhow::anyhow!("ingest panicked"))??;
    let committed = stats.committed_rows.load(Relaxed);
    if committed != a.rows {
        bail!("committed {committed} rows, expected {}", a.rows);
    }
    let c = stats.copies();
    let (files, file_bytes) = parquet_files(&dir);
    report(
        a,
        committed,
        stats.payload_bytes.load(Relaxed),
        probe,
        serde_json::json!({
            "messages": stats.messages.load(Relaxed),
            "files": files,
            "file_bytes": file_bytes,
            "flushes": stats.flushes.load(Relaxed),
            "flush_seconds": stats.flush_duration.snapshot().1,
            "in_place_bytes": c.in_place,
            "realigned_bytes": c.realigned,
            "decompressed_bytes": c.decompressed,
            "payload_copy_bytes": c.payload_copy,
            "coalesced_bytes": stats.coalesced_bytes.load(Relaxed),
            "copy_payloads": a.copy_payloads,
        }),
    );
    Ok(())
}

/// A consumer with sluice's own client settings (no decode, no sink), subscribed to `--topic`.
fn consumer(a: &Args) -> Result<BaseConsumer> {
    // Only the Kafka half of the configuration is used: no lake is opened.
    let cfg = base_config(a, Path::new(""));
    let mut client = sluice::source::client_config(&cfg.kafka);
    // sluice sets auto.offset.reset=error (an offset outside the broker's range is an offset gap
    // it handles) and seeks every partition itself, to the lake's offset or, for a partition the
    // lake has never seen, to where kafka.start_from says. A bare consumer seeks nothing: it
    // starts where sluice starts a new partition here (start_from = earliest).
    client.set("auto.offset.reset", "earliest");
    let consumer: BaseConsumer = client.create()?;
    consumer.subscribe(&[&a.topic])?;
    Ok(consumer)
}

/// Messages and payload bytes a consumer has read.
#[derive(Default)]
struct Consumed {
    messages: u64,
    bytes: u64,
}

impl Consumed {
    /// Polls until the first message arrives: the group join is not consumption.
    fn first(&mut self, c: &BaseConsumer) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.messages == 0 {
            if Instant::now() > deadline {
                bail!("nothing consumed within 120 s");
            }
            self.poll(c)?;
        }
        Ok(())
    }

    /// Polls until `expected` messages were read.
    fn rest(&mut self, c: &BaseConsumer, expected: u64) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(1800);
        while self.messages < expected {
            if Instant::now() > deadline {
                bail!("consumed {} of {expected} messages", self.messages);
            }
            self.poll(c)?;
        }
        Ok(())
    }

    fn poll(&mut self, c: &BaseConsumer) -> Result<()> {
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            self.bytes += m?.payload_len() as u64;
            self.messages += 1;
        }
        Ok(())
    }
}

fn messages(a: &Args) -> u64 {
    a.rows.div_ceil(a.rows_per_message as u64)
}

fn consume(a: &Args) -> Result<()> {
    let rss = RssSampler::start();
    let c = consumer(a)?;
    let mut n = Consumed::default();
    n.first(&c)?;
    let probe = Probe::start(rss);
    n.rest(&c, messages(a))?;
    report(
        a,
        a.rows,
        n.bytes,
        probe,
        serde_json::json!({ "messages": n.messages }),
    );
    Ok(())
}

/// The producer's batches, regenerated in memory, one per message (or of `--sink-batch-rows`
/// rows each). Each is measured as sluice measures it (its IPC message decoded: the Arrow bytes
/// the size threshold counts), so flushes close where sluice's would. Returns the batches,
/// their sizes and the IPC bytes.
fn produced_batches(a: &Args) -> Result<(Vec<RecordBatch>, Vec<u64>, u64, Copies)> {
    let mut g = EventGen::new(a.seed);
    let mut copies = Copies::default();
    let (mut batches, mut sizes, mut bytes) = (Vec::new(), Vec::new(), 0u64);
    let mut left = a.rows;
    while left > 0 {
        let per_batch = a.sink_batch_rows.unwrap_or(a.rows_per_message);
        let n = left.min(per_batch as u64) as usize;
        let b = a.dataset.generate(&mut g, n);
        let ipc = sluice_producer::encode(std::slice::from_ref(&b), Default::default())?;
        bytes += ipc.len() as u64;
        // `--sink-batches`: the generated batch itself, or decoded from its IPC bytes as
        // sluice decodes a payload: in place (aligned bytes) or realigned (bytes one past an
        // aligned address, so arrow-rs copies every fixed-width buffer).
        let payload = if a.sink_batches == "realigned" {
            let mut v = Vec::with_capacity(ipc.len() + 1);
            v.push(0u8);
            v.extend_from_slice(&ipc);
            arrow::buffer::Buffer::from_vec(v).slice(1)
        } else {
            arrow::buffer::Buffer::from_vec(ipc)
        };
        let decoded = sluice::decode::decode(&payload)?;
        sizes.push(decoded.copies.data());
        copies.add(&decoded.copies);
        if a.sink_batches == "generated" {
            batches.push(b);
        } else {
            batches.extend(decoded.batches);
        }
        left -= n as u64;
    }
    Ok((batches, sizes, bytes, copies))
}

/// Commits `batches` through sluice's sink, one flush per `flush` bytes of them (as sized by
/// `produced_batches`). Returns the number of flushes.
fn commit_all(lake: &mut Lake, batches: &[RecordBatch], sizes: &[u64], flush: u64) -> Result<u64> {
    let (mut prev, mut next, mut flushes) = (NO_OFFSET, 0i64, 0u64);
    let mut i = 0;
    while i < batches.len() {
        let (mut size, start) = (0u64, i);
        while i < batches.len() && size < flush {
            size += sizes[i];
            i += 1;
        }
        next += (i - start) as i64;
        let offsets = [OffsetUpdate {
            topic: Arc::from("bench"),
            partition: 0,
            prev,
            next,
        }];
        lake.commit(&TableFlush {
            table: "events",
            batches: &batches[start..i],
            quarantine: &[],
            offsets: &offsets,
        })?;
        prev = next;
        flushes += 1;
    }
    Ok(flushes)
}

/// `sink`: the batches committed from memory. `delivery`: the same while a consumer with
/// sluice's settings reads the whole topic beside it, both started together, the clock
/// stopping when both are done.
fn sink(a: &Args) -> Result<()> {
    let rss = RssSampler::start();
    let (_tmp, dir) = lake_dir(a)?;
    let cfg = base_config(a, &dir);
    let mut lake = Lake::open(&cfg.lake, &cfg.kafka.group_id)?;
    // The table options sluice would apply (codec, level, partitioning), as in `sluice` mode.
    lake.set_tables(&cfg.tables);
    lake.register_partitions("bench", &[0])?;
    let (batches, sizes, bytes, copies) = produced_batches(a)?;
    let reader = if a.mode == "delivery" {
        let c = consumer(a)?;
        let mut n = Consumed::default();
        n.first(&c)?;
        Some((c, n))
    } else {
        None
    };
    let probe = Probe::start(rss);
    let expected = messages(a);
    let reading = reader.map(|(c, mut n)| {
        std::thread::spawn(move || -> Result<Consumed> {
            n.rest(&c, expected)?;
            Ok(n)
        })
    });
    let flushes = commit_all(&mut lake, &batches, &sizes, cfg.flush.max_bytes)?;
    let sink_seconds = probe.started.elapsed().as_secs_f64();
    let consumed = match reading {
        Some(t) => Some(
            t.join()
                .map_err(|_| anyhow::anyhow!("consumer panicked"))??,
        ),
        None => None,
    };
    let (files, file_bytes) = parquet_files(&dir);
    let mut extra = serde_json::json!({
        "flushes": flushes,
        "files": files,
        "file_bytes": file_bytes,
        "bytes_are": "arrow IPC size, as produced",
        "sink_batches": a.sink_batches,
        "sink_batch_rows": a.sink_batch_rows.unwrap_or(a.rows_per_message),
        "batches": batches.len(),
    });
    if a.sink_batches != "generated"
        && let Some(m) = extra.as_object_mut()
    {
        m.insert("in_place_bytes".into(), copies.in_place.into());
        m.insert("realigned_bytes".into(), copies.realigned.into());
    }
    if let (Some(n), Some(m)) = (consumed, extra.as_object_mut()) {
        m.insert("messages".into(), n.messages.into());
        m.insert("consumed_bytes".into(), n.bytes.into());
        m.insert("sink_seconds".into(), sink_seconds.into());
    }
    report(a, a.rows, bytes, probe, extra);
    Ok(())
}

fn main() -> Result<()> {
    let a = args()?;
    match a.mode.as_str() {
        "sluice" => sluice_run(&a),
        "consume" => consume(&a),
        _ => sink(&a),
    }
}
