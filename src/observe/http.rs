//! The operators' HTTP endpoint: `/metrics`, `/healthz`, `/readyz`, on the process's
//! [`Servers`].

use std::net::SocketAddr;

use axum::routing::get;

use super::server::Servers;
use super::{Sources, health, prometheus};

/// Serves `/metrics`, `/healthz` and `/readyz` of `src` on `addr`; returns the bound address.
pub fn serve(servers: &Servers, addr: SocketAddr, src: Sources) -> std::io::Result<SocketAddr> {
    let (m, h, r) = (src.clone(), src.clone(), src);
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let body = prometheus::render(&m);
                std::future::ready((
                    [(axum::http::header::CONTENT_TYPE, prometheus::CONTENT_TYPE)],
                    body,
                ))
            }),
        )
        .route(
            "/healthz",
            get(move || std::future::ready(health::health(&h))),
        )
        .route(
            "/readyz",
            get(move || std::future::ready(health::readiness(&r))),
        );
    servers.spawn("metrics", addr, move |listener, shutdown| async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
    })
}
