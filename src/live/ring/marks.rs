//! Per-partition positions a Flight reader needs to leave the ring for the lake and come back
//! without a gap or a duplicate: where each of its partitions stands when it starts, and
//! whether the ring still holds a partition from a position on.

use std::collections::BTreeMap;

use super::{Ring, Start, TopicRing};

/// A position in a partition: (offset, index of the batch within its message).
pub type Position = (i64, u32);

/// What the ring has seen of one partition.
#[derive(Debug, Clone, Copy)]
pub(super) struct Marks {
    /// The sequence number of its first batch pushed.
    pub(super) first_seq: u64,
    /// The position of that batch.
    pub(super) first: Position,
    /// The position of its newest batch pushed.
    pub(super) last: Position,
    /// The position of its newest batch evicted.
    pub(super) evicted: Option<Position>,
}

impl Marks {
    pub(super) fn new(seq: u64, at: Position) -> Self {
        Marks {
            first_seq: seq,
            first: at,
            last: at,
            evicted: None,
        }
    }
}

/// Just past `p`: where a read continues after the batch at `p`.
pub fn after(p: Position) -> Position {
    (p.0, p.1.saturating_add(1))
}

impl TopicRing {
    /// Where a read continues in `partition` at `at`: the sequence number of its first
    /// retained batch at or after `at` (or the next one pushed), if the ring holds every batch
    /// of the partition from `at` on it will ever have — nothing from `at` on was evicted, and
    /// the partition is consumed here or still has batches from `at` on.
    fn continue_at(&self, partition: i32, at: Position) -> Option<u64> {
        let m = self.marks.get(&partition);
        if m.and_then(|m| m.evicted).is_some_and(|e| e >= at) {
            return None;
        }
        let retained = self
            .entries
            .iter()
            .find(|e| e.partition == partition && (e.offset, e.batch_index) >= at)
            .map(|e| e.seq);
        match retained {
            Some(seq) => Some(seq),
            None if self.lines.contains_key(&partition) => Some(self.next_seq),
            None => None,
        }
    }
}

impl Ring {
    /// Where each partition of `topic` the ring has seen stands for a read starting at
    /// `start` (positions a read delivers from), and, at that moment, the sequence numbers of
    /// the oldest batch retained and of the next one pushed.
    pub fn positions(&self, topic: &str, start: &Start) -> (BTreeMap<i32, Position>, u64, u64) {
        let listed = match start {
            Start::Offsets(pos) => pos.clone(),
            _ => BTreeMap::new(),
        };
        let topics = self.lock();
        let Some(ring) = topics.get(topic) else {
            return (listed, 0, 0);
        };
        let oldest = |p: i32| {
            ring.entries
                .iter()
                .find(|e| e.partition == p)
                .map(|e| (e.offset, e.batch_index))
        };
        let mut out = BTreeMap::new();
        for (&p, m) in &ring.marks {
            let next = after(m.last);
            let at = match start {
                Start::Earliest => oldest(p).unwrap_or(next),
                Start::Latest => next,
                Start::Offsets(pos) => pos.get(&p).copied().or(oldest(p)).unwrap_or(next),
                Start::Timestamp(t) => ring
                    .entries
                    .iter()
                    .find(|e| e.partition == p && e.timestamp_ms.is_some_and(|ts| ts >= *t))
                    .map_or(next, |e| (e.offset, e.batch_index)),
            };
            out.insert(p, at);
        }
        out.extend(listed);
        (out, ring.first_seq(), ring.next_seq)
    }

    /// The sequence number of `topic`'s oldest retained batch (the next one pushed if none).
    pub fn first_seq(&self, topic: &str) -> Option<u64> {
        self.lock().get(topic).map(TopicRing::first_seq)
    }

    /// See `TopicRing::continue_at`; `None` also if `topic` has no ring.
    pub fn continue_at(&self, topic: &str, partition: i32, at: Position) -> Option<u64> {
        self.lock().get(topic)?.continue_at(partition, at)
    }

    /// The partitions of `topic` whose first batch was pushed at or after sequence number
    /// `since`, with the position of that batch.
    pub fn begun_since(&self, topic: &str, since: u64) -> BTreeMap<i32, Position> {
        self.lock().get(topic).map_or_else(BTreeMap::new, |r| {
            r.marks
                .iter()
                .filter(|(_, m)| m.first_seq >= since)
                .map(|(p, m)| (*p, m.first))
                .collect()
        })
    }
}
