"""trtbuild's benchmarks: measured figures and ratios, whole processes, medians of several runs.

    .venv/bin/python benchmarks/run.py [--repeats N] [--only noop,imports,scaling,hashing,cold,fleet]
    .venv/bin/python benchmarks/run.py --quick      # CI: no-op and plan scaling on tiny models, ~1 minute

``--quick`` exits 1 when warm ``plan`` grows more than 20x for 10x the models: a quadratic path cannot
land again. That ratio is the only verdict; every time is printed, none is asserted.

Prints every figure and writes them to benchmarks/results/<date>.json and benchmarks/results/latest.md.
DVC (the no-op comparison) is installed into benchmarks/.venv-dvc on first use; the fleet section's device
without exporters runs from benchmarks/.venv-noexport (``trtbuild[rtx]`` only), also made on first use.
Nothing here asserts a time: the targets are reported next to the figures.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TRTBUILD = [PYTHON, "-m", "trtbuild"]
FAMILIES = ("yolo-face", "yolo-pose", "hairnet", "emonet", "facemesh")
RESULTS: dict[str, Any] = {}


def say(line: str) -> None:
    print(line, flush=True)


def run_measured(
    command: list[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    sample_rss: bool = False,
    stdout: Path | None = None,
) -> dict[str, float]:
    """Run ``command``; wall seconds, peak RSS of the process tree's largest member (wait4), and with
    ``sample_rss`` the top process's own peak (VmHWM sampled every 20 ms). ``stdout``: a file that gets the
    command's standard output (discarded otherwise)."""
    sink = open(stdout, "wb") if stdout else None
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=cwd, env={**os.environ, **(env or {})}, stdout=sink or subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    own_peak = [0]

    def sample() -> None:
        while process.poll() is None:
            try:
                for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        own_peak[0] = max(own_peak[0], int(line.split()[1]))
            except OSError:
                return
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    if sample_rss:
        sampler.start()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if sink:
        sink.close()
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{stderr[-2000:]}")
    if sample_rss:
        sampler.join()
    return {"seconds": wall, "tree_peak_mib": usage.ru_maxrss / 1024, "own_peak_mib": own_peak[0] / 1024}


def median_of(repeats: int, command: list[str], cwd: Path, **options: Any) -> dict[str, float]:
    runs = [run_measured(command, cwd, **options) for _ in range(repeats)]
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def five_model_manifest(folder: Path, precision: str | None = None, gates: bool = True) -> Path:
    """The repo's builds.yaml reduced to the five families (no -fp32 / -int8 variants)."""
    document = yaml.safe_load((REPO / "builds.yaml").read_text())
    document = {"defaults": document["defaults"], "models": {name: document["models"][name] for name in FAMILIES}}
    for model in document["models"].values():
        if precision:
            model["precision"] = precision
        if not gates:
            model.pop("validation", None)
            model.pop("tolerance", None)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "builds.yaml"
    manifest.write_text(yaml.safe_dump(document, sort_keys=False))
    return manifest


def clean_build_state(folder: Path) -> None:
    for name in ("engines", "exports", "reports", ".trtbuild"):
        shutil.rmtree(folder / name, ignore_errors=True)
    (folder / "builds.lock").unlink(missing_ok=True)


# --- 1. no-op -------------------------------------------------------------------------------------


def dvc_python() -> Path:
    venv = REPO / "benchmarks" / ".venv-dvc"
    if not (venv / "bin" / "dvc").exists():
        say("installing DVC into benchmarks/.venv-dvc (once) ...")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "dvc==3.67.1"], check=True)
    return venv / "bin" / "dvc"


def dvc_project(folder: Path, fleet: Path) -> Path:
    """A DVC project with the same five build stages (deps: the FP16 ONNX; outs: the engines)."""
    project = folder / "dvc"
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    stages = {}
    for name in FAMILIES:
        onnx = os.path.relpath(fleet / "exports" / f"{name}.fp16.onnx", project)
        engine = os.path.relpath(fleet / "engines" / f"{name}.engine", project)
        stages[name] = {"cmd": f"cp {engine} {name}.engine", "deps": [onnx], "outs": [f"{name}.engine"]}
    (project / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    dvc = str(dvc_python())
    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=project, check=True)
    subprocess.run([dvc, "repro", "-q"], cwd=project, check=True, stdout=subprocess.DEVNULL)
    return project


def bench_noop(work: Path, repeats: int) -> None:
    fleet = work / "fleet"
    five_model_manifest(fleet)
    say("no-op: building the five models once (cold) ...")
    command = [str(Path(PYTHON).parent / "trtbuild")]
    run_measured(command + ["all"], fleet)
    time.sleep(2.5)  # out of the racy window, so the next run writes a stamp it can trust
    run_measured(command + ["all"], fleet)
    ours = median_of(repeats, command + ["all"], fleet)
    full = median_of(repeats, command + ["plan"], fleet)
    baseline = median_of(repeats, [PYTHON, "-c", "pass"], fleet)
    dvc_dir = dvc_project(work, fleet)
    dvc = median_of(repeats, [str(dvc_python()), "repro"], dvc_dir)
    RESULTS["noop"] = {
        "trtbuild_all": ours,
        "trtbuild_plan_full_path": full,
        "python_c_pass": baseline,
        "dvc_repro": dvc,
        "ratio_vs_python": ours["seconds"] / baseline["seconds"],
        "ratio_vs_dvc": ours["seconds"] / dvc["seconds"],
    }
    say(
        f"no-op  trtbuild all {ours['seconds'] * 1000:.0f} ms ({ours['tree_peak_mib']:.0f} MiB peak) | python -c pass "
        f"{baseline['seconds'] * 1000:.0f} ms | dvc repro {dvc['seconds'] * 1000:.0f} ms "
        f"({dvc['tree_peak_mib']:.0f} MiB) | "
        f"trtbuild plan (full path) {full['seconds'] * 1000:.0f} ms"
    )
    say(
        f"       ratio vs python -c pass {RESULTS['noop']['ratio_vs_python']:.2f} (target <= 2.5); "
        f"vs dvc {RESULTS['noop']['ratio_vs_dvc']:.3f} (target <= 0.4)"
    )


def bench_imports(work: Path) -> None:
    fleet = work / "fleet"
    done = subprocess.run(
        [PYTHON, "-X", "importtime", "-m", "trtbuild", "all"], cwd=fleet, capture_output=True, text=True, check=True
    )
    modules = {
        line.split("|")[-1].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    heavy = sorted(
        modules
        & {"tensorrt", "tensorrt_rtx", "torch", "onnx", "onnxruntime", "polygraphy", "pydantic", "networkx", "click"}
    )
    RESULTS["imports"] = {"heavy_modules_imported_on_noop": heavy, "top_level_modules": len(modules)}
    say(
        f"imports on a no-op `trtbuild all` (python -X importtime): heavy modules {heavy or 'none'} of "
        "tensorrt, tensorrt_rtx, torch, onnx, onnxruntime, polygraphy, pydantic, networkx, click"
    )


# --- 2. scaling -----------------------------------------------------------------------------------


def tiny_models(folder: Path, count: int) -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    lines = ["models:"]
    for index in range(count):
        weight = numpy_helper.from_array(np.full((4, 3, 1, 1), index / count, dtype=np.float32), "w")
        graph = helper.make_graph(
            [helper.make_node("Conv", ["input", "w"], ["output"])],
            f"m{index}",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
            [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, 8, 8])],
            [weight],
        )
        onnx.save(
            helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)]),
            str(folder / f"m{index}.onnx"),
        )
        lines.append(f"  m{index}: {{source: m{index}.onnx}}")
    (folder / "builds.yaml").write_text("\n".join(lines) + "\n")


def bench_quick_noop(work: Path, repeats: int) -> None:
    """The no-op fast path on a 100-model project of tiny real ONNX files, against ``python -c pass``."""
    folder = work / "quick-noop"
    tiny_models(folder, 100)
    command = [str(Path(PYTHON).parent / "trtbuild")]
    run_measured(command + ["all"], folder)
    time.sleep(2.5)  # out of the racy window, so the next run writes a stamp it can trust
    run_measured(command + ["all"], folder)
    ours = median_of(repeats, command + ["all"], folder)
    baseline = median_of(repeats, [PYTHON, "-c", "pass"], folder)
    RESULTS["quick_noop"] = {
        "trtbuild_all": ours,
        "python_c_pass": baseline,
        "ratio_vs_python": ours["seconds"] / baseline["seconds"],
    }
    say(
        f"no-op (100 tiny models) trtbuild all {ours['seconds'] * 1000:.0f} ms | python -c pass "
        f"{baseline['seconds'] * 1000:.0f} ms | ratio {RESULTS['quick_noop']['ratio_vs_python']:.2f}"
    )


#: --quick fails when warm plan grows by more than this for 10x the models (linear: ~10x, less with start-up).
MAX_GROWTH_FOR_10X = 20.0


def growth_verdict() -> int:
    """1 when warm ``plan`` grew by more than ``MAX_GROWTH_FOR_10X`` between sizes 10x apart, else 0."""
    sizes = sorted(RESULTS.get("scaling", {}))
    failed = 0
    for small, large in zip(sizes, sizes[1:]):
        if large != small * 10:
            continue
        growth = RESULTS["scaling"][large]["warm_seconds"] / RESULTS["scaling"][small]["warm_seconds"]
        RESULTS["scaling"][large][f"growth_from_{small}"] = growth
        verdict = "ok" if growth <= MAX_GROWTH_FOR_10X else "FAIL: far from linear"
        say(f"growth {small} -> {large} models: {growth:.1f}x (limit {MAX_GROWTH_FOR_10X:.0f}x) {verdict}")
        failed |= growth > MAX_GROWTH_FOR_10X
    return int(failed)


def bench_scaling(work: Path, repeats: int, sizes: tuple[int, ...]) -> None:
    RESULTS["scaling"] = {}
    for count in sizes:
        folder = work / f"scale-{count}"
        tiny_models(folder, count)
        cold = []
        for _ in range(repeats):
            shutil.rmtree(folder / ".trtbuild", ignore_errors=True)
            cold.append(run_measured(TRTBUILD + ["plan"], folder)["seconds"])
        time.sleep(2.1)  # let the stat cache trust the files
        run_measured(TRTBUILD + ["plan"], folder)
        warm = median_of(repeats, TRTBUILD + ["plan"], folder)
        RESULTS["scaling"][count] = {
            "cold_seconds": statistics.median(cold),
            "warm_seconds": warm["seconds"],
            "warm_peak_mib": warm["tree_peak_mib"],
        }
        say(
            f"scaling {count:>6} models: plan cold {statistics.median(cold):7.2f} s, warm {warm['seconds']:6.2f} s "
            f"({warm['tree_peak_mib']:.0f} MiB)"
        )
    base = min(RESULTS["scaling"])
    for count, figures in RESULTS["scaling"].items():
        figures["warm_per_model_ms"] = figures["warm_seconds"] / count * 1000
    say(
        "        warm per model: "
        + ", ".join(f"{c}: {f['warm_per_model_ms']:.2f} ms" for c, f in RESULTS["scaling"].items())
        + f"  (target: 1,000 models <= 1 s; growth near linear from {base})"
    )


# --- 3. hashing -----------------------------------------------------------------------------------


def big_external_model(folder: Path, gib: float) -> Path:
    import onnx
    from onnx import TensorProto, helper

    folder.mkdir(parents=True, exist_ok=True)
    elements = int(gib * (1 << 30)) // 4
    data = folder / "weights.bin"
    with open(data, "wb") as handle:
        remaining = elements * 4
        chunk = os.urandom(1 << 24)
        while remaining:
            handle.write(chunk[: min(remaining, len(chunk))])
            remaining -= min(remaining, len(chunk))
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[elements], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", "weights.bin"), ("offset", "0"), ("length", str(elements * 4))):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Identity", ["w"], ["y"])],
        "big",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [elements])],
        [weight],
    )
    path = folder / "big.onnx"
    onnx.save_model(helper.make_model(graph, ir_version=10), str(path))
    return path


def bench_hashing(work: Path, repeats: int, gib: float) -> None:
    model = big_external_model(work / "big", gib)
    size = (model.parent / "weights.bin").stat().st_size + model.stat().st_size
    snippet = textwrap.dedent(f"""
        import time, sys
        from pathlib import Path
        from trtbuild.state.statcache import StatCache
        from trtbuild.state.onnx_digest import onnx_digest
        cache = StatCache(Path({str(work / "big-cache.json")!r}))
        started = time.perf_counter()
        onnx_digest(cache, Path({str(model)!r}))
        cache.save()
        print(time.perf_counter() - started, cache.hashed_bytes)
    """)
    ours, second, sums = [], [], []
    for _ in range(repeats):
        (work / "big-cache.json").unlink(missing_ok=True)
        started = time.perf_counter()
        subprocess.run(
            ["sha256sum", str(model), str(model.parent / "weights.bin")], check=True, stdout=subprocess.DEVNULL
        )
        sums.append(time.perf_counter() - started)
        ours.append(
            float(subprocess.run([PYTHON, "-c", snippet], capture_output=True, text=True, check=True).stdout.split()[0])
        )
    time.sleep(2.1)
    subprocess.run([PYTHON, "-c", snippet], capture_output=True, text=True, check=True)  # trusted entries now
    for _ in range(repeats):
        seconds, hashed = subprocess.run(
            [PYTHON, "-c", snippet], capture_output=True, text=True, check=True
        ).stdout.split()
        second.append((float(seconds), int(hashed)))
    ours_s, sum_s = statistics.median(ours), statistics.median(sums)
    RESULTS["hashing"] = {
        "bytes": size,
        "trtbuild_first_seconds": ours_s,
        "sha256sum_seconds": sum_s,
        "trtbuild_gib_per_s": size / ours_s / (1 << 30),
        "sha256sum_gib_per_s": size / sum_s / (1 << 30),
        "throughput_ratio": sum_s / ours_s,
        "second_run_seconds": statistics.median(s for s, _ in second),
        "second_run_bytes_hashed": max(h for _, h in second),
    }
    h = RESULTS["hashing"]
    say(
        f"hashing {size / (1 << 30):.2f} GiB ONNX+external data: trtbuild {h['trtbuild_gib_per_s']:.2f} GiB/s, "
        f"sha256sum {h['sha256sum_gib_per_s']:.2f} GiB/s, ratio {h['throughput_ratio']:.2f} (target >= 0.9); "
        f"second run {h['second_run_seconds'] * 1000:.1f} ms, {h['second_run_bytes_hashed']} bytes hashed (target ~0)"
    )
    shutil.rmtree(work / "big", ignore_errors=True)


# --- 4/5/6. cold build, incremental, memory --------------------------------------------------------


def plain_script(folder: Path, manifest: dict[str, Any]) -> Path:
    """The seeds' convert-everything script: the same exports, then polygraphy convert, one after another."""
    cache = Path(os.environ.get("TRTBUILD_CACHE") or Path.home() / ".cache" / "trtbuild") / "sources"
    bin_dir = Path(PYTHON).parent
    lines = [
        "#!/usr/bin/env bash",
        "set -euo pipefail",
        "export YOLO_OFFLINE=1 YOLO_AUTOINSTALL=0 POLYGRAPHY_USE_TENSORRT_RTX=1",
        f"export YOLO_CONFIG_DIR={folder}/yolo-config",
        "mkdir -p out",
    ]
    for name, model in manifest["models"].items():
        source = cache / model["source"]["sha256"]
        recipe = model["recipe"] if isinstance(model["recipe"], dict) else {"name": model["recipe"]}
        if recipe["name"] == "ultralytics":
            lines += [
                f"cp {source} out/{name}.pt",
                f"{bin_dir}/yolo export model=out/{name}.pt format=onnx imgsz={recipe['imgsz']} "
                "dynamic=True simplify=False opset=17 > /dev/null",
            ]
        elif recipe["name"] == "keras":
            lines.append(
                f'mkdir -p out/k && {PYTHON} -c "from pathlib import Path; from types import SimpleNamespace; '
                f"from trtbuild.recipes.keras import export, Params; export(Path('{source}'), Path('out/{name}.onnx'), "
                "Params(input_name='input', output_names=['probabilities']), "
                "SimpleNamespace(workdir=Path('out/k')))\" > /dev/null 2>&1"
            )
        else:
            lines.append(
                f'{PYTHON} -c "from trtbuild.recipes.tflite import fold_fp16_constants; '
                "from pathlib import Path; import tflite2onnx; "
                f"Path('out/{name}.tflite').write_bytes(fold_fp16_constants(Path('{source}').read_bytes())[0]); "
                f"tflite2onnx.convert('out/{name}.tflite', 'out/{name}.onnx')\""
            )
        shapes = []
        for tensor, spec in model["inputs"].items():
            if isinstance(spec, dict):
                shapes += [
                    f"--trt-{bound}-shapes {tensor}:[{','.join(str(d) for d in spec[bound])}]"
                    for bound in ("min", "opt", "max")
                ]
        lines.append(
            f"{bin_dir}/polygraphy convert out/{name}.onnx -o out/{name}.engine --pool-limit workspace:1G "
            f"{' '.join(shapes)} > /dev/null"
        )
    script = folder / "convert_all.sh"
    script.write_text("\n".join(lines) + "\n")
    script.chmod(0o755)
    return script


def bench_builds(work: Path, repeats: int) -> None:
    folder = work / "cold"
    manifest_path = five_model_manifest(folder, precision="fp32", gates=False)
    manifest = yaml.safe_load(manifest_path.read_text())
    run_measured(TRTBUILD + ["all"], folder)  # fetch the sources into the cache once; not timed
    script = plain_script(folder, manifest)
    figures: dict[str, list[dict[str, float]]] = {"script": [], "j1": [], "j2": []}
    for _ in range(repeats):
        shutil.rmtree(folder / "out", ignore_errors=True)
        figures["script"].append(run_measured(["bash", str(script)], folder))
        for jobs in ("1", "2"):
            clean_build_state(folder)
            figures[f"j{jobs}"].append(run_measured(TRTBUILD + ["all", "-j", jobs], folder, sample_rss=jobs == "1"))
    medians = {key: {k: statistics.median(run[k] for run in runs) for k in runs[0]} for key, runs in figures.items()}
    text = (
        manifest_path.read_text()
        .replace("imgsz: 320", "imgsz: 352")
        .replace("[1, 3, 320, 320]", "[1, 3, 352, 352]")
        .replace("[4, 3, 320, 320]", "[4, 3, 352, 352]")
        .replace("[8, 3, 320, 320]", "[8, 3, 352, 352]")
    )
    incremental = []
    for index in range(repeats):  # change one model (the hairnet detector's input size), alternating back
        manifest_path.write_text(text if index % 2 == 0 else manifest_path.read_text().replace("352", "320"))
        incremental.append(run_measured(TRTBUILD + ["all", "-j", "1"], folder)["seconds"])
    RESULTS["cold_build"] = {
        **{f"{k}_seconds": v["seconds"] for k, v in medians.items()},
        "ratio_j1": medians["j1"]["seconds"] / medians["script"]["seconds"],
        "ratio_j2": medians["j2"]["seconds"] / medians["script"]["seconds"],
    }
    RESULTS["incremental"] = {
        "one_model_seconds": statistics.median(incremental),
        "script_full_seconds": medians["script"]["seconds"],
        "ratio": statistics.median(incremental) / medians["script"]["seconds"],
    }
    RESULTS["memory"] = {
        "orchestrator_peak_mib": medians["j1"]["own_peak_mib"],
        "tree_peak_mib": medians["j1"]["tree_peak_mib"],
    }
    c, i, m = RESULTS["cold_build"], RESULTS["incremental"], RESULTS["memory"]
    say(
        f"cold build, five models fp32: script {c['script_seconds']:.1f} s | trtbuild -j1 {c['j1_seconds']:.1f} s "
        f"(ratio {c['ratio_j1']:.2f}, target <= 1.05) | -j2 {c['j2_seconds']:.1f} s "
        f"(ratio {c['ratio_j2']:.2f}, target <= 0.7)"
    )
    say(
        f"incremental: one model changed {i['one_model_seconds']:.1f} s "
        f"vs the script's full run {i['script_full_seconds']:.1f} s "
        f"(ratio {i['ratio']:.2f})"
    )
    say(
        f"memory: orchestrator peak {m['orchestrator_peak_mib']:.0f} MiB (target <= 150); largest process of the tree "
        f"{m['tree_peak_mib']:.0f} MiB (builders and exporters are children)"
    )


# --- 7. fleet: one registry, 8 simulated Jetsons of 2 classes, then a third class without exporters -----

JETPACK_6_2 = (  # a real /etc/nv_tegra_release of JetPack 6.2 (L4T 36.4.3), as in tests/test_build.py
    "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, "
    "DATE: Wed Jan  8 01:49:37 UTC 2025\n"
)
#: class -> (what it is, its device-tree model, MemTotal in kB)
JETSON_CLASSES = {
    "nano": ("Jetson Orin Nano, JetPack 6.2", "NVIDIA Jetson Orin Nano Developer Kit", 7620440),
    "nx": ("Jetson Orin NX, JetPack 6.2", "NVIDIA Jetson Orin NX Engineering Reference Developer Kit", 15655188),
    "agx": ("Jetson AGX Orin, JetPack 6.2", "NVIDIA Jetson AGX Orin Developer Kit", 64335836),
}
EXPORTER_MODULES = ("torch", "ultralytics", "keras", "tflite2onnx", "ai_edge_litert", "onnxruntime", "modelopt")


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_registry(folder: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    """CNCF distribution (Debian's ``docker-registry``) with its own config, as in tests/registry.py: storage
    under ``folder``, listening on a free 127.0.0.1 port. Returns (process, host:port, storage)."""
    import urllib.error
    import urllib.request

    if shutil.which("docker-registry") is None:
        raise RuntimeError("docker-registry is not installed (apt-get install docker-registry)")
    storage = folder / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = folder / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = folder / "registry.log"
    with open(log, "wb") as sink:
        process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1):
                return process, f"127.0.0.1:{port}", storage
        except (urllib.error.URLError, OSError):
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.terminate()
            raise RuntimeError(f"docker-registry did not start: {log.read_text()[-2000:]}")
        time.sleep(0.05)


def jetson_sysroot(base: Path, jetson_class: str) -> dict[str, str]:
    """A device's file-system root: /etc/nv_tegra_release, the device-tree model and /proc/meminfo."""
    _, model, mem_kb = JETSON_CLASSES[jetson_class]
    (base / "etc").mkdir(parents=True, exist_ok=True)
    (base / "etc/nv_tegra_release").write_text(JETPACK_6_2)
    (base / "proc/device-tree").mkdir(parents=True, exist_ok=True)
    (base / "proc/device-tree/model").write_bytes(model.encode() + b"\x00")
    (base / "proc/meminfo").write_text(f"MemTotal:       {mem_kb} kB\nMemFree:        {mem_kb // 2} kB\n")
    return {"TRTBUILD_SYSROOT": str(base)}


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def run_device(name: str, jetson_class: str, python: str, work: Path, checkout: Path, url: str) -> dict[str, Any]:
    """One device: its own copy of the checkout and sysroot, ``trtbuild all -j 1 --json --remote-cache URL``.
    Returns its wall time, per step kind the count of each status, and what its lock says it pulled."""
    project = work / "devices" / name
    shutil.copytree(checkout, project)
    env = jetson_sysroot(work / "sysroots" / name, jetson_class)
    output = work / "devices" / f"{name}.json"
    command = [python, "-m", "trtbuild", "all", "-j", "1", "--json", "--remote-cache", url]
    figures: dict[str, Any] = {"class": JETSON_CLASSES[jetson_class][0], "python": python}
    try:
        figures["seconds"] = run_measured(command, project, env=env, stdout=output)["seconds"]
    except RuntimeError as error:  # reported, not raised: the no-export device's failure is a finding
        figures["error"] = str(error)[-2000:]
        return figures
    statuses: dict[str, dict[str, int]] = {}
    for model in json.loads(output.read_text())["models"].values():
        for step in model["steps"]:
            kind = statuses.setdefault(step["step"], {})
            kind[step["status"]] = kind.get(step["status"], 0) + 1
    lock = json.loads((project / "builds.lock").read_text())
    pulled = [entry for entry in lock["steps"].values() if entry.get("origin")]
    figures.update(
        statuses=statuses,
        origins=len(pulled),
        pulled_bytes=sum(output["size"] for entry in pulled for output in entry["outputs"]),
    )
    return figures


def noexport_python() -> tuple[Path, dict[str, bool]]:
    """benchmarks/.venv-noexport: trtbuild with ``[rtx]`` only (no torch, ultralytics, keras, tflite), made once.
    Returns its python and which exporter (and INT8/gate) modules it can import (none expected)."""
    venv = REPO / "benchmarks" / ".venv-noexport"
    python = venv / "bin" / "python"
    if not python.exists():
        say("installing trtbuild[rtx] (no exporters) into benchmarks/.venv-noexport (once) ...")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-e", f"{REPO}[rtx]"], check=True)
    probe = (
        "import importlib.util, json, sys; "
        "print(json.dumps({m: importlib.util.find_spec(m) is not None for m in sys.argv[1:]}))"
    )
    found = subprocess.run([str(python), "-c", probe, *EXPORTER_MODULES], capture_output=True, text=True, check=True)
    return python, json.loads(found.stdout)


def count(figures: dict[str, Any], kind: str, status: str) -> int:
    return int(figures.get("statuses", {}).get(kind, {}).get(status, 0))


def bench_fleet(work: Path) -> None:
    folder = work / "fleet-sim"
    checkout = folder / "checkout"
    five_model_manifest(checkout, precision="fp32", gates=False)
    run_measured(TRTBUILD + ["plan"], checkout)  # fetches the five sources into the source cache; not timed
    clean_build_state(checkout)  # every device starts from the bare checkout
    process, host, storage = start_registry(folder / "registry")
    url = f"oci+http://{host}/fleet"
    devices: dict[str, dict[str, Any]] = {}
    try:
        for jetson_class in ("nano", "nx"):
            for index in range(1, 5):
                name = f"{jetson_class}-{index}"
                devices[name] = figures = run_device(name, jetson_class, PYTHON, folder, checkout, url)
                if "error" in figures:
                    raise RuntimeError(f"device {name} failed: {figures['error']}")
                say(
                    f"fleet  {name:<6} {figures['class']:<30} {figures['seconds']:6.1f} s | engine built "
                    f"{count(figures, 'engine', 'built')} pulled {count(figures, 'engine', 'pulled')} | export built "
                    f"{count(figures, 'export', 'built')} pulled {count(figures, 'export', 'pulled')} | "
                    f"{figures['origins']} origins, {figures['pulled_bytes'] / (1 << 20):.1f} MiB pulled"
                )
        storage_after_8 = folder_bytes(storage)
        python, present = noexport_python()
        installed = sorted(module for module, there in present.items() if there)
        say(f"fleet  no-export venv: {', '.join(installed) or 'none'} of {', '.join(EXPORTER_MODULES)} importable")
        devices["agx-1"] = agx = run_device("agx-1", "agx", str(python), folder, checkout, url)
        storage_after_9 = folder_bytes(storage)
    finally:
        process.terminate()
        process.wait(timeout=10)
    fleet = [devices[f"{c}-{i}"] for c in ("nano", "nx") for i in range(1, 5)]
    pulling = [devices[f"{c}-{i}"] for c in ("nano", "nx") for i in range(2, 5)]
    pull_seconds = statistics.mean(d["seconds"] for d in pulling)
    first_nano, first_nx = devices["nano-1"]["seconds"], devices["nx-1"]["seconds"]
    RESULTS["fleet"] = {
        "devices": devices,
        "registry": url,
        "engine_builds_total": sum(count(d, "engine", "built") for d in fleet),
        "export_builds_total": sum(count(d, "export", "built") for d in fleet),
        "first_nano_seconds": first_nano,
        "first_nx_seconds": first_nx,
        "pulling_mean_seconds": pull_seconds,
        "pulling_nano_mean_seconds": statistics.mean(devices[f"nano-{i}"]["seconds"] for i in range(2, 5)),
        "pulling_nx_mean_seconds": statistics.mean(devices[f"nx-{i}"]["seconds"] for i in range(2, 5)),
        "ratio_pulling_vs_first_nano": pull_seconds / first_nano,
        "ratio_pulling_vs_first_nx": pull_seconds / first_nx,
        "ratio_first_nx_vs_first_nano": first_nx / first_nano,
        "registry_bytes_after_8": storage_after_8,
        "registry_bytes_after_9": storage_after_9,
        "pulled_bytes_mean": statistics.mean(d["pulled_bytes"] for d in pulling),
        "noexport_modules_present": installed,
    }
    f = RESULTS["fleet"]
    say(
        f"fleet  engine builds over 8 devices: {f['engine_builds_total']} (target 10: one per model per class, "
        f"not 40); export builds {f['export_builds_total']} (target 5)"
    )
    say(
        f"fleet  first Nano (builds everything) {first_nano:.1f} s | first NX (pulls exports, builds engines) "
        f"{first_nx:.1f} s ({f['ratio_first_nx_vs_first_nano']:.2f} x) | pulling devices mean {pull_seconds:.2f} s "
        f"(Nano {f['pulling_nano_mean_seconds']:.2f} s, NX {f['pulling_nx_mean_seconds']:.2f} s)"
    )
    say(
        f"fleet  pulling / first Nano {f['ratio_pulling_vs_first_nano']:.3f} (target <= 0.05) | pulling / first NX "
        f"{f['ratio_pulling_vs_first_nx']:.3f} (target <= 0.05)"
    )
    say(
        f"fleet  registry storage {storage_after_8 / (1 << 20):.1f} MiB after 8 devices, "
        f"{storage_after_9 / (1 << 20):.1f} MiB after the 9th | downloaded per pulling device "
        f"{f['pulled_bytes_mean'] / (1 << 20):.1f} MiB (outputs of the lock's pulled steps)"
    )
    if "error" in agx:
        say(f"fleet  agx-1 (no exporters installed) FAILED: {agx['error']}")
        return
    say(
        f"fleet  agx-1 {agx['class']} with no exporters installed: {agx['seconds']:.1f} s | engine built "
        f"{count(agx, 'engine', 'built')} pulled {count(agx, 'engine', 'pulled')} | export pulled "
        f"{count(agx, 'export', 'pulled')} built {count(agx, 'export', 'built')} (target: all 5 exports pulled, "
        f"5 engines built) | {agx['origins']} origins, {agx['pulled_bytes'] / (1 << 20):.1f} MiB pulled"
    )


def machine() -> dict[str, Any]:
    import importlib.metadata as metadata

    versions = {}
    for name in ("tensorrt-rtx-cu13", "tensorrt", "polygraphy", "onnx", "torch", "ultralytics"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30), 1),
        "versions": versions,
    }


def write_results(started: str, quick: bool) -> None:
    """``benchmarks/results/<date>.json`` and ``latest.json``; a ``--quick`` run writes ``quick-<date>.json`` only."""
    folder = REPO / "benchmarks" / "results"
    folder.mkdir(parents=True, exist_ok=True)
    RESULTS["machine"] = machine()
    names = [f"quick-{started}.json"] if quick else [f"{started}.json", "latest.json"]
    for name in names:
        (folder / name).write_text(json.dumps(RESULTS, indent=2, default=str))
    say(f"results: benchmarks/results/{names[0]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", default="noop,imports,scaling,hashing,cold,fleet")
    parser.add_argument("--scaling", default="10,100,1000,10000")
    parser.add_argument("--hash-gib", type=float, default=1.0)
    parser.add_argument("--quick", action="store_true", help="CI: no-op and plan scaling (100, 1,000 models) only")
    args = parser.parse_args()
    if args.quick:
        args.only, args.scaling, args.repeats = "quick", "100,1000", 3
    only = set(args.only.split(","))
    started = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    say(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="trtbuild-bench-") as folder:
        work = Path(folder)
        os.environ.setdefault("TRTBUILD_CACHE", str(Path.home() / ".cache" / "trtbuild"))
        if "quick" in only:
            bench_quick_noop(work, args.repeats)
            bench_scaling(work, args.repeats, tuple(int(n) for n in args.scaling.split(",")))
        if "noop" in only:
            bench_noop(work, args.repeats)
        if "imports" in only and (work / "fleet").exists():
            bench_imports(work)
        if "scaling" in only:
            bench_scaling(work, max(1, min(args.repeats, 3)), tuple(int(n) for n in args.scaling.split(",")))
        if "hashing" in only:
            bench_hashing(work, max(1, min(args.repeats, 3)), args.hash_gib)
        if "cold" in only:
            bench_builds(work, max(1, min(args.repeats, 3)))
        if "fleet" in only:
            bench_fleet(work)
    failed = growth_verdict()
    write_results(started, args.quick)
    sys.exit(failed)


if __name__ == "__main__":
    main()
