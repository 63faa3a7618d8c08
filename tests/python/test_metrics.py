"""The Prometheus metrics listener of `ravelin serve --metrics-listen`."""

from __future__ import annotations

import socket
import time
from typing import Dict

import httpx
import pytest

from conftest import RavelinServer, free_port, run_ravelin, run_ravelin_to_exit

SCRAPE_TIMEOUT_S = 10.0


@pytest.fixture
def metrics_server(server_factory):
    """A server with its metrics listener on a free port, and that port."""
    port = free_port()
    server = server_factory.start(extra_args=["--metrics-listen", f"127.0.0.1:{port}"])
    return server, port


def metrics_client() -> httpx.Client:
    # trust_env=False: a proxy from the environment must not carry loopback requests.
    return httpx.Client(timeout=SCRAPE_TIMEOUT_S, trust_env=False)


def scrape(port: int) -> Dict[str, float]:
    """Return every sample on ``/metrics``, keyed by its series as written."""
    with metrics_client() as http:
        response = http.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for line in response.text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, value = line.rsplit(" ", 1)
        samples[series] = float(value)
    return samples


def requests_total(samples: Dict[str, float]) -> float:
    return sum(
        value for series, value in samples.items() if series.startswith("ravelin_requests_total")
    )


def test_engine_gauges_follow_collections(metrics_server):
    server, port = metrics_server
    before = scrape(port)
    assert before["ravelin_tenants"] == 1
    assert before["ravelin_databases"] == 1
    assert before["ravelin_collections"] == 0
    assert before["ravelin_records"] == 0
    build_info = [value for series, value in before.items() if series.startswith("ravelin_build_info{")]
    assert build_info == [1]

    client = server.connect()
    collection = client.create_collection("metrics-secret-name")
    collection.add(ids=["a", "b", "c"], embeddings=[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    after = scrape(port)

    assert after["ravelin_collections"] == 1
    assert after["ravelin_records"] == 3
    assert not any("metrics-secret-name" in series for series in after)

    # The client's create and add, at least, were counted.
    assert requests_total(after) >= requests_total(before) + 2


def test_metrics_not_served_on_tls_port(metrics_server):
    server, _ = metrics_server
    with httpx.Client(verify=server.ssl_context(), timeout=30.0) as http:
        response = http.get(f"https://127.0.0.1:{server.port}/metrics")

    assert response.status_code == 404
    assert "ravelin_" not in response.text


@pytest.mark.parametrize("path", ["/", "/metrics/extra", "/api/v2/heartbeat", "/debug/vars"])
def test_other_paths_not_found(metrics_server, path):
    _, port = metrics_server
    with metrics_client() as http:
        response = http.get(f"http://127.0.0.1:{port}{path}")

    assert response.status_code == 404
    assert "ravelin_" not in response.text


def test_other_methods_not_allowed(metrics_server):
    _, port = metrics_server
    with metrics_client() as http:
        response = http.post(f"http://127.0.0.1:{port}/metrics", content=b"x")

    assert response.status_code == 405
    assert response.headers["allow"] == "GET"


def test_metrics_listener_logged(metrics_server):
    server, port = metrics_server
    assert f"serving Prometheus metrics on http://127.0.0.1:{port}/metrics" in server.stderr_text()


def test_metrics_off_by_default(server: RavelinServer):
    assert "serving Prometheus metrics" not in server.stderr_text()


def test_metrics_port_in_use_stops_startup(tmp_path):
    data_dir = tmp_path / "data"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        result = run_ravelin_to_exit(
            [
                "serve",
                "--data-dir",
                str(data_dir),
                "--listen",
                f"127.0.0.1:{free_port()}",
                "--metrics-listen",
                f"127.0.0.1:{busy}",
            ]
        )

    assert result.returncode != 0
    assert f"cannot listen for metrics on 127.0.0.1:{busy}" in result.stderr
    assert not data_dir.exists(), "nothing is created when the metrics port is in use"


def test_failures_and_denials_counted(metrics_server):
    server, port = metrics_server
    issued = run_ravelin(["pki", "issue-client", "stranger", "--data-dir", str(server.data_dir)])
    assert issued.returncode == 0, issued.stderr
    before = scrape(port)

    with server.http_client("stranger") as stranger:
        assert stranger.get("/tenants/default_tenant/databases").status_code == 404
        assert stranger.post("/tenants", json={"name": "t"}).status_code == 403
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as plain:
        plain.sendall(b"GET /api/v2/heartbeat HTTP/1.1\r\nHost: x\r\n\r\n")
        plain.recv(1024)
    after = scrape(port)

    def grew(series: str) -> float:
        return after.get(series, 0) - before.get(series, 0)

    assert grew('ravelin_authorization_denials_total{kind="hidden"}') == 1
    assert grew('ravelin_authorization_denials_total{kind="forbidden"}') == 1
    assert grew('ravelin_tls_handshake_failures_total{reason="plaintext_http"}') == 1
    assert grew('ravelin_requests_total{route="databases.list",status="404"}') == 1
    assert not any("stranger" in series for series in after), "no principal in a label"


def test_connection_without_data_is_no_handshake_failure(metrics_server):
    """A TCP health check (connect, then close) is neither counted nor logged as a failed handshake."""
    server, port = metrics_server
    before = scrape(port)

    for _ in range(3):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10):
            pass
    deadline = time.monotonic() + 10
    after = scrape(port)
    while after.get("ravelin_open_connections", 0) > before.get("ravelin_open_connections", 0):
        assert time.monotonic() < deadline, "the closed connections are still open"
        time.sleep(0.05)
        after = scrape(port)

    failures = [series for series in after if series.startswith("ravelin_tls_handshake_failures_total")]
    for series in failures:
        assert after[series] == before.get(series, 0), series
    assert "TLS handshake failed" not in server.log_path.read_text()
