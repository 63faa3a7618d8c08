//! The accept loop: TCP, the TLS handshake under a timeout, then HTTP/1.1.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::handlers;
use crate::metrics::HandshakeFailure;
use crate::parse_errors::ErrorBodies;
use crate::tls::ServerTls;
use crate::AppState;

/// The layer under HTTP: the TLS handshake, or, in a benchmark build
/// only, plain TCP for one fixed principal.
enum Transport {
    Tls(Arc<ServerTls>),
    #[cfg(feature = "insecure-bench")]
    Plaintext(Arc<str>),
}

/// Serves connections from `listener` until `shutdown` completes, then gives in-flight
/// requests the configured grace period to finish.
pub async fn serve(
    listener: std::net::TcpListener,
    tls: Arc<ServerTls>,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    accept_loop(listener, Transport::Tls(tls), state, shutdown).await
}

/// Serves plain HTTP without TLS, every connection as `principal`. Only the
/// `insecure-bench` feature builds it, to measure what TLS costs; release builds never
/// enable that feature.
#[cfg(feature = "insecure-bench")]
pub async fn serve_plaintext(
    listener: std::net::TcpListener,
    principal: &str,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    tracing::warn!(%principal, "serving plain HTTP without TLS or authentication: a benchmark build, never for real data");
    accept_loop(
        listener,
        Transport::Plaintext(principal.into()),
        state,
        shutdown,
    )
    .await
}

async fn accept_loop(
    listener: std::net::TcpListener,
    transport: Transport,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    let graceful = GracefulShutdown::new();
    let gate = Arc::new(ConnectionGate::new(
        state.settings.max_connections,
        state.settings.max_connections_per_peer,
    ));
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Running out of file descriptors and similar conditions pass;
                        // back off briefly instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Some(permit) = gate.admit(peer.ip()) else {
                    tracing::info!(%peer, "refused a connection over the connection limits");
                    drop(stream);
                    continue;
                };
                let state = Arc::clone(&state);
                let watcher = graceful.watcher();
                match &transport {
                    Transport::Tls(tls) => {
                        let acceptor = TlsAcceptor::from(tls.current());
                        tokio::spawn(async move {
                            let _permit = permit;
                            let _tracked = state.metrics.track_connection();
                            let Some((tls_stream, client)) = handshake(&acceptor, &state, stream, peer).await else {
                                return;
                            };
                            serve_http(tls_stream, client, state, watcher).await;
                        });
                    }
                    #[cfg(feature = "insecure-bench")]
                    Transport::Plaintext(principal) => {
                        let client = Client {
                            address: peer,
                            principal: Ok(principal.to_string()),
                            fingerprint: None,
                        };
                        tokio::spawn(async move {
                            let _permit = permit;
                            let _tracked = state.metrics.track_connection();
                            serve_http(stream, client, state, watcher).await;
                        });
                    }
                }
            }
            () = &mut shutdown => break,
        }
    }

    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(state.settings.shutdown_grace) => {
            tracing::warn!(grace = ?state.settings.shutdown_grace, "grace period over; closing remaining connections");
        }
    }
    Ok(())
}

/// Serves HTTP/1.1 requests on one connection until it closes.
async fn serve_http<S>(
    stream: S,
    client: Client,
    state: Arc<AppState>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let peer = client.address;
    let header_read_timeout = state.settings.header_read_timeout;
    let client = Arc::new(client);
    let service = service_fn(move |request: Request<Incoming>| {
        let state = Arc::clone(&state);
        let client = Arc::clone(&client);
        async move { Ok::<_, std::convert::Infallible>(handlers::handle(state, client, request).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(ErrorBodies::new(stream)), service);
    if let Err(error) = watcher.watch(connection).await {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

/// Counts open connections, in all and per IP address, and refuses new ones over the
/// caps. A slow or idle client can thus occupy at most its own share of connections.
struct ConnectionGate {
    max_total: usize,
    max_per_peer: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// An admitted connection; dropping it frees its place.
struct ConnectionPermit {
    gate: Arc<ConnectionGate>,
    peer: IpAddr,
}

impl ConnectionGate {
    fn new(max_total: usize, max_per_peer: usize) -> ConnectionGate {
        ConnectionGate {
            max_total,
            max_per_peer,
            open: Mutex::new((0, HashMap::new())),
        }
    }

    fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<ConnectionPermit> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let (total, per_peer) = &mut *open;
        let from_peer = per_peer.entry(peer).or_insert(0);
        if *total >= self.max_total || *from_peer >= self.max_per_peer {
            if *from_peer == 0 {
                per_peer.remove(&peer);
            }
            return None;
        }
        *from_peer += 1;
        *total += 1;
        Some(ConnectionPermit {
            gate: Arc::clone(self),
            peer,
        })
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut open = self
            .gate
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (total, per_peer) = &mut *open;
        *total = total.saturating_sub(1);
        if let Some(count) = per_peer.get_mut(&self.peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                per_peer.remove(&self.peer);
            }
        }
    }
}

/// The authenticated peer of a connection.
pub(crate) struct Client {
    pub address: SocketAddr,
    /// The principal, or why the verified certificate names none.
    pub principal: Result<String, auth::IdentityError>,
    /// Lowercase hexadecimal SHA-256 of the client certificate, for the audit log.
    pub fingerprint: Option<String>,
}

/// Completes the TLS handshake under the configured timeout. A failure is logged and
/// closes only this connection.
async fn handshake(
    acceptor: &TlsAcceptor,
    state: &AppState,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<(tokio_rustls::server::TlsStream<TcpStream>, Client)> {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
    }
    let deadline = tokio::time::Instant::now() + state.settings.handshake_timeout;

    // A TLS connection starts with a handshake record (byte 0x16), and a plaintext
    // HTTP request with its upper-case method. A plaintext request gets an HTTP error
    // that states what to do, instead of a TLS alert the client cannot read.
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
        Ok(Ok(1)) if first[0].is_ascii_uppercase() => {
            state
                .metrics
                .tls_handshake_failure(HandshakeFailure::PlaintextHttp);
            reject_plaintext(stream, peer).await;
            return None;
        }
        // A connection closed before its first byte is a TCP health check, such as a
        // Kubernetes tcpSocket probe, or a port scan: no handshake was attempted.
        Ok(Ok(0)) => {
            tracing::debug!(%peer, "connection closed before sending any data");
            return None;
        }
        Ok(Ok(_)) => {}
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "connection failed before the TLS handshake");
            return None;
        }
        Err(_) => {
            state
                .metrics
                .tls_handshake_failure(HandshakeFailure::Timeout);
            tracing::info!(%peer, timeout = ?state.settings.handshake_timeout, "TLS handshake timed out");
            return None;
        }
    }

    let tls_stream = match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
        Ok(Ok(tls_stream)) => tls_stream,
        Ok(Err(error)) => {
            state.metrics.tls_handshake_failure(HandshakeFailure::Error);
            tracing::info!(%peer, %error, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            state
                .metrics
                .tls_handshake_failure(HandshakeFailure::Timeout);
            tracing::info!(%peer, timeout = ?state.settings.handshake_timeout, "TLS handshake timed out");
            return None;
        }
    };

    // Unless bearer tokens may stand in for a certificate, the verifier requires one,
    // so a completed handshake has it.
    let leaf = tls_stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first());
    let principal = match leaf {
        Some(leaf) => auth::principal_from_certificate(leaf.as_ref()),
        None => Err(auth::IdentityError::NoCertificate),
    };
    let fingerprint = leaf.map(|leaf| {
        auth::token::hex(ring::digest::digest(&ring::digest::SHA256, leaf.as_ref()).as_ref())
    });
    match &principal {
        Ok(principal) => tracing::debug!(%peer, %principal, "client connected"),
        Err(error) => tracing::warn!(%peer, %error, "client certificate names no usable principal"),
    }
    Some((
        tls_stream,
        Client {
            address: peer,
            principal,
            fingerprint,
        },
    ))
}

/// Rejects a plaintext HTTP request on the TLS port with a 400 in Chroma's error JSON,
/// then closes the connection.
async fn reject_plaintext(mut stream: TcpStream, peer: SocketAddr) {
    use tokio::io::AsyncWriteExt;

    tracing::info!(%peer, "rejected a plaintext HTTP request on the TLS port");
    let body = api::ApiError::invalid(
        "This server accepts only HTTPS (TLS 1.3) with a client certificate; connect with https:// and present a certificate from its client CA",
    )
    .to_json();
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let write = async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    };
    if let Ok(Err(error)) = tokio::time::timeout(std::time::Duration::from_secs(5), write).await {
        tracing::debug!(%peer, %error, "cannot send the plaintext rejection");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_caps_per_peer_and_in_all() {
        let gate = Arc::new(ConnectionGate::new(3, 2));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let first = gate.admit(a).unwrap();
        let _second = gate.admit(a).unwrap();
        assert!(gate.admit(a).is_none(), "per-peer cap");
        let _third = gate.admit(b).unwrap();
        assert!(gate.admit(b).is_none(), "total cap");
        drop(first);
        assert!(gate.admit(a).is_some(), "a freed place is reused");
    }
}
