//! Opening DuckDB and attaching the lake: extensions, the S3 secret for an `s3://` data path,
//! the catalog kinds, and errors that name what failed without the credentials.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::duck::{Connection, Database, ErrorKind, literal};
use super::{LAKE_ALIAS, Lake, SinkError, duck, view_prefix};
use crate::config::{CatalogKind, LakeConfig, UrlStyle};
use crate::retry::Backoff;

impl Lake {
    /// Like [`Lake::open`], retrying a lost race to initialise a new catalog or to create
    /// sluice's tables (instances starting together) with `conflicts`.
    pub fn open_with(cfg: &LakeConfig, group: &str, conflicts: Backoff) -> Result<Lake, SinkError> {
        conflicts.run(
            "lake initialization (raced another instance)",
            is_startup_race,
            || Self::open_once(cfg, group, conflicts),
        )
    }

    fn open_once(cfg: &LakeConfig, group: &str, conflicts: Backoff) -> Result<Lake, SinkError> {
        let db = open_database(cfg)?;
        let conn = db.connect().map_err(duck("connect to DuckDB"))?;
        attach(&conn, cfg)?;
        let lake = Lake {
            conn,
            schema: cfg.schema.clone(),
            group: group.to_string(),
            tables: HashMap::new(),
            described: Default::default(),
            evolution: Default::default(),
            unreported: Vec::new(),
            tables_config: Default::default(),
            options_applied: Default::default(),
            row_group_bytes: cfg.row_group_bytes,
            row_sizes: Default::default(),
            conflicts,
            commit_hook: None,
            view_prefix: view_prefix(),
            writes: (cfg.catalog_kind == CatalogKind::Sqlite).then(|| sqlite_writes(&cfg.catalog)),
        };
        lake.ensure_own_tables()?;
        lake.ensure_lease_table()?;
        Ok(lake)
    }
}

/// The write turn shared by every handle of this process on the SQLite catalog at `path` (also
/// handles of separately opened DuckDB instances), see `Lake::write_turn`.
fn sqlite_writes(path: &str) -> Arc<Mutex<()>> {
    static TURNS: Mutex<BTreeMap<PathBuf, Arc<Mutex<()>>>> = Mutex::new(BTreeMap::new());
    let key = std::path::absolute(path).unwrap_or_else(|_| PathBuf::from(path));
    crate::sync::lock(&TURNS).entry(key).or_default().clone()
}

fn open_database(cfg: &LakeConfig) -> Result<Arc<Database>, SinkError> {
    let mut settings: Vec<(&str, String)> = vec![
        // Network install stays available as a fallback for users; sluice's set-up installs
        // the extensions from PyPI wheels into the extension directory.
        ("autoinstall_known_extensions", "true".into()),
        ("autoload_known_extensions", "true".into()),
    ];
    if let Some(dir) = &cfg.extension_directory {
        settings.push(("extension_directory", dir.display().to_string()));
    }
    if let Some(t) = cfg.threads {
        settings.push(("threads", t.to_string()));
    }
    if let Some(m) = &cfg.memory_limit {
        settings.push(("memory_limit", m.clone()));
    }
    let scrub_cfg = cfg.clone();
    let scrubber: super::duck::Scrubber = Box::new(move |text| scrub(text, &scrub_cfg));
    Database::open_in_memory(&settings, Some(scrubber)).map_err(duck("open DuckDB"))
}

/// The `ATTACH` target for the configured catalog.
fn attach_target(cfg: &LakeConfig) -> String {
    match cfg.catalog_kind {
        CatalogKind::Duckdb => format!("ducklake:{}", cfg.catalog),
        CatalogKind::Sqlite => format!("ducklake:sqlite:{}", cfg.catalog),
        CatalogKind::Postgres => format!("ducklake:postgres:{}", cfg.catalog),
    }
}

/// Extra `ATTACH` options for the catalog kind.
///
/// A SQLite catalog is put in write-ahead-log mode (a property of the file, so it persists and
/// stock DuckDB readers get it without asking): in SQLite's default rollback-journal mode a
/// committing writer locks readers out and a reading process can fail the writer's commit once
/// the busy timeout passes. Measured here with DuckDB 1.5.5 (one process committing 200 small
/// DuckLake transactions, two reader processes counting every 200 ms): rollback mode, a reader's
/// `count(*)` took a median 1.0 s (max 2.0 s; SQLite retries a busy lock in whole seconds), an
/// `ATTACH` up to 4.4 s, and the writer's commits slowed 2.4x; WAL mode, the slowest count took
/// 0.18 s. The busy timeout (sqlite_scanner's default is 5 s) covers a reader's checkpoint.
fn catalog_options(kind: CatalogKind) -> &'static str {
    match kind {
        CatalogKind::Sqlite => ", META_JOURNAL_MODE 'WAL', META_BUSY_TIMEOUT 30000",
        CatalogKind::Duckdb | CatalogKind::Postgres => "",
    }
}

/// Replaces the passwords of libpq connection strings (`password=…`, and the `user:…@` of a
/// `postgresql://` URI) with `***`, so a catalog string can be shown.
pub fn redact(text: &str) -> String {
    redact_uri_passwords(&redact_keywords(text))
}

/// `password=…` values.
fn redact_keywords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.to_ascii_lowercase().find("password=") {
        out.push_str(&rest[..i + "password=".len()]);
        out.push_str("***");
        let after = &rest[i + "password=".len()..];
        let end = match after.strip_prefix('\'') {
            // A quoted libpq value runs to the next quote not escaped by a backslash.
            Some(quoted) => {
                let mut escaped = false;
                quoted
                    .char_indices()
                    .find(|&(_, c)| {
                        let close = c == '\'' && !escaped;
                        escaped = c == '\\' && !escaped;
                        close
                    })
                    .map_or(after.len(), |(j, _)| j + 2)
            }
            None => after
                .find(|c: char| c.is_whitespace() || c == '\'' || c == '"' || c == '&')
                .unwrap_or(after.len()),
        };
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// The password of `scheme://user:password@host` URIs.
fn redact_uri_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the first '/', '?', '#', quote or space; its userinfo at the
        // last '@' before that.
        let end = tail
            .find(['/', '?', '#', '"', '\'', ' '])
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority
            .rfind('@')
            .and_then(|at| authority[..at].find(':').map(|colon| (colon, at)))
        {
            Some((colon, at)) => {
                out.push_str(&authority[..=colon]);
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Whether `e` is what losing a race to initialize the lake looks like (another instance
/// created the catalog or sluice's tables at the same moment). DuckDB's kind narrows it where it
/// gives one: a concurrent DuckLake commit (a transaction error), an entry of DuckDB's or
/// DuckLake's catalog that already exists (a catalog error). PostgreSQL's errors reach DuckDB
/// untyped through the postgres scanner (its `duplicate key value` when two instances insert
/// the catalog's first rows), and any error at commit is a transaction error, so DuckDB's
/// wording decides within the kind.
fn is_startup_race(e: &SinkError) -> bool {
    let source = match e {
        SinkError::CommitConflict { .. } => return true,
        SinkError::Duck { source, .. } => source,
        _ => return false,
    };
    let says = |text: &str| source.message.contains(text);
    source.is_conflict()
        || match source.kind {
            ErrorKind::Catalog => says("already exists"),
            ErrorKind::Transaction => {
                says("has been created by another transaction")
                    || says("duplicate key value")
                    || says("already exists")
            }
            ErrorKind::Untyped => says("duplicate key value") || says("already exists"),
            // A PostgreSQL schema created concurrently is a binder error.
            ErrorKind::Other(_) => says("already exists"),
            _ => false,
        }
}

/// Whether the data path is on S3 (or an S3-compatible server).
pub fn is_s3(data_path: &str) -> bool {
    data_path
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("s3://")
}

/// `text` with every credential of `cfg` (S3 keys, a catalog password) replaced by `***`, for
/// error messages and logs.
pub fn scrub(text: &str, cfg: &LakeConfig) -> String {
    let mut out = redact(text);
    let s3 = cfg.s3.resolve(|k| std::env::var(k).ok());
    for secret in [s3.secret_access_key, s3.session_token]
        .into_iter()
        .flatten()
    {
        if !secret.expose().is_empty() {
            out = out.replace(secret.expose(), "***");
        }
    }
    out
}

/// Creates the DuckDB secret httpfs uses for the S3 data path.
fn create_s3_secret(conn: &Connection, cfg: &LakeConfig) -> Result<(), SinkError> {
    conn.execute("LOAD httpfs").map_err(duck(
        "load the DuckDB httpfs extension (run scripts/setup, or allow DuckDB to install it)",
    ))?;
    let s3 = cfg.s3.resolve(|k| std::env::var(k).ok());
    let mut params = vec!["TYPE s3".to_string()];
    let mut add = |key: &str, value: &str| params.push(format!("{key} {}", literal(value)));
    if let Some(v) = &s3.access_key_id {
        add("KEY_ID", v);
    }
    if let Some(v) = &s3.secret_access_key {
        add("SECRET", v.expose());
    }
    if let Some(v) = &s3.session_token {
        add("SESSION_TOKEN", v.expose());
    }
    if let Some(v) = &s3.region {
        add("REGION", v);
    }
    if let Some(v) = &s3.endpoint {
        add("ENDPOINT", v);
    }
    add(
        "URL_STYLE",
        match s3.url_style {
            UrlStyle::Path => "path",
            UrlStyle::Vhost => "vhost",
        },
    );
    params.push(format!("USE_SSL {}", s3.use_ssl));
    let sql = format!("CREATE OR REPLACE SECRET sluice_s3 ({})", params.join(", "));
    conn.execute(&sql).map_err(|e| SinkError::Duck {
        context: format!(
            "create the S3 secret for data path {} (endpoint {}, key id {})",
            cfg.data_path,
            s3.endpoint.as_deref().unwrap_or("AWS"),
            s3.access_key_id.as_deref().unwrap_or("none")
        ),
        source: e.with_message(scrub(&e.message, cfg)),
    })?;
    Ok(())
}

fn attach(conn: &Connection, cfg: &LakeConfig) -> Result<(), SinkError> {
    conn.execute("LOAD ducklake").map_err(duck(
        "load the DuckDB ducklake extension (run scripts/setup, or allow DuckDB to install it)",
    ))?;
    if is_s3(&cfg.data_path) {
        create_s3_secret(conn, cfg)?;
    }
    let sql = format!(
        "ATTACH {} AS {} (DATA_PATH {}{})",
        literal(&attach_target(cfg)),
        LAKE_ALIAS,
        literal(&cfg.data_path),
        catalog_options(cfg.catalog_kind)
    );
    conn.execute(&sql).map_err(|e| SinkError::Duck {
        context: format!(
            "attach the lake (catalog {} {}, data path {})",
            format!("{:?}", cfg.catalog_kind).to_lowercase(),
            redact(&cfg.catalog),
            cfg.data_path
        ),
        source: e.with_message(scrub(&e.message, cfg)),
    })?;
    if cfg.catalog_kind == CatalogKind::Sqlite {
        // sluice's own catalog reads (offsets at assignment, table columns) on the
        // transaction's connection, so each read sees one state of the catalog, not a
        // maintenance step's commit between its queries (see `Lake::default_inlining_row_limit`).
        conn.execute("SET GLOBAL sqlite_disable_multithreaded_scans = true")
            .map_err(duck(
                "read the SQLite catalog on one connection per transaction",
            ))?;
    }
    Ok(())
}
