//! `[live]`: the live Arrow Flight endpoint and its retention.

use serde::{Deserialize, Serialize};

use super::{ConfigError, Secret, check_address, invalid};

/// The live Arrow Flight endpoint: the decoded batches, retained per topic.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LiveConfig {
    /// Serve Flight at all.
    pub enabled: bool,
    /// Listen address (`host:port`; port 0 picks a free one).
    pub address: String,
    /// Bytes of batches retained per topic.
    pub retention_bytes: u64,
    /// Age after which retained batches are dropped.
    pub retention_ms: u64,
    /// A bearer token every Flight call must carry (`authorization: Bearer <token>`); unset,
    /// calls are not authenticated (the default address is loopback). Never logged; better
    /// given as `SLUICE_LIVE__AUTH_TOKEN` than in the file.
    pub auth_token: Option<Secret>,
}

/// Loopback, port 8815: the port Arrow Flight's examples conventionally use.
fn default_address() -> String {
    "127.0.0.1:8815".into()
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            enabled: true,
            address: default_address(),
            retention_bytes: 256 * 1024 * 1024,
            retention_ms: 300_000,
            auth_token: None,
        }
    }
}

impl LiveConfig {
    /// Checks the `[live]` keys (only when it is enabled).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        check_address("live.address", &self.address, "127.0.0.1:8815")?;
        if self.retention_bytes == 0 {
            return Err(invalid("live.retention_bytes", "must be greater than 0"));
        }
        if self.retention_ms == 0 {
            return Err(invalid("live.retention_ms", "must be greater than 0"));
        }
        if self
            .auth_token
            .as_ref()
            .is_some_and(|t| t.expose().trim().is_empty())
        {
            return Err(invalid("live.auth_token", "must not be empty when set"));
        }
        Ok(())
    }
}
