"""File content hashes that are computed once: a stat cache of (inode, size, mtime_ns) -> sha256.

Cheap checks first, as git and DVC do: a file whose inode, size and mtime are unchanged is not read
again. An entry is trusted only when the file's mtime is older than the moment it was hashed by more
than the file system's timestamp granularity (git's "racily clean" rule), so a write in the same instant
as the hash is never missed. A corrupt cache is reported and discarded: it is only a cache. The hash, the
stat signature and the racy window come from ``trtbuild.files``; this module keeps only the cache.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from trtbuild.clock import now_ns
from trtbuild.errors import os_error_line
from trtbuild.files import inside_project, sha256_file, write_atomic
from trtbuild.statsig import RACY_WINDOW_NS, stat_signature

SCHEMA = 1


@lru_cache(maxsize=1)
def cache_schema() -> Any:
    """The pydantic ``TypeAdapter`` of the cache file (built on first use: importing this module does not
    import pydantic).

    Shape: ``{"schema": 1, "files": {absolute path: {"sig": [inode, size, mtime_ns], "sha256": "<hex>",
    "hashed_at": ns, "external"?: [path relative to the ONNX's folder, inside it]}}}``; other keys kept.
    """
    from typing import Annotated, Literal

    from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter, with_config
    from typing_extensions import NotRequired, TypedDict

    from trtbuild.state.lockfile import (
        Sha256,
        project_relative,  # the lock's string validator
    )

    @with_config(ConfigDict(strict=True, extra="allow"))
    class CacheEntry(TypedDict):
        sig: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=3, max_length=3)]
        sha256: Sha256
        hashed_at: Annotated[int, Field(ge=0)]
        external: NotRequired[list[Annotated[str, AfterValidator(project_relative)]]]

    @with_config(ConfigDict(strict=True, extra="allow"))
    class CacheDocument(TypedDict):
        schema: Literal[1]
        files: dict[str, CacheEntry]

    return TypeAdapter(CacheDocument)


def _stderr_warning(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


class StatCache:
    """Maps absolute file paths to their sha256, re-reading a file only when its stat changed.

    Args:
        path: the JSON file the cache lives in (``.trtbuild/statcache.json``).
        trust: ``False`` hashes every file again whatever its stat says (``trtbuild audit``: an audit
            hashes what it audits; bytes changed in place with size and mtime restored are caught).

        warn: called with one line when the cache cannot be saved (default: ``warning: ...`` on stderr).

    Attributes:
        warnings: problems met while loading (a cache file that is not JSON, or not the shape of
            ``cache_schema``: then it is discarded whole and rebuilt); the caller reports them.
        hashed_bytes: bytes actually read and hashed by this instance (0 on a fully cached run).
        consulted: every path this instance was asked about: the files the keys of this run depend on
            (the no-op stamp lists exactly these; ``state.freshstamp``).
    """

    def __init__(self, path: Path, trust: bool = True, warn: Callable[[str], None] = _stderr_warning) -> None:
        self.path = path
        self.trust = trust
        self.warn = warn
        self.warnings: list[str] = []
        self.hashed_bytes = 0
        self.consulted: set[Path] = set()
        self._entries: dict[str, dict[str, Any]] = {}
        self._dirty = False
        self._load()

    def _load(self) -> None:
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            return self._discard(os_error_line(exc, doing="cannot read the stat cache"))
        from pydantic import ValidationError

        try:
            self._entries = cache_schema().validate_json(text)["files"]
        except ValidationError as exc:
            problem = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(part) for part in problem["loc"]) or "<document>"
            self._discard(
                f"{self.path}: stat cache unreadable ({where}: {problem['msg'].removeprefix('Value error, ')})"
            )

    def _discard(self, problem: str) -> None:
        self.warnings.append(f"{problem}; discarded, files will be hashed again")
        self._entries = {}
        self._dirty = True

    def lookup(self, path: Path) -> dict[str, Any] | None:
        """The cached entry ``{"sig", "sha256", "hashed_at", ...extras}`` if it still describes ``path``."""
        self.consulted.add(path)
        entry = self._entries.get(str(path)) if self.trust else None
        if entry is None:
            return None
        try:
            stat = os.stat(path)
        except OSError:
            return None
        if entry.get("sig") != stat_signature(stat) or stat.st_mtime_ns > entry.get("hashed_at", 0) - RACY_WINDOW_NS:
            return None
        return entry

    def project_digests(self, root: Path, files: list[str]) -> dict[str, str | None]:
        """Project file (relative to ``root``) -> sha256 now, ``None`` when missing or outside the project
        (a lock or a pulled record naming ``../x`` never makes trtbuild hash a file outside)."""
        digests: dict[str, str | None] = {}
        for name in files:
            path = root / name
            digests[name] = self.sha256(path) if inside_project(root, path) and path.is_file() else None
        return digests

    def sha256(self, path: Path, **extras: Any) -> str:
        """The sha256 of ``path``, from the cache when its stat is unchanged.

        Raises:
            FileNotFoundError: ``path`` does not exist.
        """
        entry = self.lookup(path)
        if entry is not None:
            return entry["sha256"]
        return self.record(path, **extras)["sha256"]

    def record(self, path: Path, **extras: Any) -> dict[str, Any]:
        """Hash ``path`` now and store its entry with ``extras`` (e.g. an ONNX's external-data files)."""
        self.consulted.add(path)
        before = os.stat(path)
        digest = sha256_file(path)
        self.hashed_bytes += before.st_size
        entry = {"sig": stat_signature(before), "sha256": digest, "hashed_at": now_ns(), **extras}
        if stat_signature(os.stat(path)) != entry["sig"]:
            entry["hashed_at"] = 0  # changed while being read: use the hash once, never trust it later
        self._entries[str(path)] = entry
        self._dirty = True
        return entry

    def save(self) -> None:
        """Write the cache atomically if anything changed.

        A cache that cannot be written (a full disk, a read-only project) is only a cache: ``warn`` gets
        one line naming the file and the errno, the old file stays whole, and nothing is raised.
        """
        if not self._dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(
                self.path, json.dumps({"schema": SCHEMA, "files": self._entries}, separators=(",", ":")).encode()
            )
        except OSError as exc:
            self.warn(os_error_line(exc, self.path, "cannot save the stat cache (files will be hashed again next run)"))
            return
        self._dirty = False
