"""Mutual TLS at the server's edge: who can complete a request and who cannot."""

from __future__ import annotations

import datetime
import socket
import ssl
import time

import chromadb.errors
import httpx
import pytest

import certs
import ravelin_client
from conftest import ADMIN_GRANT, RavelinServer, run_ravelin

DB_PATH = "/tenants/default_tenant/databases/default_database"


def context_without_certificate(server: RavelinServer) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_verify_locations(cafile=server.ca)
    return context


def context_with_pair(server: RavelinServer, cert, key, tmp_path, name: str) -> ssl.SSLContext:
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    certs.write_pair(cert, key, cert_path, key_path)
    return ravelin_client.client_ssl_context(server.ca, cert_path, key_path)


def assert_rejected(server: RavelinServer, context: ssl.SSLContext) -> None:
    """Assert that a heartbeat with ``context`` gets no HTTP response at all.

    With TLS 1.3 the client finishes its side of the handshake before the
    server checks the client certificate, so the rejection shows up as a TLS
    alert or a closed connection on the first read.
    """
    with httpx.Client(base_url=server.base_url, verify=context, timeout=10.0) as http:
        with pytest.raises(httpx.TransportError):
            http.get("/heartbeat")


def assert_admin_served(server: RavelinServer) -> None:
    with server.http_client() as http:
        response = http.get("/heartbeat")
    assert response.status_code == 200
    assert "nanosecond heartbeat" in response.json()


def test_no_client_certificate_rejected(server):
    assert_rejected(server, context_without_certificate(server))
    assert_admin_served(server)


def test_certificate_from_other_ca_rejected(server, tmp_path):
    other_ca_cert, other_ca_key = certs.new_ca("ravelin-test other CA")
    # The same subject as the real admin certificate: only the issuer differs.
    cert, key = certs.issue(other_ca_cert, other_ca_key, "admin")

    assert_rejected(server, context_with_pair(server, cert, key, tmp_path, "foreign-admin"))
    assert_admin_served(server)


def test_expired_certificate_rejected(server, tmp_path):
    ca_cert, ca_key = certs.load_pair(server.ca, server.data_dir / "pki" / "ca.key")
    now = certs.utc_now()
    cert, key = certs.issue(
        ca_cert,
        ca_key,
        "admin",
        not_before=now - datetime.timedelta(days=10),
        not_after=now - datetime.timedelta(days=1),
    )

    assert_rejected(server, context_with_pair(server, cert, key, tmp_path, "expired-admin"))
    assert_admin_served(server)


def test_not_yet_valid_certificate_rejected(server, tmp_path):
    ca_cert, ca_key = certs.load_pair(server.ca, server.data_dir / "pki" / "ca.key")
    now = certs.utc_now()
    cert, key = certs.issue(
        ca_cert,
        ca_key,
        "admin",
        not_before=now + datetime.timedelta(days=1),
        not_after=now + datetime.timedelta(days=10),
    )

    assert_rejected(server, context_with_pair(server, cert, key, tmp_path, "future-admin"))
    assert_admin_served(server)


def test_valid_certificate_from_real_ca_accepted(server, tmp_path):
    # Control for the rejection tests: a certificate made the same way but
    # currently valid must be served, so the rejections above are about validity.
    ca_cert, ca_key = certs.load_pair(server.ca, server.data_dir / "pki" / "ca.key")
    cert, key = certs.issue(ca_cert, ca_key, "admin")
    context = context_with_pair(server, cert, key, tmp_path, "fresh-admin")

    with httpx.Client(base_url=server.base_url, verify=context, timeout=10.0) as http:
        response = http.get("/heartbeat")

    assert response.status_code == 200


def test_tls12_client_rejected(server):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.load_verify_locations(cafile=server.ca)
    context.load_cert_chain(server.cert, server.key)

    assert_rejected(server, context)
    assert_admin_served(server)


def test_plain_http_gets_no_api_answer(server):
    request = f"GET /api/v2/heartbeat HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n"
    received = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5.0) as sock:
        sock.sendall(request.encode())
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and len(received) < 65536:
            try:
                chunk = sock.recv(4096)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            received += chunk

    assert b"nanosecond heartbeat" not in received
    assert received.startswith(b"HTTP/1.1 400"), received[:200]
    assert b"InvalidArgumentError" in received
    assert b"HTTPS" in received
    assert_admin_served(server)


def test_issue_client_certificate(server):
    result = run_ravelin(["pki", "issue-client", "stranger", "--data-dir", str(server.data_dir)])

    assert result.returncode == 0, result.stderr
    ca_cert, _ = certs.load_pair(server.ca, server.data_dir / "pki" / "ca.key")
    cert, _ = certs.load_pair(*server.paths("stranger")[1:])
    common_names = cert.subject.get_attributes_for_oid(certs.NameOID.COMMON_NAME)
    assert [attribute.value for attribute in common_names] == ["stranger"]
    cert.verify_directly_issued_by(ca_cert)


def test_issue_client_out_dir(server, tmp_path):
    out_dir = tmp_path / "issued"
    out_dir.mkdir()

    result = run_ravelin(
        [
            "pki",
            "issue-client",
            "carol",
            "--data-dir",
            str(server.data_dir),
            "--out-dir",
            str(out_dir),
        ]
    )

    assert result.returncode == 0, result.stderr
    assert (out_dir / "carol.pem").is_file()
    assert (out_dir / "carol.key").is_file()
    context = ravelin_client.client_ssl_context(
        server.ca, out_dir / "carol.pem", out_dir / "carol.key"
    )
    with httpx.Client(base_url=server.base_url, verify=context, timeout=10.0) as http:
        assert http.get("/heartbeat").status_code == 200


# A principal that the policy does not name gets 403 where no resource is involved
# and 404, as for something missing, on every tenant, database and collection.
FORBIDDEN_ROUTES = [
    ("GET", "/auth/identity", None),
    ("GET", "/pre-flight-checks", None),
    ("POST", "/tenants", {"name": "stranger-tenant"}),
    ("POST", "/reset", None),
]
HIDDEN_ROUTES = [
    ("GET", "/tenants/default_tenant", None),
    ("GET", "/tenants/default_tenant/databases", None),
    ("GET", f"{DB_PATH}", None),
    ("GET", f"{DB_PATH}/collections", None),
    ("GET", f"{DB_PATH}/collections_count", None),
    ("POST", f"{DB_PATH}/collections", {"name": "stranger-made", "get_or_create": False}),
    ("GET", f"{DB_PATH}/collections/owned", None),
    ("DELETE", f"{DB_PATH}/collections/owned", None),
    ("POST", "/tenants/default_tenant/databases", {"name": "stranger-db"}),
]


def test_unauthorized_principal_forbidden(server):
    issued = run_ravelin(["pki", "issue-client", "stranger", "--data-dir", str(server.data_dir)])
    assert issued.returncode == 0, issued.stderr
    owned = server.connect().create_collection("owned", embedding_function=None)
    owned.add(ids=["a"], embeddings=[[1.0, 0.0, 0.0]], documents=["owned by admin"])
    record_routes = [
        ("POST", f"{DB_PATH}/collections/{owned.id}/get", {"ids": ["a"]}),
        (
            "POST",
            f"{DB_PATH}/collections/{owned.id}/query",
            {"query_embeddings": [[1.0, 0.0, 0.0]]},
        ),
        (
            "POST",
            f"{DB_PATH}/collections/{owned.id}/add",
            {"ids": ["b"], "embeddings": [[0.0, 1.0, 0.0]]},
        ),
        ("POST", f"{DB_PATH}/collections/{owned.id}/delete", {"ids": ["a"]}),
        ("GET", f"{DB_PATH}/collections/{owned.id}/count", None),
        ("PUT", f"{DB_PATH}/collections/{owned.id}", {"new_name": "stolen"}),
    ]

    with server.http_client("stranger") as http:
        assert http.get("/heartbeat").status_code == 200
        assert http.get("/").status_code == 200
        version = http.get("/version")
        assert version.status_code == 200
        assert isinstance(version.json(), str)

        for method, path, body in FORBIDDEN_ROUTES:
            response = http.request(method, path, json=body)
            assert response.status_code == 403, (
                f"{method} {path}: {response.status_code} {response.text}"
            )
            assert response.json()["error"] == "AuthError", f"{method} {path}: {response.text}"
        for method, path, body in HIDDEN_ROUTES + record_routes:
            response = http.request(method, path, json=body)
            assert response.status_code == 404, (
                f"{method} {path}: {response.status_code} {response.text}"
            )
            assert response.json()["error"] == "NotFoundError", f"{method} {path}: {response.text}"

    admin = server.connect()
    assert [c.name for c in admin.list_collections()] == ["owned"]
    assert owned.count() == 1
    assert owned.get(ids=["a"])["documents"] == ["owned by admin"]


def test_unauthorized_principal_stock_client(server):
    issued = run_ravelin(["pki", "issue-client", "stranger", "--data-dir", str(server.data_dir)])
    assert issued.returncode == 0, issued.stderr

    with pytest.raises(chromadb.errors.ChromaAuthError):
        server.connect("stranger")


NARROW_GRANTS = ADMIN_GRANT + """
[[grant]]
principal = "ingest"
actions = ["read", "write"]
tenant = "default_tenant"
database = "default_database"
collection = "articles"
"""


def test_narrow_grant_stock_client_connects(server_factory):
    """Found by trying the documented example: the stock client reads the tenant and
    database records when it connects, so a principal granted one collection must be
    able to read them, and still nothing else."""
    first = server_factory.start()
    data_dir = first.data_dir
    first.stop()
    (data_dir / "policy.toml").chmod(0o600)
    (data_dir / "policy.toml").write_text(NARROW_GRANTS)
    issued = run_ravelin(["pki", "issue-client", "ingest", "--data-dir", str(data_dir)])
    assert issued.returncode == 0, issued.stderr
    server = server_factory.start(data_dir=data_dir)

    server.connect().create_collection("articles", embedding_function=None)
    server.connect().create_collection("private", embedding_function=None)

    client = server.connect("ingest")
    articles = client.get_collection("articles", embedding_function=None)
    articles.add(ids=["a"], embeddings=[[1.0, 0.0]], documents=["granted"])
    assert articles.count() == 1

    # A collection outside the grant gets the not-found error of a missing one;
    # creating one in the database the grant reaches is forbidden.
    with pytest.raises(chromadb.errors.NotFoundError, match=r"Collection \[private\] does not exist"):
        client.get_collection("private", embedding_function=None)
    with pytest.raises(chromadb.errors.ChromaAuthError) as denied:
        client.create_collection("other", embedding_function=None)
    assert "ingest" in str(denied.value)
    assert "admin" in str(denied.value)
