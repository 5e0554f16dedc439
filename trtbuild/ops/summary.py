"""A model's result (``results.ModelResult``) from what its steps did, in the words ``plan`` and builds share."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import networkx as nx

from trtbuild.graph.dag import engine_node_id, step_of, steps_of
from trtbuild.manifest.target import ModelTarget, Project
from trtbuild.results import FRESH, ModelResult, StepRun, accuracy_figures
from trtbuild.steps.context import BUILT, FAILED, INTERRUPTED, PULLED, Outcome
from trtbuild.steps.step import Step


def gate_notes(target: ModelTarget) -> list[str]:
    """``["int8, not gated (gate: skip)"]`` for a reduced-precision model built unjudged, else ``[]``."""
    if target.spec.gate == "skip" and target.spec.precision != "fp32":
        return [f"{target.spec.precision}, not gated (gate: skip)"]
    return []


def model_result(graph: nx.DiGraph, outcomes: dict[str, Outcome], project: Project, name: str) -> ModelResult:
    """The model's result from its steps' outcomes: the engine's, with the reasons of every upstream step
    that did work; an upstream failure or interruption is the model's. ``steps`` are the steps that did
    not end fresh, with their wall times, and ``seconds`` their sum; ``size`` is the engine's bytes when
    it is built or fresh; ``accuracy`` the gate's figures when the model is gated and has a report."""
    target = project.models[name]
    engine = project.relative(target.engine)
    order = steps_of(graph, name)
    steps = {node_id: step_of(graph, node_id) for node_id in order}
    runs = [
        StepRun(steps[node_id].kind, outcomes[node_id].status, outcomes[node_id].seconds)
        for node_id in order
        if outcomes[node_id].status != FRESH
    ]
    seconds = sum(run.seconds for run in runs)
    accuracy = _accuracy(project, target) if any(step.kind == "accuracy" for step in steps.values()) else None
    common: dict[str, Any] = {"steps": runs, "accuracy": accuracy, "notes": gate_notes(target)}
    for node_id in order[:-1]:
        if outcomes[node_id].status in (FAILED, INTERRUPTED):
            failed = outcomes[node_id]
            log = log_of(project, steps[node_id])
            return ModelResult(failed.status, failed.reasons, engine, seconds, failed.log_tail, log=log, **common)
    engine_id = engine_node_id(graph, name)
    outcome = outcomes[engine_id]
    upstream = [
        reason
        for node_id in order[:-1]
        if outcomes[node_id].status in (BUILT, PULLED)
        for reason in outcomes[node_id].reasons
    ]
    reasons = outcome.reasons + upstream if outcome.status == FAILED else upstream + outcome.reasons
    built = outcome.status in (BUILT, FRESH, PULLED) and target.engine.is_file()
    size = target.engine.stat().st_size if built else None
    log = log_of(project, steps[engine_id]) if outcome.status == FAILED else ""
    return ModelResult(outcome.status, reasons, engine, seconds, outcome.log_tail, size=size, log=log, **common)


def _accuracy(project: Project, target: ModelTarget) -> dict[str, Any] | None:
    """The gate's figures from the model's report, ``None`` when there is none or it cannot be read."""
    if target.report.is_file():
        with contextlib.suppress(OSError, ValueError):
            return accuracy_figures(json.loads(target.report.read_text()), project.relative(target.report))
    return None


def log_of(project: Project, step: Step) -> str:
    """The log file a step writes (``.trtbuild/logs/<model>[.<step>].log``), relative to the project."""
    return project.relative(project.log_dir / f"{step.model}{step.log}.log")
