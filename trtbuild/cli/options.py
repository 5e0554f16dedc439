"""The command-line options the commands share: the manifest, the device(s), building, the remote cache."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from trtbuild.locate import MANIFEST_NAME, find_manifest

#: ``--device`` as a command receives it (``_devices``): not given, given once, given several times.
Devices = str | tuple[str, ...] | None


def _manifest(_: Any, __: Any, value: Path | None) -> Path:
    """``-f`` as given, else ``builds.yaml`` in the current folder or the nearest parent (``trtbuild.locate``)."""
    if value is not None:
        return value
    found = find_manifest(Path.cwd())
    if found is None:
        raise click.UsageError(
            f"no {MANIFEST_NAME} in {Path.cwd()} or any parent folder; pass -f FILE or run `trtbuild init`"
        )
    return Path(os.path.relpath(found))  # messages name it as the user would: builds.yaml, ../builds.yaml


def _devices(_: Any, __: Any, value: tuple[str, ...]) -> Devices:
    """``--device``: ``None`` when not given, the name when given once, the names when given several times."""
    names = tuple(dict.fromkeys(value))
    return None if not names else names[0] if len(names) == 1 else names


def common(function: Callable[..., Any]) -> Callable[..., Any]:
    """Options every command takes."""
    options = [
        click.option(
            "-f",
            "--file",
            "manifest",
            type=click.Path(path_type=Path),
            default=None,
            callback=_manifest,
            help=f"The manifest [default: {MANIFEST_NAME} here or in the nearest parent folder].",
        ),
        click.option("--json", "json_mode", is_flag=True, help="Print a machine-readable summary on stdout."),
        click.option(
            "-d",
            "--device",
            multiple=True,
            callback=_devices,
            help="Apply devices/DEVICE.yaml (default: detected when devices/ exists); all, build and plan take "
            "several (-d a -d b).",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def building(function: Callable[..., Any]) -> Callable[..., Any]:
    """Options of the commands that build."""
    function = click.option(
        "-j",
        "--jobs",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        help="Engines built at once (small Jetsons: 1).",
    )(function)
    return click.option(
        "--wait",
        type=click.FloatRange(min=0),
        default=0.0,
        show_default=True,
        help="Seconds to wait for another run on this project to finish.",
    )(function)


_REMOTE_CACHE_OPTION = click.option(
    "--remote-cache",
    "remote_cache",
    metavar="URL",
    default=None,
    help="Pull stale steps from / push built ones to an OCI registry: oci://HOST[:PORT]/REPO, "
    "oci+http://HOST[:PORT]/REPO (plain HTTP) or oci-layout:PATH [default: remote_cache in builds.yaml].",
)


def remote_cache_only(function: Callable[..., Any]) -> Callable[..., Any]:
    """``--remote-cache`` alone, as ``remote`` (``push`` always pushes and always fails on a cache error:
    ``--no-push`` and ``--remote-cache-required`` mean nothing there)."""

    @functools.wraps(function)
    def wrapper(*args: Any, remote_cache: str | None, **kwargs: Any) -> Any:
        from trtbuild.ops.project import RemoteOptions

        return function(*args, remote=RemoteOptions(remote_cache, push=True, required=True), **kwargs)

    return _REMOTE_CACHE_OPTION(wrapper)


def remote(function: Callable[..., Any]) -> Callable[..., Any]:
    """Options of the commands that use the remote cache (docs/remote-cache.md), handed to the command as
    one ``remote`` argument (``ops.project.RemoteOptions``)."""

    @functools.wraps(function)
    def wrapper(*args: Any, remote_cache: str | None, no_push: bool, remote_cache_required: bool, **kwargs: Any) -> Any:
        from trtbuild.ops.project import RemoteOptions

        remote = RemoteOptions(remote_cache, push=not no_push, required=remote_cache_required)
        return function(*args, remote=remote, **kwargs)

    options = [
        _REMOTE_CACHE_OPTION,
        click.option("--no-push", is_flag=True, help="Only pull from the remote cache (devices in the field)."),
        click.option(
            "--remote-cache-required", is_flag=True, help="Fail a step when the remote cache fails (CI builders)."
        ),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper
