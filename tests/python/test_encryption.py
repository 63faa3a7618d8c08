"""Encryption at rest: no plaintext in the data dir, and a wrong or missing key touches nothing."""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path
from typing import Dict

import numpy as np
import pytest

from conftest import CRASH_MARKERS, RavelinServer, free_port, run_ravelin_to_exit

START_TIMEOUT_S = 30.0


def snapshot(data_dir: Path) -> Dict[str, bytes]:
    """Map every file and folder under ``data_dir`` (relative path) to its bytes.

    Folders map to ``b"<dir>"`` so that a new empty folder also shows up.
    """
    result = {}
    for root, dirs, files in os.walk(data_dir):
        for name in dirs:
            result[os.path.relpath(os.path.join(root, name), data_dir) + "/"] = b"<dir>"
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                result[os.path.relpath(path, data_dir)] = handle.read()
    return result


def add_secret_record(server: RavelinServer) -> dict:
    """Store one record made of random tokens and return the tokens."""
    token = secrets.token_hex(16)
    secret = {
        "collection": f"col-{token}",
        "id": f"rec-{token}",
        "document": f"doc {token} plaintext marker",
        "metadata": f"meta-{token}",
        "embedding": np.random.default_rng().standard_normal(8).astype("<f4"),
    }
    collection = server.connect().create_collection(secret["collection"], embedding_function=None)
    collection.add(
        ids=[secret["id"]],
        documents=[secret["document"]],
        metadatas=[{"marker": secret["metadata"]}],
        embeddings=[secret["embedding"]],
    )
    stored = collection.get(ids=[secret["id"]])
    assert stored["documents"] == [secret["document"]]
    return secret


def write_master_key(path: Path, key_hex: str) -> None:
    path.chmod(0o600)
    path.write_text(key_hex)
    path.chmod(0o400)


def serve_until_exit(data_dir: Path) -> subprocess.CompletedProcess:
    """Run ``ravelin serve`` and expect it to exit by itself within START_TIMEOUT_S."""
    args = ["serve", "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{free_port()}"]
    return run_ravelin_to_exit(args, timeout=START_TIMEOUT_S)


@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
def test_no_plaintext_on_disk(server_factory, stop):
    server = server_factory.start()
    secret = add_secret_record(server)

    if stop == "sigterm":
        server.stop()
    else:
        server.kill()

    files = snapshot(server.data_dir)
    assert any(name.startswith("db/") for name in files), f"no database files in {sorted(files)}"
    needles = {
        "collection name": secret["collection"].encode(),
        "record id": secret["id"].encode(),
        "document": secret["document"].encode(),
        "document token": secret["document"].split()[1].encode(),
        "metadata value": secret["metadata"].encode(),
        "embedding bytes": secret["embedding"].tobytes(),
    }
    for name, content in files.items():
        for description, needle in needles.items():
            assert needle not in name.encode(), f"the {description} appears in the file name {name}"
            assert needle not in content, f"the {description} appears in plaintext in {name}"


def test_wrong_master_key_rejected(server_factory):
    server = server_factory.start()
    secret = add_secret_record(server)
    server.stop()
    key_path = server.data_dir / "master.key"
    original_key = key_path.read_text()
    before = snapshot(server.data_dir)

    wrong_key = secrets.token_hex(32)
    assert wrong_key != original_key.strip()
    write_master_key(key_path, wrong_key)
    result = serve_until_exit(server.data_dir)

    assert result.returncode != 0, "ravelin serve accepted a wrong master key"
    assert "key" in result.stderr.lower(), f"the error does not mention the key:\n{result.stderr}"
    assert not any(marker in result.stderr for marker in CRASH_MARKERS), result.stderr
    after = snapshot(server.data_dir)
    assert after.pop("master.key") == wrong_key.encode()
    before.pop("master.key")
    assert sorted(after) == sorted(before), "files were added or removed"
    for name in before:
        assert after[name] == before[name], f"{name} changed while starting with a wrong key"

    write_master_key(key_path, original_key)
    restarted = server_factory.start(data_dir=server.data_dir)
    collection = restarted.connect().get_collection(secret["collection"], embedding_function=None)
    assert collection.get(ids=[secret["id"]])["documents"] == [secret["document"]]


def test_missing_master_key_rejected(server_factory):
    server = server_factory.start()
    add_secret_record(server)
    server.stop()
    key_path = server.data_dir / "master.key"
    before = snapshot(server.data_dir)

    key_path.unlink()
    result = serve_until_exit(server.data_dir)

    assert result.returncode != 0, "ravelin serve started without its master key"
    assert "key" in result.stderr.lower(), f"the error does not mention the key:\n{result.stderr}"
    assert not any(marker in result.stderr for marker in CRASH_MARKERS), result.stderr
    assert not key_path.exists(), "a new master key was generated for an existing database"
    after = snapshot(server.data_dir)
    before.pop("master.key")
    assert sorted(after) == sorted(before), "files were added or removed"
    for name in before:
        assert after[name] == before[name], f"{name} changed while starting without a key"


def test_master_key_file_format(server):
    key_path = server.data_dir / "master.key"

    key_text = key_path.read_text().strip()

    assert len(key_text) == 64
    assert all(c in "0123456789abcdefABCDEF" for c in key_text)
    assert key_path.stat().st_mode & 0o777 == 0o400
    assert server.data_dir.stat().st_mode & 0o777 == 0o700
