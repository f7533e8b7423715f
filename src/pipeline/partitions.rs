//! The partitions this instance owns: where each starts (the lake's offset, read on
//! assignment), which table it feeds, the position its next message must have, and the lake
//! offset our next conditional update expects.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rdkafka::topic_partition_list::Offset;

use crate::config::{OnOffsetGap, StartFrom, TablesConfig};
use crate::observe::{Stats, TopicCounters};
use crate::retry::Backoff;
use crate::sink::{Lake, NO_OFFSET, OffsetUpdate, SinkError};
use crate::source::{PartitionKey, WatermarkProbe, Watermarks};

/// Which side of the broker's range a position fell off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapKind {
    /// Above the high watermark: the topic was deleted and created again, or truncated.
    AboveHigh,
    /// Below the low watermark: retention deleted messages sluice had not read.
    BelowLow,
}

impl GapKind {
    /// The `kind` label of `sluice_offset_gaps_total`.
    pub fn name(self) -> &'static str {
        match self {
            GapKind::AboveHigh => "above_high",
            GapKind::BelowLow => "below_low",
        }
    }
}

/// A partition whose next offset (the lake's, or the position reached since) is outside what
/// the broker holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "offset gap on topic {topic} partition {partition}: {what}; kafka.on_offset_gap = \"fail\" stops here with the lake offsets unmoved (set it to \"earliest\" or \"latest\", or move the offset with `sluice offsets set`)",
    what = self.describe()
)]
pub struct OffsetGap {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The next offset sluice needs.
    pub position: i64,
    /// What the broker holds.
    pub watermarks: Watermarks,
    /// Which side.
    pub kind: GapKind,
}

impl OffsetGap {
    /// The gap of `key` at `position`, if the position is outside `watermarks`. A position
    /// equal to the high watermark is caught up, not a gap.
    pub fn find(key: &PartitionKey, position: i64, watermarks: Watermarks) -> Option<OffsetGap> {
        let kind = if position > watermarks.high {
            GapKind::AboveHigh
        } else if position < watermarks.low {
            GapKind::BelowLow
        } else {
            return None;
        };
        Some(OffsetGap {
            topic: key.topic.to_string(),
            partition: key.partition,
            position,
            watermarks,
            kind,
        })
    }

    fn describe(&self) -> String {
        let Watermarks { low, high } = self.watermarks;
        match self.kind {
            GapKind::AboveHigh => format!(
                "the next offset {} is above the broker's high watermark {high} (low {low}): the topic was deleted and created again, or truncated",
                self.position
            ),
            GapKind::BelowLow => format!(
                "the next offset {} is below the broker's low watermark {low} (high {high}): retention deleted {} messages sluice had not read",
                self.position,
                low - self.position
            ),
        }
    }

    /// Where `policy` moves the position (`None` for `fail`).
    pub fn target(&self, policy: OnOffsetGap) -> Option<i64> {
        match policy {
            OnOffsetGap::Fail => None,
            OnOffsetGap::Earliest => Some(self.watermarks.low),
            OnOffsetGap::Latest => Some(self.watermarks.high),
        }
    }

    /// What moving to `to` under `policy` skips or reads again, for the log line.
    pub fn consequence(&self, policy: OnOffsetGap, to: i64) -> String {
        let Watermarks { low, high } = self.watermarks;
        match (self.kind, policy) {
            (GapKind::AboveHigh, OnOffsetGap::Earliest) => format!(
                "reading the {} messages the broker holds now (offsets {low}..{high}) from the start",
                high - low
            ),
            (GapKind::AboveHigh, _) => format!(
                "skipping the {} messages the broker holds now (offsets {low}..{high}); only new ones are read",
                high - low
            ),
            (GapKind::BelowLow, OnOffsetGap::Earliest) => format!(
                "offsets {}..{low} ({} messages) were deleted by retention before sluice read them and are lost",
                self.position,
                low - self.position
            ),
            (GapKind::BelowLow, _) => format!(
                "offsets {}..{low} ({} messages) were deleted by retention before sluice read them and are lost; offsets {low}..{to} ({} messages) are skipped",
                self.position,
                low - self.position,
                to - low
            ),
        }
    }
}

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

/// Why partitions could not be taken over.
#[derive(Debug, thiserror::Error)]
pub enum AssignError {
    /// The lake's offsets could not be read or moved (after every retry).
    #[error(transparent)]
    Lake(SinkError),
    /// A lake offset is outside the broker's watermarks and `kafka.on_offset_gap` is `fail`.
    #[error(transparent)]
    Gap(OffsetGap),
    /// A topic matched by a pattern would share its derived table with another topic (see
    /// [`crate::config::TablesConfig::collision`]).
    #[error("{0}")]
    TableCollision(String),
}

/// What applying the gap policy did.
enum Resolved {
    /// The lake offset now is this.
    Moved(i64),
    /// Another writer moved the lake offset first; it now is this.
    Raced(i64),
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
    on_gap: OnOffsetGap,
    stats: Arc<Stats>,
}

impl Partitions {
    /// No partitions yet; tables named by `tables`, new partitions starting at `start_from`,
    /// offset gaps handled by `on_gap`.
    pub fn new(
        tables: TablesConfig,
        start_from: StartFrom,
        on_gap: OnOffsetGap,
        stats: Arc<Stats>,
    ) -> Self {
        Partitions {
            assigned: HashMap::new(),
            tables,
            table_of: HashMap::new(),
            start_from,
            on_gap,
            stats,
        }
    }

    /// The table of `topic`; a topic new to this process is first checked against every topic
    /// it has seen (those named in `kafka.topics` were checked at start; topics matched by a
    /// pattern are checked here, when they are first assigned).
    fn table_for(&mut self, topic: &Arc<str>) -> Result<Arc<str>, AssignError> {
        if let Some(t) = self.table_of.get(topic) {
            return Ok(t.clone());
        }
        for other in self.table_of.keys() {
            if let Some(why) = self.tables.collision(other, topic) {
                tracing::error!(topic = %topic, other = %other, "{why}");
                return Err(AssignError::TableCollision(why));
            }
        }
        let t: Arc<str> = self.tables.table_for(topic).into();
        self.table_of.insert(topic.clone(), t.clone());
        Ok(t)
    }

    /// Takes `list` over: registers each partition in the lake (retried with `retry`), checks
    /// each lake offset against the broker's watermarks (an [`OffsetGap`] stops under `fail`,
    /// or moves the lake offset under `earliest`/`latest`), and returns where each starts — the
    /// lake's next offset, or `kafka.start_from` for a partition never committed.
    pub fn assign(
        &mut self,
        lake: &Lake,
        retry: &Backoff,
        list: &[PartitionKey],
        watermarks: WatermarkProbe<'_>,
    ) -> Result<Vec<Offset>, AssignError> {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for k in list {
            by_topic.entry(&k.topic).or_default().push(k.partition);
            self.table_for(&k.topic)?;
        }
        let mut lake_offsets: HashMap<(&str, i32), i64> = HashMap::new();
        for (topic, ps) in by_topic {
            let offsets = retry
                .run(
                    "lake read",
                    |_| true,
                    || lake.register_partitions(topic, &ps),
                )
                .map_err(AssignError::Lake)?;
            for (p, o) in offsets {
                lake_offsets.insert((topic, p), o);
            }
        }
        let mut starts = Vec::with_capacity(list.len());
        for key in list {
            let mut lake_next = lake_offsets
                .get(&(&*key.topic, key.partition))
                .copied()
                .unwrap_or(NO_OFFSET);
            if lake_next != NO_OFFSET {
                lake_next = self.check_gap(lake, key, lake_next, watermarks)?;
            }
            let start = match (lake_next, self.start_from) {
                (NO_OFFSET, StartFrom::Earliest) => Offset::Beginning,
                (NO_OFFSET, StartFrom::Latest) => Offset::End,
                (next, _) => Offset::Offset(next),
            };
            tracing::info!(topic = %key.topic, partition = key.partition, lake_next, "partition assigned");
            self.stats
                .set_partition(&key.topic, key.partition, Some(lake_next), None);
            let assigned = Assigned {
                table: self.table_for(&key.topic)?,
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

    /// Checks the lake offset `lake_next` of `key` against the broker's watermarks; returns the
    /// lake offset to start from (moved by the policy if there was a gap). Watermarks that
    /// cannot be read are logged: the fetch then reports an out-of-range position itself.
    fn check_gap(
        &self,
        lake: &Lake,
        key: &PartitionKey,
        mut lake_next: i64,
        watermarks: WatermarkProbe<'_>,
    ) -> Result<i64, AssignError> {
        let marks = match watermarks(key) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(topic = %key.topic, partition = key.partition, lake_next, error = %e, "could not check the lake offset against the broker's watermarks; a fetch out of range is still caught");
                return Ok(lake_next);
            }
        };
        // A concurrent owner may move the offset between our read and our move: read again.
        for _ in 0..5 {
            let Some(gap) = OffsetGap::find(key, lake_next, marks) else {
                return Ok(lake_next);
            };
            match self.resolve(lake, key, &gap, lake_next)? {
                Resolved::Moved(to) => return Ok(to),
                Resolved::Raced(now) => lake_next = now,
            }
        }
        Ok(lake_next)
    }

    /// Applies the gap policy to `gap` (whose partition's lake offset is `lake_next`): counts
    /// it, then fails, or moves the lake offset in a transaction of its own and logs what that
    /// skipped or reads again.
    fn resolve(
        &self,
        lake: &Lake,
        key: &PartitionKey,
        gap: &OffsetGap,
        lake_next: i64,
    ) -> Result<Resolved, AssignError> {
        self.stats.record_offset_gap(&gap.topic, gap.kind.name());
        let Some(to) = gap.target(self.on_gap) else {
            tracing::error!(topic = %gap.topic, partition = gap.partition, position = gap.position, low = gap.watermarks.low, high = gap.watermarks.high, "{gap}");
            return Err(AssignError::Gap(gap.clone()));
        };
        let update = OffsetUpdate {
            topic: key.topic.clone(),
            partition: key.partition,
            prev: lake_next,
            next: to,
        };
        match lake.move_offsets(std::slice::from_ref(&update)) {
            Ok(()) => {
                tracing::warn!(
                    topic = %gap.topic,
                    partition = gap.partition,
                    from = gap.position,
                    to,
                    low = gap.watermarks.low,
                    high = gap.watermarks.high,
                    policy = self.on_gap.name(),
                    kind = gap.kind.name(),
                    "offset gap: lake offset moved; {}",
                    gap.consequence(self.on_gap, to)
                );
                Ok(Resolved::Moved(to))
            }
            Err(SinkError::OffsetConflict { partitions, .. }) => Ok(Resolved::Raced(
                partitions.first().map_or(lake_next, |(_, now)| *now),
            )),
            Err(e) => Err(AssignError::Lake(e)),
        }
    }

    /// Checks the position of each assigned partition against the broker's watermarks after a
    /// fetch was out of range; returns the gaps found.
    pub fn find_gaps(&self, watermarks: WatermarkProbe<'_>) -> Vec<OffsetGap> {
        let mut keys: Vec<&PartitionKey> = self.assigned.keys().collect();
        keys.sort();
        let mut gaps = Vec::new();
        for key in keys {
            let a = &self.assigned[key];
            if a.lake_next == NO_OFFSET && a.expected == 0 {
                // Started from `kafka.start_from`, nothing consumed yet: never out of range.
                continue;
            }
            match watermarks(key) {
                Ok(marks) => gaps.extend(OffsetGap::find(key, a.expected, marks)),
                Err(e) => {
                    tracing::warn!(topic = %key.topic, partition = key.partition, error = %e, "could not read watermarks after a fetch out of range")
                }
            }
        }
        gaps
    }

    /// Resolves a gap found while fetching (the partition's pending data already committed, so
    /// its lake offset is its position): returns where to seek, or the error under `fail`.
    pub fn resolve_fetch_gap(
        &mut self,
        lake: &Lake,
        gap: &OffsetGap,
    ) -> Result<Option<Offset>, AssignError> {
        let key = PartitionKey::new(&gap.topic, gap.partition);
        let Some(a) = self.assigned.get(&key) else {
            return Ok(None);
        };
        let lake_next = a.lake_next;
        if lake_next != gap.position {
            // Its pending data is not committed (the flush failed): never move past it.
            tracing::warn!(topic = %gap.topic, partition = gap.partition, lake_next, position = gap.position, "offset gap left for later: the partition's pending data is not committed yet");
            return Ok(None);
        }
        let to = match self.resolve(lake, &key, gap, lake_next)? {
            Resolved::Moved(to) => to,
            // Another writer moved it: start again from the lake's offset.
            Resolved::Raced(now) => now,
        };
        Ok(self.overtaken(&key, to))
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

    /// Where each assigned partition's next message is: its position, or `kafka.start_from`
    /// for one never committed that has consumed nothing yet.
    pub fn positions(&self) -> Vec<(PartitionKey, Offset)> {
        self.assigned
            .iter()
            .map(|(k, a)| {
                let o = match (a.lake_next, a.expected, self.start_from) {
                    (NO_OFFSET, 0, StartFrom::Earliest) => Offset::Beginning,
                    (NO_OFFSET, 0, StartFrom::Latest) => Offset::End,
                    (_, e, _) => Offset::Offset(e),
                };
                (k.clone(), o)
            })
            .collect()
    }

    /// The assigned partitions.
    pub fn keys(&self) -> Vec<PartitionKey> {
        self.assigned.keys().cloned().collect()
    }
}
