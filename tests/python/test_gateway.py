"""`ravelin gateway` before a real `chroma run` 1.5.9 on loopback.

The stock Python client drives the whole flow through the gateway, and every hostile
request of the threat table is sent through it too. Each hostile test reads Chroma
directly over its own loopback port before and after, and requires that Chroma's
collections and records did not change. A fake upstream written here plays a Chroma
that is down, slow or returns poisoned data.

Environment:
    CHROMA_BIN: the `chroma` command of the chromadb 1.5.9 wheel (default
        ``<repo>/.venv-compat/bin/chroma``, which ``tests/compat/run-chroma-suite
        --install-only`` creates). Tests that need Chroma skip without it.
"""

from __future__ import annotations

import base64
import http.server
import ssl
import json
import os
import shutil
import signal
import struct
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import httpx
import pytest

import certs
from conftest import ADMIN_GRANT, REPO, RavelinServer, free_port, run_ravelin

CHROMA_BIN = Path(os.environ.get("CHROMA_BIN", REPO / ".venv-compat" / "bin" / "chroma"))
CHROMA_READY_S = 60.0

requires_chroma = pytest.mark.skipif(
    not CHROMA_BIN.is_file(),
    reason=f"chroma not found at {CHROMA_BIN}: run tests/compat/run-chroma-suite --install-only "
    "or set CHROMA_BIN",
)

DB = "/tenants/default_tenant/databases/default_database"
COLLECTIONS = f"{DB}/collections"

POLICY = ADMIN_GRANT + """
[[grant]]
principal = "prod-admin"
actions = ["read", "write", "admin"]
tenant = "default_tenant"
database = "prod"
collection = "*"

[[grant]]
principal = "reader"
actions = ["read"]
tenant = "default_tenant"
database = "default_database"
collection = "*"
"""

# Every scope whose contents the before-and-after comparison reads.
SCOPES = [("default_tenant", "default_database"), ("default_tenant", "prod"), ("default_tenant", "staging")]


class Chroma:
    """One `chroma run` process in config mode on 127.0.0.1, reset enabled."""

    def __init__(self, root: Path):
        self.port = free_port()
        root.mkdir(parents=True, exist_ok=True)
        config = root / "chroma.yaml"
        config.write_text(
            "allow_reset: true\n"
            f"port: {self.port}\n"
            'listen_address: "127.0.0.1"\n'
            f'persist_path: "{root / "chroma-data"}"\n'
        )
        self.log_path = root / "chroma.log"
        env = dict(os.environ, ANONYMIZED_TELEMETRY="False")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [str(CHROMA_BIN), "run", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
            )
        self.wait_ready()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=f"{self.url}/api/v2", timeout=30.0)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + CHROMA_READY_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chroma run exited with {self.process.returncode}: {self.log_path.read_text()[-2000:]}")
            try:
                with self.http() as http:
                    if http.get("/heartbeat").status_code == 200:
                        return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"chroma run did not answer a heartbeat within {CHROMA_READY_S} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)

    def state(self) -> Dict[str, object]:
        """Return every collection of SCOPES with its settings and all its records, read
        from Chroma directly."""
        state: Dict[str, object] = {}
        with self.http() as http:
            for tenant, database in SCOPES:
                listed = http.get(f"/tenants/{tenant}/databases/{database}/collections")
                if listed.status_code == 404:
                    state[f"{tenant}/{database}"] = None
                    continue
                assert listed.status_code == 200, listed.text
                for collection in listed.json():
                    base = f"/tenants/{tenant}/databases/{database}/collections/{collection['id']}"
                    records = http.post(
                        f"{base}/get", json={"include": ["documents", "metadatas", "embeddings"]}
                    )
                    assert records.status_code == 200, records.text
                    count = http.get(f"{base}/count")
                    state[f"{tenant}/{database}/{collection['name']}"] = {
                        "id": collection["id"],
                        "metadata": collection["metadata"],
                        "configuration": collection["configuration_json"],
                        "count": count.json(),
                        "records": records.json(),
                    }
        return state


def embedding_base64(values: List[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def send(server: RavelinServer, method: str, path: str, body=None, principal: str = "admin",
         content: Optional[bytes] = None) -> httpx.Response:
    """Send one request on its own connection. A request denied before its body is read
    may close the connection, so none is reused."""
    with server.http_client(principal) as http:
        headers = {"Connection": "close"}
        if content is not None:
            headers["Content-Type"] = "application/json"
            return http.request(method, path, content=content, headers=headers)
        return http.request(method, path, json=body, headers=headers)


def assert_error(response: httpx.Response, statuses, label: str) -> None:
    assert response.status_code in statuses, f"{label}: {response.status_code} {response.text[:300]}"
    body = response.json()
    assert set(body) == {"error", "message"}, f"{label}: {body}"
    assert isinstance(body["error"], str) and body["error"], label


def issue_clients(server: RavelinServer, principals) -> None:
    for principal in principals:
        issued = run_ravelin(["pki", "issue-client", principal, "--data-dir", str(server.data_dir)])
        assert issued.returncode == 0, issued.stderr


def start_gateway(factory, tmp_path: Path, upstream: str, config: str = "", extra=(),
                  data_dir: Optional[Path] = None) -> RavelinServer:
    policy = tmp_path / "gateway-policy.toml"
    policy.write_text(POLICY)
    args = ["--upstream", upstream, "--policy", str(policy), *extra]
    if config:
        path = tmp_path / "gateway.toml"
        path.write_text(config)
        args += ["--config", str(path)]
    return factory.start(data_dir=data_dir, extra_args=args, command="gateway")


@pytest.fixture(scope="module")
def chroma(tmp_path_factory) -> Iterator[Chroma]:
    if not CHROMA_BIN.is_file():
        pytest.skip(f"chroma not found at {CHROMA_BIN}")
    process = Chroma(tmp_path_factory.mktemp("chroma"))
    yield process
    process.stop()


@pytest.fixture(scope="module")
def gateway(module_server_factory, chroma, tmp_path_factory) -> RavelinServer:
    server = start_gateway(module_server_factory, tmp_path_factory.mktemp("gateway"), chroma.url,
                           extra=["--allow-reset"])
    issue_clients(server, ["prod-admin", "reader"])
    return server


@pytest.fixture
def fresh(gateway, chroma) -> RavelinServer:
    """The module's gateway, with Chroma reset and a reference collection of three
    records in the default database."""
    reset = send(gateway, "POST", "/reset")
    assert reset.status_code == 200, reset.text
    created = send(gateway, "POST", COLLECTIONS, {"name": "reference", "metadata": {"kind": "ref"}})
    assert created.status_code == 200, created.text
    collection_id = created.json()["id"]
    added = send(gateway, "POST", f"{COLLECTIONS}/{collection_id}/add", {
        "ids": ["r0", "r1", "r2"],
        "embeddings": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        "documents": ["apple", "banana", "cherry"],
        "metadatas": [{"n": 0}, {"n": 1}, {"n": 2}],
    })
    assert added.status_code == 201, added.text
    gateway.reference_id = collection_id
    return gateway


# The whole client flow.


@requires_chroma
def test_client_flow_through_gateway(fresh, chroma):
    client = fresh.connect()
    collection = client.create_collection("flow", metadata={"topic": "fruit"}, embedding_function=None)
    collection.add(
        ids=["a", "b", "c"],
        embeddings=[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        metadatas=[{"k": 1, "tag": "x"}, {"k": 2, "tag": "y"}, {"k": 3, "tag": "y"}],
        documents=["apple pie", "banana split", "cherry tart"],
    )
    assert collection.count() == 3

    result = collection.query(query_embeddings=[[1.0, 0.1, 0.0]], n_results=2)
    assert result["ids"] == [["a", "b"]]
    assert result["distances"][0][0] == pytest.approx(0.01, abs=1e-6)
    filtered = collection.get(where={"$and": [{"tag": "y"}, {"k": {"$gte": 3}}]})
    assert filtered["ids"] == ["c"]
    by_document = collection.get(where_document={"$contains": "banana"})
    assert by_document["ids"] == ["b"]
    in_list = collection.get(where={"k": {"$in": [1, 2]}})
    assert sorted(in_list["ids"]) == ["a", "b"]

    collection.update(
        ids=["a"], embeddings=[[0.9, 0.1, 0.0]], metadatas=[{"k": 10}], documents=["apple crumble"]
    )
    updated = collection.get(ids=["a"], include=["metadatas", "documents", "embeddings"])
    assert updated["metadatas"] == [{"k": 10, "tag": "x"}]
    assert updated["documents"] == ["apple crumble"]
    assert list(updated["embeddings"][0]) == pytest.approx([0.9, 0.1, 0.0])
    collection.upsert(ids=["d"], embeddings=[[0.5, 0.5, 0.0]], documents=["date"])
    collection.delete(ids=["b"])
    assert collection.count() == 3

    collection.modify(name="flow-renamed", metadata={"topic": "dessert"})
    names = sorted(c.name for c in client.list_collections())
    assert names == ["flow-renamed", "reference"]

    # Chroma itself contains what the client wrote.
    direct = chroma.state()["default_tenant/default_database/flow-renamed"]
    assert direct["count"] == 3
    assert sorted(direct["records"]["ids"]) == ["a", "c", "d"]
    assert direct["metadata"] == {"topic": "dessert"}

    client.delete_collection("flow-renamed")
    assert [c.name for c in client.list_collections()] == ["reference"]


@requires_chroma
def test_rename_onto_taken_name_conflicts(fresh, chroma):
    """Chroma 1.5.9 returns a 500 with its SQL error for this rename. The gateway
    returns 409 as serve does, and forwards nothing."""
    other = send(fresh, "POST", COLLECTIONS, {"name": "other"})
    assert other.status_code == 200, other.text
    before = chroma.state()
    response = send(fresh, "PUT", f"{COLLECTIONS}/{fresh.reference_id}", {"new_name": "other"})
    assert_error(response, (409,), "rename onto a taken name")
    assert response.json()["message"] == "Collection [other] already exists"
    assert chroma.state() == before
    unchanged = send(fresh, "PUT", f"{COLLECTIONS}/{fresh.reference_id}", {"new_name": "reference"})
    assert unchanged.status_code == 200, unchanged.text


@requires_chroma
def test_admin_flow_through_gateway(fresh, chroma):
    admin = fresh.admin_connect()
    admin.create_database("prod")
    assert [d["name"] for d in admin.list_databases()] == ["default_database", "prod"]
    with chroma.http() as http:
        assert http.get("/tenants/default_tenant/databases/prod").status_code == 200
    admin.delete_database("prod")
    with chroma.http() as http:
        assert http.get("/tenants/default_tenant/databases/prod").status_code == 404


@requires_chroma
def test_two_gateways_share_one_chroma(fresh, server_factory, chroma, tmp_path):
    """The gateway keeps no state of its own, so a second one with the same PKI serves
    the same data, and a collection deleted through one is missing through the other."""
    data_dir = server_factory.new_data_dir()
    data_dir.mkdir(mode=0o700)
    shutil.copytree(fresh.data_dir / "pki", data_dir / "pki")
    second = start_gateway(server_factory, tmp_path, chroma.url, data_dir=data_dir)

    created = send(fresh, "POST", COLLECTIONS, {"name": "shared"})
    shared_id = created.json()["id"]
    added = send(second, "POST", f"{COLLECTIONS}/{shared_id}/add",
                 {"ids": ["x"], "embeddings": [[1.0, 0.0, 0.0]], "documents": ["from the second"]})
    assert added.status_code == 201, added.text
    got = send(fresh, "POST", f"{COLLECTIONS}/{shared_id}/get", {"ids": ["x"]})
    assert got.json()["documents"] == ["from the second"]

    deleted = send(second, "DELETE", f"{COLLECTIONS}/shared")
    assert deleted.status_code == 200, deleted.text
    gone = send(fresh, "GET", f"{COLLECTIONS}/{shared_id}/count")
    assert gone.status_code == 404, gone.text


# Hostile requests: each must be rejected and Chroma must hold exactly what it held.


def hostile_requests(collection_id: str) -> List[Tuple[str, str, str, object, Tuple[int, ...]]]:
    """Return (label, method, path, body, statuses) for hostile requests that a principal
    with every grant may send: remote-code configs, oversized filters, non-finite floats,
    mismatched columns, bad ids, names, keys and counts."""
    records = f"{COLLECTIONS}/{collection_id}"
    remote_code = {"type": "known", "name": "sentence_transformer",
                   "config": {"model_name": "x/y", "kwargs": {"trust_remote_code": True}}}
    nested_remote_code = {"type": "known", "name": "huggingface",
                          "config": {"a": [{"b": {"trust_remote_code": True}}]}}
    nan_base64 = embedding_base64([float("nan"), 0.0, 0.0])
    inf_base64 = embedding_base64([float("inf"), 0.0, 0.0])
    deep = {"$and": [{"k": 1}]}
    for _ in range(200):
        deep = {"$and": [deep]}
    cases = [
        ("create with trust_remote_code", "POST", COLLECTIONS,
         {"name": "loader", "configuration": {"embedding_function": remote_code}}, (400,)),
        ("create with nested trust_remote_code", "POST", COLLECTIONS,
         {"name": "loader", "configuration": {"embedding_function": nested_remote_code}}, (400,)),
        ("modify with trust_remote_code", "PUT", records,
         {"new_configuration": {"embedding_function": remote_code}}, (400,)),
        ("deep where", "POST", f"{records}/get", {"where": deep}, (400,)),
        ("huge $or", "POST", f"{records}/get",
         {"where": {"$or": [{"n": i} for i in range(5000)]}}, (400,)),
        ("huge $in", "POST", f"{records}/get",
         {"where": {"n": {"$in": list(range(100_000))}}}, (400,)),
        ("huge $regex", "POST", f"{records}/get",
         {"where_document": {"$regex": "a" * 100_000}}, (400,)),
        ("NaN base64 add", "POST", f"{records}/add",
         {"ids": ["x"], "embeddings": [nan_base64]}, (400,)),
        ("Inf base64 upsert", "POST", f"{records}/upsert",
         {"ids": ["r0"], "embeddings": [inf_base64]}, (400,)),
        ("huge float update", "POST", f"{records}/update",
         {"ids": ["r0"], "embeddings": [[1e39, 0.0, 0.0]]}, (400,)),
        ("Inf query", "POST", f"{records}/query",
         {"query_embeddings": [[1e39, 0.0, 0.0]], "n_results": 1}, (400,)),
        ("mixed dimensions", "POST", f"{records}/add",
         {"ids": ["x", "y"], "embeddings": [[1.0, 0.0, 0.0], [1.0, 0.0]]}, (400,)),
        ("empty vector", "POST", f"{records}/add", {"ids": ["x"], "embeddings": [[]]}, (400,)),
        ("unequal lengths", "POST", f"{records}/add",
         {"ids": ["x", "y"], "embeddings": [[1.0, 0.0, 0.0]], "documents": ["a", "b"]}, (400,)),
        ("duplicate ids", "POST", f"{records}/upsert",
         {"ids": ["r0", "r0"], "embeddings": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]}, (400,)),
        ("empty id", "POST", f"{records}/add", {"ids": [""], "embeddings": [[1.0, 0.0, 0.0]]}, (400,)),
        ("1 MB id", "POST", f"{records}/add",
         {"ids": ["x" * (1 << 20)], "embeddings": [[1.0, 0.0, 0.0]]}, (400,)),
        ("over the batch cap", "POST", f"{records}/delete",
         {"ids": [f"id{i}" for i in range(5462)]}, (400, 413)),
        ("$ metadata key", "POST", f"{records}/update",
         {"ids": ["r0"], "metadatas": [{"$bad": 1}]}, (400,)),
        ("nested metadata", "POST", f"{records}/update",
         {"ids": ["r0"], "metadatas": [{"a": {"b": 1}}]}, (400, 422)),
        ("integer beyond i64", "POST", f"{records}/update",
         {"ids": ["r0"], "metadatas": [{"a": 9223372036854775808}]}, (400,)),
        ("name with a slash", "POST", COLLECTIONS, {"name": "a/b"}, (400,)),
        ("two-character name", "POST", COLLECTIONS, {"name": "ab"}, (400,)),
        ("path traversal name", "GET", f"{COLLECTIONS}/%2e%2e%2f", None, (400, 404)),
        ("database named ..", "POST", "/tenants/default_tenant/databases", {"name": ".."}, (400,)),
        ("id that is not a UUID", "POST", f"{COLLECTIONS}/not-a-uuid/add",
         {"ids": ["x"], "embeddings": [[1.0, 0.0, 0.0]]}, (400, 404)),
        ("negative limit", "POST", f"{records}/get", {"limit": -1}, (400,)),
        ("fractional n_results", "POST", f"{records}/query",
         {"query_embeddings": [[1.0, 0.0, 0.0]], "n_results": 1.5}, (400,)),
        ("unknown include", "POST", f"{records}/get", {"include": ["secrets"]}, (400, 422)),
        ("unknown field", "POST", f"{records}/delete", {"ids": ["r0"], "wher": {"n": 0}}, (422,)),
    ]
    return cases


@requires_chroma
def test_hostile_requests_never_reach_chroma(fresh, chroma):
    before = chroma.state()
    for label, method, path, body, statuses in hostile_requests(fresh.reference_id):
        assert_error(send(fresh, method, path, body), statuses, label)
    assert chroma.state() == before
    # The gateway still serves the next valid request.
    count = send(fresh, "GET", f"{COLLECTIONS}/{fresh.reference_id}/count")
    assert count.json() == 3


@requires_chroma
def test_malformed_bodies_never_reach_chroma(fresh, chroma):
    before = chroma.state()
    records = f"{COLLECTIONS}/{fresh.reference_id}"
    cases = [
        ("deep body", b"[" * 100_000),
        ("JSON syntax error", b'{"ids": ["a"'),
        ("NaN literal", b'{"ids": ["x"], "embeddings": [[NaN, 0, 0]]}'),
        ("integer beyond i64", b'{"ids": ["r0"], "metadatas": [{"a": 99999999999999999999}]}'),
    ]
    for label, content in cases:
        assert_error(send(fresh, "POST", f"{records}/update", content=content), (400,), label)
    assert chroma.state() == before


@requires_chroma
def test_other_database_ids_hidden(fresh, chroma):
    """Chroma does not check that a collection id belongs to the path's database, so the
    gateway must. Every collection-id route with another database's id returns exactly
    what it returns for an id that does not exist."""
    for database in ("prod", "staging"):
        created = send(fresh, "POST", "/tenants/default_tenant/databases", {"name": database})
        assert created.status_code == 200, created.text
    staging = send(fresh, "POST", "/tenants/default_tenant/databases/staging/collections", {"name": "hidden"})
    staging_id = staging.json()["id"]
    added = send(fresh, "POST", f"/tenants/default_tenant/databases/staging/collections/{staging_id}/add",
                 {"ids": ["s0"], "embeddings": [[1.0, 2.0, 3.0]], "documents": ["secret"]})
    assert added.status_code == 201, added.text

    before = chroma.state()
    prod = "/tenants/default_tenant/databases/prod"
    missing_id = str(uuid.uuid4())
    for principal in ("prod-admin", "admin"):
        for (method, path, body), (_, missing_path, _) in zip(
            collection_id_requests(prod, staging_id), collection_id_requests(prod, missing_id)
        ):
            label = f"{principal}: {method} {path}"
            foreign = send(fresh, method, path, body, principal=principal)
            missing = send(fresh, method, missing_path, body, principal=principal)
            assert foreign.status_code == 404, f"{label}: {foreign.status_code} {foreign.text}"
            assert missing.status_code == 404, f"{label}: {missing.text}"
            assert foreign.json()["error"] == missing.json()["error"] == "NotFoundError", label
            assert foreign.json()["message"].replace(staging_id, "ID") == \
                missing.json()["message"].replace(missing_id, "ID"), label
            assert "secret" not in foreign.text, label
            assert "hidden" not in foreign.text, label
    assert chroma.state() == before


def collection_id_requests(base: str, collection_id: str):
    path = f"{base}/collections/{collection_id}"
    return [
        ("GET", f"{base}/collections/by-id/{collection_id}", None),
        ("PUT", path, {"new_metadata": {"changed": True}}),
        ("POST", f"{path}/add", {"ids": ["planted"], "embeddings": [[1.0, 2.0, 3.0]]}),
        ("POST", f"{path}/upsert", {"ids": ["s0"], "embeddings": [[9.0, 9.0, 9.0]]}),
        ("POST", f"{path}/update", {"ids": ["s0"], "documents": ["overwritten"]}),
        ("POST", f"{path}/delete", {"ids": ["s0"]}),
        ("POST", f"{path}/get", {"ids": ["s0"]}),
        ("POST", f"{path}/query", {"query_embeddings": [[1.0, 1.0, 1.0]], "n_results": 1}),
        ("GET", f"{path}/count", None),
    ]


@requires_chroma
def test_grants_enforced_through_gateway(fresh, chroma):
    """A principal outside its grants, and a reset by a principal without a server-wide
    grant, change nothing."""
    before = chroma.state()
    records = f"{COLLECTIONS}/{fresh.reference_id}"
    cases = [
        ("reader writes", "reader", "POST", f"{records}/add",
         {"ids": ["x"], "embeddings": [[1.0, 0.0, 0.0]]}, (403,)),
        ("reader deletes the collection", "reader", "DELETE", f"{COLLECTIONS}/reference", None, (403,)),
        ("reader creates a database", "reader", "POST", "/tenants/default_tenant/databases",
         {"name": "mine"}, (403, 404)),
        ("prod-admin in another database", "prod-admin", "POST", COLLECTIONS, {"name": "planted"}, (404,)),
        ("prod-admin in another tenant", "prod-admin", "POST",
         "/tenants/other/databases/prod/collections", {"name": "planted"}, (404,)),
        ("reset by a reader", "reader", "POST", "/reset", None, (403, 404)),
        ("reset by prod-admin", "prod-admin", "POST", "/reset", None, (403, 404)),
    ]
    for label, principal, method, path, body, statuses in cases:
        assert_error(send(fresh, method, path, body, principal=principal), statuses, label)
    assert chroma.state() == before


@requires_chroma
def test_no_certificate_never_reaches_chroma(fresh, chroma):
    """Without a client certificate the handshake fails, so even a create request naming
    a model loader is never parsed."""
    before = chroma.state()
    context = ssl.create_default_context(cafile=str(fresh.ca))
    with httpx.Client(base_url=fresh.base_url, verify=context, timeout=10.0) as http:
        with pytest.raises((httpx.HTTPError, ssl.SSLError)):
            http.post(COLLECTIONS, json={"name": "loader", "configuration": {"embedding_function": {
                "type": "known", "name": "sentence_transformer",
                "config": {"trust_remote_code": True}}}})
    assert chroma.state() == before


@requires_chroma
def test_body_over_limit_never_reaches_chroma(server_factory, chroma, tmp_path):
    """With a 64 KiB body limit, a larger body gets 413 before anything is forwarded."""
    server = start_gateway(server_factory, tmp_path, chroma.url, config="max_body_bytes = 65536\n")
    before = chroma.state()
    big = {"ids": ["x"], "embeddings": [[1.0, 0.0, 0.0]], "documents": ["d" * 100_000]}
    assert_error(send(server, "POST", COLLECTIONS, {"name": "x" * 10, "metadata": {"p": "p" * 100_000}}),
                 (413,), "create over the limit")
    assert_error(send(server, "POST", f"{COLLECTIONS}/{uuid.uuid4()}/add", big), (413, 404), "add over the limit")
    assert chroma.state() == before


@requires_chroma
def test_reset_disabled_by_default(server_factory, chroma, tmp_path):
    server = start_gateway(server_factory, tmp_path, chroma.url)
    before = chroma.state()
    assert_error(send(server, "POST", "/reset"), (403,), "reset without --allow-reset")
    assert chroma.state() == before


# A misbehaving upstream, played by a small HTTP server in this process.


class FakeChroma:
    """An HTTP server on 127.0.0.1 whose responses a test sets per path."""

    def __init__(self, tls: Optional["ssl.SSLContext"] = None):
        self.responses: Dict[str, Tuple[int, bytes, float]] = {}
        self.scheme = "https" if tls else "http"
        # (method, path, body, headers with lowercase names) of each request received.
        self.requests: List[Tuple[str, str, bytes, Dict[str, str]]] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {name.lower(): value for name, value in self.headers.items()}
                fake.requests.append((self.command, self.path, body, headers))
                status, payload, delay = fake.responses.get(
                    self.path.split("?")[0], (404, b'{"error":"NotFoundError","message":"nothing here"}', 0.0)
                )
                time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = handle_one

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}"

    def respond(self, path: str, body, status: int = 200, delay: float = 0.0) -> None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.responses[f"/api/v2{path}"] = (status, payload, delay)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_chroma() -> Iterator[FakeChroma]:
    fake = FakeChroma()
    yield fake
    fake.close()


def fake_collection(**changes) -> dict:
    collection = {
        "id": "6f1a7b36-0d3f-4c1e-9d53-3c4b7d1f2a10", "name": "victim",
        "configuration_json": {"hnsw": {"space": "l2"}, "spann": None,
                               "embedding_function": {"type": "known", "name": "default", "config": {}}},
        "schema": None, "metadata": None, "dimension": 3,
        "tenant": "default_tenant", "database": "default_database", "log_position": 0, "version": 0,
    }
    collection.update(changes)
    return collection


def test_poisoned_upstream_config_never_reaches_client(server_factory, fake_chroma, tmp_path):
    server = start_gateway(server_factory, tmp_path, fake_chroma.url)
    server.server_errors_expected = True
    poisoned = fake_collection(configuration_json={"hnsw": None, "embedding_function": {
        "type": "known", "name": "sentence_transformer",
        "config": {"kwargs": {"trust_remote_code": True}}}})
    fake_chroma.respond(f"{COLLECTIONS}/victim", poisoned)
    response = send(server, "GET", f"{COLLECTIONS}/victim")
    assert_error(response, (502,), "poisoned configuration")
    assert "trust_remote_code" not in response.text
    assert "sentence_transformer" not in response.text


def test_misbehaving_upstream_answers_502(server_factory, fake_chroma, tmp_path):
    server = start_gateway(server_factory, tmp_path, fake_chroma.url)
    server.server_errors_expected = True
    cases = [
        ("not JSON", b"<html>stack trace at /srv/chroma</html>", 200),
        ("wrong shape", {"name": 3}, 200),
        ("collection of another database", fake_collection(database="other"), 200),
        ("metadata with a $ key", fake_collection(metadata={"$x": 1}), 200),
        ("internal error with SQL", {"error": "InternalError", "message": "UNIQUE constraint failed: x"}, 500),
    ]
    for label, body, status in cases:
        fake_chroma.respond(f"{COLLECTIONS}/victim", body, status=status)
        response = send(server, "GET", f"{COLLECTIONS}/victim")
        assert_error(response, (500, 502), label)
        assert "/srv/chroma" not in response.text, label
        assert "UNIQUE" not in response.text, label

    # A query response with a non-finite distance or too many results is refused too.
    collection_id = "6f1a7b36-0d3f-4c1e-9d53-3c4b7d1f2a10"
    fake_chroma.respond(f"{COLLECTIONS}/by-id/{collection_id}", fake_collection())
    query = {"query_embeddings": [[1.0, 0.0, 0.0]], "n_results": 1, "include": ["distances"]}
    for label, body in [
        ("NaN distance", b'{"ids": [["a"]], "distances": [[NaN]]}'),
        ("more results than asked", {"ids": [["a", "b"]], "distances": [[0.1, 0.2]]}),
        ("one list for two queries", {"ids": [["a"]], "distances": [[0.1]]}),
    ]:
        fake_chroma.respond(f"{COLLECTIONS}/{collection_id}/query", body)
        request = dict(query)
        if label == "one list for two queries":
            request["query_embeddings"] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
        assert_error(send(server, "POST", f"{COLLECTIONS}/{collection_id}/query", request), (502,), label)

    # Upstream client errors keep Chroma's names and statuses.
    fake_chroma.respond(f"{COLLECTIONS}/victim",
                        {"error": "NotFoundError", "message": "Collection [victim] does not exist"}, status=404)
    missing = send(server, "GET", f"{COLLECTIONS}/victim")
    assert missing.status_code == 404
    assert missing.json() == {"error": "NotFoundError", "message": "Collection [victim] does not exist"}


def test_slow_upstream_answers_504(server_factory, fake_chroma, tmp_path):
    config = "[upstream]\nrequest_timeout_seconds = 1\n"
    server = start_gateway(server_factory, tmp_path, fake_chroma.url, config=config)
    server.server_errors_expected = True
    fake_chroma.respond(f"{COLLECTIONS}/victim", fake_collection(), delay=3.0)
    started = time.monotonic()
    assert_error(send(server, "GET", f"{COLLECTIONS}/victim"), (504,), "slow upstream")
    assert time.monotonic() - started < 2.5


def test_unreachable_upstream_answers_502(server_factory, tmp_path):
    server = start_gateway(server_factory, tmp_path, f"http://127.0.0.1:{free_port()}")
    server.server_errors_expected = True
    assert_error(send(server, "GET", f"{COLLECTIONS}/anything"), (502,), "unreachable upstream")
    # The gateway's own heartbeat still succeeds.
    assert send(server, "GET", "/heartbeat").status_code == 200


def test_oversized_upstream_response_refused(server_factory, fake_chroma, tmp_path):
    config = "[upstream]\nmax_response_bytes = 4096\n"
    server = start_gateway(server_factory, tmp_path, fake_chroma.url, config=config)
    server.server_errors_expected = True
    fake_chroma.respond(f"{COLLECTIONS}/victim", fake_collection(metadata={"big": "x" * 10_000}))
    assert_error(send(server, "GET", f"{COLLECTIONS}/victim"), (502,), "oversized response")


def test_requests_rebuilt_not_copied(server_factory, fake_chroma, tmp_path):
    """The upstream receives the request Ravelin encodes, not the client's bytes: the
    `$eq` shorthand is expanded, and embeddings go out as base64."""
    server = start_gateway(server_factory, tmp_path, fake_chroma.url)
    collection_id = "6f1a7b36-0d3f-4c1e-9d53-3c4b7d1f2a10"
    fake_chroma.respond(f"{COLLECTIONS}/by-id/{collection_id}", fake_collection())
    fake_chroma.respond(f"{COLLECTIONS}/{collection_id}/add", {}, status=201)
    fake_chroma.respond(f"{COLLECTIONS}/{collection_id}/delete", {"deleted": 1})
    added = send(server, "POST", f"{COLLECTIONS}/{collection_id}/add",
                 {"ids": ["a"], "embeddings": [[1.0, 0.0, 0.0]], "documents": ["d"]})
    assert added.status_code == 201, added.text
    deleted = send(server, "POST", f"{COLLECTIONS}/{collection_id}/delete", {"where": {"k": "v"}})
    assert deleted.json() == {"deleted": 1}

    forwarded = {path: json.loads(body) for method, path, body, _ in fake_chroma.requests if method == "POST"}
    add = forwarded[f"/api/v2{COLLECTIONS}/{collection_id}/add"]
    assert add["embeddings"] == ["AACAPwAAAAAAAAAA"]
    delete = forwarded[f"/api/v2{COLLECTIONS}/{collection_id}/delete"]
    assert delete["where"] == {"k": {"$eq": "v"}}


def test_token_sent_to_upstream(server_factory, fake_chroma, tmp_path):
    token_file = tmp_path / "upstream-token"
    token_file.write_text("gateway-secret-token\n")
    token_file.chmod(0o600)
    config = f'[upstream]\ntoken_file = "{token_file}"\ntoken_header = "x-chroma-token"\n'
    server = start_gateway(server_factory, tmp_path, fake_chroma.url, config=config)
    fake_chroma.respond(f"{COLLECTIONS}/victim", fake_collection())
    assert send(server, "GET", f"{COLLECTIONS}/victim").status_code == 200
    tokens = [headers.get("x-chroma-token") for _, _, _, headers in fake_chroma.requests]
    assert tokens and all(token == "gateway-secret-token" for token in tokens), tokens
    assert "gateway-secret-token" not in server.stderr_text()

    token_file.chmod(0o644)
    refused = run_ravelin(["gateway", "--upstream", fake_chroma.url, "--data-dir", str(tmp_path / "other"),
                           "--config", str(tmp_path / "gateway.toml")], timeout=30)
    assert refused.returncode != 0
    assert "chmod 600" in refused.stderr


def test_https_upstream_with_client_certificate(server_factory, tmp_path):
    """An https upstream that requires a client certificate: the gateway verifies the
    upstream against `ca` and presents `certificate`. With another CA the handshake
    fails and the client gets 502."""
    ca_cert, ca_key = certs.new_ca("upstream test CA")
    server_cert, server_key = certs.issue(ca_cert, ca_key, "chroma", server_names=["127.0.0.1"])
    client_cert, client_key = certs.issue(ca_cert, ca_key, "gateway")
    certs.write_pair(ca_cert, ca_key, tmp_path / "ca.pem", tmp_path / "ca.key")
    certs.write_pair(server_cert, server_key, tmp_path / "chroma.pem", tmp_path / "chroma.key")
    certs.write_pair(client_cert, client_key, tmp_path / "gateway.pem", tmp_path / "gateway.key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "chroma.pem", tmp_path / "chroma.key")
    context.load_verify_locations(tmp_path / "ca.pem")
    context.verify_mode = ssl.CERT_REQUIRED

    fake = FakeChroma(tls=context)
    try:
        fake.respond(f"{COLLECTIONS}/victim", fake_collection())
        config = (
            f'[upstream]\nca = "{tmp_path / "ca.pem"}"\n'
            f'certificate = "{tmp_path / "gateway.pem"}"\nkey = "{tmp_path / "gateway.key"}"\n'
        )
        server = start_gateway(server_factory, tmp_path, fake.url, config=config)
        response = send(server, "GET", f"{COLLECTIONS}/victim")
        assert response.status_code == 200, response.text
        assert response.json()["name"] == "victim"

        other_ca, _ = certs.new_ca("another CA")
        (tmp_path / "other-ca.pem").write_bytes(other_ca.public_bytes(certs.serialization.Encoding.PEM))
        untrusted_dir = tmp_path / "untrusted"
        untrusted_dir.mkdir()
        config = f'[upstream]\nca = "{tmp_path / "other-ca.pem"}"\n'
        untrusted = start_gateway(server_factory, untrusted_dir, fake.url, config=config)
        untrusted.server_errors_expected = True
        assert_error(send(untrusted, "GET", f"{COLLECTIONS}/victim"), (502,), "untrusted upstream")
    finally:
        fake.close()
