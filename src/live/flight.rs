//! The Arrow Flight service over the live ring. Readers pull from the ring, so ingestion never
//! waits on them. Tickets are described in [`super::ticket`]. Every batch carries
//! `{"topic", "partition", "offset", "batch", "batches"}` as `app_metadata`: to resume, pass
//! `{"offsets": {"<partition>": [offset, batch + 1]}}` for every partition read so far (a
//! partition without a position is read from its oldest retained batch). A position older than
//! the ring is read from the lake, then from the ring (`live::read`); so is a slow follower
//! once the ring evicted what it had not read yet.
//! A follower's stream ends cleanly when the topic's schema changes (resuming from the last
//! `app_metadata` continues with the new schema) and when the server stops.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use arrow::datatypes::Schema;
use arrow::ipc::MessageHeader;
use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaAsIpc, SchemaResult, Ticket,
};
use futures::stream::{self, StreamExt};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

use tokio_util::sync::CancellationToken;

use super::LiveError;
use super::lake::LakeSource;
use super::read::{ReadState, batches, first_schema};
use super::ring::{ReadError, Ring};
use super::ticket::parse_ticket;
use crate::observe::server::Servers;
use crate::sync::lock;

use crate::config::{LiveTls, Secret};
pub use crate::observe::FlightStats;

/// The Flight service.
#[derive(Clone)]
pub struct LiveFlight {
    ring: Arc<Ring>,
    /// Where positions older than the ring are read from, if anywhere.
    lake: Option<Arc<LakeSource>>,
    stats: Arc<FlightStats>,
    /// Cancelled when the server stops: followers' streams end.
    shutdown: CancellationToken,
}

impl LiveFlight {
    /// A service over `ring`.
    pub fn new(ring: Arc<Ring>) -> Self {
        LiveFlight {
            ring,
            lake: None,
            stats: Arc::new(FlightStats::default()),
            shutdown: CancellationToken::new(),
        }
    }

    /// The same service, reading positions older than the ring from `lake`.
    pub fn with_lake(self, lake: Arc<LakeSource>) -> Self {
        LiveFlight {
            lake: Some(lake),
            ..self
        }
    }

    /// Its counters.
    pub fn stats(&self) -> &Arc<FlightStats> {
        &self.stats
    }

    fn flight_info(&self, topic: &str) -> Result<FlightInfo, LiveError> {
        let view = self
            .ring
            .describe(topic)
            .ok_or_else(|| ReadError::UnknownTopic(topic.to_string()))?;
        let schema = view.schema.unwrap_or_else(|| Arc::new(Schema::empty()));
        let offsets: BTreeMap<String, [i64; 2]> = view
            .offsets
            .iter()
            .map(|(p, (a, b))| (p.to_string(), [*a, *b]))
            .collect();
        let ticket = serde_json::json!({ "topic": topic }).to_string();
        Ok(FlightInfo::new().try_with_schema(&schema).map(|i| {
            i.with_descriptor(FlightDescriptor::new_path(vec![topic.to_string()]))
                .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
                .with_total_records(view.rows as i64)
                .with_total_bytes(view.bytes as i64)
                .with_app_metadata(serde_json::json!({ "offsets": offsets }).to_string())
        })?)
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
            "lake_catchups": self.stats.lake_catchups.load(Relaxed),
            "lake_batches": self.stats.lake_batches.load(Relaxed),
            "compacted_bytes": self.ring.compacted_bytes(),
        })
    }
}

fn descriptor_topic(d: &FlightDescriptor) -> Result<String, LiveError> {
    match d.path.as_slice() {
        [topic] => Ok(topic.clone()),
        _ => Err(LiveError::BadDescriptor(d.path.clone())),
    }
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
        Err(LiveError::Unsupported("handshake: no authentication is configured").into())
    }

    async fn list_flights(
        &self,
        _: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        let infos: Vec<Result<FlightInfo, Status>> = self
            .ring
            .topics()
            .iter()
            .map(|t| self.flight_info(t).map_err(Status::from))
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
        Err(LiveError::Unsupported("poll_flight_info: use get_flight_info").into())
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        let topic = descriptor_topic(request.get_ref())?;
        let view = self
            .ring
            .describe(&topic)
            .ok_or_else(|| LiveError::from(ReadError::UnknownTopic(topic.clone())))?;
        let schema = view.schema.unwrap_or_else(|| Arc::new(Schema::empty()));
        let options = arrow::ipc::writer::IpcWriteOptions::default();
        let result: Result<SchemaResult, arrow::error::ArrowError> =
            SchemaAsIpc::new(&schema, &options).try_into();
        let result = result.map_err(LiveError::from)?;
        Ok(Response::new(result))
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let spec = parse_ticket(&request.get_ref().ticket).map_err(LiveError::BadTicket)?;
        let mut st = ReadState::start(
            self.ring.clone(),
            self.lake.clone(),
            self.stats.clone(),
            spec,
            self.shutdown.clone(),
        )
        .await?;
        // The stream's schema is that of its first batch (or the topic's newest, if none yet).
        st.fill().await?;
        st.schema = first_schema(&st);
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
                        && let Some(m) = lock(&metadata).pop_front()
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
        Err(LiveError::Unsupported("do_put: sluice reads from Kafka; produce there").into())
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        let body = match request.get_ref().r#type.as_str() {
            "stats" => self.stats_json(),
            "health" => serde_json::json!({ "status": "ok", "topics": self.ring.topics() }),
            other => return Err(LiveError::UnknownAction(other.to_string()).into()),
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
        Err(LiveError::Unsupported("do_exchange is not supported").into())
    }
}

/// The running Flight endpoint.
pub struct FlightServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Whether it serves TLS.
    pub tls: bool,
    /// The service's counters (readers, lag disconnects).
    pub stats: Arc<FlightStats>,
}

impl FlightServer {
    /// The URL clients connect to: `grpc+tls://addr` over TLS, else `grpc://addr`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "grpc+tls" } else { "grpc" };
        format!("{scheme}://{}", self.addr)
    }
}

/// Who may call the endpoint: over TLS if `tls` (requiring a client certificate if it has a
/// client CA), with a bearer token if `token`. The default: plaintext, anyone.
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// Every call must carry `authorization: Bearer <token>`.
    pub token: Option<Secret>,
    /// The server's certificate and key, and the CA its clients' certificates must chain to.
    pub tls: Option<LiveTls>,
}

/// How long a client may take over the TLS handshake before its connection is dropped (tonic
/// sets no limit: a client that connects and sends nothing would hold a handshake open).
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Checks a call's `authorization` header against the bearer token (in constant time).
fn authenticate(token: &Secret, req: &tonic::Request<()>) -> Result<(), Status> {
    let want = format!("Bearer {}", token.expose());
    let got = req
        .metadata()
        .get("authorization")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if Secret::same_bytes(got, want.as_bytes()) {
        Ok(())
    } else {
        Err(Status::unauthenticated(
            "this Flight endpoint needs a bearer token (header authorization: Bearer <live.auth_token>)",
        ))
    }
}

/// A server builder for `tls` (plaintext without it). Fails, naming the files, if rustls
/// rejects them (a key that is not the certificate's, a CA it cannot use).
fn builder(tls: Option<&LiveTls>) -> std::io::Result<Server> {
    let Some(tls) = tls else {
        return Ok(Server::builder());
    };
    let mut config = ServerTlsConfig::new()
        .identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem))
        .timeout(TLS_HANDSHAKE_TIMEOUT);
    let mut files = format!(
        "live.tls_cert_path {} with live.tls_key_path {}",
        tls.cert_path.display(),
        tls.key_path.display()
    );
    if let Some((path, pem)) = &tls.client_ca {
        config = config.client_ca_root(Certificate::from_pem(pem));
        files += &format!(" and live.tls_client_ca_path {}", path.display());
    }
    Server::builder().tls_config(config).map_err(|e| {
        // tonic's error says "transport error"; the cause is in its sources.
        let mut causes = Vec::new();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            causes.push(s.to_string());
            source = s.source();
        }
        let why = if causes.is_empty() {
            e.to_string()
        } else {
            causes.join(": ")
        };
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("TLS setup of {files} failed: {why}"),
        )
    })
}

/// Serves `service` on `addr` (port 0 picks a free port) on `servers`, until they stop, as
/// `access` says.
pub fn serve(
    servers: &Servers,
    service: LiveFlight,
    addr: SocketAddr,
    access: Access,
) -> std::io::Result<FlightServer> {
    let stats = service.stats().clone();
    let tls = access.tls.is_some();
    let addr = serve_with(servers, "flight", addr, access, move |shutdown| {
        LiveFlight {
            shutdown,
            ..service
        }
    })?;
    Ok(FlightServer { addr, tls, stats })
}

/// Serves the Flight service `make` builds (given the token cancelled when the servers stop)
/// on `addr` on `servers`, until they stop, as `access` says; returns the bound address.
pub(crate) fn serve_with<S, F>(
    servers: &Servers,
    name: &'static str,
    addr: SocketAddr,
    access: Access,
    make: F,
) -> std::io::Result<SocketAddr>
where
    S: FlightService,
    F: FnOnce(CancellationToken) -> S,
{
    let mut server = builder(access.tls.as_ref())?;
    let token = access.token;
    servers.spawn(name, addr, move |listener, shutdown| {
        let service = make(shutdown.clone());
        let check = move |req: tonic::Request<()>| match &token {
            Some(t) => authenticate(t, &req).map(|()| req),
            None => Ok(req),
        };
        async move {
            server
                .add_service(FlightServiceServer::with_interceptor(service, check))
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    shutdown.cancelled_owned(),
                )
                .await
        }
    })
}
