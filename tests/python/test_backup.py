"""Backup, restore and key rotation through the real binary.

``ravelin backup`` runs while a thread keeps adding batches through the stock client.
The backup is restored into a new data directory and served there. Every record
acknowledged before the backup started must be present, and every batch must be wholly
present or wholly absent. The collection must be consistent: count equals get, and
queries find stored vectors. Key rotation is checked the same way across a restart,
and the old key must no longer open the database.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path
from typing import List, Optional, Set

import numpy as np

from conftest import RavelinServer, free_port, run_ravelin, run_ravelin_to_exit

DIMENSION = 128
INITIAL_RECORDS = 30_000
INITIAL_BATCH = 1_000
WRITER_BATCH = 50
MAX_WRITER_BATCHES = 20_000
WRITER_WARMUP_BATCHES = 3
WARMUP_TIMEOUT_S = 60.0
COMMAND_TIMEOUT_S = 300.0
COLLECTION = "backup-test"
# A string in every document, which must not appear in the bytes of an encrypted copy.
MARKER = "plaintext-marker-5d1f"


def vectors(rng: np.random.Generator, count: int) -> np.ndarray:
    values = rng.standard_normal((count, DIMENSION)).astype(np.float32)
    return values / np.linalg.norm(values, axis=1, keepdims=True)


def add_initial_records(server: RavelinServer) -> List[str]:
    """Create the test collection with INITIAL_RECORDS records and return their ids."""
    collection = server.connect().create_collection(COLLECTION, embedding_function=None)
    rng = np.random.default_rng(11)
    ids = []
    for start in range(0, INITIAL_RECORDS, INITIAL_BATCH):
        batch_ids = [f"initial-{n}" for n in range(start, start + INITIAL_BATCH)]
        collection.add(
            ids=batch_ids,
            embeddings=vectors(rng, INITIAL_BATCH),
            documents=[f"document {n} {MARKER}" for n in range(start, start + INITIAL_BATCH)],
            metadatas=[{"n": n} for n in range(start, start + INITIAL_BATCH)],
        )
        ids.extend(batch_ids)
    return ids


class Writer(threading.Thread):
    """Adds batches of WRITER_BATCH records until stopped or MAX_WRITER_BATCHES."""

    def __init__(self, server: RavelinServer):
        super().__init__(daemon=True)
        self.server = server
        self.stop_requested = threading.Event()
        self.lock = threading.Lock()
        # The ids of each acknowledged batch, in order.
        self.acknowledged: List[List[str]] = []
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        rng = np.random.default_rng(12)
        try:
            collection = self.server.connect().get_collection(COLLECTION, embedding_function=None)
            for batch in range(MAX_WRITER_BATCHES):
                if self.stop_requested.is_set():
                    return
                ids = [f"writer-{batch}-{i}" for i in range(WRITER_BATCH)]
                collection.add(
                    ids=ids,
                    embeddings=vectors(rng, WRITER_BATCH),
                    documents=[f"writer document {MARKER}"] * WRITER_BATCH,
                )
                with self.lock:
                    self.acknowledged.append(ids)
        except BaseException as error:  # reported by the test thread
            self.error = error

    def acknowledged_batches(self) -> List[List[str]]:
        with self.lock:
            return list(self.acknowledged)

    def wait_for_batches(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acknowledged_batches()) < count:
            assert self.error is None, f"the writer failed: {self.error!r}"
            assert time.monotonic() < deadline, f"fewer than {count} batches in {timeout} s"
            time.sleep(0.05)


def file_contains(path: Path, needle: bytes) -> bool:
    return needle in path.read_bytes()


def test_backup_restore_with_concurrent_writes(server_factory, tmp_path):
    server = server_factory.start()
    initial_ids = add_initial_records(server)
    writer = Writer(server)
    writer.start()
    writer.wait_for_batches(WRITER_WARMUP_BATCHES, WARMUP_TIMEOUT_S)

    before = writer.acknowledged_batches()
    acknowledged_before: Set[str] = set(initial_ids)
    for ids in before:
        acknowledged_before.update(ids)
    destination = tmp_path / "backup"
    started = time.monotonic()
    result = run_ravelin(
        ["backup", str(destination), "--data-dir", str(server.data_dir)], timeout=COMMAND_TIMEOUT_S
    )
    backup_seconds = time.monotonic() - started
    during = len(writer.acknowledged_batches()) - len(before)
    writer.stop_requested.set()
    writer.join(timeout=COMMAND_TIMEOUT_S)
    assert not writer.is_alive(), "the writer did not stop"
    assert writer.error is None, f"the writer failed: {writer.error!r}"
    assert result.returncode == 0, result.stderr
    print(f"backup took {backup_seconds:.2f} s while {during} batches were acknowledged")
    assert during > 0, "no write was acknowledged while the backup ran"

    # The copy and its manifest: encrypted, no key, counts that cover what was acknowledged.
    manifest_text = (destination / "manifest.json").read_text()
    manifest = json.loads(manifest_text)
    copy = destination / "ravelin.db"
    assert manifest["database"]["bytes"] == copy.stat().st_size
    assert manifest["row_counts"]["records"] >= len(acknowledged_before)
    assert not file_contains(copy, MARKER.encode())
    assert not file_contains(copy, b"initial-12345")
    master_key = (server.data_dir / "master.key").read_text().strip()
    assert master_key not in manifest_text

    # Restore into a new data directory, which gets its own new master key.
    restored_dir = server_factory.new_data_dir()
    result = run_ravelin(
        [
            "restore",
            str(destination),
            "--data-dir",
            str(restored_dir),
            "--backup-key-file",
            str(server.data_dir / "master.key"),
        ],
        timeout=COMMAND_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr
    assert (restored_dir / "master.key").read_text().strip() != master_key
    shutil.copy(server.data_dir / "policy.toml", restored_dir / "policy.toml")
    restored = server_factory.start(data_dir=restored_dir)

    collection = restored.connect().get_collection(COLLECTION, embedding_function=None)
    count = collection.count()
    stored = set(collection.get(include=[])["ids"])
    assert count == manifest["row_counts"]["records"]
    assert len(stored) == count
    missing = acknowledged_before - stored
    assert not missing, f"{len(missing)} acknowledged records are missing, such as {sorted(missing)[:3]}"
    for ids in writer.acknowledged_batches():
        present = sum(1 for record_id in ids if record_id in stored)
        assert present in (0, len(ids)), f"batch {ids[0]} is torn: {present} of {len(ids)} present"

    # Queries find stored vectors: a record's own embedding is its nearest neighbour.
    probe_ids = ["initial-0", "initial-777", f"initial-{INITIAL_RECORDS - 1}"]
    probes = collection.get(ids=probe_ids, include=["embeddings", "documents"])
    assert sorted(probes["ids"]) == sorted(probe_ids)
    assert all(MARKER in document for document in probes["documents"])
    result = collection.query(query_embeddings=probes["embeddings"], n_results=1, include=[])
    assert [ids[0] for ids in result["ids"]] == probes["ids"]


def test_restore_with_wrong_key_replaces_nothing(server_factory, tmp_path):
    server = server_factory.start()
    server.connect().create_collection("kept", embedding_function=None).add(
        ids=["a"], embeddings=[[1.0, 0.0]]
    )
    destination = tmp_path / "backup"
    result = run_ravelin(["backup", str(destination), "--data-dir", str(server.data_dir)])
    assert result.returncode == 0, result.stderr
    server.stop()

    wrong_key = tmp_path / "wrong.key"
    wrong_key.write_text("ab" * 32 + "\n")
    wrong_key.chmod(0o400)
    database = server.data_dir / "db" / "ravelin.db"
    before = database.read_bytes()
    result = run_ravelin(
        [
            "restore",
            str(destination),
            "--data-dir",
            str(server.data_dir),
            "--backup-key-file",
            str(wrong_key),
        ]
    )

    assert result.returncode != 0
    assert "the key does not open the backup" in result.stderr, result.stderr
    assert database.read_bytes() == before
    # Neither a partial copy (ravelin.db.restoring) nor a set-aside database remains.
    leftovers = [path.name for path in database.parent.iterdir() if path.name.startswith("ravelin.db.")]
    assert leftovers == [], f"restore left {leftovers}"
    restarted = server_factory.start(data_dir=server.data_dir)
    assert restarted.connect().get_collection("kept", embedding_function=None).count() == 1


def test_key_rotation_round_trip(server_factory, tmp_path):
    server = server_factory.start()
    ids = add_initial_records(server)
    data_dir = server.data_dir

    rejected = run_ravelin(["key", "rotate", "--data-dir", str(data_dir)])
    assert rejected.returncode != 0
    assert "is in use by process" in rejected.stderr, rejected.stderr
    server.stop()

    key_file = data_dir / "master.key"
    old_key = key_file.read_text()
    result = run_ravelin(["key", "rotate", "--data-dir", str(data_dir)], timeout=COMMAND_TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    assert key_file.read_text() != old_key
    assert (data_dir / "master.key.old").read_text() == old_key
    assert key_file.stat().st_mode & 0o777 == 0o400
    assert not (data_dir / "master.key.new").exists()

    restarted = server_factory.start(data_dir=data_dir)
    collection = restarted.connect().get_collection(COLLECTION, embedding_function=None)
    assert collection.count() == len(ids)
    assert set(collection.get(include=[])["ids"]) == set(ids)
    probe = collection.get(ids=["initial-42"], include=["embeddings"])
    result = collection.query(query_embeddings=probe["embeddings"], n_results=1, include=[])
    assert result["ids"] == [["initial-42"]]
    restarted.stop()

    # The old key no longer opens the database.
    old_copy = tmp_path / "old.key"
    old_copy.write_text(old_key)
    old_copy.chmod(0o400)
    result = run_ravelin_to_exit(
        [
            "serve",
            "--data-dir",
            str(data_dir),
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--key-file",
            str(old_copy),
        ]
    )
    assert result.returncode != 0
    assert "cannot decrypt the database" in result.stderr, result.stderr
