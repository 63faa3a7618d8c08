//! The upstream backend of `ravelin gateway`: a Chroma server reached over HTTP or
//! HTTPS.
//!
//! Each operation becomes a request built from the validated values
//! ([`api::encode`]), never from the bytes the client sent, and each response is
//! decoded and checked with the request limits ([`api::upstream`]) and then encoded
//! by Ravelin's own response types. An upstream error maps to the error Chroma's
//! clients expect for it. An upstream that cannot be reached, is too slow or sends
//! something invalid gets the client a 502, 503 or 504 in Chroma's error JSON.
//!
//! Chroma does not check that a collection id in a path belongs to the path's tenant
//! and database, so every collection-id route first resolves the collection through
//! the upstream and compares ([`scope`]). Nothing else is kept between requests, so
//! several gateways can serve before one Chroma.

mod pool;
mod scope;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use api::error::{collection_not_found, ApiError, ErrorKind};
use api::requests::parse_json;
use api::upstream::{self as checked, bad_gateway, UpstreamError};
use api::Limits;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::backend::{ready, written};
use crate::handlers::Reply;
use crate::operation::{Operation, Page};
use crate::routes::Scope;
use pool::{Failure, Pool, PoolLimits, Target};
use scope::ScopeCache;

/// Responses larger than this are decoded on the blocking thread pool, so a large get
/// does not hold up the async workers.
const BLOCKING_DECODE_BYTES: usize = 256 * 1024;

/// The header the upstream token is sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenHeader {
    /// `Authorization: Bearer TOKEN`, Chroma's default for token authentication.
    Authorization,
    /// `X-Chroma-Token: TOKEN`.
    XChromaToken,
}

/// How to reach the upstream Chroma.
#[derive(Clone)]
pub struct UpstreamSettings {
    /// `http://host:port` or `https://host:port`, without a path.
    pub url: String,
    /// CA certificates the upstream's certificate must chain to, PEM. Required for
    /// `https`.
    pub ca: Option<PathBuf>,
    /// Client certificate chain and key, PEM, for an upstream that requires one.
    pub certificate: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Token sent with every request, for an upstream with token authentication.
    pub token: Option<String>,
    pub token_header: TokenHeader,
    /// Time to get a connection: a free pool slot, TCP connect and TLS handshake.
    /// Default 5 s.
    pub connect_timeout: Duration,
    /// Time from sending a request until its whole response has arrived. Default 60 s.
    pub request_timeout: Duration,
    /// Connections open to the upstream at most, and so requests in flight to it.
    /// Default 64.
    pub max_connections: usize,
    /// Largest upstream response body accepted, in bytes. Default 256 MiB.
    pub max_response_bytes: usize,
}

impl std::fmt::Debug for UpstreamSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamSettings")
            .field("url", &self.url)
            .field("ca", &self.ca)
            .field("certificate", &self.certificate)
            .field("key", &self.key)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("token_header", &self.token_header)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish()
    }
}

impl UpstreamSettings {
    /// Settings with the defaults for everything but the URL.
    pub fn new(url: impl Into<String>) -> UpstreamSettings {
        UpstreamSettings {
            url: url.into(),
            ca: None,
            certificate: None,
            key: None,
            token: None,
            token_header: TokenHeader::Authorization,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            max_connections: 64,
            max_response_bytes: 256 * 1024 * 1024,
        }
    }
}

/// An error in the upstream settings, found at startup.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("invalid upstream URL [{url}]: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot resolve the upstream address {authority}: {reason}")]
    Resolve { authority: String, reason: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid PEM file: {detail}")]
    Pem { path: PathBuf, detail: String },
    #[error("the upstream TLS settings are unusable: {0}")]
    Tls(String),
    #[error("the upstream token is not a valid HTTP header value; it must be printable ASCII")]
    Token,
}

/// The upstream Chroma and the connections to it.
pub struct Upstream {
    pool: Pool,
    limits: Arc<Limits>,
    /// The `Host` header of every request.
    authority: HeaderValue,
    /// The token header, marked sensitive so it is never logged.
    token: Option<(http::HeaderName, HeaderValue)>,
    scopes: ScopeCache,
    address: SocketAddr,
}

impl Upstream {
    /// Checks the settings, resolves the upstream's address and loads the TLS files.
    /// Connects to nothing yet.
    pub fn new(settings: &UpstreamSettings, limits: Limits) -> Result<Upstream, SetupError> {
        let url_error = |reason: &str| SetupError::Url {
            url: settings.url.clone(),
            reason: reason.to_string(),
        };
        let uri: Uri = settings
            .url
            .parse()
            .map_err(|_| url_error("not a URL such as http://127.0.0.1:8000"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(url_error("the scheme must be http or https")),
        };
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(url_error(
                "give only the scheme, host and port; the API path is added",
            ));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| url_error("the host is missing"))?;
        if authority.as_str().contains('@') {
            return Err(url_error(
                "credentials in the URL are not supported; use token_file",
            ));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let address = (host, port)
            .to_socket_addrs()
            .map_err(|error| SetupError::Resolve {
                authority: authority.to_string(),
                reason: error.to_string(),
            })?
            .next()
            .ok_or_else(|| SetupError::Resolve {
                authority: authority.to_string(),
                reason: "no address".to_string(),
            })?;

        let tls = if https {
            let name = ServerName::try_from(host.to_string())
                .map_err(|_| url_error("the host is not a valid DNS name or IP address"))?;
            Some((client_tls(settings)?, name))
        } else {
            if settings.ca.is_some() || settings.certificate.is_some() {
                return Err(url_error(
                    "ca and certificate need an https URL; plain http sends them nowhere",
                ));
            }
            None
        };

        let token = match &settings.token {
            None => None,
            Some(token) => {
                let (name, value) = match settings.token_header {
                    TokenHeader::Authorization => (AUTHORIZATION, format!("Bearer {token}")),
                    TokenHeader::XChromaToken => (
                        http::HeaderName::from_static("x-chroma-token"),
                        token.clone(),
                    ),
                };
                let mut value = HeaderValue::from_str(&value).map_err(|_| SetupError::Token)?;
                value.set_sensitive(true);
                Some((name, value))
            }
        };

        Ok(Upstream {
            pool: Pool::new(
                Target { address, tls },
                PoolLimits {
                    max_connections: settings.max_connections.max(1),
                    connect_timeout: settings.connect_timeout,
                    request_timeout: settings.request_timeout,
                    max_response_bytes: settings.max_response_bytes,
                },
            ),
            limits: Arc::new(limits),
            authority: HeaderValue::from_str(authority.as_str())
                .map_err(|_| url_error("the host is not a valid Host header"))?,
            token,
            scopes: ScopeCache::new(),
            address,
        })
    }

    /// Returns the upstream's socket address, resolved once at startup. Every
    /// connection goes to it, so a sandbox may allow connecting to it alone.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Sends `GET /api/v2/heartbeat` and returns why it failed, if it did.
    pub async fn heartbeat(&self) -> Result<(), String> {
        match self.call(Method::GET, "/api/v2/heartbeat", None).await {
            Ok(_) => Ok(()),
            Err(error) => Err(error.message),
        }
    }

    /// Returns the name of collection `id` after checking, through the upstream, that
    /// it lies in the scope's tenant and database. A collection outside them gets the
    /// same not-found error as one that does not exist.
    pub(crate) async fn collection_name(
        &self,
        scope: &Scope,
        id: Uuid,
    ) -> Result<String, ApiError> {
        if let Some(name) = self.scopes.name(scope, id)? {
            return Ok(name);
        }
        let collection = self.fetch_collection_by_id(scope, id).await?;
        Ok(collection.name)
    }

    /// Fetches collection `id` and checks that it lies in the scope.
    async fn fetch_collection_by_id(
        &self,
        scope: &Scope,
        id: Uuid,
    ) -> Result<api::responses::CollectionResponse, ApiError> {
        let path = format!("{}/collections/by-id/{id}", database_path(scope));
        let body = match self.call(Method::GET, &path, None).await {
            Err(error) if error.kind == ErrorKind::NotFound => {
                self.scopes.forget(id);
                return Err(collection_not_found(&id.to_string()));
            }
            other => other?,
        };
        let limits = Arc::clone(&self.limits);
        let collection = decode(body, move |value| {
            checked::decode_collection(value, &limits)
        })
        .await?;
        if collection.id != id.to_string() {
            tracing::error!(requested = %id, returned = %collection.id, "the upstream returned another collection than the one requested");
            return Err(bad_gateway());
        }
        self.scopes.insert(id, &collection);
        if collection.tenant != scope.tenant || collection.database != scope.database {
            return Err(collection_not_found(&id.to_string()));
        }
        Ok(collection)
    }

    /// Runs an operation on the upstream.
    pub(crate) async fn run(&self, operation: Operation) -> Result<Reply, ApiError> {
        let limits = Arc::clone(&self.limits);
        match operation {
            Operation::Healthcheck => {
                let body = self.call(Method::GET, "/api/v2/healthcheck", None).await?;
                let (executor, log_client) = decode(body, checked::decode_health).await?;
                if executor && log_client {
                    ready()
                } else {
                    Reply::ok(
                        &json!({"is_executor_ready": executor, "is_log_client_ready": log_client}),
                    )
                }
            }
            Operation::Reset => {
                let body = self.call(Method::POST, "/api/v2/reset", None).await?;
                self.scopes.clear();
                let reset = decode(body, |value| {
                    value.as_bool().ok_or_else(|| {
                        ApiError::new(ErrorKind::BadGateway, "reset: expected a bool")
                    })
                })
                .await?;
                Reply::ok(&reset)
            }
            Operation::CreateTenant(request) => {
                self.call(Method::POST, "/api/v2/tenants", Some(request.encode()))
                    .await?;
                Reply::ok(&json!({}))
            }
            Operation::GetTenant(tenant) => {
                let body = self
                    .call(Method::GET, &format!("/api/v2/tenants/{tenant}"), None)
                    .await?;
                Reply::ok(&decode(body, checked::decode_tenant).await?)
            }
            Operation::ListDatabases { tenant, page } => {
                let path = format!("/api/v2/tenants/{tenant}/databases{}", query(page));
                let body = self.call(Method::GET, &path, None).await?;
                let max = page.limit.unwrap_or(limits.max_get_limit);
                Reply::ok(&decode(body, move |value| checked::decode_databases(value, max)).await?)
            }
            Operation::CreateDatabase { tenant, request } => {
                let path = format!("/api/v2/tenants/{tenant}/databases");
                self.call(Method::POST, &path, Some(request.encode()))
                    .await?;
                Reply::ok(&json!({}))
            }
            Operation::GetDatabase(scope) => {
                let body = self.call(Method::GET, &database_path(&scope), None).await?;
                let database = decode(body, checked::decode_database).await?;
                if database.name != scope.database || database.tenant != scope.tenant {
                    tracing::error!(
                        "the upstream returned another database than the one requested"
                    );
                    return Err(bad_gateway());
                }
                Reply::ok(&database)
            }
            Operation::DeleteDatabase(scope) => {
                self.call(Method::DELETE, &database_path(&scope), None)
                    .await?;
                self.scopes.forget_database(&scope);
                Reply::ok(&json!({}))
            }
            Operation::ListCollections(scope, page) => {
                let path = format!("{}/collections{}", database_path(&scope), query(page));
                let body = self.call(Method::GET, &path, None).await?;
                let max = page.limit.unwrap_or(limits.max_get_limit);
                let collections = decode(body, move |value| {
                    checked::decode_collections(value, max, &limits)
                })
                .await?;
                if collections
                    .iter()
                    .any(|collection| !in_scope(collection, &scope))
                {
                    tracing::error!(
                        "the upstream listed a collection of another tenant or database"
                    );
                    return Err(bad_gateway());
                }
                Reply::ok(&collections)
            }
            Operation::CountCollections(scope) => {
                let path = format!("{}/collections_count", database_path(&scope));
                let body = self.call(Method::GET, &path, None).await?;
                Reply::ok(&decode(body, checked::decode_count).await?)
            }
            Operation::CreateCollection(scope, request) => {
                let path = format!("{}/collections", database_path(&scope));
                let name = request.name.clone();
                let body = self
                    .call(Method::POST, &path, Some(request.encode()))
                    .await?;
                let collection = self.checked_collection(body, &scope, Some(&name)).await?;
                Reply::ok(&collection)
            }
            Operation::GetCollection(scope, name) => {
                let path = format!("{}/collections/{name}", database_path(&scope));
                let body = self.call(Method::GET, &path, None).await?;
                let collection = self.checked_collection(body, &scope, Some(&name)).await?;
                Reply::ok(&collection)
            }
            Operation::GetCollectionById(scope, id) => {
                Reply::ok(&self.fetch_collection_by_id(&scope, id).await?)
            }
            Operation::UpdateCollection(scope, id, request) => {
                if let Some(new_name) = &request.new_name {
                    self.reject_taken_name(&scope, id, new_name).await?;
                }
                let path = format!("{}/collections/{id}", database_path(&scope));
                let result = self.call(Method::PUT, &path, Some(request.encode())).await;
                // A rename changes the name the policy decides on.
                self.scopes.forget(id);
                result?;
                Reply::ok(&json!({}))
            }
            Operation::DeleteCollection(scope, name) => {
                let path = format!("{}/collections/{name}", database_path(&scope));
                self.call(Method::DELETE, &path, None).await?;
                self.scopes.forget_name(&scope, &name);
                Reply::ok(&json!({}))
            }
            Operation::Write(scope, id, kind, batch) => {
                let operation = match kind {
                    api::requests::WriteKind::Add => "add",
                    api::requests::WriteKind::Upsert => "upsert",
                    api::requests::WriteKind::Update => "update",
                };
                let body = batch.encode();
                drop(batch);
                self.call(
                    Method::POST,
                    &record_path(&scope, id, operation),
                    Some(body),
                )
                .await?;
                written(kind)
            }
            Operation::DeleteRecords(scope, id, request) => {
                let path = record_path(&scope, id, "delete");
                let body = self
                    .call(Method::POST, &path, Some(request.encode()))
                    .await?;
                let deleted = decode(body, checked::decode_deleted).await?;
                Reply::ok(&json!({ "deleted": deleted }))
            }
            Operation::Count(scope, id) => {
                let body = self
                    .call(Method::GET, &record_path(&scope, id, "count"), None)
                    .await?;
                Reply::ok(&decode(body, checked::decode_count).await?)
            }
            Operation::Get(scope, id, request) => {
                let mut max = request.limit.unwrap_or(limits.max_get_limit);
                if let Some(ids) = &request.ids {
                    max = max.min(ids.len());
                }
                let include = request.include.clone();
                let body = self
                    .call(
                        Method::POST,
                        &record_path(&scope, id, "get"),
                        Some(request.encode()),
                    )
                    .await?;
                let response = decode(body, move |value| {
                    checked::decode_get(value, &include, max, &limits)
                })
                .await?;
                Reply::ok(&response)
            }
            Operation::Query(scope, id, request) => {
                let include = request.include.clone();
                let (queries, n_results) = (request.query_embeddings.len(), request.n_results);
                let body = self
                    .call(
                        Method::POST,
                        &record_path(&scope, id, "query"),
                        Some(request.encode()),
                    )
                    .await?;
                let response = decode(body, move |value| {
                    checked::decode_query(value, &include, queries, n_results, &limits)
                })
                .await?;
                Reply::ok(&response)
            }
        }
    }

    /// Fails with 409 when another collection in the scope has the name a rename
    /// requests. Chroma 1.5.9 returns a 500 with its SQL error for such a rename, and
    /// serve returns 409.
    ///
    /// NOTE: a collection created under that name between this check and the rename
    /// still gets Chroma's 500.
    async fn reject_taken_name(&self, scope: &Scope, id: Uuid, name: &str) -> Result<(), ApiError> {
        let path = format!("{}/collections/{name}", database_path(scope));
        let body = match self.call(Method::GET, &path, None).await {
            Ok(body) => body,
            Err(error) if error.kind == ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error),
        };
        let existing = self.checked_collection(body, scope, Some(name)).await?;
        if existing.id == id.to_string() {
            return Ok(());
        }
        Err(ApiError::conflict(format!(
            "Collection [{name}] already exists"
        )))
    }

    /// Decodes a collection the upstream returned for a request in `scope`, checks it
    /// is the one requested, and remembers its scope.
    async fn checked_collection(
        &self,
        body: Bytes,
        scope: &Scope,
        name: Option<&str>,
    ) -> Result<api::responses::CollectionResponse, ApiError> {
        let limits = Arc::clone(&self.limits);
        let collection = decode(body, move |value| {
            checked::decode_collection(value, &limits)
        })
        .await?;
        let named = name.is_none_or(|name| collection.name == name);
        if !in_scope(&collection, scope) || !named {
            tracing::error!("the upstream returned a collection other than the one requested");
            return Err(bad_gateway());
        }
        if let Ok(id) = Uuid::try_parse(&collection.id) {
            self.scopes.insert(id, &collection);
        }
        Ok(collection)
    }

    /// Sends a request and returns the body of a 2xx response; any other status
    /// becomes the client's error.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Bytes, ApiError> {
        let body = match body {
            Some(value) => Bytes::from(serde_json::to_vec(&value).map_err(|error| {
                tracing::error!(%error, "cannot serialize an upstream request");
                ApiError::internal("Internal error: cannot serialize the upstream request")
            })?),
            None => Bytes::new(),
        };
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(HOST, self.authority.clone())
            .header(
                USER_AGENT,
                HeaderValue::from_static(concat!("ravelin-gateway/", env!("CARGO_PKG_VERSION"))),
            );
        if !body.is_empty() {
            builder = builder.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if let Some((name, value)) = &self.token {
            builder = builder.header(name, value.clone());
        }
        let request = builder.body(Full::new(body)).map_err(|error| {
            tracing::error!(%error, "cannot build an upstream request");
            ApiError::internal("Internal error: cannot build the upstream request")
        })?;

        let answer = self.pool.send(request).await.map_err(|failure| {
            tracing::error!(%method, %path, error = %failure, "upstream request failed");
            client_error(&failure)
        })?;
        if answer.status.is_success() {
            return Ok(answer.body);
        }
        let error = UpstreamError::parse(answer.status.as_u16(), &answer.body);
        if error.is_upstream_fault() {
            tracing::error!(%method, %path, status = error.status, error = %error.name, message = %error.message, "the upstream rejected or failed a request");
        }
        Err(error.to_client_error())
    }
}

/// Returns the client's error for a request that got no response.
fn client_error(failure: &Failure) -> ApiError {
    match failure {
        Failure::Busy(_) => ApiError::new(
            ErrorKind::Unavailable,
            "Service unavailable: all connections to the upstream Chroma are busy; retry later",
        ),
        Failure::TimedOut(timeout) => ApiError::new(
            ErrorKind::GatewayTimeout,
            format!(
                "Gateway timeout: the upstream Chroma did not answer within {} s",
                timeout.as_secs()
            ),
        ),
        Failure::TooLarge(limit) => ApiError::new(
            ErrorKind::BadGateway,
            format!("Bad gateway: the upstream response exceeds the gateway's limit of {limit} bytes; request fewer records"),
        ),
        Failure::Connect(_) | Failure::Broken(_) => ApiError::new(
            ErrorKind::BadGateway,
            "Bad gateway: the upstream Chroma cannot be reached; the gateway log has details",
        ),
    }
}

/// Parses a response body as JSON and runs a checking decoder on it, on the blocking
/// pool for a large body. Every failure is logged and becomes a 502.
async fn decode<T, F>(body: Bytes, decoder: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&Value) -> Result<T, ApiError> + Send + 'static,
{
    let large = body.len() > BLOCKING_DECODE_BYTES;
    let run = move || -> Result<T, ApiError> {
        let value = parse_json(&body)?;
        decoder(&value)
    };
    let result = if large {
        tokio::task::spawn_blocking(run).await.map_err(|error| {
            tracing::error!(%error, "decoding an upstream response failed");
            ApiError::internal("Internal error: the request could not be completed")
        })?
    } else {
        run()
    };
    result.map_err(|error| {
        tracing::error!(error = %error.message, "the upstream sent an invalid response");
        bad_gateway()
    })
}

fn in_scope(collection: &api::responses::CollectionResponse, scope: &Scope) -> bool {
    collection.tenant == scope.tenant && collection.database == scope.database
}

/// Returns the path of a database. Names are validated to `[A-Za-z0-9._-]`, so they
/// need no escaping.
fn database_path(scope: &Scope) -> String {
    format!(
        "/api/v2/tenants/{}/databases/{}",
        scope.tenant, scope.database
    )
}

fn record_path(scope: &Scope, id: Uuid, operation: &str) -> String {
    format!("{}/collections/{id}/{operation}", database_path(scope))
}

fn query(page: Page) -> String {
    match page.limit {
        Some(limit) => format!("?limit={limit}&offset={}", page.offset),
        None => format!("?offset={}", page.offset),
    }
}

/// Builds the TLS client configuration: the upstream CA, and the client certificate
/// when one is set.
fn client_tls(settings: &UpstreamSettings) -> Result<tokio_rustls::TlsConnector, SetupError> {
    let ca = settings.ca.as_ref().ok_or_else(|| {
        SetupError::Tls("an https upstream needs ca, the CA file its certificate chains to".into())
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in pem_certificates(ca)? {
        roots
            .add(certificate)
            .map_err(|error| SetupError::Tls(format!("{}: {error}", ca.display())))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| SetupError::Tls(error.to_string()))?
        .with_root_certificates(roots);
    let mut config = match (&settings.certificate, &settings.key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(certificate), Some(key)) => {
            let chain = pem_certificates(certificate)?;
            let pem = read(key)?;
            let key_der = PrivateKeyDer::from_pem_slice(&pem).map_err(|error| SetupError::Pem {
                path: key.clone(),
                detail: error.to_string(),
            })?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|error| {
                    SetupError::Tls(format!(
                        "the client certificate does not match its key: {error}"
                    ))
                })?
        }
        _ => {
            return Err(SetupError::Tls(
                "certificate and key must be set together".into(),
            ))
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

fn read(path: &PathBuf) -> Result<Vec<u8>, SetupError> {
    std::fs::read(path).map_err(|source| SetupError::Read {
        path: path.clone(),
        source,
    })
}

fn pem_certificates(path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, SetupError> {
    let pem = read(path)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| SetupError::Pem {
            path: path.clone(),
            detail: error.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(SetupError::Pem {
            path: path.clone(),
            detail: "no certificate".into(),
        });
    }
    Ok(certificates)
}
