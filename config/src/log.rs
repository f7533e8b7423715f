//! `[log]`: the log format and filter.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};

/// Log format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging settings.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Log line format.
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `sluice=debug`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// Why `filter` must not reach tracing-subscriber's filter parser, if it must not: that parser
/// (0.3.23) slices a directive at the indices of its trimmed text, so a directive starting with
/// a non-ASCII space (e.g. U+00A0) makes it panic instead of failing (found by the `config`
/// fuzz target).
pub fn filter_problem(filter: &str) -> Option<String> {
    let c = filter
        .chars()
        .find(|c| c.is_whitespace() && !c.is_ascii())?;
    Some(format!(
        "contains the non-ASCII space U+{:04X}; a filter is written in ASCII, e.g. info or sluice=debug",
        c as u32
    ))
}

/// The filter `filter` describes, or why it is none (the text completes "`log.level` …").
/// tracing-subscriber's filter parser (0.3.23) walks a directive's trimmed text but slices the
/// untrimmed one at those indices, so whitespace before a directive followed by a multi-byte
/// character made it panic (found by the `config` fuzz target, with tabs and U+00E0); each
/// comma-separated directive is trimmed here first, so the indices agree.
pub fn env_filter(filter: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    if let Some(why) = filter_problem(filter) {
        return Err(why);
    }
    let directives: Vec<&str> = filter.split(',').map(str::trim).collect();
    tracing_subscriber::EnvFilter::try_new(directives.join(","))
        .map_err(|e| format!("is not a valid filter: {e}"))
}

impl LogConfig {
    /// Checks the `[log]` keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        env_filter(&self.level)
            .map(drop)
            .map_err(|why| invalid("log.level", why))
    }
}
