"""The builder's child process: ONNX -> serialized engine (plan) through Polygraphy's TensorRT backend.

Run by ``trtbuild.isolation.run_isolated`` as ``python -m trtbuild.builder.child REQUEST.json``.
Everything TensorRT and Polygraphy log goes to this process's stdout/stderr, which the parent keeps as
the model's build log.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from trtbuild.builder import compat
from trtbuild.builder.summary import network_summary
from trtbuild.child_requests import EngineRequest
from trtbuild.childside import child_main, private_copy
from trtbuild.errors import BuildError


def _profiles(request: EngineRequest) -> list[Any]:
    from polygraphy.backend.trt import Profile

    profiles = []
    for shapes in request.profiles:
        profile = Profile()
        for name, bounds in shapes.items():
            profile.add(name, min=bounds["min"], opt=bounds["opt"], max=bounds["max"])
        profiles.append(profile)
    return profiles


def verified_plugins(request: EngineRequest, scratch: Path) -> list[str]:
    """The plugin libraries to load: each pinned one (``request.plugin_sha256``, aligned with
    ``request.plugins``) as a private copy in ``scratch`` whose bytes matched the pin, each unpinned one
    (inside the project: the manifest refuses others) where it is.

    Raises:
        BuildError: a pinned plugin's bytes do not match its pin (nothing is loaded).
    """
    pins = request.plugin_sha256 or [None] * len(request.plugins)
    return [
        path if pin is None else str(private_copy(Path(path), scratch / str(index), pin, "plugin"))
        for index, (path, pin) in enumerate(zip(request.plugins, pins))
    ]


def _parse(request: EngineRequest, scratch: Path) -> tuple[Any, Any, Any]:
    """(builder, network, parser) for the request's ONNX, plugins (verified) loaded first.

    Raises:
        BuildError: a plugin does not match its pin, or the ONNX parser rejected the model (its errors are
            in the log).
    """
    from polygraphy.backend.trt import LoadPlugins, NetworkFromOnnxPath
    from polygraphy.exception import PolygraphyException

    loader = NetworkFromOnnxPath(request.onnx)
    if request.plugins:
        loader = LoadPlugins(plugins=verified_plugins(request, scratch), obj=loader)
    try:
        return loader()
    except PolygraphyException as exc:
        raise BuildError(f"the ONNX parser rejected {request.onnx}: {exc}") from None


def _config(features: compat.Features, trt: Any, network: Any, request: EngineRequest, timing: dict[str, Any]) -> Any:
    """Polygraphy's config loader for the request's settings (feature checks in ``compat``)."""
    from polygraphy.backend.trt import PostprocessConfig

    options: dict[str, Any] = {
        "profiles": _profiles(request) if request.profiles != [{}] else None,
        **compat.workspace_options(features, trt, request.workspace),
        **compat.optimization_level_options(features, request.builder_optimization_level),
        **compat.precision_options(features, request.precision, trt, network),
        **compat.dla_options(features, request.dla_core),
        **compat.target_options(features, request.compute_capabilities),
        **timing,
    }
    config = compat.config_loader(features)(**options)
    for callback in compat.config_callbacks(features, request.dla_core, request.workspace):
        config = PostprocessConfig(config, callback)
    return config


def build(request: EngineRequest) -> dict[str, Any]:
    """Build the engine described by ``request`` and write it to ``request.partial``.

    Returns:
        ``{"builder": "tensorrt-rtx 1.7.1.116", "seconds": build time, "network": summary}``.

    Raises:
        BuildError: the ONNX parser failed, the builder returned no engine, or the settings ask for
            something the builder cannot do.
    """
    trt = compat.import_trt(request.flavour)
    from polygraphy.backend.trt import engine_bytes_from_network
    from polygraphy.exception import PolygraphyException

    features = compat.features_of(request.flavour, trt)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="trtbuild-plugins-") as scratch:  # loaded libraries stay mapped
        builder, network, parser = _parse(request, Path(scratch))
    timing, save_timing = compat.timing_cache_options(features, request.timing_cache)
    config = _config(features, trt, network, request, timing)
    try:
        plan = engine_bytes_from_network((builder, network, parser), config=config, save_timing_cache=save_timing)
    except PolygraphyException as exc:
        raise BuildError(f"the builder failed: {exc}") from None
    Path(request.partial).write_bytes(memoryview(plan))
    return {"builder": features.describe(), "seconds": time.monotonic() - started, "network": network_summary(network)}


if __name__ == "__main__":
    sys.exit(child_main(build, sys.argv[1:]))
