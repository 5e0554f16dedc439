"""The FP16 conversion's child process (``python -m trtbuild.precision.child REQUEST.json``).

Reads ``request["onnx"]``, converts it (``precision.fp16``), checks it with ``onnx.checker`` and writes
it to ``request["partial"]``. Runs apart from the orchestrator like every step that loads a model.
"""

from __future__ import annotations

import sys
import time
import warnings
from typing import Any

from trtbuild.errors import BuildError
from trtbuild.isolation import child_main
from trtbuild.precision import fp16


def convert(request: dict[str, Any]) -> dict[str, Any]:
    """Write the FP16 version of ``request["onnx"]`` to ``request["partial"]``.

    Raises:
        BuildError: the conversion failed or its result fails ``onnx.checker``.
    """
    import onnx

    started = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:  # "truncated to 1e-07" for every tiny weight
        warnings.simplefilter("always")
        try:
            converted = fp16.convert(onnx.load_model(request["onnx"]))
            onnx.checker.check_model(converted)
        except (ValueError, onnx.checker.ValidationError) as exc:
            raise BuildError(f"FP16 conversion failed: {exc}") from None
    onnx.save_model(converted, request["partial"])
    print(f"FP16 conversion: {len(caught)} converter warnings (values clamped to the FP16 range)")
    return {"seconds": time.monotonic() - started}


if __name__ == "__main__":
    sys.exit(child_main(convert, sys.argv[1:]))
