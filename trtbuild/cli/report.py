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


def _agreement(report: dict[str, Any]) -> str:
    if "top1_agreement" in report:
        return f"top-1 {report['top1_agreement']:.3f}"
    if "detection_agreement" in report:
        value = report["detection_agreement"]
        return f"det {value:.3f} ({report['detections']})" if value is not None else "det undefined (0)"
    return ""


def accuracy_table(reports: dict[str, dict[str, Any]]) -> str:
    """One line per model output: precision, emulation, images, cosine, max abs error against the FP32
    output's peak, agreement, verdict; failures follow on their own lines."""
    from trtbuild.precision.accuracy import format_cosine

    if not reports:
        return "no accuracy reports (models in fp32, or not built yet)"
    lines = [f"{'model':<18} {'prec':<4} {'emulation':<15} {'imgs':>4}  {'output':<14} {'cosine':>10} "
             f"{'max|err| / peak':>18}  {'agreement':<16} verdict"]
    for name, report in reports.items():
        emulation = "+".join(report.get("emulation", {}).get("kinds", [])) or "none (old report)"
        for output, figures in report["outputs"].items():
            peak = f"{figures['max_abs']:.3g} / {figures['peak']:.3g}" if "peak" in figures else f"{figures['max_abs']:.4g}"
            lines.append(f"{name[:18]:<18} {report['precision']:<4} {emulation[:15]:<15} {report['images']:>4}  {output[:14]:<14} "
                         f"{format_cosine(figures['cosine']):>10} {peak:>18}  {_agreement(report):<16} "
                         f"{'pass' if report['passed'] else 'FAIL'}")
        lines += [f"  {name}: {failure}" for failure in report["failures"]]
    return "\n".join(lines)
