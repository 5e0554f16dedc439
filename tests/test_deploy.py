"""The application API: ``trtbuild.engine`` against real builds, a simulated Jetson reflash, docs/deploy.md.

Engines are built once per module by the real CLI (TensorRT-RTX builds real plans on the CPU) on a
simulated JetPack 6.0 Orin Nano (``TRTBUILD_SYSROOT``); every test works on its own copy. The
application side always runs in a fresh interpreter, as an application would.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, ProjectDir, user_env
from onnx_models import conv_net
from test_build import sysroot
from test_env import RELEASES

JETPACK_6_0, JETPACK_6_2 = RELEASES["6.0"][0] + "\n", RELEASES["6.2"][0] + "\n"
MANIFEST = """
defaults: {workspace: 256MiB}
models:
  net:
    source: net.onnx
    inputs: {input: {min: [1, 3, 32, 32], opt: [2, 3, 32, 32], max: [4, 3, 32, 32]}}
  yolo-face: {source: net.onnx, inputs: {input: [1, 3, 32, 32]}}
"""
HEAVY = ("tensorrt", "tensorrt_rtx", "polygraphy", "onnx", "pydantic", "networkx", "click", "yaml", "numpy")

#: Runs in the application's interpreter: one call, its outcome as JSON on stdout.
APP = """
import json, sys, trtbuild
name, kwargs = sys.argv[1], json.loads(sys.argv[2])
try:
    result = {"path": str(trtbuild.engine(name, **kwargs))}
except trtbuild.StaleEngineError as exc:
    result = {
        "stale": exc.reasons,
        "message": str(exc),
        "engine": exc.engine and str(exc.engine),
        "lock": str(exc.lock),
    }
except trtbuild.ManifestError as exc:
    result = {"manifest": str(exc)}
result["heavy"] = sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[3].split(",")))
print(json.dumps(result))
"""


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without trtbuild's steering variables, plus ``extra``."""
    env = user_env(None)
    return {**env, **(extra or {})}


def app(cwd: Path, name: str, env: dict[str, str] | None = None, **kwargs: Any) -> dict[str, Any]:
    """``trtbuild.engine(name, **kwargs)`` in a fresh interpreter in ``cwd``."""
    done = subprocess.run(
        [sys.executable, "-c", APP, name, json.dumps(kwargs), ",".join(HEAVY)],
        cwd=cwd,
        env=environment(env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with models ``net`` and ``yolo-face`` built by ``trtbuild all`` on a JetPack 6.0 Orin Nano."""
    root = tmp_path_factory.mktemp("built")
    conv_net(root / "net.onnx", batch="N", seed=3)
    project = ProjectDir(root)
    project.write_manifest(MANIFEST)
    run = project.trtbuild("all", "--json", env=sysroot(tmp_path_factory.mktemp("jp60"), JETPACK_6_0))
    assert run.code == 0, run.stderr
    assert run.statuses() == {"net": "built", "yolo-face": "built"}
    return root


@pytest.fixture
def deployed(built: Path, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the built project (with an ``app/sub`` folder to run from) and a JetPack 6.0 sysroot of its own."""
    root = tmp_path / "project"
    shutil.copytree(built, root, ignore=shutil.ignore_patterns(".trtbuild"))
    (root / "app/sub").mkdir(parents=True)
    return root, sysroot(tmp_path / "jetson", JETPACK_6_0)


def test_a_fresh_engine_gives_its_path_from_a_subfolder_without_heavy_imports(
    deployed: tuple[Path, dict[str, str]],
) -> None:
    root, jetson = deployed
    result = app(root / "app/sub", "net", jetson)
    assert result == {"path": str(root / "engines/net.engine"), "heavy": []}
    assert Path(result["path"]).is_absolute()
    assert app(root / "app/sub", "net", jetson, manifest=str(root / "builds.yaml"))["path"] == result["path"]
    assert (
        app(Path("/"), "net", jetson, manifest=str(root / "app"))["path"] == result["path"]
    )  # a folder: searched upward


def test_a_reflashed_jetson_gets_the_reasons_trtbuild_plan_gives(deployed: tuple[Path, dict[str, str]]) -> None:
    root, jetson = deployed
    (Path(jetson["TRTBUILD_SYSROOT"]) / "etc/nv_tegra_release").write_text(
        JETPACK_6_2
    )  # reflashed: L4T 36.3.0 -> 36.4.3
    result = app(root / "app/sub", "net", jetson)
    assert result["stale"] == ["jetpack 6.0 -> 6.2", "l4t 36.3.0 -> 36.4.3"]
    assert result["engine"] == str(root / "engines/net.engine") and result["lock"] == str(root / "builds.lock")
    assert result["message"] == (
        f"net: engine not fresh for this machine: jetpack 6.0 -> 6.2; l4t 36.3.0 -> 36.4.3 "
        f"({root / 'engines/net.engine'}); rebuild it here with `trtbuild build net`"
    )
    plan = ProjectDir(root).trtbuild("plan", "--json", env=jetson)
    assert plan.json()["models"]["net"]["reasons"] == result["stale"]  # one rendering: state.keys.diff_reasons


def test_a_modified_or_missing_engine_is_stale(deployed: tuple[Path, dict[str, str]]) -> None:
    root, jetson = deployed
    engine = root / "engines/net.engine"
    data = bytearray(engine.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes: only the hash tells
    engine.write_bytes(bytes(data))
    assert app(root, "net", jetson)["stale"] == ["engine modified"]
    engine.write_bytes(bytes(data) + b"\0")
    assert app(root, "net", jetson)["stale"] == ["engine modified"]
    engine.unlink()
    assert app(root, "net", jetson)["stale"] == ["engine missing"]
    (Path(jetson["TRTBUILD_SYSROOT"]) / "etc/nv_tegra_release").write_text(JETPACK_6_2)
    assert app(root, "net", jetson)["stale"] == ["engine missing", "jetpack 6.0 -> 6.2", "l4t 36.3.0 -> 36.4.3"]
    assert app(root, "yolo-face", jetson)["stale"] == ["jetpack 6.0 -> 6.2", "l4t 36.3.0 -> 36.4.3"]


def test_never_built_unknown_model_and_no_manifest_are_clear_errors(
    deployed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, jetson = deployed
    with (root / "builds.yaml").open("a") as manifest:
        manifest.write("  later: {source: net.onnx, inputs: {input: [2, 3, 32, 32]}}\n")
    never = app(root / "app", "later", jetson)
    assert never["stale"] == ["never built"] and never["engine"] is None
    assert (
        f"later: engine not fresh for this machine: never built (no entry in {root / 'builds.lock'})"
        in never["message"]
    )
    unknown = app(root / "app", "nope", jetson)
    assert unknown["manifest"] == f"{root / 'builds.yaml'}: no model named 'nope' (models: net, yolo-face, later)"
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    assert app(empty, "net", jetson)["manifest"] == f"no builds.yaml in {empty} or any parent folder"
    assert app(empty, "net", jetson, manifest="missing.yaml")["manifest"] == "missing.yaml: no such manifest"


def test_a_lock_of_another_shape_is_a_state_error_for_the_application(tmp_path: Path) -> None:
    from trtbuild.deploy import _entry
    from trtbuild.errors import StateError

    lock = tmp_path / "builds.lock"
    for document in ({"schema": [1], "models": {}}, {"schema": {"v": 2}, "steps": {}}, {"": {}}, []):
        lock.write_text(json.dumps(document))
        with pytest.raises(StateError, match="not a trtbuild lock"):
            _entry(lock, "net")


def test_the_shell_form_prints_the_path_or_the_reason_with_the_cli_exit_codes(
    deployed: tuple[Path, dict[str, str]],
) -> None:
    root, jetson = deployed

    def shell(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "trtbuild.deploy", *args],
            cwd=root / "app/sub",
            env=environment(jetson),
            capture_output=True,
            text=True,
            timeout=120,
        )

    ok = shell("net")
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, f"{root / 'engines/net.engine'}\n", "")
    (root / "engines/net.engine").write_bytes(b"not a plan")
    stale = shell("net")
    assert stale.returncode == 1 and stale.stdout == ""
    assert stale.stderr.startswith("trtbuild: net: engine not fresh for this machine: engine modified")
    unknown = shell("nope", "-f", str(root / "builds.yaml"))
    assert unknown.returncode == 2 and "no model named 'nope'" in unknown.stderr


def test_a_devices_project_reads_the_detected_devices_lock(tmp_path: Path) -> None:
    project = ProjectDir(tmp_path / "fleet")
    project.root.mkdir()
    conv_net(project.root / "net.onnx", seed=4)
    project.write_manifest("defaults: {workspace: 256MiB}\nmodels:\n  net: {source: net.onnx}\n")
    (project.root / "devices").mkdir()
    (project.root / "devices/orin-nano-8gb.yaml").write_text("defaults: {workspace: 512MiB}\n")
    (project.root / "devices/x86-rtx.yaml").write_text("defaults:\n  compute_capabilities: ['8.6']\n")
    orin = sysroot(tmp_path / "orin", JETPACK_6_0)  # "NVIDIA Jetson Orin Nano Developer Kit": orin-nano-8gb
    assert project.trtbuild("all", env=orin).code == 0
    assert app(project.root, "net", orin) == {
        "path": str(project.root / "engines/orin-nano-8gb/net.engine"),
        "heavy": [],
    }
    here = app(project.root, "net")  # this x86 machine: x86-rtx, whose lock does not exist yet
    assert here["stale"] == ["never built"] and here["lock"] == str(project.root / "locks/x86-rtx.lock")
    forced = app(project.root, "net", device="orin-nano-8gb")  # the Orin's engine, checked on this machine
    assert (
        "l4t 36.3.0 -> none" in forced["stale"]
        and "device model NVIDIA Jetson Orin Nano Developer Kit -> none" in forced["stale"]
    )
    assert (
        app(project.root, "net", device="tx2")["manifest"]
        == "unknown device 'tx2' (known devices: orin-nano-8gb, x86-rtx)"
    )
    xavier = sysroot(tmp_path / "xavier", JETPACK_6_0, model="NVIDIA Jetson Xavier NX Developer Kit")
    assert app(project.root, "net", xavier)["manifest"].startswith(
        "cannot match this machine (NVIDIA Jetson Xavier NX Developer Kit) to a device"
    )


def test_import_trtbuild_stays_cheap_and_the_api_imports_nothing_heavy() -> None:
    code = (
        "import sys, trtbuild; before = set(sys.modules); "
        "trtbuild.engine, trtbuild.StaleEngineError, trtbuild.ManifestError; "
        "print(sorted(m for m in before if m.startswith('trtbuild'))); "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=environment(), capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines() == ["['trtbuild']", "[]"]  # `import trtbuild` alone loads no submodule
    import trtbuild
    from trtbuild.errors import ManifestError, TrtbuildError

    assert issubclass(trtbuild.StaleEngineError, TrtbuildError) and trtbuild.ManifestError is ManifestError


def _snippets() -> list[str]:
    """The ```python blocks of docs/deploy.md that call trtbuild.engine, in order."""
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "docs/deploy.md").read_text(), re.DOTALL)
    return [block for block in blocks if "trtbuild.engine(" in block]


def test_the_docs_snippets_run_up_to_tensorrt(deployed: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    """Every snippet runs against a built project; the TensorRT runtime one (the first that defines
    functions) stops where TensorRT would deserialize, and fails with the reason after a reflash."""
    root, jetson = deployed
    snippets = _snippets()
    assert len(snippets) >= 4  # the API, the TensorRT runtime, DeepStream, Triton
    runtime = next(block for block in snippets if "def load" in block)
    runner = (
        "import runpy, sys; namespace = runpy.run_path(sys.argv[1], run_name='deploy_snippet'); "
        "print(namespace.get('ENGINE', namespace.get('path'))); "
        "print([name for name in ('load', 'describe', 'infer') if callable(namespace.get(name))]); "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )

    def run(snippet: str) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "snippet.py"
        path.write_text(snippet)
        return subprocess.run(
            [sys.executable, "-c", runner, str(path)],
            cwd=root / "app/sub",
            env=environment(jetson),
            capture_output=True,
            text=True,
            timeout=120,
        )

    engine = root / "engines/yolo-face.engine"
    for snippet in snippets:
        done = run(snippet)
        assert done.returncode == 0, (snippet, done.stderr)
        functions = "['load', 'describe', 'infer']" if snippet is runtime else "[]"
        assert done.stdout.splitlines() == [str(engine), functions, "[]"], snippet
    assert (
        root / "app/sub/model_repository/yolo-face/1/model.plan"
    ).read_bytes() == engine.read_bytes()  # the Triton step

    (Path(jetson["TRTBUILD_SYSROOT"]) / "etc/nv_tegra_release").write_text(JETPACK_6_2)
    stale = run(runtime)
    assert stale.returncode != 0
    assert (
        "trtbuild.deploy.StaleEngineError: yolo-face: engine not fresh for this machine: "
        "jetpack 6.0 -> 6.2; l4t 36.3.0 -> 36.4.3"
    ) in stale.stderr
