"""Engines built on a builder device over SSH (a device overlay's ``remote:``), against a real sshd.

The "device" is Debian's openssh-server on 127.0.0.1 (``tests/sshd.py``: its own config, host key and an
authorized key made here) in front of this machine: ``builder: polygraphy`` runs trtbuild's builder child
from the zip it sends, with TensorRT-RTX, and ``remote.env`` gives it a sysroot (``TRTBUILD_SYSROOT``)
that says Jetson Orin Nano, JetPack 6.2. Nothing here is faked but that sysroot: the probe, the uploads,
the builds and the plans coming back all go through ``ssh``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ProjectDir, user_env, write_widthfile_recipe
from tests.onnx_models import conv_net, unsupported_op_net
from tests.registry import free_port
from tests.sshd import LoopbackSshd, start_sshd
from tests.test_build import JETPACK_6_2, sysroot

NANO = "NVIDIA Jetson Orin Nano Developer Kit"
JETPACK_6_2_1 = (
    "# R36 (release), REVISION: 4.4, GCID: 41062509, BOARD: generic, EABI: aarch64, DATE: Mon Jun 16 16:07:13 UTC 2025"
)


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[LoopbackSshd]:
    server = start_sshd(tmp_path / "sshd")
    yield server
    server.stop()


def device_project(root: Path, devices: dict[str, dict[str, Any]]) -> ProjectDir:
    """Two models, one exported by a project recipe (export here, engine on the device) and one ONNX
    source; ``devices``: overlay name -> its ``remote:`` mapping."""
    root.mkdir(parents=True, exist_ok=True)
    project = ProjectDir(root)
    conv_net(root / "net.onnx", batch="N", seed=5, channels=8, size=32)
    write_widthfile_recipe(root)
    (root / "width.txt").write_text("8\n")
    project.write_manifest("""
        defaults:
          workspace: 256MiB
        models:
          net:
            source: net.onnx
            inputs: {input: {min: [1, 3, 32, 32], opt: [2, 3, 32, 32], max: [4, 3, 32, 32]}}
          custom:
            source: width.txt
            recipe: {name: widthfile, size: 32}
    """)
    (root / "devices").mkdir()
    for name, remote in devices.items():
        (root / "devices" / f"{name}.yaml").write_text(yaml.safe_dump({"remote": remote}))
    return project


def polygraphy_device(sshd: LoopbackSshd, base: Path, **fields: Any) -> dict[str, Any]:
    """A ``remote:`` for the loopback device: trtbuild's builder on this Python, an Orin Nano JetPack 6.2
    sysroot, a work folder of its own (``fields`` added or replacing)."""
    env = sysroot(base / "root", JETPACK_6_2, NANO)
    return sshd.remote(
        **{"builder": "polygraphy", "python": sys.executable, "workdir": str(base / "work"), "env": env, **fields}
    )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` -> (inode, mtime_ns): what a transfer or a build would change."""
    return {
        str(path.relative_to(folder)): (path.stat().st_ino, path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def lock_steps(project: ProjectDir, device: str) -> dict[str, dict[str, Any]]:
    return json.loads((project.root / "locks" / f"{device}.lock").read_text())["steps"]


def steps_run(models: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {name: {s["step"]: s["status"] for s in model["steps"]} for name, model in models.items()}


def test_engines_build_on_the_device_with_its_facts_one_at_a_time_and_a_second_run_does_nothing(
    sshd: LoopbackSshd, tmp_path: Path
) -> None:
    device = tmp_path / "device"
    trace = tmp_path / "builds.trace"
    shim = tmp_path / "python-traced"  # the device's Python, noting when each builder child starts and ends
    shim.write_text(
        f'#!/bin/sh\ncase "$2" in trtbuild.builder.child) echo "start $(date +%s.%N)" >> {trace};; esac\n'
        f'{sys.executable} "$@"; code=$?\n'
        f'case "$2" in trtbuild.builder.child) echo "end $(date +%s.%N)" >> {trace};; esac\nexit $code\n'
    )
    shim.chmod(0o755)
    project = device_project(tmp_path / "proj", {"lab": polygraphy_device(sshd, device, python=str(shim))})

    plan = project.trtbuild("plan", "--device", "lab", "--json")
    assert plan.code == 0, plan.stderr
    planned = plan.json()["models"]
    on_device = f"on polygraphy on {sshd.host}"
    assert planned["net"]["reasons"] == ["never built", on_device]
    assert planned["custom"]["reasons"] == ["export: never exported", "never built", on_device]
    assert plan.json()["environment"]["device_model"] == NANO  # the device's facts, not this machine's
    assert "on polygraphy on" in project.trtbuild("plan", "--device", "lab").stdout

    built = project.trtbuild("all", "--device", "lab", "-j", "2", "--json")
    assert built.code == 0, built.stdout + built.stderr
    assert steps_run(built.json()["models"]) == {
        "net": {"engine": "built"},
        "custom": {"export": "built", "engine": "built"},
    }
    steps = lock_steps(project, "lab")
    engines = {entry["model"]: entry for entry in steps.values() if entry["kind"] == "engine"}
    assert set(engines) == {"net", "custom"}
    for entry in engines.values():
        env = entry["components"]["env"]
        assert (env["device_model"], env["l4t"], env["jetpack"]) == (NANO, "36.4.3", "6.2")
        assert (env["gpu"], env["compute_capability"]) == ("Orin (Ampere)", "8.7")
        assert entry["facts"]["host"] == sshd.host
        assert entry["facts"]["builder"].startswith("tensorrt-rtx ") and "(polygraphy on" in entry["facts"]["builder"]
        assert entry["facts"]["network"]["layers"] > 0  # the summary the device's builder child made
        engine = project.root / entry["outputs"][0]["path"]
        assert engine.parent == project.root / "engines" / "lab"
        assert digest(engine) == entry["outputs"][0]["sha256"] and engine.stat().st_size > 10_000
    # one build at a time on the device, though -j 2 let both engines go: the device's builder runs alternate
    events = [line.split()[0] for line in trace.read_text().splitlines()]
    assert events == ["start", "end", "start", "end"], trace.read_text()
    # the export ran here; the device holds the engines' ONNX by digest, and no scratch folder is left
    assert (project.root / "exports/lab/custom.onnx").is_file()
    uploaded = {path.parent.name for path in (device / "work" / "onnx").rglob("*.onnx")}
    assert uploaded == {entry["components"]["onnx"] for entry in engines.values()}
    assert list((device / "work" / "tmp").iterdir()) == []
    log = (project.root / ".trtbuild/logs/lab/net.log").read_text()
    assert "1 of 2 input files sent" in log and "trtbuild.builder.child" in log

    device_files, lock_before = tree(device), (project.root / "locks/lab.lock").read_bytes()
    again = project.trtbuild("all", "--device", "lab", "--json")
    assert again.code == 0, again.stderr
    assert {name: model["status"] for name, model in again.json()["models"].items()} == {
        "net": "fresh",
        "custom": "fresh",
    }
    assert tree(device) == device_files  # nothing sent, nothing built on the device
    assert (project.root / "locks/lab.lock").read_bytes() == lock_before

    audit = project.trtbuild("audit", "--device", "lab", "--rebuild", "--json")  # keys judged by the device's facts
    assert audit.code == 0, audit.stdout + audit.stderr
    for result in audit.json().values():
        assert result["ok"] and result["rebuild"] in ("byte-identical", "structurally identical"), result
    assert trace.read_text().count("start") == 4  # rebuilt on the device, as built


def test_a_reflash_of_the_device_rebuilds_exactly_its_engines_without_sending_the_onnx_again(
    sshd: LoopbackSshd, tmp_path: Path
) -> None:
    device = tmp_path / "device"
    project = device_project(tmp_path / "proj", {"lab": polygraphy_device(sshd, device)})
    assert project.trtbuild("all", "--device", "lab").code == 0
    (device / "root/etc/nv_tegra_release").write_text(JETPACK_6_2_1)  # the device is flashed with 6.2.1

    plan = project.trtbuild("plan", "--device", "lab", "--json")
    assert plan.code == 0, plan.stderr
    for name in ("net", "custom"):
        assert plan.json()["models"][name]["reasons"] == [
            "jetpack 6.2 -> 6.2.1",
            "l4t 36.4.3 -> 36.4.4",
            f"on polygraphy on {sshd.host}",
        ]
    rebuilt = project.trtbuild("all", "--device", "lab", "--json")
    assert rebuilt.code == 0, rebuilt.stdout + rebuilt.stderr
    assert steps_run(rebuilt.json()["models"]) == {"net": {"engine": "built"}, "custom": {"engine": "built"}}
    for entry in lock_steps(project, "lab").values():
        if entry["kind"] == "engine":
            assert entry["components"]["env"]["jetpack"] == "6.2.1"
    assert "0 of 2 input files sent" in (project.root / ".trtbuild/logs/lab/net.log").read_text()


def test_a_device_that_does_not_answer_fails_only_its_models_with_one_line(sshd: LoopbackSshd, tmp_path: Path) -> None:
    closed = free_port()  # nothing listens there
    gone = sshd.remote(port=closed, builder="polygraphy", python=sys.executable, workdir=str(tmp_path / "gone"))
    project = device_project(tmp_path / "proj", {"lab": polygraphy_device(sshd, tmp_path / "device"), "gone": gone})
    run = project.trtbuild("all", "--device", "gone", "--device", "lab", "-j", "2", "--json")
    assert run.code == 1, run.stdout + run.stderr
    by_device = {summary["device"]: summary["models"] for summary in run.json()["devices"]}
    assert {name: model["status"] for name, model in by_device["lab"].items()} == {"net": "built", "custom": "built"}
    for model in by_device["gone"].values():
        assert model["status"] == "failed"
        (line,) = model["reasons"]
        assert line == f"{sshd.host}: ssh: connect to host 127.0.0.1 port {closed}: Connection refused"
    gone_summary = next(summary for summary in run.json()["devices"] if summary["device"] == "gone")
    assert gone_summary["environment"] == {}  # nothing is known of it: not this machine's facts either
    assert not (project.root / "engines/gone").exists()
    assert not (project.root / "locks/gone.lock").exists()

    plan = project.trtbuild("plan", "--device", "gone")
    assert plan.code == 1
    assert f"port {closed}: Connection refused" in plan.stdout


def test_a_plan_changed_on_the_way_back_is_refused_and_nothing_is_kept(sshd: LoopbackSshd, tmp_path: Path) -> None:
    """The device's ``cat`` adds a byte to any plan it sends (a transfer that corrupts): the device's
    sha256sum says one thing, the bytes that arrive another."""
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / "cat").write_text(
        '#!/bin/sh\ncase "$1" in *.plan) /bin/cat "$1"; printf x;; *) exec /bin/cat "$@";; esac\n'
    )
    (shims / "cat").chmod(0o755)
    remote = polygraphy_device(sshd, tmp_path / "device")
    remote["env"]["PATH"] = f"{shims}:{os.environ['PATH']}"
    project = device_project(tmp_path / "proj", {"lab": remote})
    run = project.trtbuild("build", "net", "--device", "lab", "--json")
    assert run.code == 1, run.stdout + run.stderr
    net = run.json()["models"]["net"]
    assert net["status"] == "failed"
    assert "the plan that arrived from" in net["reasons"][0] and net["reasons"][0].endswith("; refused")
    assert list((project.root / "engines/lab").glob("*")) == []  # no engine, no partial file
    assert not (project.root / "locks/lab.lock").exists()  # nothing was recorded


TENSORRT_8_2_STATUS = """\
Package: libnvinfer8
Status: install ok installed
Architecture: arm64
Source: tensorrt
Version: 8.2.1-1+cuda10.2
Description: TensorRT runtime libraries

Package: libnvinfer-bin
Status: install ok installed
Architecture: arm64
Source: tensorrt
Version: 8.2.1-1+cuda10.2
Description: TensorRT binaries

Package: cuda-cudart-10-2
Status: install ok installed
Architecture: arm64
Version: 10.2.300-1
Description: CUDA Runtime native Libraries

Package: libcudnn8
Status: install ok installed
Architecture: arm64
Version: 8.2.1.32-1+cuda10.2
Description: cuDNN runtime libraries
"""


def test_a_jetpack_4_6_nano_is_probed_from_its_files_and_packages_for_trtexec(
    sshd: LoopbackSshd, tmp_path: Path
) -> None:
    """A Jetson Nano with JetPack 4.6 (no Python needed): L4T and the module from its files, TensorRT,
    CUDA and cuDNN from ``dpkg-query`` (real dpkg status format). trtexec itself is not here, so this
    stops at the plan."""
    root = tmp_path / "nano-root"
    env = sysroot(
        root,
        "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64",
        "NVIDIA Jetson Nano Developer Kit",
    )
    (root / "proc/meminfo").write_text("MemTotal:        4059356 kB\nMemFree:          200000 kB\n")
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(TENSORRT_8_2_STATUS)
    project = device_project(tmp_path / "proj", {"nano": sshd.remote(env=env, workdir=str(tmp_path / "work"))})
    plan = project.trtbuild("plan", "--device", "nano", "--json")
    assert plan.code == 0, plan.stderr
    facts = plan.json()["environment"]
    assert {key: facts[key] for key in ("builder", "builder_version", "cuda", "cudnn", "l4t", "jetpack")} == {
        "builder": "tensorrt",
        "builder_version": "8.2.1",
        "cuda": "10.2.300",
        "cudnn": "8.2.1.32",
        "l4t": "32.7.1",
        "jetpack": "4.6.x",
    }
    assert (facts["gpu"], facts["compute_capability"], facts["memory_gib"]) == ("Tegra X1 (Maxwell)", "5.3", 3.9)
    assert plan.json()["models"]["net"]["reasons"] == ["never built", f"on trtexec on {sshd.host}"]


def test_a_remote_field_with_a_bad_value_is_refused_with_its_file_and_field(tmp_path: Path) -> None:
    project = device_project(tmp_path / "proj", {"lab": {"host": "-oProxyCommand=sh", "builder": "trtexec"}})
    run = project.trtbuild("plan", "--device", "lab")
    assert run.code == 2
    assert "devices/lab.yaml" in run.stderr and "remote.host" in run.stderr


def test_a_build_that_fails_on_the_device_shows_its_builders_last_lines(sshd: LoopbackSshd, tmp_path: Path) -> None:
    project = device_project(tmp_path / "proj", {"lab": polygraphy_device(sshd, tmp_path / "device")})
    unsupported_op_net(project.root / "net.onnx")  # the device's parser rejects it
    (project.root / "builds.yaml").write_text("models:\n  net: {source: net.onnx}\n")
    run = project.trtbuild("build", "net", "--device", "lab", "--json")
    assert run.code == 1
    net = run.json()["models"]["net"]
    assert net["status"] == "failed"
    (reason,) = net["reasons"]  # whose build failed where, with the parser's node error
    assert (
        reason.startswith(f"polygraphy failed on {sshd.host} (exit code 1): In node 1") and "TotallyUnknownOp" in reason
    )
    assert "TotallyUnknownOp" in run.stderr  # the device builder's own words, in the log tail
    assert "TotallyUnknownOp" in (project.root / ".trtbuild/logs/lab/net.log").read_text()
    assert list((project.root / "engines/lab").glob("*")) == []
    assert list((tmp_path / "device/work/tmp").iterdir()) == []  # the scratch folder is removed


def test_two_devices_build_at_once_under_j2(sshd: LoopbackSshd, tmp_path: Path) -> None:
    """Each device's Python waits, at the start of its first build, until the other device has started one
    too (at most 60 s): both meet only if the two devices build at the same time."""
    devices = {}
    for name, other in (("lab-a", "lab-b"), ("lab-b", "lab-a")):
        shim = tmp_path / f"python-{name}"
        shim.write_text(
            "#!/bin/sh\n"
            'if [ "$2" = trtbuild.builder.child ]; then\n'
            f"  touch {tmp_path}/started-{name}; waited=0\n"
            f'  while [ ! -e {tmp_path}/started-{other} ] && [ "$waited" -lt 600 ]; do\n'
            "    sleep 0.1; waited=$((waited+1))\n"
            "  done\n"
            f"  [ -e {tmp_path}/started-{other} ] && echo {name} >> {tmp_path}/met\n"
            "fi\n"
            f'exec {sys.executable} "$@"\n'
        )
        shim.chmod(0o755)
        devices[name] = polygraphy_device(sshd, tmp_path / name, python=str(shim))
    project = device_project(tmp_path / "proj", devices)
    run = project.trtbuild("build", "net", "-d", "lab-a", "-d", "lab-b", "-j", "2", "--json")
    assert run.code == 0, run.stdout + run.stderr
    assert [summary["models"]["net"]["status"] for summary in run.json()["devices"]] == ["built", "built"]
    assert sorted((tmp_path / "met").read_text().split()) == ["lab-a", "lab-b"]


def test_a_device_python_without_tensorrt_fails_its_models_with_one_line(sshd: LoopbackSshd, tmp_path: Path) -> None:
    system_python = "/usr/bin/python3"  # Debian's, beside the virtualenv: no tensorrt, no tensorrt_rtx
    remote = polygraphy_device(sshd, tmp_path / "device", python=system_python)
    project = device_project(tmp_path / "proj", {"lab": remote})
    run = project.trtbuild("all", "--device", "lab", "--json")
    assert run.code == 1
    for model in run.json()["models"].values():
        (line,) = model["reasons"]
        assert line.startswith(f"{sshd.host}: {system_python} did not answer trtbuild's probe (it printed ")
        assert "no TensorRT builder found" in line


def test_a_device_that_cannot_build_fails_only_its_models_with_one_line(sshd: LoopbackSshd, tmp_path: Path) -> None:
    """A device that answers but cannot build (trtexec with no TensorRT in its root; a ``python`` that does
    not answer the probe) fails its own models with one line; the run goes on for the other device and
    reports it."""
    empty = tmp_path / "empty-root"
    empty.mkdir()
    no_tensorrt = sshd.remote(env={"TRTBUILD_SYSROOT": str(empty)}, workdir=str(tmp_path / "w1"))
    not_python = polygraphy_device(sshd, tmp_path / "echo", python="/bin/echo")
    devices = {"lab": polygraphy_device(sshd, tmp_path / "device"), "bare": no_tensorrt, "echo": not_python}
    project = device_project(tmp_path / "proj", devices)
    run = project.trtbuild("all", "-d", "bare", "-d", "echo", "-d", "lab", "-j", "3", "--json")
    assert run.code == 1, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    by_device = {summary["device"]: summary["models"] for summary in run.json()["devices"]}
    assert {name: model["status"] for name, model in by_device["lab"].items()} == {"net": "built", "custom": "built"}
    for device, needle in (("bare", "no TensorRT found"), ("echo", "/bin/echo did not answer trtbuild's probe")):
        for model in by_device[device].values():
            assert model["status"] == "failed"
            (line,) = model["reasons"]
            assert line.startswith(f"{sshd.host}: ") and needle in line, line
    plan = project.trtbuild("plan", "-d", "echo")
    assert plan.code == 1 and "Traceback" not in plan.stderr, plan.stderr
    assert "did not answer trtbuild's probe" in plan.stdout


def test_a_workdir_under_tilde_is_the_home_and_one_starting_with_a_dash_is_refused(tmp_path: Path) -> None:
    """``workdir: ~/trtbuild`` is quoted on the device, so its shell never expands ``~``: it must mean the
    home's ``trtbuild``, not a folder named ``~``. A workdir starting with ``-`` would be read as an option
    by mkdir, cat, rm on the device."""
    from trtbuild.manifest.loader import load_project

    devices = {"tilde": {"host": "lab", "workdir": "~/trtbuild"}, "home": {"host": "lab", "workdir": "~"}}
    project = device_project(tmp_path / "proj", devices)
    for device, expected in (("tilde", "trtbuild"), ("home", ".")):
        remote = load_project(project.root / "builds.yaml", device).remote_builder
        assert remote is not None and remote["workdir"] == expected
    for name, workdir in (("dash", "-rf"), ("other", "~jetson/trtbuild"), ("colon", "a:b")):  # ':' splits PYTHONPATH
        (project.root / "devices" / f"{name}.yaml").write_text(
            yaml.safe_dump({"remote": {"host": "lab", "workdir": workdir}})
        )
        run = project.trtbuild("plan", "--device", name)
        assert run.code == 2, run.stdout + run.stderr
        assert f"devices/{name}.yaml" in run.stderr and "remote.workdir" in run.stderr


def test_a_long_temporary_folder_does_not_break_the_shared_connection(sshd: LoopbackSshd, tmp_path: Path) -> None:
    """The shared connection's socket lives in a temporary folder; under a long ``TMPDIR`` (macOS's
    ``/var/folders/.../T/``, a CI job's) its path would pass the Unix socket limit and ssh would refuse
    to listen: every device would fail."""
    long_tmp = tmp_path / ("t" * 60)
    long_tmp.mkdir()
    project = device_project(tmp_path / "proj", {"lab": polygraphy_device(sshd, tmp_path / "device")})
    plan = project.trtbuild("plan", "--device", "lab", env={"TMPDIR": str(long_tmp)})
    assert plan.code == 0, plan.stdout + plan.stderr
    assert "on polygraphy on" in plan.stdout
    assert list(long_tmp.iterdir()) == []


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its parent counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _masters(port: int) -> dict[int, str]:
    """The ``ssh -M`` processes to 127.0.0.1:``port`` -> their ``ControlPath`` folder."""
    found = {}
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if argv[0] == "ssh" and "-M" in argv and str(port) in argv:
            path = next(arg for arg in argv if arg.startswith("ControlPath="))
            found[int(cmdline.parent.name)] = str(Path(path.split("=", 1)[1]).parent)
    return found


def test_an_interrupted_device_build_stops_the_builder_on_the_device_and_leaves_no_connection(
    sshd: LoopbackSshd, tmp_path: Path
) -> None:
    """Ctrl-C while the device builds (a builder that prints nothing, and that started a process of its
    own): the builder and what it started stop on the device, the shared connection is closed and its
    socket folder removed. Without a terminal nothing tells a remote command that ssh went away."""
    import signal
    import subprocess
    import time

    pids = tmp_path / "pids"
    shim = tmp_path / "python-slow"
    shim.write_text(
        f'#!/bin/sh\ncase "$2" in trtbuild.builder.child) sleep 120 & echo "$$ $!" > {pids}; wait; exit 1;; esac\n'
        f'exec {sys.executable} "$@"\n'
    )
    shim.chmod(0o755)
    project = device_project(tmp_path / "proj", {"lab": polygraphy_device(sshd, tmp_path / "device", python=str(shim))})
    env = user_env(None)
    run = subprocess.Popen(
        [sys.executable, "-m", "trtbuild", "build", "net", "--device", "lab"],
        cwd=project.root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while not (pids.exists() and len(pids.read_text().split()) == 2) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pids.exists(), run.kill() or run.communicate()[0]
    builder, started = (int(pid) for pid in pids.read_text().split())
    (master, sockets), *others = _masters(sshd.port).items()
    assert others == [] and _alive(builder) and _alive(started) and Path(sockets).is_dir()
    run.send_signal(signal.SIGINT)
    output, _ = run.communicate(timeout=60)
    assert run.returncode == 130, output
    deadline = time.monotonic() + 10
    while (_alive(builder) or _alive(started)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(builder) and not _alive(started)  # before: both ran on for two minutes
    assert not _alive(master) and not Path(sockets).exists()


def test_audit_and_push_of_a_device_project_use_the_devices_facts(sshd: LoopbackSshd, tmp_path: Path) -> None:
    """The engines of a builder device are keyed with the device's fingerprint: ``audit`` must compare them
    with the device (not report every engine drifted from this machine) and rebuild on it, and ``push``
    must see them fresh (not "not fresh here")."""
    project = device_project(tmp_path / "proj", {"lab": polygraphy_device(sshd, tmp_path / "device")})
    assert project.trtbuild("all", "--device", "lab").code == 0
    audit = project.trtbuild("audit", "--device", "lab", "--json")
    assert audit.code == 0, audit.stdout + audit.stderr
    assert {name: result["ok"] for name, result in audit.json().items()} == {"net": True, "custom": True}
    rebuilt = project.trtbuild("audit", "--rebuild", "--device", "lab", "--json")
    assert rebuilt.code == 0, rebuilt.stdout + rebuilt.stderr
    assert rebuilt.json()["net"]["rebuild"] in ("byte-identical", "structurally identical")
    assert "trtbuild.builder.child" in (project.root / ".trtbuild/logs/lab/net.audit.log").read_text()  # on it
    pushed = project.trtbuild("push", "--device", "lab", "--remote-cache", f"oci-layout:{tmp_path / 'cache'}", "--json")
    assert pushed.code == 0, pushed.stdout + pushed.stderr
    assert json.loads(pushed.stdout)["stale"] == [], pushed.stdout
    assert {"engine:engines/lab/net.engine", "engine:engines/lab/custom.engine"} <= set(
        json.loads(pushed.stdout)["pushed"]
    )
