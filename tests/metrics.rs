//! The operators' endpoint of a real `sluice run`: `/metrics` values after a known ingest,
//! `/healthz`, `/readyz`.

mod common;

use std::time::{Duration, Instant};

use common::services::SluiceProc;
use common::*;
use sluice_producer::Encoding;

/// GET `path` from `addr`: (status code, body).
fn get(addr: &str, path: &str) -> (u16, String) {
    http_get(addr, path, "")
}

/// The value of the sample line starting with `prefix` (name and labels).
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn metrics_health_and_readiness_of_a_running_instance() {
    let (kafka, topic, dir, mut cfg) = setup("metrics", 2);
    // Fast librdkafka statistics, so the high watermarks (lag) show up quickly.
    cfg.kafka
        .properties
        .insert("statistics.interval.ms".into(), "300".into());
    cfg.log.format = sluice::config::LogFormat::Json;
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
    let mut proc = SluiceProc::start(&path, dir.path().join("sluice.log"), &[]);
    // JSON log line: "url":"http://127.0.0.1:PORT/metrics".
    let log = proc.wait_for_log("\"url\":\"http://", 1, Duration::from_secs(30));
    let addr = address_after(&log, "\"url\":\"http://");
    assert_eq!(get(&addr, "/healthz"), (200, "ok\n".to_string()));

    let p = kafka.producer(&topic, Encoding::default());
    produce_events(&p, 2, 0, 20, 100);
    let t = format!("{{topic=\"{topic}\"}}");
    let lag0 = format!("sluice_consumer_lag_messages{{topic=\"{topic}\",partition=\"0\"}}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let (code, text) = get(&addr, "/metrics");
        assert_eq!(code, 200);
        let committed = sample(&text, &format!("sluice_committed_rows_total{t}"));
        if committed == Some(2000.0) && sample(&text, &lag0) == Some(0.0) {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never showed 2000 committed rows and lag 0:\n{text}\n{}",
            proc.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for (name, want) in [
        (format!("sluice_consumed_messages_total{t}"), 20.0),
        (format!("sluice_consumed_rows_total{t}"), 2000.0),
        (format!("sluice_committed_messages_total{t}"), 20.0),
        (format!("sluice_quarantined_messages_total{t}"), 0.0),
        (
            format!("sluice_lake_offset{{topic=\"{topic}\",partition=\"0\"}}"),
            10.0,
        ),
        (
            format!("sluice_lake_offset{{topic=\"{topic}\",partition=\"1\"}}"),
            10.0,
        ),
        (
            format!("sluice_high_watermark_offset{{topic=\"{topic}\",partition=\"1\"}}"),
            10.0,
        ),
        ("sluice_assigned_partitions".to_string(), 2.0),
        ("sluice_paused_partitions".to_string(), 0.0),
        ("sluice_pending_bytes".to_string(), 0.0),
        ("sluice_commit_conflicts_total".to_string(), 0.0),
        ("sluice_flight_readers".to_string(), 0.0),
    ] {
        assert_eq!(sample(&text, &name), Some(want), "{name} in\n{text}");
    }
    // Consumed bytes = committed bytes = the payloads; flush counts agree everywhere.
    let consumed = sample(&text, &format!("sluice_consumed_bytes_total{t}")).unwrap();
    assert_eq!(
        sample(&text, &format!("sluice_committed_bytes_total{t}")),
        Some(consumed)
    );
    let flushes: f64 = ["bytes", "rows", "age", "memory", "revoke", "shutdown"]
        .iter()
        .map(|tr| sample(&text, &format!("sluice_flushes_total{{trigger=\"{tr}\"}}")).unwrap())
        .sum();
    assert!(flushes >= 1.0);
    assert_eq!(
        sample(&text, "sluice_flush_duration_seconds_count"),
        Some(flushes)
    );
    assert_eq!(
        sample(&text, "sluice_flush_size_bytes_count"),
        Some(flushes)
    );
    assert_eq!(
        sample(&text, "sluice_flush_size_bytes_bucket{le=\"+Inf\"}"),
        Some(flushes)
    );
    // Every decoded byte of the 20 payloads, in place or realigned; nothing else copied.
    let decoded = |how: &str| {
        sample(
            &text,
            &format!("sluice_decoded_bytes_total{{copy=\"{how}\"}}"),
        )
        .unwrap()
    };
    let want = decoded_copies(Encoding::default(), 0, 20, 100);
    let want_bytes = (want.in_place + want.realigned) as f64;
    assert_eq!(decoded("in_place") + decoded("realigned"), want_bytes);
    assert_eq!((decoded("decompressed"), decoded("payload")), (0.0, 0.0));
    assert!(sample(&text, "sluice_resident_memory_bytes").unwrap() > 0.0);
    assert_eq!(get(&addr, "/readyz"), (200, "ready\n".to_string()));
    assert_eq!(proc.terminate(Duration::from_secs(30)), Some(0));

    // JSON logs: one line per flush with table, rows, bytes, files, duration and offsets.
    let lines: Vec<serde_json::Value> = proc
        .output()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "flushed")
        .collect();
    // Nothing was pending at the stop, so the flushes are exactly those the metrics counted.
    assert_eq!(lines.len() as f64, flushes);
    let sum = |k: &str| -> u64 { lines.iter().map(|f| f["fields"][k].as_u64().unwrap()).sum() };
    assert_eq!(sum("rows"), 2000);
    assert_eq!(sum("bytes") as f64, consumed);
    let table = sluice::config::table_name_from_topic(&topic);
    for f in &lines {
        assert_eq!(f["fields"]["table"], table.as_str());
        assert!(f["fields"]["duration_ms"].is_u64() && f["fields"]["offsets"].is_string());
    }
    // The files the flushes report are the Parquet files in the data path.
    assert_eq!(sum("files"), count_parquet(&dir.path().join("data")));
}

fn count_parquet(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                count_parquet(&p)
            } else {
                u64::from(p.extension().is_some_and(|x| x == "parquet"))
            }
        })
        .sum()
}

/// With `metrics.username` and `metrics.password`, `/metrics` asks for HTTP basic
/// authentication; `/healthz` and `/readyz` stay open for probes; the password is never logged.
#[test]
fn basic_authentication_guards_metrics_but_not_the_probes() {
    const PASSWORD: &str = "metrics-pw-never-logged";
    let (_kafka, _topic, dir, mut cfg) = setup("metricsauth", 1);
    cfg.metrics.username = Some("prometheus".into());
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
    let mut proc = SluiceProc::start(
        &path,
        dir.path().join("sluice.log"),
        &[
            ("SLUICE_METRICS__PASSWORD", PASSWORD),
            ("SLUICE_LOG__LEVEL", "debug"),
        ],
    );
    let log = proc.wait_for_log("metrics endpoint", 1, Duration::from_secs(30));
    let addr = address_after(&log, "url=http://");
    let refused = (
        401,
        "/metrics needs HTTP basic authentication (metrics.username, metrics.password)\n"
            .to_string(),
    );
    assert_eq!(get(&addr, "/metrics"), refused);
    // prometheus:wrong
    assert_eq!(
        http_get(
            &addr,
            "/metrics",
            "Authorization: Basic cHJvbWV0aGV1czp3cm9uZw==\r\n"
        ),
        refused
    );
    // prometheus:metrics-pw-never-logged
    let (code, text) = http_get(
        &addr,
        "/metrics",
        "Authorization: Basic cHJvbWV0aGV1czptZXRyaWNzLXB3LW5ldmVyLWxvZ2dlZA==\r\n",
    );
    assert_eq!(code, 200, "{text}");
    assert!(
        text.contains("# TYPE sluice_committed_rows_total counter"),
        "{text}"
    );
    assert_eq!(get(&addr, "/healthz"), (200, "ok\n".to_string()));
    let (code, body) = get(&addr, "/readyz");
    assert!(
        (code, body.as_str()) == (200, "ready\n")
            || (code == 503 && body.starts_with("not ready: ")),
        "{code} {body}"
    );
    assert_eq!(proc.terminate(Duration::from_secs(30)), Some(0));
    assert!(!proc.output().contains(PASSWORD), "{}", proc.output());
}
