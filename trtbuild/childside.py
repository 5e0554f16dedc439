"""The child's side of a step run in a child process; ``isolation.run_isolated`` is the parent's side.

Protocol: the child module is run as ``python -m MODULE REQUEST.json TARGET``; the request is a
``child_requests`` dataclass, whose ``partial`` is where to write (``/proc/self/fd/N``, an inherited
descriptor), ``result`` a JSON file for a small result dict and ``target`` where the file will go, for
messages. ``child_main`` implements the child's side: exit 0 done, 1 failed with a ``trtbuild: message``
last line.

A child imports this module, ``child_requests``, ``errors``, ``files`` (the pin check) and its own layer
(``builder``, ``export``, ``precision``), never the parent's modules (``isolation``, ``state``, ``graph``,
``ops``, the CLI): ``tests/test_layers.py`` checks it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from trtbuild.child_requests import ChildRequest, read_request
from trtbuild.errors import BuildError, TrtbuildError
from trtbuild.files import pin_mismatch

Request = TypeVar("Request", bound=ChildRequest)


def child_main(step: Callable[[Request], dict[str, Any]], argv: list[str]) -> int:
    """The child's side: read the request (``child_requests.read_request``), run ``step``, write its
    result. Returns the exit code.

    ``step`` writes its file to ``request.partial``; a ``TrtbuildError`` it raises becomes a
    ``trtbuild: message`` last line and exit code 1; any other exception its traceback in the log and a
    last line naming its type, message and the child module.
    """
    request: Any = read_request(Path(argv[0]))
    try:
        result = step(request)
        Path(request.result).write_text(json.dumps(result))
    except TrtbuildError as exc:
        print(f"trtbuild: {exc}", flush=True)
        return 1
    except OSError as exc:  # e.g. ENOSPC while writing the plan or the result: one clear line, not a traceback
        where = (request.target or request.partial) if exc.filename in (None, request.partial) else exc.filename
        print(f"trtbuild: {exc.strerror or exc} (writing to {where})", flush=True)
        return 1
    except Exception as exc:  # noqa: BLE001 - a library's or trtbuild's own bug: the traceback to the log
        traceback.print_exc(file=sys.stdout)
        text = " ".join(str(exc).split())[:300]
        print(f"trtbuild: {type(exc).__name__} in {_module_of(step)}: {text} (traceback in the log)", flush=True)
        return 1
    return 0


def _module_of(step: Callable[..., Any]) -> str:
    """The module ``step`` is defined in, by its import name: a child run as ``python -m trtbuild.x.child``
    is ``__main__`` to itself, and its ``__spec__`` has the real name."""
    module = sys.modules.get(step.__module__)
    spec = getattr(module, "__spec__", None)
    return spec.name if step.__module__ == "__main__" and spec is not None else step.__module__


def private_copy(source: Path, folder: Path, pin: str, what: str = "source") -> Path:
    """For a child: copy ``source`` into ``folder`` (created, private; same file name) and return the
    copy, after checking the bytes copied against ``pin``. The child loads only the copy, so the bytes it
    loads are the bytes it verified, whatever happens to ``source`` meanwhile. ``what`` names the file in
    the message (``source``, ``plugin``).

    Raises:
        BuildError: the copied bytes' sha256 is not ``pin``.
    """
    folder.mkdir(mode=0o700)
    copy = folder / source.name
    digest = hashlib.sha256()
    with open(source, "rb") as reader, open(copy, "wb") as writer:
        while chunk := reader.read(1 << 20):
            digest.update(chunk)
            writer.write(chunk)
    problem = pin_mismatch(digest.hexdigest(), pin, f"{what} {source}", "not loaded")
    if problem:
        shutil.rmtree(folder, ignore_errors=True)
        raise BuildError(problem)
    return copy
