//! `sluice status`: one screen of where ingestion stands, read from the lake and the broker (so
//! it works whether or not an instance runs), and from the configured metrics endpoint when an
//! instance answers there: per topic and partition the lake offset, the watermarks, the lag and
//! the age of the last commit; per table its rows, data files, bytes and inlined rows; then
//! totals, with the instance's readiness and pending bytes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Result, bail};
use serde::Serialize;

use super::init_logging;
use super::instance::{self, Probe};
use super::offsets::{Shown, header, opt, partitions_of, print_table, topics_of};
use crate::config::{CatalogKind, Config};
use crate::retry::Backoff;
use crate::sink::{Lake, NO_OFFSET, OffsetRow, QUARANTINE_TABLE, SinkError, TableContents};
use crate::source::KafkaSource;

/// The whole screen, as `--json` prints it.
#[derive(Debug, Serialize)]
struct Report {
    consumer_group: String,
    instance: InstanceReport,
    lake: LakeReport,
    topics: Vec<TopicReport>,
    tables: Vec<TableReport>,
    totals: Totals,
}

#[derive(Debug, Serialize)]
struct InstanceReport {
    /// The configured `[metrics]` address asked (`None` if disabled).
    address: Option<String>,
    answering: bool,
    /// Why nothing (or nothing like sluice) answers.
    note: Option<String>,
    ready: Option<bool>,
    readiness: Option<String>,
    pending_bytes: Option<u64>,
    inflight_bytes: Option<u64>,
    assigned_partitions: Option<u64>,
}

#[derive(Debug, Serialize)]
struct LakeReport {
    /// The lake could be read (else the offsets are the instance's, if it answers).
    readable: bool,
    note: Option<String>,
}

#[derive(Debug, Serialize)]
struct TopicReport {
    topic: String,
    table: String,
    partitions: Vec<PartitionReport>,
}

#[derive(Debug, Serialize)]
struct PartitionReport {
    partition: i32,
    /// The lake's next offset (`None`: never committed or not registered; see `status`).
    lake_offset: Option<i64>,
    low: Option<i64>,
    high: Option<i64>,
    lag: Option<i64>,
    /// When the lake offset last moved, UTC, RFC 3339.
    last_commit: Option<String>,
    last_commit_age_seconds: Option<u64>,
    status: String,
    /// Whether the answering instance has it assigned (`None`: no instance answers).
    assigned: Option<bool>,
}

#[derive(Debug, Serialize)]
struct TableReport {
    table: String,
    /// The topics shown that go to it (none for the quarantine table).
    topics: Vec<String>,
    /// `false`: the table was not created yet (nothing committed to it).
    exists: bool,
    #[serde(flatten)]
    contents: Option<TableContents>,
}

#[derive(Debug, Serialize, Default)]
struct Totals {
    partitions: u64,
    lag: i64,
    rows: u64,
    data_files: u64,
    data_file_bytes: u64,
    inlined_rows: u64,
    pending_bytes: Option<u64>,
}

/// Whether `e` is a DuckDB-file catalog refusing a second process (another holds its lock).
fn lock_held(cfg: &Config, e: &SinkError) -> Option<String> {
    let text = e.to_string();
    let at = text.find("Could not set lock on file")?;
    if cfg.lake.catalog_kind != CatalogKind::Duckdb {
        return None;
    }
    let held = text[at..]
        .find("Conflicting lock is held in ")
        .map(|i| {
            let rest = &text[at + i + "Conflicting lock is held in ".len()..];
            rest.split(". See also")
                .next()
                .unwrap_or(rest)
                .trim()
                .to_string()
        })
        .unwrap_or_else(|| "another process".into());
    Some(format!(
        "the DuckDB catalog {} is locked by {held}: a DuckDB-file catalog opens in one process at a time, so its offsets, commit times and tables cannot be read while an instance runs. The SQLite catalog (lake.catalog_kind = \"sqlite\", the default) can be read while sluice ingests; meanwhile the instance's /metrics ([metrics] address) shows its lake offsets",
        cfg.lake.catalog
    ))
}

/// `sluice status`: prints the screen (or, with `json`, the same as one JSON object).
pub fn status(config: Option<&Path>, json: bool) -> Result<()> {
    let cfg = Config::load(config)?;
    init_logging("warn", cfg.log.format);
    let probe = instance::probe(&cfg.metrics);
    let answering = match &probe {
        Probe::Answering(i) => Some(i),
        _ => None,
    };
    let (lake, lake_note) = open_lake(&cfg)?;
    let rows = offset_rows(lake.as_ref(), answering)?;
    let source = KafkaSource::new(&cfg.kafka)?;
    let mut totals = Totals::default();
    let (topics, by_table) = topic_reports(&cfg, &source, &rows, answering, &mut totals)?;
    let tables = match &lake {
        Some(l) => table_reports(l, by_table, &mut totals)?,
        None => Vec::new(),
    };
    totals.pending_bytes = answering.map(|i| i.pending_bytes);
    let report = Report {
        consumer_group: cfg.kafka.group_id.clone(),
        instance: instance_report(&cfg, &probe),
        lake: LakeReport {
            readable: lake.is_some(),
            note: lake_note.clone(),
        },
        topics,
        tables,
        totals,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    match (lake_note, answering) {
        (Some(note), None) => bail!(
            "{note}; and no instance answers at the metrics address ({})",
            report.instance.note.as_deref().unwrap_or("disabled")
        ),
        _ => Ok(()),
    }
}

/// The lake, or while it cannot be read (a DuckDB catalog another process holds) why not.
fn open_lake(cfg: &Config) -> Result<(Option<Lake>, Option<String>)> {
    match Lake::open_with(
        &cfg.lake,
        &cfg.kafka.group_id,
        Backoff::conflicts(&cfg.flush.retry),
    ) {
        Ok(l) => Ok((Some(l), None)),
        Err(e) => match lock_held(cfg, &e) {
            Some(note) => Ok((None, Some(note))),
            None => Err(e.into()),
        },
    }
}

/// The lake's offsets, or while the lake cannot be read the instance's.
fn offset_rows(
    lake: Option<&Lake>,
    answering: Option<&instance::Instance>,
) -> Result<Vec<OffsetRow>> {
    Ok(match (lake, answering) {
        (Some(l), _) => l.list_offsets()?,
        (None, Some(i)) => i
            .lake_offsets
            .iter()
            .map(|((topic, partition), next)| OffsetRow {
                topic: topic.clone(),
                partition: *partition,
                next_offset: *next,
                committed_at: None,
            })
            .collect(),
        (None, None) => Vec::new(),
    })
}

/// Each table's topics, by table name.
type TopicsByTable = BTreeMap<String, Vec<String>>;

/// Each topic's partitions (lake offset, watermarks, lag, last commit), and the topics of each
/// table; adds the partitions and their lag to `totals`.
fn topic_reports(
    cfg: &Config,
    source: &KafkaSource,
    rows: &[OffsetRow],
    answering: Option<&instance::Instance>,
    totals: &mut Totals,
) -> Result<(Vec<TopicReport>, TopicsByTable)> {
    let now = SystemTime::now();
    let mut topics = Vec::new();
    let mut by_table = TopicsByTable::new();
    for topic in &topics_of(cfg, rows) {
        let table = cfg.tables.table_for(topic);
        by_table
            .entry(table.clone())
            .or_default()
            .push(topic.clone());
        let partitions: Vec<PartitionReport> = partitions_of(source, topic, rows)?
            .iter()
            .map(|s| partition_report(s, answering, now))
            .collect();
        totals.partitions += partitions.len() as u64;
        totals.lag += partitions.iter().filter_map(|p| p.lag).sum::<i64>();
        topics.push(TopicReport {
            topic: topic.clone(),
            table,
            partitions,
        });
    }
    Ok((topics, by_table))
}

/// The topics' tables by name, then the quarantine table they share: rows, files and bytes,
/// added to `totals`.
fn table_reports(
    lake: &Lake,
    by_table: TopicsByTable,
    totals: &mut Totals,
) -> Result<Vec<TableReport>> {
    let own = (QUARANTINE_TABLE.to_string(), Vec::new());
    let mut tables = Vec::new();
    for (table, topics) in by_table.into_iter().chain([own]) {
        let contents = lake.table_contents(&table)?;
        if let Some(c) = &contents {
            totals.rows += c.rows;
            totals.data_files += c.data_files;
            totals.data_file_bytes += c.data_file_bytes;
            totals.inlined_rows += c.inlined_rows;
        }
        tables.push(TableReport {
            table,
            topics,
            exists: contents.is_some(),
            contents,
        });
    }
    Ok(tables)
}

fn partition_report(
    s: &Shown,
    instance: Option<&instance::Instance>,
    now: SystemTime,
) -> PartitionReport {
    let committed = s.lake.is_some_and(|o| o != NO_OFFSET);
    let last_commit = s.committed_at.clone().filter(|_| committed);
    let age = last_commit
        .as_deref()
        .and_then(|t| humantime::parse_rfc3339(t).ok())
        .map(|t| now.duration_since(t).unwrap_or(Duration::ZERO).as_secs());
    PartitionReport {
        partition: s.partition,
        lake_offset: s.lake.filter(|o| *o != NO_OFFSET),
        low: s.marks.map(|m| m.low),
        high: s.marks.map(|m| m.high),
        lag: s.lag(),
        last_commit,
        last_commit_age_seconds: age,
        status: s.status(),
        assigned: instance.map(|i| i.lake_offsets.contains_key(&(s.topic.clone(), s.partition))),
    }
}

fn instance_report(cfg: &Config, probe: &Probe) -> InstanceReport {
    let address = cfg.metrics.enabled.then(|| {
        instance::target(&cfg.metrics).map_or(cfg.metrics.address.clone(), |a| a.to_string())
    });
    let mut r = InstanceReport {
        address,
        answering: false,
        note: None,
        ready: None,
        readiness: None,
        pending_bytes: None,
        inflight_bytes: None,
        assigned_partitions: None,
    };
    match probe {
        Probe::Disabled => {
            r.note = Some(
                "the metrics endpoint is disabled in the configuration ([metrics] enabled = false)"
                    .into(),
            )
        }
        Probe::UnknownPort => {
            r.note = Some(format!(
                "metrics.address {} has port 0 (a free port picked at start): an instance's endpoint cannot be found",
                cfg.metrics.address
            ))
        }
        Probe::NotAnswering(why) => r.note = Some(why.clone()),
        Probe::Refused(why) => r.note = Some(why.clone()),
        Probe::Answering(i) => {
            r.answering = true;
            r.ready = Some(i.ready);
            r.readiness = Some(i.readiness.clone());
            r.pending_bytes = Some(i.pending_bytes);
            r.inflight_bytes = Some(i.inflight_bytes);
            r.assigned_partitions = Some(i.assigned_partitions);
        }
    }
    r
}

/// `12s ago`, `3m ago`, `5h ago`, `2d ago`.
pub fn age(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s ago"),
        s if s < 3600 => format!("{}m ago", s / 60),
        s if s < 86_400 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86_400),
    }
}

fn instance_line(r: &InstanceReport) -> String {
    let at = r.address.as_deref().unwrap_or("-");
    if r.answering {
        format!(
            "instance at {at}: {}; {} partitions assigned; pending {} bytes ({} in flight)",
            r.readiness.as_deref().unwrap_or("-"),
            r.assigned_partitions.unwrap_or(0),
            r.pending_bytes.unwrap_or(0),
            r.inflight_bytes.unwrap_or(0)
        )
    } else if r.address.is_none() {
        format!("no instance asked: {}", r.note.as_deref().unwrap_or("-"))
    } else {
        format!(
            "no instance answering at {at} ({})",
            r.note.as_deref().unwrap_or("-")
        )
    }
}

fn print_report(r: &Report) {
    println!("consumer group {}", r.consumer_group);
    println!("{}", instance_line(&r.instance));
    if let Some(note) = &r.lake.note {
        println!("lake: {note}");
    }
    for t in &r.topics {
        println!();
        println!("topic {} -> table {}", t.topic, t.table);
        print_table(&partition_rows(r, t));
    }
    if r.lake.readable {
        println!();
        print_table(&table_rows(&r.tables));
    }
    println!();
    println!("{}", totals_line(r));
}

/// The partitions table of one topic: a header, then a row per partition.
fn partition_rows(r: &Report, t: &TopicReport) -> Vec<[String; 8]> {
    let with_instance = r.instance.answering;
    let mut rows = vec![header([], [if with_instance { "instance" } else { "" }])];
    for p in &t.partitions {
        rows.push([
            p.partition.to_string(),
            match (p.lake_offset, p.status.as_str()) {
                (None, "never committed") => "none".into(),
                (o, _) => opt(o),
            },
            opt(p.low),
            opt(p.high),
            opt(p.lag),
            match (&p.last_commit_age_seconds, r.lake.readable) {
                (Some(s), _) => age(*s),
                (None, true) if p.status == "never committed" => "never".into(),
                _ => "-".into(),
            },
            p.status.clone(),
            match p.assigned {
                Some(true) => "assigned".into(),
                Some(false) => "-".into(),
                None => String::new(),
            },
        ]);
    }
    rows
}

/// The tables table: a header, then a row per table (the quarantine table last).
fn table_rows(tables: &[TableReport]) -> Vec<[String; 6]> {
    let mut rows = vec![
        [
            "table",
            "topics",
            "rows",
            "data_files",
            "bytes",
            "inlined_rows",
        ]
        .map(String::from),
    ];
    for t in tables {
        let topics = if t.table == QUARANTINE_TABLE {
            "(quarantine)".to_string()
        } else {
            t.topics.join(",")
        };
        let c = t.contents;
        let n =
            |f: fn(&TableContents) -> u64| c.as_ref().map_or("-".to_string(), |c| f(c).to_string());
        rows.push([
            t.table.clone(),
            topics,
            n(|c| c.rows),
            n(|c| c.data_files),
            n(|c| c.data_file_bytes),
            n(|c| c.inlined_rows),
        ]);
    }
    rows
}

/// The last line: partitions and lag; rows, files and bytes when the lake was read; the
/// instance's pending bytes when one answered.
fn totals_line(r: &Report) -> String {
    let s = &r.totals;
    let mut line = format!("total: {} partitions, lag {}", s.partitions, s.lag);
    if r.lake.readable {
        line.push_str(&format!(
            "; {} rows, {} data files, {} bytes, {} inlined rows",
            s.rows, s.data_files, s.data_file_bytes, s.inlined_rows
        ));
    }
    if let Some(p) = s.pending_bytes {
        line.push_str(&format!("; pending {p} bytes"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_shown_in_their_largest_whole_unit() {
        let shown: Vec<String> = [0, 59, 60, 3599, 3600, 86_399, 86_400, 900_000]
            .into_iter()
            .map(age)
            .collect();
        assert_eq!(
            shown,
            [
                "0s ago", "59s ago", "1m ago", "59m ago", "1h ago", "23h ago", "1d ago", "10d ago"
            ]
        );
    }
}
