"""The process sandbox of ``ravelin serve``: privilege drop, Landlock and seccomp.

Started as root, the server must serve as ``nobody`` with no capabilities,
no_new_privs set and a seccomp filter installed.

The denial tests use a build with the ``sandbox-probe`` test feature, which tests/run
builds. ``RAVELIN_PROBE_BIN`` names it, by default ``ravelin-sandbox-probe`` next to
``RAVELIN_BIN``. On SIGUSR2 that server runs the escape attempt named in
``DATA_DIR/sandbox-probe.request``. Landlock must deny file and network attempts with
EACCES, and seccomp must end the process with SIGSYS and an alert on stderr.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import time
import uuid
from pathlib import Path
from typing import Dict, Optional

import httpx
import pytest

from conftest import (
    RAVELIN_BIN,
    CRASH_MARKERS,
    RavelinServer,
    ServerFactory,
    free_port,
    run_ravelin,
    run_ravelin_to_exit,
)

PROBE_BIN = Path(
    os.environ.get("RAVELIN_PROBE_BIN", RAVELIN_BIN.with_name("ravelin-sandbox-probe"))
)
PROBE_TIMEOUT_S = 10.0
ALERT = "ravelin: sandbox violation: forbidden system call"
# EACCES as Rust formats it.
PERMISSION_DENIED = "denied: Permission denied (os error 13)"

requires_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="the privilege drop runs only when the server starts as root"
)


@pytest.fixture(scope="session")
def probe_bin() -> Path:
    if not PROBE_BIN.is_file():
        pytest.fail(
            f"sandbox probe binary not found at {PROBE_BIN}: build it with "
            "`cargo build --release -p ravelin --features sandbox-probe`, copy "
            "target/release/ravelin to that path, then rebuild without the feature; "
            "or set RAVELIN_PROBE_BIN",
            pytrace=False,
        )
    return PROBE_BIN


@pytest.fixture
def probe_server(server_factory, probe_bin) -> RavelinServer:
    return server_factory.start(binary=probe_bin)


def proc_status(pid: int) -> Dict[str, str]:
    """Return the fields of /proc/PID/status."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return fields


def send_probe(server: RavelinServer, request: str) -> Path:
    """Ask ``server`` to run one escape attempt; return the path of its result file."""
    result = server.data_dir / "sandbox-probe.result"
    result.unlink(missing_ok=True)
    (server.data_dir / "sandbox-probe.request").write_text(request + "\n", encoding="utf-8")
    server.process.send_signal(signal.SIGUSR2)
    return result


def probe(server: RavelinServer, request: str) -> Optional[str]:
    """Run one escape attempt in ``server`` and return its outcome line, or None when
    the process ended instead."""
    result = send_probe(server, request)
    deadline = time.monotonic() + PROBE_TIMEOUT_S
    while time.monotonic() < deadline:
        if result.exists():
            return result.read_text(encoding="utf-8").strip()
        if not server.is_running():
            return None
        time.sleep(0.05)
    pytest.fail(f"the probe [{request}] gave no result within {PROBE_TIMEOUT_S} s", pytrace=False)


def probe_expecting_kill(server: RavelinServer, request: str, syscall: str) -> None:
    """Run an attempt that seccomp must trap, and check how the process ended."""
    server.exit_expected = True
    outcome = probe(server, request)
    assert outcome is None, f"[{request}] did not stop the server: {outcome}"
    code = server.process.wait(timeout=PROBE_TIMEOUT_S)
    assert code == -signal.SIGSYS, f"exit code {code}; stderr:\n{server.stderr_text()[-2000:]}"
    alerts = [line for line in server.stderr_text().splitlines() if line.startswith(ALERT)]
    assert len(alerts) == 1, server.stderr_text()[-2000:]
    assert f"({syscall})" in alerts[0], alerts[0]


# The serving process.


@requires_root
def test_serving_process_has_no_privileges(server):
    nobody = pwd.getpwnam("nobody")
    status = proc_status(server.process.pid)

    assert status["Uid"].split() == [str(nobody.pw_uid)] * 4
    assert status["Gid"].split() == [str(nobody.pw_gid)] * 4
    assert status["Groups"] == ""
    for capabilities in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]:
        assert int(status[capabilities], 16) == 0, f"{capabilities}: {status[capabilities]}"
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"


@requires_root
def test_data_dir_handed_to_user(server):
    nobody = pwd.getpwnam("nobody")
    paths = [server.data_dir, *server.data_dir.rglob("*")]
    assert len(paths) > 5
    for path in paths:
        metadata = path.lstat()
        assert (metadata.st_uid, metadata.st_gid) == (nobody.pw_uid, nobody.pw_gid), path


def test_sandbox_logged_and_exported(server_factory):
    port = free_port()
    server = server_factory.start(extra_args=["--metrics-listen", f"127.0.0.1:{port}"])

    applied = [line for line in server.stderr_text().splitlines() if "sandbox applied" in line]
    assert len(applied) == 1, server.stderr_text()
    assert "seccomp=true" in applied[0], applied[0]

    with httpx.Client(timeout=10.0, trust_env=False) as http:
        text = http.get(f"http://127.0.0.1:{port}/metrics").text
    samples = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith("ravelin_sandbox_")
    }
    assert samples["ravelin_sandbox_no_new_privs"] == 1
    assert samples["ravelin_sandbox_seccomp"] == 1
    assert samples["ravelin_sandbox_landlock_fully_enforced"] == 1
    assert samples["ravelin_sandbox_landlock_abi"] >= 4
    if os.geteuid() == 0:
        assert samples["ravelin_sandbox_privileges_dropped"] == 1


@requires_root
def test_token_file_keeps_server_user(server_factory, tmp_path):
    config = tmp_path / "ravelin.toml"
    config.write_text("[tokens]\nenabled = true\n", encoding="utf-8")
    server = server_factory.start(extra_args=["--config", str(config)])
    created = run_ravelin(
        ["token", "create", "--principal", "admin", "--data-dir", str(server.data_dir)]
    )
    assert created.returncode == 0, created.stderr

    nobody = pwd.getpwnam("nobody")
    assert (server.data_dir / "tokens.toml").stat().st_uid == nobody.pw_uid
    with server.http_client() as http:
        response = http.get(
            "/auth/identity", headers={"Authorization": f"Bearer {created.stdout.strip()}"}
        )
    assert response.status_code == 200, response.text


# Startup checks.


def serve_rejected(data_dir: Path, *args: str) -> str:
    """Run ``ravelin serve`` that must exit with an error; return its stderr."""
    result = run_ravelin_to_exit(
        ["serve", "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{free_port()}", *args]
    )
    assert result.returncode != 0, result.stderr
    return result.stderr


@requires_root
@pytest.mark.parametrize(
    "user, message",
    [
        ("root", "never serves as root"),
        ("0:65534", "never serves as root"),
        ("no-such-user-here", "no-such-user-here is not in /etc/passwd"),
        ("bad name", "invalid user [bad name]"),
    ],
)
def test_bad_user_rejected(tmp_path, user, message):
    stderr = serve_rejected(tmp_path / "data", "--user", user)
    assert message in stderr, stderr


@requires_root
def test_unreachable_data_dir_rejected(server_factory, tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    stderr = serve_rejected(private / "data")
    assert "cannot open the data directory" in stderr, stderr
    assert "searchable" in stderr, stderr


# Landlock: file and network attempts fail with EACCES.


def test_probe_reads_inside_data_dir(probe_server):
    # The control for the denials below: the probe itself works.
    assert probe(probe_server, f"read {probe_server.data_dir / 'policy.toml'}") == "allowed"
    inside = probe_server.data_dir / "probe-write-check"
    assert probe(probe_server, f"write {inside}") == "allowed"
    assert inside.exists()


def test_read_outside_data_dir_denied(probe_server):
    # World-readable, so only Landlock can deny it.
    assert os.stat("/etc/passwd").st_mode & 0o004
    assert probe(probe_server, "read /etc/passwd") == PERMISSION_DENIED
    assert probe_server.is_running()


def test_write_outside_data_dir_denied(probe_server):
    # /tmp is writable by every user, so only Landlock can deny it.
    target = Path("/tmp") / f"ravelin-sandbox-probe-{uuid.uuid4().hex}"
    try:
        assert probe(probe_server, f"write {target}") == PERMISSION_DENIED
        assert not target.exists()
    finally:
        target.unlink(missing_ok=True)
    assert probe_server.is_running()


def test_connect_denied(probe_server):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]

        assert probe(probe_server, f"connect {port}") == PERMISSION_DENIED

        listener.settimeout(0.5)
        with pytest.raises(socket.timeout):
            listener.accept()
    assert probe_server.is_running()


# seccomp: the process ends with SIGSYS and an alert.


def test_exec_kills_with_alert(probe_server):
    probe_expecting_kill(probe_server, "exec", "execve")


def test_fork_kills_with_alert(probe_server):
    probe_expecting_kill(probe_server, "fork", "fork")


def test_raw_socket_kills_with_alert(probe_server):
    probe_expecting_kill(probe_server, "raw-socket", "socket")


def test_panic_does_not_trip_the_filter(probe_bin, tmp_path):
    # A panic with a backtrace must end only its own task. The factory's crash check
    # would flag the deliberate panic, so this server is stopped by hand.
    factory = ServerFactory(tmp_path)
    server = factory.start(binary=probe_bin)
    try:
        send_probe(server, "panic")
        deadline = time.monotonic() + PROBE_TIMEOUT_S
        while "the sandbox probe task failed" not in server.stderr_text():
            assert time.monotonic() < deadline, server.stderr_text()[-2000:]
            time.sleep(0.05)
        with server.http_client() as http:
            assert http.get("/heartbeat").status_code == 200
        assert server.is_running()
    finally:
        assert server.stop() == 0
    log = server.stderr_text()
    assert ALERT not in log
    assert "sandbox probe: a deliberate panic" in log
    # conftest sets RUST_BACKTRACE, and the frames need the executable's symbols.
    assert "ravelin_sandbox::probe::Attempt::run" in log, log[-3000:]
    assert not [marker for marker in CRASH_MARKERS if marker in log and marker != "panicked"]
