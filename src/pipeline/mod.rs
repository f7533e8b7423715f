//! `pipeline`: poll → decode → pending[table] → flush → commit, with exactly-once offsets, the
//! memory cap, quarantine of bad payloads, rebalance handling and a clean stop.
//!
//! One thread runs the loop ([`Pipeline::run`]). Each step is a chain of calls that return
//! values:
//!
//! 1. [`KafkaSource::poll`] returns a [`KafkaMessage`]; rebalance callbacks run inside it and
//!    leave their results in the handler's inbox, drained right after.
//! 2. A finished flush is settled before the new message is handled: [`Committer::finished`]
//!    returns a [`commit::Flushed`] whose [`commit::Outcome`] [`Line::settle`] matches on.
//! 3. [`Partitions::route`] says which table the message feeds, [`ingest::ingest`] decodes it
//!    into batches or a quarantine row, [`Pending::append`] holds it.
//! 4. [`policy::next`] says what to flush; the flush is a [`commit::FlushJob`] handed to the
//!    flush thread ([`Committer::submit`]), which commits it on its own lake connection.
//! 5. What the consumer must do (record offsets for lag tooling, seek after a conflict, pause
//!    while the lake fails) comes back as [`ConsumerActions`], applied once the state lock is
//!    released.
//!
//! The state the rebalance callback needs sits behind a mutex that is never held across `poll`.
//! A stop or a revoke waits for the flush in flight, then commits in place.

mod commit;
mod ingest;
mod partitions;
mod pending;
pub mod policy;
mod rebalance;
mod settle;

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::live::ring::Ring;
use crate::observe::Stats;
use crate::retry::Backoff;
use crate::sink::{Lake, SinkError};
use crate::source::{ConsumerActions, KafkaMessage, KafkaSource, PartitionKey, SourceError};
use crate::sync::lock;
use commit::{Committer, FlushJob};
use ingest::{Decoding, Ingested};
pub use partitions::{GapKind, OffsetGap};
use partitions::{Partitions, Route};
use pending::{Entry, Pending, Totals};
pub use policy::Trigger;
use policy::{Action, CommitState, Limits};
use rebalance::{Inbox, Rebalance};

/// How long one poll waits for a message.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// How often the live ring's age expiry runs.
const EXPIRE_EVERY: Duration = Duration::from_millis(100);

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
    /// A partition's lake offset is outside the broker's watermarks and
    /// `kafka.on_offset_gap` is `fail`.
    #[error(transparent)]
    OffsetGap(#[from] OffsetGap),
    /// Two topics would share a table that the name template derived (a topic matched by a
    /// pattern, found when first assigned); nothing of the new topic was read.
    #[error("{0}")]
    TableCollision(String),
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

/// The next attempt of a failed flush. While one waits, no other flush runs and every assigned
/// partition is paused: memory stays bounded while the loop keeps polling (heartbeats,
/// rebalances) instead of sleeping.
struct ScheduledRetry {
    table: Arc<str>,
    trigger: Trigger,
    /// Failed attempts so far.
    failures: u32,
    at: Instant,
}

/// The retry policies of a flush.
struct Retries {
    /// A failing lake (`flush.retry.attempts`, …).
    failures: Backoff,
    /// A commit lost to a concurrent transaction (`flush.retry.conflict_attempts`, …).
    conflicts: Backoff,
}

/// The pipeline's state: what the loop and the rebalance callback work on.
struct Line {
    lake: Lake,
    partitions: Partitions,
    pending: Pending,
    committer: Committer,
    retry: Option<ScheduledRetry>,
    decoding: Decoding,
    limits: Limits,
    retries: Retries,
    live: Option<Arc<Ring>>,
    last_expire: Instant,
    stats: Arc<Stats>,
}

/// A running sluice pipeline.
pub struct Pipeline {
    source: KafkaSource,
    line: Arc<Mutex<Line>>,
    inbox: Arc<Inbox>,
    stats: Arc<Stats>,
    /// Whether the assigned partitions are paused (a flush is waiting to be retried).
    paused: Cell<bool>,
}

impl Pipeline {
    /// Opens the lake, creates the consumer and subscribes to the configured topics.
    pub fn new(cfg: &Config, stats: Arc<Stats>) -> Result<Self, PipelineError> {
        let conflicts = Backoff::conflicts(&cfg.flush.retry);
        let lake = Lake::open_with(&cfg.lake, &cfg.kafka.group_id, conflicts)?;
        Self::with_lake(cfg, lake, stats)
    }

    /// Like [`Pipeline::new`], on an already attached lake handle (e.g. [`Lake::another`] of a
    /// lake shared by several pipelines in one process).
    pub fn with_lake(
        cfg: &Config,
        mut lake: Lake,
        stats: Arc<Stats>,
    ) -> Result<Self, PipelineError> {
        lake.set_tables(&cfg.tables);
        let source = KafkaSource::new(&cfg.kafka)?;
        let committer = Committer::start(lake.another(lake.group())?)
            .map_err(|e| PipelineError::Flusher(format!("could not start: {e}")))?;
        let budget = cfg.memory_budget();
        let line = Arc::new(Mutex::new(Line {
            lake,
            partitions: Partitions::new(
                cfg.tables.clone(),
                cfg.kafka.start_from,
                cfg.kafka.on_offset_gap,
                stats.clone(),
            ),
            pending: Pending::default(),
            committer,
            retry: None,
            decoding: Decoding {
                decoder: crate::decode::Decoder::new(),
                copy_payloads: cfg.kafka.copy_payloads,
                metadata: cfg.tables.metadata.clone(),
            },
            limits: Limits {
                max_bytes: cfg.flush.max_bytes,
                max_rows: cfg.flush.max_rows,
                max_age: Duration::from_millis(cfg.flush.max_age_ms),
                pending_cap: budget.pending,
            },
            retries: Retries {
                failures: Backoff::failures(&cfg.flush.retry),
                conflicts: Backoff::conflicts(&cfg.flush.retry),
            },
            live: None,
            last_expire: Instant::now(),
            stats: stats.clone(),
        }));
        stats.pending_cap_bytes.store(budget.pending, Relaxed);
        stats
            .memory_limit_bytes
            .store(cfg.memory.limit_bytes.unwrap_or(0), Relaxed);
        let inbox = Arc::new(Inbox::default());
        source.set_stats(stats.clone());
        source.set_handler(Arc::new(Rebalance {
            line: line.clone(),
            inbox: inbox.clone(),
        }));
        source.subscribe(&cfg.kafka.topics)?;
        Ok(Pipeline {
            source,
            line,
            inbox,
            stats,
            paused: Cell::new(false),
        })
    }

    /// Publishes every decoded batch to `ring` (the live Flight endpoint's retention).
    pub fn attach_live(&self, ring: Arc<Ring>) {
        lock(&self.line).live = Some(ring);
    }

    /// Another handle on the pipeline's lake (its own connection), e.g. for maintenance.
    pub fn another_lake(&self) -> Result<Lake, SinkError> {
        let line = lock(&self.line);
        line.lake.another(line.lake.group())
    }

    /// Counters of this pipeline.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Consumes until `stop` is set, then flushes everything pending, commits and leaves the
    /// group. Returns an error (offsets unmoved for what was not committed) if a flush gives up.
    pub fn run(self, stop: &AtomicBool) -> Result<(), PipelineError> {
        let result = self.run_for(Duration::MAX, stop).and_then(|()| {
            let mut line = lock(&self.line);
            let mut actions = line.await_commit()?;
            actions.extend(line.flush_all(Trigger::Shutdown)?);
            Ok(actions)
        });
        let result = result.map(|actions| self.apply(actions));
        if result.is_ok() {
            self.source.close();
        }
        self.source.clear_handler();
        let mut line = lock(&self.line);
        line.pending.clear();
        line.publish_gauges();
        result
    }

    /// Drops in-memory state without flushing, as a crash would (tests of restart behavior).
    pub fn abandon(self) {
        self.source.clear_handler();
        lock(&self.line).pending.clear();
    }

    /// Runs the loop for at most `max` (or until `stop`), without the final flush: the caller
    /// may then [`Pipeline::abandon`] it, or continue with [`Pipeline::run`].
    pub fn run_for(&self, max: Duration, stop: &AtomicBool) -> Result<(), PipelineError> {
        let deadline = Instant::now().checked_add(max);
        while deadline.is_none_or(|d| Instant::now() < d) && !stop.load(Relaxed) {
            self.step()?;
        }
        Ok(())
    }

    /// One turn of the loop: poll, drain the rebalance inbox, settle a finished flush, handle
    /// the message, run the flush policy; then the consumer-side work.
    fn step(&self) -> Result<(), PipelineError> {
        let polled = self.source.poll(POLL_TIMEOUT);
        self.stats
            .last_poll_ms
            .store(crate::observe::now_ms(), Relaxed);
        let mut actions = ConsumerActions::default();
        for result in std::mem::take(&mut *lock(&self.inbox)) {
            actions.extend(result?);
        }
        let (hold, assigned) = {
            let mut line = lock(&self.line);
            actions.extend(line.settle_finished()?);
            match polled {
                None => {}
                // Fetched before the seek this step makes (another writer committed its
                // partition): the partition is read again from the lake's offset, and this
                // message with it.
                Some(Ok(msg)) if actions.seeks_partition(msg.topic(), msg.partition()) => {
                    self.stats.stale_messages.fetch_add(1, Relaxed);
                }
                Some(Ok(msg)) => line.ingest(msg)?,
                Some(Err(SourceError::OutOfRange)) => {
                    let probe = |k: &PartitionKey| self.source.watermarks(k);
                    actions.extend(line.fetch_out_of_range(&probe)?);
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "kafka consumer error (librdkafka retries)")
                }
            }
            actions.extend(line.run_policy()?);
            line.expire_live();
            line.publish_gauges();
            let hold = line.retry.is_some();
            let assigned = if hold || self.paused.get() {
                line.partitions.keys()
            } else {
                Vec::new()
            };
            (hold, assigned)
        };
        self.hold(hold, &assigned);
        self.apply(actions);
        Ok(())
    }

    /// Pauses every assigned partition while a failed flush waits for its retry (re-applied
    /// every step, so partitions assigned meanwhile are paused too), and resumes them after.
    fn hold(&self, hold: bool, assigned: &[PartitionKey]) {
        if hold {
            if let Err(e) = self.source.pause(assigned) {
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
            if let Err(e) = self.source.resume(assigned) {
                tracing::warn!(error = %e, "resuming partitions failed");
            }
            tracing::info!(partitions = assigned.len(), "partitions resumed");
            self.stats.paused_partitions.store(0, Relaxed);
            self.paused.set(false);
        }
    }

    /// Consumer-side work that must not run under the state lock or inside a callback.
    fn apply(&self, actions: ConsumerActions) {
        if !actions.commits.is_empty() {
            self.source.commit_for_lag_tooling(&actions.commits);
        }
        if let Some(r) = &actions.restarts
            && let Err(e) = self.source.restart(r)
        {
            tracing::error!(error = %e, partitions = ?r.partitions, "could not start fetching again after an offset gap");
        }
        for (key, offset) in actions.seeks {
            if let Err(e) = self.source.seek(&key, offset) {
                tracing::warn!(topic = %key.topic, partition = key.partition, error = %e, "re-seek after offset conflict failed");
            }
        }
    }
}

impl Line {
    /// Decodes one polled message into its table's pending data (or quarantine).
    fn ingest(&mut self, msg: KafkaMessage) -> Result<(), PipelineError> {
        let meta = msg.meta();
        let key = meta.key();
        let (table, counters) = match self.partitions.route(&key, meta.offset) {
            Route::NotOurs => return Ok(()),
            Route::Stale => {
                self.stats.stale_messages.fetch_add(1, Relaxed);
                return Ok(());
            }
            Route::Table { table, counters } => (table, counters),
        };
        let ingested = ingest::ingest(&msg, &meta, &table, &mut self.decoding, &mut self.lake);
        let payload = msg.payload_len() as u64;
        let (entry, totals) = match ingested {
            Ok(Ingested::Batches {
                batches,
                rows,
                copies,
            }) => {
                self.stats.record_message(&counters, payload, rows, &copies);
                let memory = payload + copies.copied();
                if let Some(ring) = &self.live {
                    // Whether the batches reference the Kafka message (any slice of its
                    // payload, even an empty one, keeps it alive): then the ring copies them
                    // after the lake commit.
                    ring.push(&meta, &batches, memory, msg.is_referenced());
                }
                let totals = Totals {
                    memory,
                    payload,
                    data: copies.data(),
                    rows,
                    messages: 1,
                };
                (Entry::Batches(batches), totals)
            }
            Ok(Ingested::Quarantined(row)) => {
                self.stats
                    .record_message(&counters, payload, 0, &Default::default());
                let totals = Totals {
                    memory: payload,
                    payload,
                    data: payload,
                    rows: 0,
                    messages: 1,
                };
                (Entry::Quarantined(row), totals)
            }
            // The lake could not describe the batches' columns: a lake failure, not a bad
            // payload; the pipeline stops with nothing of the message committed.
            Err(e) => return Err(e.into()),
        };
        self.pending
            .append(&table, &key, meta.offset, entry, totals, Instant::now());
        self.partitions.advance(&key, meta.offset);
        Ok(())
    }

    /// Runs what the flush policy says until nothing is due.
    fn run_policy(&mut self) -> Result<ConsumerActions, PipelineError> {
        let mut actions = ConsumerActions::default();
        loop {
            let state = CommitState {
                inflight: self.committer.inflight(),
                retry: self.retry.as_ref().map(|r| r.at),
            };
            match policy::next(&self.pending, &state, Instant::now(), &self.limits) {
                None => return Ok(actions),
                Some(Action::Flush { table, trigger }) => {
                    actions.extend(self.flush(&table, trigger)?)
                }
                Some(Action::Retry) => {
                    if let Some(r) = self.retry.take() {
                        actions.extend(self.start_flush(&r.table, r.trigger, r.failures)?);
                    }
                }
                Some(Action::AwaitCommit) => actions.extend(self.await_commit()?),
            }
        }
    }

    /// Flushes every table with pending data.
    fn flush_all(&mut self, trigger: Trigger) -> Result<ConsumerActions, PipelineError> {
        let mut actions = ConsumerActions::default();
        for t in self.pending.table_names() {
            actions.extend(self.flush(&t, trigger)?);
        }
        Ok(actions)
    }

    /// Flushes `table` for `trigger`. A stop or a revoke first waits for the flush in flight,
    /// and cannot wait for a scheduled retry either: it retries in place, counting the attempts
    /// already made.
    fn flush(
        &mut self,
        table: &Arc<str>,
        trigger: Trigger,
    ) -> Result<ConsumerActions, PipelineError> {
        if !trigger.blocks() {
            return self.start_flush(table, trigger, 0);
        }
        let mut actions = self.await_commit()?;
        let failures = match self.retry.take() {
            Some(r) if &r.table == table => r.failures,
            other => {
                self.retry = other;
                0
            }
        };
        actions.extend(self.start_flush(table, trigger, failures)?);
        Ok(actions)
    }

    /// Starts committing the pending data of `table` as one DuckLake transaction: on the flush
    /// thread, or in place for a stop or a revoke.
    fn start_flush(
        &mut self,
        table: &Arc<str>,
        trigger: Trigger,
        failures: u32,
    ) -> Result<ConsumerActions, PipelineError> {
        let Some(data) = self.pending.take(table) else {
            return Ok(ConsumerActions::default());
        };
        let mut job = FlushJob::new(
            table.clone(),
            trigger,
            data,
            &self.partitions,
            self.live.clone(),
        );
        job.failures = failures;
        if !trigger.blocks() {
            self.committer.submit(job, Duration::ZERO)?;
            return Ok(ConsumerActions::default());
        }
        self.commit_in_place(job)
    }

    /// Commits `job` on the loop's own lake connection, retrying in place until it settles.
    fn commit_in_place(&mut self, mut job: FlushJob) -> Result<ConsumerActions, PipelineError> {
        let mut actions = ConsumerActions::default();
        let mut wait = Duration::ZERO;
        loop {
            let outcome = Committer::commit_in_place(&mut job, &mut self.lake, wait);
            let settled = self.settle(commit::Flushed { job, outcome }, true)?;
            actions.extend(settled.actions);
            match settled.again {
                None => return Ok(actions),
                Some((next, after)) => (job, wait) = (next, after),
            }
        }
    }

    /// Settles the flush in flight if it has finished (never waits).
    fn settle_finished(&mut self) -> Result<ConsumerActions, PipelineError> {
        let mut actions = ConsumerActions::default();
        while let Some(flushed) = self.committer.finished()? {
            actions.extend(self.settle_async(flushed)?);
        }
        Ok(actions)
    }

    /// Waits until no flush is in flight, settling each.
    fn await_commit(&mut self) -> Result<ConsumerActions, PipelineError> {
        let mut actions = ConsumerActions::default();
        while let Some(flushed) = self.committer.wait()? {
            actions.extend(self.settle_async(flushed)?);
        }
        Ok(actions)
    }

    /// Settles a flush of the flush thread; one to be tried again goes back to it.
    fn settle_async(&mut self, flushed: commit::Flushed) -> Result<ConsumerActions, PipelineError> {
        let settled = self.settle(flushed, false)?;
        if let Some((job, wait)) = settled.again {
            self.committer.submit(job, wait)?;
        }
        Ok(settled.actions)
    }

    /// Age expiry of idle topics in the live ring, and the retained-bytes gauge: every 100 ms,
    /// not per message.
    fn expire_live(&mut self) {
        if let Some(ring) = &self.live
            && self.last_expire.elapsed() >= EXPIRE_EVERY
        {
            self.stats.live_bytes.store(ring.expire(), Relaxed);
            self.last_expire = Instant::now();
        }
    }

    /// The pending-memory gauges: pending plus in flight, and in flight alone.
    fn publish_gauges(&self) {
        let inflight = self.committer.inflight().unwrap_or(0);
        self.stats
            .pending_bytes
            .store(self.pending.memory() + inflight, Relaxed);
        self.stats.inflight_bytes.store(inflight, Relaxed);
    }
}
