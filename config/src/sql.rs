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
    /// Also serve the real-time views to stock DuckDB clients over DuckDB's Quack protocol
    /// (experimental upstream) on this `host:port`: `FROM quack_query('quack:HOST:PORT', 'SELECT
    /// … FROM events_live', token => '…')`. Needs `live.auth_token` (Quack's token, at least 4
    /// characters) and the `quack` extension; read-only statements only. Unset: off.
    #[schemars(example = &"127.0.0.1:8817")]
    pub quack_address: Option<String>,
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
            quack_address: None,
        }
    }
}

impl SqlConfig {
    /// Checks the `[sql]` keys (only when it is enabled); `live_enabled` is `live.enabled`,
    /// `token` `live.auth_token`.
    pub fn validate(&self, live_enabled: bool, token: Option<&str>) -> Result<(), ConfigError> {
        if let Some(q) = &self.quack_address {
            if !live_enabled {
                return Err(invalid(
                    "sql.quack_address",
                    "needs live.enabled = true: the real-time views read the live ring",
                ));
            }
            check_address("sql.quack_address", q, "127.0.0.1:8817")?;
            if token.is_none_or(|t| t.chars().count() < 4) {
                return Err(invalid(
                    "sql.quack_address",
                    "needs live.auth_token, of at least 4 characters: Quack clients must present a token",
                ));
            }
        }
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
