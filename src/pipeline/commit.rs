//! Commits: a [`FlushJob`] is one table's pending data with the offsets it moves; committing it
//! is one DuckLake transaction, on the flush thread (the loop keeps polling, decoding and
//! publishing live meanwhile) or in place for a stop or a revoke. What happened comes back as an
//! [`Outcome`] value that the loop matches on.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;

use super::PipelineError;
use super::partitions::Partitions;
use super::pending::TablePending;
use super::policy::Trigger;
use crate::live::ring::Ring;
use crate::sink::{CommitReport, Lake, OffsetUpdate, QuarantineRow, SinkError, TableFlush};

/// One flush: a table's pending data and the offsets it moves.
pub struct FlushJob {
    /// The table.
    pub table: Arc<str>,
    /// Why it runs.
    pub trigger: Trigger,
    /// Failed attempts before this one.
    pub failures: u32,
    /// Commit conflicts before this attempt.
    pub conflicts: u32,
    /// The data, as taken from pending (it goes back there if the flush fails).
    pub data: TablePending,
    batches: Vec<RecordBatch>,
    quarantine: Vec<QuarantineRow>,
    /// Each partition's move, conditional on the lake offset we know.
    pub offsets: Vec<OffsetUpdate>,
    /// The live ring, whose batches of the committed ranges are compacted after the commit.
    live: Option<Arc<Ring>>,
    /// Bytes compacted by the flush thread after a successful commit (`None`: not done yet).
    pub compacted: Option<u64>,
    /// A retried commit waits until then.
    not_before: Option<Instant>,
    /// When the first attempt started.
    pub started: Instant,
}

impl FlushJob {
    /// A job committing `data` into `table`, each partition's update conditional on the lake
    /// offset `partitions` knows.
    pub fn new(
        table: Arc<str>,
        trigger: Trigger,
        data: TablePending,
        partitions: &Partitions,
        live: Option<Arc<Ring>>,
    ) -> FlushJob {
        let mut batches = Vec::new();
        let mut quarantine = Vec::new();
        let mut offsets = Vec::new();
        for (key, p) in data.parts() {
            batches.extend(p.batches.iter().cloned());
            quarantine.extend(p.quarantine.iter().cloned());
            offsets.push(OffsetUpdate {
                topic: key.topic.clone(),
                partition: key.partition,
                prev: partitions.lake_next(key),
                next: p.next,
            });
        }
        FlushJob {
            table,
            trigger,
            failures: 0,
            conflicts: 0,
            data,
            batches,
            quarantine,
            offsets,
            live,
            compacted: None,
            not_before: None,
            started: Instant::now(),
        }
    }

    /// The same flush over `data` reduced (after an offset conflict dropped partitions): the
    /// offsets are taken again, the failures made so far kept.
    pub fn rebuilt(self, partitions: &Partitions) -> FlushJob {
        let failures = self.failures;
        let mut next = FlushJob::new(self.table, self.trigger, self.data, partitions, self.live);
        next.failures = failures;
        next
    }

    /// Commits the job on `lake` (in place, or on the flush thread).
    fn commit(&mut self, lake: &mut Lake) -> Outcome {
        let flush = TableFlush {
            table: &self.table,
            batches: &self.batches,
            quarantine: &self.quarantine,
            offsets: &self.offsets,
        };
        Outcome::of(lake.commit(&flush))
    }

    /// Copies the live ring's batches of the committed ranges off their Kafka messages (they no
    /// longer need to stay pinned). Returns the bytes copied.
    pub fn compact(&self) -> u64 {
        let Some(ring) = &self.live else {
            return 0;
        };
        self.offsets
            .iter()
            .map(|o| ring.compact(&o.topic, o.partition, o.next))
            .sum()
    }

    /// Commit log line: `topic[partition]:from..to` per partition.
    pub fn ranges(&self) -> String {
        let ranges: Vec<String> = self
            .offsets
            .iter()
            .map(|o| format!("{}[{}]:{}..{}", o.topic, o.partition, o.prev.max(0), o.next))
            .collect();
        ranges.join(" ")
    }
}

/// What committing a flush did.
#[derive(Debug)]
pub enum Outcome {
    /// Committed: data, offsets and quarantine are in the lake.
    Committed(CommitReport),
    /// Another writer committed some of these partitions first: (topic, [(partition, the
    /// lake's next offset now)]). Nothing was committed.
    OffsetConflict {
        /// Topic of the partitions.
        topic: String,
        /// (partition, next offset in the lake now).
        partitions: Vec<(i32, i64)>,
    },
    /// DuckLake rejected the commit for a concurrent transaction on the same tables: the whole
    /// transaction can be retried soon. Nothing was committed.
    CommitConflict(SinkError),
    /// The table changed since the flush's batches were checked (another writer or an
    /// operator altered it) so that some no longer fit. None of its rows were committed; its
    /// messages are read and checked again.
    TableChanged(SinkError),
    /// The lake failed (unreachable, refusing, full); retrying later may succeed. Nothing was
    /// committed.
    Retryable(SinkError),
    /// The flush can never succeed as it is (its batches cannot be handed to DuckDB). Nothing
    /// was committed.
    Fatal(SinkError),
}

impl Outcome {
    /// Classifies a commit's result.
    pub fn of(result: Result<CommitReport, SinkError>) -> Outcome {
        match result {
            Ok(report) => Outcome::Committed(report),
            Err(SinkError::OffsetConflict { topic, partitions }) => {
                Outcome::OffsetConflict { topic, partitions }
            }
            Err(e @ SinkError::CommitConflict { .. }) => Outcome::CommitConflict(e),
            Err(e @ SinkError::Schema(_)) => Outcome::TableChanged(e),
            Err(e @ SinkError::Arrow { .. }) => Outcome::Fatal(e),
            Err(e) => Outcome::Retryable(e),
        }
    }
}

/// A finished flush and what came of it.
pub struct Flushed {
    /// The job.
    pub job: FlushJob,
    /// Its outcome.
    pub outcome: Outcome,
}

/// The thread that runs commits on its own lake connection, one at a time, and the in-flight
/// bookkeeping the flush policy reads.
pub struct Committer {
    jobs: Option<Sender<FlushJob>>,
    results: Receiver<Flushed>,
    /// (table, memory) of the flush in flight, if one is.
    inflight: Option<(Arc<str>, u64)>,
    thread: Option<JoinHandle<()>>,
}

impl Committer {
    /// Starts the flush thread on `lake` (a handle of its own).
    pub fn start(mut lake: Lake) -> std::io::Result<Committer> {
        let (jobs, job_rx) = channel::<FlushJob>();
        let (result_tx, results) = channel();
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
                    let outcome = job.commit(&mut lake);
                    if matches!(outcome, Outcome::Committed(_)) {
                        // Off the poll thread: copying retained batches takes a while.
                        job.compacted = Some(job.compact());
                    }
                    if result_tx.send(Flushed { job, outcome }).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Committer {
            jobs: Some(jobs),
            results,
            inflight: None,
            thread: Some(thread),
        })
    }

    /// Memory of the flush in flight, if one is.
    pub fn inflight(&self) -> Option<u64> {
        self.inflight.as_ref().map(|(_, m)| *m)
    }

    /// Hands `job` to the flush thread, to start after `wait`.
    pub fn submit(&mut self, mut job: FlushJob, wait: Duration) -> Result<(), PipelineError> {
        debug_assert!(self.inflight.is_none(), "one flush in flight at a time");
        job.not_before = (!wait.is_zero()).then(|| Instant::now() + wait);
        let (table, memory) = (job.table.clone(), job.data.totals().memory);
        if self.jobs.as_ref().is_none_or(|j| j.send(job).is_err()) {
            return Err(lost(&table));
        }
        self.inflight = Some((table, memory));
        Ok(())
    }

    /// Commits `job` on the caller's `lake` connection after `wait` (a stop's or a revoke's
    /// flush, which cannot wait for the flush thread).
    pub fn commit_in_place(job: &mut FlushJob, lake: &mut Lake, wait: Duration) -> Outcome {
        std::thread::sleep(wait);
        job.commit(lake)
    }

    /// The finished flush, if the one in flight has finished (never waits).
    pub fn finished(&mut self) -> Result<Option<Flushed>, PipelineError> {
        let Some((table, _)) = &self.inflight else {
            return Ok(None);
        };
        match self.results.try_recv() {
            Ok(r) => {
                self.inflight = None;
                Ok(Some(r))
            }
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(lost(table)),
        }
    }

    /// Waits for the flush in flight, if any.
    pub fn wait(&mut self) -> Result<Option<Flushed>, PipelineError> {
        let Some((table, _)) = self.inflight.take() else {
            return Ok(None);
        };
        self.results.recv().map(Some).map_err(|_| lost(&table))
    }
}

fn lost(table: &str) -> PipelineError {
    PipelineError::Flusher(format!(
        "ended unexpectedly while flushing table {table}; offsets of its data were not moved"
    ))
}

impl Drop for Committer {
    /// Lets an in-flight commit finish (its outcome is discarded), then ends the thread.
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
