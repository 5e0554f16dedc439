"""Where a loaded manifest's models write, checked before anything is built: engine outputs disjoint from
each other, from every input and from trtbuild's own files; the files trtbuild derives from model names
distinct between models; trtbuild's state inside the project. Each check appends ``file:line: ...``
problems to ``errors`` (``loader.load_project`` raises them together)."""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trtbuild.files import inside_project
from trtbuild.locate import cache_root
from trtbuild.manifest.devices import DEVICE_DIR, LOCK_DIR
from trtbuild.manifest.target import EXPORT_DIR, REPORT_DIR

if TYPE_CHECKING:
    from trtbuild.manifest.target import ModelTarget


#: trtbuild's own folders in a project: no engine output may lie in them.
OWN_FOLDERS = {
    ".trtbuild": "trtbuild's state folder .trtbuild/",
    EXPORT_DIR: f"trtbuild's exports folder {EXPORT_DIR}/",
    REPORT_DIR: f"trtbuild's reports folder {REPORT_DIR}/",
    LOCK_DIR: f"the device locks folder {LOCK_DIR}/",
    DEVICE_DIR: f"the device manifests folder {DEVICE_DIR}/",
    "recipes": "the project recipes folder recipes/",
}


def _is_or_under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_outputs(models: dict[str, ModelTarget], manifest: Path, root: Path, errors: list[str]) -> None:
    """Engine outputs must be disjoint from each other, from every input (sources, plugins, image globs)
    and from trtbuild's own files (manifest, device overlays, locks, state, exports, reports, recipes, the
    source cache), compared with symlinks resolved."""
    real = os.path.realpath
    files = {
        real(manifest): f"the manifest {manifest.name}",
        real(manifest.with_suffix(".lock")): f"the lock {manifest.with_suffix('.lock').name}",
    }
    folders = {real(root / folder): what for folder, what in OWN_FOLDERS.items()}
    folders[real(cache_root())] = "the source cache"
    for target in models.values():
        files.setdefault(real(target.source), f"the source of model {target.name!r}")
        for plugin in target.plugins:
            files.setdefault(real(plugin), f"a plugin of model {target.name!r}")
    globs = [
        (pattern, noun, name)
        for name, target in models.items()
        for sample in (target.spec.calibration, target.spec.validation)
        for pattern, noun in _project_globs(sample)
    ]
    seen: dict[str, str] = {}
    for target in models.values():
        engine = real(target.engine)
        output = target.spec.output or target.engine.relative_to(root).as_posix()
        what = files.get(engine) or next(
            (what for folder, what in folders.items() if _is_or_under(engine, folder)), None
        )
        if what is None and inside_project(root, engine):
            relative = Path(engine).relative_to(real(root)).as_posix()
            what = next(
                (
                    f"{noun} of model {name!r} ({pattern})"
                    for pattern, noun, name in globs
                    if fnmatch.fnmatch(relative, pattern)
                ),
                None,
            )
        other = seen.setdefault(engine, target.name)
        if other != target.name:
            errors.append(
                f"{target.where('output')}: engine path {target.engine.name} is also the output of model {other!r}"
            )
        elif what:
            errors.append(
                f"{target.where('output')}: {output!r} is {what}; "
                "an engine must not overwrite an input or trtbuild's own files"
            )


def _project_globs(sample: Any) -> list[tuple[str, str]]:
    """(glob, "an image" / "an array") of a calibration or validation sample's files that lie in the
    project (images not inside a package, arrays); none for ``random``."""
    if sample is None or sample.random is not None or (sample.images and sample.images.package):
        return []
    found, noun = (sample.images, "an image") if sample.images else (sample.npy, "an array")
    return [(pattern, noun) for pattern in ([found.glob] if isinstance(found.glob, str) else found.glob)]


def _derived_paths(target: ModelTarget, root: Path) -> dict[str, str]:
    """Every file ``target``'s steps may write besides its engine (export, conversions, report, logs),
    as normalised path -> what it is."""
    spec, logs = target.spec, root / ".trtbuild" / "logs"
    paths = {
        logs / f"{target.name}.log": "engine log",
        logs / f"{target.name}.audit.log": "audit log",
        logs / f"{target.name}.inspect.log": "inspect log",
    }
    if target.recipe is not None and target.export_owner == target.name:
        paths |= {target.onnx: "export", logs / f"{target.name}.export.log": "export log"}
    if spec.precision in ("fp16", "int8"):
        step = spec.precision
        paths |= {
            target.fp16_onnx if step == "fp16" else target.int8_onnx: f"{step} ONNX",
            logs / f"{target.name}.{step}.log": f"{step} log",
            target.report: "accuracy report",
            logs / f"{target.name}.accuracy.log": "accuracy log",
        }
    return {os.path.normpath(path): what for path, what in paths.items()}


def check_derived_paths(models: dict[str, ModelTarget], root: Path, errors: list[str]) -> None:
    """The files trtbuild derives from model names must differ between models (``a.fp16``'s export is
    ``exports/a.fp16.onnx``, model ``a``'s FP16 conversion too): one model would be built from another's."""
    owners: dict[str, tuple[str, str]] = {}
    for target in models.values():
        for path, what in _derived_paths(target, root).items():
            other, other_what = owners.setdefault(path, (target.name, what))
            if other != target.name:
                relative = Path(path).relative_to(root).as_posix()
                errors.append(
                    f"{target.where()}: its {what} {relative} is also the {other_what} of model {other!r}; "
                    "rename one of the models"
                )


def check_state_folders(manifest: Path, root: Path, device: str | None, errors: list[str]) -> None:
    """trtbuild's state (``.trtbuild/``: run lock, stat cache, stamps, logs) and the lock's folder must
    resolve inside the project: they are written before any step runs."""
    lock_folder = root / LOCK_DIR if device else root
    for folder in (root / ".trtbuild", lock_folder):
        if not inside_project(root, folder):
            errors.append(
                f"{manifest.name}: {folder.relative_to(root).as_posix() or '.'}/ "
                f"resolves to {os.path.realpath(folder)}, "
                f"outside the project folder {root}; trtbuild writes only inside it"
            )
