"""`trtbuild audit` and `trtbuild inspect` on real engines, and the tamper cases they must catch."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import ProjectDir, entries
from test_build import JETPACK_6_2, sysroot

from trtbuild.state import keys


def audit(project: ProjectDir, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict]:
    run = project.trtbuild("audit", "--json", *args, env=env)
    return run.code, json.loads(run.stdout)


def test_a_clean_build_audits_ok_and_rebuilds_byte_identical(two_models: ProjectDir) -> None:
    assert two_models.trtbuild("all").code == 0
    code, report = audit(two_models, "--rebuild")
    assert code == 0
    assert {name: (r["ok"], r["rebuild"]) for name, r in report.items()} == {
        "dynamic": (True, "byte-identical"),
        "static": (True, "byte-identical"),
    }


def test_a_flipped_byte_is_caught(two_models: ProjectDir) -> None:
    assert two_models.trtbuild("all").code == 0
    engine = two_models.root / "engines/static.engine"
    data = bytearray(engine.read_bytes())
    data[len(data) // 2] ^= 0x01
    engine.write_bytes(bytes(data))
    code, report = audit(two_models)
    assert code == 1
    assert report["dynamic"]["ok"] is True
    assert not report["static"]["ok"]
    assert report["static"]["findings"][0].startswith("engine sha256 ")
    assert "differs from the lock's" in report["static"]["findings"][0]


def test_an_edited_lock_is_caught(two_models: ProjectDir) -> None:
    assert two_models.trtbuild("all").code == 0
    path = two_models.root / "builds.lock"
    lock = json.loads(path.read_text())
    entries(lock)["static"]["components"]["settings"]["precision"] = "fp16"  # a claim without its key
    path.write_text(json.dumps(lock))
    code, report = audit(two_models)
    assert code == 1
    assert "lock entry edited: its key is not the sha256 of its recorded components" in report["static"]["findings"]


def test_a_rebuild_from_recorded_settings_that_lack_one_fails_that_engine_in_words(two_models: ProjectDir) -> None:
    """A hand-edited entry whose settings lack a field the builder needs: the rebuild is a finding, not a
    traceback (the builder's request is typed and checked before any child starts)."""
    assert two_models.trtbuild("all").code == 0
    path = two_models.root / "builds.lock"
    lock = json.loads(path.read_text())
    entry = entries(lock)["static"]
    del entry["components"]["settings"]["dla_core"]
    entry["key"] = keys.key_of(entry["components"])
    path.write_text(json.dumps(lock))
    code, report = audit(two_models, "--rebuild")
    assert code == 1
    assert report["static"]["rebuild"] == "failed"
    assert "rebuild failed: the build settings lack dla_core" in report["static"]["findings"]
    assert report["dynamic"] == {"ok": True, "findings": [], "rebuild": "byte-identical"}


def test_a_forged_lock_entry_shows_as_drift_and_fails_the_rebuild(two_models: ProjectDir) -> None:
    assert two_models.trtbuild("all").code == 0
    path = two_models.root / "builds.lock"
    lock = json.loads(path.read_text())
    entry = entries(lock)["dynamic"]
    entry["components"]["settings"]["workspace"] = 1 << 30  # consistent forgery: key recomputed
    entry["key"] = keys.key_of(entry["components"])
    path.write_text(json.dumps(lock))
    code, report = audit(two_models)
    assert code == 1
    assert report["dynamic"]["findings"] == ["drift: workspace 1073741824 -> 268435456"]


def test_a_changed_environment_is_reported_per_component(two_models: ProjectDir, tmp_path: Path) -> None:
    assert two_models.trtbuild("all").code == 0
    reflashed = sysroot(tmp_path / "jp62", JETPACK_6_2, model="NVIDIA Jetson Orin Nano Developer Kit")
    code, report = audit(two_models, "--rebuild", env=reflashed)
    assert code == 1
    findings = report["static"]["findings"]
    assert "drift: l4t none -> 36.4.3" in findings and "drift: jetpack none -> 6.2" in findings
    assert "drift: device model none -> NVIDIA Jetson Orin Nano Developer Kit" in findings
    assert report["static"]["rebuild"].startswith("not attempted: this machine is not the one recorded")


def test_a_missing_engine_is_caught(two_models: ProjectDir) -> None:
    assert two_models.trtbuild("all").code == 0
    (two_models.root / "engines/dynamic.engine").unlink()
    code, report = audit(two_models, "--rebuild")
    assert code == 1 and report["dynamic"]["findings"] == ["engine engines/dynamic.engine is missing"]


def test_inspect_shows_io_profiles_and_precision_mix(two_models: ProjectDir) -> None:
    assert two_models.trtbuild("all").code == 0
    run = two_models.trtbuild("inspect", "dynamic", "--json")
    assert run.code == 0, run.stderr
    description = json.loads(run.stdout)
    assert description["engine"] == "engines/dynamic.engine"
    assert description["size"] == (two_models.root / "engines/dynamic.engine").stat().st_size
    assert description["profiles"] == [{"input": {"min": [1, 3, 32, 32], "opt": [4, 3, 32, 32], "max": [8, 3, 32, 32]}}]
    if description["source"] == "TensorRT engine inspector":  # a machine that can deserialize the plan
        assert [t["name"] for t in description["io"]] == ["input", "output"]
    else:  # no GPU for this plan here: the builder's own network summary recorded at build time
        assert description["source"].startswith("lock (build-time network summary)")
        assert description["io"]["inputs"] == [{"name": "input", "dtype": "FLOAT", "shape": [-1, 3, 32, 32]}]
        assert description["io"]["outputs"] == [{"name": "output", "dtype": "FLOAT", "shape": [-1, 4, 32, 32]}]
    assert description["layers"] >= 2 and sum(description["precisions"].values()) == description["layers"]
    text = two_models.trtbuild("inspect", "dynamic")
    assert "profile 0: input min [1, 3, 32, 32] opt [4, 3, 32, 32] max [8, 3, 32, 32]" in text.stdout
