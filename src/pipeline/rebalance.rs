//! Partitions changing hands: taken over on assignment (their lake offsets checked against the
//! broker's watermarks), given up on revoke (their pending data committed first), or moved by
//! the offset-gap policy after a fetch out of range. The rebalance callback's [`Rebalance`]
//! works on the line and leaves each result in the inbox the loop drains after every poll.

use std::sync::{Arc, Mutex};

use rdkafka::topic_partition_list::Offset;

use super::partitions::AssignError;
use super::{Line, PipelineError, Trigger};
use crate::sink::OFFSETS_TABLE;
use crate::source::{ConsumerActions, PartitionKey, RebalanceHandler, Restart, WatermarkProbe};
use crate::sync::lock;

pub(super) type Inbox = Mutex<Vec<Result<ConsumerActions, PipelineError>>>;

/// The rebalance callback's side: it works on the line and leaves each result in the inbox,
/// which the loop drains after every poll.
pub(super) struct Rebalance {
    pub(super) line: Arc<Mutex<Line>>,
    pub(super) inbox: Arc<Inbox>,
}

impl RebalanceHandler for Rebalance {
    fn assigned(&self, list: &[PartitionKey], watermarks: WatermarkProbe<'_>) -> Vec<Offset> {
        match lock(&self.line).assign(list, watermarks) {
            Ok(starts) => starts,
            Err(e) => {
                tracing::error!(error = %e, "could not read lake offsets for assigned partitions");
                lock(&self.inbox).push(Err(e));
                // Not fetched anyway: the loop stops before handling any message.
                list.iter().map(|_| Offset::End).collect()
            }
        }
    }

    fn revoked(&self, list: &[PartitionKey]) {
        let result = lock(&self.line).revoke(list);
        if let Err(e) = &result {
            tracing::error!(error = %e, "flush on revoke failed");
        }
        lock(&self.inbox).push(result);
    }
}

impl Line {
    /// Registers newly assigned partitions in the lake and returns where each starts.
    fn assign(
        &mut self,
        list: &[PartitionKey],
        watermarks: WatermarkProbe<'_>,
    ) -> Result<Vec<Offset>, PipelineError> {
        let retry = self.retries.failures;
        self.release_live(list);
        self.partitions
            .assign(&self.lake, &retry, list, watermarks)
            .map_err(|e| self.assign_error(e))
    }

    /// The live ring forgets the uncommitted tails of `list` (revoked, or assigned afresh:
    /// what an earlier assignment left there is not this one's).
    fn release_live(&self, list: &[PartitionKey]) {
        if let Some(ring) = &self.live {
            for key in list {
                ring.release(&key.topic, key.partition);
            }
        }
    }

    fn assign_error(&self, e: AssignError) -> PipelineError {
        match e {
            AssignError::Gap(gap) => PipelineError::OffsetGap(gap),
            AssignError::TableCollision(why) => PipelineError::TableCollision(why),
            AssignError::Lake(last) => PipelineError::FlushGaveUp {
                table: OFFSETS_TABLE.into(),
                attempts: self.retries.failures.attempts,
                last,
            },
        }
    }

    /// A fetch was out of range: finds which assigned partitions' positions are outside their
    /// watermarks and applies `kafka.on_offset_gap` to each — under `earliest`/`latest` after
    /// committing their pending data, so the lake offset moves from their position.
    pub(super) fn fetch_out_of_range(
        &mut self,
        watermarks: WatermarkProbe<'_>,
    ) -> Result<ConsumerActions, PipelineError> {
        let gaps = self.partitions.find_gaps(watermarks);
        if gaps.is_empty() {
            tracing::warn!(
                "a fetch was out of range, but every assigned partition's position is within the broker's watermarks now"
            );
            return Ok(ConsumerActions::default());
        }
        let mut actions = self.await_commit()?;
        let mut tables: Vec<Arc<str>> = Vec::new();
        for gap in &gaps {
            let key = PartitionKey::new(&gap.topic, gap.partition);
            if let Some(t) = self.partitions.table(&key)
                && self.pending.covers(t, &key)
                && !tables.contains(t)
            {
                tables.push(t.clone());
            }
        }
        for t in tables {
            actions.extend(self.flush(&t, Trigger::OffsetGap)?);
        }
        // Positions may have changed (another writer committed a partition meanwhile).
        for gap in self.partitions.find_gaps(watermarks) {
            let key = PartitionKey::new(&gap.topic, gap.partition);
            let seek = self
                .partitions
                .resolve_fetch_gap(&self.lake, &gap)
                .map_err(|e| self.assign_error(e))?;
            if let Some(offset) = seek {
                self.pending.drop_partition(&key);
                let r = actions.restarts.get_or_insert_with(Restart::default);
                r.partitions.push((key, offset));
            }
        }
        if let Some(r) = &mut actions.restarts {
            r.positions = self.partitions.positions();
        }
        Ok(actions)
    }

    /// Commits the pending data of revoked partitions (waiting for the flush in flight first:
    /// it may cover them), then forgets them.
    pub(super) fn revoke(
        &mut self,
        list: &[PartitionKey],
    ) -> Result<ConsumerActions, PipelineError> {
        let mut result = self.await_commit();
        let mut tables: Vec<Arc<str>> = Vec::new();
        for key in list {
            if let Some(t) = self.partitions.table(key)
                && self.pending.covers(t, key)
                && !tables.contains(t)
            {
                tables.push(t.clone());
            }
        }
        for t in tables {
            let Ok(actions) = &mut result else { break };
            match self.flush(&t, Trigger::Revoke) {
                Ok(more) => actions.extend(more),
                Err(e) => result = Err(e),
            }
        }
        self.partitions.revoke(list);
        self.release_live(list);
        for key in list {
            self.pending.drop_partition(key);
        }
        result.map(|mut actions| {
            actions.seeks.retain(|(k, _)| !list.contains(k));
            if let Some(r) = &mut actions.restarts {
                r.partitions.retain(|(k, _)| !list.contains(k));
                r.positions.retain(|(k, _)| !list.contains(k));
            }
            actions
        })
    }
}
