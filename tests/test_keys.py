"""A key holds every input the step really read: project code a recipe imports (discovered dependencies),
external data behind the no-op fast path, a copied project's own files, bytes an audit must hash, and
the installed environment rather than a cached description of it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import onnx
from conftest import ProjectDir, entries
from onnx_models import conv_net

TINYNET = """
import torch
from torch import nn

from tinyblocks import activation


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, image):
        return activation(self.conv(image))
"""


def _racy_window_passes() -> None:
    """Files written less than 2 s before a stamp are not trusted by it (git's racily-clean rule)."""
    time.sleep(2.1)


def _torch_project(project: ProjectDir) -> Path:
    import torch

    (project.root / "recipes").mkdir()
    (project.root / "recipes/tinynet.py").write_text(TINYNET)
    (project.root / "recipes/tinyblocks.py").write_text(
        "import torch\n\ndef activation(x):\n    return torch.relu(x)\n"
    )
    torch.manual_seed(3)
    sys.path.insert(0, str(project.root / "recipes"))
    try:
        from tinynet import Net  # noqa: PLC0415

        torch.save(Net().state_dict(), project.root / "net.pth")
    finally:
        sys.path.remove(str(project.root / "recipes"))
        sys.modules.pop("tinynet", None)
        sys.modules.pop("tinyblocks", None)
    digest = hashlib.sha256((project.root / "net.pth").read_bytes()).hexdigest()
    return project.write_manifest(f"""
        models:
          tiny:
            source: {{path: net.pth, sha256: {digest}}}
            recipe: {{name: torch, module: "tinynet:Net", inputs: {{image: [1, 3, 32, 32]}}, output_names: [out]}}
            inputs: {{image: [1, 3, 32, 32]}}
            precision: fp32
            workspace: 64MiB
    """)


def test_editing_a_module_the_project_recipe_imports_makes_the_export_stale(project: ProjectDir) -> None:
    _torch_project(project)
    first = project.trtbuild("all", "--json")
    assert first.code == 0, first.stdout + first.stderr
    discovered = entries(project.lock(), "export")["tiny"]["components"]["discovered"]
    assert set(discovered) == {"recipes/tinynet.py", "recipes/tinyblocks.py"}, discovered
    assert project.trtbuild("plan", "--check").code == 0
    blocks = project.root / "recipes/tinyblocks.py"  # imported by tinynet.py, named nowhere in the manifest
    blocks.write_text(blocks.read_text().replace("torch.relu(x)", "torch.sigmoid(x) * 2"))
    plan = project.trtbuild("plan", "--check", "--json")
    assert plan.code == 1
    assert "export: recipes/tinyblocks.py changed" in plan.json()["models"]["tiny"]["reasons"]
    again = project.trtbuild("all", "--json")
    assert again.statuses() == {"tiny": "built"}
    assert "Sigmoid" in {node.op_type for node in onnx.load(str(project.root / "exports/tiny.onnx")).graph.node}
    net = project.root / "recipes/tinynet.py"
    net.write_text(net.read_text().replace("padding=1)", "padding=1)  # same network, new bytes"))
    assert (
        "export: recipes/tinynet.py changed" in project.trtbuild("plan", "--json").json()["models"]["tiny"]["reasons"]
    )


def _external_data_net(folder: Path) -> Path:
    conv_net(folder / "inline.onnx", batch=1, channels=8, seed=2, size=32)
    model = onnx.load(str(folder / "inline.onnx"))
    onnx.save_model(
        model,
        str(folder / "m.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="m.bin",
        size_threshold=0,
    )
    (folder / "inline.onnx").unlink()
    return folder / "m.bin"


def test_external_data_changed_after_no_ops_is_seen_by_the_fast_path(project: ProjectDir) -> None:
    data = _external_data_net(project.root)
    project.write_manifest(
        "models:\n  net: {source: m.onnx, inputs: {input: [1, 3, 32, 32]}, precision: fp32, workspace: 64MiB}\n"
    )
    assert project.trtbuild("all").code == 0
    _racy_window_passes()
    assert project.trtbuild("all", "--json").statuses() == {"net": "fresh"}  # writes the stamp
    _racy_window_passes()
    assert project.trtbuild("all", "--json").statuses() == {"net": "fresh"}  # answered by the stamp
    stamp = json.loads(next((project.root / ".trtbuild").glob("fresh.*.json")).read_text())
    assert "m.bin" in stamp["files"], sorted(stamp["files"])[:20]
    raw = bytearray(data.read_bytes())
    raw[100] ^= 0xFF  # same size, other weights
    data.write_bytes(bytes(raw))
    run = project.trtbuild("all", "--json")
    assert run.statuses() == {"net": "built"}, run.stdout
    assert "onnx changed" in run.json()["models"]["net"]["reasons"]


def test_a_copied_project_checks_its_own_files(project: ProjectDir, tmp_path_factory) -> None:
    conv_net(project.root / "net.onnx", batch=1, seed=1, size=32)
    project.write_manifest(
        "models:\n  net: {source: net.onnx, inputs: {input: [1, 3, 32, 32]}, precision: fp32, workspace: 64MiB}\n"
    )
    assert project.trtbuild("all").code == 0
    _racy_window_passes()
    assert project.trtbuild("all").code == 0  # stamp written
    stamp = json.loads(next((project.root / ".trtbuild").glob("fresh.*.json")).read_text())
    assert "builds.yaml" in stamp["files"] and not any(name.startswith(str(project.root)) for name in stamp["files"])
    copy = ProjectDir(tmp_path_factory.mktemp("copy") / "q")
    subprocess.run(["cp", "-a", str(project.root), str(copy.root)], check=True)
    manifest = copy.root / "builds.yaml"
    manifest.write_text(manifest.read_text().replace("precision: fp32", "precision: fp16"))
    run = copy.trtbuild("all", "--json")
    assert run.statuses() == {"net": "built"}, run.stdout
    assert project.trtbuild("all", "--json").statuses() == {"net": "fresh"}  # the original is untouched


def test_audit_hashes_the_engine_even_when_its_stat_is_unchanged(project: ProjectDir) -> None:
    conv_net(project.root / "net.onnx", batch=1, seed=1, size=32)
    project.write_manifest(
        "models:\n  net: {source: net.onnx, inputs: {input: [1, 3, 32, 32]}, precision: fp32, workspace: 64MiB}\n"
    )
    assert project.trtbuild("all").code == 0
    _racy_window_passes()
    assert project.trtbuild("audit").code == 0  # the stat cache now holds the engine's hash
    engine = project.root / "engines/net.engine"
    before = os.stat(engine)
    with open(engine, "r+b") as handle:  # in place: same inode, same size
        handle.seek(before.st_size // 2)
        byte = handle.read(1)
        handle.seek(before.st_size // 2)
        handle.write(bytes([byte[0] ^ 0xFF]))
    os.utime(engine, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(engine)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    audit = project.trtbuild("audit")
    assert audit.code == 1, audit.stdout
    assert "engine sha256" in audit.stdout and "differs from the lock's" in audit.stdout


def test_a_hand_edited_environment_file_is_never_believed(project: ProjectDir) -> None:
    from trtbuild.env.fingerprint import probe

    conv_net(project.root / "net.onnx", batch=1, seed=1, size=32)
    project.write_manifest(
        "models:\n  net: {source: net.onnx, inputs: {input: [1, 3, 32, 32]}, precision: fp32, workspace: 64MiB}\n"
    )
    assert project.trtbuild("all").code == 0
    cache = project.root / ".trtbuild/env.json"  # where trtbuild once cached the probe; edit it if it is there
    cached = json.loads(cache.read_text()) if cache.exists() else {"fingerprint": probe()}
    cached["fingerprint"]["builder_version"] = "9.9.9"
    cache.write_text(json.dumps(cached))
    assert project.trtbuild("clean").code == 0
    assert project.trtbuild("build", "net").code == 0
    recorded = entries(project.lock())["net"]["components"]["env"]["builder_version"]
    assert recorded == probe()["builder_version"] != "9.9.9"
    env = project.trtbuild("env", "--json")
    assert json.loads(env.stdout)["builder_version"] == recorded


def _precision_imports(name: str) -> set[str]:
    """The ``trtbuild.precision`` modules ``trtbuild/precision/<name>.py`` imports (any import, any depth
    in the file), by their last name."""
    import ast

    tree = ast.parse((Path(__file__).parents[1] / "trtbuild" / "precision" / f"{name}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "trtbuild.precision":
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("trtbuild.precision."):
            found.add(node.module.rsplit(".", 1)[-1])
    return found


#: Each precision step's function in ``trtbuild/precision/child.py``.
CHILD_FUNCTIONS = {"fp16": "_fp16", "fp16-autocast": "_fp16", "int8": "_int8", "accuracy": "_accuracy"}


def _child_uses(function: str) -> set[str]:
    """The ``trtbuild.precision`` modules that ``function`` of ``precision/child.py`` uses (``fp16.x``), with
    the child's own functions it calls, transitively."""
    import ast

    tree = ast.parse((Path(__file__).parents[1] / "trtbuild" / "precision" / "child.py").read_text())
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    modules = _precision_imports("child")
    used, seen, todo = set(), set(), [function]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for node in ast.walk(functions[name]):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
                used.add(node.value.id)
            elif isinstance(node, ast.Name) and node.id in functions:
                todo.append(node.id)
    return used


def test_each_precision_step_keys_every_module_its_work_imports() -> None:
    """An edit to any module a precision step's work runs makes the step stale: the step's code hash
    (``steps.precision.CODE``) lists the whole ``trtbuild.precision`` import closure of its first module and
    of the modules its function in ``child.py`` uses."""
    from trtbuild.steps.precision import CODE

    assert set(CHILD_FUNCTIONS) == set(CODE)
    for work, modules in CODE.items():
        closure, todo = set(), [modules[0], *_child_uses(CHILD_FUNCTIONS[work])]
        while todo:
            name = todo.pop()
            if name not in closure:
                closure.add(name)
                todo += _precision_imports(name)
        assert closure <= set(modules), (work, sorted(closure - set(modules)))
        assert "child" in modules, work  # the child module runs every step's work
