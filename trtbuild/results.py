"""Run results and how they are printed: light enough for the no-op fast path (no pydantic, no click).

The human summary and ``--json`` come from the same ``ModelResult`` values, whichever path made them.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import TextIO

#: Outcomes of a graph node and of a model in ``all``/``build``; ``plan`` says ``stale`` or ``fresh``.
BUILT, FRESH, FAILED, SKIPPED, STALE = "built", "fresh", "failed", "skipped", "stale"


@dataclass
class ModelResult:
    """The outcome for one model, as reported by ``all``/``build``/``plan`` and ``--json``.

    Attributes:
        status: ``built``, ``fresh``, ``failed``, ``skipped`` (build) or ``stale``/``fresh`` (plan).
        reasons: why it was or would be built, or why it failed.
        engine: engine path relative to the project.
        seconds: wall time spent on the model in this run.
        log_tail: builder log lines worth showing for a failure.
    """

    status: str
    reasons: list[str] = field(default_factory=list)
    engine: str = ""
    seconds: float = 0.0
    log_tail: str = ""


def summary_json(results: dict[str, ModelResult]) -> str:
    """``{"models": {NAME: {"status", "reasons", "engine", "seconds"}}}``."""
    models = {
        name: {"status": r.status, "reasons": r.reasons, "engine": r.engine, "seconds": round(r.seconds, 3)}
        for name, r in results.items()
    }
    return json.dumps({"models": models}, indent=2)


def print_summary(results: dict[str, ModelResult], stream: TextIO) -> None:
    """A table of the results, then the log lines of every failure."""
    counts: dict[str, int] = {}
    for result in results.values():
        counts[result.status] = counts.get(result.status, 0) + 1
    width = max([len(name) for name in results] + [5])
    lines = [f"{'model':<{width}}  {'status':<8}  reasons"]
    for name, result in results.items():
        lines.append(f"{name:<{width}}  {result.status:<8}  {'; '.join(result.reasons)}")
    for name, result in results.items():
        if result.status == FAILED and result.log_tail:
            lines.append(f"\n--- {name}: builder log (.trtbuild/logs/{name}.log) ---\n{result.log_tail}")
    lines.append(", ".join(f"{count} {status}" for status, count in sorted(counts.items())) or "no models")
    print("\n".join(lines), file=stream, flush=True)


def default_stream(json_mode: bool) -> TextIO:
    """Human output goes to stdout, or to stderr when stdout carries ``--json``."""
    return sys.stderr if json_mode else sys.stdout
