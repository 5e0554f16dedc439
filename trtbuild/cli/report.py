"""How runs are shown: a rich progress display on a terminal, plain lines otherwise, JSON for machines."""

from __future__ import annotations

import threading
from typing import Any, TextIO

from trtbuild.graph.engine_node import EngineBuild
from trtbuild.graph.nodes import BUILT, FAILED, FRESH, SKIPPED, Node, Outcome

_STYLE = {BUILT: "green", FRESH: "dim", FAILED: "red", SKIPPED: "yellow", "stale": "yellow"}


class PlainReporter:
    """One line per finished engine node: ``built   pose  12.3s  (onnx changed)``."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def started(self, node: Node) -> None:
        """Plain output shows only finished nodes (one line each, safe to grep)."""

    def finished(self, node: Node, outcome: Outcome) -> None:
        if not isinstance(node, EngineBuild) and outcome.status != FAILED:
            return
        why = f"  ({'; '.join(outcome.reasons)})" if outcome.reasons and outcome.status != FAILED else ""
        self._line(f"{outcome.status:<8}{node.model}  {outcome.seconds:.1f}s{why}")

    def warn(self, message: str) -> None:
        self._line(f"warning: {message}")

    def _line(self, text: str) -> None:
        with self._lock:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        """Nothing to tear down."""


class RichReporter:
    """A rich progress bar over the engine nodes, with a line per finished one."""

    def __init__(self, stream: TextIO, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = Console(file=stream)
        self.progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(), console=self.console, transient=True,
        )
        self.task = self.progress.add_task("engines", total=total)
        self.progress.start()

    def started(self, node: Node) -> None:
        if isinstance(node, EngineBuild):
            self.progress.update(self.task, description=f"checking {node.model}")

    def finished(self, node: Node, outcome: Outcome) -> None:
        if isinstance(node, EngineBuild):
            self.progress.advance(self.task)
        elif outcome.status != FAILED:
            return
        style = _STYLE.get(outcome.status, "")
        why = f" [dim]({'; '.join(outcome.reasons)})[/dim]" if outcome.reasons and outcome.status != FAILED else ""
        self.console.print(f"[{style}]{outcome.status:<8}[/{style}]{node.model}  {outcome.seconds:.1f}s{why}", highlight=False)

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/yellow] {message}", highlight=False)

    def close(self) -> None:
        self.progress.stop()


def make_reporter(stream: TextIO, total: int) -> PlainReporter | RichReporter:
    """Rich progress when ``stream`` is a terminal, plain lines otherwise."""
    return RichReporter(stream, total) if stream.isatty() else PlainReporter(stream)


def accuracy_table(reports: dict[str, dict[str, Any]]) -> str:
    """One line per model output: precision, images, cosine, max/mean abs error, agreement, verdict."""
    if not reports:
        return "no accuracy reports (models in fp32, or not built yet)"
    lines = [f"{'model':<20} {'prec':<5} {'imgs':>4}  {'output':<16} {'cosine':>9} {'max|err|':>10} {'mean|err|':>10}  {'agreement':<18} verdict"]
    for name, report in reports.items():
        agreement = ""
        if "top1_agreement" in report:
            agreement = f"top-1 {report['top1_agreement']:.3f}"
        elif "detection_agreement" in report:
            agreement = f"det {report['detection_agreement']:.3f} ({report['detections']})"
        for output, figures in report["outputs"].items():
            verdict = "pass" if report["passed"] else "FAIL: " + "; ".join(report["failures"])
            lines.append(f"{name:<20} {report['precision']:<5} {report['images']:>4}  {output[:16]:<16} {figures['cosine']:>9.6f} "
                         f"{figures['max_abs']:>10.4g} {figures['mean_abs']:>10.4g}  {agreement:<18} {verdict}")
    return "\n".join(lines)
