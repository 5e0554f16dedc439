"""builds.lock: what every step produced and from what, so staleness and audits have a record to compare to.

JSON, written sorted with a schema version, atomically (temporary file in the same folder, fsync,
rename). Paths are relative to the manifest's folder. A lock that cannot be read is an error naming the
file and what to do; it is never silently replaced.

Schema 2: one section, ``steps``, keyed by step id (``kind:output path``, as the build graph names its
nodes), one entry shape for every step kind::

    {"kind": "engine", "model": "yolo-face", "key": "<sha256>", "components": {...},
     "outputs": [{"path": "engines/yolo-face.engine", "sha256": "<hex>", "size": 268764}],
     "seconds": 41.2, "when": "2026-11-21T08:00:00+00:00",
     "facts": {"builder": "tensorrt-rtx 1.7.1.116", "network": {...}}}

``facts`` holds what the step reported besides its outputs (the engine's builder and network summary);
``origin`` (``{"store", "manifest"}``), where a step pulled from the remote cache came from.
A schema-1 lock (sections ``models`` and ``exports``, entry names ``MODEL`` / ``MODEL:fp16``) is migrated
when it is read (``migrate_v1``): same components, so same keys, nothing rebuilt; it is written as
schema 2 the next time the lock is saved.
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

SCHEMA = 2
#: schema-1 conversion entry suffix -> step kind (``m:fp16``); an entry without a suffix is an export
_V1_KINDS = {"fp16": "fp16", "int8": "int8", "accuracy": "accuracy"}


def project_relative(path: str) -> str:
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
ProjectPath = Annotated[str, AfterValidator(project_relative)]
_RECORD = ConfigDict(strict=True, extra="allow")


@with_config(_RECORD)
class FileRecord(TypedDict):
    """A file trtbuild wrote: ``{"path": "engines/m.engine", "sha256": "<hex>", "size": 268764}``."""

    path: ProjectPath
    sha256: Sha256
    size: Annotated[int, Field(ge=0)]


#: ``components.schema`` as a field name would shadow nothing in a TypedDict; each component is typed as
#: ``keys`` builds it, so ``reasons.diff`` and the audit can rely on the shapes.
@with_config(_RECORD)
class Components(TypedDict):
    """An entry's key components (``state.keys``); every field optional, typed when present."""

    schema: NotRequired[int]
    onnx: NotRequired[Sha256 | None]
    source: NotRequired[str | None]
    code: NotRequired[str | None]
    recipe: NotRequired[str | None]
    recipe_version: NotRequired[int | None]
    converter: NotRequired[str | None]
    versions: NotRequired[dict[str, Any]]
    settings: NotRequired[dict[str, Any]]
    params: NotRequired[dict[str, Any]]
    exporters: NotRequired[dict[str, Any]]
    env: NotRequired[dict[str, Any]]
    plugins: NotRequired[dict[str, Sha256 | None]]
    discovered: NotRequired[dict[str, Sha256 | None]]


@with_config(_RECORD)
class StepEntry(TypedDict):
    """``steps.ID``: what a step produced, its key and how it ran (see the module docstring)."""

    kind: Literal["export", "fp16", "int8", "accuracy", "engine"]
    model: str
    key: Sha256
    components: Components
    outputs: Annotated[list[FileRecord], Field(min_length=1)]
    seconds: NotRequired[float]
    when: NotRequired[str | None]
    facts: NotRequired[dict[str, Any]]
    origin: NotRequired[dict[str, str]]


@with_config(_RECORD)
class LockDocument(TypedDict):
    """The whole lock file: ``{"schema": 2, "steps": {...}}``."""

    schema: Literal[2]
    steps: dict[str, StepEntry]


@with_config(_RECORD)
class EngineEntryV1(TypedDict):
    """Schema 1, ``models.NAME``: an engine."""

    key: Sha256
    components: Components
    engine: FileRecord
    build_seconds: NotRequired[float]
    builder: NotRequired[str | None]
    built_at: NotRequired[str | None]
    network: NotRequired[dict[str, Any] | None]


@with_config(_RECORD)
class ExportEntryV1(TypedDict):
    """Schema 1, ``exports.NAME``: an ONNX trtbuild produced (export, FP16/INT8 conversion, accuracy report)."""

    key: Sha256
    components: Components
    onnx: FileRecord
    export_seconds: NotRequired[float]
    exported_at: NotRequired[str | None]


@with_config(_RECORD)
class LockDocumentV1(TypedDict):
    """A schema-1 lock: ``{"schema": 1, "models": {...}, "exports": {...}}``."""

    schema: Literal[1]
    models: dict[str, EngineEntryV1]
    exports: NotRequired[dict[str, ExportEntryV1]]


_DOCUMENT = TypeAdapter(LockDocument)
_DOCUMENT_V1 = TypeAdapter(LockDocumentV1)
_ADAPTER: dict[int, TypeAdapter[LockDocumentV1] | TypeAdapter[LockDocument]] = {1: _DOCUMENT_V1, 2: _DOCUMENT}


def _migrated_components(kind: str, components: dict[str, Any]) -> dict[str, Any]:
    """Schema-1 components of a conversion named its converter ``recipe`` and its library versions
    ``exporters``: renamed to ``converter`` and ``versions``. Exports and engines keep theirs."""
    if kind not in _V1_KINDS:
        return dict(components)
    renamed = {
        {"recipe": "converter", "exporters": "versions"}.get(name, name): value for name, value in components.items()
    }
    return renamed


def migrate_v1(document: dict[str, Any]) -> dict[str, Any]:
    """A validated schema-1 lock as schema 2 (see the module docstring).

    Every entry becomes ``steps["<kind>:<its output path>"]``. Components are kept (a conversion's two
    renamed fields aside); the key is recomputed from them only where the schema-1 key was the sha256 of
    its own components, so a hand-edited entry stays visibly edited (``trtbuild audit`` names it) instead
    of being laundered by the migration.

    Returns:
        ``{"schema": 2, "steps": {...}}``.
    """
    from trtbuild.state.keys import key_of

    steps: dict[str, Any] = {}

    def put(
        kind: str,
        model: str,
        entry: dict[str, Any],
        output: dict[str, Any],
        seconds: Any,
        when: Any,
        facts: dict[str, Any],
    ) -> None:
        components = _migrated_components(kind, entry["components"])
        intact = key_of(entry["components"]) == entry["key"]
        steps[f"{kind}:{output['path']}"] = {
            "kind": kind,
            "model": model,
            "key": key_of(components) if intact else entry["key"],
            "components": components,
            "outputs": [output],
            "seconds": seconds if seconds is not None else 0.0,
            "when": when,
            "facts": {name: value for name, value in facts.items() if value is not None},
        }

    for name, entry in document.get("exports", {}).items():
        model, _, suffix = name.partition(":")
        put(
            _V1_KINDS.get(suffix, "export"),
            model,
            entry,
            entry["onnx"],
            entry.get("export_seconds"),
            entry.get("exported_at"),
            {},
        )
    for name, entry in document["models"].items():
        put(
            "engine",
            name,
            entry,
            entry["engine"],
            entry.get("build_seconds"),
            entry.get("built_at"),
            {"builder": entry.get("builder"), "network": entry.get("network")},
        )
    return {"schema": SCHEMA, "steps": steps}


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
    schema = raw.get("schema") if isinstance(raw, dict) else None
    # Compared, not looked up: a schema of any JSON type (a list is unhashable) is refused, never a TypeError.
    adapter = next((adapter for number, adapter in _ADAPTER.items() if schema == number), None)
    if adapter is None:
        raise StateError(
            f"{path}: not a trtbuild lock of schema {SCHEMA} or 1 (found schema {schema!r}); {_whole_file_advice(path)}"
        )
    try:
        return dict(adapter.validate_python(raw))
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
    missing = [
        str(p["loc"][2])
        for p in problems
        if p["type"] == "missing" and tuple(p["loc"][:2]) == loc[:2] and len(p["loc"]) == 3
    ]
    if first["type"] == "missing" and len(loc) == 3:
        what, told = f"{entry}: missing {', '.join(missing)}", len(missing)
    else:
        what, told = f"{_dotted(loc)}: {first['msg'].removeprefix('Value error, ')}", 1
    rest = len(problems) - told
    more = f" (and {rest} more problem{'s' if rest > 1 else ''})" if rest else ""
    return StateError(
        f"{path}: {what}{more}; restore it from git (git checkout -- {_git_name(path)}), or delete the "
        f"entry {entry} (or the whole file) and run again to rebuild what it records"
    )


def _whole_file_advice(path: Path) -> str:
    return (
        f"restore it from git (git checkout -- {_git_name(path)}), or move it aside (or delete it) and run again; "
        "every engine it listed will be rebuilt"
    )


class LockFile:
    """The lock of one manifest.

    Args:
        path: the lock file (``builds.lock``); it need not exist yet.

    Attributes:
        steps: step id -> entry as above (``StepEntry``).
        migrated: the file on disk is a schema-1 lock, read through ``migrate_v1``; ``save`` writes it as
            schema 2.

    Raises:
        StateError: on load, when the file is not JSON, has another schema version, or an entry lacks a
            required field or has one of the wrong type or shape (a path outside the project, a size that
            is not an integer, a key that is not a sha256); ``validate_lock`` words the message.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.steps: dict[str, dict[str, Any]] = {}
        self.migrated = False
        self._load()

    def _load(self) -> None:
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StateError(os_error_line(exc, self.path, "cannot read the lock")) from None
        try:
            document: dict[str, Any] = dict(_DOCUMENT.validate_json(text))  # one pass: parse and check (10,000 models)
        except ValidationError:
            try:  # a schema-1 lock, or one that is wrong: find out which, and word what is wrong
                raw = json.loads(text)
            except ValueError as exc:
                raise StateError(f"{self.path}: corrupt lock file ({exc}); {_whole_file_advice(self.path)}") from None
            document = dict(validate_lock(raw, self.path))
            if document["schema"] == 1:
                document, self.migrated = migrate_v1(document), True
        self.steps = dict(document["steps"])

    def step(self, step_id: str) -> dict[str, Any] | None:
        """The entry of step ``step_id`` (``engine:engines/m.engine``), or ``None`` if it never ran."""
        return self.steps.get(step_id)

    def of_model(self, model: str, kind: str = "engine") -> tuple[str, dict[str, Any]] | None:
        """``(step id, entry)`` of ``model``'s step of ``kind``, or ``None``. A scan: for reports, not
        for the run (which knows its step ids)."""
        return next(
            (
                (step_id, entry)
                for step_id, entry in self.steps.items()
                if entry["model"] == model and entry["kind"] == kind
            ),
            None,
        )

    def record(self, step_id: str, entry: dict[str, Any]) -> None:
        """Put ``entry`` under ``step_id`` (call ``save`` to write)."""
        self.steps[step_id] = entry

    def remove_model(self, model: str) -> list[str]:
        """Forget every entry of ``model`` (export, conversions, report, engine); returns their step ids."""
        gone = sorted(step_id for step_id, entry in self.steps.items() if entry["model"] == model)
        for step_id in gone:
            del self.steps[step_id]
        return gone

    def save(self) -> None:
        """Write the lock atomically, keys sorted, as schema 2.

        Raises:
            WriteError: the file could not be written (a full disk, a read-only project): one line naming
                the lock and the errno; the lock on disk is the previous one, whole.
        """
        document = {"schema": SCHEMA, "steps": self.steps}
        try:
            write_atomic(self.path, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())
        except OSError as exc:
            raise WriteError(os_error_line(exc, self.path, "cannot write the lock")) from None
        self.migrated = False
