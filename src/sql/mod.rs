//! `sql`: SQL over the lake and the real-time views, served by Arrow Flight SQL (`[sql]`).
//! [`ring_scan`] is the DuckDB table function that reads the live ring's uncommitted batches,
//! [`views`] defines each table's `<table>_live` view with it, [`flight`] serves queries over
//! Flight SQL and [`quack`] over DuckDB's Quack protocol.

pub mod flight;
pub mod quack;
pub mod ring_scan;
pub mod views;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::Config;
use crate::live::ring::Ring;
use crate::observe::server::Servers;
use crate::sink::LAKE_ALIAS;
use crate::sink::duck::Database;

/// The Flight SQL endpoint, serving.
pub struct SqlServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Whether it serves TLS.
    pub tls: bool,
}

impl SqlServer {
    /// The URL clients connect to: `grpc+tls://addr` over TLS, else `grpc://addr`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "grpc+tls" } else { "grpc" };
        format!("{scheme}://{}", self.addr)
    }
}

/// Registers `sluice_ring` on `db` and creates the real-time views of what the lake and `ring`
/// hold now; returns what keeps them current.
pub fn install(
    cfg: &Config,
    db: &Arc<Database>,
    ring: Arc<Ring>,
) -> std::io::Result<Arc<views::Views>> {
    let io = |what: &str, e: &dyn std::fmt::Display| std::io::Error::other(format!("{what}: {e}"));
    let conn = db
        .crate_connection()
        .map_err(|e| io("connecting to DuckDB", &e))?;
    conn.register_table_function_with_extra_info::<ring_scan::RingScan, _>(
        ring_scan::FUNCTION,
        &ring_scan::RingHandle(ring.clone()),
    )
    .map_err(|e| io("registering sluice_ring", &e))?;
    let views = Arc::new(views::Views::new(
        ring,
        cfg.tables.clone(),
        &cfg.kafka.group_id,
        &cfg.lake.schema,
    ));
    views
        .refresh(&conn)
        .map_err(|e| io("creating the real-time views", &e))?;
    Ok(views)
}

/// Serves Flight SQL on `servers` as `cfg.sql` says, over `db` (which has `views`), with the
/// authentication of `cfg.live`.
pub fn serve(
    cfg: &Config,
    servers: &Servers,
    db: Arc<Database>,
    views: Arc<views::Views>,
) -> std::io::Result<SqlServer> {
    let addr: SocketAddr = cfg.sql.address.parse().map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("sql.address: {e}"),
        )
    })?;
    let access = crate::live::access(&cfg.live, "Flight SQL", addr)?;
    let tls = access.tls.is_some();
    let search_path = format!("memory.main,{LAKE_ALIAS}.{}", cfg.lake.schema);
    let service = flight::SqlFlight::new(
        db,
        views,
        search_path,
        cfg.sql.max_concurrent_queries,
        cfg.sql.max_result_bytes,
    );
    let addr =
        crate::live::flight::serve_with(servers, "flight-sql", addr, access, move |_| service)?;
    Ok(SqlServer { addr, tls })
}
