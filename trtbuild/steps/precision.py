"""Precision steps: the model's FP32 ONNX -> ONNX that carries a reduced precision, and the accuracy gate.

- ``fp16_step``: FP16 ONNX (I/O kept FP32) for strongly typed builders, ``fp16_via: onnx``, or to
  validate an FP16-flag build;
- ``int8_step``: symmetric Q/DQ INT8 ONNX calibrated on real images;
- ``accuracy_step``: the FP32 ONNX against the reduced one, emulated (``precision.emulate``), on
  validation images; a tolerance breach fails the step, so the engine after it is skipped. The JSON
  report is kept either way, but recorded in the lock only when it passed.

Each runs ``precision.child`` when its key changed. Key components: ``onnx`` (the input digest; for the
gate, of both ONNX), ``converter`` (the step's name and version), ``code`` (the hash of the modules doing
the work), ``params`` (settings, and every image's sha256) and ``versions`` (the libraries doing the work).
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path
from typing import Any

from trtbuild import reasons as why
from trtbuild.child_requests import AccuracyRequest, Fp16Request, Int8Request
from trtbuild.errors import BuildError
from trtbuild.isolation import Produced
from trtbuild.manifest.onnx_inputs import onnx_input_dims
from trtbuild.manifest.target import ModelTarget, Project
from trtbuild.packages import installed_versions
from trtbuild.reasons import Reason
from trtbuild.state.keys import KEY_SCHEMA, key_of, profiles
from trtbuild.state.onnx_digest import onnx_digest
from trtbuild.state.statcache import StatCache
from trtbuild.steps.choices import reduced_onnx
from trtbuild.steps.context import FAILED, Context, Outcome
from trtbuild.steps.step import Step


def feed_inputs(target: ModelTarget) -> dict[str, list[int]]:
    """Every graph input -> the shape calibration and validation feed it: what the engine takes.

    The dims after the first are the declared opt shape, else the ONNX's. The batch (the first dim) is
    the ONNX's when it is static: an input ``[2, 3, 32, 32]`` is fed ``[2, 3, 32, 32]`` (ONNX Runtime
    refuses any other batch, and so does the engine). When the ONNX's batch is dynamic it is 1, or the
    smallest batch a declared profile admits when that is above 1 (``min: [4, ...]``), so every feed is
    within the engine's profile. A scalar input is fed ``[]``.

    Raises:
        BuildError: an input has dynamic dims beyond the batch and is not declared.
    """
    declared_profiles = target.spec.profiles()
    declared = declared_profiles[0]
    shapes: dict[str, list[int]] = {}
    for name, dims in onnx_input_dims(target.onnx).items():
        shape = list(declared[name][1]) if name in declared else list(dims)
        if not shape:
            shapes[name] = []
            continue
        static = dims[0] if dims else 1
        if isinstance(static, int):
            batch = max(static, 1)
        else:
            batch = max(1, min((profile[name][0][0] for profile in declared_profiles if name in profile), default=1))
        if not all(isinstance(dim, int) for dim in shape[1:]):
            raise BuildError(f"input {name!r} has dynamic dims {shape}; declare its shape under inputs")
        shapes[name] = [batch, *shape[1:]]
    return shapes


def sample_hashes(cache: StatCache, sample: Any, root: Path) -> dict[str, str]:
    """file name -> sha256 of every file a sample uses (images, whose crops come from the same files, or
    arrays); none for ``random``, whose settings are the key.

    Raises:
        ManifestError: no file matches, or the package holding the images is not installed.
    """
    from trtbuild.precision import samples

    return {path.name: cache.sha256(path) for path in samples.files(sample, root)}


#: The modules whose code does each precision step's work (``trtbuild.precision.<name>``); a step's key holds
#: their files' sha256 (``_code``), so an edit to one makes the step stale. ``tests/test_keys.py`` checks that
#: each list holds every module its first one and its function in ``child.py`` use, transitively.
CODE = {
    "fp16": ("fp16", "child", "fp16_values", "float_types", "validate", "images", "samples"),
    "fp16-autocast": ("fp16", "child", "fp16_values", "float_types", "validate", "images", "samples"),
    "int8": ("int8", "child", "validate", "images", "samples"),
    "accuracy": (
        "accuracy",
        "child",
        "emulate",
        "emulate_fp16",
        "emulate_int8",
        "rewrite",
        "images",
        "samples",
        "fp16",  # already_fp16 names the gate's reference
        "fp16_values",
        "float_types",
        "validate",
    ),
}


def _code(cache: StatCache, work: str) -> str:
    """The hash of the modules that do the ``work`` of ``CODE``: ``{module name: sha256 of its file}``, keyed;
    the files are found without importing them.

    The one code-hash rule of the precision steps. The name is the module's last part (``int8``), except
    for the accuracy step, whose locks have always spelt the full name (``trtbuild.precision.accuracy``):
    that spelling is kept so the keys are read as they were written.
    """
    return key_of(
        {
            (f"trtbuild.precision.{name}" if work == "accuracy" else name): cache.sha256(_module_file(name))
            for name in CODE[work]
        }
    )


@functools.cache
def _module_file(name: str) -> Path:
    """``trtbuild/precision/<name>.py``, found once per process without importing it (every step's key asks)."""
    spec = importlib.util.find_spec(f"trtbuild.precision.{name}")
    assert spec is not None and spec.origin is not None, name
    return Path(spec.origin)


def _feeding(target: ModelTarget, ctx: Context, field: str) -> dict[str, Any]:
    """The ``PrecisionRequest`` fields that say how ``field`` (``calibration`` / ``validation``) is fed; the
    ONNX's inputs are read once, for the feed shapes and for this check.

    Raises:
        BuildError: the sample is ``images`` and the model has not exactly one image input
            (``[N, C, H, W]``, or ``[N, H, W, C]`` with ``preprocess.layout: nhwc``).
    """
    inputs = feed_inputs(target)
    shape = next(iter(inputs.values())) if len(inputs) == 1 else None
    if getattr(target.spec, field).images is not None and (shape is None or len(shape) != 4):
        described = ", ".join(f"{name} {dims}" for name, dims in inputs.items())
        raise BuildError(
            f"{target.where(field)}: images feed one {target.spec.preprocess.layout.upper()} image input; "
            f"{target.onnx.name} takes {described}: give {field}: {{npy: FILES}}"
            + (" or {random: {}}" if field == "validation" else "")
        )
    return {
        "project_root": str(ctx.project.root),
        "preprocess": target.spec.preprocess.model_dump(mode="json"),
        "inputs": inputs,
    }


def _step(
    kind: str, target: ModelTarget, project: Project, output: Path, consumes: tuple[Path, ...], **hooks: Any
) -> Step:
    return Step(
        id=f"{kind}:{project.relative(output)}",
        kind=kind,
        model=target.name,
        output=output,
        consumes=consumes,
        inputs=consumes,
        log=f".{kind}",
        tool="versions",
        **hooks,
    )


def fp16_step(target: ModelTarget, project: Project) -> Step:
    """``fp16:<fp16 onnx path>``: onnxconverter-common (default, sensitive ops blocked) or ModelOpt AutoCast
    (``fp16_converter: autocast``, which also reads the calibration images). A source that is FP16 already
    (``precision.fp16.already_fp16``) is written unchanged, whichever the converter."""
    from trtbuild.precision import fp16

    spec = target.spec

    def components(ctx: Context, recorded: dict[str, Any] | None) -> dict[str, Any]:
        params: dict[str, Any] = {"converter": spec.fp16_converter, "keep_io_types": True}
        if spec.fp16_converter == "autocast":
            assert spec.calibration is not None
            params.update(
                calibration=spec.calibration.model_dump(mode="json"),
                inputs=profiles(target),
                preprocess=spec.preprocess.model_dump(mode="json"),
                images=sample_hashes(ctx.stats, spec.calibration, ctx.project.root),
            )
            code, versions = (
                _code(ctx.stats, "fp16-autocast"),
                installed_versions("nvidia-modelopt", "onnx", "onnxruntime"),
            )
        else:
            params["block_list"] = list(fp16.SENSITIVE_OPS)
            code, versions = _code(ctx.stats, "fp16"), installed_versions("onnxconverter-common", "onnx")
        return {
            "schema": KEY_SCHEMA,
            "onnx": onnx_digest(ctx.stats, target.onnx),
            "converter": f"fp16 v{fp16.VERSION}",
            "code": code,
            "params": params,
            "versions": versions,
        }

    def request(ctx: Context, found: dict[str, Any]) -> Fp16Request:
        if spec.fp16_converter != "autocast":
            return Fp16Request(onnx=str(target.onnx))
        assert spec.calibration is not None
        return Fp16Request(
            onnx=str(target.onnx),
            converter="autocast",
            calibration=spec.calibration.model_dump(mode="json"),
            **_feeding(target, ctx, "calibration"),
        )

    return _step(
        "fp16",
        target,
        project,
        target.fp16_onnx,
        (target.onnx,),
        components=components,
        request=request,
    )


def int8_step(target: ModelTarget, project: Project) -> Step:
    """``int8:<int8 onnx path>``: symmetric Q/DQ from the calibration images (ModelOpt or ONNX Runtime)."""
    from trtbuild.precision import int8

    spec = target.spec
    calibration = spec.calibration
    assert calibration is not None

    def components(ctx: Context, recorded: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "schema": KEY_SCHEMA,
            "onnx": onnx_digest(ctx.stats, target.onnx),
            "converter": f"int8 v{int8.VERSION}",
            "code": _code(ctx.stats, "int8"),
            "params": {
                "calibration": calibration.model_dump(mode="json"),
                "preprocess": spec.preprocess.model_dump(mode="json"),
                "inputs": profiles(target),
                "images": sample_hashes(ctx.stats, calibration, ctx.project.root),
            },
            "versions": installed_versions(*int8.QUANTIZER_PACKAGES[calibration.quantizer], "pillow"),
        }

    def request(ctx: Context, found: dict[str, Any]) -> Int8Request:
        return Int8Request(
            onnx=str(target.onnx),
            calibration=calibration.model_dump(mode="json"),
            **_feeding(target, ctx, "calibration"),
        )

    return _step(
        "int8",
        target,
        project,
        target.int8_onnx,
        (target.onnx,),
        components=components,
        request=request,
    )


def accuracy_step(target: ModelTarget, project: Project) -> Step:
    """``accuracy:<report path>``: judge the reduced ONNX against the FP32 ONNX; a breach fails the step
    with the figures and leaves the report for diagnosis, unrecorded."""
    spec, reduced = target.spec, reduced_onnx(target)
    validation = spec.validation
    assert validation is not None

    def components(ctx: Context, recorded: dict[str, Any] | None) -> dict[str, Any]:
        return _accuracy_components(target, ctx)

    def precheck(ctx: Context) -> Reason | None:
        return _apart(target, ctx)

    def request(ctx: Context, found: dict[str, Any]) -> AccuracyRequest:
        return AccuracyRequest(
            model=target.name,
            precision=spec.precision,
            onnx=str(target.onnx),
            reduced=str(reduced),
            validation=validation.model_dump(mode="json"),
            head=spec.head.model_dump(mode="json"),
            tolerance=spec.tolerance.model_dump(mode="json"),
            **_feeding(target, ctx, "validation"),
        )

    def accept(ctx: Context, produced: Produced) -> Outcome | None:
        return None if produced.result["passed"] else _breach(target, ctx)

    return _step(
        "accuracy",
        target,
        project,
        target.report,
        (target.onnx, reduced),
        components=components,
        precheck=precheck,
        request=request,
        accept=accept,
    )


def _accuracy_components(target: ModelTarget, ctx: Context) -> dict[str, Any]:
    """The gate's key: both ONNX, the code that judges, the settings and samples that decide the verdict."""
    spec, validation = target.spec, target.spec.validation
    assert validation is not None
    reduced = reduced_onnx(target)
    return {
        "schema": KEY_SCHEMA,
        "onnx": key_of({"reference": onnx_digest(ctx.stats, target.onnx), "reduced": onnx_digest(ctx.stats, reduced)}),
        "converter": "accuracy v3",
        "code": _code(ctx.stats, "accuracy"),
        "params": {
            "validation": validation.model_dump(mode="json"),
            "preprocess": spec.preprocess.model_dump(mode="json"),
            "head": spec.head.model_dump(mode="json"),
            "tolerance": spec.tolerance.model_dump(mode="json"),
            "inputs": profiles(target),
            "images": sample_hashes(ctx.stats, validation, ctx.project.root),
        },
        "versions": installed_versions("onnxruntime", "pillow"),
    }


def _apart(target: ModelTarget, ctx: Context) -> Reason | None:
    """Why the gate cannot judge fairly: validation samples that are calibration samples too (by sha256)."""
    calibration, validation = target.spec.calibration, target.spec.validation
    if calibration is None or validation is None:
        return None
    root = ctx.project.root
    shared = set(sample_hashes(ctx.stats, calibration, root).values()) & set(
        sample_hashes(ctx.stats, validation, root).values()
    )
    if not shared:
        return None
    return why.error(
        f"{target.where('validation')}: validation images must be kept apart from calibration "
        f"images; {len(shared)} are in both"
    )


def _breach(target: ModelTarget, ctx: Context) -> Outcome:
    """The failed outcome of a gate that did not pass: its failures, or why it cannot judge. The report
    stays for diagnosis and is never recorded as passed."""
    report = json.loads(target.report.read_text())
    where = ctx.project.relative(target.report)
    if report["failures"]:
        text = f"accuracy gate failed ({where}): {'; '.join(report['failures'])}"
    else:
        text = (
            f"accuracy gate cannot judge ({where}): {'; '.join(report['unjudged'])}; "
            f"{target.where('gate')}: skip builds the engine unjudged"
        )
    return Outcome(FAILED, [why.error(text)])
