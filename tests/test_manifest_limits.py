"""What the manifest refuses before anything runs: names too long for a derived file, absurd workspaces,
deep or exploding YAML (fast and small), and a refusal writes nothing: not even ``.trtbuild/``."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from conftest import ProjectDir, one_model, tree, user_env
from onnx_models import conv_net

# --- names, sizes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ['"m\\n"', "a" * 129, "a" * 250, "a" * 300])
def test_model_names_are_whole_matches_and_short_enough_for_every_derived_file(project: ProjectDir, name: str) -> None:
    conv_net(project.root / "m.onnx")
    project.refuses(f"models:\n  {name}: {{source: m.onnx}}\n", "builds.yaml:2: models.", "invalid name")


def test_the_longest_name_allowed_builds_every_derived_file(project: ProjectDir) -> None:
    from trtbuild.manifest.schema import MAX_NAME_LENGTH

    name = "n" * MAX_NAME_LENGTH
    conv_net(project.root / "m.onnx")
    project.write_manifest(f"models:\n  {name}: {{source: m.onnx}}\n")
    run = project.trtbuild("all", "--json")
    assert run.code == 0 and run.statuses() == {name: "built"}, run.stderr
    assert project.trtbuild("audit").code == 0


@pytest.mark.parametrize("workspace", ["1000000000000000000000000000000", "2TiB", "1e30", "1.0e+30"])
def test_an_absurd_workspace_is_refused_in_the_manifest(project: ProjectDir, workspace: str) -> None:
    conv_net(project.root / "m.onnx")
    stderr = project.refuses(
        f"models:\n  m: {{source: m.onnx, workspace: {workspace}}}\n", "builds.yaml:2: models.m.workspace:"
    ).stderr
    assert "Invoked with" not in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_a_workspace_limit_is_named(project: ProjectDir) -> None:
    conv_net(project.root / "m.onnx")
    project.refuses(
        "defaults: {workspace: 2TiB}\nmodels:\n  m: {source: m.onnx}\n",
        "builds.yaml:1: defaults.workspace: 2199023255552 bytes (2.0 TiB) is more than the 1 TiB limit",
    )


# --- nesting --------------------------------------------------------------------------------------


def _measured(project: ProjectDir) -> tuple[subprocess.CompletedProcess[str], float, int]:
    """Run ``trtbuild all`` in a fresh interpreter that reports the child's wall time and peak memory."""
    probe = (
        "import json, resource, subprocess, sys, time; started = time.monotonic(); "
        "done = subprocess.run([sys.executable, '-m', 'trtbuild', 'all'], capture_output=True, text=True); "
        "print(json.dumps({'code': done.returncode, 'stderr': done.stderr, 'seconds': time.monotonic() - started, "
        "'kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))"
    )
    env = user_env(None)
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=project.root, env=env, capture_output=True, text=True, timeout=120
    )
    result = json.loads(done.stdout)
    return subprocess.CompletedProcess([], result["code"], "", result["stderr"]), result["seconds"], result["kib"]


def test_deep_nesting_is_refused_in_one_line(project: ProjectDir) -> None:
    project.write_manifest("a: " + "[" * 900 + "]" * 900 + "\nmodels: {}\n")
    run, seconds, _ = _measured(project)
    assert run.returncode == 2 and "Traceback" not in run.stderr and "RecursionError" not in run.stderr, run.stderr
    assert run.stderr.strip() == "trtbuild: builds.yaml:1: nested more than 64 levels deep; refusing to load"
    assert not (project.root / ".trtbuild").exists()


def test_nesting_through_chained_aliases_is_refused(project: ProjectDir) -> None:
    lines = ["a0: &a0 [x]"] + [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, 200)]
    stderr = project.refuses("\n".join(lines) + "\n", "nested more than 64 levels deep (aliases expanded)").stderr
    assert stderr.startswith("trtbuild: builds.yaml:63:")  # a63 would be the 65th level
    project.refuses("a: &a [1, *a]\nmodels: {}\n", "builds.yaml:1: alias *a is used inside the node it names")


def test_billion_laughs_is_refused_fast_and_small(project: ProjectDir) -> None:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    project.write_manifest("\n".join(lines) + "\nmodels: {}\n")
    run, seconds, kib = _measured(project)
    assert run.returncode == 2, run.stderr
    assert (
        run.stderr.strip()
        == "trtbuild: builds.yaml:7: more than 2000000 YAML nodes after alias expansion; refusing to load"
    )
    assert seconds < 3, seconds  # was 5.6 s
    assert kib < 200 * 1024, kib  # was 505 MB


def test_a_large_honest_manifest_still_loads_quickly(project: ProjectDir) -> None:
    """The bounded composer costs little: 2,000 models sharing an anchor (about 40,000 expanded nodes)."""
    conv_net(project.root / "m.onnx")
    models = "\n".join(f"  m{i}: {{<<: *common, output: engines/m{i}.engine}}" for i in range(2000))
    project.write_manifest(
        "x-common: &common {source: m.onnx, inputs: {input: [1, 3, 32, 32]}, workspace: 64MiB}\n"
        f"models:\n{models}\n"
    )
    started = time.monotonic()
    run = project.trtbuild("config", "--json")
    assert run.code == 0 and len(json.loads(run.stdout)["models"]) == 2000, run.stderr
    assert time.monotonic() - started < 15


# --- bad input writes nothing ---------------------------------------------------------------------


PIN = "0" * 64


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        ("models:\n  m: {source: missing.onnx}\n", "builds.yaml:2: models.m.source: missing.onnx does not exist"),
        ("models:\n  m: {source: m.onnx, inputs: {input: [2, 3, 32, 32]}}\n", "dimension 0 is fixed at 1 in m.onnx"),
        (f"models:\n  m: {{source: {{path: m.onnx, sha256: '{PIN}'}}}}\n", f"not the pinned {PIN}"),
        ("models:\n  m: {source: m.onnx, precision: fp9}\n", "models.m.precision"),
    ],
)
def test_a_manifest_error_leaves_no_new_file_or_folder(project: ProjectDir, manifest: str, expected: str) -> None:
    conv_net(project.root / "m.onnx")
    project.refuses(manifest, expected)  # a first run: not even .trtbuild/
    assert not (project.root / ".trtbuild").exists()
    # after a good run, with .trtbuild/ and the lock in place: still nothing new
    one_model(project)
    assert project.trtbuild("all").code == 0
    for leftover in (project.root / ".trtbuild").glob("fresh.*"):
        leftover.unlink()  # removed by any full run: not a difference to look for
    (project.root / ".trtbuild/run.lock").unlink()
    project.write_manifest(manifest)
    before = set(tree(project.root))
    run = project.trtbuild("all")
    assert run.code == 2 and expected in run.stderr, run.stderr
    assert set(tree(project.root)) <= before  # leftovers of the last run (.trtbuild/tmp) may go


def test_a_refused_lock_leaves_no_new_file_or_folder(project: ProjectDir) -> None:
    one_model(project)
    (project.root / "builds.lock").write_text(json.dumps({"schema": 1, "models": {"m": {"key": 5}}}))
    before = tree(project.root)
    for command in ("all", "clean"):
        run = project.trtbuild(command)
        assert run.code == 2 and "builds.lock: models.m" in run.stderr, run.stderr
        assert tree(project.root) == before
