"""``trtbuild env``: the environment fingerprint that goes into every engine's key, probed now."""

from __future__ import annotations

from typing import Any

from trtbuild.env.fingerprint import probe
from trtbuild.env.jetson import device_of


def env() -> dict[str, Any]:
    """The fingerprint (``env.fingerprint.probe``, never cached) and ``device``: the device it is detected as."""
    found = probe()
    return {**found, "device": device_of(found)}
