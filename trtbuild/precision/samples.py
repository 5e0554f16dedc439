"""What a sample (``manifest.schema.Sample``) feeds the model: calibration and validation as ONNX Runtime
feeds of the shapes the engine takes.

- ``images``: one image input; each image a row of batch 1, grouped into feeds of the input's batch
  (``images.batches``);
- ``npy``: each sorted file one feed, a ``.npy`` for a single input or an ``.npz`` with one array per
  input name, each of the input's feed shape (or, at batch 1, that shape without its batch dim);
- ``random``: each of ``count`` feeds drawn for every input from ``[low, high)`` by numpy's PCG64
  generator (``numpy.random.default_rng(seed)``), whole numbers for integer inputs.

The parent reads only ``files`` (which files a sample uses, for the keys and the overlap check); the rest
runs in the precision child, where numpy and PIL are imported.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from trtbuild.errors import BuildError, ManifestError
from trtbuild.precision import images

NPY_SUFFIXES = {".npy", ".npz"}


def files(sample: Any, root: Path) -> list[Path]:
    """The files a sample uses, in feed order: its images (one per (file, crop) pair, so a file may repeat),
    its ``.npy``/``.npz`` files, or none for ``random``.

    Raises:
        ManifestError: nothing matches, or the package holding the images is not installed.
    """
    if sample.images is not None:
        return [path for path, _ in images.sample_plan(sample, root)]
    if sample.random is not None:
        return []
    patterns = [sample.npy.glob] if isinstance(sample.npy.glob, str) else sample.npy.glob
    found = sorted({path for pattern in patterns for path in root.glob(pattern) if path.suffix in NPY_SUFFIXES})
    if not found:
        raise ManifestError(f"npy: no .npy or .npz file matches {sample.npy.glob!r} in {root}")
    return found[: sample.count]


def batch_of(inputs: dict[str, list[int]]) -> int:
    """The batch one feed holds: the first input's first dim (1 for a scalar input)."""
    shape = next(iter(inputs.values()), [])
    return max(1, shape[0]) if shape else 1


def feeds(
    sample: Any, root: Path, preprocess: Any, inputs: dict[str, list[int]], model: Path
) -> tuple[list[dict[str, Any]], list[int]]:
    """The sample as feeds (``{input name: array of its feed shape}``), and per feed how many of its rows
    are the sample's own (``images.real_images``; every row for ``npy`` and ``random``).

    ``inputs`` maps every graph input to its feed shape (``steps.precision.feed_inputs``); ``model`` is the
    ONNX whose input types the arrays take (FP16 inputs are fed FP32: the caller casts where it must).

    Raises:
        BuildError: an array file lacks an input, or an array's shape is not the input's.
    """
    batch = batch_of(inputs)
    if sample.images is not None:
        plan = images.sample_plan(sample, root)
        ((name, shape),) = inputs.items()
        return images.batches(plan, preprocess, name, shape), images.real_images(len(plan), batch)
    types = _input_types(model)
    made = _random(sample, inputs, types) if sample.random is not None else _arrays(sample, root, inputs, types)
    return made, [batch] * len(made)


def _input_types(model: Path) -> dict[str, Any]:
    """Graph input -> the numpy type it is fed (float32 for FP16 inputs)."""
    import numpy as np
    import onnx
    from onnx import helper

    graph = onnx.load_model(str(model), load_external_data=False).graph
    constants = {tensor.name for tensor in graph.initializer}
    types = {}
    for value in graph.input:
        if value.name not in constants:
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type))
            types[value.name] = np.dtype(np.float32) if dtype == np.float16 else dtype
    return types


def _random(sample: Any, inputs: dict[str, list[int]], types: dict[str, Any]) -> list[dict[str, Any]]:
    import numpy as np

    generator = np.random.default_rng(sample.random.seed)
    low, high = sample.random.low, sample.random.high
    made = []
    for _ in range(sample.count):
        feed = {}
        for name, shape in inputs.items():
            dtype = types[name]
            values: Any
            if dtype.kind in "iub":
                values = generator.integers(math.ceil(low), max(math.ceil(low) + 1, math.ceil(high)), size=shape)
            else:
                values = generator.uniform(low, high, size=shape)
            feed[name] = np.ascontiguousarray(values.astype(dtype))
        made.append(feed)
    return made


def _arrays(sample: Any, root: Path, inputs: dict[str, list[int]], types: dict[str, Any]) -> list[dict[str, Any]]:
    import numpy as np

    made = []
    for path in files(sample, root):
        if path.suffix == ".npy" and len(inputs) != 1:
            raise BuildError(f"{path.name}: a .npy holds one array; this model has inputs {list(inputs)}: give .npz")
        try:
            if path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as archive:
                    arrays = {name: archive[name] for name in archive.files}
            else:
                arrays = {next(iter(inputs)): np.load(path, allow_pickle=False)}
        except (OSError, ValueError, EOFError) as exc:  # not an array file, or a pickled object
            raise BuildError(f"{path.name}: not a numpy array file ({type(exc).__name__}: {exc})") from None
        feed = {}
        for name, shape in inputs.items():
            if name not in arrays:
                raise BuildError(f"{path.name}: no array {name!r} (holds {sorted(arrays)}; inputs {list(inputs)})")
            array = arrays[name]
            if list(array.shape) == shape[1:] and shape[:1] == [1]:
                array = array[None]
            if list(array.shape) != shape:
                raise BuildError(f"{path.name}: array {name!r} is {list(array.shape)}; the input takes {shape}")
            feed[name] = np.ascontiguousarray(array.astype(types[name]))
        made.append(feed)
    return made
