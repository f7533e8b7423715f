//! Certificates for TLS tests, generated per test (rcgen) into a temporary directory: a CA, a
//! server certificate for 127.0.0.1 and localhost and a client certificate signed by it, and a
//! client certificate signed by another CA.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate and its key, as PEM files.
pub struct Pair {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8).
    pub key: PathBuf,
}

/// The files of one test's PKI.
pub struct Pki {
    /// The CA that signed `server` and `client` (PEM).
    pub ca: PathBuf,
    /// For 127.0.0.1 and localhost.
    pub server: Pair,
    /// A client certificate signed by `ca`.
    pub client: Pair,
    /// A client certificate signed by another CA (with the same name as `ca`).
    pub stranger: Pair,
}

fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

fn leaf(
    dir: &Path,
    name: &str,
    sans: &[&str],
    usage: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'static, KeyPair>,
) -> Pair {
    let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(sans).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    let pair = Pair {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    };
    std::fs::write(&pair.cert, cert.pem()).unwrap();
    std::fs::write(&pair.key, key.serialize_pem()).unwrap();
    pair
}

impl Pki {
    /// Generates the certificates into `dir`.
    pub fn generate(dir: &Path) -> Pki {
        let (ca_pem, issuer) = ca("sluice test CA");
        let (_, other) = ca("sluice test CA");
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, ca_pem).unwrap();
        Pki {
            ca,
            server: leaf(
                dir,
                "server",
                &["127.0.0.1", "localhost"],
                ExtendedKeyUsagePurpose::ServerAuth,
                &issuer,
            ),
            client: leaf(
                dir,
                "client",
                &[],
                ExtendedKeyUsagePurpose::ClientAuth,
                &issuer,
            ),
            stranger: leaf(
                dir,
                "stranger",
                &[],
                ExtendedKeyUsagePurpose::ClientAuth,
                &other,
            ),
        }
    }
}
