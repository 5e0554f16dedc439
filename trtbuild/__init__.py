"""trtbuild: declarative multi-model TensorRT engine builds that rebuild only what is stale.

For applications (docs/deploy.md)::

    import trtbuild

    path = trtbuild.engine("yolo-face")  # the engine's Path if fresh for this machine, else StaleEngineError

``engine``, ``StaleEngineError`` and ``ManifestError`` are loaded on first use (``trtbuild.deploy``,
standard library only), so ``import trtbuild`` — and with it the console script's no-op fast path —
stays as cheap as before.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["ManifestError", "StaleEngineError", "TrtbuildError", "engine"]

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (type checkers treat the name as True)
if TYPE_CHECKING:
    from typing import Any

    from trtbuild.deploy import StaleEngineError, engine
    from trtbuild.errors import ManifestError, TrtbuildError

_LAZY = {"engine": "deploy", "StaleEngineError": "deploy", "ManifestError": "errors", "TrtbuildError": "errors"}


def __getattr__(name: str) -> Any:
    """Import the application API on first access (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(f"module 'trtbuild' has no attribute {name!r}")
    if _LAZY[name] == "deploy":
        from trtbuild import deploy

        value = getattr(deploy, name)
    else:
        from trtbuild import errors

        value = getattr(errors, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
