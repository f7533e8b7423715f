use super::*;
use std::sync::Arc;
use std::time::Duration;

/// Every counter, gauge and histogram of a pipeline with Flight set to distinct values.
fn fill(s: &Stats) {
    let all = [
        &s.messages,
        &s.rows,
        &s.payload_bytes,
        &s.in_place_bytes,
        &s.realigned_bytes,
        &s.decompressed_bytes,
        &s.payload_copy_bytes,
        &s.compacted_bytes,
        &s.live_bytes,
        &s.flushes,
        &s.committed_rows,
        &s.committed_messages,
        &s.committed_bytes,
        &s.quarantined,
        &s.commit_conflicts,
        &s.offset_conflicts,
        &s.flush_failures,
        &s.pending_bytes,
        &s.inflight_bytes,
        &s.stale_messages,
        &s.assigned_partitions,
        &s.paused_partitions,
        &s.pending_cap_bytes,
        &s.coalesced_bytes,
    ];
    for (i, a) in all.iter().enumerate() {
        a.store(1000 + i as u64, Relaxed);
    }
    for (i, a) in s.flushes_by_trigger.iter().enumerate() {
        a.store(7 + i as u64, Relaxed);
    }
    for (n, t) in ["ev\"ents", "b"].iter().enumerate() {
        let c = s.topic(t);
        let counters = [
            &c.messages,
            &c.rows,
            &c.bytes,
            &c.committed_messages,
            &c.committed_rows,
            &c.committed_bytes,
            &c.quarantined,
        ];
        for (i, a) in counters.iter().enumerate() {
            a.store((n * 100 + i) as u64, Relaxed);
        }
    }
    s.set_partition("ev\"ents", 0, Some(5), Some(9));
    s.set_partition("b", 3, Some(-1), None);
    s.record_schema_change("ev", "add_column");
    s.record_schema_change("ev", "add_column");
    s.record_schema_change("ev", "widen");
    s.record_offset_gap("ev\"ents", "above_high");
    let m = &s.maintenance;
    let maint = [
        &m.passes_ok,
        &m.passes_failed,
        &m.passes_skipped,
        &m.lease_held,
        &m.inlined_rows,
        &m.files_merged,
        &m.files_rewritten,
        &m.files_written,
        &m.snapshots_expired,
        &m.files_deleted,
        &m.bytes_reclaimed,
        &m.conflicts,
        &m.last_duration_ms,
        &m.last_success_ms,
    ];
    for (i, a) in maint.iter().enumerate() {
        a.store(2000 + i as u64, Relaxed);
    }
    s.flush_duration.observe(0.3);
    s.flush_duration.observe(12.5);
    s.flush_size.observe(5_000_000.0);
    s.memory_limit_bytes.store(536_870_912, Relaxed);
}

/// The exposition, byte for byte (but the resident memory's value): the names, labels,
/// help texts and order that dashboards, alerts and `tests/metrics.rs` rely on. The file was
/// rendered by the hand-written renderer this one replaced (commit ab6185a), plus the
/// `sluice_schema_changes_total` family since (issue 12), and the `offset_gap` flush trigger
/// and `sluice_offset_gaps_total` (issue 13), and the Flight lake counters (issue 16).
#[test]
fn the_exposition_is_exactly_the_established_one() {
    let f = Arc::new(crate::observe::FlightStats::default());
    f.readers.store(3, Relaxed);
    let src = Sources {
        stats: Arc::new(Stats::default()),
        flight: Some(f),
        stall_after: Duration::from_secs(30),
    };
    fill(&src.stats);
    let text: String = render(&src)
        .lines()
        .filter(|l| !l.starts_with("sluice_resident_memory_bytes "))
        .map(|l| format!("{l}\n"))
        .collect();
    if std::env::var_os("SLUICE_UPDATE_GOLDEN").is_some() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/observe/testdata/exposition.txt"
        );
        std::fs::write(path, &text).unwrap();
    }
    assert_eq!(text, include_str!("../testdata/exposition.txt"));
}

/// `sluice_ready` follows `/readyz`; `sluice_memory_limit_bytes` is `memory.limit_bytes`,
/// with no sample when no limit is configured.
#[test]
fn readiness_and_the_memory_limit_are_gauges() {
    let src = Sources {
        stats: Arc::new(Stats::default()),
        flight: None,
        stall_after: Duration::from_secs(30),
    };
    let samples = |src: &Sources| -> Vec<String> {
        render(src)
            .lines()
            .filter(|l| l.starts_with("sluice_ready") || l.starts_with("sluice_memory_limit"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(samples(&src), ["sluice_ready 0"]);
    src.stats.assignment_received.store(true, Relaxed);
    src.stats.memory_limit_bytes.store(1 << 30, Relaxed);
    assert_eq!(
        samples(&src),
        ["sluice_memory_limit_bytes 1073741824", "sluice_ready 1"]
    );
    src.stats.record_flush_failure("events", 1, 10, "disk full");
    assert_eq!(
        samples(&src),
        ["sluice_memory_limit_bytes 1073741824", "sluice_ready 0"]
    );
}

#[test]
fn histograms_and_labels_render_in_the_text_format() {
    let src = Sources {
        stats: Arc::new(Stats::default()),
        flight: None,
        stall_after: Duration::from_secs(30),
    };
    src.stats.flush_duration.observe(0.3);
    src.stats.flush_duration.observe(4.0);
    src.stats.set_partition("a\"b", 3, Some(10), Some(25));
    let text = render(&src);
    for line in [
        "# TYPE sluice_flush_duration_seconds histogram",
        "sluice_flush_duration_seconds_bucket{le=\"0.25\"} 0",
        "sluice_flush_duration_seconds_bucket{le=\"0.5\"} 1",
        "sluice_flush_duration_seconds_bucket{le=\"5\"} 2",
        "sluice_flush_duration_seconds_bucket{le=\"+Inf\"} 2",
        "sluice_flush_duration_seconds_sum 4.3",
        "sluice_flush_duration_seconds_count 2",
        "sluice_lake_offset{topic=\"a\\\"b\",partition=\"3\"} 10",
        "sluice_high_watermark_offset{topic=\"a\\\"b\",partition=\"3\"} 25",
        "sluice_consumer_lag_messages{topic=\"a\\\"b\",partition=\"3\"} 15",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}
