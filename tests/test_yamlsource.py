"""YAML loading with line marks: libyaml composes when PyYAML has it, within the same limits, with the same lines.

The Python composer (``_BoundedLoader``) is the reference: on every document below, the libyaml path gives
the same data, the same ``{path: file:line}`` map and the same error message, word for word.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ProjectDir

from trtbuild.errors import ManifestError
from trtbuild.manifest import yamlsource
from trtbuild.manifest.yamlsource import load_located

needs_libyaml = pytest.mark.skipif(not getattr(yaml, "__with_libyaml__", False), reason="PyYAML built without libyaml")

LAUGHS = (
    "\n".join(
        ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
        + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    )
    + "\nmodels: {}\n"
)
LAUGHS_IN_BLOCKS = (
    "a0: &a0\n" + "  - lol\n" * 9 + "".join(f"a{i}: &a{i}\n" + f"  - *a{i - 1}\n" * 9 for i in range(1, 9))
)
CHAINED = "\n".join(["a0: &a0 [x]"] + [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, 200)]) + "\n"
MANIFEST = """\
# a fleet
x-common: &common
  source: net.onnx
  inputs: {input: [1, 3, 32, 32]}
defaults:
  workspace: 256MiB
models:
  pose:
    <<: *common
    precision: fp16
    calibration:
      - images/a.jpg
      -
        images/b.jpg
  face: {<<: *common, output: engines/face.engine}
  notes: >
    folded
    text
  sizes: [1, 2]
"""

#: name -> document; each is loaded with and without libyaml and must come out the same.
DOCUMENTS = {
    "manifest": MANIFEST,
    "merge chain": "a: &a {p: 1, q: [1, 2]}\nb: &b\n  <<: *a\n  q: 3\nc:\n  <<: [*b, *a]\n  r: 4\n",
    "duplicate key": "models:\n  a:\n    source: a.onnx\n    precision: fp16\n    precision: fp32\n",
    "duplicate after merge": (
        "models:\n  a: &a {source: a.onnx}\n  b:\n    <<: *a\n    precision: fp16\n    precision: fp32\n"
    ),
    "crlf": "a: 1\r\nb:\r\n  - 2\r\n  - 3\r\n",
    "unicode line separator": "a: \u00e9\u2028b: 2\nc: \u65e5\u672c\n",
    "scalars": "n: ~\ne:\nt: 2024-01-01\nf: 1.5e3\nb: yes\ni: 0x1f\nq: '1'\ns: !!binary aGVsbG8=\no: !!omap [x: 1]\n",
    "python tag": "a: !!python/object/apply:os.system [ls]\n",
    "set tag": "a: !!set {x, y}\n",
    "non-string key": "? [1, 2]\n: x\n",
    "syntax error": "models:\n  a:\n    source: a.onnx\n    inputs: [1, 2\n  b: {}\n",
    "tab": "a:\n\tb: 1\n",
    "control character": "a: \x07\n",
    "undefined alias": "a: *nope\n",
    "duplicate anchor": "a: &x 1\nb: &x 2\n",
    "anchor inside itself": "a: &x [&x 1]\n",
    "two documents": "a: 1\n---\nb: " + "[" * 1000 + "\n",
    "empty": "# nothing\n",
    "recursive alias": "a: &a [1, *a]\nmodels: {}\n",
    "recursive mapping": "a: &a {b: *a}\n",
    "deep": "a: " + "[" * 900 + "]" * 900 + "\nmodels: {}\n",
    "64 levels": "a: " + "[" * 63 + "]" * 63 + "\n",  # the mapping and 63 sequences: the most allowed
    "65 levels": "a: " + "[" * 64 + "]" * 64 + "\n",
    "deep blocks": "".join(" " * i + "k:\n" for i in range(100)),
    "chained aliases": CHAINED,
    "billion laughs": LAUGHS,
    "billion laughs in blocks": LAUGHS_IN_BLOCKS,
}


class _Forbidden:
    """Stands in for a composer a test must not reach."""

    def __init__(self, *args: Any) -> None:
        raise AssertionError("this composer must not be used here")


def _load(path: Path) -> tuple[str, Any]:
    try:
        located = load_located(path)
    except ManifestError as exc:
        return "error", str(exc)
    return "ok", (located.data, located.lines)


@pytest.fixture
def manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``builds.yaml`` in a fresh working folder, so messages read ``builds.yaml:LINE: ...``."""
    monkeypatch.chdir(tmp_path)
    return Path("builds.yaml")


@needs_libyaml
@pytest.mark.parametrize("name", DOCUMENTS)
def test_libyaml_and_python_give_the_same_data_lines_and_errors(
    manifest: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    manifest.write_text(DOCUMENTS[name], encoding="utf-8", newline="")
    with_libyaml = _load(manifest)
    monkeypatch.setattr(yamlsource, "_LIBYAML", False)
    monkeypatch.setattr(yaml, "CSafeLoader", _Forbidden)
    assert _load(manifest) == with_libyaml


@needs_libyaml
def test_libyaml_composes_with_line_marks_and_merge_keys(manifest: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlsource, "_BoundedLoader", _Forbidden)  # libyaml or nothing
    manifest.write_text(MANIFEST)
    located = load_located(manifest)
    assert gc.isenabled()
    assert located.data["models"]["pose"] == {
        "source": "net.onnx",
        "inputs": {"input": [1, 3, 32, 32]},
        "precision": "fp16",
        "calibration": ["images/a.jpg", "images/b.jpg"],
    }
    assert located.data["models"]["face"]["output"] == "engines/face.engine"
    assert located.where(("models", "pose", "precision")) == "builds.yaml:10"
    assert located.where(("models", "pose", "calibration", 1)) == "builds.yaml:14"  # where the item starts
    assert located.where(("models", "face", "output")) == "builds.yaml:15"
    assert located.where(("models", "notes", "deeper", "still")) == "builds.yaml:16"
    assert located.where(("defaults", "workspace")) == "builds.yaml:6"


@needs_libyaml
def test_a_duplicate_key_names_its_line_on_the_libyaml_path(manifest: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlsource, "_BoundedLoader", _Forbidden)
    manifest.write_text(DOCUMENTS["duplicate after merge"])
    with pytest.raises(ManifestError) as refused:
        load_located(manifest)
    assert str(refused.value) == "builds.yaml:6: models.b.precision: duplicate key (first at line 5)"


@needs_libyaml
@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("billion laughs", "builds.yaml:7: more than 2000000 YAML nodes after alias expansion; refusing to load"),
        (
            "billion laughs in blocks",
            "builds.yaml:64: more than 2000000 YAML nodes after alias expansion; refusing to load",
        ),
        ("chained aliases", "builds.yaml:63: nested more than 64 levels deep (aliases expanded); refusing to load"),
        ("deep", "builds.yaml:1: nested more than 64 levels deep; refusing to load"),
        ("65 levels", "builds.yaml:1: nested more than 64 levels deep; refusing to load"),
        ("deep blocks", "builds.yaml:64: nested more than 64 levels deep; refusing to load"),
        ("recursive alias", "builds.yaml:1: alias *a is used inside the node it names; refusing to load"),
        ("recursive mapping", "builds.yaml:1: alias *a is used inside the node it names; refusing to load"),
    ],
)
def test_the_limits_hold_on_the_libyaml_path(
    manifest: Path, monkeypatch: pytest.MonkeyPatch, name: str, message: str
) -> None:
    monkeypatch.setattr(yamlsource, "_BoundedLoader", _Forbidden)  # refused before the Python composer is needed
    composed = []
    real = yaml.CSafeLoader

    class Watched(real):  # type: ignore[valid-type,misc]
        def get_single_node(self) -> Any:
            composed.append(True)
            return super().get_single_node()

    monkeypatch.setattr(yaml, "CSafeLoader", Watched)
    manifest.write_text(DOCUMENTS[name])
    with pytest.raises(ManifestError) as refused:
        load_located(manifest)
    assert str(refused.value) == message
    assert not composed  # refused from the events, before libyaml composed anything


@needs_libyaml
def test_libyaml_syntax_errors_are_worded_by_the_python_parser(manifest: Path) -> None:
    manifest.write_text(DOCUMENTS["syntax error"])
    with pytest.raises(ManifestError) as refused:
        load_located(manifest)
    assert str(refused.value) == "builds.yaml:5: YAML syntax error: expected ',' or ']', but got ':'"


@needs_libyaml
def test_nesting_that_would_crash_the_c_composer_is_refused_in_one_line(project: ProjectDir) -> None:
    """libyaml's composer recurses in C: a million ``[`` would kill the interpreter (SIGSEGV) if it got there."""
    project.write_manifest("a: " + "[" * 1_000_000 + "]" * 1_000_000 + "\nmodels: {}\n")
    run = project.trtbuild("all")
    assert run.code == 2, (run.code, run.stderr[-2000:])
    assert run.stderr.strip() == "trtbuild: builds.yaml:1: nested more than 64 levels deep; refusing to load"


def test_without_libyaml_the_python_composer_loads_and_refuses(manifest: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlsource, "_LIBYAML", False)
    monkeypatch.setattr(yaml, "CSafeLoader", _Forbidden)
    manifest.write_text(MANIFEST)
    located = load_located(manifest)
    assert located.data["models"]["pose"]["precision"] == "fp16"
    assert located.where(("models", "pose", "precision")) == "builds.yaml:10"
    manifest.write_text(LAUGHS)
    with pytest.raises(ManifestError, match=r"^builds.yaml:7: more than 2000000 YAML nodes after alias expansion"):
        load_located(manifest)
    manifest.write_text(CHAINED)
    with pytest.raises(ManifestError, match=r"^builds.yaml:63: nested more than 64 levels deep \(aliases expanded\)"):
        load_located(manifest)


def test_an_explicit_tag_on_a_value_it_cannot_be_is_one_line_naming_file_line_and_field(project: ProjectDir) -> None:
    project.write_manifest("""
        models:
          a:
            source: a.onnx
            workspace: !!int abc
    """)
    run = project.trtbuild("plan")
    assert run.code == 2 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.strip() == (
        "trtbuild: builds.yaml:4: models.a.workspace: 'abc' is not a valid int: "
        "invalid literal for int() with base 10: 'abc'"
    )
