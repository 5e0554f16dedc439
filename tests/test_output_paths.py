"""Where outputs may go: never over an input, the source cache or trtbuild's own files, never two outputs
in one file, never outside the project through a symlink, present before the run or swapped in while it writes.

Real files, real ``trtbuild`` processes, real symlinks swapped by a helper while the run goes on.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ProjectDir, child_of, write_widthfile_recipe
from onnx_models import conv_net

# --- outputs over inputs and trtbuild's own files -------------------------------------------------


def files_under(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*"))


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
    lines = project.refuses(
        f"""
        models:
          a:
            source: a.onnx
            output: {output}
          b: {{source: b.onnx, plugins: [plugins/libfake.so]}}
    """,
    ).lines()
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
    lines = project.refuses(
        """
        models:
          a:
            source: a.onnx
            output: photos/cat.png
            precision: int8
            calibration: {images: {glob: photos/*.png}}
            validation: {images: {glob: held-out/*.png}}
    """,
    ).lines()
    assert lines == [
        "builds.yaml:4: models.a.output: 'photos/cat.png' is an image of model 'a' (photos/*.png); "
        "an engine must not overwrite an input or trtbuild's own files"
    ]


# --- two outputs in one file ----------------------------------------------------------------------


def test_two_outputs_that_are_one_file_after_normalisation_are_refused(project: ProjectDir) -> None:
    conv_net(project.root / "a.onnx")
    conv_net(project.root / "b.onnx", seed=1)
    lines = project.refuses(
        """
        models:
          a: {source: a.onnx, output: engines/a.engine}
          b: {source: b.onnx, output: engines/x/../a.engine}
    """,
    ).lines()
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
    lines = project.refuses(
        """
        models:
          a: {source: a.onnx, precision: fp16, fp16_via: onnx}
          a.fp16: {source: width.txt, recipe: widthfile}
    """,
    ).lines()
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
    lines = project.refuses(
        """
        models:
          a: {source: width.txt, recipe: widthfile}
          a.export: {source: b.onnx}
    """,
    ).lines()
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


# --- symlinks out of the project, present before the run or swapped in during it ------------------


def test_an_engine_output_behind_a_symlink_pointing_out_is_refused(
    project: ProjectDir, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside")
    (project.root / "out").symlink_to(outside, target_is_directory=True)
    conv_net(project.root / "m.onnx")
    stderr = project.refuses("models:\n  m:\n    source: m.onnx\n    output: out/m.engine\n").stderr
    assert "builds.yaml:4: models.m.output: 'out/m.engine' is outside the project folder" in stderr
    assert list(outside.iterdir()) == []


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
    process = project.start("build", "a", "--json")
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
    process = project.start("build", "exported")
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
