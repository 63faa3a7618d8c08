"""Fixtures that run the real ``ravelin`` binary and load the test dataset.

Environment:
    RAVELIN_BIN: the server binary (default ``<repo>/target/release/ravelin``).
    RAVELIN_TEST_DATA: the folder that contains ``wordnet-minilm-100k/``
        (default ``<repo>/../shared/data``). Dataset tests skip when it is absent.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

import httpx
import numpy as np
import pytest

import ravelin_client

REPO = Path(__file__).resolve().parents[2]
RAVELIN_BIN = Path(os.environ.get("RAVELIN_BIN", REPO / "target" / "release" / "ravelin"))
TEST_DATA = Path(os.environ.get("RAVELIN_TEST_DATA", REPO.parent / "shared" / "data"))
DATASET_DIR = TEST_DATA / "wordnet-minilm-100k"

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
START_ATTEMPTS = 3
# Lines that Rust's runtime writes to stderr when a thread panics or the process aborts.
CRASH_MARKERS = ("panicked", "fatal runtime error", "has overflowed its stack")
# What the server logs for every response with a 5xx status other than 501.
SERVER_ERROR_MARKER = "request failed"
DIMENSION = 384

# The policy grant that gives the development PKI's admin principal everything; tests
# that write their own policy start from it.
ADMIN_GRANT = """
[[grant]]
principal = "admin"
actions = ["read", "write", "admin"]
tenant = "*"
database = "*"
collection = "*"
"""

requires_dataset = pytest.mark.skipif(
    not (DATASET_DIR / "base.fvecs").is_file(),
    reason=f"test dataset not found at {DATASET_DIR} (set RAVELIN_TEST_DATA to the folder "
    "that contains wordnet-minilm-100k/)",
)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_ravelin(args: Sequence[str], timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run ``ravelin ARGS`` to completion and return its result with text output.

    A process still running after ``timeout`` seconds is killed and
    ``subprocess.TimeoutExpired`` is raised.
    """
    return subprocess.run(
        [str(RAVELIN_BIN), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_server_env(),
    )


def run_ravelin_to_exit(args: Sequence[str], timeout: float = 30.0) -> subprocess.CompletedProcess:
    """Run ``ravelin ARGS`` that should exit by itself; fail the test if it is still
    running after ``timeout`` seconds (it is then killed)."""
    try:
        return run_ravelin(args, timeout=timeout)
    except subprocess.TimeoutExpired as expired:
        stderr = expired.stderr
        if isinstance(stderr, bytes):
            stderr = stderr.decode("utf-8", errors="replace")
        pytest.fail(
            f"`ravelin {' '.join(args)}` was still running after {timeout} s, but it "
            f"should have exited with an error. stderr:\n{stderr}",
            pytrace=False,
        )


def _server_env() -> dict:
    env = dict(os.environ)
    env.setdefault("RUST_BACKTRACE", "1")
    return env


# The session's own temporary folder, when pytest_configure made one.
_SESSION_TEMP = pytest.StashKey[Path]()


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config) -> None:
    """Give a session run as root a temporary folder of its own, outside
    ``/tmp/pytest-of-root``.

    A server started as root serves as ``nobody`` and must reach its data directory
    and policy file by path (see ``allow_search``). Every pytest session that starts
    resets ``/tmp/pytest-of-root`` to mode 0700, which would lock out the servers of any
    other session running at the time. The folder is removed when every test passed.
    Runs before pytest's own ``pytest_configure``, which reads ``--basetemp``.
    """
    if os.geteuid() != 0 or config.option.basetemp:
        return
    top = Path(tempfile.mkdtemp(prefix="ravelin-pytest-"))
    top.chmod(0o711)
    config.option.basetemp = str(top / "basetemp")
    config.stash[_SESSION_TEMP] = top


def pytest_sessionfinish(session, exitstatus) -> None:
    top = session.config.stash.get(_SESSION_TEMP, None)
    if top is None:
        return
    if exitstatus == 0:
        shutil.rmtree(top, ignore_errors=True)
    else:
        print(f"\nserver logs and data directories are kept in {top}")


def allow_search(path: Path) -> None:
    """Let other users pass through ``path`` and the temporary folders above it.

    A server started as root serves as ``nobody``, so it must be able to reach its data
    directory by path, and pytest creates its temporary folders with mode 0700. Only
    the search bit is added: other users still cannot list these folders.
    """
    if os.geteuid() != 0:
        return
    top = Path(tempfile.gettempdir()).resolve()
    current = path.resolve()
    while top in current.parents:
        mode = stat.S_IMODE(current.stat().st_mode)
        if not mode & stat.S_IXOTH:
            current.chmod(mode | stat.S_IXOTH)
        current = current.parent


class RavelinServer:
    """One ``ravelin serve`` (or ``ravelin gateway``) process on 127.0.0.1, with its
    stderr in a log file."""

    def __init__(
        self,
        data_dir: Path,
        port: int,
        log_path: Path,
        serve_args: Sequence[str],
        binary: Optional[Path] = None,
        command: str = "serve",
    ):
        """Run ``BINARY COMMAND SERVE_ARGS`` (``RAVELIN_BIN`` and ``serve`` by default),
        which must make it use ``data_dir`` and ``port``."""
        self.data_dir = data_dir
        self.port = port
        self.log_path = log_path
        self.args = [str(binary or RAVELIN_BIN), command, *serve_args]
        self.exit_code: Optional[int] = None
        # Set when a test stops or kills the process, or sees it exit during startup.
        self.exit_expected = False
        # Set by a test that provokes server errors on purpose, such as a gateway
        # whose upstream is down, so that teardown does not report them as crashes.
        self.server_errors_expected = False
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=_server_env(),
            )

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/api/v2"

    @property
    def ca(self) -> Path:
        return self.paths("admin")[0]

    @property
    def cert(self) -> Path:
        return self.paths("admin")[1]

    @property
    def key(self) -> Path:
        return self.paths("admin")[2]

    def paths(self, principal: str = "admin"):
        """Return the (CA, certificate, key) paths of ``principal`` in the data dir."""
        return ravelin_client.data_dir_paths(self.data_dir, principal)

    def ssl_context(self, principal: str = "admin") -> ssl.SSLContext:
        return ravelin_client.client_ssl_context(*self.paths(principal))

    def http_client(self, principal: str = "admin", timeout: float = 30.0) -> httpx.Client:
        """Return an httpx client that presents ``principal``'s certificate."""
        return httpx.Client(
            base_url=self.base_url, verify=self.ssl_context(principal), timeout=timeout
        )

    def connect(self, principal: str = "admin", **kwargs):
        return ravelin_client.connect(self.host, self.port, *self.paths(principal), **kwargs)

    def admin_connect(self, principal: str = "admin"):
        return ravelin_client.admin_connect(self.host, self.port, *self.paths(principal))

    def stderr_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def is_running(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Wait until a heartbeat over mutual TLS succeeds.

        Raises:
            ServerExited: the process ended first.
            TimeoutError: no heartbeat succeeded within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        last_error: Optional[BaseException] = None
        while time.monotonic() < deadline:
            if not self.is_running():
                self.exit_code = self.process.returncode
                self.exit_expected = True
                raise ServerExited(self)
            try:
                with self.http_client(timeout=2.0) as client:
                    response = client.get("/heartbeat")
                if response.status_code == 200:
                    return
                last_error = RuntimeError(f"heartbeat returned HTTP {response.status_code}")
            except (OSError, ssl.SSLError, httpx.HTTPError) as error:
                # The PKI files may not exist or be half-written yet, and the
                # listener may not be bound yet.
                last_error = error
            time.sleep(0.1)
        raise TimeoutError(
            f"ravelin serve on port {self.port} did not answer a heartbeat within "
            f"{timeout} s (last error: {last_error!r}); stderr:\n{self.stderr_text()[-4000:]}"
        )

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """Send SIGTERM, then SIGKILL if the process is still running after ``timeout`` s.

        Returns the exit code (negative for a signal, as in ``subprocess``).
        """
        self.exit_expected = True
        if self.is_running():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        self.exit_code = self.process.returncode
        return self.exit_code

    def kill(self) -> int:
        """Send SIGKILL and wait for the process to end."""
        self.exit_expected = True
        if self.is_running():
            self.process.kill()
        self.exit_code = self.process.wait(timeout=STOP_TIMEOUT_S)
        return self.exit_code


class ServerExited(RuntimeError):
    """A server process ended before it became ready."""

    def __init__(self, server: RavelinServer):
        self.server = server
        super().__init__(
            f"ravelin serve exited with code {server.exit_code} before becoming ready; "
            f"stderr:\n{server.stderr_text()[-4000:]}"
        )


class ServerFactory:
    """Start servers in a temporary folder and stop them all at teardown."""

    def __init__(self, root: Path):
        self.root = root
        self.servers: List[RavelinServer] = []
        self._data_dir_count = 0
        allow_search(root)

    def new_data_dir(self) -> Path:
        """Return a path for a data dir that does not exist yet, so the server creates it."""
        self._data_dir_count += 1
        return self.root / f"data-{self._data_dir_count}"

    def start(
        self,
        data_dir: Optional[Path] = None,
        extra_args: Sequence[str] = (),
        ready_timeout: float = READY_TIMEOUT_S,
        binary: Optional[Path] = None,
        command: str = "serve",
    ) -> RavelinServer:
        """Start ``ravelin COMMAND --data-dir DIR --listen 127.0.0.1:PORT EXTRA_ARGS``.

        The port is a free one. A start that fails because the port was taken
        in the meantime is retried on another port, at most ``START_ATTEMPTS``
        times in all. ``binary`` replaces ``RAVELIN_BIN``.
        """
        if data_dir is None:
            data_dir = self.new_data_dir()
        for attempt in range(1, START_ATTEMPTS + 1):
            port = free_port()
            serve_args = ["--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}", *extra_args]
            try:
                return self.start_with_args(serve_args, data_dir, port, ready_timeout, binary, command)
            except ServerExited as exited:
                if attempt < START_ATTEMPTS and "in use" in exited.server.stderr_text():
                    continue
                raise
        raise AssertionError("unreachable")

    def start_with_args(
        self,
        serve_args: Sequence[str],
        data_dir: Path,
        port: int,
        ready_timeout: float = READY_TIMEOUT_S,
        binary: Optional[Path] = None,
        command: str = "serve",
    ) -> RavelinServer:
        """Start ``ravelin COMMAND SERVE_ARGS`` and wait until it is ready.

        ``serve_args`` must make the server use ``data_dir`` and listen on
        127.0.0.1:``port`` (through flags or a config file).
        """
        log_path = self.root / f"server-{len(self.servers)}.log"
        server = RavelinServer(data_dir, port, log_path, serve_args, binary, command)
        self.servers.append(server)
        try:
            server.wait_ready(ready_timeout)
        except TimeoutError:
            server.stop()
            raise
        return server

    def stop_all(self) -> List[str]:
        """Stop every server and describe each one that crashed.

        A crash is a panic or a fatal runtime error (such as a stack overflow)
        in the log, an exit that no test requested, or a request that failed with
        a server error (the server logs each one as "request failed").
        """
        crashes = []
        for server in self.servers:
            exited_by_itself = not server.exit_expected and not server.is_running()
            server.stop()
            log = server.stderr_text()
            command = " ".join(server.args)
            if exited_by_itself:
                crashes.append(f"exited by itself with code {server.exit_code}: {command}")
            if any(marker in log for marker in CRASH_MARKERS):
                crashes.append(f"{command}\n{log[-4000:]}")
            failed = [line for line in log.splitlines() if SERVER_ERROR_MARKER in line]
            if failed and not server.server_errors_expected:
                crashes.append(f"{command}: {len(failed)} server errors, first: {failed[0]}")
        return crashes


def _finish(factory: ServerFactory) -> None:
    crashes = factory.stop_all()
    if crashes:
        pytest.fail("a ravelin server crashed:\n\n" + "\n\n".join(crashes), pytrace=False)


@pytest.fixture(scope="session")
def ravelin_bin() -> Path:
    if not RAVELIN_BIN.is_file():
        pytest.fail(
            f"ravelin binary not found at {RAVELIN_BIN}: build it with "
            "`cargo build --release -p ravelin` or set RAVELIN_BIN",
            pytrace=False,
        )
    return RAVELIN_BIN


@pytest.fixture
def server_factory(ravelin_bin, tmp_path) -> Iterator[ServerFactory]:
    factory = ServerFactory(tmp_path)
    yield factory
    _finish(factory)


@pytest.fixture(scope="module")
def module_server_factory(ravelin_bin, tmp_path_factory) -> Iterator[ServerFactory]:
    factory = ServerFactory(tmp_path_factory.mktemp("ravelin"))
    yield factory
    _finish(factory)


@pytest.fixture
def server(server_factory) -> RavelinServer:
    return server_factory.start()


@dataclass
class Dataset:
    """The first records of wordnet-minilm-100k and all its queries."""

    ids: List[str]
    documents: List[str]
    sources: List[str]
    embeddings: np.ndarray  # (n, 384) float32, L2-normalised
    queries: np.ndarray  # (500, 384) float32, L2-normalised

    def metadata(self, row: int) -> dict:
        return {"source": self.sources[row], "row": row}


def read_fvecs(path: Path, count: Optional[int] = None) -> np.ndarray:
    """Read ``count`` vectors (all when None) from a little-endian ``.fvecs`` file."""
    raw = np.fromfile(path, dtype="<f4", count=-1 if count is None else count * (DIMENSION + 1))
    rows = raw.reshape(-1, DIMENSION + 1)
    dimensions = rows[:, 0].view("<i4")
    if not np.all(dimensions == DIMENSION):
        raise ValueError(f"{path}: expected dimension {DIMENSION} in every record")
    return np.ascontiguousarray(rows[:, 1:], dtype=np.float32)


def load_dataset(count: int) -> Dataset:
    embeddings = read_fvecs(DATASET_DIR / "base.fvecs", count)
    queries = read_fvecs(DATASET_DIR / "query.fvecs")
    ids, documents, sources = [], [], []
    with open(DATASET_DIR / "base.jsonl", encoding="utf-8") as lines:
        for line in lines:
            if len(ids) == count:
                break
            record = json.loads(line)
            ids.append(record["id"])
            documents.append(record["document"])
            sources.append(record["source"])
    if len(ids) != count or embeddings.shape[0] != count:
        raise ValueError(f"{DATASET_DIR}: fewer than {count} base records")
    return Dataset(ids, documents, sources, embeddings, queries)


@pytest.fixture(scope="session")
def dataset() -> Dataset:
    """The first 10,000 base records and the 500 queries; skips when the data is absent."""
    if not (DATASET_DIR / "base.fvecs").is_file():
        pytest.skip(f"test dataset not found at {DATASET_DIR} (set RAVELIN_TEST_DATA)")
    return load_dataset(10_000)
