//! `source`: the Kafka consumer. A consumer-group member with auto-commit off, bounded prefetch,
//! and a rebalance hook through which the pipeline seeks assigned partitions to the lake's
//! offsets before they start fetching. Messages are handed out as [`KafkaMessage`] owners whose
//! payload backs Arrow buffers without a copy.

mod owner;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};

pub use owner::KafkaMessage;

use crate::config::KafkaConfig;

/// Errors of the Kafka source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The client could not be created from the configuration.
    #[error("kafka client configuration: {0}")]
    Config(KafkaError),
    /// Subscribing failed.
    #[error("kafka subscribe to {topics:?}: {source}")]
    Subscribe {
        /// Topics.
        topics: Vec<String>,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// A consumer-level error reported by poll.
    #[error("kafka: {0}")]
    Poll(KafkaError),
    /// A partition's fetch position was out of the range the broker holds
    /// (`auto.offset.reset=error`): which partition is not reported, so the pipeline checks
    /// every assigned one against its watermarks.
    #[error(
        "kafka: a fetch position is out of range (topic recreated or retention deleted unread messages)"
    )]
    OutOfRange,
    /// A partition's watermarks could not be read.
    #[error("kafka watermarks of topic {topic} partition {partition}: {source}")]
    Watermarks {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// Broker metadata could not be fetched.
    #[error("kafka metadata from {brokers}: {source}")]
    Metadata {
        /// Bootstrap servers.
        brokers: String,
        /// librdkafka's error.
        source: KafkaError,
    },
}

/// A partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
}

impl PartitionKey {
    /// `topic`'s partition `partition`.
    pub fn new(topic: &str, partition: i32) -> Self {
        PartitionKey {
            topic: topic.into(),
            partition,
        }
    }
}

/// The offsets a partition holds on the broker: `low` is the oldest message's offset, `high`
/// the offset the next produced message gets (so `low == high` is empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    /// Low watermark.
    pub low: i64,
    /// High watermark.
    pub high: i64,
}

/// Reads a partition's watermarks from the broker (what the rebalance callback hands the
/// handler: it is only asked for partitions whose position must be checked).
pub type WatermarkProbe<'a> = &'a dyn Fn(&PartitionKey) -> Result<Watermarks, SourceError>;

/// How long a watermark request may take.
pub const WATERMARK_TIMEOUT: Duration = Duration::from_secs(10);

fn watermarks_of<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    key: &PartitionKey,
) -> Result<Watermarks, SourceError> {
    consumer
        .fetch_watermarks(&key.topic, key.partition, WATERMARK_TIMEOUT)
        .map(|(low, high)| Watermarks { low, high })
        .map_err(|source| SourceError::Watermarks {
            topic: key.topic.to_string(),
            partition: key.partition,
            source,
        })
}

/// Where a message came from: what the pipeline, the live ring and the quarantine table record
/// of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Kafka timestamp, ms since the epoch, if the broker or producer set one.
    pub timestamp_ms: Option<i64>,
}

impl MessageMeta {
    /// Its partition.
    pub fn key(&self) -> PartitionKey {
        PartitionKey {
            topic: self.topic.clone(),
            partition: self.partition,
        }
    }
}

/// Consumer-side work a stage asks the consumer to do (outside callbacks and locks).
#[derive(Debug, Default)]
pub struct ConsumerActions {
    /// Offsets committed to the lake, to record in Kafka for lag tooling.
    pub commits: Vec<(PartitionKey, i64)>,
    /// Partitions to move (after another writer committed their range).
    pub seeks: Vec<(PartitionKey, Offset)>,
    /// Partitions whose fetching stopped (a fetch out of range) to start again at these
    /// offsets, and the position of every assigned partition (an eager-protocol consumer must
    /// assign them all again).
    pub restarts: Option<Restart>,
}

/// Partitions to start fetching again (see [`KafkaSource::restart`]).
#[derive(Debug, Default)]
pub struct Restart {
    /// The stopped partitions and where they start.
    pub partitions: Vec<(PartitionKey, Offset)>,
    /// Where every assigned partition's next message is.
    pub positions: Vec<(PartitionKey, Offset)>,
}

impl ConsumerActions {
    /// Adds `other`'s work after this one's.
    pub fn extend(&mut self, other: ConsumerActions) {
        self.commits.extend(other.commits);
        self.seeks.extend(other.seeks);
        if let Some(r) = other.restarts {
            let mine = self.restarts.get_or_insert_with(Restart::default);
            mine.partitions.extend(r.partitions);
            mine.positions = r.positions;
        }
    }

    /// Whether a seek or restart of `topic`'s `partition` is among them.
    pub fn seeks_partition(&self, topic: &str, partition: i32) -> bool {
        let is = |k: &PartitionKey| k.partition == partition && &*k.topic == topic;
        self.seeks.iter().any(|(k, _)| is(k))
            || self
                .restarts
                .as_ref()
                .is_some_and(|r| r.partitions.iter().any(|(k, _)| is(k)))
    }
}

/// Called by the consumer from inside `poll` when partitions are assigned or revoked.
pub trait RebalanceHandler: Send + Sync {
    /// Partitions are being assigned; returns where each should start. `watermarks` reads a
    /// partition's watermarks from the broker (to check a lake offset against them).
    fn assigned(&self, partitions: &[PartitionKey], watermarks: WatermarkProbe<'_>) -> Vec<Offset>;
    /// Partitions are being revoked; pending work for them must be flushed or dropped now.
    fn revoked(&self, partitions: &[PartitionKey]);
}

/// The consumer's context: forwards rebalances to the pipeline's handler, and librdkafka's
/// statistics (high watermarks, broker states) to the counters.
pub struct SluiceContext {
    handler: Mutex<Option<Arc<dyn RebalanceHandler>>>,
    stats: Mutex<Option<Arc<crate::observe::Stats>>>,
}

impl ClientContext for SluiceContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        let Some(stats) = crate::sync::lock(&self.stats).clone() else {
            return;
        };
        let up = statistics
            .brokers
            .values()
            .filter(|b| b.nodeid >= 0 && b.state == "UP")
            .count() as u64;
        *crate::sync::lock(&stats.brokers_up) = Some(up);
        if let Some(group) = &statistics.cgrp {
            stats.record_group_state(&group.join_state);
        }
        let assigned: Vec<(String, i32)> = crate::sync::lock(&stats.partitions)
            .keys()
            .cloned()
            .collect();
        for (topic, partition) in assigned {
            if let Some(p) = statistics
                .topics
                .get(&topic)
                .and_then(|t| t.partitions.get(&partition))
                && p.hi_offset >= 0
            {
                stats.set_partition(&topic, partition, None, Some(p.hi_offset));
            }
        }
    }
}

impl ConsumerContext for SluiceContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let handler = crate::sync::lock(&self.handler).clone();
        let parts: Vec<PartitionKey> = tpl
            .elements()
            .iter()
            .map(|e| PartitionKey::new(e.topic(), e.partition()))
            .collect();
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if let Some(h) = &handler {
                    let probe = |key: &PartitionKey| watermarks_of(consumer, key);
                    let starts = h.assigned(&parts, &probe);
                    for (key, start) in parts.iter().zip(starts) {
                        if let Err(e) = tpl.set_partition_offset(&key.topic, key.partition, start) {
                            tracing::error!(topic = %key.topic, partition = key.partition, error = %e, "could not set start offset");
                        }
                    }
                }
                let r = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = r {
                    tracing::error!(error = %e, "assign failed");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                if let Some(h) = &handler {
                    h.revoked(&parts);
                }
                let r = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = r {
                    tracing::error!(error = %e, "unassign failed");
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance error");
                if let Err(e) = consumer.unassign() {
                    tracing::error!(error = %e, "unassign failed");
                }
            }
        }
    }
}

/// The consumer shared by the pipeline and every live [`KafkaMessage`].
pub type SharedConsumer = Arc<BaseConsumer<SluiceContext>>;

/// A Kafka consumer-group member.
pub struct KafkaSource {
    consumer: SharedConsumer,
    brokers: String,
}

/// The consumer's librdkafka configuration, from [`KafkaConfig::librdkafka_properties`] (the
/// benchmarks' consume ceiling uses it too).
pub fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in cfg.librdkafka_properties() {
        c.set(k, v);
    }
    c
}

impl KafkaSource {
    /// Creates the consumer (not yet subscribed).
    pub fn new(cfg: &KafkaConfig) -> Result<Self, SourceError> {
        let c = client_config(cfg);
        let ctx = SluiceContext {
            handler: Mutex::new(None),
            stats: Mutex::new(None),
        };
        let consumer: BaseConsumer<SluiceContext> =
            c.create_with_context(ctx).map_err(SourceError::Config)?;
        Ok(KafkaSource {
            consumer: Arc::new(consumer),
            brokers: cfg.brokers.clone(),
        })
    }

    /// Sends librdkafka's statistics (high watermarks, broker states) to `stats`.
    pub fn set_stats(&self, stats: Arc<crate::observe::Stats>) {
        *crate::sync::lock(&self.consumer.context().stats) = Some(stats);
    }

    /// Installs the rebalance handler (before subscribing).
    pub fn set_handler(&self, handler: Arc<dyn RebalanceHandler>) {
        *crate::sync::lock(&self.consumer.context().handler) = Some(handler);
    }

    /// Removes the rebalance handler (breaks the consumer → handler → pipeline cycle at shutdown).
    pub fn clear_handler(&self) {
        *crate::sync::lock(&self.consumer.context().handler) = None;
    }

    /// Joins the group for `topics`.
    pub fn subscribe(&self, topics: &[String]) -> Result<(), SourceError> {
        let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        self.consumer
            .subscribe(&refs)
            .map_err(|source| SourceError::Subscribe {
                topics: topics.to_vec(),
                source,
            })
    }

    /// Waits up to `timeout` for the next message. Rebalance callbacks run inside this call.
    pub fn poll(&self, timeout: Duration) -> Option<Result<KafkaMessage, SourceError>> {
        match self.consumer.poll(timeout)? {
            Ok(m) => Some(Ok(KafkaMessage::new(m, &self.consumer))),
            Err(KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset)) => {
                Some(Err(SourceError::OutOfRange))
            }
            Err(e) => Some(Err(SourceError::Poll(e))),
        }
    }

    /// Reads a partition's watermarks from the broker.
    pub fn watermarks(&self, key: &PartitionKey) -> Result<Watermarks, SourceError> {
        watermarks_of(&self.consumer, key)
    }

    /// The partitions of `topic` (from the broker's metadata).
    pub fn partitions_of(&self, topic: &str, timeout: Duration) -> Result<Vec<i32>, SourceError> {
        let md = self
            .consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(|source| SourceError::Metadata {
                brokers: self.brokers.clone(),
                source,
            })?;
        let mut out: Vec<i32> = md
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// The offset of each of `topic`'s `partitions` whose first message has a timestamp at or
    /// after `timestamp_ms` (`None` if no message is that new).
    pub fn offsets_for_time(
        &self,
        topic: &str,
        partitions: &[i32],
        timestamp_ms: i64,
    ) -> Result<Vec<(i32, Option<i64>)>, SourceError> {
        let mut list = TopicPartitionList::new();
        for p in partitions {
            list.add_partition_offset(topic, *p, Offset::Offset(timestamp_ms))
                .map_err(|source| SourceError::Metadata {
                    brokers: self.brokers.clone(),
                    source,
                })?;
        }
        let found = self
            .consumer
            .offsets_for_times(list, WATERMARK_TIMEOUT)
            .map_err(|source| SourceError::Metadata {
                brokers: self.brokers.clone(),
                source,
            })?;
        Ok(found
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => (e.partition(), Some(o)),
                _ => (e.partition(), None),
            })
            .collect())
    }

    /// Moves a partition's fetch position (after an offset conflict).
    pub fn seek(&self, key: &PartitionKey, offset: Offset) -> Result<(), KafkaError> {
        self.consumer
            .seek(&key.topic, key.partition, offset, Duration::from_secs(10))
    }

    /// Starts fetching again partitions librdkafka stopped after a fetch out of range (a seek
    /// cannot move a stopped partition): the cooperative protocol re-assigns just them, the
    /// eager one (librdkafka allows only `assign` there) the whole assignment at the positions
    /// given.
    pub fn restart(&self, r: &Restart) -> Result<(), KafkaError> {
        let list = |parts: &[(PartitionKey, Offset)]| {
            let mut l = TopicPartitionList::new();
            for (k, o) in parts {
                l.add_partition_offset(&k.topic, k.partition, *o)?;
            }
            Ok::<_, KafkaError>(l)
        };
        match self.consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => {
                let keys: Vec<PartitionKey> = r.partitions.iter().map(|(k, _)| k.clone()).collect();
                self.consumer.incremental_unassign(&tpl(&keys))?;
                self.consumer.incremental_assign(&list(&r.partitions)?)
            }
            _ => self.consumer.assign(&list(&r.positions)?),
        }
    }

    /// Pauses fetching of the given partitions.
    pub fn pause(&self, partitions: &[PartitionKey]) -> Result<(), KafkaError> {
        self.consumer.pause(&tpl(partitions))
    }

    /// Resumes fetching of the given partitions.
    pub fn resume(&self, partitions: &[PartitionKey]) -> Result<(), KafkaError> {
        self.consumer.resume(&tpl(partitions))
    }

    /// Records offsets in Kafka for lag tooling (after they are committed to the lake).
    pub fn commit_for_lag_tooling(&self, offsets: &[(PartitionKey, i64)]) {
        let mut list = TopicPartitionList::new();
        for (key, o) in offsets {
            let _ = list.add_partition_offset(&key.topic, key.partition, Offset::Offset(*o));
        }
        if list.count() > 0
            && let Err(e) = self.consumer.commit(&list, CommitMode::Async)
        {
            tracing::debug!(error = %e, "kafka offset commit (lag tooling only) failed");
        }
    }

    /// Checks the brokers answer, returning the number of partitions of each topic.
    pub fn check(
        &self,
        topics: &[String],
        timeout: Duration,
    ) -> Result<Vec<(String, usize)>, SourceError> {
        let mut out = Vec::new();
        if topics.is_empty() {
            // Still prove the brokers answer.
            self.consumer
                .fetch_metadata(None, timeout)
                .map_err(|source| SourceError::Metadata {
                    brokers: self.brokers.clone(),
                    source,
                })?;
        }
        for t in topics {
            let md = self
                .consumer
                .fetch_metadata(Some(t), timeout)
                .map_err(|source| SourceError::Metadata {
                    brokers: self.brokers.clone(),
                    source,
                })?;
            let n = md
                .topics()
                .first()
                .map(|mt| mt.partitions().len())
                .unwrap_or(0);
            out.push((t.clone(), n));
        }
        Ok(out)
    }

    /// Leaves the group cleanly (runs the revoke callback).
    pub fn close(&self) {
        self.consumer.unsubscribe();
        // Serve the revoke callback and the leave-group request.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if self
                .consumer
                .assignment()
                .map(|a| a.count() == 0)
                .unwrap_or(true)
            {
                break;
            }
            let _ = self.consumer.poll(Duration::from_millis(50));
        }
    }
}

fn tpl(partitions: &[PartitionKey]) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    for key in partitions {
        list.add_partition(&key.topic, key.partition);
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sluice_defaults_apply_and_kafka_properties_override_them() {
        let mut cfg = KafkaConfig::default();
        let c = client_config(&cfg);
        assert_eq!(c.get("fetch.queue.backoff.ms"), Some("10"));
        assert_eq!(c.get("statistics.interval.ms"), Some("5000"));
        assert_eq!(c.get("max.partition.fetch.bytes"), Some("1048576"));
        // librdkafka accepts every default (an unknown property fails here).
        KafkaSource::new(&cfg).unwrap();
        cfg.properties
            .insert("fetch.queue.backoff.ms".into(), "250".into());
        let c = client_config(&cfg);
        assert_eq!(c.get("fetch.queue.backoff.ms"), Some("250"));
        assert_eq!(c.get("statistics.interval.ms"), Some("5000"));
    }
}
