"""The parent's side of an engine build: run the child, keep its log, put the plan in place atomically.

The plan is written to ``.<engine>.<random>.partial`` beside the engine and renamed over the engine only
after the child exited 0 and the file is non-empty, so no half-written engine is ever where a good one
is expected. The build log goes to ``.trtbuild/logs/<model>.log``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trtbuild.errors import BuildError
from trtbuild.state.atomic import partial_path, publish, remove_partials
from trtbuild.state.statcache import sha256_file

LOG_TAIL_LINES = 25


@dataclass(frozen=True)
class BuiltEngine:
    """A plan the child wrote and the parent renamed into place.

    Attributes:
        sha256: hex digest of the plan file.
        size: bytes.
        seconds: the builder's own build time (excluding process start-up).
        builder: ``flavour version``.
    """

    sha256: str
    size: int
    seconds: float
    builder: str


class ChildProcesses:
    """The builder processes running now, so an interrupt can stop them all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()

    def add(self, process: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._running.add(process)

    def discard(self, process: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._running.discard(process)

    def terminate_all(self) -> None:
        """Send SIGTERM to every running builder."""
        with self._lock:
            for process in self._running:
                if process.poll() is None:
                    process.terminate()


CHILDREN = ChildProcesses()


def log_tail(log: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The error lines of a build log (Polygraphy marks them ``[E]``), else its last ``lines`` lines."""
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    errors = [line for line in text if line.startswith(("[E]", "[!]", "trtbuild:")) or "ERROR" in line]
    return "\n".join((errors or text)[-lines:])


def _death(returncode: int) -> str:
    if returncode < 0:
        name = signal.Signals(-returncode).name
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"the builder was killed by {name}{hint}"
    return f"the builder exited with code {returncode}"


def _failure_message(returncode: int, tail: str) -> str:
    """The child's last message, plus the first node-level error TensorRT logged (``In node 3 ...``)."""
    if returncode != 1 or not tail:
        return _death(returncode)
    lines = tail.splitlines()
    message = lines[-1].removeprefix("trtbuild: ")
    node_error = next((line for line in lines if "In node" in line), None)
    return f"{message}: {node_error.removeprefix('[E] ')}" if node_error else message


def build_engine(request: dict[str, Any], engine: Path, log: Path, work_dir: Path) -> BuiltEngine:
    """Build one engine in a child process and rename it to ``engine``.

    Args:
        request: the child's request (see ``builder.child.build``), without the ``partial``/``result`` paths.
        engine: where the plan goes.
        log: the build log file (overwritten).
        work_dir: a folder for the request and result files.

    Raises:
        BuildError: the child failed or died; ``log_tail`` carries the log's error lines. The old engine,
            if any, is left untouched and no partial file remains.
    """
    remove_partials(engine.parent, engine.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    with partial_path(engine) as partial, partial_path(work_dir / f"{engine.name}.result") as result:
        request_file = work_dir / f"{engine.name}.request.json"
        request_file.write_text(json.dumps({**request, "partial": str(partial), "result": str(result)}))
        with open(log, "wb") as log_handle:
            process = subprocess.Popen(
                [sys.executable, "-m", "trtbuild.builder.child", str(request_file)],
                stdin=subprocess.DEVNULL, stdout=log_handle, stderr=subprocess.STDOUT,
            )
            CHILDREN.add(process)
            try:
                returncode = process.wait()
            finally:
                CHILDREN.discard(process)
        request_file.unlink(missing_ok=True)
        if returncode != 0:
            tail = log_tail(log)
            raise BuildError(_failure_message(returncode, tail), log_tail=tail)
        outcome = json.loads(result.read_text())
        size = partial.stat().st_size
        if size == 0:
            raise BuildError("the builder wrote an empty plan", log_tail=log_tail(log))
        digest = sha256_file(partial)
        publish(partial, engine)
    return BuiltEngine(sha256=digest, size=size, seconds=outcome["seconds"], builder=outcome["builder"])
