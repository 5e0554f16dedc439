"""The manifest's fields for working with other machines (pydantic, pure data): the fleet's remote cache
URL (``remote_cache:``) and a device overlay's builder device (``remote:``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from trtbuild.manifest.strict import Strict as _Strict

#: ``oci://HOST[:PORT]/REPO``, ``oci+http://HOST[:PORT]/REPO`` or ``oci-layout:PATH`` (``remote.store``).
RemoteCacheURL = Annotated[str, Field(pattern=r"^(oci://|oci\+http://|oci-layout:)\S+$", max_length=2048)]


class RemoteBuilder(_Strict):
    """A device overlay's ``remote:``: the engines are built on this device over SSH (docs/devices.md).

    Attributes:
        host: the ssh destination (``jetson@nano-lab-01`` or a ``~/.ssh/config`` alias; never starting
            with ``-``).
        port: its SSH port (default: ssh's, 22 or the config's ``Port``).
        builder: ``trtexec`` (JetPack's ``/usr/src/tensorrt/bin/trtexec``; any JetPack from 4.6) or
            ``polygraphy`` (a Python >= 3.10 on the device with ``tensorrt`` or ``tensorrt_rtx`` and
            ``polygraphy``: trtbuild's own builder runs there).
        trtexec: trtexec's path on the device.
        python: the device's Python for ``builder: polygraphy``.
        env: environment variables for every command on the device (``TRTBUILD_SYSROOT``, ``PATH``, ...),
            literal: they are quoted, so ``$PATH`` in a value is not expanded (give the whole value).
        workdir: the device's work folder, relative to its home (``~/`` in front is the same: commands
            start there and are quoted, so the device's shell never expands ``~``), or absolute: ONNX and
            plugins by digest, the timing cache, scratch folders. Never starting with ``-``; no ``:`` (the
            builder's zip goes on ``PYTHONPATH``, which ``:`` splits).
        ssh_options: OpenSSH client options, ``{IdentityFile: ~/.ssh/lab}`` -> ``-o IdentityFile=...``.
        connect_timeout: seconds before a device that does not answer fails (``ConnectTimeout``).
    """

    host: Annotated[str, Field(pattern=r"^[^\s-]\S*$", max_length=255)]
    port: Annotated[int, Field(ge=1, le=65535, strict=True)] | None = None
    builder: Literal["trtexec", "polygraphy"] = "trtexec"
    trtexec: Annotated[str, Field(min_length=1, max_length=4096, pattern=r"^[^\n\x00]+$")] = (
        "/usr/src/tensorrt/bin/trtexec"
    )
    python: Annotated[str, Field(min_length=1, max_length=4096, pattern=r"^[^\n\x00]+$")] = "python3"
    env: dict[
        Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=256)],
        Annotated[str, Field(max_length=65536, pattern=r"^[^\n\x00]*$")],
    ] = {}
    workdir: Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^[^\s\x00:-][^\s\x00:]*$")] = (
        ".cache/trtbuild"
    )
    ssh_options: dict[
        Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9]*$", max_length=64)],
        Annotated[str, Field(min_length=1, max_length=4096, pattern=r"^[^\n\x00]+$")],
    ] = {}
    connect_timeout: Annotated[int, Field(ge=1, le=600, strict=True)] = 10

    @field_validator("workdir")
    @classmethod
    def _home_relative(cls, value: str) -> str:
        """``~`` and ``~/x`` are the home and ``x`` in it; ``~user`` is refused. Quoted, a ``~`` would name a
        folder called ``~`` in the home."""
        if value == "~":
            return "."
        if value.startswith("~/"):
            return value[2:].lstrip("/") or "."
        if value.startswith("~"):
            raise ValueError("~user is not expanded on the device: give the folder relative to the home, or absolute")
        return value
