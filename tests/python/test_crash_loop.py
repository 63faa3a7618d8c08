"""SIGKILL at a random moment during concurrent adds, upserts and deletes, round after
round on one data directory.

Each round starts the server, lets several clients write, kills the server with
SIGKILL after a random delay, and restarts it. Each client owns its ids and sends one
request at a time, so the acknowledged state of every id is known exactly. After the
restart:

- every acknowledged write is there, and every acknowledged delete holds;
- each client's one unanswered request took effect in full or not at all, since the
  server may have committed it before the kill cut the response off;
- the vector index agrees with the records: each sampled record is its own nearest
  neighbour at distance 0, and no deleted id comes back from a query;
- the audit log's hash chain still verifies.

The index threshold is set low so that the index, its background build and its
checkpoints are all in play when the kill lands. RAVELIN_CRASH_ROUNDS sets the number
of rounds (default 20).
"""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import httpx
import numpy as np

from conftest import RavelinServer, run_ravelin

ROUNDS = int(os.environ.get("RAVELIN_CRASH_ROUNDS", "20"))
CLIENTS = 4
IDS_PER_CLIENT = 3000
DIMENSION = 16
CONFIG = "[limits]\nexact_scan_max_vector_bytes = 65536\n"
COLLECTIONS = "/tenants/default_tenant/databases/default_database/collections"

# The state of one id: None when absent, else (document, vector seed).
Value = Optional[Tuple[str, int]]


def vector(seed: int) -> List[float]:
    """A unit vector that only `seed` produces, so each record is its own neighbour."""
    values = np.random.default_rng(seed).standard_normal(DIMENSION)
    return (values / np.linalg.norm(values)).astype(np.float32).tolist()


@dataclass
class Client:
    """One writer: its ids, their acknowledged values, and its unanswered request."""

    index: int
    acknowledged: Dict[str, Value] = field(default_factory=dict)
    pending: Optional[Dict[str, Value]] = None
    requests: int = 0

    def ids(self) -> List[str]:
        return [f"c{self.index}-{n}" for n in range(IDS_PER_CLIENT)]


def next_request(client: Client, rng: random.Random, counter: int) -> Tuple[str, dict, Dict[str, Value]]:
    """Choose an add, upsert or delete of 1 to 200 of the client's ids."""
    ids = rng.sample(client.ids(), rng.randint(1, 200))
    kind = rng.choice(["add", "upsert", "upsert", "delete"])
    if kind == "delete":
        return "delete", {"ids": ids}, {record_id: None for record_id in ids}
    if kind == "add":
        # Add leaves existing ids alone, so only absent ones change.
        ids = [record_id for record_id in ids if client.acknowledged.get(record_id) is None] or ids[:1]
    seeds = [counter * 1000 + n for n in range(len(ids))]
    documents = [f"{record_id}@{counter}" for record_id in ids]
    body = {"ids": ids, "embeddings": [vector(seed) for seed in seeds], "documents": documents}
    effect: Dict[str, Value] = {}
    for record_id, document, seed in zip(ids, documents, seeds):
        if kind == "add" and client.acknowledged.get(record_id) is not None:
            continue
        effect[record_id] = (document, seed)
    return kind, body, effect


def write_until_killed(server: RavelinServer, collection_id: str, client: Client, seed: int) -> None:
    rng = random.Random(seed)
    with server.http_client(timeout=30.0) as http:
        while True:
            client.requests += 1
            kind, body, effect = next_request(client, rng, seed * 100_000 + client.requests)
            client.pending = effect
            try:
                response = http.post(f"{COLLECTIONS}/{collection_id}/{kind}", json=body)
            except httpx.HTTPError:
                return
            assert response.status_code in (200, 201), response.text
            client.acknowledged.update(effect)
            client.pending = None


def stored(http: httpx.Client, collection_id: str, ids: List[str]) -> Dict[str, Value]:
    response = http.post(
        f"{COLLECTIONS}/{collection_id}/get", json={"ids": ids, "include": ["documents"]}
    )
    assert response.status_code == 200, response.text
    found = response.json()
    return {record_id: document for record_id, document in zip(found["ids"], found["documents"])}


def check_client(http: httpx.Client, collection_id: str, client: Client) -> None:
    actual = stored(http, collection_id, client.ids())
    pending = client.pending or {}
    outcomes = set()
    for record_id in client.ids():
        before = client.acknowledged.get(record_id)
        expected_document = before[0] if before else None
        got = actual.get(record_id)
        if record_id in pending:
            after = pending[record_id]
            after_document = after[0] if after else None
            assert got in (expected_document, after_document), record_id
            if expected_document != after_document:
                outcomes.add("applied" if got == after_document else "absent")
        else:
            assert got == expected_document, f"{record_id}: {got!r} != {expected_document!r}"
    assert len(outcomes) <= 1, f"client {client.index}: its unanswered request was torn"
    # The unanswered request's outcome is now known; fold it in.
    if outcomes == {"applied"}:
        client.acknowledged.update(pending)
    client.pending = None


def check_index(http: httpx.Client, collection_id: str, clients: List[Client], rng: random.Random) -> None:
    present = [(record_id, value) for c in clients for record_id, value in c.acknowledged.items() if value]
    deleted = {record_id for c in clients for record_id, value in c.acknowledged.items() if value is None}
    for record_id, (_, seed) in rng.sample(present, min(20, len(present))):
        response = http.post(
            f"{COLLECTIONS}/{collection_id}/query",
            json={"query_embeddings": [vector(seed)], "n_results": 5, "include": ["distances"]},
        )
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["ids"][0][0] == record_id, (record_id, result["ids"][0])
        assert result["distances"][0][0] <= 1e-5
        assert not deleted & set(result["ids"][0]), "a deleted id came back"
    count = http.get(f"{COLLECTIONS}/{collection_id}/count").json()
    assert count == len(present)


def test_crash_loop(server_factory):
    server = server_factory.start()
    config = server.data_dir.parent / f"{server.data_dir.name}-crash.toml"
    config.write_text(CONFIG, encoding="utf-8")
    data_dir = server.data_dir
    server.stop()
    rng = random.Random(20261204)
    clients = [Client(index) for index in range(CLIENTS)]
    collection_id = None

    for round_index in range(ROUNDS):
        server = server_factory.start(data_dir=data_dir, extra_args=["--config", str(config)])
        with server.http_client() as http:
            if collection_id is None:
                created = http.post(COLLECTIONS, json={"name": "crash-loop"})
                assert created.status_code == 200, created.text
                collection_id = created.json()["id"]
            for client in clients:
                check_client(http, collection_id, client)
            check_index(http, collection_id, clients, rng)

        threads = [
            threading.Thread(
                target=write_until_killed,
                args=(server, collection_id, client, round_index * CLIENTS + client.index + 1),
            )
            for client in clients
        ]
        for thread in threads:
            thread.start()
        time.sleep(rng.uniform(0.3, 2.5))
        server.kill()
        for thread in threads:
            thread.join(timeout=60)
            assert not thread.is_alive(), "a writer did not stop after the kill"
        verified = run_ravelin(["audit", "verify", str(data_dir / "audit.log")])
        assert verified.returncode == 0, f"round {round_index}: {verified.stderr}"

    server = server_factory.start(data_dir=data_dir, extra_args=["--config", str(config)])
    with server.http_client() as http:
        for client in clients:
            check_client(http, collection_id, client)
        check_index(http, collection_id, clients, rng)
    assert sum(client.requests for client in clients) > ROUNDS * CLIENTS
