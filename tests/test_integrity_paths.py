"""Integrity under attack and accident: outputs that would overwrite inputs or trtbuild's own files,
derived names that collide, symlinks swapped in while a run writes, plugins from outside the project,
pinned files rewritten behind the stat cache or swapped between the check and the load.

Built like the kill and hostile-input tests: real files, real ``trtbuild`` processes, real symlinks swapped
by a helper while the run goes on.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ProjectDir, child_of, write_widthfile_recipe
from onnx_models import conv_net

TESTS = Path(__file__).parent


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


def files_under(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*"))


def refused(project: ProjectDir, manifest: str) -> list[str]:
    """Run ``trtbuild all`` on ``manifest``: exit 2, one line per problem, nothing written, manifest intact."""
    path = project.write_manifest(manifest)
    before = path.read_bytes()
    run = project.trtbuild("all")
    assert run.code == 2, (run.stdout, run.stderr)
    assert "Traceback" not in run.stderr
    assert path.read_bytes() == before
    for written in ("builds.lock", "engines", "exports"):
        assert not (project.root / written).exists(), written
    return [line.removeprefix("trtbuild: ") for line in run.stderr.strip().splitlines()]


# --- outputs over inputs and trtbuild's own files ------------------------------------------------


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("builds.yaml", "builds.yaml:4: models.a.output: 'builds.yaml' is the manifest builds.yaml"),
        ("builds.lock", "builds.yaml:4: models.a.output: 'builds.lock' is the lock builds.lock"),
        ("b.onnx", "builds.yaml:4: models.a.output: 'b.onnx' is the source of model 'b'"),
        ("./sub/../b.onnx", "builds.yaml:4: models.a.output: './sub/../b.onnx' is the source of model 'b'"),
        ("exports/b.onnx", "builds.yaml:4: models.a.output: 'exports/b.onnx' is trtbuild's exports folder exports/"),
        ("reports/b.accuracy.json", "is trtbuild's reports folder reports/"),
        (".trtbuild/statcache.json", "is trtbuild's state folder .trtbuild/"),
        ("locks/x86-rtx.lock", "is the device locks folder locks/"),
        ("devices/jetson.yaml", "is the device manifests folder devices/"),
        ("recipes/widthfile.py", "is the project recipes folder recipes/"),
        ("plugins/libfake.so", "is a plugin of model 'b'"),
    ],
)
def test_an_output_over_an_input_or_trtbuilds_own_files_is_refused(
    project: ProjectDir, output: str, expected: str
) -> None:
    conv_net(project.root / "a.onnx")
    conv_net(project.root / "b.onnx", seed=1)
    (project.root / "plugins").mkdir()
    (project.root / "plugins/libfake.so").write_bytes(b"not loaded")
    lines = refused(
        project,
        f"""
        models:
          a:
            source: a.onnx
            output: {output}
          b: {{source: b.onnx, plugins: [plugins/libfake.so]}}
    """,
    )
    assert len(lines) == 1 and expected in lines[0], lines
    assert "an engine must not overwrite an input or trtbuild's own files" in lines[0]
    assert (project.root / "plugins/libfake.so").read_bytes() == b"not loaded"


def test_an_output_inside_the_source_cache_is_refused(project: ProjectDir) -> None:
    conv_net(project.root / "a.onnx")
    cache = project.root / "cache"
    project.write_manifest("models:\n  a:\n    source: a.onnx\n    output: cache/sources/x\n")
    run = project.trtbuild("all", env={"TRTBUILD_CACHE": str(cache)})
    assert run.code == 2 and "builds.yaml:4: models.a.output: 'cache/sources/x' is the source cache" in run.stderr


def test_an_output_over_a_calibration_image_is_refused(project: ProjectDir) -> None:
    conv_net(project.root / "a.onnx")
    lines = refused(
        project,
        """
        models:
          a:
            source: a.onnx
            output: photos/cat.png
            precision: int8
            calibration: {images: {glob: photos/*.png}}
            validation: {images: {glob: held-out/*.png}}
    """,
    )
    assert lines == [
        "builds.yaml:4: models.a.output: 'photos/cat.png' is an image of model 'a' (photos/*.png); "
        "an engine must not overwrite an input or trtbuild's own files"
    ]


def test_two_outputs_that_are_one_file_after_normalisation_are_refused(project: ProjectDir) -> None:
    conv_net(project.root / "a.onnx")
    conv_net(project.root / "b.onnx", seed=1)
    lines = refused(
        project,
        """
        models:
          a: {source: a.onnx, output: engines/a.engine}
          b: {source: b.onnx, output: engines/x/../a.engine}
    """,
    )
    assert lines == ["builds.yaml:3: models.b.output: engine path a.engine is also the output of model 'a'"]


def test_two_outputs_that_are_one_file_through_a_symlink_are_refused(project: ProjectDir) -> None:
    conv_net(project.root / "a.onnx")
    conv_net(project.root / "b.onnx", seed=1)
    (project.root / "engines").mkdir()
    (project.root / "alias").symlink_to("engines", target_is_directory=True)
    project.write_manifest("""
        models:
          a: {source: a.onnx}
          b: {source: b.onnx, output: alias/a.engine}
    """)
    run = project.trtbuild("all")
    assert (
        run.code == 2
        and "builds.yaml:3: models.b.output: engine path a.engine is also the output of model 'a'" in run.stderr
    )
    assert list((project.root / "engines").iterdir()) == []


def test_derived_names_that_collide_across_models_are_refused(project: ProjectDir) -> None:
    write_widthfile_recipe(project.root)
    (project.root / "width.txt").write_text("8")
    conv_net(project.root / "a.onnx")
    lines = refused(
        project,
        """
        models:
          a: {source: a.onnx, precision: fp16, fp16_via: onnx}
          a.fp16: {source: width.txt, recipe: widthfile}
    """,
    )
    assert (
        "builds.yaml:3: models.a.fp16: its export exports/a.fp16.onnx is also the fp16 ONNX of model 'a'; "
        "rename one of the models" in lines
    )
    assert (
        "builds.yaml:3: models.a.fp16: its engine log .trtbuild/logs/a.fp16.log is also the fp16 log of model 'a'; "
        "rename one of the models" in lines
    )


def test_derived_log_names_that_collide_are_refused(project: ProjectDir) -> None:
    write_widthfile_recipe(project.root)
    (project.root / "width.txt").write_text("8")
    conv_net(project.root / "b.onnx")
    lines = refused(
        project,
        """
        models:
          a: {source: width.txt, recipe: widthfile}
          a.export: {source: b.onnx}
    """,
    )
    assert lines == [
        "builds.yaml:3: models.a.export: its engine log .trtbuild/logs/a.export.log is also the export log "
        "of model 'a'; rename one of the models"
    ]


def test_models_sharing_one_export_are_not_a_collision(project: ProjectDir) -> None:
    write_widthfile_recipe(project.root)
    (project.root / "width.txt").write_text("8")
    project.write_manifest("""
        defaults: {workspace: 128MiB}
        models:
          w32: {source: width.txt, recipe: widthfile}
          w16: {source: width.txt, recipe: widthfile, precision: fp16, fp16_via: onnx}
    """)
    run = project.trtbuild("all")
    assert run.code == 0, run.stderr


# --- symlinks out of the project, present before the run or swapped in during it -----------------


def exported_fleet(project: ProjectDir, output: str = "out/a.engine") -> None:
    conv_net(project.root / "a.onnx", channels=16)
    write_widthfile_recipe(project.root)
    (project.root / "width.txt").write_text("12")
    project.write_manifest(f"""
        defaults: {{workspace: 128MiB}}
        models:
          a: {{source: a.onnx, output: {output}}}
          exported: {{source: width.txt, recipe: widthfile}}
    """)


def test_exports_symlinked_out_of_the_project_fail_the_export_cleanly(
    project: ProjectDir, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside")
    exported_fleet(project)
    (project.root / "exports").symlink_to(outside, target_is_directory=True)
    run = project.trtbuild("all", "--json")
    assert run.code == 1, run.stderr
    assert "Traceback" not in run.stderr
    models = run.json()["models"]
    assert models["a"]["status"] == "built" and (project.root / "out/a.engine").is_file()
    assert models["exported"]["status"] == "failed"
    reason = models["exported"]["reasons"][0]
    assert reason.startswith(f"refusing to write {project.root}/exports/exported.onnx: it resolves to {outside}")
    assert "outside the project folder" in reason and "\n" not in reason
    assert files_under(outside) == []


def test_the_state_folder_symlinked_out_of_the_project_is_refused_before_anything_is_written(
    project: ProjectDir, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside")
    exported_fleet(project)
    (project.root / ".trtbuild").symlink_to(outside, target_is_directory=True)
    for command in (("all",), ("plan",), ("clean",)):
        run = project.trtbuild(*command)
        assert run.code == 2, (command, run.stderr)
        assert f"builds.yaml: .trtbuild/ resolves to {outside}, outside the project folder" in run.stderr
        assert "Traceback" not in run.stderr
    assert files_under(outside) == []  # no run lock, stat cache, stamp or log
    assert not (project.root / "builds.lock").exists()


def test_a_folder_swapped_for_a_symlink_while_the_engine_is_built_keeps_the_engine_inside(
    project: ProjectDir, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside")
    exported_fleet(project)
    (project.root / "out").mkdir()
    process = start(project, "build", "a", "--json")
    child_of(project, "trtbuild.builder.child")  # validation done, the partial engine exists: swap now
    os.rename(project.root / "out", project.root / "out.real")
    (project.root / "out").symlink_to(outside, target_is_directory=True)
    stdout, stderr = process.communicate(timeout=300)
    assert files_under(outside) == [], "the engine was published outside the project"
    assert process.returncode == 0, stderr
    assert (project.root / "out.real/a.engine").is_file()  # the folder that was checked, wherever it is now
    assert [path.name for path in (project.root / "out.real").iterdir()] == ["a.engine"]


def test_exports_swapped_for_a_symlink_while_exporting_keep_the_export_inside(
    project: ProjectDir, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside")
    exported_fleet(project)
    (project.root / "exports").mkdir()
    process = start(project, "build", "exported")
    child_of(project, "trtbuild.export.child")
    os.rename(project.root / "exports", project.root / "exports.real")
    (project.root / "exports").symlink_to(outside, target_is_directory=True)
    stdout, stderr = process.communicate(timeout=300)
    assert files_under(outside) == [], stderr
    assert process.returncode in (0, 1) and "Traceback" not in stderr, stdout + stderr
    if process.returncode == 1:  # the engine step reads exports/ after the swap: what it finds there is nothing
        assert "engine   exported  FAILED after" in stdout and (
            "onnx missing" in stdout or "refusing to write" in stdout
        ), stdout
    assert (project.root / "exports.real/exported.onnx").is_file()


SWAPPER = textwrap.dedent("""
    import os, sys, time
    folder, outside, stop = sys.argv[1:4]
    real = folder + ".real"
    while not os.path.exists(stop):
        os.rename(folder, real)
        os.symlink(outside, folder)
        time.sleep(0.003)
        os.unlink(folder)
        os.rename(real, folder)
        time.sleep(0.003)
""")


def test_a_folder_swapped_for_a_symlink_in_a_loop_never_gets_anything_written_outside(
    project: ProjectDir, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside")
    exported_fleet(project)
    (project.root / "out").mkdir()
    stop = project.root.parent / f"{project.root.name}.stop"
    swapper = subprocess.Popen([sys.executable, "-c", SWAPPER, str(project.root / "out"), str(outside), str(stop)])
    codes = []
    try:
        for _ in range(6):
            for name in ("builds.lock",):
                (project.root / name).unlink(missing_ok=True)
            run = project.trtbuild("all", "--json")
            codes.append(run.code)
            assert run.code in (0, 1, 2), run.stderr
            assert "Traceback" not in run.stderr and "internal error" not in run.stdout
            if run.code == 2:  # the manifest check saw the symlink
                assert "models.a.output: 'out/a.engine' is outside the project folder" in run.stderr
            elif run.code == 1 and not run.stdout:
                # The swap hit trtbuild's own bookkeeping after the steps (a state file refused, or the
                # engine under out/ gone from under it): cli.main._guarded prints one error line on stderr
                # and no JSON summary.
                errors = [line for line in run.stderr.splitlines() if line.startswith("trtbuild: ")]
                assert len(errors) == 1 and run.stderr.rstrip().endswith(errors[0]), run.stderr
                assert f"{project.root}/out/" in errors[0], run.stderr
                assert any(words in errors[0] for words in ("refusing to write", "cannot write", "[Errno")), run.stderr
            else:
                reasons = run.json()["models"]["a"]["reasons"]
                assert run.json()["models"]["a"]["status"] == "built" or any(
                    "refusing to write" in r for r in reasons
                ), reasons
            assert files_under(outside) == [], codes
    finally:
        stop.touch()
        swapper.wait(timeout=10)
    assert (project.root / "out").is_dir() and not (project.root / "out").is_symlink()
    assert files_under(outside) == []
    if 0 in codes:
        assert [path.name for path in (project.root / "out").iterdir() if not path.name.endswith(".partial")] == [
            "a.engine"
        ]


def test_a_log_file_symlinked_out_is_refused_not_followed(
    project: ProjectDir, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside")
    victim = outside / "victim.txt"
    victim.write_text("precious")
    exported_fleet(project)
    (project.root / ".trtbuild/logs").mkdir(parents=True)
    (project.root / ".trtbuild/logs/a.log").symlink_to(victim)
    run = project.trtbuild("all", "--json")
    assert run.code == 1 and "Traceback" not in run.stderr
    assert run.json()["models"]["a"]["reasons"] == [
        f"refusing to write {project.root}/.trtbuild/logs/a.log: it is a symlink"
    ]
    assert victim.read_text() == "precious"


# --- plugins --------------------------------------------------------------------------------------


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
    lines = refused(project, f"models:\n  m:\n    source: m.onnx\n    plugins: [{library}]\n")
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
    process = start(project, "all", "--json")
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
    lines = refused(project, "models:\n  m:\n    source: m.onnx\n    plugins: [{path: /opt/x.so, sha256: nothex}]\n")
    assert len(lines) == 1 and "builds.yaml:4: models.m.plugins.0.sha256: String should match pattern" in lines[0], (
        lines
    )


# --- pins checked on the bytes, where the bytes are used ----------------------------------------

PICKLE_RECIPE = '''
"""A recipe that loads a pickle, as torch.load does: it needs a pinned source."""
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

VERSION = 1
EXTRA = "none"
REQUIRES = ("onnx",)
EXPORTERS = ("onnx",)
NEEDS_PIN = True


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seed: int = 0


def export(source: Path, output: Path, params: Params, context: Any) -> None:
    import pickle
    import sys
    sys.path.insert(0, {tests!r})
    from onnx_models import conv_net
    weights = pickle.loads(source.read_bytes())
    conv_net(output, batch=1, channels=int(weights["width"]), seed=params.seed)
'''


class Payload:
    """Unpickling this runs a shell command: what a hostile checkpoint does."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (self.command,)


def checkpoints(marker: Path) -> tuple[bytes, bytes]:
    """A good pickle and a hostile one of exactly the same size."""
    good = pickle.dumps({"width": 12, "pad": ""}, protocol=4)
    command = f"touch {marker}"
    evil = pickle.dumps(Payload(command), protocol=4)
    pad = 0
    while len(good) != len(evil):
        if len(good) < len(evil):
            pad += 1
            good = pickle.dumps({"width": 12, "pad": "x" * pad}, protocol=4)
        else:
            command += " "
            evil = pickle.dumps(Payload(command), protocol=4)
    return good, evil


def pickle_project(project: ProjectDir, good: bytes, seed: int = 0) -> str:
    (project.root / "recipes").mkdir(exist_ok=True)
    (project.root / "recipes/pickled.py").write_text(PICKLE_RECIPE.format(tests=str(TESTS)))
    (project.root / "model.pt").write_bytes(good)
    pin = hashlib.sha256(good).hexdigest()
    write_pickle_manifest(project, pin, seed)
    return pin


def write_pickle_manifest(project: ProjectDir, pin: str, seed: int) -> None:
    project.write_manifest(f"""
        defaults: {{workspace: 128MiB}}
        models:
          net:
            source: {{path: model.pt, sha256: {pin}}}
            recipe: {{name: pickled, seed: {seed}}}
    """)


def test_a_pinned_file_rewritten_behind_the_stat_cache_is_not_loaded(
    project: ProjectDir, tmp_path_factory: pytest.TempPathFactory
) -> None:
    marker = tmp_path_factory.mktemp("outside") / "pickle-ran"
    good, evil = checkpoints(marker)
    pin = pickle_project(project, good)
    assert project.trtbuild("all").code == 0
    source = project.root / "model.pt"
    before = source.stat()
    with open(source, "r+b") as handle:  # in place: same inode, same size
        handle.write(evil)
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (source.stat().st_ino, source.stat().st_size, source.stat().st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    write_pickle_manifest(project, pin, seed=1)  # the export is stale: the recipe would load the source
    run = project.trtbuild("all")
    assert not marker.exists(), "the pickle ran"
    assert run.code == 2, run.stderr
    assert (
        f"builds.yaml:4: models.net.source: model.pt has sha256 {hashlib.sha256(evil).hexdigest()}, "
        f"not the pinned {pin}" in run.stderr
    )


def test_a_pinned_file_swapped_between_the_check_and_the_load_is_not_loaded(
    project: ProjectDir, tmp_path_factory: pytest.TempPathFactory
) -> None:
    marker = tmp_path_factory.mktemp("outside") / "pickle-ran"
    good, evil = checkpoints(marker)
    pin = pickle_project(project, good)
    process = start(project, "all", "--json")
    child_of(project, "trtbuild.export.child")  # every check of the parent passed: swap now
    replacement = project.root / "model.pt.new"
    replacement.write_bytes(evil)
    os.replace(replacement, project.root / "model.pt")
    stdout, stderr = process.communicate(timeout=300)
    assert not marker.exists(), "the pickle ran"
    assert process.returncode == 1, stderr
    reason = json.loads(stdout)["models"]["net"]["reasons"][0]
    assert (
        reason == f"source {project.root}/model.pt: sha256 {hashlib.sha256(evil).hexdigest()} "
        f"is not the pinned {pin}; not loaded"
    )
    assert not (project.root / "exports/net.onnx").exists()
