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
    /// A `tracing` filter, e.g. `info` or `sluice=debug`. A field value in it
    /// (`[span{field=value}]`) matches literally, not as a regular expression.
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
///
/// Field values are matched literally, not as regular expressions (tracing-subscriber's
/// `with_regex(false)`, which it recommends for filters from untrusted input): it compiles a
/// value's regular expression into a DFA, and a 304-byte `log.level` with a field value in it
/// took 10.5 CPU s to be rejected in a release build (found by the `config` fuzz target).
pub fn env_filter(filter: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    if let Some(why) = filter_problem(filter) {
        return Err(why);
    }
    let directives: Vec<&str> = filter.split(',').map(str::trim).collect();
    tracing_subscriber::EnvFilter::builder()
        .with_regex(false)
        .parse(directives.join(","))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::load_in_jail;

    /// The `config` fuzz target's input that took 36 CPU s under AddressSanitizer (10.5 CPU s in
    /// a release build) while its field value compiled as a regular expression.
    const SLOW: &str = include_str!("../testdata/log_level_regex_field.txt");

    #[test]
    fn a_field_value_is_matched_literally_not_compiled_as_a_regular_expression() {
        assert_eq!(SLOW.len(), 304);
        let err = env_filter(SLOW).unwrap_err();
        assert_eq!(err, "is not a valid filter: invalid filter directive");
        let filter = env_filter("sluice[flush{table=ev.*}]=debug").unwrap();
        assert_eq!(filter.to_string(), "sluice[flush{table=ev.*}]=debug");
    }

    /// The `config` fuzz target's crash (fuzz/artifacts/config/crash-829246f7…, 3,063,444
    /// executions in): a `log.level` whose directive starts with a non-ASCII space made
    /// tracing-subscriber's filter parser panic (it slices the untrimmed text at the trimmed text's
    /// indices). It is an error naming the key and the character now.
    #[test]
    fn a_log_filter_with_a_non_ascii_space_is_an_error_not_a_panic() {
        let crash = "[kafka]\ntopics = [\"a\"]\n[log]\nlevel = \"DDDDDDckdbg,ebQQQebQQQQQQQQQQDDfgfoi,DDDDU@kdbg,\u{a0}\u{a0}e[bQQQQDDfgfoi,DDDQQQQQQQQQQQQQQQ2QQQQuc@kdbg,ebi,D,DDDD@kdbg,ebQQQQQQQQQQDDfgfoi,DDDDD@kdbg,\u{a0}\u{a0}ebQQQQDDfgfoi,DDDDD@kdbg,ebQQQQQQQQDDfgfoi,DQQQQQQbg,ebQQQQQbeQQQQQQQQQQQQQQQQ2QQQiffo\"\n";
        let err = load_in_jail(crash).unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration error: `log.level` contains the non-ASCII space U+00A0; a filter is written in ASCII, e.g. info or sluice=debug"
        );
        let short = "[kafka]\ntopics = [\"a\"]\n[log]\nlevel = \"info,\u{2003}x[y\"\n";
        assert_eq!(
            load_in_jail(short).unwrap_err().to_string(),
            "configuration error: `log.level` contains the non-ASCII space U+2003; a filter is written in ASCII, e.g. info or sluice=debug"
        );
    }

    #[test]
    fn a_log_filter_with_whitespace_before_a_multibyte_character_is_an_error_not_a_panic() {
        // Found by the config fuzz target after 1,350,501 executions: tabs, then U+00E0.
        let crash = "[kafka]\ntopics = [\"a\"]\n[log]\nlevel = \",\t\t\t[\t\t\t\t\t\t\t\t\t\u{e0}w={ka\t\t\t\t\"\n";
        assert_eq!(
            load_in_jail(crash).unwrap_err().to_string(),
            "configuration error: `log.level` is not a valid filter: invalid filter directive"
        );
        // Whitespace around a directive is no part of it.
        let spaced =
            "[kafka]\ntopics = [\"a\"]\n[log]\nlevel = \" info ,\t\u{e9}t\u{e9}=debug \"\n";
        load_in_jail(spaced).unwrap();
    }
}
