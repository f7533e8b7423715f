//! `/metrics`: everything sluice counts, in the Prometheus text format (0.0.4). Names are
//! `sluice_<noun>_<unit>`, labels a small fixed set (`topic`, `partition`, `trigger`, `copy`,
//! `table`, `change`),
//! families in a fixed order.
//!
//! Written by hand rather than through the `metrics` facade and `metrics-exporter-prometheus`:
//! that exporter renders families and series in hash order, keeps the series of a revoked
//! partition until an idle timeout, needs an upkeep task for histograms, and offers no way to
//! read a value back, which the exact per-pipeline asserts of the tests (and `/readyz`) rely
//! on. The format code is [`Out`]; the rest is the list of what is exported.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::{
    CountsBy, FLUSH_TRIGGERS, Histogram, MaintenanceStats, PartitionGauge, Sources, Stats,
    TopicCounters, health,
};
use crate::sync::{lock, read};

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The exposition being written.
struct Out(String);

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {value}");
        } else {
            let l: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = writeln!(self.0, "{name}{{{}}} {value}", l.join(","));
        }
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.family(name, "histogram", help);
        let (counts, sum, count) = h.snapshot();
        let bucket = format!("{name}_bucket");
        for (b, c) in h.bounds.iter().zip(counts) {
            self.sample(&bucket, &[("le", &b.to_string())], c);
        }
        self.sample(&bucket, &[("le", "+Inf")], count);
        self.sample(&format!("{name}_sum"), &[], sum);
        self.sample(&format!("{name}_count"), &[], count);
    }
}

type PerTopic = fn(&TopicCounters) -> &AtomicU64;

/// Counters per topic: (name, help, which counter).
const PER_TOPIC: [(&str, &str, PerTopic); 7] = [
    (
        "sluice_consumed_messages_total",
        "Kafka messages consumed (decoded or quarantined).",
        |t| &t.messages,
    ),
    ("sluice_consumed_rows_total", "Rows decoded.", |t| &t.rows),
    (
        "sluice_consumed_bytes_total",
        "Payload bytes consumed.",
        |t| &t.bytes,
    ),
    (
        "sluice_committed_messages_total",
        "Messages whose offsets were committed to the lake.",
        |t| &t.committed_messages,
    ),
    (
        "sluice_committed_rows_total",
        "Rows committed to the lake.",
        |t| &t.committed_rows,
    ),
    (
        "sluice_committed_bytes_total",
        "Payload bytes committed to the lake.",
        |t| &t.committed_bytes,
    ),
    (
        "sluice_quarantined_messages_total",
        "Payloads committed to the quarantine table.",
        |t| &t.quarantined,
    ),
];

type Single = fn(&Stats) -> &AtomicU64;

/// Counters and gauges of the whole pipeline: (name, type, help, which value).
const SINGLES: [(&str, &str, &str, Single); 9] = [
    (
        "sluice_commit_conflicts_total",
        "counter",
        "DuckLake commits rejected for a concurrent transaction (each retried with backoff).",
        |s| &s.commit_conflicts,
    ),
    (
        "sluice_offset_conflicts_total",
        "counter",
        "Partition ranges another writer committed first (dropped and re-sought).",
        |s| &s.offset_conflicts,
    ),
    (
        "sluice_flush_failures_total",
        "counter",
        "Flush attempts that failed for another reason (each retried with backoff).",
        |s| &s.flush_failures,
    ),
    (
        "sluice_stale_messages_total",
        "counter",
        "Messages dropped as already committed (after a seek or a rebalance).",
        |s| &s.stale_messages,
    ),
    (
        "sluice_pending_bytes",
        "gauge",
        "Bytes pending in memory, including the flush in flight.",
        |s| &s.pending_bytes,
    ),
    (
        "sluice_pending_cap_bytes",
        "gauge",
        "What the memory budget leaves for pending data.",
        |s| &s.pending_cap_bytes,
    ),
    (
        "sluice_inflight_bytes",
        "gauge",
        "Bytes of the flush being committed.",
        |s| &s.inflight_bytes,
    ),
    (
        "sluice_assigned_partitions",
        "gauge",
        "Partitions assigned to this instance.",
        |s| &s.assigned_partitions,
    ),
    (
        "sluice_paused_partitions",
        "gauge",
        "Partitions paused while a failed flush waits for its retry.",
        |s| &s.paused_partitions,
    ),
];

type PerPartition = fn(&PartitionGauge) -> Option<i64>;

/// Gauges per assigned partition: (name, help, its value if known).
const PER_PARTITION: [(&str, &str, PerPartition); 3] = [
    (
        "sluice_lake_offset",
        "The lake's next offset of each assigned partition (-1: nothing committed yet).",
        |g| Some(g.lake_next),
    ),
    (
        "sluice_high_watermark_offset",
        "The broker's high watermark of each assigned partition (librdkafka statistics).",
        |g| (g.high_watermark >= 0).then_some(g.high_watermark),
    ),
    (
        "sluice_consumer_lag_messages",
        "High watermark minus the lake's next offset, per assigned partition.",
        PartitionGauge::lag,
    ),
];

/// Decoded bytes by how they were obtained: (`copy` label, which counter).
const DECODED: [(&str, Single); 6] = [
    ("in_place", |s| &s.in_place_bytes),
    ("realigned", |s| &s.realigned_bytes),
    ("decompressed", |s| &s.decompressed_bytes),
    ("payload", |s| &s.payload_copy_bytes),
    ("compacted", |s| &s.compacted_bytes),
    ("coalesced", |s| &s.coalesced_bytes),
];

/// The exposition of everything `src` counts.
pub fn render(src: &Sources) -> String {
    let s = &src.stats;
    let mut o = Out(String::with_capacity(8192));
    per_topic(&mut o, s);
    flushes(&mut o, s);
    for (name, kind, help, pick) in SINGLES {
        o.one(name, kind, help, pick(s).load(Relaxed));
    }
    per_partition(&mut o, s);
    counts_by(
        &mut o,
        "sluice_schema_changes_total",
        "Columns added to (change=add_column) or widened in (change=widen) a lake table by schema evolution.",
        ("table", "change"),
        &s.schema_changes,
    );
    counts_by(
        &mut o,
        "sluice_offset_gaps_total",
        "Partitions found with a lake offset outside the broker's watermarks: above the high \
         watermark (kind=above_high: topic recreated or truncated) or below the low watermark \
         (kind=below_low: retention deleted unread messages).",
        ("topic", "kind"),
        &s.offset_gaps,
    );
    decoded(&mut o, s);
    maintenance(&mut o, &s.maintenance);
    process(&mut o, src);
    o.0
}

/// Decoded bytes by how they were obtained.
fn decoded(o: &mut Out, s: &Stats) {
    o.family(
        "sluice_decoded_bytes_total",
        "counter",
        "Decoded buffer bytes by how they were obtained: in place (zero-copy) or copied \
         (realigned, decompressed, compacted by the live ring, in a payload copy with \
         kafka.copy_payloads, or coalesced: small batches joined before DuckDB's Arrow scan).",
    );
    for (how, pick) in DECODED {
        o.sample(
            "sluice_decoded_bytes_total",
            &[("copy", how)],
            pick(s).load(Relaxed),
        );
    }
}

/// The process: live retention, Flight readers, memory and readiness.
fn process(o: &mut Out, src: &Sources) {
    let s = &src.stats;
    let retained = s.live_bytes.load(Relaxed);
    o.one(
        "sluice_live_retained_bytes",
        "gauge",
        "Bytes the live ring retains over all topics.",
        retained,
    );
    if let Some(f) = &src.flight {
        o.one(
            "sluice_flight_readers",
            "gauge",
            "Flight readers connected now.",
            f.readers.load(Relaxed),
        );
        o.one(
            "sluice_flight_lag_disconnects_total",
            "counter",
            "Flight readers cut off because they fell behind retention.",
            f.lag_disconnects.load(Relaxed),
        );
        o.one(
            "sluice_flight_lake_catchups_total",
            "counter",
            "Times a Flight reader that fell behind retention went on reading from the lake.",
            f.lake_catchups.load(Relaxed),
        );
        o.one(
            "sluice_flight_lake_batches_total",
            "counter",
            "Batches Flight readers got from the lake (positions older than the live ring).",
            f.lake_batches.load(Relaxed),
        );
    }
    o.one(
        "sluice_resident_memory_bytes",
        "gauge",
        "Resident memory of the process.",
        resident_bytes(),
    );
    let limit = s.memory_limit_bytes.load(Relaxed);
    o.family(
        "sluice_memory_limit_bytes",
        "gauge",
        "The configured memory.limit_bytes, the most resident memory the process may use (no \
         sample without a limit).",
    );
    if limit > 0 {
        o.sample("sluice_memory_limit_bytes", &[], limit);
    }
    let ready = health::readiness(src).0 == axum::http::StatusCode::OK;
    o.one(
        "sluice_ready",
        "gauge",
        "1 while /readyz answers 200 (assigned, a broker up, the latest flush committed, the \
         loop polling), else 0.",
        u8::from(ready),
    );
}

/// A counter family of one sample per (name, kind).
fn counts_by(o: &mut Out, name: &str, help: &str, labels: (&str, &str), counts: &CountsBy) {
    o.family(name, "counter", help);
    for ((a, b), n) in lock(counts).iter() {
        o.sample(name, &[(labels.0, a), (labels.1, b)], n);
    }
}

/// Which counter of maintenance's.
type MaintenanceCounter = fn(&MaintenanceStats) -> &AtomicU64;

/// Maintenance's counters: (name, help, which counter).
const MAINTENANCE_COUNTERS: [(&str, &str, MaintenanceCounter); 8] = [
    (
        "sluice_maintenance_inlined_rows_flushed_total",
        "Rows maintenance moved from the catalog (inlined) into Parquet files.",
        |m| &m.inlined_rows,
    ),
    (
        "sluice_maintenance_files_merged_total",
        "Small Parquet files maintenance merged into larger ones.",
        |m| &m.files_merged,
    ),
    (
        "sluice_maintenance_files_rewritten_total",
        "Mostly deleted Parquet files maintenance rewrote without their deleted rows.",
        |m| &m.files_rewritten,
    ),
    (
        "sluice_maintenance_files_written_total",
        "Parquet files written by merges and rewrites.",
        |m| &m.files_written,
    ),
    (
        "sluice_maintenance_snapshots_expired_total",
        "Lake snapshots maintenance expired.",
        |m| &m.snapshots_expired,
    ),
    (
        "sluice_maintenance_files_deleted_total",
        "Files maintenance deleted: no longer referenced by a snapshot, or orphaned.",
        |m| &m.files_deleted,
    ),
    (
        "sluice_maintenance_reclaimed_bytes_total",
        "Bytes of the files maintenance deleted.",
        |m| &m.bytes_reclaimed,
    ),
    (
        "sluice_maintenance_conflicts_total",
        "Maintenance steps that lost to a concurrent transaction (each retried).",
        |m| &m.conflicts,
    ),
];

fn maintenance(o: &mut Out, m: &MaintenanceStats) {
    o.family(
        "sluice_maintenance_passes_total",
        "counter",
        "Maintenance passes by result: ok (this instance ran it), failed, or skipped (another \
         instance holds the lease).",
    );
    for (result, n) in [
        ("ok", &m.passes_ok),
        ("failed", &m.passes_failed),
        ("skipped", &m.passes_skipped),
    ] {
        o.sample(
            "sluice_maintenance_passes_total",
            &[("result", result)],
            n.load(Relaxed),
        );
    }
    for (name, help, pick) in MAINTENANCE_COUNTERS {
        o.one(name, "counter", help, pick(m).load(Relaxed));
    }
    o.one(
        "sluice_maintenance_lease_held",
        "gauge",
        "1 while this instance holds the lake's maintenance lease.",
        m.lease_held.load(Relaxed),
    );
    o.one(
        "sluice_maintenance_last_duration_seconds",
        "gauge",
        "Duration of this instance's latest maintenance pass.",
        m.last_duration_ms.load(Relaxed) as f64 / 1000.0,
    );
    o.one(
        "sluice_maintenance_last_success_timestamp_seconds",
        "gauge",
        "When this instance's latest maintenance pass succeeded (Unix time; 0 before one).",
        m.last_success_ms.load(Relaxed) / 1000,
    );
}

fn per_topic(o: &mut Out, s: &Stats) {
    let topics: Vec<(String, std::sync::Arc<TopicCounters>)> = read(&s.topics)
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (name, help, pick) in PER_TOPIC {
        o.family(name, "counter", help);
        for (topic, t) in &topics {
            o.sample(name, &[("topic", topic)], pick(t).load(Relaxed));
        }
    }
}

fn flushes(o: &mut Out, s: &Stats) {
    o.family(
        "sluice_flushes_total",
        "counter",
        "Successful flushes, by trigger.",
    );
    for (t, n) in FLUSH_TRIGGERS.iter().zip(&s.flushes_by_trigger) {
        o.sample("sluice_flushes_total", &[("trigger", t)], n.load(Relaxed));
    }
    o.histogram(
        "sluice_flush_duration_seconds",
        "Time of a successful flush, from its start to the lake commit.",
        &s.flush_duration,
    );
    o.histogram(
        "sluice_flush_size_bytes",
        "Payload bytes of a successful flush.",
        &s.flush_size,
    );
}

fn per_partition(o: &mut Out, s: &Stats) {
    let parts = lock(&s.partitions).clone();
    for (name, help, pick) in PER_PARTITION {
        o.family(name, "gauge", help);
        for ((topic, p), g) in &parts {
            if let Some(v) = pick(g) {
                o.sample(name, &[("topic", topic), ("partition", &p.to_string())], v);
            }
        }
    }
}

/// Resident memory of this process in bytes (Linux), 0 if unknown.
pub fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests;
