//! The live retention ring: per topic, the very RecordBatches the decoder produced (shared, not
//! copied), in arrival order, bounded by bytes and by age. Readers pull by sequence number, so
//! the ingest loop never waits on them; a reader that falls behind the retained window gets a
//! lag error saying by how much.
//!
//! The ring also keeps, per partition this instance consumes, every batch it decoded but has
//! not yet committed to the lake ([`Ring::uncommitted`]): those are what the real-time views add
//! to the lake's rows. Such a batch is not evicted before its commit passed
//! ([`Ring::compact`]) — it shares its memory with the pending flush anyway — unless the ring
//! outgrows `max_bytes + max_uncommitted`; then the partition is marked as missing a range, and
//! the real-time views say so instead of answering without it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::source::MessageMeta;

mod marks;
mod tail;
use marks::Marks;
pub use marks::{Position, after};
use tail::Line;
pub use tail::{Hold, Uncommitted};

/// Retention bounds of one topic's ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Bytes of batches kept per topic.
    pub max_bytes: u64,
    /// Age after which batches are dropped.
    pub max_age: Duration,
    /// Bytes beyond `max_bytes` the ring may hold in batches not yet committed (the pending
    /// flush's memory, which they share) before it evicts those too.
    pub max_uncommitted: u64,
}

/// One retained batch: all or part of one Kafka message.
#[derive(Debug, Clone)]
pub struct LiveBatch {
    /// Position in the topic's ring (gapless, increasing).
    pub seq: u64,
    /// Kafka partition.
    pub partition: i32,
    /// Kafka offset of the message the batch came from.
    pub offset: i64,
    /// Index of the batch within its message.
    pub batch_index: u32,
    /// Batches in its message.
    pub batches_in_message: u32,
    /// Kafka timestamp of that message, ms since the epoch.
    pub timestamp_ms: Option<i64>,
    /// The batch.
    pub batch: RecordBatch,
    /// Bytes accounted to this batch.
    pub bytes: u64,
    /// Whether the batch still references the Kafka message (not yet compacted).
    pub pinned: bool,
    arrived: Instant,
    /// Read again since (a rewind), or of a partition this instance no longer consumes: not
    /// part of [`Ring::uncommitted`].
    superseded: bool,
}

/// What a topic's ring retains.
#[derive(Debug, Clone)]
pub struct TopicView {
    /// Schema of the newest batch.
    pub schema: Option<SchemaRef>,
    /// Rows retained.
    pub rows: u64,
    /// Bytes retained.
    pub bytes: u64,
    /// Retained offset range (first, last) per partition.
    pub offsets: BTreeMap<i32, (i64, i64)>,
}

/// Where a read starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// The oldest retained batch.
    Earliest,
    /// Only batches arriving from now on.
    Latest,
    /// Per partition, the first batch at or after (offset, batch index within the message);
    /// a partition not listed starts at its oldest retained batch.
    Offsets(BTreeMap<i32, (i64, u32)>),
    /// The first batch whose Kafka timestamp is at or after this (ms since the epoch).
    Timestamp(i64),
}

/// Why a read cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The topic is not (yet) being ingested.
    #[error("topic {0:?} is not being ingested")]
    UnknownTopic(String),
    /// The requested position is older than what is retained.
    #[error(
        "position {requested} of topic {topic:?} is no longer retained; available: {available}"
    )]
    OutOfRange {
        /// Topic.
        topic: String,
        /// What was asked for.
        requested: String,
        /// What is still there, per partition.
        available: String,
    },
    /// The reader fell behind the retained window.
    #[error("reader of topic {topic:?} lagged: {behind} batches were dropped before it read them")]
    Lagged {
        /// Topic.
        topic: String,
        /// Batches evicted past the reader's position.
        behind: u64,
    },
    /// Batches not yet committed were evicted (the ring outgrew its bound): the uncommitted
    /// tail of a partition is incomplete until the lake commits past them.
    #[error(
        "the live ring of topic {topic:?} dropped batches of partition {partition} not yet committed (below offset {below}; it outgrew live.retention_bytes plus the pending flush's share): its real-time view is incomplete until the lake commits them"
    )]
    Incomplete {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// One past the newest offset dropped.
        below: i64,
    },
}

#[derive(Default)]
struct TopicRing {
    entries: VecDeque<LiveBatch>,
    next_seq: u64,
    bytes: u64,
    /// Partitions consumed here, by number.
    lines: HashMap<i32, Line>,
    /// Schema of the newest batch pushed (kept when its entries are evicted).
    schema: Option<SchemaRef>,
    /// Per [`Hold`] alive: each partition's committed offset when it was taken.
    holds: BTreeMap<u64, HashMap<i32, i64>>,
    /// Per partition ever pushed: where it began, its newest batch and its newest evicted.
    marks: HashMap<i32, Marks>,
}

impl TopicRing {
    fn first_seq(&self) -> u64 {
        self.entries.front().map_or(self.next_seq, |e| e.seq)
    }

    /// Retained (first, last) offset per partition.
    fn offset_ranges(&self) -> BTreeMap<i32, (i64, i64)> {
        let mut ranges: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
        for e in &self.entries {
            let r = ranges.entry(e.partition).or_insert((e.offset, e.offset));
            r.0 = r.0.min(e.offset);
            r.1 = r.1.max(e.offset);
        }
        ranges
    }

    fn available(&self) -> String {
        let ranges = self.offset_ranges();
        if ranges.is_empty() {
            return "nothing retained".into();
        }
        ranges
            .iter()
            .map(|(p, (a, b))| format!("partition {p}: offsets {a}..={b}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn evict(&mut self, retention: &Retention, now: Instant) {
        while let Some(front) = self.entries.front() {
            let too_big = self.bytes > retention.max_bytes;
            let too_old = now.duration_since(front.arrived) > retention.max_age;
            if !(too_big || too_old) {
                break;
            }
            if self.uncommitted(front) {
                if self.bytes
                    <= retention
                        .max_bytes
                        .saturating_add(retention.max_uncommitted)
                {
                    break;
                }
                let (p, o) = (front.partition, front.offset);
                if let Some(l) = self.lines.get_mut(&p) {
                    if l.lost_below <= l.committed {
                        tracing::warn!(
                            partition = p,
                            offset = o,
                            "the live ring evicts batches not yet committed (it holds more than live.retention_bytes plus the pending flush's share); real-time views of this partition fail until its commit passes them"
                        );
                    }
                    l.lost_below = l.lost_below.max(o + 1);
                }
            }
            let Some(front) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= front.bytes;
            if let Some(m) = self.marks.get_mut(&front.partition) {
                m.evicted = Some((front.offset, front.batch_index));
            }
        }
    }
}

/// Rings of all topics, shared by the ingest loop (writer) and Flight readers.
pub struct Ring {
    retention: Retention,
    /// Bumped on every push: followers wait on it instead of polling.
    changes: tokio::sync::watch::Sender<u64>,
    topics: Mutex<HashMap<String, TopicRing>>,
    /// Bytes copied by compaction (a copy like realignment or decompression).
    compacted_bytes: std::sync::atomic::AtomicU64,
}

impl Ring {
    /// An empty ring with these bounds per topic.
    pub fn new(retention: Retention) -> Arc<Ring> {
        Arc::new(Ring {
            retention,
            changes: tokio::sync::watch::Sender::new(0),
            topics: Mutex::new(HashMap::new()),
            compacted_bytes: Default::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, TopicRing>> {
        crate::sync::lock(&self.topics)
    }

    /// Appends the batches of one message (sharing them) and evicts what retention no longer
    /// allows. `bytes` is the memory the message holds; it is split over its batches by rows.
    /// `in_kafka`: whether the batches reference the Kafka message (then [`Ring::compact`]
    /// copies them once the lake commit passed; batches that own their memory never are).
    pub fn push(&self, meta: &MessageMeta, batches: &[RecordBatch], bytes: u64, in_kafka: bool) {
        let now = Instant::now();
        let rows: u64 = batches
            .iter()
            .map(|b| b.num_rows() as u64)
            .sum::<u64>()
            .max(1);
        let mut topics = self.lock();
        let ring = match topics.get_mut(&*meta.topic) {
            Some(r) => r,
            None => topics.entry(meta.topic.to_string()).or_default(),
        };
        let line = ring.lines.entry(meta.partition).or_insert_with(Line::new);
        let rewound = meta.offset <= line.last;
        line.last = meta.offset;
        if rewound {
            // The partition is read again from here (a rewind): what was read of it before
            // from this offset on is no longer its uncommitted tail.
            ring.supersede(meta.partition, meta.offset);
        }
        if let Some(last) = batches.last() {
            ring.schema = Some(last.schema());
        }
        for (i, b) in batches.iter().enumerate() {
            let share = bytes * b.num_rows().max(1) as u64 / rows;
            ring.entries.push_back(LiveBatch {
                seq: ring.next_seq,
                partition: meta.partition,
                offset: meta.offset,
                batch_index: i as u32,
                batches_in_message: batches.len() as u32,
                timestamp_ms: meta.timestamp_ms,
                batch: b.clone(),
                bytes: share,
                pinned: in_kafka,
                arrived: now,
                superseded: false,
            });
            ring.marks
                .entry(meta.partition)
                .or_insert_with(|| Marks::new(ring.next_seq, (meta.offset, i as u32)))
                .last = (meta.offset, i as u32);
            ring.next_seq += 1;
            ring.bytes += share;
        }
        ring.evict(&self.retention, now);
        drop(topics);
        self.changes.send_modify(|n| *n += 1);
    }

    /// A receiver that changes whenever batches are pushed.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Topics with a ring.
    pub fn topics(&self) -> Vec<String> {
        let mut t: Vec<String> = self.lock().keys().cloned().collect();
        t.sort();
        t
    }

    /// What is retained for `topic`.
    pub fn describe(&self, topic: &str) -> Option<TopicView> {
        let topics = self.lock();
        let r = topics.get(topic)?;
        Some(TopicView {
            schema: r.entries.back().map(|e| e.batch.schema()),
            rows: r.entries.iter().map(|e| e.batch.num_rows() as u64).sum(),
            bytes: r.bytes,
            offsets: r.offset_ranges(),
        })
    }

    /// The schema of the newest batch ever pushed for `topic`.
    pub fn schema(&self, topic: &str) -> Option<SchemaRef> {
        self.lock().get(topic).and_then(|r| r.schema.clone())
    }

    /// The sequence number a read starting at `start` begins with.
    pub fn resolve(&self, topic: &str, start: &Start) -> Result<u64, ReadError> {
        let topics = self.lock();
        let ring = topics
            .get(topic)
            .ok_or_else(|| ReadError::UnknownTopic(topic.to_string()))?;
        let out_of_range = |requested: String| ReadError::OutOfRange {
            topic: topic.to_string(),
            requested,
            available: ring.available(),
        };
        Ok(match start {
            Start::Earliest => ring.first_seq(),
            Start::Latest => ring.next_seq,
            Start::Timestamp(t) => ring
                .entries
                .iter()
                .find(|e| e.timestamp_ms.is_some_and(|ts| ts >= *t))
                .map_or(ring.next_seq, |e| e.seq),
            Start::Offsets(wanted) => {
                // A partition the reader has not read yet starts at its oldest batch.
                let mut start = ring
                    .entries
                    .iter()
                    .find(|e| !wanted.contains_key(&e.partition))
                    .map_or(ring.next_seq, |e| e.seq);
                for (p, (o, b)) in wanted {
                    let oldest = ring.entries.iter().find(|e| e.partition == *p);
                    if let Some(first) = oldest
                        && (first.offset, first.batch_index) > (*o, *b)
                    {
                        return Err(out_of_range(format!("partition {p} offset {o}")));
                    }
                    if let Some(e) = ring
                        .entries
                        .iter()
                        .find(|e| e.partition == *p && (e.offset, e.batch_index) >= (*o, *b))
                    {
                        start = start.min(e.seq);
                    }
                }
                // With no positions at all, every partition starts at its oldest batch.
                start
            }
        })
    }

    /// Up to `max` batches from `from` on that `keep` accepts, and the sequence number to read
    /// next (past every batch examined). Errors if batches at or after `from` were already
    /// evicted.
    pub fn read(
        &self,
        topic: &str,
        from: u64,
        max: usize,
        keep: impl Fn(&LiveBatch) -> bool,
    ) -> Result<(Vec<LiveBatch>, u64), ReadError> {
        let topics = self.lock();
        let ring = topics
            .get(topic)
            .ok_or_else(|| ReadError::UnknownTopic(topic.to_string()))?;
        let first = ring.first_seq();
        if from < first {
            return Err(ReadError::Lagged {
                topic: topic.to_string(),
                behind: first - from,
            });
        }
        let mut out = Vec::new();
        let mut next = from.max(first);
        for e in ring.entries.iter().skip((from - first) as usize) {
            if out.len() >= max {
                break;
            }
            next = e.seq + 1;
            if keep(e) {
                out.push(e.clone());
            }
        }
        Ok((out, next))
    }

    /// The next sequence number of `topic` (what a follower waits for).
    pub fn next_seq(&self, topic: &str) -> Option<u64> {
        self.lock().get(topic).map(|r| r.next_seq)
    }

    /// Copies, once, every retained batch of `topic`/`partition` below `offset` that still
    /// references its Kafka message, so librdkafka's buffers are released after the lake
    /// commit. The copying runs outside the ring's lock: pushes and reads go on meanwhile.
    /// Returns the bytes copied into batches still retained.
    pub fn compact(&self, topic: &str, partition: i32, below: i64) -> u64 {
        let todo: Vec<(u64, RecordBatch)> = {
            let mut topics = self.lock();
            let Some(ring) = topics.get_mut(topic) else {
                return 0;
            };
            if let Some(l) = ring.lines.get_mut(&partition) {
                l.committed = l.committed.max(below);
            }
            ring.entries
                .iter()
                .filter(|e| e.pinned && e.partition == partition && e.offset < below)
                .map(|e| (e.seq, e.batch.clone()))
                .collect()
        };
        if todo.is_empty() {
            if let Some(ring) = self.lock().get_mut(topic) {
                ring.evict(&self.retention, Instant::now());
            }
            return 0;
        }
        let copies: Vec<(u64, RecordBatch, u64)> = todo
            .into_iter()
            .map(|(seq, b)| {
                let (copy, n) = super::compact::deep_copy(&b);
                (seq, copy, n)
            })
            .collect();
        let mut topics = self.lock();
        let Some(ring) = topics.get_mut(topic) else {
            return 0;
        };
        let mut copied = 0;
        for (seq, batch, n) in copies {
            // Entries are in seq order without gaps, so a retained seq is found by index.
            let Some(i) = seq.checked_sub(ring.first_seq()) else {
                continue; // evicted meanwhile
            };
            let Some(e) = ring.entries.get_mut(i as usize) else {
                continue;
            };
            if e.seq != seq || !e.pinned {
                continue;
            }
            e.batch = batch;
            e.pinned = false;
            copied += n;
            // From now on the batch holds exactly the memory it was copied into.
            ring.bytes = ring.bytes - e.bytes + n;
            e.bytes = n;
        }
        ring.evict(&self.retention, Instant::now());
        self.compacted_bytes
            .fetch_add(copied, std::sync::atomic::Ordering::Relaxed);
        copied
    }

    /// Drops batches older than the retention age from every topic, so an idle topic does not
    /// hold them until its next batch arrives. Returns the bytes retained over all topics.
    pub fn expire(&self) -> u64 {
        let now = Instant::now();
        self.lock()
            .values_mut()
            .map(|ring| {
                ring.evict(&self.retention, now);
                ring.bytes
            })
            .sum()
    }

    /// Bytes retained over all topics.
    pub fn retained_bytes(&self) -> u64 {
        self.lock().values().map(|r| r.bytes).sum()
    }

    /// Bytes copied by compaction so far.
    pub fn compacted_bytes(&self) -> u64 {
        self.compacted_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests;
