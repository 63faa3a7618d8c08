"""Connection, time and per-principal limits of the HTTPS front, and the query
deadline, each set low in `[network]` or `[limits]` so a test can reach it."""

from __future__ import annotations

import socket
import ssl
import time

import numpy as np
import pytest

from conftest import RavelinServer

COLLECTIONS = "/api/v2/tenants/default_tenant/databases/default_database/collections"


def start(server_factory, tmp_path, config: str) -> RavelinServer:
    path = tmp_path / "ravelin.toml"
    path.write_text(config, encoding="utf-8")
    return server_factory.start(extra_args=["--config", str(path)])


def tls_connect(server: RavelinServer, source: str = "127.0.0.1") -> ssl.SSLSocket:
    """Open a TLS connection with the admin certificate from the given source address."""
    raw = socket.create_connection((server.host, server.port), timeout=10, source_address=(source, 0))
    return server.ssl_context("admin").wrap_socket(raw, server_hostname=server.host)


def request_bytes(server: RavelinServer, method: str, path: str, body: bytes = b"") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: {server.host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def read_response(sock: ssl.SSLSocket) -> bytes:
    data = b""
    deadline = time.monotonic() + 15
    while b"\r\n\r\n" not in data and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def is_closed(sock: ssl.SSLSocket) -> bool:
    try:
        sock.settimeout(5)
        return sock.recv(1) == b""
    except (ConnectionError, ssl.SSLError, OSError):
        return True


def test_connections_capped_per_peer(server_factory, tmp_path):
    server = start(server_factory, tmp_path, "[network]\nmax_connections_per_peer = 3\n")
    held = [tls_connect(server) for _ in range(3)]
    for sock in held:
        sock.sendall(request_bytes(server, "GET", "/api/v2/heartbeat"))
        assert read_response(sock).startswith(b"HTTP/1.1 200")

    with pytest.raises((ConnectionError, ssl.SSLError, OSError)):
        refused = tls_connect(server)
        refused.sendall(request_bytes(server, "GET", "/api/v2/heartbeat"))
        if not read_response(refused):
            raise ConnectionError("closed without a response")

    other_peer = tls_connect(server, source="127.0.0.2")
    other_peer.sendall(request_bytes(server, "GET", "/api/v2/heartbeat"))
    assert read_response(other_peer).startswith(b"HTTP/1.1 200"), "another address is served"

    held.pop().close()
    time.sleep(0.2)
    again = tls_connect(server)
    again.sendall(request_bytes(server, "GET", "/api/v2/heartbeat"))
    assert read_response(again).startswith(b"HTTP/1.1 200"), "a freed place is reused"


def test_trickled_body_times_out(server_factory, tmp_path):
    server = start(
        server_factory,
        tmp_path,
        "[network]\nbody_read_timeout_seconds = 3\nmin_body_bytes_per_second = 1024\n",
    )
    sock = tls_connect(server)
    body = b'{"name": "trickled"}'
    head = request_bytes(server, "POST", COLLECTIONS, body)[: -len(body)]
    sock.sendall(head)

    started = time.monotonic()
    response = b""
    for byte in body:
        try:
            sock.sendall(bytes([byte]))
        except (ConnectionError, ssl.SSLError, OSError):
            break
        time.sleep(0.5)
        sock.settimeout(0.01)
        try:
            response += sock.recv(65536)
        except (TimeoutError, ssl.SSLWantReadError, socket.timeout):
            pass
        if response:
            break

    sock.settimeout(10)
    if not response:
        response = read_response(sock)
    assert response.startswith(b"HTTP/1.1 408"), response[:200]
    assert time.monotonic() - started < 8
    with server.http_client() as client:
        assert client.get("/heartbeat").status_code == 200
        names = [c["name"] for c in client.get(COLLECTIONS.removeprefix("/api/v2")).json()]
    assert "trickled" not in names


def test_request_rate_per_principal(server_factory, tmp_path):
    server = start(
        server_factory,
        tmp_path,
        "[network]\nrequests_per_second_per_principal = 1\nrequest_burst_per_principal = 3\n",
    )
    with server.http_client() as client:
        responses = [client.get("/tenants/default_tenant") for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert responses[3].headers["retry-after"] == "1"
    assert responses[3].json()["error"] == "RateLimitError"
    time.sleep(1.2)
    with server.http_client() as client:
        assert client.get("/tenants/default_tenant").status_code == 200, "the bucket refills"


def test_query_past_its_deadline_fails_cleanly(server_factory, tmp_path):
    server = start(
        server_factory,
        tmp_path,
        "[limits]\nquery_timeout_ms = 1\nexact_scan_max_vector_bytes = 1073741824\n",
    )
    client = server.connect()
    collection = client.create_collection("deadline", embedding_function=None)
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((20_000, 64)).astype(np.float32)
    for start_row in range(0, len(vectors), 5000):
        rows = range(start_row, start_row + 5000)
        collection.add(ids=[str(i) for i in rows], embeddings=vectors[start_row:start_row + 5000])
    with server.http_client() as http:
        response = http.post(
            f"{COLLECTIONS.removeprefix('/api/v2')}/{collection.id}/query",
            json={"query_embeddings": vectors[:200].tolist(), "n_results": 10, "include": []},
        )
        assert response.status_code == 408, response.text
        assert "time limit of 1 ms" in response.json()["message"]
        assert http.get("/heartbeat").status_code == 200
    assert collection.count() == 20_000


def test_idle_and_slow_header_connections_closed(server_factory, tmp_path):
    server = start(server_factory, tmp_path, "[network]\nheader_read_timeout_seconds = 2\n")
    idle = tls_connect(server)
    idle.sendall(request_bytes(server, "GET", "/api/v2/heartbeat"))
    assert read_response(idle).startswith(b"HTTP/1.1 200")
    slow = tls_connect(server)
    slow.sendall(b"GET /api/v2/heartbeat HTTP/1.1\r\nHost: x\r\n")
    time.sleep(3)
    assert is_closed(idle), "an idle keep-alive connection is closed after the header timeout"
    assert is_closed(slow), "headers that never finish are cut off"


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_buffered_bodies_bounded(server_factory, tmp_path):
    """Bodies of tiny ids expand many times when decoded. The decode budget lets one
    32 MB body in at a time, so memory stays well below six at once."""
    server = start(server_factory, tmp_path, "[network]\nmax_buffered_body_bytes = 41943040\n")
    with server.http_client() as client:
        collection_id = client.post(
            COLLECTIONS.removeprefix("/api/v2"), json={"name": "budget"}
        ).json()["id"]
    ids = ",".join(f'"{n:09d}"' for n in range(2_700_000))
    body = ('{"ids": [' + ids + "]}").encode()
    assert 30_000_000 < len(body) < 35_000_000
    path = f"{COLLECTIONS.removeprefix('/api/v2')}/{collection_id}/get"
    baseline = rss_kib(server.process.pid)
    peak = baseline
    statuses = []

    def send() -> None:
        with server.http_client(timeout=120) as client:
            statuses.append(client.post(path, content=body,
                                        headers={"Content-Type": "application/json"}).status_code)

    import threading

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        peak = max(peak, rss_kib(server.process.pid))
        time.sleep(0.02)
    assert statuses == [400] * 6, "every body is decoded and refused by the batch cap"
    growth_mib = (peak - baseline) / 1024
    assert growth_mib < 750, f"memory grew by {growth_mib:.0f} MiB"


def test_configured_api_limit_named_in_the_error(server_factory, tmp_path):
    server = start(server_factory, tmp_path, "[limits]\nmax_metadata_keys = 2\n")
    with server.http_client() as client:
        collection_id = client.post(
            COLLECTIONS.removeprefix("/api/v2"), json={"name": "keys"}
        ).json()["id"]
        response = client.post(
            f"{COLLECTIONS.removeprefix('/api/v2')}/{collection_id}/add",
            json={"ids": ["a"], "embeddings": [[1.0]], "metadatas": [{"x": 1, "y": 2, "z": 3}]},
        )
        assert response.status_code == 400, response.text
        assert "2" in response.json()["message"]
        count = client.get(f"{COLLECTIONS.removeprefix('/api/v2')}/{collection_id}/count")
    assert count.json() == 0
