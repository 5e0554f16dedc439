"""builds.lock: what every engine was built from, so staleness and audits have a record to compare to.

JSON, written sorted with a schema version, atomically (temporary file in the same folder, fsync,
rename). Paths are relative to the manifest's folder. A lock that cannot be read is an error naming the
file and what to do; it is never silently replaced.

Two sections, ``models`` (engines) and ``exports`` (recipe outputs). Per model::

    {"key": "<sha256>", "components": {...}, "engine": {"path", "sha256", "size"},
     "build_seconds": 1.2, "builder": "tensorrt-rtx 1.7.1.116", "built_at": "2026-11-21T08:00:00+00:00"}

Per export::

    {"key": "<sha256>", "components": {...}, "onnx": {"path", "sha256", "size"}, "export_seconds": 3.1,
     "exported_at": "..."}
"""

from __future__ import annotations

import json
import posixpath
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter, ValidationError, with_config
from typing_extensions import NotRequired, TypedDict

from trtbuild.errors import StateError, WriteError, os_error_line
from trtbuild.files import write_atomic

SCHEMA = 1
REQUIRED = {"models": ("key", "components", "engine"), "exports": ("key", "components", "onnx")}


def inside_project(path: str) -> str:
    """Check a path the lock records: relative to the project root, POSIX, and staying inside it.

    Returns:
        ``path`` unchanged.

    Raises:
        ValueError: ``path`` is empty, absolute, has a NUL byte or a backslash, or a ``..`` part.
    """
    if not path or "\x00" in path or "\\" in path:
        raise ValueError(f"{path!r} is not a project-relative path")
    if posixpath.isabs(path):
        raise ValueError(f"{path!r} is outside the project (an absolute path)")
    if ".." in path.split("/"):
        raise ValueError(f"{path!r} is outside the project (it goes up with '..')")
    return path


Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
ProjectPath = Annotated[str, AfterValidator(inside_project)]
_RECORD = ConfigDict(strict=True, extra="allow")


@with_config(_RECORD)
class FileRecord(TypedDict):
    """A file trtbuild wrote: ``{"path": "engines/m.engine", "sha256": "<hex>", "size": 268764}``."""

    path: ProjectPath
    sha256: Sha256
    size: Annotated[int, Field(ge=0)]


#: ``components.schema`` as a field name would shadow nothing in a TypedDict; each component is typed as
#: ``keys`` builds it, so ``diff_reasons`` and the audit can rely on the shapes.
@with_config(_RECORD)
class Components(TypedDict):
    """An entry's key components (``state.keys``); every field optional, typed when present."""

    schema: NotRequired[int]
    onnx: NotRequired[Sha256 | None]
    source: NotRequired[str | None]
    code: NotRequired[str | None]
    recipe: NotRequired[str | None]
    recipe_version: NotRequired[int | None]
    settings: NotRequired[dict[str, Any]]
    params: NotRequired[dict[str, Any]]
    exporters: NotRequired[dict[str, Any]]
    env: NotRequired[dict[str, Any]]
    plugins: NotRequired[dict[str, Sha256 | None]]
    discovered: NotRequired[dict[str, Sha256 | None]]


@with_config(_RECORD)
class EngineEntry(TypedDict):
    """``models.NAME``: an engine, its key and how it was built."""

    key: Sha256
    components: Components
    engine: FileRecord
    build_seconds: NotRequired[float]
    builder: NotRequired[str | None]
    built_at: NotRequired[str | None]
    network: NotRequired[dict[str, Any] | None]


@with_config(_RECORD)
class ExportEntry(TypedDict):
    """``exports.NAME``: an ONNX trtbuild produced (export, FP16/INT8 conversion, accuracy report)."""

    key: Sha256
    components: Components
    onnx: FileRecord
    export_seconds: NotRequired[float]
    exported_at: NotRequired[str | None]


@with_config(_RECORD)
class LockDocument(TypedDict):
    """The whole lock file: ``{"schema": 1, "models": {...}, "exports": {...}}``."""

    schema: Literal[1]
    models: dict[str, EngineEntry]
    exports: NotRequired[dict[str, ExportEntry]]


_DOCUMENT = TypeAdapter(LockDocument)


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "<document>"


def _git_name(path: Path) -> str:
    """How the lock is named in advice: ``builds.lock`` or ``locks/<device>.lock``."""
    return f"{path.parent.name}/{path.name}" if path.parent.name == "locks" else path.name


def validate_lock(raw: Any, path: Path) -> dict[str, Any]:
    """Check a parsed lock document against ``LockDocument``.

    Returns:
        the document (plain dicts, extra fields kept).

    Raises:
        StateError: one line naming ``path``, the entry and the field (``models.m.engine.path``), what is
            wrong, and what to do (restore the lock from git, or delete the entry or the file to rebuild).
    """
    if not isinstance(raw, dict) or raw.get("schema") != SCHEMA or not isinstance(raw.get("models"), dict):
        found = raw.get("schema") if isinstance(raw, dict) else None
        raise StateError(f"{path}: not a trtbuild lock of schema {SCHEMA} (found schema {found!r}); "
                         f"{_whole_file_advice(path)}")
    try:
        return _DOCUMENT.validate_python(raw)
    except ValidationError as exc:
        raise _refusal(exc, path) from None


def _refusal(exc: ValidationError, path: Path) -> StateError:
    """The ``StateError`` for the first problem ``exc`` found (see ``validate_lock``)."""
    problems = exc.errors(include_url=False, include_input=False)
    first = problems[0]
    loc = tuple(first["loc"])
    if len(loc) < 2:  # a section itself (``exports: []``), not an entry
        return StateError(f"{path}: {_dotted(loc)}: {first['msg']}; {_whole_file_advice(path)}")
    entry = _dotted(loc[:2])
    missing = [str(p["loc"][2]) for p in problems if p["type"] == "missing" and tuple(p["loc"][:2]) == loc[:2] and len(p["loc"]) == 3]
    if first["type"] == "missing" and len(loc) == 3:
        what, told = f"{entry}: missing {', '.join(missing)}", len(missing)
    else:
        what, told = f"{_dotted(loc)}: {first['msg'].removeprefix('Value error, ')}", 1
    rest = len(problems) - told
    more = f" (and {rest} more problem{'s' if rest > 1 else ''})" if rest else ""
    return StateError(f"{path}: {what}{more}; restore it from git (git checkout -- {_git_name(path)}), or delete the "
                      f"entry {entry} (or the whole file) and run again to rebuild what it records")


def _whole_file_advice(path: Path) -> str:
    return (f"restore it from git (git checkout -- {_git_name(path)}), or move it aside (or delete it) and run again; "
            "every engine it listed will be rebuilt")


class LockFile:
    """The lock of one manifest.

    Args:
        path: the lock file (``builds.lock``); it need not exist yet.

    Attributes:
        entries: model name -> engine entry as above (``EngineEntry``).
        exports: entry name -> export entry as above (``ExportEntry``).

    Raises:
        StateError: on load, when the file is not JSON, has another schema version, or an entry lacks a
            required field or has one of the wrong type or shape (a path outside the project, a size that
            is not an integer, a key that is not a sha256); ``validate_lock`` words the message.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        self.exports: dict[str, dict[str, Any]] = {}
        self._load()

    def _load(self) -> None:
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StateError(os_error_line(exc, self.path, "cannot read the lock")) from None
        try:
            document = _DOCUMENT.validate_json(text)  # one pass: parse and check (a 10,000-model lock)
            if document["schema"] != SCHEMA:
                raise ValueError("schema")
        except (ValidationError, ValueError):
            try:  # the slow path, only for a lock that is wrong: word what is wrong
                raw = json.loads(text)
            except ValueError as exc:
                raise StateError(f"{self.path}: corrupt lock file ({exc}); {_whole_file_advice(self.path)}") from None
            document = validate_lock(raw, self.path)
        self.entries = dict(document["models"])
        self.exports = dict(document.get("exports", {}))

    def get(self, name: str) -> dict[str, Any] | None:
        """The entry of model ``name``, or ``None`` if it was never built."""
        return self.entries.get(name)

    def set(self, name: str, entry: dict[str, Any]) -> None:
        """Record ``entry`` for ``name`` (call ``save`` to write)."""
        self.entries[name] = entry

    def remove(self, name: str) -> None:
        """Forget model ``name``'s engine and export."""
        self.entries.pop(name, None)
        self.exports.pop(name, None)

    def save(self) -> None:
        """Write the lock atomically, keys sorted.

        Raises:
            WriteError: the file could not be written (a full disk, a read-only project): one line naming
                the lock and the errno; the lock on disk is the previous one, whole.
        """
        document = {"schema": SCHEMA, "models": self.entries, "exports": self.exports}
        try:
            write_atomic(self.path, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())
        except OSError as exc:
            raise WriteError(os_error_line(exc, self.path, "cannot write the lock")) from None
