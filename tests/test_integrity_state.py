"""State files are input too, and names, sizes and faults: with real files and real subprocesses.

Everything trtbuild reads back (the lock, the stat cache, the no-op stamp, accuracy reports) is checked
like the manifest: a damaged cache or stamp is rebuilt with one warning line, a damaged lock is refused
with exit 2 naming the file, the entry and the field. Hostile manifests (long names, huge workspaces,
deep or exploding YAML) fail fast in one line. A full disk or a read-only project gives one line naming
the file and the errno, never a traceback. Bad input writes nothing.

Tests run as root here, where permission bits do not stop writes: a read-only project is made with
``chattr +i`` (immutable; ext4 and most local file systems), a full disk with a small tmpfs. Each skips
when the machine cannot do that.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ProjectDir
from onnx_models import conv_net

ONE_MODEL = "defaults: {workspace: 128MiB}\nmodels:\n  m: {source: m.onnx}\n"


def one_model(project: ProjectDir) -> ProjectDir:
    conv_net(project.root / "m.onnx")
    project.write_manifest(ONE_MODEL)
    return project


def built(project: ProjectDir) -> ProjectDir:
    one_model(project)
    run = project.trtbuild("all")
    assert run.code == 0, run.stderr
    return project


def tree(root: Path) -> dict[str, int | None]:
    """Every path under ``root`` -> its size (``None`` for folders)."""
    return {str(path.relative_to(root)): (None if path.is_dir() else path.stat().st_size) for path in root.rglob("*")}


def no_traceback(run: Any) -> None:
    assert "Traceback" not in run.stderr and "Traceback" not in run.stdout, run.stderr


def edit_json(path: Path, change: Any) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# --- the lock --------------------------------------------------------------------------------------

E = "engine:engines/m.engine"  # the engine step's id: its entry in the lock's ``steps``


def _set(*path_and_value: Any) -> Any:
    *path, value = path_and_value

    def change(lock: dict[str, Any]) -> None:
        node = lock
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value

    return change


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (_set("steps", E, "outputs", 0, "x"), f"steps.{E}.outputs.0: Input should be a valid dictionary"),
        (_set("steps", E, "outputs", 0, "size", "12"), f"steps.{E}.outputs.0.size: Input should be a valid integer"),
        (_set("steps", E, "outputs", 0, "sha256", None), f"steps.{E}.outputs.0.sha256: Input should be a valid string"),
        (_set("steps", E, "outputs", []), f"steps.{E}.outputs: List should have at least 1 item"),
        (_set("steps", E, "key", 5), f"steps.{E}.key: Input should be a valid string"),
        (
            _set("steps", E, "kind", "compile"),
            f"steps.{E}.kind: Input should be 'export', 'fp16', 'int8', 'accuracy' or 'engine'",
        ),
        (_set("steps", E, "components", []), f"steps.{E}.components: Input should be a valid dictionary"),
        (
            _set("steps", E, "components", "settings", []),
            f"steps.{E}.components.settings: Input should be a valid dictionary",
        ),
        (_set("steps", E, "components", "env", "x86"), f"steps.{E}.components.env: Input should be a valid dictionary"),
        (_set("steps", E, 7), f"steps.{E}: Input should be a valid dictionary"),
        (
            _set("steps", E, "outputs", 0, "path", "/etc/hostname"),
            f"steps.{E}.outputs.0.path: '/etc/hostname' is outside the project (an absolute path)",
        ),
        (
            _set("steps", E, "outputs", 0, "path", "../outside.engine"),
            f"steps.{E}.outputs.0.path: '../outside.engine' is outside the project",
        ),
        (_set("steps", []), "steps: Input should be a valid dictionary"),
    ],
)
def test_a_lock_entry_of_the_wrong_shape_is_refused_naming_file_entry_and_field(
    project: ProjectDir, change: Any, where: str
) -> None:
    built(project)
    engine_before = (project.root / "engines/m.engine").read_bytes()
    edit_json(project.root / "builds.lock", change)
    for command in (("all",), ("plan",), ("audit",), ("clean",)):
        run = project.trtbuild(*command)
        assert run.code == 2, (command, run.stdout, run.stderr)
        no_traceback(run)
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert f"builds.lock: {where}" in lines[0], lines[0]
        assert "git checkout -- builds.lock" in lines[0] and "delete" in lines[0], lines[0]
    assert (project.root / "engines/m.engine").read_bytes() == engine_before  # nothing rebuilt or removed


def test_an_audit_never_reads_a_file_outside_the_project(
    project: ProjectDir, tmp_path_factory: pytest.TempPathFactory
) -> None:
    built(project)
    outside = tmp_path_factory.mktemp("outside") / "secret.engine"
    outside.write_bytes(b"not yours")
    good = (project.root / "builds.lock").read_text()
    relative = os.path.relpath(outside, project.root)
    for path in (str(outside), relative):
        edit_json(project.root / "builds.lock", _set("steps", E, "outputs", 0, "path", path))
        run = project.trtbuild("audit")
        assert run.code == 2 and "is outside the project" in run.stderr, run.stderr
        no_traceback(run)
        assert str(outside) not in (project.root / ".trtbuild/statcache.json").read_text()
        (project.root / "builds.lock").write_text(good)
    # inside by name, outside through a symlink: a finding, and the target is neither read nor cached
    (project.root / "engines/link.engine").symlink_to(outside)
    edit_json(project.root / "builds.lock", _set("steps", E, "outputs", 0, "path", "engines/link.engine"))
    run = project.trtbuild("audit", "--json")
    assert run.code == 1, run.stderr
    findings = run.json()["m"]["findings"]
    assert findings[0].startswith("engine engines/link.engine resolves outside the project"), findings
    assert str(outside) not in (project.root / ".trtbuild/statcache.json").read_text()


# --- the stat cache --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda cache: cache.update(files=[]), "files: Input should be an object"),
        (
            lambda cache: [entry.update(sig=[1, 2]) for entry in cache["files"].values()],
            ".sig: List should have at least 3 items",
        ),
        (
            lambda cache: [entry.update(sha256=7) for entry in cache["files"].values()],
            ".sha256: Input should be a valid string",
        ),
        (
            lambda cache: [entry.update(hashed_at="now") for entry in cache["files"].values()],
            ".hashed_at: Input should be a valid integer",
        ),
        (
            lambda cache: [entry.update(external=["../../../etc/shadow"]) for entry in cache["files"].values()],
            ".external.0: '../../../etc/shadow' is outside the project",
        ),
    ],
)
def test_a_stat_cache_of_the_wrong_shape_is_rebuilt_with_one_warning(
    project: ProjectDir, change: Any, problem: str
) -> None:
    built(project)
    cache = project.root / ".trtbuild/statcache.json"
    edit_json(cache, change)
    run = project.trtbuild("all", "--json")
    assert run.code == 0 and run.statuses() == {"m": "fresh"}, run.stderr
    no_traceback(run)
    warnings = [line for line in run.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "stat cache unreadable" in warnings[0] and problem in warnings[0], run.stderr
    rewritten = json.loads(cache.read_text())
    assert all(
        len(entry["sig"]) == 3 and "../" not in json.dumps(entry.get("external", []))
        for entry in rewritten["files"].values()
    )
    again = project.trtbuild("all")
    assert again.code == 0 and "warning" not in again.stderr + again.stdout


# --- the no-op stamp -------------------------------------------------------------------------------


def _stamp(project: ProjectDir) -> Path:
    return project.root / ".trtbuild/fresh.builds.yaml.auto.json"


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda stamp: [], "not a JSON object"),
        (lambda stamp: "garbage{", "not JSON"),
        (lambda stamp: {**stamp, "written_at": "x"}, "written_at: not an integer"),
        (lambda stamp: {**stamp, "files": []}, "files: not a mapping"),
        (lambda stamp: {**stamp, "files": {"m.onnx": "abc"}}, "files.m.onnx: not [inode, size, mtime_ns] or null"),
        (lambda stamp: {**stamp, "files": {"m.onnx": [1]}}, "files.m.onnx: not [inode, size, mtime_ns] or null"),
        (lambda stamp: {**stamp, "engines": []}, "engines: not a mapping"),
        (lambda stamp: {**stamp, "engines": {"m": 5}}, "engines: not a mapping"),
        (lambda stamp: {**stamp, "environment": None}, "environment: not a mapping"),
    ],
)
def test_a_damaged_stamp_is_ignored_with_one_warning_and_rewritten(
    project: ProjectDir, damage: Any, problem: str
) -> None:
    built(project)
    stamp = _stamp(project)
    assert stamp.is_file()
    damaged = damage(json.loads(stamp.read_text()))
    stamp.write_text(damaged if isinstance(damaged, str) else json.dumps(damaged))
    for json_mode in ((), ("--json",)):
        run = project.trtbuild("all", *json_mode)
        assert run.code == 0, run.stderr
        no_traceback(run)
        if json_mode:  # the first run rewrote the stamp: this one is fast and quiet
            assert run.statuses() == {"m": "fresh"} and "warning" not in run.stderr
        else:
            warnings = [line for line in run.stderr.splitlines() if line.startswith("warning:")]
            assert len(warnings) == 1 and "damaged fresh stamp" in warnings[0] and problem in warnings[0], run.stderr
            assert "1 fresh" in run.stdout
    assert json.loads(stamp.read_text())["engines"] == {"m": "engines/m.engine"}


def test_a_lock_damaged_behind_a_valid_stamp_is_not_trusted_by_the_fast_path(project: ProjectDir) -> None:
    """Same size, same mtime, same inode: the stamp still vouches for the lock, whose bytes are garbage."""
    built(project)
    lock = project.root / "builds.lock"
    before = lock.stat()
    garbage = json.dumps({"schema": 1, "models": {"m": "x"}}).encode()
    with open(lock, "r+b") as handle:
        handle.write(garbage.ljust(before.st_size))
    os.utime(lock, ns=(before.st_atime_ns, before.st_mtime_ns))
    run = project.trtbuild("all", "--json")
    assert run.code == 2, (run.stdout, run.stderr)  # the full path took over and refused the lock
    no_traceback(run)
    assert "builds.lock: models.m: Input should be a valid dictionary" in run.stderr


def test_an_engine_entry_without_a_model_name_is_not_trusted_by_the_fast_path(project: ProjectDir) -> None:
    """The stamp vouches for the lock; the fast path still checks what it reads, the model's name included."""
    from test_build import _age_project

    built(project)
    _age_project(project)
    assert project.trtbuild("all").code == 0  # writes a trusted stamp: the next `all` takes the fast path
    lock = project.root / "builds.lock"
    before = lock.stat()
    data = json.loads(lock.read_text())
    data["steps"][E]["model"] = 5
    damaged = json.dumps(data).encode()
    assert len(damaged) <= before.st_size  # the same size: the stamp still vouches for it
    with open(lock, "r+b") as handle:
        handle.write(damaged.ljust(before.st_size))
    os.utime(lock, ns=(before.st_atime_ns, before.st_mtime_ns))
    run = project.trtbuild("all", "--json")
    assert run.code == 2, (run.stdout, run.stderr)  # the full path took over and refused the lock
    no_traceback(run)
    assert f"builds.lock: steps.{E}.model: Input should be a valid string" in run.stderr


def test_a_damaged_accuracy_report_is_never_a_traceback(project: ProjectDir) -> None:
    photos = "{package: skimage, glob: [data/astronaut.png, data/camera.png, data/chelsea.png, data/coffee.png]}"
    conv_net(project.root / "net.onnx", batch="N", seed=11, channels=16, size=64)
    project.write_manifest(f"""
        models:
          net:
            source: net.onnx
            precision: fp16
            fp16_via: onnx
            inputs: {{input: {{min: [1, 3, 64, 64], opt: [2, 3, 64, 64], max: [4, 3, 64, 64]}}}}
            validation: {{images: {photos}, count: 2}}
    """)
    assert project.trtbuild("all").code == 0
    report = project.root / "reports/net.accuracy.json"
    time.sleep(2.1)  # out of the racy window, so the next stamp vouches for the report's stat
    assert project.trtbuild("all").code == 0
    assert project.trtbuild("all", "--json").json()["models"]["net"]["accuracy"]["passed"] is True  # from the fast path
    # the same size, mtime and inode (the stamp and the stat cache still vouch for it), other bytes
    before = report.stat()
    with open(report, "r+b") as handle:
        handle.write(b'{"passed": "yes", "outputs": []}'.ljust(before.st_size))
    os.utime(report, ns=(before.st_atime_ns, before.st_mtime_ns))
    run = project.trtbuild("all", "--json")
    assert run.code == 0, run.stderr
    no_traceback(run)
    assert run.json()["models"]["net"].get("accuracy", {"passed": True})["passed"] is True  # never shown wrong
    # a damaged report that looks changed is validated again by the gate
    report.write_text("[]")
    run = project.trtbuild("all", "--json")
    assert run.code == 0 and run.json()["models"]["net"]["accuracy"]["passed"] is True, run.stderr
    no_traceback(run)


# --- names, sizes ----------------------------------------------------------------------------------


def refused(project: ProjectDir, manifest: str, *expected: str) -> str:
    """``trtbuild all`` on ``manifest`` exits 2 without a traceback, names ``expected``, writes nothing."""
    project.write_manifest(manifest)
    before = tree(project.root)
    run = project.trtbuild("all")
    assert run.code == 2, (run.stdout, run.stderr)
    no_traceback(run)
    for text in expected:
        assert text in run.stderr, run.stderr
    assert tree(project.root) == before
    return run.stderr


@pytest.mark.parametrize("name", ['"m\\n"', "a" * 129, "a" * 250, "a" * 300])
def test_model_names_are_whole_matches_and_short_enough_for_every_derived_file(project: ProjectDir, name: str) -> None:
    conv_net(project.root / "m.onnx")
    refused(project, f"models:\n  {name}: {{source: m.onnx}}\n", "builds.yaml:2: models.", "invalid name")


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
    stderr = refused(
        project, f"models:\n  m: {{source: m.onnx, workspace: {workspace}}}\n", "builds.yaml:2: models.m.workspace:"
    )
    assert "Invoked with" not in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_a_workspace_limit_is_named(project: ProjectDir) -> None:
    conv_net(project.root / "m.onnx")
    refused(
        project,
        "defaults: {workspace: 2TiB}\nmodels:\n  m: {source: m.onnx}\n",
        "builds.yaml:1: defaults.workspace: 2199023255552 bytes (2.0 TiB) is more than the 1 TiB limit",
    )


def _measured(project: ProjectDir) -> tuple[subprocess.CompletedProcess[str], float, int]:
    """Run ``trtbuild all`` in a fresh interpreter that reports the child's wall time and peak memory."""
    probe = (
        "import json, resource, subprocess, sys, time; started = time.monotonic(); "
        "done = subprocess.run([sys.executable, '-m', 'trtbuild', 'all'], capture_output=True, text=True); "
        "print(json.dumps({'code': done.returncode, 'stderr': done.stderr, 'seconds': time.monotonic() - started, "
        "'kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("TRTBUILD_SYSROOT", "TRTBUILD_BUILDER")}
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
    stderr = refused(project, "\n".join(lines) + "\n", "nested more than 64 levels deep (aliases expanded)")
    assert stderr.startswith("trtbuild: builds.yaml:63:")  # a63 would be the 65th level
    refused(project, "a: &a [1, *a]\nmodels: {}\n", "builds.yaml:1: alias *a is used inside the node it names")


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


# --- bad input writes nothing --------------------------------------------------------------------------

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
    refused(project, manifest, expected)  # a first run: not even .trtbuild/
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


def test_a_run_waiting_on_a_run_that_refused_its_input_still_gets_the_lock(project: ProjectDir) -> None:
    """A run that refuses its input removes the .trtbuild/ it created, lock file included, while holding
    the lock. A run queued on that lock file must then take the lock anew, not hold a deleted file."""
    import shutil

    import filelock

    one_model(project)
    (project.root / ".trtbuild").mkdir()
    holder = filelock.FileLock(str(project.root / ".trtbuild/run.lock"), thread_local=False)
    holder.acquire()  # the refusing run
    env = {k: v for k, v in os.environ.items() if k not in ("TRTBUILD_SYSROOT", "TRTBUILD_BUILDER")}
    queued = subprocess.Popen(
        [sys.executable, "-m", "trtbuild", "all", "--wait", "60"],
        cwd=project.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(2)  # queued on the lock file
    shutil.rmtree(project.root / ".trtbuild")  # what the refusing run does before it releases
    holder.release()
    _, stderr = queued.communicate(timeout=120)
    assert queued.returncode == 0, stderr
    assert (project.root / ".trtbuild/run.lock").is_file()
    assert project.trtbuild("plan", "--check").code == 0


# --- faults: a full disk, a read-only project ------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs to hold a whole project (root can mount; skip elsewhere)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(folder: Path) -> None:
    """Write until the file system answers ENOSPC."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


def test_a_full_disk_when_saving_state_gives_one_line_each_and_the_summary(small_disk: Path) -> None:
    project = built(ProjectDir(small_disk))
    (small_disk / ".trtbuild/statcache.json").unlink()  # the run must write it again
    for stamp in (small_disk / ".trtbuild").glob("fresh.*"):
        stamp.unlink()
    fill(small_disk)
    run = project.trtbuild("all", "--json")
    assert run.code == 0 and run.statuses() == {"m": "fresh"}, run.stderr  # the summary, whole
    no_traceback(run)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 2, lines
    assert any(
        ".trtbuild/statcache.json: cannot save the stat cache" in line and "[Errno 28] ENOSPC" in line for line in lines
    )
    assert any(
        ".trtbuild/fresh.builds.yaml.auto.json: cannot write the fresh stamp" in line and "[Errno 28]" in line
        for line in lines
    )
    assert not list(small_disk.rglob("*.partial"))
    (small_disk / "filler").unlink()
    assert project.trtbuild("all", "--json").statuses() == {"m": "fresh"}


def test_a_full_disk_during_an_int8_run_fails_the_model_in_one_line(tmp_path: Path) -> None:
    mount = tmp_path / "disk"
    mount.mkdir()
    # 20 KiB: the quantized ONNX is written, the child's small result file is not
    if (
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20k", "tmpfs", str(mount)], capture_output=True).returncode
        != 0
    ):
        pytest.skip("cannot mount a small tmpfs here")
    try:
        project = ProjectDir(mount)
        photos = "{package: skimage, glob: [data/astronaut.png, data/camera.png, data/chelsea.png, data/coffee.png]}"
        conv_net(mount / "net.onnx", batch="N", seed=11, channels=16, size=64)
        project.write_manifest(f"""
            models:
              net:
                source: net.onnx
                precision: int8
                inputs: {{input: {{min: [1, 3, 64, 64], opt: [2, 3, 64, 64], max: [4, 3, 64, 64]}}}}
                validation: {{images: {{package: ultralytics, glob: 'assets/*.jpg'}}, count: 2}}
                calibration: {{images: {photos}, count: 4, algorithm: minmax, quantizer: onnxruntime}}
        """)
        run = project.trtbuild("all", "--json")
        assert run.code == 1, run.stderr
        own = run.stderr.split("--- net: log")[0]  # what follows is the child's log tail, the child's own words
        assert "Traceback" not in own and "Traceback" not in run.stdout, run.stderr
        model = run.json()["models"]["net"]  # the summary, whole
        assert model["status"] == "failed"
        assert not list(mount.rglob("*.partial"))
        reason = model["reasons"][0]
        assert "Traceback" not in reason and "No space left on device (writing to /" in reason, reason
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


@pytest.fixture
def immutable() -> Iterator[Any]:
    """``chattr -R +i`` (root is not stopped by permission bits); undone after the test."""
    marked: list[Path] = []

    def mark(root: Path) -> None:
        done = subprocess.run(["chattr", "-R", "+i", str(root)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot make files immutable here: {done.stderr.decode().strip()}")
        marked.append(root)

    yield mark
    for root in marked:
        subprocess.run(["chattr", "-R", "-i", str(root)], check=True)


def test_a_read_only_project_gives_one_line_naming_the_file_and_errno(project: ProjectDir, immutable: Any) -> None:
    one_model(project)
    immutable(project.root)  # a first run: .trtbuild/ cannot be made
    run = project.trtbuild("all")
    assert run.code == 1, (run.stdout, run.stderr)
    no_traceback(run)
    assert (
        run.stderr.strip()
        == f"trtbuild: {project.root}/.trtbuild: cannot take the run lock: [Errno 1] EPERM: Operation not permitted"
    )


def test_a_read_only_built_project_gives_one_line_and_still_plans(project: ProjectDir, immutable: Any) -> None:
    built(project)
    for stamp in (project.root / ".trtbuild").glob("fresh.*"):
        stamp.unlink()  # else the fast path answers without writing anything (it needs no write)
    (project.root / ".trtbuild/statcache.json").unlink()
    immutable(project.root)
    run = project.trtbuild("all")
    assert run.code == 1 and not run.stdout, (run.stdout, run.stderr)
    no_traceback(run)
    assert run.stderr.strip() == (
        f"trtbuild: {project.root}/.trtbuild/run.lock: cannot take the run lock: "
        "[Errno 1] EPERM: Operation not permitted"
    )
    plan = project.trtbuild("plan", "--json")
    assert plan.code == 0 and plan.statuses() == {"m": "fresh"}, plan.stderr
    no_traceback(plan)
    assert plan.stderr.strip().startswith(
        f"warning: {project.root}/.trtbuild/statcache.json: cannot save the stat cache"
    )
    assert "[Errno" in plan.stderr and len(plan.stderr.strip().splitlines()) == 1


def test_a_lock_that_cannot_be_written_fails_the_step_in_one_line_with_the_summary(
    project: ProjectDir, immutable: Any
) -> None:
    built(project)
    conv_net(project.root / "m.onnx", seed=5)  # stale: the engine is rebuilt, then the lock must be written
    immutable(project.root / "builds.lock")
    run = project.trtbuild("all", "--json")
    assert run.code == 1, run.stderr
    no_traceback(run)
    model = run.json()["models"]["m"]
    assert model["status"] == "failed"
    assert (
        model["reasons"][0]
        == f"{project.root}/builds.lock: cannot write the lock: [Errno 1] EPERM: Operation not permitted"
    )
    assert not list(project.root.rglob("*.partial"))


def test_a_damaged_accuracy_report_is_never_shown_as_figures(project: ProjectDir) -> None:
    conv_net(project.root / "net.onnx", batch=1, seed=3, size=64)
    project.write_manifest("""
        models:
          net:
            source: net.onnx
            precision: fp16
            fp16_via: onnx
            validation: {images: {package: ultralytics, glob: 'assets/*.jpg'}, count: 2}
    """)
    assert project.trtbuild("all").code == 0
    report = project.root / "reports/net.accuracy.json"
    document = json.loads(report.read_text())
    del document["outputs"]["output"]["max_abs"]
    report.write_text(json.dumps(document))
    run = project.trtbuild("accuracy")
    assert run.code == 1 and "Traceback" not in run.stderr, run.stderr
    assert (
        "warning: reports/net.accuracy.json: damaged report (outputs.output: max_abs / mean_abs not numbers)"
        in run.stderr
    )
    assert "net " not in run.stdout  # no row of figures for it
    assert (
        "accuracy: " in project.trtbuild("plan", "--json").json()["models"]["net"]["reasons"][0]
    )  # the gate runs again
