"""The export's child process: source -> canonical, checked ONNX through a recipe.

Run by ``trtbuild.isolation.run_isolated`` as ``python -m trtbuild.export.child REQUEST.json``. After the
recipe's ``export``: canonical ordering (``export.canonical``), then ``onnx.checker.check_model`` with
``full_check=True`` (which runs strict shape inference); only a model that passes is written.

A pinned source is never read where it lies: the child copies it into its private scratch folder,
hashing the bytes as it copies, checks them against the pin the parent passed, and hands the recipe only
that copy. Whatever happens to the source after the parent's check, what is loaded is what was verified.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from trtbuild.child_requests import ExportRequest
from trtbuild.childside import child_main, private_copy
from trtbuild.errors import BuildError
from trtbuild.export import torch_pair
from trtbuild.export.canonical import canonicalize
from trtbuild.export.discovered import ReadRecorder
from trtbuild.export.registry import ExportContext, load_recipe


def export(request: ExportRequest) -> dict[str, Any]:
    """Run the recipe named in ``request`` and write the canonical ONNX to ``request.partial``.

    The result's ``discovered`` lists the project files the recipe read (relative paths) that are not
    ``request.declared``.

    Raises:
        BuildError: the source's bytes do not match the pin, the recipe failed, or its ONNX fails the
            checker / shape inference.
    """
    import onnx

    started = time.monotonic()
    reads = ReadRecorder()
    root = Path(request.project_root)
    recipe = load_recipe(request.recipe, root)
    params = recipe.module.Params.model_validate(request.params)
    with tempfile.TemporaryDirectory(prefix="trtbuild-export-") as folder:
        raw = Path(folder) / "exported.onnx"
        workdir = Path(folder) / "work"
        workdir.mkdir()
        source = Path(request.source)
        if request.sha256 is not None:  # code-carrying bytes: load only a private, verified copy
            source = private_copy(source, Path(folder) / "source", request.sha256)
        os.chdir(workdir)  # exporters that write beside themselves (Ultralytics) write into the scratch folder
        try:
            recipe.module.export(source, raw, params, ExportContext(workdir, root))
        except Exception as exc:  # a recipe's own error is reported as is, unless we can say more
            explanation = torch_pair.diagnose(exc)
            if explanation is None:
                raise
            raise BuildError(f"recipe {recipe.name}: {explanation}") from None
        if not raw.is_file():
            raise BuildError(f"recipe {recipe.name} wrote no ONNX")
        model = canonicalize(onnx.load_model(str(raw)))
        os.chdir(root)  # leave the scratch folder before it is removed
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise BuildError(f"recipe {recipe.name}: exported ONNX fails onnx.checker: {exc}") from None
    discovered = reads.inside(root, declared=[Path(path) for path in request.declared])
    onnx.save_model(model, request.partial)
    return {
        "seconds": time.monotonic() - started,
        "discovered": discovered,
        "opset": max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
    }


if __name__ == "__main__":
    sys.exit(child_main(export, sys.argv[1:]))
