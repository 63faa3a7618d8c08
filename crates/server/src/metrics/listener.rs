//! The metrics listener: plain HTTP/1.1 that serves `GET /metrics` and nothing else.
//!
//! It has no TLS and no authentication, so the server accepts a non-loopback address
//! for it only with `metrics_allow_remote`. Its output contains no names or data from
//! the database (see the module above), and every other path gets a 404 that names
//! only `GET /metrics`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use engine::Engine;
use http::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::Metrics;

/// The path that serves the metrics.
pub const METRICS_PATH: &str = "/metrics";

/// The content type of the Prometheus text exposition format, version 0.0.4.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Connections served at once. A scraper needs one, and further connections are
/// closed as soon as they are accepted.
const MAX_CONNECTIONS: usize = 16;

/// Time a client has to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Time a connection may stay open in all, including sending the response to a slow
/// reader. Each connection serves one request.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Time in-flight scrapes get to finish after the shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How often a warning about connections closed at the cap may be logged.
const CAP_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Serves `GET /metrics` on `listener` until `shutdown` completes, then gives
/// in-flight scrapes a few seconds to finish.
///
/// Other paths get 404, and other methods on `/metrics` get 405. The engine totals
/// are counted on the blocking thread pool, because they take the engine's read locks.
/// Without an engine, as in gateway mode, they are left out.
pub async fn serve_metrics(
    listener: std::net::TcpListener,
    metrics: Arc<Metrics>,
    engine: Option<Arc<Engine>>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    let mut cap_warning = CapWarning::default();
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "metrics listener: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    cap_warning.closed(peer);
                    continue;
                };
                let metrics = Arc::clone(&metrics);
                let engine = engine.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let _permit = permit;
                    let service = service_fn(move |request: Request<Incoming>| {
                        let metrics = Arc::clone(&metrics);
                        let engine = engine.clone();
                        async move { Ok::<_, Infallible>(respond(metrics, engine, &request).await) }
                    });
                    let mut builder = http1::Builder::new();
                    builder
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_READ_TIMEOUT)
                        .keep_alive(false);
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    match tokio::time::timeout(CONNECTION_TIMEOUT, watcher.watch(connection)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "metrics connection ended with an error");
                        }
                        Err(_) => {
                            tracing::debug!(%peer, timeout = ?CONNECTION_TIMEOUT, "metrics connection timed out");
                        }
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }

    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::debug!(grace = ?SHUTDOWN_GRACE, "closing the remaining metrics connections");
        }
    }
    Ok(())
}

/// Builds the response to one request on the metrics listener.
async fn respond(
    metrics: Arc<Metrics>,
    engine: Option<Arc<Engine>>,
    request: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    if request.uri().path() != METRICS_PATH {
        return text(
            StatusCode::NOT_FOUND,
            "Not found: this listener serves only GET /metrics\n".to_string(),
        );
    }
    if request.method() != Method::GET {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed: use GET /metrics\n".to_string(),
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        return response;
    }

    match tokio::task::spawn_blocking(move || match engine {
        Some(engine) => metrics.render(&engine),
        None => metrics.render_without_engine(),
    })
    .await
    {
        Ok(body) => {
            let mut response = text(StatusCode::OK, body);
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_FORMAT));
            response
        }
        Err(error) => {
            tracing::error!(%error, "rendering the metrics failed");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error: rendering the metrics failed; the server log has details\n"
                    .to_string(),
            )
        }
    }
}

/// Builds a plain-text response that no cache keeps.
fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Logs connections closed at [`MAX_CONNECTIONS`], at most once per
/// [`CAP_WARNING_INTERVAL`], with the number closed since the last warning.
#[derive(Default)]
struct CapWarning {
    last_logged: Option<Instant>,
    closed_since: u64,
}

impl CapWarning {
    fn closed(&mut self, peer: SocketAddr) {
        self.closed_since += 1;
        let due = self
            .last_logged
            .is_none_or(|logged| logged.elapsed() >= CAP_WARNING_INTERVAL);
        if due {
            tracing::warn!(
                %peer,
                closed = self.closed_since,
                max_connections = MAX_CONNECTIONS,
                "metrics listener at its connection limit; closed new connections"
            );
            self.last_logged = Some(Instant::now());
            self.closed_since = 0;
        }
    }
}
