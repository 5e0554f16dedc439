"""Faults with real processes: power loss (SIGKILL) at many points, Ctrl-C, a builder killed for memory, a
full disk, a read-only project. Each gives one line naming the file and the errno, never a traceback, and
leaves nothing half-written.

Tests run as root here, where permission bits do not stop writes: a read-only project is made with
``chattr +i`` (immutable; ext4 and most local file systems), a full disk with a small tmpfs. Each skips
when the machine cannot do that.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ProjectDir, built, child_of, entries, no_traceback, one_model, small_fleet
from onnx_models import conv_net

# --- power loss, Ctrl-C, a builder killed ---------------------------------------------------------


KILL_POINTS = 16


def wipe(project: ProjectDir) -> None:
    import shutil

    for name in ("engines", "exports", ".trtbuild"):
        shutil.rmtree(project.root / name, ignore_errors=True)
    (project.root / "builds.lock").unlink(missing_ok=True)


def partials(project: ProjectDir) -> list[Path]:
    return [path for path in project.root.rglob("*.partial")]


def assert_consistent(project: ProjectDir) -> None:
    """Every engine, export and conversion on disk that the lock lists is byte-for-byte what the lock says."""
    lock = project.lock()
    for step_id, entry in lock["steps"].items():
        for output in entry["outputs"]:
            path = project.root / output["path"]
            assert hashlib.sha256(path.read_bytes()).hexdigest() == output["sha256"], step_id


def test_power_loss_at_many_points_loses_nothing(project: ProjectDir) -> None:
    small_fleet(project)
    started = time.monotonic()
    assert project.trtbuild("all").code == 0
    duration = time.monotonic() - started
    for point in range(KILL_POINTS):
        wipe(project)
        process = project.start("all")
        time.sleep(duration * (point + 0.5) / KILL_POINTS)
        os.killpg(process.pid, signal.SIGKILL)  # the whole process group: parent and builders, like a power cut
        process.wait()
        if (project.root / "builds.lock").exists():
            assert_consistent(project)  # what the lock says right after the cut is already true
        recovery = project.trtbuild("all", "--json")
        assert recovery.code == 0, (point, recovery.stdout, recovery.stderr)
        assert set(recovery.statuses().values()) <= {"built", "fresh"}
        assert_consistent(project)
        assert partials(project) == [], point
        assert project.trtbuild("plan", "--check").code == 0


def builder_child(project: ProjectDir, timeout: float = 30) -> int:
    """The pid of a running builder child of this project (read from /proc)."""
    return child_of(project, "trtbuild.builder.child", timeout)


def test_ctrl_c_stops_cleanly_with_exit_130(project: ProjectDir) -> None:
    small_fleet(project)
    process = project.start("all")
    builder_child(project)
    process.send_signal(signal.SIGINT)  # to trtbuild only: it must stop its builders itself
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    time.sleep(0.2)
    with pytest.raises(AssertionError):
        builder_child(project, timeout=0.5)  # no builder left running
    assert partials(project) == []
    if (project.root / "builds.lock").exists():
        assert_consistent(project)
    assert project.trtbuild("all").code == 0


def test_a_builder_killed_for_memory_fails_only_its_model(project: ProjectDir) -> None:
    small_fleet(project)
    project.write_manifest((project.root / "builds.yaml").read_text() + "")
    process = project.start("all", "--json")
    os.kill(builder_child(project), signal.SIGKILL)  # what the kernel's OOM killer does
    stdout, _ = process.communicate(timeout=120)
    assert process.returncode == 1
    models = json.loads(stdout)["models"]
    failed = [name for name, model in models.items() if model["status"] == "failed"]
    assert len(failed) == 1
    assert models[failed[0]]["reasons"] == ["the child process was killed by SIGKILL (out of memory?)"]
    assert sorted(model["status"] for model in models.values()) == ["built", "built", "built", "failed"]
    assert not (project.root / models[failed[0]]["engine"]).exists()
    assert partials(project) == []


# --- a full disk ----------------------------------------------------------------------------------


def test_a_full_disk_gives_a_clear_error_and_nothing_corrupt(project: ProjectDir) -> None:
    small_fleet(project)
    engines = project.root / "engines"
    engines.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(engines)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        run = project.trtbuild("all", "--json")
        assert run.code == 1
        for model in run.json()["models"].values():
            assert model["status"] == "failed"
            assert "No space left on device" in model["reasons"][0]
        assert list(engines.iterdir()) == []
        assert not (project.root / "builds.lock").exists() or entries(project.lock()) == {}  # no engine recorded
    finally:
        subprocess.run(["umount", str(engines)], check=True)
    assert project.trtbuild("all").code == 0


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


# --- a read-only project --------------------------------------------------------------------------


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
