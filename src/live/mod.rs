//! `live`: what Flight readers see. [`ring`] retains the decoded batches per topic, bounded by
//! bytes and age, without copying them; the Flight service (next) serves them.

pub mod flight;
pub mod ring;

use std::sync::Arc;
use std::time::Duration;

use crate::config::LiveConfig;

/// Creates the ring and starts the Flight server if `cfg.enabled`.
pub fn start(cfg: &LiveConfig) -> std::io::Result<Option<(Arc<ring::Ring>, flight::FlightServer)>> {
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
    });
    let server = flight::FlightServer::start(flight::LiveFlight::new(ring.clone()), addr)?;
    Ok(Some((ring, server)))
}
