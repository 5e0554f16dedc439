"""What runs print: progress that names each step and model, per-step times and a total, one line for a
no-op on both paths, failures and interruptions said once and rightly, the --json shape, a closed pipe,
plan and run in the same words, tables that fit. Real CLI, real ONNX, real engines."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

from conftest import ProjectDir, user_env, write_widthfile_recipe
from onnx_models import conv_net, deep_net
from test_build import _age_project, _imports_of_all
from test_faults import builder_child

STREET = "{package: ultralytics, glob: 'assets/*.jpg'}"
LAST_LINE = re.compile(r"^(\d+ \w+(, \d+ \w+)*) in \d+(\.\d)?\w+ \(engines/ on x86-rtx: tensorrt-rtx \S+\)$")


def fleet(project: ProjectDir) -> ProjectDir:
    """A plain engine, an FP16-converted one (an FP16 ONNX on TensorRT-RTX), one through an export recipe."""
    for index in range(2):
        conv_net(project.root / f"m{index}.onnx", batch=1, seed=index, channels=16)
    write_widthfile_recipe(project.root)
    (project.root / "width.txt").write_text("12")
    project.write_manifest("""
        defaults: {workspace: 128MiB}
        models:
          m0: {source: m0.onnx}
          m1: {source: m1.onnx, precision: fp16}
          exported: {source: width.txt, recipe: {name: widthfile, seed: 5}}
    """)
    return project


def test_progress_names_every_step_and_the_summary_times_them(project: ProjectDir) -> None:
    fleet(project)
    run = project.trtbuild("all", "-j", "2")
    assert run.code == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    for start_line in (
        "export   exported  (never exported)",
        "fp16     m1  (never converted)",
        "engine   m0  (never built)",
        "engine   m1  (never built)",
        "engine   exported  (never built)",
    ):
        assert start_line in lines, run.stdout
    for step, model in (
        ("export", "exported"),
        ("fp16", "m1"),
        ("engine", "m0"),
        ("engine", "m1"),
        ("engine", "exported"),
    ):
        assert any(re.fullmatch(rf"{step:<8} {model}  built in \d+\.\ds", line) for line in lines), (
            step,
            model,
            run.stdout,
        )
    block = lines[lines.index(next(line for line in lines if line.startswith("built       m1"))) :]
    size = (project.root / "engines/m1.engine").stat().st_size
    assert re.fullmatch(r"built       m1 +\d+\.\ds +\d+ KiB  engines/m1\.engine", block[0]), block
    assert (
        re.fullmatch(r" {12}fp16 \d+\.\ds, engine \d+\.\ds", block[1])
        and block[2] == " " * 12 + "fp16: never converted; never built"
    )
    assert size > 10_000
    assert LAST_LINE.match(lines[-1]) and lines[-1].startswith("3 built in "), lines[-1]


def test_a_no_op_is_one_line_and_json_has_the_same_shape_on_both_paths(project: ProjectDir) -> None:
    fleet(project)
    built = project.trtbuild("all", "--json")
    assert built.code == 0, built.stderr
    full = project.trtbuild("build", "m0", "m1", "exported")  # `build` never takes the fast path
    assert full.code == 0 and len(full.stdout.splitlines()) == 1 and LAST_LINE.match(full.stdout.strip()), full.stdout
    assert full.stdout.startswith("3 fresh in ")
    full_json = project.trtbuild("build", "m0", "m1", "exported", "--json").json()
    _age_project(project)
    assert project.trtbuild("all").code == 0  # writes a trusted stamp
    modules, fast = _imports_of_all(project)
    assert "pydantic" not in modules and "click" not in modules  # the fast path answered
    fast_json = fast.json()
    assert fast.stderr.strip() == ""  # --json: no human summary on stderr
    plain = project.trtbuild("all")
    assert len(plain.stdout.splitlines()) == 1 and LAST_LINE.match(plain.stdout.strip()), plain.stdout
    for document in (full_json, fast_json):
        assert set(document) == {"device", "environment", "seconds", "models"}
        assert document["device"] == "x86-rtx" and document["environment"]["builder"] == "tensorrt-rtx"
        assert document["seconds"] > 0
    assert full_json["environment"] == fast_json["environment"]
    for name, model in fast_json["models"].items():
        assert model == {**full_json["models"][name], "seconds": model["seconds"]}
        assert model["size"] == (project.root / model["engine"]).stat().st_size and model["steps"] == []


def test_json_holds_steps_sizes_and_accuracy_figures(project: ProjectDir) -> None:
    conv_net(project.root / "net.onnx", batch="N", seed=4, size=64)
    project.write_manifest(f"""
        models:
          net-fp16:
            source: net.onnx
            precision: fp16
            fp16_via: onnx
            inputs: {{input: {{min: [1, 3, 64, 64], opt: [1, 3, 64, 64], max: [2, 3, 64, 64]}}}}
            validation: {{images: {STREET}, count: 2, crops: 1}}
            workspace: 128MiB
            tolerance: {{cosine_min: 0.99}}
          plain: {{source: net.onnx, inputs: {{input: [1, 3, 64, 64]}}, workspace: 128MiB}}
    """)
    run = project.trtbuild("all", "--json")
    assert run.code == 0, run.stderr
    assert not re.search(r"^\d+ built", run.stderr, re.MULTILINE)  # progress on stderr, never the summary
    assert "engine   plain  (never built)" in run.stderr.splitlines()
    document = run.json()
    assert document["environment"] == {
        key: value
        for key, value in __import__("json").loads(project.trtbuild("env", "--json").stdout).items()
        if key != "device"
    }
    gated = document["models"]["net-fp16"]
    assert [(step["step"], step["status"]) for step in gated["steps"]] == [
        ("fp16", "built"),
        ("accuracy", "built"),
        ("engine", "built"),
    ]
    assert all(step["seconds"] > 0 for step in gated["steps"])
    assert abs(gated["seconds"] - sum(step["seconds"] for step in gated["steps"])) < 0.01
    assert gated["size"] == (project.root / gated["engine"]).stat().st_size
    accuracy = gated["accuracy"]
    assert accuracy["passed"] is True and accuracy["report"] == "reports/net-fp16.accuracy.json"
    assert list(accuracy["cosine"]) == ["output"] and accuracy["cosine"]["output"] > 0.99
    assert "accuracy" not in document["models"]["plain"]


def test_a_failure_is_said_once_and_its_dependents_are_not_reported(project: ProjectDir) -> None:
    fleet(project)
    (project.root / "width.txt").write_text("not a number")
    run = project.trtbuild("all")
    assert run.code == 1
    lines = run.stdout.splitlines()
    failures = [line for line in lines if "FAILED" in line]
    assert len(failures) == 1 and failures[0].startswith("export   exported  FAILED after "), run.stdout
    assert not any(line.startswith(("skipped", "engine   exported")) for line in lines), run.stdout
    assert "did not succeed" not in run.stdout
    assert any(line.startswith("failed      exported") for line in lines)
    assert lines[-1].startswith("2 built, 1 failed in ")
    models = project.trtbuild("all", "--json").json()["models"]
    assert [(s["step"], s["status"]) for s in models["exported"]["steps"]] == [
        ("export", "failed"),
        ("engine", "skipped"),
    ]


def test_ctrl_c_says_interrupted_not_failed(project: ProjectDir) -> None:
    deep_net(project.root / "m0.onnx", layers=300)
    project.write_manifest("models:\n  m0: {source: m0.onnx, workspace: 128MiB}\n")
    seen = []
    for _ in range(5):  # a builder may finish its last write before the stop reaches it; then `built` is the truth
        process = project.start("all")
        builder_child(project)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 130, stderr
        assert "FAILED" not in stdout and "failed" not in stdout, stdout
        seen.append(stdout)
        if re.search(r"^engine   m0  interrupted after \d+\.\ds$", stdout, re.MULTILINE):
            break
        project.trtbuild("clean")
    else:
        raise AssertionError(f"no run was interrupted mid-build: {seen}")


def test_a_closed_output_pipe_ends_quietly(project: ProjectDir) -> None:
    fleet(project)
    assert project.trtbuild("all").code == 0
    _age_project(project)
    assert project.trtbuild("all").code == 0  # a trusted stamp: the next `all` takes the fast path
    env = user_env(None)
    for command in (["all", "--json"], ["build", "m0", "--json"], ["plan", "--json"]):  # fast path, then full path
        read, write = os.pipe()
        os.close(read)  # the reader is gone before anything is written, as `| head -c 10` is after 10 bytes
        done = subprocess.run(
            [sys.executable, "-m", "trtbuild", *command],
            cwd=project.root,
            env=env,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
        os.close(write)
        assert done.returncode == 141, (command, done.stderr)
        assert done.stderr == "", (command, done.stderr)


def test_plan_and_run_give_the_same_reasons(project: ProjectDir) -> None:
    fleet(project)
    plan = project.trtbuild("plan", "--json").json()["models"]
    run = project.trtbuild("all", "--json").json()["models"]
    assert {name: model["reasons"] for name, model in plan.items()} == {
        name: model["reasons"] for name, model in run.items()
    }
    assert run["m1"]["reasons"] == ["fp16: never converted", "never built"]
    manifest = project.root / "builds.yaml"
    manifest.write_text(manifest.read_text().replace("workspace: 128MiB", "workspace: 64MiB"))
    plan = project.trtbuild("plan", "--json").json()["models"]
    run = project.trtbuild("all", "--json").json()["models"]
    assert {name: model["reasons"] for name, model in plan.items()} == {
        name: model["reasons"] for name, model in run.items()
    }


def test_audit_rebuild_names_the_engine_it_rebuilds(project: ProjectDir) -> None:
    conv_net(project.root / "m0.onnx", batch=1, seed=0)
    project.write_manifest("models:\n  m0: {source: m0.onnx, workspace: 128MiB}\n")
    assert project.trtbuild("all").code == 0
    run = project.trtbuild("audit", "--rebuild")
    lines = run.stdout.splitlines()
    assert lines[0] == "rebuilding m0 (engines/m0.engine)", run.stdout
    assert re.fullmatch(r"rebuilt m0: (byte-identical|structurally identical) in \d+\.\ds", lines[1]), run.stdout


def test_accuracy_table_fits_the_terminal_or_becomes_blocks() -> None:
    from trtbuild.cli.render import accuracy_table

    report = {
        "precision": "int8",
        "images": 6,
        "passed": False,
        "emulation": {"kinds": ["int8-fake-quant", "fp16-storage"]},
        "outputs": {
            "output0": {"cosine": 0.9987, "max_abs": 0.31, "peak": 12.4},
            "output1": {"cosine": 0.97, "max_abs": 1.5, "peak": 3.0},
        },
        "detection_agreement": 0.875,
        "detections": 8,
        "failures": ["output1 cosine 0.970000 < 0.999"],
    }
    wide = accuracy_table({"yolo-face-int8": report}, width=200).splitlines()
    assert wide[0].split() == [
        "model",
        "prec",
        "emulation",
        "imgs",
        "output",
        "rel",
        "err",
        "cosine",
        "max|err|",
        "/",
        "peak",
        "agreement",
        "verdict",
    ]
    assert len(wide) == 4 and all(len(line) <= 200 for line in wide)
    assert wide[2].split()[:5] == ["yolo-face-int8", "int8", "int8-fake-quant+fp16-storage", "6", "output1"]
    narrow = accuracy_table({"yolo-face-int8": report}, width=60).splitlines()
    assert all(len(line) <= 60 for line in narrow), narrow
    assert (
        narrow[0] == "yolo-face-int8"
        and "  cosine:          0.970000" in narrow
        and "  rel err:         -" in narrow  # an old report without the figure
        and narrow[-1].endswith("output1 cosine 0.970000 < 0.999")
    )
