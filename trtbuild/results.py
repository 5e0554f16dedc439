"""Run results and how they are printed: light enough for the no-op fast path (standard library only:
no pydantic, no click).

The human summary and ``--json`` come from the same ``RunSummary`` values, whichever path made them.
The human summary lists the models that did something (built, failed, skipped, interrupted, stale), one
block each, and ends with one line: the counts, the wall time, the engines' folder, the device and the
builder. A no-op is that one line.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # annotations only: the no-op fast path prints no reasons and does not import them
    from trtbuild.reasons import Reason

#: Outcomes of a graph node and of a model in ``all``/``build``; ``plan`` says ``stale`` or ``fresh``;
#: ``interrupted``: the step was running when the run was stopped (Ctrl-C, SIGTERM).
BUILT, FRESH, FAILED, SKIPPED, STALE, INTERRUPTED = "built", "fresh", "failed", "skipped", "stale", "interrupted"
#: A step whose outputs came from the remote cache (``steps.remote``) instead of being built here.
PULLED = "pulled"

#: Exit status of a command whose output pipe was closed by its reader (128 + SIGPIPE, as a shell reports it).
EXIT_BROKEN_PIPE = 141


@dataclass
class StepRun:
    """One graph step a model's run went through.

    Attributes:
        step: ``fetch``, ``source``, ``export``, ``fp16``, ``int8``, ``accuracy`` or ``engine``.
        status: the step's outcome (``built``, ``failed``, ``skipped``, ``interrupted``).
        seconds: wall time of the step in this run.
    """

    step: str
    status: str
    seconds: float = 0.0


@dataclass
class ModelResult:
    """The outcome for one model, as reported by ``all``/``build``/``plan`` and ``--json``.

    Attributes:
        status: ``built``, ``fresh``, ``failed``, ``skipped``, ``interrupted`` (build) or ``stale``/``fresh`` (plan).
        reasons: why it was or would be built, or why it failed (``trtbuild.reasons``).
        engine: engine path relative to the project.
        seconds: wall time spent on the model's steps in this run (the sum of ``steps``).
        log_tail: builder log lines worth showing for a failure.
        size: the engine's size in bytes when it is built or fresh, else ``None``.
        steps: the steps that did work (or failed, or were skipped), in run order; fresh steps are left out.
        accuracy: for a gated model, the figures of its accuracy report (``accuracy_figures``), else ``None``.
        log: the log file of the failed step, relative to the project, for failures.
        notes: what the user chose that the verdicts do not cover, e.g. ``int8, not gated (gate: skip)``;
            shown for fresh models too.
    """

    status: str
    reasons: list[Reason] = field(default_factory=list)
    engine: str = ""
    seconds: float = 0.0
    log_tail: str = ""
    size: int | None = None
    steps: list[StepRun] = field(default_factory=list)
    accuracy: dict[str, Any] | None = None
    log: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass
class RunSummary:
    """What a run (or a plan) reports as a whole.

    Attributes:
        models: model name -> result, in manifest order.
        device: the device the engines are for (``devices/<device>.yaml``, else the detected one).
        environment: the environment fingerprint that went into every key (``trtbuild env``).
        seconds: wall time of the command so far, or ``None`` for a plan.
    """

    models: dict[str, ModelResult]
    device: str | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def report_problem(report: Any) -> str | None:
    """What is wrong with the shape of an accuracy-gate report, or ``None``: the fields ``accuracy_figures``
    reads must be what the gate writes (``passed`` a bool, ``precision`` a string, ``outputs`` a mapping of
    output -> ``{"cosine": number | null, ...}``, the agreements numbers or null, ``detections`` an int or null).
    Plain checks: the fast path reads reports without pydantic."""
    if not isinstance(report, dict):
        return "not a JSON object"
    if not isinstance(report.get("passed"), bool):
        return "passed: not true or false"
    if not isinstance(report.get("precision"), str):
        return "precision: not a string"
    outputs = report.get("outputs", {})
    if not isinstance(outputs, dict):
        return "outputs: not a mapping"
    for output, figures in outputs.items():
        if not isinstance(figures, dict) or not (figures.get("cosine") is None or _number(figures["cosine"])):
            return f"outputs.{output}: not a mapping with a numeric cosine"
        if not all(_number(figures.get(field)) for field in ("max_abs", "mean_abs")):
            return f"outputs.{output}: max_abs / mean_abs not numbers"
    if not (isinstance(report.get("images"), int) and isinstance(report.get("failures"), list)):
        return "images / failures: not an integer and a list"
    for name in ("top1_agreement", "detection_agreement"):
        if report.get(name) is not None and not _number(report[name]):
            return f"{name}: not a number"
    if report.get("detections") is not None and not (
        isinstance(report["detections"], int) and not isinstance(report["detections"], bool)
    ):
        return "detections: not an integer"
    return None


#: How the summary names a gate figure.
FIGURES = {
    "relative_error": "rel err",
    "cosine": "cosine",
    "max_abs": "max|err|",
    "mean_abs": "mean|err|",
    "top1_agreement": "top-1",
    "detection_agreement": "det",
    "keypoint_error_px": "kpt px",
}


def gate_line(accuracy: dict[str, Any]) -> str:
    """``gate pass: output0 rel err 0.00059 <= 0.01, cosine 1-1.7e-07 >= 0.999, det 1 >= 0.85 (tightest)``:
    every bound the gate checked, its figure beside it, the smallest relative margin marked (``accuracy``
    as ``accuracy_figures`` gives it); ``""`` for a report without checks."""
    checks = [check for check in accuracy.get("checks") or [] if check.get("figure") in FIGURES]
    if not checks:
        return ""
    tightest = min(range(len(checks)), key=lambda index: checks[index]["margin"])
    parts, previous = [], None
    for index, check in enumerate(checks):
        value = check["shown"] if isinstance(check.get("shown"), str) else f"{check['value']:.3g}"
        relation = ("<=" if check["ok"] else ">") if check["upper"] else (">=" if check["ok"] else "<")
        output = check.get("output")
        where = f"{output} " if output and output != previous else ""
        previous = output or previous
        mark = " (tightest)" if index == tightest and len(checks) > 1 else ""
        parts.append(f"{where}{FIGURES[check['figure']]} {value} {relation} {check['bound']:g}{mark}")
    verdict = accuracy.get("verdict") or ("pass" if accuracy["passed"] else "fail")
    return f"gate {verdict}: " + ", ".join(parts)


def accuracy_figures(report: Any, path: str) -> dict[str, Any]:
    """The ``--json`` figures of an accuracy-gate report (``reports/<name>.accuracy.json``).

    Returns:
        ``{"report": path, "passed": bool, "precision": str, "cosine": {output: float | None},
        "agreement": {"top1": float} | {"detection": float | None, "detections": int} | None}``.

    Raises:
        ValueError: the report is not the shape the gate writes (``report_problem``); the message names
            ``path`` and the field. Callers treat it as no report: the gate's lock entry records the
            report's sha256, so a damaged report makes the gate stale and it is written again.
    """
    problem = report_problem(report)
    if problem is not None:
        raise ValueError(f"{path}: not an accuracy report ({problem})")
    agreement: dict[str, Any] | None = None
    if "top1_agreement" in report:
        agreement = {"top1": report["top1_agreement"]}
    elif "detection_agreement" in report:
        agreement = {"detection": report["detection_agreement"], "detections": report.get("detections")}
    return {
        "report": path,
        "passed": report["passed"],
        "precision": report["precision"],
        "cosine": {output: figures.get("cosine") for output, figures in (report.get("outputs") or {}).items()},
        "agreement": agreement,
        "verdict": report.get("verdict") if isinstance(report.get("verdict"), str) else None,
        "checks": [check for check in report.get("checks") or [] if _check_shape(check)],
    }


def _check_shape(check: Any) -> bool:
    """Whether a report's ``checks`` entry has the fields ``gate_line`` reads, with the right types."""
    return (
        isinstance(check, dict)
        and isinstance(check.get("figure"), str)
        and _number(check.get("value"))
        and _number(check.get("bound"))
        and _number(check.get("margin"))
        and isinstance(check.get("ok"), bool)
        and isinstance(check.get("upper"), bool)
        and (check.get("output") is None or isinstance(check["output"], str))
    )


def summary_json(summary: RunSummary) -> str:
    """``{"device", "environment", "seconds", "models": {NAME: {"status", "reasons", "why", "engine", "seconds",
    "size", "steps": [{"step", "status", "seconds"}], "notes"?, "accuracy"?}}}``: ``reasons`` in words, ``why`` the
    same reasons as data (``Reason.as_dict``: step, kind, field, old, new, text); ``accuracy`` only for
    gated models."""
    models = {}
    for name, r in summary.models.items():
        model: dict[str, Any] = {
            "status": r.status,
            "reasons": [reason.text() for reason in r.reasons],
            "why": [reason.as_dict() for reason in r.reasons],
            "engine": r.engine,
            "seconds": round(r.seconds, 3),
            "size": r.size,
            "steps": [{"step": s.step, "status": s.status, "seconds": round(s.seconds, 3)} for s in r.steps],
        }
        if r.notes:  # only where there is one: the no-op fast path's models have none
            model["notes"] = list(r.notes)
        if r.accuracy is not None:
            model["accuracy"] = r.accuracy
        models[name] = model
    seconds = None if summary.seconds is None else round(summary.seconds, 3)
    return json.dumps(
        {"device": summary.device, "environment": summary.environment, "seconds": seconds, "models": models}, indent=2
    )


def human_size(size: int | None) -> str:
    """``812 B``, ``266 KiB``, ``8.1 MiB``, ``1.2 GiB``; ``-`` for ``None``."""
    if size is None:
        return "-"
    value, unit = float(size), "B"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            break
        value /= 1024
    return f"{value:.0f} {unit}" if unit in ("B", "KiB") or value >= 100 else f"{value:.1f} {unit}"


def duration(seconds: float) -> str:
    """``0.4s``, ``52.0s``, ``4m18s``, ``1h02m``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}m{rest:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _engine_folder(results: dict[str, ModelResult]) -> str:
    """The folder holding every engine (``engines/x86-rtx/``), or ``""`` when they share none."""
    folders = {os.path.dirname(r.engine) for r in results.values() if r.engine}
    if not folders:
        return ""
    try:
        common = os.path.commonpath(sorted(folders))
    except ValueError:
        return ""
    return common + "/" if common else ""


def _where(summary: RunSummary) -> str:
    """``engines/x86-rtx/ on x86-rtx: tensorrt-rtx 1.7.1.116, JetPack 6.2``: where the engines are and
    what they are for."""
    env = summary.environment
    parts = []
    if env.get("builder"):
        parts.append(f"{env['builder']} {env.get('builder_version') or ''}".strip())
    if env.get("jetpack"):
        parts.append(f"JetPack {env['jetpack']}")
    folder = _engine_folder(summary.models)
    device = f"on {summary.device}" + (f": {', '.join(parts)}" if parts else "") if summary.device else ", ".join(parts)
    return " ".join(part for part in (folder, device) if part)


def summary_line(summary: RunSummary) -> str:
    """The last line of every summary:
    ``1 built, 14 fresh in 4m18s (engines/x86-rtx/ on x86-rtx: tensorrt-rtx 1.7.1.116)``."""
    counts: dict[str, int] = {}
    for result in summary.models.values():
        counts[result.status] = counts.get(result.status, 0) + 1
    order = [BUILT, PULLED, FAILED, INTERRUPTED, SKIPPED, STALE, FRESH]
    text = ", ".join(
        f"{counts[status]} {status}"
        for status in sorted(counts, key=lambda s: (order.index(s) if s in order else 99, s))
    )
    text = text or "no models"
    if summary.seconds is not None:
        text += f" in {duration(summary.seconds)}"
    where = _where(summary)
    return f"{text} ({where})" if where else text


def _wrap(text: str, width: int, indent: str) -> list[str]:
    import textwrap  # only for summaries with work: the no-op fast path never gets here

    return textwrap.wrap(
        text,
        width=max(width, len(indent) + 20),
        initial_indent=indent,
        subsequent_indent=indent + "  ",
        break_on_hyphens=False,
        break_long_words=False,
    ) or [indent.rstrip()]


def summary_lines(summary: RunSummary, width: int | None = None) -> list[str]:
    """The human summary: a block per model that did something, then ``summary_line``.

    A block is ``status  model  time  size  engine``, then the steps with their times, then the reasons,
    wrapped to ``width`` columns (default: ``columns()``); a failure adds the
    tail of its log. Fresh models are only counted.
    """
    width = width or columns()
    lines: list[str] = []
    busy = {name: r for name, r in summary.models.items() if r.status != FRESH or r.notes}
    name_width = min(max([len(name) for name in busy] + [5]), 28)
    for name, r in busy.items():
        head = f"{r.status:<11} {name:<{name_width}}"
        if r.steps or r.seconds:
            head += f"  {duration(r.seconds):>6}"
        if r.size is not None:
            head += f"  {human_size(r.size):>9}"
        lines.append(f"{head}  {r.engine}" if len(head) + 2 + len(r.engine) <= width else head)
        if len(head) + 2 + len(r.engine) > width:
            lines.append(f"{'':12}{r.engine}")
        ran = [s for s in r.steps if s.status != SKIPPED]
        if ran:
            lines += _wrap(
                ", ".join(
                    f"{s.step} {duration(s.seconds)}" + ("" if s.status == BUILT else f" {s.status}") for s in ran
                ),
                width,
                " " * 12,
            )
        if r.reasons:
            lines += _wrap("; ".join(reason.text() for reason in r.reasons), width, " " * 12)
        gate = gate_line(r.accuracy) if r.accuracy is not None else ""
        if gate:
            lines += _wrap(gate, width, " " * 12)
        if r.notes:
            lines += _wrap("; ".join(r.notes), width, " " * 12)
    lines += failure_logs(summary)
    lines.append(summary_line(summary))
    return lines


def failure_logs(summary: RunSummary) -> list[str]:
    """The log tail of every failure, headed ``--- NAME: log (.trtbuild/logs/NAME.export.log) ---``: part
    of the human summary, and what ``--json`` runs still print on stderr."""
    return [
        f"--- {name}: log ({r.log or '.trtbuild/logs/' + name + '.log'}) ---\n{r.log_tail.rstrip()}"
        for name, r in summary.models.items()
        if r.status == FAILED and r.log_tail
    ]


def print_summary(summary: RunSummary, stream: TextIO) -> None:
    """Print ``summary_lines`` to ``stream``."""
    print("\n".join(summary_lines(summary)), file=stream, flush=True)


def columns(stream: TextIO | None = None) -> int:
    """The width tables must fit: ``COLUMNS`` when set, else the terminal's when ``stream`` (stdout)
    is one, else unlimited (a pipe or a file gets one line per row, for grep)."""
    import shutil

    if os.environ.get("COLUMNS", "").isdigit() or (stream or sys.stdout).isatty():
        return shutil.get_terminal_size((80, 24)).columns
    return 10_000


def default_stream(json_mode: bool) -> TextIO:
    """Human output goes to stdout, or to stderr when stdout carries ``--json``."""
    return sys.stderr if json_mode else sys.stdout


def exit_quietly_on_broken_pipe() -> None:
    """The reader of our output went away (``trtbuild all --json | head -c 10``): point stdout at
    /dev/null so the interpreter's final flush cannot fail again, and exit with ``EXIT_BROKEN_PIPE``
    without a word, as standard Unix tools do on SIGPIPE.

    Raises:
        SystemExit: always.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    raise SystemExit(EXIT_BROKEN_PIPE)
