//! `/healthz` (the process is alive and its loop polled recently) and `/readyz` (an assignment
//! was received, a broker is up, the lake accepts flushes), each saying what is missing.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::http::StatusCode;

use super::{Sources, now_ms};

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
    if *crate::sync::lock(&s.brokers_up) == Some(0) {
        missing.push("no Kafka broker is up".to_string());
    }
    if let Some(why) = crate::sync::lock(&s.lake_failing).as_ref() {
        missing.push(format!(
            "the latest flush failed and waits for its retry ({why})"
        ));
    }
    let (join_state, unsettled_since) = crate::sync::lock(&s.group_state).clone();
    if unsettled_since != 0 {
        let age = Duration::from_millis(now_ms().saturating_sub(unsettled_since));
        if age > src.stall_after {
            missing.push(format!(
                "the consumer group has not settled for {} s (join state {join_state})",
                age.as_secs()
            ));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::Stats;
    use std::sync::Arc;

    #[test]
    fn readiness_names_what_is_missing() {
        let src = Sources {
            stats: Arc::new(Stats::default()),
            flight: None,
            stall_after: Duration::from_secs(30),
        };
        *src.stats.brokers_up.lock().unwrap() = Some(0);
        src.stats.record_flush_failure(
            "events",
            3,
            10,
            "insert into table events: IO Error: Could not write file \"/data/x.parquet\": No space left on device\nmore",
        );
        src.stats.last_poll_ms.store(now_ms() - 45_000, Relaxed);
        src.stats.record_group_state("wait-sync");
        src.stats.group_state.lock().unwrap().1 = now_ms() - 40_000;
        let (code, body) = readiness(&src);
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            "not ready: no partition assignment received from the consumer group yet; \
             no Kafka broker is up; the latest flush failed and waits for its retry (table \
             events, attempt 3 of 10: insert into table events: IO Error: Could not write file \
             \"/data/x.parquet\": No space left on device); the consumer group has not settled \
             for 40 s (join state wait-sync); the ingest loop has not polled for 45 s\n"
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
        *src.stats.lake_failing.lock().unwrap() = None;
        src.stats.record_group_state("steady");
        src.stats.last_poll_ms.store(now_ms(), Relaxed);
        assert_eq!(readiness(&src), (StatusCode::OK, "ready\n".to_string()));
        assert_eq!(health(&src), (StatusCode::OK, "ok\n".to_string()));
    }
}
