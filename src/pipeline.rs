//! `pipeline`: poll → decode → pending[table] → flush, with exactly-once offsets, the memory cap,
//! quarantine of bad payloads, rebalance handling and a clean stop.
//!
//! One thread runs the loop. The state it shares with the consumer's rebalance callback (which
//! runs inside `poll` on the same thread) sits behind a mutex that is never held across `poll`.
//! Commits run on a flush thread with its own lake connection, one at a time, so the loop keeps
//! decoding (and publishing live) while the lake writes Parquet; the outcome is applied by the
//! loop. A stop or a revoke waits for the flush in flight, then commits in place.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arrow::array::{
    ArrayRef, BinaryArray, Int32Array, Int64Array, RecordBatch, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use rdkafka::topic_partition_list::Offset;

use crate::config::{Config, FlushConfig, StartFrom, TablesConfig};
use crate::decode::{self, Copies};
use crate::live::ring::Ring;
use crate::observe::{FlushTrigger, Stats, TopicCounters};
use crate::sink::{self, Lake, NO_OFFSET, OffsetUpdate, QuarantineRow, SinkError, TableFlush};
use crate::source::{KafkaMessage, KafkaSource, RebalanceHandler, SourceError};

/// Errors that stop the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The lake could not be opened, or a flush failed after every retry.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The Kafka client could not be created or subscribed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The flush thread could not start, or ended unexpectedly (offsets of its data unmoved).
    #[error("flush thread: {0}")]
    Flusher(String),
    /// A flush failed `attempts` times; offsets were not moved.
    #[error("flush of table {table} failed after {attempts} attempts, offsets not moved: {last}")]
    FlushGaveUp {
        /// Table.
        table: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        last: SinkError,
    },
}

type PartKey = (Arc<str>, i32);

/// Per assigned partition.
#[derive(Debug)]
struct PartState {
    table: Arc<str>,
    /// The lake's next offset as last read or committed by us (the condition of our update).
    lake_next: i64,
    /// Messages below this offset are stale (already committed, or before a seek) and dropped.
    expected: i64,
}

/// Pending data of one partition inside a table.
#[derive(Default)]
struct PartPending {
    batches: Vec<RecordBatch>,
    quarantine: Vec<QuarantineRow>,
    /// Offset after the last pending message.
    next: i64,
    /// Memory held: payloads plus copies (the memory cap counts these).
    bytes: u64,
    /// Payload bytes of the messages (what `committed_bytes` counts).
    payload: u64,
    /// Decoded Arrow bytes (see [`TablePending::data`]).
    data: u64,
    rows: u64,
    messages: u64,
}

#[derive(Default)]
struct TablePending {
    parts: BTreeMap<PartKey, PartPending>,
    /// Memory held: payloads plus copies (the memory cap counts these).
    bytes: u64,
    /// Decoded Arrow data (quarantined payloads at their size): the `flush.max_bytes` trigger
    /// counts these, so a file holds the same data whether the payloads were compressed, or
    /// realigned, or neither.
    data: u64,
    rows: u64,
    since: Option<Instant>,
}

/// What a message contributes to pending data.
enum Appended {
    /// Decoded batches, their row count and their Arrow bytes.
    Batches(Vec<RecordBatch>, u64, u64),
    /// A rejected payload.
    Quarantined(QuarantineRow),
}

/// State shared between the loop and the rebalance callback.
struct Core {
    lake: Lake,
    tables_cfg: TablesConfig,
    flush_cfg: FlushConfig,
    /// Pending bytes allowed: what the memory budget leaves after live retention and prefetch.
    pending_cap: u64,
    start_from: StartFrom,
    /// `kafka.copy_payloads`: decode a copy of each payload and release the message at once.
    copy_payloads: bool,
    stats: Arc<Stats>,
    parts: HashMap<PartKey, PartState>,
    pending: HashMap<Arc<str>, TablePending>,
    topic_tables: HashMap<String, Arc<str>>,
    /// Per-topic counters, cached so the hot path does not look them up by name.
    topic_counters: HashMap<Arc<str>, Arc<TopicCounters>>,
    pending_bytes: u64,
    /// Bytes of the flush in flight (still in memory until it is committed).
    inflight_bytes: u64,
    /// Runs non-blocking commits on its own thread and lake connection.
    flusher: Flusher,
    /// Offsets committed to the lake, to be recorded in Kafka for lag tooling.
    kafka_commits: Vec<(Arc<str>, i32, i64)>,
    /// Partitions to re-seek after an offset conflict.
    reseek: Vec<(Arc<str>, i32, Offset)>,
    /// An error raised inside a callback, surfaced by the loop.
    fatal: Option<PipelineError>,
    /// The live ring Flight readers read from, if enabled.
    live: Option<Arc<Ring>>,
    /// When the live ring's age expiry last ran.
    last_expire: Instant,
    /// A flush that failed and waits for its next attempt. While set, no other flush runs and
    /// every assigned partition is paused: memory stays bounded while the loop keeps polling
    /// (heartbeats, rebalances) instead of sleeping.
    retry: Option<ScheduledRetry>,
}

/// The next attempt of a failed flush.
struct ScheduledRetry {
    table: Arc<str>,
    trigger: FlushTrigger,
    /// Attempts made so far.
    attempts: u32,
    at: Instant,
}

/// A running sluice pipeline.
pub struct Pipeline {
    source: KafkaSource,
    core: Arc<Mutex<Core>>,
    stats: Arc<Stats>,
    /// Whether the assigned partitions are paused (a flush is waiting to be retried).
    paused: std::cell::Cell<bool>,
}

struct Handler {
    core: Arc<Mutex<Core>>,
}

fn lock(core: &Mutex<Core>) -> MutexGuard<'_, Core> {
    core.lock().unwrap_or_else(|p| p.into_inner())
}

impl RebalanceHandler for Handler {
    fn assigned(&self, partitions: &[(String, i32)]) -> Vec<Offset> {
        let mut core = lock(&self.core);
        match core.assign(partitions) {
            Ok(starts) => starts,
            Err(e) => {
                tracing::error!(error = %e, "could not read lake offsets for assigned partitions");
                core.fatal.get_or_insert(e);
                // Not fetched anyway: the loop stops before handling any message.
                partitions.iter().map(|_| Offset::End).collect()
            }
        }
    }

    fn revoked(&self, partitions: &[(String, i32)]) {
        let mut core = lock(&self.core);
        if let Err(e) = core.revoke(partitions) {
            tracing::error!(error = %e, "flush on revoke failed");
            core.fatal.get_or_insert(e);
        }
    }
}

impl Pipeline {
    /// Opens the lake, creates the consumer and subscribes to the configured topics.
    pub fn new(cfg: &Config, stats: Arc<Stats>) -> Result<Self, PipelineError> {
        let lake = Lake::open(&cfg.lake, &cfg.kafka.group_id)?;
        Self::with_lake(cfg, lake, stats)
    }

    /// Like [`Pipeline::new`], on an already attached lake handle (e.g. [`Lake::another`] of a
    /// lake shared by several pipelines in one process).
    pub fn with_lake(cfg: &Config, lake: Lake, stats: Arc<Stats>) -> Result<Self, PipelineError> {
        let source = KafkaSource::new(&cfg.kafka)?;
        let flusher = Flusher::start(lake.another(lake.group())?)
            .map_err(|e| PipelineError::Flusher(format!("could not start: {e}")))?;
        let core = Arc::new(Mutex::new(Core {
            lake,
            tables_cfg: cfg.tables.clone(),
            flush_cfg: cfg.flush.clone(),
            pending_cap: cfg.memory_budget().pending,
            start_from: cfg.kafka.start_from,
            copy_payloads: cfg.kafka.copy_payloads,
            stats: stats.clone(),
            parts: HashMap::new(),
            pending: HashMap::new(),
            topic_tables: HashMap::new(),
            topic_counters: HashMap::new(),
            pending_bytes: 0,
            inflight_bytes: 0,
            flusher,
            kafka_commits: Vec::new(),
            reseek: Vec::new(),
            fatal: None,
            live: None,
            last_expire: Instant::now(),
            retry: None,
        }));
        stats
            .pending_cap_bytes
            .store(cfg.memory_budget().pending, Relaxed);
        source.set_stats(stats.clone());
        source.set_handler(Arc::new(Handler { core: core.clone() }));
        source.subscribe(&cfg.kafka.topics)?;
        Ok(Pipeline {
            source,
            core,
            stats,
            paused: std::cell::Cell::new(false),
        })
    }

    /// Publishes every decoded batch to `ring` (the live Flight endpoint's retention).
    pub fn attach_live(&self, ring: Arc<Ring>) {
        lock(&self.core).live = Some(ring);
    }

    /// Counters of this pipeline.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Consumes until `stop` is set, then flushes everything pending, commits and leaves the
    /// group. Returns an error (offsets unmoved for what was not committed) if a flush gives up.
    pub fn run(self, stop: &AtomicBool) -> Result<(), PipelineError> {
        let result = self.run_loop(stop);
        let result = result.and_then(|()| {
            let mut core = lock(&self.core);
            core.wait_inflight()?;
            core.flush_all(FlushTrigger::Shutdown)
        });
        self.after_flushes();
        if result.is_ok() {
            self.source.close();
        }
        self.source.clear_handler();
        let mut core = lock(&self.core);
        core.pending.clear();
        core.pending_bytes = 0;
        self.stats.pending_bytes.store(0, Relaxed);
        result
    }

    /// Drops in-memory state without flushing, as a crash would (tests of restart behavior).
    pub fn abandon(self) {
        self.source.clear_handler();
        let mut core = lock(&self.core);
        core.pending.clear();
    }

    /// Runs the loop for at most `max` (or until `stop`), without the final flush: the caller
    /// may then [`Pipeline::abandon`] it, or continue with [`Pipeline::run`].
    pub fn run_for(&self, max: Duration, stop: &AtomicBool) -> Result<(), PipelineError> {
        let deadline = Instant::now() + max;
        while Instant::now() < deadline && !stop.load(Relaxed) {
            self.step()?;
        }
        Ok(())
    }

    fn run_loop(&self, stop: &AtomicBool) -> Result<(), PipelineError> {
        while !stop.load(Relaxed) {
            self.step()?;
        }
        Ok(())
    }

    fn step(&self) -> Result<(), PipelineError> {
        let polled = self.source.poll(Duration::from_millis(100));
        self.stats
            .last_poll_ms
            .store(crate::observe::now_ms(), Relaxed);
        {
            let mut core = lock(&self.core);
            if let Some(e) = core.fatal.take() {
                return Err(e);
            }
            match polled {
                None => {}
                Some(Ok(msg)) => core.ingest(msg)?,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "kafka consumer error (librdkafka retries)")
                }
            }
            core.poll_inflight()?;
            core.retry_due()?;
            core.flush_aged()?;
            // Age expiry of idle topics, and the retained-bytes gauge: every 100 ms, not per
            // message.
            if let Some(ring) = &core.live
                && core.last_expire.elapsed() >= Duration::from_millis(100)
            {
                let retained = ring.expire();
                core.stats.live_bytes.store(retained, Relaxed);
                core.last_expire = Instant::now();
            }
        }
        self.after_flushes();
        Ok(())
    }

    /// Kafka-side work that must not run under the core lock or inside a callback.
    fn after_flushes(&self) {
        let (commits, reseek, pause, assigned) = {
            let mut core = lock(&self.core);
            let pause = core.retry.is_some();
            let assigned: Vec<PartKey> = if pause || self.paused.get() {
                core.parts.keys().cloned().collect()
            } else {
                Vec::new()
            };
            (
                std::mem::take(&mut core.kafka_commits),
                std::mem::take(&mut core.reseek),
                pause,
                assigned,
            )
        };
        if pause {
            // Re-applied every step, so partitions assigned meanwhile are paused too.
            if let Err(e) = self.source.pause(&assigned) {
                tracing::warn!(error = %e, "pausing partitions failed");
            }
            if !self.paused.get() {
                tracing::warn!(
                    partitions = assigned.len(),
                    "partitions paused until the failed flush succeeds"
                );
            }
            self.stats
                .paused_partitions
                .store(assigned.len() as u64, Relaxed);
            self.paused.set(true);
        } else if self.paused.get() {
            if let Err(e) = self.source.resume(&assigned) {
                tracing::warn!(error = %e, "resuming partitions failed");
            }
            tracing::info!(partitions = assigned.len(), "partitions resumed");
            self.stats.paused_partitions.store(0, Relaxed);
            self.paused.set(false);
        }
        if !commits.is_empty() {
            self.source.commit_for_lag_tooling(&commits);
        }
        for (topic, partition, offset) in reseek {
            if let Err(e) = self.source.seek(&topic, partition, offset) {
                tracing::warn!(%topic, partition, error = %e, "re-seek after offset conflict failed");
            }
        }
    }
}

impl Core {
    fn table_for(&mut self, topic: &str) -> Arc<str> {
        if let Some(t) = self.topic_tables.get(topic) {
            return t.clone();
        }
        let t: Arc<str> = self.tables_cfg.table_for(topic).into();
        self.topic_tables.insert(topic.to_string(), t.clone());
        t
    }

    fn assign(&mut self, partitions: &[(String, i32)]) -> Result<Vec<Offset>, PipelineError> {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (t, p) in partitions {
            by_topic.entry(t).or_default().push(*p);
        }
        let mut lake_offsets: HashMap<(String, i32), i64> = HashMap::new();
        for (topic, ps) in by_topic {
            let offsets = with_retry(&self.flush_cfg, || {
                self.lake.register_partitions(topic, &ps)
            })
            .map_err(|last| PipelineError::FlushGaveUp {
                table: sink::OFFSETS_TABLE.into(),
                attempts: self.flush_cfg.retry.attempts,
                last,
            })?;
            for (p, o) in offsets {
                lake_offsets.insert((topic.to_string(), p), o);
            }
        }
        let mut starts = Vec::with_capacity(partitions.len());
        for (topic, partition) in partitions {
            let lake_next = lake_offsets
                .get(&(topic.clone(), *partition))
                .copied()
                .unwrap_or(NO_OFFSET);
            let table = self.table_for(topic);
            let key: PartKey = (Arc::from(topic.as_str()), *partition);
            let start = if lake_next == NO_OFFSET {
                match self.start_from {
                    StartFrom::Earliest => Offset::Beginning,
                    StartFrom::Latest => Offset::End,
                }
            } else {
                Offset::Offset(lake_next)
            };
            tracing::info!(topic, partition, lake_next, "partition assigned");
            self.stats
                .set_partition(topic, *partition, Some(lake_next), None);
            self.parts.insert(
                key,
                PartState {
                    table,
                    lake_next,
                    expected: lake_next.max(0),
                },
            );
            starts.push(start);
        }
        self.stats
            .assigned_partitions
            .store(self.parts.len() as u64, Relaxed);
        self.stats.assignment_received.store(true, Relaxed);
        Ok(starts)
    }

    fn revoke(&mut self, partitions: &[(String, i32)]) -> Result<(), PipelineError> {
        // The flush in flight may cover revoked partitions: its outcome must be known first.
        let waited = self.wait_inflight();
        let keys: Vec<PartKey> = partitions
            .iter()
            .map(|(t, p)| (Arc::from(t.as_str()), *p))
            .collect();
        let mut tables: Vec<Arc<str>> = Vec::new();
        for k in &keys {
            if let Some(st) = self.parts.get(k)
                && self
                    .pending
                    .get(&st.table)
                    .is_some_and(|tp| tp.parts.contains_key(k))
                && !tables.contains(&st.table)
            {
                tables.push(st.table.clone());
            }
        }
        let mut result = waited;
        for t in tables {
            if result.is_err() {
                break;
            }
            if let Err(e) = self.flush(&t, FlushTrigger::Revoke) {
                result = Err(e);
                break;
            }
        }
        for k in &keys {
            self.parts.remove(k);
            self.drop_pending(k);
            self.stats.remove_partition(&k.0, k.1);
            tracing::info!(topic = %k.0, partition = k.1, "partition revoked");
        }
        self.stats
            .assigned_partitions
            .store(self.parts.len() as u64, Relaxed);
        self.reseek
            .retain(|(t, p, _)| !keys.iter().any(|k| &k.0 == t && k.1 == *p));
        result
    }

    fn drop_pending(&mut self, key: &PartKey) {
        for tp in self.pending.values_mut() {
            if let Some(pp) = tp.parts.remove(key) {
                tp.bytes -= pp.bytes;
                tp.data -= pp.data;
                tp.rows -= pp.rows;
                self.pending_bytes -= pp.bytes;
            }
        }
        self.pending.retain(|_, tp| !tp.parts.is_empty());
        self.update_pending_gauge();
    }

    fn ingest(&mut self, msg: KafkaMessage) -> Result<(), PipelineError> {
        let key: PartKey = (Arc::from(msg.topic()), msg.partition());
        let offset = msg.offset();
        let (table, stale) = match self.parts.get(&key) {
            // Not (or no longer) ours: a message fetched before a revoke.
            None => return Ok(()),
            Some(st) => (st.table.clone(), offset < st.expected),
        };
        if stale {
            self.stats.stale_messages.fetch_add(1, Relaxed);
            return Ok(());
        }
        let (payload, decoded) = if self.copy_payloads {
            // The copy owns its bytes: `msg`, and librdkafka's fetch buffer once no other
            // message holds it, is released when this call returns.
            decode::decode_copy(msg.payload())
        } else {
            let payload = msg.payload_buffer();
            let decoded = decode::decode(&payload);
            (payload, decoded)
        };
        let accepted = match decoded {
            Ok(decoded) => {
                let batches = match self.with_metadata(&msg, decoded.batches) {
                    Ok(b) => b,
                    Err(e) => return self.quarantine(&table, key, &msg, payload, e),
                };
                let mut misfit = None;
                for b in &batches {
                    if let Err(text) = self.lake.check_fit(&table, &b.schema())? {
                        misfit = Some(text);
                        break;
                    }
                }
                match misfit {
                    Some(text) => return self.quarantine(&table, key, &msg, payload, text),
                    None => (batches, decoded.copies),
                }
            }
            Err(e) => return self.quarantine(&table, key, &msg, payload, e.to_string()),
        };
        let (batches, copies) = accepted;
        drop(payload);
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        self.stats.record_message(msg.payload_len(), rows, &copies);
        self.count_message(&key.0, msg.payload_len(), rows);
        let bytes = msg.payload_len() as u64 + copies.copied();
        if let Some(ring) = &self.live {
            // Whether the batches reference the Kafka message (any slice of its payload, even
            // an empty one, keeps it alive): then the ring copies them after the lake commit.
            let in_kafka = msg.is_referenced();
            ring.push(
                &key.0,
                key.1,
                offset,
                msg.timestamp_ms(),
                &batches,
                bytes,
                in_kafka,
            );
        }
        self.append(
            &table,
            key,
            offset,
            Appended::Batches(batches, rows as u64, copies.data()),
            bytes,
            msg.payload_len() as u64,
        )
    }

    fn quarantine(
        &mut self,
        table: &Arc<str>,
        key: PartKey,
        msg: &KafkaMessage,
        payload: arrow::buffer::Buffer,
        error: impl Into<String>,
    ) -> Result<(), PipelineError> {
        let error = error.into();
        tracing::warn!(topic = %key.0, partition = key.1, offset = msg.offset(), %error, "payload quarantined");
        self.stats
            .record_message(msg.payload_len(), 0, &Copies::default());
        self.count_message(&key.0, msg.payload_len(), 0);
        let row = QuarantineRow {
            topic: key.0.clone(),
            partition: key.1,
            offset: msg.offset(),
            timestamp_ms: msg.timestamp_ms(),
            error,
            payload,
        };
        let bytes = msg.payload_len() as u64;
        self.append(
            table,
            key,
            msg.offset(),
            Appended::Quarantined(row),
            bytes,
            bytes,
        )
    }

    fn counters(&mut self, topic: &Arc<str>) -> Arc<TopicCounters> {
        if let Some(c) = self.topic_counters.get(topic) {
            return c.clone();
        }
        let c = self.stats.topic(topic);
        self.topic_counters.insert(topic.clone(), c.clone());
        c
    }

    fn count_message(&mut self, topic: &Arc<str>, payload_len: usize, rows: usize) {
        let c = self.counters(topic);
        c.messages.fetch_add(1, Relaxed);
        c.rows.fetch_add(rows as u64, Relaxed);
        c.bytes.fetch_add(payload_len as u64, Relaxed);
    }

    /// Adds one message's outcome to its partition's pending data, moves the partition's
    /// position past it, and flushes if a threshold trips.
    fn append(
        &mut self,
        table: &Arc<str>,
        key: PartKey,
        offset: i64,
        what: Appended,
        bytes: u64,
        payload: u64,
    ) -> Result<(), PipelineError> {
        let tp = self.pending.entry(table.clone()).or_default();
        let pp = tp.parts.entry(key.clone()).or_default();
        let data = match what {
            Appended::Batches(batches, rows, data) => {
                pp.batches.extend(batches);
                pp.rows += rows;
                tp.rows += rows;
                data
            }
            Appended::Quarantined(row) => {
                pp.quarantine.push(row);
                payload
            }
        };
        pp.data += data;
        tp.data += data;
        pp.next = offset + 1;
        pp.bytes += bytes;
        pp.payload += payload;
        pp.messages += 1;
        tp.bytes += bytes;
        tp.since.get_or_insert_with(Instant::now);
        self.pending_bytes += bytes;
        self.update_pending_gauge();
        if let Some(st) = self.parts.get_mut(&key) {
            st.expected = offset + 1;
        }
        self.after_append(table)
    }

    /// Adds the configured Kafka metadata columns (constant per message).
    fn with_metadata(
        &self,
        msg: &KafkaMessage,
        batches: Vec<RecordBatch>,
    ) -> Result<Vec<RecordBatch>, String> {
        let m = &self.tables_cfg.metadata;
        if !(m.partition || m.offset || m.timestamp || m.key) {
            return Ok(batches);
        }
        batches
            .into_iter()
            .map(|b| {
                let n = b.num_rows();
                let mut fields: Vec<Arc<Field>> = b.schema().fields().iter().cloned().collect();
                let mut cols: Vec<ArrayRef> = b.columns().to_vec();
                let mut add = |name: &str, ty: DataType, col: ArrayRef| -> Result<(), String> {
                    if fields.iter().any(|f| f.name() == name) {
                        return Err(format!("the message already has a column named {name:?}, which sluice adds as Kafka metadata"));
                    }
                    fields.push(Arc::new(Field::new(name, ty, true)));
                    cols.push(col);
                    Ok(())
                };
                if m.partition {
                    add("_kafka_partition", DataType::Int32, Arc::new(Int32Array::from_value(msg.partition(), n)))?;
                }
                if m.offset {
                    add("_kafka_offset", DataType::Int64, Arc::new(Int64Array::from_value(msg.offset(), n)))?;
                }
                if m.timestamp {
                    let ts = TimestampMillisecondArray::from(vec![msg.timestamp_ms(); n]).with_timezone("UTC");
                    add(
                        "_kafka_timestamp",
                        DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                        Arc::new(ts),
                    )?;
                }
                if m.key {
                    let k = BinaryArray::from_opt_vec(vec![msg.key(); n]);
                    add("_kafka_key", DataType::Binary, Arc::new(k))?;
                }
                RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).map_err(|e| e.to_string())
            })
            .collect()
    }

    fn after_append(&mut self, table: &Arc<str>) -> Result<(), PipelineError> {
        let trigger = self.pending.get(table).and_then(|tp| {
            if tp.data >= self.flush_cfg.max_bytes {
                Some(FlushTrigger::Bytes)
            } else if tp.rows >= self.flush_cfg.max_rows {
                Some(FlushTrigger::Rows)
            } else {
                None
            }
        });
        if let Some(t) = trigger {
            self.flush(table, t)?;
        }
        // The memory cap (pending plus in-flight bytes): flush the largest tables until below it,
        // waiting for the flush in flight (unless a failed flush is waiting: then the
        // partitions are paused instead).
        while self.pending_bytes + self.inflight_bytes >= self.pending_cap && self.retry.is_none() {
            if self.flusher.busy() {
                self.wait_inflight()?;
                continue;
            }
            let Some(largest) = self
                .pending
                .iter()
                .max_by_key(|(_, tp)| tp.bytes)
                .map(|(t, _)| t.clone())
            else {
                break;
            };
            self.flush(&largest, FlushTrigger::Memory)?;
        }
        Ok(())
    }

    fn flush_aged(&mut self) -> Result<(), PipelineError> {
        let max_age = Duration::from_millis(self.flush_cfg.max_age_ms);
        let aged: Vec<Arc<str>> = self
            .pending
            .iter()
            .filter(|(_, tp)| tp.since.is_some_and(|s| s.elapsed() >= max_age))
            .map(|(t, _)| t.clone())
            .collect();
        for t in aged {
            self.flush(&t, FlushTrigger::Age)?;
        }
        Ok(())
    }

    fn flush_all(&mut self, trigger: FlushTrigger) -> Result<(), PipelineError> {
        let tables: Vec<Arc<str>> = self.pending.keys().cloned().collect();
        for t in tables {
            self.flush(&t, trigger)?;
        }
        Ok(())
    }

    /// Runs the scheduled attempt of a failed flush when it is due.
    fn retry_due(&mut self) -> Result<(), PipelineError> {
        if !self.flusher.busy()
            && self.retry.as_ref().is_some_and(|r| Instant::now() >= r.at)
            && let Some(r) = self.retry.take()
        {
            self.flush_from(&r.table, r.trigger, r.attempts)?;
        }
        Ok(())
    }

    fn flush(&mut self, table: &Arc<str>, trigger: FlushTrigger) -> Result<(), PipelineError> {
        let blocking = matches!(trigger, FlushTrigger::Revoke | FlushTrigger::Shutdown);
        if blocking {
            self.wait_inflight()?;
        }
        match self.retry.take() {
            // A stop or a revoke cannot wait for the schedule: it retries in place, counting
            // the attempts already made.
            Some(r) if blocking => {
                let attempts = if &r.table == table { r.attempts } else { 0 };
                if &r.table != table {
                    self.retry = Some(r);
                }
                self.flush_from(table, trigger, attempts)
            }
            // While a failed flush waits, nothing else is flushed (the lake is failing).
            Some(r) => {
                self.retry = Some(r);
                Ok(())
            }
            None => self.flush_from(table, trigger, 0),
        }
    }

    /// Starts committing the pending data of `table` as one DuckLake transaction: on the flusher
    /// thread (the loop keeps polling, decoding and publishing live meanwhile), or in place for
    /// a stop or a revoke. One flush is in flight at a time; a trigger that finds the flusher
    /// busy fires again later.
    fn flush_from(
        &mut self,
        table: &Arc<str>,
        trigger: FlushTrigger,
        attempts_before: u32,
    ) -> Result<(), PipelineError> {
        let blocking = matches!(trigger, FlushTrigger::Revoke | FlushTrigger::Shutdown);
        if self.flusher.busy() {
            if !blocking {
                return Ok(());
            }
            self.wait_inflight()?;
        }
        let Some(tp) = self.pending.remove(table) else {
            return Ok(());
        };
        self.pending_bytes -= tp.bytes;
        self.inflight_bytes = tp.bytes;
        self.update_pending_gauge();
        let job = self.job(table.clone(), trigger, attempts_before, tp);
        if !blocking {
            return self.flusher.submit(job);
        }
        let mut job = job;
        loop {
            let result = self.lake.commit(&job.flush());
            match self.settle(job, result, true)? {
                Settled::Done => return Ok(()),
                Settled::Again(next, wait) => {
                    std::thread::sleep(wait);
                    job = *next;
                }
            }
        }
    }

    /// A commit job for `tp`, each partition's update conditional on the lake offset we know.
    fn job(
        &self,
        table: Arc<str>,
        trigger: FlushTrigger,
        attempts: u32,
        tp: TablePending,
    ) -> FlushJob {
        let mut batches = Vec::new();
        let mut quarantine = Vec::new();
        let mut offsets = Vec::new();
        let (mut messages, mut bytes) = (0u64, 0u64);
        for (key, pp) in &tp.parts {
            batches.extend(pp.batches.iter().cloned());
            quarantine.extend(pp.quarantine.iter().cloned());
            let prev = self.parts.get(key).map_or(NO_OFFSET, |st| st.lake_next);
            offsets.push(OffsetUpdate {
                topic: key.0.clone(),
                partition: key.1,
                prev,
                next: pp.next,
            });
            messages += pp.messages;
            bytes += pp.payload;
        }
        FlushJob {
            columns: self.lake.planned_columns(&table),
            table,
            trigger,
            attempts,
            conflicts: 0,
            tp,
            batches,
            quarantine,
            offsets,
            messages,
            bytes,
            not_before: None,
            live: self.live.clone(),
            compacted: None,
            started: Instant::now(),
        }
    }

    /// Applies the outcome of the in-flight flush if it has finished (never waits).
    fn poll_inflight(&mut self) -> Result<(), PipelineError> {
        while let Some((job, result)) = self.flusher.try_result()? {
            self.settle_async(job, result)?;
        }
        Ok(())
    }

    /// Waits for the in-flight flush, if any, and applies its outcome.
    fn wait_inflight(&mut self) -> Result<(), PipelineError> {
        while let Some((job, result)) = self.flusher.wait_result()? {
            self.settle_async(job, result)?;
        }
        Ok(())
    }

    fn settle_async(
        &mut self,
        job: FlushJob,
        result: Result<sink::CommitReport, SinkError>,
    ) -> Result<(), PipelineError> {
        match self.settle(job, result, false)? {
            Settled::Done => {}
            Settled::Again(mut next, wait) => {
                next.not_before = Some(Instant::now() + wait);
                self.flusher.submit(*next)?;
            }
        }
        Ok(())
    }

    /// Applies a commit's outcome. Success moves the partitions' lake offsets. An offset
    /// conflict drops that partition's data (in flight and pending) and re-seeks it. A commit
    /// conflict is retried at once with jittered backoff. Another failure is retried in place
    /// for a stop or a revoke; otherwise the data goes back in front of pending and the next
    /// attempt is scheduled (see [`Core::retry`]). After `flush.retry.attempts` failed attempts
    /// the pipeline stops with offsets unmoved.
    fn settle(
        &mut self,
        mut job: FlushJob,
        result: Result<sink::CommitReport, SinkError>,
        blocking: bool,
    ) -> Result<Settled, PipelineError> {
        let table = job.table.clone();
        match result {
            Ok(report) => {
                for o in &job.offsets {
                    if let Some(st) = self.parts.get_mut(&(o.topic.clone(), o.partition)) {
                        st.lake_next = o.next;
                    }
                    self.kafka_commits
                        .push((o.topic.clone(), o.partition, o.next));
                }
                let compacted = job.compacted.unwrap_or_else(|| job.compact());
                self.stats.compacted_bytes.fetch_add(compacted, Relaxed);
                for (key, pp) in &job.tp.parts {
                    let c = self.counters(&key.0);
                    c.committed_messages.fetch_add(pp.messages, Relaxed);
                    c.committed_rows.fetch_add(pp.rows, Relaxed);
                    c.committed_bytes.fetch_add(pp.payload, Relaxed);
                    c.quarantined.fetch_add(pp.quarantine.len() as u64, Relaxed);
                    self.stats.set_partition(&key.0, key.1, Some(pp.next), None);
                }
                self.stats
                    .flush_duration
                    .observe(job.started.elapsed().as_secs_f64());
                self.stats.flush_size.observe(job.bytes as f64);
                self.stats.lake_failing.store(false, Relaxed);
                self.stats.record_flush(
                    job.trigger,
                    report.rows,
                    job.messages,
                    job.bytes,
                    report.quarantined,
                );
                let ranges: Vec<String> = job
                    .offsets
                    .iter()
                    .map(|o| format!("{}[{}]:{}..{}", o.topic, o.partition, o.prev.max(0), o.next))
                    .collect();
                tracing::info!(
                    table = %table,
                    trigger = job.trigger.name(),
                    rows = report.rows,
                    bytes = job.bytes,
                    files = report.files,
                    file_bytes = report.file_bytes,
                    messages = job.messages,
                    quarantined = report.quarantined,
                    duration_ms = job.started.elapsed().as_millis() as u64,
                    offsets = %ranges.join(" "),
                    "flushed"
                );
                self.inflight_bytes = 0;
                self.update_pending_gauge();
                Ok(Settled::Done)
            }
            Err(SinkError::OffsetConflict { topic, partitions }) => {
                let mut tp = job.tp;
                for (p, cur) in partitions {
                    let key: PartKey = (Arc::from(topic.as_str()), p);
                    tracing::warn!(%topic, partition = p, lake_next = cur, "another writer committed this partition; dropping our pending range and re-seeking");
                    self.stats.offset_conflicts.fetch_add(1, Relaxed);
                    if let Some(pp) = tp.parts.remove(&key) {
                        tp.bytes -= pp.bytes;
                        tp.data -= pp.data;
                        tp.rows -= pp.rows;
                    }
                    // What was appended after the flush started continues the lost range.
                    self.drop_pending(&key);
                    self.stats.set_partition(&topic, p, Some(cur), None);
                    if let Some(st) = self.parts.get_mut(&key) {
                        st.lake_next = cur;
                        st.expected = cur.max(0);
                        let to = if cur == NO_OFFSET {
                            Offset::Beginning
                        } else {
                            Offset::Offset(cur)
                        };
                        self.reseek.push((key.0.clone(), p, to));
                    }
                }
                self.inflight_bytes = tp.bytes;
                self.update_pending_gauge();
                if tp.parts.is_empty() {
                    return Ok(Settled::Done);
                }
                let next = self.job(table, job.trigger, job.attempts, tp);
                Ok(Settled::Again(Box::new(next), Duration::ZERO))
            }
            Err(e @ SinkError::CommitConflict { .. }) => {
                // Another instance committed to the same tables meanwhile: expected with
                // several instances; retried soon, counted apart from failures.
                let retry = &self.flush_cfg.retry;
                job.conflicts += 1;
                self.stats.commit_conflicts.fetch_add(1, Relaxed);
                if job.conflicts >= retry.conflict_attempts {
                    return Err(PipelineError::FlushGaveUp {
                        table: table.to_string(),
                        attempts: job.conflicts,
                        last: e,
                    });
                }
                let wait = sink::jittered_backoff(
                    job.conflicts - 1,
                    retry.conflict_initial_backoff_ms,
                    retry.conflict_max_backoff_ms,
                );
                tracing::info!(table = %table, conflicts = job.conflicts, wait_ms = wait.as_millis() as u64, "commit conflict with another writer; retrying");
                Ok(Settled::Again(Box::new(job), wait))
            }
            Err(e) => {
                let retry = self.flush_cfg.retry.clone();
                let attempt = job.attempts + 1;
                self.stats.flush_failures.fetch_add(1, Relaxed);
                self.stats.lake_failing.store(true, Relaxed);
                if attempt >= retry.attempts {
                    return Err(PipelineError::FlushGaveUp {
                        table: table.to_string(),
                        attempts: attempt,
                        last: e,
                    });
                }
                let wait = sink::jittered_backoff(
                    attempt - 1,
                    retry.initial_backoff_ms,
                    retry.max_backoff_ms,
                );
                tracing::warn!(table = %table, attempt, error = %e, wait_ms = wait.as_millis() as u64, "flush failed; retrying");
                if blocking {
                    job.attempts = attempt;
                    return Ok(Settled::Again(Box::new(job), wait));
                }
                // Back to pending, in front of what arrived meanwhile; the loop keeps polling
                // with partitions paused until the scheduled attempt.
                self.restore(&table, job.tp);
                self.retry = Some(ScheduledRetry {
                    table,
                    trigger: job.trigger,
                    attempts: attempt,
                    at: Instant::now() + wait,
                });
                Ok(Settled::Done)
            }
        }
    }

    /// Puts the data of a failed flush back in front of the table's pending data.
    fn restore(&mut self, table: &Arc<str>, mut tp: TablePending) {
        self.inflight_bytes = 0;
        self.pending_bytes += tp.bytes;
        if let Some(later) = self.pending.remove(table) {
            for (key, pp) in later.parts {
                let into = tp.parts.entry(key).or_default();
                into.batches.extend(pp.batches);
                into.quarantine.extend(pp.quarantine);
                into.next = pp.next;
                into.bytes += pp.bytes;
                into.payload += pp.payload;
                into.data += pp.data;
                into.rows += pp.rows;
                into.messages += pp.messages;
            }
            tp.bytes += later.bytes;
            tp.data += later.data;
            tp.rows += later.rows;
            tp.since = match (tp.since, later.since) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        self.pending.insert(table.clone(), tp);
        self.update_pending_gauge();
    }

    fn update_pending_gauge(&self) {
        self.stats
            .pending_bytes
            .store(self.pending_bytes + self.inflight_bytes, Relaxed);
        self.stats
            .inflight_bytes
            .store(self.inflight_bytes, Relaxed);
    }
}

/// One flush: a table's pending data and the offsets it moves.
struct FlushJob {
    table: Arc<str>,
    trigger: FlushTrigger,
    /// Failed attempts before this one.
    attempts: u32,
    /// Commit conflicts before this attempt.
    conflicts: u32,
    tp: TablePending,
    batches: Vec<RecordBatch>,
    quarantine: Vec<QuarantineRow>,
    offsets: Vec<OffsetUpdate>,
    messages: u64,
    /// Payload bytes of its messages.
    bytes: u64,
    /// A retried commit waits until then.
    not_before: Option<Instant>,
    /// Columns to create the table with if it does not exist yet (see
    /// [`Lake::planned_columns`]).
    columns: Option<Vec<sink::Column>>,
    /// The live ring, whose batches of the committed ranges are compacted after the commit.
    live: Option<Arc<Ring>>,
    /// Bytes compacted by the flush thread after a successful commit (`None`: not done yet).
    compacted: Option<u64>,
    started: Instant,
}

impl FlushJob {
    /// Copies the live ring's batches of the committed ranges off their Kafka messages (they no
    /// longer need to stay pinned). Returns the bytes copied.
    fn compact(&self) -> u64 {
        let Some(ring) = &self.live else {
            return 0;
        };
        self.offsets
            .iter()
            .map(|o| ring.compact(&o.topic, o.partition, o.next))
            .sum()
    }

    fn flush(&self) -> TableFlush<'_> {
        TableFlush {
            table: &self.table,
            batches: &self.batches,
            quarantine: &self.quarantine,
            offsets: &self.offsets,
        }
    }
}

/// What to do after a commit's outcome was applied.
enum Settled {
    Done,
    /// Commit this (rebuilt) job again after the wait.
    Again(Box<FlushJob>, Duration),
}

type FlushResult = (FlushJob, Result<sink::CommitReport, SinkError>);

/// The thread that runs non-blocking commits on its own lake connection, one at a time.
struct Flusher {
    jobs: Option<std::sync::mpsc::Sender<FlushJob>>,
    results: std::sync::mpsc::Receiver<FlushResult>,
    /// The table of the flush in flight, if one is.
    inflight: Option<Arc<str>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flusher {
    fn start(mut lake: Lake) -> std::io::Result<Flusher> {
        let (jobs, job_rx) = std::sync::mpsc::channel::<FlushJob>();
        let (result_tx, results) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("sluice-flush".into())
            .spawn(move || {
                for mut job in job_rx {
                    if let Some(wait) = job
                        .not_before
                        .and_then(|t| t.checked_duration_since(Instant::now()))
                    {
                        std::thread::sleep(wait);
                    }
                    if let Some(c) = &job.columns {
                        lake.adopt_planned_columns(&job.table, c.clone());
                    }
                    let result = lake.commit(&job.flush());
                    if result.is_ok() {
                        // Off the poll thread: copying retained batches takes a while.
                        job.compacted = Some(job.compact());
                    }
                    if result_tx.send((job, result)).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Flusher {
            jobs: Some(jobs),
            results,
            inflight: None,
            thread: Some(thread),
        })
    }

    fn busy(&self) -> bool {
        self.inflight.is_some()
    }

    fn submit(&mut self, job: FlushJob) -> Result<(), PipelineError> {
        debug_assert!(!self.busy(), "one flush in flight at a time");
        let table = job.table.clone();
        if self.jobs.as_ref().is_none_or(|j| j.send(job).is_err()) {
            return Err(Self::lost(&table));
        }
        self.inflight = Some(table);
        Ok(())
    }

    fn lost(table: &str) -> PipelineError {
        PipelineError::Flusher(format!(
            "ended unexpectedly while flushing table {table}; offsets of its data were not moved"
        ))
    }

    fn try_result(&mut self) -> Result<Option<FlushResult>, PipelineError> {
        let Some(table) = &self.inflight else {
            return Ok(None);
        };
        match self.results.try_recv() {
            Ok(r) => {
                self.inflight = None;
                Ok(Some(r))
            }
            Err(std::sync::mpsc::TryRecvError::Empty) => Ok(None),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => Err(Self::lost(table)),
        }
    }

    fn wait_result(&mut self) -> Result<Option<FlushResult>, PipelineError> {
        let Some(table) = self.inflight.take() else {
            return Ok(None);
        };
        self.results
            .recv()
            .map(Some)
            .map_err(|_| Self::lost(&table))
    }
}

impl Drop for Flusher {
    /// Lets an in-flight commit finish (its outcome is discarded), then ends the thread.
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs `f` with the flush retry policy (for lake reads at assignment).
fn with_retry<T>(
    cfg: &FlushConfig,
    mut f: impl FnMut() -> Result<T, SinkError>,
) -> Result<T, SinkError> {
    let mut attempt = 0;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) => {
                attempt += 1;
                if attempt >= cfg.retry.attempts {
                    return Err(e);
                }
                let wait = sink::jittered_backoff(
                    attempt - 1,
                    cfg.retry.initial_backoff_ms,
                    cfg.retry.max_backoff_ms,
                );
                tracing::warn!(error = %e, attempt, "lake read failed; retrying");
                std::thread::sleep(wait);
            }
        }
    }
}
