//! The real-time views over DuckDB's Quack protocol (`sql.quack_address`): sluice's DuckDB
//! loads the `quack` extension and serves itself with `quack_serve`, so a stock DuckDB client
//! runs `FROM quack_query('quack:HOST:PORT', 'SELECT … FROM t_live', token => '…')` against the
//! same views as Flight SQL. Quack runs a client's statements on its own connections, so the
//! views are kept current by a refresh every second instead of before each query, and only
//! read-only statements are authorized (`quack_authorization_function`: DuckDB's own parser
//! must serialize the text as SELECT statements).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::views::Views;
use crate::observe::server::Servers;
use crate::sink::duck::{Database, literal};

/// The authorization macro: a client's text is run only if it is one or more SELECT
/// statements (`json_serialize_sql` serializes nothing else): Flight SQL's rule
/// ([`super::flight::READ_ONLY`]) as a macro Quack can call.
const AUTHORIZE: &str = "CREATE OR REPLACE MACRO memory.main.sluice_quack_read_only(sid, query) AS \
     (coalesce(json_extract(json_serialize_sql(query::VARCHAR), '$.error')::BOOLEAN = false, false))";

/// How often the views are refreshed for Quack clients.
const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// Serves `db` over Quack on `address` with `token`; refreshes `views` on `servers` every
/// second. Returns the URI clients use.
pub fn serve(
    address: &str,
    token: &str,
    db: &Arc<Database>,
    views: Arc<Views>,
    servers: &Servers,
) -> std::io::Result<String> {
    let addr: SocketAddr = address.parse().map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("sql.quack_address: {e}"),
        )
    })?;
    let uri = format!("quack:{addr}");
    let conn = db
        .connect()
        .map_err(|e| std::io::Error::other(format!("connecting to DuckDB: {e}")))?;
    // DuckDB's messages may quote the statement, hence the token: it is cut out of them.
    let hide = |e: crate::sink::duck::DuckError| e.message.replace(token, "<live.auth_token>");
    conn.execute("LOAD quack").map_err(|e| {
        std::io::Error::other(format!(
            "loading DuckDB's quack extension (sql.quack_address; scripts/setup fetches it into the extension directory): {}",
            hide(e)
        ))
    })?;
    conn.execute(AUTHORIZE)
        .and_then(|_| {
            conn.execute("SET GLOBAL quack_authorization_function = 'sluice_quack_read_only'")
        })
        .map_err(|e| std::io::Error::other(format!("Quack authorization: {}", hide(e))))?;
    conn.execute(&format!(
        "CALL quack_serve({}, token => {})",
        literal(&uri),
        literal(token)
    ))
    .map_err(|e| std::io::Error::other(format!("serving Quack on {uri}: {}", hide(e))))?;
    let db = db.clone();
    servers.every(REFRESH_EVERY, move || {
        let refreshed = db
            .crate_connection()
            .map_err(|e| e.to_string())
            .and_then(|c| views.refresh(&c).map_err(|e| e.to_string()));
        if let Err(e) = refreshed {
            tracing::warn!(error = %e, "refreshing the real-time views for Quack failed; retrying in 1 s");
        }
    });
    Ok(uri)
}
