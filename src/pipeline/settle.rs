//! Settling a flush: the loop matches on its [`Outcome`]. A commit moves the partitions'
//! lake offsets. An offset conflict drops those partitions' data (in flight and pending) and
//! re-seeks them. A commit conflict is retried soon with jittered backoff. A failure is retried
//! in place for a stop or a revoke; otherwise the data goes back in front of pending and the
//! next attempt is scheduled (see [`ScheduledRetry`]). After `flush.retry.attempts` failures,
//! or a fatal one, the pipeline stops with offsets unmoved.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::commit::{FlushJob, Flushed, Outcome};
use super::{Line, PipelineError, ScheduledRetry};
use crate::observe::Committed;
use crate::sink::{CommitReport, SinkError};
use crate::source::{ConsumerActions, PartitionKey};

/// What settling a flush leaves to do.
pub(super) struct Settled {
    /// Consumer-side work.
    pub actions: ConsumerActions,
    /// A job to commit again, after the wait.
    pub again: Option<(FlushJob, Duration)>,
}

impl Settled {
    fn done(actions: ConsumerActions) -> Settled {
        Settled {
            actions,
            again: None,
        }
    }

    fn again(job: FlushJob, wait: Duration) -> Settled {
        Settled {
            actions: ConsumerActions::default(),
            again: Some((job, wait)),
        }
    }
}

impl Line {
    /// Applies a flush's outcome. `in_place`: the flush is a stop's or a revoke's, retried in
    /// place rather than scheduled.
    pub(super) fn settle(&mut self, f: Flushed, in_place: bool) -> Result<Settled, PipelineError> {
        match f.outcome {
            Outcome::Committed(report) => Ok(Settled::done(self.committed(f.job, &report))),
            Outcome::OffsetConflict { topic, partitions } => {
                Ok(self.overtaken(f.job, &topic, &partitions))
            }
            Outcome::CommitConflict(e) => self.conflicted(f.job, e),
            Outcome::TableChanged(e) => Ok(Settled::done(self.outdated(f.job, &e))),
            Outcome::Retryable(e) => self.failed(f.job, e, in_place),
            Outcome::Fatal(e) => {
                self.stats.flush_failures.fetch_add(1, Relaxed);
                Err(gave_up(&f.job, f.job.failures + 1, e))
            }
        }
    }

    /// The flush is in the lake: offsets move, counters count it, Kafka records the offsets.
    fn committed(&mut self, job: FlushJob, report: &CommitReport) -> ConsumerActions {
        let mut actions = ConsumerActions::default();
        for o in &job.offsets {
            let key = PartitionKey {
                topic: o.topic.clone(),
                partition: o.partition,
            };
            self.partitions.committed(&key, o.next);
            actions.commits.push((key, o.next));
        }
        let compacted = job.compacted.unwrap_or_else(|| job.compact());
        self.stats.compacted_bytes.fetch_add(compacted, Relaxed);
        let coalesced = report.coalesced.bytes;
        self.stats.coalesced_bytes.fetch_add(coalesced, Relaxed);
        let parts: Vec<Committed> = job
            .data
            .parts()
            .map(|(key, p)| Committed {
                topic: &key.topic,
                messages: p.totals.messages,
                rows: p.totals.rows,
                bytes: p.totals.payload,
                quarantined: p.quarantine.len() as u64,
            })
            .collect();
        for c in &report.changes {
            self.stats.record_schema_change(&job.table, c.kind());
            tracing::info!(
                table = %job.table,
                column = c.column(),
                from = c.from().unwrap_or("(new column)"),
                to = c.to(),
                "table schema evolved"
            );
        }
        let seconds = job.started.elapsed().as_secs_f64();
        self.stats.record_flush(job.trigger.name(), seconds, &parts);
        let totals = job.data.totals();
        tracing::info!(
            table = %job.table,
            trigger = job.trigger.name(),
            rows = report.rows,
            bytes = totals.payload,
            files = report.files,
            file_bytes = report.file_bytes,
            joined_batches = report.coalesced.batches,
            messages = totals.messages,
            quarantined = report.quarantined,
            duration_ms = job.started.elapsed().as_millis() as u64,
            offsets = %job.ranges(),
            "flushed"
        );
        actions
    }

    /// Another writer committed some of the flush's partitions first: their data (in flight
    /// and what arrived since, which continues the lost range) is dropped and the partitions
    /// re-sought to the lake's offset. The rest of the flush is committed again at once.
    fn overtaken(&mut self, mut job: FlushJob, topic: &str, partitions: &[(i32, i64)]) -> Settled {
        let mut actions = ConsumerActions::default();
        let topic: Arc<str> = topic.into();
        for &(partition, lake_now) in partitions {
            let key = PartitionKey {
                topic: topic.clone(),
                partition,
            };
            tracing::warn!(%topic, partition, lake_next = lake_now, "another writer committed this partition; dropping our pending range and re-seeking");
            self.stats.offset_conflicts.fetch_add(1, Relaxed);
            job.data.remove(&key);
            self.pending.drop_partition(&key);
            if let Some(to) = self.partitions.overtaken(&key, lake_now) {
                actions.seeks.push((key, to));
            }
        }
        if job.data.is_empty() {
            return Settled::done(actions);
        }
        Settled {
            actions,
            again: Some((job.rebuilt(&self.partitions), Duration::ZERO)),
        }
    }

    /// The table changed under the flush so that some of its batches no longer fit: the
    /// handle forgets what it knew of the table, and the flush's partitions (their data in
    /// flight and pending) are read again from the flush's first message, so each message is
    /// checked against the table as it is now (and quarantined if it does not fit). Nothing was
    /// committed, so nothing is lost or duplicated.
    fn outdated(&mut self, job: FlushJob, e: &SinkError) -> ConsumerActions {
        tracing::warn!(table = %job.table, offsets = %job.ranges(), error = %e, "the table changed under this flush; its messages are read and checked again");
        self.lake.forget_table(&job.table);
        let mut actions = ConsumerActions::default();
        for (key, p) in job.data.parts() {
            self.pending.drop_partition(key);
            if let Some(first) = p.first
                && let Some(to) = self.partitions.rewind(key, first)
            {
                actions.seeks.push((key.clone(), to));
            }
        }
        actions
    }

    /// Another instance committed to the same tables meanwhile: expected with several
    /// instances; retried soon, counted apart from failures.
    fn conflicted(&mut self, mut job: FlushJob, e: SinkError) -> Result<Settled, PipelineError> {
        job.conflicts += 1;
        self.stats.commit_conflicts.fetch_add(1, Relaxed);
        let policy = self.retries.conflicts;
        if policy.exhausted(job.conflicts) {
            return Err(gave_up(&job, job.conflicts, e));
        }
        let wait = policy.delay(job.conflicts);
        tracing::info!(table = %job.table, conflicts = job.conflicts, wait_ms = wait.as_millis() as u64, "commit conflict with another writer; retrying");
        Ok(Settled::again(job, wait))
    }

    /// The lake failed. In place, the flush is tried again after the backoff; otherwise its
    /// data goes back in front of pending and the loop keeps polling, partitions paused, until
    /// the scheduled attempt.
    fn failed(
        &mut self,
        mut job: FlushJob,
        e: SinkError,
        in_place: bool,
    ) -> Result<Settled, PipelineError> {
        let failures = job.failures + 1;
        self.stats.flush_failures.fetch_add(1, Relaxed);
        let policy = self.retries.failures;
        self.stats
            .record_flush_failure(&job.table, failures, policy.attempts, &e.to_string());
        if policy.exhausted(failures) {
            return Err(gave_up(&job, failures, e));
        }
        let wait = policy.delay(failures);
        tracing::warn!(table = %job.table, attempt = failures, error = %e, wait_ms = wait.as_millis() as u64, "flush failed; retrying");
        if in_place {
            job.failures = failures;
            return Ok(Settled::again(job, wait));
        }
        self.pending.restore(&job.table, job.data);
        self.retry = Some(ScheduledRetry {
            table: job.table,
            trigger: job.trigger,
            failures,
            at: Instant::now() + wait,
        });
        Ok(Settled::done(ConsumerActions::default()))
    }
}

fn gave_up(job: &FlushJob, attempts: u32, last: SinkError) -> PipelineError {
    PipelineError::FlushGaveUp {
        table: job.table.to_string(),
        attempts,
        last,
    }
}
