"""State layer on real files: stat cache, ONNX digests with external data, keys and their reasons, lock."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
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
