//! The live retention ring: per topic, the very RecordBatches the decoder produced (shared, not
//! copied), in arrival order, bounded by bytes and by age. Readers pull by sequence number, so
//! the ingest loop never waits on them; a reader that falls behind the retained window gets a
//! lag error saying by how much.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::source::MessageMeta;

/// Retention bounds of one topic's ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Bytes of batches kept per topic.
    pub max_bytes: u64,
    /// Age after which batches are dropped.
    pub max_age: Duration,
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
}

#[derive(Default)]
struct TopicRing {
    entries: VecDeque<LiveBatch>,
    next_seq: u64,
    bytes: u64,
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
            self.bytes -= front.bytes;
            self.entries.pop_front();
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
            });
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
                if wanted.is_empty() {
                    ring.first_seq()
                } else {
                    start
                }
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
            let topics = self.lock();
            let Some(ring) = topics.get(topic) else {
                return 0;
            };
            ring.entries
                .iter()
                .filter(|e| e.pinned && e.partition == partition && e.offset < below)
                .map(|e| (e.seq, e.batch.clone()))
                .collect()
        };
        if todo.is_empty() {
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
mod tests {
    use super::*;
    use arrow::array::{Array, ArrayData, DictionaryArray, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Int32Type, Schema};

    fn batch(ids: std::ops::Range<i64>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
            Field::new(
                "d",
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                true,
            ),
        ]));
        let n = ids.end - ids.start;
        let d: DictionaryArray<Int32Type> = (0..n)
            .map(|i| {
                if i % 4 == 0 {
                    None
                } else {
                    Some(["x", "y"][i as usize % 2])
                }
            })
            .collect();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(ids.clone())),
                Arc::new(StringArray::from_iter(
                    ids.map(|i| (i % 3 != 0).then(|| format!("v{i}"))),
                )),
                Arc::new(d),
            ],
        )
        .unwrap()
    }

    fn meta(topic: &str, partition: i32, offset: i64, timestamp_ms: Option<i64>) -> MessageMeta {
        MessageMeta {
            topic: topic.into(),
            partition,
            offset,
            timestamp_ms,
        }
    }

    fn ring(max_bytes: u64) -> Arc<Ring> {
        Ring::new(Retention {
            max_bytes,
            max_age: Duration::from_secs(3600),
        })
    }

    #[test]
    fn retention_by_bytes_evicts_oldest_and_readers_behind_get_the_lag() {
        let r = ring(300);
        for m in 0..10 {
            r.push(
                &meta("t", m % 2, m as i64 / 2, Some(1000 + m as i64)),
                &[batch(0..10)],
                100,
                true,
            );
        }
        // 10 batches of 100 bytes, 300 retained: seqs 7, 8, 9.
        let v = r.describe("t").unwrap();
        assert_eq!((v.rows, v.bytes), (30, 300));
        assert_eq!(r.resolve("t", &Start::Earliest), Ok(7));
        assert_eq!(r.resolve("t", &Start::Latest), Ok(10));
        let (got, next) = r.read("t", 7, 10, |_| true).unwrap();
        assert_eq!(next, 10);
        assert_eq!(
            got.iter()
                .map(|e| (e.seq, e.partition, e.offset))
                .collect::<Vec<_>>(),
            vec![(7, 1, 3), (8, 0, 4), (9, 1, 4)]
        );
        assert_eq!(
            r.read("t", 5, 10, |_| true).unwrap_err().to_string(),
            "reader of topic \"t\" lagged: 2 batches were dropped before it read them"
        );
        assert_eq!(r.read("t", 10, 10, |_| true).unwrap().0.len(), 0);
    }

    #[test]
    fn positions_by_offset_and_timestamp() {
        let r = ring(1 << 30);
        for m in 0..6 {
            r.push(
                &meta("t", m % 2, 10 + m as i64 / 2, Some(1000 * m as i64)),
                &[batch(0..5), batch(5..10)],
                100,
                true,
            );
        }
        // Messages (p0, 10) (p1, 10) (p0, 11) (p1, 11) (p0, 12) (p1, 12), two batches each.
        let at = |p1: (i64, u32)| Start::Offsets(BTreeMap::from([(0, (12, 1)), (1, p1)]));
        assert_eq!(r.resolve("t", &at((11, 0))), Ok(6));
        assert_eq!(r.resolve("t", &at((11, 1))), Ok(7));
        // Partition 0 has no position: it is read from its oldest batch.
        assert_eq!(
            r.resolve("t", &Start::Offsets(BTreeMap::from([(1, (11, 0))]))),
            Ok(0)
        );
        assert_eq!(
            r.resolve(
                "t",
                &Start::Offsets(BTreeMap::from([(0, (12, 0)), (1, (11, 0))]))
            ),
            Ok(6)
        );
        assert_eq!(r.resolve("t", &Start::Timestamp(2500)), Ok(6));
        assert_eq!(r.resolve("t", &Start::Timestamp(999_999)), Ok(12));
        assert_eq!(
            r.resolve("t", &Start::Offsets(BTreeMap::from([(0, (3, 0))])))
                .unwrap_err()
                .to_string(),
            "position partition 0 offset 3 of topic \"t\" is no longer retained; available: partition 0: offsets 10..=12, partition 1: offsets 10..=12"
        );
        assert_eq!(
            r.resolve("u", &Start::Earliest).unwrap_err(),
            ReadError::UnknownTopic("u".into())
        );
        let p1: Vec<i64> = r
            .read("t", 0, 100, |e| e.partition == 1)
            .unwrap()
            .0
            .iter()
            .map(|e| e.offset)
            .collect();
        assert_eq!(p1, vec![10, 10, 11, 11, 12, 12]);
    }

    #[test]
    fn a_resume_reads_partitions_it_has_not_seen_from_their_oldest_batch() {
        // Partition 0's first three messages, then all of partition 1, then the rest of 0 (a
        // consumer that fetched the partitions unevenly). A reader that read the first three
        // batches resumes with partition 0's position only: partition 1 was not seen yet and
        // must not be skipped.
        let r = ring(1 << 30);
        let order = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (0, 3), (0, 4)];
        for (p, o) in order {
            r.push(&meta("t", p, o, None), &[batch(0..1)], 10, false);
        }
        let resume = Start::Offsets(BTreeMap::from([(0, (2, 1))]));
        assert_eq!(r.resolve("t", &resume), Ok(3));
        let keep = |e: &LiveBatch| e.partition != 0 || e.offset >= 3;
        let (rest, _) = r.read("t", 3, 10, keep).unwrap();
        let got: Vec<(i32, i64)> = rest.iter().map(|e| (e.partition, e.offset)).collect();
        assert_eq!(got, vec![(1, 0), (1, 1), (0, 3), (0, 4)]);
        // Positions of every partition: the earliest of them.
        let both = Start::Offsets(BTreeMap::from([(0, (2, 1)), (1, (1, 0))]));
        assert_eq!(r.resolve("t", &both), Ok(4));
    }

    #[test]
    fn batches_that_own_their_memory_are_never_compacted() {
        let r = ring(1 << 30);
        let b = batch(0..100);
        r.push(&meta("t", 0, 5, None), std::slice::from_ref(&b), 100, false);
        let copied = r.compact("t", 0, 6);
        assert_eq!(copied, 0);
        assert_eq!(r.compacted_bytes(), 0);
        let (after, _) = r.read("t", 0, 10, |_| true).unwrap();
        assert!(!after[0].pinned);
        assert_eq!(after[0].bytes, 100);
        assert_eq!(
            after[0].batch.column(0).to_data().buffers()[0].as_ptr(),
            b.column(0).to_data().buffers()[0].as_ptr(),
            "the batch is the one pushed, not a copy"
        );
    }

    #[test]
    fn compaction_copies_once_and_keeps_values() {
        let r = ring(1 << 30);
        let b = batch(0..100);
        r.push(&meta("t", 0, 5, None), std::slice::from_ref(&b), 100, true);
        r.push(&meta("t", 0, 6, None), std::slice::from_ref(&b), 100, true);
        let (before, _) = r.read("t", 0, 10, |_| true).unwrap();
        let copied = r.compact("t", 0, 6);
        // Only offset 5 is below the committed offset 6; every buffer of it is copied.
        let expected: u64 = {
            fn sum(d: &ArrayData) -> u64 {
                d.buffers().iter().map(|b| b.len() as u64).sum::<u64>()
                    + d.nulls().map_or(0, |n| n.buffer().len() as u64)
                    + d.child_data().iter().map(sum).sum::<u64>()
            }
            b.columns().iter().map(|c| sum(&c.to_data())).sum()
        };
        assert_eq!(copied, expected);
        assert_eq!(r.compact("t", 0, 6), 0, "compaction happens once");
        let (after, _) = r.read("t", 0, 10, |_| true).unwrap();
        assert_eq!(after[0].batch, b);
        assert!(!after[0].pinned && after[1].pinned);
        let old = before[0].batch.column(0).to_data().buffers()[0].as_ptr();
        let new = after[0].batch.column(0).to_data().buffers()[0].as_ptr();
        assert_ne!(old, new, "the compacted batch owns new memory");
        assert_eq!(r.compacted_bytes(), expected);
        // The compacted batch is now accounted at the bytes it owns, the pinned one as pushed.
        assert_eq!(after[0].bytes, expected);
        assert_eq!(r.retained_bytes(), expected + 100);
        assert_eq!(r.describe("t").unwrap().bytes, expected + 100);
    }

    #[test]
    fn age_retention() {
        let r = Ring::new(Retention {
            max_bytes: 1 << 30,
            max_age: Duration::from_millis(30),
        });
        r.push(&meta("t", 0, 0, None), &[batch(0..1)], 10, true);
        std::thread::sleep(Duration::from_millis(60));
        r.push(&meta("t", 0, 1, None), &[batch(1..2)], 10, true);
        assert_eq!(r.resolve("t", &Start::Earliest), Ok(1));
        let v = r.describe("t").unwrap();
        assert_eq!((v.rows, v.bytes), (1, 10));
        // An idle topic loses its old batches by age too, without a new push.
        r.push(&meta("u", 0, 0, None), &[batch(0..1)], 7, true);
        assert_eq!(r.retained_bytes(), 17);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(r.expire(), 0);
        assert_eq!(r.retained_bytes(), 0);
        assert_eq!(r.resolve("t", &Start::Earliest), Ok(2));
        assert_eq!(r.describe("u").unwrap().rows, 0);
    }
}
