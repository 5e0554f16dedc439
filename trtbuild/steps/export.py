"""The export step: source -> canonical ONNX through the model's recipe (``export.child``).

Key components: ``source``, ``recipe``, ``code``, ``recipe_version``, ``params``, ``exporters`` and
``discovered``: the project files the last export read besides its declared inputs (``export.discovered``),
hashed now, so editing a module a project recipe imports makes the export stale. The child reports them;
``complete`` hashes them into the recorded key.

The parent refuses to start a recipe that loads pickles unless the source's bytes match their pin (hashed
again here, never answered from the stat cache), and checks the declared inputs against the new ONNX
before it is renamed into place. The pin goes to the child too, which loads only a private copy it
checked against the pin: replacing the source between this check and the child's load changes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trtbuild import reasons as why
from trtbuild.child_requests import ExportRequest
from trtbuild.errors import BuildError
from trtbuild.files import pin_mismatch, sha256_file
from trtbuild.isolation import Produced
from trtbuild.manifest.onnx_inputs import check_inputs, read_onnx_inputs
from trtbuild.manifest.target import ModelTarget, Project
from trtbuild.reasons import Reason
from trtbuild.state.keys import KEY_SCHEMA
from trtbuild.steps.context import Context
from trtbuild.steps.step import Step


def _components(target: ModelTarget, ctx: Context, recorded: dict[str, Any] | None) -> dict[str, Any]:
    """The export's key: the source, the recipe's code, version and parameters, the exporters' versions and
    the project files the last export read (``discovered``, re-hashed now)."""
    recipe, recipe_spec = target.recipe, target.spec.recipe
    assert recipe is not None and recipe_spec is not None
    found: dict[str, Any] = {
        "schema": KEY_SCHEMA,
        "source": ctx.stats.sha256(target.source),
        "recipe": recipe.name,
        "code": ctx.stats.sha256(recipe.file),
        "recipe_version": recipe.module.VERSION,
        "params": recipe.module.Params.model_validate(recipe_spec.params()).model_dump(mode="json"),
        "exporters": recipe.exporter_versions(),
    }
    discovered = (recorded or {}).get("components", {}).get("discovered")
    if discovered is not None:  # entries written before discovered dependencies have none
        found["discovered"] = ctx.stats.project_digests(ctx.project.root, sorted(discovered))
    return found


def export_step(target: ModelTarget, project: Project) -> Step:
    """``export:<onnx path>`` for a model with a recipe."""
    recipe, spec = target.recipe, target.spec
    assert recipe is not None and spec.recipe is not None

    def components(ctx: Context, recorded: dict[str, Any] | None) -> dict[str, Any]:
        return _components(target, ctx, recorded)

    def precheck(ctx: Context) -> Reason | None:
        missing = recipe.missing_modules()
        if missing:
            return why.error(f"recipe {recipe.name} needs {', '.join(missing)}: {recipe.install_hint()}")
        pin = spec.pinned_sha256()
        if pin is None:
            return None
        problem = pin_mismatch(sha256_file(target.source), pin, f"source {target.source}", "not loaded")
        return why.error(problem) if problem else None

    def request(ctx: Context, found: dict[str, Any]) -> ExportRequest:
        return ExportRequest(
            recipe=recipe.name,
            project_root=str(ctx.project.root),
            source=str(target.source),
            sha256=spec.pinned_sha256(),
            params=found["params"],
            declared=[str(target.source), str(recipe.file)],
        )

    def verify(onnx_path: Path) -> None:
        problems = check_inputs(target, *read_onnx_inputs(onnx_path))
        if problems:
            raise BuildError("; ".join(problems))

    def complete(ctx: Context, found: dict[str, Any], produced: Produced) -> dict[str, Any]:
        return {**found, "discovered": ctx.stats.project_digests(ctx.project.root, produced.result["discovered"])}

    return Step(
        id=f"export:{project.relative(target.onnx)}",
        kind="export",
        model=target.name,
        output=target.onnx,
        consumes=(target.source,),
        inputs=(target.source,),
        input_label="source",
        components=components,
        request=request,
        log=".export",
        precheck=precheck,
        verify=verify,
        complete=complete,
        tool="exporters",
    )
