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
from pathlib import Path
from typing import Any

from trtbuild.errors import StateError
from trtbuild.state.atomic import write_atomic

SCHEMA = 1
REQUIRED = {"models": ("key", "components", "engine"), "exports": ("key", "components", "onnx")}


class LockFile:
    """The lock of one manifest.

    Args:
        path: the lock file (``builds.lock``); it need not exist yet.

    Attributes:
        entries: model name -> engine entry as above.
        exports: model name -> export entry as above.

    Raises:
        StateError: on load, when the file is not JSON, has another schema version, or an entry lacks
            a required field.
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
        advice = "move it aside (or delete it) and run again; every engine it listed will be rebuilt"
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise StateError(f"{self.path}: corrupt lock file ({exc}); {advice}") from None
        if not isinstance(raw, dict) or raw.get("schema") != SCHEMA or not isinstance(raw.get("models"), dict):
            found = raw.get("schema") if isinstance(raw, dict) else None
            raise StateError(f"{self.path}: not a trtbuild lock of schema {SCHEMA} (found schema {found!r}); {advice}")
        exports = raw.get("exports", {})
        if not isinstance(exports, dict):
            raise StateError(f"{self.path}: exports: not a mapping; {advice}")
        for section, entries in (("models", raw["models"]), ("exports", exports)):
            for name, entry in entries.items():
                missing = [field for field in REQUIRED[section] if not isinstance(entry, dict) or field not in entry]
                if missing:
                    raise StateError(f"{self.path}: {section}.{name}: missing {', '.join(missing)}; {advice}")
        self.entries = raw["models"]
        self.exports = exports

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
        """Write the lock atomically, keys sorted."""
        document = {"schema": SCHEMA, "models": self.entries, "exports": self.exports}
        write_atomic(self.path, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())
