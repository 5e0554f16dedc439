"""The engine step on a builder device: run by ``isolation.run_isolated`` like the local builder child, it
builds the plan on the device over SSH and writes it to the step's partial file here.

Run as ``python -m trtbuild.ssh.child REQUEST.json TARGET``. In order:

1. the engine ONNX (and its external data) and the plugin libraries are sent to the device's work folder,
   content-addressed (``<workdir>/onnx/<onnx digest>/``, ``<workdir>/plugins/<sha256>/``): a file the device
   already holds with the same sha256 is not sent again;
2. a scratch folder ``<workdir>/tmp/build.XXXXXX`` is made on the device;
3. the builder runs there: ``trtexec`` with the flags of ``builder.trtexec.trtexec_flags`` for the device's
   TensorRT version, or (``builder: polygraphy``) trtbuild's own builder child from the zip of
   ``ssh.bundle``; its output streams into this step's log; the timing cache is the device's
   (``<workdir>/timing/<device>.cache``);
4. the device reports the plan's sha256 and size (``sha256sum``); the plan is streamed back into the
   partial file and refused unless the bytes that arrived have that sha256;
5. the scratch folder is removed, whatever happened.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from trtbuild.builder.trtexec import trtexec_flags
from trtbuild.child_requests import DeviceEngineRequest, EngineRequest
from trtbuild.childside import child_main
from trtbuild.errors import BuildError
from trtbuild.files import pin_mismatch, sha256_file
from trtbuild.ssh.bundle import remote_bundle
from trtbuild.ssh.transport import Connection, DeviceError, ensure_files


def _timing_cache(request: DeviceEngineRequest) -> str:
    """The device's timing cache: ``<workdir>/timing/<device>.cache``."""
    return f"{request.workdir}/timing/{request.device}.cache"


def _inputs(request: DeviceEngineRequest) -> tuple[list[tuple[Path | bytes, str, str]], str, list[str]]:
    """The files the build needs on the device, as ``(local, remote path, sha256)``: the ONNX files under
    ``<workdir>/onnx/<onnx digest>/``, the plugins under ``<workdir>/plugins/<sha256>/``; with the remote
    ONNX path and the remote plugin paths.

    Raises:
        BuildError: a pinned plugin's bytes are not its pin.
    """
    work = request.workdir
    folder = f"{work}/onnx/{request.onnx_digest}"
    files: list[tuple[Path | bytes, str, str]] = [
        (Path(local), f"{folder}/{name}", sha256_file(Path(local))) for local, name in request.onnx_files
    ]
    plugins = []
    pins = request.plugin_sha256 or [None] * len(request.plugins)
    for local, pin in zip(request.plugins, pins):
        digest = sha256_file(Path(local))
        problem = pin_mismatch(digest, pin, f"plugin {local}", "not sent")
        if problem:
            raise BuildError(problem)
        plugins.append(f"{work}/plugins/{digest}/{Path(local).name}")
        files.append((Path(local), plugins[-1], digest))
    return files, f"{folder}/{request.onnx_files[0][1]}", plugins


def _builder_command(request: DeviceEngineRequest, onnx: str, plugins: list[str], scratch: str) -> list[str]:
    """The command that builds ``<scratch>/engine.plan`` on the device."""
    if request.builder == "trtexec":
        flags = trtexec_flags(
            request.version,
            request.settings,
            onnx=onnx,
            engine=f"{scratch}/engine.plan",
            timing_cache=_timing_cache(request),
            plugins=plugins,
            fp16_tensors=request.fp16_tensors,
            qdq_layers=request.qdq_layers,
        )
        return [request.trtexec, *flags]
    _, bundle, _ = remote_bundle(request.workdir)
    return [
        "env",
        f"PYTHONPATH={bundle}",
        request.python,
        "-m",
        "trtbuild.builder.child",
        f"{scratch}/request.json",
        request.target,
    ]


def _child_request(request: DeviceEngineRequest, onnx: str, plugins: list[str], scratch: str) -> bytes:
    """``builder: polygraphy``: the request of trtbuild's builder child on the device."""
    child = EngineRequest.of(
        request.settings,
        flavour=request.flavour,
        timing_cache=_timing_cache(request),
        onnx=onnx,
        plugins=plugins,
        plugin_sha256=[None] * len(plugins),  # the device's copies were checked on arrival
        partial=f"{scratch}/engine.plan",
        result=f"{scratch}/result.json",
        target=request.target,
    )
    return child.to_json().encode()


def build(request: DeviceEngineRequest) -> dict[str, Any]:
    """Build the request's engine on its device and write the plan to ``request.partial``.

    Returns:
        ``{"builder": "tensorrt 10.3.0.30 (trtexec on jetson@orin-01)", "seconds": ..., "network": summary
        or None, "host": ...}``.

    Raises:
        DeviceError: the device did not answer or a transfer failed.
        BuildError: the builder failed on the device (its output is in this step's log), or the plan that
            arrived is not the one the device reported (refused: nothing is kept).
    """
    connection = Connection(**request.connection)
    work = request.workdir
    started = time.monotonic()
    files, onnx, plugins = _inputs(request)
    scratch_dir = f"{work}/tmp/build.{os.urandom(8).hex()}"
    command = _builder_command(request, onnx, plugins, scratch_dir)  # a setting the version refuses: nothing sent
    if request.builder == "polygraphy":
        data, bundle, digest = remote_bundle(work)
        files.append((data, bundle, digest))
    sent = ensure_files(connection, files)
    print(f"[device] {len(sent)} of {len(files)} input files sent to {connection.host}", flush=True)
    # scratch folders of builds that were killed with the connection are swept once a day old
    connection.run_script(
        'mkdir -p "$1/tmp" "$1/timing" && mkdir "$2" && '
        'find "$1/tmp" -mindepth 1 -maxdepth 1 -name "build.*" -mtime +0 -exec rm -rf {} + 2>/dev/null; true',
        args=[work, scratch_dir],
    )
    try:
        if request.builder == "polygraphy":
            body = _child_request(request, onnx, plugins, scratch_dir)
            connection.upload(body, f"{scratch_dir}/request.json", sha256=hashlib.sha256(body).hexdigest())
        print(f"[device] on {connection.host}: {connection.command_line(command)}", flush=True)
        code = connection.stream(command, sys.stdout)
        if code != 0:
            raise BuildError(f"{request.builder} failed on {connection.host} (exit code {code})")
        reported = (
            connection.run_script('sha256sum "$1" | cut -c1-64', args=[f"{scratch_dir}/engine.plan"]).decode().strip()
        )
        with open(request.partial, "wb") as writer:
            arrived, size = connection.download(f"{scratch_dir}/engine.plan", writer)
        if arrived != reported:
            raise BuildError(
                f"the plan that arrived from {connection.host} has sha256 {arrived} ({size} bytes), not the "
                f"{reported} the device reported; refused"
            )
        network = None
        if request.builder == "polygraphy":
            network = json.loads(connection.run(["cat", f"{scratch_dir}/result.json"])).get("network")
    finally:
        try:
            connection.run(["rm", "-rf", scratch_dir])
        except DeviceError:
            pass  # the device went away: its scratch folder stays in <workdir>/tmp, never reused
    builder = f"{request.flavour} {request.version} ({request.builder} on {connection.host})"
    return {"builder": builder, "seconds": time.monotonic() - started, "network": network, "host": connection.host}


if __name__ == "__main__":
    sys.exit(child_main(build, sys.argv[1:]))
