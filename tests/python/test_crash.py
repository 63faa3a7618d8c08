"""Crash consistency: SIGKILL during ingest loses no acknowledged batch and tears none.

A thread adds batches through the HTTP API while the main thread kills the
server after a random number of acknowledged (201) batches, at a random point
while the next batch is in flight. After a restart on the same data dir every
acknowledged batch must be fully present, and every other batch either fully
present or fully absent.
"""

from __future__ import annotations

import os
import random
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import httpx
import numpy as np

from conftest import RavelinServer

ROUNDS = 3
BATCH_SIZE = 500
DIMENSION = 128
MAX_BATCHES_PER_ROUND = 400
ACK_WAIT_S = 120.0
DB_PATH = "/tenants/default_tenant/databases/default_database"


@dataclass
class Batch:
    ids: List[str]
    embeddings: np.ndarray
    status: Optional[int] = None  # HTTP status, None while unanswered
    error: Optional[str] = None  # transport error, if any
    started: Optional[float] = None  # time.monotonic() just before the request
    finished: Optional[float] = None  # time.monotonic() when the response arrived


@dataclass
class Ingest:
    """Batches sent by the ingest thread of one round, in order."""

    batches: List[Batch] = field(default_factory=list)
    acknowledged: int = 0
    condition: threading.Condition = field(default_factory=threading.Condition)


def make_batch(round_index: int, batch_index: int, rng: np.random.Generator) -> Batch:
    vectors = rng.standard_normal((BATCH_SIZE, DIMENSION)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"r{round_index}-b{batch_index}-{i}" for i in range(BATCH_SIZE)]
    return Batch(ids=ids, embeddings=vectors)


def ingest(server: RavelinServer, collection_id: str, round_index: int, state: Ingest, seed: int):
    """Add batches until a request fails or MAX_BATCHES_PER_ROUND were sent."""
    rng = np.random.default_rng(seed)
    with server.http_client(timeout=30.0) as http:
        for batch_index in range(MAX_BATCHES_PER_ROUND):
            batch = make_batch(round_index, batch_index, rng)
            body = {
                "ids": batch.ids,
                "embeddings": batch.embeddings.tolist(),
                "metadatas": [{"batch": batch_index, "round": round_index}] * BATCH_SIZE,
                "documents": [f"document {record_id}" for record_id in batch.ids],
                "uris": None,
            }

            with state.condition:
                state.batches.append(batch)
                batch.started = time.monotonic()
                state.condition.notify_all()
            try:
                response = http.post(f"{DB_PATH}/collections/{collection_id}/add", json=body)
            except httpx.HTTPError as error:
                batch.error = repr(error)
                break

            with state.condition:
                batch.finished = time.monotonic()
                batch.status = response.status_code
                if response.status_code == 201:
                    state.acknowledged += 1
                state.condition.notify_all()
            if response.status_code != 201:
                break
    with state.condition:
        state.condition.notify_all()


def wait_for(state: Ingest, thread: threading.Thread, ready, description: str, seed: int) -> None:
    """Wait until ``ready()`` holds, the ingest thread ends, or ACK_WAIT_S pass."""
    deadline = time.monotonic() + ACK_WAIT_S
    with state.condition:
        while not ready() and thread.is_alive():
            remaining = deadline - time.monotonic()
            assert remaining > 0, (
                f"timed out after {ACK_WAIT_S} s waiting for {description} (seed {seed})"
            )
            state.condition.wait(timeout=min(remaining, 1.0))
    assert ready(), (
        f"the ingest thread stopped before {description}: "
        f"{[(b.status, b.error) for b in state.batches[-2:]]} (seed {seed})"
    )


def kill_mid_request(
    server: RavelinServer,
    state: Ingest,
    thread: threading.Thread,
    kill_after: int,
    rng: random.Random,
    seed: int,
) -> None:
    """Send SIGKILL after ``kill_after`` acknowledged batches, during the next request.

    The delay after that request starts is uniform between zero and the median
    duration of the acknowledged requests, so most kills land while the server
    is reading, decoding or committing the batch.
    """
    wait_for(state, thread, lambda: state.acknowledged >= kill_after, "the acknowledgements", seed)
    wait_for(
        state, thread, lambda: len(state.batches) > kill_after, "the next request to start", seed
    )
    with state.condition:
        durations = [b.finished - b.started for b in state.batches if b.finished is not None]
        started = state.batches[kill_after].started
    delay = rng.uniform(0.0, statistics.median(durations))
    time.sleep(max(0.0, started + delay - time.monotonic()))
    server.kill()


def present_count(http: httpx.Client, collection_id: str, ids: List[str]) -> int:
    response = http.post(
        f"{DB_PATH}/collections/{collection_id}/get", json={"ids": ids, "include": []}
    )
    assert response.status_code == 200, response.text
    return len(set(response.json()["ids"]) & set(ids))


def check_batches(server: RavelinServer, collection_id: str, history: Dict[int, Ingest], seed: int):
    """Assert the all-or-nothing rule for every batch sent so far."""
    present_total = 0
    with server.http_client() as http:
        for round_index, state in history.items():
            for batch_index, batch in enumerate(state.batches):
                present = present_count(http, collection_id, batch.ids)
                where = f"round {round_index} batch {batch_index} (seed {seed})"
                if batch.status == 201:
                    assert present == BATCH_SIZE, (
                        f"{where}: acknowledged but {present} of {BATCH_SIZE} present"
                    )
                else:
                    assert present in (0, BATCH_SIZE), (
                        f"{where}: torn batch, {present} of {BATCH_SIZE} present "
                        f"(status {batch.status}, error {batch.error})"
                    )
                present_total += present

        count = http.get(f"{DB_PATH}/collections/{collection_id}/count")
        assert count.status_code == 200, count.text
        assert count.json() == present_total, f"count disagrees with get (seed {seed})"


def check_acknowledged_contents(server: RavelinServer, collection_id: str, state: Ingest) -> None:
    """Assert that stored embeddings equal the sent ones and that query finds them."""
    acknowledged = [batch for batch in state.batches if batch.status == 201]
    sample = acknowledged[-1]
    with server.http_client() as http:
        response = http.post(
            f"{DB_PATH}/collections/{collection_id}/get",
            json={"ids": sample.ids, "include": ["embeddings"]},
        )
        assert response.status_code == 200, response.text
        stored = dict(zip(response.json()["ids"], response.json()["embeddings"], strict=True))
        for record_id, embedding in zip(sample.ids, sample.embeddings, strict=True):
            np.testing.assert_array_equal(np.asarray(stored[record_id], np.float32), embedding)

        query = http.post(
            f"{DB_PATH}/collections/{collection_id}/query",
            json={
                "query_embeddings": [sample.embeddings[0].tolist()],
                "n_results": 1,
                "include": ["distances"],
            },
        )
        assert query.status_code == 200, query.text
        assert query.json()["ids"] == [[sample.ids[0]]]


def test_sigkill_during_ingest(server_factory):
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    server = server_factory.start()
    data_dir = server.data_dir
    # l2 keeps the exact embedding comparison independent of any normalisation.
    collection = server.connect().create_collection(
        "crash", configuration={"hnsw": {"space": "l2"}}, embedding_function=None
    )
    collection_id = str(collection.id)
    history: Dict[int, Ingest] = {}

    for round_index in range(ROUNDS):
        state = Ingest()
        history[round_index] = state
        thread = threading.Thread(
            target=ingest,
            args=(server, collection_id, round_index, state, seed + round_index),
            daemon=True,
        )
        thread.start()

        kill_mid_request(server, state, thread, rng.randint(2, 25), rng, seed)
        thread.join(timeout=60)
        assert not thread.is_alive(), "the ingest thread did not stop after the kill"

        server = server_factory.start(data_dir=data_dir)
        check_batches(server, collection_id, history, seed)
        check_acknowledged_contents(server, collection_id, state)
