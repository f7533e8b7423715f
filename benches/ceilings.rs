//! One measurement of the catch-up comparison, printed as one JSON line (scripts/bench runs
//! them side by side against a pre-filled topic on a real broker and aggregates):
//!
//! - `--mode sluice`:  the whole pipeline, Kafka → decode → DuckLake, until every row is
//!   committed (the final flush included).
//! - `--mode consume`: librdkafka consuming the same topic with the same fetch settings, no
//!   decode, no sink (the consume ceiling).
//! - `--mode sink`:    the same Arrow batches (regenerated in memory) committed into a fresh
//!   DuckLake through the same sink, flush by flush at the same threshold (the sink ceiling).
//!
//! `cargo bench --bench ceilings -- --mode sluice --brokers 127.0.0.1:9092 --topic events --rows 1000000`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use sluice::config::{Config, StartFrom};
use sluice::observe::Stats;
use sluice::pipeline::Pipeline;
use sluice::sink::{Lake, NO_OFFSET, OffsetUpdate, TableFlush};
use sluice_producer::events::{EventGen, generate};

struct Args {
    mode: String,
    brokers: String,
    topic: String,
    rows: u64,
    rows_per_message: usize,
    flush_mib: u64,
    partition_fetch_mib: u64,
    seed: u64,
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
            "--bench" => {}
            other => bail!("unknown argument {other:?}"),
        }
    }
    if !["sluice", "consume", "sink"].contains(&a.mode.as_str()) {
        bail!("--mode must be sluice, consume or sink");
    }
    Ok(a)
}

fn base_config(a: &Args, dir: &std::path::Path) -> Config {
    let mut cfg = Config::default();
    cfg.kafka.brokers = a.brokers.clone();
    cfg.kafka.group_id = format!("bench-{}-{}", a.mode, std::process::id());
    cfg.kafka.topics = vec![a.topic.clone()];
    cfg.kafka.start_from = StartFrom::Earliest;
    cfg.lake.catalog = dir.join("bench.ducklake").display().to_string();
    cfg.lake.data_path = format!("{}/", dir.join("data").display());
    cfg.flush.max_bytes = a.flush_mib * 1024 * 1024;
    cfg.kafka.max_partition_fetch_bytes = a.partition_fetch_mib * 1024 * 1024;
    cfg.flush.max_rows = u64::MAX / 2;
    cfg.flush.max_age_ms = 10_000;
    cfg.live.enabled = false;
    cfg.metrics.enabled = false;
    cfg
}

fn report(a: &Args, rows: u64, bytes: u64, started: Instant, extra: serde_json::Value) {
    let secs = started.elapsed().as_secs_f64();
    let mut v = serde_json::json!({
        "mode": a.mode,
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
    let dir = tempfile::tempdir()?;
    let cfg = base_config(a, dir.path());
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
    let started = Instant::now();
    let deadline = started + Duration::from_secs(1800);
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
    report(
        a,
        committed,
        stats.payload_bytes.load(Relaxed),
        started,
        serde_json::json!({
            "flushes": stats.flushes.load(Relaxed),
            "in_place_bytes": c.in_place,
            "realigned_bytes": c.realigned,
            "decompressed_bytes": c.decompressed,
        }),
    );
    Ok(())
}

fn consume(a: &Args) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = base_config(a, dir.path());
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &a.brokers)
        .set("group.id", &cfg.kafka.group_id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "queued.max.messages.kbytes",
            cfg.kafka.queued_max_messages_kbytes.to_string(),
        )
        .set("fetch.max.bytes", cfg.kafka.fetch_max_bytes.to_string())
        .set(
            "max.partition.fetch.bytes",
            cfg.kafka.max_partition_fetch_bytes.to_string(),
        );
    let consumer: BaseConsumer = c.create()?;
    consumer.subscribe(&[&a.topic])?;
    let (mut messages, mut bytes, mut started) = (0u64, 0u64, None);
    let expected = a.rows.div_ceil(a.rows_per_message as u64);
    let deadline = Instant::now() + Duration::from_secs(1800);
    while messages < expected {
        if Instant::now() > deadline {
            bail!("consumed {messages} of {expected} messages");
        }
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m?;
            started.get_or_insert_with(Instant::now);
            bytes += m.payload_len() as u64;
            messages += 1;
        }
    }
    report(
        a,
        a.rows,
        bytes,
        started.unwrap_or_else(Instant::now),
        serde_json::json!({ "messages": messages }),
    );
    Ok(())
}

fn sink(a: &Args) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = base_config(a, dir.path());
    let mut lake = Lake::open(&cfg.lake, &cfg.kafka.group_id)?;
    lake.register_partitions("bench", &[0])?;
    // The same batches the producer sent: regenerated, one per message, held in memory.
    let mut g = EventGen::new(a.seed);
    let mut batches = Vec::new();
    let mut left = a.rows;
    while left > 0 {
        let n = left.min(a.rows_per_message as u64) as usize;
        batches.push(generate(&mut g, n));
        left -= n as u64;
    }
    let bytes: u64 = batches
        .iter()
        .map(|b| b.get_array_memory_size() as u64)
        .sum();
    let flush_bytes = cfg.flush.max_bytes;
    let started = Instant::now();
    let (mut prev, mut next, mut flushes) = (NO_OFFSET, 0i64, 0u64);
    let mut i = 0;
    while i < batches.len() {
        let (mut size, start) = (0u64, i);
        while i < batches.len() && size < flush_bytes {
            size += batches[i].get_array_memory_size() as u64;
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
    report(
        a,
        a.rows,
        bytes,
        started,
        serde_json::json!({ "flushes": flushes, "bytes_are": "arrow in-memory size" }),
    );
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
