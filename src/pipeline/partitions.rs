//! The partitions this instance owns: where each starts (the lake's offset, read on
//! assignment), which table it feeds, the position its next message must have, and the lake
//! offset our next conditional update expects.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rdkafka::topic_partition_list::Offset;

use crate::config::{StartFrom, TablesConfig};
use crate::observe::{Stats, TopicCounters};
use crate::retry::Backoff;
use crate::sink::{Lake, NO_OFFSET, SinkError};
use crate::source::PartitionKey;

/// One assigned partition.
#[derive(Debug)]
struct Assigned {
    table: Arc<str>,
    counters: Arc<TopicCounters>,
    /// The lake's next offset as last read or committed by us (the condition of our update).
    lake_next: i64,
    /// Messages below this offset are stale (already committed, or before a seek) and dropped.
    expected: i64,
}

/// Where a polled message goes.
pub enum Route {
    /// Not (or no longer) ours: fetched before a revoke.
    NotOurs,
    /// Below the partition's position: already committed, or fetched before a seek.
    Stale,
    /// Into this table.
    Table {
        /// The lake table.
        table: Arc<str>,
        /// Its topic's counters.
        counters: Arc<TopicCounters>,
    },
}

/// The assigned partitions.
pub struct Partitions {
    assigned: HashMap<PartitionKey, Assigned>,
    tables: TablesConfig,
    /// Topic → table, so the name is derived once per topic.
    table_of: HashMap<Arc<str>, Arc<str>>,
    start_from: StartFrom,
    stats: Arc<Stats>,
}

impl Partitions {
    /// No partitions yet; tables named by `tables`, new partitions starting at `start_from`.
    pub fn new(tables: TablesConfig, start_from: StartFrom, stats: Arc<Stats>) -> Self {
        Partitions {
            assigned: HashMap::new(),
            tables,
            table_of: HashMap::new(),
            start_from,
            stats,
        }
    }

    fn table_for(&mut self, topic: &Arc<str>) -> Arc<str> {
        if let Some(t) = self.table_of.get(topic) {
            return t.clone();
        }
        let t: Arc<str> = self.tables.table_for(topic).into();
        self.table_of.insert(topic.clone(), t.clone());
        t
    }

    /// Takes `list` over: registers each partition in the lake (retried with `retry`) and
    /// returns where each starts — the lake's next offset, or `kafka.start_from` for a partition
    /// never committed.
    pub fn assign(
        &mut self,
        lake: &Lake,
        retry: &Backoff,
        list: &[PartitionKey],
    ) -> Result<Vec<Offset>, SinkError> {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for k in list {
            by_topic.entry(&k.topic).or_default().push(k.partition);
        }
        let mut lake_offsets: HashMap<(&str, i32), i64> = HashMap::new();
        for (topic, ps) in by_topic {
            let offsets = retry.run(
                "lake read",
                |_| true,
                || lake.register_partitions(topic, &ps),
            )?;
            for (p, o) in offsets {
                lake_offsets.insert((topic, p), o);
            }
        }
        let mut starts = Vec::with_capacity(list.len());
        for key in list {
            let lake_next = lake_offsets
                .get(&(&*key.topic, key.partition))
                .copied()
                .unwrap_or(NO_OFFSET);
            let start = match (lake_next, self.start_from) {
                (NO_OFFSET, StartFrom::Earliest) => Offset::Beginning,
                (NO_OFFSET, StartFrom::Latest) => Offset::End,
                (next, _) => Offset::Offset(next),
            };
            tracing::info!(topic = %key.topic, partition = key.partition, lake_next, "partition assigned");
            self.stats
                .set_partition(&key.topic, key.partition, Some(lake_next), None);
            let assigned = Assigned {
                table: self.table_for(&key.topic),
                counters: self.stats.topic(&key.topic),
                lake_next,
                expected: lake_next.max(0),
            };
            self.assigned.insert(key.clone(), assigned);
            starts.push(start);
        }
        self.publish();
        self.stats
            .assignment_received
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(starts)
    }

    /// Forgets `list` (revoked).
    pub fn revoke(&mut self, list: &[PartitionKey]) {
        for k in list {
            self.assigned.remove(k);
            self.stats.remove_partition(&k.topic, k.partition);
            tracing::info!(topic = %k.topic, partition = k.partition, "partition revoked");
        }
        self.publish();
    }

    fn publish(&self) {
        self.stats.assigned_partitions.store(
            self.assigned.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Where a message at `offset` of `key` goes.
    pub fn route(&self, key: &PartitionKey, offset: i64) -> Route {
        match self.assigned.get(key) {
            None => Route::NotOurs,
            Some(a) if offset < a.expected => Route::Stale,
            Some(a) => Route::Table {
                table: a.table.clone(),
                counters: a.counters.clone(),
            },
        }
    }

    /// The table of an assigned partition.
    pub fn table(&self, key: &PartitionKey) -> Option<&Arc<str>> {
        self.assigned.get(key).map(|a| &a.table)
    }

    /// Moves the partition's position past a message at `offset` (now pending).
    pub fn advance(&mut self, key: &PartitionKey, offset: i64) {
        if let Some(a) = self.assigned.get_mut(key) {
            a.expected = offset + 1;
        }
    }

    /// The lake offset our next update of `key` is conditional on.
    pub fn lake_next(&self, key: &PartitionKey) -> i64 {
        self.assigned.get(key).map_or(NO_OFFSET, |a| a.lake_next)
    }

    /// Records that we committed `key` up to `next`.
    pub fn committed(&mut self, key: &PartitionKey, next: i64) {
        if let Some(a) = self.assigned.get_mut(key) {
            a.lake_next = next;
        }
        self.stats
            .set_partition(&key.topic, key.partition, Some(next), None);
    }

    /// Another writer committed `key` up to `lake_now`: our position restarts there. Returns
    /// where to seek the consumer, if the partition is still ours.
    pub fn overtaken(&mut self, key: &PartitionKey, lake_now: i64) -> Option<Offset> {
        self.stats
            .set_partition(&key.topic, key.partition, Some(lake_now), None);
        let a = self.assigned.get_mut(key)?;
        a.lake_next = lake_now;
        a.expected = lake_now.max(0);
        Some(if lake_now == NO_OFFSET {
            Offset::Beginning
        } else {
            Offset::Offset(lake_now)
        })
    }

    /// Our position of `key` goes back to `offset` (its messages from there on are read again;
    /// the lake's offset stays). Returns where to seek the consumer, if the partition is ours.
    pub fn rewind(&mut self, key: &PartitionKey, offset: i64) -> Option<Offset> {
        let a = self.assigned.get_mut(key)?;
        a.expected = offset;
        Some(Offset::Offset(offset))
    }

    /// The assigned partitions.
    pub fn keys(&self) -> Vec<PartitionKey> {
        self.assigned.keys().cloned().collect()
    }
}
