"""Deserialize an engine and describe it with TensorRT's engine inspector (child process).

``python -m trtbuild.builder.inspect_child REQUEST.json`` writes a JSON description of
``request.engine`` to ``request.partial``: I/O tensors with their per-profile shapes, profile
count, layer count and precision mix (``IEngineInspector.getEngineInformation`` in JSON format). Fails
with a clear message where the engine cannot be deserialized — e.g. a TensorRT-RTX plan on a machine
without a GPU of its compute capabilities — and the caller falls back to the lock's build-time summary.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from trtbuild.builder import compat
from trtbuild.child_requests import InspectRequest
from trtbuild.childside import child_main
from trtbuild.errors import BuildError


def _io(trt: Any, engine: Any) -> list[dict[str, Any]]:
    tensors = []
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        entry = {
            "name": name,
            "mode": str(engine.get_tensor_mode(name)).rsplit(".", 1)[-1],
            "dtype": str(engine.get_tensor_dtype(name)).rsplit(".", 1)[-1],
            "shape": list(engine.get_tensor_shape(name)),
        }
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            entry["profiles"] = [
                [list(dims) for dims in engine.get_tensor_profile_shape(name, p)]
                for p in range(engine.num_optimization_profiles)
            ]
        tensors.append(entry)
    return tensors


def _layers(trt: Any, engine: Any) -> tuple[int, dict[str, int]]:
    information = json.loads(engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))
    layers = information.get("Layers", [])
    precisions: Counter[str] = Counter()
    for layer in layers:
        outputs = layer.get("Outputs", []) if isinstance(layer, dict) else []
        if outputs and isinstance(outputs[0], dict):
            precisions[str(outputs[0].get("Format/Datatype", "?")).split(" ")[0]] += 1
    return len(layers), dict(sorted(precisions.items()))


def inspect(request: InspectRequest) -> dict[str, Any]:
    """Describe ``request.engine``, built by ``request.flavour``.

    Raises:
        BuildError: TensorRT could not deserialize the engine on this machine.
    """
    trt = compat.import_trt(request.flavour)
    logger = trt.Logger(trt.Logger.ERROR)
    engine = trt.Runtime(logger).deserialize_cuda_engine(Path(request.engine).read_bytes())
    if engine is None:
        raise BuildError("TensorRT could not deserialize the engine on this machine (see the log)")
    layers, precisions = _layers(trt, engine)
    description = {
        "io": _io(trt, engine),
        "profiles": engine.num_optimization_profiles,
        "layers": layers,
        "precisions": precisions,
    }
    Path(request.partial).write_text(json.dumps(description))
    return {"seconds": 0.0}


if __name__ == "__main__":
    sys.exit(child_main(inspect, sys.argv[1:]))
