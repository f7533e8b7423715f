//! The counters: one [`Stats`] per pipeline, updated per message and per flush (never per
//! record) with plain atomics, so reading one is exact (tests assert on them).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};

/// The `trigger` label values of `sluice_flushes_total`, in the order of
/// [`Stats::flushes_by_trigger`] (the pipeline's flush triggers, by name).
pub const FLUSH_TRIGGERS: [&str; 7] = [
    "bytes",
    "rows",
    "age",
    "memory",
    "revoke",
    "shutdown",
    "offset_gap",
];

/// Bytes of decoded batches' buffers, by where they live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copies {
    /// Buffers that point into the Kafka payload (zero-copy).
    pub in_place: u64,
    /// Buffers arrow-rs copied to align them (uncompressed payloads).
    pub realigned: u64,
    /// Buffers produced by LZ4/ZSTD decompression.
    pub decompressed: u64,
    /// Buffers in a copy of the payload (`kafka.copy_payloads`).
    pub payload_copy: u64,
}

impl Copies {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Copies) {
        self.in_place += other.in_place;
        self.realigned += other.realigned;
        self.decompressed += other.decompressed;
        self.payload_copy += other.payload_copy;
    }

    /// Bytes that are not in the payload or its copy (held in addition to it).
    pub fn copied(&self) -> u64 {
        self.realigned + self.decompressed
    }

    /// The decoded Arrow buffers' bytes, wherever they live.
    pub fn data(&self) -> u64 {
        self.in_place + self.realigned + self.decompressed + self.payload_copy
    }
}

/// What one flush committed of one partition (see [`Stats::record_flush`]).
#[derive(Debug, Clone, Copy)]
pub struct Committed<'a> {
    /// The partition's topic.
    pub topic: &'a str,
    /// Messages whose offsets moved.
    pub messages: u64,
    /// Rows inserted.
    pub rows: u64,
    /// Payload bytes of the messages.
    pub bytes: u64,
    /// Payloads quarantined.
    pub quarantined: u64,
}

/// Counters by (name, kind): per table or topic, of a small fixed set of kinds.
pub type CountsBy = Mutex<BTreeMap<(String, &'static str), u64>>;

fn bump(counts: &CountsBy, name: &str, kind: &'static str) {
    *crate::sync::lock(counts)
        .entry((name.to_string(), kind))
        .or_default() += 1;
}

fn count_of(counts: &CountsBy, name: &str, kind: &'static str) -> u64 {
    crate::sync::lock(counts)
        .get(&(name.to_string(), kind))
        .copied()
        .unwrap_or(0)
}

/// Counters of the lake's maintenance (see `crate::maintain`).
#[derive(Debug, Default)]
pub struct MaintenanceStats {
    /// Passes this instance ran to the end (or to a stop).
    pub passes_ok: AtomicU64,
    /// Passes that failed (the next one goes on).
    pub passes_failed: AtomicU64,
    /// Passes not run because another instance holds the lease.
    pub passes_skipped: AtomicU64,
    /// Gauge: 1 while this instance holds the maintenance lease.
    pub lease_held: AtomicU64,
    /// Rows moved from the catalog (inlined) into Parquet files.
    pub inlined_rows: AtomicU64,
    /// Small files merged into larger ones.
    pub files_merged: AtomicU64,
    /// Mostly deleted files rewritten.
    pub files_rewritten: AtomicU64,
    /// Files written by merges and rewrites.
    pub files_written: AtomicU64,
    /// Snapshots expired.
    pub snapshots_expired: AtomicU64,
    /// Files deleted (no longer referenced, or orphaned).
    pub files_deleted: AtomicU64,
    /// Bytes of the deleted files.
    pub bytes_reclaimed: AtomicU64,
    /// Maintenance steps that lost to a concurrent transaction (each retried).
    pub conflicts: AtomicU64,
    /// Gauge: milliseconds the latest pass took.
    pub last_duration_ms: AtomicU64,
    /// Gauge: wall clock (ms since the epoch) of the latest successful pass; 0 before one.
    pub last_success_ms: AtomicU64,
}

/// Counters of the Flight service.
#[derive(Debug, Default)]
pub struct FlightStats {
    /// Readers connected now.
    pub readers: AtomicU64,
    /// Readers disconnected because they fell behind retention.
    pub lag_disconnects: AtomicU64,
    /// Times a reader that fell behind retention went on reading from the lake.
    pub lake_catchups: AtomicU64,
    /// Batches readers got from the lake (positions older than the ring).
    pub lake_batches: AtomicU64,
}

/// Process-wide counters. Monotonic unless named as a gauge.
#[derive(Debug)]
pub struct Stats {
    /// Kafka messages consumed (decoded or quarantined).
    pub messages: AtomicU64,
    /// Rows decoded.
    pub rows: AtomicU64,
    /// Payload bytes consumed.
    pub payload_bytes: AtomicU64,
    /// Buffer bytes decoded in place (zero-copy).
    pub in_place_bytes: AtomicU64,
    /// Buffer bytes arrow-rs realigned (copied).
    pub realigned_bytes: AtomicU64,
    /// Buffer bytes produced by decompression.
    pub decompressed_bytes: AtomicU64,
    /// Buffer bytes in copies of payloads (`kafka.copy_payloads`).
    pub payload_copy_bytes: AtomicU64,
    /// Bytes the live ring copied off Kafka messages once their lake commit passed.
    pub compacted_bytes: AtomicU64,
    /// Buffer bytes copied to join small batches before DuckDB's Arrow scan.
    pub coalesced_bytes: AtomicU64,
    /// Gauge: bytes the live ring retains over all topics (shared with pending data until
    /// compacted).
    pub live_bytes: AtomicU64,
    /// Successful flushes.
    pub flushes: AtomicU64,
    /// Successful flushes by trigger, indexed like [`FLUSH_TRIGGERS`].
    pub flushes_by_trigger: [AtomicU64; 7],
    /// Rows committed to the lake.
    pub committed_rows: AtomicU64,
    /// Messages whose offsets were committed to the lake.
    pub committed_messages: AtomicU64,
    /// Payload bytes committed to the lake.
    pub committed_bytes: AtomicU64,
    /// Payloads quarantined (committed).
    pub quarantined: AtomicU64,
    /// Commits DuckLake rejected for a concurrent transaction (each retried).
    pub commit_conflicts: AtomicU64,
    /// Partitions whose range another writer committed first (pending data dropped, re-sought).
    pub offset_conflicts: AtomicU64,
    /// Flush attempts that failed for another reason (each retried with backoff).
    pub flush_failures: AtomicU64,
    /// Gauge: bytes pending in memory (payloads plus copies), including the flush in flight.
    pub pending_bytes: AtomicU64,
    /// Gauge: bytes of the flush being committed on the flush thread (0 when none is).
    pub inflight_bytes: AtomicU64,
    /// Messages dropped because they were older than the partition's position (after a seek).
    pub stale_messages: AtomicU64,
    /// Gauge: partitions currently assigned to this consumer.
    pub assigned_partitions: AtomicU64,
    /// Gauge: partitions paused because a failed flush waits for its retry.
    pub paused_partitions: AtomicU64,
    /// Gauge: the pending-bytes cap (what the memory budget leaves for pending data).
    pub pending_cap_bytes: AtomicU64,
    /// Gauge: `memory.limit_bytes`, the most resident memory the process may use (0: no limit
    /// is configured).
    pub memory_limit_bytes: AtomicU64,
    /// Per-topic counters.
    pub topics: RwLock<BTreeMap<String, Arc<TopicCounters>>>,
    /// Per assigned partition: the lake's next offset and the broker's high watermark.
    pub partitions: Mutex<BTreeMap<(String, i32), PartitionGauge>>,
    /// Seconds a successful flush took (write + commit).
    pub flush_duration: Histogram,
    /// Payload bytes of a successful flush.
    pub flush_size: Histogram,
    /// Wall clock (ms since the epoch) of the loop's latest poll.
    pub last_poll_ms: AtomicU64,
    /// Whether a partition assignment (possibly empty) was received from the group.
    pub assignment_received: AtomicBool,
    /// Brokers in state UP in librdkafka's latest statistics (`None` until the first).
    pub brokers_up: Mutex<Option<u64>>,
    /// The consumer group's join state in librdkafka's latest statistics, and since when (ms
    /// since the epoch) it has not been `steady` (0 while it is).
    pub group_state: Mutex<(String, u64)>,
    /// Why the latest flush attempt failed (the lake is unreachable or refusing), while it
    /// waits for its retry; `None` once a flush commits.
    pub lake_failing: Mutex<Option<String>>,
    /// The lake's maintenance.
    pub maintenance: MaintenanceStats,
    /// Offset gaps found per (topic, kind: `above_high` or `below_low`).
    pub offset_gaps: CountsBy,
    /// Committed schema changes per (table, kind: `add_column` or `widen`).
    pub schema_changes: CountsBy,
}

/// Counters of one topic.
#[derive(Debug, Default)]
pub struct TopicCounters {
    /// Messages consumed (decoded or quarantined).
    pub messages: AtomicU64,
    /// Rows decoded.
    pub rows: AtomicU64,
    /// Payload bytes consumed.
    pub bytes: AtomicU64,
    /// Messages committed to the lake.
    pub committed_messages: AtomicU64,
    /// Rows committed to the lake.
    pub committed_rows: AtomicU64,
    /// Payload bytes committed to the lake.
    pub committed_bytes: AtomicU64,
    /// Payloads committed to the quarantine table.
    pub quarantined: AtomicU64,
}

/// Offsets of one assigned partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionGauge {
    /// The lake's next offset (-1: nothing committed yet).
    pub lake_next: i64,
    /// The broker's high watermark (-1: not reported yet).
    pub high_watermark: i64,
}

impl PartitionGauge {
    /// Messages in Kafka not yet in the lake (`None` until the high watermark is known).
    pub fn lag(&self) -> Option<i64> {
        (self.high_watermark >= 0).then(|| (self.high_watermark - self.lake_next.max(0)).max(0))
    }
}

/// A fixed-bucket histogram (Prometheus semantics: cumulative buckets, sum, count).
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds of the buckets, ascending (`+Inf` is implied).
    pub bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    /// Sum of observations, in millionths.
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// An empty histogram with these bucket bounds.
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, v: f64) {
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            if v <= *b {
                c.fetch_add(1, Relaxed);
            }
        }
        self.sum_micros.fetch_add((v * 1e6) as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// (cumulative count per bound, sum, count).
    pub fn snapshot(&self) -> (Vec<u64>, f64, u64) {
        (
            self.counts.iter().map(|c| c.load(Relaxed)).collect(),
            self.sum_micros.load(Relaxed) as f64 / 1e6,
            self.count.load(Relaxed),
        )
    }
}

/// Buckets of `sluice_flush_duration_seconds`.
pub const FLUSH_SECONDS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// Buckets of `sluice_flush_size_bytes` (1 MiB … 1 GiB).
pub const FLUSH_BYTES: &[f64] = &[
    1048576.0,
    4194304.0,
    16777216.0,
    67108864.0,
    134217728.0,
    268435456.0,
    536870912.0,
    1073741824.0,
];

impl Default for Stats {
    fn default() -> Self {
        Stats {
            messages: Default::default(),
            rows: Default::default(),
            payload_bytes: Default::default(),
            in_place_bytes: Default::default(),
            realigned_bytes: Default::default(),
            decompressed_bytes: Default::default(),
            payload_copy_bytes: Default::default(),
            compacted_bytes: Default::default(),
            coalesced_bytes: Default::default(),
            live_bytes: Default::default(),
            flushes: Default::default(),
            flushes_by_trigger: Default::default(),
            committed_rows: Default::default(),
            committed_messages: Default::default(),
            committed_bytes: Default::default(),
            quarantined: Default::default(),
            commit_conflicts: Default::default(),
            offset_conflicts: Default::default(),
            flush_failures: Default::default(),
            pending_bytes: Default::default(),
            inflight_bytes: Default::default(),
            stale_messages: Default::default(),
            assigned_partitions: Default::default(),
            paused_partitions: Default::default(),
            pending_cap_bytes: Default::default(),
            memory_limit_bytes: Default::default(),
            topics: Default::default(),
            partitions: Default::default(),
            flush_duration: Histogram::new(FLUSH_SECONDS),
            flush_size: Histogram::new(FLUSH_BYTES),
            last_poll_ms: Default::default(),
            assignment_received: Default::default(),
            brokers_up: Default::default(),
            lake_failing: Default::default(),
            group_state: Default::default(),
            schema_changes: Default::default(),
            offset_gaps: Default::default(),
            maintenance: Default::default(),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Stats {
    /// The counters of `topic` (created on first use; callers keep the `Arc`).
    pub fn topic(&self, topic: &str) -> Arc<TopicCounters> {
        if let Some(t) = crate::sync::read(&self.topics).get(topic) {
            return t.clone();
        }
        crate::sync::write(&self.topics)
            .entry(topic.to_string())
            .or_default()
            .clone()
    }

    /// Updates one partition's offsets gauge (`None` leaves a value as it is).
    pub fn set_partition(
        &self,
        topic: &str,
        partition: i32,
        lake_next: Option<i64>,
        high: Option<i64>,
    ) {
        let mut parts = crate::sync::lock(&self.partitions);
        let g = parts
            .entry((topic.to_string(), partition))
            .or_insert(PartitionGauge {
                lake_next: -1,
                high_watermark: -1,
            });
        if let Some(v) = lake_next {
            g.lake_next = v;
        }
        if let Some(v) = high {
            g.high_watermark = v;
        }
    }

    /// Forgets a partition that is no longer assigned.
    pub fn remove_partition(&self, topic: &str, partition: i32) {
        crate::sync::lock(&self.partitions).remove(&(topic.to_string(), partition));
    }

    /// Records one consumed message of `topic` (decoded or, with 0 rows and no copies,
    /// quarantined).
    pub fn record_message(&self, topic: &TopicCounters, payload: u64, rows: u64, copies: &Copies) {
        self.messages.fetch_add(1, Relaxed);
        self.rows.fetch_add(rows, Relaxed);
        self.payload_bytes.fetch_add(payload, Relaxed);
        self.in_place_bytes.fetch_add(copies.in_place, Relaxed);
        self.realigned_bytes.fetch_add(copies.realigned, Relaxed);
        self.decompressed_bytes
            .fetch_add(copies.decompressed, Relaxed);
        self.payload_copy_bytes
            .fetch_add(copies.payload_copy, Relaxed);
        topic.messages.fetch_add(1, Relaxed);
        topic.rows.fetch_add(rows, Relaxed);
        topic.bytes.fetch_add(payload, Relaxed);
    }

    /// Total copies so far.
    pub fn copies(&self) -> Copies {
        Copies {
            in_place: self.in_place_bytes.load(Relaxed),
            realigned: self.realigned_bytes.load(Relaxed),
            decompressed: self.decompressed_bytes.load(Relaxed),
            payload_copy: self.payload_copy_bytes.load(Relaxed),
        }
    }

    /// Records a successful flush: why it ran (one of [`FLUSH_TRIGGERS`]), how long it took,
    /// and what it committed of each partition. The lake accepts flushes again.
    pub fn record_flush(&self, trigger: &str, seconds: f64, parts: &[Committed]) {
        self.flushes.fetch_add(1, Relaxed);
        if let Some(i) = FLUSH_TRIGGERS.iter().position(|t| *t == trigger) {
            self.flushes_by_trigger[i].fetch_add(1, Relaxed);
        }
        let mut bytes = 0;
        for p in parts {
            let t = self.topic(p.topic);
            t.committed_messages.fetch_add(p.messages, Relaxed);
            t.committed_rows.fetch_add(p.rows, Relaxed);
            t.committed_bytes.fetch_add(p.bytes, Relaxed);
            t.quarantined.fetch_add(p.quarantined, Relaxed);
            self.committed_rows.fetch_add(p.rows, Relaxed);
            self.committed_messages.fetch_add(p.messages, Relaxed);
            self.committed_bytes.fetch_add(p.bytes, Relaxed);
            self.quarantined.fetch_add(p.quarantined, Relaxed);
            bytes += p.bytes;
        }
        self.flush_duration.observe(seconds);
        self.flush_size.observe(bytes as f64);
        *crate::sync::lock(&self.lake_failing) = None;
    }

    /// Records the consumer group's join state from librdkafka's statistics (`steady` once the
    /// group has given this member its assignment).
    pub fn record_group_state(&self, join_state: &str) {
        let mut g = crate::sync::lock(&self.group_state);
        if join_state == "steady" {
            *g = (join_state.to_string(), 0);
        } else if g.1 == 0 || g.0 == "steady" || g.0.is_empty() {
            *g = (join_state.to_string(), super::now_ms());
        } else {
            g.0 = join_state.to_string();
        }
    }

    /// Records why a flush of `table` failed (attempt `attempt` of `attempts`), for `/readyz`:
    /// the first line of the error, at most 300 characters.
    pub fn record_flush_failure(&self, table: &str, attempt: u32, attempts: u32, error: &str) {
        let first = error.lines().next().unwrap_or_default();
        let mut why: String = first.chars().take(300).collect();
        if why.len() < first.len() {
            why.push('…');
        }
        *crate::sync::lock(&self.lake_failing) = Some(format!(
            "table {table}, attempt {attempt} of {attempts}: {why}"
        ));
    }

    /// Counts an offset gap of `topic` (`kind`: `above_high` or `below_low`).
    pub fn record_offset_gap(&self, topic: &str, kind: &'static str) {
        bump(&self.offset_gaps, topic, kind);
    }

    /// Offset gaps of `topic` of `kind` found so far.
    pub fn offset_gaps_of(&self, topic: &str, kind: &'static str) -> u64 {
        count_of(&self.offset_gaps, topic, kind)
    }

    /// Counts a committed schema change of `table` (`kind`: `add_column` or `widen`).
    pub fn record_schema_change(&self, table: &str, kind: &'static str) {
        bump(&self.schema_changes, table, kind);
    }

    /// Committed schema changes of `table` of `kind` so far.
    pub fn schema_changes_of(&self, table: &str, kind: &'static str) -> u64 {
        count_of(&self.schema_changes, table, kind)
    }

    /// Successful flushes with this trigger (one of [`FLUSH_TRIGGERS`]).
    pub fn flushes_by(&self, trigger: &str) -> u64 {
        FLUSH_TRIGGERS
            .iter()
            .position(|t| *t == trigger)
            .map_or(0, |i| self.flushes_by_trigger[i].load(Relaxed))
    }
}
