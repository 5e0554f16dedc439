"""The engine step: ONNX -> serialized TensorRT engine (plan), through Polygraphy in ``builder.child``.

Key components: ``onnx`` (content digest, external data included), ``settings`` (``state.keys.build_settings``),
``plugins`` (library -> sha256) and ``env`` (the environment fingerprint: builder flavour and version,
CUDA, L4T, device, GPU). The timing cache is shared by the project's builds and audit rebuilds, so the
same GPU picks the same tactics; it is an accelerator, not part of any key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trtbuild.child_requests import ChildRequest, DeviceEngineRequest, EngineRequest
from trtbuild.isolation import Produced
from trtbuild.manifest.target import ModelTarget, Project
from trtbuild.state.keys import KEY_SCHEMA, build_settings
from trtbuild.state.onnx_digest import external_data_files, onnx_digest
from trtbuild.state.statcache import StatCache
from trtbuild.steps.choices import engine_onnx, uses_fp16_onnx
from trtbuild.steps.context import Context
from trtbuild.steps.step import Step


def plugin_digests(cache: StatCache, plugins: tuple[Path, ...], root: Path) -> dict[str, str]:
    """Plugin library (path relative to ``root``, else absolute) -> sha256.

    Raises:
        FileNotFoundError: a plugin library is missing.
    """
    found = {}
    for path in plugins:
        try:
            name = path.relative_to(root).as_posix()
        except ValueError:
            name = path.as_posix()
        found[name] = cache.sha256(path)
    return found


def engine_request(
    target: ModelTarget, env: dict[str, Any], settings: dict[str, Any], timing_cache: Path
) -> EngineRequest:
    """The builder child's request for ``target`` with ``settings`` (``state.keys.build_settings``)."""
    return EngineRequest.of(
        settings,
        flavour=env["builder"],
        timing_cache=str(timing_cache),
        onnx=str(engine_onnx(target, env)),
        plugins=[str(path) for path in target.plugins],
        plugin_sha256=list(target.plugin_sha256),
    )


def device_request(
    target: ModelTarget, ctx: Context, settings: dict[str, Any], onnx_digest: str
) -> DeviceEngineRequest:
    """The device build child's request (``ssh.child``) for ``target`` on ``ctx.device``: how to reach the
    device, the engine ONNX's files (the model, then its external data) and what the device's builder needs
    to know of them (FP16 tensors, Q/DQ layers), the plugins and their pins, the settings."""
    assert ctx.device is not None
    onnx = engine_onnx(target, ctx.env)
    files = [[str(onnx), onnx.name]] + [[str(onnx.parent / name), name] for name in external_data_files(onnx)]
    return DeviceEngineRequest(
        **ctx.device.request(),
        flavour=ctx.env["builder"],
        version=ctx.env["builder_version"],
        onnx_digest=onnx_digest,
        onnx_files=files,
        plugins=[str(path) for path in target.plugins],
        plugin_sha256=list(target.plugin_sha256),
        fp16_tensors=uses_fp16_onnx(target, ctx.env),
        qdq_layers=target.spec.precision == "int8",
        settings=settings,
    )


def engine_step(target: ModelTarget, project: Project, env: dict[str, Any], gate: tuple[Path, ...] = ()) -> Step:
    """``engine:<engine path>``, built from ``steps.choices.engine_onnx``; ``gate``: the accuracy report
    that must pass first (a graph edge only: the engine's key is its ONNX, not the report). With a builder
    device (``remote:`` in the overlay) the step builds there (``ssh.child``), one at a time per device."""
    onnx = engine_onnx(target, env)
    on_device = project.remote_builder is not None

    def components(ctx: Context, recorded: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "schema": KEY_SCHEMA,
            "onnx": onnx_digest(ctx.stats, onnx),
            "settings": build_settings(target),
            "plugins": plugin_digests(ctx.stats, target.plugins, ctx.project.root),
            "env": ctx.env,
        }

    def request(ctx: Context, found: dict[str, Any]) -> ChildRequest:
        if on_device:
            return device_request(target, ctx, found["settings"], found["onnx"])
        return engine_request(target, ctx.env, found["settings"], ctx.project.timing_cache)

    def facts(produced: Produced) -> dict[str, Any]:
        found = {"builder": produced.result["builder"], "network": produced.result.get("network")}
        return found | ({"host": produced.result["host"]} if "host" in produced.result else {})

    return Step(
        id=f"engine:{project.relative(target.engine)}",
        kind="engine",
        model=target.name,
        output=target.engine,
        consumes=(onnx, *gate),
        inputs=(onnx,),
        components=components,
        request=request,
        output_label="engine",
        facts=facts,
        on_device=on_device,
    )
