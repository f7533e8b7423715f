//! `[sql]`: the Flight SQL endpoint over the lake and the real-time views.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigError, check_address, invalid};

/// SQL over the lake's tables and their real-time views (`<table>_live`: the lake's rows and the
/// live ring's batches not yet committed), served by Arrow Flight SQL (e.g. the ADBC Flight SQL
/// driver: `adbc_driver_flightsql.dbapi.connect("grpc://127.0.0.1:8816")`). Off by default.
/// Calls are authenticated and encrypted as `[live]` says (`live.auth_token`, `live.tls_*`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SqlConfig {
    /// Serve Flight SQL at all (needs `live.enabled`: the real-time views read the live ring).
    pub enabled: bool,
    /// Listen address (`host:port`; port 0 picks a free one).
    pub address: String,
    /// Queries run at once; more wait their turn. Each runs on its own DuckDB connection in
    /// sluice's DuckDB, beside ingestion.
    pub max_concurrent_queries: u32,
    /// The largest result a query may return, in bytes of Arrow data (a result is held from
    /// the query until the client fetches it, at most 60 s).
    pub max_result_bytes: u64,
}

/// Loopback, the port after the live Flight endpoint's.
fn default_address() -> String {
    "127.0.0.1:8816".into()
}

impl Default for SqlConfig {
    fn default() -> Self {
        SqlConfig {
            enabled: false,
            address: default_address(),
            max_concurrent_queries: 2,
            max_result_bytes: 256 * 1024 * 1024,
        }
    }
}

impl SqlConfig {
    /// Checks the `[sql]` keys (only when it is enabled); `live_enabled` is `live.enabled`.
    pub fn validate(&self, live_enabled: bool) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        if !live_enabled {
            return Err(invalid(
                "sql.enabled",
                "needs live.enabled = true: the real-time views read the live ring",
            ));
        }
        check_address("sql.address", &self.address, "127.0.0.1:8816")?;
        if self.max_concurrent_queries == 0 {
            return Err(invalid(
                "sql.max_concurrent_queries",
                "must be greater than 0",
            ));
        }
        if self.max_result_bytes == 0 {
            return Err(invalid("sql.max_result_bytes", "must be greater than 0"));
        }
        Ok(())
    }
}
