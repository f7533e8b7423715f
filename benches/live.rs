//! Benchmark of the live Arrow Flight endpoint (prints numbers; asserts nothing about speed).
//!
//! 1. Ingest rate with 0 and with N followers (default 20) reading every batch over Flight, on
//!    librdkafka's mock cluster, the producer paced like `sluice demo`. The ring's retained bytes
//!    are sampled against `live.retention_bytes`, and the process's resident memory against the
//!    budget `flush.memory_cap_bytes` + `live.retention_bytes` per topic. A follower the ring
//!    evicted ahead of goes on from the lake (the tables carry the lineage columns); how many
//!    followers received every row exactly once is printed.
//! 2. Produce → Flight receipt latency: a producer sends one small message every millisecond;
//!    followers (1, then N) record when each batch arrives. p50/p99/p999/max are printed.
//!
//! Run: `scripts/bench-live [ARGS]`, or after `. scripts/env.sh`:
//! `cargo bench --bench live -- --rows 500000 --followers 20 --latency-secs 10`

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::mocking::MockCluster;
use sluice::config::Config;
use sluice::live::flight::FlightServer;
use sluice::live::ring::Ring;
use sluice::observe::Stats;
use sluice::observe::server::Servers;
use sluice::pipeline::Pipeline;
use sluice_producer::events::{EventGen, generate};
use sluice_producer::{ArrowProducer, Encoding};

#[path = "live/followers.rs"]
mod followers;
use followers::{Seen, collect, follow};

const TOPIC: &str = "events";
const PARTITIONS: i32 = 4;
const MIB: u64 = 1024 * 1024;

struct Args {
    rows: u64,
    followers: usize,
    latency_secs: u64,
    retention_mib: u64,
    fetch_wait_ms: u64,
    lake_threads: Option<u32>,
    /// Followers of the throughput run with the lake behind the ring (`on`), without it (`off`:
    /// one that falls behind is cut off), or both, one run each.
    lake: Vec<bool>,
    /// Lake rounds at once over all followers (`LakeSource::with_concurrent_rounds`).
    lake_rounds: usize,
    /// Seconds the followers get after the last commit to receive every row.
    follow_secs: u64,
    /// Which measurements: throughput, latency, visibility.
    parts: Vec<String>,
    /// `flush.max_age_ms` values of the lake-visibility runs.
    visibility_ages_ms: Vec<u64>,
    /// Also print one JSON line per latency and visibility run (scripts/bench reads them).
    json: bool,
}

fn args() -> Result<Args> {
    let mut a = Args {
        rows: 500_000,
        followers: 20,
        latency_secs: 10,
        retention_mib: 64,
        fetch_wait_ms: 10,
        lake_threads: None,
        lake: vec![true],
        lake_rounds: sluice::live::lake::CONCURRENT_ROUNDS,
        follow_secs: 300,
        parts: vec!["throughput".into(), "latency".into()],
        visibility_ages_ms: vec![1000, 60_000],
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--parts" => {
                let v = it.next().context("--parts needs a value")?;
                a.parts = v.split(',').map(str::to_string).collect();
                continue;
            }
            "--visibility-ages-ms" => {
                let v = it.next().context("--visibility-ages-ms needs a value")?;
                a.visibility_ages_ms = v
                    .split(',')
                    .map(|x| {
                        x.parse()
                            .with_context(|| format!("--visibility-ages-ms {x:?}"))
                    })
                    .collect::<Result<_>>()?;
                continue;
            }
            "--json" => {
                a.json = true;
                continue;
            }
            "--lake" => {
                a.lake = match it.next().as_deref() {
                    Some("on") => vec![true],
                    Some("off") => vec![false],
                    Some("both") => vec![false, true],
                    other => bail!("--lake takes on, off or both, not {other:?}"),
                };
                continue;
            }
            _ => {}
        }
        let mut value = |name: &str| -> Result<u64> {
            let v = it.next().with_context(|| format!("{name} needs a value"))?;
            v.parse().with_context(|| format!("{name} {v:?}"))
        };
        match flag.as_str() {
            "--rows" => a.rows = value("--rows")?,
            "--followers" => a.followers = value("--followers")? as usize,
            "--latency-secs" => a.latency_secs = value("--latency-secs")?,
            "--retention-mib" => a.retention_mib = value("--retention-mib")?,
            "--fetch-wait-ms" => a.fetch_wait_ms = value("--fetch-wait-ms")?,
            "--lake-threads" => a.lake_threads = Some(value("--lake-threads")? as u32),
            "--lake-rounds" => a.lake_rounds = value("--lake-rounds")? as usize,
            "--follow-secs" => a.follow_secs = value("--follow-secs")?,
            // cargo bench passes --bench to every bench target.
            "--bench" => {}
            other => bail!(
                "unknown argument {other:?} (--rows N, --followers N, --latency-secs N, --retention-mib N, --fetch-wait-ms N, --lake-threads N, --lake on|off|both, --lake-rounds N, --follow-secs N, --parts throughput,latency,visibility, --visibility-ages-ms 1000,60000, --json)"
            ),
        }
    }
    Ok(a)
}

/// A mock cluster with the topic, a pipeline with Flight ingesting it on its own thread.
struct Rig {
    _cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    _dir: tempfile::TempDir,
    brokers: String,
    cfg: Config,
    stats: Arc<Stats>,
    ring: Arc<Ring>,
    server: FlightServer,
    servers: Option<Servers>,
    stop: Arc<AtomicBool>,
    ingest: Option<std::thread::JoinHandle<Result<(), sluice::pipeline::PipelineError>>>,
}

impl Rig {
    fn start(a: &Args, max_age_ms: Option<u64>, lake: bool) -> Result<Rig> {
        let cluster = MockCluster::new(1)?;
        cluster.create_topic(TOPIC, PARTITIONS, 1)?;
        let brokers = cluster.bootstrap_servers();
        let dir = tempfile::tempdir()?;
        let mut cfg = sluice::cli::demo::mock_config(&brokers, TOPIC, dir.path());
        cfg.kafka.group_id = "sluice-bench".into();
        cfg.kafka
            .properties
            .insert("fetch.wait.max.ms".into(), a.fetch_wait_ms.to_string());
        cfg.lake.threads = a.lake_threads;
        if let Some(age) = max_age_ms {
            cfg.flush.max_age_ms = age;
        }
        cfg.live.retention_bytes = a.retention_mib * MIB;
        // The lineage columns: a follower that falls behind the ring goes on from the lake.
        cfg.tables.metadata.partition = true;
        cfg.tables.metadata.offset = true;
        cfg.tables.metadata.batch = true;
        // 256 MiB for pending data on top of what live retention and prefetch reserve.
        let reserved = cfg.memory_budget();
        cfg.flush.memory_cap_bytes = 256 * MIB + reserved.live + reserved.prefetch;
        cfg.validate()?;
        let stats = Arc::new(Stats::default());
        let pipeline = Pipeline::new(&cfg, stats.clone())?;
        let servers = Servers::new()?;
        let lake_source = sluice::live::lake::LakeSource::new(
            pipeline.another_lake()?.database().clone(),
            cfg.tables.clone(),
            &cfg.kafka.group_id,
            &cfg.lake.schema,
        );
        let pending = cfg.memory_budget().pending;
        let lake = lake.then(|| Arc::new(lake_source.with_concurrent_rounds(a.lake_rounds)));
        let (ring, server) =
            sluice::live::start(&cfg.live, &servers, pending, lake)?.context("live is enabled")?;
        pipeline.attach_live(ring.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let ingest = {
            let stop = stop.clone();
            std::thread::spawn(move || pipeline.run(&stop))
        };
        Ok(Rig {
            _cluster: cluster,
            _dir: dir,
            brokers,
            cfg,
            stats,
            ring,
            server,
            servers: Some(servers),
            stop,
            ingest: Some(ingest),
        })
    }

    fn producer(&self, linger_ms: &str) -> Result<ArrowProducer> {
        Ok(ArrowProducer::new(
            &self.brokers,
            TOPIC,
            Encoding::default(),
            &[("linger.ms", linger_ms)],
        )?)
    }

    /// Produces one message and waits until the ring has the topic, so followers can start.
    fn warm_up(&self, producer: &ArrowProducer, gen_: &mut EventGen) -> Result<()> {
        producer.send(Some(0), None, &[generate(gen_, 1)])?;
        producer.flush(Duration::from_secs(10))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.stats.rows.load(Relaxed) < 1 {
            if Instant::now() > deadline {
                bail!("the warm-up message was not consumed within 60 s");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    fn ingesting(&self) -> bool {
        self.ingest.as_ref().is_some_and(|h| !h.is_finished())
    }

    /// Stops ingestion: the pipeline's shutdown flush commits what is pending.
    fn stop_ingest(&mut self) -> Result<()> {
        self.stop.store(true, Relaxed);
        if let Some(h) = self.ingest.take() {
            h.join().map_err(|_| anyhow::anyhow!("ingest panicked"))??;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        self.stop_ingest()?;
        if let Some(s) = self.servers.take() {
            s.stop();
        }
        Ok(())
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// (VmRSS, VmHWM) of this process in bytes.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn throughput(a: &Args, followers: usize, lake: bool) -> Result<()> {
    let mut rig = Rig::start(a, None, lake)?;
    let rt = runtime()?;
    let producer = rig.producer("2")?;
    let mut gen_ = EventGen::new(7);
    rig.warm_up(&producer, &mut gen_)?;
    let url = rig.server.url();
    let stop = Arc::new(AtomicBool::new(false));
    let target = a.rows + 1;
    let readers: Vec<_> = (0..followers)
        .map(|_| rt.spawn(follow(url.clone(), "earliest", target, stop.clone(), false)))
        .collect();

    let started = Instant::now();
    let max_retained = AtomicU64::new(0);
    let ring = rig.ring.clone();
    let sample = || {
        max_retained.fetch_max(ring.retained_bytes(), Relaxed);
    };
    let produced = sluice::cli::demo::produce_paced(
        &producer,
        &mut gen_,
        a.rows,
        100,
        PARTITIONS,
        &rig.stats.payload_bytes,
        |_| {
            sample();
            rig.ingesting()
        },
    )?;
    producer.flush(Duration::from_secs(30))?;
    let deadline = Instant::now() + Duration::from_secs(600);
    while rig.stats.rows.load(Relaxed) < produced + 1 {
        if Instant::now() > deadline || !rig.ingesting() {
            bail!("ingestion stopped short");
        }
        sample();
        std::thread::sleep(Duration::from_millis(2));
    }
    let decoded_secs = started.elapsed().as_secs_f64();
    // The shutdown flush commits the tail: then every row is in the lake.
    rig.stop_ingest()?;
    let lake_secs = started.elapsed().as_secs_f64();
    let committed = rig.stats.committed_rows.load(Relaxed);
    if committed != produced + 1 {
        bail!("the lake holds {committed} rows, expected {}", produced + 1);
    }
    let seen = collect(&rt, readers, &stop, a.follow_secs);
    let readers_secs = started.elapsed().as_secs_f64();
    sample();
    let bytes = rig.stats.payload_bytes.load(Relaxed);
    let (rss, hwm) = memory();
    println!(
        "ingest with {followers:>2} followers: {produced} rows, {:.1} MB decoded and live in {decoded_secs:.2} s = {:.0} rows/s, {:.1} MB/s; all committed to the lake at {lake_secs:.2} s = {:.0} rows/s end to end",
        bytes as f64 / 1e6,
        produced as f64 / decoded_secs,
        bytes as f64 / 1e6 / decoded_secs,
        produced as f64 / lake_secs,
    );
    // Every row once: `target` distinct seq 0..target, none twice.
    let exact = |s: &Seen| {
        let distinct: u64 = s.received.iter().map(|w| u64::from(w.count_ones())).sum();
        s.twice == 0 && distinct == target && s.received.len() as u64 <= target.div_ceil(64)
    };
    if followers > 0 {
        let complete = seen.iter().filter(|s| exact(s)).count();
        let delivered: u64 = seen.iter().map(|s| s.rows).sum();
        println!(
            "    Flight delivered {delivered} rows to {followers} followers in {readers_secs:.2} s = {:.0} rows/s in total",
            delivered as f64 / readers_secs
        );
        let errors: Vec<&str> = seen.iter().filter_map(|s| s.error.as_deref()).collect();
        println!(
            "    followers ({}): {complete}/{followers} received all {target} rows once each, the last at {readers_secs:.2} s; {} errors{}; followers behind the ring went on from the lake {} times, reading {} batches there",
            if lake {
                "the lake behind the ring"
            } else {
                "no lake behind the ring"
            },
            errors.len(),
            errors
                .first()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default(),
            rig.server.stats.lake_catchups.load(Relaxed),
            rig.server.stats.lake_batches.load(Relaxed),
        );
    }
    if a.json {
        println!(
            "{}",
            serde_json::json!({"measure": "flight_followers", "followers": followers,
                "lake": lake, "rows": produced, "ingest_rows_per_s": produced as f64 / decoded_secs,
                "complete": seen.iter().filter(|s| exact(s)).count(),
                "errors": seen.iter().filter(|s| s.error.is_some()).count(),
                "last_s": readers_secs, "rss_mib": rss / MIB,
                "lake_catchups": rig.server.stats.lake_catchups.load(Relaxed),
                "lake_batches": rig.server.stats.lake_batches.load(Relaxed)})
        );
    }
    let cap = rig.cfg.live.retention_bytes;
    let b = rig.cfg.memory_budget();
    let mib = |n: u64| n as f64 / MIB as f64;
    println!(
        "    live ring: max {:.1} MiB retained of the {:.0} MiB cap ({:.0} MiB retention + up to {:.0} MiB not yet committed, shared with the pending flush); {:.1} MB compacted; process RSS {:.0} MiB now, {:.0} MiB peak; Arrow budget {:.0} MiB = {:.0} pending + {:.0} live + {:.0} prefetch",
        mib(max_retained.load(Relaxed)),
        mib(cap + b.pending),
        mib(cap),
        mib(b.pending),
        rig.stats.compacted_bytes.load(Relaxed) as f64 / 1e6,
        mib(rss),
        mib(hwm),
        mib(b.total),
        mib(b.pending),
        mib(b.live),
        mib(b.prefetch),
    );
    drop(producer);
    rig.finish()
}

fn latency(a: &Args, followers: usize) -> Result<()> {
    let rig = Rig::start(a, None, true)?;
    let rt = runtime()?;
    let producer = rig.producer("0")?;
    let mut gen_ = EventGen::new(11);
    rig.warm_up(&producer, &mut gen_)?;
    let url = rig.server.url();
    let stop = Arc::new(AtomicBool::new(false));
    let messages = a.latency_secs * 1000;
    let rows_per_message = 10u64;
    let target = messages * rows_per_message;
    let readers: Vec<_> = (0..followers)
        .map(|_| rt.spawn(follow(url.clone(), "latest", target, stop.clone(), true)))
        .collect();
    // Let every follower's DoGet reach the server before the first timed message.
    std::thread::sleep(Duration::from_millis(500));
    let sent: Mutex<HashMap<i64, Instant>> = Mutex::new(HashMap::new());
    let started = Instant::now();
    for m in 0..messages {
        let due = started + Duration::from_millis(m);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let first = gen_.next_seq();
        let batch = generate(&mut gen_, rows_per_message as usize);
        sent.lock().unwrap().insert(first, Instant::now());
        producer.send(Some((m % PARTITIONS as u64) as i32), None, &[batch])?;
        producer.poll();
    }
    producer.flush(Duration::from_secs(30))?;
    let seen = collect(&rt, readers, &stop, 60);
    let sent = sent.into_inner().unwrap();
    let mut micros: Vec<u64> = seen
        .iter()
        .flat_map(|s| s.arrivals.iter())
        .filter_map(|(seq, at)| {
            sent.get(seq)
                .map(|t| at.saturating_duration_since(*t).as_micros() as u64)
        })
        .collect();
    micros.sort_unstable();
    let pct = |p: f64| percentile_ms(&micros, p);
    let errors = seen.iter().filter(|s| s.error.is_some()).count();
    if a.json {
        print_json(
            serde_json::json!({"measure": "flight_latency", "followers": followers,
                "messages": messages, "receipts": micros.len(), "errors": errors}),
            &micros,
        );
    }
    println!(
        "latency produce -> Flight receipt, {followers:>2} follower(s), {messages} messages of {rows_per_message} rows at 1000/s: {} receipts, p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms, max {:.2} ms; {errors} errors",
        micros.len(),
        pct(0.50),
        pct(0.99),
        pct(0.999),
        micros.last().map_or(f64::NAN, |m| *m as f64 / 1000.0),
    );
    drop(producer);
    rig.finish()
}

/// The `p` quantile of sorted microseconds, in milliseconds.
fn percentile_ms(micros: &[u64], p: f64) -> f64 {
    if micros.is_empty() {
        return f64::NAN;
    }
    let i = ((micros.len() as f64 * p).ceil() as usize).clamp(1, micros.len()) - 1;
    micros[i] as f64 / 1000.0
}

/// One JSON line: `head` plus p50/p99/p999/max and 200 quantiles (the CDF) in milliseconds.
fn print_json(mut head: serde_json::Value, micros: &[u64]) {
    let cdf: Vec<f64> = (1..=200)
        .map(|i| percentile_ms(micros, i as f64 / 200.0))
        .collect();
    if let Some(m) = head.as_object_mut() {
        m.insert("p50_ms".into(), percentile_ms(micros, 0.5).into());
        m.insert("p99_ms".into(), percentile_ms(micros, 0.99).into());
        m.insert("p999_ms".into(), percentile_ms(micros, 0.999).into());
        m.insert("max_ms".into(), percentile_ms(micros, 1.0).into());
        m.insert("cdf_ms".into(), cdf.into());
    }
    println!("{head}");
}

/// Produce → visible in the lake with `flush.max_age_ms = age`: 100 messages of 10 rows per
/// second for two age periods (at least 10 s). A row is visible once a flush commits it; the
/// pipeline's committed-row counter is sampled every 2 ms, and a message counts as visible at
/// the first sample whose count covers every row produced up to it (flushes commit whole
/// tables, in consumption order).
fn visibility(a: &Args, age_ms: u64) -> Result<()> {
    let rig = Rig::start(a, Some(age_ms), true)?;
    let producer = rig.producer("0")?;
    let mut gen_ = EventGen::new(13);
    rig.warm_up(&producer, &mut gen_)?;
    // The warm-up row was consumed first: it is committed with (or before) the first message.
    let base = 1;
    let secs = (2 * age_ms / 1000).max(10);
    let messages = secs * 100;
    let rows_per_message = 10u64;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (stats, stop) = (rig.stats.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            let mut last = u64::MAX;
            while !stop.load(Relaxed) {
                let c = stats.committed_rows.load(Relaxed);
                if c != last {
                    samples.push((Instant::now(), c));
                    last = c;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            samples
        })
    };
    let started = Instant::now();
    let mut sent = Vec::with_capacity(messages as usize);
    for m in 0..messages {
        let due = started + Duration::from_millis(m * 10);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let batch = generate(&mut gen_, rows_per_message as usize);
        sent.push(Instant::now());
        producer.send(Some((m % PARTITIONS as u64) as i32), None, &[batch])?;
        producer.poll();
    }
    producer.flush(Duration::from_secs(30))?;
    let target = base + messages * rows_per_message;
    let deadline = Instant::now() + Duration::from_millis(age_ms) + Duration::from_secs(60);
    while rig.stats.committed_rows.load(Relaxed) < target {
        if Instant::now() > deadline {
            bail!(
                "{} of {target} rows committed",
                rig.stats.committed_rows.load(Relaxed)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(10));
    stop.store(true, Relaxed);
    let samples = sampler
        .join()
        .map_err(|_| anyhow::anyhow!("sampler panicked"))?;
    let mut micros: Vec<u64> = sent
        .iter()
        .enumerate()
        .filter_map(|(m, at)| {
            let needed = base + (m as u64 + 1) * rows_per_message;
            samples
                .iter()
                .find(|(_, c)| *c >= needed)
                .map(|(t, _)| t.saturating_duration_since(*at).as_micros() as u64)
        })
        .collect();
    micros.sort_unstable();
    println!(
        "produce -> visible in the lake, flush.max_age_ms {age_ms}, {messages} messages of {rows_per_message} rows at 100/s: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms, {} flushes",
        percentile_ms(&micros, 0.5),
        percentile_ms(&micros, 0.99),
        percentile_ms(&micros, 1.0),
        rig.stats.flushes.load(Relaxed),
    );
    if a.json {
        print_json(
            serde_json::json!({"measure": "lake_visibility", "max_age_ms": age_ms,
                "messages": messages, "visible": micros.len()}),
            &micros,
        );
    }
    drop(producer);
    rig.finish()
}

fn main() -> Result<()> {
    let a = args()?;
    println!(
        "sluice live bench: mock Kafka, {PARTITIONS} partitions, {} rows of ~1 KB per run, 100 rows/message, live.retention_bytes {} MiB, fetch.wait.max.ms {}, lake.threads {}, {} cores",
        a.rows,
        a.retention_mib,
        a.fetch_wait_ms,
        a.lake_threads
            .map_or("default".to_string(), |t| t.to_string()),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let part = |p: &str| a.parts.iter().any(|x| x == p);
    if part("throughput") {
        throughput(&a, 0, true)?;
        for &lake in &a.lake {
            throughput(&a, a.followers, lake)?;
        }
    }
    if part("latency") {
        latency(&a, 1)?;
        latency(&a, a.followers)?;
    }
    if part("visibility") {
        for age in &a.visibility_ages_ms {
            visibility(&a, *age)?;
        }
    }
    Ok(())
}
