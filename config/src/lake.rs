//! `[lake]`: the DuckLake catalog, the data path and S3 access.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};

/// The default catalog before the SQLite default (a DuckDB file).
pub const OLD_DEFAULT_CATALOG: &str = "sluice.ducklake";

/// Kind of the DuckLake catalog database (closed set).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CatalogKind {
    /// A DuckDB database file. Single process: while sluice has it attached no other process
    /// can open it, so readers must wait until sluice stops.
    Duckdb,
    /// A SQLite database file (the embedded default): stock DuckDB processes can attach it and
    /// query while sluice ingests (sluice puts it in WAL mode).
    Sqlite,
    /// A PostgreSQL database (`catalog` is a libpq connection string).
    Postgres,
}

/// DuckLake settings.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// Catalog database kind (`sqlite`: readable while sluice runs; `duckdb`: a single process;
    /// `postgres`: for several instances).
    pub catalog_kind: CatalogKind,
    /// Catalog location: a file path (duckdb, sqlite) or a libpq connection string (postgres,
    /// e.g. `"host=… dbname=… user=…"`; its password better from `PGPASSWORD`).
    pub catalog: String,
    /// Where Parquet files go: a local directory or an `s3://bucket/prefix/` URL (see
    /// `[lake.s3]`).
    pub data_path: String,
    /// DuckDB schema inside the lake that holds the tables.
    pub schema: String,
    /// DuckDB extension directory; unset means DuckDB's default (`~/.duckdb/extensions`).
    #[schemars(example = &"/opt/sluice/extensions")]
    pub extension_directory: Option<PathBuf>,
    /// DuckDB threads used for Parquet writing; unset means DuckDB's default (all cores), or
    /// the share of `memory.limit_bytes`.
    #[schemars(example = 2)]
    pub threads: Option<u32>,
    /// DuckDB `memory_limit`, e.g. `"2GB"`; unset means DuckDB's default (80% of RAM), or the
    /// share of `memory.limit_bytes`.
    #[schemars(example = &"2GB")]
    pub memory_limit: Option<String>,
    /// Bytes a Parquet row group should hold, derived from `memory.limit_bytes` (not a key of
    /// its own): a table without a configured `parquet_row_group_size` gets the rows that make
    /// this at its first flush's bytes per row.
    #[serde(skip)]
    pub row_group_bytes: Option<u64>,
    /// S3 or MinIO, for an `s3://` data path (through DuckDB's httpfs). Unset values fall back
    /// to `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` (or
    /// `AWS_DEFAULT_REGION`) and `AWS_ENDPOINT_URL`.
    pub s3: S3Config,
}

/// A credential: deserialized and serialized as its plain value, but never printed by `Debug`
/// (so it cannot reach a log line through a `{:?}` of the configuration).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The credential itself, for the places that hand it on (DuckDB, the endpoints' checks).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether a presented credential equals an expected one, in time that does not depend on
    /// where they differ (for the endpoints' `Authorization` headers).
    pub fn same_bytes(presented: &[u8], expected: &[u8]) -> bool {
        presented.len() == expected.len()
            && presented
                .iter()
                .zip(expected)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

/// How bucket names appear in S3 URLs.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UrlStyle {
    /// `https://endpoint/bucket/key` (MinIO and most S3-compatible servers).
    Path,
    /// `https://bucket.endpoint/key` (AWS S3).
    Vhost,
}

/// S3 settings, handed to DuckDB's httpfs as a secret. Unset values fall back to the standard
/// AWS environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
/// `AWS_REGION` or `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// `host:port` of an S3-compatible server, or a URL (`http://` turns SSL off); unset: AWS.
    #[schemars(example = &"http://minio:9000")]
    pub endpoint: Option<String>,
    /// Region, e.g. `us-east-1`.
    #[schemars(example = &"us-east-1")]
    pub region: Option<String>,
    /// How bucket names appear in URLs; unset: path style with a custom endpoint, vhost for AWS.
    #[schemars(example = UrlStyle::Path)]
    pub url_style: Option<UrlStyle>,
    /// HTTPS to the endpoint; unset: from the endpoint URL's scheme, else true.
    #[schemars(example = true)]
    pub use_ssl: Option<bool>,
    /// Access key id.
    #[schemars(example = &"sluice")]
    pub access_key_id: Option<String>,
    /// Secret access key (never logged); better from the environment:
    /// `SLUICE_LAKE__S3__SECRET_ACCESS_KEY`.
    #[schemars(example = &"…")]
    pub secret_access_key: Option<Secret>,
    /// Session token of temporary credentials (never logged).
    #[schemars(example = &"…")]
    pub session_token: Option<Secret>,
}

/// S3 settings with the environment's fallbacks applied: what DuckDB gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Resolved {
    /// `host:port`, without scheme.
    pub endpoint: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// `path` or `vhost`.
    pub url_style: UrlStyle,
    /// HTTPS.
    pub use_ssl: bool,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<Secret>,
    /// Session token.
    pub session_token: Option<Secret>,
}

impl S3Config {
    /// Applies the AWS environment fallbacks (`env` looks a variable up, e.g. `std::env::var`).
    pub fn resolve(&self, env: impl Fn(&str) -> Option<String>) -> S3Resolved {
        let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        let raw_endpoint =
            nonempty(self.endpoint.clone()).or_else(|| nonempty(env("AWS_ENDPOINT_URL")));
        let (endpoint, scheme_ssl) = match raw_endpoint {
            None => (None, None),
            Some(e) => {
                let e = e.trim().trim_end_matches('/').to_string();
                if let Some(rest) = e.strip_prefix("http://") {
                    (Some(rest.to_string()), Some(false))
                } else if let Some(rest) = e.strip_prefix("https://") {
                    (Some(rest.to_string()), Some(true))
                } else {
                    (Some(e), None)
                }
            }
        };
        let url_style = self.url_style.unwrap_or(if endpoint.is_some() {
            UrlStyle::Path
        } else {
            UrlStyle::Vhost
        });
        S3Resolved {
            use_ssl: self.use_ssl.or(scheme_ssl).unwrap_or(true),
            url_style,
            endpoint,
            region: nonempty(self.region.clone())
                .or_else(|| nonempty(env("AWS_REGION")))
                .or_else(|| nonempty(env("AWS_DEFAULT_REGION"))),
            access_key_id: nonempty(self.access_key_id.clone())
                .or_else(|| nonempty(env("AWS_ACCESS_KEY_ID"))),
            secret_access_key: self
                .secret_access_key
                .clone()
                .filter(|s| !s.expose().is_empty())
                .or_else(|| nonempty(env("AWS_SECRET_ACCESS_KEY")).map(Secret)),
            session_token: self
                .session_token
                .clone()
                .filter(|s| !s.expose().is_empty())
                .or_else(|| nonempty(env("AWS_SESSION_TOKEN")).map(Secret)),
        }
    }
}

impl Default for LakeConfig {
    fn default() -> Self {
        LakeConfig {
            catalog_kind: CatalogKind::Sqlite,
            catalog: "sluice.sqlite".into(),
            data_path: "sluice_data/".into(),
            schema: "main".into(),
            extension_directory: None,
            threads: None,
            memory_limit: None,
            row_group_bytes: None,
            s3: S3Config::default(),
        }
    }
}

impl LakeConfig {
    /// Checks the `[lake]` keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, v) in [
            ("lake.catalog", &self.catalog),
            ("lake.data_path", &self.data_path),
            ("lake.schema", &self.schema),
        ] {
            if v.trim().is_empty() {
                return Err(invalid(key, "must not be empty"));
            }
        }
        if self.threads == Some(0) {
            return Err(invalid("lake.threads", "must be at least 1"));
        }
        // The default catalog was a DuckDB file, `sluice.ducklake`: a deployment that relied on
        // it would start an empty SQLite lake beside it and consume its topics again.
        let default = LakeConfig::default();
        if self.catalog_kind == default.catalog_kind
            && self.catalog == default.catalog
            && !std::path::Path::new(&self.catalog).exists()
            && std::path::Path::new(OLD_DEFAULT_CATALOG).exists()
        {
            return Err(invalid(
                "lake.catalog",
                format!(
                    "is the default {:?}, which does not exist, but {OLD_DEFAULT_CATALOG:?} (the DuckDB-file catalog that was the default before SQLite) does: set lake.catalog_kind = \"duckdb\" and lake.catalog = {OLD_DEFAULT_CATALOG:?} to keep that lake, or move it away to start a new one",
                    self.catalog
                ),
            ));
        }
        Ok(())
    }
}
