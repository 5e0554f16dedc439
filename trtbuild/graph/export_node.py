"""The export node: source -> canonical ONNX through the model's recipe, only when stale.

Runs the recipe in a child process (``export.child``), which reports the project files the recipe read;
they join the export's key with their sha256 (discovered dependencies, ``export.discovered``). The parent refuses to start a recipe that loads
pickles unless the source's bytes match their pin (hashed again here, not only when fetched, and never
answered from the stat cache), and checks the declared inputs against the new ONNX before it is renamed
into place. The pin goes to the child too, which loads only a private copy it checked against the pin:
replacing the source between this check and the child's load changes nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from trtbuild.errors import BuildError
from trtbuild.graph.nodes import ModelStep, BUILT, FAILED, FRESH, Context, Outcome, record_onnx
from trtbuild.isolation import run_isolated
from trtbuild.manifest.onnx_inputs import check_inputs, read_onnx_inputs
from trtbuild.state import keys
from trtbuild.state.staleness import assess_export, discovered_digests
from trtbuild.files import sha256_file


@dataclass
class Export(ModelStep):
    """Export ``target``'s source with its recipe to ``target.onnx``."""

    verb = "export"

    def stale_reasons(self, ctx: Context) -> list[str]:
        return assess_export(self.target, ctx.project.root, ctx.cache, ctx.lock).reasons

    def run(self, ctx: Context) -> Outcome:
        recipe = self.target.recipe
        assert recipe is not None
        missing = recipe.missing_modules()
        if missing:
            return Outcome(FAILED, [f"recipe {recipe.name} needs {', '.join(missing)}: {recipe.install_hint()}"])
        assessment = assess_export(self.target, ctx.project.root, ctx.cache, ctx.lock)
        if assessment.fresh:
            return Outcome(FRESH)
        if assessment.components is None:
            return Outcome(FAILED, assessment.reasons)
        pin = self.target.spec.pinned_sha256()
        if pin is not None and (actual := sha256_file(self.target.source)) != pin:
            return Outcome(FAILED, [f"source {self.target.source}: sha256 {actual} is not the pinned {pin}; not loaded"])
        started = time.monotonic()
        request = {
            "recipe": recipe.name,
            "project_root": str(ctx.project.root),
            "source": str(self.target.source),
            "sha256": pin,
            "params": assessment.components["params"],
            "declared": [str(self.target.source), str(recipe.file)],
        }
        try:
            produced = run_isolated(
                "trtbuild.export.child", request, self.target.onnx,
                ctx.project.state_dir / "logs" / f"{self.model}.export.log", ctx.project.state_dir / "tmp",
                verify=self._verify_inputs,
            )
        except BuildError as exc:
            return Outcome(FAILED, [str(exc)], time.monotonic() - started, exc.log_tail)
        components = {**assessment.components,
                      "discovered": discovered_digests(ctx.cache, ctx.project.root, produced.result["discovered"])}
        record_onnx(ctx, self.target.export_owner, components, keys.key_of(components), self.target.onnx, produced)
        return Outcome(BUILT, [f"{self.verb}: {reason}" for reason in assessment.reasons], time.monotonic() - started)

    def _verify_inputs(self, onnx_path: Path) -> None:
        problems = check_inputs(self.target, *read_onnx_inputs(onnx_path))
        if problems:
            raise BuildError("; ".join(problems))
