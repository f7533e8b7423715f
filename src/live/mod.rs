//! `live`: what Flight readers see. [`ring`] retains the decoded batches per topic, bounded by
//! bytes and age, without copying them ([`compact`] copies those whose commit passed);
//! [`flight`] serves them; [`ticket`] parses what a reader asks for; [`lake`] reads back from
//! the lake what the ring no longer holds.

pub mod compact;
pub mod flight;
pub mod lake;
mod read;
pub mod ring;
pub mod ticket;

use std::sync::Arc;
use std::time::Duration;

use tonic::Status;

use crate::config::LiveConfig;
use crate::observe::server::Servers;
use ring::ReadError;

/// Why a Flight request cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The ticket does not parse (the text says why).
    #[error("bad ticket: {0}")]
    BadTicket(String),
    /// A descriptor's path is not `[topic]`.
    #[error("descriptor path must be [topic], got {0:?}")]
    BadDescriptor(Vec<String>),
    /// The ring cannot serve the read (unknown topic, position gone, reader too slow).
    #[error(transparent)]
    Read(#[from] ReadError),
    /// `DoAction` with an action sluice does not have.
    #[error("unknown action {0:?}; actions: stats, health")]
    UnknownAction(String),
    /// A Flight method sluice does not offer (the text says what to use).
    #[error("{0}")]
    Unsupported(&'static str),
    /// A schema could not be encoded.
    #[error("{0}")]
    Encode(#[from] arrow::error::ArrowError),
}

impl From<LiveError> for Status {
    fn from(e: LiveError) -> Status {
        let text = e.to_string();
        match e {
            LiveError::BadTicket(_) | LiveError::BadDescriptor(_) | LiveError::UnknownAction(_) => {
                Status::invalid_argument(text)
            }
            LiveError::Read(ReadError::UnknownTopic(_)) => Status::not_found(text),
            LiveError::Read(ReadError::OutOfRange { .. }) => Status::out_of_range(text),
            LiveError::Read(ReadError::Lagged { .. }) => Status::resource_exhausted(text),
            LiveError::Read(ReadError::Incomplete { .. }) => Status::unavailable(text),
            LiveError::Unsupported(_) => Status::unimplemented(text),
            LiveError::Encode(_) => Status::internal(text),
        }
    }
}

/// Creates the ring and serves Flight on `servers` if `cfg.enabled`. The ring may hold up to
/// `max_uncommitted` bytes beyond its retention in batches not yet committed (the pending
/// flush's share of the memory budget, whose memory they share). Readers of positions older
/// than the ring read them from `lake`, if given.
pub fn start(
    cfg: &LiveConfig,
    servers: &Servers,
    max_uncommitted: u64,
    lake: Option<Arc<lake::LakeSource>>,
) -> std::io::Result<Option<(Arc<ring::Ring>, flight::FlightServer)>> {
    if !cfg.enabled {
        return Ok(None);
    }
    let addr = cfg.address.parse().map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("live.address: {e}"),
        )
    })?;
    let ring = ring::Ring::new(ring::Retention {
        max_bytes: cfg.retention_bytes,
        max_age: Duration::from_millis(cfg.retention_ms),
        max_uncommitted,
    });
    let access = access(cfg, "Flight", addr)?;
    let mut service = flight::LiveFlight::new(ring.clone());
    if let Some(lake) = lake {
        service = service.with_lake(lake);
    }
    let server = flight::serve(servers, service, addr, access)?;
    Ok(Some((ring, server)))
}

/// Who may call a Flight endpoint on `addr` (`what` names it in warnings): `[live]`'s token and
/// TLS files, read and checked. Warns if a non-loopback address is served without
/// authentication, or with a token in plaintext.
pub fn access(
    cfg: &LiveConfig,
    what: &str,
    addr: std::net::SocketAddr,
) -> std::io::Result<flight::Access> {
    let tls = cfg
        .tls()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    let ip = addr;
    if !ip.ip().is_loopback() {
        let client_certs = tls.as_ref().is_some_and(|t| t.client_ca.is_some());
        if cfg.auth_token.is_none() && !client_certs {
            tracing::warn!(address = %ip, "{what} serves a non-loopback address without authentication (set live.auth_token or live.tls_client_ca_path)");
        } else if cfg.auth_token.is_some() && tls.is_none() {
            tracing::warn!(address = %ip, "{what} takes live.auth_token in plaintext on a non-loopback address (set live.tls_cert_path and live.tls_key_path)");
        }
    }
    if let Some(t) = &tls {
        tracing::info!(
            cert = %t.cert_path.display(),
            client_ca = ?t.client_ca.as_ref().map(|(p, _)| p.display().to_string()),
            "{what} serves TLS"
        );
    }
    let access = flight::Access {
        token: cfg.auth_token.clone(),
        tls,
    };
    Ok(access)
}
