"""The HNSW index through the real server and the stock client, on all 100,000
records of wordnet-minilm-100k with the default collection configuration.

The tests run in order on one server and one collection: recall once the
background build finishes, a restart that loads the checkpoint and returns the
same results, and a SIGKILL after unsaved writes, which the next start replays.
Timings are measured by bench/server, not here.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import List

import numpy as np
import pytest

from conftest import DATASET_DIR, Dataset, RavelinServer, load_dataset, requires_dataset

pytestmark = requires_dataset

RECORDS = 100_000
BATCH_SIZE = 1000
QUERY_BATCH = 100
MIN_RECALL = 0.95
BUILD_TIMEOUT_S = 600.0
BUILT_LINE = "built the vector index"
LOADED_LINE = "loaded the vector index from its checkpoint"
COLLECTION = "wordnet-100k"

# Rows added again under new ids, and rows deleted, before the SIGKILL.
COPIED_ROWS = range(50_000, 52_000)
DELETED_ROWS = range(0, 1000)


def read_ground_truth(path: Path, k: int = 10) -> np.ndarray:
    raw = np.fromfile(path, dtype="<i4")
    width = int(raw[0]) + 1
    return raw.reshape(-1, width)[:, 1 : 1 + k]


def wait_for_line(server: RavelinServer, text: str, timeout: float) -> str:
    """Wait until the server's log contains ``text``; return the log."""
    deadline = time.monotonic() + timeout
    while True:
        log = server.stderr_text()
        if text in log:
            return log
        assert server.is_running(), f"the server exited; log:\n{log[-4000:]}"
        assert time.monotonic() < deadline, f"{text!r} not logged within {timeout} s"
        time.sleep(0.1)


def replayed_changes(log: str) -> int:
    """Return the replayed count of the log's checkpoint-load line."""
    lines = [line for line in log.splitlines() if LOADED_LINE in line]
    assert len(lines) == 1, f"expected one checkpoint-load line, got {lines}"
    match = re.search(r"replayed=(\d+)", lines[0])
    assert match, lines[0]
    return int(match.group(1))


def query_ids(collection, queries: np.ndarray) -> List[List[str]]:
    found = []
    for start in range(0, len(queries), QUERY_BATCH):
        result = collection.query(
            query_embeddings=queries[start : start + QUERY_BATCH], n_results=10, include=[]
        )
        found.extend(result["ids"])
    return found


def recall(found: List[List[str]], truth: np.ndarray, ids: List[str]) -> float:
    hits = sum(
        len(set(row) & {ids[index] for index in expected})
        for row, expected in zip(found, truth, strict=True)
    )
    return hits / (10 * len(found))


class State:
    """What the ordered tests hand to each other."""

    server: RavelinServer
    answers: List[List[str]]


@pytest.fixture(scope="module")
def full_dataset() -> Dataset:
    return load_dataset(RECORDS)


@pytest.fixture(scope="module")
def state(module_server_factory, full_dataset) -> State:
    server = module_server_factory.start()
    collection = server.connect().create_collection(COLLECTION, embedding_function=None)
    for start in range(0, RECORDS, BATCH_SIZE):
        stop = start + BATCH_SIZE
        collection.add(
            ids=full_dataset.ids[start:stop],
            embeddings=full_dataset.embeddings[start:stop],
            documents=full_dataset.documents[start:stop],
            metadatas=[full_dataset.metadata(row) for row in range(start, stop)],
        )
    wait_for_line(server, BUILT_LINE, BUILD_TIMEOUT_S)
    shared = State()
    shared.server = server
    return shared


def test_recall_at_default_parameters(state, full_dataset):
    collection = state.server.connect().get_collection(COLLECTION)
    assert collection.configuration_json["hnsw"]["max_neighbors"] == 16
    assert collection.configuration_json["hnsw"]["ef_search"] == 100

    state.answers = query_ids(collection, full_dataset.queries)
    truth = read_ground_truth(DATASET_DIR / "gt.ivecs")
    value = recall(state.answers, truth, full_dataset.ids)
    # Below 1.0, so the results came from the index and not from an exact scan.
    assert MIN_RECALL <= value < 1.0, f"recall@10 = {value:.4f}"


def test_restart_loads_checkpoint_and_answers_the_same(state, module_server_factory, full_dataset):
    data_dir = state.server.data_dir
    assert state.server.stop() == 0
    state.server = module_server_factory.start(data_dir=data_dir)

    assert replayed_changes(state.server.stderr_text()) == 0
    assert BUILT_LINE not in state.server.stderr_text()
    collection = state.server.connect().get_collection(COLLECTION)
    assert query_ids(collection, full_dataset.queries) == state.answers


def test_writes_after_checkpoint_replayed_after_sigkill(state, module_server_factory, full_dataset):
    collection = state.server.connect().get_collection(COLLECTION)
    copies = list(COPIED_ROWS)
    collection.add(
        ids=[f"copy-{row}" for row in copies],
        embeddings=full_dataset.embeddings[copies],
    )
    deleted = [full_dataset.ids[row] for row in DELETED_ROWS]
    collection.delete(ids=deleted)
    data_dir = state.server.data_dir
    state.server.kill()

    state.server = module_server_factory.start(data_dir=data_dir)
    log = state.server.stderr_text()
    assert replayed_changes(log) == len(COPIED_ROWS) + len(DELETED_ROWS)
    assert BUILT_LINE not in log

    collection = state.server.connect().get_collection(COLLECTION)
    assert collection.count() == RECORDS + len(COPIED_ROWS) - len(DELETED_ROWS)
    sample = copies[::40]
    found = query_ids(collection, full_dataset.embeddings[sample])
    for row, ids in zip(sample, found, strict=True):
        assert f"copy-{row}" in ids[:2], f"copy-{row} not found by its own vector: {ids}"
    deleted_set = set(deleted)
    for ids in query_ids(collection, full_dataset.embeddings[list(DELETED_ROWS)[::10]]):
        assert not deleted_set & set(ids), f"a deleted record was returned: {ids}"
