"""The content hash of an ONNX model, external-data files included.

A model saved with external data (``onnx.save_model(..., save_as_external_data=True)``) keeps its
weights in files named by each tensor's ``external_data`` ``location`` entry, relative to the model's
folder (ONNX spec, "External Data"). Their bytes change the engine, so they are part of the digest.
The list of external files is kept in the stat cache, so an unchanged model is neither parsed nor read.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from trtbuild.errors import ManifestError
from trtbuild.state.statcache import StatCache


def external_data_files(onnx_path: Path) -> list[str]:
    """The external-data locations an ONNX model names, sorted, relative to its folder.

    Raises:
        ManifestError: the file is not a readable ONNX model, or a location is absolute or escapes the
            model's folder (a crafted model must not make trtbuild read arbitrary files).
    """
    import onnx
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    try:
        model = onnx.load_model(str(onnx_path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, ValueError, ... for non-ONNX bytes
        raise ManifestError(f"{onnx_path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    folder = Path(os.path.realpath(onnx_path.parent))
    locations = set()
    for tensor in _get_all_tensors(model):
        if not uses_external_data(tensor):
            continue
        location = next((entry.value for entry in tensor.external_data if entry.key == "location"), "")
        resolved = Path(os.path.realpath(folder / location))
        if not location or Path(location).is_absolute() or folder not in resolved.parents:
            raise ManifestError(
                f"{onnx_path}: tensor {tensor.name!r} has external data at {location!r}, outside the model's folder"
            )
        locations.add(location)
    return sorted(locations)


def onnx_digest(cache: StatCache, onnx_path: Path) -> str:
    """sha256 identifying the model's bytes and its external data; equal to the file's sha256 without any.

    Raises:
        FileNotFoundError: the model or one of its external-data files is missing.
        ManifestError: see ``external_data_files``.
    """
    entry = cache.lookup(onnx_path)
    if entry is None or "external" not in entry:
        entry = cache.record(onnx_path, external=external_data_files(onnx_path))
    if not entry["external"]:
        return entry["sha256"]
    parts = {"model": entry["sha256"]}
    for location in entry["external"]:
        parts[location] = cache.sha256(onnx_path.parent / location)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
