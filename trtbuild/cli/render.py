"""Every result an operation returns, as the user sees it: human text on stdout, or ``--json``.

The CLI calls one ``ops`` function per command and hands its result to one function here; the run
summary itself is ``results.print_summary`` / ``summary_json`` (shared with the no-op fast path).
Tables fit the terminal (``fit_table``).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from trtbuild.results import RunSummary, columns, failure_logs, human_size, print_summary, summary_json


def summaries(found: list[RunSummary], json_mode: bool) -> None:
    """``--json`` on stdout (and of the human summary only the failures' log tails, on stderr), else the
    human summary on stdout; several devices: one summary each (``--json``: ``{"devices": [...]}``)."""
    if json_mode:
        for summary in found:
            for lines in failure_logs(summary):
                click.echo(lines, err=True)
        if len(found) == 1:
            click.echo(summary_json(found[0]))
        else:
            click.echo(json.dumps({"devices": [json.loads(summary_json(s)) for s in found]}, indent=2))
        return
    for index, summary in enumerate(found):
        if len(found) > 1:
            click.echo(f"{'' if index == 0 else chr(10)}== device {summary.device} ==")
        print_summary(summary, sys.stdout)


def pushed(done: Any, json_mode: bool) -> None:
    """``ops.push.PushResult``."""
    if json_mode:
        click.echo(json.dumps(asdict(done), indent=2))
    else:
        click.echo(
            f"{len(done.pushed)} pushed, {len(done.present)} already there, "
            f"{len(done.stale)} not fresh here (build them first)"
        )


def removed(paths: list[str], json_mode: bool) -> None:
    """The engines ``ops.clean.clean`` removed."""
    if json_mode:
        click.echo(json.dumps({"removed": paths}))
    else:
        click.echo("\n".join(f"removed {path}" for path in paths) or "nothing to remove")


def written(paths: list[Path]) -> None:
    """The files ``ops.init.init`` wrote, relative to the current folder."""
    import os

    for path in paths:
        click.echo(f"wrote {os.path.relpath(path)}")


def devices(detected: str | None, rows: list[Any], json_mode: bool) -> None:
    """``ops.devices.devices``: one line per device overlay, then this machine."""
    table = [asdict(row) for row in rows]
    if json_mode:
        click.echo(json.dumps({"detected": detected, "devices": table}, indent=2))
        return
    for row in table:
        click.echo(
            f"{row['device']:<20} {'detected' if row['detected'] else '':<9} {'locked' if row['lock'] else 'no lock'}"
        )
    click.echo(f"this machine: {detected}" + ("" if any(r["detected"] for r in table) else " (no manifest for it)"))


def config(project: Any, manifest: Path, json_mode: bool) -> None:
    """The manifest with the device overlay merged in (``Project.document``), as YAML or JSON."""
    import yaml

    if json_mode:
        click.echo(json.dumps(project.document, indent=2))
        return
    click.echo(f"# {manifest} + devices/{project.device}.yaml" if project.device else f"# {manifest}")
    click.echo(yaml.safe_dump(project.document, sort_keys=False, default_flow_style=None).rstrip())


def env(found: dict[str, Any], json_mode: bool) -> None:
    """``ops.env.env``: one ``key  value`` line each (``-`` for none)."""
    if json_mode:
        click.echo(json.dumps(found, indent=2))
        return
    width = max(len(key) for key in found)
    for key, value in found.items():
        click.echo(f"{key:<{width}}  {'-' if value is None else value}")


def description(found: dict[str, Any], json_mode: bool) -> None:
    """``ops.inspect.describe``: size, hash, builder, precision, profiles, I/O tensors, layers."""
    if json_mode:
        click.echo(json.dumps(found, indent=2))
        return
    click.echo(f"{found['model']}: {found['engine']}")
    click.echo(f"  {human_size(found['size'])} ({found['size']:,} bytes), sha256 {found['sha256'][:16]}...")
    click.echo(f"  built by {found['builder']} at {found['built_at']}")
    click.echo(f"  precision {found['precision']}, workspace {human_size(found['workspace'])}")
    click.echo(f"  from: {found['source']}")
    for index, profile in enumerate(found["profiles"]):
        for tensor, bounds in profile.items():
            click.echo(f"  profile {index}: {tensor} min {bounds['min']} opt {bounds['opt']} max {bounds['max']}")
    io = found["io"]
    tensors = (
        io
        if isinstance(io, list)
        else [dict(t, mode=mode) for mode in ("inputs", "outputs") for t in (io.get(mode) or [])]
    )
    for tensor in tensors:
        click.echo(f"  {tensor.get('mode', ''):<8} {tensor['name']:<20} {tensor['dtype']:<6} {tensor['shape']}")
    click.echo(f"  layers: {found['layers']}; precision mix: {_precision_mix(found['precisions'])}")


def _precision_mix(precisions: Any) -> str:
    """``HALF 4, FLOAT 1`` (layers per precision, most first) from the inspector's ``{"FLOAT": 1, "HALF": 4}``."""
    if not isinstance(precisions, dict):
        return "unknown" if precisions is None else str(precisions)
    return (
        ", ".join(f"{kind} {count}" for kind, count in sorted(precisions.items(), key=lambda item: (-item[1], item[0])))
        or "none"
    )


def audit(results: dict[str, Any], json_mode: bool) -> None:
    """``ops.audit.audit``: per engine ok / MISMATCH, the rebuild's verdict and every finding."""
    if json_mode:
        click.echo(json.dumps({name: vars(result) for name, result in results.items()}, indent=2))
        return
    width = max(len(name) for name in results)
    for name, result in results.items():
        click.echo(f"{name:<{width}}  {'ok' if result.ok else 'MISMATCH':<8}  rebuild: {result.rebuild}")
        for finding in result.findings:
            click.echo(f"{'':<{width}}    - {finding}")


def accuracy(found: Any, json_mode: bool) -> None:
    """``ops.accuracy.accuracy``: the damaged reports as warnings on stderr, then the table (or JSON)."""
    for line in found.damaged:
        click.echo(f"warning: {line}", err=True)
    click.echo(json.dumps(found.reports, indent=2) if json_mode else accuracy_table(found.reports))


def fit_table(
    headers: list[str], rows: list[list[str]], width: int | None = None, right: frozenset[int] = frozenset()
) -> list[str]:
    """Rows as aligned columns sized to their content when that fits ``width`` (default: ``columns()``);
    otherwise each row as its first cell followed by indented ``header: value`` lines, which any width
    can show.

    Args:
        right: the indexes of right-aligned columns (numbers).
    """
    width = width or columns()
    sizes = [max([len(header)] + [len(row[index]) for row in rows]) for index, header in enumerate(headers)]
    if sum(sizes) + 2 * (len(sizes) - 1) <= width:

        def line(cells: list[str]) -> str:
            return "  ".join(
                cell.rjust(size) if index in right else cell.ljust(size)
                for index, (cell, size) in enumerate(zip(cells, sizes))
            ).rstrip()

        return [line(headers)] + [line(row) for row in rows]
    label = max(len(header) for header in headers[1:])
    lines = []
    for row in rows:
        lines.append(row[0])
        lines += [f"  {header + ':':<{label + 1}} {cell}" for header, cell in zip(headers[1:], row[1:]) if cell]
    return lines


def _bound(report: dict[str, Any], figure: str, output: str | None) -> str:
    """`` <= 0.01`` / `` >= 0.99`` for the bound the gate checked ``figure`` against, else ``""``."""
    for check in report.get("checks", []):
        if check["figure"] == figure and check["output"] == output:
            relation = "<=" if check.get("upper") else ">="
            mark = "" if check["ok"] else " !"
            return f" {relation} {check['bound']:g}{mark}"
    return ""


def _agreement(report: dict[str, Any]) -> str:
    parts = []
    if "top1_agreement" in report:
        count = f" ({report['top1_samples']})" if "top1_samples" in report else ""
        parts.append(f"top-1 {report['top1_agreement']:.3f}{count}{_bound(report, 'top1_agreement', None)}")
    if "detection_agreement" in report:
        value = report["detection_agreement"]
        shown = f"{value:.3f} ({report['detections']})" if value is not None else "undefined (0)"
        parts.append(f"det {shown}{_bound(report, 'detection_agreement', None)}")
    if report.get("keypoint_error_px") is not None:
        parts.append(f"kpt {report['keypoint_error_px']:.3g} px{_bound(report, 'keypoint_error_px', None)}")
    return ", ".join(parts)


def _relative(report: dict[str, Any], output: str, figures: dict[str, Any]) -> str:
    value = figures.get("relative_error")
    if value is None:
        return "undefined" if "relative_error" in figures else "-"
    return f"{value:.3g} ({figures['sqnr_db']:.1f} dB){_bound(report, 'relative_error', output)}"


VERDICTS = {"pass": "pass", "fail": "FAIL", "cannot judge": "CANNOT JUDGE"}


def accuracy_table(reports: dict[str, dict[str, Any]], width: int | None = None) -> str:
    """One row per model output: precision, emulation, images, relative error (SQNR) and cosine with
    their bounds, max abs error against the FP32 output's peak, agreement, verdict (``pass``, ``FAIL``,
    ``CANNOT JUDGE``); failures and the reasons the gate cannot judge follow on their own lines. Columns
    are sized to their content and fit ``width`` (default: the terminal's); on a narrower terminal each
    row becomes a block of ``column: value`` lines (``fit_table``)."""
    from trtbuild.precision.accuracy import format_cosine

    if not reports:
        return "no accuracy reports (models in fp32, or not built yet)"
    headers = [
        "model",
        "prec",
        "emulation",
        "imgs",
        "output",
        "rel err",
        "cosine",
        "max|err| / peak",
        "agreement",
        "verdict",
    ]
    rows, failures = [], []
    for name, report in reports.items():
        emulation = "+".join(report.get("emulation", {}).get("kinds", [])) or "none (old report)"
        verdict = VERDICTS.get(report.get("verdict", ""), "pass" if report["passed"] else "FAIL")
        for output, figures in report["outputs"].items():
            if "shape_mismatch" in figures:
                rows.append(
                    [name, report["precision"], emulation, str(report["images"]), output, "-", "-", "-", "", verdict]
                )
                continue
            peak = (
                f"{figures['max_abs']:.3g} / {figures['peak']:.3g}"
                if "peak" in figures
                else f"{figures['max_abs']:.4g}"
            )
            rows.append(
                [
                    name,
                    report["precision"],
                    emulation,
                    str(report["images"]),
                    output,
                    _relative(report, output, figures),
                    format_cosine(figures["cosine"]) + _bound(report, "cosine", output),
                    peak,
                    _agreement(report),
                    verdict,
                ]
            )
        failures += [f"  {name}: {failure}" for failure in report["failures"]]
        failures += [f"  {name}: cannot judge: {reason}" for reason in report.get("unjudged", [])]
    return "\n".join(fit_table(headers, rows, width, right=frozenset({3, 6, 7})) + failures)
