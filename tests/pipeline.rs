//! End-to-end tests: librdkafka's mock cluster → sluice → a real DuckLake, with exact results.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use common::*;
use sluice::config::CatalogKind;
use sluice::observe::Stats;
use sluice::pipeline::{Pipeline, PipelineError};
use sluice_producer::events::{EventGen, generate};
use sluice_producer::{BodyCompression, Encoding, IpcFormat};

/// Produces `total` events (seq 0..total) in messages of `rows`, round robin over
/// `partitions`, on a thread, paced by what `stats` consumed (`sluice::cli::demo::produce_paced`:
/// the mock cluster keeps only 5 MiB per partition).
fn produce_paced(
    kafka: &Kafka,
    topic: &str,
    partitions: i32,
    total: i64,
    rows: usize,
    stats: Arc<Stats>,
) -> std::thread::JoinHandle<()> {
    let p = kafka.producer(topic, Encoding::default());
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        let sent = sluice::cli::demo::produce_paced(
            &p,
            &mut EventGen::starting_at(9, 0),
            total as u64,
            rows,
            partitions,
            &stats.payload_bytes,
            |_| Instant::now() < deadline,
        )
        .unwrap();
        assert_eq!(sent, total as u64, "the consumer stopped consuming");
        p.flush(Duration::from_secs(30)).unwrap();
    })
}

#[test]
fn every_produced_row_lands_exactly_once_with_equal_content() {
    let (kafka, topic, _dir, mut cfg) = setup("e2e", 4);
    cfg.flush.max_rows = 5_000;
    let total = 30_000;
    let run = Running::start(&cfg);
    let producer = produce_paced(&kafka, &topic, 4, total, 100, run.stats.clone());
    run.wait("all rows committed", Duration::from_secs(90), |s| {
        s.committed_rows.load(Relaxed) >= total as u64
    });
    producer.join().unwrap();
    let stats = run.stats.clone();
    run.stop().unwrap();
    assert_eq!(stats.committed_rows.load(Relaxed), total as u64);
    assert_eq!(stats.committed_messages.load(Relaxed), 300);
    assert_eq!(stats.quarantined.load(Relaxed), 0);
    let table = sluice::config::table_name_from_topic(&topic);
    assert_exact_events(&cfg, &table, total);
    // Every partition's lake offset is its message count (75 messages each).
    let offsets = query(
        &cfg,
        &format!(
            "SELECT \"partition\", next_offset FROM lake.main.sluice_offsets WHERE consumer_group = '{}' ORDER BY 1",
            cfg.kafka.group_id
        ),
    );
    let want: Vec<Vec<Option<String>>> = (0..4)
        .map(|p| vec![Some(p.to_string()), Some("75".into())])
        .collect();
    assert_eq!(offsets, want);
    // Few, large files: 6 flushes by rows for 30 000 rows, never a file per message.
    let files = query(
        &cfg,
        &format!("SELECT count(*) FROM ducklake_list_files('lake', '{table}')"),
    );
    let files: u64 = files[0][0].as_deref().unwrap().parse().unwrap();
    assert!(
        files <= stats.flushes.load(Relaxed),
        "{files} files for {} flushes",
        stats.flushes.load(Relaxed)
    );
}

#[test]
fn restart_after_a_drop_without_flushing_loses_and_duplicates_nothing() {
    let (kafka, topic, _dir, cfg) = setup("restart", 4);
    let p = kafka.producer(&topic, Encoding::default());
    let half = produce_events(&p, 4, 0, 40, 100);
    assert_eq!(half, 4_000);

    // First consumer: one flush by rows (exactly 3,000 rows: the policy runs after every
    // message), then it vanishes with the other 1,000 rows pending and nothing in flight.
    let mut cfg_a = cfg.clone();
    cfg_a.flush.max_rows = 3_000;
    cfg_a.flush.max_age_ms = 600_000;
    let stats_a = Arc::new(Stats::default());
    let a = Pipeline::new(&cfg_a, stats_a.clone()).unwrap();
    let never = AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        a.run_for(Duration::from_millis(20), &never).unwrap();
        let s = &stats_a;
        if s.committed_rows.load(Relaxed) > 0
            && s.rows.load(Relaxed) == 4_000
            && s.inflight_bytes.load(Relaxed) == 0
        {
            break;
        }
        assert!(Instant::now() < deadline, "first consumer made no progress");
    }
    let committed_a = stats_a.committed_rows.load(Relaxed);
    assert_eq!(committed_a, 3_000);
    assert!(stats_a.pending_bytes.load(Relaxed) > 0);
    a.abandon();

    let total = produce_events(&p, 4, half, 40, 100);
    assert_eq!(total, 8_000);
    let b = Running::start(&cfg);
    b.wait("the rest committed", Duration::from_secs(60), |s| {
        s.committed_rows.load(Relaxed) + committed_a >= total as u64
    });
    let stats_b = b.stats.clone();
    b.stop().unwrap();
    assert_eq!(stats_b.committed_rows.load(Relaxed), 5_000);
    assert_exact_events(&cfg, &sluice::config::table_name_from_topic(&topic), total);
}

/// Set in the child process of the SIGKILL test: the path of its configuration.
const CHILD_CONFIG_ENV: &str = "SLUICETEST_CHILD_CONFIG";
/// What the child prints when its first commit has its data written and waits before `COMMIT`.
const HOLDING: &str = "child: holding the commit of table";

/// The child of `sigkill_mid_flush_then_restart_loses_and_duplicates_nothing` (this test
/// binary, run again with `--exact … --ignored`): a pipeline whose every commit, once its data
/// is written, says so on stderr and waits 30 s for the SIGKILL. Run alone it does nothing.
#[test]
#[ignore = "the child process of sigkill_mid_flush_then_restart_loses_and_duplicates_nothing"]
fn child_pipeline_holding_its_commits_open() {
    let Ok(path) = std::env::var(CHILD_CONFIG_ENV) else {
        return;
    };
    let cfg: sluice::config::Config =
        toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut lake = sluice::sink::Lake::open(&cfg.lake, &cfg.kafka.group_id).unwrap();
    lake.set_commit_hook(Some(Arc::new(|table: &str| {
        eprintln!("{HOLDING} {table}");
        std::thread::sleep(Duration::from_secs(30));
    })));
    let pipeline = Pipeline::with_lake(&cfg, lake, Arc::new(Stats::default())).unwrap();
    pipeline.run(&AtomicBool::new(false)).unwrap();
}

#[test]
fn sigkill_mid_flush_then_restart_loses_and_duplicates_nothing() {
    let (kafka, topic, dir, cfg) = setup("kill", 4);
    let p = kafka.producer(&topic, Encoding::default());
    let total = produce_events(&p, 4, 0, 60, 100);
    let cfg_path = dir.path().join("sluice.toml");
    std::fs::write(&cfg_path, toml::to_string(&cfg).unwrap()).unwrap();

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_pipeline_holding_its_commits_open",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_CONFIG_ENV, &cfg_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The child holds its first commit open (data written, not committed): kill it there.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    for line in stderr.lines() {
        let line = line.unwrap();
        let holding = line.contains(HOLDING);
        seen.push(line);
        if holding {
            break;
        }
    }
    assert!(
        seen.last().is_some_and(|l| l.contains(HOLDING)),
        "child never reached a commit:\n{}",
        seen.join("\n")
    );
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );

    let table = sluice::config::table_name_from_topic(&topic);
    // Nothing of the killed transaction is visible; the table may not even exist yet.
    let visible = query(
        &cfg,
        &format!(
            "SELECT count(*) FROM information_schema.tables WHERE table_catalog = 'lake' AND table_name = '{table}'"
        ),
    );
    if visible[0][0].as_deref() == Some("1") {
        assert_eq!(events_summary(&cfg, &table).0, 0);
    }
    let run = Running::start(&cfg);
    run.wait(
        "all rows committed after the restart",
        Duration::from_secs(60),
        |s| s.committed_rows.load(Relaxed) >= total as u64,
    );
    let stats = run.stats.clone();
    run.stop().unwrap();
    assert_eq!(stats.committed_rows.load(Relaxed), total as u64);
    assert_exact_events(&cfg, &table, total);
}

#[test]
fn two_consumers_with_a_mid_stream_rebalance_lose_and_duplicate_nothing() {
    let (kafka, topic, _dir, cfg) = setup("rebalance", 4);
    // Two pipelines in one process: each has its own connection (own transactions) on one
    // DuckDB instance that holds the attached lake; conflicts between them are DuckLake's.
    let lake = sluice::sink::Lake::open(&cfg.lake, &cfg.kafka.group_id).unwrap();
    let lake_b = lake.another(&cfg.kafka.group_id).unwrap();
    let p = kafka.producer(&topic, Encoding::default());
    let t = Duration::from_secs(60);
    let committed =
        |a: &Stats, b: &Stats| a.committed_rows.load(Relaxed) + b.committed_rows.load(Relaxed);

    // Phase 1: A alone.
    let a = Running::start_on(&cfg, lake);
    let next = produce_events(&p, 4, 0, 50, 100);
    a.wait("A commits phase 1", t, |s| {
        s.committed_rows.load(Relaxed) >= 5_000
    });

    // Phase 2: B joins; the group rebalances to 2 + 2 partitions; both consume.
    let b = Running::start_on(&cfg, lake_b);
    b.wait("B gets partitions", t, |s| {
        s.assigned_partitions.load(Relaxed) == 2
    });
    a.wait("A keeps 2 partitions", t, |s| {
        s.assigned_partitions.load(Relaxed) == 2
    });
    let next = produce_events(&p, 4, next, 50, 100);
    let (sa, sb) = (a.stats.clone(), b.stats.clone());
    b.wait("both commit phase 2", t, |s| committed(&sa, s) >= 10_000);
    assert!(
        sb.committed_rows.load(Relaxed) > 0,
        "B committed nothing in phase 2"
    );

    // Phase 3: A leaves mid-stream (flush, commit, leave); B takes over all 4 partitions.
    let next = {
        let p2 = kafka.producer(&topic, Encoding::default());
        let producing = std::thread::spawn(move || produce_events(&p2, 4, next, 50, 100));
        a.stop().unwrap();
        producing.join().unwrap()
    };
    assert_eq!(next, 15_000);
    b.wait("B gets all partitions", t, |s| {
        s.assigned_partitions.load(Relaxed) == 4
    });
    b.wait("all rows committed", t, |s| committed(&sa, s) >= 15_000);
    b.stop().unwrap();
    assert_eq!(committed(&sa, &sb), 15_000);
    // The shared DuckDB instance is closed with B's handle; the lake can be opened again.
    assert_exact_events(&cfg, &sluice::config::table_name_from_topic(&topic), 15_000);
}

#[test]
fn bad_payloads_are_quarantined_with_their_offsets_and_the_partition_moves_on() {
    let (kafka, topic, _dir, cfg) = setup("bad", 1);
    let p = kafka.producer(&topic, Encoding::default());
    let mut g = EventGen::starting_at(9, 0);
    let good = |g: &mut EventGen| generate(g, 50);
    let valid = sluice_producer::encode(
        &[good(&mut EventGen::starting_at(1, 0))],
        Encoding::default(),
    )
    .unwrap();
    // `seq` as text: no evolution makes a BIGINT column take it (a message lacking columns, or
    // adding some, would fit under the default schema evolution).
    let wrong_schema = sluice_producer::encode(
        &[arrow::array::RecordBatch::try_new(
            Arc::new(arrow::datatypes::Schema::new(vec![
                arrow::datatypes::Field::new("seq", arrow::datatypes::DataType::Utf8, false),
            ])),
            vec![Arc::new(arrow::array::StringArray::from(vec!["0"]))],
        )
        .unwrap()],
        Encoding::default(),
    )
    .unwrap();
    // offset: what
    p.send(Some(0), None, &[good(&mut g)]).unwrap(); // 0
    p.send_raw(Some(0), None, b"{\"event\":\"json\"}").unwrap(); // 1
    p.send(Some(0), None, &[good(&mut g)]).unwrap(); // 2
    p.send_raw(Some(0), None, &valid[..valid.len() / 2])
        .unwrap(); // 3: truncated
    p.send_raw(Some(0), None, &wrong_schema).unwrap(); // 4: does not fit the table
    p.send_raw(Some(0), None, b"").unwrap(); // 5: empty
    let mut flipped = sluice_producer::encode(
        &[good(&mut EventGen::starting_at(1, 0))],
        Encoding::default(),
    )
    .unwrap();
    let n = flipped.len();
    flipped[n / 3..n / 3 + 64].fill(0xEE);
    p.send_raw(Some(0), None, &flipped).unwrap(); // 6: corrupt body
    p.send(Some(0), None, &[good(&mut g)]).unwrap(); // 7
    p.send(Some(0), None, &[good(&mut g)]).unwrap(); // 8
    p.flush(Duration::from_secs(10)).unwrap();

    let stats = Running::until_committed(&cfg, 9);
    let table = sluice::config::table_name_from_topic(&topic);
    assert_eq!(events_summary(&cfg, &table), expected_summary(200));
    let q = query(
        &cfg,
        "SELECT \"offset\", octet_length(payload), error FROM lake.main.sluice_quarantine ORDER BY \"offset\"",
    );
    let offsets: Vec<&str> = q.iter().map(|r| r[0].as_deref().unwrap()).collect();
    assert_eq!(offsets, ["1", "3", "4", "5", "6"]);
    assert_eq!(q[0][1].as_deref(), Some("16"));
    assert_eq!(
        q[0][2].as_deref(),
        Some("not Arrow IPC: payload of 16 bytes starts with 7b 22 65 76 65 6e 74 22")
    );
    assert_eq!(
        q[1][1].as_deref(),
        Some((valid.len() / 2).to_string().as_str())
    );
    assert!(
        q[1][2]
            .as_deref()
            .unwrap()
            .starts_with("corrupt Arrow IPC stream: "),
        "{:?}",
        q[1][2]
    );
    assert!(
        q[2][2].as_deref()
            == Some(&format!(
                "schema does not fit table \"{table}\": column \"seq\" is VARCHAR in the message but BIGINT in the table, which cannot change to it (only lossless numeric widening is applied)"
            )),
        "{:?}",
        q[2][2]
    );
    assert_eq!(
        q[3][2].as_deref(),
        Some("empty payload (no Arrow IPC data)")
    );
    assert!(
        q[4][2]
            .as_deref()
            .unwrap()
            .starts_with("corrupt Arrow IPC stream: "),
        "{:?}",
        q[4][2]
    );
    assert_eq!(stats.quarantined.load(Relaxed), 5);
    let next = query(
        &cfg,
        "SELECT next_offset FROM lake.main.sluice_offsets WHERE \"partition\" = 0 AND topic <> ''",
    );
    assert_eq!(next, vec![vec![Some("9".to_string())]]);
}

#[test]
fn copied_payloads_land_exactly_once_decoded_from_the_copy_and_bad_ones_keep_their_bytes() {
    let (kafka, topic, _dir, mut cfg) = setup("copy", 2);
    cfg.kafka.copy_payloads = true;
    let p = kafka.producer(&topic, Encoding::default());
    let mut g = EventGen::starting_at(9, 0);
    let mut data = 0;
    for i in 0..30 {
        let b = generate(&mut g, 100);
        let ipc = sluice_producer::encode(std::slice::from_ref(&b), Encoding::default()).unwrap();
        data += sluice::decode::decode(&arrow::buffer::Buffer::from_vec(ipc))
            .unwrap()
            .copies
            .data();
        p.send(Some(i % 2), None, &[b]).unwrap();
    }
    p.send_raw(Some(1), None, b"{\"event\":\"json\"}").unwrap(); // partition 1, offset 15
    p.flush(Duration::from_secs(10)).unwrap();

    let stats = Running::until_committed(&cfg, 31);
    let table = sluice::config::table_name_from_topic(&topic);
    assert_exact_events(&cfg, &table, 3_000);
    // Every decoded byte lives in a payload copy: none in librdkafka's buffers, none realigned.
    let c = stats.copies();
    assert_eq!((c.in_place, c.realigned, c.decompressed), (0, 0, 0));
    assert_eq!(c.payload_copy, data);
    assert_eq!(
        query(
            &cfg,
            "SELECT \"partition\", \"offset\", octet_length(payload), hex(payload), error \
             FROM lake.main.sluice_quarantine",
        ),
        vec![vec![
            Some("1".to_string()),
            Some("15".to_string()),
            Some("16".to_string()),
            Some("7B226576656E74223A226A736F6E227D".to_string()),
            Some(
                "not Arrow IPC: payload of 16 bytes starts with 7b 22 65 76 65 6e 74 22"
                    .to_string()
            ),
        ]]
    );
    assert_eq!(lake_offsets(&cfg, &topic), vec![(0, 15), (1, 16)]);
}

#[test]
fn a_flush_that_keeps_failing_gives_up_without_moving_offsets() {
    let (kafka, topic, dir, mut cfg) = setup("fail", 1);
    cfg.flush.retry.attempts = 3;
    let p = kafka.producer(&topic, Encoding::default());
    produce_events(&p, 1, 0, 10, 100);
    let run = Running::start(&cfg);
    run.wait("a first flush", Duration::from_secs(60), |s| {
        s.committed_rows.load(Relaxed) >= 1_000
    });
    // Break the data path: Parquet files can no longer be written.
    let data = dir.path().join("data");
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::write(&data, b"not a directory").unwrap();
    produce_events(&p, 1, 1_000, 10, 100);
    let stats = run.stats.clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    while stats.flush_failures.load(Relaxed) < 3 {
        assert!(Instant::now() < deadline, "the flush never failed");
        std::thread::sleep(Duration::from_millis(20));
    }
    match run.stop() {
        Err(PipelineError::FlushGaveUp {
            attempts, table, ..
        }) => {
            assert_eq!(attempts, 3);
            assert_eq!(table, sluice::config::table_name_from_topic(&topic));
        }
        other => panic!("expected the flush to give up, got {other:?}"),
    }
    std::fs::remove_file(&data).unwrap();
    std::fs::create_dir(&data).unwrap();
    let next = query(
        &cfg,
        "SELECT next_offset FROM lake.main.sluice_offsets WHERE \"partition\" = 0 AND topic <> ''",
    );
    assert_eq!(next, vec![vec![Some("10".to_string())]]);
    assert_eq!(stats.committed_rows.load(Relaxed), 1_000);
}

#[test]
fn file_format_and_compressed_payloads_ingest_like_streams() {
    let (kafka, topic, dir, mut cfg) = setup("formats", 2);
    // This test also covers the DuckDB-file catalog (single process; the default is SQLite).
    cfg.lake.catalog_kind = CatalogKind::Duckdb;
    cfg.lake.catalog = dir.path().join("lake.ducklake").display().to_string();
    let mut first = 0;
    let mut want = sluice::decode::Copies::default();
    for format in [IpcFormat::Stream, IpcFormat::File] {
        for compression in [
            BodyCompression::None,
            BodyCompression::Lz4,
            BodyCompression::Zstd,
        ] {
            let encoding = Encoding {
                format,
                compression,
            };
            want.add(&decoded_copies(encoding, first, 4, 250));
            first = produce_events(&kafka.producer(&topic, encoding), 2, first, 4, 250);
        }
    }
    let run = Running::start(&cfg);
    run.wait("all rows", Duration::from_secs(60), |s| {
        s.committed_rows.load(Relaxed) >= first as u64
    });
    let stats = run.stats.clone();
    run.stop().unwrap();
    assert_eq!(first, 6_000);
    assert_exact_events(&cfg, &sluice::config::table_name_from_topic(&topic), first);
    // Every decoded byte of the 24 payloads, exactly: at least the 16 compressed ones'
    // decompressed bytes are copies. (Which of the rest are in place, realigned, or, for
    // buffers a compressed payload stores uncompressed, counted with the decompressed ones,
    // librdkafka's addresses decide.)
    let c = stats.copies();
    assert!(want.decompressed > 0, "{want:?}");
    assert_eq!(c.data(), want.data(), "{c:?} {want:?}");
    assert!(c.decompressed >= want.decompressed, "{c:?} {want:?}");
    assert_eq!(c.payload_copy, 0);
}

#[test]
fn the_memory_cap_flushes_before_pending_bytes_exceed_it() {
    let (kafka, topic, _dir, mut cfg) = setup("cap", 2);
    // Size and age thresholds far away: only the memory cap triggers flushes. Of the 4 MiB
    // budget, live retention and prefetch reserve 1 + 2 MiB, which leaves 1 MiB for pending data.
    cfg.flush.max_rows = 10_000_000;
    cfg.flush.max_bytes = 1 << 40;
    cfg.flush.max_age_ms = 600_000;
    cfg.flush.memory_cap_bytes = 4 << 20;
    cfg.live.retention_bytes = 1 << 20;
    cfg.kafka.queued_max_messages_kbytes = 1024;
    cfg.kafka.fetch_max_bytes = 1 << 20;
    assert_eq!(cfg.memory_budget().pending, 1 << 20);
    let p = kafka.producer(&topic, Encoding::default());
    produce_events(&p, 2, 0, 40, 100);
    let run = Running::start(&cfg);
    // Everything consumed and at least 3 000 rows flushed by the cap; the stop flushes the tail.
    run.wait("rows flushed by the cap", Duration::from_secs(60), |s| {
        s.committed_rows.load(Relaxed) >= 3_000 && s.rows.load(Relaxed) >= 4_000
    });
    let stats = run.stats.clone();
    run.stop().unwrap();
    let memory = stats.flushes_by("memory");
    // About 108 KB per message: each cap flush holds 9 or 10 messages (just over 1 MiB), 9 when
    // librdkafka's addresses make arrow-rs realign enough of them, so 3 or 4 flush by memory.
    assert!(
        (3..=4).contains(&memory),
        "memory-triggered flushes: {memory}"
    );
    assert_eq!(
        stats.flushes_by_trigger[0].load(Relaxed) + stats.flushes_by_trigger[1].load(Relaxed),
        0
    );
    assert_exact_events(&cfg, &sluice::config::table_name_from_topic(&topic), 4_000);
}

#[test]
fn the_size_threshold_counts_decoded_arrow_bytes_not_compressed_payload_bytes() {
    // zstd shrinks these events ~6x: a threshold on payload bytes would never fire here, one
    // on payload plus decompressed bytes (the memory held) would fire after ~18 messages. The
    // threshold is the decoded size of exactly the first 20 messages, so the one
    // size-triggered flush holds 2,000 rows.
    let (kafka, topic, _dir, mut cfg) = setup("size", 1);
    let zstd = Encoding {
        format: IpcFormat::Stream,
        compression: BodyCompression::Zstd,
    };
    let mut g = EventGen::starting_at(9, 0);
    let data: u64 = (0..20)
        .map(|_| {
            let ipc = sluice_producer::encode(&[generate(&mut g, 100)], zstd).unwrap();
            let d = sluice::decode::decode(&arrow::buffer::Buffer::from_vec(ipc)).unwrap();
            assert!(d.copies.decompressed > 0, "{:?}", d.copies);
            d.copies.data()
        })
        .sum();
    cfg.flush.max_bytes = data;
    cfg.flush.max_rows = 10_000_000;
    cfg.flush.max_age_ms = 600_000;
    produce_events(&kafka.producer(&topic, zstd), 1, 0, 22, 100);
    let run = Running::start(&cfg);
    run.wait("the size-triggered flush", Duration::from_secs(60), |s| {
        s.committed_rows.load(Relaxed) > 0 && s.rows.load(Relaxed) == 2_200
    });
    let stats = run.stats.clone();
    assert_eq!(stats.committed_rows.load(Relaxed), 2_000);
    assert_eq!(stats.flushes_by_trigger[0].load(Relaxed), 1);
    run.stop().unwrap();
    assert_eq!(stats.committed_rows.load(Relaxed), 2_200);
    assert_exact_events(&cfg, &sluice::config::table_name_from_topic(&topic), 2_200);
}

/// Two pipelines in different Kafka groups that both consume all `partitions` partitions of
/// `cfg_a`'s topic but share the lake's offsets (lake consumer group "shared"), as two
/// instances that both believe they own the partitions would; returned once both are assigned.
fn two_writers(cfg_a: &sluice::config::Config, partitions: u64) -> (Running, Running) {
    let mut cfg_b = cfg_a.clone();
    cfg_b.kafka.group_id = unique("other_group");
    let lake_a = sluice::sink::Lake::open(&cfg_a.lake, "shared").unwrap();
    let lake_b = lake_a.another("shared").unwrap();
    let a = Running::start_on(cfg_a, lake_a);
    let b = Running::start_on(&cfg_b, lake_b);
    for r in [&a, &b] {
        r.wait("assigned", Duration::from_secs(30), |s| {
            s.assigned_partitions.load(Relaxed) == partitions
        });
    }
    (a, b)
}

#[test]
fn two_writers_forced_onto_the_same_partitions_commit_each_range_exactly_once() {
    // Two pipelines in different Kafka groups both consume every partition, but share the
    // lake's offsets (one lake consumer group): as two instances that both believe they own the
    // partitions would. Each range is committed by exactly one; the loser drops and re-seeks.
    let (kafka, topic, _dir, cfg_a) = setup("zombie", 2);
    let p = kafka.producer(&topic, Encoding::default());
    let (a, b) = two_writers(&cfg_a, 2);
    let mut next = 0;
    for _ in 0..4 {
        next = produce_events(&p, 2, next, 20, 100);
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(next, 8_000);
    let (sa, sb) = (a.stats.clone(), b.stats.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    while sa.committed_rows.load(Relaxed) + sb.committed_rows.load(Relaxed) < 8_000 {
        assert!(Instant::now() < deadline, "ranges missing");
        std::thread::sleep(Duration::from_millis(20));
    }
    a.stop().unwrap();
    b.stop().unwrap();
    // Both consumed; together they committed each row once.
    assert!(sa.rows.load(Relaxed) > 0 && sb.rows.load(Relaxed) > 0);
    assert_eq!(
        sa.committed_rows.load(Relaxed) + sb.committed_rows.load(Relaxed),
        8_000
    );
    assert!(
        sa.offset_conflicts.load(Relaxed) + sb.offset_conflicts.load(Relaxed) > 0,
        "the writers never collided"
    );
    let mut check = cfg_a.clone();
    check.kafka.group_id = "shared".into();
    assert_exact_events(
        &check,
        &sluice::config::table_name_from_topic(&topic),
        8_000,
    );
    let offsets = query(
        &check,
        "SELECT \"partition\", next_offset FROM lake.main.sluice_offsets WHERE consumer_group = 'shared' ORDER BY 1",
    );
    assert_eq!(
        offsets,
        vec![
            vec![Some("0".to_string()), Some("40".to_string())],
            vec![Some("1".to_string()), Some("40".to_string())]
        ]
    );
}

#[test]
fn two_writers_racing_on_a_steady_stream_commit_each_range_exactly_once() {
    // Like the test above, but on one partition with messages arriving while the writers'
    // flushes conflict (in a run seen here, nearly every flush did), flushes of a few messages.
    let (kafka, topic, _dir, mut cfg_a) = setup("steady", 1);
    cfg_a.flush.max_rows = 300;
    let p = kafka.producer(&topic, Encoding::default());
    let (a, b) = two_writers(&cfg_a, 1);
    let mut next = 0;
    for _ in 0..120 {
        next = produce_events(&p, 1, next, 1, 50);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(next, 6_000);
    let (sa, sb) = (a.stats.clone(), b.stats.clone());
    let committed = || sa.committed_rows.load(Relaxed) + sb.committed_rows.load(Relaxed);
    let deadline = Instant::now() + Duration::from_secs(60);
    while committed() < 6_000 {
        assert!(
            Instant::now() < deadline,
            "{} of 6000 rows committed",
            committed()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    a.stop().unwrap();
    b.stop().unwrap();
    let mut check = cfg_a.clone();
    check.kafka.group_id = "shared".into();
    assert_eq!(lake_offsets(&check, &topic), vec![(0, 120)]);
    assert!(
        sa.offset_conflicts.load(Relaxed) + sb.offset_conflicts.load(Relaxed) > 0,
        "the writers never collided"
    );
    assert_eq!(
        sa.committed_rows.load(Relaxed) + sb.committed_rows.load(Relaxed),
        6_000
    );
    assert_exact_events(
        &check,
        &sluice::config::table_name_from_topic(&topic),
        6_000,
    );
}

#[test]
fn a_lake_outage_pauses_partitions_and_everything_lands_once_it_recovers() {
    let (kafka, topic, dir, cfg) = setup("outage", 2);
    let p = kafka.producer(&topic, Encoding::default());
    produce_events(&p, 2, 0, 10, 100);
    let run = Running::start(&cfg);
    run.wait("a first flush", Duration::from_secs(60), |s| {
        s.committed_rows.load(Relaxed) >= 1_000
    });
    // The data path stops accepting files.
    let data = dir.path().join("data");
    let moved = dir.path().join("data.away");
    std::fs::rename(&data, &moved).unwrap();
    std::fs::write(&data, b"not a directory").unwrap();
    produce_events(&p, 2, 1_000, 20, 100);
    run.wait(
        "a failed flush with paused partitions",
        Duration::from_secs(60),
        |s| s.flush_failures.load(Relaxed) >= 2 && s.paused_partitions.load(Relaxed) == 2,
    );
    assert_eq!(run.stats.committed_rows.load(Relaxed), 1_000);
    // The lake recovers: the waiting flush succeeds, partitions resume, the rest follows.
    std::fs::remove_file(&data).unwrap();
    std::fs::rename(&moved, &data).unwrap();
    produce_events(&p, 2, 3_000, 10, 100);
    run.wait("everything committed", Duration::from_secs(60), |s| {
        s.committed_rows.load(Relaxed) >= 4_000 && s.paused_partitions.load(Relaxed) == 0
    });
    let stats = run.stats.clone();
    run.stop().unwrap();
    assert_eq!(stats.committed_rows.load(Relaxed), 4_000);
    assert_exact_events(&cfg, &sluice::config::table_name_from_topic(&topic), 4_000);
}

#[test]
fn several_topics_by_name_and_pattern_each_land_in_their_own_table() {
    let kafka = Kafka::start();
    let dir = lake_dir();
    let a = kafka.topic("multi_a", 2);
    let b = kafka.topic("multi_b", 1);
    // Matched by a pattern only; created before the subscription.
    let prefix = unique("pat");
    let c1 = format!("{prefix}_one");
    let c2 = format!("{prefix}_two");
    for t in [&c1, &c2] {
        kafka.cluster.create_topic(t, 2, 1).unwrap();
    }
    let mut cfg = config(&kafka.brokers, &a, dir.path());
    cfg.kafka.topics = vec![a.clone(), b.clone(), format!("^{prefix}_.*")];
    cfg.tables.name_template = "raw_{topic}".into();
    cfg.tables.map.insert(b.clone(), "bee".into());
    let enc = Encoding::default();
    produce_events(&kafka.producer(&a, enc), 2, 0, 6, 100);
    produce_events(&kafka.producer(&b, enc), 1, 0, 4, 100);
    produce_events(&kafka.producer(&c1, enc), 2, 0, 8, 50);
    produce_events(&kafka.producer(&c2, enc), 2, 0, 2, 50);
    let run = Running::start(&cfg);
    run.wait("all four topics committed", Duration::from_secs(60), |s| {
        s.committed_rows.load(Relaxed) >= 600 + 400 + 400 + 100
    });
    // A topic created later that matches the pattern is picked up at metadata refresh.
    let c3 = format!("{prefix}_three");
    kafka.cluster.create_topic(&c3, 1, 1).unwrap();
    produce_events(&kafka.producer(&c3, enc), 1, 0, 3, 100);
    run.wait("the late topic committed", Duration::from_secs(60), |s| {
        s.committed_rows.load(Relaxed) >= 1_800
    });
    let stats = run.stats.clone();
    run.stop().unwrap();
    let table = |t: &str| format!("raw_{}", sluice::config::table_name_from_topic(t));
    assert_eq!(events_summary(&cfg, &table(&a)), expected_summary(600));
    assert_eq!(events_summary(&cfg, "bee"), expected_summary(400));
    assert_eq!(events_summary(&cfg, &table(&c1)), expected_summary(400));
    assert_eq!(events_summary(&cfg, &table(&c2)), expected_summary(100));
    assert_eq!(events_summary(&cfg, &table(&c3)), expected_summary(300));
    // Per-topic counters for each of the four.
    let topics = stats.topics.read().unwrap();
    let committed: Vec<(String, u64)> = topics
        .iter()
        .map(|(t, c)| (t.clone(), c.committed_rows.load(Relaxed)))
        .collect();
    let mut want = vec![
        (a.clone(), 600),
        (b.clone(), 400),
        (c1.clone(), 400),
        (c2.clone(), 100),
        (c3.clone(), 300),
    ];
    want.sort();
    assert_eq!(committed, want);
}

#[test]
fn topics_of_a_pattern_whose_tables_collide_stop_the_line_before_anything_is_read() {
    let kafka = Kafka::start();
    let dir = lake_dir();
    let prefix = unique("clash");
    let (dotted, underscored) = (format!("{prefix}.x"), format!("{prefix}_x"));
    for t in [&dotted, &underscored] {
        kafka.cluster.create_topic(t, 2, 1).unwrap();
        produce_events(&kafka.producer(t, Encoding::default()), 2, 0, 4, 50);
    }
    let mut cfg = config(&kafka.brokers, &dotted, dir.path());
    cfg.kafka.topics = vec![format!("^{prefix}[._]x$")];
    let run = Running::start(&cfg);
    let stats = run.stats.clone();
    let err = run.ended(Duration::from_secs(60)).unwrap_err().to_string();
    let table = sluice::config::table_name_from_topic(&underscored);
    let says = |a: &str, b: &str| {
        format!(
            "topics {a:?} and {b:?} both go to table {table:?} (derived by tables.name_template \
             \"{{topic}}\"); map one of them to another table under [tables.map]"
        )
    };
    assert!(
        err == says(&dotted, &underscored) || err == says(&underscored, &dotted),
        "{err}"
    );
    assert_eq!(stats.committed_rows.load(Relaxed), 0);
}
