"""Steps that run in a child process and produce one file: engine builds and ONNX exports.

The child writes to ``.<target>.<random>.partial`` beside the target; the parent renames it over the
target only after the child exited 0 and the file is non-empty, so no half-written engine or ONNX is ever
where a good one is expected. A crash or an out-of-memory kill in TensorRT or torch fails that step
only. Everything the child prints is its log (``.trtbuild/logs/<model>.<step>.log``).

Protocol: the child module is run as ``python -m MODULE REQUEST.json TARGET``; the request is a
``child_requests`` dataclass that carries ``partial`` (where to write: ``/proc/self/fd/N``, an inherited
descriptor), ``result`` (a JSON file for a small result dict) and ``target`` (where the file will go, for
messages). This module is the parent's side; the child's side (``child_main``, ``private_copy``) is
``trtbuild.childside``, so a child never imports the parent's modules.
"""

from __future__ import annotations

import dataclasses
import json
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trtbuild.child_requests import ChildRequest
from trtbuild.errors import BuildError
from trtbuild.files import (
    OutsideProjectError,
    child_fd,
    open_for_writing,
    partial_path,
    publish,
    remove_partials,
    sha256_file,
)

LOG_TAIL_LINES = 25


@dataclass(frozen=True)
class Produced:
    """A file a child wrote and the parent renamed into place.

    Attributes:
        sha256: hex digest of the file.
        size: bytes.
        result: the child's result dict.
    """

    sha256: str
    size: int
    result: dict[str, Any]


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
    """The error lines of a build log (Polygraphy marks them ``[E]``, trtexec ``[date-time] [E]``), else its
    last ``lines`` lines."""
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    errors = [
        line for line in text if line.startswith(("[E]", "[!]", "trtbuild:")) or " [E] " in line or "ERROR" in line
    ]
    return "\n".join((errors or text)[-lines:])


def _death(returncode: int) -> str:
    if returncode < 0:
        name = signal.Signals(-returncode).name
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"the child process was killed by {name}{hint}"
    return f"the child process exited with code {returncode}"


#: TensorRT's error lines that carry no cause: the ONNX parser's framing of a node error, and the CUDA
#: runtime's "driver insufficient" that TensorRT-RTX's ahead-of-time builder logs on a machine with no GPU.
_FRAMING = re.compile(r"ModelImporter\.cpp|^In node |^--- |cudaError 35")
#: The source location TensorRT appends to a message (`` In processCheck at /_src/x.cpp:1066``).
_WHERE = re.compile(r" In \S+ at /\S+:\d+")


def first_error(tail: str) -> str | None:
    """The first ``[E]`` line of a builder's log that says a cause (TensorRT's own message, e.g.
    ``IBuilder::buildSerializedNetwork: Error Code 4: API Usage Error (ITopKLayer ...: length of reduction
    axis (4) is smaller than K (10))``), without its prefix and TensorRT's source locations; ``None`` if
    there is none."""
    for line in tail.splitlines():
        _, marker, text = line.partition("[E] ")
        text = _WHERE.sub("", text).strip()
        if marker and text and not _FRAMING.search(text):
            return text[:400]
    return None


def _failure_message(returncode: int, tail: str) -> str:
    """The child's last message, plus the first node-level error TensorRT logged (``In node 3 ...``) and
    the first error line that says the cause (``first_error``), where the message does not already say it."""
    if returncode != 1 or not tail:
        return _death(returncode)
    lines = tail.splitlines()
    message = lines[-1].removeprefix("trtbuild: ")
    node_error = next((line.removeprefix("[E] ") for line in lines if "In node" in line), None)
    cause = first_error("\n".join(lines[:-1]))
    parts = [message, node_error, cause if cause and cause not in message else None]
    return ": ".join(part for part in parts if part)


def run_isolated(
    request: ChildRequest,
    target: Path,
    log: Path,
    work_dir: Path,
    verify: Callable[[Path], None] | None = None,
) -> Produced:
    """Run the request's child (``python -m`` its ``MODULE``) and rename the file it wrote to ``target``.

    Every file of the step (the partial target, the request, the result, the log) is created through
    ``trtbuild.files``, so inside a project each is written where it really is inside the project at the
    moment it is written; the child writes the partial through ``/proc/self/fd/N`` (an inherited
    descriptor), not through a path a symlink could redirect. The child's command line ends with the
    target, for ``ps``.

    Args:
        request: the child's request; its ``partial``/``result``/``target`` are set here.
        target: where the produced file goes.
        log: the step's log file (overwritten).
        work_dir: a folder for the request and result files.
        verify: called on the produced file before it is renamed into place; raises to refuse it.

    Raises:
        BuildError: the child failed or died (``log_tail`` carries the log's error lines), or a file of
            the step would have been written outside the project (a one-line ``refusing to write PATH``).
            The old target, if any, is left untouched and no partial file remains.
    """
    try:
        return _run_isolated(request, target, log, work_dir, verify)
    except OutsideProjectError as exc:
        raise BuildError(str(exc)) from None
    except OSError as exc:  # e.g. the target's folder deleted under us: one line, not a traceback
        raise BuildError(f"cannot write {exc.filename or target}: {exc.strerror or exc}") from None


def _run_isolated(
    request: ChildRequest, target: Path, log: Path, work_dir: Path, verify: Callable[[Path], None] | None
) -> Produced:
    remove_partials(target.parent, target.name)
    with (
        open_for_writing(log) as log_handle,
        partial_path(target) as partial,
        partial_path(work_dir / f"{target.name}.result") as result,
        partial_path(work_dir / f"{target.name}.request.json") as request_file,
    ):
        request_file.write_text(
            dataclasses.replace(request, partial=str(partial), result=str(result), target=str(target)).to_json()
        )
        inherited = [fd for fd in map(child_fd, (partial, result, request_file)) if fd is not None]
        process = subprocess.Popen(
            [sys.executable, "-m", request.MODULE, str(request_file), str(target)],
            stdin=subprocess.DEVNULL,
            stdout=log_handle,
            stderr=subprocess.STDOUT,
            pass_fds=inherited,
        )
        CHILDREN.add(process)
        try:
            returncode = process.wait()
        finally:
            CHILDREN.discard(process)
        log_handle.close()
        if returncode != 0:
            tail = log_tail(log)
            raise BuildError(_failure_message(returncode, tail), log_tail=tail)
        outcome = json.loads(result.read_text())
        size = partial.stat().st_size
        if size == 0:
            raise BuildError(f"the child process wrote an empty {target.name}", log_tail=log_tail(log))
        if verify is not None:
            verify(partial)
        digest = sha256_file(partial)
        publish(partial, target)
    return Produced(sha256=digest, size=size, result=outcome)
