"""Per-device manifests: ``devices/<name>.yaml`` overlays builds.yaml for one kind of device.

An overlay may set any field, under ``defaults:`` or per model (``models: {pose: {workspace: 512MiB}}``);
mappings merge key by key, anything else is replaced. Each device keeps its own artefacts and lock, so
several devices live side by side in one repository::

    engines/<device>/<model>.engine   exports/<device>/...   locks/<device>.lock
"""

from __future__ import annotations

from pathlib import Path

from trtbuild.errors import ManifestError, did_you_mean

DEVICE_DIR = "devices"
LOCK_DIR = "locks"


def known_devices(root: Path) -> list[str]:
    """The device names declared in ``<root>/devices/*.yaml``, sorted."""
    folder = root / DEVICE_DIR
    return sorted(path.stem for path in folder.glob("*.yaml")) if folder.is_dir() else []


def overlay_path(root: Path, device: str) -> Path:
    """``<root>/devices/<device>.yaml``.

    Raises:
        ManifestError: no such device; the message lists the known ones.
    """
    known = known_devices(root)
    if device not in known:
        listing = ", ".join(known) if known else f"none: {root / DEVICE_DIR} has no *.yaml"
        raise ManifestError(f"unknown device {device!r}{did_you_mean(device, known)} (known devices: {listing})")
    return root / DEVICE_DIR / f"{device}.yaml"
