"""ravelin_client against a small mutual-TLS server written with Python's ``ssl`` module.

These tests need neither the ravelin binary nor the dataset. The stand-in
server serves only the requests that the chromadb client constructors send,
and it records the subject CN of the client certificate of each request.
"""

from __future__ import annotations

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator, List, Optional

import chromadb
import httpx
import pytest
from chromadb.config import Settings

import certs
import ravelin_client

RESPONSES = {
    # The sync client's heartbeat() requests /api/v2/heartbeat, the async one /api/v2.
    "/api/v2": {"nanosecond heartbeat": 1},
    "/api/v2/heartbeat": {"nanosecond heartbeat": 1},
    "/api/v2/auth/identity": {
        "user_id": "",
        "tenant": "default_tenant",
        "databases": ["default_database"],
    },
    "/api/v2/tenants/default_tenant": {"name": "default_tenant", "resource_name": None},
    "/api/v2/tenants/default_tenant/databases/default_database": {
        "id": "00000000-0000-0000-0000-000000000000",
        "name": "default_database",
        "tenant": "default_tenant",
    },
}


class StandInHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (name fixed by http.server)
        self.server.peer_names.append(_peer_common_name(self.connection))
        # The async client adds ?tenant=... to some requests.
        body = RESPONSES.get(self.path.split("?", 1)[0])
        payload = json.dumps(body if body is not None else {"error": "NotFoundError"}).encode()
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args) -> None:
        pass


def _peer_common_name(connection: ssl.SSLSocket) -> Optional[str]:
    peer = connection.getpeercert()
    for entry in (peer or {}).get("subject", ()):
        for key, value in entry:
            if key == "commonName":
                return value
    return None


class StandInServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, context: ssl.SSLContext):
        super().__init__(("127.0.0.1", 0), StandInHandler)
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.peer_names: List[Optional[str]] = []

    def handle_error(self, request, client_address) -> None:
        # Failed handshakes are expected in the rejection tests.
        pass


class Pki:
    def __init__(self, root: Path):
        self.root = root
        ca_cert, ca_key = certs.new_ca("stand-in CA")
        self.ca = root / "ca.pem"
        self.ca.write_bytes(ca_cert.public_bytes(certs.serialization.Encoding.PEM))

        server_cert, server_key = certs.issue(
            ca_cert, ca_key, "localhost", server_names=["localhost", "127.0.0.1"]
        )
        self.server_cert, self.server_key = root / "server.pem", root / "server.key"
        certs.write_pair(server_cert, server_key, self.server_cert, self.server_key)

        clients = root / "pki" / "clients"
        clients.mkdir(parents=True)
        (root / "pki" / "ca.pem").write_bytes(self.ca.read_bytes())
        alice_cert, alice_key = certs.issue(ca_cert, ca_key, "alice")
        self.cert, self.key = clients / "alice.pem", clients / "alice.key"
        certs.write_pair(alice_cert, alice_key, self.cert, self.key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def stand_in(pki) -> Iterator[StandInServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=pki.ca)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    server = StandInServer(context)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture
def peer_names(stand_in) -> List[Optional[str]]:
    stand_in.peer_names.clear()
    return stand_in.peer_names


def test_client_ssl_context_settings(pki):
    context = ravelin_client.client_ssl_context(pki.ca, pki.cert, pki.key)

    assert context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert context.check_hostname is True
    assert context.verify_mode == ssl.CERT_REQUIRED


def test_connect_presents_certificate(pki, stand_in, peer_names):
    client = ravelin_client.connect("127.0.0.1", stand_in.server_port, pki.ca, pki.cert, pki.key)

    assert client.heartbeat() == 1
    # identity, tenant, database, heartbeat
    assert len(peer_names) == 4
    assert set(peer_names) == {"alice"}


def test_connect_by_hostname(pki, stand_in, peer_names):
    client = ravelin_client.connect("localhost", stand_in.server_port, pki.ca, pki.cert, pki.key)

    assert client.heartbeat() == 1
    assert set(peer_names) == {"alice"}


async def _heartbeat_async(port: int, pki: Pki) -> int:
    client = await ravelin_client.connect_async("127.0.0.1", port, pki.ca, pki.cert, pki.key)
    return await client.heartbeat()


@pytest.mark.asyncio
async def test_connect_async_presents_certificate(pki, stand_in, peer_names):
    assert await _heartbeat_async(stand_in.server_port, pki) == 1
    assert len(peer_names) == 4
    assert set(peer_names) == {"alice"}


def test_admin_connect_presents_certificate(pki, stand_in, peer_names):
    admin = ravelin_client.admin_connect(
        "127.0.0.1", stand_in.server_port, pki.ca, pki.cert, pki.key
    )

    tenant = admin.get_tenant("default_tenant")

    assert tenant["name"] == "default_tenant"
    assert peer_names == ["alice"]


def test_connect_data_dir_layout(pki, stand_in, peer_names):
    client = ravelin_client.connect_data_dir(
        pki.root, principal="alice", host="127.0.0.1", port=stand_in.server_port
    )

    assert client.heartbeat() == 1
    assert set(peer_names) == {"alice"}


def test_untrusted_server_rejected(pki, stand_in, tmp_path):
    other_ca, _ = certs.new_ca("other CA")
    other_ca_path = tmp_path / "other-ca.pem"
    other_ca_path.write_bytes(other_ca.public_bytes(certs.serialization.Encoding.PEM))

    with pytest.raises(ravelin_client.ServerConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        ravelin_client.connect("127.0.0.1", stand_in.server_port, other_ca_path, pki.cert, pki.key)


def test_connection_failure_is_value_error(pki, tmp_path):
    # The stock client raises ValueError when it cannot connect, so callers
    # that catch ValueError keep working.
    with pytest.raises(ValueError, match="connection to 127.0.0.1:1 failed"):
        ravelin_client.connect("127.0.0.1", 1, pki.ca, pki.cert, pki.key)


def test_hostname_mismatch_rejected(pki, stand_in):
    # The stand-in certificate names localhost and 127.0.0.1 only.
    context = ravelin_client.client_ssl_context(pki.ca, pki.cert, pki.key)
    with httpx.Client(verify=context) as client:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            client.get(
                f"https://127.0.0.1:{stand_in.server_port}/api/v2/heartbeat",
                extensions={"sni_hostname": "example.invalid"},
            )


@pytest.mark.parametrize("missing", ["ca", "cert", "key"])
def test_missing_file_named(pki, tmp_path, missing):
    paths = {"ca": pki.ca, "cert": pki.cert, "key": pki.key}
    paths[missing] = tmp_path / f"absent-{missing}.pem"

    with pytest.raises(FileNotFoundError) as caught:
        ravelin_client.connect("127.0.0.1", 1, paths["ca"], paths["cert"], paths["key"])

    assert caught.value.filename == str(paths[missing])
    assert str(paths[missing]) in str(caught.value)


def test_caller_settings_not_modified(pki, stand_in):
    settings = Settings(anonymized_telemetry=False)

    client = ravelin_client.connect(
        "127.0.0.1", stand_in.server_port, pki.ca, pki.cert, pki.key, settings=settings
    )

    assert client.heartbeat() == 1
    assert settings.chroma_server_ssl_verify is None
    assert settings.chroma_server_host is None
    assert settings.chroma_server_ssl_enabled is False


def test_caller_headers_sent_not_modified(pki, stand_in):
    headers = {"X-Request-Tag": "helper-test"}

    client = ravelin_client.connect(
        "127.0.0.1", stand_in.server_port, pki.ca, pki.cert, pki.key, headers=headers
    )

    assert client.heartbeat() == 1
    assert headers == {"X-Request-Tag": "helper-test"}


def test_untested_version_warns(pki, stand_in, monkeypatch):
    monkeypatch.setattr(chromadb, "__version__", "0.0.1")

    with pytest.warns(RuntimeWarning, match="chromadb 0.0.1 is installed"):
        ravelin_client.connect("127.0.0.1", stand_in.server_port, pki.ca, pki.cert, pki.key)


def test_tested_version_installed():
    assert chromadb.__version__ == ravelin_client.TESTED_CHROMADB_VERSION
