//! `retry`: the one backoff policy every retry loop of sluice uses — jittered exponential
//! backoff with a bounded number of attempts. A loop either asks [`Backoff::delay`] how long to
//! wait before its next attempt (the pipeline, which keeps polling Kafka meanwhile), or hands
//! its work to [`Backoff::run`] (blocking call sites: attaching the lake, registering
//! partitions).

use std::time::Duration;

use crate::config::RetryConfig;

/// A retry policy: up to `attempts` attempts, waiting `initial` before the second, doubling up
/// to `max`, each wait jittered by ±50% so instances that failed together do not retry together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
    /// Wait before the second attempt (before jitter).
    pub initial: Duration,
    /// Cap of the wait (before jitter).
    pub max: Duration,
}

impl Backoff {
    /// The policy of a failing flush: `flush.retry.attempts`, `initial_backoff_ms`,
    /// `max_backoff_ms`.
    pub fn failures(cfg: &RetryConfig) -> Backoff {
        Backoff {
            attempts: cfg.attempts,
            initial: Duration::from_millis(cfg.initial_backoff_ms),
            max: Duration::from_millis(cfg.max_backoff_ms),
        }
    }

    /// The policy of a transaction that lost to a concurrent one (another instance committed,
    /// registered partitions or initialised the catalog at the same moment):
    /// `flush.retry.conflict_attempts`, `conflict_initial_backoff_ms`,
    /// `conflict_max_backoff_ms`.
    pub fn conflicts(cfg: &RetryConfig) -> Backoff {
        Backoff {
            attempts: cfg.conflict_attempts,
            initial: Duration::from_millis(cfg.conflict_initial_backoff_ms),
            max: Duration::from_millis(cfg.conflict_max_backoff_ms),
        }
    }

    /// Whether a loop that has failed `failures` times must stop trying.
    pub fn exhausted(&self, failures: u32) -> bool {
        failures >= self.attempts
    }

    /// The wait before the next attempt after `failures` failures (1 for the first): `initial`
    /// × 2^(failures − 1), capped at `max`, times a jitter factor in [0.5, 1.5).
    pub fn delay(&self, failures: u32) -> Duration {
        self.delay_with(failures, fastrand::f64())
    }

    /// [`Backoff::delay`] with the jitter draw `unit` (in [0, 1)) given: the pure part.
    pub fn delay_with(&self, failures: u32, unit: f64) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        let base = self.initial.saturating_mul(1 << doublings).min(self.max);
        base.mul_f64(0.5 + unit)
    }

    /// Runs `attempt` until it succeeds, fails with an error `retryable` rejects, or the
    /// attempts are used up (then the last error is returned). Each retry is logged with
    /// `what` and sleeps for [`Backoff::delay`].
    pub fn run<T, E: std::fmt::Display>(
        &self,
        what: &str,
        retryable: impl Fn(&E) -> bool,
        mut attempt: impl FnMut() -> Result<T, E>,
    ) -> Result<T, E> {
        let mut failures = 0;
        loop {
            match attempt() {
                Ok(v) => return Ok(v),
                Err(e) => {
                    failures += 1;
                    if !retryable(&e) || self.exhausted(failures) {
                        return Err(e);
                    }
                    let wait = self.delay(failures);
                    tracing::warn!(error = %e, attempt = failures, wait_ms = wait.as_millis() as u64, "{what} failed; retrying");
                    std::thread::sleep(wait);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        attempts: 4,
        initial: Duration::from_millis(100),
        max: Duration::from_millis(350),
    };

    #[test]
    fn delays_double_up_to_the_cap_with_jitter_of_half_either_way() {
        let ms = |f, u| B.delay_with(f, u).as_millis();
        assert_eq!(
            [ms(1, 0.5), ms(2, 0.5), ms(3, 0.5), ms(9, 0.5)],
            [100, 200, 350, 350]
        );
        assert_eq!([ms(1, 0.0), ms(2, 0.0), ms(3, 0.999)], [50, 100, 524]);
        for f in 1..30 {
            let d = B.delay(f);
            assert!(
                d >= Duration::from_millis(50) && d < Duration::from_millis(525),
                "{d:?}"
            );
        }
    }

    #[test]
    fn run_stops_at_success_at_a_fatal_error_or_after_the_attempts() {
        let fast = Backoff {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(1),
            ..B
        };
        let mut calls = 0;
        let r: Result<u32, String> = fast.run(
            "t",
            |_| true,
            || {
                calls += 1;
                if calls < 3 {
                    Err(format!("fail {calls}"))
                } else {
                    Ok(calls)
                }
            },
        );
        assert_eq!((r, calls), (Ok(3), 3));
        calls = 0;
        let r: Result<u32, String> = fast.run(
            "t",
            |_| true,
            || {
                calls += 1;
                Err(format!("fail {calls}"))
            },
        );
        assert_eq!((r, calls), (Err("fail 4".to_string()), 4));
        calls = 0;
        let r: Result<u32, String> = fast.run(
            "t",
            |e: &String| e != "fatal",
            || {
                calls += 1;
                Err("fatal".to_string())
            },
        );
        assert_eq!((r, calls), (Err("fatal".to_string()), 1));
    }

    #[test]
    fn policies_come_from_the_retry_config() {
        let cfg = RetryConfig::default();
        assert_eq!(
            Backoff::failures(&cfg),
            Backoff {
                attempts: 10,
                initial: Duration::from_millis(200),
                max: Duration::from_millis(30_000)
            }
        );
        assert_eq!(
            Backoff::conflicts(&cfg),
            Backoff {
                attempts: 100,
                initial: Duration::from_millis(20),
                max: Duration::from_millis(2_000)
            }
        );
    }
}
