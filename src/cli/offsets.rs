//! `sluice offsets`: see each partition's lake offset against the broker's watermarks, and move
//! it (`set`), conditional on the value read, so a running instance's commit in between makes
//! the command refuse instead of losing that commit.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::init_logging;
use crate::config::{Config, is_topic_pattern};
use crate::pipeline::OffsetGap;
use crate::retry::Backoff;
use crate::sink::{Lake, NO_OFFSET, OffsetRow, OffsetUpdate, SinkError};
use crate::source::{KafkaSource, PartitionKey, Watermarks};

/// How long a metadata request may take.
pub(super) const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Where `sluice offsets set --to` moves a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The low watermark.
    Earliest,
    /// The high watermark.
    Latest,
    /// This offset.
    Offset(i64),
    /// The first message at or after this time (text as given; parsed by DuckDB as a
    /// `TIMESTAMPTZ`).
    Time(String),
}

impl Target {
    /// Parses `--to`: `earliest`, `latest`, an offset, or a timestamp such as
    /// `2026-12-01T10:00:00Z`.
    pub fn parse(text: &str) -> Target {
        match text {
            "earliest" => Target::Earliest,
            "latest" => Target::Latest,
            t => match t.parse::<i64>() {
                Ok(o) => Target::Offset(o),
                Err(_) => Target::Time(t.to_string()),
            },
        }
    }
}

fn open(config: Option<&Path>) -> Result<(Config, Lake, KafkaSource)> {
    let cfg = Config::load(config)?;
    init_logging("warn", cfg.log.format);
    let lake = Lake::open_with(
        &cfg.lake,
        &cfg.kafka.group_id,
        Backoff::conflicts(&cfg.flush.retry),
    )?;
    let source = KafkaSource::new(&cfg.kafka)?;
    Ok((cfg, lake, source))
}

/// One partition as `sluice offsets show` and `sluice status` see it: the lake's next offset
/// against the broker's watermarks.
pub(super) struct Shown {
    pub(super) topic: String,
    pub(super) partition: i32,
    /// The lake's next offset ([`NO_OFFSET`]: registered, never committed); `None`: not
    /// registered.
    pub(super) lake: Option<i64>,
    /// When the lake offset last moved (or was registered), UTC, RFC 3339.
    pub(super) committed_at: Option<String>,
    /// `None`: the broker does not have the partition.
    pub(super) marks: Option<Watermarks>,
}

impl Shown {
    pub(super) fn status(&self) -> String {
        let key = PartitionKey::new(&self.topic, self.partition);
        match (self.lake, self.marks) {
            (_, None) => "not on the broker".into(),
            (None, _) => "not registered".into(),
            (Some(NO_OFFSET), _) => "never committed".into(),
            (Some(o), Some(m)) => match OffsetGap::find(&key, o, m) {
                Some(g) => format!("offset gap ({})", g.kind.name()),
                None => "ok".into(),
            },
        }
    }

    /// Messages on the broker the lake does not hold yet (all of them if nothing was
    /// committed); `None` when it cannot be told (no watermarks, or an offset gap).
    pub(super) fn lag(&self) -> Option<i64> {
        match (self.lake, self.marks) {
            (Some(o), Some(m)) if o != NO_OFFSET && o >= m.low && o <= m.high => Some(m.high - o),
            (Some(NO_OFFSET) | None, Some(m)) => Some(m.high - m.low),
            _ => None,
        }
    }

    /// The lake offset as shown: `none` if never committed, `-` if not registered.
    pub(super) fn lake_text(&self) -> String {
        match self.lake {
            Some(NO_OFFSET) => "none".into(),
            o => opt(o),
        }
    }
}

/// A number, or `-`.
pub(super) fn opt(v: Option<i64>) -> String {
    v.map_or("-".to_string(), |v| v.to_string())
}

/// The topics to show: those with lake offsets in `rows`, and the configured ones (not the
/// patterns).
pub(super) fn topics_of(cfg: &Config, rows: &[OffsetRow]) -> BTreeSet<String> {
    let mut topics: BTreeSet<String> = rows.iter().map(|r| r.topic.clone()).collect();
    topics.extend(
        cfg.kafka
            .topics
            .iter()
            .filter(|t| !is_topic_pattern(t))
            .cloned(),
    );
    topics
}

/// Every partition of `topic` the broker has or `rows` (the lake's offsets) name, by
/// partition, with the broker's watermarks.
pub(super) fn partitions_of(
    source: &KafkaSource,
    topic: &str,
    rows: &[OffsetRow],
) -> Result<Vec<Shown>> {
    let mut parts: BTreeMap<i32, Shown> = BTreeMap::new();
    let on_broker = source
        .partitions_of(topic, METADATA_TIMEOUT)
        .with_context(|| format!("reading topic {topic}'s partitions from the brokers"))?;
    for p in on_broker {
        let key = PartitionKey::new(topic, p);
        let marks = source.watermarks(&key)?;
        parts.insert(
            p,
            Shown {
                topic: topic.to_string(),
                partition: p,
                lake: None,
                committed_at: None,
                marks: Some(marks),
            },
        );
    }
    for r in rows.iter().filter(|r| r.topic == topic) {
        let e = parts.entry(r.partition).or_insert(Shown {
            topic: topic.to_string(),
            partition: r.partition,
            lake: None,
            committed_at: None,
            marks: None,
        });
        e.lake = Some(r.next_offset);
        e.committed_at = r.committed_at.clone();
    }
    Ok(parts.into_values().collect())
}

/// `sluice offsets show`: per topic and partition, the lake offset, the watermarks, the lag
/// and the last commit time.
pub fn show(config: Option<&Path>) -> Result<()> {
    let (cfg, lake, source) = open(config)?;
    let rows = lake.list_offsets()?;
    let mut lines = Vec::new();
    for topic in &topics_of(&cfg, &rows) {
        lines.extend(partitions_of(&source, topic, &rows)?);
    }
    let mut table = vec![header(["topic"], [])];
    for s in &lines {
        table.push([
            s.topic.clone(),
            s.partition.to_string(),
            s.lake_text(),
            opt(s.marks.map(|m| m.low)),
            opt(s.marks.map(|m| m.high)),
            opt(s.lag()),
            s.committed_at.clone().unwrap_or_else(|| "-".into()),
            s.status(),
        ]);
    }
    println!("consumer group {}", cfg.kafka.group_id);
    print_table(&table);
    Ok(())
}

/// Prints `rows` (the first one the header) in columns aligned to their widest cell.
/// The columns of a partition's line, as `offsets show` and `status` print them.
const PARTITION_COLUMNS: [&str; 7] = [
    "partition",
    "lake_offset",
    "low",
    "high",
    "lag",
    "last_commit",
    "status",
];

/// A table's header: `before`, the partition columns, `after` (N = B + 7 + A).
pub(super) fn header<const B: usize, const A: usize, const N: usize>(
    before: [&str; B],
    after: [&str; A],
) -> [String; N] {
    let all: Vec<&str> = before
        .into_iter()
        .chain(PARTITION_COLUMNS)
        .chain(after)
        .collect();
    assert_eq!(all.len(), N, "header width");
    std::array::from_fn(|i| all[i].to_string())
}

pub(super) fn print_table<const N: usize>(rows: &[[String; N]]) {
    let mut width = [0usize; N];
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

/// The partitions `set` moves: the one named, or every one the broker has.
fn chosen(
    cfg: &Config,
    topic: &str,
    partition: Option<i32>,
    on_broker: Vec<i32>,
) -> Result<Vec<i32>> {
    Ok(match partition {
        Some(p) if !on_broker.contains(&p) => bail!(
            "topic {topic} has no partition {p} on {} (it has {})",
            cfg.kafka.brokers,
            on_broker.len()
        ),
        Some(p) => vec![p],
        None => on_broker,
    })
}

/// Each partition's move: from the lake offset read now to the offset `target` names, checked
/// against the broker's watermarks.
fn updates_to(
    lake: &Lake,
    source: &KafkaSource,
    topic: &str,
    partitions: &[i32],
    target: &Target,
) -> Result<Vec<OffsetUpdate>> {
    let by_time = match target {
        Target::Time(text) => {
            let ms = lake.timestamp_ms(text).map_err(|e| {
                anyhow::anyhow!(
                    "--to {text:?} is not earliest, latest, an offset or a timestamp (e.g. 2026-12-01T10:00:00Z): {e}"
                )
            })?;
            source
                .offsets_for_time(topic, partitions, ms)?
                .into_iter()
                .collect::<BTreeMap<i32, Option<i64>>>()
        }
        _ => BTreeMap::new(),
    };
    let now = lake.read_offsets(topic)?;
    let mut updates = Vec::new();
    for p in partitions {
        let key = PartitionKey::new(topic, *p);
        let marks = source.watermarks(&key)?;
        let next = match target {
            Target::Earliest => marks.low,
            Target::Latest => marks.high,
            Target::Offset(o) => {
                if *o < marks.low || *o > marks.high {
                    bail!(
                        "offset {o} is outside what the broker holds for topic {topic} partition {p} (low {}, high {}); nothing was changed",
                        marks.low,
                        marks.high
                    );
                }
                *o
            }
            // No message that new: the next one produced.
            Target::Time(_) => by_time.get(p).copied().flatten().unwrap_or(marks.high),
        };
        updates.push(OffsetUpdate {
            topic: topic.into(),
            partition: *p,
            prev: now.get(p).copied().unwrap_or(NO_OFFSET),
            next,
        });
    }
    Ok(updates)
}

/// `sluice offsets set`: moves the lake offsets of `topic` (one partition, or all the broker
/// has) to `to`, in one lake transaction conditional on the values read.
pub fn set(config: Option<&Path>, topic: &str, partition: Option<i32>, to: &str) -> Result<()> {
    let (cfg, lake, source) = open(config)?;
    let target = Target::parse(to);
    let on_broker = source
        .partitions_of(topic, METADATA_TIMEOUT)
        .with_context(|| format!("reading topic {topic}'s partitions from the brokers"))?;
    if on_broker.is_empty() {
        bail!("topic {topic} has no partitions on {}", cfg.kafka.brokers);
    }
    let partitions = chosen(&cfg, topic, partition, on_broker)?;
    let updates = updates_to(&lake, &source, topic, &partitions, &target)?;
    match lake.move_offsets(&updates) {
        Ok(()) => {}
        Err(SinkError::OffsetConflict { partitions, .. }) => bail!(
            "the lake offsets of topic {topic} changed while setting them (partition, offset now: {partitions:?}): a running instance committed meanwhile; nothing was changed. Stop the instances of group {} first, or run the command again",
            cfg.kafka.group_id
        ),
        Err(e) => return Err(e.into()),
    }
    for u in &updates {
        let prev = if u.prev == NO_OFFSET {
            "none".to_string()
        } else {
            u.prev.to_string()
        };
        println!(
            "topic {topic} partition {}: lake offset {prev} -> {}",
            u.partition, u.next
        );
    }
    Ok(())
}
