//! `observe`: counters the pipeline updates per message and per flush (never per record), read by
//! progress reports and, later, the metrics endpoint.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::decode::Copies;

/// Why a flush ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushTrigger {
    /// The table's pending bytes reached `flush.max_bytes`.
    Bytes,
    /// The table's pending rows reached `flush.max_rows`.
    Rows,
    /// The table's oldest pending message reached `flush.max_age_ms`.
    Age,
    /// Pending bytes of all tables reached `flush.memory_cap_bytes`.
    Memory,
    /// Partitions were revoked by a rebalance.
    Revoke,
    /// The process is stopping.
    Shutdown,
}

impl FlushTrigger {
    /// All triggers, in a fixed order.
    pub const ALL: [FlushTrigger; 6] = [
        FlushTrigger::Bytes,
        FlushTrigger::Rows,
        FlushTrigger::Age,
        FlushTrigger::Memory,
        FlushTrigger::Revoke,
        FlushTrigger::Shutdown,
    ];

    /// Lowercase name (a metric label value).
    pub fn name(self) -> &'static str {
        match self {
            FlushTrigger::Bytes => "bytes",
            FlushTrigger::Rows => "rows",
            FlushTrigger::Age => "age",
            FlushTrigger::Memory => "memory",
            FlushTrigger::Revoke => "revoke",
            FlushTrigger::Shutdown => "shutdown",
        }
    }
}

/// Process-wide counters. Monotonic unless named as a gauge.
#[derive(Debug, Default)]
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
    /// Bytes the live ring copied off Kafka messages once their lake commit passed.
    pub compacted_bytes: AtomicU64,
    /// Gauge: bytes the live ring retains over all topics (shared with pending data until
    /// compacted).
    pub live_bytes: AtomicU64,
    /// Successful flushes.
    pub flushes: AtomicU64,
    /// Successful flushes by trigger, indexed like [`FlushTrigger::ALL`].
    pub flushes_by_trigger: [AtomicU64; 6],
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
}

impl Stats {
    /// Records one decoded message.
    pub fn record_message(&self, payload_len: usize, rows: usize, copies: &Copies) {
        self.messages.fetch_add(1, Relaxed);
        self.rows.fetch_add(rows as u64, Relaxed);
        self.payload_bytes.fetch_add(payload_len as u64, Relaxed);
        self.in_place_bytes.fetch_add(copies.in_place, Relaxed);
        self.realigned_bytes.fetch_add(copies.realigned, Relaxed);
        self.decompressed_bytes
            .fetch_add(copies.decompressed, Relaxed);
    }

    /// Total copies so far.
    pub fn copies(&self) -> Copies {
        Copies {
            in_place: self.in_place_bytes.load(Relaxed),
            realigned: self.realigned_bytes.load(Relaxed),
            decompressed: self.decompressed_bytes.load(Relaxed),
        }
    }

    /// Records a successful flush.
    pub fn record_flush(
        &self,
        trigger: FlushTrigger,
        rows: u64,
        messages: u64,
        bytes: u64,
        quarantined: u64,
    ) {
        self.flushes.fetch_add(1, Relaxed);
        let i = FlushTrigger::ALL
            .iter()
            .position(|t| *t == trigger)
            .unwrap_or(0);
        self.flushes_by_trigger[i].fetch_add(1, Relaxed);
        self.committed_rows.fetch_add(rows, Relaxed);
        self.committed_messages.fetch_add(messages, Relaxed);
        self.committed_bytes.fetch_add(bytes, Relaxed);
        self.quarantined.fetch_add(quarantined, Relaxed);
    }
}
