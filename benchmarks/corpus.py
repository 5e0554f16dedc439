"""A corpus run: public models nobody in this project wrote, each in FP32, FP16 and INT8, through ``trtbuild all``.

    .venv/bin/python benchmarks/corpus.py [--work /tmp/trtbuild-corpus] [--only light,node,ultralytics,mediapipe]
    .venv/bin/python benchmarks/corpus.py --classify benchmarks/results/corpus-<date>.json   # re-print a run

The corpus (~40 models):

- ``light``: the nine ``light_*.onnx`` models of the onnx wheel (``onnx/backend/test/data/light``);
- ``node``: ONNX's node test models (``node/*/model.onnx``). The onnx wheel ships neither them nor their
  generators, so they are generated from the same version's sdist (``pip download --no-binary onnx``) with
  its own ``onnx.backend.test.case.node`` cases. Rule: one to three graph inputs (initializers excluded),
  all float32 with static dims, the first of rank 4; only float32 outputs; not an ``_expanded`` variant; of
  those, the alphabetically first test of each operator set (Conv, ConvTranspose, MatMul, GridSample ...
  take their weights or second operand as further graph inputs there);
- ``ultralytics``: Ultralytics model YAMLs with random weights (seed 0), exported at imgsz 64, opset 17;
- ``mediapipe``: three ``.tflite`` members of the mediapipe==0.10.21 wheel, through ``recipe: tflite``.

Each model is declared three times in a scratch project under ``--work`` (never inside the repo): FP32;
FP16 with ``fp16_via: onnx`` and ``validation:``; INT8 with ``calibration:`` and ``validation:``. A model with
one rank-4 NCHW float input of 1 or 3 channels (an image) is calibrated on photos and validated on others
(``CALIBRATION``, ``VALIDATION``); any other model is calibrated and validated on ``.npz`` files the
script writes into the project (``calibration: {npy: ...}``, ``validation: {npy: ...}``), one array per
input: the first input seeded uniform values in [0, 1) (seed 0 for calibration, 1 for validation), every
further input of a node test the test's own values (``test_data_set_0``: they are weights, scales or a
second operand, not data).
One ``python -m trtbuild all -j 1 --json`` per corpus group; one row per model and precision is printed with
the first line of its ``reasons``, then the counts per failure class (``CLASSES``: the first pattern that
matches a reason). Results go to ``benchmarks/results/corpus-<date>.json`` and ``corpus-latest.md``.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TRTBUILD = [PYTHON, "-m", "trtbuild"]
GROUPS = ("light", "node", "ultralytics", "mediapipe")
PRECISIONS = ("fp32", "fp16", "int8")
VERSIONS = ("tensorrt-rtx", "tensorrt_rtx_cu13", "onnx", "onnxruntime", "nvidia-modelopt", "ultralytics", "polygraphy")

CALIBRATION = {
    "images": {
        "package": "skimage",
        "glob": ["data/astronaut.png", "data/camera.png", "data/chelsea.png", "data/coffee.png"],
    },
    "count": 8,
    "crops": 2,
}
VALIDATION = {"images": {"package": "ultralytics", "glob": "assets/*.jpg"}, "count": 12, "crops": 6}
#: Models that take no image: .npz files written by this script, per sample kind: (seed, how many).
ARRAYS = {"calibration": (0, 8), "validation": (1, 12)}

#: Caffe2 ImageNet models: BGR in [0, 255] less the ImageNet mean.
CAFFE2 = {"color": "bgr", "scale": 1.0, "mean": [103.94, 116.78, 123.68], "std": [1.0]}
ULTRALYTICS = ("yolov8n", "yolo11n", "yolo11n-pose", "yolo11n-seg", "yolov10n")
ULTRALYTICS_IMGSZ = 64
MEDIAPIPE = "mediapipe==0.10.21"
#: member -> (sha256, preprocess): face detection takes [-1, 1], the others [0, 1].
MEDIAPIPE_MEMBERS = {
    "mediapipe/modules/face_detection/face_detection_short_range.tflite": (
        "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
        {"scale": 2.0 / 255.0, "mean": [1.0], "std": [1.0]},
    ),
    "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite": (
        "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c",
        {},
    ),
    "mediapipe/modules/hand_landmark/hand_landmark_lite.tflite": (
        "048edd3645c9bf7397d19a9f6e3a42957d6e414c9bea6598030a2e9b624156e6",
        {},
    ),
}
NOT_IMAGE = "not applicable: takes no image and its float inputs are not known"

#: Failure classes, by the first reason line; the first pattern that matches wins (checked in order).
#: Verdicts behind each pattern (a plain Polygraphy build, the package that raised) are in docs/precision.md.
CLASSES: list[tuple[str, str]] = [
    ("not applicable", r"^not applicable"),
    # the gate's verdicts: an output that does not depend on the input (random weights, light_* models)
    ("cannot judge", r"^accuracy gate cannot judge"),
    # an error beyond its bound or an FP16 overflow, measured: the gate doing its job
    ("gate fail", r"^accuracy gate failed"),
    # the plain `POLYGRAPHY_USE_TENSORRT_RTX=1 polygraphy convert X.onnx` fails the same way: the parser has no
    # importer or plugin (DFT, DeformConv, FlexAttention), refuses the node's form (LpPool p=4, LayerNormalization
    # with 3 outputs, a float scales input of Resize/Upsample, Celu on an FP16 input), or Myelin has no kernel
    (
        "TensorRT-RTX limit",
        r"ONNX parser rejected .*operator: (DFT|LpPool|DeformConv|FlexAttention|LayerNormalization"
        r"|Resize|Upsample|Celu)",
    ),
    ("TensorRT-RTX limit", r"Attention operation was not supported by a dedicated kernel"),
    # tflite2onnx 0.4.1 has no HARD_SWISH (LiteRT runs the model)
    ("upstream", r"Unsupported TFLite OP"),
    # ONNX Runtime has no kernel for an op of the source (ai.onnx.preview FlexAttention): nothing made from it
    # can be checked or judged (a plain InferenceSession of the source fails the same way)
    ("upstream", r"the source does not load either"),
    # onnxconverter-common converts MeanVarianceNormalization's input to FP16; ONNX Runtime's function body for
    # it keeps FP32 constants (a plain convert_float_to_float16 + InferenceSession fails the same way)
    ("upstream", r"Type parameter \(T\) of Optype \(Add\) bound to different types"),
    # the quantizer found nothing to quantize (single-op graphs): the INT8 step refuses, naming it
    ("nothing to quantize", r"placed no Q/DQ in this model"),
    # failures of trtbuild's own seen in earlier runs, fixed since; a match now is a regression:
    # static batch > 1 fed batch 1 (ONNX Runtime's "Got: 1 Expected: 3", its last line only)
    ("ours", r"Please fix either the inputs/outputs or the model"),
    # a source that fails onnx.checker's full check (onnx's own MeanVarianceNormalization function body)
    ("ours", r"produced an invalid ONNX .*MeanVarianceNormalization"),
    # no Q/DQ published by the INT8 step and refused only by the engine step
    ("ours", r"this ONNX has no Q/DQ layers"),
]
CLASS_ORDER = (
    "built",
    "not applicable",
    "cannot judge",
    "gate fail",
    "TensorRT-RTX limit",
    "upstream",
    "nothing to quantize",
    "ours",
    "unclassified",
)


def say(line: str = "") -> None:
    print(line, flush=True)


def version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def onnx_image_input(path: Path) -> tuple[bool, str]:
    """Whether the ONNX has one rank-4 NCHW float32 input of 1 or 3 channels, static; and the preprocess colour."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {tensor.name for tensor in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]
    if len(inputs) != 1 or inputs[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        return False, ""
    dims = [dim.dim_value if dim.HasField("dim_value") else 0 for dim in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or min(dims) <= 0 or dims[1] not in (1, 3):
        return False, ""
    return True, "gray" if dims[1] == 1 else "rgb"


# --- the corpus -----------------------------------------------------------------------------------


def light_models(sources: Path) -> list[dict[str, Any]]:
    import onnx

    folder = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
    found = []
    for path in sorted(folder.glob("light_*.onnx")):
        target = sources / path.name
        shutil.copyfile(path, target)
        image, _ = onnx_image_input(target)
        found.append({"name": path.stem.replace("_", "-"), "source": target, "image": image, "preprocess": CAFFE2})
    return found


def node_data(cache: Path) -> Path:
    """``node/`` test data generated from the installed onnx version's sdist (once, into ``cache``)."""
    out = cache / "onnxdata"
    if (out / "node").is_dir():
        return out / "node"
    onnx_version = version("onnx")
    sdist_dir = cache / "onnx-sdist"
    sdist_dir.mkdir(parents=True, exist_ok=True)
    tarballs = list(sdist_dir.glob(f"onnx-{onnx_version}.tar.gz"))
    if not tarballs:
        say(f"fetching the onnx=={onnx_version} sdist (its node test cases) ...")
        subprocess.run(
            [PYTHON, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", "onnx", f"onnx=={onnx_version}", "-d"]
            + [str(sdist_dir)],
            check=True,
        )
        tarballs = list(sdist_dir.glob(f"onnx-{onnx_version}.tar.gz"))
    source_tree = sdist_dir / f"onnx-{onnx_version}"
    subprocess.run(
        ["tar", "xzf", str(tarballs[0]), "-C", str(sdist_dir), f"onnx-{onnx_version}/onnx/backend/test/case"],
        check=True,
    )
    import onnx

    overlay = cache / "onnx-overlay"
    shutil.rmtree(overlay, ignore_errors=True)
    shutil.copytree(Path(onnx.__file__).parent, overlay / "onnx", symlinks=True, copy_function=os.symlink)
    shutil.rmtree(overlay / "onnx" / "backend" / "test" / "case")
    shutil.copytree(source_tree / "onnx" / "backend" / "test" / "case", overlay / "onnx" / "backend" / "test" / "case")
    generate = (
        "import argparse, onnx.backend.test.cmd_tools as tools, onnx.backend.test.case.node as node\n"
        "tools.model_test.collect_testcases = node.collect_testcases\n"
        f"tools.generate_data(argparse.Namespace(output={str(out)!r}))\n"
    )
    say("generating ONNX's node test models ...")
    subprocess.run(
        [PYTHON, "-W", "ignore", "-c", generate], env={**os.environ, "PYTHONPATH": str(overlay)}, check=True, cwd=cache
    )
    return out / "node"


def float_inputs(path: Path) -> dict[str, list[int]] | None:
    """Input name -> static shape, if every graph input (initializers excluded) is float32 with static dims."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {tensor.name for tensor in model.graph.initializer}
    shapes = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        if value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            return None
        dims = [dim.dim_value if dim.HasField("dim_value") else 0 for dim in value.type.tensor_type.shape.dim]
        if not dims or min(dims) <= 0:
            return None
        shapes[value.name] = dims
    return shapes


def node_models(sources: Path, cache: Path) -> list[dict[str, Any]]:
    import onnx

    chosen: dict[str, Path] = {}
    for path in sorted(node_data(cache).glob("*/model.onnx")):
        if path.parent.name.endswith("_expanded") or "_expanded_" in path.parent.name:
            continue
        shapes = float_inputs(path)
        if not shapes or len(shapes) > 3 or len(next(iter(shapes.values()))) != 4:
            continue
        model = onnx.load(str(path))
        if any(output.type.tensor_type.elem_type != onnx.TensorProto.FLOAT for output in model.graph.output):
            continue
        chosen.setdefault(",".join(sorted({node.op_type for node in model.graph.node})), path)
    found = []
    for path in sorted(chosen.values()):
        target = sources / f"{path.parent.name}.onnx"
        shutil.copyfile(path, target)
        image, color = onnx_image_input(target)
        name = "node-" + path.parent.name.removeprefix("test_").replace("_", "-")
        model = {"name": name, "source": target, "image": image, "preprocess": {"color": color} if image else {}}
        if not image:
            model["inputs"] = float_inputs(target)
            model["fixed"] = test_inputs(path.parent, model["inputs"])
        found.append(model)
    return found


EXPORT = """
import os, shutil, sys
from pathlib import Path
os.environ.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="0", YOLO_CONFIG_DIR=str(Path.cwd() / "config"))
from ultralytics.utils import SETTINGS
SETTINGS.update(sync=False)
import torch
from ultralytics import RTDETR, YOLO
for name in {models!r}:
    torch.manual_seed(0)
    model = (RTDETR if name.startswith("rtdetr") else YOLO)(name + ".yaml")
    exported = model.export(
        format="onnx", imgsz={imgsz}, opset=17, simplify=False, dynamic=False, batch=1, device="cpu"
    )
    shutil.move(str(exported), name + ".fp32.onnx")
"""


def ultralytics_models(sources: Path) -> list[dict[str, Any]]:
    folder = sources / "ultralytics"
    folder.mkdir(exist_ok=True)
    missing = [name for name in ULTRALYTICS if not (folder / f"{name}.fp32.onnx").exists()]
    if missing:
        say(f"exporting {', '.join(missing)} at imgsz {ULTRALYTICS_IMGSZ} (random weights) ...")
        done = subprocess.run(
            [PYTHON, "-c", EXPORT.format(models=missing, imgsz=ULTRALYTICS_IMGSZ)],
            cwd=folder,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            say(f"ultralytics export failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    found = []
    for name in ULTRALYTICS:
        path = folder / f"{name}.fp32.onnx"
        if not path.exists():
            continue
        target = sources / f"{name}.onnx"
        shutil.copyfile(path, target)
        image, _ = onnx_image_input(target)
        found.append({"name": name, "source": target, "image": image, "preprocess": {"resize": "letterbox"}})
    return found


def tflite_image_input(data: bytes) -> bool:
    """One rank-4 NHWC float32 input of 1 or 3 channels (tflite2onnx makes it NCHW)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(data, 0)
    graph = model.Subgraphs(0)
    if graph.InputsLength() != 1:
        return False
    tensor = graph.Tensors(graph.Inputs(0))
    shape = [int(value) for value in tensor.ShapeAsNumpy()]
    return tensor.Type() == schema.TensorType.FLOAT32 and len(shape) == 4 and shape[3] in (1, 3)


def mediapipe_models(cache: Path) -> list[dict[str, Any]]:
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    if not list(wheels.glob("mediapipe-*.whl")):
        say(f"fetching the {MEDIAPIPE} wheel (to read its members' input shapes) ...")
        subprocess.run(
            [PYTHON, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", "3.11"]
            + ["--platform", "manylinux_2_28_x86_64", MEDIAPIPE, "-d", str(wheels)],
            check=True,
        )
    wheel = zipfile.ZipFile(sorted(wheels.glob("mediapipe-*.whl"))[0])
    found = []
    for member, (sha256, preprocess) in MEDIAPIPE_MEMBERS.items():
        data = wheel.read(member)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise SystemExit(f"{member}: sha256 differs from the pin")
        source = {
            "pypi": MEDIAPIPE,
            "member": member,
            "sha256": sha256,
            "python_version": "3.11",
            "platform": "manylinux_2_28_x86_64",
        }
        name = "mp-" + Path(member).stem.replace("_", "-")
        found.append(
            {
                "name": name,
                "source": source,
                "recipe": "tflite",
                "image": tflite_image_input(data),
                "preprocess": preprocess,
            }
        )
    return found


# --- the run --------------------------------------------------------------------------------------


def test_inputs(folder: Path, inputs: dict[str, list[int]]) -> dict[str, Any]:
    """A node test's own values for every input after the first (``test_data_set_0/input_<i>.pb``)."""
    import onnx
    from onnx import numpy_helper

    fixed = {}
    for index, name in list(enumerate(inputs))[1:]:
        tensor = onnx.TensorProto()
        tensor.ParseFromString((folder / "test_data_set_0" / f"input_{index}.pb").read_bytes())
        fixed[name] = numpy_helper.to_array(tensor)
    return fixed


def write_arrays(folder: Path, model: dict[str, Any], seed: int, count: int) -> None:
    """``count`` ``.npz`` files in ``folder``, one array per input: the first uniform [0, 1) float32 (PCG64,
    ``seed``), the others ``model["fixed"]``."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    generator = np.random.Generator(np.random.PCG64(seed))
    first, *_ = model["inputs"]
    for index in range(count):
        arrays = {**model["fixed"], first: generator.random(model["inputs"][first], dtype=np.float32)}
        np.savez(folder / f"{index:02d}.npz", **arrays)


def samples(model: dict[str, Any], project: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(calibration, validation) for ``model``: photos for an image input, else arrays written here."""
    if model["image"]:
        return CALIBRATION, VALIDATION
    found = []
    for kind, (seed, count) in ARRAYS.items():
        folder = f"{kind}/{model['name']}"
        write_arrays(project / folder, model, seed, count)
        found.append({"npy": f"{folder}/*.npz", "count": count})
    return found[0], found[1]


def manifest(models: list[dict[str, Any]], project: Path) -> tuple[Path, dict[str, tuple[str, str]]]:
    """builds.yaml for ``models`` x PRECISIONS; returns it and entry name -> (model, precision) for those
    declared (a model that takes no image and whose float inputs are not known gets FP32 only)."""
    entries: dict[str, Any] = {}
    declared: dict[str, tuple[str, str]] = {}
    for model in models:
        source = model["source"]
        if isinstance(source, Path):
            local = project / "models" / source.name
            local.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, local)
            source = f"models/{source.name}"
        base: dict[str, Any] = {"source": source}
        if model.get("recipe"):
            base["recipe"] = model["recipe"]
        applicable = model["image"] or bool(model.get("inputs"))
        calibration, validation = samples(model, project) if applicable else ({}, {})
        for precision in PRECISIONS:
            if precision != "fp32" and not applicable:
                continue
            entry = {**base, "precision": precision}
            if precision != "fp32":
                if model["preprocess"]:
                    entry["preprocess"] = model["preprocess"]
                entry["validation"] = validation
            if precision == "fp16":
                entry["fp16_via"] = "onnx"
            if precision == "int8":
                entry["calibration"] = calibration
            name = f"{model['name']}-{precision}"
            entries[name] = entry
            declared[name] = (model["name"], precision)
    path = project / "builds.yaml"
    path.write_text(yaml.safe_dump({"models": entries}, sort_keys=False))
    return path, declared


def run_group(group: str, models: list[dict[str, Any]], work: Path, timeout: float) -> list[dict[str, Any]]:
    project = work / f"project-{group}"
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    path, declared = manifest(models, project)
    say(f"[{group}] {len(models)} models, {len(declared)} builds: trtbuild all -j 1 --json -f {path}")
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [*TRTBUILD, "all", "-j", "1", "--json", "-f", str(path)],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        stdout, returncode = done.stdout, done.returncode
        (project / "trtbuild.stderr").write_text(done.stderr)
    except subprocess.TimeoutExpired:
        stdout, returncode = "", None
    say(f"[{group}] exit {returncode} in {time.perf_counter() - started:.0f}s")
    try:
        summary = json.loads(stdout)["models"]
    except (ValueError, KeyError):
        summary = {}
        say(f"[{group}] no --json summary; stderr tail: {(project / 'trtbuild.stderr').read_text()[-500:]!r}")
    rows = []
    for model in models:
        for precision in PRECISIONS:
            name = f"{model['name']}-{precision}"
            row = {"group": group, "model": model["name"], "precision": precision, "entry": name}
            if name not in declared:
                row.update(status="n/a", reason=NOT_IMAGE)
            elif name in summary:
                result = summary[name]
                failed = result["status"] == "failed"
                first = next((line for line in result["reasons"] if line.strip()), "") if failed else ""
                row.update(
                    status="failed" if failed else "built", reason=first.strip().splitlines()[0] if first else ""
                )
            else:
                row.update(status="failed", reason=f"no result (trtbuild exit {returncode})")
            rows.append(row)
    return rows


def classify(row: dict[str, Any]) -> str:
    if row["status"] == "built":
        return "built"
    for label, pattern in CLASSES:
        if re.search(pattern, row["reason"]):
            return label
    return "unclassified"


def report(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| model | precision | result | class |", "|---|---|---|---|"]
    for row in rows:
        label = classify(row)
        result = "built" if row["status"] == "built" else f"{row['status']}: {row['reason'][:160]}"
        lines.append(f"| {row['model']} | {row['precision']} | {result} | {label} |")
    counts = {label: sum(1 for row in rows if classify(row) == label) for label in CLASS_ORDER}
    models = len({row["model"] for row in rows})
    builds = sum(1 for row in rows if row["status"] != "n/a")
    lines += [
        "",
        "| models | builds | " + " | ".join(label for label in CLASS_ORDER if label != "not applicable") + " |",
        "|---" * (len(CLASS_ORDER) + 1) + "|",
        f"| {models} | {builds} | "
        + " | ".join(str(counts[label]) for label in CLASS_ORDER if label != "not applicable")
        + " |",
        f"(not applicable, not counted as builds: {counts['not applicable']})",
    ]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/trtbuild-corpus"))
    parser.add_argument("--only", default=",".join(GROUPS))
    parser.add_argument("--timeout", type=float, default=1200, help="seconds per group's trtbuild all")
    parser.add_argument("--classify", type=Path, help="re-print the table of a saved run")
    args = parser.parse_args()
    if args.classify:
        saved = json.loads(args.classify.read_text())
        for line in report(saved["rows"]):
            say(line)
        return 0
    work = args.work.resolve()
    if work == REPO or REPO in work.parents:
        raise SystemExit("--work must be outside the repository")
    sources, cache = work / "sources", work / "cache"
    sources.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now()
    versions = {name: version(name) for name in VERSIONS if version(name)}
    say(f"corpus run {started:%Y-%m-%d %H:%M}; " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    collect = {
        "light": lambda: light_models(sources),
        "node": lambda: node_models(sources, cache),
        "ultralytics": lambda: ultralytics_models(sources),
        "mediapipe": lambda: mediapipe_models(cache),
    }
    rows: list[dict[str, Any]] = []
    for group in args.only.split(","):
        models = collect[group]()
        say(f"[{group}] " + ", ".join(model["name"] for model in models))
        rows += run_group(group, models, work, args.timeout)
    lines = report(rows)
    say()
    for line in lines:
        say(line)
    results = REPO / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    stamp = started.strftime("%Y%m%d-%H%M%S")
    document = {"date": started.isoformat(timespec="seconds"), "versions": versions, "rows": rows}
    (results / f"corpus-{stamp}.json").write_text(json.dumps(document, indent=2) + "\n")
    (results / "corpus-latest.md").write_text("\n".join(lines) + "\n")
    say(f"results: benchmarks/results/corpus-{stamp}.json, benchmarks/results/corpus-latest.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
