//! `[metrics]`: the operators' HTTP endpoint (`/metrics`, `/healthz`, `/readyz`).

use serde::{Deserialize, Serialize};

use super::{ConfigError, check_address, invalid};

/// The HTTP endpoint for Prometheus and health checks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve it at all.
    pub enabled: bool,
    /// Listen address (`host:port`; port 0 picks a free one).
    pub address: String,
    /// `/healthz` fails when the ingest loop has not polled for this long.
    pub stall_after_ms: u64,
}

/// Loopback, port 9464: the port OpenTelemetry's Prometheus exporter conventionally uses.
fn default_address() -> String {
    "127.0.0.1:9464".into()
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            address: default_address(),
            stall_after_ms: 30_000,
        }
    }
}

impl MetricsConfig {
    /// Checks the `[metrics]` keys (only when it is enabled).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        check_address("metrics.address", &self.address, "127.0.0.1:9464")?;
        if self.stall_after_ms == 0 {
            return Err(invalid("metrics.stall_after_ms", "must be greater than 0"));
        }
        Ok(())
    }
}
