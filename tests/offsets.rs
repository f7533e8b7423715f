//! Offsets that can be seen and moved: a lake offset outside the broker's watermarks (a
//! recreated topic, retention that deleted unread messages) stops with an exact error or is
//! moved by `kafka.on_offset_gap`; `sluice offsets show|set` read and move offsets.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use common::services::Tansu;
use common::{
    Kafka, Running, config, lake_dir, lake_offsets, produce_events, query, setup, sluice_cli,
    unique,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use sluice::config::{Config, OnOffsetGap};
use sluice::pipeline::PipelineError;
use sluice_producer::{ArrowProducer, Encoding};

/// One message per record batch: tansu 0.6 reports a partition's high watermark as its last
/// record batch's base offset + 1 (seen here: 50 messages sent in one batch gave watermarks
/// (0, 1)), which would make a lake offset look past the end.
fn producer(brokers: &str, topic: &str) -> ArrowProducer {
    ArrowProducer::new(
        brokers,
        topic,
        Encoding::default(),
        &[("linger.ms", "0"), ("batch.num.messages", "1")],
    )
    .unwrap()
}

/// (count, sum of seq) of the events table of `cfg`'s topic.
fn count_and_sum(cfg: &Config) -> (i64, i64) {
    let table = cfg.tables.table_for(&cfg.kafka.topics[0]);
    let r = query(
        cfg,
        &format!("SELECT count(*), coalesce(sum(seq), 0) FROM lake.main.\"{table}\""),
    );
    (
        r[0][0].as_deref().unwrap().parse().unwrap(),
        r[0][1].as_deref().unwrap().parse().unwrap(),
    )
}

/// Sum of seq over `first..end`.
fn seq_sum(first: i64, end: i64) -> i64 {
    (first..end).sum()
}

fn watermarks(brokers: &str, topic: &str, partition: i32) -> (i64, i64) {
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("probe"))
        .create()
        .unwrap();
    c.fetch_watermarks(topic, partition, Duration::from_secs(10))
        .unwrap()
}

/// How every offset-gap error under `fail` ends.
const FAIL: &str = "; kafka.on_offset_gap = \"fail\" stops here with the lake offsets unmoved (set it to \"earliest\" or \"latest\", or move the offset with `sluice offsets set`)";

fn expect_gap(result: Result<(), PipelineError>) -> String {
    match result {
        Err(PipelineError::OffsetGap(gap)) => gap.to_string(),
        other => panic!("expected an offset gap error, got {other:?}"),
    }
}

#[test]
fn a_recreated_topic_stops_with_the_gap_error_then_earliest_reads_its_new_messages() {
    let tansu = Tansu::start();
    let topic = tansu.topic("recreated", 1);
    let dir = lake_dir();
    let mut cfg = config(&tansu.brokers(), &topic, dir.path());
    cfg.flush.max_age_ms = 200;
    let p = producer(&tansu.brokers(), &topic);
    // 50 messages of one row: seq 0..50, offsets 0..50.
    produce_events(&p, 1, 0, 50, 1);
    Running::until_committed(&cfg, 50);
    assert_eq!(lake_offsets(&cfg, &topic), vec![(0, 50)]);

    tansu.recreate(&topic, 1);
    drop(p);
    let p = producer(&tansu.brokers(), &topic);
    produce_events(&p, 1, 50, 5, 1);
    assert_eq!(watermarks(&tansu.brokers(), &topic, 0), (0, 5));

    // The default policy: stop, naming everything, offsets unmoved.
    assert_eq!(cfg.kafka.on_offset_gap, OnOffsetGap::Fail);
    let run = Running::start(&cfg);
    let stats = run.stats.clone();
    let err = expect_gap(run.ended(Duration::from_secs(60)));
    assert_eq!(
        err,
        format!(
            "offset gap on topic {topic} partition 0: the next offset 50 is above the broker's high watermark 5 (low 0): the topic was deleted and created again, or truncated{FAIL}"
        )
    );
    assert_eq!(stats.offset_gaps_of(&topic, "above_high"), 1);
    assert_eq!(stats.committed_messages.load(Relaxed), 0);
    assert_eq!(lake_offsets(&cfg, &topic), vec![(0, 50)]);
    assert_eq!(count_and_sum(&cfg), (50, seq_sum(0, 50)));

    // `earliest`: the lake offset moves to 0 in a transaction, the 5 new rows land.
    cfg.kafka.on_offset_gap = OnOffsetGap::Earliest;
    let stats = Running::until_committed(&cfg, 5);
    assert_eq!(stats.offset_gaps_of(&topic, "above_high"), 1);
    assert_eq!(stats.committed_messages.load(Relaxed), 5);
    assert_eq!(lake_offsets(&cfg, &topic), vec![(0, 5)]);
    assert_eq!(count_and_sum(&cfg), (55, seq_sum(0, 55)));
}

/// Produces messages of `rows` rows to partition 0 until the mock cluster's retention (5 MiB
/// per partition) has deleted the message at `offset`; returns the watermarks then.
fn produce_past_retention(kafka: &Kafka, topic: &str, first_seq: i64, offset: i64) -> (i64, i64) {
    let p = kafka.producer(topic, Encoding::default());
    let mut seq = first_seq;
    for _ in 0..50 {
        seq = produce_events(&p, 1, seq, 20, 100);
        let (low, high) = watermarks(&kafka.brokers, topic, 0);
        if low > offset {
            return (low, high);
        }
    }
    panic!("the mock cluster kept offset {offset} after 1000 messages");
}

#[test]
fn retention_past_the_lake_offset_stops_with_the_gap_error_then_latest_skips_to_the_end() {
    let (kafka, topic, _dir, mut cfg) = setup("retention", 1);
    cfg.flush.max_age_ms = 200;
    let p = kafka.producer(&topic, Encoding::default());
    // 10 messages of 100 rows: offsets 0..10, seq 0..1000.
    produce_events(&p, 1, 0, 10, 100);
    Running::until_committed(&cfg, 10);
    assert_eq!(lake_offsets(&cfg, &topic), vec![(0, 10)]);

    let (low, high) = produce_past_retention(&kafka, &topic, 1000, 10);
    let run = Running::start(&cfg);
    let stats = run.stats.clone();
    let err = expect_gap(run.ended(Duration::from_secs(60)));
    assert_eq!(
        err,
        format!(
            "offset gap on topic {topic} partition 0: the next offset 10 is below the broker's low watermark {low} (high {high}): retention deleted {} messages sluice had not read{FAIL}",
            low - 10
        )
    );
    assert_eq!(stats.offset_gaps_of(&topic, "below_low"), 1);
    assert_eq!(lake_offsets(&cfg, &topic), vec![(0, 10)]);

    // `latest`: the lake offset moves to the high watermark; only messages produced after
    // that are read.
    cfg.kafka.on_offset_gap = OnOffsetGap::Latest;
    let run = Running::start(&cfg);
    run.wait("the partition assigned", Duration::from_secs(60), |s| {
        s.offset_gaps_of(&topic, "below_low") == 1 && s.assigned_partitions.load(Relaxed) == 1
    });
    assert_eq!(lake_offsets(&cfg, &topic), vec![(0, high)]);
    // One more message: offset `high`, 100 rows from seq 50_000_000.
    produce_events(&p, 1, 50_000_000, 1, 100);
    run.wait("one message committed", Duration::from_secs(60), |s| {
        s.committed_messages.load(Relaxed) == 1
    });
    run.stop().unwrap();
    assert_eq!(lake_offsets(&cfg, &topic), vec![(0, high + 1)]);
    assert_eq!(
        count_and_sum(&cfg),
        (1100, seq_sum(0, 1000) + seq_sum(50_000_000, 50_000_100))
    );
}

#[test]
fn offsets_show_and_set_then_a_restart_ingests_from_the_new_position_exactly() {
    let (kafka, topic, dir, mut cfg) = setup("offsets_cli", 2);
    cfg.flush.max_age_ms = 200;
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
    let p = kafka.producer(&topic, Encoding::default());
    // 20 messages of 10 rows, alternating partitions: partition 0 holds the even messages.
    produce_events(&p, 2, 0, 20, 10);
    Running::until_committed(&cfg, 20);
    assert_eq!(lake_offsets(&cfg, &topic), vec![(0, 10), (1, 10)]);
    // Then 4 more that nothing has read yet (2 per partition).
    produce_events(&p, 2, 200, 4, 10);

    let (ok, out, err) = sluice_cli(&["offsets", "show"], &path);
    assert!(ok, "{err}");
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["consumer", "group", cfg.kafka.group_id.as_str()]);
    assert_eq!(
        lines[1],
        [
            "topic",
            "partition",
            "lake_offset",
            "low",
            "high",
            "lag",
            "last_commit",
            "status"
        ]
    );
    for (i, line) in lines[2..].iter().enumerate() {
        assert_eq!(line.len(), 8, "{out}");
        assert_eq!(
            [
                line[0], line[1], line[2], line[3], line[4], line[5], line[7]
            ],
            [topic.as_str(), &i.to_string(), "10", "0", "12", "2", "ok"],
            "{out}"
        );
        assert!(line[6].ends_with('Z') && line[6].len() == 20, "{out}");
    }
    assert_eq!(lines.len(), 4, "{out}");

    let set_partition = |p: i32, to: &str| {
        sluice_cli(
            &[
                "offsets",
                "set",
                "--topic",
                &topic,
                "--partition",
                &p.to_string(),
                "--to",
                to,
            ],
            &path,
        )
    };
    // An offset the broker does not hold is refused, naming it; nothing moves.
    let (ok, _, err) = set_partition(1, "13");
    assert!(!ok);
    assert_eq!(
        err.trim(),
        format!(
            "sluice: offset 13 is outside what the broker holds for topic {topic} partition 1 (low 0, high 12); nothing was changed"
        )
    );
    // Partition 0 back to offset 4 (its messages 4..12 are read again), partition 1 to the end.
    let (ok, out, err) = set_partition(0, "4");
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        format!("topic {topic} partition 0: lake offset 10 -> 4")
    );
    let (ok, out, err) = set_partition(1, "latest");
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        format!("topic {topic} partition 1: lake offset 10 -> 12")
    );
    assert_eq!(lake_offsets(&cfg, &topic), vec![(0, 4), (1, 12)]);

    // A restart reads partition 0 from offset 4: its messages 4..12 (8 of them, 80 rows; seqs
    // of messages 8, 10, .., 18 again, and 200, 220), nothing of partition 1.
    let stats = Running::until_committed(&cfg, 8);
    assert_eq!(stats.committed_messages.load(Relaxed), 8);
    assert_eq!(lake_offsets(&cfg, &topic), vec![(0, 12), (1, 12)]);
    let again: i64 = [8, 10, 12, 14, 16, 18]
        .iter()
        .map(|m| seq_sum(m * 10, m * 10 + 10))
        .sum();
    assert_eq!(
        count_and_sum(&cfg),
        (
            280,
            seq_sum(0, 200) + again + seq_sum(200, 210) + seq_sum(220, 230)
        )
    );

    // `--to` with a time: every partition to its first message at or after it (none that new:
    // the high watermark).
    let (ok, out, err) = sluice_cli(
        &[
            "offsets",
            "set",
            "--topic",
            &topic,
            "--to",
            "2100-01-01T00:00:00Z",
        ],
        &path,
    );
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        format!(
            "topic {topic} partition 0: lake offset 12 -> 12\ntopic {topic} partition 1: lake offset 12 -> 12"
        )
    );
    let (ok, _, err) = sluice_cli(
        &["offsets", "set", "--topic", &topic, "--to", "soon"],
        &path,
    );
    assert!(!ok);
    assert!(
        err.starts_with(
            "sluice: --to \"soon\" is not earliest, latest, an offset or a timestamp (e.g. 2026-12-01T10:00:00Z): "
        ),
        "{err}"
    );
}

/// The set of offsets of partition 0 whose rows are in the lake, from their seqs (message at
/// offset `o` holds seqs `o*rows..(o+1)*rows`), checking every message is whole and once.
fn offsets_in_lake(cfg: &Config, rows: i64) -> Vec<i64> {
    let table = cfg.tables.table_for(&cfg.kafka.topics[0]);
    query(
        cfg,
        &format!(
            "SELECT seq // {rows} AS o, count(*), count(DISTINCT seq) FROM lake.main.\"{table}\" GROUP BY o ORDER BY o"
        ),
    )
    .into_iter()
    .map(|r| {
        let o: i64 = r[0].as_deref().unwrap().parse().unwrap();
        assert_eq!(r[1].as_deref(), Some(rows.to_string().as_str()), "offset {o}");
        assert_eq!(r[2].as_deref(), Some(rows.to_string().as_str()), "offset {o}");
        o
    })
    .collect()
}

#[test]
fn a_fetch_out_of_range_while_running_commits_what_was_read_then_applies_the_policy() {
    let (kafka, topic, _dir, mut cfg) = setup("fetch_gap", 1);
    cfg.kafka.on_offset_gap = OnOffsetGap::Earliest;
    // A small prefetch and memory budget: while the first commit is held, the consumer's
    // position stays a few messages ahead of what was produced first.
    cfg.kafka.queued_max_messages_kbytes = 64;
    cfg.kafka.fetch_max_bytes = 1_000_000;
    cfg.kafka.max_partition_fetch_bytes = 65_536;
    cfg.live.enabled = false;
    cfg.flush.memory_cap_bytes = 4 * 1024 * 1024;
    cfg.flush.max_rows = 100;
    let hold = Arc::new(AtomicBool::new(true));
    let mut lake = sluice::sink::Lake::open(&cfg.lake, &cfg.kafka.group_id).unwrap();
    let h = hold.clone();
    lake.set_commit_hook(Some(Arc::new(move |_: &str| {
        while h.load(Relaxed) {
            std::thread::sleep(Duration::from_millis(10));
        }
    })));
    let p = kafka.producer(&topic, Encoding::default());
    // Offsets 0..10, 100 rows each: message `o` holds seqs o*100..o*100+100.
    produce_events(&p, 1, 0, 10, 100);
    let run = Running::start_on(&cfg, lake);
    run.wait("the first flush", Duration::from_secs(60), |s| {
        s.messages.load(Relaxed) >= 1 && s.inflight_bytes.load(Relaxed) > 0
    });
    std::thread::sleep(Duration::from_secs(1));
    let position = run.stats.messages.load(Relaxed) as i64;
    // Retention deletes what the consumer has not fetched yet.
    let (low, high) = produce_past_retention(&kafka, &topic, 1_000, 40);
    assert!(position < low, "{position} < {low}");
    hold.store(false, Relaxed);

    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while lake_offsets(&cfg, &topic) != vec![(0, high)] {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            lake_offsets(&cfg, &topic)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let stats = run.stats.clone();
    run.stop().unwrap();
    assert_eq!(stats.offset_gaps_of(&topic, "below_low"), 1);
    // Every message read before the gap (0..p), then from the low watermark to the end; each
    // whole and once.
    let present = offsets_in_lake(&cfg, 100);
    let p_end = present.iter().take_while(|o| **o < low).count() as i64;
    assert!(p_end >= position && p_end < low, "{p_end} {position} {low}");
    let want: Vec<i64> = (0..p_end).chain(low..high).collect();
    assert_eq!(present, want);
}
