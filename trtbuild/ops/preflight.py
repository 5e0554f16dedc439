"""The checks ``plan`` and every build make before any step runs: what the manifest says against the
files (sources and plugins against their pins, declared inputs against the ONNX, samples against the
files they name). One verdict for both: a problem is exit code 2 with nothing built."""

from __future__ import annotations

import networkx as nx

from trtbuild.errors import ManifestError
from trtbuild.files import pin_mismatch, sha256_file
from trtbuild.graph.dag import step_of
from trtbuild.manifest.onnx_inputs import verify_inputs
from trtbuild.manifest.target import ModelTarget, Project
from trtbuild.steps.context import Context
from trtbuild.steps.step import Step, assess


def preflight(graph: nx.DiGraph, ctx: Context) -> None:
    """Check every step of ``graph``: every local source exists and matches its sha256 pin, every pinned
    plugin matches its pin (pins are checked on the bytes, never from the stat cache), and the declared
    inputs of every model whose ONNX is a source match that ONNX — whatever the precision and the steps
    between ONNX and engine; then every model's samples (``sample_problems``).

    Raises:
        ManifestError: with every problem found (exit code 2, nothing built).
    """
    problems: list[str] = []
    for node_id in graph.nodes:
        step = step_of(graph, node_id)
        target = ctx.project.models[step.model]
        if step.kind == "source":
            problems += _source_problems(ctx.project, step, target)
        elif step.kind == "engine":
            problems += _engine_problems(step, target, ctx)
    problems += sample_problems(graph, ctx.project)
    if problems:
        raise ManifestError(problems)


def _source_problems(project: Project, step: Step, target: ModelTarget) -> list[str]:
    where, pin = project.relative(step.output), target.spec.pinned_sha256()
    if not step.output.is_file():
        return [f"{target.where('source')}: {where} does not exist"]
    problem = pin_mismatch(sha256_file(step.output), pin, where) if pin is not None else None
    return [f"{target.where('source')}: {problem}"] if problem else []


def _engine_problems(step: Step, target: ModelTarget, ctx: Context) -> list[str]:
    problems = []
    missing = False
    for index, (plugin, pin) in enumerate(zip(target.plugins, target.plugin_sha256)):
        if pin is not None and not plugin.is_file():
            problems.append(f"{target.where('plugins', index)}: {plugin} does not exist")
            missing = True
        elif pin is not None and (problem := pin_mismatch(sha256_file(plugin), pin, plugin)):
            problems.append(f"{target.where('plugins', index)}: {problem}")
    if target.recipe is None and target.onnx.is_file() and not missing:
        try:
            if assess(step, ctx).reasons:
                verify_inputs(target)
        except ManifestError as exc:
            problems += exc.messages
        except FileNotFoundError as exc:
            problems.append(f"{target.where('plugins')}: {exc.filename} does not exist")
    return problems


def sample_problems(graph: nx.DiGraph, project: Project) -> list[str]:
    """Calibration and validation samples that match no image or array file, or name a package that is not
    installed, as ``file:line: models.NAME.calibration: ...`` lines (the same verdict for ``plan`` and builds)."""
    from trtbuild.precision import samples

    problems = []
    for target in (project.models[model] for model in graph.graph["engine_ids"]):
        for field_name in ("calibration", "validation"):
            sample = getattr(target.spec, field_name)
            if sample is None:
                continue
            try:
                samples.files(sample, project.root)
            except ManifestError as exc:
                problems += [f"{target.where(field_name)}: {message}" for message in exc.messages]
    return problems
