"""Plugin libraries: one outside the project is loaded only when pinned, and only the pinned bytes; a bad
path names the field. Real shared libraries built with ``cc`` whose constructor leaves a marker file."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
from conftest import ProjectDir, child_of
from onnx_models import conv_net


def plugin_library(folder: Path, marker: Path, name: str = "libmark.so") -> Path:
    """A real shared library whose constructor creates ``marker`` when it is loaded."""
    if shutil.which("cc") is None:
        pytest.skip("no C compiler to build a plugin library")
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / f"{name}.c"
    source.write_text(
        textwrap.dedent(f"""
        #include <stdio.h>
        __attribute__((constructor)) static void loaded(void) {{
            FILE *f = fopen("{marker}", "w"); if (f) fclose(f);
        }}
    """)
    )
    library = folder / name
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    source.unlink()
    return library


def test_an_unpinned_plugin_outside_the_project_is_not_loaded(
    project: ProjectDir, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside")
    marker = outside / "constructor-ran"
    library = plugin_library(outside / "lib", marker)
    conv_net(project.root / "m.onnx")
    digest = hashlib.sha256(library.read_bytes()).hexdigest()
    lines = project.refuses(f"models:\n  m:\n    source: m.onnx\n    plugins: [{library}]\n").lines()
    assert lines == [
        f"builds.yaml:4: models.m.plugins.0: {library} is outside the project folder {project.root}; a plugin "
        f"from outside is loaded only when pinned: {{path: {library}, sha256: {digest}}}"
    ]
    assert not marker.exists()


def test_a_pinned_plugin_outside_the_project_is_loaded_and_a_swapped_one_is_not(
    project: ProjectDir, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside")
    good, evil = outside / "good-ran", outside / "evil-ran"
    library = plugin_library(outside / "lib", good)
    digest = hashlib.sha256(library.read_bytes()).hexdigest()
    evil_library = plugin_library(outside / "evil", evil)
    conv_net(project.root / "m.onnx")
    project.write_manifest(f"""
        defaults: {{workspace: 128MiB}}
        models:
          m:
            source: m.onnx
            plugins: [{{path: {library}, sha256: {digest}}}]
    """)
    assert project.trtbuild("all").code == 0
    assert good.exists() and not evil.exists()

    good.unlink()
    (project.root / "m.onnx").unlink()
    conv_net(project.root / "m.onnx", seed=3)  # stale: the builder runs again
    process = project.start("all", "--json")
    child_of(project, "trtbuild.builder.child")  # the parent checked the pin: swap the library now
    os.replace(evil_library, library)
    stdout, stderr = process.communicate(timeout=300)
    assert not evil.exists() and not good.exists(), "a library that is not the pinned one was loaded"
    assert process.returncode == 1, stderr
    reason = json.loads(stdout)["models"]["m"]["reasons"][0]
    assert reason.startswith(f"plugin {library}: sha256 ") and reason.endswith(
        f"is not the pinned {digest}; not loaded"
    )

    run = project.trtbuild("all")  # and before anything runs, the parent refuses it too
    assert run.code == 2 and f"builds.yaml:5: models.m.plugins.0: {library} has sha256" in run.stderr
    assert not evil.exists()


def test_a_plugin_pin_has_the_syntax_of_a_source_pin(project: ProjectDir) -> None:
    conv_net(project.root / "m.onnx")
    lines = project.refuses(
        "models:\n  m:\n    source: m.onnx\n    plugins: [{path: /opt/x.so, sha256: nothex}]\n"
    ).lines()
    assert len(lines) == 1 and "builds.yaml:4: models.m.plugins.0.sha256: String should match pattern" in lines[0], (
        lines
    )


def test_a_bad_plugin_path_names_the_field(project: ProjectDir) -> None:
    conv_net(project.root / "m.onnx")
    stderr = project.refuses("models:\n  m:\n    source: m.onnx\n    plugins: [plugins/libmissing.so]\n").stderr
    assert "builds.yaml:4: models.m.plugins:" in stderr and "libmissing.so does not exist" in stderr
