//! The Arrow Flight service over the live ring. Readers pull from the ring, so ingestion never
//! waits on them.
//!
//! Tickets are JSON, e.g. `{"topic": "events", "from": "earliest" | "latest" |
//! {"offsets": {"0": 1234}} | {"timestamp_ms": 1700000000000}, "follow": true,
//! "partitions": [0, 3]}`; a bare topic name means earliest, no follow. Every batch carries
//! `{"topic", "partition", "offset", "batch", "batches"}` as `app_metadata`: to resume, pass
//! `{"offsets": {"<partition>": [offset, batch + 1]}}` for every partition read so far.
//! A follower's stream ends cleanly when the topic's schema changes; resuming from the last
//! `app_metadata` continues with the new schema.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::MessageHeader;
use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaAsIpc, SchemaResult, Ticket,
};
use futures::stream::{self, BoxStream, StreamExt};
use serde::Deserialize;
use tonic::{Request, Response, Status, Streaming};

use super::ring::{LiveBatch, ReadError, Ring, Start};

/// Batches a reader takes from the ring at a time: its bounded queue. Batches still in the
/// ring when the reader gets to them are never lost to it; once evicted, the reader is cut off.
const READ_CHUNK: usize = 4;

/// A parsed DoGet ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketSpec {
    /// Topic to read.
    pub topic: String,
    /// Where to start.
    pub start: Start,
    /// Keep streaming new batches until the client cancels.
    pub follow: bool,
    /// Only these partitions (all if `None`).
    pub partitions: Option<Vec<i32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TicketJson {
    topic: String,
    #[serde(default)]
    from: Option<serde_json::Value>,
    #[serde(default)]
    follow: bool,
    #[serde(default)]
    partitions: Option<Vec<i32>>,
}

/// Parses a ticket; the error text says what is wrong with it.
pub fn parse_ticket(bytes: &[u8]) -> Result<TicketSpec, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "ticket is not UTF-8".to_string())?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("ticket is empty; give a topic name or a JSON ticket".into());
    }
    if !trimmed.starts_with('{') {
        return Ok(TicketSpec {
            topic: trimmed.to_string(),
            start: Start::Earliest,
            follow: false,
            partitions: None,
        });
    }
    let t: TicketJson =
        serde_json::from_str(trimmed).map_err(|e| format!("ticket is not valid: {e}"))?;
    let start = match &t.from {
        None => Start::Earliest,
        Some(v) => parse_from(v)?,
    };
    Ok(TicketSpec {
        topic: t.topic,
        start,
        follow: t.follow,
        partitions: t.partitions,
    })
}

fn parse_from(v: &serde_json::Value) -> Result<Start, String> {
    use serde_json::Value;
    let bad = || {
        format!(
            "\"from\" must be \"earliest\", \"latest\", {{\"offsets\": {{\"<partition>\": <offset> | [<offset>, <batch>]}}}} or {{\"timestamp_ms\": <ms>}}; got {v}"
        )
    };
    match v {
        Value::String(s) if s == "earliest" => Ok(Start::Earliest),
        Value::String(s) if s == "latest" => Ok(Start::Latest),
        Value::Object(m) if m.len() == 1 && m.contains_key("timestamp_ms") => m["timestamp_ms"]
            .as_i64()
            .map(Start::Timestamp)
            .ok_or_else(bad),
        Value::Object(m) if m.len() == 1 && m.contains_key("offsets") => {
            let Value::Object(per) = &m["offsets"] else {
                return Err(bad());
            };
            let mut out = BTreeMap::new();
            for (p, pos) in per {
                let partition: i32 = p
                    .parse()
                    .map_err(|_| format!("partition {p:?} is not a number"))?;
                let position = match pos {
                    Value::Number(n) => (n.as_i64().ok_or_else(bad)?, 0),
                    Value::Array(a) if a.len() == 2 => (
                        a[0].as_i64().ok_or_else(bad)?,
                        a[1].as_u64()
                            .and_then(|b| u32::try_from(b).ok())
                            .ok_or_else(bad)?,
                    ),
                    _ => return Err(bad()),
                };
                out.insert(partition, position);
            }
            Ok(Start::Offsets(out))
        }
        _ => Err(bad()),
    }
}

pub use crate::observe::FlightStats;

/// The Flight service.
#[derive(Clone)]
pub struct LiveFlight {
    ring: Arc<Ring>,
    stats: Arc<FlightStats>,
}

impl LiveFlight {
    /// A service over `ring`.
    pub fn new(ring: Arc<Ring>) -> Self {
        LiveFlight {
            ring,
            stats: Arc::new(FlightStats::default()),
        }
    }

    /// Its counters.
    pub fn stats(&self) -> &Arc<FlightStats> {
        &self.stats
    }

    fn flight_info(&self, topic: &str) -> Result<FlightInfo, Status> {
        let view = self
            .ring
            .describe(topic)
            .ok_or_else(|| Status::not_found(format!("topic {topic:?} is not being ingested")))?;
        let schema = view.schema.unwrap_or_else(|| Arc::new(Schema::empty()));
        let offsets: BTreeMap<String, [i64; 2]> = view
            .offsets
            .iter()
            .map(|(p, (a, b))| (p.to_string(), [*a, *b]))
            .collect();
        let ticket = serde_json::json!({ "topic": topic }).to_string();
        FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(|e| Status::internal(e.to_string()))
            .map(|i| {
                i.with_descriptor(FlightDescriptor::new_path(vec![topic.to_string()]))
                    .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
                    .with_total_records(view.rows as i64)
                    .with_total_bytes(view.bytes as i64)
                    .with_app_metadata(serde_json::json!({ "offsets": offsets }).to_string())
            })
    }

    fn stats_json(&self) -> serde_json::Value {
        let topics: serde_json::Map<String, serde_json::Value> = self
            .ring
            .topics()
            .into_iter()
            .filter_map(|t| {
                let v = self.ring.describe(&t)?;
                let offsets: BTreeMap<String, [i64; 2]> = v
                    .offsets
                    .iter()
                    .map(|(p, (a, b))| (p.to_string(), [*a, *b]))
                    .collect();
                Some((
                    t,
                    serde_json::json!({ "rows": v.rows, "bytes": v.bytes, "offsets": offsets }),
                ))
            })
            .collect();
        serde_json::json!({
            "topics": topics,
            "readers": self.stats.readers.load(Relaxed),
            "lag_disconnects": self.stats.lag_disconnects.load(Relaxed),
            "compacted_bytes": self.ring.compacted_bytes(),
        })
    }
}

fn descriptor_topic(d: &FlightDescriptor) -> Result<String, Status> {
    match d.path.as_slice() {
        [topic] => Ok(topic.clone()),
        _ => Err(Status::invalid_argument(format!(
            "descriptor path must be [topic], got {:?}",
            d.path
        ))),
    }
}

fn read_error(e: ReadError) -> Status {
    match e {
        ReadError::UnknownTopic(_) => Status::not_found(e.to_string()),
        ReadError::OutOfRange { .. } => Status::out_of_range(e.to_string()),
        ReadError::Lagged { .. } => Status::resource_exhausted(e.to_string()),
    }
}

/// Decrements the reader gauge when a stream ends or is dropped (client cancel).
struct ReaderGuard(Arc<FlightStats>);

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        self.0.readers.fetch_sub(1, Relaxed);
    }
}

struct ReadState {
    ring: Arc<Ring>,
    stats: Arc<FlightStats>,
    _guard: ReaderGuard,
    spec: TicketSpec,
    next: u64,
    schema: SchemaRef,
    buffered: VecDeque<LiveBatch>,
    changes: tokio::sync::watch::Receiver<u64>,
    metadata: Arc<Mutex<VecDeque<bytes::Bytes>>>,
    done: bool,
}

impl ReadState {
    fn keep(&self, e: &LiveBatch) -> bool {
        if let Some(ps) = &self.spec.partitions
            && !ps.contains(&e.partition)
        {
            return false;
        }
        if let Start::Offsets(pos) = &self.spec.start
            && let Some(&(o, b)) = pos.get(&e.partition)
        {
            return (e.offset, e.batch_index) >= (o, b);
        }
        true
    }

    /// Fills `buffered` from the ring; `Ok(false)` if nothing new is there.
    fn fill(&mut self) -> Result<bool, ReadError> {
        let (batches, next) = {
            let spec_keep = |e: &LiveBatch| self.keep(e);
            self.ring
                .read(&self.spec.topic, self.next, READ_CHUNK, spec_keep)?
        };
        let moved = next != self.next;
        self.next = next;
        self.buffered.extend(batches);
        Ok(moved)
    }
}

type BatchStream = BoxStream<'static, Result<arrow::array::RecordBatch, FlightError>>;

fn batches(st: ReadState) -> BatchStream {
    stream::unfold(st, |mut st| async move {
        loop {
            if let Some(e) = st.buffered.pop_front() {
                if e.batch.schema() != st.schema {
                    // Schema change: end this stream cleanly (documented in the module docs).
                    return None;
                }
                let meta = serde_json::json!({
                    "topic": st.spec.topic,
                    "partition": e.partition,
                    "offset": e.offset,
                    "batch": e.batch_index,
                    "batches": e.batches_in_message,
                })
                .to_string();
                st.metadata
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_back(meta.into());
                return Some((Ok(e.batch), st));
            }
            if st.done {
                return None;
            }
            match st.fill() {
                Ok(true) => continue,
                Ok(false) if !st.spec.follow => return None,
                Ok(false) => {
                    if st.changes.changed().await.is_err() {
                        return None;
                    }
                }
                Err(e) => {
                    if matches!(e, ReadError::Lagged { .. }) {
                        st.stats.lag_disconnects.fetch_add(1, Relaxed);
                    }
                    st.done = true;
                    return Some((Err(FlightError::Tonic(Box::new(read_error(e)))), st));
                }
            }
        }
    })
    .boxed()
}

fn is_record_batch(fd: &FlightData) -> bool {
    arrow::ipc::root_as_message(&fd.data_header)
        .is_ok_and(|m| m.header_type() == MessageHeader::RecordBatch)
}

type Stream<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl FlightService for LiveFlight {
    type HandshakeStream = Stream<HandshakeResponse>;
    type ListFlightsStream = Stream<FlightInfo>;
    type DoGetStream = Stream<FlightData>;
    type DoPutStream = Stream<PutResult>;
    type DoActionStream = Stream<arrow_flight::Result>;
    type ListActionsStream = Stream<ActionType>;
    type DoExchangeStream = Stream<FlightData>;

    async fn handshake(
        &self,
        _: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        Err(Status::unimplemented(
            "handshake: no authentication is configured",
        ))
    }

    async fn list_flights(
        &self,
        _: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        let infos: Vec<Result<FlightInfo, Status>> = self
            .ring
            .topics()
            .iter()
            .map(|t| self.flight_info(t))
            .collect();
        Ok(Response::new(stream::iter(infos).boxed()))
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let topic = descriptor_topic(request.get_ref())?;
        Ok(Response::new(self.flight_info(&topic)?))
    }

    async fn poll_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented(
            "poll_flight_info: use get_flight_info",
        ))
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        let topic = descriptor_topic(request.get_ref())?;
        let view = self
            .ring
            .describe(&topic)
            .ok_or_else(|| Status::not_found(format!("topic {topic:?} is not being ingested")))?;
        let schema = view.schema.unwrap_or_else(|| Arc::new(Schema::empty()));
        let options = arrow::ipc::writer::IpcWriteOptions::default();
        let result: SchemaResult = SchemaAsIpc::new(&schema, &options)
            .try_into()
            .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
        Ok(Response::new(result))
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let spec = parse_ticket(&request.get_ref().ticket)
            .map_err(|e| Status::invalid_argument(format!("bad ticket: {e}")))?;
        let next = self
            .ring
            .resolve(&spec.topic, &spec.start)
            .map_err(read_error)?;
        self.stats.readers.fetch_add(1, Relaxed);
        let guard = ReaderGuard(self.stats.clone());
        let changes = self.ring.subscribe();
        let mut st = ReadState {
            ring: self.ring.clone(),
            stats: self.stats.clone(),
            _guard: guard,
            spec,
            next,
            schema: Arc::new(Schema::empty()),
            buffered: VecDeque::new(),
            changes,
            metadata: Arc::new(Mutex::new(VecDeque::new())),
            done: false,
        };
        // The stream's schema is that of its first batch (or the topic's newest, if none yet).
        st.fill().map_err(read_error)?;
        st.schema = match st.buffered.front() {
            Some(e) => e.batch.schema(),
            None => self
                .ring
                .describe(&st.spec.topic)
                .and_then(|v| v.schema)
                .unwrap_or_else(|| Arc::new(Schema::empty())),
        };
        let schema = st.schema.clone();
        let metadata = st.metadata.clone();
        let encoded = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .with_max_flight_data_size(usize::MAX)
            .with_dictionary_handling(DictionaryHandling::Resend)
            .build(batches(st))
            .map(move |item| {
                item.map(|mut fd| {
                    if is_record_batch(&fd)
                        && let Some(m) = metadata
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .pop_front()
                    {
                        fd.app_metadata = m;
                    }
                    fd
                })
                .map_err(Status::from)
            });
        Ok(Response::new(encoded.boxed()))
    }

    async fn do_put(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        Err(Status::unimplemented(
            "do_put: sluice reads from Kafka; produce there",
        ))
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        let body = match request.get_ref().r#type.as_str() {
            "stats" => self.stats_json(),
            "health" => serde_json::json!({ "status": "ok", "topics": self.ring.topics() }),
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown action {other:?}; actions: stats, health"
                )));
            }
        };
        let result = arrow_flight::Result {
            body: body.to_string().into(),
        };
        Ok(Response::new(stream::iter([Ok(result)]).boxed()))
    }

    async fn list_actions(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        let actions = [
            (
                "stats",
                "per topic: rows/bytes retained, offsets; readers; lag disconnects",
            ),
            ("health", "ok while the service runs"),
        ]
        .map(|(t, d)| {
            Ok(ActionType {
                r#type: t.into(),
                description: d.into(),
            })
        });
        Ok(Response::new(stream::iter(actions).boxed()))
    }

    async fn do_exchange(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented("do_exchange is not supported"))
    }
}

/// A running Flight server.
pub struct FlightServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The service's counters (readers, lag disconnects).
    pub stats: Arc<FlightStats>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FlightServer {
    /// Serves `service` on `addr` (port 0 picks a free port) from its own runtime thread.
    pub fn start(service: LiveFlight, addr: SocketAddr) -> std::io::Result<FlightServer> {
        let stats = service.stats().clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sluice-flight")
            .enable_all()
            .build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind(addr))?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sluice-flight".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let incoming = tonic::transport::server::TcpIncoming::from(listener);
                    let result = tonic::transport::Server::builder()
                        .add_service(FlightServiceServer::new(service))
                        .serve_with_incoming_shutdown(incoming, async {
                            let _ = rx.await;
                        })
                        .await;
                    if let Err(e) = result {
                        tracing::error!(error = %e, "flight server failed");
                    }
                });
            })?;
        Ok(FlightServer {
            addr,
            stats,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// Stops accepting requests and ends open streams.
    pub fn stop(mut self) {
        self.shutdown_now();
    }

    fn shutdown_now(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for FlightServer {
    fn drop(&mut self) {
        self.shutdown_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_parse_or_say_what_is_wrong() {
        assert_eq!(
            parse_ticket(b"events").unwrap(),
            TicketSpec {
                topic: "events".into(),
                start: Start::Earliest,
                follow: false,
                partitions: None
            }
        );
        assert_eq!(
            parse_ticket(br#"{"topic": "e", "from": {"offsets": {"0": 12, "3": [7, 1]}}, "follow": true, "partitions": [0, 3]}"#).unwrap(),
            TicketSpec {
                topic: "e".into(),
                start: Start::Offsets(BTreeMap::from([(0, (12, 0)), (3, (7, 1))])),
                follow: true,
                partitions: Some(vec![0, 3])
            }
        );
        assert_eq!(
            parse_ticket(br#"{"topic": "e", "from": {"timestamp_ms": 1700000000000}}"#)
                .unwrap()
                .start,
            Start::Timestamp(1_700_000_000_000)
        );
        assert_eq!(
            parse_ticket(br#"{"topic": "e", "from": "latest"}"#)
                .unwrap()
                .start,
            Start::Latest
        );
        assert_eq!(
            parse_ticket(br#"{"topic": "e", "from": "middle"}"#).unwrap_err(),
            "\"from\" must be \"earliest\", \"latest\", {\"offsets\": {\"<partition>\": <offset> | [<offset>, <batch>]}} or {\"timestamp_ms\": <ms>}; got \"middle\""
        );
        assert_eq!(
            parse_ticket(br#"{"topic": "e", "form": "latest"}"#).unwrap_err(),
            "ticket is not valid: unknown field `form`, expected one of `topic`, `from`, `follow`, `partitions` at line 1 column 21"
        );
        assert_eq!(
            parse_ticket(br#"{"topic": "e", "from": {"offsets": {"x": 1}}}"#).unwrap_err(),
            "partition \"x\" is not a number"
        );
        assert_eq!(
            parse_ticket(b"  ").unwrap_err(),
            "ticket is empty; give a topic name or a JSON ticket"
        );
    }
}
