//! The metrics listener over real TCP on 127.0.0.1: requests are written by hand, and
//! the engine behind it is a real one on a temporary store.

#![allow(clippy::unwrap_used)] // Test helpers unwrap: a panic is a test failure.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use api::requests::CreateCollection;
use api::Limits;
use engine::{Engine, DEFAULT_DATABASE, DEFAULT_TENANT};
use ravelin_server::metrics::{serve_metrics, Metrics};
use serde_json::json;
use store::{MasterKey, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Time any one step of a test may take before it fails instead of hanging.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

struct Fixture {
    _dir: tempfile::TempDir,
    address: SocketAddr,
    metrics: Arc<Metrics>,
    engine: Arc<Engine>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<std::io::Result<()>>,
}

impl Fixture {
    async fn start() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::create(&dir.path().join("test.db"), &MasterKey::from_bytes([5; 32])).unwrap();
        let engine = Arc::new(Engine::open(store, Limits::default()).unwrap());
        let metrics = Arc::new(Metrics::new());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve_metrics(
            listener,
            Arc::clone(&metrics),
            Some(Arc::clone(&engine)),
            async move {
                let _ = stopped.await;
            },
        ));
        Fixture {
            _dir: dir,
            address,
            metrics,
            engine,
            stop: Some(stop),
            server,
        }
    }

    /// Sends `request` as is and returns the status code and the body.
    async fn send(&self, request: &str) -> (u16, String, String) {
        let exchange = async {
            let mut stream = TcpStream::connect(self.address).await.unwrap();
            stream.write_all(request.as_bytes()).await.unwrap();
            // The listener closes every connection after one response.
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await.unwrap();
            String::from_utf8(response).unwrap()
        };
        let response = tokio::time::timeout(STEP_TIMEOUT, exchange).await.unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, head.to_ascii_lowercase(), body.to_string())
    }

    async fn get(&self, path: &str) -> (u16, String, String) {
        self.send(&format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        ))
        .await
    }

    /// Scrapes `/metrics` and returns the sample lines.
    async fn scrape(&self) -> Vec<String> {
        let (status, head, body) = self.get("/metrics").await;
        assert_eq!(status, 200, "{head}\n{body}");
        assert!(
            head.contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        body.lines()
            .filter(|line| !line.starts_with('#'))
            .map(str::to_string)
            .collect()
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = tokio::time::timeout(STEP_TIMEOUT, &mut self.server)
            .await
            .unwrap()
            .unwrap();
        result.unwrap();
    }
}

/// Returns the value of the sample line that starts with `series` and a space.
fn sample(lines: &[String], series: &str) -> Option<f64> {
    lines
        .iter()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.parse().unwrap())
}

#[tokio::test]
async fn scrape_shows_requests_and_engine_totals() {
    let fixture = Fixture::start().await;

    let before = fixture.scrape().await;
    assert_eq!(sample(&before, "ravelin_collections"), Some(0.0));
    assert_eq!(sample(&before, "ravelin_tenants"), Some(1.0));
    assert_eq!(
        sample(
            &before,
            "ravelin_requests_total{route=\"records.query\",status=\"200\"}"
        ),
        None
    );

    fixture
        .metrics
        .record_request("records.query", 200, Duration::from_millis(2));
    fixture
        .metrics
        .record_request("records.query", 200, Duration::from_millis(20));
    let request =
        CreateCollection::decode(&json!({"name": "scraped"}), &Limits::default()).unwrap();
    fixture
        .engine
        .create_collection(DEFAULT_TENANT, DEFAULT_DATABASE, request)
        .unwrap();

    let after = fixture.scrape().await;
    assert_eq!(
        sample(
            &after,
            "ravelin_requests_total{route=\"records.query\",status=\"200\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &after,
            "ravelin_request_duration_seconds_count{route=\"records.query\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &after,
            "ravelin_request_duration_seconds_bucket{route=\"records.query\",le=\"0.005\"}"
        ),
        Some(1.0)
    );
    assert_eq!(sample(&after, "ravelin_collections"), Some(1.0));
    assert!(
        !after.iter().any(|line| line.contains("scraped")),
        "a collection name appeared in the metrics"
    );

    fixture.stop().await;
}

#[tokio::test]
async fn other_paths_not_found() {
    let fixture = Fixture::start().await;

    for path in ["/", "/metrics/", "/metricsx", "/api/v2/heartbeat", "/debug"] {
        let (status, _, body) = fixture.get(path).await;
        assert_eq!(status, 404, "GET {path}");
        assert!(!body.contains("ravelin_"), "GET {path} returned {body}");
    }
    let (status, _, _) = fixture.get("/metrics?name=value").await;
    assert_eq!(status, 200, "a query string is ignored");

    fixture.stop().await;
}

#[tokio::test]
async fn other_methods_not_allowed() {
    let fixture = Fixture::start().await;

    for method in ["POST", "PUT", "DELETE", "HEAD"] {
        let (status, head, _) = fixture
            .send(&format!(
                "{method} /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ))
            .await;
        assert_eq!(status, 405, "{method} /metrics");
        assert!(head.contains("allow: get"), "{method}: {head}");
    }

    fixture.stop().await;
}

#[tokio::test]
async fn malformed_request_rejected() {
    let fixture = Fixture::start().await;

    let (status, _, body) = fixture.send("NOT HTTP AT ALL\r\n\r\n").await;
    assert_eq!(status, 400);
    assert!(!body.contains("ravelin_"));
    assert!(!fixture.scrape().await.is_empty(), "still serving");

    fixture.stop().await;
}

#[tokio::test]
async fn shutdown_stops_accepting() {
    let fixture = Fixture::start().await;
    let address = fixture.address;
    fixture.scrape().await;

    fixture.stop().await;

    let connected = tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(address))
        .await
        .unwrap();
    assert!(connected.is_err(), "the listener is closed after shutdown");
}
