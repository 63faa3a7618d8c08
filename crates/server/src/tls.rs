//! The rustls server configuration: TLS 1.3 only, client certificates required and
//! checked against the client CA and, when one is configured, its revocation list.
//!
//! [`ServerTls`] keeps the configuration in force; [`ServerTls::reload`] rereads every
//! file, so a renewed server certificate or a new revocation list applies to the next
//! connection without a restart.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
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
    #[error("{path} holds no PEM certificate revocation list (X509 CRL)")]
    NoRevocationList { path: PathBuf },
    #[error("{path} is not a valid certificate revocation list: {detail}")]
    BadRevocationList { path: PathBuf, detail: String },
    #[error("the server certificate does not match its key or is unusable: {0}")]
    Config(String),
}

/// Paths of the PEM files the server needs.
#[derive(Debug, Clone)]
pub struct TlsPaths {
    pub certificate: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
    /// PEM certificate revocation lists issued by the client CA. A client certificate
    /// listed in one is refused, and so is every client certificate once a list is
    /// past its next-update time.
    pub crl: Option<PathBuf>,
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

fn revocation_lists(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let pem = read(path)?;
    let lists = CertificateRevocationListDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::BadRevocationList {
            path: path.to_path_buf(),
            detail: error.to_string(),
        })?;
    if lists.is_empty() {
        return Err(TlsError::NoRevocationList {
            path: path.to_path_buf(),
        });
    }
    Ok(lists)
}

/// Builds the server configuration: TLS 1.3 only, ALPN `http/1.1`, and client
/// certificates required and verified against the client CA and revocation lists.
///
/// Sessions are never resumed, so every connection verifies the client's
/// certificate again, against the revocation lists in force when it connects.
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
    if let Some(crl) = &paths.crl {
        // A list past its next-update time may miss recent revocations, so it fails
        // closed, as OpenSSL-based servers do.
        builder = builder
            .with_crls(revocation_lists(crl)?)
            .enforce_revocation_expiration();
    }
    let verifier = builder.build().map_err(|error| match (&paths.crl, error) {
        (Some(crl), rustls::server::VerifierBuilderError::InvalidCrl(detail)) => {
            let detail = match detail {
                rustls::CertRevocationListError::ParseError => "it is not a version 2 CRL \
                    with the extensions RFC 5280 requires (CRL number and authority key \
                    identifier)"
                    .to_string(),
                other => format!("{other:?}"),
            };
            TlsError::BadRevocationList {
                path: crl.clone(),
                detail,
            }
        }
        (_, error) => TlsError::BadClientCa {
            path: paths.client_ca.clone(),
            detail: error.to_string(),
        },
    })?;

    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|error| TlsError::Config(error.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|error| TlsError::Config(error.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// The TLS configuration in force, and the files it was read from.
pub struct ServerTls {
    paths: TlsPaths,
    current: RwLock<Arc<rustls::ServerConfig>>,
}

impl ServerTls {
    /// Reads every file, failing on the first that is missing or invalid.
    pub fn load(paths: TlsPaths) -> Result<ServerTls, TlsError> {
        let config = server_config(&paths)?;
        Ok(ServerTls {
            paths,
            current: RwLock::new(config),
        })
    }

    /// Returns the configuration for the next connection.
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Rereads every file. On error the configuration in force stays unchanged.
    /// Open connections keep the configuration they were accepted with.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.paths)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = config;
        Ok(())
    }

    pub fn paths(&self) -> &TlsPaths {
        &self.paths
    }
}
