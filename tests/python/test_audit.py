"""The audit log on the real server: one record per decision, allowed or denied, in a
hash chain that `ravelin audit verify` checks, with nothing secret in it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

from conftest import ADMIN_GRANT, RavelinServer, run_ravelin

POLICY = ADMIN_GRANT + """
[[grant]]
principal = "reader"
actions = ["read"]
tenant = "default_tenant"
database = "default_database"
collection = "*"
"""

COLLECTIONS = "/tenants/default_tenant/databases/default_database/collections"
SECRET_DOCUMENT = "audit-must-not-contain-this-document"
TOKENS = "[tokens]\nenabled = true\n"


def records(server: RavelinServer) -> List[dict]:
    path = server.data_dir / "audit.log"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def verify(path: Path):
    return run_ravelin(["audit", "verify", str(path)])


def start(server_factory, tmp_path) -> RavelinServer:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY, encoding="utf-8")
    config = tmp_path / "ravelin.toml"
    config.write_text(TOKENS, encoding="utf-8")
    server = server_factory.start(extra_args=["--policy", str(policy), "--config", str(config)])
    issued = run_ravelin(["pki", "issue-client", "reader", "--data-dir", str(server.data_dir)])
    assert issued.returncode == 0, issued.stderr
    return server


def test_every_decision_recorded_in_a_verified_chain(server_factory, tmp_path):
    server = start(server_factory, tmp_path)
    with server.http_client("admin") as admin, server.http_client("reader") as reader:
        created = admin.post(COLLECTIONS, json={"name": "audited"})
        collection_id = created.json()["id"]
        added = admin.post(
            f"{COLLECTIONS}/{collection_id}/add",
            json={"ids": ["r1"], "embeddings": [[0.25, 0.5]], "documents": [SECRET_DOCUMENT]},
        )
        # Written and on disk before the response to a write left the server.
        assert records(server)[-1]["route"] == "records.add"
        forbidden = reader.post(
            f"{COLLECTIONS}/{collection_id}/add", json={"ids": ["r2"], "embeddings": [[1, 2]]}
        )
        hidden = reader.get("/tenants/elsewhere")
        bad_token = reader.get(COLLECTIONS, headers={"X-Chroma-Token": "rvl_bad"})
        heartbeat = reader.get("/heartbeat")
    statuses = [r.status_code for r in (created, added, forbidden, hidden, bad_token, heartbeat)]
    assert statuses == [200, 201, 403, 404, 401, 200]

    log = records(server)
    summary = [(r["principal"], r["route"], r.get("action"), r["outcome"], r["status"]) for r in log]
    assert summary == [
        ("admin", "collections.create", "admin", "allowed", 200),
        ("admin", "records.add", "write", "allowed", 201),
        ("reader", "records.add", "write", "denied", 403),
        ("reader", "tenants.get", "read", "denied", 404),
        ("reader", "collections.list", "read", "unauthenticated", 401),
    ], "one record per decision; heartbeat makes none"
    assert log[1]["collection"] == collection_id
    assert log[0]["tenant"] == "default_tenant"
    assert log[0]["database"] == "default_database"
    assert all(len(r["fingerprint"]) == 64 for r in log)
    assert all(r["peer"].startswith("127.0.0.1:") for r in log)
    assert added.headers["chroma-trace-id"] == log[1]["request_id"]

    text = (server.data_dir / "audit.log").read_text(encoding="utf-8")
    assert SECRET_DOCUMENT not in text
    assert "0.25" not in text
    assert "rvl_bad" not in text

    result = verify(server.data_dir / "audit.log")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"OK: {len(log)} records")


def test_chain_continues_across_restart(server_factory, tmp_path):
    server = start(server_factory, tmp_path)
    with server.http_client("admin") as admin:
        admin.get(COLLECTIONS)
    data_dir = server.data_dir
    server.stop()
    server = server_factory.start(
        data_dir=data_dir,
        extra_args=["--policy", str(tmp_path / "policy.toml"), "--config", str(tmp_path / "ravelin.toml")],
    )
    with server.http_client("admin") as admin:
        admin.get(COLLECTIONS)
    log = records(server)
    assert [r["seq"] for r in log] == [1, 2]
    assert log[1]["prev"] == log[0]["hash"]
    assert verify(data_dir / "audit.log").returncode == 0


def test_edited_record_fails_verification(server_factory, tmp_path):
    server = start(server_factory, tmp_path)
    with server.http_client("admin") as admin:
        for _ in range(3):
            admin.get(COLLECTIONS)
    server.stop()
    path = server.data_dir / "audit.log"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[1] = lines[1].replace('"principal":"admin"', '"principal":"someone"')
    edited = tmp_path / "edited.log"
    edited.write_text("".join(lines), encoding="utf-8")
    result = verify(edited)
    assert result.returncode == 1
    assert "record 2" in result.stderr

    reordered = tmp_path / "reordered.log"
    reordered.write_text("".join([lines[0], lines[2], lines[1]]), encoding="utf-8")
    result = verify(reordered)
    assert result.returncode == 1
    assert "record 2" in result.stderr
