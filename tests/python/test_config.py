"""`ravelin serve` configuration, first-start layout, restart and shutdown."""

from __future__ import annotations

import re

import chromadb.errors
import pytest

from conftest import CRASH_MARKERS, free_port, run_ravelin_to_exit

FIRST_START_FILES = [
    "master.key",
    "policy.toml",
    "pki/ca.pem",
    "pki/ca.key",
    "pki/server.pem",
    "pki/server.key",
    "pki/clients/admin.pem",
    "pki/clients/admin.key",
    "db/ravelin.db",
]


def toml_string(value: str) -> str:
    """Quote ``value`` as a TOML literal string (the test paths contain no quotes)."""
    assert "'" not in value
    assert "\n" not in value
    return f"'{value}'"


def test_config_file_sets_listen_and_data_dir(server_factory, tmp_path):
    data_dir = tmp_path / "configured-data"
    port = free_port()
    config = tmp_path / "ravelin.toml"
    config.write_text(
        f"listen = {toml_string(f'127.0.0.1:{port}')}\ndata_dir = {toml_string(str(data_dir))}\n"
    )

    server = server_factory.start_with_args(["--config", str(config)], data_dir, port)

    assert (data_dir / "master.key").is_file()
    assert f"listening on https://127.0.0.1:{port}" in server.stderr_text()
    assert server.connect().heartbeat() > 0


def test_flags_override_config(server_factory, tmp_path):
    data_dir = tmp_path / "flag-data"
    port = free_port()
    config = tmp_path / "ravelin.toml"
    config.write_text(
        f"listen = {toml_string(f'127.0.0.1:{free_port()}')}\n"
        f"data_dir = {toml_string(str(tmp_path / 'config-data'))}\n"
    )
    serve_args = ["--config", str(config), "--data-dir", str(data_dir)]
    serve_args += ["--listen", f"127.0.0.1:{port}"]

    server = server_factory.start_with_args(serve_args, data_dir, port)

    assert server.connect().heartbeat() > 0
    assert (data_dir / "master.key").is_file()
    assert not (tmp_path / "config-data").exists()


def test_config_allow_reset(server_factory, tmp_path):
    data_dir = tmp_path / "reset-data"
    port = free_port()
    config = tmp_path / "ravelin.toml"
    config.write_text(
        f"listen = {toml_string(f'127.0.0.1:{port}')}\n"
        f"data_dir = {toml_string(str(data_dir))}\n"
        "allow_reset = true\n"
    )

    server = server_factory.start_with_args(["--config", str(config)], data_dir, port)
    with server.http_client() as http:
        response = http.post("/reset")

    assert response.status_code == 200, response.text


def test_config_unknown_key_rejected(tmp_path):
    config = tmp_path / "ravelin.toml"
    config.write_text(
        f"listen = {toml_string(f'127.0.0.1:{free_port()}')}\n"
        f"data_dir = {toml_string(str(tmp_path / 'data'))}\n"
        "no_such_option = 1\n"
    )

    result = run_ravelin_to_exit(["serve", "--config", str(config)])

    assert result.returncode != 0
    assert "no_such_option" in result.stderr
    assert not any(marker in result.stderr for marker in CRASH_MARKERS), result.stderr


def test_config_missing_file_rejected(tmp_path):
    missing = tmp_path / "absent.toml"

    result = run_ravelin_to_exit(["serve", "--config", str(missing)])

    assert result.returncode != 0
    assert str(missing) in result.stderr
    assert not any(marker in result.stderr for marker in CRASH_MARKERS), result.stderr


def test_listen_address_in_use_rejected(server, tmp_path):
    args = ["serve", "--data-dir", str(tmp_path / "other"), "--listen", f"127.0.0.1:{server.port}"]

    result = run_ravelin_to_exit(args)

    assert result.returncode != 0
    assert str(server.port) in result.stderr


def test_first_start_layout(server):
    for relative in FIRST_START_FILES:
        assert (server.data_dir / relative).is_file(), f"{relative} missing after first start"
    assert server.data_dir.stat().st_mode & 0o777 == 0o700
    assert (server.data_dir / "master.key").stat().st_mode & 0o777 == 0o400
    for secret in ["pki/ca.key", "pki/server.key", "pki/clients/admin.key"]:
        mode = (server.data_dir / secret).stat().st_mode & 0o777
        assert mode & 0o077 == 0, f"{secret} is readable by group or others (mode {mode:o})"
    assert re.search(r"listening on https://127\.0\.0\.1:\d+", server.stderr_text())


def test_restart_reuses_keys_and_data(server_factory):
    server = server_factory.start()
    server.connect().create_collection("survives-restart", embedding_function=None)
    before = {
        relative: (server.data_dir / relative).read_bytes()
        for relative in FIRST_START_FILES
        if not relative.startswith("db/")
    }
    server.stop()

    restarted = server_factory.start(data_dir=server.data_dir)

    for relative, content in before.items():
        assert (restarted.data_dir / relative).read_bytes() == content, f"{relative} was rewritten"
    names = [c.name for c in restarted.connect().list_collections()]
    assert names == ["survives-restart"]


def test_sigterm_exits_cleanly(server):
    assert server.stop() == 0, server.stderr_text()[-2000:]


def test_reset_forbidden_by_default(server):
    client = server.connect()
    client.create_collection("kept", embedding_function=None)

    with server.http_client() as http:
        response = http.post("/reset")

    assert response.status_code == 403
    assert [c.name for c in client.list_collections()] == ["kept"]


def test_reset_allowed_with_flag(server_factory):
    server = server_factory.start(extra_args=["--allow-reset"])
    client = server.connect()
    client.create_collection("dropped", embedding_function=None)

    with server.http_client() as http:
        response = http.post("/reset")

    assert response.status_code == 200, response.text
    assert response.json() is True
    assert client.list_collections() == []
    with pytest.raises(chromadb.errors.NotFoundError):
        client.get_collection("dropped", embedding_function=None)
