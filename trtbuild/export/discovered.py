"""Discovered dependencies: the files inside the project that an export actually read, like a depfile.

A recipe runs arbitrary code: a ``torch`` recipe imports the project's ``recipes/tinynet.py``, which may
import more project modules or read a config file. The manifest cannot list them, so the export child
records them, the way compilers write depfiles for ninja (``gcc -MD``): ``ReadRecorder`` installs an
audit hook (PEP 578, ``sys.addaudithook``) on the ``open`` event and, after the recipe ran, adds the
files of the modules in ``sys.modules``. Those inside the project root — except trtbuild's state, bytecode
caches, installed packages (a virtual environment inside the project) and the files the key already
holds — go into the export's key with their sha256
(``steps.export``); the no-op stamp re-stats them like every other key input.

Child side only: standard library, nothing of the parent's modules.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: Folders inside a project whose files are never dependencies: trtbuild's state, bytecode caches.
IGNORED_PARTS = (".trtbuild", "__pycache__", ".git")


def _read_only(mode: Any, flags: Any) -> bool:
    if isinstance(mode, str):
        return "r" in mode and not any(letter in mode for letter in "wax+")
    return isinstance(flags, int) and flags & os.O_ACCMODE == os.O_RDONLY


class ReadRecorder:
    """Records every path this process opens for reading from the moment it is created (audit hooks
    cannot be removed: create one per child process)."""

    def __init__(self) -> None:
        self._paths: set[str] = set()
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            mode, flags = (args[1], args[2]) if len(args) > 2 else (None, None)
            if _read_only(mode, flags):
                self._paths.add(os.path.abspath(os.fsdecode(args[0])))  # relative to the cwd of that moment

    def inside(self, root: Path, declared: Iterable[Path] = ()) -> list[str]:
        """The files read so far, plus the files of the loaded modules, that lie inside ``root``: sorted
        POSIX paths relative to ``root``, without ``declared`` files (already in the key), trtbuild's state
        and bytecode caches."""
        real_root = Path(os.path.realpath(root))
        skip = {Path(os.path.realpath(path)) for path in declared}
        installed = [Path(os.path.realpath(tree)) for tree in _installed_trees()]
        candidates = set(self._paths)
        candidates |= {
            file for module in list(sys.modules.values()) if isinstance(file := getattr(module, "__file__", None), str)
        }
        found = set()
        for candidate in candidates:
            real = Path(os.path.realpath(candidate))
            if real in skip or real_root not in real.parents or not real.is_file():
                continue
            if any(tree == real or tree in real.parents for tree in installed):
                continue
            relative = real.relative_to(real_root)
            if any(part in IGNORED_PARTS for part in relative.parts) or real.suffix == ".pyc":
                continue
            found.add(relative.as_posix())
        return sorted(found)


def _installed_trees() -> list[str]:
    """Where installed code lives: the interpreter's prefixes, site-packages, trtbuild and its built-in
    recipes (keyed by version and code hash, not as discovered files)."""
    import site

    import trtbuild.recipes

    package = os.path.dirname(os.path.dirname(__file__))  # trtbuild/ (this is trtbuild/export/discovered.py)
    trees = {sys.prefix, sys.exec_prefix, sys.base_prefix, *site.getsitepackages()}
    trees |= {package, os.path.dirname(trtbuild.recipes.__file__ or "")}
    return [tree for tree in trees if tree]
