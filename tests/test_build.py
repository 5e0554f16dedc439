"""End-to-end builds through the real CLI: real ONNX files, real TensorRT(-RTX) engines, real lock."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from conftest import ProjectDir, Run, entries, user_env
from onnx_models import conv_net, topk_beyond_axis_net, unsupported_op_net

JETPACK_5_1_2 = (
    "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, "
    "DATE: Tue Aug  1 19:57:35 UTC 2023\n"
)
JETPACK_6_2 = (
    "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, "
    "DATE: Wed Jan  8 01:49:37 UTC 2025\n"
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sysroot(base: Path, release: str, model: str = "NVIDIA Jetson Orin Nano Developer Kit") -> dict[str, str]:
    """A file-system root with a real-format /etc/nv_tegra_release and device-tree model."""
    (base / "etc").mkdir(parents=True, exist_ok=True)
    (base / "etc/nv_tegra_release").write_text(release)
    (base / "proc/device-tree").mkdir(parents=True, exist_ok=True)
    (base / "proc/device-tree/model").write_bytes(model.encode() + b"\x00")
    return {"TRTBUILD_SYSROOT": str(base)}


def test_first_run_builds_real_engines_and_second_run_builds_nothing(two_models: ProjectDir) -> None:
    first = two_models.trtbuild("all", "--json")
    assert first.code == 0, first.stderr
    assert first.statuses() == {"static": "built", "dynamic": "built"}
    lock = two_models.lock()
    for name in ("static", "dynamic"):
        engine = two_models.root / f"engines/{name}.engine"
        entry = entries(lock)[name]
        assert entry["outputs"] == [
            {"path": f"engines/{name}.engine", "sha256": sha256(engine), "size": engine.stat().st_size}
        ]
        assert entry["outputs"][0]["size"] > 10_000  # a real serialized plan, not a placeholder
        assert entry["facts"]["builder"].startswith(("tensorrt ", "tensorrt-rtx "))
    assert entries(lock)["dynamic"]["components"]["settings"]["profiles"] == [
        {"input": {"min": [1, 3, 32, 32], "opt": [4, 3, 32, 32], "max": [8, 3, 32, 32]}}
    ]
    mtimes = {p: p.stat().st_mtime_ns for p in (two_models.root / "engines").iterdir()}

    second = two_models.trtbuild("all", "--json")
    assert second.code == 0, second.stderr
    assert second.statuses() == {"static": "fresh", "dynamic": "fresh"}
    assert {p: p.stat().st_mtime_ns for p in (two_models.root / "engines").iterdir()} == mtimes
    assert two_models.lock() == lock


def test_changing_one_onnx_rebuilds_only_its_engine(two_models: ProjectDir) -> None:
    assert two_models.trtbuild("all").code == 0
    conv_net(two_models.root / "static.onnx", batch=1, seed=99)  # new weights, same interface
    plan = two_models.trtbuild("plan", "--json", "--check")
    assert plan.code == 1
    static = plan.json()["models"]["static"]
    onnx_digest = entries(two_models.lock())["static"]["components"]["onnx"]
    assert static == {
        "status": "stale",
        "reasons": ["onnx changed"],
        "engine": "engines/static.engine",
        "seconds": 0.0,
        "size": None,
        "steps": [],
        "why": [
            {
                "step": "engine",
                "kind": "changed",
                "field": "onnx",
                "old": onnx_digest,
                "new": static["why"][0]["new"],
                "text": "onnx changed",
            }
        ],
    }
    assert static["why"][0]["new"] != onnx_digest and len(static["why"][0]["new"]) == 64  # the reason as data
    assert plan.json()["models"]["dynamic"]["status"] == "fresh"
    run = two_models.trtbuild("all", "--json")
    assert run.statuses() == {"static": "built", "dynamic": "fresh"}
    assert run.json()["models"]["static"]["reasons"] == ["onnx changed"]
    assert two_models.trtbuild("plan", "--check").code == 0


def test_another_l4t_release_rebuilds_every_engine(two_models: ProjectDir, tmp_path: Path) -> None:
    jetpack5 = sysroot(tmp_path / "jp5", JETPACK_5_1_2)
    assert two_models.trtbuild("all", env=jetpack5).code == 0
    assert entries(two_models.lock())["static"]["components"]["env"]["l4t"] == "35.4.1"
    assert two_models.trtbuild("all", "--json", env=jetpack5).statuses() == {"static": "fresh", "dynamic": "fresh"}

    reflashed = two_models.trtbuild("all", "--json", env=sysroot(tmp_path / "jp6", JETPACK_6_2))
    assert reflashed.statuses() == {"static": "built", "dynamic": "built"}
    for model in reflashed.json()["models"].values():
        assert model["reasons"] == ["jetpack 5.1.2 -> 6.2", "l4t 35.4.1 -> 36.4.3"]


def test_jetson_device_model_enters_the_fingerprint(two_models: ProjectDir, tmp_path: Path) -> None:
    root = sysroot(tmp_path / "agx", JETPACK_6_2, model="NVIDIA Jetson AGX Orin Developer Kit")
    (tmp_path / "agx/proc/meminfo").write_text("MemTotal:       64335836 kB\nMemFree:  1 kB\n")
    assert two_models.trtbuild("all", env=root).code == 0
    env = entries(two_models.lock())["static"]["components"]["env"]
    assert (env["device_model"], env["gpu"], env["compute_capability"], env["sm_count"]) == (
        "NVIDIA Jetson AGX Orin Developer Kit",
        "Orin (Ampere)",
        "8.7",
        16,
    )


def test_a_modified_engine_is_rebuilt(two_models: ProjectDir) -> None:
    assert two_models.trtbuild("all").code == 0
    engine = two_models.root / "engines/dynamic.engine"
    good = engine.read_bytes()
    engine.write_bytes(good[:-1] + bytes([good[-1] ^ 0xFF]))
    run = two_models.trtbuild("all", "--json")
    assert run.json()["models"]["dynamic"]["status"] == "built"
    assert run.json()["models"]["dynamic"]["reasons"] == ["engine modified"]
    assert sha256(engine) == entries(two_models.lock())["dynamic"]["outputs"][0]["sha256"]


def test_a_deleted_engine_is_rebuilt(two_models: ProjectDir) -> None:
    assert two_models.trtbuild("all").code == 0
    (two_models.root / "engines/static.engine").unlink()
    run = two_models.trtbuild("all", "--json")
    assert run.json()["models"]["static"]["reasons"] == ["engine missing"]
    assert (two_models.root / "engines/static.engine").is_file()


def test_unparseable_onnx_fails_that_model_only_with_the_parsers_message(project: ProjectDir) -> None:
    conv_net(project.root / "good.onnx", seed=3)
    unsupported_op_net(project.root / "bad.onnx")
    project.write_manifest("""
        models:
          good: {source: good.onnx}
          bad: {source: bad.onnx}
    """)
    run = project.trtbuild("all", "--json")
    assert run.code == 1
    models = run.json()["models"]
    assert models["good"]["status"] == "built"
    assert models["bad"]["status"] == "failed"
    assert "TotallyUnknownOp" in run.stderr  # the parser's own words, with the op ...
    assert "mystery" in run.stderr  # ... and the node name
    assert not (project.root / "engines/bad.engine").exists()
    assert not list((project.root / "engines").glob(".*partial"))
    assert "bad" not in entries(project.lock())
    assert "TotallyUnknownOp" in (project.root / ".trtbuild/logs/bad.log").read_text()


def test_a_builder_failure_gives_tensorrts_own_cause_in_the_summary(project: ProjectDir) -> None:
    """The parser accepts the model; the builder refuses it and Polygraphy says only "Invalid Engine": the
    reason carries TensorRT's first error line, without its source locations."""
    topk_beyond_axis_net(project.root / "topk.onnx")
    project.write_manifest("""
        models:
          topk: {source: topk.onnx, workspace: 64MiB}
    """)
    run = project.trtbuild("all", "--json")
    assert run.code == 1 and run.statuses() == {"topk": "failed"}, run.stdout + run.stderr
    (reason,) = run.json()["models"]["topk"]["reasons"]
    assert reason.startswith("the builder failed: "), reason
    assert "length of reduction axis (4) is smaller than K (10)" in reason and "/_src/" not in reason, reason


def test_an_unexpected_error_in_a_child_is_named_with_its_type_and_its_traceback_is_logged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trtbuild.child_requests import InspectRequest
    from trtbuild.childside import child_main

    def step(request: InspectRequest) -> dict:
        return {"rows": [1, 2][len(request.engine)]}

    request = tmp_path / "request.json"
    typed = InspectRequest(
        engine="12345", flavour="tensorrt", partial=str(tmp_path / "out"), result=str(tmp_path / "r")
    )
    request.write_text(typed.to_json())
    assert child_main(step, [str(request)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Traceback (most recent call last):" and any("[len(request.engine)]" in line for line in lines)
    assert lines[-1] == f"trtbuild: IndexError in {__name__}: list index out of range (traceback in the log)"
    assert not (tmp_path / "r").exists()


def test_settings_change_gives_a_per_field_reason_and_cosmetic_edits_do_not(two_models: ProjectDir) -> None:
    assert two_models.trtbuild("all").code == 0
    manifest = two_models.root / "builds.yaml"
    manifest.write_text(
        "# fleet manifest, reformatted\n"
        + manifest.read_text().replace("workspace: 256MiB", "workspace: 268435456  # same")
    )
    assert two_models.trtbuild("plan", "--check").code == 0
    manifest.write_text(
        manifest.read_text().replace("268435456  # same", "512MiB") + "    builder_optimization_level: 2\n"
    )
    plan = two_models.trtbuild("plan", "--json").json()["models"]
    assert plan["static"]["reasons"] == ["workspace 268435456 -> 536870912"]
    assert plan["dynamic"]["reasons"] == ["builder_optimization_level 3 -> 2", "workspace 268435456 -> 536870912"]


def test_builder_version_change_is_reported_per_component(two_models: ProjectDir) -> None:
    assert two_models.trtbuild("all").code == 0
    lock_path = two_models.root / "builds.lock"
    lock = two_models.lock()
    current = entries(lock)["static"]["components"]["env"]["builder_version"]
    flavour = entries(lock)["static"]["components"]["env"]["builder"]
    entries(lock)["static"]["components"]["env"]["builder_version"] = "0.9.0"
    entries(lock)["static"]["key"] = "0" * 64
    lock_path.write_text(json.dumps(lock))
    plan = two_models.trtbuild("plan", "--json").json()["models"]
    assert plan["static"]["reasons"] == [f"{flavour} 0.9.0 -> {current}"]
    assert plan["dynamic"]["status"] == "fresh"


def test_parallel_jobs_build_every_engine(project: ProjectDir) -> None:
    lines = ["models:"]
    for index in range(4):
        conv_net(project.root / f"m{index}.onnx", seed=index)
        lines.append(f"  m{index}: {{source: m{index}.onnx, workspace: 128MiB}}")
    project.write_manifest("\n".join(lines) + "\n")
    run = project.trtbuild("all", "-j", "2", "--json")
    assert run.code == 0, run.stderr
    assert set(run.statuses().values()) == {"built"}
    assert sorted(entries(project.lock())) == ["m0", "m1", "m2", "m3"]


def test_build_names_only_the_selected_models(two_models: ProjectDir) -> None:
    run = two_models.trtbuild("build", "dynamic", "--json")
    assert run.statuses() == {"dynamic": "built"}
    assert not (two_models.root / "engines/static.engine").exists()
    unknown = two_models.trtbuild("build", "nope")
    assert unknown.code == 2 and "no model named 'nope'" in unknown.stderr


def test_a_missing_source_is_bad_input_named_by_file_line_and_field(project: ProjectDir) -> None:
    conv_net(project.root / "present.onnx")
    project.write_manifest("""
        models:
          present: {source: present.onnx}
          absent: {source: absent.onnx}
    """)
    for command in ("all", "plan"):
        run = project.trtbuild(command)
        assert run.code == 2, (command, run.stdout, run.stderr)
        assert run.stderr == "trtbuild: builds.yaml:3: models.absent.source: absent.onnx does not exist\n"
    assert not (project.root / "engines").exists()  # bad input builds nothing


def test_clean_removes_engines_and_lock_entries(two_models: ProjectDir) -> None:
    assert two_models.trtbuild("all").code == 0
    run = two_models.trtbuild("clean", "static")
    assert run.code == 0 and "removed engines/static.engine" in run.stdout
    assert not (two_models.root / "engines/static.engine").exists()
    assert sorted(entries(two_models.lock())) == ["dynamic"]
    assert two_models.trtbuild("plan", "--json").json()["models"]["static"]["reasons"] == ["never built"]


def test_a_no_op_run_hashes_no_file(two_models: ProjectDir) -> None:
    import os
    import time

    assert two_models.trtbuild("all").code == 0
    past = time.time_ns() - 60 * 1_000_000_000
    for path in [*two_models.root.glob("*.onnx"), *(two_models.root / "engines").glob("*.engine")]:
        os.utime(path, ns=(past, past))
    assert two_models.trtbuild("all").code == 0  # re-hashes the files whose mtimes moved
    cache = two_models.root / ".trtbuild/statcache.json"
    before = cache.read_bytes()
    assert two_models.trtbuild("all").code == 0
    assert cache.read_bytes() == before  # no entry re-recorded: neither ONNX nor engine was read


def _age_project(project: ProjectDir) -> None:
    import os
    import time

    past = time.time_ns() - 60 * 1_000_000_000
    for path in [*project.root.rglob("*"), project.root]:
        if "fresh." not in path.name:
            os.utime(path, ns=(past, past))


def _imports_of_all(project: ProjectDir, env: dict[str, str] | None = None) -> tuple[set[str], Run]:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "trtbuild", "all", "--json"],
        cwd=project.root,
        env=user_env(env),
        capture_output=True,
        text=True,
        timeout=600,
    )
    modules = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    human = "\n".join(line for line in done.stderr.splitlines() if not line.startswith("import time:"))
    return modules, Run(done.returncode, done.stdout, human)


def test_a_no_op_run_takes_the_fast_path_and_any_change_leaves_it(two_models: ProjectDir, tmp_path: Path) -> None:
    assert two_models.trtbuild("all").code == 0
    _age_project(two_models)
    assert two_models.trtbuild("all").code == 0  # full path: re-hashes the aged files, writes a trusted stamp
    modules, run = _imports_of_all(two_models)
    assert run.code == 0 and run.statuses() == {"static": "fresh", "dynamic": "fresh"}
    assert not {"pydantic", "click", "onnx", "networkx", "polygraphy", "tensorrt_rtx", "torch"} & modules
    engine = two_models.root / "engines/static.engine"
    data = bytearray(engine.read_bytes())
    data[100] ^= 0xFF
    engine.write_bytes(bytes(data))
    modules, run = _imports_of_all(two_models)
    assert "pydantic" in modules  # the stamp no longer holds: the full path decides
    assert run.json()["models"]["static"]["reasons"] == ["engine modified"]
    _age_project(two_models)
    assert two_models.trtbuild("all").code == 0
    modules, _ = _imports_of_all(two_models, env=sysroot(tmp_path / "jp", JETPACK_6_2))
    assert "pydantic" in modules  # another environment never takes the fast path


def test_several_devices_never_take_one_devices_fast_path(project: ProjectDir) -> None:
    """``all -d a -d b`` when only ``b`` has a valid fresh stamp: the fast path must not answer with ``b``'s
    summary alone (``a`` was never built); the full path builds ``a``."""
    conv_net(project.root / "net.onnx", batch=1, seed=1)
    project.write_manifest("models:\n  net:\n    source: net.onnx\n")
    (project.root / "devices").mkdir()
    for name in ("a", "b"):
        (project.root / "devices" / f"{name}.yaml").write_text("defaults: {workspace: 256MiB}\n")
    assert project.trtbuild("all", "-d", "b").code == 0
    _age_project(project)
    assert project.trtbuild("all", "-d", "b").code == 0  # full path: writes a trusted stamp for b
    assert list((project.root / ".trtbuild").glob("fresh.builds.yaml.*.json"))  # b's stamp
    both = project.trtbuild("all", "-d", "a", "-d", "b", "--json")
    assert both.code == 0, both.stdout + both.stderr
    devices = {summary["device"]: summary["models"]["net"]["status"] for summary in both.json()["devices"]}
    assert devices == {"a": "built", "b": "fresh"}
    assert (project.root / "engines/a/net.engine").is_file()
