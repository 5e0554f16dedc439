"""Installed versions of Python distributions, from package metadata (nothing is imported)."""

from __future__ import annotations

from importlib import metadata


def installed_versions(*names: str) -> dict[str, str | None]:
    """distribution name -> installed version, ``None`` when it is not installed."""
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found
