"""A pinned source is checked on its bytes where the bytes are used: rewritten in place behind the stat
cache, or swapped between the parent's check and the child's load, a hostile pickle is never loaded."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import pytest
from conftest import ProjectDir, child_of

TESTS = Path(__file__).parent


PICKLE_RECIPE = '''
"""A recipe that loads a pickle, as torch.load does: it needs a pinned source."""
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

VERSION = 1
EXTRA = "none"
REQUIRES = ("onnx",)
EXPORTERS = ("onnx",)
NEEDS_PIN = True


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seed: int = 0


def export(source: Path, output: Path, params: Params, context: Any) -> None:
    import pickle
    import sys
    sys.path.insert(0, {tests!r})
    from onnx_models import conv_net
    weights = pickle.loads(source.read_bytes())
    conv_net(output, batch=1, channels=int(weights["width"]), seed=params.seed)
'''


class Payload:
    """Unpickling this runs a shell command: what a hostile checkpoint does."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (self.command,)


def checkpoints(marker: Path) -> tuple[bytes, bytes]:
    """A good pickle and a hostile one of exactly the same size."""
    good = pickle.dumps({"width": 12, "pad": ""}, protocol=4)
    command = f"touch {marker}"
    evil = pickle.dumps(Payload(command), protocol=4)
    pad = 0
    while len(good) != len(evil):
        if len(good) < len(evil):
            pad += 1
            good = pickle.dumps({"width": 12, "pad": "x" * pad}, protocol=4)
        else:
            command += " "
            evil = pickle.dumps(Payload(command), protocol=4)
    return good, evil


def pickle_project(project: ProjectDir, good: bytes, seed: int = 0) -> str:
    (project.root / "recipes").mkdir(exist_ok=True)
    (project.root / "recipes/pickled.py").write_text(PICKLE_RECIPE.format(tests=str(TESTS)))
    (project.root / "model.pt").write_bytes(good)
    pin = hashlib.sha256(good).hexdigest()
    write_pickle_manifest(project, pin, seed)
    return pin


def write_pickle_manifest(project: ProjectDir, pin: str, seed: int) -> None:
    project.write_manifest(f"""
        defaults: {{workspace: 128MiB}}
        models:
          net:
            source: {{path: model.pt, sha256: {pin}}}
            recipe: {{name: pickled, seed: {seed}}}
    """)


def test_a_pinned_file_rewritten_behind_the_stat_cache_is_not_loaded(
    project: ProjectDir, tmp_path_factory: pytest.TempPathFactory
) -> None:
    marker = tmp_path_factory.mktemp("outside") / "pickle-ran"
    good, evil = checkpoints(marker)
    pin = pickle_project(project, good)
    assert project.trtbuild("all").code == 0
    source = project.root / "model.pt"
    before = source.stat()
    with open(source, "r+b") as handle:  # in place: same inode, same size
        handle.write(evil)
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (source.stat().st_ino, source.stat().st_size, source.stat().st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    write_pickle_manifest(project, pin, seed=1)  # the export is stale: the recipe would load the source
    run = project.trtbuild("all")
    assert not marker.exists(), "the pickle ran"
    assert run.code == 2, run.stderr
    assert (
        f"builds.yaml:4: models.net.source: model.pt has sha256 {hashlib.sha256(evil).hexdigest()}, "
        f"not the pinned {pin}" in run.stderr
    )


def test_a_pinned_file_swapped_between_the_check_and_the_load_is_not_loaded(
    project: ProjectDir, tmp_path_factory: pytest.TempPathFactory
) -> None:
    marker = tmp_path_factory.mktemp("outside") / "pickle-ran"
    good, evil = checkpoints(marker)
    pin = pickle_project(project, good)
    process = project.start("all", "--json")
    child_of(project, "trtbuild.export.child")  # every check of the parent passed: swap now
    replacement = project.root / "model.pt.new"
    replacement.write_bytes(evil)
    os.replace(replacement, project.root / "model.pt")
    stdout, stderr = process.communicate(timeout=300)
    assert not marker.exists(), "the pickle ran"
    assert process.returncode == 1, stderr
    reason = json.loads(stdout)["models"]["net"]["reasons"][0]
    assert (
        reason == f"source {project.root}/model.pt: sha256 {hashlib.sha256(evil).hexdigest()} "
        f"is not the pinned {pin}; not loaded"
    )
    assert not (project.root / "exports/net.onnx").exists()
