//! One Flight read: where each partition stands, and where its batches come from — the ring,
//! or the lake for positions the ring no longer holds ([`super::lake`]).
//!
//! A read keeps, per partition, the position it delivers from next. A partition whose position
//! is older than the ring (asked for, or left behind by eviction while the reader was slow) is
//! read from the lake, round by round, up to the lake's committed offset; then, if the ring
//! holds the partition from there on (nothing from that position evicted), from the ring.
//! Because the positions only move forward, a batch the ring holds twice (a partition read
//! again after a rewind) and the seams between lake and ring deliver each position once.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{Array, RecordBatch, RecordBatchOptions};
use arrow::compute::CastOptions;
use arrow::datatypes::SchemaRef;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::LiveError;
use super::lake::{LakeError, LakeSource, Windows};
use super::ring::{LiveBatch, Position, ReadError, Ring, Start};
use super::ticket::TicketSpec;
use crate::observe::FlightStats;
use crate::sync::lock;

/// Batches a reader takes from the ring at a time: its bounded queue.
const READ_CHUNK: usize = 4;

/// How often a reader with partitions on the lake and nothing new looks at the lake again.
const LAKE_POLL: Duration = Duration::from_millis(250);

/// A batch on its way to the reader.
pub(super) struct Item {
    pub(super) partition: i32,
    pub(super) offset: i64,
    pub(super) batch_index: u32,
    pub(super) batches_in_message: u32,
    pub(super) batch: RecordBatch,
    /// Read back from the lake (its columns are the table's: it is conformed to the stream's
    /// schema).
    pub(super) lake: bool,
}

impl From<LiveBatch> for Item {
    fn from(e: LiveBatch) -> Self {
        Item {
            partition: e.partition,
            offset: e.offset,
            batch_index: e.batch_index,
            batches_in_message: e.batches_in_message,
            batch: e.batch,
            lake: false,
        }
    }
}

/// Decrements the reader gauge when a stream ends or is dropped (client cancel).
pub(super) struct ReaderGuard(pub(super) Arc<FlightStats>);

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        self.0.readers.fetch_sub(1, Relaxed);
    }
}

/// The state of one read.
pub(super) struct ReadState {
    ring: Arc<Ring>,
    lake: Option<Arc<LakeSource>>,
    stats: Arc<FlightStats>,
    _guard: ReaderGuard,
    pub(super) spec: TicketSpec,
    /// The ring's sequence number to read next, for the partitions read from the ring.
    next: u64,
    /// The ring's next sequence number when the read began.
    began: u64,
    /// Per partition: the position delivered from next.
    positions: BTreeMap<i32, Position>,
    /// The partitions read from the lake now.
    from_lake: BTreeSet<i32>,
    windows: Windows,
    /// After a round that found nothing new, the lake is not asked again before this.
    lake_quiet_until: Option<Instant>,
    /// Why the reader left the ring, until its first lake round.
    lagged: Option<String>,
    pub(super) schema: SchemaRef,
    pub(super) buffered: VecDeque<Item>,
    changes: tokio::sync::watch::Receiver<u64>,
    shutdown: CancellationToken,
    pub(super) metadata: Arc<Mutex<VecDeque<bytes::Bytes>>>,
    done: bool,
}

/// Runs `f`, a lake read, where blocking is allowed.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("lake read task: {e}")))
}

/// The status of a lake read of `topic` from `from` that failed with `e`; a DuckDB failure
/// names what was being read.
fn lake_status(topic: &str, from: &BTreeMap<i32, Position>, e: LakeError) -> Status {
    match e {
        LakeError::Duck(_) => {
            let at: Vec<String> = from
                .iter()
                .map(|(p, (o, b))| format!("partition {p} at offset {o} batch {b}"))
                .collect();
            Status::unavailable(format!(
                "reading topic {topic:?} ({}) from the lake: {e}",
                at.join(", ")
            ))
        }
        _ => Status::out_of_range(e.to_string()),
    }
}

impl ReadState {
    /// A read of `spec`: from the ring, and from `lake` (if any) for positions the ring no
    /// longer holds. Fails as the first batch's source would (an unknown topic; a position
    /// older than the ring without a lake, or one the lake cannot place).
    pub(super) async fn start(
        ring: Arc<Ring>,
        lake: Option<Arc<LakeSource>>,
        stats: Arc<FlightStats>,
        spec: TicketSpec,
        shutdown: CancellationToken,
    ) -> Result<ReadState, Status> {
        // A topic the ring does not know yet may still be read from the lake, from given
        // offsets or a time.
        let known = ring.next_seq(&spec.topic).is_some();
        let lake_only =
            matches!(spec.start, Start::Offsets(_) | Start::Timestamp(_)) && lake.is_some();
        if !(known || lake_only) {
            return Err(LiveError::from(ReadError::UnknownTopic(spec.topic.clone())).into());
        }
        let (mut positions, first, began) = ring.positions(&spec.topic, &spec.start);
        if let Some(ps) = &spec.partitions {
            positions.retain(|p, _| ps.contains(p));
        }
        if lake.is_none() {
            // Without the lake, what the ring holds (or an error naming it).
            ring.resolve(&spec.topic, &spec.start)
                .map_err(LiveError::from)?;
        }
        if let (Start::Timestamp(t), Some(lake)) = (&spec.start, &lake) {
            // The lake's committed rows from `t` on may start before the ring's.
            let (lake, topic, t) = (lake.clone(), spec.topic.clone(), *t);
            let found = blocking(move || lake.offsets_for_time(&topic, t))
                .await?
                .map_err(|e| lake_status(&spec.topic, &BTreeMap::new(), e))?;
            for (p, o) in found {
                if spec.partitions.as_ref().is_none_or(|ps| ps.contains(&p)) {
                    let at = positions.entry(p).or_insert((o, 0));
                    *at = (*at).min((o, 0));
                }
            }
        }
        let mut from_lake = BTreeSet::new();
        if lake.is_some() && matches!(spec.start, Start::Offsets(_) | Start::Timestamp(_)) {
            for (p, at) in &positions {
                if at.0 < 0 {
                    return Err(Status::out_of_range(format!(
                        "position partition {p} offset {} of topic {:?} is not a Kafka offset",
                        at.0, spec.topic
                    )));
                }
                if ring.continue_at(&spec.topic, *p, *at).is_none() {
                    from_lake.insert(*p);
                }
            }
        }
        if let Some(lake) = lake.as_ref().filter(|_| !from_lake.is_empty()) {
            let lake = lake.clone();
            let topic = spec.topic.clone();
            let from: BTreeMap<i32, Position> =
                from_lake.iter().map(|p| (*p, positions[p])).collect();
            let asked = from.clone();
            blocking(move || lake.check_start(&topic, &asked))
                .await?
                .map_err(|e| lake_status(&spec.topic, &from, e))?;
        }
        // From the positions' moment: a batch evicted since is a lag, not a silent gap.
        let next = match spec.start {
            Start::Latest => began,
            _ => first,
        };
        stats.readers.fetch_add(1, Relaxed);
        Ok(ReadState {
            changes: ring.subscribe(),
            ring,
            lake,
            _guard: ReaderGuard(stats.clone()),
            stats,
            spec,
            next,
            began,
            positions,
            from_lake,
            windows: Windows::default(),
            lake_quiet_until: None,
            lagged: None,
            schema: Arc::new(arrow::datatypes::Schema::empty()),
            buffered: VecDeque::new(),
            shutdown,
            metadata: Arc::new(Mutex::new(VecDeque::new())),
            done: false,
        })
    }

    fn wanted(&self, p: i32) -> bool {
        self.spec
            .partitions
            .as_ref()
            .is_none_or(|ps| ps.contains(&p))
    }

    fn keep(&self, e: &LiveBatch) -> bool {
        self.wanted(e.partition)
            && !self.from_lake.contains(&e.partition)
            && self
                .positions
                .get(&e.partition)
                .is_none_or(|at| (e.offset, e.batch_index) >= *at)
    }

    /// Fills `buffered`; `Ok(false)` if nothing new is there.
    pub(super) async fn fill(&mut self) -> Result<bool, Status> {
        let mut moved = false;
        let quiet = self.lake_quiet_until.is_some_and(|t| Instant::now() < t);
        if !self.from_lake.is_empty() && !quiet {
            let found = self.fill_from_lake().await?;
            self.lake_quiet_until = (!found).then(|| Instant::now() + LAKE_POLL);
            moved |= found;
            if !self.buffered.is_empty() {
                return Ok(true);
            }
        }
        moved |= self.fill_from_ring()?;
        Ok(moved)
    }

    fn fill_from_ring(&mut self) -> Result<bool, Status> {
        let read = {
            let keep = |e: &LiveBatch| self.keep(e);
            self.ring
                .read(&self.spec.topic, self.next, READ_CHUNK, keep)
        };
        match read {
            Ok((batches, next)) => {
                let moved = next != self.next;
                self.next = next;
                self.buffered.extend(batches.into_iter().map(Item::from));
                Ok(moved)
            }
            // The topic's first batch is still to come here (the lake has older ones).
            Err(ReadError::UnknownTopic(_)) if self.lake.is_some() => Ok(false),
            Err(lag @ ReadError::Lagged { .. }) if self.lake.is_some() => {
                // Evicted before this reader got to them: every partition continues from the
                // lake where it stands (one that began after the read did, at its beginning).
                for (p, at) in self.ring.begun_since(&self.spec.topic, self.began) {
                    self.positions.entry(p).or_insert(at);
                }
                let parts: Vec<i32> = self
                    .positions
                    .keys()
                    .copied()
                    .filter(|p| self.wanted(*p))
                    .collect();
                self.from_lake.extend(parts);
                self.next = self.ring.first_seq(&self.spec.topic).unwrap_or(self.next);
                self.lagged = Some(lag.to_string());
                Ok(true)
            }
            Err(e) => {
                if matches!(e, ReadError::Lagged { .. }) {
                    self.stats.lag_disconnects.fetch_add(1, Relaxed);
                }
                Err(LiveError::from(e).into())
            }
        }
    }

    async fn fill_from_lake(&mut self) -> Result<bool, Status> {
        let Some(lake) = self.lake.clone() else {
            return Ok(false);
        };
        let from: BTreeMap<i32, Position> = self
            .from_lake
            .iter()
            .map(|p| (*p, self.positions.get(p).copied().unwrap_or((0, 0))))
            .collect();
        let topic = self.spec.topic.clone();
        let mut windows = std::mem::take(&mut self.windows);
        let asked = from.clone();
        let turn = lake.turn().await;
        let (round, windows) = blocking(move || {
            let _turn = turn;
            let round = lake.read(&topic, &asked, &mut windows);
            (round, windows)
        })
        .await?;
        self.windows = windows;
        let round = match (round, self.lagged.take()) {
            (Ok(round), lagged) => {
                // A reader the ring evicted ahead of goes on from the lake: counted once.
                if lagged.is_some() {
                    self.stats.lake_catchups.fetch_add(1, Relaxed);
                }
                round
            }
            // The lake cannot serve this topic (no lineage, a shared table): the reader is cut
            // off as it would be without the lake, saying why the lake did not help.
            (Err(e @ (LakeError::NoLineage { .. } | LakeError::Shared { .. })), Some(lag)) => {
                self.stats.lag_disconnects.fetch_add(1, Relaxed);
                return Err(Status::resource_exhausted(format!(
                    "{lag}; the lake cannot serve it either: {e}"
                )));
            }
            (Err(e), lagged) => {
                self.lagged = lagged;
                return Err(lake_status(&self.spec.topic, &from, e));
            }
        };
        let mut moved = !round.batches.is_empty();
        self.stats
            .lake_batches
            .fetch_add(round.batches.len() as u64, Relaxed);
        self.buffered
            .extend(round.batches.into_iter().map(|b| Item {
                partition: b.partition,
                offset: b.offset,
                batch_index: b.batch_index,
                batches_in_message: b.batches_in_message,
                batch: b.batch,
                lake: true,
            }));
        for (p, at) in from {
            let reached = round.reached.get(&p).copied().unwrap_or(at).max(at);
            moved |= reached > at;
            self.positions.insert(p, reached);
            let caught_up = round.committed.get(&p).is_none_or(|w| reached >= (*w, 0));
            if caught_up && let Some(seq) = self.ring.continue_at(&self.spec.topic, p, reached) {
                self.from_lake.remove(&p);
                self.next = self.next.min(seq);
                moved = true;
            }
        }
        Ok(moved)
    }

    /// Notes that the reader got `item`.
    fn delivered(&mut self, item: &Item) {
        let after = super::ring::after((item.offset, item.batch_index));
        let at = self.positions.entry(item.partition).or_insert(after);
        *at = (*at).max(after);
    }
}

/// `batch` with the columns and types of `target`, if it can be so without losing a value:
/// columns are matched by name, cast where their types differ (failing on any value that does
/// not fit), filled with nulls where the batch lacks them; a column `target` lacks must be
/// all null.
pub(super) fn conform(batch: &RecordBatch, target: &SchemaRef) -> Option<RecordBatch> {
    if batch.schema() == *target {
        return Some(batch.clone());
    }
    let strict = CastOptions {
        safe: false,
        ..Default::default()
    };
    let mut columns = Vec::with_capacity(target.fields().len());
    for f in target.fields() {
        columns.push(match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => c.clone(),
            Some(c) => arrow::compute::cast_with_options(c, f.data_type(), &strict).ok()?,
            None => arrow::array::new_null_array(f.data_type(), batch.num_rows()),
        });
    }
    let schema = batch.schema();
    for (f, c) in schema.fields().iter().zip(batch.columns()) {
        if target.field_with_name(f.name()).is_err() && c.null_count() != c.len() {
            return None;
        }
    }
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(target.clone(), columns, &options).ok()
}

pub(super) type BatchStream =
    futures::stream::BoxStream<'static, Result<RecordBatch, arrow_flight::error::FlightError>>;

/// The batches of a read, each with its `app_metadata` queued in `metadata`.
pub(super) fn batches(st: ReadState) -> BatchStream {
    use futures::StreamExt;
    futures::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(e) = st.buffered.pop_front() {
                let batch = if e.lake {
                    conform(&e.batch, &st.schema)
                } else {
                    Some(e.batch.clone()).filter(|b| b.schema() == st.schema)
                };
                // A schema change ends the stream cleanly (resuming continues with the new
                // schema; see the module docs of `flight`).
                let batch = batch?;
                let meta = serde_json::json!({
                    "topic": st.spec.topic,
                    "partition": e.partition,
                    "offset": e.offset,
                    "batch": e.batch_index,
                    "batches": e.batches_in_message,
                })
                .to_string();
                st.delivered(&e);
                lock(&st.metadata).push_back(meta.into());
                return Some((Ok(batch), st));
            }
            if st.done {
                return None;
            }
            match st.fill().await {
                Ok(true) => continue,
                Ok(false) if !st.spec.follow => return None,
                Ok(false) => {
                    let poll_lake = !st.from_lake.is_empty();
                    // New batches first: a follower reads everything pushed before the stop.
                    tokio::select! {
                        biased;
                        changed = st.changes.changed() => if changed.is_err() {
                            return None;
                        },
                        () = st.shutdown.cancelled() => return None,
                        () = tokio::time::sleep(LAKE_POLL), if poll_lake => {}
                    }
                }
                Err(status) => {
                    st.done = true;
                    return Some((
                        Err(arrow_flight::error::FlightError::Tonic(Box::new(status))),
                        st,
                    ));
                }
            }
        }
    })
    .boxed()
}

/// The schema a read's stream starts with: its first batch's (a lake batch's conformed to the
/// topic's newest schema, if it can be), or the topic's newest if none is there yet.
pub(super) fn first_schema(st: &ReadState) -> SchemaRef {
    let newest = st.ring.schema(&st.spec.topic);
    match (st.buffered.front(), newest) {
        (Some(e), Some(n)) if e.lake && conform(&e.batch, &n).is_some() => n,
        (Some(e), _) => e.batch.schema(),
        (None, Some(n)) => n,
        (None, None) => Arc::new(arrow::datatypes::Schema::empty()),
    }
}
