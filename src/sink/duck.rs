//! The DuckDB C API boundary: a database, connections on it, query results, and the Arrow
//! stream scan. All of sluice's `unsafe` towards DuckDB lives here.

use std::ffi::{CStr, CString, c_char};
use std::sync::Arc;

use libduckdb_sys as ffi;

use super::ffi_stream::BatchStream;

/// The kind of a DuckDB error: DuckDB's exception type, as the C API's
/// `duckdb_result_error_type` reports it (the kinds sluice tells apart; the rest by number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A transaction failed: a conflict with a concurrent one, or anything that failed while
    /// committing (DuckDB reports every commit-time failure but fatal and internal ones as a
    /// transaction error, `transaction_context.cpp` in DuckDB 1.5.5).
    Transaction,
    /// A catalog entry is missing or already exists.
    Catalog,
    /// A constraint (e.g. a primary key) was violated.
    Constraint,
    /// Reading or writing a file or the network failed.
    Io,
    /// An HTTP request failed (httpfs, S3).
    Http,
    /// A connection failed.
    Connection,
    /// The input was rejected.
    InvalidInput,
    /// No type: errors raised by sluice itself, and errors extensions raise untyped (e.g.
    /// PostgreSQL's, through the postgres scanner).
    Untyped,
    /// Another of DuckDB's exception types (its `duckdb_error_type` number).
    Other(u32),
}

impl ErrorKind {
    fn from_c(t: ffi::duckdb_error_type) -> ErrorKind {
        match t {
            ffi::duckdb_error_type_DUCKDB_ERROR_TRANSACTION => ErrorKind::Transaction,
            ffi::duckdb_error_type_DUCKDB_ERROR_CATALOG => ErrorKind::Catalog,
            ffi::duckdb_error_type_DUCKDB_ERROR_CONSTRAINT => ErrorKind::Constraint,
            ffi::duckdb_error_type_DUCKDB_ERROR_IO => ErrorKind::Io,
            ffi::duckdb_error_type_DUCKDB_ERROR_HTTP => ErrorKind::Http,
            ffi::duckdb_error_type_DUCKDB_ERROR_CONNECTION => ErrorKind::Connection,
            ffi::duckdb_error_type_DUCKDB_ERROR_INVALID_INPUT => ErrorKind::InvalidInput,
            ffi::duckdb_error_type_DUCKDB_ERROR_INVALID => ErrorKind::Untyped,
            other => ErrorKind::Other(other),
        }
    }
}

/// An error reported by DuckDB: its kind and its own message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct DuckError {
    /// What kind of error DuckDB says it is.
    pub kind: ErrorKind,
    /// DuckDB's own message.
    pub message: String,
}

impl DuckError {
    /// An error of sluice's own at the DuckDB boundary (no DuckDB kind).
    pub fn new(message: impl Into<String>) -> Self {
        DuckError {
            kind: ErrorKind::Untyped,
            message: message.into(),
        }
    }

    /// The same error with its message replaced (e.g. scrubbed of credentials).
    pub fn with_message(&self, message: String) -> Self {
        DuckError {
            kind: self.kind,
            message,
        }
    }

    /// Whether DuckDB (or DuckLake) rejected a transaction because a concurrent one changed
    /// the same data: retrying the whole transaction may succeed. DuckDB reports these as
    /// transaction errors, but so is every other failure at commit (an S3 outage included), so
    /// the kind narrows it and DuckDB's conflict wording decides.
    ///
    /// A SQLite catalog's `database is locked` at commit is one too: another connection wrote
    /// the catalog since this transaction first read it (duckdb/ducklake #1309). Within one
    /// process sluice's handles take turns (`Lake::write_turn`); this covers another process
    /// writing the same SQLite catalog.
    ///
    /// PostgreSQL's `could not serialize access due to concurrent update` is one too, whatever
    /// kind it reaches DuckDB with (untyped, through the postgres scanner): DuckLake's metadata
    /// transactions run at REPEATABLE READ, and two of them updated one catalog row (two
    /// instances setting a table option at once, measured).
    pub fn is_conflict(&self) -> bool {
        (self.kind == ErrorKind::Transaction
            && (self.message.contains("Transaction conflict")
                || self.message.contains("write-write conflict")
                || self.message.contains("database is locked")))
            || self
                .message
                .contains("could not serialize access due to concurrent update")
    }
}

/// Rewrites the text of every error a database's connections report before it leaves this
/// module (sluice's replaces credentials with `***`: a catalog password, S3 keys).
pub type Scrubber = Box<dyn Fn(&str) -> String + Send + Sync>;

/// An open DuckDB database (in memory: sluice keeps everything that matters in the lake).
pub struct Database {
    raw: ffi::duckdb_database,
    scrubber: Option<Scrubber>,
}

// SAFETY: a duckdb_database is an instance handle that DuckDB allows to be used from any thread;
// all state behind it is internally synchronized.
unsafe impl Send for Database {}
// SAFETY: see above; the handle itself is never mutated after open.
unsafe impl Sync for Database {}

impl Database {
    /// Opens an in-memory database with the given settings (`name`, `value` pairs); `scrubber`
    /// rewrites the message of every error its connections report (DuckDB's messages can quote
    /// a connection string, e.g. postgres_scanner's `Unable to connect to Postgres at "…"`).
    pub fn open_in_memory(
        settings: &[(&str, String)],
        scrubber: Option<Scrubber>,
    ) -> Result<Arc<Database>, DuckError> {
        let mut config: ffi::duckdb_config = std::ptr::null_mut();
        // SAFETY: out-pointer to a local; DuckDB allocates the config.
        if unsafe { ffi::duckdb_create_config(&mut config) } != ffi::DuckDBSuccess {
            return Err(DuckError::new("could not create a DuckDB config"));
        }
        struct ConfigGuard(ffi::duckdb_config);
        impl Drop for ConfigGuard {
            fn drop(&mut self) {
                // SAFETY: the config was created by duckdb_create_config and is destroyed once.
                unsafe { ffi::duckdb_destroy_config(&mut self.0) };
            }
        }
        let guard = ConfigGuard(config);
        for (name, value) in settings {
            let n = cstring(name)?;
            let v = cstring(value)?;
            // SAFETY: valid config handle and NUL-terminated strings that outlive the call.
            if unsafe { ffi::duckdb_set_config(guard.0, n.as_ptr(), v.as_ptr()) }
                != ffi::DuckDBSuccess
            {
                return Err(DuckError::new(format!(
                    "DuckDB rejected setting {name} = {value:?}"
                )));
            }
        }
        let mut raw: ffi::duckdb_database = std::ptr::null_mut();
        let mut err: *mut c_char = std::ptr::null_mut();
        let path = cstring(":memory:")?;
        // SAFETY: valid path, out-pointers to locals, and a live config.
        let state = unsafe { ffi::duckdb_open_ext(path.as_ptr(), &mut raw, guard.0, &mut err) };
        if state != ffi::DuckDBSuccess {
            let message = if err.is_null() {
                "could not open DuckDB".to_string()
            } else {
                // SAFETY: DuckDB returns a NUL-terminated, duckdb_malloc'ed message.
                let m = unsafe { CStr::from_ptr(err) }
                    .to_string_lossy()
                    .into_owned();
                // SAFETY: the message is freed once with DuckDB's allocator.
                unsafe { ffi::duckdb_free(err.cast()) };
                m
            };
            return Err(DuckError::new(message));
        }
        Ok(Arc::new(Database { raw, scrubber }))
    }

    /// Opens a new connection; it keeps the database alive.
    pub fn connect(self: &Arc<Self>) -> Result<Connection, DuckError> {
        let mut raw: ffi::duckdb_connection = std::ptr::null_mut();
        // SAFETY: the database is open for as long as `self` lives; out-pointer to a local.
        if unsafe { ffi::duckdb_connect(self.raw, &mut raw) } != ffi::DuckDBSuccess {
            return Err(DuckError::new("could not connect to DuckDB"));
        }
        Ok(Connection {
            raw,
            db: Arc::clone(self),
        })
    }

    /// A connection of the `duckdb` crate on this database, for convenient read-side queries.
    pub fn crate_connection(self: &Arc<Self>) -> Result<duckdb::Connection, DuckError> {
        // SAFETY: the raw handle is a live database; the duckdb crate does not close it
        // (open_from_raw does not take ownership), and callers keep `self` alive meanwhile.
        unsafe { duckdb::Connection::open_from_raw(self.raw) }
            .map_err(|e| DuckError::new(e.to_string()))
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // SAFETY: opened by duckdb_open_ext, closed once; connections hold an Arc to us.
        unsafe { ffi::duckdb_close(&mut self.raw) };
    }
}

/// One DuckDB connection (its own transaction state).
pub struct Connection {
    raw: ffi::duckdb_connection,
    db: Arc<Database>,
}

// SAFETY: a DuckDB connection may move between threads; sluice never uses one concurrently
// (it is owned by one stage, `&mut`/Mutex-guarded where shared).
unsafe impl Send for Connection {}

impl Connection {
    /// The database this connection belongs to.
    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    /// Runs one or more SQL statements; returns the result of the last one.
    pub fn query(&self, sql: &str) -> Result<QueryResult, DuckError> {
        let q = cstring(sql)?;
        // SAFETY: zeroed duckdb_result is the documented initial state for an out-parameter.
        let mut result: ffi::duckdb_result = unsafe { std::mem::zeroed() };
        // SAFETY: live connection, NUL-terminated query, out-pointer to a local.
        let state = unsafe { ffi::duckdb_query(self.raw, q.as_ptr(), &mut result) };
        let result = QueryResult { raw: result };
        if state != ffi::DuckDBSuccess {
            let mut r = result;
            // SAFETY: the result holds the error of the failed query.
            let kind = ErrorKind::from_c(unsafe { ffi::duckdb_result_error_type(&mut r.raw) });
            // SAFETY: as above.
            let msg = unsafe { ffi::duckdb_result_error(&mut r.raw) };
            let message = if msg.is_null() {
                "unknown DuckDB error".to_string()
            } else {
                // SAFETY: NUL-terminated string owned by the result, copied before it is destroyed.
                unsafe { CStr::from_ptr(msg) }
                    .to_string_lossy()
                    .into_owned()
            };
            let message = match &self.db.scrubber {
                Some(scrub) => scrub(&message),
                None => message,
            };
            return Err(DuckError { kind, message });
        }
        Ok(result)
    }

    /// Runs SQL and discards the result.
    pub fn execute(&self, sql: &str) -> Result<u64, DuckError> {
        Ok(self.query(sql)?.rows_changed())
    }

    /// Makes the batches of `stream` scannable as the view `name` (replacing any view of that
    /// name) through DuckDB's Arrow scan. The view can be scanned once; the stream must outlive
    /// every query that scans it, and the view should be dropped before the stream.
    pub fn register_arrow_view(
        &self,
        name: &str,
        stream: &mut BatchStream,
    ) -> Result<(), DuckError> {
        let n = cstring(name)?;
        // SAFETY: live connection; the stream is a valid ArrowArrayStream that the caller keeps
        // alive while the view is scanned. DuckDB copies the struct and replaces the copy's
        // release with a no-op, so ownership stays with `stream`.
        let state =
            unsafe { ffi::duckdb_arrow_scan(self.raw, n.as_ptr(), stream.as_duckdb_stream()) };
        if state != ffi::DuckDBSuccess {
            return Err(DuckError::new(format!(
                "DuckDB could not register the Arrow stream as view {name}"
            )));
        }
        Ok(())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // SAFETY: opened by duckdb_connect, disconnected once; the database outlives it (Arc).
        unsafe { ffi::duckdb_disconnect(&mut self.raw) };
    }
}

/// A materialized query result.
pub struct QueryResult {
    raw: ffi::duckdb_result,
}

impl QueryResult {
    /// Rows inserted, updated or deleted by the statement.
    pub fn rows_changed(&mut self) -> u64 {
        // SAFETY: a result returned by duckdb_query.
        unsafe { ffi::duckdb_rows_changed(&mut self.raw) }
    }

    /// Number of rows.
    pub fn row_count(&mut self) -> u64 {
        // SAFETY: a result returned by duckdb_query.
        unsafe { ffi::duckdb_row_count(&mut self.raw) }
    }

    /// The value at (`col`, `row`) as text; `None` for NULL.
    pub fn text(&mut self, col: u64, row: u64) -> Option<String> {
        // SAFETY: a result returned by duckdb_query; out-of-range reads return NULL/false.
        if unsafe { ffi::duckdb_value_is_null(&mut self.raw, col, row) } {
            return None;
        }
        // SAFETY: as above; DuckDB returns a duckdb_malloc'ed string (or NULL).
        let p = unsafe { ffi::duckdb_value_varchar(&mut self.raw, col, row) };
        if p.is_null() {
            return None;
        }
        // SAFETY: NUL-terminated string from DuckDB, copied and then freed once.
        let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
        // SAFETY: freed with DuckDB's allocator, once.
        unsafe { ffi::duckdb_free(p.cast()) };
        Some(s)
    }

    /// The value at (`col`, `row`) as an i64; `None` for NULL.
    pub fn i64(&mut self, col: u64, row: u64) -> Option<i64> {
        // SAFETY: a result returned by duckdb_query.
        if unsafe { ffi::duckdb_value_is_null(&mut self.raw, col, row) } {
            return None;
        }
        // SAFETY: as above.
        Some(unsafe { ffi::duckdb_value_int64(&mut self.raw, col, row) })
    }

    /// All rows as text values.
    pub fn rows(&mut self) -> Vec<Vec<Option<String>>> {
        // SAFETY: a result returned by duckdb_query.
        let cols = unsafe { ffi::duckdb_column_count(&mut self.raw) };
        let n = self.row_count();
        (0..n)
            .map(|r| (0..cols).map(|c| self.text(c, r)).collect())
            .collect()
    }
}

impl Drop for QueryResult {
    fn drop(&mut self) {
        // SAFETY: the result came from duckdb_query (success or error) and is destroyed once.
        unsafe { ffi::duckdb_destroy_result(&mut self.raw) };
    }
}

fn cstring(s: &str) -> Result<CString, DuckError> {
    CString::new(s).map_err(|_| DuckError::new(format!("text contains a NUL byte: {s:?}")))
}

/// `name` as a quoted SQL identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `value` as a quoted SQL string literal.
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}
