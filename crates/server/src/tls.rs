//! The rustls server configuration: TLS 1.3 only, client certificates required.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

/// An error building the TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} is not a valid PEM certificate file: {detail}")]
    BadCertificate { path: PathBuf, detail: String },
    #[error("{path} is not a valid PEM private key: {detail}")]
    BadKey { path: PathBuf, detail: String },
    #[error("the client CA in {path} cannot verify client certificates: {detail}")]
    BadClientCa { path: PathBuf, detail: String },
    #[error("the server certificate does not match its key or is unusable: {0}")]
    Config(String),
}

/// Paths of the PEM files the server needs.
#[derive(Debug, Clone)]
pub struct TlsPaths {
    pub certificate: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
    /// Whether a client may connect without a certificate, to authenticate with a
    /// bearer token instead. A certificate it does present is still verified.
    pub certificate_optional: bool,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::BadCertificate {
            path: path.to_path_buf(),
            detail: error.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certificates)
}

/// Builds the server configuration: TLS 1.3 only, ALPN `http/1.1`, and client
/// certificates required and verified against the client CA.
pub fn server_config(paths: &TlsPaths) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = certificates(&paths.certificate)?;
    let key_pem = read(&paths.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|error| TlsError::BadKey {
        path: paths.key.clone(),
        detail: error.to_string(),
    })?;

    let mut roots = RootCertStore::empty();
    for certificate in certificates(&paths.client_ca)? {
        roots
            .add(certificate)
            .map_err(|error| TlsError::BadClientCa {
                path: paths.client_ca.clone(),
                detail: error.to_string(),
            })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
    if paths.certificate_optional {
        builder = builder.allow_unauthenticated();
    }
    let verifier = builder.build().map_err(|error| TlsError::BadClientCa {
        path: paths.client_ca.clone(),
        detail: error.to_string(),
    })?;

    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|error| TlsError::Config(error.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|error| TlsError::Config(error.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
