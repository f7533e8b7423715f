//! The Flight SQL service: a query's `GetFlightInfo` runs it on its own connection to sluice's
//! DuckDB (after refreshing the real-time views) and keeps the result; `DoGet` with the ticket
//! returns it. Only SELECT statements are run. Prepared statements,
//! updates, transactions and the catalog commands are not offered (the ADBC driver falls back
//! to plain statements).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt, SqlInfo, TicketStatementQuery};
use arrow_flight::{FlightDescriptor, FlightEndpoint, FlightInfo, Ticket};
use futures::stream::{self, StreamExt};
use prost::Message;
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status};

use super::views::Views;
use crate::sink::duck::Database;
use crate::sync::lock;

/// Whether a text is SELECT statements only (as DuckDB's parser serializes nothing else).
pub const READ_ONLY: &str = "SELECT coalesce(json_extract(json_serialize_sql(?::VARCHAR), '$.error')::BOOLEAN = false, false)";

/// How long a result waits for its `DoGet`.
const RESULT_TTL: Duration = Duration::from_secs(60);

/// A query's result, waiting for its `DoGet`.
struct Held {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    bytes: u64,
    at: Instant,
}

/// The Flight SQL service.
#[derive(Clone)]
pub struct SqlFlight {
    db: Arc<Database>,
    views: Arc<Views>,
    search_path: String,
    permits: Arc<Semaphore>,
    max_result_bytes: u64,
    /// Bytes of results held at most: the oldest are dropped beyond it.
    max_held_bytes: u64,
    held: Arc<Mutex<HashMap<Vec<u8>, Held>>>,
}

impl SqlFlight {
    /// A service running queries on `db`, with `views` refreshed before each; names resolve in
    /// `search_path` (the views, then the lake's schema).
    pub fn new(
        db: Arc<Database>,
        views: Arc<Views>,
        search_path: String,
        max_concurrent: u32,
        max_result_bytes: u64,
    ) -> Self {
        SqlFlight {
            db,
            views,
            search_path,
            permits: Arc::new(Semaphore::new(max_concurrent as usize)),
            max_result_bytes,
            max_held_bytes: max_result_bytes.saturating_mul(u64::from(max_concurrent)),
            held: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Runs `query` (blocking) and returns its schema and batches.
    fn run(&self, query: &str) -> Result<(SchemaRef, Vec<RecordBatch>, u64), Status> {
        // Before the query's lake snapshot: whatever the query reads first, the ring's part of
        // a view starts at or below that snapshot's offsets.
        let _hold = self.views.ring().hold();
        let conn = self.db.crate_connection().map_err(internal)?;
        let search_path = format!("SET search_path = {}", self.search_path_literal());
        conn.execute_batch(&search_path).map_err(internal)?;
        self.views
            .refresh(&conn)
            .map_err(|e| Status::internal(format!("real-time views: {e}")))?;
        // Only SELECT statements, as DuckDB's own parser sees them: it serializes nothing else
        // (the rule Quack's authorization applies too). Parsing binds nothing, so this reads
        // no catalog.
        let select: bool = conn
            .query_row(READ_ONLY, [query], |r| r.get(0))
            .map_err(internal)?;
        if !select {
            return Err(Status::invalid_argument(
                "sluice's SQL endpoint runs read-only queries (SELECT statements) only",
            ));
        }
        let mut stmt = conn.prepare(query).map_err(|e| rejected(&e.to_string()))?;
        let result = stmt.query_arrow([]).map_err(|e| rejected(&e.to_string()))?;
        let schema = result.get_schema();
        let mut batches = Vec::new();
        let mut bytes = 0u64;
        for b in result {
            bytes += b.get_array_memory_size() as u64;
            if bytes > self.max_result_bytes {
                return Err(Status::resource_exhausted(format!(
                    "the result is larger than sql.max_result_bytes ({} bytes); aggregate or LIMIT it",
                    self.max_result_bytes
                )));
            }
            batches.push(b);
        }
        Ok((schema, batches, bytes))
    }

    fn search_path_literal(&self) -> String {
        crate::sink::duck::literal(&self.search_path)
    }

    /// Keeps a result for its `DoGet`; drops results nobody fetched in time, and the oldest
    /// while all of them would hold more than `max_concurrent_queries × max_result_bytes`.
    fn hold(&self, schema: SchemaRef, batches: Vec<RecordBatch>, bytes: u64) -> Vec<u8> {
        let handle: Vec<u8> = (0..16).map(|_| fastrand::u8(..)).collect();
        let mut held = lock(&self.held);
        held.retain(|_, h| h.at.elapsed() < RESULT_TTL);
        while held.values().map(|h| h.bytes).sum::<u64>() + bytes > self.max_held_bytes {
            let Some(oldest) = held
                .iter()
                .min_by_key(|(_, h)| h.at)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            held.remove(&oldest);
        }
        held.insert(
            handle.clone(),
            Held {
                schema,
                batches,
                bytes,
                at: Instant::now(),
            },
        );
        handle
    }
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

/// A query DuckDB refused: the client's to fix, unless the live ring could not serve it.
fn rejected(message: &str) -> Status {
    if message.contains("real-time view is incomplete") {
        Status::unavailable(message.to_string())
    } else {
        Status::invalid_argument(message.to_string())
    }
}

type DoGetStream =
    Pin<Box<dyn futures::Stream<Item = Result<arrow_flight::FlightData, Status>> + Send>>;

#[tonic::async_trait]
impl FlightSqlService for SqlFlight {
    type FlightService = SqlFlight;

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| Status::unavailable("sluice is stopping"))?;
        let this = self.clone();
        let text = query.query.clone();
        let (schema, batches, bytes) = tokio::task::spawn_blocking(move || this.run(&text))
            .await
            .map_err(|e| Status::internal(format!("query task: {e}")))??;
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let handle = self.hold(schema.clone(), batches, bytes);
        let ticket = TicketStatementQuery {
            statement_handle: handle.into(),
        };
        let endpoint =
            FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec()));
        let info = FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(|e| Status::internal(format!("result schema: {e}")))?
            .with_endpoint(endpoint)
            .with_descriptor(request.into_inner())
            .with_total_records(rows as i64)
            .with_total_bytes(bytes as i64)
            .with_ordered(true);
        Ok(Response::new(info))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let held = lock(&self.held)
            .remove(ticket.statement_handle.as_ref())
            .ok_or_else(|| {
                Status::not_found(
                    "no result for this ticket: it was fetched already, or not within 60 s of the query, or newer results pushed it out (sql.max_result_bytes per concurrent query)",
                )
            })?;
        let batches = stream::iter(held.batches.into_iter().map(Ok::<_, FlightError>));
        let stream: DoGetStream = Box::pin(
            FlightDataEncoderBuilder::new()
                .with_schema(held.schema)
                .build(batches)
                .map(|r| r.map_err(|e| Status::internal(e.to_string()))),
        );
        Ok(Response::new(stream))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
