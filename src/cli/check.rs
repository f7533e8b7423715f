//! `sluice check`: validate the configuration, reach the brokers, attach the lake.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use super::init_logging;
use crate::config::{Config, is_topic_pattern};
use crate::retry::Backoff;
use crate::sink::Lake;
use crate::source::KafkaSource;

/// Prints what it checked; fails naming the first thing that does not work.
pub fn check(config: Option<&Path>) -> Result<()> {
    let cfg = Config::load(config)?;
    init_logging("warn", cfg.log.format);
    println!("config: ok");
    let b = cfg.memory_budget();
    let mib = |n: u64| n / (1024 * 1024);
    println!(
        "memory budget: {} MiB = {} MiB pending + {} MiB live retention + {} MiB librdkafka prefetch",
        mib(b.total),
        mib(b.pending),
        mib(b.live),
        mib(b.prefetch)
    );
    if let Some(s) = cfg.memory_split() {
        println!(
            "memory limit: {} MiB = {} MiB allocator headroom + {} MiB base + {} MiB librdkafka prefetch + {} MiB Arrow data ({} MiB of it live retention; flushes of at most {} MiB) + {} MiB DuckDB (memory_limit {}, threads {}, row groups of about {} MiB)",
            mib(s.limit),
            mib(s.headroom),
            mib(s.base),
            mib(s.prefetch),
            mib(s.arrow),
            mib(s.live),
            mib(cfg.flush.max_bytes),
            mib(s.duckdb),
            cfg.lake.memory_limit.as_deref().unwrap_or("unset"),
            cfg.lake.threads.unwrap_or(s.threads),
            mib(s.row_group_bytes)
        );
    }
    let source = KafkaSource::new(&cfg.kafka)?;
    let (patterns, names): (Vec<String>, Vec<String>) = cfg
        .kafka
        .topics
        .iter()
        .cloned()
        .partition(|t| is_topic_pattern(t));
    let topics = source
        .check(&names, Duration::from_secs(10))
        .context("kafka brokers unreachable")?;
    for p in &patterns {
        println!("kafka: pattern {p:?} (topics matching it are consumed as they appear)");
    }
    for (t, n) in &topics {
        if *n == 0 {
            anyhow::bail!("topic {t:?} does not exist on {}", cfg.kafka.brokers);
        }
        println!("kafka: topic {t:?} has {n} partitions");
    }
    let conflicts = Backoff::conflicts(&cfg.flush.retry);
    drop(Lake::open_with(&cfg.lake, &cfg.kafka.group_id, conflicts)?);
    println!(
        "lake: attached ({} catalog, data path {})",
        format!("{:?}", cfg.lake.catalog_kind).to_lowercase(),
        cfg.lake.data_path
    );
    Ok(())
}
