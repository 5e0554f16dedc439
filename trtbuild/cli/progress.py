"""How a run's progress is shown: a rich progress display on a terminal, plain lines otherwise.

Progress names the step and the model of every piece of work: a line when it starts (with why), a line
when it ends (with its time); steps that are fresh are silent, and the dependents of a failed step are
not announced again (the failure is the news; the summary says what it cost).
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any, TextIO

from trtbuild.reasons import Reason
from trtbuild.results import duration
from trtbuild.steps.context import BUILT, FAILED, FRESH, INTERRUPTED, PULLED, SKIPPED, Outcome
from trtbuild.steps.step import Step

_STYLE = {
    BUILT: "green",
    PULLED: "green",
    FRESH: "dim",
    FAILED: "red",
    SKIPPED: "yellow",
    INTERRUPTED: "yellow",
    "stale": "yellow",
}


def start_line(step: Step, reasons: list[Reason]) -> str:
    """``export   yolo-face  (never exported)``: a step begins work (the step named once, in front)."""
    return f"{step.kind:<8} {step.model}  ({'; '.join(reason.body() for reason in reasons)})"


def finish_line(step: Step, outcome: Outcome) -> str | None:
    """``export   yolo-face  built in 12.3s``, ``int8     hairnet-int8  FAILED after 3.1s: ...``,
    ``engine   facemesh  interrupted after 2.0s``; ``None`` for fresh and skipped steps."""
    head = f"{step.kind:<8} {step.model}"
    if outcome.status in (BUILT, PULLED):
        return f"{head}  {outcome.status} in {duration(outcome.seconds)}"
    if outcome.status == FAILED:
        return f"{head}  FAILED after {duration(outcome.seconds)}: {'; '.join(r.text() for r in outcome.reasons)}"
    if outcome.status == INTERRUPTED:
        return f"{head}  interrupted after {duration(outcome.seconds)}"
    return None


class PlainReporter:
    """Plain lines, safe to grep: one when a step starts work, one when it ends (``start_line``,
    ``finish_line``)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def started(self, step: Step, reasons: list[Reason]) -> None:
        self._line(start_line(step, reasons))

    def finished(self, step: Step, outcome: Outcome) -> None:
        line = finish_line(step, outcome)
        if line is not None:
            self._line(line)

    def warn(self, message: str) -> None:
        self._line(f"warning: {message}")

    def _line(self, text: str) -> None:
        with self._lock:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        """Nothing to tear down."""


class RichReporter:
    """A rich display: a bar over the models' engines, a row per step at work (``export yolo-face``
    with its elapsed time, several with ``-j``), and a printed line per step that ends."""

    def __init__(self, stream: TextIO, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = Console(file=stream)
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[count]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.total = total
        self.done = 0
        self.task = self.progress.add_task("engines", total=total, count=f"0/{total}")
        self.working: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.progress.start()

    def started(self, step: Step, reasons: list[Reason]) -> None:
        with self._lock:
            self.working[step.id] = self.progress.add_task(f"  {step.kind} {step.model}", total=None, count="")

    def finished(self, step: Step, outcome: Outcome) -> None:
        with self._lock:
            task = self.working.pop(step.id, None)
            if task is not None:
                self.progress.remove_task(task)
            if step.kind == "engine":
                self.done += 1
                self.progress.update(self.task, advance=1, count=f"{self.done}/{self.total}")
        line = finish_line(step, outcome)
        if line is not None:
            from rich.text import Text

            self.console.print(Text(line, style=_STYLE.get(outcome.status, "")), highlight=False)

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/yellow] {message}", highlight=False)

    def close(self) -> None:
        self.progress.stop()


class DeviceReporter:
    """One device's part of a run over several devices (``-d a -d b``): its steps and warnings go to the
    shared reporter named ``device/model`` and ``device: ...``."""

    def __init__(self, shared: PlainReporter | RichReporter, device: str) -> None:
        self.shared = shared
        self.device = device

    def _named(self, step: Step) -> Step:
        return dataclasses.replace(step, id=f"{self.device}/{step.id}", model=f"{self.device}/{step.model}")

    def started(self, step: Step, reasons: list[Reason]) -> None:
        self.shared.started(self._named(step), reasons)

    def finished(self, step: Step, outcome: Outcome) -> None:
        self.shared.finished(self._named(step), outcome)

    def warn(self, message: str) -> None:
        self.shared.warn(f"{self.device}: {message}")


def for_device(shared: PlainReporter | RichReporter, device: str | None) -> DeviceReporter:
    """``shared`` as seen by one device of a run over several."""
    return DeviceReporter(shared, device or "default")


def make_reporter(stream: TextIO, total: int) -> PlainReporter | RichReporter:
    """Rich progress when ``stream`` is a terminal, plain lines otherwise."""
    return RichReporter(stream, total) if stream.isatty() else PlainReporter(stream)
