//! The flush policy: a pure function from the pending state, the clock and the thresholds to
//! what the loop does next. No Kafka, no DuckDB: unit-tested on plain values.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pending::Pending;

/// Why a flush ran (a metric label value, see [`Trigger::name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The table's pending decoded bytes reached `flush.max_bytes`.
    Bytes,
    /// The table's pending rows reached `flush.max_rows`.
    Rows,
    /// The table's oldest pending message reached `flush.max_age_ms`.
    Age,
    /// Pending plus in-flight bytes of all tables reached the pending cap.
    Memory,
    /// Partitions were revoked by a rebalance.
    Revoke,
    /// The process is stopping.
    Shutdown,
    /// A fetch was out of range: the partition's data is committed before its offset moves.
    OffsetGap,
}

impl Trigger {
    /// All triggers, in a fixed order.
    pub const ALL: [Trigger; 7] = [
        Trigger::Bytes,
        Trigger::Rows,
        Trigger::Age,
        Trigger::Memory,
        Trigger::Revoke,
        Trigger::Shutdown,
        Trigger::OffsetGap,
    ];

    /// Lowercase name (the `trigger` label of `sluice_flushes_total`).
    pub fn name(self) -> &'static str {
        match self {
            Trigger::Bytes => "bytes",
            Trigger::Rows => "rows",
            Trigger::Age => "age",
            Trigger::Memory => "memory",
            Trigger::Revoke => "revoke",
            Trigger::Shutdown => "shutdown",
            Trigger::OffsetGap => "offset_gap",
        }
    }

    /// Whether the flush must be committed before the loop goes on (in place, retried in
    /// place): a stop or a revoke cannot wait for the flush thread or a schedule.
    pub fn blocks(self) -> bool {
        matches!(
            self,
            Trigger::Revoke | Trigger::Shutdown | Trigger::OffsetGap
        )
    }
}

/// The thresholds the policy enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `flush.max_bytes`: decoded bytes of one table.
    pub max_bytes: u64,
    /// `flush.max_rows`: rows of one table.
    pub max_rows: u64,
    /// `flush.max_age_ms`: age of a table's oldest pending message.
    pub max_age: Duration,
    /// Pending plus in-flight memory allowed (what the memory budget leaves for pending data).
    pub pending_cap: u64,
}

/// What the committer is doing, as far as the policy cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitState {
    /// Memory of the flush in flight, if one is.
    pub inflight: Option<u64>,
    /// When the failed flush waiting for its next attempt is due, if one waits.
    pub retry: Option<Instant>,
}

/// What the loop does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start flushing `table`.
    Flush {
        /// The table.
        table: Arc<str>,
        /// Why.
        trigger: Trigger,
    },
    /// Run the scheduled next attempt of the failed flush.
    Retry,
    /// Wait for the flush in flight to finish (memory is at the cap).
    AwaitCommit,
}

/// The next thing to do, or `None` when nothing is due. One flush is in flight at a time; a
/// failed flush waiting for its retry holds every other flush back (the lake is failing, and
/// partitions are paused meanwhile). Otherwise, in this order: a table at `max_bytes`, a table
/// at `max_rows`, the memory cap (the largest table, or waiting for the flush in flight), a
/// table at `max_age`.
pub fn next(
    pending: &Pending,
    commit: &CommitState,
    now: Instant,
    limits: &Limits,
) -> Option<Action> {
    let busy = commit.inflight.is_some();
    if let Some(due) = &commit.retry {
        return (!busy && now >= *due).then_some(Action::Retry);
    }
    let flush = |table: &Arc<str>, trigger| Action::Flush {
        table: table.clone(),
        trigger,
    };
    if !busy {
        let largest = |over: fn(&super::pending::Totals, &Limits) -> bool| {
            pending
                .tables()
                .filter(|(_, t)| over(&t.totals(), limits))
                .max_by(|a, b| (a.1.totals().data, a.0).cmp(&(b.1.totals().data, b.0)))
                .map(|(name, _)| name)
        };
        if let Some(t) = largest(|t, l| t.data >= l.max_bytes) {
            return Some(flush(t, Trigger::Bytes));
        }
        if let Some(t) = largest(|t, l| t.rows >= l.max_rows) {
            return Some(flush(t, Trigger::Rows));
        }
    }
    if pending.memory() + commit.inflight.unwrap_or(0) >= limits.pending_cap {
        if busy {
            return Some(Action::AwaitCommit);
        }
        let largest = pending
            .tables()
            .max_by(|a, b| (a.1.totals().memory, a.0).cmp(&(b.1.totals().memory, b.0)));
        if let Some((t, _)) = largest {
            return Some(flush(t, Trigger::Memory));
        }
    }
    if busy {
        return None;
    }
    pending
        .tables()
        .filter(|(_, t)| {
            t.since()
                .is_some_and(|s| now.duration_since(s) >= limits.max_age)
        })
        .min_by(|a, b| (a.1.since(), a.0).cmp(&(b.1.since(), b.0)))
        .map(|(t, _)| flush(t, Trigger::Age))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::pending::{Entry, Totals};
    use crate::source::PartitionKey;

    const LIMITS: Limits = Limits {
        max_bytes: 1_000,
        max_rows: 100,
        max_age: Duration::from_secs(10),
        pending_cap: 5_000,
    };

    fn idle() -> CommitState {
        CommitState {
            inflight: None,
            retry: None,
        }
    }

    fn add(p: &mut Pending, table: &str, data: u64, memory: u64, rows: u64, at: Instant) {
        let totals = Totals {
            memory,
            payload: memory,
            data,
            rows,
            messages: 1,
        };
        p.append(
            &table.into(),
            &PartitionKey::new("t", 0),
            0,
            Entry::Batches(vec![]),
            totals,
            at,
        );
    }

    fn flush(table: &str, trigger: Trigger) -> Option<Action> {
        Some(Action::Flush {
            table: table.into(),
            trigger,
        })
    }

    #[test]
    fn size_thresholds_fire_on_the_largest_table_over_them_bytes_before_rows() {
        let now = Instant::now();
        let mut p = Pending::default();
        add(&mut p, "small", 10, 10, 1, now);
        assert_eq!(next(&p, &idle(), now, &LIMITS), None);
        add(&mut p, "many_rows", 500, 500, 100, now);
        assert_eq!(
            next(&p, &idle(), now, &LIMITS),
            flush("many_rows", Trigger::Rows)
        );
        add(&mut p, "big", 999, 999, 1, now);
        assert_eq!(
            next(&p, &idle(), now, &LIMITS),
            flush("many_rows", Trigger::Rows)
        );
        add(&mut p, "big", 1, 1, 1, now);
        assert_eq!(
            next(&p, &idle(), now, &LIMITS),
            flush("big", Trigger::Bytes)
        );
        add(&mut p, "bigger", 3_000, 10, 1, now);
        assert_eq!(
            next(&p, &idle(), now, &LIMITS),
            flush("bigger", Trigger::Bytes)
        );
        // Decoded bytes, not memory held, decide: 3,000 decoded bytes in 10 bytes of memory.
        assert_eq!(p.take("bigger").unwrap().totals().memory, 10);
    }

    #[test]
    fn one_flush_at_a_time_and_the_memory_cap_waits_for_it() {
        let now = Instant::now();
        let mut p = Pending::default();
        add(&mut p, "a", 2_000, 2_000, 1, now);
        let busy = CommitState {
            inflight: Some(2_999),
            retry: None,
        };
        // Over max_bytes, but a flush is in flight: it fires once that one is done.
        assert_eq!(next(&p, &busy, now, &LIMITS), None);
        // 2,000 pending + 3,000 in flight reach the 5,000 cap: wait for the flush in flight.
        let full = CommitState {
            inflight: Some(3_000),
            ..busy
        };
        assert_eq!(next(&p, &full, now, &LIMITS), Some(Action::AwaitCommit));
    }

    #[test]
    fn the_memory_cap_flushes_the_table_holding_the_most_memory() {
        let now = Instant::now();
        let mut p = Pending::default();
        let limits = Limits {
            max_bytes: u64::MAX,
            max_rows: u64::MAX,
            ..LIMITS
        };
        add(&mut p, "a", 100, 2_400, 1, now);
        add(&mut p, "b", 900, 2_500, 1, now);
        assert_eq!(next(&p, &idle(), now, &limits), None);
        add(&mut p, "a", 0, 200, 1, now);
        assert_eq!(p.memory(), 5_100);
        assert_eq!(next(&p, &idle(), now, &limits), flush("a", Trigger::Memory));
    }

    #[test]
    fn age_fires_for_the_oldest_table_once_the_committer_is_free() {
        let t0 = Instant::now();
        let mut p = Pending::default();
        add(&mut p, "old", 1, 1, 1, t0);
        add(&mut p, "new", 1, 1, 1, t0 + Duration::from_secs(5));
        assert_eq!(
            next(&p, &idle(), t0 + Duration::from_millis(9_999), &LIMITS),
            None
        );
        let later = t0 + Duration::from_secs(16);
        assert_eq!(
            next(&p, &idle(), later, &LIMITS),
            flush("old", Trigger::Age)
        );
        let busy = CommitState {
            inflight: Some(1),
            retry: None,
        };
        assert_eq!(next(&p, &busy, later, &LIMITS), None);
        p.take("old");
        assert_eq!(
            next(&p, &idle(), later, &LIMITS),
            flush("new", Trigger::Age)
        );
    }

    #[test]
    fn a_waiting_retry_holds_every_other_flush_back_until_it_is_due() {
        let now = Instant::now();
        let mut p = Pending::default();
        add(
            &mut p,
            "a",
            10_000,
            10_000,
            1_000,
            now - Duration::from_secs(60),
        );
        let waiting = CommitState {
            inflight: None,
            retry: Some(now + Duration::from_secs(1)),
        };
        assert_eq!(next(&p, &waiting, now, &LIMITS), None);
        let due = now + Duration::from_secs(1);
        assert_eq!(next(&p, &waiting, due, &LIMITS), Some(Action::Retry));
    }

    #[test]
    fn trigger_names_are_the_metric_labels() {
        // The counters index flushes by these labels, in this order.
        let names: Vec<&str> = Trigger::ALL.iter().map(|t| t.name()).collect();
        assert_eq!(names, crate::observe::FLUSH_TRIGGERS);
        assert!(Trigger::Revoke.blocks() && Trigger::Shutdown.blocks() && !Trigger::Age.blocks());
    }
}
