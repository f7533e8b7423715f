//! `[metrics]`: the operators' HTTP endpoint (`/metrics`, `/healthz`, `/readyz`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigError, Secret, check_address, invalid};

/// The HTTP endpoint for Prometheus and health checks.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve it at all.
    pub enabled: bool,
    /// Listen address (`host:port`; port 0 picks a free one).
    pub address: String,
    /// `/healthz` fails when the ingest loop has not polled for this long.
    pub stall_after_ms: u64,
    /// With `password`: `/metrics` asks for HTTP basic authentication with this user
    /// (`/healthz` and `/readyz` stay open for probes). Unset: no authentication, for the
    /// default loopback address.
    #[schemars(example = &"prometheus")]
    pub username: Option<String>,
    /// The basic-authentication password (never logged; better `SLUICE_METRICS__PASSWORD`).
    #[schemars(example = &"…")]
    pub password: Option<Secret>,
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
            username: None,
            password: None,
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
        match (&self.username, &self.password) {
            (Some(u), Some(p)) if u.is_empty() || u.contains(':') || p.expose().is_empty() => {
                Err(invalid(
                    "metrics.username",
                    "and metrics.password must not be empty, and the username has no ':'",
                ))
            }
            (Some(_), None) | (None, Some(_)) => Err(invalid(
                "metrics.username",
                "and metrics.password are set together (HTTP basic authentication)",
            )),
            _ => Ok(()),
        }
    }
}
