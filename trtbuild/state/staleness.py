"""Is an engine fresh, and if not, why — as data.

An engine is fresh only when its file exists, its sha256 is the one the lock recorded, and the key of
its components now equals the lock's key. Cheap checks first: the engine's and the ONNX's hashes come
from the stat cache, so a no-op run reads neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trtbuild.files import inside_project
from trtbuild.manifest.loader import ModelTarget
from trtbuild.packages import installed_versions
from trtbuild.state import keys
from trtbuild.state.lockfile import LockFile
from trtbuild.state.onnx_digest import onnx_digest
from trtbuild.state.statcache import StatCache


@dataclass
class Assessment:
    """The staleness of one engine.

    Attributes:
        components: the key components now (``None`` when the ONNX is missing).
        key: their key.
        reasons: why the engine must be built; empty when it is fresh.
    """

    components: dict[str, Any] | None
    key: str | None
    reasons: list[str] = field(default_factory=list)

    @property
    def fresh(self) -> bool:
        return not self.reasons


def plugin_digests(cache: StatCache, plugins: tuple[Path, ...], root: Path) -> dict[str, str]:
    """Plugin library (path relative to ``root``) -> sha256.

    Raises:
        FileNotFoundError: a plugin library is missing.
    """
    return {_relative(path, root): cache.sha256(path) for path in plugins}


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def assess(target: ModelTarget, root: Path, cache: StatCache, lock: LockFile, env: dict[str, Any]) -> Assessment:
    """Compare ``target``'s engine and inputs now with what ``lock`` recorded.

    Reasons, in this order: ``onnx missing``, ``never built``, ``engine missing``, ``engine modified``,
    then one per changed key component (``keys.diff_reasons``).

    Raises:
        FileNotFoundError: a plugin library is missing.
        ManifestError: the ONNX is unreadable or its external data points outside its folder.
    """
    onnx = target.engine_onnx(env)
    if not onnx.is_file():
        return Assessment(None, None, ["onnx missing"])
    components = keys.engine_components(
        onnx=onnx_digest(cache, onnx),
        settings=keys.build_settings(target),
        plugins=plugin_digests(cache, target.plugins, root),
        env=env,
    )
    key = keys.key_of(components)
    entry = lock.get(target.name)
    if entry is None:
        return Assessment(components, key, ["never built"])
    reasons = []
    if not target.engine.is_file():
        reasons.append("engine missing")
    elif cache.sha256(target.engine) != entry["engine"].get("sha256"):
        reasons.append("engine modified")
    if entry["key"] != key:
        reasons += keys.diff_reasons(entry["components"], components)
    return Assessment(components, key, reasons)


def _assess_output(components: dict[str, Any], output: Path, entry: dict[str, Any] | None, cache: StatCache, never: str) -> Assessment:
    """Staleness of an ONNX that trtbuild produces (export or conversion) from its lock ``entry``."""
    key = keys.key_of(components)
    if entry is None:
        return Assessment(components, key, [never])
    reasons = []
    if not output.is_file():
        reasons.append(f"{output.name} missing")
    elif cache.sha256(output) != entry["onnx"].get("sha256"):
        reasons.append(f"{output.name} modified")
    if entry["key"] != key:
        reasons += keys.diff_reasons(entry["components"], components)
    return Assessment(components, key, reasons)


def discovered_digests(cache: StatCache, root: Path, files: list[str]) -> dict[str, str | None]:
    """Project file (relative to ``root``) -> sha256 now, ``None`` when missing or outside the project
    (a lock naming ``../x`` never makes trtbuild hash a file outside)."""
    digests: dict[str, str | None] = {}
    for name in files:
        path = root / name
        digests[name] = cache.sha256(path) if inside_project(root, path) and path.is_file() else None
    return digests


def assess_export(target: ModelTarget, root: Path, cache: StatCache, lock: LockFile) -> Assessment:
    """Compare ``target``'s exported ONNX and its inputs now with the lock's export entry.

    The key's ``discovered`` component holds the project files the last export read besides its declared
    inputs (``export.discovered``), hashed now: editing a module a project recipe imports makes it stale.

    Reasons: ``source missing``, ``never exported``, ``<name>.onnx missing`` / ``modified``, then one per
    changed component (source, recipe code, params, exporter versions, discovered files).
    """
    recipe = target.recipe
    assert recipe is not None and target.spec.recipe is not None
    if not target.source.is_file():
        return Assessment(None, None, ["source missing"])
    components = keys.export_components(
        source=cache.sha256(target.source),
        recipe=recipe.name,
        code=cache.sha256(recipe.file),
        params=recipe.module.Params.model_validate(target.spec.recipe.params()).model_dump(mode="json"),
        exporters=recipe.exporter_versions(),
        version=recipe.module.VERSION,
    )
    entry = lock.exports.get(target.export_owner)
    recorded = (entry or {}).get("components", {}).get("discovered")
    if recorded is not None:  # entries written before discovered dependencies have none
        components["discovered"] = discovered_digests(cache, root, sorted(recorded))
    return _assess_output(components, target.onnx, entry, cache, "never exported")


def fp16_entry_name(model: str) -> str:
    """The lock's ``exports`` entry of a model's FP16 conversion."""
    return f"{model}:fp16"


def assess_fp16(target: ModelTarget, root: Path, cache: StatCache, lock: LockFile) -> Assessment:
    """Compare ``target``'s FP16 conversion with the lock: input ONNX, converter and its code, version and
    settings (the block list; for AutoCast the calibration images and preprocessing)."""
    from trtbuild.precision import fp16, images

    spec = target.spec
    if not target.onnx.is_file():
        return Assessment(None, None, ["onnx missing"])
    params: dict[str, Any] = {"converter": spec.fp16_converter, "keep_io_types": True}
    if spec.fp16_converter == "autocast":
        assert spec.calibration is not None
        params.update(calibration=spec.calibration.model_dump(mode="json"), preprocess=spec.preprocess.model_dump(mode="json"),
                      images=image_hashes(cache, spec.calibration, root))
        code = keys.key_of({"fp16": cache.sha256(Path(fp16.__file__)), "images": cache.sha256(Path(images.__file__))})
        versions = installed_versions("nvidia-modelopt", "onnx", "onnxruntime")
    else:
        params["block_list"] = list(fp16.SENSITIVE_OPS)
        code, versions = cache.sha256(Path(fp16.__file__)), installed_versions("onnxconverter-common", "onnx")
    components = keys.conversion_components(
        onnx=onnx_digest(cache, target.onnx), converter=f"fp16 v{fp16.VERSION}", code=code, params=params, versions=versions)
    return _assess_output(components, target.fp16_onnx, lock.exports.get(fp16_entry_name(target.name)), cache, "never converted")


def image_hashes(cache: StatCache, sample: Any, root: Path) -> dict[str, str]:
    """file name -> sha256 of every image a sample uses (crops come from the same files).

    Raises:
        ManifestError: no image matches, or the package holding them is not installed.
    """
    from trtbuild.precision.images import sample_plan

    return {path.name: cache.sha256(path) for path, _ in sample_plan(sample, root)}


def int8_entry_name(model: str) -> str:
    """The lock's ``exports`` entry of a model's Q/DQ INT8 ONNX."""
    return f"{model}:int8"


def accuracy_entry_name(model: str) -> str:
    """The lock's ``exports`` entry of a model's accuracy report."""
    return f"{model}:accuracy"


def assess_int8(target: ModelTarget, root: Path, cache: StatCache, lock: LockFile) -> Assessment:
    """Compare ``target``'s Q/DQ ONNX with the lock: input ONNX, calibration images and settings, code."""
    from trtbuild.precision import images, int8

    spec = target.spec
    if not target.onnx.is_file():
        return Assessment(None, None, ["onnx missing"])
    assert spec.calibration is not None
    components = keys.conversion_components(
        onnx=onnx_digest(cache, target.onnx),
        converter=f"int8 v{int8.VERSION}",
        code=keys.key_of({"int8": cache.sha256(Path(int8.__file__)), "images": cache.sha256(Path(images.__file__))}),
        params={"calibration": spec.calibration.model_dump(mode="json"), "preprocess": spec.preprocess.model_dump(mode="json"),
                "images": image_hashes(cache, spec.calibration, root)},
        versions=installed_versions(*int8.QUANTIZER_PACKAGES[spec.calibration.quantizer], "pillow"),
    )
    return _assess_output(components, target.int8_onnx, lock.exports.get(int8_entry_name(target.name)), cache, "never quantized")


def assess_accuracy(target: ModelTarget, root: Path, cache: StatCache, lock: LockFile, env: dict[str, Any]) -> Assessment:
    """Compare ``target``'s accuracy report with the lock: both ONNX, validation images, tolerance, code."""
    from trtbuild.precision import accuracy, emulate, images

    spec = target.spec
    reduced = target.reduced_onnx(env)
    if not target.onnx.is_file() or not reduced.is_file():
        return Assessment(None, None, ["onnx missing"])
    assert spec.validation is not None
    components = keys.conversion_components(
        onnx=keys.key_of({"reference": onnx_digest(cache, target.onnx), "reduced": onnx_digest(cache, reduced)}),
        converter="accuracy v2",
        code=keys.key_of({module.__name__: cache.sha256(Path(module.__file__ or "")) for module in (accuracy, emulate, images)}),
        params={"validation": spec.validation.model_dump(mode="json"), "preprocess": spec.preprocess.model_dump(mode="json"),
                "head": spec.head.model_dump(mode="json"), "tolerance": spec.tolerance.model_dump(mode="json"),
                "images": image_hashes(cache, spec.validation, root)},
        versions=installed_versions("onnxruntime", "pillow"),
    )
    return _assess_output(components, target.report, lock.exports.get(accuracy_entry_name(target.name)), cache, "never validated")
