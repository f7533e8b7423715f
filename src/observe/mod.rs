//! `observe`: what the stages count and how operators see it. A leaf: the stages write into
//! it, it imports none of them.
//!
//! - [`stats`]: the counters and gauges, plain atomics per pipeline.
//! - [`prometheus`]: `/metrics` in the Prometheus text format (names `sluice_<noun>_<unit>`).
//! - [`health`]: `/healthz` and `/readyz`, with the reason when not.
//! - [`http`]: the operators' HTTP endpoint serving those three.
//! - [`server`]: the one server runtime that HTTP and Flight both run on, stopped in order.

pub mod health;
pub mod http;
pub mod prometheus;
pub mod server;
pub mod stats;

pub use stats::*;

use std::sync::Arc;
use std::time::Duration;

/// What the operators' endpoint reads.
#[derive(Clone)]
pub struct Sources {
    /// The pipeline's counters.
    pub stats: Arc<Stats>,
    /// The Flight service's counters, if live is enabled.
    pub flight: Option<Arc<FlightStats>>,
    /// `/healthz` fails when the loop has not polled for this long.
    pub stall_after: Duration,
}
