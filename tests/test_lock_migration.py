"""A schema-1 lock, written by trtbuild as it was before lock schema 2, migrates with nothing rebuilt.

The old trtbuild is the real one: the commit before schema 2, taken from this repository's history with
``git archive`` and run as ``python -m trtbuild`` with that tree first on ``PYTHONPATH`` (its children
inherit it); only the precision modules whose bytes are keyed are today's (``KEYED_CODE``). It builds
every step kind (export through a project recipe, FP16 conversion, INT8 Q/DQ, both accuracy gates,
engines); today's trtbuild must then find everything fresh, keep every key, and write the lock as
schema 2.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import REPO, ProjectDir, entries, user_env, write_widthfile_recipe
from onnx_models import conv_net

from trtbuild.state.keys import key_of

#: main before lock schema 2 ("Discovered files are checked with the one containment rule"): writes schema 1
SCHEMA1_COMMIT = "3637049"
PHOTOS = "{package: skimage, glob: [data/astronaut.png, data/camera.png, data/chelsea.png, data/coffee.png]}"
STREET = "{package: ultralytics, glob: 'assets/*.jpg'}"


#: The modules whose sha256 is a precision step's ``code`` component (``steps.precision``). They changed
#: since ``SCHEMA1_COMMIT`` (``ruff format``), which by design makes conversions stale: code is an input.
#: The old tree gets today's copies, so this test isolates what it is about, the lock's format.
KEYED_CODE = ("fp16", "fp16_values", "int8", "images", "accuracy", "emulate", "validate")
#: Today's precision child too: it is the one caller of the keyed modules' API, which changed with them.
CALLERS = ("child",)


def schema1_trtbuild(folder: Path) -> Path:
    """trtbuild at ``SCHEMA1_COMMIT``, unpacked into ``folder`` as an importable tree (recipes where the
    installed package has them, ``trtbuild/recipes``), with today's ``KEYED_CODE``."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", SCHEMA1_COMMIT, "trtbuild", "recipes"], capture_output=True
    )
    assert archive.returncode == 0, (
        f"this test needs the repository's history ({SCHEMA1_COMMIT}): {archive.stderr.decode()}"
    )
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")
    (folder / "recipes").rename(folder / "trtbuild" / "recipes")
    for name in KEYED_CODE + CALLERS:  # they import only trtbuild.errors, the schema and each other
        shutil.copyfile(REPO / "trtbuild/precision" / f"{name}.py", folder / "trtbuild/precision" / f"{name}.py")
    return folder


def old_run(project: ProjectDir, tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = user_env(None)
    return subprocess.run(
        [sys.executable, "-m", "trtbuild", *args],
        cwd=project.root,
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(tree)},
        timeout=900,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.xfail(
    reason="issue 20 changed the precision steps' key definitions (the fp16 code covers fp16_values, the int8 "
    "and gate keys hold the declared inputs), which the schema-1 tree's own steps/precision.py cannot write: "
    "its FP16/INT8/gate entries are stale by design; the test needs a migration that re-keys them",
    strict=False,
)
def test_a_schema1_lock_migrates_with_nothing_rebuilt(project: ProjectDir, tmp_path: Path) -> None:
    tree = schema1_trtbuild(tmp_path / "schema1")
    conv_net(project.root / "net.onnx", batch="N", seed=11, channels=16, size=64)
    write_widthfile_recipe(project.root)
    (project.root / "width.txt").write_text("8\n")
    project.write_manifest(f"""
        x-common: &common
          source: net.onnx
          inputs: {{input: {{min: [1, 3, 64, 64], opt: [2, 3, 64, 64], max: [4, 3, 64, 64]}}}}
          validation: {{images: {STREET}, count: 2, crops: 1}}
          workspace: 256MiB
        models:
          net-int8:
            <<: *common
            precision: int8
            calibration: {{images: {PHOTOS}, count: 4, crops: 1, algorithm: minmax}}
          net-fp16: {{<<: *common, precision: fp16, fp16_via: onnx}}
          net-fp32: {{<<: *common, precision: fp32}}
          custom:
            source: width.txt
            recipe: {{name: widthfile, size: 32}}
            precision: fp32
    """)
    old = old_run(project, tree, "all", "--json")
    assert old.returncode == 0, old.stdout + old.stderr
    schema1 = project.lock()
    assert schema1["schema"] == 1 and set(schema1["models"]) == {"net-int8", "net-fp16", "net-fp32", "custom"}
    assert {"custom", "net-int8:int8", "net-int8:accuracy", "net-fp16:fp16", "net-fp16:accuracy"} <= set(
        schema1["exports"]
    )
    engines = {name: (project.root / f"engines/{name}.engine").read_bytes() for name in schema1["models"]}

    plan = project.trtbuild("plan", "--json", "--check")
    assert plan.code == 0, plan.stdout + plan.stderr
    assert plan.statuses() == dict.fromkeys(schema1["models"], "fresh")
    assert project.lock() == schema1  # plan reads the old lock, writes nothing

    run = project.trtbuild("all", "--json")
    assert run.code == 0, run.stdout + run.stderr
    assert run.statuses() == dict.fromkeys(schema1["models"], "fresh") and all(
        model["steps"] == [] for model in run.json()["models"].values()
    )  # no step ran, not even the gates
    migrated = project.lock()
    assert migrated["schema"] == 2 and "models" not in migrated
    for name, entry in schema1["models"].items():  # engines: same key, same file, same facts
        new = entries(migrated)[name]
        assert (new["key"], new["outputs"][0], new["facts"]["builder"]) == (
            entry["key"],
            entry["engine"],
            entry["builder"],
        )
        assert (project.root / entry["engine"]["path"]).read_bytes() == engines[name]
    assert entries(migrated, "export")["custom"]["key"] == schema1["exports"]["custom"]["key"]
    quantized = entries(migrated, "int8")["net-int8"]
    assert quantized["components"]["converter"] == schema1["exports"]["net-int8:int8"]["components"]["recipe"]
    assert set(migrated["steps"]) >= {
        "engine:engines/net-int8.engine",
        "export:exports/custom.onnx",
        "int8:exports/net-int8.int8.onnx",
        "accuracy:reports/net-int8.accuracy.json",
    }

    again = project.trtbuild("all", "--json")
    assert again.code == 0 and project.lock() == migrated  # schema 2 is read as it was written
    audit = project.trtbuild("audit")
    assert audit.code == 0, audit.stdout + audit.stderr


def test_a_damaged_schema1_entry_stays_visibly_damaged(project: ProjectDir, tmp_path: Path) -> None:
    """The migration recomputes a key only when the old one was the hash of its own components: an
    entry edited by hand is not laundered into a valid-looking schema-2 entry."""
    tree = schema1_trtbuild(tmp_path / "schema1")
    conv_net(project.root / "net.onnx", batch=1, seed=3)
    project.write_manifest("""
        models:
          net: {source: net.onnx, precision: fp32, workspace: 256MiB}
    """)
    assert old_run(project, tree, "all").returncode == 0
    lock = project.lock()
    lock["models"]["net"]["components"]["settings"]["workspace"] = 1 << 30  # a claim without its key
    (project.root / "builds.lock").write_text(json.dumps(lock))
    audit = project.trtbuild("audit")
    assert audit.code == 1 and "lock entry edited" in audit.stdout, audit.stdout
    assert project.trtbuild("all").code == 0  # the key still matches the inputs: nothing to build ...
    migrated = entries(project.lock())["net"]
    assert (
        migrated["key"] == lock["models"]["net"]["key"] != key_of(migrated["components"])
    )  # ... and the edit stays visible
    audit = project.trtbuild("audit")
    assert audit.code == 1 and "lock entry edited" in audit.stdout, audit.stdout
