//! `metrics`: the operators' HTTP endpoint. `/metrics` in the Prometheus text format (names
//! `sluice_<noun>_<unit>`), `/healthz` (the process is alive and its loop polled recently) and
//! `/readyz` (an assignment was received, a broker is up, the lake accepts flushes).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;

use crate::observe::{FLUSH_TRIGGERS, FlightStats, Histogram, Stats, now_ms};

/// What the endpoint reads.
#[derive(Clone)]
pub struct Sources {
    /// The pipeline's counters.
    pub stats: Arc<Stats>,
    /// The Flight service's counters, if live is enabled.
    pub flight: Option<Arc<FlightStats>>,
    /// `/healthz` fails when the loop has not polled for this long.
    pub stall_after: Duration,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {value}");
        } else {
            let l: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = writeln!(self.0, "{name}{{{}}} {value}", l.join(","));
        }
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.family(name, "histogram", help);
        let (counts, sum, count) = h.snapshot();
        for (b, c) in h.bounds.iter().zip(counts) {
            self.sample(&format!("{name}_bucket"), &[("le", &b.to_string())], c);
        }
        self.sample(&format!("{name}_bucket"), &[("le", "+Inf")], count);
        self.sample(&format!("{name}_sum"), &[], sum);
        self.sample(&format!("{name}_count"), &[], count);
    }
}

/// Resident memory of this process in bytes (Linux), 0 if unknown.
pub fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// The Prometheus text exposition of everything sluice counts.
pub fn render(src: &Sources) -> String {
    let s = &src.stats;
    let mut o = Out(String::with_capacity(8192));
    let topics: Vec<(String, Arc<crate::observe::TopicCounters>)> = s
        .topics
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    type Pick = fn(&crate::observe::TopicCounters) -> &std::sync::atomic::AtomicU64;
    let per_topic: [(&str, &str, Pick); 7] = [
        (
            "sluice_consumed_messages_total",
            "Kafka messages consumed (decoded or quarantined).",
            |t| &t.messages,
        ),
        ("sluice_consumed_rows_total", "Rows decoded.", |t| &t.rows),
        (
            "sluice_consumed_bytes_total",
            "Payload bytes consumed.",
            |t| &t.bytes,
        ),
        (
            "sluice_committed_messages_total",
            "Messages whose offsets were committed to the lake.",
            |t| &t.committed_messages,
        ),
        (
            "sluice_committed_rows_total",
            "Rows committed to the lake.",
            |t| &t.committed_rows,
        ),
        (
            "sluice_committed_bytes_total",
            "Payload bytes committed to the lake.",
            |t| &t.committed_bytes,
        ),
        (
            "sluice_quarantined_messages_total",
            "Payloads committed to the quarantine table.",
            |t| &t.quarantined,
        ),
    ];
    for (name, help, pick) in per_topic {
        o.family(name, "counter", help);
        for (topic, t) in &topics {
            o.sample(name, &[("topic", topic)], pick(t).load(Relaxed));
        }
    }

    o.family(
        "sluice_flushes_total",
        "counter",
        "Successful flushes, by trigger.",
    );
    for (t, n) in FLUSH_TRIGGERS.iter().zip(&s.flushes_by_trigger) {
        o.sample("sluice_flushes_total", &[("trigger", t)], n.load(Relaxed));
    }
    o.histogram(
        "sluice_flush_duration_seconds",
        "Time of a successful flush, from its start to the lake commit.",
        &s.flush_duration,
    );
    o.histogram(
        "sluice_flush_size_bytes",
        "Payload bytes of a successful flush.",
        &s.flush_size,
    );
    let singles: [(&str, &str, &str, &std::sync::atomic::AtomicU64); 9] = [
        (
            "sluice_commit_conflicts_total",
            "counter",
            "DuckLake commits rejected for a concurrent transaction (each retried with backoff).",
            &s.commit_conflicts,
        ),
        (
            "sluice_offset_conflicts_total",
            "counter",
            "Partition ranges another writer committed first (dropped and re-sought).",
            &s.offset_conflicts,
        ),
        (
            "sluice_flush_failures_total",
            "counter",
            "Flush attempts that failed for another reason (each retried with backoff).",
            &s.flush_failures,
        ),
        (
            "sluice_stale_messages_total",
            "counter",
            "Messages dropped as already committed (after a seek or a rebalance).",
            &s.stale_messages,
        ),
        (
            "sluice_pending_bytes",
            "gauge",
            "Bytes pending in memory, including the flush in flight.",
            &s.pending_bytes,
        ),
        (
            "sluice_pending_cap_bytes",
            "gauge",
            "What the memory budget leaves for pending data.",
            &s.pending_cap_bytes,
        ),
        (
            "sluice_inflight_bytes",
            "gauge",
            "Bytes of the flush being committed.",
            &s.inflight_bytes,
        ),
        (
            "sluice_assigned_partitions",
            "gauge",
            "Partitions assigned to this instance.",
            &s.assigned_partitions,
        ),
        (
            "sluice_paused_partitions",
            "gauge",
            "Partitions paused while a failed flush waits for its retry.",
            &s.paused_partitions,
        ),
    ];
    for (name, kind, help, v) in singles {
        o.one(name, kind, help, v.load(Relaxed));
    }

    let parts = s
        .partitions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    o.family(
        "sluice_lake_offset",
        "gauge",
        "The lake's next offset of each assigned partition (-1: nothing committed yet).",
    );
    for ((topic, p), g) in &parts {
        let p = p.to_string();
        o.sample(
            "sluice_lake_offset",
            &[("topic", topic), ("partition", &p)],
            g.lake_next,
        );
    }
    o.family(
        "sluice_high_watermark_offset",
        "gauge",
        "The broker's high watermark of each assigned partition (librdkafka statistics).",
    );
    for ((topic, p), g) in &parts {
        if g.high_watermark >= 0 {
            let p = p.to_string();
            o.sample(
                "sluice_high_watermark_offset",
                &[("topic", topic), ("partition", &p)],
                g.high_watermark,
            );
        }
    }
    o.family(
        "sluice_consumer_lag_messages",
        "gauge",
        "High watermark minus the lake's next offset, per assigned partition.",
    );
    for ((topic, p), g) in &parts {
        if let Some(lag) = g.lag() {
            let p = p.to_string();
            o.sample(
                "sluice_consumer_lag_messages",
                &[("topic", topic), ("partition", &p)],
                lag,
            );
        }
    }

    o.family(
        "sluice_decoded_bytes_total",
        "counter",
        "Decoded buffer bytes by how they were obtained: in place (zero-copy) or copied \
         (realigned, decompressed, compacted by the live ring, or in a payload copy with \
         kafka.copy_payloads).",
    );
    for (how, v) in [
        ("in_place", &s.in_place_bytes),
        ("realigned", &s.realigned_bytes),
        ("decompressed", &s.decompressed_bytes),
        ("payload", &s.payload_copy_bytes),
        ("compacted", &s.compacted_bytes),
    ] {
        o.sample(
            "sluice_decoded_bytes_total",
            &[("copy", how)],
            v.load(Relaxed),
        );
    }
    o.one(
        "sluice_live_retained_bytes",
        "gauge",
        "Bytes the live ring retains over all topics.",
        s.live_bytes.load(Relaxed),
    );
    if let Some(f) = &src.flight {
        o.one(
            "sluice_flight_readers",
            "gauge",
            "Flight readers connected now.",
            f.readers.load(Relaxed),
        );
        o.one(
            "sluice_flight_lag_disconnects_total",
            "counter",
            "Flight readers cut off because they fell behind retention.",
            f.lag_disconnects.load(Relaxed),
        );
    }
    o.one(
        "sluice_resident_memory_bytes",
        "gauge",
        "Resident memory of the process.",
        resident_bytes(),
    );
    o.0
}

/// `/healthz`: alive, and the loop polled within `stall_after`.
pub fn health(src: &Sources) -> (StatusCode, String) {
    let last = src.stats.last_poll_ms.load(Relaxed);
    let age = Duration::from_millis(now_ms().saturating_sub(last));
    if last != 0 && age > src.stall_after {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the ingest loop has not polled for {} s\n", age.as_secs()),
        );
    }
    (StatusCode::OK, "ok\n".into())
}

/// `/readyz`: an assignment was received, a broker is up, the latest flush did not fail, and
/// the loop is not stalled. The body names what is missing.
pub fn readiness(src: &Sources) -> (StatusCode, String) {
    let s = &src.stats;
    let mut missing = Vec::new();
    if !s.assignment_received.load(Relaxed) {
        missing.push("no partition assignment received from the consumer group yet".to_string());
    }
    if *s.brokers_up.lock().unwrap_or_else(|p| p.into_inner()) == Some(0) {
        missing.push("no Kafka broker is up".to_string());
    }
    if s.lake_failing.load(Relaxed) {
        missing.push("the latest flush failed: the lake is unreachable or refusing".to_string());
    }
    if let (StatusCode::SERVICE_UNAVAILABLE, why) = health(src) {
        missing.push(why.trim().to_string());
    }
    if missing.is_empty() {
        (StatusCode::OK, "ready\n".into())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", missing.join("; ")),
        )
    }
}

/// The HTTP server on its own runtime thread.
pub struct MetricsServer {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `addr` and serves `/metrics`, `/healthz` and `/readyz`.
    pub fn start(addr: SocketAddr, src: Sources) -> std::io::Result<MetricsServer> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sluice-metrics".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "metrics server runtime");
                        return;
                    }
                };
                rt.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let (m, h, r) = (src.clone(), src.clone(), src);
                    let app = axum::Router::new()
                        .route(
                            "/metrics",
                            get(move || {
                                let body = render(&m);
                                async move {
                                    (
                                        [(
                                            axum::http::header::CONTENT_TYPE,
                                            "text/plain; version=0.0.4; charset=utf-8",
                                        )],
                                        body,
                                    )
                                }
                            }),
                        )
                        .route("/healthz", get(move || std::future::ready(health(&h))))
                        .route("/readyz", get(move || std::future::ready(readiness(&r))));
                    let served = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = rx.await;
                        })
                        .await;
                    if let Err(e) = served {
                        tracing::error!(error = %e, "metrics server stopped");
                    }
                });
            })?;
        Ok(MetricsServer {
            addr,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// Stops serving and joins the thread.
    pub fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources() -> Sources {
        Sources {
            stats: Arc::new(Stats::default()),
            flight: None,
            stall_after: Duration::from_secs(30),
        }
    }

    #[test]
    fn readiness_names_what_is_missing() {
        let src = sources();
        *src.stats.brokers_up.lock().unwrap() = Some(0);
        src.stats.lake_failing.store(true, Relaxed);
        src.stats.last_poll_ms.store(now_ms() - 45_000, Relaxed);
        let (code, body) = readiness(&src);
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            "not ready: no partition assignment received from the consumer group yet; \
             no Kafka broker is up; the latest flush failed: the lake is unreachable or \
             refusing; the ingest loop has not polled for 45 s\n"
        );
        assert_eq!(
            health(&src),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the ingest loop has not polled for 45 s\n".to_string()
            )
        );
        src.stats.assignment_received.store(true, Relaxed);
        *src.stats.brokers_up.lock().unwrap() = Some(1);
        src.stats.lake_failing.store(false, Relaxed);
        src.stats.last_poll_ms.store(now_ms(), Relaxed);
        assert_eq!(readiness(&src), (StatusCode::OK, "ready\n".to_string()));
        assert_eq!(health(&src), (StatusCode::OK, "ok\n".to_string()));
    }

    #[test]
    fn histograms_and_labels_render_in_the_text_format() {
        let src = sources();
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
}
