//! The uncommitted tail: per partition this instance consumes, what the ring holds that the
//! lake has not committed yet (the real-time views' half of a query), and holds that keep it
//! for a reader whose lake snapshot may be older than the ring's last commit.

use std::sync::Arc;
use std::time::Instant;

use arrow::datatypes::SchemaRef;

use super::{LiveBatch, ReadError, Ring, TopicRing};

/// What a topic's ring holds that the lake does not yet: per partition consumed here, the
/// batches from the last commit the ring was told of on, in arrival order (a real-time view
/// filters them by the lake's offsets of the snapshot it reads).
#[derive(Debug, Clone)]
pub struct Uncommitted {
    /// Schema of the newest batch ever pushed for the topic.
    pub schema: Option<SchemaRef>,
    /// The batches.
    pub batches: Vec<LiveBatch>,
}

/// What the ring knows of one partition this instance consumes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Line {
    /// The lake's next offset as of the last commit the ring was told of (`-1`: none yet).
    pub(super) committed: i64,
    /// The offset of the newest message pushed.
    pub(super) last: i64,
    /// One past the newest uncommitted offset evicted under memory pressure (`-1`: none).
    pub(super) lost_below: i64,
}

impl Line {
    pub(super) fn new() -> Self {
        Line {
            committed: -1,
            last: -1,
            lost_below: -1,
        }
    }
}

impl TopicRing {
    /// The offset from which `partition`'s batches count as not committed: the last commit
    /// the ring was told of, or an older one a [`Hold`] still sees; `None` if the partition is
    /// not consumed here.
    pub(super) fn floor(&self, partition: i32) -> Option<i64> {
        let l = self.lines.get(&partition)?;
        Some(
            self.holds
                .values()
                .filter_map(|h| h.get(&partition).copied())
                .fold(l.committed, i64::min),
        )
    }

    /// Whether `e` is a batch not yet committed of a partition consumed here.
    pub(super) fn uncommitted(&self, e: &LiveBatch) -> bool {
        !e.superseded && self.floor(e.partition).is_some_and(|f| e.offset >= f)
    }

    /// Marks the retained batches of `partition` at or after `from` as superseded.
    pub(super) fn supersede(&mut self, partition: i32, from: i64) {
        for e in self.entries.iter_mut() {
            if e.partition == partition && e.offset >= from {
                e.superseded = true;
            }
        }
    }
}

impl Ring {
    /// The batches of `topic` not yet committed (see [`Uncommitted`]); `None` if the topic has
    /// no ring. Fails if the ring had to drop some of them.
    pub fn uncommitted(&self, topic: &str) -> Result<Option<Uncommitted>, ReadError> {
        let topics = self.lock();
        let Some(ring) = topics.get(topic) else {
            return Ok(None);
        };
        for (p, l) in &ring.lines {
            if ring.floor(*p).is_some_and(|f| l.lost_below > f) {
                return Err(ReadError::Incomplete {
                    topic: topic.to_string(),
                    partition: *p,
                    below: l.lost_below,
                });
            }
        }
        Ok(Some(Uncommitted {
            schema: ring.schema.clone(),
            batches: ring
                .entries
                .iter()
                .filter(|e| ring.uncommitted(e))
                .cloned()
                .collect(),
        }))
    }

    /// Keeps, while the returned [`Hold`] lives, every batch that counts as not committed now
    /// in [`Ring::uncommitted`] and in the ring, even once its commit passes: a reader that
    /// takes a hold before its lake snapshot gets from the ring at least everything from that
    /// snapshot's offsets on, whichever commits land in between.
    pub fn hold(self: &Arc<Self>) -> Hold {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for ring in self.lock().values_mut() {
            let now = ring.lines.iter().map(|(p, l)| (*p, l.committed)).collect();
            ring.holds.insert(id, now);
        }
        Hold {
            ring: self.clone(),
            id,
        }
    }

    /// This instance no longer consumes `partition` of `topic` (revoked): its batches leave
    /// [`Ring::uncommitted`] and may be evicted. Flight readers still see them.
    pub fn release(&self, topic: &str, partition: i32) {
        let mut topics = self.lock();
        if let Some(ring) = topics.get_mut(topic) {
            ring.lines.remove(&partition);
            ring.supersede(partition, i64::MIN);
            ring.evict(&self.retention, Instant::now());
        }
    }
}

/// See [`Ring::hold`]; released when dropped.
pub struct Hold {
    ring: Arc<Ring>,
    id: u64,
}

impl Drop for Hold {
    fn drop(&mut self) {
        let now = Instant::now();
        for ring in self.ring.lock().values_mut() {
            if ring.holds.remove(&self.id).is_some() {
                ring.evict(&self.ring.retention, now);
            }
        }
    }
}
