//! The network front: TLS 1.3 with mandatory client certificates, HTTP/1.1, routing,
//! authorization and the Chroma API v2 handlers.
//!
//! A connection is served only after its TLS handshake verified a client certificate
//! against the configured client CA. The certificate's identity is the principal of
//! every request on that connection. For each request the server resolves the route
//! from the method and path, decides authorization from the route alone, and only
//! then reads the body (under a size cap) and decodes it into the `api` crate's typed
//! requests. A [`Backend`] runs the decoded operation: the embedded engine, on the
//! blocking thread pool because its writes wait for the disk, or an upstream Chroma.
//!
//! - [`audit`]: the tamper-evident audit log and its verifier.
//! - [`tls`]: the rustls server configuration.
//! - [`listener`]: the accept loop, handshake timeout and graceful shutdown.
//! - [`metrics`]: Prometheus metrics and the plain-HTTP listener that serves them.
//! - `routes`: the route table.
//! - `handlers`: authentication, authorization, the body and the audit record of each
//!   request.
//! - `operation`: an allowed request decoded into the operation a backend runs.
//! - [`backend`]: the backends and the engine's side of each operation.
//! - [`upstream`]: the upstream Chroma of `ravelin gateway`: its connection pool, the
//!   operations as upstream requests, and the collection scope checks.

pub mod audit;
pub mod backend;
mod handlers;
pub mod listener;
pub mod metrics;
mod operation;
mod parse_errors;
mod routes;
pub mod throttle;
pub mod tls;
pub mod tokens;
pub mod upstream;

use std::sync::Arc;
use std::time::Duration;

use auth::Policy;

pub use backend::Backend;
pub use listener::serve;
pub use metrics::Metrics;
pub use tokens::{TokenSettings, TokenStore};

/// Settings of the HTTP front.
#[derive(Debug, Clone)]
pub struct FrontSettings {
    /// Whether `POST /api/v2/reset` may delete everything. Off by default.
    pub allow_reset: bool,
    /// Maximum request body in bytes. Default 40 MiB, Chroma's default.
    pub max_body_bytes: usize,
    /// Time a client has to complete the TLS handshake. Default 10 s.
    pub handshake_timeout: Duration,
    /// Time a client has to send a request's headers. Default 30 s.
    pub header_read_timeout: Duration,
    /// Time in-flight requests get to finish after a shutdown signal. Default 10 s.
    pub shutdown_grace: Duration,
    /// Time a client has to send a request body. Default 60 s.
    pub body_read_timeout: Duration,
    /// Slowest body transfer accepted once [`Self::body_rate_grace`] has passed, in
    /// bytes per second. Default 16 KiB/s.
    pub min_body_bytes_per_second: u64,
    /// Time a body may take before its rate is checked. Default 5 s.
    pub body_rate_grace: Duration,
    /// Open connections allowed in all. Default 4096.
    pub max_connections: usize,
    /// Open connections allowed from one IP address. Default 1024.
    pub max_connections_per_peer: usize,
    /// Bytes of complete request bodies being decoded and run at once, over all
    /// requests. Default 128 MiB, three bodies of the default maximum size. Decoding a
    /// body takes several times its size, so this bounds that memory.
    pub max_buffered_body_bytes: usize,
}

impl Default for FrontSettings {
    fn default() -> Self {
        FrontSettings {
            allow_reset: false,
            max_body_bytes: 40 * 1024 * 1024,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(60),
            min_body_bytes_per_second: 16 * 1024,
            body_rate_grace: Duration::from_secs(5),
            max_connections: 4096,
            max_connections_per_peer: 1024,
            max_buffered_body_bytes: 128 * 1024 * 1024,
        }
    }
}

/// Everything a request handler needs.
pub struct AppState {
    /// The engine or upstream that runs allowed requests.
    pub backend: Backend,
    pub policy: SharedPolicy,
    /// The token file, when bearer tokens are enabled.
    pub tokens: Option<TokenStore>,
    /// The audit log every authorization decision is appended to.
    pub audit: Option<audit::AuditLog>,
    /// Per-principal request limits.
    pub throttle: throttle::Throttle,
    /// Bytes of request bodies that may be decoded at once, one permit per byte; see
    /// [`FrontSettings::max_buffered_body_bytes`].
    pub body_budget: Arc<tokio::sync::Semaphore>,
    pub settings: FrontSettings,
    /// The server's metrics, counted whether or not a listener serves them.
    pub metrics: Arc<Metrics>,
}

/// The access policy in force. A reload replaces it whole, so a request decides on
/// one version from start to end.
pub struct SharedPolicy(std::sync::RwLock<Arc<Policy>>);

impl SharedPolicy {
    pub fn new(policy: Policy) -> SharedPolicy {
        SharedPolicy(std::sync::RwLock::new(Arc::new(policy)))
    }

    pub fn current(&self) -> Arc<Policy> {
        Arc::clone(
            &self
                .0
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    pub fn replace(&self, policy: Policy) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(policy);
    }
}
