"""Pieces the benchmark scripts in bench/ share: server processes with a log file, waits
with a deadline, the dataset reader and latency statistics.

Only the standard library is imported at module level, so a script can import this
before it re-executes itself under the test venv. Functions import numpy themselves.
"""

import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".venv"
PYTHON = VENV / "bin" / "python"
RAVELIN = REPO / "target" / "release" / "ravelin"
HOST = "127.0.0.1"
N_RESULTS = 10

STOP_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.05
LOG_TAIL_CHARS = 4000


class Process:
    """A server process on loopback, with stdout and stderr in one log file."""

    def __init__(self, command: list, log_path: Path):
        self.command = command
        self.log_path = log_path
        env = dict(os.environ, RUST_BACKTRACE="1", ANONYMIZED_TELEMETRY="False")
        with open(log_path, "ab") as log_file:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_file,
                                            stderr=log_file, env=env)

    def is_running(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self) -> str:
        return self.log_text()[-LOG_TAIL_CHARS:]

    def stop(self) -> None:
        """Send SIGTERM, and SIGKILL after STOP_TIMEOUT_S."""
        if not self.is_running():
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def wait_until(condition: Callable[[], bool], timeout: float, process: Optional[Process], awaited: str) -> float:
    """Poll `condition` until it holds; fail if `process` exits or `timeout` passes.
    Returns the seconds waited."""
    started = time.perf_counter()
    while not condition():
        if process is not None and not process.is_running():
            raise RuntimeError(f"{process.command[0]} exited with code {process.process.returncode} "
                               f"while waiting for {awaited}:\n{process.log_tail()}")
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {awaited}")
        time.sleep(POLL_INTERVAL_S)
    return time.perf_counter() - started


def make_work_dir(prefix: str) -> Path:
    """Create a temporary folder for data directories and logs. It is searchable by
    every user, because a server started as root serves as `nobody` and must reach
    its data directory inside."""
    work_dir = Path(tempfile.mkdtemp(prefix=prefix))
    work_dir.chmod(0o755)
    return work_dir


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def ensure_test_venv(imports_ok: bool) -> None:
    """Re-execute the calling script under .venv/bin/python unless it runs there."""
    script = Path(sys.argv[0]).name
    if Path(sys.prefix).resolve() == VENV.resolve():
        if not imports_ok:
            sys.exit(f"bench/{script}: {PYTHON} lacks numpy, chromadb or ravelin_client; "
                     "run tests/run once, which installs them")
        return
    if not PYTHON.exists():
        sys.exit(f"bench/{script}: {PYTHON} not found; run tests/run once, which creates "
                 "the test venv with chromadb, numpy and ravelin_client")
    os.execv(str(PYTHON), [str(PYTHON), str(Path(sys.argv[0]).resolve()), *sys.argv[1:]])


def run_or_exit(command: list, script: str) -> None:
    if subprocess.run(command, cwd=REPO).returncode != 0:
        sys.exit(f"bench/{script}: `{' '.join(command)}` failed; fix the build or pass --no-build")


def default_data() -> Path:
    return Path(os.environ.get("RAVELIN_BENCH_DATA", REPO.parent / "shared" / "data" / "wordnet-minilm-100k"))


def read_vecs(path: Path, dtype, count: int = -1):
    """Read `count` vectors (all when -1) from a little-endian .fvecs or .ivecs file."""
    import numpy as np

    dimension = int(np.fromfile(path, dtype="<i4", count=1)[0])
    raw = np.fromfile(path, dtype="<i4", count=-1 if count < 0 else count * (dimension + 1))
    rows = raw.reshape(-1, dimension + 1)[:, 1:]
    return np.ascontiguousarray(rows.view(dtype))


def load_dataset(data: Path, limit: int, k: int):
    """Return the base vectors (the first `limit`, or all when 0), the query vectors and
    each query's `k` nearest base indices by cosine: from gt.ivecs for the whole set,
    computed with numpy for a prefix."""
    import numpy as np

    base_path, query_path, truth_path = data / "base.fvecs", data / "query.fvecs", data / "gt.ivecs"
    for path in [base_path, query_path]:
        if not path.is_file():
            sys.exit(f"{path} not found; pass --data DIR or set RAVELIN_BENCH_DATA")
    dimension = int(np.fromfile(base_path, dtype="<i4", count=1)[0])
    total = base_path.stat().st_size // (4 * (dimension + 1))
    if limit > total:
        sys.exit(f"--limit {limit} exceeds the {total} base vectors in {data}")
    base = read_vecs(base_path, "<f4", limit or -1)
    queries = read_vecs(query_path, "<f4")
    if len(base) == total and truth_path.is_file():
        return base, queries, read_vecs(truth_path, "<i4")[:, :k]

    base_unit = base / np.linalg.norm(base, axis=1, keepdims=True)
    query_unit = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    similarities = query_unit @ base_unit.T
    nearest = np.argpartition(-similarities, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(similarities, nearest, axis=1), axis=1)
    return base, queries, np.take_along_axis(nearest, order, axis=1)


def latency_stats(seconds: list, prefix: str = "") -> dict:
    import numpy as np

    milliseconds = np.array(seconds) * 1000.0
    return {
        f"{prefix}p50_ms": float(np.percentile(milliseconds, 50)),
        f"{prefix}p99_ms": float(np.percentile(milliseconds, 99)),
        f"{prefix}max_ms": float(milliseconds.max()),
    }


def emit(record: dict) -> dict:
    print(json.dumps(record), flush=True)
    return record


def machine_description() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} CPUs ({model or platform.processor()}){memory}, Linux {platform.release()}"
