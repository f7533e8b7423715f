//! The operators' HTTP endpoint: `/metrics`, `/healthz`, `/readyz`, on the process's
//! [`Servers`].

use std::net::SocketAddr;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;

use crate::config::Secret;

use super::server::Servers;
use super::{Sources, health, prometheus};

/// The `Authorization` header value that HTTP basic authentication with `user` and
/// `password` sends.
pub fn basic(user: &str, password: &Secret) -> String {
    let pair = format!("{user}:{}", password.expose());
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// Whether `headers` carry `want` as their `Authorization` (compared in constant time).
fn authorized(headers: &HeaderMap, want: &str) -> bool {
    let got = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    Secret::same_bytes(got, want.as_bytes())
}

/// Serves `/metrics`, `/healthz` and `/readyz` of `src` on `addr`; with `credentials` (user,
/// password) `/metrics` asks for HTTP basic authentication. Returns the bound address.
pub fn serve(
    servers: &Servers,
    addr: SocketAddr,
    src: Sources,
    credentials: Option<(String, Secret)>,
) -> std::io::Result<SocketAddr> {
    let (m, h, r) = (src.clone(), src.clone(), src);
    let expected = credentials.map(|(u, p)| basic(&u, &p));
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move |headers: HeaderMap| {
                let response: Response = match &expected {
                    Some(want) if !authorized(&headers, want) => (
                        StatusCode::UNAUTHORIZED,
                        [(header::WWW_AUTHENTICATE, "Basic realm=\"sluice\"")],
                        "/metrics needs HTTP basic authentication (metrics.username, metrics.password)\n",
                    )
                        .into_response(),
                    _ => (
                        [(header::CONTENT_TYPE, prometheus::CONTENT_TYPE)],
                        prometheus::render(&m),
                    )
                        .into_response(),
                };
                std::future::ready(response)
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
