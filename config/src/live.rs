//! `[live]`: the live Arrow Flight endpoint and its retention.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigError, Secret, check_address, invalid};

/// The live Arrow Flight endpoint: the decoded batches, retained per topic.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LiveConfig {
    /// Serve Flight at all.
    pub enabled: bool,
    /// Listen address (`host:port`; port 0 picks a free one).
    pub address: String,
    /// Bytes of batches retained per topic (default 256 MiB); part of the memory budget.
    pub retention_bytes: u64,
    /// Age after which retained batches are dropped (milliseconds).
    pub retention_ms: u64,
    /// A bearer token every Flight call must carry (`authorization: Bearer <token>`); unset,
    /// calls are not authenticated (the default address is loopback). Never logged; better
    /// given as `SLUICE_LIVE__AUTH_TOKEN` than in the file. pyarrow sends it with
    /// `fl.FlightCallOptions(headers=[(b"authorization", b"Bearer …")])`.
    #[schemars(example = &"<a long random token>")]
    pub auth_token: Option<Secret>,
    /// The server's certificate chain (PEM, leaf first): set with `tls_key_path`, Flight is
    /// served over TLS (`grpc+tls://`); unset, in plaintext.
    #[schemars(example = &"/etc/sluice/flight.pem")]
    pub tls_cert_path: Option<PathBuf>,
    /// The private key of `tls_cert_path` (PEM: PKCS#8, PKCS#1 or SEC1). Its contents are
    /// never logged.
    #[schemars(example = &"/etc/sluice/flight.key")]
    pub tls_key_path: Option<PathBuf>,
    /// CA certificates (PEM) that sign the clients' certificates: set, every client must
    /// present one (mutual TLS); needs `tls_cert_path`.
    #[schemars(example = &"/etc/sluice/ca.pem")]
    pub tls_client_ca_path: Option<PathBuf>,
}

/// `[live]`'s TLS files, read and parsed: what the Flight server is given. `Debug` shows the
/// paths, never the key.
#[derive(Clone)]
pub struct LiveTls {
    /// `live.tls_cert_path`.
    pub cert_path: PathBuf,
    /// Its contents: one or more PEM certificates.
    pub cert_pem: Vec<u8>,
    /// `live.tls_key_path`.
    pub key_path: PathBuf,
    /// Its contents: a PEM private key.
    pub key_pem: Vec<u8>,
    /// `live.tls_client_ca_path` and its PEM certificates, if clients must present one.
    pub client_ca: Option<(PathBuf, Vec<u8>)>,
}

impl std::fmt::Debug for LiveTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveTls")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("client_ca_path", &self.client_ca.as_ref().map(|(p, _)| p))
            .finish_non_exhaustive()
    }
}

/// Loopback, port 8815: the port Arrow Flight's examples conventionally use.
fn default_address() -> String {
    "127.0.0.1:8815".into()
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            enabled: true,
            address: default_address(),
            retention_bytes: 256 * 1024 * 1024,
            retention_ms: 300_000,
            auth_token: None,
            tls_cert_path: None,
            tls_key_path: None,
            tls_client_ca_path: None,
        }
    }
}

impl LiveConfig {
    /// Checks the `[live]` keys (only when it is enabled).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        check_address("live.address", &self.address, "127.0.0.1:8815")?;
        if self.retention_bytes == 0 {
            return Err(invalid("live.retention_bytes", "must be greater than 0"));
        }
        if self.retention_ms == 0 {
            return Err(invalid("live.retention_ms", "must be greater than 0"));
        }
        if self
            .auth_token
            .as_ref()
            .is_some_and(|t| t.expose().trim().is_empty())
        {
            return Err(invalid("live.auth_token", "must not be empty when set"));
        }
        self.tls().map(drop)
    }

    /// The TLS files, read and checked (a PEM certificate chain, a PEM private key, PEM client
    /// CA certificates); `None` when TLS is off. Whether the key belongs to the certificate is
    /// checked when the server starts.
    pub fn tls(&self) -> Result<Option<LiveTls>, ConfigError> {
        let (cert_path, key_path) = match (&self.tls_cert_path, &self.tls_key_path) {
            (None, None) => {
                if self.tls_client_ca_path.is_some() {
                    return Err(invalid(
                        "live.tls_client_ca_path",
                        "needs live.tls_cert_path and live.tls_key_path: client certificates are only asked for over TLS",
                    ));
                }
                return Ok(None);
            }
            (Some(_), None) => {
                return Err(invalid(
                    "live.tls_key_path",
                    "must be set with live.tls_cert_path (the certificate's private key)",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "live.tls_cert_path",
                    "must be set with live.tls_key_path (the key's certificate)",
                ));
            }
            (Some(c), Some(k)) => (c.clone(), k.clone()),
        };
        let cert_pem = read_pem_file("live.tls_cert_path", &cert_path)?;
        check_certificates("live.tls_cert_path", &cert_path, &cert_pem)?;
        let key_pem = read_pem_file("live.tls_key_path", &key_path)?;
        // The parser's own messages are not repeated: they could quote the key's text.
        if PrivateKeyDer::from_pem_slice(&key_pem).is_err() {
            return Err(invalid(
                "live.tls_key_path",
                format!(
                    "{} holds no PEM private key (-----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY)",
                    key_path.display()
                ),
            ));
        }
        let client_ca = match &self.tls_client_ca_path {
            None => None,
            Some(path) => {
                let pem = read_pem_file("live.tls_client_ca_path", path)?;
                check_certificates("live.tls_client_ca_path", path, &pem)?;
                Some((path.clone(), pem))
            }
        };
        Ok(Some(LiveTls {
            cert_path,
            cert_pem,
            key_path,
            key_pem,
            client_ca,
        }))
    }
}

fn read_pem_file(key: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| invalid(key, format!("cannot read {}: {e}", path.display())))
}

/// Whether `pem` holds at least one PEM certificate, all of them well-formed.
fn check_certificates(key: &str, path: &Path, pem: &[u8]) -> Result<(), ConfigError> {
    let certs: Result<Vec<CertificateDer<'_>>, pem::Error> =
        CertificateDer::pem_slice_iter(pem).collect();
    match certs {
        Ok(c) if !c.is_empty() => Ok(()),
        Ok(_) => Err(invalid(
            key,
            format!(
                "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            ),
        )),
        Err(e) => Err(invalid(
            key,
            format!(
                "{} is not a valid PEM file: {}",
                path.display(),
                pem_problem(&e)
            ),
        )),
    }
}

/// What a PEM parser's error says, with its byte strings as text.
fn pem_problem(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "a section has no -----END {}----- line",
            String::from_utf8_lossy(end_marker)
        ),
        pem::Error::IllegalSectionStart { line } => format!(
            "malformed BEGIN line {:?}",
            String::from_utf8_lossy(line).trim_end()
        ),
        other => other.to_string(),
    }
}
