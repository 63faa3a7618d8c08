//! A bounded pool of HTTP/1.1 connections to the upstream Chroma, over plain TCP or
//! TLS, built on hyper's client connections.
//!
//! A request holds one of `max_connections` permits from before it takes a connection
//! until its response body is read. It reuses an idle connection when there is one and
//! opens a new one only when there is none, so at most `max_connections` connections
//! are open. A connection goes back to the idle list after a complete response, unless
//! the upstream closed it.
//!
//! A request that was never written, because an idle connection turned out to be
//! closed, is retried once on a new connection. A request that was written is never
//! retried, because the upstream may have applied it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;

/// How to reach the upstream.
pub(crate) struct Target {
    /// The address resolved at startup; every connection goes there.
    pub address: SocketAddr,
    /// The TLS connector and the name the upstream's certificate must carry, for an
    /// `https` upstream.
    pub tls: Option<(TlsConnector, ServerName<'static>)>,
}

/// Bounds of the pool.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolLimits {
    pub max_connections: usize,
    /// Time to wait for a permit, and to open a TCP connection and complete its TLS
    /// handshake.
    pub connect_timeout: Duration,
    /// Time from sending a request until its whole response has arrived.
    pub request_timeout: Duration,
    pub max_response_bytes: usize,
}

/// The failure of an upstream request that got no response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    #[error("all {0} upstream connections stayed busy for the connect timeout")]
    Busy(usize),
    #[error("cannot connect to the upstream: {0}")]
    Connect(String),
    #[error("the upstream did not answer within {0:?}")]
    TimedOut(Duration),
    #[error("the upstream response is over the limit of {0} bytes")]
    TooLarge(usize),
    #[error("the upstream connection failed: {0}")]
    Broken(String),
}

/// A complete response.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

pub(crate) struct Pool {
    target: Target,
    limits: PoolLimits,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl Pool {
    pub(crate) fn new(target: Target, limits: PoolLimits) -> Pool {
        Pool {
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            idle: Mutex::new(Vec::new()),
            target,
            limits,
        }
    }

    /// Sends a request and reads its whole response under the pool's timeouts and
    /// size cap.
    pub(crate) async fn send(&self, request: Request<Full<Bytes>>) -> Result<Answer, Failure> {
        let _permit = tokio::time::timeout(
            self.limits.connect_timeout,
            Arc::clone(&self.permits).acquire_owned(),
        )
        .await
        .map_err(|_| Failure::Busy(self.limits.max_connections))?
        .map_err(|_| Failure::Busy(self.limits.max_connections))?;

        let mut request = request;
        let mut retried = false;
        loop {
            let (mut sender, reused) = match self.take_idle() {
                Some(sender) => (sender, true),
                None => (self.connect().await?, false),
            };
            let sent = tokio::time::timeout(self.limits.request_timeout, async {
                let response = match sender.try_send_request(request).await {
                    Ok(response) => response,
                    Err(mut error) => {
                        return Err(match error.take_message() {
                            Some(unsent) => Sent::NotWritten(Box::new(unsent), error.into_error()),
                            None => Sent::Failed(error.into_error()),
                        })
                    }
                };
                read_response(response, self.limits.max_response_bytes)
                    .await
                    .map_err(Sent::Read)
            })
            .await;

            match sent {
                Err(_) => return Err(Failure::TimedOut(self.limits.request_timeout)),
                Ok(Ok(answer)) => {
                    self.give_back(sender);
                    return Ok(answer);
                }
                Ok(Err(Sent::NotWritten(unsent, error))) if reused && !retried => {
                    tracing::debug!(%error, "an idle upstream connection was closed; retrying on a new one");
                    request = *unsent;
                    retried = true;
                }
                Ok(Err(Sent::NotWritten(_, error) | Sent::Failed(error))) => {
                    return Err(Failure::Broken(error.to_string()))
                }
                Ok(Err(Sent::Read(failure))) => return Err(failure),
            }
        }
    }

    fn take_idle(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(sender) = idle.pop() {
            if !sender.is_closed() && sender.is_ready() {
                return Some(sender);
            }
        }
        None
    }

    fn give_back(&self, sender: SendRequest<Full<Bytes>>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.limits.max_connections {
            idle.push(sender);
        }
    }

    /// Opens a connection and starts its task.
    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, Failure> {
        let timeout = self.limits.connect_timeout;
        tokio::time::timeout(timeout, self.open())
            .await
            .map_err(|_| Failure::Connect(format!("timed out after {timeout:?}")))?
    }

    async fn open(&self) -> Result<SendRequest<Full<Bytes>>, Failure> {
        let address = self.target.address;
        let stream = TcpStream::connect(address)
            .await
            .map_err(|error| Failure::Connect(format!("{address}: {error}")))?;
        // Without it, small requests stall on delayed ACKs.
        let _ = stream.set_nodelay(true);

        match &self.target.tls {
            None => handshake(TokioIo::new(stream)).await,
            Some((connector, name)) => {
                let stream = connector
                    .connect(name.clone(), stream)
                    .await
                    .map_err(|error| Failure::Connect(format!("TLS handshake: {error}")))?;
                handshake(TokioIo::new(stream)).await
            }
        }
    }
}

/// The ways one attempt can fail.
enum Sent {
    /// The request never left, so it may be sent on another connection.
    NotWritten(Box<Request<Full<Bytes>>>, hyper::Error),
    Failed(hyper::Error),
    Read(Failure),
}

async fn handshake<T>(io: TokioIo<T>) -> Result<SendRequest<Full<Bytes>>, Failure>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::handshake(io)
        .await
        .map_err(|error| Failure::Connect(format!("HTTP handshake: {error}")))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "upstream connection closed with an error");
        }
    });
    Ok(sender)
}

/// Reads a whole response body of at most `limit` bytes.
async fn read_response(
    response: http::Response<hyper::body::Incoming>,
    limit: usize,
) -> Result<Answer, Failure> {
    let declared = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(Failure::TooLarge(limit));
    }
    let status = response.status();
    let mut body = response.into_body();
    let mut collected = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| Failure::Broken(error.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if collected.len() + data.len() > limit {
                return Err(Failure::TooLarge(limit));
            }
            collected.extend_from_slice(&data);
        }
    }
    Ok(Answer {
        status,
        body: Bytes::from(collected),
    })
}
