"""``trtbuild devices``: the device overlays of a project (``devices/*.yaml``), the detected one, their locks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trtbuild.env.fingerprint import fingerprint
from trtbuild.env.jetson import device_of
from trtbuild.manifest.devices import known_devices


@dataclass(frozen=True)
class DeviceRow:
    """One device overlay: its name, whether this machine is detected as it, whether it has a lock."""

    device: str
    detected: bool
    lock: bool


def devices(manifest: Path) -> tuple[str | None, list[DeviceRow]]:
    """The device this machine is detected as (``env.jetson.device_of``; ``None`` for an unknown device
    tree) and one row per overlay of the project whose manifest is ``manifest``, sorted by name."""
    root = manifest.resolve().parent
    detected = device_of(fingerprint())
    rows = [
        DeviceRow(name, name == detected, (root / "locks" / f"{name}.lock").is_file()) for name in known_devices(root)
    ]
    return detected, rows
