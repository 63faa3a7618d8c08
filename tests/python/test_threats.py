"""Hostile input against the real server, one test (or parametrized group) per attack.

Each attack is sent over mutual TLS, as raw HTTP where the exact bytes matter, on
every route that takes that kind of input. Unless a test states more, the expected
outcome is the same for every attack:

- a 4xx status with Chroma's error body ``{"error": NAME, "message": TEXT}``, where
  NAME is the one the stock clients map that status to;
- no stack trace, file path or SQL in the message;
- nothing changed: the collections, their records, a query's results and the file
  names in the data directory are the same before and after;
- the server still serves the next valid request, never returns 5xx, and never
  panics (the autouse fixture ``server_health`` checks the last two for every test).

Rows 1-23 of the project's threat list map to ``test_row_NN_*``. Rows that other
modules already cover get only the variants those modules miss:

- Row 3 (another tenant's collection id): test_authorization.py covers every record
  and collection route across tenants. Added here: an id from another database of
  the same tenant.
- Row 4 (another tenant's name in the path): test_authorization.py covers list and
  create collections and create database. Added here: a foreign tenant that has the
  same database and collection names as the principal's grant.
- Row 5 (a policy that grants nothing, or none): test_credentials.py covers a start
  without a policy and a policy without grants on an empty server. Added here:
  existing data under a policy without grants, a grant without actions, an empty
  file, and a policy path that is a directory.
- Row 6 (bad client certificates): test_tls.py covers no certificate, an expired or
  not yet valid one, and one from another CA. Added here: a certificate signed by a
  leaf, a self-signed copy of the CA's name, a revoked certificate, a revocation list
  replaced on SIGHUP (revoking, broken, past its next update) and unreadable lists.
- Row 7 (malformed credentials): test_credentials.py covers empty and 100 KB
  ``Authorization`` headers, a non-ASCII ``X-Chroma-Token`` and two different tokens
  in the two headers. Added here: two ``Authorization`` headers, non-ASCII bytes and
  control bytes in ``Authorization``, an oversized ``X-Chroma-Token``, and the error
  name of every 401.
  Constant-time comparison is not observable reliably over loopback and is not tested.
- Row 21 (reset and admin routes): test_config.py, test_tls.py, test_credentials.py
  and test_authorization.py cover reset when disabled, without credentials and as a
  principal the policy does not name, and every admin route per principal. Added
  here: reset when enabled, as principals with grants short of server-wide admin and
  without credentials.
- Row 22 (SIGKILL during a large add): covered by test_crash.py, nothing added.
"""

from __future__ import annotations

import base64
import datetime
import json
import re
import select
import signal
import socket
import ssl
import struct
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple
from urllib.parse import quote

import httpx
import numpy as np
import pytest

import certs
import ravelin_client
from conftest import (
    ADMIN_GRANT,
    CRASH_MARKERS,
    RavelinServer,
    ServerExited,
    run_ravelin,
    run_ravelin_to_exit,
)

API = "/api/v2"
DB_PATH = "/tenants/default_tenant/databases/default_database"
COLLECTIONS = f"{DB_PATH}/collections"
DEFAULT_MAX_BODY_BYTES = 40 * 1024 * 1024
MAX_BATCH_SIZE = 5461
MAX_N_RESULTS = 100_000
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
EXACT_SCAN_MAX_VECTOR_BYTES = 4 * 1024 * 1024

# The `error` name each status must carry, as the stock Python client maps names to
# exception classes and the JavaScript client maps statuses.
ERROR_NAMES = {
    400: {"InvalidArgumentError"},
    401: {"AuthorizationError"},
    403: {"AuthError", "ChromaError"},
    404: {"NotFoundError"},
    413: {"BatchSizeExceededError"},
    415: {"InvalidArgumentError"},
    422: {"ChromaError"},
}
INVALID = (400,)
# Chroma 1.5.9 returns 422 ChromaError for JSON of the wrong type or shape (a string
# where a number belongs, an unknown include value), so either status is compatible.
INVALID_OR_SHAPE = (400, 422)
NOT_FOUND = (404,)
TOO_LARGE = (413,)
# A batch over max_batch_size gets 400, or 413 BatchSizeExceededError, the name Chroma
# uses for batch caps. A body over the byte limit gets 413 before any batch check.
OVER_BATCH_CAP = (400, 413)

# Text that must never reach a client in an error message.
LEAK_PATTERNS = [
    re.compile(pattern)
    for pattern in (
        r"/(?:tmp|work|home|root|var|etc|proc)/",
        r"\.rs:\d+",
        r"panicked",
        r"(?i)backtrace",
        r"(?i)sqlite|sqlcipher",
        r"\bSELECT\b.*\bFROM\b",
        r"\bINSERT\s+INTO\b",
        r"(?i)no such (?:table|column)",
        r"(?i)constraint failed",
        r"thread '",
    )
]

# Descriptions of every 5xx response that the helpers saw during the current test.
SERVER_ERRORS: List[str] = []


# Server health, checked after every test.


@pytest.fixture(autouse=True)
def server_health(server_factory):
    """Fail the test when a server it started panicked or any response was a 5xx."""
    SERVER_ERRORS.clear()
    yield
    crashed = [
        server.stderr_text()[-3000:]
        for server in server_factory.servers
        if any(marker in server.stderr_text() for marker in CRASH_MARKERS)
    ]
    assert not crashed, "the server log shows a crash:\n" + "\n\n".join(crashed)
    assert not SERVER_ERRORS, "the server returned 5xx:\n" + "\n".join(SERVER_ERRORS)


def record_response(response: httpx.Response) -> None:
    if response.status_code >= 500:
        response.read()
        request = response.request
        SERVER_ERRORS.append(
            f"{request.method} {request.url.raw_path[:200]!r}: "
            f"{response.status_code} {response.text[:500]}"
        )


def api(server: RavelinServer, principal: str = "admin", timeout: float = 120.0) -> httpx.Client:
    """Return an httpx client for ``principal`` that records every 5xx response."""
    client = server.http_client(principal, timeout=timeout)
    client.event_hooks = {"response": [record_response]}
    return client


# Raw HTTP/1.1 over mutual TLS, for requests whose bytes httpx would change.


@dataclass
class RawResponse:
    status: int
    headers: Dict[str, str]
    body: bytes
    # Request bytes written before the response arrived or the connection failed.
    sent_bytes: int

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self):
        return json.loads(self.body)


class NoResponse(AssertionError):
    """The server closed the connection without a complete HTTP response."""


def open_tls(server: RavelinServer, context: Optional[ssl.SSLContext], timeout: float) -> ssl.SSLSocket:
    context = context or server.ssl_context("admin")
    connection = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    return context.wrap_socket(connection, server_hostname="127.0.0.1")


def receive(sock: ssl.SSLSocket) -> bytes:
    """Read what has arrived, or b"" when the connection is closed or reset."""
    try:
        return sock.recv(65536)
    except (ConnectionResetError, ssl.SSLError, socket.timeout):
        return b""


def poll(sock: ssl.SSLSocket, timeout: float) -> Optional[bytes]:
    """Return application data that has already arrived, b"" on close, None if none.

    TLS 1.3 session tickets make the socket readable with no HTTP data, so a
    readable socket is read without blocking.
    """
    if not sock.pending():
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return None
    sock.setblocking(False)
    try:
        return sock.recv(65536)
    except (ssl.SSLWantReadError, BlockingIOError):
        return None
    except (ConnectionResetError, ssl.SSLError):
        return b""
    finally:
        sock.settimeout(timeout)


def read_response(sock: ssl.SSLSocket, buffer: bytearray, sent: int) -> RawResponse:
    """Read one HTTP/1.1 response, starting with the bytes already in ``buffer``."""
    while b"\r\n\r\n" not in buffer and len(buffer) < MAX_RESPONSE_BYTES:
        chunk = receive(sock)
        if not chunk:
            break
        buffer += chunk
    head, separator, rest = bytes(buffer).partition(b"\r\n\r\n")
    if not separator:
        raise NoResponse(f"no HTTP response after {sent} request bytes, received {head[:200]!r}")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()

    body = bytearray(rest)
    if "content-length" in headers:
        length = int(headers["content-length"])
        while len(body) < length:
            chunk = receive(sock)
            if not chunk:
                break
            body += chunk
        body = body[:length]
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while not body.endswith(b"0\r\n\r\n") and len(body) < MAX_RESPONSE_BYTES:
            chunk = receive(sock)
            if not chunk:
                break
            body += chunk
        body = decode_chunked(bytes(body))
    else:
        while len(body) < MAX_RESPONSE_BYTES:
            chunk = receive(sock)
            if not chunk:
                break
            body += chunk
    return RawResponse(status, headers, bytes(body), sent)


def decode_chunked(data: bytes) -> bytes:
    decoded = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        decoded += data[:size]
        data = data[size + 2 :]
    return bytes(decoded)


def exchange(
    server: RavelinServer,
    head: bytes,
    body: Iterable[bytes] = (),
    *,
    context: Optional[ssl.SSLContext] = None,
    stop_on_response: bool = True,
    timeout: float = 60.0,
) -> RawResponse:
    """Send ``head`` and then the ``body`` chunks, and return the first response.

    When no complete response arrives, the result has status 0 and a body that
    describes what was received. With ``stop_on_response`` sending stops as soon as
    a response arrives, as a client would do when the server rejects a body early.
    A connection the server closes or resets ends the sending either way.
    """
    with open_tls(server, context, timeout) as sock:
        received = bytearray()
        sent = 0
        try:
            sock.sendall(head)
            sent += len(head)
            for chunk in body:
                arrived = poll(sock, timeout)
                if arrived == b"":
                    break
                if arrived:
                    received += arrived
                    if stop_on_response:
                        break
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            # The server closed or reset the connection while the body was being
            # sent, but its response may still be readable.
            pass
        try:
            response = read_response(sock, received, sent)
        except NoResponse as missing:
            response = RawResponse(0, {}, str(missing).encode(), sent)
    if response.status >= 500:
        SERVER_ERRORS.append(f"{head[:200]!r}: {response.status} {response.text[:500]}")
    return response


def request_head(
    method: str,
    path: str,
    headers: Sequence[Tuple[str, str]] = (),
    content_length: Optional[int] = None,
) -> bytes:
    """Build a request head for a path below /api/v2, sent byte for byte as given."""
    lines = [f"{method} {API}{path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    if content_length is not None:
        lines.append(f"Content-Length: {content_length}")
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def raw_request(server: RavelinServer, method: str, path: str, body: bytes = b"", **kwargs) -> RawResponse:
    head = request_head(method, path, content_length=len(body))
    return exchange(server, head, [body] if body else [], **kwargs)


def repeated(block: bytes, total: int, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
    """Yield ``total`` bytes made of ``block`` repeated, in chunks of ``chunk_bytes``."""
    chunk = (block * (chunk_bytes // len(block) + 1))[:chunk_bytes]
    remaining = total
    while remaining > 0:
        yield chunk[:remaining]
        remaining -= len(chunk)


def chunked(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Encode ``chunks`` with HTTP/1.1 chunked transfer coding."""
    for chunk in chunks:
        yield f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    yield b"0\r\n\r\n"


# Checking error responses.


def message_leak(message: str, server: RavelinServer) -> Optional[str]:
    """Return the part of ``message`` that discloses server internals, if any."""
    for pattern in LEAK_PATTERNS:
        match = pattern.search(message)
        if match:
            return match.group(0)
    for private in (str(server.data_dir), server.data_dir.name):
        if private in message:
            return private
    return None


def rejection_problem(
    server: RavelinServer,
    label: str,
    status: int,
    body: bytes,
    statuses: Sequence[int],
) -> Optional[str]:
    """Describe how a response differs from an expected rejection, or return None."""
    excerpt = body[:400].decode("utf-8", errors="replace")
    if status not in statuses:
        return f"{label}: expected HTTP {' or '.join(map(str, statuses))}, got {status} {excerpt}"
    try:
        error = json.loads(body)
    except ValueError:
        return f"{label}: HTTP {status} with a body that is not JSON: {excerpt!r}"
    if not isinstance(error, dict):
        return f"{label}: HTTP {status} without Chroma's error body: {excerpt}"
    if not isinstance(error.get("error"), str) or not isinstance(error.get("message"), str):
        return f"{label}: HTTP {status} without Chroma's error body: {excerpt}"
    names = ERROR_NAMES.get(status)
    if names and error["error"] not in names:
        return f"{label}: HTTP {status} with error {error['error']!r}, expected {sorted(names)}"
    leak = message_leak(error["message"], server)
    if leak:
        return f"{label}: the message discloses {leak!r}: {error['message'][:400]}"
    return None


def check(server: RavelinServer, label: str, response, statuses: Sequence[int]) -> List[str]:
    """Return the problems of an httpx or raw response that should be a rejection."""
    if isinstance(response, RawResponse):
        status, body = response.status, response.body
    else:
        status, body = response.status_code, response.content
    problem = rejection_problem(server, label, status, body, statuses)
    return [problem] if problem else []


def assert_no_problems(problems: List[str]) -> None:
    assert not problems, f"{len(problems)} requests were not rejected as expected:\n" + "\n".join(
        problems
    )


def send(http: httpx.Client, method: str, path: str, body=None) -> httpx.Response:
    """Send a JSON ``body`` (a Python value) or raw bytes."""
    if isinstance(body, (bytes, bytearray)):
        return http.request(
            method, path, content=bytes(body), headers={"Content-Type": "application/json"}
        )
    return http.request(method, path, json=body)


def label_of(method: str, path: str, body=None) -> str:
    """Describe a request on one line, with a long path or body shortened."""
    if body is None:
        text = ""
    elif isinstance(body, bytes):
        text = body.decode("utf-8", errors="replace")
    elif isinstance(body, str):
        text = body
    else:
        text = json.dumps(body)
    if len(text) > 160:
        text = f"{text[:150]}... ({len(text)} bytes)"
    return f"{method} {path[:160]} {text}".rstrip()


# The reference collection and snapshots of everything a request could change.


@dataclass
class Reference:
    """A collection of known records whose state every test compares."""

    id: str
    name: str
    count: int
    dimension: int

    @property
    def path(self) -> str:
        return f"{COLLECTIONS}/{self.id}"


REFERENCE_ROWS = 12


def reference_records(count: int = REFERENCE_ROWS) -> dict:
    return {
        "ids": [f"ref-{i}" for i in range(count)],
        "embeddings": [[float(i), float(i % 3), 1.0] for i in range(count)],
        "documents": [
            f"reference document {i} about {'apples' if i % 2 == 0 else 'pears'}"
            for i in range(count)
        ],
        "metadatas": [
            {"n": i, "kind": "even" if i % 2 == 0 else "odd", "score": i / 4, "tags": [f"t{i % 3}"]}
            for i in range(count)
        ],
        "uris": [f"file:///reference/{i}" for i in range(count)],
    }


def create_reference(server: RavelinServer, name: str = "reference") -> Reference:
    with api(server) as http:
        created = http.post(COLLECTIONS, json={"name": name, "metadata": {"purpose": "reference"}})
        assert created.status_code == 200, created.text
        collection_id = created.json()["id"]
        added = http.post(f"{COLLECTIONS}/{collection_id}/add", json=reference_records())
        assert added.status_code == 201, added.text
    return Reference(collection_id, name, REFERENCE_ROWS, 3)


@pytest.fixture
def ref(server) -> Reference:
    return create_reference(server)


def file_names(root: Path, skip: Sequence[str] = ()) -> List[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.name not in skip)


def data_dir_files(server: RavelinServer) -> List[str]:
    """Return the file names in the data directory without the audit log, which
    records every request."""
    return file_names(server.data_dir, skip=("audit.log",))


def snapshot(
    server: RavelinServer, scopes: Sequence[Tuple[str, str]] = (("default_tenant", "default_database"),)
) -> dict:
    """Read, as admin, everything a rejected request must leave unchanged."""
    state: dict = {"files": data_dir_files(server)}
    with api(server) as http:
        for tenant in sorted({tenant for tenant, _ in scopes}):
            databases = http.get(f"/tenants/{tenant}/databases")
            assert databases.status_code == 200, databases.text
            state[f"databases of {tenant}"] = sorted(d["name"] for d in databases.json())
        for tenant, database in scopes:
            base = f"/tenants/{tenant}/databases/{database}/collections"
            listed = http.get(base)
            assert listed.status_code == 200, listed.text
            for collection in sorted(listed.json(), key=lambda c: c["name"]):
                key = f"{tenant}/{database}/{collection['name']}"
                state[key] = collection
                records = http.post(
                    f"{base}/{collection['id']}/get",
                    json={"include": ["embeddings", "documents", "metadatas", "uris"]},
                )
                assert records.status_code == 200, records.text
                state[f"{key} records"] = records.json()
                count = http.get(f"{base}/{collection['id']}/count")
                state[f"{key} count"] = count.json()
                dimension = collection.get("dimension")
                # Past the exact-scan limit a query uses the HNSW index once its
                # background build finishes, and approximate results may then differ.
                exact = dimension and 4 * dimension * count.json() <= EXACT_SCAN_MAX_VECTOR_BYTES
                if exact:
                    query = http.post(
                        f"{base}/{collection['id']}/query",
                        json={
                            "query_embeddings": [[0.5] * dimension],
                            "n_results": 100,
                            "include": ["distances"],
                        },
                    )
                    assert query.status_code == 200, query.text
                    state[f"{key} query"] = query.json()
    return state


def state_changes(before: dict, after: dict) -> List[str]:
    """Describe each snapshot entry that differs between ``before`` and ``after``."""
    changed = sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))
    return [
        f"state changed: {key}:\n  before {json.dumps(before.get(key))[:600]}\n"
        f"  after  {json.dumps(after.get(key))[:600]}"
        for key in changed
    ]


def assert_unchanged(before: dict, after: dict) -> None:
    changes = state_changes(before, after)
    assert not changes, "rejected requests changed state:\n" + "\n".join(changes)


def assert_serving(server: RavelinServer, ref: Optional[Reference] = None) -> None:
    assert server.is_running(), f"the server exited:\n{server.stderr_text()[-3000:]}"
    with api(server) as http:
        heartbeat = http.get("/heartbeat")
        assert heartbeat.status_code == 200, heartbeat.text
        if ref is not None:
            query = http.post(
                f"{ref.path}/query", json={"query_embeddings": [[1.0, 1.0, 1.0]], "n_results": 3}
            )
            assert query.status_code == 200, query.text
            assert len(query.json()["ids"][0]) == 3


@contextmanager
def unchanged(
    server: RavelinServer, problems: List[str], ref: Optional[Reference] = None, scopes=None
) -> Iterator[None]:
    """Add to ``problems`` what the block changed, and assert that the server still
    serves afterwards."""
    scopes = scopes or (("default_tenant", "default_database"),)
    before = snapshot(server, scopes)
    yield
    assert_serving(server, ref)
    problems += state_changes(before, snapshot(server, scopes))


# Servers with their own configuration, policy and principals.


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def issue_clients(server: RavelinServer, principals: Iterable[str]) -> None:
    for principal in principals:
        issued = run_ravelin(["pki", "issue-client", principal, "--data-dir", str(server.data_dir)])
        assert issued.returncode == 0, issued.stderr


def start_server(factory, tmp_path: Path, config: str = "", policy: Optional[str] = None, extra=()):
    args = list(extra)
    if config:
        args += ["--config", str(write_text(tmp_path / "ravelin.toml", config))]
    if policy is not None:
        args += ["--policy", str(write_text(tmp_path / "policy.toml", policy))]
    return factory.start(extra_args=args)


def context_without_certificate(server: RavelinServer) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_verify_locations(cafile=server.ca)
    return context


def no_certificate_client(server: RavelinServer) -> httpx.Client:
    client = httpx.Client(
        base_url=server.base_url, verify=context_without_certificate(server), timeout=30.0
    )
    client.event_hooks = {"response": [record_response]}
    return client


TOKENS_WITHOUT_CERTIFICATE = "[tokens]\nenabled = true\nwithout_certificate = true\n"


# Row 1: create-collection without credentials, naming a model loader with
# trust_remote_code.

REMOTE_CODE_FUNCTION = {
    "type": "known",
    "name": "sentence_transformer",
    "config": {
        "model_name": "attacker/remote-code-model",
        "trust_remote_code": True,
        "kwargs": {"trust_remote_code": True},
    },
}


def child_processes(pid: int) -> List[str]:
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += (task / "children").read_text().split()
    return children


def outbound_sockets(pid: int, listen_port: int) -> List[str]:
    """Return the process's sockets other than its listener and accepted connections.

    NOTE: this lists only sockets still open when it runs, so a connection opened
    and closed while the request was handled goes unnoticed.
    """
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = str(fd.readlink())
        except OSError:
            continue  # closed since the listing
        match = re.fullmatch(r"socket:\[(\d+)\]", target)
        if match:
            inodes.add(match.group(1))
    found = []
    for table in ("tcp", "tcp6", "udp", "udp6"):
        lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if fields[9] in inodes and local_port != listen_port:
                found.append(f"{table} {fields[1]} -> {fields[2]} state {fields[3]}")
    return found


def test_row_01_remote_code_without_credentials(server_factory, tmp_path):
    server = start_server(server_factory, tmp_path, config=TOKENS_WITHOUT_CERTIFICATE)
    ref = create_reference(server)
    create_body = {
        "name": "planted",
        "configuration": {"embedding_function": REMOTE_CODE_FUNCTION},
        "get_or_create": False,
    }
    modify_body = {"new_configuration": {"embedding_function": REMOTE_CODE_FUNCTION}}
    problems = []

    with unchanged(server, problems, ref):
        with no_certificate_client(server) as anonymous:
            for method, path, body in [
                ("POST", COLLECTIONS, create_body),
                ("POST", COLLECTIONS, dict(create_body, get_or_create=True)),
                ("PUT", ref.path, modify_body),
                # Authentication comes before parsing, so a body that is not JSON gets 401.
                ("POST", COLLECTIONS, b'{"name": "planted", "configuration": {'),
            ]:
                response = send(anonymous, method, path, body)
                problems += check(server, label_of(method, path, body), response, (401,))

        # The 401 must not wait for a declared body that never arrives.
        head = request_head("POST", COLLECTIONS, content_length=1_000_000)
        partial = b'{"name": "planted", "configuration": '
        started = time.monotonic()
        response = exchange(
            server, head, [partial], context=context_without_certificate(server), timeout=20.0
        )
        label = f"POST collections, 1,000,000 bytes declared, {len(partial)} sent"
        problems += check(server, label, response, (401,))
        assert time.monotonic() - started < 10.0, "the 401 waited for the rest of the body"

    assert_no_problems(problems)
    assert child_processes(server.process.pid) == []
    assert outbound_sockets(server.process.pid, server.port) == []
    assert "attacker/remote-code-model" not in server.stderr_text()


# Row 2: the same with valid credentials, on create and on modify, with the flag
# nested deeper.

FUNCTION_CONFIGS = {
    "top-level": {"model_name": "attacker/model", "trust_remote_code": True},
    "in-kwargs": {"model_name": "attacker/model", "kwargs": {"trust_remote_code": True}},
    "nested-object": {"model_name": "attacker/model", "a": {"b": {"c": {"trust_remote_code": True}}}},
    "in-list": {"models": [{"name": "fine"}, {"trust_remote_code": True}]},
    "list-in-list": {"models": [[[{"options": {"trust_remote_code": True}}]]]},
    "string-true": {"trust_remote_code": "true"},
    "number-one": {"trust_remote_code": 1},
    "null": {"trust_remote_code": None},
}

# Raw JSON variants: the key spelled with a JSON escape, and a duplicate key whose
# last value is true (Python's json and orjson keep the last value).
RAW_FUNCTION_CONFIGS = {
    "escaped-key": '{"model_name": "attacker/model", "trust\\u005fremote_code": true}',
    "duplicate-key": '{"trust_remote_code": false, "trust_remote_code": true}',
}


def function_json(config_json: str) -> str:
    return '{"type": "known", "name": "sentence_transformer", "config": ' + config_json + "}"


# Index configurations inside a collection schema that carry an embedding function,
# which the stock client rebuilds when it reads the collection.
SCHEMA_FUNCTION_PLACES = {
    "dense": ("keys", "#embedding", "float_list", "vector_index", "config"),
    "sparse": ("defaults", "sparse_vector", "sparse_vector_index", "config"),
}


def schema_with_function(schema: dict, function_json_text: str, place: Sequence[str]) -> str:
    """Return ``schema`` as JSON with the embedding function placed in the index
    configuration at ``place``."""
    marker = "__FUNCTION__"
    schema = json.loads(json.dumps(schema))
    config = schema
    for key in place:
        config = config[key]
    config["embedding_function"] = marker
    return json.dumps(schema).replace(json.dumps(marker), function_json_text)


def function_requests(ref: Reference, schema: dict, name: str, function: str) -> List[Tuple[str, str, str]]:
    """Return each request that carries an embedding function, as raw JSON text."""
    return [
        ("POST", COLLECTIONS, '{"name": "' + name + '", "configuration": {"embedding_function": '
         + function + '}, "get_or_create": false}'),
        ("POST", COLLECTIONS, '{"name": "' + ref.name + '", "configuration": {"embedding_function": '
         + function + '}, "get_or_create": true}'),
        ("POST", COLLECTIONS, '{"name": "' + name + '", "schema": '
         + schema_with_function(schema, function, SCHEMA_FUNCTION_PLACES["dense"]) + "}"),
        ("POST", COLLECTIONS, '{"name": "' + name + '", "schema": '
         + schema_with_function(schema, function, SCHEMA_FUNCTION_PLACES["sparse"]) + "}"),
        ("PUT", ref.path, '{"new_configuration": {"embedding_function": ' + function + "}}"),
    ]


@pytest.mark.parametrize("variant", list(FUNCTION_CONFIGS) + list(RAW_FUNCTION_CONFIGS))
def test_row_02_remote_code_flag_rejected(server, ref, variant):
    if variant in FUNCTION_CONFIGS:
        config_json = json.dumps(FUNCTION_CONFIGS[variant])
    else:
        config_json = RAW_FUNCTION_CONFIGS[variant]
    function = function_json(config_json)
    with api(server) as http:
        schema = http.get(f"{COLLECTIONS}/{ref.name}").json()["schema"]
    problems = []

    with unchanged(server, problems, ref):
        with api(server) as http:
            for method, path, body in function_requests(ref, schema, "planted", function):
                response = send(http, method, path, body.encode())
                problems += check(server, label_of(method, path, body), response, INVALID)
                if response.status_code == 400 and "trust_remote_code" not in response.text:
                    problems.append(f"{label_of(method, path, body)}: rejected for another reason: {response.text}")

    # The same requests with a harmless configuration succeed, so the rejections
    # above come from the flag.
    harmless = function_json('{"model_name": "all-MiniLM-L6-v2", "trust_remote_code": false}')
    with api(server) as http:
        for method, path, body in function_requests(ref, schema, "harmless", harmless):
            response = send(http, method, path, body.encode())
            assert response.status_code == 200, f"{label_of(method, path, body)}: {response.text}"
            if method == "POST":
                http.delete(f"{COLLECTIONS}/harmless")
    assert_no_problems(problems)
    assert child_processes(server.process.pid) == []


# Row 3: another database's collection id under a granted database's path. Other
# tenants' ids on every route are covered by test_authorization.py.

DATABASE_POLICY = ADMIN_GRANT + """
[[grant]]
principal = "prod-admin"
actions = ["read", "write", "admin"]
tenant = "default_tenant"
database = "prod"
collection = "*"
"""


def record_route_requests(base: str, collection_id: str) -> List[Tuple[str, str, Optional[dict]]]:
    """Return a request for every route that takes a collection id, with a valid body."""
    path = f"{base}/collections/{collection_id}"
    return [
        ("GET", f"{base}/collections/by-id/{collection_id}", None),
        ("PUT", path, {"new_metadata": {"changed": True}}),
        ("POST", f"{path}/add", {"ids": ["planted"], "embeddings": [[1.0, 2.0, 3.0]]}),
        ("POST", f"{path}/upsert", {"ids": ["ref-0"], "embeddings": [[9.0, 9.0, 9.0]]}),
        ("POST", f"{path}/update", {"ids": ["ref-0"], "documents": ["overwritten"]}),
        ("POST", f"{path}/delete", {"ids": ["ref-0"]}),
        ("POST", f"{path}/get", {"ids": ["ref-0"]}),
        ("POST", f"{path}/query", {"query_embeddings": [[1.0, 1.0, 1.0]], "n_results": 1}),
        ("GET", f"{path}/count", None),
    ]


def test_row_03_other_database_collection_id(server_factory, tmp_path):
    server = start_server(server_factory, tmp_path, policy=DATABASE_POLICY)
    issue_clients(server, ["prod-admin"])
    with api(server) as http:
        for database in ("prod", "staging"):
            created = http.post("/tenants/default_tenant/databases", json={"name": database})
            assert created.status_code == 200, created.text
        collection = http.post(
            "/tenants/default_tenant/databases/staging/collections", json={"name": "hidden"}
        )
        staging_id = collection.json()["id"]
        added = http.post(
            f"/tenants/default_tenant/databases/staging/collections/{staging_id}/add",
            json=reference_records(),
        )
        assert added.status_code == 201, added.text
    scopes = [("default_tenant", "staging"), ("default_tenant", "prod")]
    prod = "/tenants/default_tenant/databases/prod"
    random_id = str(uuid.uuid4())
    problems = []

    with unchanged(server, problems, scopes=scopes):
        for principal in ("prod-admin", "admin"):
            with api(server, principal) as http:
                foreign = record_route_requests(prod, staging_id)
                missing = record_route_requests(prod, random_id)
                for (method, path, body), (_, missing_path, _) in zip(foreign, missing):
                    label = f"{principal}: {label_of(method, path, body)}"
                    response = send(http, method, path, body)
                    problems += check(server, label, response, NOT_FOUND)
                    missing_response = send(http, method, missing_path, body)
                    if response.status_code == missing_response.status_code == 404:
                        message = response.json()["message"].replace(staging_id, "ID")
                        missing_message = missing_response.json()["message"].replace(random_id, "ID")
                        if message != missing_message:
                            problems.append(
                                f"{label}: the message differs from a missing id's: "
                                f"{response.text} vs {missing_response.text}"
                            )

    assert_no_problems(problems)


# Row 4: a foreign tenant with the same database and collection names as the grant.

TENANT_POLICY = ADMIN_GRANT + """
[[grant]]
principal = "acme-admin"
actions = ["read", "write", "admin"]
tenant = "acme"
database = "*"
collection = "*"

[[grant]]
principal = "acme-reader"
actions = ["read"]
tenant = "acme"
database = "prod"
collection = "*"
"""


def make_tenant(http: httpx.Client, tenant: str, database: str, collection: str) -> str:
    assert http.post("/tenants", json={"name": tenant}).status_code == 200
    created = http.post(f"/tenants/{tenant}/databases", json={"name": database})
    assert created.status_code == 200, created.text
    base = f"/tenants/{tenant}/databases/{database}"
    created = http.post(f"{base}/collections", json={"name": collection})
    assert created.status_code == 200, created.text
    collection_id = created.json()["id"]
    added = http.post(f"{base}/collections/{collection_id}/add", json=reference_records())
    assert added.status_code == 201, added.text
    return collection_id


def tenant_route_requests(tenant: str, collection_id: str) -> List[Tuple[str, str, Optional[dict]]]:
    base = f"/tenants/{tenant}/databases/prod"
    return [
        ("GET", f"/tenants/{tenant}", None),
        ("GET", f"/tenants/{tenant}/databases", None),
        ("POST", f"/tenants/{tenant}/databases", {"name": "planted"}),
        ("GET", base, None),
        ("DELETE", base, None),
        ("GET", f"{base}/collections", None),
        ("GET", f"{base}/collections_count", None),
        ("POST", f"{base}/collections", {"name": "planted"}),
        ("GET", f"{base}/collections/articles", None),
        ("DELETE", f"{base}/collections/articles", None),
    ] + record_route_requests(base, collection_id)


def test_row_04_foreign_tenant_same_names(server_factory, tmp_path):
    server = start_server(server_factory, tmp_path, policy=TENANT_POLICY)
    issue_clients(server, ["acme-admin", "acme-reader"])
    with api(server) as http:
        make_tenant(http, "acme", "prod", "articles")
        globex_id = make_tenant(http, "globex", "prod", "articles")
    scopes = [("acme", "prod"), ("globex", "prod")]
    problems = []

    with unchanged(server, problems, scopes=scopes):
        for principal in ("acme-admin", "acme-reader"):
            with api(server, principal) as http:
                for method, path, body in tenant_route_requests("globex", globex_id):
                    response = send(http, method, path, body)
                    label = f"{principal}: {label_of(method, path, body)}"
                    problems += check(server, label, response, NOT_FOUND)

    assert_no_problems(problems)


# Row 5: a policy that authenticates but grants nothing, on a server with data.

NO_ACTIONS_POLICY = """
[[grant]]
principal = "admin"
actions = []
tenant = "*"
database = "*"
collection = "*"
"""


def everything_requests(ref: Reference) -> List[Tuple[str, str, Optional[dict], Tuple[int, ...]]]:
    """Return every route with the statuses a principal without grants must get."""
    hidden = [
        (method, path, body, NOT_FOUND)
        for method, path, body in record_route_requests(DB_PATH, ref.id)
    ]
    return hidden + [
        ("GET", "/auth/identity", None, (403,)),
        ("GET", "/pre-flight-checks", None, (403,)),
        ("POST", "/reset", None, (403,)),
        ("POST", "/tenants", {"name": "planted"}, (403,)),
        ("GET", "/tenants/default_tenant", None, NOT_FOUND),
        ("GET", "/tenants/default_tenant/databases", None, NOT_FOUND),
        ("POST", "/tenants/default_tenant/databases", {"name": "planted"}, NOT_FOUND),
        ("GET", DB_PATH, None, NOT_FOUND),
        ("DELETE", DB_PATH, None, NOT_FOUND),
        ("GET", COLLECTIONS, None, NOT_FOUND),
        ("GET", f"{DB_PATH}/collections_count", None, NOT_FOUND),
        ("POST", COLLECTIONS, {"name": "planted"}, NOT_FOUND),
        ("GET", f"{COLLECTIONS}/{ref.name}", None, NOT_FOUND),
        ("DELETE", f"{COLLECTIONS}/{ref.name}", None, NOT_FOUND),
    ]


@pytest.mark.parametrize(
    "policy", ["# grants nothing\n", "", NO_ACTIONS_POLICY], ids=["comment-only", "empty-file", "no-actions"]
)
def test_row_05_existing_data_without_grants(server_factory, tmp_path, policy):
    first = server_factory.start()
    ref = create_reference(first)
    before = snapshot(first)
    first.stop()

    policy_path = write_text(tmp_path / "denying-policy.toml", policy)
    try:
        denying = server_factory.start(data_dir=first.data_dir, extra_args=["--policy", str(policy_path)])
    except ServerExited as exited:
        # Exiting at startup is the other acceptable outcome.
        assert "policy" in exited.server.stderr_text()
        denying = None
    problems = []
    if denying is not None:
        with api(denying) as http:
            for method, path, body, statuses in everything_requests(ref):
                response = send(http, method, path, body)
                problems += check(denying, label_of(method, path, body), response, statuses)
            assert http.get("/heartbeat").status_code == 200
        denying.stop()

    restarted = server_factory.start(data_dir=first.data_dir)
    assert_no_problems(problems)
    assert_unchanged(before, snapshot(restarted))


def test_row_05_policy_directory_rejected(tmp_path):
    policy_dir = tmp_path / "policy.toml"
    policy_dir.mkdir()
    result = run_ravelin_to_exit(
        ["serve", "--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0",
         "--policy", str(policy_dir)],
    )
    assert result.returncode != 0
    assert "Ravelin is serving" not in result.stderr


# Row 6: client certificates the handshake must reject.


def assert_handshake_rejected(server: RavelinServer, context: ssl.SSLContext) -> None:
    with httpx.Client(base_url=server.base_url, verify=context, timeout=10.0) as http:
        with pytest.raises(httpx.TransportError):
            http.get("/heartbeat")


def context_for(server: RavelinServer, cert, key, tmp_path: Path, name: str) -> ssl.SSLContext:
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    certs.write_pair(cert, key, cert_path, key_path)
    return ravelin_client.client_ssl_context(server.ca, cert_path, key_path)


def self_signed_copy_of_ca(server: RavelinServer):
    """Return a self-signed CA certificate with the real CA's subject, and a leaf it signed."""
    real_ca, _ = certs.load_pair(server.ca, server.data_dir / "pki" / "ca.key")
    key = certs.ec.generate_private_key(certs.ec.SECP256R1())
    now = certs.utc_now()
    fake_ca = (
        certs.x509.CertificateBuilder()
        .subject_name(real_ca.subject)
        .issuer_name(real_ca.subject)
        .public_key(key.public_key())
        .serial_number(certs.x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(certs.x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, certs.hashes.SHA256())
    )
    return certs.issue(fake_ca, key, "admin")


@pytest.mark.parametrize("variant", ["signed-by-leaf", "copy-of-ca-name"])
def test_row_06_forged_certificate_rejected(server, ref, tmp_path, variant):
    if variant == "signed-by-leaf":
        # The admin's own leaf certificate acting as a CA for a new "admin" certificate.
        leaf, leaf_key = certs.load_pair(server.cert, server.key)
        cert, key = certs.issue(leaf, leaf_key, "admin")
    else:
        cert, key = self_signed_copy_of_ca(server)
    problems = []

    with unchanged(server, problems, ref):
        assert_handshake_rejected(server, context_for(server, cert, key, tmp_path, variant))

    assert_no_problems(problems)


def revocation_list(ca_cert, ca_key, revoked=(), next_update_hours: float = 24.0) -> bytes:
    """Return a PEM CRL signed by the CA that lists the certificates in ``revoked``."""
    now = certs.utc_now()
    builder = (
        certs.x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - datetime.timedelta(hours=2))
        .next_update(now + datetime.timedelta(hours=next_update_hours))
        # RFC 5280 requires both extensions in every CRL, and rustls refuses one without.
        .add_extension(certs.x509.CRLNumber(1), critical=False)
        .add_extension(
            certs.x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    for cert in revoked:
        builder = builder.add_revoked_certificate(
            certs.x509.RevokedCertificateBuilder()
            .serial_number(cert.serial_number)
            .revocation_date(now - datetime.timedelta(minutes=5))
            .build()
        )
    return builder.sign(ca_key, certs.hashes.SHA256()).public_bytes(certs.serialization.Encoding.PEM)


def start_with_crl(server_factory, tmp_path: Path, crl_for):
    """Start a server whose ``[tls] crl`` file contains ``crl_for(ca_cert, ca_key)``."""
    first = server_factory.start()
    data_dir = first.data_dir
    ca_cert, ca_key = certs.load_pair(first.ca, data_dir / "pki" / "ca.key")
    first.stop()
    crl_path = tmp_path / "clients.crl.pem"
    crl_path.write_bytes(crl_for(ca_cert, ca_key))
    config = write_text(tmp_path / "ravelin.toml", f'[tls]\ncrl = "{crl_path}"\n')
    server = server_factory.start(data_dir=data_dir, extra_args=["--config", str(config)])
    return server, ca_cert, ca_key, crl_path


def assert_handshake_accepted(server: RavelinServer, context: ssl.SSLContext) -> None:
    """The handshake completes; the request may still be refused by the policy."""
    with httpx.Client(base_url=server.base_url, verify=context, timeout=10.0) as http:
        assert http.get("/heartbeat").status_code == 200


def reload_and_wait(server: RavelinServer, message: str) -> None:
    seen = server.stderr_text().count(message)
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10.0
    while server.stderr_text().count(message) == seen:
        assert time.monotonic() < deadline, f"no {message!r} in the log after SIGHUP"
        time.sleep(0.05)


def test_row_06_revoked_certificate_rejected(server_factory, tmp_path):
    revoked = {}

    def crl_for(ca_cert, ca_key):
        revoked["cert"], revoked["key"] = certs.issue(ca_cert, ca_key, "admin")
        return revocation_list(ca_cert, ca_key, [revoked["cert"]])

    server, ca_cert, ca_key, _ = start_with_crl(server_factory, tmp_path, crl_for)
    ref = create_reference(server)
    problems = []

    with unchanged(server, problems, ref):
        assert_handshake_rejected(server, context_for(server, revoked["cert"], revoked["key"], tmp_path, "revoked"))
        # Another certificate of the same CA and principal is not listed.
        cert, key = certs.issue(ca_cert, ca_key, "admin")
        assert_handshake_accepted(server, context_for(server, cert, key, tmp_path, "listed-not"))

    assert_no_problems(problems)
    assert_serving(server, ref)


def test_row_06_revocation_list_reloads_on_sighup(server_factory, tmp_path):
    server, ca_cert, ca_key, crl_path = start_with_crl(
        server_factory, tmp_path, lambda ca_cert, ca_key: revocation_list(ca_cert, ca_key)
    )
    cert, key = certs.issue(ca_cert, ca_key, "admin")
    context = context_for(server, cert, key, tmp_path, "soon-revoked")
    assert_handshake_accepted(server, context)

    crl_path.write_bytes(revocation_list(ca_cert, ca_key, [cert]))
    reload_and_wait(server, "reloaded the TLS certificates and revocation lists")
    assert_handshake_rejected(server, context)
    assert_serving(server)

    # A broken file keeps the list in force.
    crl_path.write_bytes(b"-----BEGIN X509 CRL-----\nnot base64\n-----END X509 CRL-----\n")
    reload_and_wait(server, "cannot reload the TLS files")
    assert_handshake_rejected(server, context)
    assert_serving(server)

    # A list past its next update refuses every client until a fresh one is loaded.
    crl_path.write_bytes(revocation_list(ca_cert, ca_key, next_update_hours=-1.0))
    reload_and_wait(server, "reloaded the TLS certificates and revocation lists")
    assert_handshake_rejected(server, ravelin_client.client_ssl_context(server.ca, server.cert, server.key))
    crl_path.write_bytes(revocation_list(ca_cert, ca_key))
    reload_and_wait(server, "reloaded the TLS certificates and revocation lists")
    assert_handshake_accepted(server, context)
    assert_serving(server)


@pytest.mark.parametrize("content", [b"", b"not a revocation list\n", b"-----BEGIN CERTIFICATE-----\n"])
def test_row_06_unreadable_revocation_list_refuses_start(server_factory, tmp_path, content):
    crl_path = tmp_path / "clients.crl.pem"
    crl_path.write_bytes(content)
    config = write_text(tmp_path / "ravelin.toml", f'[tls]\ncrl = "{crl_path}"\n')
    result = run_ravelin_to_exit(
        ["serve", "--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0", "--config", str(config)]
    )
    assert result.returncode != 0
    assert str(crl_path) in result.stderr
    assert "revocation list" in result.stderr


def test_refused_before_body_closes_connection(server, ref):
    """A request refused before its body is read says ``Connection: close``: the unread
    body stays on the connection, so the server closes it, and a client that reused
    it for its next request would see a disconnect instead of a response."""
    head = (
        f"POST {API}{ref.path}/add HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {DEFAULT_MAX_BODY_BYTES + 1}\r\n\r\n"
    ).encode()
    response = exchange(server, head, [b"{"])
    assert response.status == 413, response.text
    assert response.headers.get("connection", "").lower() == "close", response.headers
    assert_serving(server, ref)


# Row 7: malformed credentials.

TOKENS_ENABLED = "[tokens]\nenabled = true\n"


def create_token(server: RavelinServer, principal: str) -> str:
    created = run_ravelin(
        ["token", "create", "--principal", principal, "--expires", "30d",
         "--data-dir", str(server.data_dir)]
    )
    assert created.returncode == 0, created.stderr
    return created.stdout.strip()


def test_row_07_malformed_credentials(server_factory, tmp_path):
    server = start_server(server_factory, tmp_path, config=TOKENS_ENABLED)
    ref = create_reference(server)
    first, second = create_token(server, "admin"), create_token(server, "admin")
    variants = {
        "two Authorization headers": [
            (b"Authorization", f"Bearer {first}".encode()),
            (b"Authorization", f"Bearer {second}".encode()),
        ],
        "two Authorization headers, same token": [
            (b"Authorization", f"Bearer {first}".encode()),
            (b"Authorization", f"Bearer {first}".encode()),
        ],
        "two X-Chroma-Token headers": [
            (b"X-Chroma-Token", first.encode()),
            (b"X-Chroma-Token", second.encode()),
        ],
        "non-ASCII Authorization": [(b"Authorization", "Bearer rvl_\u00e9\u00e9".encode("utf-8"))],
        "Latin-1 Authorization": [(b"Authorization", b"Bearer " + first.encode()[:-1] + b"\xe9")],
        "empty X-Chroma-Token": [(b"X-Chroma-Token", b"")],
        "100 KB X-Chroma-Token": [(b"X-Chroma-Token", b"rvl_" + b"a" * 100_000)],
        "token with a trailing character": [(b"Authorization", f"Bearer {first}x".encode())],
        "token prefix only": [(b"Authorization", f"Bearer {first[:40]}".encode())],
    }
    problems = []

    with unchanged(server, problems, ref):
        with api(server) as http:
            for name, headers in variants.items():
                for method, path, body in [
                    ("GET", COLLECTIONS, None),
                    ("POST", f"{ref.path}/add", {"ids": ["planted"], "embeddings": [[1.0, 1.0, 1.0]]}),
                ]:
                    response = http.request(method, path, json=body, headers=headers)
                    label = f"{name}: {method} {path}"
                    problems += check(server, label, response, (401, 431))
                    for token in (first, second):
                        if token in response.text or token.split("_")[-1][:16] in response.text:
                            problems.append(f"{label}: the response repeats a token")

    assert_no_problems(problems)


@pytest.mark.parametrize("header", ["Authorization", "X-Chroma-Token"])
@pytest.mark.parametrize("value", [b"Bearer rvl_\x00abc", b"Bearer rvl_abc\x7f", b"Bearer rvl_a\x1bb"],
                         ids=["NUL", "DEL", "ESC"])
def test_row_07_control_bytes_in_credentials(server_factory, tmp_path, header, value):
    server = start_server(server_factory, tmp_path, config=TOKENS_ENABLED)
    ref = create_reference(server)
    if header == "X-Chroma-Token":
        value = value.removeprefix(b"Bearer ")
    head = (
        f"GET {API}{COLLECTIONS} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
        + header.encode() + b": " + value + b"\r\n\r\n"
    )
    problems = []

    with unchanged(server, problems, ref):
        response = exchange(server, head)
        # A control byte makes the header invalid HTTP, so 400 is as right as 401.
        problems += check(server, f"GET collections with {header}: {value!r}", response, (400, 401))

    assert_no_problems(problems)


# Row 8: bodies over the limit, with a truthful length, a false one and chunked.


def post_routes(ref: Reference) -> List[Tuple[str, str]]:
    """Return every route that reads a request body."""
    return [
        ("POST", "/tenants"),
        ("POST", "/tenants/default_tenant/databases"),
        ("POST", COLLECTIONS),
        ("PUT", ref.path),
        ("POST", f"{ref.path}/add"),
        ("POST", f"{ref.path}/upsert"),
        ("POST", f"{ref.path}/update"),
        ("POST", f"{ref.path}/delete"),
        ("POST", f"{ref.path}/get"),
        ("POST", f"{ref.path}/query"),
    ]


def memory_kib(pid: int) -> Dict[str, int]:
    """Return VmRSS and VmHWM (peak resident set) of ``pid`` in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(value.split()[0])
    return values


# The start of an add whose document string never ends.
ENDLESS_DOCUMENT = b'{"ids": ["planted"], "embeddings": [[1, 1, 1]], "documents": ["'
STREAM_BYTES = 45_000_000
SMALL_LIMIT = 1024 * 1024
# Growth of the peak resident set allowed while 45 MB bodies stream into a server
# whose body limit is 1 MiB. Buffering whole bodies would need 45 MB or more.
MEMORY_GROWTH_LIMIT_KIB = 24 * 1024


def endless_document(total: int) -> Iterator[bytes]:
    """Yield ``total`` bytes of an add body whose document never ends."""
    yield ENDLESS_DOCUMENT
    yield from repeated(b"a", total - len(ENDLESS_DOCUMENT))


def test_row_08_declared_length_over_limit(server, ref):
    problems = []

    with unchanged(server, problems, ref):
        for method, path in post_routes(ref):
            # Only the head and the first bytes are sent, and the 413 must not wait for more.
            head = request_head(method, path, content_length=DEFAULT_MAX_BODY_BYTES + 1)
            response = exchange(server, head, [ENDLESS_DOCUMENT], timeout=20.0)
            label = f"{method} {path} with Content-Length {DEFAULT_MAX_BODY_BYTES + 1}"
            problems += check(server, label, response, TOO_LARGE)

        # The whole truthful body, streamed, gets its 413 before the end.
        head = request_head("POST", f"{ref.path}/add", content_length=STREAM_BYTES)
        body = endless_document(STREAM_BYTES)
        response = exchange(server, head, body)
        problems += check(server, f"POST add, {STREAM_BYTES} bytes with a truthful length", response, TOO_LARGE)

    assert_no_problems(problems)


@pytest.mark.parametrize("framing", ["chunked", "false-length", "gzip"])
def test_row_08_streamed_body_bounded(server_factory, tmp_path, framing):
    server = start_server(server_factory, tmp_path, config=f"max_body_bytes = {SMALL_LIMIT}\n")
    ref = create_reference(server)
    assert_serving(server, ref)
    baseline = memory_kib(server.process.pid)
    problems = []

    with unchanged(server, problems, ref):
        for method, path in post_routes(ref):
            stream = endless_document(STREAM_BYTES)
            label = f"{method} {path}, {STREAM_BYTES} bytes {framing}"
            if framing == "chunked":
                head = request_head(method, path, headers=[("Transfer-Encoding", "chunked")])
                response = exchange(server, head, chunked(stream))
                problems += check(server, label, response, TOO_LARGE)
            elif framing == "false-length":
                # Content-Length declares 64 bytes and 45 MB follow. The server must read
                # 64 bytes (invalid JSON) and not buffer the rest as one request.
                head = request_head(method, path, content_length=64)
                response = exchange(server, head, stream, stop_on_response=False)
                problems += check(server, label, response, INVALID_OR_SHAPE)
            else:
                head = request_head(
                    method, path, headers=[("Content-Encoding", "gzip"), ("Transfer-Encoding", "chunked")]
                )
                response = exchange(server, head, chunked(stream))
                problems += check(server, label, response, (413, 415))

    after = memory_kib(server.process.pid)
    assert_no_problems(problems)
    growth = after["VmHWM"] - baseline["VmHWM"]
    assert growth < MEMORY_GROWTH_LIMIT_KIB, (
        f"peak RSS grew by {growth} KiB (from {baseline['VmHWM']} to {after['VmHWM']} KiB) "
        f"while {framing} bodies of {STREAM_BYTES} bytes met a {SMALL_LIMIT}-byte limit"
    )


# Row 9: JSON nested 100,000 levels.

DEEP = 100_000


def deep_array(depth: int) -> str:
    return "[" * depth + "]" * depth


def deep_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def deep_and(depth: int, leaf: str) -> str:
    return '{"$and":[' * depth + leaf + "]}" * depth


def nested_bodies(ref: Reference, depth: int) -> List[Tuple[str, str, str]]:
    """Return a request for every place JSON nesting can reach, nested ``depth`` levels."""
    record = '{"ids": ["planted"], "embeddings": [[1, 1, 1]], "metadatas": [{"m": ' + deep_object(depth) + "}]}"
    where_leaf = '{"n": 1}'
    document_leaf = '{"$contains": "apples"}'
    bodies = []
    for method, path in post_routes(ref):
        bodies.append((method, path, deep_array(depth)))
    for operation in ("add", "upsert", "update"):
        bodies.append(("POST", f"{ref.path}/{operation}", record))
    for operation in ("get", "delete", "query"):
        extra = ', "query_embeddings": [[1, 1, 1]]' if operation == "query" else ""
        bodies += [
            ("POST", f"{ref.path}/{operation}", '{"where": ' + deep_and(depth, where_leaf) + extra + "}"),
            ("POST", f"{ref.path}/{operation}", '{"where": {"n": ' + deep_object(depth) + "}" + extra + "}"),
            ("POST", f"{ref.path}/{operation}",
             '{"where_document": ' + deep_and(depth, document_leaf) + extra + "}"),
        ]
    bodies += [
        ("POST", COLLECTIONS, '{"name": "planted", "metadata": {"m": ' + deep_object(depth) + "}}"),
        ("POST", COLLECTIONS, '{"name": "planted", "configuration": {"embedding_function": '
         '{"type": "known", "name": "default", "config": ' + deep_object(depth) + "}}}"),
        ("PUT", ref.path, '{"new_metadata": {"m": ' + deep_object(depth) + "}}"),
    ]
    return bodies


@pytest.mark.parametrize("depth", [DEEP, 200], ids=["100000-levels", "200-levels"])
def test_row_09_deep_json_rejected(server, ref, depth):
    problems = []

    with unchanged(server, problems, ref):
        with api(server) as http:
            for method, path, body in nested_bodies(ref, depth):
                response = send(http, method, path, body.encode())
                problems += check(server, label_of(method, path, body), response, INVALID_OR_SHAPE)

    assert_no_problems(problems)


def test_row_09_filter_depth_fixed(server, ref):
    """Filters shallower than the JSON limit but deeper than the filter limit are
    rejected, and a shallow one still works."""
    problems = []

    with unchanged(server, problems, ref):
        with api(server) as http:
            for operation in ("get", "delete", "query"):
                extra = {"query_embeddings": [[1.0, 1.0, 1.0]]} if operation == "query" else {}
                for field, leaf in (("where", '{"n": 1}'), ("where_document", '{"$contains": "x"}')):
                    body = '{"' + field + '": ' + deep_and(40, leaf) + "}"
                    merged = json.loads(body) | extra
                    response = http.post(f"{ref.path}/{operation}", json=merged)
                    problems += check(server, f"POST {operation} {field} nested 40 levels", response, INVALID)

            shallow = http.post(f"{ref.path}/get", json={"where": json.loads(deep_and(5, '{"n": 4}'))})
            assert shallow.status_code == 200, shallow.text
            assert shallow.json()["ids"] == ["ref-4"]

    assert_no_problems(problems)


# Row 10: filters with huge clause counts, value lists and patterns.


def huge_filters() -> Dict[str, Tuple[str, str]]:
    """Return (field, JSON) for each oversized filter."""
    million_or = '{"$or": [' + ",".join(['{"n": 1}'] * 1_000_000) + "]}"
    million_document_or = '{"$or": [' + ",".join(['{"$contains": "a"}'] * 1_000_000) + "]}"
    ten_million_in = '{"n": {"$in": [' + ",".join(["1"] * 10_000_000) + "]}}"
    ten_million_nin = '{"n": {"$nin": [' + ",".join(["1"] * 10_000_000) + "]}}"
    regex = json.dumps("a" * 3_000_000)
    return {
        "$or of 1,000,000 clauses": ("where", million_or),
        "$or of 1,000,000 document clauses": ("where_document", million_document_or),
        "$in of 10,000,000 values": ("where", ten_million_in),
        "$nin of 10,000,000 values": ("where", ten_million_nin),
        "3 MB $regex": ("where_document", '{"$regex": ' + regex + "}"),
        "3 MB $not_regex": ("where_document", '{"$not_regex": ' + regex + "}"),
        "3 MB $regex on #document": ("where", '{"#document": {"$regex": ' + regex + "}}"),
        "$or of 1025 clauses": ("where", '{"$or": [' + ",".join(['{"n": 1}'] * 1025) + "]}"),
        "$in of 4097 values": ("where", '{"n": {"$in": [' + ",".join(map(str, range(4097))) + "]}}"),
        "4097-byte $regex": ("where_document", '{"$regex": ' + json.dumps("a" * 4097) + "}"),
        "regex over the compiled size": ("where_document", '{"$regex": "(?:\\\\w{500}){500}"}'),
    }


def test_row_10_filter_caps(server, ref):
    filters = huge_filters()
    problems = []

    with unchanged(server, problems, ref):
        with api(server) as http:
            for name, (field, text) in filters.items():
                for operation in ("get", "delete", "query"):
                    extra = ', "query_embeddings": [[1, 1, 1]]' if operation == "query" else ""
                    body = '{"' + field + '": ' + text + extra + "}"
                    response = send(http, "POST", f"{ref.path}/{operation}", body.encode())
                    problems += check(server, f"POST {operation} with {name}", response, INVALID)

    assert_no_problems(problems)


# Row 11: NaN and infinities in embeddings and float metadata.

INDEXED_DIMENSION = 384
INDEXED_ROWS = 3000  # 4.6 MB of vectors, over the 4 MiB exact-scan limit, so queries use the index


def base64_floats(values: Sequence[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def base64_bits(words: Sequence[int]) -> str:
    return base64.b64encode(struct.pack(f"<{len(words)}I", *words)).decode()


def json_vector_with(token: str, dimension: int) -> str:
    return "[" + ", ".join(["0.5"] * (dimension - 1) + [token]) + "]"


# The non-finite value in each encoding, as the text of one embedding.
JSON_NON_FINITE = {
    "NaN literal": "NaN",
    "Infinity literal": "Infinity",
    "-Infinity literal": "-Infinity",
    "1e39 (float32 overflow)": "1e39",
    "-1e39 (float32 overflow)": "-1e39",
    "1e309 (float64 overflow)": "1e309",
}
BASE64_NON_FINITE = {
    "base64 NaN": 0x7FC00000,
    "base64 negative NaN": 0xFFC00000,
    "base64 signalling NaN": 0x7F800001,
    "base64 +Inf": 0x7F800000,
    "base64 -Inf": 0xFF800000,
}


def non_finite_embeddings(dimension: int) -> Dict[str, str]:
    """Return each non-finite embedding as JSON text for an embeddings array item."""
    vectors = {name: json_vector_with(token, dimension) for name, token in JSON_NON_FINITE.items()}
    finite_words = list(struct.unpack(f"<{dimension - 1}I", struct.pack(f"<{dimension - 1}f", *([0.5] * (dimension - 1)))))
    for name, word in BASE64_NON_FINITE.items():
        vectors[name] = json.dumps(base64_bits(finite_words + [word]))
    return vectors


def finite_vector(dimension: int, seed: int) -> str:
    values = np.random.default_rng(seed).standard_normal(dimension).astype(np.float32)
    return json.dumps([float(v) for v in values])


def write_body(ids: Sequence[str], embeddings: Sequence[str], metadatas: Optional[Sequence[str]] = None) -> str:
    body = '{"ids": ' + json.dumps(list(ids)) + ', "embeddings": [' + ", ".join(embeddings) + "]"
    if metadatas is not None:
        body += ', "metadatas": [' + ", ".join(metadatas) + "]"
    return body + "}"


def create_indexed(server: RavelinServer) -> Reference:
    rng = np.random.default_rng(11)
    vectors = rng.standard_normal((INDEXED_ROWS, INDEXED_DIMENSION)).astype(np.float32)
    with api(server) as http:
        created = http.post(COLLECTIONS, json={"name": "indexed"})
        assert created.status_code == 200, created.text
        collection_id = created.json()["id"]
        for start in range(0, INDEXED_ROWS, 1000):
            added = http.post(
                f"{COLLECTIONS}/{collection_id}/add",
                json={
                    "ids": [f"v-{i}" for i in range(start, start + 1000)],
                    "embeddings": [base64_floats(v.tolist()) for v in vectors[start : start + 1000]],
                    "metadatas": [{"score": float(i) / 3} for i in range(start, start + 1000)],
                },
            )
            assert added.status_code == 201, added.text
    return Reference(collection_id, "indexed", INDEXED_ROWS, INDEXED_DIMENSION)


def assert_distances_finite(server: RavelinServer, indexed: Reference) -> None:
    queries = np.random.default_rng(12).standard_normal((20, INDEXED_DIMENSION)).astype(np.float32)
    with api(server) as http:
        count = http.get(f"{indexed.path}/count")
        assert count.json() == indexed.count
        response = http.post(
            f"{indexed.path}/query",
            json={"query_embeddings": queries.tolist(), "n_results": 50, "include": ["distances"]},
        )
    assert response.status_code == 200, response.text
    distances = response.json()["distances"]
    assert all(len(row) == 50 for row in distances)
    flat = [distance for row in distances for distance in row]
    bad = [d for d in flat if not isinstance(d, (int, float)) or not np.isfinite(d)]
    assert not bad, f"{len(bad)} distances are not finite numbers, such as {bad[:10]}"


def names_the_row(response, index: int, record_id: Optional[str]) -> bool:
    """Tell whether the message points at the bad row: by index or id, or, for a body
    that is not valid JSON (a NaN literal, a number beyond float64), by its column."""
    message = response.json().get("message", "")
    if message.startswith("Failed to parse the request body as JSON") and "column" in message:
        return True
    if record_id is not None and record_id in message:
        return True
    return re.search(rf"\b{index}\b", message) is not None


def non_finite_requests(indexed: Reference, family: str) -> List[Tuple[str, str, str, Optional[Tuple[int, str]]]]:
    """Return (label, path, body, (row index, row id) or None) for one family of inputs."""
    dimension = indexed.dimension
    finite = [finite_vector(dimension, seed) for seed in range(2)]
    requests = []
    if family in ("add", "upsert", "update"):
        ids = {
            "add": ["new-0", "new-1", "bad-row"],
            "upsert": ["v-0", "v-1", "bad-row"],
            "update": ["v-0", "v-1", "v-2"],
        }[family]
        for name, vector in non_finite_embeddings(dimension).items():
            body = write_body(ids, finite + [vector])
            requests.append((f"{family} with {name}", f"{indexed.path}/{family}", body, (2, ids[2])))
    elif family == "query":
        for name, vector in non_finite_embeddings(dimension).items():
            body = '{"query_embeddings": [' + finite[0] + ", " + vector + '], "n_results": 5}'
            requests.append((f"query with {name}", f"{indexed.path}/query", body, (1, None)))
    else:
        for name, token in {"NaN": "NaN", "Infinity": "Infinity", "-Infinity": "-Infinity", "1e309": "1e309"}.items():
            metadata = '{"score": ' + token + "}"
            for operation, ids in (("add", ["new-0", "new-1", "bad-row"]), ("upsert", ["v-0", "v-1", "bad-row"]),
                                   ("update", ["v-0", "v-1", "v-2"])):
                body = write_body(ids, finite + [finite[0]], ['{"score": 1.5}', '{"score": 2.5}', metadata])
                requests.append(
                    (f"{operation} with metadata {name}", f"{indexed.path}/{operation}", body, (2, ids[2]))
                )
            requests.append((f"create collection with metadata {name}", COLLECTIONS,
                             '{"name": "planted", "metadata": ' + metadata + "}", None))
            requests.append((f"modify collection with metadata {name}", indexed.path,
                             '{"new_metadata": ' + metadata + "}", None))
            requests.append((f"get where score > {name}", f"{indexed.path}/get",
                             '{"where": {"score": {"$gt": ' + token + "}}}", None))
    return requests


@pytest.mark.parametrize("family", ["add", "upsert", "update", "query", "metadata"])
def test_row_11_non_finite_rejected(server_factory, family):
    server = server_factory.start()
    indexed = create_indexed(server)
    scopes = (("default_tenant", "default_database"),)
    problems = []

    with unchanged(server, problems, scopes=scopes):
        with api(server) as http:
            for label, path, body, row in non_finite_requests(indexed, family):
                method = "PUT" if path == indexed.path else "POST"
                response = send(http, method, path, body.encode())
                # Queries take float lists only, so Chroma returns 422 for base64.
                statuses = INVALID_OR_SHAPE if family == "query" and "base64" in label else INVALID
                problems += check(server, label, response, statuses)
                if row and response.status_code == 400 and not names_the_row(response, *row):
                    problems.append(f"{label}: the message does not name row {row}: {response.text}")
    assert_distances_finite(server, indexed)

    before = snapshot(server)
    server.stop()
    restarted = server_factory.start(data_dir=server.data_dir)
    assert_distances_finite(restarted, indexed)
    assert_unchanged(before, snapshot(restarted))
    restarted.kill()
    killed = server_factory.start(data_dir=server.data_dir)
    assert_distances_finite(killed, indexed)
    assert_no_problems(problems)


# Row 12: dimension mismatches.


def test_row_12_dimension_mismatch(server, ref):
    three = base64_floats([1.0, 0.0, 0.0])
    two = base64_floats([1.0, 0.0])
    batches = {
        "mixed in batch": [[1.0, 0.0, 0.0], [1.0, 0.0], [0.0, 1.0, 0.0]],
        "last one wrong": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]],
        "all against collection": [[1.0, 0.0, 0.0, 0.0]] * 3,
        "empty vector": [[1.0, 0.0, 0.0], [], [0.0, 1.0, 0.0]],
        "base64 mixed": [three, two, three],
        "base64 empty": [three, "", three],
    }
    problems = []

    with unchanged(server, problems, ref):
        with api(server) as http:
            for name, embeddings in batches.items():
                for operation, ids in (
                    ("add", ["new-0", "new-1", "new-2"]),
                    ("upsert", ["ref-0", "new-1", "new-2"]),
                    ("update", ["ref-0", "ref-1", "ref-2"]),
                ):
                    body = {"ids": ids, "embeddings": embeddings}
                    response = http.post(f"{ref.path}/{operation}", json=body)
                    problems += check(server, f"{operation} {name}", response, INVALID)
            for name, queries in {
                "query of another dimension": [[1.0, 0.0]],
                "query batch mixed": [[1.0, 0.0, 0.0], [1.0, 0.0]],
                "empty query vector": [[]],
            }.items():
                response = http.post(f"{ref.path}/query", json={"query_embeddings": queries, "n_results": 1})
                problems += check(server, name, response, INVALID)

    # A collection without records has no dimension yet, and a mixed first batch must
    # not set one.
    with api(server) as http:
        created = http.post(COLLECTIONS, json={"name": "fresh"})
        fresh = created.json()["id"]
        response = http.post(
            f"{COLLECTIONS}/{fresh}/add",
            json={"ids": ["a", "b"], "embeddings": [[1.0, 0.0], [1.0, 0.0, 0.0]]},
        )
        problems += check(server, "first add to a fresh collection, mixed", response, INVALID)
        assert http.get(f"{COLLECTIONS}/{fresh}/count").json() == 0
        assert http.get(f"{COLLECTIONS}/by-id/{fresh}").json()["dimension"] is None
        accepted = http.post(f"{COLLECTIONS}/{fresh}/add", json={"ids": ["c"], "embeddings": [[1.0, 2.0]]})
        assert accepted.status_code == 201, accepted.text

    assert_no_problems(problems)


# Row 13: columns of different lengths.


def test_row_13_length_mismatch(server, ref):
    three_ids = ["new-0", "new-1", "new-2"]
    three_vectors = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    cases = {
        "fewer embeddings": {"ids": three_ids, "embeddings": three_vectors[:2]},
        "more embeddings": {"ids": three_ids[:2], "embeddings": three_vectors},
        "no embeddings for ids": {"ids": three_ids, "embeddings": []},
        "no ids for embeddings": {"ids": [], "embeddings": three_vectors[:1]},
        "fewer documents": {"ids": three_ids, "embeddings": three_vectors, "documents": ["a", "b"]},
        "more metadatas": {"ids": three_ids, "embeddings": three_vectors,
                           "metadatas": [{"m": 1}, {"m": 2}, {"m": 3}, {"m": 4}]},
        "fewer uris": {"ids": three_ids, "embeddings": three_vectors, "uris": ["u"]},
        "empty documents": {"ids": three_ids, "embeddings": three_vectors, "documents": []},
    }
    problems = []

    with unchanged(server, problems, ref):
        with api(server) as http:
            for name, body in cases.items():
                for operation in ("add", "upsert", "update"):
                    ids = body["ids"]
                    if operation == "update":
                        ids = [f"ref-{i}" for i in range(len(ids))]
                    response = http.post(f"{ref.path}/{operation}", json=dict(body, ids=ids))
                    problems += check(server, f"{operation} {name}", response, INVALID)
            documents_only = {"ids": ["ref-0", "ref-1"], "documents": ["only one"]}
            response = http.post(f"{ref.path}/update", json=documents_only)
            problems += check(server, "update documents without embeddings, fewer documents", response, INVALID)

    assert_no_problems(problems)


# Row 14: duplicate ids inside one write batch.


def test_row_14_duplicate_ids(server, ref):
    vectors = [[float(i), 1.0, 0.0] for i in range(5)]
    cases = {
        "add, new ids, apart": ("add", ["n-0", "n-1", "n-2", "n-3", "n-0"]),
        "add, an existing id twice": ("add", ["n-0", "ref-1", "n-2", "ref-1", "n-4"]),
        "upsert, apart": ("upsert", ["ref-0", "n-1", "n-2", "n-3", "ref-0"]),
        "update, existing ids": ("update", ["ref-0", "ref-1", "ref-2", "ref-3", "ref-1"]),
        "update, unknown ids": ("update", ["n-0", "n-1", "n-0", "n-3", "n-4"]),
    }
    problems = []

    with unchanged(server, problems, ref):
        with api(server) as http:
            for name, (operation, ids) in cases.items():
                for encoding in ("json", "base64"):
                    embeddings = vectors if encoding == "json" else [base64_floats(v) for v in vectors]
                    body = {
                        "ids": ids,
                        "embeddings": embeddings,
                        "documents": [f"copy {i}" for i in range(5)],
                        "metadatas": [{"copy": i} for i in range(5)],
                    }
                    response = http.post(f"{ref.path}/{operation}", json=body)
                    problems += check(server, f"{name}, {encoding}", response, INVALID)

    assert_no_problems(problems)


# Row 15: empty and oversized ids, and oversized batches.


def id_requests(ref: Reference, ids: List[str]) -> List[Tuple[str, str, dict]]:
    """Return a request on every route that takes record ids, with ``ids``."""
    vectors = [[1.0, 0.0, float(i)] for i in range(len(ids))]
    return [
        ("POST", f"{ref.path}/add", {"ids": ids, "embeddings": vectors}),
        ("POST", f"{ref.path}/upsert", {"ids": ids, "embeddings": vectors}),
        ("POST", f"{ref.path}/update", {"ids": ids, "embeddings": vectors}),
        ("POST", f"{ref.path}/get", {"ids": ids}),
        ("POST", f"{ref.path}/delete", {"ids": ids}),
        ("POST", f"{ref.path}/query", {"ids": ids, "query_embeddings": [[1.0, 1.0, 1.0]], "n_results": 1}),
    ]


def test_row_15_bad_ids(server, ref):
    problems = []

    with unchanged(server, problems, ref):
        with api(server) as http:
            for name, ids in {
                "empty id": ["ref-0", ""],
                "1 MB id": ["ref-0", "x" * 1_000_000],
                "id one byte over 4096": ["ref-0", "x" * 4097],
            }.items():
                for method, path, body in id_requests(ref, ids):
                    response = http.post(path, json=body)
                    problems += check(server, f"{name}: {label_of(method, path, body)}", response, INVALID)

    assert_no_problems(problems)


def test_row_15_batch_cap(server, ref):
    problems = []
    with api(server) as http:
        preflight = http.get("/pre-flight-checks").json()
    assert preflight["max_batch_size"] == MAX_BATCH_SIZE

    with unchanged(server, problems, ref):
        with api(server) as http:
            over = [f"n-{i}" for i in range(MAX_BATCH_SIZE + 1)]
            for method, path, body in id_requests(ref, over):
                response = http.post(path, json=body)
                problems += check(server, f"{MAX_BATCH_SIZE + 1} ids: {method} {path}", response, OVER_BATCH_CAP)
            queries = {"query_embeddings": [[1.0, 1.0, 1.0]] * (MAX_BATCH_SIZE + 1), "n_results": 1}
            response = http.post(f"{ref.path}/query", json=queries)
            problems += check(server, f"{MAX_BATCH_SIZE + 1} query embeddings", response, OVER_BATCH_CAP)

            # Ten million ids: 40 MB of the shortest ids for get and delete, which
            # stays under the 40 MiB body limit, and with embeddings for writes.
            ten_million = b'{"ids": [' + b'"a",' * 9_999_999 + b'"a"]}'
            for operation in ("get", "delete"):
                response = send(http, "POST", f"{ref.path}/{operation}", ten_million)
                problems += check(server, f"{operation} with 10,000,000 ids", response, OVER_BATCH_CAP)
        # The writes carry ten million embeddings too, 120 MB, streamed.
        ids_bytes = len(b'"a",') * 10_000_000 - 1
        vectors_bytes = len(b"[1,1,1],") * 10_000_000 - 1
        for operation in ("add", "upsert", "update"):
            pieces = [
                [b'{"ids": ['], repeated(b'"a",', ids_bytes), [b'], "embeddings": ['],
                repeated(b"[1,1,1],", vectors_bytes), [b"]}"],
            ]
            total = len(b'{"ids": [') + ids_bytes + len(b'], "embeddings": [') + vectors_bytes + len(b"]}")
            head = request_head("POST", f"{ref.path}/{operation}", content_length=total)
            body = (chunk for piece in pieces for chunk in piece)
            response = exchange(server, head, body)
            problems += check(server, f"{operation} with 10,000,000 ids ({total} bytes)", response, OVER_BATCH_CAP)

    with api(server) as http:
        exact = [f"cap-{i}" for i in range(MAX_BATCH_SIZE)]
        accepted = http.post(
            f"{ref.path}/add", json={"ids": exact, "embeddings": [[1.0, 0.0, 0.0]] * MAX_BATCH_SIZE}
        )
    assert accepted.status_code == 201, accepted.text
    assert_no_problems(problems)


# Row 16: NUL bytes in documents and metadata strings, and a 50 MB document.

NUL_DOCUMENT = "needle before\x00needle after"
NUL_URI = "file:///a\x00b"


@dataclass
class NulWrite:
    """A write that puts a NUL byte in one field of one record."""

    operation: str
    body: dict
    record_id: str
    field: str  # "documents", "metadatas" or "uris"
    value: object  # the document or URI sent, or the metadata entries sent


def nul_writes() -> Dict[str, NulWrite]:
    vector = [[0.5, 0.5, 0.5]]
    value = {"label": "a\x00b"}
    key = {"a\x00b": 1}
    return {
        "add document": NulWrite("add", {"ids": ["nul-add"], "embeddings": vector, "documents": [NUL_DOCUMENT]},
                                 "nul-add", "documents", NUL_DOCUMENT),
        "upsert document": NulWrite("upsert", {"ids": ["nul-upsert"], "embeddings": vector,
                                               "documents": [NUL_DOCUMENT]}, "nul-upsert", "documents", NUL_DOCUMENT),
        "update document": NulWrite("update", {"ids": ["ref-3"], "documents": [NUL_DOCUMENT]},
                                    "ref-3", "documents", NUL_DOCUMENT),
        "add metadata value": NulWrite("add", {"ids": ["nul-value"], "embeddings": vector, "metadatas": [value]},
                                       "nul-value", "metadatas", value),
        "upsert metadata value": NulWrite("upsert", {"ids": ["nul-value-u"], "embeddings": vector,
                                                     "metadatas": [value]}, "nul-value-u", "metadatas", value),
        "update metadata value": NulWrite("update", {"ids": ["ref-5"], "metadatas": [value]},
                                          "ref-5", "metadatas", value),
        "add metadata key": NulWrite("add", {"ids": ["nul-key"], "embeddings": vector, "metadatas": [key]},
                                     "nul-key", "metadatas", key),
        "update metadata key": NulWrite("update", {"ids": ["ref-7"], "metadatas": [key]}, "ref-7", "metadatas", key),
        "add uri": NulWrite("add", {"ids": ["nul-uri"], "embeddings": vector, "uris": [NUL_URI]},
                            "nul-uri", "uris", NUL_URI),
        "update uri": NulWrite("update", {"ids": ["ref-9"], "uris": [NUL_URI]}, "ref-9", "uris", NUL_URI),
    }


def stored_differs(stored: dict, write: NulWrite) -> bool:
    """Tell whether the record read back lacks what ``write`` sent, byte for byte."""
    value = stored[write.field][0]
    if write.field == "metadatas":
        return any((value or {}).get(key) != sent for key, sent in write.value.items())
    return value != write.value


def test_row_16_nul_bytes_consistent(server, ref):
    outcomes = {}
    problems = []
    with api(server) as http:
        for name, write in nul_writes().items():
            before = snapshot(server)
            response = http.post(f"{ref.path}/{write.operation}", json=write.body)
            outcomes[name] = response.status_code
            if response.status_code >= 400:
                problems += check(server, name, response, INVALID)
                problems += state_changes(before, snapshot(server))
                continue
            stored = http.post(
                f"{ref.path}/get", json={"ids": [write.record_id], "include": [write.field]}
            ).json()
            if stored_differs(stored, write):
                problems.append(f"{name}: stored {stored[write.field]!r}, sent {write.value!r}")

        accepted = {name for name, status in outcomes.items() if status < 400}
        # Each place a NUL can go (document, metadata value, metadata key, uri) must
        # get the same outcome from add, upsert and update.
        for place in sorted({name.split(" ", 1)[1] for name in outcomes}):
            same_place = {name: status for name, status in outcomes.items() if name.endswith(place)}
            if len({status < 400 for status in same_place.values()}) > 1:
                problems.append(f"a NUL in a {place} is accepted by some writes only: {same_place}")

        # Full-text filtering still works, with and without a NUL in the pattern.
        overwritten = {"ref-3"} if "update document" in accepted else set()
        apples = http.post(f"{ref.path}/get", json={"where_document": {"$contains": "apples"}, "include": []})
        assert apples.status_code == 200, apples.text
        assert set(apples.json()["ids"]) == {f"ref-{i}" for i in range(0, REFERENCE_ROWS, 2)}
        queried = http.post(
            f"{ref.path}/query",
            json={"query_embeddings": [[1.0, 1.0, 1.0]], "n_results": 50,
                  "where_document": {"$contains": "pears"}, "include": []},
        )
        assert queried.status_code == 200, queried.text
        assert set(queried.json()["ids"][0]) == {f"ref-{i}" for i in range(1, REFERENCE_ROWS, 2)} - overwritten
        needle_ids = {
            write.record_id
            for name, write in nul_writes().items()
            if write.field == "documents" and name in accepted
        }
        for pattern in ("needle after", "before\x00needle", "\x00"):
            found = http.post(f"{ref.path}/get", json={"where_document": {"$contains": pattern}, "include": []})
            if found.status_code >= 400:
                problems += check(server, f"$contains {pattern!r}", found, INVALID)
            elif set(found.json()["ids"]) != needle_ids:
                problems.append(f"$contains {pattern!r} found {found.json()['ids']}, expected {sorted(needle_ids)}")
        regex = http.post(f"{ref.path}/get", json={"where_document": {"$regex": "needle (before|after)"}, "include": []})
        assert regex.status_code == 200, regex.text
        assert set(regex.json()["ids"]) == needle_ids

    assert_no_problems(problems)
    assert_serving(server, ref)


def test_row_16_oversized_document(server, ref):
    problems = []

    with unchanged(server, problems, ref):
        with api(server) as http:
            over_limit = "d" * (MAX_DOCUMENT_BYTES + 1)
            for operation, record_id in (("add", "big"), ("upsert", "big"), ("update", "ref-0")):
                body = {"ids": [record_id], "embeddings": [[1.0, 1.0, 1.0]], "documents": [over_limit]}
                response = http.post(f"{ref.path}/{operation}", json=body)
                problems += check(server, f"{operation} with a {MAX_DOCUMENT_BYTES + 1}-byte document", response, INVALID)
                uri_body = {"ids": [record_id], "embeddings": [[1.0, 1.0, 1.0]], "uris": [over_limit]}
                response = http.post(f"{ref.path}/{operation}", json=uri_body)
                problems += check(server, f"{operation} with a {MAX_DOCUMENT_BYTES + 1}-byte uri", response, INVALID)

        for operation, record_id in (("add", "big"), ("upsert", "big"), ("update", "ref-0")):
            prefix = b'{"ids": ["' + record_id.encode() + b'"], "embeddings": [[1, 1, 1]], "documents": ["'
            total = 50_000_000
            head = request_head("POST", f"{ref.path}/{operation}", content_length=total)
            body = [prefix] + list(repeated(b"d", total - len(prefix) - 3)) + [b'"]}']
            response = exchange(server, head, body)
            problems += check(server, f"{operation} with a 50 MB document", response, (400, 413))

    assert_no_problems(problems)


# Row 17: metadata keys and values that must be rejected.

BAD_METADATA = {
    "empty key": {"": 1},
    "$ key": {"$gt": 1},
    "# key": {"#document": "x"},
    "#embedding key": {"#embedding": "x"},
    "5000 keys": {f"k{i}": i for i in range(5000)},
    "257-byte key": {"k" * 257: 1},
    "nested object": {"outer": {"inner": 1}},
    "array of objects": {"list": [{"inner": 1}]},
    "mixed array": {"list": [1, "one"]},
    "empty array": {"list": []},
    "5000-item array": {"list": list(range(5000))},
    "65537-byte string": {"text": "s" * 65537},
}
# Integers outside i64, as raw JSON because Python would keep them exact.
BIG_INTEGERS = {
    "2^63": "9223372036854775808",
    "-2^63-1": "-9223372036854775809",
    "2^64": "18446744073709551616",
    "10^30": "1000000000000000000000000000000",
}


def metadata_texts() -> Dict[str, str]:
    texts = {name: json.dumps(value) for name, value in BAD_METADATA.items()}
    for name, literal in BIG_INTEGERS.items():
        texts[f"integer {name}"] = '{"big": ' + literal + "}"
        texts[f"integer {name} in array"] = '{"big": [' + literal + ", " + literal + "]}"
    return texts


def test_row_17_bad_metadata(server, ref):
    problems = []

    with unchanged(server, problems, ref):
        with api(server) as http:
            for index, (name, metadata) in enumerate(metadata_texts().items()):
                # Shape errors (nested objects, mixed arrays) may be 422 as in Chroma.
                shape_errors = ("nested object", "array of objects", "mixed array", "empty array")
                statuses = INVALID_OR_SHAPE if name in shape_errors else INVALID
                requests = [
                    ("POST", f"{ref.path}/add", write_body(["new-0", "new-1"], ["[1, 0, 0]", "[0, 1, 0]"], ['{"m": 1}', metadata])),
                    ("POST", f"{ref.path}/upsert", write_body(["ref-0", "new-1"], ["[1, 0, 0]", "[0, 1, 0]"], ['{"m": 1}', metadata])),
                    ("POST", f"{ref.path}/update", '{"ids": ["ref-0", "ref-1"], "metadatas": [{"m": 1}, ' + metadata + "]}"),
                    ("POST", COLLECTIONS, '{"name": "planted-' + str(index) + '", "metadata": ' + metadata + "}"),
                    ("PUT", ref.path, '{"new_metadata": ' + metadata + "}"),
                ]
                for method, path, body in requests:
                    response = send(http, method, path, body.encode())
                    problems += check(server, f"{name}: {label_of(method, path, body)}", response, statuses)

    assert_no_problems(problems)


# Row 18: tenant, database and collection names.

BAD_NAMES = {
    "dot-dot": "..",
    "slash": "a/b",
    "encoded traversal text": "%2e%2e%2f",
    "traversal": "../../escaped",
    "NUL": "a\x00b",
    "2 characters": "ab",
    "513 characters": "n" * 513,
    "IPv4 address": "192.168.1.1",
    "leading dot": ".abc",
    "trailing dot": "abc.",
    "space": "ab c",
    "non-ASCII": "\u00e9t\u00e9",
    "backslash": "a\\b",
}
# Path segments sent byte for byte: literal dot segments and encoded traversal.
RAW_PATH_SEGMENTS = {"literal ..": "..", "encoded ..": "%2e%2e", "encoded ../": "%2e%2e%2f",
                     "encoded NUL": "a%00b", "encoded slash": "a%2Fb", "invalid UTF-8": "%ff%fe"}


def name_path_routes(segment: str) -> List[Tuple[str, str]]:
    """Return every route that takes a name in its path, with ``segment`` as the name."""
    return [
        ("GET", f"/tenants/{segment}"),
        ("GET", f"/tenants/{segment}/databases"),
        ("GET", f"/tenants/default_tenant/databases/{segment}"),
        ("DELETE", f"/tenants/default_tenant/databases/{segment}"),
        ("GET", f"/tenants/default_tenant/databases/{segment}/collections"),
        ("GET", f"/tenants/default_tenant/databases/{segment}/collections_count"),
        ("GET", f"{COLLECTIONS}/{segment}"),
        ("DELETE", f"{COLLECTIONS}/{segment}"),
    ]


def test_row_18_bad_names(server, ref):
    problems = []
    segments = {name: quote(value, safe="") for name, value in BAD_NAMES.items()}
    segments.update(RAW_PATH_SEGMENTS)
    outside_before = file_names(server.data_dir.parent)

    with unchanged(server, problems, ref):
        with api(server) as http:
            for name, value in BAD_NAMES.items():
                for method, path, body in [
                    ("POST", "/tenants", {"name": value}),
                    ("POST", "/tenants/default_tenant/databases", {"name": value}),
                    ("POST", COLLECTIONS, {"name": value}),
                    ("POST", COLLECTIONS, {"name": value, "get_or_create": True}),
                    ("PUT", ref.path, {"new_name": value}),
                ]:
                    response = http.request(method, path, json=body)
                    problems += check(server, f"{name}: {label_of(method, path, body)}", response, INVALID)
        for name, segment in segments.items():
            for method, path in name_path_routes(segment):
                response = raw_request(server, method, path)
                problems += check(server, f"{name}: {method} {path}", response, INVALID)
            create_in = f"/tenants/{segment}/databases"
            response = raw_request(server, "POST", create_in, b'{"name": "fine-name"}')
            problems += check(server, f"{name}: POST {create_in}", response, INVALID)

    assert_no_problems(problems)
    assert file_names(server.data_dir.parent) == outside_before


# Row 19: collection ids that are not UUIDs.

BAD_IDS = {
    "single quote": "%27",
    "double quote": "%22",
    "SQL or": "%27%20OR%20%271%27%3D%271",
    "SQL statement": "1%3B%20DROP%20TABLE%20collections%3B--",
    "glob star": "*",
    "encoded star": "%2A",
    "percent": "%25",
    "underscore": "_",
    "question mark": "%3F",
    "10 KB": "x" * 10_240,
    "UUID with a bad digit": "6f1a7b36-0d3f-4c1e-9d53-3c4b7d1f2a1g",
    "UUID with a suffix": "6f1a7b36-0d3f-4c1e-9d53-3c4b7d1f2a10x",
}


def id_path_routes(segment: str) -> List[Tuple[str, str, bytes]]:
    """Return every route that takes a collection id in its path, with a valid body."""
    path = f"{COLLECTIONS}/{segment}"
    return [
        ("GET", f"{COLLECTIONS}/by-id/{segment}", b""),
        ("PUT", path, b'{"new_name": "renamed"}'),
        ("POST", f"{path}/add", b'{"ids": ["planted"], "embeddings": [[1, 1, 1]]}'),
        ("POST", f"{path}/upsert", b'{"ids": ["ref-0"], "embeddings": [[9, 9, 9]]}'),
        ("POST", f"{path}/update", b'{"ids": ["ref-0"], "documents": ["overwritten"]}'),
        ("POST", f"{path}/delete", b'{"ids": ["ref-0"]}'),
        ("POST", f"{path}/get", b"{}"),
        ("POST", f"{path}/query", b'{"query_embeddings": [[1, 1, 1]], "n_results": 1}'),
        ("GET", f"{path}/count", b""),
        ("POST", f"{path}/fork", b'{"new_name": "forked"}'),
        ("GET", f"{path}/fork_count", b""),
        ("GET", f"{path}/indexing_status", b""),
        ("POST", f"{path}/search", b'{"searches": []}'),
    ]


def test_row_19_non_uuid_collection_ids(server, ref):
    problems = []
    ids = dict(BAD_IDS)
    ids["nil UUID"] = str(uuid.UUID(int=0))
    ids["random UUID"] = str(uuid.uuid4())

    with unchanged(server, problems, ref):
        for name, segment in ids.items():
            for method, path, body in id_path_routes(segment):
                response = raw_request(server, method, path, body)
                problems += check(server, f"{name}: {method} {path[:120]}", response, (400, 404))

    assert_no_problems(problems)


def test_row_19_sql_text_matched_literally(server, ref):
    """Record ids, metadata keys and values and document patterns with SQL and LIKE
    metacharacters match only themselves."""
    problems = []

    with unchanged(server, problems, ref):
        with api(server) as http:
            injected_ids = ["' OR '1'='1", "%", "_", "*", "ref-0' --", "ref-%"]
            got = http.post(f"{ref.path}/get", json={"ids": injected_ids, "include": []})
            assert got.status_code == 200, got.text
            if got.json()["ids"]:
                problems.append(f"get by SQL-like ids returned {got.json()['ids']}")
            deleted = http.post(f"{ref.path}/delete", json={"ids": injected_ids})
            assert deleted.status_code == 200, deleted.text
            if deleted.json() != {"deleted": 0}:
                problems.append(f"delete by SQL-like ids returned {deleted.json()}")
            for where in (
                {"kind": "' OR '1'='1"},
                {"kind": {"$in": ["%", "_", "' OR 1=1 --"]}},
                {"kind' OR '1'='1": "even"},
                {"kind": {"$ne": "x' OR kind != '"}},
            ):
                response = http.post(f"{ref.path}/get", json={"where": where, "include": []})
                if response.status_code >= 400:
                    problems += check(server, f"where {where}", response, INVALID)
                    continue
                expected = [f"ref-{i}" for i in range(REFERENCE_ROWS)] if "$ne" in json.dumps(where) else []
                if sorted(response.json()["ids"]) != sorted(expected):
                    problems.append(f"where {where} returned {response.json()['ids']}, expected {expected}")
            for pattern in ("%", "_", "%apples%", "*", "' OR '1'='1"):
                response = http.post(f"{ref.path}/get", json={"where_document": {"$contains": pattern}, "include": []})
                assert response.status_code == 200, response.text
                if response.json()["ids"]:
                    problems.append(f"$contains {pattern!r} returned {response.json()['ids']}")

    assert_no_problems(problems)


# Row 20: limit, offset and n_results out of range, and unknown include values.

HUGE = 2**63


def test_row_20_paging_and_include(server, ref):
    problems = []
    # Range errors are 400. A value of the wrong JSON type may be 422, as in Chroma.
    # An offset of 0 is the default and valid, so "zero" applies to limit and n_results.
    get_cases = [
        ({"limit": -1}, INVALID), ({"limit": 0}, INVALID), ({"limit": HUGE}, INVALID),
        ({"limit": 1.5}, INVALID_OR_SHAPE), ({"limit": "5"}, INVALID_OR_SHAPE),
        ({"limit": 1_000_001}, INVALID),
        ({"offset": -1}, INVALID), ({"offset": HUGE}, INVALID), ({"offset": 1.5}, INVALID_OR_SHAPE),
        ({"offset": "5"}, INVALID_OR_SHAPE), ({"offset": True}, INVALID_OR_SHAPE),
    ]
    query_cases = [
        ({"n_results": -1}, INVALID), ({"n_results": 0}, INVALID), ({"n_results": HUGE}, INVALID),
        ({"n_results": 1.5}, INVALID_OR_SHAPE), ({"n_results": "5"}, INVALID_OR_SHAPE),
        ({"n_results": MAX_N_RESULTS + 1}, INVALID),
    ]
    delete_cases = [({"limit": -1}, INVALID), ({"limit": HUGE}, INVALID), ({"limit": 1.5}, INVALID_OR_SHAPE)]
    include_cases = [["foo"], ["Documents"], [""], ["data"], "documents", [None], ["documents", "bogus"]]
    list_queries = ["limit=-1", "limit=0", f"limit={HUGE}", "limit=1.5", "limit=abc",
                    "offset=-1", f"offset={HUGE}", "offset=1.5", "offset=abc"]

    with unchanged(server, problems, ref):
        with api(server) as http:
            for fields, statuses in get_cases:
                response = http.post(f"{ref.path}/get", json=fields)
                problems += check(server, f"get {fields}", response, statuses)
            for fields, statuses in query_cases:
                body = dict(fields, query_embeddings=[[1.0, 1.0, 1.0]])
                response = http.post(f"{ref.path}/query", json=body)
                problems += check(server, f"query {fields}", response, statuses)
            for fields, statuses in delete_cases:
                body = dict(fields, where={"n": {"$gte": 0}})
                response = http.post(f"{ref.path}/delete", json=body)
                problems += check(server, f"delete {fields}", response, statuses)
            for include in include_cases:
                for operation, extra in (("get", {}), ("query", {"query_embeddings": [[1.0, 1.0, 1.0]]})):
                    response = http.post(f"{ref.path}/{operation}", json=dict(extra, include=include))
                    problems += check(server, f"{operation} include {include!r}", response, INVALID_OR_SHAPE)
            for query in list_queries:
                for path in (COLLECTIONS, "/tenants/default_tenant/databases"):
                    response = http.get(f"{path}?{query}")
                    problems += check(server, f"GET {path}?{query}", response, INVALID)

            # Large but allowed values return what exists.
            at_max = http.post(
                f"{ref.path}/query",
                json={"query_embeddings": [[1.0, 1.0, 1.0]], "n_results": MAX_N_RESULTS},
            )
            assert at_max.status_code == 200, at_max.text
            assert len(at_max.json()["ids"][0]) == REFERENCE_ROWS
            all_records = http.post(f"{ref.path}/get", json={"limit": 1_000_000, "offset": 0})
            assert len(all_records.json()["ids"]) == REFERENCE_ROWS

    assert_no_problems(problems)


# Row 21: reset enabled, requested by principals without a server-wide admin grant.

RESET_POLICY = ADMIN_GRANT + """
[[grant]]
principal = "tenant-admin"
actions = ["read", "write", "admin"]
tenant = "default_tenant"
database = "*"
collection = "*"

[[grant]]
principal = "database-admin"
actions = ["read", "write", "admin"]
tenant = "*"
database = "default_database"
collection = "*"
"""


def test_row_21_reset_enabled_needs_server_admin(server_factory, tmp_path):
    server = start_server(
        server_factory, tmp_path, config=TOKENS_WITHOUT_CERTIFICATE, policy=RESET_POLICY,
        extra=["--allow-reset"],
    )
    issue_clients(server, ["tenant-admin", "database-admin"])
    ref = create_reference(server)
    problems = []

    with unchanged(server, problems, ref):
        for principal in ("tenant-admin", "database-admin"):
            with api(server, principal) as http:
                response = http.post("/reset")
                problems += check(server, f"{principal}: POST /reset", response, (403,))
                tenant = http.post("/tenants", json={"name": "planted"})
                problems += check(server, f"{principal}: POST /tenants", tenant, (403,))
        with no_certificate_client(server) as anonymous:
            for method, path, body in (
                ("POST", "/reset", None),
                ("POST", "/tenants", {"name": "planted"}),
                ("DELETE", f"{COLLECTIONS}/{ref.name}", None),
            ):
                response = anonymous.request(method, path, json=body)
                problems += check(server, f"no credentials: {method} {path}", response, (401,))

    assert_no_problems(problems)


# Row 23: error messages disclose nothing beyond what the request named.

ISOLATION_POLICY = ADMIN_GRANT + """
[[grant]]
principal = "acme-admin"
actions = ["read", "write", "admin"]
tenant = "acme"
database = "*"
collection = "*"
"""
FOREIGN_NAMES = ("globex", "vault", "secrets")


def test_row_23_error_messages_disclose_nothing(server_factory, tmp_path):
    server = start_server(server_factory, tmp_path, policy=ISOLATION_POLICY)
    issue_clients(server, ["acme-admin"])
    with api(server) as http:
        own_id = make_tenant(http, "acme", "prod", "articles")
        foreign_id = make_tenant(http, "globex", "vault", "secrets")
    base = "/tenants/acme/databases/prod"
    scopes = [("acme", "prod"), ("globex", "vault")]
    problems = []

    with unchanged(server, problems, scopes=scopes), api(server, "acme-admin") as http:
        requests = [
            ("GET", f"{base}/collections/by-id/{foreign_id}", None),
            ("POST", f"{base}/collections/{foreign_id}/get", {}),
            ("POST", f"{base}/collections/{foreign_id}/add", {"ids": ["x"], "embeddings": [[1, 1, 1]]}),
            ("PUT", f"{base}/collections/{foreign_id}", {"new_name": "stolen"}),
            ("PUT", f"{base}/collections/{own_id}", {"new_name": "a/b"}),
            ("POST", f"{base}/collections", {"name": ".."}),
            ("GET", f"{base}/collections/{quote(chr(0), safe='')}", None),
            ("POST", f"{base}/collections/%27%3B--/get", {}),
            ("POST", f"{base}/collections/{own_id}/add", {"ids": [""], "embeddings": [[1, 1, 1]]}),
            ("POST", f"{base}/collections/{own_id}/get", {"where": {"$bogus": 1}}),
            ("POST", f"{base}/collections/{own_id}/add", b"{not json"),
            ("GET", f"{base}/collections", None),
        ]
        for method, path, body in requests:
            response = send(http, method, path, body)
            if response.status_code >= 400:
                statuses = (400, 401, 403, 404, 409, 422)
                problems += check(server, label_of(method, path, body), response, statuses)
            for name in FOREIGN_NAMES:
                if name in response.text:
                    problems.append(f"{label_of(method, path, body)}: the message names {name!r}: {response.text}")

        # A tenant name that exists elsewhere gets the same response as one that does not.
        existing = http.post("/tenants", json={"name": "globex"})
        missing = http.post("/tenants", json={"name": "nowhere"})
        problems += check(server, "POST /tenants globex", existing, (403,))
        if existing.text.replace("globex", "X") != missing.text.replace("nowhere", "X"):
            problems.append(f"creating an existing tenant gets a different response: {existing.text} vs {missing.text}")
        for tenant in ("globex", "nowhere"):
            response = http.post(f"/tenants/{tenant}/databases", json={"name": "vault"})
            problems += check(server, f"POST /tenants/{tenant}/databases", response, NOT_FOUND)

        # Credentials on a server without tokens.
        response = http.get(f"{base}/collections", headers={"Authorization": "Bearer rvl_secretvalue"})
        problems += check(server, "Authorization on a server without tokens", response, (401,))
        if "secretvalue" in response.text:
            problems.append(f"the 401 repeats the token: {response.text}")

    assert_no_problems(problems)
